//! `copy` and `add` lowering: sources from the context, a named context folder, another
//! stage or image, or URLs; their checks, their cache key and their `--explain` inputs.

use std::collections::BTreeMap;

use miette::SourceSpan;
use petgraph::stable_graph::NodeIndex;

use super::scope::Scope;
use super::stages::{Planner, StageState, StepAt, absolute, env_view};
use super::{CopyOp, CopySource, Node, Op, hash_selected};
use crate::context::{ContextError, FileKind, FileMeta, SelectError, normalize};
use crate::diag::Diagnostic;
use crate::digest::{Digest, KeyHasher, OciDigest};
use crate::oci::image::ImageConfig;
use crate::syntax::ast::{CopyStep, Spanned};
use crate::syntax::is_git_source;

impl Planner<'_> {
    /// A `copy`/`add` step's node and the node it copies from, if any.
    pub(super) fn copy_node(
        &mut self,
        stage: &StageState<'_>,
        at: &StepAt<'_>,
        c: &CopyStep,
    ) -> Option<(Node, Vec<NodeIndex>)> {
        let view = env_view(&stage.config, &stage.stage_args, &stage.arg_wins).into_owned();
        let (op, key, sources, inputs) =
            self.copy(stage.file, c, &stage.stage_args, &view, at.parent_fs)?;
        Some((at.layer_node(key, Op::Copy(op), inputs), sources))
    }

    /// Checks what a `copy`/`add` may fetch: `http(s)` URLs, only with `add`, all sources
    /// alike, no `from=`; git sources are not supported. Returns whether the sources are URLs.
    fn check_remote_sources(
        &mut self,
        fi: usize,
        c: &CopyStep,
        sources: &[(String, SourceSpan)],
        has_from: bool,
    ) -> Option<bool> {
        let mut urls = 0;
        for (s, span) in sources {
            let fail = |code: &'static str, message: String, help: &str| {
                Diagnostic::error(code, message, *span, "this source").with_help(help.to_owned())
            };
            if is_url(s) && !is_git_source(s) {
                urls += 1;
                if !c.add {
                    self.error(
                        fi,
                        fail(
                            "copy-url",
                            format!("`copy` does not fetch `{s}`"),
                            "use `add` to download a URL",
                        ),
                    );
                    return None;
                }
            } else if s.contains("://") || s.starts_with("git@") {
                let what = if is_git_source(s) { "a git source" } else { "a remote source" };
                self.error(
                    fi,
                    fail(
                        "unsupported-remote-source",
                        format!("`{s}` is {what}, which stack cannot fetch yet"),
                        "clone it in a `run` step, or add it to the build context",
                    ),
                );
                return None;
            }
        }
        if urls > 0 && (urls != sources.len() || has_from) {
            let span = sources[0].1;
            self.error(
                fi,
                Diagnostic::error(
                    "mixed-sources",
                    "URLs cannot be mixed with context files or `from=` in one step",
                    span,
                    "here",
                )
                .with_help("use one `add` for the URLs and another step for the rest"),
            );
            return None;
        }
        if urls != 1
            && let Some(cs) = &c.checksum
        {
            self.error(
                fi,
                Diagnostic::error(
                    "checksum-without-url",
                    "`checksum=` applies to an `add` of exactly one URL",
                    cs.span,
                    "here",
                ),
            );
            return None;
        }
        Some(urls > 0)
    }

    /// The `checksum="sha256:…"` of an `add`, parsed (`Err` once the error is reported).
    fn checksum(&mut self, fi: usize, c: &CopyStep) -> Result<Option<OciDigest>, ()> {
        let Some(cs) = &c.checksum else { return Ok(None) };
        match cs.value.parse::<OciDigest>() {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                self.error(
                    fi,
                    Diagnostic::error(
                        "invalid-checksum",
                        format!("`{}` is not a checksum: {e}", cs.value),
                        cs.span,
                        "here",
                    )
                    .with_help("write checksum=\"sha256:<64 hex digits>\""),
                );
                Err(())
            }
        }
    }

    /// Lowers a `copy`/`add`: its op, its key, the nodes it reads and its `--explain` inputs.
    fn copy(
        &mut self,
        fi: usize,
        c: &CopyStep,
        stage_args: &BTreeMap<String, String>,
        config: &ImageConfig,
        parent_fs: Digest,
    ) -> Option<(CopyOp, Digest, Vec<NodeIndex>, Vec<(String, String)>)> {
        let v = self.expand_copy(fi, c, stage_args, config)?;
        let urls = self.check_remote_sources(fi, c, &v.sources, v.from.is_some())?;
        let workdir = config.string("WorkingDir").unwrap_or_else(|| "/".into());
        let dest = absolute(&workdir, &v.dest);
        // A URL's `?` starts its query, not a pattern.
        let has_glob = !urls && v.sources.iter().any(|(s, _)| s.contains(['*', '?', '[']));
        let dest_is_dir =
            v.dest.ends_with('/') || v.dest.ends_with("/.") || v.sources.len() > 1 || has_glob;
        let mut h = KeyHasher::new("copy");
        h.digest(&parent_fs).str(&dest).bool(dest_is_dir).opt_str(v.chown.as_deref());
        match v.chmod {
            Some(m) => h.u8(1).u64(u64::from(m)),
            None => h.u8(0),
        };
        h.bool(c.add).bool(c.parents).strs(&v.excludes);
        let mut edges = Vec::new();
        // `from=NAME` of a `--build-context NAME=DIR` reads that folder like the context.
        let named: Option<String> =
            v.from.as_ref().and_then(|(f, _)| self.named_dir(f).map(|_| f.clone()));
        let source = match &v.from {
            None if urls => self.remote_source(fi, c, &v.sources, dest_is_dir, &mut h)?,
            Some((from, span)) if named.is_none() => {
                let node = self.source_node(fi, from, *span)?;
                let paths: Vec<String> = v.sources.iter().map(|(s, _)| absolute("/", s)).collect();
                h.u8(1).digest(&self.graph[node].fs_key).strs(&paths);
                edges.push(node);
                CopySource::Node { node, paths }
            }
            _ => self.context_source(fi, named.as_deref(), &v.sources, &v.excludes, &mut h)?,
        };
        let inputs = self.copy_inputs(parent_fs, &dest, &v, &source);
        let CopyValues { chown, chmod, excludes, .. } = v;
        let op = CopyOp {
            source,
            dest,
            dest_is_dir,
            chown,
            chmod,
            add: c.add,
            parents: c.parents,
            excludes,
        };
        Some((op, h.finish(), edges, inputs))
    }

    /// Expands a `copy`'s values, reporting each one that fails; `None` if one did.
    fn expand_copy(
        &mut self,
        fi: usize,
        c: &CopyStep,
        stage_args: &BTreeMap<String, String>,
        config: &ImageConfig,
    ) -> Option<CopyValues> {
        let text = self.text(fi);
        let globals = self.globals[fi].clone();
        let scope = Scope { globals: &globals, stage_args, config };
        let mut failed = false;
        let mut expand = |v: &Spanned<String>, this: &mut Self| match scope.expand(v, text) {
            Ok(x) => Some(x),
            Err(d) => {
                this.error(fi, d);
                failed = true;
                None
            }
        };
        let sources: Vec<(String, SourceSpan)> =
            c.sources.iter().filter_map(|s| expand(s, self).map(|v| (v, s.span))).collect();
        let dest = expand(&c.dest, self)?;
        let from = c.from.as_ref().and_then(|f| expand(f, self).map(|v| (v, f.span)));
        let chown = c.chown.as_ref().and_then(|v| expand(v, self));
        let excludes: Vec<String> = c.excludes.iter().filter_map(|e| expand(e, self)).collect();
        let chmod = match &c.chmod {
            Some(m) => Some(self.mode(fi, m)?),
            None => None,
        };
        if failed {
            return None;
        }
        Some(CopyValues { sources, dest, from, chown, excludes, chmod })
    }

    /// The URLs of an `add`, fetched through the resolver; the content and the name each
    /// lands under go into the key.
    fn remote_source(
        &mut self,
        fi: usize,
        c: &CopyStep,
        sources: &[(String, SourceSpan)],
        dest_is_dir: bool,
        h: &mut KeyHasher,
    ) -> Option<CopySource> {
        let checksum = self.checksum(fi, c).ok()?;
        let mut files = Vec::new();
        for (url, span) in sources {
            let name = url_file_name(url);
            if name.is_empty() && dest_is_dir {
                self.error(
                    fi,
                    Diagnostic::error(
                        "remote-source-unnamed",
                        format!("`{url}` names no file, so it needs a file destination"),
                        *span,
                        "no file name in this URL",
                    )
                    .with_help("write the destination as a file path, e.g. to=\"/opt/tool\""),
                );
                return None;
            }
            match self.resolver.remote(url, checksum.as_ref()) {
                Ok(file) => {
                    // The content and the name it lands under make the key, not the URL.
                    h.u8(2).str(&name).str(&file.digest.to_string());
                    files.push((name, file));
                }
                Err(e) => {
                    if let Some(d) =
                        super::machine_failure(&format!("cannot fetch `{url}`"), e.cause(), *span)
                    {
                        self.error(fi, d);
                        return None;
                    }
                    self.error(
                        fi,
                        Diagnostic::error(
                            // A server that cannot be reached is no mistake in the build file.
                            if e.unreachable {
                                "remote-unreachable"
                            } else {
                                "remote-source-failed"
                            },
                            format!("cannot fetch `{url}`: {}", crate::diag::error_chain(&e)),
                            *span,
                            "this URL",
                        ),
                    );
                    return None;
                }
            }
        }
        Some(CopySource::Remote { files })
    }

    /// The files a `copy` selects from the build context, or from the named context folder
    /// `named`; every selected file's content, mode and kind go into the key.
    fn context_source(
        &mut self,
        fi: usize,
        named: Option<&str>,
        sources: &[(String, SourceSpan)],
        excludes: &[String],
        h: &mut KeyHasher,
    ) -> Option<CopySource> {
        let context_dir = match named {
            Some(n) => self.request.contexts_dir(n),
            None => self.files[fi].context_dir.clone(),
        };
        let mut selected = Vec::new();
        let mut normalized = Vec::new();
        for (s, span) in sources {
            let Some(norm) = normalize(s) else {
                self.error(
                    fi,
                    Diagnostic::error("source-outside-context", format!("`{s}` is outside the build context"), *span, "outside the context")
                        .with_help(format!(
                            "the context is `{}`; move the file into it, or run stack from a folder that contains it",
                            context_dir.display()
                        )),
                );
                return None;
            };
            let sel = match named {
                Some(n) => self.resolver.select_named(n, s, excludes),
                None => self.resolver.select(fi, s, excludes),
            };
            match sel {
                Ok(sel) => selected.push(sel),
                Err(e) => {
                    if let Some(d) =
                        super::machine_failure(&format!("cannot read `{s}`"), &e, *span)
                    {
                        self.error(fi, d);
                        return None;
                    }
                    let (code, help) = select_error_code_and_help(&e);
                    self.error(
                        fi,
                        Diagnostic::error(
                            code,
                            crate::diag::error_chain(&e),
                            *span,
                            "cannot copy this",
                        )
                        .with_help(help),
                    );
                    return None;
                }
            }
            normalized.push(norm);
        }
        h.u8(0);
        for sel in &selected {
            hash_selected(h, sel);
        }
        Some(CopySource::Context { selected, sources: normalized })
    }

    /// What a `copy` reads and how, by name, for `--explain`.
    fn copy_inputs(
        &self,
        parent_fs: Digest,
        dest: &str,
        v: &CopyValues,
        source: &CopySource,
    ) -> Vec<(String, String)> {
        let CopyValues { chown, chmod, excludes, .. } = v;
        let mut inputs = vec![
            ("parent".to_owned(), parent_fs.to_hex()),
            ("destination".to_owned(), dest.to_owned()),
        ];
        inputs.push((
            "options".to_owned(),
            format!("chown={chown:?} chmod={chmod:?} excludes={excludes:?}"),
        ));
        match source {
            CopySource::Context { selected, .. } => {
                for (items, (src, _)) in selected.iter().zip(&v.sources) {
                    for item in items {
                        for (rel, meta) in &item.entries {
                            let path = if rel.is_empty() {
                                src.clone()
                            } else {
                                format!("{}/{rel}", src.trim_end_matches('/'))
                            };
                            inputs.push((format!("file `{path}`"), describe_file(meta)));
                        }
                    }
                }
            }
            CopySource::Remote { files } => {
                for ((url, _), (_, file)) in v.sources.iter().zip(files) {
                    inputs.push((format!("URL `{url}`"), file.digest.to_string()));
                }
            }
            CopySource::Node { node, .. } => {
                let n = &self.graph[*node];
                let from = if n.stage.is_empty() {
                    n.label.clone()
                } else {
                    format!("stage `{}`", n.stage)
                };
                inputs.push((format!("source {from}"), n.fs_key.to_hex()));
            }
        }
        inputs
    }
}

/// A `copy`'s values with `${…}` expanded.
struct CopyValues {
    sources: Vec<(String, SourceSpan)>,
    /// The destination as written: relative to the working folder unless absolute.
    dest: String,
    from: Option<(String, SourceSpan)>,
    chown: Option<String>,
    excludes: Vec<String>,
    chmod: Option<u32>,
}

/// The diagnostic code and help for a context source that cannot be selected.
fn select_error_code_and_help(e: &SelectError) -> (&'static str, &'static str) {
    match e {
        SelectError::Outside { .. } => {
            ("source-outside-context", "a symlink in the context points outside it")
        }
        SelectError::NotFound { excluded: true, .. } => (
            "source-excluded",
            "remove it from `.stackignore`/`.dockerignore`, or add a `!` exception",
        ),
        SelectError::NotFound { .. } => {
            ("source-not-found", "paths are relative to the build context")
        }
        SelectError::Reserved { .. } => (
            "source-reserved",
            "stack never copies its own output or store into an image; copy the files from elsewhere, or write the output elsewhere with `--out`",
        ),
        SelectError::SymlinkLoop { .. } => {
            ("symlink-loop", "a symlink on this path leads back to itself; fix or remove it")
        }
        SelectError::Context(ContextError::Socket { .. }) => {
            ("unsupported-file", "an image cannot hold a socket; add it to `.stackignore`")
        }
        _ => ("context-error", "check the file's permissions"),
    }
}

/// A context file as `--explain` shows it: its content hash and mode, or what else it is.
fn describe_file(meta: &FileMeta) -> String {
    match (meta.kind, &meta.hash, &meta.link) {
        (_, Some(h), _) => format!("{} mode {:o}", h.short(), meta.mode),
        (_, None, Some(l)) => format!("symlink to {l}"),
        (FileKind::Fifo, ..) => format!("fifo mode {:o}", meta.mode),
        (FileKind::CharDevice { major, minor }, ..) => {
            format!("char device {major}:{minor} mode {:o}", meta.mode)
        }
        (FileKind::BlockDevice { major, minor }, ..) => {
            format!("block device {major}:{minor} mode {:o}", meta.mode)
        }
        _ => format!("folder mode {:o}", meta.mode),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// The file name a URL gives a download: the last segment of its path.
fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    match path.split_once('/') {
        Some((_, p)) => p.rsplit('/').next().unwrap_or("").to_owned(),
        None => String::new(),
    }
}
