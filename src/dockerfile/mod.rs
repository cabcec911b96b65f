//! Dockerfile → stack.kdl importer. Parses a Dockerfile with `BuildKit`'s semantics and writes an
//! equivalent, idiomatic build file. Never runs anything.
//!
//! The pipeline: `parser` (with `directives` and the `shell_lex` word lexer) builds the `ast`,
//! then `convert` writes KDL text through `kdl_write`.
//!
//! Invariant: no IO, no process; the same input and options always give the same text.

pub mod ast;
mod convert;
mod directives;
mod kdl_write;
mod parser;
pub mod shell_lex;

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
}

/// Parses and converts. Err holds every error found (diagnostics with spans into `text`).
pub fn import(text: &str, options: &ImportOptions) -> Result<Imported, Vec<Diagnostic>> {
    let (ast, mut diags) = parse(text);
    if let Some(ast) = ast.filter(|_| !diags.iter().any(Diagnostic::is_error)) {
        let (kdl, more) = convert::convert(&ast, text, options);
        diags.extend(more);
        if options.strict {
            for d in &mut diags {
                d.severity = Severity::Error;
            }
        }
        if !diags.iter().any(Diagnostic::is_error) {
            return Ok(Imported { kdl, warnings: diags });
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
pub fn parse(text: &str) -> (Option<ast::Dockerfile>, Vec<Diagnostic>) {
    parser::parse(text)
}
