//! Build args: the top-level ones each file sees (`BuildKit`'s predefined platform args, the
//! main file's args, and an included file's own) and a stage's `arg` steps, with `--arg`
//! winning over what the files write.

use std::collections::BTreeMap;

use super::scope::Scope;
use super::stages::{Planner, StageState, StepAt};
use crate::diag::{Diagnostic, did_you_mean};
use crate::oci::image::{ImageConfig, Platform};
use crate::syntax::ast::ArgDecl;

impl Planner<'_> {
    /// Works out the top-level args of every file, the main file's first: an included file
    /// sees them, and its own.
    pub(super) fn collect_globals(&mut self) {
        let mut base = BTreeMap::new();
        for (name, value) in predefined_args(&self.target_platform, &Platform::host()) {
            let value = self.request.args.get(&name).cloned().unwrap_or(value);
            base.insert(name, value);
        }
        let main = self.file_args(0, base);
        self.globals = vec![main.clone()];
        for fi in 1..self.files.len() {
            let own = self.file_args(fi, main.clone());
            self.globals.push(own);
        }
    }

    /// `seen` with file `fi`'s own top-level args added: `--arg`, else the value its
    /// `include` gives, else its default.
    fn file_args(
        &mut self,
        fi: usize,
        mut seen: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let Some(file) = self.files.get(fi) else { return seen };
        let given = file.included.as_ref().map_or(&[][..], |i| &i.args[..]);
        self.check_include_args(fi);
        for arg in &file.ast.args {
            let name = arg.name.value.clone();
            if fi > 0 {
                self.check_arg_clash(fi, arg);
            }
            let included = given.iter().rev().find(|(n, _)| n.value == name);
            let (written, in_file) = match (included, &arg.default) {
                (Some((_, v)), _) => (Some(v), file.included.as_ref().map_or(fi, |i| i.by)),
                (None, d) => (d.as_ref(), fi),
            };
            let value = if let Some(v) = self.request.args.get(&name) {
                v.clone()
            } else if let Some(written) = written {
                let empty = BTreeMap::new();
                let config = ImageConfig(serde_json::Map::new());
                let scope = Scope { globals: &seen, stage_args: &empty, config: &config };
                match scope.expand(written, self.text(in_file)) {
                    Ok(v) => v,
                    Err(d) => {
                        self.error(in_file, d);
                        continue;
                    }
                }
            } else {
                String::new()
            };
            seen.insert(name, value);
        }
        seen
    }

    /// An included file's args are its own; one the main file declares too would mean two
    /// different things in two places.
    fn check_arg_clash(&mut self, fi: usize, arg: &ArgDecl) {
        let main = &self.files[0];
        let Some(first) = main.ast.args.iter().find(|a| a.name.value == arg.name.value) else {
            return;
        };
        let name = &arg.name.value;
        let d = Diagnostic::error(
            "duplicate-arg",
            format!("arg `{name}` is declared here and in the main file `{}`", main.source.name),
            arg.name.span,
            "declared again",
        )
        .with_help("the main file's args are seen by every file: remove one, or rename this one")
        .with_note(&main.source, first.name.span, "declared in the main file");
        self.error(fi, d);
    }

    /// Every `include … { arg NAME … }` names an arg the included file declares.
    fn check_include_args(&mut self, fi: usize) {
        let file = &self.files[fi];
        let Some(included) = &file.included else { return };
        let declared: Vec<&str> = file.ast.args.iter().map(|a| a.name.value.as_str()).collect();
        for (name, _) in &included.args {
            if declared.contains(&name.value.as_str()) {
                continue;
            }
            let mut d = Diagnostic::error(
                "unknown-include-arg",
                format!("`{}` declares no top-level arg `{}`", file.source.name, name.value),
                name.span,
                "not an arg of the included file",
            );
            d = match did_you_mean(&name.value, declared.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("declare `arg {}` in that file", name.value)),
            };
            self.error(included.by, d);
        }
    }

    /// A stage's `arg` step: its value is `--arg`, else its default (expanded), else the
    /// top-level arg of that name.
    pub(super) fn declare_arg(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        decl: &ArgDecl,
    ) {
        let value = if let Some(v) = self.request.args.get(&decl.name.value) {
            Some(v.clone())
        } else if let Some(d) = &decl.default {
            let Some(v) = self.expand_in_stage(stage, at, d) else { return };
            Some(v)
        } else {
            self.globals[stage.file].get(&decl.name.value).cloned()
        };
        if let Some(v) = value {
            stage.stage_args.insert(decl.name.value.clone(), v);
            stage.unset_args.remove(&decl.name.value);
            stage.arg_wins.insert(decl.name.value.clone());
        } else {
            // Declared without a value: `${NAME}` is empty, and `run` steps do not see it at
            // all (BuildKit leaves it unset).
            stage.stage_args.insert(decl.name.value.clone(), String::new());
            stage.unset_args.insert(decl.name.value.clone());
        }
    }
}

/// The platform args `BuildKit` predefines in the global scope: `TARGETPLATFORM`,
/// `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` for `target` and their `BUILD…` twins for `build`.
pub(crate) fn predefined_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut args = target.args("TARGET");
    args.extend(build.args("BUILD"));
    args
}
