//! KDL v2 text writing: quoting strings, choosing between quoted, raw and multi-line forms,
//! and writing identifiers and comments.
//!
//! Invariant: every string written here parses back (with a KDL v2 parser) to exactly the
//! bytes it was given; readability only decides between forms that are all exact.

use std::fmt::Write as _;

/// Code points KDL v2 forbids anywhere in a document, even inside raw strings.
fn is_disallowed(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{E}'..='\u{1F}' | '\u{7F}'
        | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Characters KDL v2 reads as a newline; inside a single-line string they must be escaped,
/// and inside a multi-line string they would be normalised to `\n`.
fn is_kdl_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{B}' | '\u{C}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// KDL v2 unicode whitespace (not newlines).
fn is_kdl_space(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// True when `s` may be written literally inside a raw string (no escapes are possible there).
fn raw_safe(s: &str, multi_line: bool) -> bool {
    s.chars().all(|c| !is_disallowed(c) && (c == '\n' && multi_line || !is_kdl_newline(c)))
        && (!multi_line || s.split('\n').all(|l| l.is_empty() || !l.chars().all(is_kdl_space)))
}

/// Writes one escaped character for a (single- or multi-line) quoted string.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push('\t'),
        '\u{8}' => out.push_str("\\b"),
        '\u{C}' => out.push_str("\\f"),
        c if is_disallowed(c) || is_kdl_newline(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Writes `s` as an ordinary single-line quoted KDL string.
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out.push('"');
    out
}

/// The number of `#` a raw string needs so that `"#…#` never occurs inside `s`.
fn hashes_for(s: &str) -> usize {
    let mut n = 1;
    while s.contains(&format!("\"{}", "#".repeat(n))) {
        n += 1;
    }
    n
}

/// Writes `s` as a single-line value: raw (`#"…"#`) when it holds backslashes or quotes and
/// can be written without escapes (that reads like the original shell text), else quoted.
pub(crate) fn string(s: &str) -> String {
    if s.contains('\n') {
        return multi_line(s, "");
    }
    // `#"` before a value that starts with a quote can read as a multi-line raw string (`#"""`).
    if (s.contains('\\') || s.contains('"')) && raw_safe(s, false) && !s.starts_with('"') {
        let h = "#".repeat(hashes_for(s));
        return format!("{h}\"{s}\"{h}");
    }
    quoted(s)
}

/// Writes `s` as a KDL v2 multi-line string whose lines are indented by `indent` plus four
/// spaces; the closing `"""` sits at `indent` plus four, which is the prefix KDL removes.
pub(crate) fn multi_line(s: &str, indent: &str) -> String {
    let prefix = format!("{indent}    ");
    // A string ending in a newline needs one more (empty) line: KDL drops the newline that
    // precedes the closing quotes.
    let body = s;
    let mut out = String::new();
    let raw = (s.contains('\\') || s.contains("\"\"\"")) && raw_safe(s, true);
    let h = if raw { "#".repeat(hashes_for(s)) } else { String::new() };
    out.push_str(&h);
    out.push_str("\"\"\"\n");
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(&prefix);
        }
        if raw {
            out.push_str(line);
        } else if line.chars().all(is_kdl_space) {
            // A whitespace-only line would be read as empty: spell its whitespace as escapes.
            for c in line.chars() {
                match c {
                    ' ' => out.push_str("\\s"),
                    '\t' => out.push_str("\\t"),
                    c => {
                        let _ = write!(out, "\\u{{{:x}}}", c as u32);
                    }
                }
            }
        } else {
            let chars: Vec<char> = line.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                // Only a run of three quotes would end the string; escape its first quote.
                if c == '"' && chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    out.push_str("\\\"");
                } else if c == '"' {
                    out.push('"');
                } else {
                    push_escaped(&mut out, c);
                }
            }
        }
        out.push('\n');
    }
    out.push_str(&prefix);
    out.push_str("\"\"\"");
    out.push_str(&h);
    out
}

/// Writes a single-line string that was joined from several source lines (a Dockerfile line
/// continuation) back over several lines, using KDL's whitespace escape (`\` + newline) so
/// the value stays byte-identical. `joins` are byte offsets in `s` where a source line began.
pub(crate) fn continued(s: &str, joins: &[usize], indent: &str) -> String {
    let mut joins: Vec<usize> =
        joins.iter().copied().filter(|&j| j > 0 && j < s.len() && s.is_char_boundary(j)).collect();
    // A piece of only whitespace stays on the previous line: after a whitespace escape it
    // would have nothing but whitespace before the next `\`, and the escape would swallow it.
    let ends: Vec<usize> = joins.iter().skip(1).copied().chain([s.len()]).collect();
    let keep: Vec<bool> =
        joins.iter().zip(&ends).map(|(&j, &e)| !s[j..e].chars().all(is_kdl_space)).collect();
    let mut k = keep.iter();
    joins.retain(|_| *k.next().unwrap_or(&true));
    if joins.is_empty()
        || s.contains('\n')
        || s.chars().any(|c| is_disallowed(c) || is_kdl_newline(c))
    {
        return string(s);
    }
    let prefix = format!("{indent}    ");
    let mut out = String::from("\"");
    let mut start = 0;
    let mut pieces = Vec::new();
    for &j in &joins {
        pieces.push(&s[start..j]);
        start = j;
    }
    pieces.push(&s[start..]);
    // Leading whitespace of a piece moves to the end of the previous line, before the `\`,
    // because the escape swallows every whitespace character that follows it.
    let mut carry = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let trimmed = piece.trim_start_matches(is_kdl_space);
        let lead = &piece[..piece.len() - trimmed.len()];
        if i > 0 {
            carry.push_str(lead);
            for c in carry.chars() {
                push_escaped(&mut out, c);
            }
            carry.clear();
            out.push_str("\\\n");
            out.push_str(&prefix);
        } else {
            for c in lead.chars() {
                push_escaped(&mut out, c);
            }
        }
        for c in trimmed.chars() {
            push_escaped(&mut out, c);
        }
    }
    out.push('"');
    out
}

/// True when `s` can be written as a bare KDL v2 identifier string.
pub(crate) fn is_identifier(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    if matches!(s, "true" | "false" | "null" | "inf" | "-inf" | "nan") {
        return false;
    }
    let starts_numeric = first.is_ascii_digit()
        || ((first == '-' || first == '+' || first == '.')
            && s[1..].chars().next().is_some_and(|c| c.is_ascii_digit()))
        || ((first == '-' || first == '+')
            && s[1..].starts_with('.')
            && s[2..].chars().next().is_some_and(|c| c.is_ascii_digit()));
    !starts_numeric
        && s.chars().all(|c| {
            !c.is_whitespace()
                && !is_disallowed(c)
                && !is_kdl_newline(c)
                && !is_kdl_space(c)
                && !"\\/(){};[]=\"#".contains(c)
        })
}

/// Writes `s` bare when it is an identifier, else as a string.
pub(crate) fn ident_or_string(s: &str) -> String {
    if is_identifier(s) { s.to_string() } else { string(s) }
}

/// Writes a `// ` comment line body, making sure it holds only characters KDL allows.
pub(crate) fn comment(text: &str) -> String {
    let mut out = String::from("//");
    if !text.is_empty() {
        out.push(' ');
    }
    for c in text.chars() {
        if is_disallowed(c) || is_kdl_newline(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_back(value: &str) -> String {
        let doc = kdl::KdlDocument::parse_v2(&format!("node {value}\n"))
            .unwrap_or_else(|e| panic!("invalid KDL for {value:?}: {e:?}"));
        doc.nodes()[0].entries()[0].value().as_string().expect("a string").to_string()
    }

    const TRICKY: &[&str] = &[
        "",
        "plain",
        "with \"quotes\"",
        "back\\slash",
        "ends with \\",
        "hash \"# inside",
        "\"#\"##",
        "tab\there",
        "uni: é ü 日本 🚀",
        "ctrl \u{1} \u{7f} \u{feff} \u{2028}",
        "cr\r\nlf",
        "line1\nline2",
        "line1\nline2\n",
        "\nleading newline",
        "  indented\n\tTabbed\n",
        "spaces only line\n   \nend",
        "quotes \"\"\" in a\nmulti line",
        "raw \\ and \"\"\"#\n two",
        "a\n\n\nb\n\n",
        "${not} $${escaped}",
        "\"\"starts with two quotes\\",
        "\"\"\"",
        "\"",
    ];

    #[test]
    fn strings_round_trip() {
        for s in TRICKY {
            assert_eq!(parse_back(&string(s)), *s, "string({s:?}) = {}", string(s));
            assert_eq!(parse_back(&quoted(s)), *s, "quoted({s:?})");
            assert_eq!(parse_back(&multi_line(s, "    ")), *s, "multi_line({s:?})");
        }
    }

    #[test]
    fn continued_strings_round_trip() {
        let s = "apt-get update &&     apt-get install -y \"x\" &&   rm -rf /var/lib/apt";
        let joins = [18, 52];
        let written = continued(s, &joins, "    ");
        assert!(written.contains("\\\n"), "{written}");
        assert_eq!(parse_back(&written), s);
        assert_eq!(parse_back(&continued("a \\b", &[2], "")), "a \\b");
        // Whitespace-only continuation lines keep every space.
        let s = "echo 'hi   world'";
        let written = continued(s, &[9, 10, 11], "    ");
        assert_eq!(parse_back(&written), s, "{written}");
        assert_eq!(parse_back(&continued("a  ", &[1, 2], "")), "a  ");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("builder"));
        assert!(is_identifier("stage-0"));
        assert!(is_identifier("a.b_c"));
        assert!(!is_identifier("true"));
        assert!(!is_identifier("0stage"));
        assert!(!is_identifier("-1"));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier("a=b"));
        assert!(!is_identifier(""));
    }
}
