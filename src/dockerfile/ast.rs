//! The Dockerfile syntax tree: one typed node per instruction, with flags already validated,
//! and byte spans into the original text for every diagnostic the converter may report.
//!
//! Invariant: values are stored as written (quotes, escapes and `$VAR` untouched) except
//! where `BuildKit`'s parser itself already resolves them (flag words, JSON arrays).

use std::ops::Range;

/// A byte range in the Dockerfile text.
pub(crate) type Span = Range<usize>;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dockerfile {
    pub directives: Vec<Directive>,
    /// The escape character: a backslash, or a backtick after an `escape` directive.
    pub escape: char,
    pub items: Vec<Item>,
}

/// A parser directive (`# syntax=…`, `# escape=…`, `# check=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    /// Lower-case name.
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// A top-level line group: a comment or an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Comment(Comment),
    Instruction(Box<Instruction>),
}

/// A `#` comment line (outside any continuation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comment {
    /// Text after the `#`, with surrounding whitespace removed.
    pub text: String,
    pub span: Span,
    /// An empty line separates it from what came before.
    pub blank_before: bool,
}

/// A word as written in the Dockerfile, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub span: Span,
}

/// One instruction, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instruction {
    /// The keyword as written (any case).
    pub keyword: String,
    /// From the keyword to the end of the last line (heredoc bodies included).
    pub span: Span,
    pub keyword_span: Span,
    pub kind: Kind,
    pub heredocs: Vec<Heredoc>,
    pub blank_before: bool,
}

/// A heredoc attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub chomp: bool,
    /// False when the delimiter was quoted: the body is not expanded.
    pub expand: bool,
    /// File descriptor before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// The body, as read (newlines included, tabs not yet stripped).
    pub content: String,
    pub span: Span,
}

impl Heredoc {
    /// The body after `<<-` tab stripping.
    pub(crate) fn chomped(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
    }
}

/// A command in shell or exec (JSON) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandLine {
    /// The text after the flags; `joins` are byte offsets where a continuation line began.
    Shell {
        text: String,
        joins: Vec<usize>,
    },
    Exec(Vec<String>),
}

/// `NAME=value` from ENV, LABEL (value as written, still to be expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyValue {
    pub key: String,
    pub value: String,
    pub span: Span,
}

/// `NAME` or `NAME=default` from ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
    pub span: Span,
}

/// The type of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// A `RUN --mount=…` (values as written; `BuildKit` expands them at build time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Mount {
    pub kind: Option<MountType>,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub sharing: Option<String>,
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// `Some(true)` for readonly/ro, `Some(false)` for rw/readwrite, `None` when not given.
    pub readonly: Option<bool>,
    pub required: Option<bool>,
    pub env: Option<String>,
    pub size: Option<String>,
    pub span: Span,
}

impl Mount {
    /// The mount type, `bind` when not given (`BuildKit`'s default).
    pub(crate) fn mount_type(&self) -> MountType {
        self.kind.unwrap_or(MountType::Bind)
    }
}

/// Sources and destination of COPY / ADD, and their flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CopyArgs {
    pub sources: Vec<Source>,
    pub dest: Option<Word>,
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<Word>,
    /// ADD only.
    pub checksum: Option<Word>,
    /// ADD only.
    pub keep_git_dir: Option<bool>,
    /// ADD only.
    pub unpack: Option<bool>,
    /// Sources and destination came from a JSON array.
    pub json: bool,
}

/// One COPY / ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Path(Word),
    /// Index into the instruction's heredocs.
    Heredoc(usize),
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Healthcheck {
    None,
    Cmd(Box<HealthcheckCmd>),
}

/// `HEALTHCHECK [flags] CMD …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthcheckCmd {
    pub cmd: CommandLine,
    pub interval: Option<Word>,
    pub timeout: Option<Word>,
    pub start_period: Option<Word>,
    pub start_interval: Option<Word>,
    pub retries: Option<Word>,
}

/// What an instruction does, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    From {
        image: Word,
        name: Option<Word>,
        platform: Option<Word>,
    },
    Run {
        cmd: CommandLine,
        mounts: Vec<Mount>,
        network: Option<Word>,
        security: Option<Word>,
    },
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Label(Vec<KeyValue>),
    Env(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<Word>),
    Add(CopyArgs),
    Copy(CopyArgs),
    Volume(Vec<Word>),
    User(Word),
    Workdir(Word),
    Arg(Vec<ArgDecl>),
    StopSignal(Word),
    Healthcheck(Healthcheck),
    /// The trigger instruction as written (after `ONBUILD`).
    Onbuild(String),
}

impl Kind {
    /// The canonical upper-case instruction name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::From { .. } => "FROM",
            Kind::Run { .. } => "RUN",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Shell(_) => "SHELL",
            Kind::Label(_) => "LABEL",
            Kind::Env(_) => "ENV",
            Kind::Maintainer(_) => "MAINTAINER",
            Kind::Expose(_) => "EXPOSE",
            Kind::Add(_) => "ADD",
            Kind::Copy(_) => "COPY",
            Kind::Volume(_) => "VOLUME",
            Kind::User(_) => "USER",
            Kind::Workdir(_) => "WORKDIR",
            Kind::Arg(_) => "ARG",
            Kind::StopSignal(_) => "STOPSIGNAL",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Onbuild(_) => "ONBUILD",
        }
    }
}

/// Every instruction `BuildKit` knows, for did-you-mean suggestions.
pub(crate) const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];
