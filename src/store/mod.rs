//! The content-addressed local store under `STACK_CACHE_DIR`: OCI blobs by sha256, extracted
//! layer trees by diff id, and step records by cache key. The only writer of the cache folder.
//!
//! Invariants: the store is write-once; every write goes to `tmp/` first and is renamed into
//! place, so a crash or a concurrent `stack` never leaves a half-written object under its final
//! name. Every blob read is verified against its digest. Folder names carry a format version
//! (`blobs-v1`, `layers-v1`, `records-v1`): a new format misses, it never misreads.
//!
//! Reads note their use by setting the object's mtime (never atime, which mounts often
//! disable), so that `stack cache prune` can drop the least recently used objects first. Builds
//! hold `store.lock` shared; pruning and verifying hold it exclusively. Temp entries name the
//! process that made them (see `owner`), so what a dead process left is removed at once.

mod gc;
mod owner;
mod usage;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use gc::{PruneOptions, prune, verify};
pub(crate) use usage::{Area, AreaUsage, usage};

use crate::digest::{Digest, OciDigest, Sha256Writer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create the store at `{}`", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob `{digest}` is missing from the store")]
    MissingBlob { digest: OciDigest },
    #[error("blob `{digest}` is corrupt: its content hashes to `{actual}`")]
    Corrupt { digest: OciDigest, actual: OciDigest },
    #[error("blob `{digest}` has {actual} bytes, but {expected} were announced")]
    WrongSize { digest: OciDigest, expected: u64, actual: u64 },
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob `{digest}` could not be fetched from {source_name}: {reason}")]
    Fetch { digest: OciDigest, source_name: String, reason: String },
    #[error("record `{}` is unreadable", path.display())]
    BadRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { action, path, source }
}

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// A lock on `store.lock` that lives as long as the store and its clones (see
    /// [`Store::holding`]).
    lock: Option<Arc<StoreLock>>,
    /// Blobs this process wrote and hashed itself: copying them out needs no second hash.
    fresh: Arc<std::sync::Mutex<std::collections::HashSet<OciDigest>>>,
    /// This process's claim on its temp entries, made on first use (`None` when the lock file
    /// cannot be made: the entries are then unowned and left to the age rule).
    owner: Arc<std::sync::OnceLock<Option<owner::Owner>>>,
    /// Where blobs this store lacks can come from (the registry step cache).
    fallback: Option<Arc<dyn BlobSource>>,
}

/// A place that holds blobs the store may lack: a store with one downloads a missing blob on
/// first read (verified like every import), so a step reused from a remote cache costs a
/// download only when something here needs its bytes.
pub trait BlobSource: Send + Sync + std::fmt::Debug {
    /// Whether `digest` can be fetched from here.
    fn has(&self, digest: &OciDigest) -> bool;
    /// Downloads `digest` into `store`, committing it only once verified.
    fn fetch(&self, store: &Store, digest: &OciDigest) -> Result<(), StoreError>;
}

/// How a [`StoreLock`] is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Held by builds: any number at once.
    Shared,
    /// Held by `stack cache prune`/`verify`: nobody else.
    Exclusive,
}

/// A held `flock` on the store's `store.lock`; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs_err::File,
    mode: LockMode,
}

impl StoreLock {
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Store {
    /// The store folder to use: `STACK_CACHE_DIR`, else `$XDG_CACHE_HOME/stack`, else
    /// `~/.cache/stack`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("STACK_CACHE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("stack");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        home.join(".cache").join("stack")
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        // Absolute, always: the sandbox reads layer trees and scratch folders from its own
        // working directory, so a relative `STACK_CACHE_DIR=cache` would point elsewhere.
        let absolute = std::path::absolute(root);
        let root = absolute.as_deref().unwrap_or(root);
        for sub in ["blobs-v1/sha256", "layers-v1", "records-v1", "tmp"] {
            let p = root.join(sub);
            fs_err::create_dir_all(&p)
                .map_err(|source| StoreError::Create { path: p.clone(), source })?;
        }
        // Private to its owner, like containers/storage: images hold setuid files and device
        // nodes, and steps plant more in cache mounts; no other local user may reach them.
        // A store of another owner keeps its mode (changing it fails, and is not ours to do).
        let _ = fs_err::set_permissions(
            root,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        );
        Ok(Self {
            root: root.to_owned(),
            lock: None,
            fresh: Arc::default(),
            owner: Arc::default(),
            fallback: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("store.lock")
    }

    fn lock_file(&self) -> Result<fs_err::File, StoreError> {
        let path = self.lock_path();
        fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Io { action: "open the lock file", path, source })
    }

    fn lock(&self, mode: LockMode, wait: bool) -> Result<Option<StoreLock>, StoreError> {
        use rustix::fs::FlockOperation as Op;
        let file = self.lock_file()?;
        let op = match (mode, wait) {
            (LockMode::Shared, true) => Op::LockShared,
            (LockMode::Shared, false) => Op::NonBlockingLockShared,
            (LockMode::Exclusive, true) => Op::LockExclusive,
            (LockMode::Exclusive, false) => Op::NonBlockingLockExclusive,
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(StoreLock { _file: file, mode })),
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => Ok(None),
            Err(e) => {
                Err(StoreError::Io { action: "lock", path: self.lock_path(), source: e.into() })
            }
        }
    }

    /// Takes `store.lock` shared, as builds do, waiting while a prune holds it.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        Ok(self.lock(LockMode::Shared, true)?.expect("a blocking lock returns one"))
    }

    /// Takes `store.lock` shared if no prune holds it; `None` if one does.
    pub fn try_lock_shared(&self) -> Result<Option<StoreLock>, StoreError> {
        self.lock(LockMode::Shared, false)
    }

    /// Takes `store.lock` exclusively, waiting for running builds to end.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        Ok(self.lock(LockMode::Exclusive, true)?.expect("a blocking lock returns one"))
    }

    /// Takes `store.lock` exclusively if nobody holds it; `None` if somebody does.
    pub fn try_lock_exclusive(&self) -> Result<Option<StoreLock>, StoreError> {
        self.lock(LockMode::Exclusive, false)
    }

    /// Keeps `lock` held for as long as this store (or any clone of it) lives.
    #[must_use]
    pub fn holding(mut self, lock: StoreLock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// Notes a use of the object at `path` for least-recently-used pruning by setting its
    /// mtime to now. Best effort: a read-only store still works, it only prunes less well.
    pub fn note_use(path: &Path) {
        use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT, utimensat};
        let times = Timestamps {
            last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
            last_modification: Timespec { tv_sec: 0, tv_nsec: UTIME_NOW },
        };
        let _ = utimensat(CWD, path, &times, AtFlags::empty());
    }

    pub fn blob_path(&self, digest: &OciDigest) -> PathBuf {
        self.root.join("blobs-v1/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &OciDigest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The same store, fetching the blobs it lacks from `source`.
    #[must_use]
    pub fn with_fallback(mut self, source: Arc<dyn BlobSource>) -> Self {
        self.fallback = Some(source);
        self
    }

    /// Whether the blob is here or can be fetched by [`Store::ensure_blob`].
    pub fn can_provide(&self, digest: &OciDigest) -> bool {
        self.has_blob(digest) || self.fallback.as_ref().is_some_and(|f| f.has(digest))
    }

    /// Makes sure blob `digest` is in the store, fetching it from the fallback if needed.
    pub fn ensure_blob(&self, digest: &OciDigest) -> Result<(), StoreError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        match &self.fallback {
            Some(f) if f.has(digest) => f.fetch(self, digest),
            _ => Err(StoreError::MissingBlob { digest: digest.clone() }),
        }
    }

    /// The name prefix of a new temp entry: `PREFIX@OWNER@`, which tells the next process
    /// whether the one that made it is still running.
    fn temp_prefix(&self, prefix: &str) -> String {
        let owners = self.root.join("owners");
        match self.owner.get_or_init(|| owner::Owner::new(&owners).ok()) {
            Some(o) => o.prefix(prefix),
            None => prefix.to_owned(),
        }
    }

    /// Removes what processes that died (SIGKILL, a crash) left in `tmp/`, never an entry of
    /// a process that is still running. Best effort; returns how many entries went.
    pub fn remove_dead_temp(&self) -> usize {
        owner::remove_dead(&self.root.join("tmp"), &self.root.join("owners"))
    }

    /// A temporary file in the store's own `tmp/`, so that committing it is a rename.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&self.temp_prefix("blob-"))
            .tempfile_in(&dir)
            .map_err(io_err("create a temporary file in", &dir))
    }

    /// A temporary folder in the store's own `tmp/`.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&self.temp_prefix(prefix))
            .tempdir_in(&dir)
            .map_err(io_err("create a temporary folder in", &dir))
    }

    /// Moves a finished temporary file into place as blob `digest` (which the caller computed
    /// while writing it).
    pub fn commit_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &OciDigest,
    ) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            Self::note_use(&dest);
            return Ok(());
        }
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            action: "store blob",
            path: dest.clone(),
            source: e.error,
        })?;
        // The caller hashed these bytes as it wrote them.
        self.fresh.lock().expect("no panics while locked").insert(digest.clone());
        Ok(())
    }

    /// Stores bytes as a blob and returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<OciDigest, StoreError> {
        let digest = OciDigest::of(bytes);
        if !self.has_blob(&digest) {
            let mut tmp = self.temp_file()?;
            tmp.write_all(bytes).map_err(io_err("write", &self.root.join("tmp")))?;
            self.commit_blob(tmp, &digest)?;
        }
        Ok(digest)
    }

    /// Copies a blob from `reader` into the store, verifying it against `digest` (and `size`
    /// when known) before it becomes visible.
    pub fn import_blob(
        &self,
        reader: &mut dyn Read,
        digest: &OciDigest,
        size: Option<u64>,
    ) -> Result<(), StoreError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        let mut hasher = Sha256Writer::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(|source| StoreError::Io {
                action: "read blob",
                path: PathBuf::from(digest.to_string()),
                source,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err("write", &self.root.join("tmp")))?;
        }
        let len = hasher.len();
        let actual = hasher.finish();
        if &actual != digest {
            return Err(StoreError::Corrupt { digest: digest.clone(), actual });
        }
        if let Some(expected) = size
            && expected != len
        {
            return Err(StoreError::WrongSize { digest: digest.clone(), expected, actual: len });
        }
        self.commit_blob(tmp, digest)
    }

    /// Reads a whole (small) blob and verifies it.
    pub fn read_blob(&self, digest: &OciDigest) -> Result<Vec<u8>, StoreError> {
        self.ensure_blob(digest)?;
        let path = self.blob_path(digest);
        let bytes = fs_err::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: digest.clone() }
            } else {
                StoreError::Io { action: "read", path: path.clone(), source: e }
            }
        })?;
        Self::note_use(&path);
        let actual = OciDigest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::Corrupt { digest: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the reader fails at the end if the content does not match.
    pub fn open_blob(&self, digest: &OciDigest) -> Result<VerifyingReader, StoreError> {
        self.ensure_blob(digest)?;
        let path = self.blob_path(digest);
        let file = fs_err::File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: digest.clone() }
            } else {
                StoreError::Io { action: "open", path: path.clone(), source: e }
            }
        })?;
        Self::note_use(&path);
        Ok(VerifyingReader {
            inner: io::BufReader::with_capacity(1 << 20, file),
            hasher: Sha256Writer::default(),
            expected: digest.clone(),
        })
    }

    /// Puts blob `digest` at `dest`, verified first unless this process wrote and hashed it. A
    /// hard link when `dest` is on the store's file system (blobs are write-once and only ever
    /// unlinked, so sharing the inode is safe: a later prune removes the store's name, not the
    /// output's), else a copy.
    pub fn copy_blob_to(&self, digest: &OciDigest, dest: &Path) -> Result<u64, StoreError> {
        self.ensure_blob(digest)?;
        let fresh = self.fresh.lock().expect("no panics while locked").contains(digest);
        let n = if fresh {
            let path = self.blob_path(digest);
            fs_err::metadata(&path).map_err(io_err("read", &path))?.len()
        } else {
            let mut reader = self.open_blob(digest)?;
            io::copy(&mut reader, &mut io::sink()).map_err(|e| {
                match e.downcast::<StoreError>() {
                    Ok(store) => store,
                    Err(e) => StoreError::Io {
                        action: "read blob",
                        path: self.blob_path(digest),
                        source: e,
                    },
                }
            })?
        };
        // A unique temporary name: another process may be putting the same blob there.
        let dir = dest.parent().unwrap_or(Path::new("."));
        let src = self.blob_path(digest);
        let tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .make_in(dir, |tmp| {
                if fs_err::hard_link(&src, tmp).is_err() {
                    let mut to = std::fs::File::options().write(true).create_new(true).open(tmp)?;
                    io::copy(&mut fs_err::File::open(&src)?, &mut to)?;
                }
                Ok(())
            })
            .map_err(io_err("copy blob to", dir))?;
        tmp.persist(dest).map_err(|e| StoreError::Io {
            action: "rename into",
            path: dest.into(),
            source: e.error,
        })?;
        Ok(n)
    }

    fn record_path(&self, kind: &str, key: &Digest) -> PathBuf {
        self.root.join("records-v1").join(kind).join(format!("{}.json", key.to_hex()))
    }

    /// Reads the record of `kind` stored under `key`, if any, and notes its use.
    pub fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        key: &Digest,
    ) -> Result<Option<T>, StoreError> {
        let path = self.record_path(kind, key);
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .inspect(|_| self.touch_record(kind, key))
                .map(Some)
                .map_err(|source| StoreError::BadRecord { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { action: "read", path, source: e }),
        }
    }

    /// Notes a use of the record of `kind` under `key` (a cache hit), for pruning.
    pub fn touch_record(&self, kind: &str, key: &Digest) {
        Self::note_use(&self.record_path(kind, key));
    }

    /// Writes a record atomically (temp file + rename).
    pub fn put_record<T: serde::Serialize>(
        &self,
        kind: &str,
        key: &Digest,
        value: &T,
    ) -> Result<(), StoreError> {
        let path = self.record_path(kind, key);
        let dir = path.parent().expect("records have a parent");
        fs_err::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mut tmp = self.temp_file()?;
        tmp.write_all(&crate::json::to_canonical(value)).map_err(io_err("write", &path))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            action: "write",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// The stat-cache file of a build context folder.
    pub fn stat_cache_path(&self, context_root: &Path) -> PathBuf {
        let key = Digest::of(context_root.as_os_str().as_encoded_bytes());
        self.root.join("statcache-v1").join(format!("{}.bin", key.to_hex()))
    }

    /// Saves a stat cache atomically (temp file + rename).
    pub fn save_stat_cache(&self, context_root: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.stat_cache_path(context_root);
        let dir = path.parent().expect("has a parent");
        fs_err::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).map_err(io_err("write", &path))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            action: "write",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Where the extracted tree of layer `diff_id` lives once it exists. Asking for it notes
    /// a use of the tree (materialising a layer always starts here). Trees extracted with
    /// different standing (see `privilege::Privilege`) live apart.
    pub fn layer_dir(&self, diff_id: &OciDigest) -> PathBuf {
        let suffix = crate::privilege::Privilege::current().tree_suffix();
        let dir = self.root.join("layers-v1").join(format!("{}{suffix}", diff_id.hex()));
        Self::note_use(&dir);
        dir
    }

    /// Moves a fully extracted layer folder into place; if another process got there first,
    /// its copy is kept and ours is dropped.
    pub fn commit_layer_dir(
        &self,
        tmp: tempfile::TempDir,
        diff_id: &OciDigest,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.layer_dir(diff_id);
        let staged = tmp.keep();
        match fs_err::rename(&staged, &dest) {
            Ok(()) => {
                Self::note_use(&dest);
                Ok(dest)
            }
            Err(_) if dest.join("index.json").exists() => {
                remove_tree(&staged);
                Self::note_use(&dest);
                Ok(dest)
            }
            Err(source) => {
                remove_tree(&staged);
                Err(StoreError::Io { action: "move extracted layer to", path: dest, source })
            }
        }
    }
}

/// Removes a folder tree, making read-only folders writable first (layers can contain them).
/// Removes a folder with [`remove_tree`], or a file. Best effort.
fn remove_tree_or_file(path: &Path) {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        _ => {
            let _ = fs_err::remove_file(path);
        }
    }
}

pub(crate) fn remove_tree(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if fs_err::remove_dir_all(path).is_ok() {
        return;
    }
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = fs_err::remove_dir_all(path);
}

/// A blob reader that checks the digest when the end is reached.
pub struct VerifyingReader {
    inner: io::BufReader<fs_err::File>,
    hasher: Sha256Writer,
    expected: OciDigest,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            let actual = std::mem::take(&mut self.hasher).finish();
            if actual != self.expected {
                return Err(io::Error::other(StoreError::Corrupt {
                    digest: self.expected.clone(),
                    actual,
                }));
            }
            // Reset so a second read at EOF does not re-check an empty hash.
            self.hasher = Sha256Writer::default();
            self.expected = OciDigest::of(&[]);
        } else {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_blob(b"hello").unwrap();
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        fs_err::write(store.blob_path(&d), b"hellO").unwrap();
        assert!(matches!(store.read_blob(&d), Err(StoreError::Corrupt { .. })));
        let mut r = store.open_blob(&d).unwrap();
        let mut sink = Vec::new();
        assert!(r.read_to_end(&mut sink).is_err());
    }

    #[test]
    fn import_rejects_a_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wrong = OciDigest::of(b"other");
        assert!(store.import_blob(&mut &b"data"[..], &wrong, None).is_err());
        assert!(!store.has_blob(&wrong));
        let right = OciDigest::of(b"data");
        assert!(matches!(
            store.import_blob(&mut &b"data"[..], &right, Some(3)),
            Err(StoreError::WrongSize { .. })
        ));
        store.import_blob(&mut &b"data"[..], &right, Some(4)).unwrap();
        assert!(store.has_blob(&right));
    }

    #[test]
    fn reads_note_their_use_in_the_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        let age = |p: &Path| fs_err::metadata(p).unwrap().modified().unwrap();
        let set_old = |p: &Path| fs_err::File::open(p).unwrap().set_modified(long_ago).unwrap();
        let d = store.put_blob(b"blob").unwrap();
        let key = Digest::of(b"k");
        store.put_record("step", &key, &1u32).unwrap();
        let tmp = store.temp_dir("layer-").unwrap();
        let layer = store.commit_layer_dir(tmp, &d).unwrap();
        let record = store.record_path("step", &key);
        for p in [store.blob_path(&d), record.clone(), layer.clone()] {
            set_old(&p);
        }
        store.read_blob(&d).unwrap();
        store.get_record::<u32>("step", &key).unwrap();
        store.layer_dir(&d);
        for p in [store.blob_path(&d), record, layer] {
            assert!(age(&p) > long_ago, "{} was not touched", p.display());
        }
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Digest::of(b"k");
        assert_eq!(store.get_record::<Vec<u32>>("layer", &key).unwrap(), None);
        store.put_record("layer", &key, &vec![1u32, 2]).unwrap();
        assert_eq!(store.get_record::<Vec<u32>>("layer", &key).unwrap(), Some(vec![1, 2]));
    }
}
