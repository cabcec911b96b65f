//! Dockerfile text → [`ast::Dockerfile`]: lines, parser directives, comments, line
//! continuations, heredocs, flags and per-instruction arguments, following `BuildKit`'s parser
//! (`frontend/dockerfile/parser`) and instruction parser (`instructions/parse.go`).
//!
//! Invariant: parsing never stops at the first problem; an instruction that fails to parse is
//! reported and skipped, and its heredoc bodies are still consumed so later lines stay aligned.

use std::collections::HashMap;

use super::ast::{
    ArgDecl, CommandLine, Comment, CopyArgs, Dockerfile, Healthcheck, HealthcheckCmd, Heredoc,
    INSTRUCTIONS, Instruction, Item, KeyValue, Kind, Mount, MountType, Source, Span, Word,
};
use super::directives::Directives;
use super::shell_lex::{Lookup, ShellLex};
use crate::diag::{Diagnostic, did_you_mean};

/// Parses the whole file, reporting every error found.
pub(crate) fn parse(text: &str) -> (Option<Dockerfile>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut directives = Directives::new();
    let mut items = Vec::new();
    let lines = split_lines(text);
    let mut i = 0;
    let mut blank_before = false;
    let mut any_instruction = false;
    let mut failed_from = false;
    while i < lines.len() {
        let (off, raw) = lines[i];
        i += 1;
        let trimmed = raw.trim_start();
        let toff = off + (raw.len() - trimmed.len());
        if directives.line(trimmed, toff, &mut diags) {
            continue;
        }
        let escape = directives.escape;
        if let Some(comment) = trimmed.strip_prefix('#') {
            items.push(Item::Comment(Comment {
                text: comment.trim().to_string(),
                span: toff..toff + trimmed.len(),
                blank_before,
            }));
            blank_before = false;
            continue;
        }
        let (seg, end) = trim_continuation(trimmed, escape);
        if seg.trim().is_empty() && end {
            blank_before |= trimmed.is_empty();
            continue;
        }
        let mut logical = Logical::default();
        logical.push(seg, toff);
        let joined = join_continuation_lines(&lines, &mut i, &mut logical, end, escape);
        any_instruction = true;
        let mut span = toff..joined.last_end.unwrap_or(toff + trimmed.len());
        let heredocs =
            read_heredoc_bodies(text, &lines, &mut i, &logical, escape, &mut span, &mut diags);
        if let Some(empty) = joined.empty_continuation {
            diags.push(
                Diagnostic::warning(
                    "dockerfile-empty-continuation",
                    "empty continuation line",
                    empty,
                    "this empty line continues the instruction above",
                )
                .with_help("BuildKit will make empty continuation lines an error; remove it"),
            );
        }
        let is_from = split_keyword(&logical.text).0.eq_ignore_ascii_case("from");
        let mut parser = LineParser { logical: &logical, escape, diags: &mut diags };
        if let Some(inst) = parser.instruction(span, heredocs, blank_before) {
            items.push(Item::Instruction(Box::new(inst)));
        } else if is_from {
            // A FROM that failed to parse still starts a stage: don't report what follows.
            failed_from = true;
        }
        blank_before = false;
    }
    if !any_instruction {
        diags.push(no_instructions(text));
        return (None, diags);
    }
    let ast = Dockerfile { directives: directives.found.clone(), escape: directives.escape, items };
    if !failed_from {
        check_from_order(&ast, &mut diags);
    }
    (Some(ast), diags)
}

/// What [`join_continuation_lines`] saw besides the text it joined.
struct Joined {
    /// The source offset where the last joined line ends, if any line was joined.
    last_end: Option<usize>,
    /// The first blank line inside the instruction, which `BuildKit` warns about.
    empty_continuation: Option<Span>,
}

/// Appends the lines that continue an instruction (from line `*i` on) to `logical`, skipping
/// comment and blank lines between them, until a line ends without the escape character.
fn join_continuation_lines(
    lines: &[(usize, &str)],
    i: &mut usize,
    logical: &mut Logical,
    mut end: bool,
    escape: char,
) -> Joined {
    let mut joined = Joined { last_end: None, empty_continuation: None };
    while !end && *i < lines.len() {
        let (off, raw) = lines[*i];
        *i += 1;
        if raw.trim_start().starts_with('#') {
            continue;
        }
        if raw.trim_start().is_empty() {
            joined.empty_continuation.get_or_insert(off..off + raw.len());
            continue;
        }
        let (seg, e) = trim_continuation(raw, escape);
        end = e;
        logical.push(seg, off);
        joined.last_end = Some(off + raw.len());
    }
    joined
}

/// Reads the bodies of the heredocs the instruction in `logical` opens, from line `*i` on,
/// extending `span` over them and reporting a heredoc never closed.
fn read_heredoc_bodies(
    text: &str,
    lines: &[(usize, &str)],
    i: &mut usize,
    logical: &Logical,
    escape: char,
    span: &mut Span,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Heredoc> {
    let mut heredocs = Vec::new();
    for (doc, word_span) in heredoc_words(&logical.text, escape) {
        let mut content = String::new();
        let mut terminated = false;
        while *i < lines.len() {
            let (off, raw) = lines[*i];
            let full = &text[off..lines.get(*i + 1).map_or(text.len(), |l| l.0)];
            *i += 1;
            span.end = off + raw.len();
            let candidate = raw.trim_end_matches(['\r', '\n']);
            let candidate = if doc.chomp { candidate.trim_start_matches('\t') } else { candidate };
            if candidate == doc.name {
                terminated = true;
                break;
            }
            content.push_str(full);
        }
        if !terminated {
            diags.push(
                Diagnostic::error(
                    "dockerfile-unterminated-heredoc",
                    format!("unterminated heredoc `{}`", doc.name),
                    logical.span(&word_span),
                    "this heredoc is never closed",
                )
                .with_help(format!("end the heredoc with a line holding only `{}`", doc.name)),
            );
        }
        heredocs.push(Heredoc { content, span: logical.span(&word_span), ..doc });
    }
    heredocs
}

/// The error for a Dockerfile without a single instruction.
fn no_instructions(text: &str) -> Diagnostic {
    let (message, label) = if text.trim().is_empty() {
        ("the Dockerfile is empty", "no instructions")
    } else {
        ("the Dockerfile has no instructions, only comments", "no instructions")
    };
    Diagnostic::error("dockerfile-empty", message, text.len()..text.len(), label)
        .with_help("a Dockerfile needs at least a `FROM` instruction")
}

/// Reports instructions before the first FROM (only ARG may come first) and a missing FROM.
fn check_from_order(ast: &Dockerfile, diags: &mut Vec<Diagnostic>) {
    let mut seen_from = false;
    for item in &ast.items {
        let Item::Instruction(inst) = item else { continue };
        match inst.kind {
            Kind::From { .. } => seen_from = true,
            Kind::Arg(_) => {}
            _ if !seen_from => diags.push(
                Diagnostic::error(
                    "dockerfile-no-stage",
                    format!("`{}` appears before the first `FROM`", inst.kind.name()),
                    inst.keyword_span.clone(),
                    "no build stage yet",
                )
                .with_help("only `ARG` may come before the first `FROM`"),
            ),
            _ => {}
        }
    }
    if !seen_from && !diags.iter().any(|d| d.code == "dockerfile-no-stage") {
        let end = ast.items.last().map_or(0, |i| match i {
            Item::Comment(c) => c.span.end,
            Item::Instruction(i) => i.span.end,
        });
        diags.push(
            Diagnostic::error(
                "dockerfile-missing-from",
                "the Dockerfile has no `FROM` instruction",
                end..end,
                "expected a `FROM` by here",
            )
            .with_help("start a build stage with `FROM <image>`"),
        );
    }
}

/// Lines with their start offsets, newline (and a trailing `\r`) removed; BOM skipped.
fn split_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut off = if text.starts_with('\u{FEFF}') { 3 } else { 0 };
    while off < text.len() {
        let end = text[off..].find('\n').map_or(text.len(), |i| off + i);
        let line = text[off..end].trim_end_matches('\r');
        out.push((off, line));
        off = end + 1;
    }
    out
}

/// Removes a trailing line-continuation escape; returns the line and whether it ends there.
/// `BuildKit`: the escape must be the last non-blank character and not itself escaped.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else { return (line, true) };
    match before.chars().last() {
        None => ("", false),
        Some(c) if c == escape => (line, true),
        Some(_) => (before, false),
    }
}

/// An instruction's continuation lines joined, with a map back to source offsets.
#[derive(Default)]
struct Logical {
    text: String,
    /// `(offset in text, offset in source)` at the start of each joined segment.
    map: Vec<(usize, usize)>,
}

impl Logical {
    fn push(&mut self, seg: &str, src: usize) {
        self.map.push((self.text.len(), src));
        self.text.push_str(seg);
    }

    fn src(&self, off: usize) -> usize {
        let &(l, s) = self.map.iter().rev().find(|(l, _)| *l <= off).unwrap_or(&self.map[0]);
        s + (off - l)
    }

    fn span(&self, r: &Span) -> Span {
        let start = self.src(r.start);
        let end = if r.end > r.start { self.src(r.end - 1) + 1 } else { start };
        start..end.max(start)
    }

    /// Offsets in `text[from..]` where a continuation line began.
    fn joins_after(&self, from: usize) -> Vec<usize> {
        self.map.iter().skip(1).filter(|(l, _)| *l > from).map(|(l, _)| l - from).collect()
    }
}

/// Finds heredoc words in an instruction line (RUN, COPY, ADD, or ONBUILD of those), as
/// `BuildKit`'s `heredocsFromLine`; returns the heredocs (no body yet) and their word spans.
fn heredoc_words(line: &str, escape: char) -> Vec<(Heredoc, Span)> {
    if !line.contains("<<") {
        return Vec::new();
    }
    let (keyword, rest, _) = split_keyword(line);
    let mut kw = keyword.to_ascii_lowercase();
    let mut rest_off = line.len() - rest.len();
    if kw == "onbuild" {
        let (sub, sub_rest, _) = split_keyword(rest);
        kw = sub.to_ascii_lowercase();
        rest_off = line.len() - sub_rest.len();
    }
    if !matches!(kw.as_str(), "run" | "copy" | "add") {
        return Vec::new();
    }
    let (args_off, _) = extract_flags(&line[rest_off..], escape);
    if parse_json(&line[rest_off + args_off..]).is_some() {
        return Vec::new();
    }
    let lex =
        ShellLex { raw_quotes: true, raw_escapes: true, skip_unset: true, ..ShellLex::new('\\') };
    let words = lex.process_words(line, &|_: &str| Lookup::Unset).unwrap_or_default();
    let mut out = Vec::new();
    let mut search_from = 0;
    for word in words {
        let pos = line[search_from..].find(word.as_str()).map_or(search_from, |p| p + search_from);
        let span = pos..pos + word.len();
        search_from = span.end.min(line.len());
        if let Some(doc) = parse_heredoc_word(&word) {
            out.push((doc, span));
        }
    }
    out
}

/// Matches a heredoc word, `^(\d*)<<(-?)\s*([^<]*)$`, and reads its delimiter.
pub(crate) fn parse_heredoc_word(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let unset = |_: &str| Lookup::Unset;
    let plain = ShellLex { skip_unset: true, ..ShellLex::new('\\') };
    let words = plain.process_words(rest, &unset).ok()?;
    if words.len() != 1 {
        return None;
    }
    let raw = ShellLex { raw_quotes: true, ..plain }.process_words(rest, &unset).ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Some(Heredoc {
        name: words[0].clone(),
        chomp,
        expand: raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]),
        fd: word[..digits].parse().unwrap_or(0),
        content: String::new(),
        span: 0..0,
    })
}

/// Splits the keyword off a line: `(keyword, rest, keyword offset)`.
fn split_keyword(line: &str) -> (&str, &str, usize) {
    let start = line.len() - line.trim_start().len();
    let t = line.trim_start();
    let kw_end = t.find(is_ws).unwrap_or(t.len());
    let rest = t[kw_end..].trim_start_matches(is_ws);
    (&t[..kw_end], rest, start)
}

/// `BuildKit`'s `reWhitespace`: `[\t\v\f\r ]`.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{B}' | '\u{C}' | '\r')
}

/// A `--flag[=value]` word, quotes and escapes processed, with its offset range.
struct FlagWord {
    text: String,
    span: Span,
}

/// Extracts leading `--flags`, as `BuildKit`'s `extractBuilderFlags`; returns the offset where
/// the arguments start and the flags.
fn extract_flags(line: &str, escape: char) -> (usize, Vec<FlagWord>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while pos < chars.len() && chars[pos].1.is_whitespace() {
            pos += 1;
        }
        if pos >= chars.len() {
            return (line.len(), words);
        }
        let start = chars[pos].0;
        if !line[start..].starts_with("--") {
            return (start, words);
        }
        let mut word = String::new();
        let mut quote = None;
        let mut blank_ok = false;
        while pos < chars.len() {
            let c = chars[pos].1;
            match quote {
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == escape => {
                    if pos + 1 < chars.len() {
                        pos += 1;
                        word.push(chars[pos].1);
                    }
                }
                _ => word.push(c),
            }
            pos += 1;
        }
        let end = chars.get(pos).map_or(line.len(), |c| c.0);
        if word == "--" {
            return (end, words);
        }
        if blank_ok || !word.is_empty() {
            words.push(FlagWord { text: word, span: start..end });
        }
    }
}

/// Parses a JSON array of strings. `None`: not JSON (shell form); `Some(Err)`: a JSON array
/// holding something other than strings, which `BuildKit` rejects.
fn parse_json(rest: &str) -> Option<Result<Vec<String>, ()>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return None;
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(rest).ok()?;
    Some(
        values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strings,
}

/// Flags after validation: name → values with spans.
#[derive(Default)]
struct Flags {
    values: HashMap<&'static str, Vec<Word>>,
}

impl Flags {
    fn word(&self, name: &str) -> Option<Word> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    fn all(&self, name: &str) -> Vec<Word> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.word(name).map(|w| w.text == "true")
    }
}

struct LineParser<'a> {
    logical: &'a Logical,
    escape: char,
    diags: &'a mut Vec<Diagnostic>,
}

/// An argument-level failure: message, span in the logical line, label, optional help.
type Fail = (String, Span, &'static str, Option<String>);

impl LineParser<'_> {
    fn instruction(
        &mut self,
        span: Span,
        heredocs: Vec<Heredoc>,
        blank_before: bool,
    ) -> Option<Instruction> {
        let text = self.logical.text.clone();
        let (keyword, rest, kw_start) = split_keyword(&text);
        let keyword_span = self.logical.span(&(kw_start..kw_start + keyword.len()));
        let rest_off = text.len() - rest.len();
        let kind = self.kind(keyword, rest_off, &keyword_span, &heredocs)?;
        Some(Instruction {
            keyword: keyword.to_string(),
            span,
            keyword_span,
            kind,
            heredocs,
            blank_before,
        })
    }

    fn error(&mut self, code: &'static str, message: String, span: Span, label: &str) {
        self.diags.push(Diagnostic::error(code, message, self.logical.span(&span), label));
    }

    fn kind(
        &mut self,
        keyword: &str,
        rest_off: usize,
        keyword_span: &Span,
        heredocs: &[Heredoc],
    ) -> Option<Kind> {
        let upper = keyword.to_ascii_uppercase();
        if !INSTRUCTIONS.contains(&upper.as_str()) {
            let mut d = Diagnostic::error(
                "dockerfile-unknown-instruction",
                format!("unknown instruction `{keyword}`"),
                keyword_span.clone(),
                "not a Dockerfile instruction",
            );
            if let Some(s) = did_you_mean(&upper, INSTRUCTIONS.iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return None;
        }
        let line = &self.logical.text[rest_off..];
        let (args_rel, flag_words) = extract_flags(line, self.escape);
        let args_start = rest_off + args_rel;
        let raw_args = &self.logical.text[args_start..];
        let args = raw_args.trim_end();
        let args_span = args_start..args_start + args.len();
        let flag_words: Vec<FlagWord> = flag_words
            .into_iter()
            .map(|f| FlagWord { span: f.span.start + rest_off..f.span.end + rest_off, ..f })
            .collect();
        let allowed: &[(&'static str, FlagType)] = match upper.as_str() {
            "FROM" => &[("platform", FlagType::Str)],
            "RUN" => &[
                ("mount", FlagType::Strings),
                ("network", FlagType::Str),
                ("security", FlagType::Str),
            ],
            "COPY" => &[
                ("chown", FlagType::Str),
                ("from", FlagType::Str),
                ("chmod", FlagType::Str),
                ("link", FlagType::Bool),
                ("parents", FlagType::Bool),
                ("exclude", FlagType::Strings),
            ],
            "ADD" => &[
                ("chown", FlagType::Str),
                ("chmod", FlagType::Str),
                ("link", FlagType::Bool),
                ("keep-git-dir", FlagType::Bool),
                ("checksum", FlagType::Str),
                ("unpack", FlagType::Bool),
                ("exclude", FlagType::Strings),
            ],
            "HEALTHCHECK" => &[
                ("interval", FlagType::Str),
                ("timeout", FlagType::Str),
                ("start-period", FlagType::Str),
                ("start-interval", FlagType::Str),
                ("retries", FlagType::Str),
            ],
            _ => &[],
        };
        // HEALTHCHECK NONE ignores flags, as BuildKit does.
        let skip_flags = upper == "HEALTHCHECK"
            && args.split(is_ws).next().is_some_and(|t| t.eq_ignore_ascii_case("none"));
        let flags =
            if skip_flags { Flags::default() } else { self.flags(&upper, &flag_words, allowed)? };
        let result = self.args(&upper, args, args_start, &flags, heredocs, keyword_span);
        match result {
            Ok(kind) => Some(kind),
            Err((message, span, label, help)) => {
                let span = if span.is_empty() && span.start == 0 { args_span } else { span };
                let mut d = Diagnostic::error(
                    "dockerfile-invalid-instruction",
                    message,
                    self.logical.span(&span),
                    label,
                );
                if span.is_empty() {
                    d.span = keyword_span.clone().into();
                }
                if let Some(h) = help {
                    d = d.with_help(h);
                }
                self.diags.push(d);
                None
            }
        }
    }

    fn flags(
        &mut self,
        upper: &str,
        words: &[FlagWord],
        allowed: &[(&'static str, FlagType)],
    ) -> Option<Flags> {
        let mut flags = Flags::default();
        let mut ok = true;
        for w in words {
            let Some(body) = w.text.strip_prefix("--") else {
                self.error(
                    "dockerfile-invalid-flag",
                    format!("flag `{}` should start with `--`", w.text),
                    w.span.clone(),
                    "not a flag",
                );
                ok = false;
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(canonical, ty)) = allowed.iter().find(|(n, _)| *n == name) else {
                let mut d = Diagnostic::error(
                    "dockerfile-unknown-flag",
                    format!("unknown flag `--{name}` for `{upper}`"),
                    self.logical.span(&w.span),
                    "unknown flag",
                );
                if let Some(s) = did_you_mean(name, allowed.iter().map(|(n, _)| *n)) {
                    d = d.with_help(format!("did you mean `--{s}`?"));
                } else if allowed.is_empty() {
                    d = d.with_help(format!("`{upper}` takes no flags"));
                }
                self.diags.push(d);
                ok = false;
                continue;
            };
            if ty != FlagType::Strings && flags.values.contains_key(canonical) {
                self.error(
                    "dockerfile-duplicate-flag",
                    format!("duplicate flag `--{name}`"),
                    w.span.clone(),
                    "given twice",
                );
                ok = false;
                continue;
            }
            let value = match (ty, value) {
                (FlagType::Bool, None) => "true".to_string(),
                (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                (FlagType::Bool, Some(v)) => {
                    self.error(
                        "dockerfile-invalid-flag",
                        format!("expecting a boolean value for `--{name}`, not `{v}`"),
                        w.span.clone(),
                        "not true or false",
                    );
                    ok = false;
                    continue;
                }
                (_, None) => {
                    self.error(
                        "dockerfile-invalid-flag",
                        format!("missing a value on flag `--{name}`"),
                        w.span.clone(),
                        "expected `--name=value`",
                    );
                    ok = false;
                    continue;
                }
                (_, Some(v)) => v.to_string(),
            };
            let span = self.logical.span(&w.span);
            flags.values.entry(canonical).or_default().push(Word { text: value, span });
        }
        ok.then_some(flags)
    }

    fn word(&self, text: &str, start: usize) -> Word {
        Word { text: text.to_string(), span: self.logical.span(&(start..start + text.len())) }
    }

    /// Whitespace-separated words with their offsets.
    fn split_ws(&self, args: &str, start: usize) -> Vec<Word> {
        let mut out = Vec::new();
        let mut pos = 0;
        for piece in args.split(is_ws) {
            if !piece.is_empty() {
                out.push(self.word(piece, start + pos));
            }
            pos += piece.len() + 1;
        }
        out
    }

    // The instruction parts are passed apart so callers need not rebuild a struct per call.
    #[allow(clippy::too_many_arguments)]
    fn args(
        &mut self,
        upper: &str,
        args: &str,
        start: usize,
        flags: &Flags,
        heredocs: &[Heredoc],
        keyword_span: &Span,
    ) -> Result<Kind, Fail> {
        let fail = |m: String, label: &'static str| fail_on_args(args, start, m, label);
        let _ = keyword_span;
        match upper {
            "FROM" => self.stage_args(args, start, flags),
            "RUN" | "CMD" | "ENTRYPOINT" => self.command_args(upper, args, start, flags),
            "SHELL" => shell_args(args, start),
            "ENV" | "LABEL" => {
                let pairs = self.name_values(upper, args, start)?;
                Ok(if upper == "ENV" { Kind::Env(pairs) } else { Kind::Label(pairs) })
            }
            "MAINTAINER" => {
                if args.is_empty() {
                    return fail("MAINTAINER requires exactly one argument".into(), "missing");
                }
                Ok(Kind::Maintainer(args.to_string()))
            }
            "EXPOSE" | "VOLUME" => self.expose_volume_args(upper, args, start),
            "USER" | "WORKDIR" | "STOPSIGNAL" => {
                if args.is_empty() {
                    return fail(format!("{upper} requires exactly one argument"), "missing");
                }
                let w = self.word(args, start);
                Ok(match upper {
                    "USER" => Kind::User(w),
                    "WORKDIR" => Kind::Workdir(w),
                    _ => Kind::StopSignal(w),
                })
            }
            "ARG" => self.arg_args(args, start),
            "ADD" | "COPY" => self.copy_args(upper, args, start, flags, heredocs),
            "HEALTHCHECK" => self.healthcheck(args, start, flags),
            "ONBUILD" => onbuild_args(args, start),
            _ => unreachable!("every instruction in INSTRUCTIONS is handled"),
        }
    }

    /// `FROM <image> [AS <name>]`; the stage name is lower-cased, as `BuildKit` does.
    fn stage_args(&self, args: &str, start: usize, flags: &Flags) -> Result<Kind, Fail> {
        let words = self.split_ws(args, start);
        match words.as_slice() {
            [image] => Ok(Kind::From {
                image: image.clone(),
                name: None,
                platform: flags.word("platform"),
            }),
            [image, r#as, name] if r#as.text.eq_ignore_ascii_case("as") => {
                let lower = name.text.to_ascii_lowercase();
                let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                    && lower
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !valid {
                    return Err((
                        format!("invalid name for build stage: `{}`", name.text),
                        Self::rel(&name.text, start, args),
                        "invalid stage name",
                        Some("a stage name starts with a letter and holds only letters, digits, `-`, `_` and `.`".into()),
                    ));
                }
                Ok(Kind::From {
                    image: image.clone(),
                    name: Some(Word { text: lower, span: name.span.clone() }),
                    platform: flags.word("platform"),
                })
            }
            _ => fail_on_args(
                args,
                start,
                "FROM requires either one or three arguments".into(),
                "expected `FROM <image> [AS <name>]`",
            ),
        }
    }

    /// RUN, CMD and ENTRYPOINT: exec form (a JSON array) or shell form; RUN also has flags.
    fn command_args(
        &mut self,
        upper: &str,
        args: &str,
        start: usize,
        flags: &Flags,
    ) -> Result<Kind, Fail> {
        let cmd = match parse_json(args) {
            Some(Ok(v)) => CommandLine::Exec(v),
            Some(Err(())) => {
                return fail_on_args(args, start, not_strings(), "not an array of strings");
            }
            None => CommandLine::Shell {
                text: args.to_string(),
                joins: self.logical.joins_after(start),
            },
        };
        if upper != "RUN" {
            return Ok(if upper == "CMD" { Kind::Cmd(cmd) } else { Kind::Entrypoint(cmd) });
        }
        // An empty shell-form RUN is valid in BuildKit: it runs `sh -c ""`.
        let mounts = self.run_mounts(flags);
        let network = self.run_mode(
            flags,
            "network",
            &["default", "none", "host"],
            "use `default`, `none` or `host`",
        );
        let security = self.run_mode(
            flags,
            "security",
            &["sandbox", "insecure"],
            "use `sandbox` or `insecure`",
        );
        Ok(Kind::Run { cmd, mounts, network, security })
    }

    /// The `--mount` flags of a RUN; an invalid one is reported and left out.
    fn run_mounts(&mut self, flags: &Flags) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for w in flags.all("mount") {
            match parse_mount(&w) {
                Ok(m) => mounts.push(m),
                Err(msg) => {
                    self.diags.push(Diagnostic::error(
                        "dockerfile-invalid-mount",
                        msg,
                        w.span.clone(),
                        "invalid mount",
                    ));
                }
            }
        }
        mounts
    }

    /// The `--network` or `--security` flag of a RUN: a mode outside `known` is reported (and
    /// still returned, so the instruction keeps parsing).
    fn run_mode(&mut self, flags: &Flags, flag: &str, known: &[&str], help: &str) -> Option<Word> {
        let mode = flags.word(flag);
        if let Some(m) = &mode
            && !known.contains(&m.text.as_str())
        {
            self.diags.push(
                Diagnostic::error(
                    "dockerfile-invalid-flag",
                    format!("unsupported {flag} mode `{}`", m.text),
                    m.span.clone(),
                    format!("unknown {flag} mode"),
                )
                .with_help(help),
            );
        }
        mode
    }

    /// EXPOSE takes whitespace-separated words; VOLUME also takes a JSON array.
    fn expose_volume_args(&self, upper: &str, args: &str, start: usize) -> Result<Kind, Fail> {
        let fail = |m: String, label: &'static str| fail_on_args(args, start, m, label);
        let words = match parse_json(args) {
            Some(Ok(v)) if upper == "VOLUME" => {
                let span = start..start + args.len();
                v.into_iter().map(|t| Word { text: t, span: self.logical.span(&span) }).collect()
            }
            Some(Err(())) if upper == "VOLUME" => {
                return fail(not_strings(), "not an array of strings");
            }
            _ => self.split_ws(args, start),
        };
        if words.is_empty() {
            return fail(format!("{upper} requires at least one argument"), "missing");
        }
        if upper == "VOLUME" {
            if words.iter().any(|w| w.text.trim().is_empty()) {
                return fail("VOLUME specified can not be an empty string".into(), "empty");
            }
            return Ok(Kind::Volume(
                words.into_iter().map(|w| Word { text: w.text.trim().to_string(), ..w }).collect(),
            ));
        }
        Ok(Kind::Expose(words))
    }

    /// `ARG name[=default] …`: every name must be one `${…}` can refer to.
    fn arg_args(&self, args: &str, start: usize) -> Result<Kind, Fail> {
        let fail = |m: String, label: &'static str| fail_on_args(args, start, m, label);
        let words = parse_words(args, self.escape);
        if words.is_empty() {
            return fail("ARG requires at least one argument".into(), "missing");
        }
        let mut out = Vec::new();
        for (w, r) in words {
            let sp = self.logical.span(&(start + r.start..start + r.end));
            let name = w.split_once('=').map_or(w.as_str(), |(k, _)| k);
            // Names `${…}` cannot refer to would be silently unusable: say so.
            if !name.is_empty() && !crate::syntax::is_var_name(name) {
                return fail(
                    format!(
                        "`{name}` is not a usable ARG name (letters, digits and `_`, not starting with a digit)"
                    ),
                    "invalid name",
                );
            }
            match w.split_once('=') {
                Some(("", _)) => {
                    return fail("ARG names can not be blank".into(), "blank name");
                }
                Some((k, v)) => {
                    out.push(ArgDecl { name: k.into(), default: Some(v.into()), span: sp });
                }
                None => out.push(ArgDecl { name: w, default: None, span: sp }),
            }
        }
        Ok(Kind::Arg(out))
    }

    /// The logical range of `needle` inside `args` (which starts at `start`).
    fn rel(needle: &str, start: usize, args: &str) -> Span {
        let p = args.find(needle).unwrap_or(0);
        start + p..start + p + needle.len()
    }

    fn name_values(
        &mut self,
        upper: &str,
        args: &str,
        start: usize,
    ) -> Result<Vec<KeyValue>, Fail> {
        let span = start..start + args.len();
        let words = parse_words(args, self.escape);
        if words.is_empty() {
            return Err((
                format!("{upper} requires at least one argument"),
                span,
                "missing value",
                None,
            ));
        }
        if !words[0].0.contains('=') {
            // Legacy form `ENV name value…`: the value is the rest of the line.
            let key_end = args.find(is_ws);
            let Some(key_end) = key_end else {
                return Err((
                    format!("{upper} must have two arguments"),
                    span,
                    "missing value",
                    Some(format!("write `{upper} {args}=<value>`")),
                ));
            };
            let value = args[key_end..].trim_start_matches(is_ws);
            return Ok(vec![KeyValue {
                key: args[..key_end].to_string(),
                value: value.to_string(),
                span: self.logical.span(&span),
            }]);
        }
        let mut out = Vec::new();
        for (w, r) in words {
            let sp = start + r.start..start + r.end;
            let Some((k, v)) = w.split_once('=') else {
                return Err((
                    format!(
                        "syntax error: can't find `=` in `{w}`; it must be of the form name=value"
                    ),
                    sp,
                    "expected name=value",
                    None,
                ));
            };
            if k.is_empty() {
                return Err((format!("{upper} names can not be blank"), sp, "blank name", None));
            }
            out.push(KeyValue { key: k.into(), value: v.into(), span: self.logical.span(&sp) });
        }
        Ok(out)
    }

    fn copy_args(
        &mut self,
        upper: &str,
        args: &str,
        start: usize,
        flags: &Flags,
        heredocs: &[Heredoc],
    ) -> Result<Kind, Fail> {
        let span = start..start + args.len();
        let (words, json) = match parse_json(args) {
            Some(Ok(v)) => (
                v.into_iter().map(|t| Word { text: t, span: self.logical.span(&span) }).collect(),
                true,
            ),
            Some(Err(())) => return Err((not_strings(), span, "not an array of strings", None)),
            None => (self.split_ws(args, start), false),
        };
        if words.len() < 2 {
            return Err((
                format!(
                    "{upper} requires at least two arguments, but only one was provided; the destination could not be determined"
                ),
                span,
                "missing destination",
                None,
            ));
        }
        let (dest, srcs) = words.split_last().expect("at least two words");
        if !json && parse_heredoc_word(&dest.text).is_some() {
            return Err((
                format!("{upper} cannot accept a heredoc as a destination"),
                span,
                "heredoc destination",
                None,
            ));
        }
        let mut sources = Vec::new();
        for s in srcs {
            match (!json).then(|| parse_heredoc_word(&s.text)).flatten() {
                Some(doc) => {
                    let idx = heredocs.iter().position(|h| h.name == doc.name).unwrap_or(0);
                    if heredocs.is_empty() {
                        sources.push(Source::Path(s.clone()));
                    } else {
                        sources.push(Source::Heredoc(idx));
                    }
                }
                None => sources.push(Source::Path(s.clone())),
            }
        }
        Ok({
            let c = CopyArgs {
                sources,
                dest: Some(dest.clone()),
                from: flags.word("from"),
                chown: flags.word("chown"),
                chmod: flags.word("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                excludes: flags.all("exclude"),
                checksum: flags.word("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bool("unpack"),
                json,
            };
            if upper == "ADD" { Kind::Add(c) } else { Kind::Copy(c) }
        })
    }

    fn healthcheck(&mut self, args: &str, start: usize, flags: &Flags) -> Result<Kind, Fail> {
        let span = start..start + args.len();
        let typ_end = args.find(is_ws).unwrap_or(args.len());
        let typ = &args[..typ_end];
        let rest = args[typ_end..].trim_start_matches(is_ws);
        if typ.is_empty() {
            return Err((
                "HEALTHCHECK requires at least one argument".into(),
                span,
                "missing",
                None,
            ));
        }
        match typ.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    return Err((
                        "HEALTHCHECK NONE takes no arguments".into(),
                        span,
                        "unexpected arguments",
                        None,
                    ));
                }
                Ok(Kind::Healthcheck(Healthcheck::None))
            }
            "CMD" => {
                let cmd = match parse_json(rest) {
                    Some(Ok(v)) => CommandLine::Exec(v),
                    Some(Err(())) => {
                        return Err((not_strings(), span, "not an array of strings", None));
                    }
                    None => CommandLine::Shell { text: rest.to_string(), joins: Vec::new() },
                };
                let empty = match &cmd {
                    CommandLine::Exec(v) => v.is_empty(),
                    CommandLine::Shell { text, .. } => text.is_empty(),
                };
                if empty {
                    return Err((
                        "missing command after HEALTHCHECK CMD".into(),
                        span,
                        "missing command",
                        None,
                    ));
                }
                for name in ["interval", "timeout", "start-period", "start-interval"] {
                    if let Some(w) = flags.word(name)
                        && let Err(msg) = check_duration(&w.text)
                    {
                        self.diags.push(
                            Diagnostic::error(
                                "dockerfile-invalid-flag",
                                format!("invalid `--{name}`: {msg}"),
                                w.span.clone(),
                                "invalid duration",
                            )
                            .with_help("use a Go duration such as `30s`, `1m30s` or `500ms`"),
                        );
                    }
                }
                if let Some(w) = flags.word("retries")
                    && w.text.parse::<u32>().is_err()
                {
                    self.diags.push(Diagnostic::error(
                        "dockerfile-invalid-flag",
                        format!("invalid `--retries` value `{}`", w.text),
                        w.span.clone(),
                        "not a non-negative integer",
                    ));
                }
                Ok(Kind::Healthcheck(Healthcheck::Cmd(Box::new(HealthcheckCmd {
                    cmd,
                    interval: flags.word("interval"),
                    timeout: flags.word("timeout"),
                    start_period: flags.word("start-period"),
                    start_interval: flags.word("start-interval"),
                    retries: flags.word("retries"),
                }))))
            }
            other => Err((
                format!("unknown type `{other}` in HEALTHCHECK"),
                start..start + typ.len(),
                "unknown type",
                Some("use `HEALTHCHECK CMD …` or `HEALTHCHECK NONE`".into()),
            )),
        }
    }
}

fn not_strings() -> String {
    "when using JSON array syntax, arrays must be comprised of strings only".into()
}

/// Fails an instruction with `message`, pointing at its whole argument text.
fn fail_on_args(
    args: &str,
    start: usize,
    message: String,
    label: &'static str,
) -> Result<Kind, Fail> {
    Err((message, start..start + args.len(), label, None))
}

/// `SHELL ["executable", "parameters"]`: only the JSON form is accepted.
fn shell_args(args: &str, start: usize) -> Result<Kind, Fail> {
    match parse_json(args) {
        Some(Ok(v)) if !v.is_empty() => Ok(Kind::Shell(v)),
        Some(Ok(_)) => {
            fail_on_args(args, start, "SHELL requires at least one argument".into(), "empty")
        }
        Some(Err(())) => fail_on_args(args, start, not_strings(), "not an array of strings"),
        None => Err((
            "SHELL requires the arguments to be in JSON form".into(),
            start..start + args.len(),
            "not a JSON array",
            Some(format!(
                "write it as `SHELL [\"{}\"]`",
                args.split_whitespace().collect::<Vec<_>>().join("\", \"")
            )),
        )),
    }
}

/// `ONBUILD <instruction>`: the trigger is kept as text, after checking its keyword.
fn onbuild_args(args: &str, start: usize) -> Result<Kind, Fail> {
    let fail = |m: String, label: &'static str| fail_on_args(args, start, m, label);
    if args.is_empty() {
        return fail("ONBUILD requires at least one argument".into(), "missing trigger");
    }
    let (sub, _, _) = split_keyword(args);
    let sub_upper = sub.to_ascii_uppercase();
    match sub_upper.as_str() {
        "ONBUILD" => {
            fail("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(), "nested ONBUILD")
        }
        "MAINTAINER" | "FROM" => {
            fail(format!("{sub_upper} isn't allowed as an ONBUILD trigger"), "not allowed here")
        }
        s if !INSTRUCTIONS.contains(&s) => Err((
            format!("unknown instruction `{sub}` in ONBUILD"),
            start..start + sub.len(),
            "not a Dockerfile instruction",
            did_you_mean(s, INSTRUCTIONS.iter().copied()).map(|s| format!("did you mean `{s}`?")),
        )),
        _ => Ok(Kind::Onbuild(args.to_string())),
    }
}

/// Checks a Go duration (`1h2m3.5s`, `300ms`, `0`) and `BuildKit`'s 1ms minimum.
fn check_duration(s: &str) -> Result<(), String> {
    if s == "0" {
        return Ok(());
    }
    let mut rest = s;
    let mut total = 0.0_f64;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().map_err(|_| format!("`{s}` is not a duration"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration `{s}`")),
            u => return Err(format!("unknown unit `{u}` in duration `{s}`")),
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    if total > 0.0 && total < 1e-3 {
        return Err("the interval cannot be less than 1ms".into());
    }
    Ok(())
}

/// Splits like `BuildKit`'s `parseWords` (ENV, LABEL, ARG): whitespace-separated words where
/// quotes group, and quotes and escapes are kept for the later expansion step.
fn parse_words(rest: &str, escape: char) -> Vec<(String, Span)> {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut word_start = 0;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let (off, c) = chars[i];
        if !in_word {
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
            word_start = off;
        }
        match quote {
            None => {
                if c.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push((std::mem::take(&mut word), word_start..off));
                    }
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push((word, word_start..rest.len()));
    }
    words
}

/// Parses one `--mount=` value (CSV fields), checking keys and values as `BuildKit` does.
fn parse_mount(w: &Word) -> Result<Mount, String> {
    let mut m = Mount { span: w.span.clone(), ..Mount::default() };
    for field in split_csv(&w.text)? {
        set_mount_field(&mut m, &field)?;
    }
    check_mount_keys_fit_type(&m)?;
    let t = m.mount_type();
    if t != MountType::Secret && t != MountType::Ssh && m.target.is_none() {
        // BuildKit mounts a mount without a target at the working folder.
        m.target = Some(".".into());
    }
    Ok(m)
}

/// Sets the mount option one CSV field (`key=value`, or a bare `ro`/`rw`/`required`) names.
fn set_mount_field(m: &mut Mount, field: &str) -> Result<(), String> {
    let (key, value) = match field.split_once('=') {
        Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
        None => (field.to_ascii_lowercase(), None),
    };
    let parse_bool = |v: &str| match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("invalid value for `{key}`: `{v}`")),
    };
    let Some(value) = value else {
        match key.as_str() {
            "readonly" | "ro" => m.readonly = Some(true),
            "readwrite" | "rw" => m.readonly = Some(false),
            "required" => m.required = Some(true),
            _ => return Err(format!("invalid field `{field}`: it must be a key=value pair")),
        }
        return Ok(());
    };
    let dynamic = value.contains('$');
    match key.as_str() {
        "type" => m.kind = Some(parse_mount_type(&value)?),
        "from" => {
            if value.find('$').is_some_and(|i| i + 1 != value.len()) {
                return Err(
                    "`from` doesn't support variable expansion, define an alias stage instead"
                        .into(),
                );
            }
            m.from = Some(value);
        }
        "source" | "src" => m.source = Some(value),
        "target" | "dst" | "destination" => m.target = Some(value),
        "readonly" | "ro" => m.readonly = Some(dynamic || parse_bool(&value)?),
        "readwrite" | "rw" => m.readonly = Some(!dynamic && !parse_bool(&value)?),
        "required" => m.required = Some(dynamic || parse_bool(&value)?),
        "size" => m.size = Some(value),
        "id" => m.id = Some(value),
        "sharing" => {
            if !dynamic
                && !matches!(value.to_ascii_lowercase().as_str(), "shared" | "private" | "locked")
            {
                return Err(format!(
                    "unsupported sharing value `{value}`; use shared, private or locked"
                ));
            }
            // `$MODE` names an arg, whose case matters; its value is lowered on expansion.
            m.sharing = Some(if dynamic { value } else { value.to_ascii_lowercase() });
        }
        "mode" => {
            // Permission bits only: larger values would be file-type bits.
            if !dynamic && u32::from_str_radix(&value, 8).ok().is_none_or(|m| m > 0o7777) {
                return Err(format!("invalid value `{value}` for mode"));
            }
            m.mode = Some(value);
        }
        "uid" | "gid" => {
            if !dynamic && value.parse::<u32>().is_err() {
                return Err(format!("invalid value `{value}` for {key}"));
            }
            if key == "uid" { m.uid = Some(value) } else { m.gid = Some(value) }
        }
        "env" => m.env = Some(value),
        _ => return Err(unknown_mount_key(&key, field)),
    }
    Ok(())
}

/// The value of a mount's `type=`.
fn parse_mount_type(value: &str) -> Result<MountType, String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => {
            let hint = did_you_mean(value, ["bind", "cache", "tmpfs", "secret", "ssh"])
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!("unsupported mount type `{value}`{hint}"));
        }
    })
}

/// The error for a `--mount` key `BuildKit` does not know, with the nearest known one.
fn unknown_mount_key(key: &str, field: &str) -> String {
    const KEYS: &[&str] = &[
        "type",
        "from",
        "source",
        "target",
        "readonly",
        "id",
        "sharing",
        "required",
        "size",
        "mode",
        "uid",
        "gid",
        "src",
        "dst",
        "destination",
        "ro",
        "rw",
        "readwrite",
        "env",
    ];
    let hint = did_you_mean(key, KEYS.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!("unexpected key `{key}` in `{field}`{hint}")
}

/// Refuses options the mount's type does not take, and a secret mount that names nothing.
fn check_mount_keys_fit_type(m: &Mount) -> Result<(), String> {
    let t = m.mount_type();
    if m.required.is_some() && !matches!(t, MountType::Secret | MountType::Ssh) {
        return Err(format!("unexpected key `required` for mount type `{}`", type_name(t)));
    }
    if m.size.is_some() && t != MountType::Tmpfs {
        return Err(format!("unexpected key `size` for mount type `{}`", type_name(t)));
    }
    if !matches!(t, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (k, v) in [("mode", &m.mode), ("uid", &m.uid), ("gid", &m.gid)] {
            if v.is_some() {
                return Err(format!("{k} not allowed for `{}` mounts", type_name(t)));
            }
        }
    }
    if t == MountType::Secret {
        if m.from.is_some() {
            return Err("a secret mount cannot have `from`".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(
                "invalid secret mount: one of `id`, `source` or `target` is required".into()
            );
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("a secret mount cannot set both `source` and `id`".into());
        }
    }
    if m.sharing.is_some() && t != MountType::Cache {
        return Err(format!("`sharing` is only valid for cache mounts, not `{}`", type_name(t)));
    }
    Ok(())
}

/// The Dockerfile spelling of a mount type.
pub(crate) fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Splits one CSV record (RFC 4180 quoting), as the `--mount` value parser does.
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut in_quotes = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            }
            '"' if at_start => in_quotes = true,
            ',' if !in_quotes => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if in_quotes {
        return Err("failed to parse the mount: unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("C:\\", '`'), ("C:\\", true));
    }

    #[test]
    fn flags_are_extracted() {
        let (at, flags) =
            extract_flags("--mount=type=cache,target=/x --network=none  apt-get", '\\');
        assert_eq!(at, 45);
        let texts: Vec<_> = flags.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["--mount=type=cache,target=/x", "--network=none"]);
        let (at, flags) = extract_flags("--from=\"a b\" -- --x", '\\');
        assert_eq!(flags[0].text, "--from=a b");
        assert_eq!(&"--from=\"a b\" -- --x"[at..], " --x");
    }

    #[test]
    fn words_keep_quotes() {
        let w: Vec<_> =
            parse_words("a=\"b c\" d='e' f\\ g", '\\').into_iter().map(|(w, _)| w).collect();
        assert_eq!(w, ["a=\"b c\"", "d='e'", "f\\ g"]);
    }

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc_word("<<EOF").unwrap();
        assert!(h.expand && !h.chomp && h.name == "EOF");
        let h = parse_heredoc_word("<<-'EOT'").unwrap();
        assert!(!h.expand && h.chomp && h.name == "EOT");
        let h = parse_heredoc_word("3<<\"E\"OF").unwrap();
        assert!(!h.expand && h.fd == 3 && h.name == "EOF");
        assert!(parse_heredoc_word("<<").is_none());
        assert!(parse_heredoc_word("a<<EOF").is_none());
    }

    #[test]
    fn csv_and_durations() {
        assert_eq!(split_csv("a,\"b,c\",d").unwrap(), ["a", "b,c", "d"]);
        assert!(check_duration("1m30s").is_ok());
        assert!(check_duration("0").is_ok());
        assert!(check_duration("10").is_err());
        assert!(check_duration("1us").is_err());
        assert!(check_duration("5x").is_err());
    }
}
