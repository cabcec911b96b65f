//! Diagnostics about the user's own files (build files, Dockerfiles), rendered like rustc.
//!
//! Invariant: a [`Diagnostic`] always carries a span into the text it was found in, and a
//! stable kebab-case code (`stack::unknown-node`) that the book documents.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a source file, with the span that shows where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable kebab-case code without the `stack::` prefix, e.g. `unknown-node`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: SourceSpan,
    pub label: String,
    pub help: Option<String>,
    /// Secondary spans (e.g. the first definition of a duplicate name).
    pub related: Vec<(SourceSpan, String)>,
    /// Places in other files that explain this one (the other definition of a name, the
    /// `use` of the template a step came from), each shown with its own file.
    pub elsewhere: Vec<Note>,
}

/// A labelled span in a file other than the diagnostic's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub source: SourceFile,
    pub span: SourceSpan,
    pub label: String,
}

impl Diagnostic {
    /// Creates an error with a primary span and label.
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        span: impl Into<SourceSpan>,
        label: impl Into<String>,
    ) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            span: span.into(),
            label: label.into(),
            help: None,
            related: Vec::new(),
            elsewhere: Vec::new(),
        }
    }

    /// Creates a warning with a primary span and label.
    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        span: impl Into<SourceSpan>,
        label: impl Into<String>,
    ) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message, span, label) }
    }

    /// Adds a `help:` line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary labelled span.
    #[must_use]
    pub fn with_related(mut self, span: impl Into<SourceSpan>, label: impl Into<String>) -> Self {
        self.related.push((span.into(), label.into()));
        self
    }

    /// Adds a labelled span of another file, shown after the diagnostic with that file.
    #[must_use]
    pub fn with_note(
        mut self,
        source: &SourceFile,
        span: SourceSpan,
        label: impl Into<String>,
    ) -> Self {
        self.elsewhere.push(Note { source: source.clone(), span, label: label.into() });
        self
    }

    /// Shows a place as a related label when it is in this diagnostic's own file, else as a
    /// note with its file.
    #[must_use]
    pub fn with_place(
        self,
        same_file: bool,
        source: &SourceFile,
        span: SourceSpan,
        label: impl Into<String>,
    ) -> Self {
        if same_file { self.with_related(span, label) } else { self.with_note(source, span, label) }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A source file's name and text, shared by all diagnostics found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { name: name.into(), text: Arc::new(text.into()) }
    }

    /// Returns the 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// Diagnostics bound to the file they were found in: what the CLI prints and tests pin.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn new(source: SourceFile, diagnostics: Vec<Diagnostic>) -> Self {
        Self { source, diagnostics }
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Renders every diagnostic like rustc does; `color` adds ANSI colours.
    pub fn render(&self, color: bool) -> String {
        let theme =
            if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
        let named = NamedSource::new(self.source.name.clone(), Arc::clone(&self.source.text));
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            let notes = diagnostic.elsewhere.iter().map(NoteView::new).collect();
            let located = Located { diagnostic, source: &named, notes };
            // Writing into a String cannot fail.
            let _ = handler.render_report(&mut out, &located);
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// A diagnostic together with its source, in the shape miette renders.
struct Located<'a> {
    diagnostic: &'a Diagnostic,
    source: &'a NamedSource<Arc<String>>,
    notes: Vec<NoteView>,
}

/// A [`Note`] in the shape miette renders as a related diagnostic with its own file.
#[derive(Debug)]
struct NoteView {
    label: String,
    span: SourceSpan,
    source: NamedSource<Arc<String>>,
}

impl NoteView {
    fn new(note: &Note) -> Self {
        let source = NamedSource::new(note.source.name.clone(), Arc::clone(&note.source.text));
        Self { label: note.label.clone(), span: note.span, source }
    }
}

impl fmt::Display for NoteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl std::error::Error for NoteView {}

impl miette::Diagnostic for NoteView {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = LabeledSpan::new_primary_with_span(Some("here".to_owned()), self.span);
        Some(Box::new(std::iter::once(label)))
    }
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diagnostic, f)
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Located<'_> {}

impl miette::Diagnostic for Located<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!("stack::{}", self.diagnostic.code)))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.diagnostic.label.clone()),
            self.diagnostic.span,
        );
        let related = self
            .diagnostic
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.notes.is_empty() {
            return None;
        }
        Some(Box::new(self.notes.iter().map(|n| n as &dyn miette::Diagnostic)))
    }
}

/// Returns the candidate closest to `word` when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbouring letters counts as one edit (optimal string
/// alignment), as the most common typos are (`chwon` for `chown`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// An error and its causes on one line (`a: b: c`), for messages that must fit in a label.
/// Whether the machine, not the build, failed somewhere in `e`'s chain: a full disk or quota,
/// a read-only file system, no memory. Such a failure is never blamed on a step of the build
/// file; the CLI gives it its own exit code.
pub(crate) fn is_machine_error(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            let kind = matches!(
                io.kind(),
                ErrorKind::StorageFull
                    | ErrorKind::QuotaExceeded
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::OutOfMemory
            );
            // ENOSPC, EDQUOT, EROFS, ENOMEM.
            if kind || matches!(io.raw_os_error(), Some(28 | 122 | 30 | 12)) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("cpy", ["copy", "run", "env"]), Some("copy"));
        assert_eq!(did_you_mean("bulder", ["builder", "app"]), Some("builder"));
        assert_eq!(did_you_mean("zzzzzz", ["copy", "run"]), None);
        // A swap of two neighbouring letters is one typo.
        assert_eq!(did_you_mean("chwon", ["chown", "chmod", "from"]), Some("chown"));
        assert_eq!(did_you_mean("cpoy", ["copy", "run"]), Some("copy"));
    }

    #[test]
    fn line_col_counts_from_one() {
        let src = SourceFile::new("f", "ab\ncd");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(4), (2, 2));
    }
}
