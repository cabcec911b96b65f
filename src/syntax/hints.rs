//! Hints for KDL syntax errors: the parser's messages speak of its grammar ("Expected
//! property value"); these say what a person most likely wrote and how to write it.
//!
//! Invariant: a hint only adds to the parser's diagnostic (a narrower span, a label, a help,
//! a related span); it never hides an error.

use miette::SourceSpan;

/// What to add to a KDL syntax diagnostic.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Hint {
    /// Where the mistake is, when the parser points elsewhere.
    pub span: Option<SourceSpan>,
    pub label: Option<String>,
    pub help: String,
    /// A second place that matters (the node that lacks its `{`).
    pub related: Option<(SourceSpan, String)>,
}

/// The hint for a KDL parser error with `message` at `span` in `text`, if one fits.
pub(super) fn for_syntax_error(text: &str, message: &str, span: SourceSpan) -> Option<Hint> {
    let start = span.offset().min(text.len());
    let end = (start + span.len()).min(text.len());
    let at = text.get(start..end).unwrap_or("");
    if message.contains("identifier") {
        return keyword_hint(at.trim());
    }
    if message.contains("property value") {
        return unquoted_value_hint(text, end);
    }
    if message.contains("end of document") && at.trim_start().starts_with('}') {
        return stray_brace_hint(text, start + at.len() - at.trim_start().len());
    }
    None
}

/// `required=true`: KDL v2 writes its keywords with `#`.
fn keyword_hint(word: &str) -> Option<Hint> {
    let keyword = match word {
        "true" | "false" | "null" | "inf" | "nan" => word,
        "-inf" => "-inf",
        _ => return None,
    };
    Some(Hint {
        label: Some(format!("write `#{keyword}`")),
        help: format!(
            "KDL v2 writes booleans as `#true` and `#false` (and `#null`, `#inf`, `#nan`); for the text `{keyword}`, quote it: \"{keyword}\""
        ),
        ..Hint::default()
    })
}

/// `to=/srv/www/`: a value with characters a bare KDL string cannot hold. The parser points
/// at the node; the hint points at the value after the `=`.
fn unquoted_value_hint(text: &str, from: usize) -> Option<Hint> {
    let rest = text.get(from..)?;
    let skip = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let value_start = from + skip;
    let value: &str = text[value_start..]
        .split(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
        .next()
        .unwrap_or("");
    if value.is_empty() || value.starts_with('"') {
        return None;
    }
    Some(Hint {
        span: Some(SourceSpan::from((value_start, value.len()))),
        label: Some("quote this value".to_owned()),
        help: format!(
            "a value other than a number or a plain word (letters, digits, `-`, `_`) must be quoted: write \"{value}\""
        ),
        ..Hint::default()
    })
}

/// A `}` where the document should end: a block above lacks its `{`, so its children were read
/// as siblings and this `}` closes nothing. The block is found by indentation: a line followed
/// by a more indented one, without `{` (or a `\` going on to the next line); the one indented
/// like the `}` first, else the last.
fn stray_brace_hint(text: &str, brace: usize) -> Option<Hint> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let brace_indent = brace - text[..brace].rfind('\n').map_or(0, |i| i + 1);
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for line in text[..brace].split_inclusive('\n') {
        let body = line.trim_end();
        if !body.trim().is_empty() && !body.trim_start().starts_with("//") {
            lines.push((offset, body));
        }
        offset += line.len();
    }
    let opens_block = |i: usize| {
        let (_, line) = lines[i];
        let next_deeper = lines.get(i + 1).is_some_and(|(_, n)| indent(n) > indent(line));
        next_deeper && !line.ends_with('{') && !line.ends_with('\\')
    };
    let candidates: Vec<usize> = (0..lines.len()).filter(|i| opens_block(*i)).collect();
    let chosen = candidates
        .iter()
        .find(|i| indent(lines[**i].1) == brace_indent)
        .or(candidates.last())
        .map(|i| lines[*i]);
    Some(match chosen {
        Some((at, line)) => {
            let head = line.trim();
            Hint {
                label: Some("this `}` closes no block".to_owned()),
                help: format!("`{head}` has no `{{`: write `{head} {{`"),
                related: Some((
                    SourceSpan::from((at + indent(line), head.len())),
                    "the block starts here, without `{`".to_owned(),
                )),
                ..Hint::default()
            }
        }
        None => Hint {
            label: Some("this `}` closes no block".to_owned()),
            help: "a `{` is missing at the start of the block this `}` ends, or this `}` is one too many".to_owned(),
            ..Hint::default()
        },
    })
}

/// The help for an unknown node whose name holds spaces: a quoted string on a line of its own,
/// most often an argument of the previous node (a multi-line `run`) whose line lacks its `\`.
pub(super) fn continuation_help(name: &str) -> Option<String> {
    name.contains(char::is_whitespace).then(|| {
        "a node's arguments end with its line: to go on with the previous node's arguments on \
         this line, end that line with `\\`; for a long script, write one multi-line string \
         (`run \"\"\"` … `\"\"\"`)"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_need_a_hash() {
        let text = "secret \"s\" required=true\n";
        let h = for_syntax_error(text, "Expected identifier string", (20, 4).into()).unwrap();
        assert!(h.help.contains("`#true`"), "{}", h.help);
        assert!(for_syntax_error(text, "Expected identifier string", (0, 6).into()).is_none());
    }

    #[test]
    fn unquoted_values_are_pointed_at() {
        let text = "    copy \"src/\" to=/srv/www/\n}\n";
        let h = for_syntax_error(text, "Expected property value", (4, 15).into()).unwrap();
        assert_eq!(h.span, Some((19, 9).into()));
        assert!(h.help.contains("\"/srv/www/\""), "{}", h.help);
    }

    #[test]
    fn a_stray_brace_points_at_the_block_without_one() {
        let text = "stack version=1\nimage app\n    from \"scratch\"\n}\n";
        let brace = text.rfind('}').unwrap();
        let h = for_syntax_error(text, "Expected end of document", (brace, 1).into()).unwrap();
        assert_eq!(h.related.unwrap().0, (16, 9).into());
        assert!(h.help.contains("write `image app {`"), "{}", h.help);
    }

    #[test]
    fn a_nested_block_without_its_brace_is_found() {
        let text = "stack version=1\nimage app {\n    from \"scratch\"\n    run \"make\" \\\n        \"all\"\n    run \"make\"\n        cache \"/c\"\n    }\n}\n";
        let brace = text.rfind('}').unwrap();
        let h = for_syntax_error(text, "Expected end of document", (brace, 1).into()).unwrap();
        let at = text.find("run \"make\"\n").unwrap();
        assert_eq!(h.related.unwrap().0, (at, 10).into());
        let one_too_many = "stack version=1\nimage app {\n    from \"scratch\"\n}\n}\n";
        let brace = one_too_many.rfind('}').unwrap();
        let h =
            for_syntax_error(one_too_many, "Expected end of document", (brace, 1).into()).unwrap();
        assert!(h.related.is_none() && h.help.contains("one too many"), "{}", h.help);
    }
}
