//! Reads chosen regular files of an image's final root file system from its layer blobs in the
//! store, applying whiteouts, without extracting anything.

use std::collections::BTreeMap;
use std::io::Read;

use super::SbomError;
use crate::oci::compress::Compression;
use crate::oci::image::Descriptor;
use crate::store::Store;

/// The content of every regular file whose path `want` accepts, as the layers leave it.
pub(crate) fn files(
    store: &Store,
    layers: &[Descriptor],
    want: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>, SbomError> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for layer in layers {
        let bad = |source| SbomError::Layer { digest: layer.digest.to_string(), source };
        let blob = store
            .open_blob(&layer.digest)
            .map_err(|source| SbomError::Store { digest: layer.digest.to_string(), source })?;
        let compression = if layer.media_type.ends_with("+zstd") {
            Compression::Zstd
        } else if layer.media_type.ends_with("gzip") {
            Compression::Gzip
        } else {
            Compression::None
        };
        let reader = crate::oci::extract::decompress(blob, compression).map_err(bad)?;
        // Whiteouts hide what lower layers hold, never what this layer adds: collect both,
        // apply the deletions first.
        let mut deleted: Vec<String> = Vec::new();
        let mut added: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        let mut ar = tar::Archive::new(reader);
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = crate::oci::extract::normalize_entry_path(&raw) else { continue };
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if base == ".wh..wh..opq" {
                deleted.push(dir.to_owned());
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                deleted.push(if dir.is_empty() {
                    hidden.to_owned()
                } else {
                    format!("{dir}/{hidden}")
                });
                continue;
            }
            if !entry.header().entry_type().is_dir() {
                // Whatever stood at this path before is replaced, wanted or not.
                deleted.push(path.clone());
            }
            if entry.header().entry_type().is_file() && want(&path) {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).map_err(bad)?;
                added.insert(path, Some(content));
            }
        }
        for d in &deleted {
            out.remove(d);
            crate::paths::remove_below(&mut out, d);
        }
        out.extend(added.into_iter().filter_map(|(k, v)| Some((k, v?))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::layers::write_layer;
    use crate::oci::layer::{Entry, EntryKind};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry { path: path.into(), kind, mode: 0o644, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
    }

    fn file(path: &str, content: &str) -> Entry {
        entry(path, EntryKind::Inline { content: content.as_bytes().to_vec() })
    }

    #[test]
    fn later_layers_replace_and_whiteouts_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = |entries: &[Entry]| {
            write_layer(&store, entries, 0, Compression::Gzip, None).unwrap().blob
        };
        let dirs = |p: &str| entry(p, EntryKind::Dir { opaque: false });
        let l1 = layer(&[
            dirs("a"),
            file("a/keep", "1"),
            file("a/gone", "1"),
            dirs("b"),
            file("b/x", "1"),
        ]);
        let l2 = layer(&[
            dirs("a"),
            file("a/keep", "2"),
            entry("a/gone", EntryKind::Whiteout),
            entry("b", EntryKind::Whiteout),
            file("a/new", "2"),
        ]);
        let got = files(&store, &[l1, l2], &|_| true).unwrap();
        let got: Vec<(String, String)> =
            got.into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect();
        assert_eq!(got, [("a/keep".into(), "2".into()), ("a/new".into(), "2".into())]);
    }
}
