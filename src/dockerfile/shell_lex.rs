//! `BuildKit`'s shell-word lexer: quote removal, escapes and `$VAR` / `${VAR…}` expansion,
//! with the same rules as `BuildKit`'s `shell.Lex` (the behaviour, not the code, is ported).
//!
//! Besides evaluating words against an environment (what `BuildKit` does at build time), the
//! lexer has a *template* mode used by the importer: variables the build file will still know
//! at build time are written back as stack's `${NAME…}` syntax, variables Docker would see as
//! unset are evaluated away, and literal `${` is escaped as `$${`.
//!
//! Invariant: in evaluation mode, the result equals what `BuildKit`'s lexer returns for the same
//! word, environment and options (pinned by the table in `tests`).

use std::fmt;

/// What the environment says about one variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Set, with this value.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the importer keeps every reference for build time; the tests resolve values"
        )
    )]
    Value(String),
    /// Known only at build time: written back as a `${…}` reference (template mode only).
    Keep,
    /// Maybe set at build time (by a base image's environment), else empty as in `BuildKit`:
    /// written back as `${NAME:-}`, which is the value when set and empty otherwise, and never
    /// an undefined-variable error in stack (template mode only).
    KeepOrEmpty,
    /// Not set.
    Unset,
}

/// The variables visible to the lexer.
pub(crate) trait Env {
    fn lookup(&self, name: &str) -> Lookup;
}

impl<F: Fn(&str) -> Lookup> Env for F {
    fn lookup(&self, name: &str) -> Lookup {
        self(name)
    }
}

/// An environment given as `NAME=value` pairs; anything else is unset.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a>(pub &'a [(&'a str, &'a str)]);

#[cfg(test)]
impl Env for Vars<'_> {
    fn lookup(&self, name: &str) -> Lookup {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map_or(Lookup::Unset, |(_, v)| Lookup::Value((*v).to_string()))
    }
}

/// A lexing or expansion error, with `BuildKit`'s wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError(pub String);

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, LexError> {
    Err(LexError(msg.into()))
}

/// Lexer options, mirroring `BuildKit`'s `Lex` fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShellLex {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave unset variables as written instead of expanding them to "".
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Produce stack `${…}` templates instead of plain values.
    pub template: bool,
}

impl ShellLex {
    /// A lexer with `BuildKit`'s defaults for the given escape character.
    pub(crate) fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_process_quotes: false,
            template: false,
        }
    }

    /// A lexer that writes stack templates.
    pub(crate) fn template(escape: char) -> Self {
        Self { template: true, ..Self::new(escape) }
    }

    /// Expands one word (quotes removed, no splitting), like `BuildKit`'s `ProcessWord`.
    pub(crate) fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, LexError> {
        let mut state = State::new(self, word, env);
        let (result, _) = state.process_stop_on(None, self.raw_escapes)?;
        Ok(result.s)
    }

    /// Expands and splits into words on unquoted whitespace, like `BuildKit`'s `ProcessWords`.
    pub(crate) fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, LexError> {
        let mut state = State::new(self, word, env);
        let (_, words) = state.process_stop_on(None, self.raw_escapes)?;
        Ok(words)
    }
}

/// Output text: plain, or in template mode a stack value where literal `${` is escaped.
#[derive(Debug, Default)]
struct Out {
    s: String,
    template: bool,
}

impl Out {
    fn new(template: bool) -> Self {
        Self { s: String::new(), template }
    }

    /// Appends a literal character.
    fn lit(&mut self, c: char) {
        // In template mode text never ends in `$` except for a literal `$`, because every
        // reference ends in `}`; a literal `${` must be written `$${`.
        if self.template && c == '{' && self.s.ends_with('$') {
            self.s.push('$');
        }
        self.s.push(c);
    }

    fn lit_str(&mut self, s: &str) {
        for c in s.chars() {
            self.lit(c);
        }
    }

    /// Appends text that is already in output form.
    fn frag(&mut self, f: &str) {
        if self.template && f.starts_with('{') && self.s.ends_with('$') {
            self.s.push('$');
        }
        self.s.push_str(f);
    }

    fn from_lit(template: bool, s: &str) -> String {
        let mut o = Out::new(template);
        o.lit_str(s);
        o.s
    }
}

/// Word splitting state, as `BuildKit`'s `wordsStruct`.
#[derive(Default)]
struct Words {
    buf: String,
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.done.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !c.is_whitespace() {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.done.push(std::mem::take(&mut self.buf));
        }
        self.done
    }
}

struct State<'a> {
    opts: &'a ShellLex,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    raw_escapes: bool,
}

impl<'a> State<'a> {
    fn new(opts: &'a ShellLex, word: &str, env: &'a dyn Env) -> Self {
        Self { opts, env, chars: word.chars().collect(), pos: 0, raw_escapes: opts.raw_escapes }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn out(&self) -> Out {
        Out::new(self.opts.template)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(Out, Vec<String>), LexError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(Out, Vec<String>), LexError> {
        let mut result = self.out();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.frag(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.frag(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' | '"' if !self.opts.skip_process_quotes => {
                    let tmp = if ch == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    result.frag(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.lit(ch);
                        }
                        // The escape character escapes anything, except at the end of input.
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.lit(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, LexError> {
        // Everything up to the next single quote is literal; nothing can be escaped.
        let mut result = self.out();
        let q = self.next().unwrap_or('\'');
        if self.opts.raw_quotes {
            result.lit(q);
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                    );
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.lit('\'');
                    }
                    return Ok(result.s);
                }
                Some(c) => result.lit(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, LexError> {
        // Literal except `$` expansions; the escape character only escapes `"`, `$` and itself.
        let mut result = self.out();
        let q = self.next().unwrap_or('"');
        if self.opts.raw_quotes {
            result.lit(q);
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                    );
                }
                Some('"') => {
                    self.next();
                    if self.opts.raw_quotes {
                        result.lit('"');
                    }
                    return Ok(result.s);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.frag(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            result.lit(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.opts.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.lit(ch);
                }
            }
        }
    }

    /// Returns the expansion of `$…` starting at the `$`, in output form.
    fn process_dollar(&mut self) -> Result<String, LexError> {
        let template = self.opts.template;
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Lookup::Value(v) => Out::from_lit(template, &v),
                Lookup::Keep => format!("${{{name}}}"),
                Lookup::KeepOrEmpty => format!("${{{name}:-}}"),
                Lookup::Unset if self.opts.skip_unset => {
                    Out::from_lit(template, &format!("${name}"))
                }
                Lookup::Unset => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else { return err("syntax error: missing '}'") };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Lookup::Value(v) => Out::from_lit(template, &v),
                Lookup::Keep => format!("${{{name}}}"),
                Lookup::KeepOrEmpty => format!("${{{name}:-}}"),
                Lookup::Unset if self.opts.skip_unset => {
                    Out::from_lit(template, &format!("${{{name}}}"))
                }
                Lookup::Unset => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.process_modifier(&name, ch),
            '/' => self.process_replacement(&name),
            _ => err(format!("unsupported modifier ({ch}) in substitution")),
        }
    }

    /// `${name:-word}`, `${name+word}`, `${name?word}`, `${name#glob}`, `${name%%glob}` and the
    /// like, after `${name`; `ch` is the modifier's first character.
    fn process_modifier(&mut self, name: &str, mut ch: char) -> Result<String, LexError> {
        let template = self.opts.template;
        let mut chs = ch.to_string();
        let null_is_unset = ch == ':';
        if null_is_unset {
            match self.next() {
                Some(c) => ch = c,
                None => return err("syntax error: missing '}'"),
            }
            chs.push(ch);
        }
        let raw = ch == '#' || ch == '%';
        if null_is_unset && !matches!(ch, '+' | '-' | '?') {
            return err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w.s,
            Err(_) if self.peek().is_none() => return err("syntax error: missing '}'"),
            Err(e) => return Err(e),
        };
        let (value, set) = match self.lookup(name) {
            Lookup::Keep | Lookup::KeepOrEmpty => {
                return Ok(format!("${{{name}{chs}{word}}}"));
            }
            Lookup::Value(v) => (v, true),
            Lookup::Unset if self.opts.skip_unset => {
                return Ok(Out::from_lit(template, &format!("${{{name}{chs}")) + &word + "}");
            }
            Lookup::Unset => (String::new(), false),
        };
        let empty = !set || (null_is_unset && value.is_empty());
        match ch {
            '-' => Ok(if empty { word } else { Out::from_lit(template, &value) }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => {
                if !set || empty {
                    let default = if set {
                        "is not allowed to be empty"
                    } else {
                        "is not allowed to be unset"
                    };
                    let message = if word.is_empty() { default } else { &word };
                    return err(format!("{name}: {message}"));
                }
                Ok(Out::from_lit(template, &value))
            }
            _ => {
                let (greedy, pattern) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let glob = Glob::parse(pattern)?;
                let v = if ch == '%' {
                    glob.trim_suffix(&value, greedy)
                } else {
                    glob.trim_prefix(&value, greedy)
                };
                Ok(Out::from_lit(template, &v))
            }
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after `${name/`.
    fn process_replacement(&mut self, name: &str) -> Result<String, LexError> {
        let template = self.opts.template;
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w.s,
            Err(_) if self.peek().is_none() => {
                return err("syntax error: missing '/' in ${}");
            }
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w.s,
            Err(_) if self.peek().is_none() => return err("syntax error: missing '}'"),
            Err(e) => return Err(e),
        };
        let all = if replace_all { "/" } else { "" };
        let value = match self.lookup(name) {
            Lookup::Keep | Lookup::KeepOrEmpty => {
                return Ok(format!("${{{name}/{all}{pattern}/{replacement}}}"));
            }
            Lookup::Unset if self.opts.skip_unset => {
                return Ok(Out::from_lit(template, &format!("${{{name}/"))
                    + &pattern
                    + "/"
                    + &replacement
                    + "}");
            }
            Lookup::Unset => String::new(),
            Lookup::Value(v) => v,
        };
        let glob = Glob::parse(&pattern)
            .map_err(|e| LexError(format!("invalid pattern ({pattern}) in substitution: {e}")))?;
        Ok(Out::from_lit(template, &glob.replace(&value, &replacement, replace_all)))
    }

    fn lookup(&self, name: &str) -> Lookup {
        match self.env.lookup(name) {
            // A reference can only be kept when stack can spell it: an ordinary name.
            Lookup::Keep | Lookup::KeepOrEmpty if !is_name(name) => Lookup::Unset,
            other => other,
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut result = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            result.push(c);
            self.next();
        }
        result
    }
}

/// True for a name stack can reference: letters, digits and `_`, not starting with a digit.
pub(crate) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// A shell wildcard pattern (`*`, `?`, escapes), without bracket expressions, as `BuildKit`.
#[derive(Debug)]
struct Glob(Vec<Tok>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

impl Glob {
    fn parse(pattern: &str) -> Result<Self, LexError> {
        let mut toks = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match it.peek() {
                    // `}` and `/` are escaped only to get past the `${…}` syntax.
                    Some('}' | '/') => {}
                    Some(&e @ ('*' | '?' | '\\')) => {
                        it.next();
                        toks.push(Tok::Lit(e));
                    }
                    Some(&e) => return err(format!("invalid escape '\\{e}'")),
                    None => return err("invalid escape '\\'"),
                },
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Self(toks))
    }

    fn matches(toks: &[Tok], s: &[char]) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Star, rest)) => (0..=s.len()).any(|i| Self::matches(rest, &s[i..])),
            Some((Tok::Any, rest)) => !s.is_empty() && Self::matches(rest, &s[1..]),
            Some((Tok::Lit(c), rest)) => s.first() == Some(c) && Self::matches(rest, &s[1..]),
        }
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends: Box<dyn Iterator<Item = usize>> =
            if greedy { Box::new((0..=chars.len()).rev()) } else { Box::new(0..=chars.len()) };
        for end in ends {
            if Self::matches(&self.0, &chars[..end]) {
                return chars[end..].iter().collect();
            }
        }
        value.to_string()
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let starts: Box<dyn Iterator<Item = usize>> =
            if greedy { Box::new(0..=chars.len()) } else { Box::new((0..=chars.len()).rev()) };
        for start in starts {
            if Self::matches(&self.0, &chars[start..]) {
                return chars[..start].iter().collect();
            }
        }
        value.to_string()
    }

    /// Replaces the leftmost-longest match (or every non-overlapping one).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut replaced = false;
        while i <= chars.len() {
            let found = if replaced && !all {
                None
            } else {
                (i..=chars.len()).rev().find(|&end| Self::matches(&self.0, &chars[i..end]))
            };
            if let Some(end) = found {
                out.push_str(replacement);
                replaced = true;
                if end == i {
                    if let Some(c) = chars.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                } else {
                    i = end;
                }
            } else {
                if let Some(c) = chars.get(i) {
                    out.push(*c);
                }
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &Vars<'static> = &Vars(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("FILE", "a/b.tar.gz"),
    ]);

    /// `(input, expected)`; `None` means an error. Cases follow `BuildKit`'s `envVarTest`.
    const CASES: &[(&str, Option<&str>)] = &[
        ("hello", Some("hello")),
        ("he'll'o", Some("hello")),
        ("he'llo", None),
        ("he\\'llo", Some("he'llo")),
        ("he\\\\'llo", None),
        ("abc\\tdef", Some("abctdef")),
        ("\"abc\\tdef\"", Some("abc\\tdef")),
        ("\"abc\\\\tdef\"", Some("abc\\tdef")),
        ("'abc\\tdef'", Some("abc\\tdef")),
        ("hello\\", Some("hello")),
        ("hello\\\\", Some("hello\\")),
        ("\"hello", None),
        ("\"hello\\\"", None),
        ("\"hel'lo\"", Some("hel'lo")),
        ("'hello", None),
        ("'hello\\'", Some("hello\\")),
        ("\"''\"", Some("''")),
        ("$.", Some("$.")),
        ("he$1x", Some("hex")),
        ("he$.x", Some("he$.x")),
        ("he$pwd.", Some("he.")),
        ("he$PWD", Some("he/home")),
        ("he\\$PWD", Some("he$PWD")),
        ("he\\\\$PWD", Some("he\\/home")),
        ("\"he\\$PWD\"", Some("he$PWD")),
        ("\"he\\\\$PWD\"", Some("he\\/home")),
        ("\\${}", Some("${}")),
        ("he\\${}xx", Some("he${}xx")),
        ("${}", None),
        ("he${}xx", None),
        ("he${hi}xx", Some("hexx")),
        ("he${PWD}", Some("he/home")),
        ("he${.}", None),
        ("he${XXX:-000}xx", Some("he000xx")),
        ("he${PWD:-000}xx", Some("he/homexx")),
        ("he${XXX:-$PWD}xx", Some("he/homexx")),
        ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
        ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
        ("he${XXX:YYY}", None),
        ("he${XXX?}", None),
        ("he${XXX:?}", None),
        ("he${PWD?}", Some("he/home")),
        ("he${PWD:?}", Some("he/home")),
        ("he${NULL?}", Some("he")),
        ("he${NULL:?}", None),
        ("he${NULL-x}", Some("he")),
        ("he${NULL:-x}", Some("hex")),
        ("he${NULL+x}", Some("hex")),
        ("he${NULL:+x}", Some("he")),
        ("he${XXX+x}", Some("he")),
        ("he${XXX-x}", Some("hex")),
        ("he${XXX:+${PWD}}xx", Some("hexx")),
        ("he${PWD:+${XXX}}xx", Some("hexx")),
        ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
        ("he${PWD:+000}xx", Some("he000xx")),
        ("'he${XX}'", Some("he${XX}")),
        ("\"he${PWD}\"", Some("he/home")),
        ("\"he'$PWD'\"", Some("he'/home'")),
        ("'$PWD'", Some("$PWD")),
        ("'\\$PWD'", Some("\\$PWD")),
        ("'\"hello\"'", Some("\"hello\"")),
        ("he${PWD", None),
        ("he${PWD:=000}xx", None),
        ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
        ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
        ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
        ("안'녕'하세요", Some("안녕하세요")),
        ("안녕$KOREAN", Some("안녕한국어")),
        ("${{aaa}", None),
        ("${aaa}}", Some("}")),
        ("${aaa", None),
        ("${aaa:-bbb}}", Some("bbb}")),
        ("${aaa:-bbb", None),
        ("${aaa:-bbb ${foo}", None),
        ("${aaa:-bbb {foo}", Some("bbb {foo")),
        ("${:}", None),
        ("${:-bbb}", None),
        ("$1", Some("")),
        ("${1:-bbb}", Some("bbb")),
        ("$999aaa", Some("aaa")),
        ("$@@@", Some("@@")),
        ("${@:-bbb}aaa", Some("bbbaaa")),
        ("$$", Some("")),
        ("${#:-bbb}", Some("bbb")),
        ("${FILE#*/}", Some("b.tar.gz")),
        ("${FILE##*.}", Some("gz")),
        ("${FILE#*.}", Some("tar.gz")),
        ("${FILE%.*}", Some("a/b.tar")),
        ("${FILE%%.*}", Some("a/b")),
        ("${FILE%.t?r.gz}", Some("a/b")),
        ("${FILE#nomatch}", Some("a/b.tar.gz")),
        ("${XXX#a}", Some("")),
        ("${FILE/./-}", Some("a/b-tar.gz")),
        ("${FILE//./-}", Some("a/b-tar-gz")),
        ("${FILE/a*b/x}", Some("x.tar.gz")),
        ("${FILE//\\//_}", Some("a_b.tar.gz")),
        ("${FILE/", None),
        ("${FILE:#x}", None),
        ("${PWD#\\*}", Some("/home")),
        ("${PWD#\\x}", None),
    ];

    #[test]
    fn process_word_matches_buildkit() {
        let lex = ShellLex::new('\\');
        for (input, expected) in CASES {
            let got = lex.process_word(input, ENV).ok();
            assert_eq!(got.as_deref(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let lex = ShellLex::new('`');
        assert_eq!(lex.process_word("C:\\path\\$PWD", ENV).unwrap(), "C:\\path\\/home");
        assert_eq!(lex.process_word("a`$PWD", ENV).unwrap(), "a$PWD");
        assert_eq!(lex.process_word("\"a`\"b\"", ENV).unwrap(), "a\"b");
    }

    #[test]
    fn words_split_after_expansion() {
        let lex = ShellLex::new('\\');
        let env = &Vars(&[("V", "x y")]);
        assert_eq!(
            lex.process_words("a $V 'c d' e\\ f", env).unwrap(),
            ["a", "x", "y", "c d", "e f"]
        );
        assert_eq!(lex.process_words("<< EOF b", env).unwrap(), ["<< EOF", "b"]);
    }

    #[test]
    fn raw_options() {
        let lex = ShellLex {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: true,
            ..ShellLex::new('\\')
        };
        assert_eq!(
            lex.process_word("'a'\"b\"\\c $U ${U:-x}", ENV).unwrap(),
            "'a'\"b\"\\c $U ${U:-x}"
        );
        let heredoc = ShellLex { skip_process_quotes: true, ..ShellLex::new('\\') };
        assert_eq!(heredoc.process_word("'$PWD' \"\\n\" \\$x", ENV).unwrap(), "'/home' \"n\" $x");
    }

    #[test]
    fn template_mode() {
        let env = |n: &str| match n {
            "KEEP" => Lookup::Keep,
            "VAL" => Lookup::Value("v".into()),
            _ => Lookup::Unset,
        };
        let lex = ShellLex::template('\\');
        let t = |s: &str| lex.process_word(s, &env).unwrap();
        assert_eq!(t("$KEEP/x"), "${KEEP}/x");
        assert_eq!(t("${KEEP:-a b}"), "${KEEP:-a b}");
        assert_eq!(t("${KEEP:-\"q\"$KEEP}"), "${KEEP:-q${KEEP}}");
        assert_eq!(t("${KEEP##*/}"), "${KEEP##*/}");
        assert_eq!(t("${KEEP//a/b}"), "${KEEP//a/b}");
        assert_eq!(t("${GONE:-$KEEP}"), "${KEEP}");
        assert_eq!(t("${GONE:+x}${GONE}$GONE"), "");
        assert_eq!(t("'${lit}' \\${x}"), "$${lit} $${x}");
        assert_eq!(t("$VAL"), "v");
        assert_eq!(t("a$"), "a$");
        assert_eq!(t("${KEEP}$1"), "${KEEP}");
        assert!(lex.process_word("${GONE:?must be set}", &env).is_err());
    }
}
