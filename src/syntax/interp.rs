//! `${NAME}` expansion in build-file values, with the shell's modifier forms.
//!
//! Supported: `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`,
//! `${NAME:?msg}`, `${NAME?msg}`, `${NAME#glob}`, `${NAME##glob}`, `${NAME%glob}`,
//! `${NAME%%glob}`, `${NAME/glob/word}`, `${NAME//glob/word}`. `$${` is a literal `${`; a `$`
//! not followed by `{` is literal. Words inside modifiers are expanded too.

use std::ops::Range;

/// Why a value could not be expanded; `range` is a byte range inside the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpError {
    pub range: Range<usize>,
    pub message: String,
    pub kind: InterpErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InterpErrorKind {
    /// `${NAME}` names nothing defined.
    Undefined(String),
    /// `${NAME:?msg}` fired.
    Required(String),
    /// `${` without its `}`, or a bad name.
    Syntax,
}

/// Expands `value`; `lookup` returns the value of a defined name.
pub(crate) fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    let mut out = String::with_capacity(value.len());
    expand_into(value, 0, lookup, &mut out)?;
    Ok(out)
}

/// Lists the names a value refers to, in order of appearance (the tests check expansion with it).
#[cfg(test)]
pub(crate) fn references(value: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            rest = &rest[i + 2..];
            continue;
        }
        let after = &rest[i + 2..];
        let len =
            after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if len > 0 {
            names.push(after[..len].to_owned());
        }
        rest = &after[len..];
    }
    names
}

fn expand_into(
    value: &str,
    base: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), InterpError> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && value[i..].starts_with("$${") {
            out.push_str("${");
            i += 3;
            continue;
        }
        if bytes[i] == b'$' && value[i..].starts_with("${") {
            let close = matching_brace(value, i + 2).ok_or_else(|| InterpError {
                range: base + i..base + value.len(),
                message: "`${` is not closed by `}`".to_owned(),
                kind: InterpErrorKind::Syntax,
            })?;
            let inner = &value[i + 2..close];
            let expanded = expand_one(inner, base + i, base + close + 1, lookup)?;
            out.push_str(&expanded);
            i = close + 1;
            continue;
        }
        let ch = value[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(())
}

/// Finds the `}` that closes a `${` whose body starts at `from`, allowing nested `${…}`.
fn matching_brace(value: &str, from: usize) -> Option<usize> {
    let bytes = value.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_one(
    inner: &str,
    start: usize,
    end: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    let name_len =
        inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
    let name = &inner[..name_len];
    let err = |kind, message: String| InterpError { range: start..end, message, kind };
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(err(
            InterpErrorKind::Syntax,
            format!("`${{{inner}}}` does not start with a name"),
        ));
    }
    let op = &inner[name_len..];
    let value = lookup(name);
    let word = |w: &str| -> Result<String, InterpError> {
        let mut s = String::new();
        expand_into(w, start, lookup, &mut s)?;
        Ok(s)
    };
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    Ok(match op {
        "" => match value {
            Some(v) => v,
            None => {
                return Err(err(
                    InterpErrorKind::Undefined(name.to_owned()),
                    format!("`${{{name}}}` is not defined"),
                ));
            }
        },
        _ if op.starts_with(":-") => {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                word(&op[2..])?
            }
        }
        _ if op.starts_with(":+") => {
            if set_nonempty {
                word(&op[2..])?
            } else {
                String::new()
            }
        }
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let (msg, ok) = if let Some(m) = op.strip_prefix(":?") {
                (m, set_nonempty)
            } else {
                (&op[1..], value.is_some())
            };
            if ok {
                value.unwrap_or_default()
            } else {
                let msg = if msg.is_empty() { format!("`{name}` must be set") } else { word(msg)? };
                return Err(err(InterpErrorKind::Required(name.to_owned()), msg));
            }
        }
        _ if op.starts_with('-') => value.map_or_else(|| word(&op[1..]), Ok)?,
        _ if op.starts_with('+') => {
            if value.is_some() {
                word(&op[1..])?
            } else {
                String::new()
            }
        }
        _ if op.starts_with("##") => {
            strip_prefix(&value.unwrap_or_default(), &word(&op[2..])?, true)
        }
        _ if op.starts_with('#') => {
            strip_prefix(&value.unwrap_or_default(), &word(&op[1..])?, false)
        }
        _ if op.starts_with("%%") => {
            strip_suffix(&value.unwrap_or_default(), &word(&op[2..])?, true)
        }
        _ if op.starts_with('%') => {
            strip_suffix(&value.unwrap_or_default(), &word(&op[1..])?, false)
        }
        _ if op.starts_with('/') => {
            let (all, rest) = match op.strip_prefix("//") {
                Some(r) => (true, r),
                None => (false, &op[1..]),
            };
            let (pat, rep) = rest.split_once('/').unwrap_or((rest, ""));
            replace(&value.unwrap_or_default(), &word(pat)?, &word(rep)?, all)
        }
        _ => {
            return Err(err(
                InterpErrorKind::Syntax,
                format!("`${{{inner}}}` uses an unknown modifier"),
            ));
        }
    })
}

fn strip_prefix(value: &str, pat: &str, longest: bool) -> String {
    let mut cuts: Vec<usize> = value.char_indices().map(|(i, _)| i).chain([value.len()]).collect();
    if longest {
        cuts.reverse();
    }
    for cut in cuts {
        if glob_match(pat, &value[..cut]) {
            return value[cut..].to_owned();
        }
    }
    value.to_owned()
}

fn strip_suffix(value: &str, pat: &str, longest: bool) -> String {
    let mut cuts: Vec<usize> = value.char_indices().map(|(i, _)| i).chain([value.len()]).collect();
    if !longest {
        cuts.reverse();
    }
    for cut in cuts {
        if glob_match(pat, &value[cut..]) {
            return value[..cut].to_owned();
        }
    }
    value.to_owned()
}

fn replace(value: &str, pat: &str, rep: &str, all: bool) -> String {
    if pat.is_empty() {
        return value.to_owned();
    }
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < value.len() {
        if !replaced || all {
            // Longest match starting at i.
            let ends: Vec<usize> =
                value[i..].char_indices().map(|(j, c)| i + j + c.len_utf8()).collect();
            if let Some(end) = ends.into_iter().rev().find(|&e| glob_match(pat, &value[i..e])) {
                out.push_str(rep);
                i = end;
                replaced = true;
                continue;
            }
        }
        let ch = value[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Matches a shell glob (`*`, `?`, `[…]`, `\x`) against the whole of `text`.
pub(crate) fn glob_match(pat: &str, text: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|k| glob_at(&p[1..], &t[k..])),
        Some('?') => !t.is_empty() && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                return t.first() == Some(&'[') && glob_at(&p[1..], &t[1..]);
            };
            let Some(c) = t.first() else { return false };
            let class = &p[1..close];
            let (negate, class) = match class.first() {
                Some('!' | '^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if k + 2 < class.len() && class[k + 1] == '-' {
                    hit |= class[k] <= *c && *c <= class[k + 2];
                    k += 3;
                } else {
                    hit |= class[k] == *c;
                    k += 1;
                }
            }
            hit != negate && glob_at(&p[close + 1..], &t[1..])
        }
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob_at(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob_at(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("hello".into()),
            "EMPTY" => Some(String::new()),
            "PATHV" => Some("/usr/local/bin/tool.tar.gz".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> String {
        expand(s, &env).unwrap()
    }

    #[test]
    fn expands_every_form() {
        assert_eq!(ex("x${A}y"), "xhelloy");
        assert_eq!(ex("$${A} $A"), "${A} $A");
        assert_eq!(ex("${NOPE:-d}"), "d");
        assert_eq!(ex("${EMPTY:-d}"), "d");
        assert_eq!(ex("${EMPTY-d}"), "");
        assert_eq!(ex("${NOPE-d${A}}"), "dhello");
        assert_eq!(ex("${A:+alt}"), "alt");
        assert_eq!(ex("${EMPTY:+alt}"), "");
        assert_eq!(ex("${EMPTY+alt}"), "alt");
        assert_eq!(ex("${PATHV#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(ex("${PATHV##*/}"), "tool.tar.gz");
        assert_eq!(ex("${PATHV%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(ex("${PATHV%%.*}"), "/usr/local/bin/tool");
        assert_eq!(ex("${A/l/L}"), "heLlo");
        assert_eq!(ex("${A//l/L}"), "heLLo");
        assert_eq!(ex("${A/[hx]e/J}"), "Jllo");
    }

    #[test]
    fn reports_undefined_and_required() {
        let e = expand("ab${NOPE}", &env).unwrap_err();
        assert_eq!(e.range, 2..9);
        assert_eq!(e.kind, InterpErrorKind::Undefined("NOPE".into()));
        let e = expand("${EMPTY:?give it}", &env).unwrap_err();
        assert_eq!(e.message, "give it");
        assert!(expand("${A", &env).is_err());
        assert!(expand("${1A}", &env).is_err());
    }

    #[test]
    fn lists_references() {
        assert_eq!(references("${A}-${B:-${C}} $${D}"), ["A", "B", "C"]);
    }
}
