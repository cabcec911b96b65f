//! What the store holds: every object (blob, extracted layer, step record, cache mount, temp
//! entry) with its size on disk and when it was last used, for `stack cache du` and pruning.
//!
//! Sizes are disk usage (allocated blocks), counting a hard-linked inode once per object.
//! Objects that vanish while being scanned (a concurrent build's temp files) are skipped.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Store, StoreError};

/// A part of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Area {
    /// `records-v1/<kind>/<key>.json`: which layer a step produced. Listed first: a record is
    /// always removed before the blobs it names.
    Records,
    /// `blobs-v1/sha256/<hex>`: layers, configs and manifests.
    Blobs,
    /// `layers-v1/<diff id hex>[.userns|.flat]`: extracted layer trees with their `index.json`
    /// (the suffix says how owners were kept, see `Privilege::tree_suffix`).
    Layers,
    /// `cache-v1/<id>`: the folders of `run` cache mounts.
    CacheMounts,
    /// `tmp/`: files and folders being written.
    Temp,
}

impl Area {
    pub(crate) const ALL: [Area; 5] =
        [Area::Blobs, Area::Layers, Area::Records, Area::CacheMounts, Area::Temp];

    /// The name shown to people.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Area::Records => "step records",
            Area::Blobs => "blobs",
            Area::Layers => "extracted layers",
            Area::CacheMounts => "cache mounts",
            Area::Temp => "temp",
        }
    }
}

/// How much one area holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct AreaUsage {
    pub area: Area,
    pub entries: u64,
    pub bytes: u64,
}

/// How much the store holds, per area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Usage {
    /// One per area, in [`Area::ALL`] order.
    pub areas: Vec<AreaUsage>,
}

impl Usage {
    pub(super) fn of(objects: &[Object]) -> Self {
        let areas = Area::ALL
            .iter()
            .map(|&area| {
                let mut u = AreaUsage { area, entries: 0, bytes: 0 };
                for o in objects.iter().filter(|o| o.area == area) {
                    u.entries += 1;
                    u.bytes += o.size;
                }
                u
            })
            .collect();
        Self { areas }
    }

    /// Objects in every area.
    pub(crate) fn total_entries(&self) -> u64 {
        self.areas.iter().map(|a| a.entries).sum()
    }

    /// Bytes in every area.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.areas.iter().map(|a| a.bytes).sum()
    }

    #[cfg(test)]
    pub(crate) fn area(&self, area: Area) -> AreaUsage {
        self.areas.iter().copied().find(|a| a.area == area).unwrap_or(AreaUsage {
            area,
            entries: 0,
            bytes: 0,
        })
    }
}

/// Measures the store, area by area.
pub(crate) fn usage(store: &Store) -> Result<Usage, StoreError> {
    Ok(Usage::of(&scan(store)?))
}

/// One object of the store.
#[derive(Debug, Clone)]
pub(super) struct Object {
    pub area: Area,
    pub path: PathBuf,
    /// The file name: the digest hex for blobs and layers, `<kind>/<key>` for records.
    pub name: String,
    pub size: u64,
    pub last_used: SystemTime,
    /// Records only: the hex digests of the blobs the record names (through OCI descriptors).
    pub names: BTreeSet<String>,
    /// Records only: the record is not valid JSON.
    pub unreadable: bool,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { action, path, source }
}

/// The entries of a folder (none if it does not exist), sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let read = match fs_err::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err("list", dir))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Disk usage of a tree and its newest mtime; `None` if it vanished.
fn measure_tree(path: &Path) -> Option<(u64, SystemTime)> {
    let top = fs_err::symlink_metadata(path).ok()?;
    let mut seen = HashSet::new();
    let mut size = 0;
    let mut newest = top.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        size += meta.blocks() * 512;
        if let Ok(m) = meta.modified() {
            newest = newest.max(m);
        }
    }
    Some((size, newest))
}

fn object(area: Area, name: String, path: PathBuf) -> Option<Object> {
    let meta = fs_err::symlink_metadata(&path).ok()?;
    let (size, last_used) = if meta.is_dir() {
        let (size, newest) = measure_tree(&path)?;
        // Layer trees carry the layer's own (clamped) mtimes; only the folder's mtime, which
        // the store sets on every use, says when it was used. Cache mounts and temp folders
        // are written by builds, so their newest entry counts.
        let last = if area == Area::Layers { meta.modified().ok()? } else { newest };
        (size, last)
    } else {
        (meta.blocks() * 512, meta.modified().ok()?)
    };
    Some(Object { area, path, name, size, last_used, names: BTreeSet::new(), unreadable: false })
}

/// Collects the hex digests of the blobs a record names: every `"digest"` field of an object,
/// which is how OCI descriptors name blobs.
pub(super) fn named_blobs(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "digest"
                    && let Some(hex) = v.as_str().and_then(|s| s.strip_prefix("sha256:"))
                {
                    out.insert(hex.to_owned());
                } else {
                    named_blobs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| named_blobs(v, out)),
        _ => {}
    }
}

/// Lists every object of the store.
pub(super) fn scan(store: &Store) -> Result<Vec<Object>, StoreError> {
    let root = store.root();
    let mut out = Vec::new();
    for (name, path) in entries(&root.join("blobs-v1/sha256"))? {
        out.extend(object(Area::Blobs, name, path));
    }
    for (name, path) in entries(&root.join("layers-v1"))? {
        out.extend(object(Area::Layers, name, path));
    }
    for (kind, dir) in entries(&root.join("records-v1"))? {
        for (name, path) in entries(&dir)? {
            let Some(mut o) = object(Area::Records, format!("{kind}/{name}"), path) else {
                continue;
            };
            match fs_err::read(&o.path) {
                Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(v) => named_blobs(&v, &mut o.names),
                    Err(_) => o.unreadable = true,
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", &o.path)(e)),
            }
            out.push(o);
        }
    }
    for (name, path) in entries(&root.join("cache-v1"))? {
        out.extend(object(Area::CacheMounts, name, path));
    }
    for (name, path) in entries(&root.join("tmp"))? {
        out.extend(object(Area::Temp, name, path));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_blobs_through_descriptors() {
        let v = serde_json::json!({
            "layer": {
                "diff_id": "sha256:aaaa",
                "blob": { "mediaType": "x", "digest": "sha256:bbbb", "size": 3 }
            },
            "more": [{ "digest": "sha256:cccc" }, { "digest": "md5:dddd" }]
        });
        let mut names = BTreeSet::new();
        named_blobs(&v, &mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["bbbb", "cccc"]);
    }

    #[test]
    fn usage_counts_every_area() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_blob(&[7u8; 10_000]).unwrap();
        store
            .put_record(
                "step",
                &crate::digest::Digest::of(b"k"),
                &serde_json::json!({ "layer": { "blob": { "digest": d.to_string() } } }),
            )
            .unwrap();
        fs_err::create_dir_all(store.root().join("cache-v1/abc")).unwrap();
        fs_err::write(store.root().join("cache-v1/abc/f"), [1u8; 5000]).unwrap();
        let tmp = store.temp_dir("layer-").unwrap();
        fs_err::write(tmp.path().join("index.json"), b"{}").unwrap();
        store.commit_layer_dir(tmp, &d).unwrap();
        let u = usage(&store).unwrap();
        assert_eq!(u.area(Area::Blobs).entries, 1);
        assert!(u.area(Area::Blobs).bytes >= 10_000);
        assert_eq!(u.area(Area::Records).entries, 1);
        assert_eq!(u.area(Area::Layers).entries, 1);
        assert_eq!(u.area(Area::CacheMounts).entries, 1);
        assert!(u.area(Area::CacheMounts).bytes >= 5000);
        assert_eq!(u.area(Area::Temp).entries, 0);
        assert_eq!(u.total_entries(), 4);
        let objects = scan(&store).unwrap();
        let rec = objects.iter().find(|o| o.area == Area::Records).unwrap();
        assert!(rec.names.contains(d.hex()));
    }
}
