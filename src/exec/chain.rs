//! Telling which command of a failed `a && b && c` script failed, without changing what the
//! commands do or print: between the top-level commands of a pure `&&` chain the script
//! appends one byte to a marks file mounted outside the step's root; after a failure the
//! number of bytes is the number of commands that succeeded.
//!
//! Invariant: a script is instrumented only when it certainly is a plain `&&` chain (no `||`,
//! `;`, `&`, newline separators, comments, here-documents or unbalanced groups at the top
//! level); anything else runs exactly as written. A mark that cannot be written never stops
//! the chain.

/// Where the marks file is mounted in the step (a file bind mount: never part of the layer).
pub(crate) const MARKS_TARGET: &str = "/.stack-marks";

/// The top-level commands of `script` when it is a chain of two or more commands joined by
/// `&&`, with line continuations folded; `None` otherwise.
pub(crate) fn and_chain(script: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut chars = script.chars().peekable();
    let mut at_word_start = true;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => current.push(' '),
                Some(n) => {
                    current.push('\\');
                    current.push(n);
                }
                None => return None,
            },
            '\'' => {
                current.push(c);
                loop {
                    let n = chars.next()?;
                    current.push(n);
                    if n == '\'' {
                        break;
                    }
                }
            }
            '"' | '`' => {
                current.push(c);
                loop {
                    let n = chars.next()?;
                    current.push(n);
                    if n == '\\' {
                        current.push(chars.next()?);
                    } else if n == c {
                        break;
                    }
                }
            }
            '(' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
                current.push(c);
            }
            '#' if at_word_start => return None,
            '<' if chars.peek() == Some(&'<') => return None,
            '&' if depth == 0 => {
                chars.next_if_eq(&'&')?;
                parts.push(std::mem::take(&mut current).trim().to_owned());
            }
            '|' if depth == 0 && chars.peek() == Some(&'|') => return None,
            ';' | '\n' if depth == 0 => return None,
            _ => current.push(c),
        }
        at_word_start = c.is_whitespace() || matches!(c, '(' | '{' | ';' | '&' | '|');
    }
    if depth != 0 || script.trim_end().ends_with('\\') {
        return None;
    }
    parts.push(current.trim().to_owned());
    (parts.len() > 1 && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// The chain with a mark written after each command but the last.
pub(crate) fn instrument(parts: &[String]) -> String {
    // The mark stays inside the chain (the shell still stops at the first failure) and never
    // fails it (a step running as a user who cannot write the file goes on).
    let mark = format!(" && {{ printf . >>{MARKS_TARGET} 2>/dev/null || :; }} && ");
    parts.join(&mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chains_are_split() {
        assert_eq!(
            and_chain("apt-get update && apt-get install -y curl").unwrap(),
            ["apt-get update", "apt-get install -y curl"]
        );
        assert_eq!(
            and_chain("a \\\n  && b | c && echo 'x && y' \"$(d && e)\"").unwrap(),
            ["a", "b | c", "echo 'x && y' \"$(d && e)\""]
        );
        assert_eq!(and_chain("{ a\n} && \\\n{ b\n}").unwrap(), ["{ a\n}", "{ b\n}"]);
    }

    #[test]
    fn anything_else_is_left_alone() {
        for s in [
            "a",
            "a || b && c",
            "a; b && c",
            "a &\nb",
            "a && b # c",
            "cat <<EOF && b\nx\nEOF",
            "a && b\nc",
            "case x in a) b;; esac && c",
            "a && 'unterminated",
            "a && ",
        ] {
            assert_eq!(and_chain(s), None, "{s:?}");
        }
    }

    #[test]
    fn marks_sit_between_the_commands() {
        let s = instrument(&["a".into(), "b".into()]);
        assert_eq!(s, "a && { printf . >>/.stack-marks 2>/dev/null || :; } && b");
    }
}
