//! The names a value may refer to while a stage is planned, and `${…}` expansion that turns
//! failures into located diagnostics.

use std::collections::BTreeMap;

use miette::SourceSpan;

use crate::diag::{Diagnostic, did_you_mean};
use crate::oci::image::ImageConfig;
use crate::syntax::ast::Spanned;
use crate::syntax::interp::{self, InterpErrorKind};

/// Build args and environment visible at one point of a stage.
pub(super) struct Scope<'a> {
    pub globals: &'a BTreeMap<String, String>,
    pub stage_args: &'a BTreeMap<String, String>,
    pub config: &'a ImageConfig,
}

impl Scope<'_> {
    /// The environment wins over stage args, which win over global args (Docker's order).
    pub(super) fn lookup(&self, name: &str) -> Option<String> {
        self.config
            .env_var(name)
            .or_else(|| self.stage_args.get(name).cloned())
            .or_else(|| self.globals.get(name).cloned())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.config.env().into_iter().map(|(k, _)| k).collect();
        names.extend(self.stage_args.keys().cloned());
        names.extend(self.globals.keys().cloned());
        names
    }

    /// Expands a value written in the build file whose text is `text`.
    pub(super) fn expand(&self, value: &Spanned<String>, text: &str) -> Result<String, Diagnostic> {
        interp::expand(&value.value, &|n| self.lookup(n)).map_err(|e| {
            let span = sub_span(text, value, e.range.clone());
            match e.kind {
                InterpErrorKind::Undefined(name) => {
                    let names = self.names();
                    let d = Diagnostic::error(
                        "undefined-variable",
                        format!("`${{{name}}}` is not a defined arg or environment variable"),
                        span,
                        "undefined",
                    );
                    match did_you_mean(&name, names.iter().map(String::as_str)) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(format!(
                            "declare it with `arg {name} default=\"…\"`, or write `${{{name}:-default}}`"
                        )),
                    }
                }
                InterpErrorKind::Required(_) => Diagnostic::error("required-variable", e.message, span, "required here"),
                InterpErrorKind::Syntax => Diagnostic::error("bad-interpolation", e.message, span, "here")
                    .with_help("write `$${` for a literal `${`"),
            }
        })
    }
}

/// Narrows a value's span to `range` inside it when the value is written as a plain quoted
/// string (no escapes), so the caret lands on the `${…}` itself.
pub(super) fn sub_span(
    text: &str,
    value: &Spanned<String>,
    range: std::ops::Range<usize>,
) -> SourceSpan {
    let start = value.span.offset();
    let end = start + value.span.len();
    if let Some(raw) = text.get(start..end)
        && raw.len() == value.value.len() + 2
        && raw.starts_with('"')
        && raw[1..raw.len() - 1] == value.value
    {
        return SourceSpan::from((start + 1 + range.start, range.end - range.start));
    }
    value.span
}
