//! The build context: the folder `copy` reads from, filtered by `.stackignore` (or, when there
//! is none, `.dockerignore`), and the selection and hashing of the files a step copies.
//!
//! Invariants: nothing outside the context root is ever selected; symlinks named as sources are
//! followed with the context root as `/`, as Docker does; regular files are hashed through
//! [`open::open_beneath`] (never through a symlink) and special files are never opened.

pub(crate) mod ignore;
pub(crate) mod open;
pub(crate) mod statcache;

use rustix::fs::{AtFlags, Mode, OFlags};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use rayon::prelude::*;

use crate::digest::Digest;
pub(crate) use ignore::IgnoreError;
pub use ignore::IgnoreRules;

/// What kind of object a context entry is. FIFOs and devices are copied as what they are,
/// as `BuildKit` recreates them; their contents are never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
}

/// One file, folder or symlink of the context, with what the cache key needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub size: u64,
    /// blake3 of the content, for regular files.
    pub hash: Option<Digest>,
    /// The link target, for symlinks.
    pub link: Option<String>,
    /// Where it is (for messages and the stat cache).
    pub abs: PathBuf,
    /// Its path relative to the context root, symlinks resolved: regular files are opened
    /// with it beneath the root, never through a symlink (see [`open::open_beneath`]).
    pub rel: String,
    /// The stat fields the stat cache compares.
    pub stamp: Option<statcache::Stamp>,
}

/// One item a `copy` source matched: a file, or a folder with everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The item's base name (empty for the context root itself).
    pub name: String,
    /// The context root its files are opened beneath.
    pub root: PathBuf,
    pub is_dir: bool,
    /// For a file: one entry with an empty path. For a folder: its contents, relative to it,
    /// sorted, parents before children.
    pub entries: Vec<(String, FileMeta)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the build context `{}` does not exist or is not a folder", path.display())]
    Missing { path: PathBuf },
    #[error("failed to read `{}` in the build context", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    #[error("`{}` is a socket, which an image cannot hold", path.display())]
    Socket { path: PathBuf },
    #[error("interrupted while reading the build context")]
    Interrupted,
}

/// Why a `copy` source selects nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("`{source_path}` is outside the build context")]
    Outside { source_path: String },
    #[error("`{source_path}` is not in the build context{}", if *excluded { " (it is excluded by the ignore file)" } else { "" })]
    NotFound { source_path: String, excluded: bool },
    #[error("symlink loop at `{source_path}`")]
    SymlinkLoop { source_path: String },
    #[error("`{source_path}` is not a valid pattern: {reason}")]
    BadPattern { source_path: String, reason: String },
    #[error(
        "`{source_path}` is in stack's {what} `{path}`, which is never part of the build context"
    )]
    Reserved { source_path: String, what: &'static str, path: String },
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// An opened build context.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub root: PathBuf,
    pub ignore: IgnoreRules,
    /// Hashes of unchanged files from earlier builds.
    pub stat_cache: std::sync::Arc<statcache::StatCache>,
    /// stack's own folders and files inside the context (the output, the store), relative to
    /// the root, with what they are: never selected, whatever the ignore file says, so a build
    /// never copies its earlier output into an image (and its key stays the same).
    reserved: Vec<(String, &'static str)>,
    /// Asked while walking and hashing: `true` stops with [`ContextError::Interrupted`] (the
    /// CLI passes its Ctrl-C/SIGTERM flag).
    pub cancelled: fn() -> bool,
}

fn never() -> bool {
    false
}

impl Context {
    /// Opens the folder `root` and reads its ignore file.
    pub(crate) fn open(root: &Path) -> Result<Self, ContextError> {
        let root = fs_err::canonicalize(root)
            .map_err(|_| ContextError::Missing { path: root.to_owned() })?;
        if !root.is_dir() {
            return Err(ContextError::Missing { path: root });
        }
        let mut ignore = IgnoreRules::default();
        for name in [".stackignore", ".dockerignore"] {
            let path = root.join(name);
            if fs_err::symlink_metadata(&path).is_ok() {
                // Like any context file: never through a symlink, never a FIFO that would block.
                let text = open::open_beneath(&root, name)
                    .and_then(std::io::read_to_string)
                    .map_err(|source| ContextError::Io { path: path.clone(), source })?;
                ignore = IgnoreRules::parse(&path.display().to_string(), &text)?;
                break;
            }
        }
        Ok(Self {
            root,
            ignore,
            stat_cache: std::sync::Arc::default(),
            reserved: Vec::new(),
            cancelled: never,
        })
    }

    /// Keeps `path` (which need not exist yet), one of stack's own folders or files, out of
    /// every selection when it lies inside the context. `what` names it in messages.
    pub(crate) fn reserve(&mut self, path: &Path, what: &'static str) {
        if let Some(rel) = inside(&self.root, path)
            && !rel.is_empty()
            && !self.reserved.iter().any(|(r, _)| *r == rel)
        {
            self.reserved.push((rel, what));
        }
    }

    /// The reserved path `rel` (context-relative, normalised) is, or lies below.
    fn reserved_at(&self, rel: &str) -> Option<&(String, &'static str)> {
        self.reserved.iter().find(|(r, _)| {
            rel.strip_prefix(r.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn reserved_error(&self, source: &str, rel: &str) -> Option<SelectError> {
        self.reserved_at(rel).map(|(r, what)| SelectError::Reserved {
            source_path: source.to_owned(),
            what,
            path: r.clone(),
        })
    }

    /// Selects and hashes what one `copy` source names: a path, or a glob.
    pub(crate) fn select(
        &self,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        let rel = normalize(source)
            .ok_or_else(|| SelectError::Outside { source_path: source.to_owned() })?;
        let excludes = if excludes.is_empty() {
            None
        } else {
            Some(IgnoreRules::parse("exclude", &excludes.join("\n")).map_err(|e| {
                SelectError::BadPattern { source_path: e.pattern, reason: e.reason }
            })?)
        };
        let mut selected = if has_glob(&rel) {
            self.select_glob(source, &rel)?
        } else {
            vec![self.select_path(source, &rel)?]
        };
        for item in &mut selected {
            if let Some(ex) = &excludes {
                item.entries.retain(|(p, _)| p.is_empty() || !ex.is_excluded(p));
            }
            hash_files(&self.root, &mut item.entries, &self.stat_cache, self.cancelled)?;
        }
        Ok(selected)
    }

    fn select_path(&self, source: &str, rel: &str) -> Result<Selected, SelectError> {
        if let Some(e) = self.reserved_error(source, rel) {
            return Err(e);
        }
        if !rel.is_empty() && self.ignore.is_excluded(rel) {
            return Err(SelectError::NotFound { source_path: source.to_owned(), excluded: true });
        }
        // `None` only after too many symlinks: a loop, which is not the same as a typo.
        let resolved = self
            .resolve_in_root(rel)
            .ok_or_else(|| SelectError::SymlinkLoop { source_path: source.to_owned() })?;
        if let Some(e) = self.reserved_error(source, &resolved) {
            return Err(e);
        }
        let abs = self.root.join(&resolved);
        // Every symlink was resolved above; one that appeared since is not followed.
        let meta = fs_err::symlink_metadata(&abs)
            .ok()
            .filter(|m| !m.file_type().is_symlink())
            .ok_or_else(|| SelectError::NotFound {
                source_path: source.to_owned(),
                excluded: false,
            })?;
        let name = rel.rsplit('/').next().unwrap_or("").to_owned();
        let root = self.root.clone();
        if meta.is_dir() {
            let entries = self.walk(&resolved)?;
            Ok(Selected { name, root, is_dir: true, entries })
        } else {
            let fm = file_meta(&abs, resolved, &Lstat::from(&meta), None)?;
            Ok(Selected { name, root, is_dir: false, entries: vec![(String::new(), fm)] })
        }
    }

    fn select_glob(&self, source: &str, rel: &str) -> Result<Vec<Selected>, SelectError> {
        let glob = GlobBuilder::new(rel)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| SelectError::BadPattern {
                source_path: source.to_owned(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        // Walk only below the part of the pattern that has no glob characters.
        let static_prefix: Vec<&str> = rel.split('/').take_while(|c| !has_glob(c)).collect();
        let depth = rel.split('/').count();
        let start = static_prefix.join("/");
        let start_abs = self.root.join(&start);
        if !start_abs.is_dir() {
            return Err(SelectError::NotFound { source_path: source.to_owned(), excluded: false });
        }
        let mut matches = Vec::new();
        for entry in walkdir::WalkDir::new(&start_abs)
            .min_depth(1)
            .max_depth(depth - static_prefix.len())
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| walk_error(&start_abs, e))?;
            let path = relative(&self.root, entry.path());
            if glob.is_match(&path)
                && !self.ignore.is_excluded(&path)
                && self.reserved_at(&path).is_none()
            {
                matches.push(path);
            }
        }
        if matches.is_empty() {
            return Err(SelectError::NotFound { source_path: source.to_owned(), excluded: false });
        }
        matches.iter().map(|m| self.select_path(source, m)).collect()
    }

    /// Resolves symlinks in `rel` with the context root acting as `/`.
    fn resolve_in_root(&self, rel: &str) -> Option<String> {
        crate::paths::resolve_in_root(rel, true, &|p| {
            fs_err::read_link(self.root.join(p)).ok().map(|t| t.to_string_lossy().into_owned())
        })
    }

    /// Lists a folder's contents (relative to it), honouring the ignore rules.
    ///
    /// Every folder is opened relative to its parent's descriptor without following symlinks,
    /// and every entry is `lstat`ed and read as a link relative to its folder's descriptor: a
    /// folder swapped for a symlink during the walk fails the walk instead of leading it to
    /// the host's files.
    fn walk(&self, dir_rel: &str) -> Result<Vec<(String, FileMeta)>, SelectError> {
        let dir_abs = if dir_rel.is_empty() { self.root.clone() } else { self.root.join(dir_rel) };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| ContextError::Io { path, source }
        };
        let fd = open::open_dir_beneath(&self.root, dir_rel).map_err(io(&dir_abs))?;
        let mut out = Vec::new();
        let at = Walked { fd: &fd, abs: &dir_abs, rel: "", ctx_rel: dir_rel };
        self.walk_dir(&at, &mut out)?;
        Ok(out)
    }

    /// Lists one open folder into `out` (each entry, then the folder's own contents, in name
    /// order, as a depth-first walk), `lstat`ing its entries in parallel: on large contexts
    /// the `stat` calls dominate a rebuild with no changes.
    fn walk_dir(
        &self,
        at: &Walked<'_>,
        out: &mut Vec<(String, FileMeta)>,
    ) -> Result<(), SelectError> {
        if (self.cancelled)() {
            return Err(ContextError::Interrupted.into());
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| ContextError::Io { path, source }
        };
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(at.fd).map_err(|e| io(at.abs)(e.into()))?;
        for entry in dir.by_ref() {
            let entry = entry.map_err(|e| io(at.abs)(e.into()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        let stats: Vec<Result<(String, Lstat, Option<String>), ContextError>> = names
            .into_par_iter()
            .map(|name| {
                let abs = at.abs.join(&name);
                let st = rustix::fs::statat(at.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(&abs)(e.into()))?;
                let lstat = Lstat::from(&st);
                let link = if lstat.file_type() == rustix::fs::FileType::Symlink {
                    let t = rustix::fs::readlinkat(at.fd, name.as_str(), Vec::new())
                        .map_err(|e| io(&abs)(e.into()))?;
                    Some(t.to_string_lossy().into_owned())
                } else {
                    None
                };
                Ok((name, lstat, link))
            })
            .collect();
        let descend_excluded = self.ignore.has_exceptions();
        for stat in stats {
            let (name, lstat, link) = stat?;
            let ctx_rel = join_rel(at.ctx_rel, &name);
            let is_dir = lstat.file_type() == rustix::fs::FileType::Directory;
            if self.reserved_at(&ctx_rel).is_some() {
                continue;
            }
            let excluded = !self.ignore.is_empty() && self.ignore.is_excluded(&ctx_rel);
            let abs = at.abs.join(&name);
            let rel = join_rel(at.rel, &name);
            if !excluded {
                out.push((rel.clone(), file_meta(&abs, ctx_rel.clone(), &lstat, link)?));
            }
            if is_dir && (!excluded || descend_excluded) {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(at.fd, name.as_str(), flags, Mode::empty())
                    .map_err(|e| io(&abs)(e.into()))?;
                let child = Walked { fd: &fd, abs: &abs, rel: &rel, ctx_rel: &ctx_rel };
                self.walk_dir(&child, out)?;
            }
        }
        Ok(())
    }
}

/// A folder being walked: its descriptor, its path (for messages), and its path relative to
/// the walk's start and to the context root.
struct Walked<'a> {
    fd: &'a std::os::fd::OwnedFd,
    abs: &'a Path,
    rel: &'a str,
    ctx_rel: &'a str,
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

/// What `lstat` says of an entry, from a path or from a folder's descriptor.
pub(crate) struct Lstat {
    mode: u32,
    rdev: u64,
    stamp: statcache::Stamp,
}

impl Lstat {
    fn file_type(&self) -> rustix::fs::FileType {
        rustix::fs::FileType::from_raw_mode(self.mode)
    }
}

impl From<&std::fs::Metadata> for Lstat {
    fn from(m: &std::fs::Metadata) -> Self {
        Self { mode: m.mode(), rdev: m.rdev(), stamp: statcache::Stamp::of(m) }
    }
}

impl From<&rustix::fs::Stat> for Lstat {
    fn from(st: &rustix::fs::Stat) -> Self {
        let stamp = statcache::Stamp {
            size: st.st_size as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            ino: st.st_ino,
            mode: st.st_mode,
        };
        Self { mode: st.st_mode, rdev: st.st_rdev, stamp }
    }
}

fn walk_error(path: &Path, e: walkdir::Error) -> SelectError {
    let path = e.path().unwrap_or(path).to_owned();
    SelectError::Context(ContextError::Io { path, source: e.into() })
}

/// What an entry is, from its `lstat`; sockets are refused (a tar cannot hold them).
fn file_kind(abs: &Path, meta: &Lstat) -> Result<FileKind, ContextError> {
    use rustix::fs::FileType;
    let dev = || (rustix::fs::major(meta.rdev), rustix::fs::minor(meta.rdev));
    Ok(match meta.file_type() {
        FileType::Symlink => FileKind::Symlink,
        FileType::Directory => FileKind::Dir,
        FileType::Fifo => FileKind::Fifo,
        FileType::CharacterDevice => {
            let (major, minor) = dev();
            FileKind::CharDevice { major, minor }
        }
        FileType::BlockDevice => {
            let (major, minor) = dev();
            FileKind::BlockDevice { major, minor }
        }
        FileType::Socket => return Err(ContextError::Socket { path: abs.to_owned() }),
        _ => FileKind::File,
    })
}

fn file_meta(
    abs: &Path,
    rel: String,
    meta: &Lstat,
    link: Option<String>,
) -> Result<FileMeta, ContextError> {
    let kind = file_kind(abs, meta)?;
    Ok(FileMeta {
        kind,
        mode: meta.mode & 0o7777,
        size: if kind == FileKind::File { meta.stamp.size } else { 0 },
        hash: None,
        link,
        abs: abs.to_owned(),
        rel,
        stamp: (kind == FileKind::File).then_some(meta.stamp),
    })
}

/// Hashes every regular file in parallel, taking unchanged files' hashes from the stat cache.
/// Files are opened beneath `root` without following symlinks; size and stamp come from the
/// open file, so the hash, the size and the stat cache entry describe one version of it.
fn hash_files(
    root: &Path,
    entries: &mut [(String, FileMeta)],
    cache: &statcache::StatCache,
    cancelled: fn() -> bool,
) -> Result<(), ContextError> {
    entries.par_iter_mut().filter(|(_, m)| m.kind == FileKind::File).try_for_each(|(_, m)| {
        if cancelled() {
            return Err(ContextError::Interrupted);
        }
        if let Some(d) = m.stamp.and_then(|s| cache.get(&m.abs, &s)) {
            m.hash = Some(d);
            return Ok(());
        }
        let io = |source| ContextError::Io { path: m.abs.clone(), source };
        let file = open::open_beneath(root, &m.rel).map_err(io)?;
        let stamp = statcache::Stamp::of(&file.metadata().map_err(io)?);
        let (d, size) = open::hash_open_file(&file, stamp.size, &cancelled).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Interrupted {
                ContextError::Interrupted
            } else {
                io(e)
            }
        })?;
        if size == stamp.size {
            cache.put(&m.abs, stamp, d);
        }
        (m.hash, m.size, m.stamp) = (Some(d), size, Some(stamp));
        Ok(())
    })
}

/// `path` relative to the (canonical) `root` when it lies inside it. `path` may not exist yet:
/// its longest existing ancestor is canonicalised and the rest appended.
fn inside(root: &Path, path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    let canonical = loop {
        if let Ok(c) = fs_err::canonicalize(existing) {
            break c;
        }
        rest.push(existing.file_name()?);
        existing = existing.parent()?;
    };
    let full = rest.iter().rev().fold(canonical, |p, c| p.join(c));
    let rel = full.strip_prefix(root).ok()?;
    normalize(&rel.to_string_lossy())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned()
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Normalises a context-relative source path; `None` when it climbs out of the context.
pub(crate) use crate::paths::normalize;

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[(&str, &str)], ignore: Option<&str>) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, content).unwrap();
        }
        if let Some(text) = ignore {
            fs_err::write(dir.path().join(".dockerignore"), text).unwrap();
        }
        let c = Context::open(dir.path()).unwrap();
        (dir, c)
    }

    #[test]
    fn selects_folders_files_and_globs() {
        let (_d, c) =
            ctx(&[("src/a.rs", "a"), ("src/sub/b.rs", "b"), ("x.txt", "x"), ("y.txt", "y")], None);
        let s = c.select("src/", &[]).unwrap();
        let paths: Vec<_> = s[0].entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a.rs", "sub", "sub/b.rs"]);
        assert!(s[0].entries[0].1.hash.is_some());
        let s = c.select("*.txt", &[]).unwrap();
        assert_eq!(s.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["x.txt", "y.txt"]);
    }

    #[test]
    fn refuses_paths_outside_the_context() {
        let (_d, c) = ctx(&[("a", "a")], None);
        assert!(matches!(c.select("../etc/passwd", &[]), Err(SelectError::Outside { .. })));
        assert!(matches!(c.select("missing", &[]), Err(SelectError::NotFound { .. })));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (d, c) = ctx(&[("real/f", "f")], None);
        std::os::unix::fs::symlink("/real", d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../real/f", d.path().join("up")).unwrap();
        assert!(c.select("abs", &[]).unwrap()[0].is_dir);
        assert_eq!(c.select("up", &[]).unwrap()[0].entries[0].1.size, 1);
    }

    #[test]
    fn ignore_file_applies_with_exceptions() {
        let (_d, c) = ctx(
            &[("a/keep.txt", "k"), ("a/drop.txt", "d"), ("b.md", "b")],
            Some("a\n!a/keep.txt\n*.md\n"),
        );
        let s = c.select(".", &[]).unwrap();
        let paths: Vec<_> = s[0].entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [".dockerignore", "a/keep.txt"]);
        assert!(matches!(c.select("b.md", &[]), Err(SelectError::NotFound { excluded: true, .. })));
    }

    #[test]
    fn reserved_paths_are_never_selected() {
        let (d, mut c) =
            ctx(&[("app.txt", "a"), ("stack-out/index.json", "{}")], Some("!stack-out\n"));
        c.reserve(&d.path().join("stack-out"), "output");
        // A path that does not exist yet is reserved too (the first build's output).
        c.reserve(&d.path().join("later/out.tar"), "output");
        c.reserve(Path::new("/elsewhere/store"), "store");
        let s = c.select(".", &[]).unwrap();
        let paths: Vec<_> = s[0].entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [".dockerignore", "app.txt"]);
        assert!(matches!(c.select("stack-out/index.json", &[]), Err(SelectError::Reserved { .. })));
        assert!(matches!(c.select("later/out.tar", &[]), Err(SelectError::Reserved { .. })));
        assert_eq!(c.select("stack-*", &[]).map(|s| s.len()).ok(), None);
        std::os::unix::fs::symlink("stack-out", d.path().join("link")).unwrap();
        assert!(matches!(c.select("link", &[]), Err(SelectError::Reserved { .. })));
    }

    #[test]
    fn an_ignore_file_is_never_read_through_a_symlink_or_a_fifo() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("rules"), "secret-line\n").unwrap();
        let (d, _) = ctx(&[("a", "a")], None);
        std::os::unix::fs::symlink(outside.path().join("rules"), d.path().join(".dockerignore"))
            .unwrap();
        assert!(matches!(Context::open(d.path()), Err(ContextError::Io { .. })));
        let (d, _) = ctx(&[("a", "a")], None);
        let fifo = d.path().join(".stackignore");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(Context::open(d.path()), Err(ContextError::Io { .. })));
    }

    #[test]
    fn copy_excludes_are_relative_to_the_source() {
        let (_d, c) = ctx(&[("src/a.rs", "a"), ("src/a.md", "m")], None);
        let s = c.select("src", &["*.md".to_owned()]).unwrap();
        assert_eq!(s[0].entries.len(), 1);
    }
}
