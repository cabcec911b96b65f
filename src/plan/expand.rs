//! Templates and matrices → plain stages, before planning. No IO.
//!
//! A `use NAME …` step is replaced by the template's steps with `${PARAM}` substituted, each
//! marked with its [`Origin`] so that problems point at the template line and the use site;
//! a target with a `matrix` becomes one target per combination of its axes' values.
//!
//! Invariant: templates and matrices reach cache keys only through the steps they produce
//! (the planner never sees a template), so editing a template changes exactly its users' keys.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{FileDiagnostic, FileInput};
use crate::diag::{Diagnostic, did_you_mean};
use crate::syntax::ast::{
    Origin, ParamValue, RunMount, Spanned, Step, StepKind, Target, Template, UseStep,
};
use crate::syntax::wrong_param_type;

/// How deep templates may use templates: deeper is certainly a cycle.
const MAX_DEPTH: usize = 32;

/// The files with every `use` and `matrix` expanded, and the problems found doing it.
pub(super) fn expand(files: &[FileInput]) -> (Cow<'_, [FileInput]>, Vec<FileDiagnostic>) {
    let reuses = files.iter().any(|f| {
        !f.ast.templates.is_empty()
            || f.ast.targets.iter().any(|t| {
                !t.matrix.is_empty() || t.steps.iter().any(|s| matches!(s.kind, StepKind::Use(_)))
            })
    });
    if !reuses {
        return (Cow::Borrowed(files), Vec::new());
    }
    let mut x = Expander { files, templates: BTreeMap::new(), diags: Vec::new() };
    x.collect_templates();
    let mut out = files.to_vec();
    for (fi, file) in out.iter_mut().enumerate() {
        let mut targets = Vec::new();
        for target in &files[fi].ast.targets {
            for mut instance in x.instances(fi, target) {
                let mut steps = Vec::new();
                x.expand_steps(&instance.steps, fi, &mut Vec::new(), &mut steps);
                instance.steps = steps;
                targets.push(instance);
            }
        }
        file.ast.targets = targets;
    }
    (Cow::Owned(out), x.diags)
}

struct Expander<'a> {
    files: &'a [FileInput],
    /// Template name → (file, index in that file's templates).
    templates: BTreeMap<String, (usize, usize)>,
    diags: Vec<FileDiagnostic>,
}

impl<'a> Expander<'a> {
    fn error(&mut self, file: usize, diagnostic: Diagnostic) {
        self.diags.push(FileDiagnostic { file, diagnostic });
    }

    fn template(&self, name: &str) -> Option<(usize, &'a Template)> {
        let &(fi, ti) = self.templates.get(name)?;
        Some((fi, &self.files[fi].ast.templates[ti]))
    }

    /// Shows `span` of file `at` in a diagnostic reported in file `from`.
    fn place(
        &self,
        d: Diagnostic,
        from: usize,
        at: usize,
        span: miette::SourceSpan,
        label: &str,
    ) -> Diagnostic {
        d.with_place(from == at, &self.files[at].source, span, label)
    }

    fn collect_templates(&mut self) {
        for (fi, file) in self.files.iter().enumerate() {
            for (ti, t) in file.ast.templates.iter().enumerate() {
                let name = &t.name.value;
                if let Some((first_file, first)) = self.template(name) {
                    let first_name = self.files[first_file].source.name.clone();
                    let d = Diagnostic::error(
                        "duplicate-template",
                        format!("template `{name}` is defined twice (first in `{first_name}`)"),
                        t.name.span,
                        "second definition",
                    )
                    .with_help("template names must be unique across all included files");
                    let d = self.place(d, fi, first_file, first.name.span, "first defined here");
                    self.error(fi, d);
                    continue;
                }
                self.templates.insert(name.clone(), (fi, ti));
            }
        }
    }

    /// The targets a target stands for: itself, or one per combination of its matrix.
    fn instances(&mut self, fi: usize, target: &Target) -> Vec<Target> {
        if target.matrix.is_empty() {
            return vec![target.clone()];
        }
        let mut combos: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for axis in &target.matrix {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    axis.values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(axis.name.value.clone(), v.value.clone());
                        c
                    })
                })
                .collect();
        }
        let mut out: Vec<Target> = Vec::new();
        let mut made: BTreeMap<String, String> = BTreeMap::new();
        for vars in combos {
            let mut t = target.clone();
            t.matrix.clear();
            substitute(&mut t.name.value, &vars);
            for tag in &mut t.tags {
                substitute(&mut tag.value, &vars);
            }
            for step in &mut t.steps {
                each_string(&mut step.kind, &mut |s| substitute(s, &vars));
            }
            let shown = show_vars(&vars);
            if let Some(first) = made.insert(t.name.value.clone(), shown.clone()) {
                self.error(fi, duplicate_instance(&t.name, &first, &shown));
                continue;
            }
            out.push(t);
        }
        out
    }

    /// Copies `steps` (written in file `fi`) to `out`, each `use` replaced by its template's.
    fn expand_steps(
        &mut self,
        steps: &[Step],
        fi: usize,
        stack: &mut Vec<String>,
        out: &mut Vec<Step>,
    ) {
        for step in steps {
            match &step.kind {
                StepKind::Use(u) => self.use_template(step, u, fi, stack, out),
                _ => out.push(step.clone()),
            }
        }
    }

    fn use_template(
        &mut self,
        step: &Step,
        u: &UseStep,
        fi: usize,
        stack: &mut Vec<String>,
        out: &mut Vec<Step>,
    ) {
        let name = &u.template.value;
        let Some((tf, template)) = self.template(name) else {
            return self.unknown_template(fi, &u.template);
        };
        if stack.contains(name) || stack.len() >= MAX_DEPTH {
            let d = Diagnostic::error(
                "template-cycle",
                format!("template `{name}` uses itself (through {})", stack.join(" → ")),
                u.template.span,
                "used again here",
            );
            return self.error(fi, d);
        }
        let Some(vars) = self.bind(step, u, fi, tf, template) else { return };
        let origin = Arc::new(Origin {
            template: name.clone(),
            file: tf,
            use_file: fi,
            use_span: step.span,
        });
        let mut produced = Vec::new();
        for t_step in &template.steps {
            let mut s = t_step.clone();
            each_string(&mut s.kind, &mut |v| substitute(v, &vars));
            if s.origin.is_none() && !matches!(s.kind, StepKind::Use(_)) {
                s.origin = Some(Arc::clone(&origin));
            }
            produced.push(s);
        }
        stack.push(name.clone());
        self.expand_steps(&produced, tf, stack, out);
        stack.pop();
    }

    fn unknown_template(&mut self, fi: usize, name: &Spanned<String>) {
        let mut d = Diagnostic::error(
            "unknown-template",
            format!("no template is named `{}`", name.value),
            name.span,
            "unknown template",
        );
        d = match did_you_mean(&name.value, self.templates.keys().map(String::as_str)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => {
                d.with_help("declare it with `template NAME { … }` in this file or an included one")
            }
        };
        self.error(fi, d);
    }

    /// The parameters' values for one `use`, or `None` after reporting every problem.
    fn bind(
        &mut self,
        step: &Step,
        u: &UseStep,
        fi: usize,
        tf: usize,
        template: &Template,
    ) -> Option<BTreeMap<String, String>> {
        let mut vars = BTreeMap::new();
        let mut ok = true;
        for (key, value) in &u.values {
            let Some(param) = template.params.iter().find(|p| p.name.value == key.value) else {
                ok = false;
                let d = unknown_param(template, key);
                let d = self.place(d, fi, tf, template.name.span, "the template");
                self.error(fi, d);
                continue;
            };
            if value.value.ty() != param.ty {
                ok = false;
                let d = wrong_param_type(&key.value, param.ty, value);
                let d = self.place(d, fi, tf, param.span, "declared here");
                self.error(fi, d);
                continue;
            }
            vars.insert(key.value.clone(), value.value.text());
        }
        for param in &template.params {
            if u.values.iter().any(|(k, _)| k.value == param.name.value) {
                continue;
            }
            if let Some(d) = &param.default {
                vars.insert(param.name.value.clone(), d.value.text());
                continue;
            }
            ok = false;
            let (t, p) = (&template.name.value, &param.name.value);
            let d = Diagnostic::error(
                "missing-param",
                format!("`use {t}` does not set the required parameter `{p}`"),
                step.name_span,
                format!("needs `{p}=…`"),
            )
            .with_help(match &param.description {
                Some(what) => format!("write `use {t} {p}=…` ({p}: {what})"),
                None => format!("write `use {t} {p}=…`"),
            });
            let d = self.place(d, fi, tf, param.span, "declared here without a default");
            self.error(fi, d);
        }
        ok.then_some(vars)
    }
}

fn unknown_param(template: &Template, key: &Spanned<String>) -> Diagnostic {
    let names = template.params.iter().map(|p| p.name.value.as_str());
    let d = Diagnostic::error(
        "unknown-param",
        format!("template `{}` has no parameter `{}`", template.name.value, key.value),
        key.span,
        "unknown parameter",
    );
    match did_you_mean(&key.value, names.clone()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!("its parameters: {}", names.collect::<Vec<_>>().join(", "))),
    }
}

/// `name=a, os=x`: a matrix combination as the user wrote its axes.
fn show_vars(vars: &BTreeMap<String, String>) -> String {
    vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

fn duplicate_instance(name: &Spanned<String>, first: &str, second: &str) -> Diagnostic {
    Diagnostic::error(
        "duplicate-stage",
        format!("the matrix makes `{}` twice: for {first} and for {second}", name.value),
        name.span,
        "this name does not tell the combinations apart",
    )
    .with_help("use every axis in the name, e.g. `image \"svc-${name}-${os}\"`")
}

/// Replaces `${NAME}` for each NAME of `vars` in `s`; `$${` and other `${…}` are left as they
/// are for the planner's (or the shell's) expansion.
pub(super) fn substitute(s: &mut String, vars: &BTreeMap<String, String>) {
    if !s.contains("${") {
        return;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with("$${") {
            out.push_str("$${");
            rest = &rest[3..];
            continue;
        }
        let name = rest.strip_prefix("${").and_then(|r| r.split_once('}')).map(|(n, _)| n);
        if let Some((n, v)) = name.and_then(|n| vars.get(n).map(|v| (n, v))) {
            out.push_str(v);
            rest = &rest[n.len() + 3..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    *s = out;
}

/// Calls `f` on every string a step holds (values, commands, mount fields, `use` values).
fn each_string(kind: &mut StepKind, f: &mut dyn FnMut(&mut String)) {
    let mut all = |v: &mut [Spanned<String>]| v.iter_mut().for_each(|s| f(&mut s.value));
    match kind {
        StepKind::From { base, platform } => {
            all(std::slice::from_mut(base));
            all(platform.as_mut_slice());
        }
        StepKind::Run(r) => {
            all(&mut r.commands);
            r.mounts.iter_mut().for_each(|m| mount_strings(m, &mut all));
        }
        StepKind::Copy(c) => {
            all(&mut c.sources);
            all(std::slice::from_mut(&mut c.dest));
            for o in [&mut c.from, &mut c.chown, &mut c.chmod, &mut c.checksum] {
                all(o.as_mut_slice());
            }
            all(&mut c.excludes);
        }
        StepKind::File(x) => {
            all(std::slice::from_mut(&mut x.path));
            all(std::slice::from_mut(&mut x.content));
            all(x.chown.as_mut_slice());
            all(x.chmod.as_mut_slice());
        }
        StepKind::Arg(a) => all(a.default.as_mut_slice()),
        StepKind::Env(pairs) | StepKind::Label(pairs) => {
            for (k, v) in pairs {
                all(std::slice::from_mut(k));
                all(std::slice::from_mut(v));
            }
        }
        StepKind::Workdir(v)
        | StepKind::User(v)
        | StepKind::StopSignal(v)
        | StepKind::Maintainer(v) => {
            all(std::slice::from_mut(v));
        }
        StepKind::Shell(v)
        | StepKind::Cmd(v)
        | StepKind::Entrypoint(v)
        | StepKind::Expose(v)
        | StepKind::Volume(v)
        | StepKind::Onbuild(v) => all(v),
        StepKind::Healthcheck(h) => healthcheck_strings(h, &mut all),
        StepKind::Use(u) => {
            for (_, v) in &mut u.values {
                if let ParamValue::String(s) = &mut v.value {
                    f(s);
                }
            }
        }
    }
}

fn mount_strings(m: &mut RunMount, all: &mut dyn FnMut(&mut [Spanned<String>])) {
    match m {
        RunMount::Cache { target, id, from, source, .. } => {
            all(std::slice::from_mut(target));
            for o in [id, from, source] {
                all(o.as_mut_slice());
            }
        }
        RunMount::Secret { id, target, env, .. } => {
            all(std::slice::from_mut(id));
            all(target.as_mut_slice());
            all(env.as_mut_slice());
        }
        RunMount::Ssh { id, target, .. } => {
            all(id.as_mut_slice());
            all(target.as_mut_slice());
        }
        RunMount::Tmpfs { target, size } => {
            all(std::slice::from_mut(target));
            all(size.as_mut_slice());
        }
        RunMount::Bind { source, target, from, .. } => {
            all(std::slice::from_mut(source));
            all(std::slice::from_mut(target));
            all(from.as_mut_slice());
        }
    }
}

fn healthcheck_strings(
    h: &mut crate::syntax::ast::Healthcheck,
    all: &mut dyn FnMut(&mut [Spanned<String>]),
) {
    if let crate::syntax::ast::Healthcheck::Check {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        ..
    } = h
    {
        all(test);
        for o in [interval, timeout, start_period, start_interval] {
            all(o.as_mut_slice());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn substitutes_only_the_given_names() {
        let vars = [("port".to_owned(), "9000".to_owned())].into_iter().collect();
        let mut s = "-p ${port} ${HOME} $${port} $port ${port".to_owned();
        substitute(&mut s, &vars);
        assert_eq!(s, "-p 9000 ${HOME} $${port} $port ${port");
    }
}
