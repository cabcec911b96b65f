//! Printing: diagnostics, `error:`/`caused by:`/`hint:` messages, notes, colour detection.
//!
//! With `--progress json`, standard error carries only JSON objects, one per line (see the
//! book's "Machine-readable progress"): every function here then emits an event instead of
//! text. The mode is process-wide because every printer of a command must follow it, down to
//! the warnings of loading and planning; `cli::main` sets it once, before anything prints.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

use crate::diag::{Report, Severity};

/// Whether standard error speaks JSON lines (`--progress json`).
static JSON: AtomicBool = AtomicBool::new(false);

/// What the command wants the final `summary` event to say besides its exit code.
static SUMMARY: Mutex<Option<Map<String, Value>>> = Mutex::new(None);

/// Makes standard error carry JSON events only, for the rest of the process.
pub(super) fn use_json() {
    JSON.store(true, Ordering::SeqCst);
}

/// Whether standard error carries JSON events.
pub(super) fn json() -> bool {
    JSON.load(Ordering::SeqCst)
}

/// Writes one event, a JSON object on its own line, in one write so lines never interleave.
pub(super) fn emit(event: &Value) {
    let mut line = event.to_string();
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Whether stderr gets colours (a terminal, `NO_COLOR` unset, not JSON).
pub(super) fn stderr_color() -> bool {
    !json() && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints a line for a person (`warning: …`, `note: …`, what was written); in JSON mode a
/// `message` event.
pub(super) fn note(text: impl AsRef<str>) {
    let text = text.as_ref();
    if json() {
        emit(&json!({"event": "message", "level": level(text), "text": text}));
    } else {
        eprintln!("{text}");
    }
}

pub(super) fn print_report(report: &Report) {
    if json() {
        for event in diagnostic_events(report) {
            emit(&event);
        }
    } else {
        eprint!("{}", report.render(stderr_color()));
    }
}

/// How much a printed line matters, from the prefix it starts with.
fn level(text: &str) -> &'static str {
    ["error", "warning", "note"]
        .into_iter()
        .find(|l| text.strip_prefix(l).is_some_and(|rest| rest.starts_with(':')))
        .unwrap_or("info")
}

/// One `diagnostic` event per diagnostic of `report`, located by file, line and column.
fn diagnostic_events(report: &Report) -> Vec<Value> {
    report
        .diagnostics
        .iter()
        .map(|d| {
            let (line, column) = report.source.line_col(d.span.offset());
            json!({
                "event": "diagnostic",
                "severity": if d.severity == Severity::Error { "error" } else { "warning" },
                "code": format!("stack::{}", d.code),
                "message": d.message,
                "file": report.source.name,
                "line": line,
                "column": column,
                "label": d.label,
                "help": d.help,
            })
        })
        .collect()
}

/// Prints an operational error with its chain of causes and an optional hint; in JSON mode an
/// `error` event.
pub(super) fn print_error(e: &(dyn std::error::Error + 'static), hint: Option<&str>, color: bool) {
    let mut causes = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        causes.push(c.to_string());
        cur = c.source();
    }
    if json() {
        emit(&json!({"event": "error", "message": e.to_string(), "causes": causes, "hint": hint}));
        return;
    }
    let (red, bold, reset) = if color { ("\x1b[31m", "\x1b[1m", "\x1b[0m") } else { ("", "", "") };
    eprintln!("{red}{bold}error{reset}{bold}: {e}{reset}");
    for c in causes {
        eprintln!("  caused by: {c}");
    }
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
}

/// Adds the fields of the object `fields` to the final `summary` event (counts of steps, the
/// images).
pub(super) fn add_to_summary(fields: Value) {
    let Value::Object(fields) = fields else { return };
    let mut summary = SUMMARY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    summary.get_or_insert_with(Map::new).extend(fields);
}

/// In JSON mode, the last event: how the command ended and its exit code.
pub(super) fn finish(exit_code: u8) {
    if !json() {
        return;
    }
    let fields = SUMMARY.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let mut event = Map::new();
    event.insert("event".into(), "summary".into());
    event.insert("status".into(), status(exit_code).into());
    event.insert("exit_code".into(), exit_code.into());
    event.extend(fields.unwrap_or_default());
    emit(&Value::Object(event));
}

/// The exit code in words (the codes of `cli`'s documentation).
fn status(exit_code: u8) -> &'static str {
    match exit_code {
        0 => "succeeded",
        1 => "invalid-build-file",
        3 => "step-failed",
        130 => "interrupted",
        _ => "failed",
    }
}
