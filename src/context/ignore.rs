//! `.stackignore` / `.dockerignore` rules with Docker's semantics (not gitignore's): patterns
//! are anchored at the context root, a pattern excludes a path when it matches the path or any
//! of its parents, the last matching pattern wins, and `!` re-includes.

use globset::{GlobBuilder, GlobMatcher};

/// One line of an ignore file.
#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    exception: bool,
}

/// Compiled ignore rules of one context.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
    /// The file the rules came from, for messages.
    pub source: Option<String>,
}

/// A line of an ignore file that is not a valid pattern.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line} of `{file}`: `{pattern}` is not a valid pattern: {reason}")]
pub struct IgnoreError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

impl IgnoreRules {
    /// Parses the text of an ignore file.
    pub fn parse(file: &str, text: &str) -> Result<Self, IgnoreError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| IgnoreError {
                    file: file.to_owned(),
                    line: i + 1,
                    pattern: pattern.to_owned(),
                    reason: e.kind().to_string(),
                })?;
            rules.push(Rule { matcher: glob.compile_matcher(), exception });
        }
        Ok(Self { rules, source: Some(file.to_owned()) })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any `!` rule exists (then excluded folders must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether a context-relative path (`a/b/c`) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if matches_self_or_parent(&rule.matcher, path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

fn matches_self_or_parent(m: &GlobMatcher, path: &str) -> bool {
    if m.is_match(path) {
        return true;
    }
    let mut end = path.len();
    while let Some(i) = path[..end].rfind('/') {
        if m.is_match(&path[..i]) {
            return true;
        }
        end = i;
    }
    false
}

/// Cleans a pattern like Go's `filepath.Clean`, relative to the root.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::IgnoreRules;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(".dockerignore", text).unwrap()
    }

    #[test]
    fn docker_semantics_not_gitignore() {
        let r = rules("*.md\n");
        assert!(r.is_excluded("README.md"));
        assert!(!r.is_excluded("docs/guide.md"), "no implicit **/ prefix");
        let r = rules("**/*.md\n");
        assert!(r.is_excluded("docs/guide.md"));
    }

    #[test]
    fn parents_and_last_match_win() {
        let r = rules("build\n!build/keep.txt\n# comment\n/tmp/\n");
        assert!(r.is_excluded("build/x/y.o"));
        assert!(!r.is_excluded("build/keep.txt"));
        assert!(r.is_excluded("tmp/a"));
        let r = rules("!a.txt\n*.txt\n");
        assert!(r.is_excluded("a.txt"), "the later rule wins");
    }

    #[test]
    fn bad_pattern_names_the_line() {
        let err = IgnoreRules::parse(".dockerignore", "ok\n[z-a\n").unwrap_err();
        assert_eq!(err.line, 2);
    }
}
