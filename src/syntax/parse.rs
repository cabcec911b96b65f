//! KDL document → typed AST. Reports every problem it finds instead of stopping at the first.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::ast::{
    ArgDecl, AttestDecl, BuildFile, CacheDecl, CacheSharing, CopyStep, FileStep, Healthcheck,
    Include, Network, RunMount, RunStep, Spanned, Step, StepKind, Target, TargetKind,
};
use crate::diag::{Diagnostic, did_you_mean};

/// Build-file format versions this stack understands.
pub(super) const SUPPORTED_VERSIONS: &[u32] = &[1];

pub const TOP_LEVEL: &[&str] =
    &["stack", "arg", "stage", "image", "include", "cache", "template", "platforms", "attest"];
pub const STEPS: &[&str] = &[
    "from",
    "run",
    "exec",
    "copy",
    "add",
    "file",
    "arg",
    "env",
    "label",
    "workdir",
    "user",
    "shell",
    "stopsignal",
    "maintainer",
    "cmd",
    "entrypoint",
    "expose",
    "volume",
    "healthcheck",
    "onbuild",
    "tag",
    "use",
    "matrix",
    "platforms",
];
pub const RUN_CHILDREN: &[&str] = &["cache", "secret", "ssh", "network", "tmpfs", "bind"];

/// Parses one build file's text.
pub fn parse(text: &str) -> (Option<BuildFile>, Vec<Diagnostic>) {
    let mut p = Parser { diags: Vec::new() };
    let file = p.document(text);
    (file, p.diags)
}

pub(super) struct Parser {
    diags: Vec<Diagnostic>,
}

/// A node's positional arguments and properties, split once.
pub(super) struct Entries<'a> {
    pub(super) args: Vec<&'a KdlEntry>,
    pub(super) props: Vec<(&'a str, &'a KdlEntry)>,
}

pub(super) fn entries(node: &KdlNode) -> Entries<'_> {
    let mut args = Vec::new();
    let mut props = Vec::new();
    for entry in node.entries() {
        match entry.name() {
            Some(name) => props.push((name.value(), entry)),
            None => args.push(entry),
        }
    }
    Entries { args, props }
}

impl Entries<'_> {
    pub(super) fn prop(&self, name: &str) -> Option<&KdlEntry> {
        // KDL: the last occurrence of a property wins.
        self.props.iter().rev().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

fn value_span(entry: &KdlEntry) -> SourceSpan {
    entry.span()
}

impl Parser {
    pub(super) fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn document(&mut self, text: &str) -> Option<BuildFile> {
        if text.trim().is_empty() {
            self.error(
                Diagnostic::error("empty-file", "the build file is empty", (0, 0), "nothing here")
                    .with_help("start with `stack version=1`, then declare an `image`"),
            );
            return None;
        }
        let doc = match KdlDocument::parse_v2(text) {
            Ok(doc) => doc,
            Err(err) => {
                self.kdl_syntax_errors(text, err);
                return None;
            }
        };
        let mut file = BuildFile::default();
        let nodes = doc.nodes();
        if nodes.is_empty() {
            self.error(
                Diagnostic::error(
                    "empty-file",
                    "the build file has no nodes",
                    (0, text.len()),
                    "only comments here",
                )
                .with_help("start with `stack version=1`, then declare an `image`"),
            );
            return None;
        }
        for (i, node) in nodes.iter().enumerate() {
            let name = node.name().value();
            match name {
                "stack" => {
                    if i != 0 {
                        self.error(Diagnostic::error(
                            "misplaced-version",
                            "`stack version=…` must be the first node",
                            node.name().span(),
                            "move this to the top of the file",
                        ));
                    }
                    file.version = self.version(node);
                }
                "arg" => {
                    self.no_children(node);
                    if let Some(arg) = self.arg(node) {
                        file.args.push(arg);
                    }
                }
                "stage" | "image" => {
                    if let Some(t) = self.target(node) {
                        file.targets.push(t);
                    }
                }
                "include" => file.includes.push(self.include(node)),
                "cache" => {
                    if let Some(c) = self.cache(node) {
                        file.caches.push(c);
                    }
                }
                "template" => {
                    if let Some(t) = self.template(node) {
                        file.templates.push(t);
                    }
                }
                "platforms" => file.platforms.extend(self.platforms(node)),
                "attest" => file.attest = Some(self.attest(node)),
                other => self.unknown_node(node, other, TOP_LEVEL, "at the top level"),
            }
        }
        if file.version.is_none() && !self.diags.iter().any(|d| d.code == "unsupported-version") {
            let first = &nodes[0];
            self.error(
                Diagnostic::error(
                    "missing-version",
                    "the build file does not start with `stack version=1`",
                    first.span(),
                    "expected `stack version=1` before this",
                )
                .with_help("add `stack version=1` as the first line"),
            );
        }
        Some(file)
    }

    /// Reports the KDL parser's errors, with stack's hints for the common mistakes.
    fn kdl_syntax_errors(&mut self, text: &str, err: kdl::KdlError) {
        for d in err.diagnostics {
            let message = d.message.unwrap_or_else(|| "invalid KDL syntax".to_owned());
            let hint = super::hints::for_syntax_error(text, &message, d.span);
            let (span, label, help, related) = match hint {
                Some(h) => (
                    h.span.unwrap_or_else(|| narrow_span(text, d.span)),
                    h.label.or(d.label),
                    Some(h.help),
                    h.related,
                ),
                None => (narrow_span(text, d.span), d.label, d.help, None),
            };
            let mut diag = Diagnostic::error(
                "kdl-syntax",
                message,
                span,
                label.unwrap_or_else(|| "here".to_owned()),
            );
            if let Some(help) = help {
                diag = diag.with_help(help);
            }
            if let Some((span, label)) = related {
                diag = diag.with_related(span, label);
            }
            self.error(diag);
        }
    }

    /// `include "PATH_OR_GLOB" … { arg NAME "VALUE" … }`.
    fn include(&mut self, node: &KdlNode) -> Include {
        let e = entries(node);
        self.only_props(node, &e, &[]);
        if e.args.is_empty() {
            self.missing_arg(node, "a path or glob of build files to include");
        }
        let paths = e.args.iter().filter_map(|a| self.string(a)).collect();
        let mut args = Vec::new();
        for child in node.children().map(KdlDocument::nodes).unwrap_or_default() {
            if child.name().value() != "arg" {
                self.unknown_node(child, child.name().value(), &["arg"], "inside `include`");
                continue;
            }
            self.no_children(child);
            let e = entries(child);
            self.only_props(child, &e, &[]);
            self.exact_args(child, &e, 2, "an arg's name and its value");
            if let [name, value] = e.args[..]
                && let (Some(name), Some(value)) = (self.string(name), self.scalar(value))
            {
                args.push((name, value));
            }
        }
        Include { paths, args }
    }

    /// `platforms "linux/amd64" "linux/arm64"` (checked by the planner, which knows platforms).
    fn platforms(&mut self, node: &KdlNode) -> Vec<Spanned<String>> {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &[]);
        if e.args.is_empty() {
            self.missing_arg(node, "a platform like `linux/arm64`");
        }
        e.args.into_iter().filter_map(|a| self.string(a)).collect()
    }

    /// `attest [sbom=BOOL] [sbom-format="spdx"|"cyclonedx"] [provenance=BOOL]`.
    fn attest(&mut self, node: &KdlNode) -> AttestDecl {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &["sbom", "sbom-format", "provenance"]);
        self.max_args(node, &e, 0);
        let sbom_format = e.prop("sbom-format").and_then(|p| self.string(p)).and_then(|s| {
            let known = ["spdx", "cyclonedx"];
            if known.contains(&s.value.as_str()) {
                Some(s.value)
            } else {
                self.bad_choice(&s, &known);
                None
            }
        });
        AttestDecl {
            sbom: e.prop("sbom").is_some_and(|p| self.bool(p)),
            sbom_format,
            provenance: e.prop("provenance").is_some_and(|p| self.bool(p)),
        }
    }

    /// `cache "REPO" [read-only=#true]`.
    fn cache(&mut self, node: &KdlNode) -> Option<CacheDecl> {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &["read-only"]);
        self.max_args(node, &e, 1);
        let Some(first) = e.args.first() else {
            self.missing_arg(node, "the registry repository of the cache");
            return None;
        };
        let repo = self.string(first)?;
        let read_only = e.prop("read-only").is_some_and(|p| self.bool(p));
        Some(CacheDecl { repository: repo, read_only })
    }

    fn version(&mut self, node: &KdlNode) -> Option<Spanned<u32>> {
        self.no_children(node);
        let e = entries(node);
        self.only_props(node, &e, &["version"]);
        self.max_args(node, &e, 0);
        let Some(entry) = e.prop("version") else {
            self.error(
                Diagnostic::error(
                    "missing-version",
                    "`stack` needs a `version`",
                    node.span(),
                    "no version here",
                )
                .with_help("write `stack version=1`"),
            );
            return None;
        };
        let v = match entry.value() {
            KdlValue::Integer(v) => u32::try_from(*v).ok(),
            _ => None,
        };
        match v {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => Some(Spanned::new(v, value_span(entry))),
            _ => {
                self.error(
                    Diagnostic::error(
                        "unsupported-version",
                        format!("build-file version {} is not supported", entry.value()),
                        value_span(entry),
                        "unsupported version",
                    )
                    .with_help("this stack reads `stack version=1`"),
                );
                None
            }
        }
    }

    fn arg(&mut self, node: &KdlNode) -> Option<ArgDecl> {
        let e = entries(node);
        self.only_props(node, &e, &["default"]);
        self.exact_args(node, &e, 1, "the argument's name");
        let name = self.string(e.args.first()?)?;
        if !is_var_name(&name.value) {
            self.error(
                Diagnostic::error(
                    "invalid-arg-name",
                    format!("`{}` is not a valid argument name", name.value),
                    name.span,
                    "invalid name",
                )
                .with_help("names are letters, digits and `_`, not starting with a digit"),
            );
        }
        let default = e.prop("default").and_then(|d| self.scalar(d));
        Some(ArgDecl { name, default })
    }

    fn target(&mut self, node: &KdlNode) -> Option<Target> {
        let kind =
            if node.name().value() == "image" { TargetKind::Image } else { TargetKind::Stage };
        let e = entries(node);
        self.only_props(node, &e, &[]);
        self.exact_args(node, &e, 1, "the name of the stage");
        let name = self.string(e.args.first()?)?;
        let mut target = Target {
            kind,
            name,
            steps: Vec::new(),
            tags: Vec::new(),
            matrix: Vec::new(),
            platforms: Vec::new(),
            span: node.span(),
        };
        let Some(children) = node.children() else {
            self.error(
                Diagnostic::error(
                    "missing-from",
                    format!("{} `{}` has no steps", node.name().value(), target.name.value),
                    node.span(),
                    "expected a `{ from … }` block",
                )
                .with_help("add a block with at least `from \"scratch\"`"),
            );
            return Some(target);
        };
        for child in children.nodes() {
            let step_name = child.name().value();
            if step_name == "platforms" {
                if kind == TargetKind::Stage {
                    self.error(
                        Diagnostic::error(
                            "platforms-on-stage",
                            "`platforms` only applies to an `image`",
                            child.span(),
                            "a stage is built for the platforms of the images that use it",
                        )
                        .with_help("set `platforms` on the images, or at the top level"),
                    );
                }
                target.platforms.extend(self.platforms(child));
                continue;
            }
            if step_name == "tag" {
                self.tags(child, &mut target);
                continue;
            }
            if step_name == "matrix" {
                self.matrix(child, &mut target);
                continue;
            }
            if let Some(kind) = self.step(child) {
                target.steps.push(Step {
                    kind,
                    span: child.span(),
                    name_span: child.name().span(),
                    origin: None,
                });
            }
        }
        self.check_from_is_first_and_only(node, &target);
        Some(target)
    }

    /// `tag "NAME" …` inside an `image` (a stage is not exported, so it has no tags).
    fn tags(&mut self, child: &KdlNode, target: &mut Target) {
        self.no_children(child);
        if target.kind == TargetKind::Stage {
            self.error(
                Diagnostic::error(
                    "tag-on-stage",
                    "`tag` only applies to an `image`",
                    child.span(),
                    "stages are not exported",
                )
                .with_help(format!("declare `image {}` to export it", target.name.value)),
            );
        }
        let e = entries(child);
        self.only_props(child, &e, &[]);
        if e.args.is_empty() {
            self.missing_arg(child, "an image name like `example/app:1.0`");
        }
        for a in e.args {
            if let Some(s) = self.string(a) {
                target.tags.push(s);
            }
        }
    }

    /// Reports a target whose `from` is missing, not the first step, or not the only one.
    fn check_from_is_first_and_only(&mut self, node: &KdlNode, target: &Target) {
        match target.steps.iter().position(|s| matches!(s.kind, StepKind::From { .. })) {
            Some(0) => {}
            Some(i) => {
                let step = &target.steps[i];
                self.error(
                    Diagnostic::error(
                        "misplaced-from",
                        "`from` must be the first step",
                        step.name_span,
                        "this `from` comes after other steps",
                    )
                    .with_help("move `from` to the top of the block"),
                );
            }
            None => self.error(
                Diagnostic::error(
                    "missing-from",
                    format!("{} `{}` has no `from`", node.name().value(), target.name.value),
                    target.name.span,
                    "every stage starts with `from`",
                )
                .with_help("add `from \"scratch\"` for an empty base, or name a stage or image"),
            ),
        }
        if target.steps.iter().filter(|s| matches!(s.kind, StepKind::From { .. })).count() > 1 {
            let second = target
                .steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::From { .. }))
                .nth(1)
                .expect("counted above");
            self.error(
                Diagnostic::error(
                    "misplaced-from",
                    "a stage has only one `from`",
                    second.name_span,
                    "second `from`",
                )
                .with_help("start another `stage` for a second base"),
            );
        }
    }

    pub(super) fn step(&mut self, node: &KdlNode) -> Option<StepKind> {
        let name = node.name().value();
        if name != "run" && name != "exec" && name != "copy" && name != "add" {
            self.no_children(node);
        }
        let e = entries(node);
        let kind = match name {
            "from" => {
                self.only_props(node, &e, &["platform"]);
                self.exact_args(
                    node,
                    &e,
                    1,
                    "a base: `scratch`, a stage name or an image reference",
                );
                let base = self.string(e.args.first()?)?;
                let platform = e.prop("platform").and_then(|p| self.string(p));
                StepKind::From { base, platform }
            }
            "run" | "exec" => StepKind::Run(self.run(node, &e, name == "exec")?),
            "copy" | "add" => StepKind::Copy(self.copy(node, &e, name == "add")?),
            "file" => {
                self.only_props(node, &e, &["chown", "chmod", "expand"]);
                self.exact_args(node, &e, 2, "a destination path and the file's content");
                if e.args.len() < 2 {
                    return None;
                }
                let path = self.string(e.args[0])?;
                let content = self.string(e.args[1])?;
                let chown = e.prop("chown").and_then(|p| self.scalar(p));
                let chmod = e.prop("chmod").and_then(|p| self.scalar(p));
                // Expanded like every other value unless `expand=#false` says to write it as
                // it is (a script with its own `${…}`, a quoted Dockerfile heredoc).
                let expand = e.prop("expand").is_none_or(|p| self.bool(p));
                StepKind::File(FileStep { path, content, chown, chmod, expand })
            }
            "arg" => StepKind::Arg(self.arg(node)?),
            "env" | "label" => {
                self.max_args(node, &e, 0);
                if e.props.is_empty() {
                    self.missing_arg(node, "at least one `NAME=\"value\"` pair");
                }
                let mut pairs = Vec::new();
                for (key, entry) in &e.props {
                    let key_span = entry.name().map_or(entry.span(), kdl::KdlIdentifier::span);
                    // Like Docker, any name without `=`, whitespace or NUL is accepted (`${…}`
                    // can only refer to letter/digit/`_` names, but the image may need others).
                    if name == "env"
                        && (key.is_empty()
                            || key.contains(['=', '\0'])
                            || key.contains(char::is_whitespace))
                    {
                        self.error(
                            Diagnostic::error(
                                "invalid-env-name",
                                format!("`{key}` is not a valid environment variable name"),
                                key_span,
                                "invalid name",
                            )
                            .with_help(
                                "environment names cannot be empty or hold `=`, spaces or NUL",
                            ),
                        );
                    }
                    if let Some(v) = self.scalar(entry) {
                        pairs.push((Spanned::new((*key).to_owned(), key_span), v));
                    }
                }
                if name == "env" { StepKind::Env(pairs) } else { StepKind::Label(pairs) }
            }
            "workdir" | "user" | "stopsignal" | "maintainer" => {
                self.only_props(node, &e, &[]);
                self.exact_args(node, &e, 1, "one value");
                let v = self.scalar(e.args.first()?)?;
                match name {
                    "workdir" => StepKind::Workdir(v),
                    "user" => StepKind::User(v),
                    "stopsignal" => StepKind::StopSignal(v),
                    _ => StepKind::Maintainer(v),
                }
            }
            "shell" | "cmd" | "entrypoint" | "expose" | "volume" | "onbuild" => {
                self.only_props(node, &e, &[]);
                if e.args.is_empty() && matches!(name, "shell" | "expose" | "volume" | "onbuild") {
                    self.missing_arg(node, "at least one value");
                }
                let values: Vec<_> = e.args.iter().filter_map(|a| self.scalar(a)).collect();
                match name {
                    "shell" => StepKind::Shell(values),
                    "cmd" => StepKind::Cmd(values),
                    "entrypoint" => StepKind::Entrypoint(values),
                    "expose" => StepKind::Expose(values),
                    "onbuild" => StepKind::Onbuild(values),
                    _ => StepKind::Volume(values),
                }
            }
            "healthcheck" => StepKind::Healthcheck(self.healthcheck(node, &e)?),
            "use" => StepKind::Use(self.use_step(node, &e)?),
            other => {
                self.unknown_node(node, other, STEPS, "inside a stage");
                return None;
            }
        };
        Some(kind)
    }

    fn run(&mut self, node: &KdlNode, e: &Entries<'_>, exec: bool) -> Option<RunStep> {
        self.only_props(node, e, &[]);
        if e.args.is_empty() {
            self.missing_arg(
                node,
                if exec { "the program and its arguments" } else { "a command" },
            );
        }
        let commands: Vec<_> = e.args.iter().filter_map(|a| self.string(a)).collect();
        let mut step = RunStep { exec, commands, mounts: Vec::new(), network: None };
        for child in node.children().map(KdlDocument::nodes).unwrap_or_default() {
            self.no_children(child);
            let ce = entries(child);
            let name = child.name().value();
            let mount = match name {
                "cache" => self.cache_mount(child, &ce),
                "secret" => self.secret_mount(child, &ce),
                "ssh" => Some(self.ssh_mount(child, &ce)),
                "tmpfs" => self.tmpfs_mount(child, &ce),
                "bind" => self.bind_mount(child, &ce),
                "network" => {
                    if let Some(network) = self.network(child, &ce) {
                        step.network = Some(network);
                    }
                    None
                }
                other => {
                    self.unknown_node(child, other, RUN_CHILDREN, "inside `run`");
                    None
                }
            };
            step.mounts.extend(mount);
        }
        Some(step)
    }

    /// `cache "TARGET" id=… sharing=… …` inside `run`.
    fn cache_mount(&mut self, child: &KdlNode, ce: &Entries<'_>) -> Option<RunMount> {
        self.only_props(
            child,
            ce,
            &["id", "sharing", "from", "source", "mode", "uid", "gid", "readonly", "export"],
        );
        self.exact_args(child, ce, 1, "the target path of the cache");
        let target = ce.args.first().and_then(|a| self.string(a))?;
        let sharing = match ce.prop("sharing").and_then(|p| self.string(p)) {
            None => CacheSharing::Shared,
            Some(s) => match s.value.as_str() {
                "shared" => CacheSharing::Shared,
                "private" => CacheSharing::Private,
                "locked" => CacheSharing::Locked,
                _ => {
                    self.bad_choice(&s, &["shared", "private", "locked"]);
                    CacheSharing::Shared
                }
            },
        };
        Some(RunMount::Cache {
            target,
            id: ce.prop("id").and_then(|p| self.string(p)),
            sharing,
            from: ce.prop("from").and_then(|p| self.string(p)),
            source: ce.prop("source").and_then(|p| self.string(p)),
            mode: ce.prop("mode").and_then(|p| self.mode(p)),
            uid: ce.prop("uid").and_then(|p| self.u32(p)),
            gid: ce.prop("gid").and_then(|p| self.u32(p)),
            readonly: ce.prop("readonly").is_some_and(|p| self.bool(p)),
            export: ce.prop("export").is_some_and(|p| self.bool(p)),
        })
    }

    /// `secret "ID" target=… env=… …` inside `run`.
    fn secret_mount(&mut self, child: &KdlNode, ce: &Entries<'_>) -> Option<RunMount> {
        self.only_props(child, ce, &["target", "env", "required", "mode", "uid", "gid"]);
        self.exact_args(child, ce, 1, "the secret's id");
        let id = ce.args.first().and_then(|a| self.string(a))?;
        Some(RunMount::Secret {
            id,
            target: ce.prop("target").and_then(|p| self.string(p)),
            env: ce.prop("env").and_then(|p| self.string(p)),
            required: ce.prop("required").is_some_and(|p| self.bool(p)),
            mode: ce.prop("mode").and_then(|p| self.mode(p)),
            uid: ce.prop("uid").and_then(|p| self.u32(p)),
            gid: ce.prop("gid").and_then(|p| self.u32(p)),
        })
    }

    /// `ssh ["ID"] target=… …` inside `run`; without an id it forwards the default agent.
    fn ssh_mount(&mut self, child: &KdlNode, ce: &Entries<'_>) -> RunMount {
        self.only_props(child, ce, &["target", "required", "mode", "uid", "gid"]);
        if ce.args.len() > 1 {
            self.exact_args(child, ce, 1, "the agent's id (or none: `default`)");
        }
        RunMount::Ssh {
            id: ce.args.first().and_then(|a| self.string(a)),
            target: ce.prop("target").and_then(|p| self.string(p)),
            required: ce.prop("required").is_some_and(|p| self.bool(p)),
            mode: ce.prop("mode").and_then(|p| self.mode(p)),
            uid: ce.prop("uid").and_then(|p| self.u32(p)),
            gid: ce.prop("gid").and_then(|p| self.u32(p)),
        }
    }

    /// `tmpfs "TARGET" size=…` inside `run`.
    fn tmpfs_mount(&mut self, child: &KdlNode, ce: &Entries<'_>) -> Option<RunMount> {
        self.only_props(child, ce, &["size"]);
        self.exact_args(child, ce, 1, "the target path");
        let target = ce.args.first().and_then(|a| self.string(a))?;
        let size = ce.prop("size").and_then(|p| self.scalar(p));
        Some(RunMount::Tmpfs { target, size })
    }

    /// `bind "SOURCE" target=… from=… readwrite=…` inside `run`.
    fn bind_mount(&mut self, child: &KdlNode, ce: &Entries<'_>) -> Option<RunMount> {
        self.only_props(child, ce, &["target", "from", "readwrite"]);
        self.exact_args(child, ce, 1, "the source path");
        let source = ce.args.first().and_then(|a| self.string(a))?;
        let Some(target) = ce.prop("target").and_then(|p| self.string(p)) else {
            self.error(
                Diagnostic::error(
                    "missing-property",
                    "`bind` needs `target=`",
                    child.span(),
                    "no target",
                )
                .with_help("write `bind \"src\" target=\"/mnt/src\"`"),
            );
            return None;
        };
        Some(RunMount::Bind {
            source,
            target,
            from: ce.prop("from").and_then(|p| self.string(p)),
            readwrite: ce.prop("readwrite").is_some_and(|p| self.bool(p)),
        })
    }

    /// `network "none" | "host" | "default"` inside `run`.
    fn network(&mut self, child: &KdlNode, ce: &Entries<'_>) -> Option<Spanned<Network>> {
        self.only_props(child, ce, &[]);
        self.exact_args(child, ce, 1, "`none`, `host` or `default`");
        let v = ce.args.first().and_then(|a| self.string(a))?;
        let net = match v.value.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            "default" => Network::Default,
            _ => {
                self.bad_choice(&v, &["none", "host", "default"]);
                return None;
            }
        };
        Some(Spanned::new(net, v.span))
    }

    fn copy(&mut self, node: &KdlNode, e: &Entries<'_>, add: bool) -> Option<CopyStep> {
        let allowed: &[&str] = if add {
            &["to", "from", "chown", "chmod", "link", "parents", "checksum", "keep-git-dir"]
        } else {
            &["to", "from", "chown", "chmod", "link", "parents", "exclude"]
        };
        self.only_props(node, e, allowed);
        if e.args.is_empty() {
            self.missing_arg(node, "at least one source path");
        }
        let sources: Vec<_> = e.args.iter().filter_map(|a| self.string(a)).collect();
        let Some(dest) = e.prop("to").and_then(|p| self.string(p)) else {
            if e.prop("to").is_none() {
                self.error(
                    Diagnostic::error(
                        "missing-property",
                        format!("`{}` needs a destination", node.name().value()),
                        node.span(),
                        "no `to=` here",
                    )
                    .with_help("add `to=\"/path/in/image/\"`"),
                );
            }
            return None;
        };
        let mut excludes: Vec<_> =
            e.prop("exclude").and_then(|p| self.string(p)).into_iter().collect();
        for child in node.children().map(KdlDocument::nodes).unwrap_or_default() {
            self.no_children(child);
            let ce = entries(child);
            if child.name().value() == "exclude" {
                self.only_props(child, &ce, &[]);
                if ce.args.is_empty() {
                    self.missing_arg(child, "at least one pattern");
                }
                excludes.extend(ce.args.iter().filter_map(|a| self.string(a)));
            } else {
                self.unknown_node(child, child.name().value(), &["exclude"], "inside `copy`");
            }
        }
        if sources.is_empty() {
            return None;
        }
        Some(CopyStep {
            add,
            sources,
            dest,
            from: e.prop("from").and_then(|p| self.string(p)),
            chown: e.prop("chown").and_then(|p| self.scalar(p)),
            chmod: e.prop("chmod").and_then(|p| self.scalar(p)),
            excludes,
            link: e.prop("link").is_some_and(|p| self.bool(p)),
            parents: e.prop("parents").is_some_and(|p| self.bool(p)),
            checksum: e.prop("checksum").and_then(|p| self.string(p)),
        })
    }

    fn healthcheck(&mut self, node: &KdlNode, e: &Entries<'_>) -> Option<Healthcheck> {
        self.only_props(
            node,
            e,
            &["shell", "interval", "timeout", "start-period", "start-interval", "retries"],
        );
        if e.args.len() == 1
            && e.props.is_empty()
            && let KdlValue::String(s) = e.args[0].value()
            && s == "none"
        {
            return Some(Healthcheck::None);
        }
        if e.args.is_empty() {
            self.missing_arg(node, "the check command, or `none`");
            return None;
        }
        let test: Vec<_> = e.args.iter().filter_map(|a| self.string(a)).collect();
        let shell = e.prop("shell").is_some_and(|p| self.bool(p));
        if shell && test.len() != 1 {
            self.error(Diagnostic::error(
                "wrong-argument-count",
                "`healthcheck … shell=#true` takes exactly one command string",
                node.span(),
                "several arguments here",
            ));
        }
        let retries =
            e.prop("retries").and_then(|p| self.u32(p).map(|v| Spanned::new(v, p.span())));
        Some(Healthcheck::Check {
            test,
            shell,
            interval: e.prop("interval").and_then(|p| self.duration(p)),
            timeout: e.prop("timeout").and_then(|p| self.duration(p)),
            start_period: e.prop("start-period").and_then(|p| self.duration(p)),
            start_interval: e.prop("start-interval").and_then(|p| self.duration(p)),
            retries,
        })
    }

    // ---- value helpers ----

    pub(super) fn string(&mut self, entry: &KdlEntry) -> Option<Spanned<String>> {
        if let KdlValue::String(s) = entry.value() {
            Some(Spanned::new(s.clone(), value_span(entry)))
        } else {
            self.error(
                Diagnostic::error(
                    "wrong-type",
                    format!("expected a string, found `{}`", entry.value()),
                    value_span(entry),
                    "not a string",
                )
                .with_help(format!("quote it: \"{}\"", entry.value())),
            );
            None
        }
    }

    /// A string, or a number taken as its decimal text (`expose 8080`, `user 1000`).
    pub(super) fn scalar(&mut self, entry: &KdlEntry) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::Integer(i) => Some(Spanned::new(i.to_string(), value_span(entry))),
            _ => self.string(entry),
        }
    }

    pub(super) fn bool(&mut self, entry: &KdlEntry) -> bool {
        if let KdlValue::Bool(b) = entry.value() {
            *b
        } else {
            self.error(
                Diagnostic::error(
                    "wrong-type",
                    format!("expected `#true` or `#false`, found `{}`", entry.value()),
                    value_span(entry),
                    "not a boolean",
                )
                .with_help("KDL booleans are written `#true` and `#false`"),
            );
            false
        }
    }

    fn u32(&mut self, entry: &KdlEntry) -> Option<u32> {
        if let KdlValue::Integer(i) = entry.value()
            && let Ok(v) = u32::try_from(*i)
        {
            return Some(v);
        }
        self.error(Diagnostic::error(
            "wrong-type",
            format!("expected a non-negative integer, found `{}`", entry.value()),
            value_span(entry),
            "not a number",
        ));
        None
    }

    fn mode(&mut self, entry: &KdlEntry) -> Option<u32> {
        let s = self.scalar(entry)?;
        if let Some(m) = parse_mode(&s.value) {
            Some(m)
        } else {
            self.error(
                Diagnostic::error(
                    "invalid-mode",
                    format!("`{}` is not an octal mode", s.value),
                    s.span,
                    "not octal",
                )
                .with_help("write the mode as an octal string, e.g. \"0644\""),
            );
            None
        }
    }

    fn duration(&mut self, entry: &KdlEntry) -> Option<Spanned<String>> {
        let s = self.string(entry)?;
        if parse_duration(&s.value).is_none() {
            self.error(
                Diagnostic::error(
                    "invalid-duration",
                    format!("`{}` is not a duration", s.value),
                    s.span,
                    "not a duration",
                )
                .with_help("write durations like \"30s\", \"1m30s\" or \"500ms\""),
            );
            return None;
        }
        Some(s)
    }

    pub(super) fn bad_choice(&mut self, v: &Spanned<String>, choices: &[&str]) {
        let mut d = Diagnostic::error(
            "invalid-value",
            format!("`{}` is not one of {}", v.value, list(choices)),
            v.span,
            "unexpected value",
        );
        if let Some(s) = did_you_mean(&v.value, choices.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        self.error(d);
    }

    // ---- shape checks ----

    pub(super) fn unknown_node(&mut self, node: &KdlNode, name: &str, known: &[&str], place: &str) {
        let mut d = Diagnostic::error(
            "unknown-node",
            format!("unknown node `{name}` {place}"),
            node.name().span(),
            "not a known node",
        );
        d = match (super::hints::continuation_help(name), did_you_mean(name, known.iter().copied()))
        {
            (Some(help), _) => d.with_help(help),
            (None, Some(s)) => d.with_help(format!("did you mean `{s}`?")),
            (None, None) => d.with_help(format!("expected one of {}", list(known))),
        };
        self.error(d);
    }

    pub(super) fn only_props(&mut self, node: &KdlNode, e: &Entries<'_>, allowed: &[&str]) {
        for (name, entry) in &e.props {
            if allowed.contains(name) {
                continue;
            }
            let span = entry.name().map_or(entry.span(), kdl::KdlIdentifier::span);
            let mut d = Diagnostic::error(
                "unknown-property",
                format!("`{}` has no property `{name}`", node.name().value()),
                span,
                "unknown property",
            );
            d = match did_you_mean(name, allowed.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if allowed.is_empty() => {
                    d.with_help(format!("`{}` takes no properties", node.name().value()))
                }
                None => d.with_help(format!("expected one of {}", list(allowed))),
            };
            self.error(d);
        }
    }

    pub(super) fn exact_args(&mut self, node: &KdlNode, e: &Entries<'_>, n: usize, what: &str) {
        if e.args.len() < n {
            self.missing_arg(node, what);
        } else {
            self.max_args(node, e, n);
        }
    }

    pub(super) fn max_args(&mut self, node: &KdlNode, e: &Entries<'_>, n: usize) {
        if e.args.len() > n {
            let extra = e.args[n];
            self.error(
                Diagnostic::error(
                    "wrong-argument-count",
                    format!(
                        "`{}` takes {n} argument{}, found {}",
                        node.name().value(),
                        if n == 1 { "" } else { "s" },
                        e.args.len()
                    ),
                    extra.span(),
                    "unexpected argument",
                )
                .with_help("remove the extra arguments"),
            );
        }
    }

    pub(super) fn missing_arg(&mut self, node: &KdlNode, what: &str) {
        self.error(Diagnostic::error(
            "wrong-argument-count",
            format!("`{}` is missing {what}", node.name().value()),
            node.span(),
            "incomplete node",
        ));
    }

    pub(super) fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            self.error(Diagnostic::error(
                "unexpected-children",
                format!("`{}` takes no block", node.name().value()),
                children.span(),
                "unexpected block",
            ));
        }
    }
}

fn list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

/// Whether `s` is a valid argument or environment variable name.
pub(crate) fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses an octal permission string such as `0755` or `755`.
pub(crate) fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`, `1.5s`, `1m3.0s`, `0`), the syntax of
/// Dockerfile `HEALTHCHECK` flags, into nanoseconds. No sign: a health check cannot wait less
/// than nothing.
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let mult: u64 = match &after[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(whole.checked_mul(mult)?)?;
        // The fraction, truncated to nanoseconds like Go (digits past 18 cannot matter).
        let frac = &frac[..frac.len().min(18)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().ok()?;
            let part = digits * u128::from(mult) / 10u128.pow(u32::try_from(frac.len()).ok()?);
            total = total.checked_add(u64::try_from(part).ok()?)?;
        }
        rest = &after[unit_len..];
    }
    Some(total)
}

/// kdl 6.7 sometimes underlines from the start of the file to the error; keep only the last
/// line of such a span so the caret lands on the mistake.
fn narrow_span(text: &str, span: SourceSpan) -> SourceSpan {
    let start = span.offset().min(text.len());
    let end = (start + span.len()).min(text.len());
    let slice = &text[start..end];
    match slice.trim_end_matches('\n').rfind('\n') {
        Some(nl) if slice.len() > 1 => {
            let s = start + nl + 1;
            let line_end = text[s..].find('\n').map_or(text.len(), |i| s + i);
            let e = end.min(line_end).max(s);
            // Skip leading indentation so the underline starts at the token.
            let indent = text[s..e].len() - text[s..e].trim_start().len();
            SourceSpan::from((s + indent, (e - s - indent).max(1)))
        }
        _ => span,
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;

    #[test]
    fn go_durations() {
        let s = 1_000_000_000;
        for (text, ns) in [
            ("30s", 30 * s),
            ("1m30s", 90 * s),
            ("500ms", s / 2),
            ("1.5s", 3 * s / 2),
            ("1m3.0s", 63 * s),
            (".5s", s / 2),
            ("2.h", 7200 * s),
            ("1us", 1_000),
            ("0", 0),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(text), Some(ns), "{text}");
        }
        for bad in ["", "5", "s", ".s", "-1s", "1x", "1.2.3s", "1s ", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
