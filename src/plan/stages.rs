//! The planner core: the `Planner` state, the run from build files to a `Plan`, and the walk
//! through one stage's steps that turns each into a DAG node with its key. The other jobs
//! are `impl Planner` blocks beside it: `args` (top-level args), `order` (which stages, in
//! what order), `base` (what a stage starts from), `config`, `copy` and `run` (one step kind
//! each).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use miette::SourceSpan;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};

use super::config;
use super::scope::Scope;
use super::{
    EdgeKind, FileDiagnostic, FileInput, ImageTarget, NamedContext, Node, Op, Place, Plan,
    PlanRequest, Resolver,
};
use crate::diag::Diagnostic;
use crate::digest::{Digest, KeyHasher};
use crate::oci::image::{DEFAULT_PATH, ImageConfig, Platform};
use crate::syntax::ast::{Origin, Spanned, Step, StepKind, Target};
use crate::syntax::parse_mode;

pub(super) struct Planner<'a> {
    pub(super) files: &'a [FileInput],
    pub(super) request: &'a PlanRequest,
    pub(super) resolver: &'a dyn Resolver,
    pub(super) diags: Vec<FileDiagnostic>,
    pub(super) graph: StableDiGraph<Node, EdgeKind>,
    /// The top-level args each file sees, by file index: the predefined ones, the main file's,
    /// and (for an included file) its own.
    pub(super) globals: Vec<BTreeMap<String, String>>,
    /// Stage name → (file, index of the target in that file).
    pub(super) stages: BTreeMap<String, (usize, usize)>,
    pub(super) done: HashMap<String, StageEnd>,
    /// (platform, reference) → the base node loaded for it.
    pub(super) bases: HashMap<(String, String), NodeIndex>,
    pub(super) scratch: Option<NodeIndex>,
    /// The platform this branch builds images for (`TARGETPLATFORM`).
    pub(super) target_platform: Platform,
    /// The platform of the stage being planned: its `from`'s `platform=`, its base stage's,
    /// else the target.
    pub(super) stage_platform: Platform,
}

#[derive(Clone)]
pub(super) struct StageEnd {
    pub(super) node: NodeIndex,
    pub(super) config: ImageConfig,
    /// The stage's args at its end: a stage built `from` it starts with them, as in `BuildKit`.
    pub(super) args: BTreeMap<String, String>,
    /// Args declared after an `env` of the same name, which win over it (see [`env_view`]).
    pub(super) arg_wins: BTreeSet<String>,
    /// The platform the stage's steps run on.
    pub(super) platform: Platform,
}

/// A stage while its steps are planned: what the next step builds on and sees.
pub(super) struct StageState<'s> {
    pub(super) name: &'s str,
    /// The file the stage is written in; problems in its steps are reported there (and moved
    /// to a template's file afterwards).
    pub(super) file: usize,
    /// The node the next step builds on.
    pub(super) parent: NodeIndex,
    pub(super) config: ImageConfig,
    pub(super) stage_args: BTreeMap<String, String>,
    /// Args declared after an `env` of the same name, which win over it (see [`env_view`]).
    pub(super) arg_wins: BTreeSet<String>,
    /// Args declared without a value: `${NAME}` is empty, and `run` steps do not see them.
    pub(super) unset_args: BTreeSet<String>,
    /// A `cmd` of this stage came before: an `entrypoint` keeps it.
    pub(super) cmd_set_here: bool,
    pub(super) platform: Platform,
}

/// One step being lowered: where it is written, what its node is called, and its parent.
pub(super) struct StepAt<'s> {
    pub(super) stage: &'s str,
    /// `STAGE#N` (`STAGE#onbuildK` for a base's trigger), which `--explain` matches across builds.
    pub(super) identity: String,
    pub(super) label: String,
    /// The file the step's text is in.
    pub(super) file: usize,
    pub(super) span: SourceSpan,
    pub(super) parent: NodeIndex,
    pub(super) parent_key: Digest,
    /// The parent's filesystem key: what a layer step builds on.
    pub(super) parent_fs: Digest,
}

impl StepAt<'_> {
    fn place(&self) -> Place {
        Place {
            stage: self.stage.to_owned(),
            label: self.label.clone(),
            file: self.file,
            span: self.span,
        }
    }

    /// A node that changes only the config: its key is the step's content then the parent's
    /// key, and its filesystem is the parent's.
    pub(super) fn config_node(&self, h: &mut KeyHasher) -> Node {
        let key = h.digest(&self.parent_key).finish();
        Node::new(self.place(), Some(self.parent), key, self.parent_fs, Op::Config)
    }

    /// A node that makes a layer, with the step's identity and its named inputs for
    /// `--explain`.
    pub(super) fn layer_node(&self, key: Digest, op: Op, inputs: Vec<(String, String)>) -> Node {
        Node {
            identity: self.identity.clone(),
            inputs,
            ..Node::new(self.place(), Some(self.parent), key, key, op)
        }
    }
}

impl<'a> Planner<'a> {
    pub(super) fn new(
        files: &'a [FileInput],
        request: &'a PlanRequest,
        resolver: &'a dyn Resolver,
    ) -> Self {
        Self {
            files,
            request,
            resolver,
            diags: Vec::new(),
            graph: StableDiGraph::new(),
            globals: Vec::new(),
            stages: BTreeMap::new(),
            done: HashMap::new(),
            bases: HashMap::new(),
            scratch: None,
            target_platform: request.platform.clone().unwrap_or_else(Platform::host),
            stage_platform: request.platform.clone().unwrap_or_else(Platform::host),
        }
    }

    pub(super) fn error(&mut self, file: usize, d: Diagnostic) {
        self.diags.push(FileDiagnostic { file, diagnostic: d });
    }

    pub(super) fn text(&self, file: usize) -> &'a str {
        self.files[file].source.text.as_str()
    }

    pub(super) fn run(mut self) -> Result<Plan, Vec<FileDiagnostic>> {
        self.collect_globals();
        self.collect_stages();
        self.check_named_contexts();
        let requested = self.requested();
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        // A cycle is reported and its stages left out; the other stages are still planned.
        let order = self.order(&requested);
        for name in &order {
            self.plan_stage(name);
        }
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        let images: Vec<ImageTarget> =
            requested.into_iter().map(|name| self.image_target(name)).collect();
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        Ok(Plan {
            graph: self.graph,
            context_dirs: self.files.iter().map(|f| f.context_dir.clone()).collect(),
            named_contexts: self
                .request
                .contexts
                .iter()
                .filter_map(|(k, c)| match c {
                    NamedContext::Dir(d) => Some((k.clone(), d.clone())),
                    NamedContext::Image(_) => None,
                })
                .collect(),
            images,
            warnings: Vec::new(),
        })
    }

    /// The image a requested stage makes: the stage's end, with the `--label`s added and its
    /// tags expanded.
    fn image_target(&mut self, name: String) -> ImageTarget {
        let (fi, ti) = self.stages[&name];
        let target = &self.files[fi].ast.targets[ti];
        let mut end = self.done[&name].clone();
        for (k, v) in &self.request.labels {
            end.config.set_label(k, v);
        }
        let scope_args = BTreeMap::new();
        let mut tags = Vec::new();
        for tag in &target.tags {
            let scope =
                Scope { globals: &self.globals[fi], stage_args: &scope_args, config: &end.config };
            match scope.expand(tag, self.text(fi)) {
                Ok(t) => tags.push(t),
                Err(d) => self.error(fi, d),
            }
        }
        ImageTarget {
            name,
            tags,
            node: end.node,
            config: end.config,
            file: fi,
            span: target.name.span,
            platform: self.target_platform.clone(),
        }
    }

    /// The named context folder `from=` names, when it names one (and no stage).
    pub(super) fn named_dir(&self, name: &str) -> Option<&'a PathBuf> {
        match self.request.contexts.get(name) {
            Some(NamedContext::Dir(d)) if !self.stages.contains_key(name) => Some(d),
            _ => None,
        }
    }

    pub(super) fn target(&self, name: &str) -> (usize, &'a Target) {
        let (fi, ti) = self.stages[name];
        (fi, &self.files[fi].ast.targets[ti])
    }

    pub(super) fn add_node(&mut self, node: Node, source_edges: &[NodeIndex]) -> NodeIndex {
        let parent = node.parent;
        let idx = self.graph.add_node(node);
        if let Some(p) = parent {
            self.graph.add_edge(p, idx, EdgeKind::Parent);
        }
        for s in source_edges {
            self.graph.add_edge(*s, idx, EdgeKind::Source);
        }
        idx
    }

    /// Moves the diagnostics reported since `mark` about a step a template produced (reported
    /// against the stage's file `fi`, with spans in the template) to the template's file, and
    /// shows the `use` they came from.
    fn remap_template_diags(&mut self, mark: usize, fi: usize, origin: &Origin, stage: &str) {
        let use_source = &self.files[origin.use_file].source;
        for d in &mut self.diags[mark..] {
            if d.file != fi {
                continue;
            }
            d.file = origin.file;
            let label = format!("in `{stage}`, from `use {}` here", origin.template);
            let same_file = origin.file == origin.use_file;
            d.diagnostic =
                d.diagnostic.clone().with_place(same_file, use_source, origin.use_span, label);
        }
    }

    /// Points the diagnostics reported since `mark` (about trigger steps, whose text is in no
    /// file) at the `from` that ran them.
    fn remap_trigger_diags(&mut self, mark: usize, from_span: SourceSpan) {
        for d in &mut self.diags[mark..] {
            d.diagnostic.span = from_span;
            d.diagnostic.related.clear();
            d.diagnostic.message =
                format!("in an `ONBUILD` trigger of this base: {}", d.diagnostic.message);
        }
    }

    pub(super) fn label(&self, file: usize, span: SourceSpan) -> String {
        let text = self.text(file);
        let raw = text.get(span.offset()..span.offset() + span.len()).unwrap_or("");
        let first = raw.lines().next().unwrap_or("").trim().trim_end_matches('{').trim();
        if first.chars().count() > 72 {
            format!("{}…", first.chars().take(71).collect::<String>())
        } else {
            first.to_owned()
        }
    }

    /// The platform a stage's steps run on: its `from`'s `platform=` (expanded, so
    /// `${BUILDPLATFORM}` works), else its base stage's, else the branch's target.
    fn stage_platform_of(
        &mut self,
        fi: usize,
        target: &Target,
        written: Option<&Spanned<String>>,
        base: &str,
    ) -> Option<Platform> {
        let Some(written) = written else {
            let inherited = self.done.get(base).map(|end| end.platform.clone());
            return Some(inherited.unwrap_or_else(|| self.target_platform.clone()));
        };
        let value = match self.expand_static(fi, target, written) {
            Ok(v) => v,
            Err(d) => {
                self.error(fi, d);
                return None;
            }
        };
        match Platform::parse(&value) {
            Ok(p) => Some(p),
            Err(problem) => {
                let d = Diagnostic::error("bad-platform", problem, written.span, "not a platform")
                    .with_help(
                        "write OS/ARCH[/VARIANT], e.g. `linux/arm64`, or `${BUILDPLATFORM}`",
                    );
                self.error(fi, d);
                None
            }
        }
    }

    pub(super) fn plan_stage(&mut self, name: &str) {
        let (fi, target) = self.target(name);
        let Some(mut stage) = self.start_stage(name, fi, target) else { return };
        let from_span = target.steps[0].span;
        let triggers = self.triggers(fi, &mut stage.config, from_span);
        let diag_mark = self.diags.len();
        let mut remapped = triggers.is_empty();
        let steps = triggers
            .iter()
            .enumerate()
            .map(|(k, (label, step))| (format!("{name}#onbuild{k}"), Some(label), step))
            .chain(
                target
                    .steps
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(n, s)| (format!("{name}#{n}"), None, s)),
            );
        let mut from_template: Option<(usize, Arc<Origin>)> = None;
        for (identity, trigger_label, step) in steps {
            if !remapped && trigger_label.is_none() {
                self.remap_trigger_diags(diag_mark, from_span);
                remapped = true;
            }
            if let Some((mark, origin)) = from_template.take() {
                self.remap_template_diags(mark, fi, &origin, name);
            }
            if let Some(origin) = &step.origin {
                from_template = Some((self.diags.len(), Arc::clone(origin)));
            }
            let at = self.step_at(&stage, identity, trigger_label, step);
            if let Some((node, sources)) = self.step_node(&mut stage, &at, step) {
                stage.parent = self.add_node(node, &sources);
            }
        }
        if !remapped {
            self.remap_trigger_diags(diag_mark, from_span);
        }
        if let Some((mark, origin)) = from_template.take() {
            self.remap_template_diags(mark, fi, &origin, name);
        }
        let StageState { parent, config, stage_args, arg_wins, platform, .. } = stage;
        self.done.insert(
            name.to_owned(),
            StageEnd { node: parent, config, args: stage_args, arg_wins, platform },
        );
    }

    /// Starts a stage on its base: scratch, a stage planned before it (whose args it carries
    /// on), or an image. `None` once the problem is reported.
    fn start_stage<'s>(
        &mut self,
        name: &'s str,
        fi: usize,
        target: &Target,
    ) -> Option<StageState<'s>> {
        let (base, from_platform) = target.from_step()?;
        let base_value = match self.expand_static(fi, target, base) {
            Ok(v) => v,
            Err(d) => {
                self.error(fi, d);
                return None;
            }
        };
        let platform = self.stage_platform_of(fi, target, from_platform, &base_value)?;
        self.stage_platform = platform.clone();
        let mut stage_args: BTreeMap<String, String> = BTreeMap::new();
        let mut arg_wins: BTreeSet<String> = BTreeSet::new();
        let (parent, config) = if base_value == "scratch" {
            (self.scratch_node(), ImageConfig::scratch_for(&platform))
        } else if let Some(end) = self.done.get(&base_value) {
            stage_args.clone_from(&end.args);
            arg_wins.clone_from(&end.arg_wins);
            (end.node, end.config.clone())
        } else {
            let (node, mut config) = self.base_node(&base_value, fi, base.span, &platform)?;
            // BuildKit gives an image without `PATH` the default one.
            if config.env_var("PATH").is_none() {
                config.set_env("PATH", DEFAULT_PATH);
            }
            (node, config)
        };
        Some(StageState {
            name,
            file: fi,
            parent,
            config,
            stage_args,
            arg_wins,
            unset_args: BTreeSet::new(),
            cmd_set_here: false,
            platform,
        })
    }

    /// Where a step of `stage` is written, what its node is called, and what it builds on.
    fn step_at<'s>(
        &self,
        stage: &StageState<'s>,
        identity: String,
        trigger_label: Option<&String>,
        step: &Step,
    ) -> StepAt<'s> {
        // A template's step is written in the template's file.
        let file = step.origin.as_ref().map_or(stage.file, |o| o.file);
        let label = match (trigger_label, &step.origin) {
            (Some(l), _) => l.clone(),
            (None, Some(o)) => format!("(use {}) {}", o.template, self.label(file, step.span)),
            (None, None) => self.label(file, step.span),
        };
        let parent = &self.graph[stage.parent];
        StepAt {
            stage: stage.name,
            identity,
            label,
            file,
            span: step.span,
            parent: stage.parent,
            parent_key: parent.key,
            parent_fs: parent.fs_key,
        }
    }

    /// Lowers one step to its node and the nodes it reads (`copy from=`, `bind from=`); `None`
    /// for a step that makes no node (`arg`) or whose problem is reported.
    fn step_node(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        step: &Step,
    ) -> Option<(Node, Vec<NodeIndex>)> {
        let node = match &step.kind {
            StepKind::From { .. } | StepKind::Use(_) => None,
            StepKind::Arg(decl) => {
                self.declare_arg(stage, at, decl);
                None
            }
            StepKind::Copy(c) => return self.copy_node(stage, at, c),
            StepKind::Run(r) => return self.run_node(stage, at, r),
            StepKind::File(f) => self.file(stage, at, f),
            StepKind::Workdir(p) => self.workdir(stage, at, p),
            StepKind::Env(pairs) => self.env(stage, at, pairs),
            StepKind::Label(pairs) => self.labels(stage, at, pairs),
            StepKind::User(u) => self.user(stage, at, u),
            StepKind::Shell(argv) => Some(config::shell(stage, at, argv)),
            StepKind::StopSignal(s) => self.stop_signal(stage, at, s),
            StepKind::Maintainer(m) => self.maintainer(stage, at, m),
            StepKind::Cmd(argv) => Some(config::cmd(stage, at, argv)),
            StepKind::Entrypoint(argv) => Some(config::entrypoint(stage, at, argv)),
            StepKind::Expose(ports) => self.expose(stage, at, ports),
            StepKind::Volume(volumes) => self.volumes(stage, at, volumes),
            StepKind::Onbuild(triggers) => self.onbuild(stage, at, triggers),
            StepKind::Healthcheck(hc) => Some(config::healthcheck(stage, at, hc)),
        };
        node.map(|n| (n, Vec::new()))
    }

    /// Expands a step's value with the stage's args and environment so far; `None` once the
    /// problem is reported (the step is then left out).
    pub(super) fn expand_in_stage(
        &mut self,
        stage: &StageState<'_>,
        at: &StepAt<'_>,
        value: &Spanned<String>,
    ) -> Option<String> {
        let view = env_view(&stage.config, &stage.stage_args, &stage.arg_wins);
        let scope = Scope {
            globals: &self.globals[stage.file],
            stage_args: &stage.stage_args,
            config: &view,
        };
        match scope.expand(value, self.text(at.file)) {
            Ok(x) => Some(x),
            Err(d) => {
                self.error(stage.file, d);
                None
            }
        }
    }

    pub(super) fn mode(&mut self, file: usize, m: &Spanned<String>) -> Option<u32> {
        let parsed = parse_mode(&m.value);
        if parsed.is_none() {
            self.error(
                file,
                Diagnostic::error(
                    "invalid-mode",
                    format!("`{}` is not an octal mode", m.value),
                    m.span,
                    "not octal",
                )
                .with_help("write the mode as an octal string, e.g. \"0755\""),
            );
        }
        parsed
    }
}

/// Resolves `path` against `base` and normalises it to an absolute path (keeps a trailing `/`
/// off; `..` stops at the root).
pub(super) fn absolute(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_owned() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The environment values and `run` steps see: the image's, except that an `arg` declared
/// (with a value) after an `env` of the same name wins until the next `env` sets it again.
/// `BuildKit` adds such an arg to the build state's environment, not to the image config.
pub(super) fn env_view<'a>(
    config: &'a ImageConfig,
    stage_args: &BTreeMap<String, String>,
    arg_wins: &BTreeSet<String>,
) -> std::borrow::Cow<'a, ImageConfig> {
    let shadowed: Vec<(&String, &String)> = arg_wins
        .iter()
        .filter(|k| config.env_var(k).is_some())
        .filter_map(|k| stage_args.get(k).map(|v| (k, v)))
        .collect();
    if shadowed.is_empty() {
        return std::borrow::Cow::Borrowed(config);
    }
    let mut view = config.clone();
    for (k, v) in shadowed {
        view.set_env(k, v);
    }
    std::borrow::Cow::Owned(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_docker() {
        assert_eq!(absolute("/app", "src/"), "/app/src");
        assert_eq!(absolute("/app", "/etc/x"), "/etc/x");
        assert_eq!(absolute("/", "../../x"), "/x");
        assert_eq!(absolute("/a/b", "."), "/a/b");
    }
}
