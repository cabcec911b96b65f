//! [`ast::Dockerfile`] → `stack.kdl` text: one `stage`/`image` block per FROM, one node per
//! instruction, Dockerfile comments carried over, variables rewritten to stack's `${…}`.
//!
//! Invariant: every value keeps the meaning it has under `BuildKit`: expanded instructions are
//! rewritten through the shell lexer in template mode (so quoting, escapes and ARG scoping
//! are resolved here), non-expanded ones are escaped so stack does not expand them, and
//! `run` bodies are byte-identical to what `BuildKit` hands to the shell.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::ImportOptions;
use super::ast::{
    CommandLine, CopyArgs, Dockerfile, Healthcheck, HealthcheckCmd, Heredoc, Instruction, Item,
    KeyValue, Kind, Mount, MountType, Source, Span, Word,
};
use super::kdl_write::{comment, continued, ident_or_string, multi_line, quoted, string};
use super::parser::{parse_heredoc_word, type_name};
use super::shell_lex::{Lookup, ShellLex};
use crate::diag::{Diagnostic, did_you_mean};

/// Platform args `BuildKit` defines in the global scope.
const BUILTIN_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

const STEP: &str = "    ";
const CHILD: &str = "        ";

/// A build stage found in the Dockerfile.
struct StageInfo {
    /// Lower-case `AS` name.
    name: Option<String>,
    /// The name the stage gets in stack.kdl.
    emitted: String,
    /// Index of its FROM in `ast.items`.
    from_item: usize,
}

/// Variables in scope while converting one stage.
#[derive(Clone, Default)]
struct Scope {
    stage_args: HashSet<String>,
    env: HashSet<String>,
    shell: Option<Vec<String>>,
}

struct Converter<'a> {
    ast: &'a Dockerfile,
    text: &'a str,
    options: &'a ImportOptions,
    global_args: HashSet<String>,
    stages: Vec<StageInfo>,
    diags: Vec<Diagnostic>,
    out: String,
    origins: Vec<(Span, Span)>,
}

/// Converts a parsed Dockerfile; returns the text, where its parts came from, and every
/// diagnostic (errors included).
pub(crate) fn convert(
    ast: &Dockerfile,
    text: &str,
    options: &ImportOptions,
) -> (String, super::SpanMap, Vec<Diagnostic>) {
    let mut c = Converter {
        ast,
        text,
        options,
        global_args: HashSet::new(),
        stages: Vec::new(),
        diags: Vec::new(),
        out: String::new(),
        origins: Vec::new(),
    };
    c.convert_all();
    (c.out, super::SpanMap(c.origins), c.diags)
}

impl Converter<'_> {
    fn convert_all(&mut self) {
        self.collect_stages();
        let Some(target) = self.target() else { return };
        let image_name = self
            .options
            .image_name
            .clone()
            .or_else(|| self.stages[target].name.clone())
            .unwrap_or_else(|| "app".to_string());
        // A name chosen from outside (a tag, a folder) must not clash with another stage's.
        let mut image_name = image_name;
        while self.stages.iter().enumerate().any(|(i, s)| i != target && s.emitted == image_name) {
            image_name.push_str("-image");
        }
        self.stages[target].emitted = image_name;

        self.out.push_str("stack version=1\n");
        let first_from = self.stages.first().map_or(self.ast.items.len(), |s| s.from_item);
        let mut pending: Vec<String> = Vec::new();
        let mut wrote_top = false;
        for item in &self.ast.items[..first_from] {
            match item {
                Item::Comment(c) => pending.push(comment(&c.text)),
                Item::Instruction(inst) => {
                    if let Kind::Arg(decls) = &inst.kind {
                        // Consecutive ARGs stay together; a blank line or comment separates.
                        if !wrote_top || inst.blank_before || !pending.is_empty() {
                            self.out.push('\n');
                        }
                        for line in pending.drain(..) {
                            self.out.push_str(&line);
                            self.out.push('\n');
                        }
                        for d in decls {
                            let default =
                                self.arg_default(&d.name, d.default.as_deref(), &d.span, None);
                            let start = self.out.len();
                            let _ = writeln!(self.out, "arg {}{default}", ident_or_string(&d.name));
                            self.origins.push((start..self.out.len(), inst.span.clone()));
                            self.global_args.insert(d.name.clone());
                        }
                        wrote_top = true;
                    }
                }
            }
        }
        let mut scopes: Vec<Scope> = Vec::new();
        for idx in 0..self.stages.len() {
            let start = self.stages[idx].from_item;
            let end = self.stages.get(idx + 1).map_or(self.ast.items.len(), |s| s.from_item);
            // Comments right before the next FROM belong above that stage, not inside this one.
            let mut body_end = end;
            if idx + 1 < self.stages.len() {
                while body_end > start + 1
                    && matches!(&self.ast.items[body_end - 1], Item::Comment(_))
                {
                    body_end -= 1;
                }
            }
            self.out.push('\n');
            for line in pending.drain(..) {
                self.out.push_str(&line);
                self.out.push('\n');
            }
            let scope = self.stage(idx, start, body_end, target, &scopes);
            scopes.push(scope);
            for item in &self.ast.items[body_end..end] {
                if let Item::Comment(c) = item {
                    pending.push(comment(&c.text));
                }
            }
        }
        for line in pending.drain(..) {
            self.out.push_str(&line);
            self.out.push('\n');
        }
    }

    fn collect_stages(&mut self) {
        for (i, item) in self.ast.items.iter().enumerate() {
            if let Item::Instruction(inst) = item
                && let Kind::From { name, .. } = &inst.kind
            {
                let idx = self.stages.len();
                let name = name.as_ref().map(|n| n.text.clone());
                let emitted = name.clone().unwrap_or_else(|| format!("stage-{idx}"));
                self.stages.push(StageInfo { name, emitted, from_item: i });
            }
        }
    }

    fn target(&mut self) -> Option<usize> {
        let Some(t) = &self.options.target else { return Some(self.stages.len() - 1) };
        let lower = t.to_ascii_lowercase();
        if let Some(i) = self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        let mut d = Diagnostic::error(
            "dockerfile-unknown-target",
            format!("target stage `{t}` could not be found"),
            0..0,
            "no stage with this name",
        );
        let names: Vec<&str> = self.stages.iter().filter_map(|s| s.name.as_deref()).collect();
        if let Some(s) = did_you_mean(&lower, names.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if !names.is_empty() {
            d = d.with_help(format!("the named stages are: {}", names.join(", ")));
        }
        self.diags.push(d);
        None
    }

    /// ` default="…"` for an `arg` node, applying `--build-arg` overrides.
    fn arg_default(
        &mut self,
        name: &str,
        default: Option<&str>,
        span: &Span,
        scope: Option<&Scope>,
    ) -> String {
        // A stage ARG without a default inherits the global one, which carries the override.
        let inherits = scope.is_some() && default.is_none() && self.global_args.contains(name);
        if let Some((_, v)) = self.options.build_args.iter().rev().find(|(k, _)| k == name)
            && !inherits
        {
            return format!(" default={}", string(&literal(v)));
        }
        match default {
            None => String::new(),
            Some(d) => {
                let v = match scope {
                    Some(s) => self.expand(d, s, span),
                    None => self.expand_global(d, span),
                };
                format!(" default={}", string(&v))
            }
        }
    }

    fn warn(&mut self, code: &'static str, message: String, inst: &Instruction, help: &str) {
        let line_end = self.text[inst.span.start..]
            .find('\n')
            .map_or(inst.span.end, |i| inst.span.start + i)
            .min(inst.span.end);
        let mut d = Diagnostic::warning(code, message, inst.span.start..line_end, "here");
        if !help.is_empty() {
            d = d.with_help(help.to_string());
        }
        self.diags.push(d);
    }

    /// Expands a word with global args only (FROM lines, global ARG defaults).
    fn expand_global(&mut self, word: &str, span: &Span) -> String {
        let known = &self.global_args;
        let env = |n: &str| {
            if known.contains(n) || BUILTIN_ARGS.contains(&n) {
                Lookup::Keep
            } else {
                Lookup::Unset
            }
        };
        let r = ShellLex::template(self.ast.escape).process_word(word, &env);
        self.lexed(word, r, span)
    }

    /// Expands a word inside a stage.
    fn expand(&mut self, word: &str, scope: &Scope, span: &Span) -> String {
        let globals = &self.global_args;
        let env = |n: &str| {
            if scope.stage_args.contains(n) || scope.env.contains(n) {
                Lookup::Keep
            } else if globals.contains(n) || BUILTIN_ARGS.contains(&n) {
                // Docker only sees a global arg in a stage that re-declares it.
                Lookup::Unset
            } else if n == "PATH" {
                // stack gives every stage a `PATH` (the default one when the base has none).
                Lookup::Keep
            } else {
                // Possibly set by the base image's environment: leave it to build time, empty
                // when the base does not set it (BuildKit expands an unknown name to nothing).
                Lookup::KeepOrEmpty
            }
        };
        let r = ShellLex::template(self.ast.escape).process_word(word, &env);
        self.lexed(word, r, span)
    }

    /// Returns a lexed value, or reports its error and keeps the word as written.
    fn lexed(
        &mut self,
        word: &str,
        r: Result<String, super::shell_lex::LexError>,
        span: &Span,
    ) -> String {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    "dockerfile-bad-substitution",
                    format!("cannot expand `{word}`: {e}"),
                    span.clone(),
                    "in this value",
                ));
                word.to_string()
            }
        }
    }

    /// The stack reference for `COPY --from` / `--mount from=`: a stage name or an image.
    fn stage_ref(&self, from: &str, current: usize) -> (String, bool) {
        if let Ok(i) = from.parse::<usize>()
            && i < current
        {
            return (self.stages[i].emitted.clone(), true);
        }
        let lower = from.to_ascii_lowercase();
        if let Some(s) = self.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return (s.emitted.clone(), true);
        }
        (literal(from), false)
    }

    fn stage(
        &mut self,
        idx: usize,
        start: usize,
        end: usize,
        target: usize,
        scopes: &[Scope],
    ) -> Scope {
        let Item::Instruction(from_inst) = &self.ast.items[start] else { unreachable!() };
        let Kind::From { image, platform, .. } = &from_inst.kind else { unreachable!() };
        let mut scope = Scope::default();
        let keyword = if idx == target { "image" } else { "stage" };
        let name = self.stages[idx].emitted.clone();
        let _ = writeln!(self.out, "{keyword} {} {{", ident_or_string(&name));

        let base = self.expand_global(&image.text, &image.span);
        let lower = base.to_ascii_lowercase();
        let parent =
            self.stages[..idx].iter().position(|s| s.name.as_deref() == Some(lower.as_str()));
        let mut from_line = match parent {
            Some(p) => {
                scope.env.clone_from(&scopes[p].env);
                scope.stage_args.clone_from(&scopes[p].stage_args);
                scope.shell.clone_from(&scopes[p].shell);
                format!("{STEP}from {}", ident_or_string(&self.stages[p].emitted))
            }
            None if lower == "scratch" => format!("{STEP}from scratch"),
            None => format!("{STEP}from {}", string(&base)),
        };
        if let Some(p) = platform {
            // `$TARGETPLATFORM` is what a stage is built for anyway; `$BUILDPLATFORM` pins it
            // to the build machine (the cross-compilation idiom), which stack expands per
            // platform branch; anything else is a fixed platform.
            match p.text.trim() {
                "$TARGETPLATFORM" | "${TARGETPLATFORM}" => {}
                "$BUILDPLATFORM" | "${BUILDPLATFORM}" => {
                    from_line.push_str(" platform=\"${BUILDPLATFORM}\"");
                }
                _ => {
                    let v = self.expand_global(&p.text, &p.span);
                    let _ = write!(from_line, " platform={}", string(&v));
                }
            }
        }
        self.origins
            .push((self.out.len()..self.out.len() + from_line.len(), from_inst.span.clone()));
        self.out.push_str(&from_line);
        self.out.push('\n');

        let mut first = true;
        for item in &self.ast.items[start + 1..end] {
            let blank = match item {
                Item::Comment(c) => c.blank_before,
                Item::Instruction(i) => i.blank_before,
            };
            if blank && !first {
                self.out.push('\n');
            }
            first = false;
            match item {
                Item::Comment(c) => {
                    let _ = writeln!(self.out, "{STEP}{}", comment(&c.text));
                }
                Item::Instruction(inst) => {
                    let start = self.out.len();
                    self.step(inst, idx, &mut scope);
                    self.origins.push((start..self.out.len(), inst.span.clone()));
                }
            }
        }
        self.out.push_str("}\n");
        scope
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(STEP);
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn shell_form(scope: &Scope, text: &str) -> Vec<String> {
        let mut argv =
            scope.shell.clone().unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
        argv.push(text.to_string());
        argv
    }

    fn step(&mut self, inst: &Instruction, idx: usize, scope: &mut Scope) {
        match &inst.kind {
            Kind::From { .. } => unreachable!("FROM starts a stage"),
            Kind::Run { cmd, mounts, network, security } => {
                self.run(inst, cmd, mounts, network.as_ref(), security.as_ref(), idx, scope);
            }
            Kind::Cmd(cmd) | Kind::Entrypoint(cmd) => {
                let node = if matches!(inst.kind, Kind::Cmd(_)) { "cmd" } else { "entrypoint" };
                let argv = match cmd {
                    CommandLine::Exec(v) => v.clone(),
                    CommandLine::Shell { text, .. } => Self::shell_form(scope, text),
                };
                self.line(&format!("{node}{}", args_verbatim(&argv)));
            }
            Kind::Shell(argv) => {
                self.line(&format!("shell{}", args_verbatim(argv)));
                scope.shell = Some(argv.clone());
            }
            Kind::Label(pairs) => {
                let mut s = String::from("label");
                for kv in pairs {
                    let k = self.expand(&kv.key, scope, &kv.span);
                    let v = self.expand(&kv.value, scope, &kv.span);
                    let _ = write!(s, " {}={}", quoted(&k), string(&v));
                }
                self.line(&s);
            }
            Kind::Env(pairs) => self.env(pairs, scope),
            Kind::Maintainer(m) => self.line(&format!("maintainer {}", string(&literal(m)))),
            Kind::Expose(ports) | Kind::Volume(ports) => {
                let node = if matches!(inst.kind, Kind::Expose(_)) { "expose" } else { "volume" };
                let mut s = String::from(node);
                for p in ports {
                    let v = self.expand(&p.text, scope, &p.span);
                    let _ = write!(s, " {}", string(&v));
                }
                self.line(&s);
            }
            Kind::Add(c) => self.copy("add", inst, c, idx, scope),
            Kind::Copy(c) => self.copy("copy", inst, c, idx, scope),
            Kind::User(w) | Kind::Workdir(w) | Kind::StopSignal(w) => {
                let node = match inst.kind {
                    Kind::User(_) => "user",
                    Kind::Workdir(_) => "workdir",
                    _ => "stopsignal",
                };
                let v = self.expand(&w.text, scope, &w.span);
                self.line(&format!("{node} {}", string(&v)));
            }
            Kind::Arg(decls) => {
                for d in decls {
                    let default =
                        self.arg_default(&d.name, d.default.as_deref(), &d.span, Some(scope));
                    self.line(&format!("arg {}{default}", ident_or_string(&d.name)));
                    scope.stage_args.insert(d.name.clone());
                }
            }
            Kind::Healthcheck(Healthcheck::None) => self.line("healthcheck none"),
            Kind::Healthcheck(Healthcheck::Cmd(hc)) => self.line(&healthcheck(hc)),
            Kind::Onbuild(expr) => {
                // The trigger is kept as Dockerfile text, as the image config holds it; the
                // stage built from this one imports and runs it.
                let mut text = expr.clone();
                for h in &inst.heredocs {
                    text.push('\n');
                    text.push_str(&h.content);
                    text.push_str(&h.name);
                }
                self.line(&format!("onbuild {}", Self::string_at(&text, STEP)));
            }
        }
    }

    /// `env` from ENV pairs; a name no process environment can hold is reported and left out.
    fn env(&mut self, pairs: &[KeyValue], scope: &mut Scope) {
        let mut s = String::from("env");
        let mut names = Vec::new();
        for kv in pairs {
            let k = self.expand(&kv.key, scope, &kv.span);
            let v = self.expand(&kv.value, scope, &kv.span);
            // The same rule as the build file's `env`: the name must survive in a
            // process environment.
            if k.is_empty() || k.contains(['=', '\0']) || k.contains(char::is_whitespace) {
                self.diags.push(
                    Diagnostic::error(
                        "dockerfile-invalid-env",
                        format!("`{}` is not a valid environment variable name", k.escape_debug()),
                        kv.span.clone(),
                        "this name",
                    )
                    .with_help("names cannot be empty or hold `=`, spaces or NUL"),
                );
                continue;
            }
            let _ = write!(s, " {}={}", ident_or_string(&k), string(&v));
            names.push(k);
        }
        scope.env.extend(names);
        self.line(&s);
    }

    // The instruction parts are passed apart so callers need not rebuild a struct per call.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        inst: &Instruction,
        cmd: &CommandLine,
        mounts: &[Mount],
        network: Option<&Word>,
        security: Option<&Word>,
        idx: usize,
        scope: &Scope,
    ) {
        let mut children: Vec<String> = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        for m in mounts {
            children.push(self.mount(m, idx, scope));
        }
        if let Some(n) = network {
            children.push(format!("network {}", string(&n.text)));
        }
        if let Some(s) = security
            && s.text == "insecure"
        {
            comments.push("RUN --security=insecure".into());
            self.warn(
                "dockerfile-security-insecure",
                "`--security=insecure` has no stack equivalent; it was kept as a comment".into(),
                inst,
                "stack always runs `run` steps sandboxed",
            );
        }
        for c in &comments {
            let _ = writeln!(self.out, "{STEP}{}", comment(c));
        }
        let head = match cmd {
            CommandLine::Exec(argv) => {
                let mut s = String::from("exec");
                for a in argv {
                    let _ = write!(s, " {}", Self::string_at(a, STEP));
                }
                s
            }
            CommandLine::Shell { text, joins } => {
                if inst.heredocs.is_empty() {
                    format!("run {}", continued(text, joins, STEP))
                } else {
                    let body = self.heredoc_script(inst, text);
                    format!("run {}", Self::string_at(&body, STEP))
                }
            }
        };
        self.out.push_str(STEP);
        self.out.push_str(&head);
        if children.is_empty() {
            self.out.push('\n');
        } else {
            self.out.push_str(" {\n");
            for c in children {
                let _ = writeln!(self.out, "{CHILD}{c}");
            }
            let _ = writeln!(self.out, "{STEP}}}");
        }
    }

    /// The script the shell runs for a RUN with heredocs, as `BuildKit` builds it.
    fn heredoc_script(&mut self, inst: &Instruction, text: &str) -> String {
        if parse_heredoc_word(text).is_some() {
            // `RUN <<EOF`: the heredoc body is the whole script.
            let body = inst.heredocs[0].chomped();
            if body.starts_with("#!") {
                self.warn(
                    "dockerfile-heredoc-shebang",
                    "this heredoc starts with `#!`; BuildKit runs it as an executable file".into(),
                    inst,
                    "stack runs `run` scripts with the image shell; check the script runs under it",
                );
            }
            return body;
        }
        // Any other form: the shell gets the line and the bodies, and handles the heredocs.
        let mut script = text.to_string();
        for h in &inst.heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
        script
    }

    /// A string value; multi-line values are indented under a node at `indent`.
    fn string_at(s: &str, indent: &str) -> String {
        if s.contains('\n') { multi_line(s, indent) } else { string(s) }
    }

    fn text_of(&self, span: &Span) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }

    /// Keeps an expanded mount option that stack can take as written; reports the others (a
    /// value that still names a variable, or is not valid for `key`).
    fn mount_literal(
        &mut self,
        span: &Span,
        key: &str,
        value: Option<String>,
        valid: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let v = value?;
        if valid(&v) {
            return Some(v);
        }
        let why = if v.contains("${") {
            format!("`{key}` depends on a variable (`{v}`); stack needs a literal value")
        } else {
            format!("`{key}` expands to `{v}`, which is not valid here")
        };
        self.diags.push(
            Diagnostic::error("dockerfile-invalid-mount", why, span.clone(), "in this mount")
                .with_help(format!("write `{key}=` with a literal value")),
        );
        None
    }

    fn mount(&mut self, m: &Mount, idx: usize, scope: &Scope) -> String {
        let span = m.span.clone();
        let mut x = |v: &Option<String>| v.as_ref().map(|v| self.expand(v, scope, &span));
        let target = x(&m.target);
        let source = x(&m.source);
        let id = x(&m.id);
        let mode = x(&m.mode);
        let uid = x(&m.uid);
        let gid = x(&m.gid);
        let env = x(&m.env);
        let size = x(&m.size);
        let sharing = x(&m.sharing);
        // `$`-valued options are checked only now, once expanded: stack needs literals there.
        let sharing = self.mount_literal(&span, "sharing", sharing, |v| {
            matches!(v.to_ascii_lowercase().as_str(), "shared" | "private" | "locked")
        });
        let mode = self.mount_literal(&span, "mode", mode, |v| {
            u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777)
        });
        let uid = self.mount_literal(&span, "uid", uid, |v| v.parse::<u32>().is_ok());
        let gid = self.mount_literal(&span, "gid", gid, |v| v.parse::<u32>().is_ok());
        let sharing = sharing.map(|v| v.to_ascii_lowercase());
        let from = m.from.as_ref().map(|f| self.stage_ref(f, idx).0);
        let mut props = String::new();
        let mut prop = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                let _ = write!(props, " {k}={}", string(v));
            }
        };
        let numeric =
            |v: &Option<String>| v.as_ref().map(|s| s.parse::<u32>().map_err(|_| s.clone()));
        // What secret and ssh mounts share: `required`, and the mode and owner of the file.
        let access = |s: &mut String| {
            if m.required == Some(true) {
                s.push_str(" required=#true");
            }
            if let Some(mode) = &mode {
                let _ = write!(s, " mode={}", string(mode));
            }
            push_num(s, "uid", numeric(&uid));
            push_num(s, "gid", numeric(&gid));
        };
        let line = match m.mount_type() {
            MountType::Ssh => {
                prop("target", &target);
                let mut s = match id.as_deref() {
                    None | Some("default") => "ssh".to_owned(),
                    Some(i) => format!("ssh {}", string(i)),
                };
                s.push_str(&props);
                access(&mut s);
                s
            }
            MountType::Cache => {
                prop("id", &id);
                prop("sharing", &sharing);
                prop("from", &from);
                prop("source", &source);
                prop("mode", &mode);
                let mut s = format!("cache {}{props}", string(target.as_deref().unwrap_or("")));
                push_num(&mut s, "uid", numeric(&uid));
                push_num(&mut s, "gid", numeric(&gid));
                if m.readonly == Some(true) {
                    s.push_str(" readonly=#true");
                }
                s
            }
            MountType::Secret => {
                let secret_id = id
                    .clone()
                    .or_else(|| source.clone())
                    .or_else(|| {
                        target.as_ref().map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                    })
                    .unwrap_or_default();
                prop("target", &target);
                prop("env", &env);
                let mut s = format!("secret {}{props}", string(&secret_id));
                access(&mut s);
                s
            }
            MountType::Tmpfs => {
                prop("size", &size);
                format!("tmpfs {}{props}", string(target.as_deref().unwrap_or("")))
            }
            MountType::Bind => {
                prop("target", &target);
                prop("from", &from);
                let mut s = format!("bind {}{props}", string(source.as_deref().unwrap_or(".")));
                if m.readonly == Some(false) {
                    s.push_str(" readwrite=#true");
                }
                s
            }
        };
        let _ = type_name;
        line
    }

    fn copy(&mut self, node: &str, inst: &Instruction, c: &CopyArgs, idx: usize, scope: &Scope) {
        let dest_word = c.dest.clone().expect("COPY/ADD always has a destination");
        let dest = self.expand(&dest_word.text, scope, &dest_word.span);
        let chown = c.chown.as_ref().map(|w| self.expand(&w.text, scope, &w.span));
        let chmod = c.chmod.as_ref().map(|w| self.expand(&w.text, scope, &w.span));
        let mut paths = Vec::new();
        let mut docs: Vec<&Heredoc> = Vec::new();
        for s in &c.sources {
            match s {
                Source::Path(w) => paths.push(w.clone()),
                Source::Heredoc(i) => docs.push(&inst.heredocs[*i]),
            }
        }
        let git = paths.iter().any(|p| crate::syntax::is_git_source(&p.text));
        if git || c.keep_git_dir.is_some() {
            let first_line = self.text_of(&inst.span).lines().next().unwrap_or("").to_string();
            self.line(&comment(&first_line));
            self.warn(
                "dockerfile-add-git",
                "`ADD` of a git repository has no stack equivalent; it was kept as a comment"
                    .into(),
                inst,
                "clone the repository in a `run` step or add it to the build context",
            );
            return;
        }
        if c.unpack.is_some() {
            self.warn(
                "dockerfile-add-unpack",
                "`ADD --unpack` has no stack equivalent and was dropped".into(),
                inst,
                "stack's `add` unpacks local archives, as ADD does by default",
            );
        }
        let multiple = c.sources.len() > 1;
        for doc in &docs {
            let path = if dest.ends_with('/') || multiple {
                format!("{}/{}", dest.trim_end_matches('/'), doc.name)
            } else {
                dest.clone()
            };
            self.heredoc_file(doc, &path, chmod.as_deref(), chown.as_deref(), scope);
        }
        if paths.is_empty() {
            return;
        }
        let mut s = String::from(node);
        for p in &paths {
            let v = self.expand(&p.text, scope, &p.span);
            let _ = write!(s, " {}", string(&v));
        }
        let _ = write!(s, " to={}", string(&dest));
        if let Some(f) = &c.from {
            let (r, _) = self.stage_ref(&f.text, idx);
            let _ = write!(s, " from={}", quoted(&r));
        }
        if let Some(v) = &chown {
            let _ = write!(s, " chown={}", string(v));
        }
        if let Some(v) = &chmod {
            let _ = write!(s, " chmod={}", string(v));
        }
        if let Some(w) = &c.checksum {
            let v = self.expand(&w.text, scope, &w.span);
            let _ = write!(s, " checksum={}", string(&v));
        }
        if c.link {
            s.push_str(" link=#true");
        }
        if c.parents {
            s.push_str(" parents=#true");
        }
        if !c.excludes.is_empty() {
            s.push_str(" {\n");
            s.push_str(CHILD);
            s.push_str("exclude");
            for e in &c.excludes {
                let _ = write!(s, " {}", string(&literal(&e.text)));
            }
            let _ = write!(s, "\n{STEP}}}");
        }
        self.line(&s);
    }

    /// A `file` step holding a COPY/ADD heredoc's body, at `path`.
    fn heredoc_file(
        &mut self,
        doc: &Heredoc,
        path: &str,
        chmod: Option<&str>,
        chown: Option<&str>,
        scope: &Scope,
    ) {
        let content = self.heredoc_content(doc, scope);
        let mut s = format!("file {}", string(path));
        if let Some(v) = chmod {
            let _ = write!(s, " chmod={}", string(v));
        }
        if let Some(v) = chown {
            let _ = write!(s, " chown={}", string(v));
        }
        // stack expands `file` content by default: a heredoc BuildKit does not expand
        // (`<<"EOF"`) and that holds `${` is written as it is.
        if !doc.expand && content.contains("${") {
            s.push_str(" expand=#false");
        }
        let _ = write!(s, " {}", Self::string_at(&content, STEP));
        self.line(&s);
    }

    /// A heredoc's body, with the variables `BuildKit` would expand already expanded (those
    /// stack knows stay as references).
    fn heredoc_content(&mut self, doc: &Heredoc, scope: &Scope) -> String {
        let body = doc.chomped();
        if doc.expand {
            let lex = ShellLex { skip_process_quotes: true, ..ShellLex::template('\\') };
            let globals = self.global_args.clone();
            let env = |n: &str| {
                if scope.stage_args.contains(n) || scope.env.contains(n) {
                    Lookup::Keep
                } else if globals.contains(n) || BUILTIN_ARGS.contains(&n) {
                    Lookup::Unset
                } else {
                    Lookup::KeepOrEmpty
                }
            };
            match lex.process_word(&body, &env) {
                Ok(v) => v,
                Err(e) => {
                    self.diags.push(Diagnostic::error(
                        "dockerfile-bad-substitution",
                        format!("cannot expand the heredoc `{}`: {e}", doc.name),
                        doc.span.clone(),
                        "in this heredoc",
                    ));
                    body
                }
            }
        } else {
            body
        }
    }
}

fn push_num(s: &mut String, key: &str, v: Option<Result<u32, String>>) {
    match v {
        Some(Ok(n)) => {
            let _ = write!(s, " {key}={n}");
        }
        Some(Err(text)) => {
            let _ = write!(s, " {key}={}", string(&text));
        }
        None => {}
    }
}

/// Escapes text stack must not expand: `${` becomes `$${`.
fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

/// ` "a" "b"` for `cmd`, `entrypoint`, `shell` and `healthcheck`: neither `BuildKit` nor stack
/// expands them (they go to the image config as written), so they are not escaped either.
fn args_verbatim(argv: &[String]) -> String {
    let mut s = String::new();
    for a in argv {
        s.push(' ');
        s.push_str(&if a.contains('\n') { multi_line(a, STEP) } else { string(a) });
    }
    s
}

/// The `healthcheck` line of a HEALTHCHECK with a command: retries stay a number when they are one.
fn healthcheck(hc: &HealthcheckCmd) -> String {
    let HealthcheckCmd { cmd, interval, timeout, start_period, start_interval, retries } = hc;
    let mut s = match cmd {
        CommandLine::Exec(v) => format!("healthcheck{}", args_verbatim(v)),
        CommandLine::Shell { text, .. } => {
            format!("healthcheck {} shell=#true", string(text))
        }
    };
    for (k, w) in [
        ("interval", interval),
        ("timeout", timeout),
        ("start-period", start_period),
        ("start-interval", start_interval),
    ] {
        if let Some(w) = w {
            let _ = write!(s, " {k}={}", string(&w.text));
        }
    }
    if let Some(r) = retries {
        match r.text.parse::<u32>() {
            Ok(n) => {
                let _ = write!(s, " retries={n}");
            }
            Err(_) => {
                let _ = write!(s, " retries={}", string(&r.text));
            }
        }
    }
    s
}
