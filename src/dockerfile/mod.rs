//! Dockerfile → stack.kdl importer. Parses a Dockerfile with `BuildKit`'s semantics and writes an
//! equivalent, idiomatic build file. Never runs anything.
//!
//! The pipeline: `parser` (with `directives` and the `shell_lex` word lexer) builds the `ast`,
//! then `convert` writes KDL text through `kdl_write`.
//!
//! Invariant: no IO, no process; the same input and options always give the same text.

pub(crate) mod ast;
mod convert;
mod directives;
mod kdl_write;
mod parser;
pub(crate) mod shell_lex;

#[cfg(test)]
mod tests;

use crate::diag::{Diagnostic, Severity};

/// How to import a Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The stage exported as the `image` (`--target`); the last stage when `None`.
    pub target: Option<String>,
    /// Name of the `image` node; the target stage's own name, else `app`, when `None`.
    pub image_name: Option<String>,
    /// Turns every warning into an error.
    pub strict: bool,
    /// `--build-arg NAME=VALUE`: overrides the default of the emitted `arg NAME` nodes.
    pub build_args: Vec<(String, String)>,
}

/// The result of a successful import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The stack.kdl text.
    pub kdl: String,
    /// Things the build file cannot express exactly, with spans into the Dockerfile.
    pub warnings: Vec<Diagnostic>,
    /// Where each part of `kdl` came from, so that a problem found later in the build file
    /// is shown at the Dockerfile's own line.
    pub origins: SpanMap,
}

/// Byte ranges of the generated build file and the Dockerfile instruction each came from,
/// in order of the build file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMap(pub Vec<(ast::Span, ast::Span)>);

impl SpanMap {
    /// The Dockerfile span for a span of the build file: the instruction that wrote it, or,
    /// when the build file's text at the span (quotes removed) is written in that instruction,
    /// exactly that text. `None` for parts no instruction wrote (the header, braces).
    pub fn to_dockerfile(&self, kdl: &str, dockerfile: &str, span: ast::Span) -> Option<ast::Span> {
        let (_, inst) = self.0.iter().find(|(k, _)| k.contains(&span.start))?;
        let written = kdl.get(span.clone()).unwrap_or("").trim_matches('"');
        let text = dockerfile.get(inst.clone()).unwrap_or("");
        if !written.is_empty()
            && let Some(at) = text.find(written)
        {
            return Some(inst.start + at..inst.start + at + written.len());
        }
        // The instruction's first line: continuation lines would make a long underline.
        let first = text.find('\n').unwrap_or(text.len());
        Some(inst.start..inst.start + first)
    }
}

/// Parses and converts. Err holds every error found (diagnostics with spans into `text`).
pub fn import(text: &str, options: &ImportOptions) -> Result<Imported, Vec<Diagnostic>> {
    let (ast, mut diags) = parse(text);
    if let Some(ast) = ast.filter(|_| !diags.iter().any(Diagnostic::is_error)) {
        let (kdl, origins, more) = convert::convert(&ast, text, options);
        diags.extend(more);
        if options.strict {
            for d in &mut diags {
                d.severity = Severity::Error;
            }
        }
        if !diags.iter().any(Diagnostic::is_error) {
            return Ok(Imported { kdl, warnings: diags, origins });
        }
    }
    if options.strict {
        for d in &mut diags {
            d.severity = Severity::Error;
        }
    }
    Err(diags.into_iter().filter(Diagnostic::is_error).collect())
}

/// Parses a Dockerfile into its syntax tree, reporting every problem found. The tree is
/// `None` only when nothing could be parsed (an empty file or only comments).
pub(crate) fn parse(text: &str) -> (Option<ast::Dockerfile>, Vec<Diagnostic>) {
    parser::parse(text)
}
