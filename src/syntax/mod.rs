//! Build-file text → typed AST with spans. No IO.
//!
//! Invariant: parsing never stops at the first problem; it returns every diagnostic it can
//! find together with whatever AST it could build.

pub mod ast;
mod hints;
pub(crate) mod interp;
mod parse;
mod reuse;

pub use parse::{RUN_CHILDREN, STEPS, TOP_LEVEL, parse};
pub(crate) use parse::{is_var_name, parse_duration, parse_mode};
pub(crate) use reuse::wrong_param_type;

/// Whether a `copy`/`add` source is a git repository the way `BuildKit` reads `ADD` sources:
/// `git@…`, `git://…`, `ssh://…`, `github.com/…`, or an `http(s)` URL whose path ends in
/// `.git` (before a `#ref` fragment).
pub(crate) fn is_git_source(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || ((s.starts_with("https://") || s.starts_with("http://"))
            && std::path::Path::new(base)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("git")))
        || s.starts_with("github.com/")
}

/// Whether a tree parsed with errors at `errors` is still whole enough to plan: every error
/// lies inside a stage or image the parser kept, and every stage starts with its `from`. A
/// dropped `arg`, stage or `from` would make the planner report its consequences (an
/// undefined variable, an unknown stage) as problems of their own.
pub fn errors_are_contained(ast: &ast::BuildFile, errors: &[miette::SourceSpan]) -> bool {
    ast.targets.iter().all(|t| t.from_step().is_some())
        && errors.iter().all(|e| {
            ast.targets.iter().any(|t| {
                t.span.offset() <= e.offset()
                    && e.offset() + e.len() <= t.span.offset() + t.span.len()
            })
        })
}

#[cfg(test)]
mod snapshot_tests;
