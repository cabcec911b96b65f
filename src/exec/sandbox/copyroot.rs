//! The fallback when overlay cannot be used (no overlay in the kernel, or more than 500
//! lower dirs): the lower dirs are merged into a plain root dir, its inodes are snapshotted,
//! and after the run the diff against the snapshot yields the same entries overlay would.
//!
//! Invariant: merging never follows a symlink: every parent of a path being written was
//! itself made a real directory earlier in the same walk.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::diff::{DiffError, is_overlay_xattr, overlay_flag};
use super::sys::Sys;

/// What a path looked like before the command ran.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snap {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) ctime: (i64, i64),
    /// Birth time, when the file system records it: tells a re-created directory from the
    /// old one even when the inode number is reused.
    pub(crate) btime: Option<std::time::SystemTime>,
    pub(crate) is_dir: bool,
}

pub(crate) type Snapshot = HashMap<String, Snap>;

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> DiffError + '_ {
    move |source| DiffError { path: path.to_owned(), source }
}

fn remove_any(path: &Path) -> Result<(), DiffError> {
    match fs_err::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs_err::remove_dir_all(path).map_err(err(path)),
        Ok(_) => fs_err::remove_file(path).map_err(err(path)),
        Err(_) => Ok(()),
    }
}

fn copy_metadata(
    sys: &mut dyn Sys,
    src_md: &std::fs::Metadata,
    src: &Path,
    dst: &Path,
) -> Result<(), DiffError> {
    // Unmapped owners (rootless) keep the caller's: not an error.
    let _ = std::os::unix::fs::lchown(dst, Some(src_md.uid()), Some(src_md.gid()));
    if !src_md.file_type().is_symlink() {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dst, std::fs::Permissions::from_mode(src_md.mode() & 0o7777))
            .map_err(err(dst))?;
    }
    for (name, value) in sys.xattrs(src).map_err(err(src))? {
        if !is_overlay_xattr(&name) {
            let _ = sys.set_xattr(dst, &name, &value);
        }
    }
    Ok(())
}

/// Applies one lower dir (overlay format) on top of `root`.
fn apply_layer(sys: &mut dyn Sys, layer: &Path, root: &Path) -> Result<(), DiffError> {
    for item in walkdir::WalkDir::new(layer).min_depth(1).sort_by_file_name() {
        let item = item.map_err(|e| DiffError {
            path: e.path().unwrap_or(layer).to_owned(),
            source: e.into(),
        })?;
        let src = item.path();
        let rel = src.strip_prefix(layer).unwrap_or(src);
        let dst = root.join(rel);
        let md = fs_err::symlink_metadata(src).map_err(err(src))?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            remove_any(&dst)?;
            continue;
        }
        if ft.is_dir() {
            let existing = fs_err::symlink_metadata(&dst).ok();
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                remove_any(&dst)?;
            }
            let xattrs = sys.xattrs(src).map_err(err(src))?;
            if existing.as_ref().is_some_and(std::fs::Metadata::is_dir)
                && overlay_flag(&xattrs, "opaque")
            {
                remove_any(&dst)?;
            }
            if fs_err::symlink_metadata(&dst).is_err() {
                fs_err::create_dir(&dst).map_err(err(&dst))?;
            }
            copy_metadata(sys, &md, src, &dst)?;
            continue;
        }
        remove_any(&dst)?;
        if ft.is_symlink() {
            let target = fs_err::read_link(src).map_err(err(src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(err(&dst))?;
        } else if ft.is_file() {
            fs_err::copy(src, &dst).map_err(err(&dst))?;
            let f = fs_err::File::options().write(true).open(&dst).map_err(err(&dst))?;
            if let Ok(t) = md.modified() {
                let _ = f.set_modified(t);
            }
        } else {
            sys.mknod(&dst, md.mode(), md.rdev()).map_err(err(&dst))?;
        }
        copy_metadata(sys, &md, src, &dst)?;
    }
    Ok(())
}

/// Merges `lowers` (topmost first) into `root` and snapshots the result.
pub(crate) fn build_root(
    sys: &mut dyn Sys,
    lowers: &[std::path::PathBuf],
    root: &Path,
) -> Result<Snapshot, DiffError> {
    fs_err::create_dir_all(root).map_err(err(root))?;
    for layer in lowers.iter().rev() {
        apply_layer(sys, layer, root)?;
    }
    snapshot(root)
}

/// Records the inode and change time of every path under `root`.
pub(crate) fn snapshot(root: &Path) -> Result<Snapshot, DiffError> {
    let mut snap = Snapshot::new();
    for item in walkdir::WalkDir::new(root).min_depth(1) {
        let item = item.map_err(|e| DiffError {
            path: e.path().unwrap_or(root).to_owned(),
            source: e.into(),
        })?;
        let md = fs_err::symlink_metadata(item.path()).map_err(err(item.path()))?;
        let rel =
            item.path().strip_prefix(root).unwrap_or(item.path()).to_string_lossy().into_owned();
        snap.insert(
            rel,
            Snap {
                dev: md.dev(),
                ino: md.ino(),
                ctime: (md.ctime(), md.ctime_nsec()),
                btime: md.created().ok(),
                is_dir: md.is_dir(),
            },
        );
    }
    Ok(snap)
}
