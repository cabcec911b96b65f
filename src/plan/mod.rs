//! AST + build context → a DAG of layer steps and config changes, each with its cache key.
//!
//! Invariants: planning does no IO of its own; base images and context files reach it through
//! the [`Resolver`] the caller passes in. Only stages that a requested image needs are planned.
//! A node's key is blake3 over a versioned canonical encoding of the step and its inputs
//! (copied files by content, mode and kind; never by mtime).

pub(crate) mod affected;
mod args;
mod base;
mod config;
mod copy;
pub(crate) mod dot;
mod expand;
mod onbuild;
mod order;
mod platforms;
mod run;
mod scope;
mod stages;

pub(crate) use args::predefined_args;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use miette::SourceSpan;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};

use crate::context::{FileKind, SelectError, Selected};
use crate::diag::{Diagnostic, Report, SourceFile};
use crate::digest::{Digest, KeyHasher, OciDigest};
use crate::oci::image::{ImageConfig, Platform};
use crate::oci::local::LoadedImage;
use crate::syntax::ast::{BuildFile, CacheSharing, Network};

pub(crate) use dot::to_dot;

/// Why the resolver could not give a base image or a remote file: the error of the layer that
/// tried (the registry client, the layout reader, the download), kept whole with its causes,
/// or the resolver's own words. The planner shows its chain in the diagnostic.
#[derive(Debug, Clone)]
pub struct BaseError {
    cause: Arc<dyn std::error::Error + Send + Sync>,
    /// The registry or the network failed (refused, unreachable, TLS, 5xx, 401…), not the
    /// reference: `stack::base-unreachable`, which the CLI reports with the registry exit code.
    pub unreachable: bool,
}

impl BaseError {
    /// `cause`, kept whole; `unreachable` when the registry or the network failed.
    pub fn caused_by(
        cause: impl std::error::Error + Send + Sync + 'static,
        unreachable: bool,
    ) -> Self {
        Self { cause: Arc::new(cause), unreachable }
    }

    /// The error that stopped the resolver, with its own chain of sources.
    pub(crate) fn cause(&self) -> &(dyn std::error::Error + 'static) {
        &*self.cause
    }
}

impl std::fmt::Display for BaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for BaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

/// A resolver's own explanation, with no error beneath it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Said(String);

impl From<String> for BaseError {
    fn from(message: String) -> Self {
        Self::caused_by(Said(message), false)
    }
}

impl From<&str> for BaseError {
    fn from(message: &str) -> Self {
        Self::from(message.to_owned())
    }
}

/// The diagnostic for an error of the machine met while planning (a full disk while pulling a
/// base or downloading a file, no memory): `stack::machine`, which the CLI reports with the
/// machine's exit code, never as a mistake in the build file. `None` for any other error.
pub(crate) fn machine_failure(
    what: &str,
    e: &(dyn std::error::Error + 'static),
    span: miette::SourceSpan,
) -> Option<Diagnostic> {
    crate::diag::is_machine_error(e).then(|| {
        let message = format!("{what}: {}", crate::diag::error_chain(e));
        Diagnostic::error("machine", message, span, "the machine failed here").with_help(
            "this is the machine, not the build file: free some space (or memory) and build again",
        )
    })
}

/// One parsed build file and the folder its relative paths resolve from.
#[derive(Debug, Clone)]
pub struct FileInput {
    pub source: SourceFile,
    pub ast: BuildFile,
    /// The build context of this file's stages.
    pub context_dir: PathBuf,
    /// For a build file imported from a Dockerfile: that Dockerfile and where each part of
    /// the build file came from, so that problems are shown in the file the user wrote.
    pub origin: Option<Arc<(SourceFile, crate::dockerfile::SpanMap)>>,
    /// For an included file: the file whose `include` named it, and the values that include
    /// gives this file's own args.
    pub included: Option<Included>,
}

/// How a file was included: by which file, and with which arg values (`include … { arg … }`).
#[derive(Debug, Clone)]
pub struct Included {
    pub by: usize,
    pub args: Vec<(crate::syntax::ast::Spanned<String>, crate::syntax::ast::Spanned<String>)>,
}

impl FileInput {
    /// A report of diagnostics about this file, shown in the Dockerfile it was imported from
    /// when there is one (spans mapped back to its instructions).
    pub fn report(&self, mut diagnostics: Vec<Diagnostic>) -> Report {
        if self.origin.is_none() {
            return Report::new(self.source.clone(), diagnostics);
        }
        for d in &mut diagnostics {
            d.span = self.shown(d.span).1;
            for (span, _) in &mut d.related {
                *span = self.shown(*span).1;
            }
        }
        Report::new(self.shown_file().clone(), diagnostics)
    }

    /// The file name and 1-based line of `span` in the file the user wrote (the Dockerfile
    /// of an imported build file), for progress events.
    pub fn line_of(&self, span: SourceSpan) -> (String, usize) {
        let (file, span) = self.shown(span);
        (file.name.clone(), file.line_col(span.offset()).0)
    }

    /// The file the user wrote: the Dockerfile this file was imported from, or itself.
    fn shown_file(&self) -> &SourceFile {
        self.origin.as_deref().map_or(&self.source, |(dockerfile, _)| dockerfile)
    }

    /// `span` of this file, mapped into the file the user wrote.
    fn shown(&self, span: SourceSpan) -> (&SourceFile, SourceSpan) {
        let Some((dockerfile, map)) = self.origin.as_deref() else { return (&self.source, span) };
        let range = span.offset()..span.offset() + span.len();
        let mapped = map.to_dockerfile(&self.source.text, &dockerfile.text, range);
        (dockerfile, mapped.map_or_else(|| (0, 0).into(), |m| (m.start, m.len()).into()))
    }
}

/// What planning needs from the outside world.
pub trait Resolver: Sync {
    /// Loads an image reference (`oci:…`, `docker-archive:…`, or a registry reference) for
    /// `platform`: an index's entry for it, or a single image of that platform.
    fn image(
        &self,
        reference: &str,
        file: usize,
        platform: &Platform,
    ) -> Result<Arc<LoadedImage>, BaseError>;
    /// Selects and hashes the files a `copy` source names in file `file`'s context.
    fn select(
        &self,
        file: usize,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError>;
    /// Selects and hashes the files a `copy from=NAME` source names in the named context
    /// `name` (a folder given as `--build-context NAME=DIR`).
    fn select_named(
        &self,
        name: &str,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        let _ = (name, excludes);
        Err(SelectError::NotFound { source_path: source.to_owned(), excluded: false })
    }
    /// Fetches (or finds in the store) the file at an `http(s)://` URL for `add`, checked
    /// against `checksum` when given.
    fn remote(&self, url: &str, checksum: Option<&OciDigest>) -> Result<RemoteFile, BaseError> {
        let _ = (url, checksum);
        Err("fetching URLs is not available here".into())
    }
}

/// A file fetched for `add "https://…"`, held in the store as a blob.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub digest: OciDigest,
    pub size: u64,
    /// The blob in the store.
    pub path: PathBuf,
}

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `--arg NAME=VALUE` overrides.
    pub args: BTreeMap<String, String>,
    /// Images (or stages) to build; empty means every `image`.
    pub targets: Vec<String>,
    /// `--label KEY=VALUE`: set on every image, over the build file's label of the same key.
    pub labels: BTreeMap<String, String>,
    /// `--network`: the network of `run` steps that do not choose one.
    pub default_network: Network,
    /// `--add-host NAME:IP`: lines added to every `run` step's `/etc/hosts`, in this order.
    pub add_hosts: Vec<(String, String)>,
    /// `--build-context NAME=…`: extra named contexts `copy from=`/`bind from=` can name.
    pub contexts: BTreeMap<String, NamedContext>,
    /// `--platform`: the platforms to build every image for, over the build file's
    /// `platforms`; empty means the build file's, else the host's.
    pub platforms: Vec<Platform>,
    /// The platform of the branch being planned (set by [`plan`] for each; `None` is the
    /// host's).
    pub platform: Option<Platform>,
}

impl PlanRequest {
    /// The folder of named context `name` (empty when it is none).
    pub(crate) fn contexts_dir(&self, name: &str) -> PathBuf {
        match self.contexts.get(name) {
            Some(NamedContext::Dir(d)) => d.clone(),
            _ => PathBuf::new(),
        }
    }
}

/// What a `--build-context NAME=…` stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A folder, read like the build context (ignore file, no symlinks out of it).
    Dir(PathBuf),
    /// An image (`docker-image://REF`, `oci-layout://DIR:TAG`), as a stack image reference.
    Image(String),
}

/// A diagnostic together with the file it points into.
#[derive(Debug, Clone)]
pub struct FileDiagnostic {
    pub file: usize,
    pub diagnostic: Diagnostic,
}

/// The planned build.
#[derive(Debug)]
pub struct Plan {
    pub graph: StableDiGraph<Node, EdgeKind>,
    /// The build context of each input file (for `bind` mounts of the context).
    pub context_dirs: Vec<PathBuf>,
    pub images: Vec<ImageTarget>,
    pub warnings: Vec<FileDiagnostic>,
    /// The folders of the named contexts (`--build-context NAME=DIR`), for `bind from=NAME`.
    pub named_contexts: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// The previous step of the same chain.
    Parent,
    /// A `copy from=` or a `bind`/`cache from=` source.
    Source,
}

/// One step of the DAG.
#[derive(Debug, Clone)]
pub struct Node {
    pub stage: String,
    /// The step as written (its first line), for progress and graphs.
    pub label: String,
    pub file: usize,
    pub span: SourceSpan,
    /// The step's identity: what it does and everything it depends on.
    pub key: Digest,
    /// The key of the file system after this step (config steps pass their parent's on).
    pub fs_key: Digest,
    pub parent: Option<NodeIndex>,
    pub op: Op,
    /// Where the step sits (`stage#index`), stable across builds, for `--explain`.
    pub identity: String,
    /// What the key covers, by name, for `--explain` (never a secret's value).
    pub inputs: Vec<(String, String)>,
}

/// Where a step is written and how it is shown: its stage, its first line, file and span.
pub(crate) struct Place {
    pub stage: String,
    pub label: String,
    pub file: usize,
    pub span: SourceSpan,
}

impl Node {
    /// The step at `place` after `parent` (none for a base or `scratch`); `fs_key` is `key`
    /// for a step that changes files, its parent's for one that changes only the config.
    /// Its identity and inputs (for `--explain`) start empty.
    pub(crate) fn new(
        place: Place,
        parent: Option<NodeIndex>,
        key: Digest,
        fs_key: Digest,
        op: Op,
    ) -> Node {
        let Place { stage, label, file, span } = place;
        Node {
            identity: String::new(),
            inputs: Vec::new(),
            stage,
            label,
            file,
            span,
            key,
            fs_key,
            parent,
            op,
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Op {
    /// An empty file system (`from "scratch"`).
    Scratch,
    /// An existing image's layers.
    Base {
        reference: String,
        image: Arc<LoadedImage>,
    },
    Copy(CopyOp),
    File(FileOp),
    /// Creates the working folder when the file system lacks it, owned by `user` (the
    /// image's `USER` at that point, empty for root), as `BuildKit` does.
    Workdir {
        path: String,
        user: String,
    },
    Run(RunOp),
    /// Changes only the image config.
    Config,
}

impl Op {
    /// Whether the step can produce a layer.
    pub fn makes_layer(&self) -> bool {
        matches!(self, Self::Copy(_) | Self::File(_) | Self::Workdir { .. } | Self::Run(_))
    }
}

#[derive(Debug, Clone)]
pub struct CopyOp {
    pub source: CopySource,
    /// Absolute, normalised destination.
    pub dest: String,
    /// The destination is certainly a folder (trailing `/`, several sources, or a glob).
    pub dest_is_dir: bool,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    /// `add`: local archives are unpacked.
    pub add: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum CopySource {
    /// Files of the build context, already selected and hashed; `sources` are the
    /// normalised source paths in the same order (for `parents=#true`).
    Context { selected: Vec<Vec<Selected>>, sources: Vec<String> },
    /// Paths (absolute, may hold globs) in the file system after another node.
    Node { node: NodeIndex, paths: Vec<String> },
    /// Files fetched from URLs (`add "https://…"`), each with the name the URL gives it.
    Remote { files: Vec<(String, RemoteFile)> },
}

#[derive(Debug, Clone)]
pub struct FileOp {
    pub path: String,
    pub content: Vec<u8>,
    pub chown: Option<String>,
    pub chmod: u32,
}

#[derive(Debug, Clone)]
pub struct RunOp {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub user: String,
    pub network: Network,
    /// Extra `/etc/hosts` lines (`--add-host`): name and address.
    pub hosts: Vec<(String, String)>,
    pub mounts: Vec<PlannedMount>,
    /// The platform the command runs on (emulated when it is not the host's).
    pub platform: Platform,
}

#[derive(Debug, Clone)]
pub enum PlannedMount {
    Cache {
        target: String,
        id: String,
        sharing: CacheSharing,
        readonly: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        /// Travels through the registry step cache (never part of the key).
        export: bool,
    },
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// The SSH agent the command line gave as `id`, at `target` in the step.
    Ssh {
        id: String,
        target: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// A read-only (unless `readwrite`) view of a path in another node's file system.
    BindNode {
        node: NodeIndex,
        source: String,
        target: String,
        readwrite: bool,
    },
    /// A view of a path of the build context (or of the named context `named`).
    BindContext {
        file: usize,
        named: Option<String>,
        source: String,
        target: String,
        readwrite: bool,
        /// A folder source's files as the context selects them (ignore file applied, stack's
        /// own output left out): the step sees these, not whatever else the folder holds.
        /// `None` for a single file.
        folder: Option<Selected>,
    },
}

/// An image to export.
#[derive(Debug, Clone)]
pub struct ImageTarget {
    pub name: String,
    pub tags: Vec<String>,
    pub node: NodeIndex,
    /// The final config (without `rootfs` and `history`, which the executor fills in).
    pub config: ImageConfig,
    pub file: usize,
    pub span: SourceSpan,
    /// The platform this image is built for (one target per image and platform).
    pub platform: Platform,
}

impl Plan {
    /// `node` and every step it depends on (parents and `from=`/bind sources).
    pub fn ancestors(&self, node: NodeIndex) -> std::collections::BTreeSet<NodeIndex> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![node];
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(self.graph.neighbors_directed(n, petgraph::Direction::Incoming));
            }
        }
        seen
    }

    /// The names of the images it makes, in file order, each once (an image built for
    /// several platforms has one target per platform).
    pub fn image_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for i in &self.images {
            if !names.contains(&i.name.as_str()) {
                names.push(&i.name);
            }
        }
        names
    }

    /// The chain of nodes an image is made of, from its base to `node`.
    pub fn chain(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut chain = vec![node];
        let mut cur = node;
        while let Some(p) = self.graph[cur].parent {
            chain.push(p);
            cur = p;
        }
        chain.reverse();
        chain
    }
}

impl Plan {
    /// Keeps only the images `keep` accepts, and only the steps they need (`--shard`,
    /// `--affected-since`): the others are neither built nor counted.
    pub fn retain_images(&mut self, keep: &dyn Fn(&str) -> bool) {
        self.images.retain(|i| keep(&i.name));
        let mut needed = std::collections::HashSet::new();
        let mut todo: Vec<NodeIndex> = self.images.iter().map(|i| i.node).collect();
        while let Some(n) = todo.pop() {
            if needed.insert(n) {
                todo.extend(self.graph.neighbors_directed(n, petgraph::Direction::Incoming));
            }
        }
        self.graph.retain_nodes(|_, n| needed.contains(&n));
    }
}

/// Plans a build. Returns every diagnostic found when the plan is unusable.
pub fn plan(
    files: &[FileInput],
    request: &PlanRequest,
    resolver: &dyn Resolver,
) -> Result<Plan, Vec<FileDiagnostic>> {
    let (files, mut diags) = expand::expand(files);
    match platforms::plan(&files, request, resolver) {
        Ok(plan) if diags.is_empty() => Ok(plan),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}

/// Key of a node's content for the copy-from-context case.
fn hash_selected(h: &mut KeyHasher, selected: &[Selected]) {
    h.seq(selected.len());
    for item in selected {
        h.str(&item.name).bool(item.is_dir).seq(item.entries.len());
        for (path, meta) in &item.entries {
            h.str(path);
            // New kinds take new ordinals, so the keys of existing kinds do not change.
            match meta.kind {
                FileKind::File => h.u8(0),
                FileKind::Dir => h.u8(1),
                FileKind::Symlink => h.u8(2),
                FileKind::Fifo => h.u8(3),
                FileKind::CharDevice { major, minor } => {
                    h.u8(4).u64(u64::from(major)).u64(u64::from(minor))
                }
                FileKind::BlockDevice { major, minor } => {
                    h.u8(5).u64(u64::from(major)).u64(u64::from(minor))
                }
            };
            h.u64(u64::from(meta.mode)).u64(meta.size);
            match &meta.hash {
                Some(d) => h.u8(1).digest(d),
                None => h.u8(0),
            };
            h.opt_str(meta.link.as_deref());
        }
    }
}

/// Gives each node a display id stable within one plan.
pub(crate) fn node_ids(plan: &Plan) -> HashMap<NodeIndex, usize> {
    plan.graph.node_indices().enumerate().map(|(i, n)| (n, i)).collect()
}
#[cfg(test)]
mod snapshot_tests;
