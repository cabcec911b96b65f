//! Safe extraction of a layer blob into a folder of the store, plus its index (every entry's
//! metadata, so later steps can read owners and modes even where the tree could not get them,
//! e.g. when not running as root).
//!
//! Invariants: nothing is ever written outside the target folder: entry paths are normalised
//! (`..` is rejected), symlinks created by the layer are resolved lexically inside the root
//! before use, and every path component is opened with `O_NOFOLLOW`, so even a mistake in the
//! lexical resolution fails instead of escaping. Whiteouts become 0:0 character devices and
//! opaque folders get the overlay xattr, so the tree can serve as an overlay lower dir.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::compress::Compression;
use super::layer::{Entry, EntryKind};
use crate::digest::{OciDigest, Sha256Writer};

/// Limits that keep a hostile layer from exhausting the machine.
const MAX_PATH: usize = 4096;
const MAX_ENTRIES: usize = 5_000_000;

/// The default cap on a layer's uncompressed size (`STACK_MAX_LAYER_SIZE` overrides it): far
/// above any real layer, far below what a decompression bomb would write.
const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;
/// Extraction stops when the store's file system would keep less than this free
/// (`STACK_MIN_FREE_SPACE` overrides it), so a huge layer fails cleanly instead of filling the disk.
const DEFAULT_MIN_FREE_SPACE: u64 = 512 << 20;
/// How many uncompressed bytes pass between two free-space checks.
const SPACE_CHECK_EVERY: u64 = 64 << 20;

/// Caps on what one layer may write, read once from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest uncompressed tar stream accepted, in bytes.
    pub max_layer_size: u64,
    /// Free bytes the store's file system must keep while extracting.
    pub min_free_space: u64,
}

impl Limits {
    /// The limits from `STACK_MAX_LAYER_SIZE` and `STACK_MIN_FREE_SPACE` (bytes, or with a
    /// `K`/`M`/`G`/`T` suffix), else the defaults.
    pub(crate) fn from_env() -> Self {
        let get = |var: &str, default: u64| {
            std::env::var(var).ok().and_then(|v| parse_size(&v)).unwrap_or(default)
        };
        Self {
            max_layer_size: get("STACK_MAX_LAYER_SIZE", DEFAULT_MAX_LAYER_SIZE),
            min_free_space: get("STACK_MIN_FREE_SPACE", DEFAULT_MIN_FREE_SPACE),
        }
    }
}

/// Parses `123`, `10K`, `5M`, `2G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().trim_end_matches("iB").trim_end_matches(['B', 'b']);
    let (num, shift) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 10),
        'm' | 'M' => (&v[..v.len() - 1], 20),
        'g' | 'G' => (&v[..v.len() - 1], 30),
        't' | 'T' => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Metadata of one entry of an extracted layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    pub kind: IndexKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, String)>,
    /// blake3 of a file's content as extracted, so `stack cache verify` can tell a tree that
    /// something changed after extraction (absent in indexes written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexKind {
    File,
    Dir,
    OpaqueDir,
    Symlink,
    Hardlink,
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
    Whiteout,
}

/// The index of one extracted layer: path → metadata, sorted.
pub(crate) type LayerIndex = BTreeMap<String, IndexEntry>;

impl IndexEntry {
    /// An entry the layer implies without a header of its own (a missing parent folder, a
    /// whiteout, an opaque marker): root-owned, epoch mtime, `0755` for folders.
    pub fn implicit(kind: IndexKind) -> Self {
        let mode = if matches!(kind, IndexKind::Dir | IndexKind::OpaqueDir) { 0o755 } else { 0 };
        Self {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            xattrs: Vec::new(),
            hash: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, IndexKind::Dir | IndexKind::OpaqueDir)
    }

    /// Turns the entry back into a layer [`Entry`] whose content is read from `tree`.
    pub fn to_entry(&self, path: &str, tree: &Path) -> Entry {
        let kind = match self.kind {
            IndexKind::File => EntryKind::File { source: tree.join(path), size: self.size },
            IndexKind::Dir => EntryKind::Dir { opaque: false },
            IndexKind::OpaqueDir => EntryKind::Dir { opaque: true },
            IndexKind::Symlink => {
                EntryKind::Symlink { target: self.link.clone().unwrap_or_default() }
            }
            IndexKind::Hardlink => {
                EntryKind::Hardlink { target: self.link.clone().unwrap_or_default() }
            }
            IndexKind::CharDevice { major, minor } => EntryKind::CharDevice { major, minor },
            IndexKind::BlockDevice { major, minor } => EntryKind::BlockDevice { major, minor },
            IndexKind::Fifo => EntryKind::Fifo,
            IndexKind::Whiteout => EntryKind::Whiteout,
        };
        let xattrs = self
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone(), hex::decode(v).unwrap_or_default()))
            .collect();
        Entry {
            path: path.to_owned(),
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            xattrs,
        }
    }
}

/// Why a layer could not be extracted. Every message names the layer, and the entry when one
/// is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer `{layer}` is not a valid tar stream")]
    BadTar {
        layer: OciDigest,
        #[source]
        source: io::Error,
    },
    #[error("layer `{layer}`: entry `{path}` {problem}")]
    BadEntry { layer: OciDigest, path: String, problem: String },
    #[error(
        "layer `{layer}`: its uncompressed content hashes to `{actual}`, but the image config says `{expected}`"
    )]
    DiffIdMismatch { layer: OciDigest, expected: OciDigest, actual: OciDigest },
    #[error(
        "layer `{layer}` expands to more than {limit} bytes (raise `STACK_MAX_LAYER_SIZE` if it is genuine)"
    )]
    TooLarge { layer: OciDigest, limit: u64 },
    #[error(
        "layer `{layer}`: extracting it would leave less than {min_free} bytes free on `{}` (free space, or lower `STACK_MIN_FREE_SPACE`)", path.display()
    )]
    NoSpace { layer: OciDigest, path: PathBuf, min_free: u64 },
    #[error("layer `{layer}`: failed to write `{}`", path.display())]
    Write {
        layer: OciDigest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Opens a decompressing reader over a layer blob.
pub(crate) fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(reader)))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        Compression::None => Box::new(reader),
    })
}

/// Why a [`HashingReader`] stopped the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TooLarge,
    NoSpace,
}

/// Hashes everything read through it (the diff id of the uncompressed tar), and stops the
/// stream when it outgrows the limits: past the size cap, or when the file system holding
/// `tree` runs low on space.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256Writer,
    limits: Limits,
    tree: &'a Path,
    read: u64,
    next_space_check: u64,
    stopped: Option<Stop>,
}

impl<R: Read> HashingReader<'_, R> {
    fn check_limits(&mut self) -> Option<Stop> {
        if self.read > self.limits.max_layer_size {
            return Some(Stop::TooLarge);
        }
        if self.read >= self.next_space_check {
            self.next_space_check = self.read + SPACE_CHECK_EVERY;
            if let Ok(st) = rustix::fs::statvfs(self.tree) {
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                if free < self.limits.min_free_space {
                    return Some(Stop::NoSpace);
                }
            }
        }
        None
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stopped.is_some() {
            return Err(io::Error::other("layer stopped at its limits"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if let Some(stop) = self.check_limits() {
            self.stopped = Some(stop);
            return Err(io::Error::other("layer stopped at its limits"));
        }
        Ok(n)
    }
}

/// Extracts the uncompressed tar `reader` into `dest/tree` and writes `dest/index.json`.
/// `layer` names the blob in errors; `diff_id`, when given, is checked against the content.
/// The size and free-space limits come from the environment (`Limits::from_env`).
pub fn extract(
    reader: &mut dyn Read,
    layer: &OciDigest,
    diff_id: Option<&OciDigest>,
    dest: &Path,
) -> Result<LayerIndex, ExtractError> {
    extract_with_limits(reader, layer, diff_id, dest, Limits::from_env())
}

/// [`extract`] with explicit limits.
pub(crate) fn extract_with_limits(
    reader: &mut dyn Read,
    layer: &OciDigest,
    diff_id: Option<&OciDigest>,
    dest: &Path,
    limits: Limits,
) -> Result<LayerIndex, ExtractError> {
    let tree = dest.join("tree");
    let werr = |path: &Path| {
        let path = path.to_owned();
        let layer = layer.clone();
        move |source| ExtractError::Write { layer, path, source }
    };
    fs_err::create_dir_all(&tree).map_err(werr(&tree))?;
    let root =
        rustix::fs::open(&tree, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| werr(&tree)(e.into()))?;
    let mut x = Extractor {
        layer: layer.clone(),
        root,
        tree: tree.clone(),
        index: LayerIndex::new(),
        symlinks: HashMap::new(),
        privilege: crate::privilege::Privilege::current(),
        dirs: HashMap::new(),
    };
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256Writer::default(),
        limits,
        tree: &tree,
        read: 0,
        next_space_check: 0,
        stopped: None,
    };
    let result = extract_entries(&mut x, &mut hashing);
    let result = result.and_then(|()| {
        // Drain what the tar reader left (end-of-archive padding) so the diff id covers it all.
        io::copy(&mut hashing, &mut io::sink())
            .map(drop)
            .map_err(|source| ExtractError::BadTar { layer: layer.clone(), source })
    });
    // A stop at the limits surfaces as whatever error the tar reader or the file write made of
    // it; name the real cause.
    match (hashing.stopped, result) {
        (Some(Stop::TooLarge), _) => {
            return Err(ExtractError::TooLarge {
                layer: layer.clone(),
                limit: limits.max_layer_size,
            });
        }
        (Some(Stop::NoSpace), _) => {
            return Err(ExtractError::NoSpace {
                layer: layer.clone(),
                path: tree.clone(),
                min_free: limits.min_free_space,
            });
        }
        (None, r) => r?,
    }
    let actual = hashing.hasher.finish();
    if let Some(expected) = diff_id
        && &actual != expected
    {
        return Err(ExtractError::DiffIdMismatch {
            layer: layer.clone(),
            expected: expected.clone(),
            actual,
        });
    }
    x.finish_dirs()?;
    let index_path = dest.join("index.json");
    fs_err::write(&index_path, crate::json::to_canonical(&x.index)).map_err(werr(&index_path))?;
    Ok(x.index)
}

/// Hashes a file's content on its way to disk.
struct HashingWriter {
    inner: std::fs::File,
    hasher: blake3::Hasher,
}

impl io::Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An extracted layer folder's problem, if any: its index unreadable, its tree missing, or a
/// file that differs from the index (for `store::verify`).
pub(crate) fn check_layer_dir(dir: &Path) -> Option<String> {
    let index = match read_index(dir) {
        Ok(index) => index,
        Err(e) => return Some(format!("its index is unreadable: {e}")),
    };
    if !dir.join("tree").is_dir() {
        return Some("its `tree` folder is missing".into());
    }
    check_tree(dir, &index)
}

/// Checks an extracted tree against its index: every entry there with its kind, mode, size,
/// link target and content hash, and nothing more. Returns the first difference found, e.g.
/// a file a step wrote through a bind mount, or one changed by hand.
pub(crate) fn check_tree(dir: &Path, index: &LayerIndex) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let tree = dir.join("tree");
    for (path, e) in index {
        let full = tree.join(path);
        let meta = fs_err::symlink_metadata(&full);
        let problem = match (e.kind, &meta) {
            (IndexKind::File | IndexKind::Hardlink, Ok(m)) if !m.is_file() => "is no longer a file",
            (IndexKind::File | IndexKind::Hardlink, Ok(m)) if m.size() != e.size => "changed size",
            (IndexKind::File | IndexKind::Dir | IndexKind::OpaqueDir, Ok(m))
                if m.mode() & 0o7777 != e.mode =>
            {
                "changed mode"
            }
            (IndexKind::Dir | IndexKind::OpaqueDir, Ok(m)) if !m.is_dir() => {
                "is no longer a folder"
            }
            (IndexKind::Symlink, Ok(_)) => {
                let now = fs_err::read_link(&full).ok();
                if now.as_deref() == e.link.as_deref().map(Path::new) {
                    continue;
                }
                "changed its link target"
            }
            (
                IndexKind::File | IndexKind::Hardlink | IndexKind::Dir | IndexKind::OpaqueDir,
                Err(_),
            ) => "is missing",
            (IndexKind::File | IndexKind::Hardlink, Ok(_)) => {
                let Some(expected) = &e.hash else { continue };
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full);
                let mut hasher = blake3::Hasher::new();
                match file.map(|mut f| io::copy(&mut f, &mut hasher)) {
                    Ok(Ok(_)) if hasher.finalize().to_hex().as_str() == expected => continue,
                    Ok(Ok(_)) => "changed content",
                    _ => "cannot be read",
                }
            }
            _ => continue,
        };
        return Some(format!("`{path}` {problem} since it was extracted"));
    }
    for entry in walkdir::WalkDir::new(&tree).min_depth(1) {
        let Ok(entry) = entry else { return Some("its tree cannot be read".into()) };
        let rel = entry.path().strip_prefix(&tree).unwrap_or(entry.path());
        let rel = rel.to_string_lossy();
        if !index.contains_key(rel.as_ref()) {
            return Some(format!("`{rel}` was added since it was extracted"));
        }
    }
    None
}

/// Extracts every entry of the tar stream `reader` with `x`.
fn extract_entries(x: &mut Extractor, reader: &mut dyn Read) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    let bad_tar = |source| ExtractError::BadTar { layer: x.layer.clone(), source };
    let entries = archive.entries().map_err(bad_tar)?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(ExtractError::BadTar {
                layer: x.layer.clone(),
                source: io::Error::other(format!("more than {MAX_ENTRIES} entries")),
            });
        }
        let entry =
            entry.map_err(|source| ExtractError::BadTar { layer: x.layer.clone(), source })?;
        x.entry(entry)?;
    }
    Ok(())
}

/// Reads the index of an extracted layer folder.
pub(crate) fn read_index(dir: &Path) -> io::Result<LayerIndex> {
    let bytes = fs_err::read(dir.join("index.json"))?;
    serde_json::from_slice(&bytes).map_err(io::Error::other)
}

struct Extractor {
    layer: OciDigest,
    root: OwnedFd,
    tree: PathBuf,
    index: LayerIndex,
    /// Symlinks this layer created, for resolving later entries' parents lexically.
    symlinks: HashMap<String, String>,
    /// Whether owners can be kept, and how opaque folders are marked.
    privilege: crate::privilege::Privilege,
    /// Folders whose mode and mtime are applied last (so read-only folders can be filled),
    /// by path; an entry that replaces a folder removes it.
    dirs: HashMap<String, (u32, i64)>,
}

impl Extractor {
    fn bad(&self, path: &str, problem: impl Into<String>) -> ExtractError {
        ExtractError::BadEntry {
            layer: self.layer.clone(),
            path: path.to_owned(),
            problem: problem.into(),
        }
    }

    fn write_err(&self, path: &str) -> impl FnOnce(rustix::io::Errno) -> ExtractError + use<> {
        let path = self.tree.join(path);
        let layer = self.layer.clone();
        move |e| ExtractError::Write { layer, path, source: e.into() }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw_path = entry.path_bytes().into_owned();
        let raw = String::from_utf8_lossy(&raw_path).into_owned();
        if raw.len() > MAX_PATH {
            return Err(self.bad(&raw[..64], "has a path longer than 4096 bytes"));
        }
        let Some(path) = normalize_entry_path(&raw) else {
            return Err(self.bad(&raw, "climbs out of the root with `..`"));
        };
        if path.is_empty() {
            return Ok(()); // the root folder itself: "./"
        }
        let header = entry.header().clone();
        let meta = Meta::of(&header, &mut entry);
        let (parent, name) = split(&path);
        let parent = self
            .resolve(parent)
            .ok_or_else(|| self.bad(&path, "goes through too many symlinks"))?;
        let path = join(&parent, name);

        if self.whiteout(&parent, name, &path)? {
            return Ok(());
        }

        let dir_fd = self.mkdir_p(&parent, &path)?;
        let at = At { dir: &dir_fd, name, path: &path };
        let et = header.entry_type();
        let written = match et {
            tar::EntryType::Directory => Written::just(self.write_dir(&at, &meta)?),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if et == tar::EntryType::GNUSparse {
                    return Err(
                        self.bad(&path, "is a sparse file, which stack does not accept in layers")
                    );
                }
                self.write_file(&at, &mut entry, &meta)?
            }
            tar::EntryType::Symlink => self.write_symlink(&at, link_name(&entry), &meta)?,
            tar::EntryType::Link => self.write_hardlink(&at, &link_name(&entry))?,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                Written::just(self.write_special(&at, &header, &meta))
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(()),
            other => return Err(self.bad(&path, format!("has unsupported tar type {other:?}"))),
        };
        let Written { kind, size, link, mut hash } = written;
        let Meta { uid, gid, mtime, mode, xattrs } = meta;
        if kind != IndexKind::Symlink {
            self.symlinks.remove(&path);
        }
        if !matches!(kind, IndexKind::Dir | IndexKind::OpaqueDir) {
            self.forget_below(&path);
        }
        if matches!(kind, IndexKind::Dir) && self.privilege.keeps_owners() {
            self.chown_at(&dir_fd, name, uid, gid);
        }
        if kind == IndexKind::Hardlink {
            hash = link.as_ref().and_then(|t| self.index.get(t)).and_then(|e| e.hash.clone());
        }
        let entry = IndexEntry { kind, mode, uid, gid, mtime, size, link, xattrs, hash };
        self.index.insert(path, entry);
        Ok(())
    }

    /// Applies entry `name` of folder `parent` when it is a whiteout (or AUFS bookkeeping);
    /// `false` when it is an ordinary entry, to be written.
    fn whiteout(&mut self, parent: &str, name: &str, path: &str) -> Result<bool, ExtractError> {
        if let Some(problem) = degenerate_whiteout(name) {
            return Err(self.bad(path, problem));
        }
        if name.starts_with(".wh..wh.") && name != ".wh..wh..opq" {
            // AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not content, skipped like
            // containerd does.
            return Ok(true);
        }
        if name == ".wh..wh..opq" {
            let dir_fd = self.mkdir_p(parent, path)?;
            self.mark_opaque(&dir_fd, parent);
            if let Some(e) = self.index.get_mut(parent) {
                e.kind = IndexKind::OpaqueDir;
            } else {
                self.index.insert(parent.to_owned(), IndexEntry::implicit(IndexKind::OpaqueDir));
            }
            return Ok(true);
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = join(parent, hidden);
            let dir_fd = self.mkdir_p(parent, path)?;
            remove_existing(&dir_fd, hidden);
            // A 0:0 character device is overlayfs's whiteout; creating one needs no privilege
            // since Linux 5.8. Where it still fails the index alone records the deletion.
            let _ =
                rustix::fs::mknodat(&dir_fd, hidden, FileType::CharacterDevice, Mode::empty(), 0);
            self.forget_below(&target);
            self.index.insert(target, IndexEntry::implicit(IndexKind::Whiteout));
            return Ok(true);
        }
        Ok(false)
    }

    /// A folder entry: created unless a folder is there already; its mode and time are
    /// applied last, by [`Self::finish_dirs`].
    fn write_dir(&mut self, at: &At<'_>, meta: &Meta) -> Result<IndexKind, ExtractError> {
        let At { dir: dir_fd, name, path } = *at;
        match rustix::fs::mkdirat(dir_fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) if is_dir_at(dir_fd, name) => {}
            Err(rustix::io::Errno::EXIST) => {
                remove_existing(dir_fd, name);
                rustix::fs::mkdirat(dir_fd, name, Mode::from_raw_mode(0o700))
                    .map_err(self.write_err(path))?;
            }
            Err(e) => return Err(self.write_err(path)(e)),
        }
        self.dirs.insert(path.to_owned(), (meta.mode, meta.mtime));
        let keep_opaque = self.index.get(path).is_some_and(|e| e.kind == IndexKind::OpaqueDir);
        Ok(if keep_opaque { IndexKind::OpaqueDir } else { IndexKind::Dir })
    }

    /// A regular file: its content written (and hashed) through a descriptor created anew,
    /// never through whatever was at its name.
    fn write_file<R: Read>(
        &self,
        at: &At<'_>,
        content: &mut tar::Entry<'_, R>,
        meta: &Meta,
    ) -> Result<Written, ExtractError> {
        let At { dir: dir_fd, name, path } = *at;
        let Meta { uid, gid, mtime, mode, ref xattrs } = *meta;
        remove_existing(dir_fd, name);
        let fd = rustix::fs::openat(
            dir_fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(self.write_err(path))?;
        let mut file =
            HashingWriter { inner: std::fs::File::from(fd), hasher: blake3::Hasher::new() };
        let size = io::copy(content, &mut file)
            .map_err(|source| ExtractError::BadTar { layer: self.layer.clone(), source })?;
        let hash = Some(file.hasher.finalize().to_hex().to_string());
        let file = file.inner;
        if self.privilege.keeps_owners() {
            let owned = rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            );
            // In a user namespace, ids outside its map stay the caller's (EINVAL).
            if self.privilege == crate::privilege::Privilege::HostRoot {
                owned.map_err(self.write_err(path))?;
            }
            for (k, v) in xattrs {
                let _ = rustix::fs::fsetxattr(
                    &file,
                    k.as_str(),
                    &hex::decode(v).unwrap_or_default(),
                    rustix::fs::XattrFlags::empty(),
                );
            }
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(self.write_err(path))?;
        let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
        let _ = rustix::fs::futimens(&file, &Timestamps { last_access: t, last_modification: t });
        Ok(Written { kind: IndexKind::File, size, link: None, hash })
    }

    /// A symlink to `target`, which is recorded (never followed) to resolve later entries.
    fn write_symlink(
        &mut self,
        at: &At<'_>,
        target: String,
        meta: &Meta,
    ) -> Result<Written, ExtractError> {
        let At { dir: dir_fd, name, path } = *at;
        remove_existing(dir_fd, name);
        rustix::fs::symlinkat(target.as_str(), dir_fd, name).map_err(self.write_err(path))?;
        self.chown_at(dir_fd, name, meta.uid, meta.gid);
        set_mtime(dir_fd, name, meta.mtime);
        self.symlinks.insert(path.to_owned(), target.clone());
        Ok(Written { kind: IndexKind::Symlink, size: 0, link: Some(target), hash: None })
    }

    /// A hard link to `raw_target`, which must be a file written earlier in this layer.
    fn write_hardlink(&self, at: &At<'_>, raw_target: &str) -> Result<Written, ExtractError> {
        let At { dir: dir_fd, name, path } = *at;
        let target = normalize_entry_path(raw_target).ok_or_else(|| {
            self.bad(path, format!("is a hard link to `{raw_target}`, outside the root"))
        })?;
        let (tp, tn) = split(&target);
        let tparent =
            self.resolve(tp).ok_or_else(|| self.bad(path, "links through too many symlinks"))?;
        let target = join(&tparent, tn);
        if !self
            .index
            .get(&target)
            .is_some_and(|e| matches!(e.kind, IndexKind::File | IndexKind::Hardlink))
        {
            return Err(self.bad(
                path,
                format!("is a hard link to `{target}`, which is not a file earlier in this layer"),
            ));
        }
        let tdir = self.open_existing_dir(&tparent).ok_or_else(|| {
            self.bad(path, format!("is a hard link to `{target}`, which cannot be opened"))
        })?;
        remove_existing(dir_fd, name);
        rustix::fs::linkat(&tdir, tn, dir_fd, name, AtFlags::empty())
            .map_err(self.write_err(path))?;
        let size = self.index.get(&target).map_or(0, |e| e.size);
        Ok(Written { kind: IndexKind::Hardlink, size, link: Some(target), hash: None })
    }

    /// A character or block device or a FIFO.
    fn write_special(&self, at: &At<'_>, header: &tar::Header, meta: &Meta) -> IndexKind {
        let At { dir: dir_fd, name, .. } = *at;
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let (ft, kind) = match header.entry_type() {
            tar::EntryType::Char => {
                (FileType::CharacterDevice, IndexKind::CharDevice { major, minor })
            }
            tar::EntryType::Block => {
                (FileType::BlockDevice, IndexKind::BlockDevice { major, minor })
            }
            _ => (FileType::Fifo, IndexKind::Fifo),
        };
        remove_existing(dir_fd, name);
        // Devices need privilege; without it the index still records them, which is
        // all that copying them into a new layer needs.
        let dev = rustix::fs::makedev(major, minor);
        if rustix::fs::mknodat(dir_fd, name, ft, Mode::from_raw_mode(meta.mode), dev).is_ok() {
            self.chown_at(dir_fd, name, meta.uid, meta.gid);
        }
        kind
    }

    fn chown_at(&self, dir: &OwnedFd, name: &str, uid: u32, gid: u32) {
        if self.privilege.keeps_owners() {
            let _ = rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }

    fn mark_opaque(&self, dir: &OwnedFd, path: &str) {
        let name = format!("{}.overlay.opaque", self.privilege.overlay_xattr_prefix());
        if let Ok(fd) = self.open_readable_dir(dir, path) {
            let _ =
                rustix::fs::fsetxattr(&fd, name.as_str(), b"y", rustix::fs::XattrFlags::empty());
        }
    }

    fn open_readable_dir(&self, _dir: &OwnedFd, path: &str) -> rustix::io::Result<OwnedFd> {
        let mut fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            fd = rustix::fs::openat(
                &fd,
                comp,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
        }
        Ok(fd)
    }

    /// Removes index entries below a path replaced by a non-folder (or deleted).
    fn forget_below(&mut self, path: &str) {
        crate::paths::remove_below(&mut self.index, path);
        let below = format!("{path}/");
        self.dirs.retain(|d, _| d != path && !d.starts_with(&below));
    }

    /// Resolves symlinks this layer created in a parent path, with the tree as `/`.
    fn resolve(&self, parent: &str) -> Option<String> {
        if self.symlinks.is_empty() {
            return Some(parent.to_owned());
        }
        crate::paths::resolve_in_root(parent, true, &|p| self.symlinks.get(p).cloned())
    }

    /// Opens (creating as needed) folder `dir` inside the tree, never following a symlink.
    fn mkdir_p(&mut self, dir: &str, for_entry: &str) -> Result<OwnedFd, ExtractError> {
        let mut fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.write_err(for_entry))?;
        let mut so_far = String::new();
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            so_far = join(&so_far, comp);
            match rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    if !self.index.contains_key(&so_far) {
                        self.index.insert(so_far.clone(), IndexEntry::implicit(IndexKind::Dir));
                    }
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(self.write_err(for_entry)(e)),
            }
            fd = match rustix::fs::openat(
                &fd,
                comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(next) => next,
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    // A file or a symlink this layer does not resolve sits where a folder is
                    // needed: the layer replaces it, as tar would.
                    remove_existing(&fd, comp);
                    rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755))
                        .map_err(self.write_err(for_entry))?;
                    self.symlinks.remove(&so_far);
                    self.index.insert(so_far.clone(), IndexEntry::implicit(IndexKind::Dir));
                    rustix::fs::openat(
                        &fd,
                        comp,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(self.write_err(for_entry))?
                }
                Err(e) => return Err(self.write_err(for_entry)(e)),
            };
        }
        Ok(fd)
    }

    fn open_existing_dir(&self, dir: &str) -> Option<OwnedFd> {
        let mut fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            fd = rustix::fs::openat(
                &fd,
                comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
        }
        Some(fd)
    }

    /// Applies the folders' modes and mtimes, deepest first (a parent made read-only or
    /// unsearchable must not block its children). Each folder is opened without following
    /// symlinks and changed through its fd: a later entry of the layer may have replaced it
    /// by a symlink to anywhere, and a path-based chmod would follow it (to a host file).
    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        let mut dirs: Vec<(String, (u32, i64))> =
            std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by(|a, b| {
            let depth = |p: &str| p.matches('/').count();
            depth(&b.0).cmp(&depth(&a.0)).then_with(|| a.0.cmp(&b.0))
        });
        for (path, (mode, mtime)) in &dirs {
            let (parent, name) = split(path);
            let Some(dir_fd) = self.open_existing_dir(parent) else { continue };
            let fd = match rustix::fs::openat(
                &dir_fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced by something that is not a folder: nothing of it to finish.
                Err(
                    rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT,
                ) => {
                    continue;
                }
                Err(e) => return Err(self.write_err(path)(e)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode)).map_err(self.write_err(path))?;
            let t = Timespec { tv_sec: *mtime, tv_nsec: 0 };
            let _ = rustix::fs::futimens(&fd, &Timestamps { last_access: t, last_modification: t });
        }
        Ok(())
    }
}

/// Where an entry goes: its parent folder, opened, its name in it, and its path in the layer.
struct At<'a> {
    dir: &'a OwnedFd,
    name: &'a str,
    path: &'a str,
}

/// An entry's owner, time, mode and extended attributes (hex values): its header's, as its
/// PAX records amend them.
struct Meta {
    uid: u32,
    gid: u32,
    mtime: i64,
    mode: u32,
    xattrs: Vec<(String, String)>,
}

impl Meta {
    fn of<R: Read>(header: &tar::Header, entry: &mut tar::Entry<'_, R>) -> Self {
        let mut uid = header.uid().unwrap_or(0) as u32;
        let mut gid = header.gid().unwrap_or(0) as u32;
        let mut mtime = header.mtime().unwrap_or(0) as i64;
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                };
                match key {
                    "uid" => uid = num().map_or(uid, |v| v as u32),
                    "gid" => gid = num().map_or(gid, |v| v as u32),
                    "mtime" => mtime = num().unwrap_or(mtime),
                    k if k.starts_with("SCHILY.xattr.") => {
                        xattrs.push((k["SCHILY.xattr.".len()..].to_owned(), hex::encode(value)));
                    }
                    _ => {}
                }
            }
        }
        xattrs.sort();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        Meta { uid, gid, mtime, mode, xattrs }
    }
}

/// What writing an entry left, for its index entry.
struct Written {
    kind: IndexKind,
    size: u64,
    link: Option<String>,
    hash: Option<String>,
}

impl Written {
    /// An entry with no content, link or hash.
    fn just(kind: IndexKind) -> Self {
        Written { kind, size: 0, link: None, hash: None }
    }
}

/// The link target an entry names (a symlink's or a hard link's), as text.
fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Why a whiteout name cannot be honoured: `.wh.` alone, `.wh..` and `.wh...` would delete
/// the folder holding them (or its parent) instead of one entry.
fn degenerate_whiteout(name: &str) -> Option<&'static str> {
    match name.strip_prefix(".wh.") {
        Some("" | "." | "..") => Some("is a whiteout that names no entry"),
        _ => None,
    }
}

fn is_dir_at(dir: &impl AsFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Deletes whatever is at `name` (a file, a symlink, or a whole folder).
fn remove_existing(dir: &OwnedFd, name: &str) {
    if rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok() {
        return;
    }
    if is_dir_at(dir, name) {
        if let Ok(sub) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
            if let Ok(mut d) = rustix::fs::Dir::read_from(&sub) {
                let names: Vec<String> = d
                    .by_ref()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "." && n != "..")
                    .collect();
                for n in names {
                    remove_existing(&sub, &n);
                }
            }
        }
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
    }
}

fn set_mtime(dir: &OwnedFd, name: &str, mtime: i64) {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    let _ = rustix::fs::utimensat(
        dir,
        name,
        &Timestamps { last_access: t, last_modification: t },
        AtFlags::SYMLINK_NOFOLLOW,
    );
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

/// Normalises a tar entry path: drops `./` and leading `/`; `None` if `..` climbs out.
pub(crate) fn normalize_entry_path(raw: &str) -> Option<String> {
    crate::paths::normalize(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::tar_writer::write_tar;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry { path: path.into(), kind, mode: 0o644, uid: 0, gid: 0, mtime: 5, xattrs: vec![] }
    }

    fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let with_mode: Vec<_> = entries.iter().map(|(p, k, l)| (*p, *k, *l, 0o644)).collect();
        tar_with_modes(&with_mode)
    }

    fn run(bytes: &[u8]) -> (tempfile::TempDir, Result<LayerIndex, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let r = extract(&mut &bytes[..], &OciDigest::of(bytes), None, &dir.path().join("x"));
        (dir, r)
    }

    #[test]
    fn extracts_what_the_writer_wrote() {
        let entries = vec![
            e("a", EntryKind::Dir { opaque: true }),
            e("a/f", EntryKind::Inline { content: b"data".to_vec() }),
            e("a/h", EntryKind::Hardlink { target: "a/f".into() }),
            e("l", EntryKind::Symlink { target: "/a/f".into() }),
            e("gone", EntryKind::Whiteout),
        ];
        let bytes = write_tar(&entries, 100, Vec::new()).unwrap();
        let (dir, r) = run(&bytes);
        let index = r.unwrap();
        let tree = dir.path().join("x/tree");
        assert_eq!(fs_err::read(tree.join("a/h")).unwrap(), b"data");
        assert_eq!(index["a"].kind, IndexKind::OpaqueDir);
        assert_eq!(index["gone"].kind, IndexKind::Whiteout);
        assert_eq!(index["l"].link.as_deref(), Some("/a/f"));
        assert_eq!(index["a/f"].mtime, 5);
        let diff = OciDigest::of(&bytes);
        let dir2 = tempfile::tempdir().unwrap();
        assert!(extract(&mut &bytes[..], &diff, Some(&diff), dir2.path()).is_ok());
        let dir3 = tempfile::tempdir().unwrap();
        let wrong = OciDigest::of(b"x");
        assert!(matches!(
            extract(&mut &bytes[..], &diff, Some(&wrong), dir3.path()),
            Err(ExtractError::DiffIdMismatch { .. })
        ));
    }

    #[test]
    fn never_writes_outside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().display().to_string();
        // A symlink to a host folder, then a file written through it.
        let bytes = raw_tar(&[
            ("evil", tar::EntryType::Symlink, &target),
            ("evil/pwned", tar::EntryType::Regular, ""),
        ]);
        let (dir, r) = run(&bytes);
        r.unwrap();
        assert!(!outside.path().join("pwned").exists(), "wrote through a symlink to the host");
        assert!(
            dir.path().join("x/tree").join(target.trim_start_matches('/')).join("pwned").exists()
        );

        let bytes = raw_tar(&[("../escape", tar::EntryType::Regular, "")]);
        let (_d, r) = run(&bytes);
        assert!(matches!(r, Err(ExtractError::BadEntry { .. })), "{r:?}");

        let bytes = raw_tar(&[
            ("up", tar::EntryType::Symlink, "../../../.."),
            ("up/etc/x", tar::EntryType::Regular, ""),
        ]);
        let (dir, r) = run(&bytes);
        r.unwrap();
        assert!(dir.path().join("x/tree/etc/x").exists());

        let bytes = raw_tar(&[("link", tar::EntryType::Link, "/etc/passwd")]);
        let (_d, r) = run(&bytes);
        assert!(matches!(r, Err(ExtractError::BadEntry { .. })), "{r:?}");
    }

    /// A tar whose entries carry the given modes (raw, so hostile values pass through).
    fn tar_with_modes(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(0);
            // Names are written raw so that hostile paths reach the extractor unchanged.
            let name = h.as_old_mut();
            name.name[..path.len()].copy_from_slice(path.as_bytes());
            name.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs_err::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_folder_replaced_by_a_symlink_never_changes_the_symlinks_target() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs_err::write(&victim, "host file").unwrap();
        let victim_dir = outside.path().join("victim-dir");
        fs_err::create_dir(&victim_dir).unwrap();
        for (inner, target) in [("x", &victim), ("d/x", &victim_dir)] {
            let before = (mode_of(&victim), mode_of(&victim_dir));
            let target = target.display().to_string();
            let bytes = tar_with_modes(&[
                ("d", tar::EntryType::Directory, "", 0o755),
                (inner, tar::EntryType::Directory, "", 0o6777),
                (inner, tar::EntryType::Symlink, &target, 0o777),
            ]);
            let (dir, r) = run(&bytes);
            r.unwrap();
            assert_eq!((mode_of(&victim), mode_of(&victim_dir)), before, "host mode changed");
            assert!(dir.path().join("x/tree").join(inner).is_symlink());
        }
    }

    #[test]
    fn folders_get_their_modes_deepest_first() {
        let bytes = tar_with_modes(&[
            ("a/b", tar::EntryType::Directory, "", 0o750),
            ("a", tar::EntryType::Directory, "", 0o500),
        ]);
        let (dir, r) = run(&bytes);
        r.unwrap();
        let tree = dir.path().join("x/tree");
        assert_eq!(mode_of(&tree.join("a/b")), 0o750);
        assert_eq!(mode_of(&tree.join("a")), 0o500);
    }

    #[test]
    fn degenerate_whiteouts_are_refused_and_never_delete_the_tree() {
        for name in ["keep/.wh..", "keep/.wh.", "keep/.wh..."] {
            let bytes = tar_with_modes(&[
                ("keep", tar::EntryType::Directory, "", 0o755),
                ("keep/file", tar::EntryType::Regular, "", 0o644),
                (name, tar::EntryType::Regular, "", 0o644),
            ]);
            let (_dir, r) = run(&bytes);
            let err = r.unwrap_err().to_string();
            assert!(err.contains("whiteout that names no entry"), "{name}: {err}");
        }
        // AUFS bookkeeping entries are skipped, not applied.
        let bytes = tar_with_modes(&[
            ("keep/file", tar::EntryType::Regular, "", 0o644),
            ("keep/.wh..wh.plnk", tar::EntryType::Directory, "", 0o755),
        ]);
        let (dir, r) = run(&bytes);
        let index = r.unwrap();
        assert!(dir.path().join("x/tree/keep/file").exists());
        assert!(!index.contains_key("keep/.wh..wh.plnk"));
    }

    #[test]
    fn a_layer_past_its_size_cap_stops_with_a_clear_error() {
        let entries = vec![e("big", EntryKind::Inline { content: vec![0; 1 << 20] })];
        let bytes = write_tar(&entries, 100, Vec::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_layer_size: 64 << 10, min_free_space: 0 };
        let r =
            extract_with_limits(&mut &bytes[..], &OciDigest::of(&bytes), None, dir.path(), limits);
        assert!(matches!(r, Err(ExtractError::TooLarge { .. })), "{r:?}");
        let limits = Limits { max_layer_size: 1 << 40, min_free_space: u64::MAX };
        let dir = tempfile::tempdir().unwrap();
        let r =
            extract_with_limits(&mut &bytes[..], &OciDigest::of(&bytes), None, dir.path(), limits);
        assert!(matches!(r, Err(ExtractError::NoSpace { .. })), "{r:?}");
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let (_d, r) = run(b"this is not a tar file at all, just some bytes that go on for a while..........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................");
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("layer `sha256:"), "{msg}");
    }
}
