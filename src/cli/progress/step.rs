//! What the displays say about a step: a stable id, its name as one readable line, where it
//! is written, and for a failed `run` what can honestly be said about which command failed.

use petgraph::stable_graph::NodeIndex;
use serde_json::{Value, json};

use crate::plan::{FileInput, Plan};
use crate::syntax::ast::{RunStep, StepKind};

/// A step as the displays name it.
pub(super) struct StepInfo {
    /// Stable across builds of the same build file: `STAGE#INDEX`, the step's place in its
    /// stage (`STAGE#onbuildN` for a base's triggers).
    pub(super) id: String,
    pub(super) stage: String,
    /// One line: `[stage] run "make"`.
    pub(super) name: String,
    /// The file the user wrote (the Dockerfile of an imported build file) and the line.
    pub(super) file: String,
    pub(super) line: usize,
}

impl StepInfo {
    pub(super) fn of(plan: &Plan, files: &[FileInput], node: NodeIndex) -> Self {
        let n = &plan.graph[node];
        let (file, line) =
            files.get(n.file).map_or_else(|| (String::new(), 0), |f| f.line_of(n.span));
        let text = step_text(plan, files, node);
        let name = if n.stage.is_empty() { text } else { format!("[{}] {text}", n.stage) };
        let id = if n.identity.is_empty() {
            n.key.to_hex()[..12].to_owned()
        } else {
            n.identity.clone()
        };
        Self { id, stage: n.stage.clone(), name, file, line }
    }

    /// The fields every JSON step event carries.
    pub(super) fn json(&self) -> Value {
        json!({
            "id": self.id,
            "stage": self.stage,
            "name": self.name,
            "file": self.file,
            "line": self.line,
        })
    }
}

/// The step as written, on one line: `run "make"`.
pub(in crate::cli) fn step_text(plan: &Plan, files: &[FileInput], node: NodeIndex) -> String {
    run_step(files, plan, node).map_or_else(|| one_line(&plan.graph[node].label), run_name)
}

/// The shell-form `run` step a node was planned from, if it is one.
pub(in crate::cli) fn run_step<'a>(
    files: &'a [FileInput],
    plan: &Plan,
    node: NodeIndex,
) -> Option<&'a RunStep> {
    let n = &plan.graph[node];
    let ast = &files.get(n.file)?.ast;
    let step = ast.targets.iter().flat_map(|t| &t.steps).find(|s| s.span == n.span)?;
    match &step.kind {
        StepKind::Run(r) if !r.exec => Some(r),
        _ => None,
    }
}

/// `run "cmd" …` on one line: each command's first line, `…` where lines were left out.
fn run_name(r: &RunStep) -> String {
    let commands: Vec<String> = r
        .commands
        .iter()
        .map(|c| {
            let lines = script_lines(&c.value);
            let more = if lines.len() > 1 { " …" } else { "" };
            format!("\"{}{more}\"", lines.first().map_or("", String::as_str))
        })
        .collect();
    format!("run {}", commands.join(" "))
}

/// A label as one line: a line continuation (`\` at the end) is not shown.
fn one_line(label: &str) -> String {
    label.trim_end().trim_end_matches('\\').trim_end().to_owned()
}

/// The non-empty lines of a shell script, shell line continuations joined (`a \⏎ b` is the
/// one line `a b`, as the shell reads it).
pub(super) fn script_lines(script: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in script.lines() {
        let line = raw.trim();
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start.trim_end());
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let done = std::mem::take(&mut current);
        if !done.trim().is_empty() {
            lines.push(done.trim().to_owned());
        }
    }
    if !current.trim().is_empty() {
        lines.push(current.trim().to_owned());
    }
    lines
}

/// For a failed shell-form `run` of several commands that is not a plain `&&` chain (those
/// name their failing command, see `exec::chain`): what stack can say about which one failed. The script runs unchanged (`/bin/sh -c`, as `docker build` runs it): tracing it
/// (`set -x`) would add lines to what its commands print, which a command capturing its own
/// output would then store in the image, and would print the values of secrets. So stack
/// cannot know which command failed, and says so, with what points at it.
pub(in crate::cli) fn which_command_failed(r: &RunStep, exit_code: Option<i32>) -> Option<String> {
    let lines: Vec<String> = r.commands.iter().flat_map(|c| script_lines(&c.value)).collect();
    let several = r.commands.len() > 1
        || lines.len() > 1
        || lines.iter().any(|l| l.contains("&&") || l.contains("||") || l.contains(';'));
    // Without an exit code the command never ran (or the sandbox failed): no command failed.
    let exit_code = exit_code?;
    let signal = (exit_code > 128).then_some(exit_code - 128);
    let mut note = match signal {
        Some(s) => format!("the command was killed by signal {s}{}", signal_hint(s)),
        None if several => String::new(),
        None => return None,
    };
    if several {
        if !note.is_empty() {
            note.push('\n');
        }
        note.push_str(
            "this `run` holds several commands and stack cannot tell which one failed: it runs \
             the script unchanged, as docker build does, and does not trace it (a trace would \
             change what the commands print and could show secrets). Where the commands are \
             joined with `&&` (as the commands of one `run` are) or the script sets `-e`, the \
             shell stopped at the failing one, so the output above ends with its own. To see \
             each command as it runs, start the script with `set -x`",
        );
    }
    Some(note)
}

fn signal_hint(signal: i32) -> &'static str {
    match signal {
        9 => " (SIGKILL: often the kernel's out-of-memory killer)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::script_lines;

    #[test]
    fn continuations_join_into_one_line() {
        assert_eq!(
            script_lines("apt-get update && \\\n    apt-get install -y curl\n"),
            ["apt-get update && apt-get install -y curl"]
        );
        assert_eq!(script_lines("\nset -e\n\nmake\n"), ["set -e", "make"]);
        assert_eq!(script_lines("a \\"), ["a"]);
    }
}
