//! The typed build-file AST. Every node keeps its span so later phases can point at it.

use miette::SourceSpan;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: SourceSpan) -> Self {
        Self { value, span }
    }
}

/// One parsed build file (`stack.kdl` or an included file).
#[derive(Debug, Clone, Default)]
pub struct BuildFile {
    pub version: Option<Spanned<u32>>,
    pub args: Vec<ArgDecl>,
    pub targets: Vec<Target>,
    pub includes: Vec<Include>,
    /// `cache "REPO"`: registry step caches shared between machines.
    pub caches: Vec<CacheDecl>,
    /// `template NAME { param …; steps… }`: steps written once, used with `use NAME`.
    pub templates: Vec<Template>,
    /// `platforms "linux/amd64" …`: what every image is built for, unless it says otherwise.
    pub platforms: Vec<Spanned<String>>,
    /// `attest sbom=#true provenance=#true`: the attestations every image of the file gets.
    pub attest: Option<AttestDecl>,
}

/// `template NAME { param …; steps… }`: a sequence of steps with typed parameters, written
/// once and used from any stage or image of the build with `use NAME param=value…`.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: Spanned<String>,
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
    pub span: SourceSpan,
}

/// `param NAME type="string|int|bool" default=… description="…"` of a template.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: Spanned<String>,
    pub ty: ParamType,
    /// Without a default the parameter is required.
    pub default: Option<Spanned<ParamValue>>,
    pub description: Option<String>,
    pub span: SourceSpan,
}

/// The type of a template parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Bool,
}

impl ParamType {
    /// The name written in `type="…"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Bool => "bool",
        }
    }
}

/// A value given to a template parameter, as KDL typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    String(String),
    Int(i128),
    Bool(bool),
}

impl ParamValue {
    /// The type of the value.
    pub fn ty(&self) -> ParamType {
        match self {
            Self::String(_) => ParamType::String,
            Self::Int(_) => ParamType::Int,
            Self::Bool(_) => ParamType::Bool,
        }
    }

    /// The text `${NAME}` becomes.
    pub fn text(&self) -> String {
        match self {
            Self::String(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// `use NAME param=value…`: the steps of template NAME, with its parameters set.
#[derive(Debug, Clone)]
pub struct UseStep {
    pub template: Spanned<String>,
    pub values: Vec<(Spanned<String>, Spanned<ParamValue>)>,
}

/// One axis of a `matrix { NAME "v1" "v2" … }`: a name and its values.
#[derive(Debug, Clone)]
pub struct Axis {
    pub name: Spanned<String>,
    pub values: Vec<Spanned<String>>,
}

/// Where a step produced by a template came from, set when the planner expands `use` (the
/// parser leaves it `None`): the file holding the template and the `use` it was expanded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub template: String,
    /// Index of the file that defines the template.
    pub file: usize,
    /// Index of the file holding the `use`, and its span there.
    pub use_file: usize,
    pub use_span: SourceSpan,
}

/// `include "PATH" … { arg NAME "VALUE" … }`: build files merged into this one, each with the
/// values its own top-level args take.
#[derive(Debug, Clone)]
pub struct Include {
    pub paths: Vec<Spanned<String>>,
    pub args: Vec<(Spanned<String>, Spanned<String>)>,
}

/// `attest sbom=#true sbom-format="cyclonedx" provenance=#true`: what `--sbom`,
/// `--sbom-format` and `--provenance` ask for, written in the build file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestDecl {
    pub sbom: bool,
    /// `spdx` or `cyclonedx` (checked by the parser); `None` leaves the command line's.
    pub sbom_format: Option<String>,
    pub provenance: bool,
}

/// `cache "registry.example/team/cache" read-only=#true`: a registry step cache this build
/// reads and (unless read-only) writes.
#[derive(Debug, Clone)]
pub struct CacheDecl {
    pub repository: Spanned<String>,
    pub read_only: bool,
}

/// `arg NAME default="…"`, at the top level or inside a stage.
#[derive(Debug, Clone)]
pub struct ArgDecl {
    pub name: Spanned<String>,
    pub default: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Stage,
    Image,
}

/// A `stage` or an `image`: a named chain of steps.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    pub name: Spanned<String>,
    pub steps: Vec<Step>,
    pub tags: Vec<Spanned<String>>,
    /// `matrix { NAME "v1" "v2" … }`: one target per combination of the axes' values.
    pub matrix: Vec<Axis>,
    /// `platforms "linux/arm64" …` of an image, over the file's.
    pub platforms: Vec<Spanned<String>>,
    pub span: SourceSpan,
}

impl Target {
    /// The `from` step, which the parser guarantees is first.
    pub fn from_step(&self) -> Option<(&Spanned<String>, Option<&Spanned<String>>)> {
        match self.steps.first().map(|s| &s.kind) {
            Some(StepKind::From { base, platform }) => Some((base, platform.as_ref())),
            _ => None,
        }
    }
}

/// One step of a stage, with the span of its whole node.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: StepKind,
    pub span: SourceSpan,
    /// The span of the node's name, for short labels.
    pub name_span: SourceSpan,
    /// Set for a step a template produced (its spans are in the template's file).
    pub origin: Option<std::sync::Arc<Origin>>,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    From {
        base: Spanned<String>,
        platform: Option<Spanned<String>>,
    },
    Run(RunStep),
    Copy(CopyStep),
    File(FileStep),
    Arg(ArgDecl),
    Env(Vec<(Spanned<String>, Spanned<String>)>),
    Label(Vec<(Spanned<String>, Spanned<String>)>),
    Workdir(Spanned<String>),
    User(Spanned<String>),
    Shell(Vec<Spanned<String>>),
    StopSignal(Spanned<String>),
    Maintainer(Spanned<String>),
    Cmd(Vec<Spanned<String>>),
    Entrypoint(Vec<Spanned<String>>),
    Expose(Vec<Spanned<String>>),
    Volume(Vec<Spanned<String>>),
    Healthcheck(Healthcheck),
    /// `onbuild "RUN make" …`: Dockerfile instructions kept in the image config (`OnBuild`)
    /// and run by a stage built `from` this one.
    Onbuild(Vec<Spanned<String>>),
    /// `use NAME param=value…`: replaced by the template's steps before planning.
    Use(UseStep),
}

impl StepKind {
    /// The node name the step is written with.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::From { .. } => "from",
            Self::Run(r) if r.exec => "exec",
            Self::Run(_) => "run",
            Self::Copy(c) if c.add => "add",
            Self::Copy(_) => "copy",
            Self::File(_) => "file",
            Self::Arg(_) => "arg",
            Self::Env(_) => "env",
            Self::Label(_) => "label",
            Self::Workdir(_) => "workdir",
            Self::User(_) => "user",
            Self::Shell(_) => "shell",
            Self::StopSignal(_) => "stopsignal",
            Self::Maintainer(_) => "maintainer",
            Self::Cmd(_) => "cmd",
            Self::Entrypoint(_) => "entrypoint",
            Self::Expose(_) => "expose",
            Self::Volume(_) => "volume",
            Self::Healthcheck(_) => "healthcheck",
            Self::Onbuild(_) => "onbuild",
            Self::Use(_) => "use",
        }
    }
}

/// `run "cmd"…` (shell form) or `exec "argv0"…` (no shell).
#[derive(Debug, Clone)]
pub struct RunStep {
    pub exec: bool,
    pub commands: Vec<Spanned<String>>,
    pub mounts: Vec<RunMount>,
    pub network: Option<Spanned<Network>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A private network namespace (the default unless `--network` says otherwise).
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A mount on a `run` step.
#[derive(Debug, Clone)]
pub enum RunMount {
    Cache {
        target: Spanned<String>,
        id: Option<Spanned<String>>,
        sharing: CacheSharing,
        from: Option<Spanned<String>>,
        source: Option<Spanned<String>>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        readonly: bool,
        /// Saved to the registry step cache after the build and restored on other machines.
        export: bool,
    },
    Secret {
        id: Spanned<String>,
        target: Option<Spanned<String>>,
        env: Option<Spanned<String>>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// The SSH agent of `--ssh ID`, reachable at `target` (`SSH_AUTH_SOCK` points at the
    /// first one).
    Ssh {
        id: Option<Spanned<String>>,
        target: Option<Spanned<String>>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Tmpfs {
        target: Spanned<String>,
        size: Option<Spanned<String>>,
    },
    Bind {
        source: Spanned<String>,
        target: Spanned<String>,
        from: Option<Spanned<String>>,
        readwrite: bool,
    },
}

/// `copy` and `add`.
#[derive(Debug, Clone)]
pub struct CopyStep {
    pub add: bool,
    pub sources: Vec<Spanned<String>>,
    pub dest: Spanned<String>,
    pub from: Option<Spanned<String>>,
    pub chown: Option<Spanned<String>>,
    pub chmod: Option<Spanned<String>>,
    pub excludes: Vec<Spanned<String>>,
    pub link: bool,
    pub parents: bool,
    pub checksum: Option<Spanned<String>>,
}

/// `file PATH CONTENT`: writes inline content as one layer.
#[derive(Debug, Clone)]
pub struct FileStep {
    pub path: Spanned<String>,
    pub content: Spanned<String>,
    pub chown: Option<Spanned<String>>,
    pub chmod: Option<Spanned<String>>,
    /// `${…}` in the content is expanded like any other value (the default); `expand=#false`
    /// writes the content as it is.
    pub expand: bool,
}

#[derive(Debug, Clone)]
pub enum Healthcheck {
    None,
    Check {
        test: Vec<Spanned<String>>,
        shell: bool,
        interval: Option<Spanned<String>>,
        timeout: Option<Spanned<String>>,
        start_period: Option<Spanned<String>>,
        start_interval: Option<Spanned<String>>,
        retries: Option<Spanned<u32>>,
    },
}
