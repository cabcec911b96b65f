//! Parser directives (`# syntax=`, `# escape=`, `# check=`): recognised only in the comment
//! lines at the very top of the file, as `BuildKit` does.
//!
//! Invariant: the first line that is not a directive (an instruction, an empty line or any
//! other comment) ends the directive block for good.

use super::ast::{Directive, Span};
use crate::diag::Diagnostic;

const KNOWN: &[&str] = &["syntax", "escape", "check"];

/// Tracks the directive block while the parser walks the first lines.
#[derive(Debug)]
pub(crate) struct Directives {
    done: bool,
    pub(crate) found: Vec<Directive>,
    pub(crate) escape: char,
}

impl Directives {
    pub(crate) fn new() -> Self {
        Self { done: false, found: Vec::new(), escape: '\\' }
    }

    /// Looks at one line (left-trimmed, newline removed) starting at byte `offset`.
    /// Returns whether it was a directive; errors are pushed to `diags`.
    pub(crate) fn line(&mut self, line: &str, offset: usize, diags: &mut Vec<Diagnostic>) -> bool {
        if self.done {
            return false;
        }
        let Some((name, value)) = parse_directive(line) else {
            self.done = true;
            return false;
        };
        let lower = name.to_ascii_lowercase();
        if !KNOWN.contains(&lower.as_str()) {
            self.done = true;
            return false;
        }
        let span: Span = offset..offset + line.len();
        if let Some(first) = self.found.iter().find(|d| d.name == lower) {
            diags.push(
                Diagnostic::error(
                    "dockerfile-duplicate-directive",
                    format!("only one `{lower}` parser directive can be used"),
                    span,
                    "repeated directive",
                )
                .with_related(first.span.clone(), "first set here"),
            );
            return true;
        }
        if lower == "escape" {
            match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => diags.push(
                    Diagnostic::error(
                        "dockerfile-invalid-escape",
                        format!("invalid escape token `{value}`"),
                        span.clone(),
                        "not an escape character",
                    )
                    .with_help("the escape character must be ` (backtick) or \\ (backslash)"),
                ),
            }
        }
        self.found.push(Directive { name: lower, value: value.to_string(), span });
        true
    }
}

/// Splits `# name = value` (`BuildKit`: `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || i > 0 && c.is_ascii_digit()))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_directives() {
        assert_eq!(parse_directive("# escape=`"), Some(("escape", "`")));
        assert_eq!(
            parse_directive("#SYNTAX = docker/dockerfile:1 "),
            Some(("SYNTAX", "docker/dockerfile:1"))
        );
        assert_eq!(
            parse_directive("# check=skip=all;error=true"),
            Some(("check", "skip=all;error=true"))
        );
        assert_eq!(parse_directive("# escape ="), None);
        assert_eq!(parse_directive("# just a comment"), None);
        assert_eq!(parse_directive("#1x=y"), None);
    }

    #[test]
    fn block_ends_at_first_other_line() {
        let mut d = Directives::new();
        let mut diags = Vec::new();
        assert!(d.line("# escape=`", 0, &mut diags));
        assert!(!d.line("# hello", 11, &mut diags));
        assert!(!d.line("# syntax=x", 19, &mut diags));
        assert_eq!(d.escape, '`');
        assert!(diags.is_empty());
    }
}
