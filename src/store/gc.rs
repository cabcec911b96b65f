//! Pruning (least recently used first) and verifying the store.
//!
//! Invariants: both run under `store.lock` held exclusively, so no build of this version reads
//! the store meanwhile. A step record is removed before any blob it names, so a record never
//! points at a missing blob. Folders (extracted layers, cache mounts) are first renamed into
//! `tmp/` and only then deleted, so a removal that fails halfway never leaves a half tree under
//! its final name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use super::usage::{Area, AreaUsage, Object, scan};
use super::{LockMode, Store, StoreError, StoreLock, remove_tree};
use crate::digest::{OciDigest, Sha256Writer};

/// What `prune` may remove besides garbage.
#[derive(Debug, Clone)]
pub(crate) struct PruneOptions {
    /// Remove least recently used objects until the store holds at most this many bytes.
    pub keep_storage: Option<u64>,
    /// Remove everything, temp entries of any age included.
    pub all: bool,
    /// Temp entries older than this are left over from a crash and removed (entries whose
    /// process is known to be gone are removed at once).
    pub temp_max_age: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self { keep_storage: None, all: false, temp_max_age: Duration::from_hours(1) }
    }
}

/// What `prune` did.
#[derive(Debug, Clone)]
pub(crate) struct PruneReport {
    /// Removed objects per area, in [`Area::ALL`] order.
    pub removed: Vec<AreaUsage>,
    /// Bytes the store held before and after.
    pub before: u64,
    pub after: u64,
}

/// Removes garbage (stale temp entries, records that are unreadable or name a missing blob,
/// layer folders without an index), then, with `keep_storage`, the least recently used objects
/// until the store fits, or, with `all`, everything.
pub(crate) fn prune(
    store: &Store,
    lock: &StoreLock,
    opts: &PruneOptions,
) -> Result<PruneReport, StoreError> {
    assert_eq!(lock.mode(), LockMode::Exclusive, "pruning needs the store lock held exclusively");
    let now = SystemTime::now();
    let objects = scan(store)?;
    let before: u64 = objects.iter().map(|o| o.size).sum();
    let mut gc = Collector::new(store, &objects);
    let owners = store.root().join("owners");

    for (i, o) in objects.iter().enumerate() {
        let garbage = match o.area {
            Area::Temp => {
                // An entry of a process that is gone goes at once; unowned ones (older
                // versions) after `temp_max_age`.
                opts.all
                    || now.duration_since(o.last_used).unwrap_or_default() > opts.temp_max_age
                    || super::owner::owner_of(&o.name)
                        .is_some_and(|id| !super::owner::is_alive(&owners, id))
            }
            Area::Records => {
                o.unreadable || o.names.iter().any(|n| !gc.blobs.contains_key(n.as_str()))
            }
            Area::Layers => !o.path.join("index.json").is_file(),
            Area::Blobs | Area::CacheMounts => false,
        };
        if garbage {
            gc.remove(i)?;
        }
    }

    // Least recently used first; a blob counts as used whenever a record naming it was, and
    // records go before blobs of the same age.
    let mut order: Vec<(SystemTime, Area, usize)> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.area != Area::Temp)
        .map(|(i, o)| {
            let mut used = o.last_used;
            if o.area == Area::Blobs {
                for &r in gc.referrers.get(o.name.as_str()).into_iter().flatten() {
                    used = used.max(objects[r].last_used);
                }
            }
            (used, o.area, i)
        })
        .collect();
    order.sort();
    for (_, _, i) in order {
        let over = match opts.keep_storage {
            _ if opts.all => true,
            Some(limit) => before - gc.freed > limit,
            None => false,
        };
        if !over {
            break;
        }
        gc.remove(i)?;
    }

    let removed = Area::ALL
        .iter()
        .map(|&area| {
            let mut u = AreaUsage { area, entries: 0, bytes: 0 };
            for (_, o) in objects.iter().enumerate().filter(|(i, o)| o.area == area && gc.gone[*i])
            {
                u.entries += 1;
                u.bytes += o.size;
            }
            u
        })
        .collect();
    // The lock files of processes that are gone (their entries went above).
    store.remove_dead_temp();
    let after = before - gc.freed;
    Ok(PruneReport { removed, before, after })
}

/// Removes objects, keeping the record-before-blob order.
struct Collector<'a> {
    store: &'a Store,
    objects: &'a [Object],
    /// Blob hex -> object index.
    blobs: HashMap<&'a str, usize>,
    /// Blob hex -> indexes of the records naming it.
    referrers: HashMap<&'a str, Vec<usize>>,
    gone: Vec<bool>,
    freed: u64,
}

impl<'a> Collector<'a> {
    fn new(store: &'a Store, objects: &'a [Object]) -> Self {
        let mut blobs = HashMap::new();
        let mut referrers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, o) in objects.iter().enumerate() {
            match o.area {
                Area::Blobs => {
                    blobs.insert(o.name.as_str(), i);
                }
                Area::Records => {
                    for n in &o.names {
                        referrers.entry(n.as_str()).or_default().push(i);
                    }
                }
                _ => {}
            }
        }
        Self { store, objects, blobs, referrers, gone: vec![false; objects.len()], freed: 0 }
    }

    fn remove(&mut self, i: usize) -> Result<(), StoreError> {
        if self.gone[i] {
            return Ok(());
        }
        let o = &self.objects[i];
        if o.area == Area::Blobs {
            for r in self.referrers.get(o.name.as_str()).cloned().unwrap_or_default() {
                self.remove(r)?;
            }
        }
        if remove_object(self.store, &o.path)? {
            self.gone[i] = true;
            self.freed += o.size;
        }
        Ok(())
    }
}

/// Removes a file, or a folder by first renaming it into `tmp/` (where a removal that stops
/// halfway leaves only temp garbage). Returns whether the object is gone from its place.
fn remove_object(store: &Store, path: &Path) -> Result<bool, StoreError> {
    let meta = match fs_err::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(StoreError::Io { action: "inspect", path: path.into(), source }),
    };
    if !meta.is_dir() {
        return match fs_err::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::Io { action: "remove", path: path.into(), source: e })
            }
            _ => Ok(true),
        };
    }
    if path.parent() == Some(store.root().join("tmp").as_path()) {
        // Temp leftovers may hold files of other users or mount points: best effort.
        remove_tree(path);
        return Ok(!path.exists());
    }
    let staging = store.temp_dir("prune-")?.keep();
    fs_err::rename(path, staging.join("x")).map_err(|source| StoreError::Io {
        action: "move out of the store",
        path: path.into(),
        source,
    })?;
    remove_tree(&staging);
    Ok(true)
}

/// Something `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub area: Area,
    /// The digest (`sha256:…`) for blobs and layers, `<kind>/<key>.json` for records.
    pub name: String,
    pub reason: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default)]
pub(crate) struct VerifyReport {
    pub blobs: usize,
    pub layers: usize,
    pub records: usize,
    /// Bad objects, all removed from the store.
    pub bad: Vec<Bad>,
    /// Records removed because they named a bad or missing blob.
    pub dropped_records: usize,
}

/// What is wrong with an extracted layer folder (its index and tree), if anything: given by
/// the caller, which knows the extraction format (`oci::extract`), so the store stays below it.
pub(super) type TreeCheck = dyn Fn(&Path) -> Option<String> + Sync;

/// Re-hashes every blob (in parallel), checks every extracted layer with `check_tree` and reads
/// every record; removes what is bad, and the records that name a bad or missing blob.
pub(crate) fn verify(
    store: &Store,
    lock: &StoreLock,
    check_tree: &TreeCheck,
) -> Result<VerifyReport, StoreError> {
    assert_eq!(lock.mode(), LockMode::Exclusive, "verifying needs the store lock held exclusively");
    let objects = scan(store)?;
    let mut report = VerifyReport::default();
    let checked: Vec<(usize, Option<String>)> = objects
        .par_iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.area, Area::Blobs | Area::Layers))
        .map(|(i, o)| {
            let problem = match o.area {
                Area::Blobs => check_blob(&o.path, &o.name),
                _ => check_layer(&o.path, &o.name, check_tree),
            };
            (i, problem)
        })
        .collect();
    let mut bad_objects = HashSet::new();
    let mut bad_blobs = BTreeSet::new();
    for (i, problem) in checked {
        let o = &objects[i];
        match o.area {
            Area::Blobs => report.blobs += 1,
            _ => report.layers += 1,
        }
        if let Some(reason) = problem {
            if o.area == Area::Blobs {
                bad_blobs.insert(o.name.as_str());
            }
            bad_objects.insert(i);
            report.bad.push(Bad { area: o.area, name: format!("sha256:{}", o.name), reason });
        }
    }
    let blobs: HashSet<&str> =
        objects.iter().filter(|o| o.area == Area::Blobs).map(|o| o.name.as_str()).collect();
    // Records first, so none is left naming a blob that is about to go.
    for o in objects.iter().filter(|o| o.area == Area::Records) {
        report.records += 1;
        if o.unreadable {
            report.bad.push(Bad {
                area: Area::Records,
                name: o.name.clone(),
                reason: "not valid JSON".into(),
            });
        } else if o
            .names
            .iter()
            .any(|n| bad_blobs.contains(n.as_str()) || !blobs.contains(n.as_str()))
        {
            report.dropped_records += 1;
        } else {
            continue;
        }
        remove_object(store, &o.path)?;
    }
    for &i in &bad_objects {
        remove_object(store, &objects[i].path)?;
    }
    report.bad.sort_by(|a, b| (a.area, &a.name).cmp(&(b.area, &b.name)));
    Ok(report)
}

fn check_blob(path: &Path, name: &str) -> Option<String> {
    let Ok(expected) = format!("sha256:{name}").parse::<OciDigest>() else {
        return Some("its file name is not a sha256 digest".into());
    };
    let mut file = match fs_err::File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let mut hasher = Sha256Writer::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => return Some(format!("cannot be read: {e}")),
        }
    }
    let actual = hasher.finish();
    (actual != expected).then(|| format!("its content hashes to `{actual}`"))
}

fn check_layer(dir: &Path, name: &str, check_tree: &TreeCheck) -> Option<String> {
    let hex = crate::privilege::Privilege::ALL
        .iter()
        .map(|p| p.tree_suffix())
        .filter(|s| !s.is_empty())
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    if format!("sha256:{hex}").parse::<OciDigest>().is_err() {
        return Some("its folder name is not a sha256 digest".into());
    }
    check_tree(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::digest::Digest;

    fn names(store: &Store, area: Area) -> Vec<String> {
        scan(store).unwrap().into_iter().filter(|o| o.area == area).map(|o| o.name).collect()
    }

    fn record(store: &Store, key: &[u8], blob: &OciDigest) {
        store
            .put_record(
                "step",
                &Digest::of(key),
                &serde_json::json!({ "layer": { "diff_id": "sha256:00", "blob": {
                    "mediaType": "m", "digest": blob.to_string(), "size": 1 } } }),
            )
            .unwrap();
    }

    fn set_age(path: &Path, secs_ago: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        fs_err::File::open(path).unwrap().set_modified(t).unwrap();
    }

    /// Extracts a small layer (a read-only folder holding a file) into the store.
    fn layer(store: &Store, diff_id: &OciDigest) -> PathBuf {
        use crate::oci::layer::{Entry, EntryKind};
        let entry = |path: &str, kind, mode| Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![],
        };
        let entries = [
            entry("ro", EntryKind::Dir { opaque: false }, 0o555),
            entry("ro/f", EntryKind::Inline { content: b"x".to_vec() }, 0o644),
        ];
        let tar = crate::oci::tar_writer::write_tar(&entries, 0, Vec::new()).unwrap();
        let tmp = store.temp_dir("layer-").unwrap();
        crate::oci::extract::extract(&mut tar.as_slice(), diff_id, None, tmp.path()).unwrap();
        store.commit_layer_dir(tmp, diff_id).unwrap()
    }

    #[test]
    fn verify_finds_extracted_trees_changed_after_extraction() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cases: [(&str, &dyn Fn(&Path)); 4] = [
            ("changed content", &|t| fs_err::write(t.join("ro/f"), b"y").unwrap()),
            ("changed size", &|t| fs_err::write(t.join("ro/f"), b"yy").unwrap()),
            ("changed mode", &|t| {
                fs_err::set_permissions(t.join("ro/f"), std::fs::Permissions::from_mode(0o4755))
                    .unwrap();
            }),
            ("was added", &|t| fs_err::write(t.join("ro/planted"), b"").unwrap()),
        ];
        for (i, (problem, tamper)) in cases.iter().enumerate() {
            let blob = store.put_blob(format!("blob {i}").as_bytes()).unwrap();
            let l = layer(&store, &blob);
            let tree = l.join("tree");
            fs_err::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            tamper(&tree);
            fs_err::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o555))
                .unwrap();
            let lock = store.lock_exclusive().unwrap();
            let r = verify(&store, &lock, &crate::oci::extract::check_layer_dir).unwrap();
            assert_eq!(r.bad.len(), 1, "{problem}: {:?}", r.bad);
            assert!(r.bad[0].reason.contains(problem), "{problem}: {}", r.bad[0].reason);
            assert!(!l.exists(), "the tampered tree is dropped");
        }
    }

    #[test]
    fn prune_all_empties_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = store.put_blob(&[1u8; 5000]).unwrap();
        record(&store, b"k", &b);
        layer(&store, &b);
        fs_err::create_dir_all(store.root().join("cache-v1/c")).unwrap();
        let lock = store.lock_exclusive().unwrap();
        let r =
            prune(&store, &lock, &PruneOptions { all: true, ..PruneOptions::default() }).unwrap();
        assert_eq!(r.after, 0);
        assert_eq!(super::super::usage(&store).unwrap().total_entries(), 0);
    }

    #[test]
    fn prune_keeps_the_recently_used_and_never_orphans_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = store.put_blob(&[1u8; 8192]).unwrap();
        let new = store.put_blob(&[2u8; 8192]).unwrap();
        record(&store, b"old", &old);
        record(&store, b"new", &new);
        // The blob `old` is recent, but the record naming it is not: the blob's use is the
        // newest of its own and its records'.
        for (key, age) in [(b"old" as &[u8], 7200), (b"new", 10)] {
            set_age(&store.record_path("step", &Digest::of(key)), age);
        }
        set_age(&store.blob_path(&old), 7000);
        set_age(&store.blob_path(&new), 5000);
        // A hit on `new` makes it the most recently used.
        store.get_record::<serde_json::Value>("step", &Digest::of(b"new")).unwrap().unwrap();
        let lock = store.lock_exclusive().unwrap();
        let new_record = format!("step/{}.json", Digest::of(b"new").to_hex());
        let keep: u64 = scan(&store)
            .unwrap()
            .iter()
            .filter(|o| o.name == new.hex() || o.name == new_record)
            .map(|o| o.size)
            .sum();
        let r = prune(
            &store,
            &lock,
            &PruneOptions { keep_storage: Some(keep), ..PruneOptions::default() },
        )
        .unwrap();
        assert_eq!(r.after, keep);
        assert_eq!(names(&store, Area::Blobs), [new.hex()]);
        assert_eq!(names(&store, Area::Records), [new_record]);
        // Evicting a blob takes its records first, whatever their age.
        let r = prune(
            &store,
            &lock,
            &PruneOptions { keep_storage: Some(0), ..PruneOptions::default() },
        )
        .unwrap();
        assert_eq!(r.after, 0);
        assert!(names(&store, Area::Records).is_empty());
    }

    #[test]
    fn prune_removes_garbage_only_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = store.put_blob(b"kept").unwrap();
        record(&store, b"ok", &b);
        record(&store, b"dangling", &OciDigest::of(b"gone"));
        let stale = store.root().join("tmp/blob-stale");
        fs_err::write(&stale, b"x").unwrap();
        set_age(&stale, 7200);
        let fresh = store.root().join("tmp/blob-fresh");
        fs_err::write(&fresh, b"x").unwrap();
        // A fresh entry of a process that is gone (its lock file is not held) goes at once.
        let dead = store.root().join("tmp/blob-@dead@x");
        fs_err::write(&dead, b"x").unwrap();
        fs_err::create_dir_all(store.root().join("owners")).unwrap();
        fs_err::write(store.root().join("owners/dead.lock"), b"").unwrap();
        let lock = store.lock_exclusive().unwrap();
        prune(&store, &lock, &PruneOptions::default()).unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert!(!dead.exists());
        assert!(!store.root().join("owners/dead.lock").exists());
        assert_eq!(
            names(&store, Area::Records),
            [format!("step/{}.json", Digest::of(b"ok").to_hex())]
        );
        assert_eq!(names(&store, Area::Blobs), [b.hex()]);
    }

    #[test]
    fn verify_drops_corrupt_blobs_and_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = store.put_blob(b"good").unwrap();
        let bad = store.put_blob(b"bad").unwrap();
        record(&store, b"good", &good);
        record(&store, b"bad", &bad);
        let l = layer(&store, &good);
        let broken = layer(&store, &bad);
        fs_err::write(store.blob_path(&bad), b"BAD").unwrap();
        fs_err::remove_file(broken.join("index.json")).unwrap();
        let lock = store.lock_exclusive().unwrap();
        let r = verify(&store, &lock, &crate::oci::extract::check_layer_dir).unwrap();
        assert_eq!((r.blobs, r.layers, r.records, r.dropped_records), (2, 2, 2, 1));
        assert_eq!(
            r.bad.iter().map(|b| (b.area, b.name.clone())).collect::<Vec<_>>(),
            [(Area::Blobs, bad.to_string()), (Area::Layers, bad.to_string())]
        );
        assert!(!store.has_blob(&bad) && store.has_blob(&good));
        assert!(!broken.exists() && l.exists());
        assert_eq!(names(&store, Area::Records).len(), 1);
        assert!(
            verify(&store, &lock, &crate::oci::extract::check_layer_dir).unwrap().bad.is_empty()
        );
    }

    #[test]
    fn an_exclusive_lock_excludes_builds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = store.lock_shared().unwrap();
        assert!(store.try_lock_shared().unwrap().is_some());
        assert!(store.try_lock_exclusive().unwrap().is_none());
        drop(shared);
        let excl = store.try_lock_exclusive().unwrap().unwrap();
        assert!(store.try_lock_shared().unwrap().is_none());
        drop(excl);
        let held = store.clone().holding(store.lock_shared().unwrap());
        assert!(store.try_lock_exclusive().unwrap().is_none());
        drop(held);
        assert!(store.try_lock_exclusive().unwrap().is_some());
    }
}
