//! Printing: diagnostics, `error:`/`caused by:`/`hint:` messages, colour detection.

use std::io::IsTerminal;

use crate::diag::Report;

/// Whether stderr gets colours (a terminal, and `NO_COLOR` unset).
pub(super) fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub(super) fn print_report(report: &Report) {
    eprint!("{}", report.render(stderr_color()));
}

/// Prints an operational error with its chain of causes and an optional hint.
pub(super) fn print_error(e: &(dyn std::error::Error + 'static), hint: Option<&str>, color: bool) {
    let (red, bold, reset) = if color { ("\x1b[31m", "\x1b[1m", "\x1b[0m") } else { ("", "", "") };
    eprintln!("{red}{bold}error{reset}{bold}: {e}{reset}");
    let mut cur = e.source();
    while let Some(c) = cur {
        eprintln!("  caused by: {c}");
        cur = c.source();
    }
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
}
