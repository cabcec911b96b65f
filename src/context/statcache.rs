//! The stat cache: (path, size, mtime, ctime, inode, mode) → content hash, so that a rebuild
//! with nothing changed reads only metadata, never file contents.
//!
//! Invariant: an entry is trusted only when every stat field still matches and the file was
//! last changed at least `RACY_NS` before the cache was saved (a file written in the same
//! instant as the save could change again without its mtime moving: it is re-hashed).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use crate::digest::Digest;

/// Changes closer than this to the save time are not trusted.
const RACY_NS: i128 = 2_000_000_000;
const MAGIC: &[u8; 8] = b"stkstat1";

/// The stat fields that identify one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub mode: u32,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

/// A stat cache loaded from (and saved to) one file.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    saved_at_ns: i128,
    old: HashMap<Vec<u8>, (Stamp, Digest)>,
    new: Mutex<HashMap<Vec<u8>, (Stamp, Digest)>>,
}

impl StatCache {
    /// Reads a cache file; a missing or unreadable one gives an empty cache.
    pub(crate) fn load(path: &Path) -> Self {
        let Ok(bytes) = fs_err::read(path) else { return Self::default() };
        Self::decode(&bytes).unwrap_or_default()
    }

    /// The hash of `path` if its stamp still matches a trusted entry.
    pub(crate) fn get(&self, path: &Path, stamp: &Stamp) -> Option<Digest> {
        // Keyed by the path's bytes: hashing a `Path` walks its components, which dominated
        // warm builds of large contexts.
        let (s, d) = self.old.get(path.as_os_str().as_encoded_bytes())?;
        let trusted = s == stamp
            && stamp.mtime_ns < self.saved_at_ns - RACY_NS
            && stamp.ctime_ns < self.saved_at_ns - RACY_NS;
        trusted.then_some(*d)
    }

    /// Remembers a hash for the next save.
    pub(crate) fn put(&self, path: &Path, stamp: Stamp, digest: Digest) {
        self.new
            .lock()
            .expect("no panics while locked")
            .insert(path.as_os_str().as_encoded_bytes().to_vec(), (stamp, digest));
    }

    /// Whether anything new was learned since loading.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.new.lock().expect("no panics while locked").is_empty()
    }

    /// The bytes to save: old entries merged with new ones, stamped with the current time.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let mut all = self.old.clone();
        all.extend(self.new.lock().expect("no panics while locked").drain());
        let mut out = Vec::with_capacity(all.len() * 96 + 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&now.to_le_bytes());
        let mut paths: Vec<_> = all.into_iter().collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, (s, d)) in paths {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(&path);
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime_ns.to_le_bytes());
            out.extend_from_slice(&s.ctime_ns.to_le_bytes());
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.mode.to_le_bytes());
            out.extend_from_slice(&d.0);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != MAGIC {
            return None;
        }
        let saved_at_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
        let mut old = HashMap::new();
        while r.pos < bytes.len() {
            let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
            let path = r.take(len)?.to_vec();
            let size = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            let mtime_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
            let ctime_ns = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
            let ino = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            let mode = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
            let digest = Digest(r.take(32)?.try_into().ok()?);
            old.insert(path, (Stamp { size, mtime_ns, ctime_ns, ino, mode }, digest));
        }
        Some(Self { saved_at_ns, old, new: Mutex::new(HashMap::new()) })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_distrusts_racy_or_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs_err::write(&f, "x").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old).unwrap();
        let stamp = Stamp::of(&fs_err::metadata(&f).unwrap());
        let c = StatCache::default();
        c.put(&f, stamp, Digest::of(b"x"));
        let bytes = c.encode();
        let loaded = StatCache::decode(&bytes).unwrap();
        // ctime is "now", so the entry is racy until two seconds have passed.
        assert_eq!(loaded.get(&f, &stamp), None);
        let mut aged = loaded;
        aged.saved_at_ns += 10 * RACY_NS;
        assert_eq!(aged.get(&f, &stamp), Some(Digest::of(b"x")));
        let changed = Stamp { size: 2, ..stamp };
        assert_eq!(aged.get(&f, &changed), None);
    }
}
