//! `-o type=local,dest=DIR`: an image's final file system written out as plain files, as
//! `BuildKit`'s local exporter does (the usual way to take a compiled binary out of a build).
//!
//! Invariants: nothing is written outside DIR. The whole tree is first written into a fresh
//! private folder next to (or inside) DIR, where every parent is a folder this code created
//! (never a symlink, which are written as links and never followed); it then reaches DIR by
//! one rename when DIR does not exist, else entry by entry with `renameat` on folder
//! descriptors opened `O_NOFOLLOW`, so a symlink already in DIR is replaced, never followed.
//! A failed export leaves DIR as it was.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::layers::{LayerError, view_of};
use super::view::View;
use crate::oci::extract::IndexKind;
use crate::oci::image::LayerRef;
use crate::store::Store;

/// Why an export failed; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("cannot read the image's layers")]
    Layers(#[from] LayerError),
    #[error("failed to write `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` exists and is not a folder", path.display())]
    NotAFolder { path: PathBuf },
}

/// What an export wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Exported {
    pub files: usize,
    /// Devices and FIFOs, which a plain folder does not get.
    pub skipped_special: usize,
}

/// [`export_local`] for a built image: its layers as its config lists them.
pub(crate) fn export_image(
    store: &Store,
    image: &super::BuiltImage,
    dest: &Path,
) -> Result<Exported, ExportError> {
    let bad = |problem: String| ExportError::Io {
        path: dest.to_owned(),
        source: std::io::Error::other(format!("config `{}`: {problem}", image.config.digest)),
    };
    let bytes = store.read_blob(&image.config.digest).map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let diff_ids = config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        return Err(bad("its diff ids do not match the manifest's layers".into()));
    }
    let mut layers = Vec::new();
    for (id, blob) in diff_ids.iter().zip(&image.layers) {
        let diff_id = id
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("`{id}` is no digest")))?;
        layers.push(LayerRef { diff_id, blob: blob.clone() });
    }
    export_local(store, &layers, dest)
}

/// Writes the merged file system of `layers` (bottom first) into `dest`, merged over what it
/// holds: entries of the same name are replaced. Files are the caller's; setuid and setgid
/// bits are dropped.
pub(crate) fn export_local(
    store: &Store,
    layers: &[LayerRef],
    dest: &Path,
) -> Result<Exported, ExportError> {
    let view = view_of(store, layers)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    let dest_exists = match fs_err::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => return Err(ExportError::NotAFolder { path: dest.to_owned() }),
        Err(_) => false,
    };
    // The temp folder is on DIR's file system so that renames move it.
    let parent = if dest_exists {
        dest.to_owned()
    } else {
        let p = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs_err::create_dir_all(p).map_err(io(p))?;
        p.to_owned()
    };
    let tmp = tempfile::Builder::new()
        .prefix(".stack-export-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let exported = write_tree(&view, tmp.path())?;
    if dest_exists {
        merge_into(tmp.path(), dest)?;
    } else {
        let tree = tmp.keep();
        fs_err::rename(&tree, dest).map_err(io(dest))?;
    }
    Ok(exported)
}

/// Writes every entry of `view` under `root`, parents first.
fn write_tree(view: &View, root: &Path) -> Result<Exported, ExportError> {
    let mut out = Exported::default();
    // Folders this export created: an entry is written only inside one of them.
    let mut dirs: HashSet<String> = HashSet::from([String::new()]);
    let mut dir_modes = Vec::new();
    for path in view.paths() {
        let Some(e) = view.get(path) else { continue };
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        if !dirs.contains(parent) {
            continue; // below a symlink or a special file: never written through it
        }
        let target = root.join(path);
        let io = |source| ExportError::Io { path: target.clone(), source };
        match e.kind {
            IndexKind::Dir | IndexKind::OpaqueDir => {
                fs_err::create_dir(&target).map_err(io)?;
                dirs.insert(path.clone());
                dir_modes.push((target.clone(), e.mode & 0o1777));
            }
            IndexKind::File | IndexKind::Hardlink => {
                let source = view.source(path).filter(|p| p.is_file()).or_else(|| {
                    e.link.as_deref().and_then(|l| view.source(l.trim_start_matches('/')))
                });
                let Some(source) = source else { continue };
                copy_file(&source, &target, e.mode & 0o1777, e.mtime).map_err(io)?;
                out.files += 1;
            }
            IndexKind::Symlink => {
                let link = e.link.clone().unwrap_or_default();
                std::os::unix::fs::symlink(link, &target).map_err(io)?;
            }
            IndexKind::CharDevice { .. } | IndexKind::BlockDevice { .. } | IndexKind::Fifo => {
                out.skipped_special += 1;
            }
            IndexKind::Whiteout => {}
        }
    }
    // Modes last: a read-only folder must still take its children.
    for (dir, mode) in dir_modes.iter().rev() {
        set_mode(dir, *mode).map_err(|source| ExportError::Io { path: dir.clone(), source })?;
    }
    Ok(out)
}

fn copy_file(source: &Path, target: &Path, mode: u32, mtime: i64) -> std::io::Result<()> {
    let mut from = fs_err::File::open(source)?;
    // `create_new`: never opens what is already there, a symlink least of all.
    let mut to = fs_err::OpenOptions::new().write(true).create_new(true).open(target)?;
    std::io::copy(&mut from, &mut to)?;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0).unsigned_abs());
    to.file().set_modified(when)?;
    drop(to);
    set_mode(target, mode)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Moves the entries of `from` into `into`, replacing entries of the same name; a folder on
/// both sides is merged. Only descriptors opened without following symlinks are used.
fn merge_into(from: &Path, into: &Path) -> Result<(), ExportError> {
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ExportError::Io { path: p.to_owned(), source: e.into() })
    };
    let (src, dst) = (open(from)?, open(into)?);
    merge_fds(&src, &dst, into)
}

fn merge_fds(src: &OwnedFd, dst: &OwnedFd, shown: &Path) -> Result<(), ExportError> {
    let io = |name: &std::ffi::OsStr| {
        let path = shown.join(name);
        move |e: rustix::io::Errno| ExportError::Io { path, source: e.into() }
    };
    let names: Vec<std::ffi::OsString> = {
        let dir = rustix::fs::Dir::read_from(src).map_err(io("".as_ref()))?;
        dir.filter_map(Result::ok)
            .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    for name in names {
        let ours = rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(io(&name))?;
        let theirs = rustix::fs::statat(dst, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = |mode: u32| rustix::fs::FileType::from_raw_mode(mode).is_dir();
        match theirs {
            Some(t) if is_dir(ours.st_mode) && is_dir(t.st_mode) => {
                let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let s = rustix::fs::openat(src, &name, flags, Mode::empty()).map_err(io(&name))?;
                let d = rustix::fs::openat(dst, &name, flags, Mode::empty()).map_err(io(&name))?;
                merge_fds(&s, &d, &shown.join(&name))?;
            }
            Some(t) if is_dir(ours.st_mode) && !is_dir(t.st_mode) => {
                // A folder cannot be renamed over a file or symlink: that entry goes first
                // (the link itself, never what it points to).
                rustix::fs::unlinkat(dst, &name, AtFlags::empty()).map_err(io(&name))?;
                rustix::fs::renameat(src, &name, dst, &name).map_err(io(&name))?;
            }
            _ => rustix::fs::renameat(src, &name, dst, &name).map_err(io(&name))?,
        }
    }
    Ok(())
}
