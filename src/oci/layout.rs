//! Writes built images as an OCI image layout folder, an OCI archive, or a `docker load`-able
//! archive (an OCI layout plus Docker's `manifest.json`).
//!
//! Invariants: the output appears whole or not at all (blobs first, `index.json` last via a
//! rename; archives are written beside their target and renamed; builds writing one layout
//! hold its lock file from reading `index.json` to replacing it), and archives are tars
//! written by the deterministic tar writer, so the same images give the same archive bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::image::{Descriptor, Index, OCI_INDEX, REF_NAME};
use super::layer::{Entry, EntryKind};
use crate::json::to_canonical;
use crate::oci::image::BuiltImage;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutError {
    #[error("`{}` exists and is not an OCI image layout", path.display())]
    NotALayout { path: PathBuf },
    #[error("failed to write `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` holds an invalid `index.json`: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tar(#[from] super::tar_writer::TarWriteError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_owned();
    move |source| LayoutError::Io { path, source }
}

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The names each image is reachable by: its own name and every tag.
fn ref_names(image: &BuiltImage) -> Vec<String> {
    let mut names = vec![image.name.clone()];
    for t in &image.tags {
        if !names.contains(t) {
            names.push(t.clone());
        }
    }
    names
}

/// The extra names of an image published as an index: each platform manifest under
/// `NAME+OS-ARCH[-VARIANT]`, so that tools which refuse a name leading to several manifests
/// (umoci calls the attestation manifests beside the image ambiguous) can read it.
fn platform_entries(image: &BuiltImage) -> Vec<(String, Descriptor)> {
    image
        .children()
        .into_iter()
        .filter(|c| !super::index::is_attestation(&c.manifest))
        .filter_map(|c| {
            let p = c.manifest.platform.clone()?;
            let variant = p.variant.map(|v| format!("-{v}")).unwrap_or_default();
            let name = format!("{}+{}-{}{variant}", image.name, p.os, p.architecture);
            Some((name, c.manifest))
        })
        .collect()
}

fn index_for(images: &[BuiltImage], mut keep: Vec<Descriptor>) -> Index {
    let mut new_names: Vec<String> = images.iter().flat_map(ref_names).collect();
    new_names.extend(images.iter().flat_map(platform_entries).map(|(n, _)| n));
    keep.retain(|d| {
        d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).is_none_or(|n| !new_names.contains(n))
    });
    for image in images {
        for name in ref_names(image) {
            let mut d = image.top().clone();
            d.annotations = Some(BTreeMap::from([(REF_NAME.to_owned(), name)]));
            keep.push(d);
        }
        for (name, mut d) in platform_entries(image) {
            d.annotations = Some(BTreeMap::from([(REF_NAME.to_owned(), name)]));
            keep.push(d);
        }
    }
    keep.sort_by(|a, b| {
        let name = |d: &Descriptor| {
            d.annotations.as_ref().and_then(|x| x.get(REF_NAME)).cloned().unwrap_or_default()
        };
        name(a).cmp(&name(b)).then_with(|| a.digest.cmp(&b.digest))
    });
    Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: keep,
        annotations: None,
    }
}

/// The lock file in a layout folder that serialises the builds writing into it.
pub(crate) const LOCK_FILE: &str = ".stack-layout.lock";

/// Takes the layout's lock exclusively, waiting for another build that holds it; released
/// when the returned file is dropped (or the process dies).
fn lock_layout(out: &Path) -> Result<fs_err::File, LayoutError> {
    let path = out.join(LOCK_FILE);
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| LayoutError::Io { path: path.clone(), source: e.into() })?;
    Ok(file)
}

/// Fails unless `out` is an OCI layout, or empty (but for the lock file).
fn check_is_layout(out: &Path) -> Result<(), LayoutError> {
    if out.join("oci-layout").is_file() {
        return Ok(());
    }
    let mut names = fs_err::read_dir(out).map_err(io(out))?.flatten();
    if names.all(|e| e.file_name() == LOCK_FILE) {
        Ok(())
    } else {
        Err(LayoutError::NotALayout { path: out.to_owned() })
    }
}

/// Writes (or updates) an OCI layout folder; other images already in it are kept.
///
/// Concurrent builds into one folder all land: the folder's lock file is held from reading
/// `index.json` to renaming the merged one into place, and temporary names are unique.
pub(crate) fn write_layout(
    out: &Path,
    images: &[BuiltImage],
    store: &Store,
) -> Result<(), LayoutError> {
    let index_path = out.join("index.json");
    // Refuse someone else's folder before putting a lock file in it; a folder that has one is
    // checked under the lock, once the build writing it has finished. A build of ours creates
    // the lock file before anything else, so a folder that fails the check while another build
    // writes it (seen half made) has the lock file by then: it is checked under the lock too.
    if out.exists() && check_is_layout(out).is_err() && !out.join(LOCK_FILE).exists() {
        return Err(LayoutError::NotALayout { path: out.to_owned() });
    }
    fs_err::create_dir_all(out).map_err(io(out))?;
    let _lock = lock_layout(out)?;
    check_is_layout(out)?;
    // `oci-layout` first: a build killed halfway leaves a layout, never a folder refused later.
    fs_err::write(out.join("oci-layout"), LAYOUT).map_err(io(out))?;
    let mut existing = Vec::new();
    if index_path.is_file() {
        let bytes = fs_err::read(&index_path).map_err(io(&index_path))?;
        let idx: Index = serde_json::from_slice(&bytes)
            .map_err(|e| LayoutError::BadIndex { path: out.to_owned(), reason: e.to_string() })?;
        existing = idx.manifests;
    }
    let blobs = out.join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs).map_err(io(&blobs))?;
    for image in images {
        for d in &image.all_blobs() {
            let dest = blobs.join(d.digest.hex());
            if fs_err::metadata(&dest).is_ok_and(|m| m.len() == d.size) {
                continue;
            }
            store.copy_blob_to(&d.digest, &dest)?;
        }
    }
    let index = index_for(images, existing);
    // Created like any file (the umask decides its mode), under a name no other build uses.
    let mut tmp = tempfile::Builder::new()
        .prefix(".index.json-")
        .make_in(out, |p| std::fs::File::options().write(true).create_new(true).open(p))
        .map_err(io(out))?;
    std::io::Write::write_all(tmp.as_file_mut(), &to_canonical(&index)).map_err(io(tmp.path()))?;
    tmp.persist(&index_path)
        .map_err(|e| LayoutError::Io { path: index_path.clone(), source: e.error })?;
    Ok(())
}

/// Writes an archive (`oci-archive` or `docker-archive`) holding exactly `images`.
pub(crate) fn write_archive(
    out: &Path,
    images: &[BuiltImage],
    store: &Store,
    docker: bool,
) -> Result<(), LayoutError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let file = |path: String, content: Vec<u8>| Entry {
        path,
        kind: EntryKind::Inline { content },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
    };
    let dir = |path: &str| Entry {
        path: path.to_owned(),
        kind: EntryKind::Dir { opaque: false },
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
    };
    entries.push(dir("blobs"));
    entries.push(dir("blobs/sha256"));
    for image in images {
        for d in &image.all_blobs() {
            if seen.insert(d.digest.clone()) {
                // Verify before packaging: the archive must never carry a corrupt blob.
                let mut r = store.open_blob(&d.digest)?;
                std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| {
                    match e.downcast::<StoreError>() {
                        Ok(s) => LayoutError::Store(s),
                        Err(e) => LayoutError::Io { path: store.blob_path(&d.digest), source: e },
                    }
                })?;
                entries.push(Entry {
                    path: format!("blobs/sha256/{}", d.digest.hex()),
                    kind: EntryKind::File { source: store.blob_path(&d.digest), size: d.size },
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    xattrs: Vec::new(),
                });
            }
        }
    }
    entries.push(file("oci-layout".into(), LAYOUT.to_vec()));
    entries.push(file("index.json".into(), to_canonical(&index_for(images, Vec::new()))));
    if docker {
        let manifest: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                let mut tags: Vec<String> = i.tags.iter().map(|t| docker_tag(t)).collect();
                if tags.is_empty() {
                    tags.push(docker_tag(&i.name));
                }
                serde_json::json!({
                    "Config": format!("blobs/sha256/{}", i.config.digest.hex()),
                    "RepoTags": tags,
                    "Layers": i.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
                })
            })
            .collect();
        entries.push(file("manifest.json".into(), to_canonical(&manifest)));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".stack-archive-")
        .tempfile_in(parent)
        .map_err(io(parent))?;
    let writer = std::io::BufWriter::new(tmp.as_file());
    let mut writer = super::tar_writer::write_tar(&entries, 0, writer)?;
    std::io::Write::flush(&mut writer).map_err(io(out))?;
    drop(writer);
    // A temp file is 0600; the archive gets the mode any new file gets under the umask.
    let mode = 0o666 & !current_umask();
    fs_err::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(io(out))?;
    tmp.persist(out).map_err(|e| LayoutError::Io { path: out.to_owned(), source: e.error })?;
    Ok(())
}

/// The process's umask (read from `/proc`, which does not change it; `022` if unreadable).
fn current_umask() -> u32 {
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

/// Docker needs `repo:tag`; a bare name gets `:latest`.
fn docker_tag(t: &str) -> String {
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') { t.to_owned() } else { format!("{t}:latest") }
}

#[cfg(test)]
mod tests {
    use super::docker_tag;

    #[test]
    fn docker_tags_get_latest() {
        assert_eq!(docker_tag("app"), "app:latest");
        assert_eq!(docker_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(docker_tag("example/app:1"), "example/app:1");
    }
}
