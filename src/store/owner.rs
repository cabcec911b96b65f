//! Who owns a temp entry: every process that writes to the store's `tmp/` holds an `flock` on
//! its own `owners/ID.lock` and puts `@ID@` in the names of its temp entries, so the next
//! process can remove what a dead one (SIGKILL, power loss) left, at once rather than after an
//! hour, without ever touching the entries of a process that is still running.
//!
//! Invariant: an owner's lock file appears already locked (it is locked under a private name,
//! then renamed into place) and disappears before its lock is released, so a lock file that
//! can be locked, or an `@ID@` entry without a lock file, belongs to a process that is gone.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// The temp entries' owner for this process (one per opened store).
#[derive(Debug)]
pub(super) struct Owner {
    id: String,
    lock_path: PathBuf,
    // Dropped after `drop` removed the lock file: the flock is released last.
    _file: fs_err::File,
}

impl Owner {
    /// Creates and locks `owners/ID.lock` with a fresh ID.
    pub(super) fn new(owners: &Path) -> io::Result<Self> {
        fs_err::create_dir_all(owners)?;
        let id = fresh_id();
        let lock_path = owners.join(format!("{id}.lock"));
        let private = owners.join(format!(".{id}.new"));
        let file = fs_err::OpenOptions::new().write(true).create_new(true).open(&private)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)?;
        fs_err::rename(&private, &lock_path)?;
        Ok(Self { id, lock_path, _file: file })
    }

    /// The prefix of a temp entry's name: `PREFIX@ID@` (a random suffix follows).
    pub(super) fn prefix(&self, prefix: &str) -> String {
        format!("{prefix}@{}@", self.id)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.lock_path);
    }
}

/// An ID unlikely to repeat: the process id, the time and a counter, hashed.
fn fresh_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{}-{nanos}-{n}", std::process::id());
    crate::digest::Digest::of(seed.as_bytes()).to_hex()[..16].to_owned()
}

/// The owner ID in a temp entry's name, if it has one.
pub(super) fn owner_of(name: &str) -> Option<&str> {
    let mut parts = name.split('@');
    parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    (!id.is_empty()).then_some(id)
}

/// Whether the owner `id` is a running process: its lock file exists and is locked.
pub(super) fn is_alive(owners: &Path, id: &str) -> bool {
    let Ok(file) = fs_err::File::open(owners.join(format!("{id}.lock"))) else {
        return false;
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// Removes the temp entries (and lock files) of owners that are gone. Best effort: an entry
/// that cannot be removed stays for `stack cache prune`. Returns how many entries went.
pub(super) fn remove_dead(tmp: &Path, owners: &Path) -> usize {
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut removed = 0;
    for entry in fs_err::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = owner_of(&name) else { continue };
        if !*alive.entry(id.to_owned()).or_insert_with(|| is_alive(owners, id)) {
            super::remove_tree_or_file(&entry.path());
            removed += 1;
        }
    }
    // Lock files last: while one exists, its owner's entries are judged by its lock.
    for entry in fs_err::read_dir(owners).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".lock")
            && !is_alive(owners, id)
        {
            let _ = fs_err::remove_file(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner_of("layer-@abc@x1y2"), Some("abc"));
        assert_eq!(owner_of("blob-x1y2"), None);
        assert_eq!(owner_of("prune-@@x"), None);
    }

    #[test]
    fn only_the_entries_of_dead_owners_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let (tmp, owners) = (d.path().join("tmp"), d.path().join("owners"));
        fs_err::create_dir_all(&tmp).unwrap();
        let live = Owner::new(&owners).unwrap();
        let mine = tmp.join(live.prefix("run-") + "abc");
        fs_err::create_dir_all(mine.join("upper/x")).unwrap();
        // A dead owner: its lock file is there but nobody holds it.
        fs_err::write(owners.join("dead.lock"), "").unwrap();
        fs_err::create_dir_all(tmp.join("run-@dead@abc/upper")).unwrap();
        fs_err::write(tmp.join("blob-@dead@xyz"), "x").unwrap();
        // An orphan: its owner's lock file is already gone.
        fs_err::write(tmp.join("blob-@gone@xyz"), "x").unwrap();
        // Entries of older versions, without an owner, are left to the age rule.
        fs_err::write(tmp.join("blob-legacy"), "x").unwrap();
        assert_eq!(remove_dead(&tmp, &owners), 3);
        let names = |dir: &Path| {
            let mut v: Vec<String> = fs_err::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let own = mine.file_name().unwrap().to_string_lossy().into_owned();
        let mut want = vec!["blob-legacy".to_owned(), own];
        want.sort();
        assert_eq!(names(&tmp), want);
        assert_eq!(names(&owners), [format!("{}.lock", live.id)]);
        drop(live);
        assert!(names(&owners).is_empty());
        assert_eq!(remove_dead(&tmp, &owners), 1, "the owner's own entry once it is gone");
    }
}
