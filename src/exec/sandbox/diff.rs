//! Turns an overlay upper dir into layer entries, walked in sorted order.
//!
//! Invariant: the entries describe exactly what the command changed: overlay bookkeeping
//! (`*.overlay.*` xattrs), the sandbox's own stubs (mount points, generated files), copied-up
//! files identical to their lower version, and directories that only carry such noise are
//! left out; every emitted entry's parent directories are emitted too.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::oci::layer::{Entry, EntryKind};

use super::copyroot::Snapshot;
use super::sys::Sys;

/// A failure reading the upper or a lower dir.
#[derive(Debug)]
pub(crate) struct DiffError {
    pub(crate) path: PathBuf,
    pub(crate) source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> DiffError + '_ {
    move |source| DiffError { path: path.to_owned(), source }
}

pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

pub(crate) fn overlay_flag(xattrs: &[(String, Vec<u8>)], what: &str) -> bool {
    xattrs.iter().any(|(n, v)| {
        is_overlay_xattr(n) && n.ends_with(&format!(".overlay.{what}")) && v.as_slice() == b"y"
            || (what == "whiteout" && is_overlay_xattr(n) && n.ends_with(".overlay.whiteout"))
    })
}

/// Finds `rel` in the stacked lower dirs (topmost first), honouring whiteouts and opaque
/// directories on the way down.
pub(crate) fn lookup_lower(sys: &mut dyn Sys, lowers: &[PathBuf], rel: &str) -> Option<PathBuf> {
    let comps: Vec<&str> = rel.split('/').collect();
    'layers: for lower in lowers {
        let mut dir = lower.clone();
        for (i, comp) in comps.iter().enumerate() {
            let path = dir.join(comp);
            let Ok(md) = fs_err::symlink_metadata(&path) else { continue 'layers };
            if md.file_type().is_char_device() && md.rdev() == 0 {
                return None;
            }
            if i + 1 == comps.len() {
                return Some(path);
            }
            if !md.is_dir() {
                return None;
            }
            let xattrs = sys.xattrs(&path).unwrap_or_default();
            if overlay_flag(&xattrs, "opaque") {
                // Nothing below this layer shows through; keep looking only here.
                let full = lower.join(rel);
                return fs_err::symlink_metadata(&full).is_ok().then_some(full);
            }
            dir = path;
        }
    }
    None
}

fn same_content(a: &Path, b: &Path) -> Result<bool, DiffError> {
    let mut fa = fs_err::File::open(a).map_err(err(a))?;
    let mut fb = fs_err::File::open(b).map_err(err(b))?;
    let (mut ba, mut bb) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(err(a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(err(b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether the upper object is unchanged against its lower version (mtime aside: outputs
/// clamp it anyway, so a touch alone is not a change).
fn unchanged(
    sys: &mut dyn Sys,
    entry: &Entry,
    upper_path: &Path,
    lower: &Path,
) -> Result<bool, DiffError> {
    let md = fs_err::symlink_metadata(lower).map_err(err(lower))?;
    if md.mode() & 0o7777 != entry.mode || md.uid() != entry.uid || md.gid() != entry.gid {
        return Ok(false);
    }
    let lower_xattrs: Vec<_> = sys
        .xattrs(lower)
        .map_err(err(lower))?
        .into_iter()
        .filter(|(n, _)| !is_overlay_xattr(n))
        .collect();
    if lower_xattrs != entry.xattrs {
        return Ok(false);
    }
    Ok(match &entry.kind {
        EntryKind::File { size, .. } => {
            md.is_file() && md.len() == *size && same_content(upper_path, lower)?
        }
        EntryKind::Dir { opaque } => md.is_dir() && !opaque,
        EntryKind::Symlink { target } => {
            md.file_type().is_symlink()
                && fs_err::read_link(lower).map_err(err(lower))?.to_string_lossy() == *target
        }
        _ => false,
    })
}

/// Walks `upper` (an overlay upper dir, or with `snapshot` a copied root) and returns its
/// changes against `lowers`, leaving out `stubs`.
pub(crate) fn diff_upper(
    sys: &mut dyn Sys,
    upper: &Path,
    lowers: &[PathBuf],
    stubs: &[String],
    snapshot: Option<&Snapshot>,
) -> Result<Vec<Entry>, DiffError> {
    let mut replaced_dirs: HashSet<String> = HashSet::new();
    let stubs: HashSet<&str> = stubs.iter().map(String::as_str).collect();
    // (entry, required on its own)
    let mut candidates: Vec<(Entry, bool)> = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let walker = walkdir::WalkDir::new(upper).min_depth(1).sort_by_file_name();
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_owned();
            DiffError { path, source: e.into() }
        })?;
        let path = item.path();
        let rel = relative_name(upper, path)?;
        let md = fs_err::symlink_metadata(path).map_err(err(path))?;
        let all_xattrs = sys.xattrs(path).map_err(err(path))?;
        let ft = md.file_type();
        let base = |kind| Entry {
            path: rel.clone(),
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            xattrs: all_xattrs.iter().filter(|(n, _)| !is_overlay_xattr(n)).cloned().collect(),
        };
        let whiteout = snapshot.is_none()
            && ((ft.is_char_device() && md.rdev() == 0)
                || (!ft.is_dir() && overlay_flag(&all_xattrs, "whiteout")));
        let before = snapshot.and_then(|s| s.get(&rel));
        let same_inode = before
            .is_some_and(|b| (b.dev, b.ino, b.btime) == (md.dev(), md.ino(), md.created().ok()));
        if whiteout {
            let mut e = base(EntryKind::Whiteout);
            e.xattrs.clear();
            candidates.push((e, true));
            continue;
        }
        let stub = stubs.contains(rel.as_str());
        let entry = if ft.is_dir() {
            let opaque = match snapshot {
                None => overlay_flag(&all_xattrs, "opaque"),
                // A directory removed and created again hides all it held before.
                Some(_) => before.is_some_and(|b| b.is_dir) && !same_inode,
            };
            if opaque {
                replaced_dirs.insert(rel.clone());
            }
            base(EntryKind::Dir { opaque })
        } else if ft.is_symlink() {
            let target = fs_err::read_link(path).map_err(err(path))?;
            base(EntryKind::Symlink { target: target.to_string_lossy().into_owned() })
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = inodes.get(&key) {
                    let e = base(EntryKind::Hardlink { target: first.clone() });
                    candidates.push((e, true));
                    continue;
                }
                inodes.insert(key, rel.clone());
            }
            base(EntryKind::File { source: path.to_owned(), size: md.len() })
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = (libc::major(md.rdev()), libc::minor(md.rdev()));
            base(if ft.is_char_device() {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            })
        } else if ft.is_fifo() {
            base(EntryKind::Fifo)
        } else {
            continue; // sockets have no tar form
        };
        let untouched =
            same_inode && before.is_some_and(|b| b.ctime == (md.ctime(), md.ctime_nsec()));
        let required = if stub || untouched {
            false
        } else if let Some(lower) = lookup_lower(sys, lowers, &rel) {
            let linked = matches!(entry.kind, EntryKind::File { .. }) && md.nlink() > 1;
            linked || !unchanged(sys, &entry, path, &lower)?
        } else {
            // New here; stub directories created for mounts are only kept for their content.
            true
        };
        if stub && !matches!(entry.kind, EntryKind::Dir { .. }) {
            continue;
        }
        candidates.push((entry, required));
    }
    if let Some(snap) = snapshot {
        candidates.extend(deleted_since(upper, snap, &replaced_dirs));
        candidates.sort_by(|(a, _), (b, _)| a.path.split('/').cmp(b.path.split('/')));
    }
    Ok(required_and_their_parents(candidates))
}

/// `path` relative to `upper`, as the UTF-8 name a layer entry carries.
fn relative_name(upper: &Path, path: &Path) -> Result<String, DiffError> {
    let rel = path.strip_prefix(upper).ok().and_then(Path::to_str).ok_or_else(|| DiffError {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "non-UTF-8 file name"),
    })?;
    Ok(rel.to_owned())
}

/// The copy fallback's deletions: whiteouts for what the snapshot had and `upper` has no more,
/// only the topmost of each removed tree (the parent must still be the same directory).
fn deleted_since(
    upper: &Path,
    snap: &Snapshot,
    replaced_dirs: &HashSet<String>,
) -> Vec<(Entry, bool)> {
    let mut whiteouts = Vec::new();
    for rel in snap.keys() {
        if fs_err::symlink_metadata(upper.join(rel)).is_ok() {
            continue;
        }
        let parent_kept = match rel.rsplit_once('/') {
            None => true,
            Some((parent, _)) => {
                let now = fs_err::symlink_metadata(upper.join(parent));
                now.is_ok_and(|m| m.is_dir()) && !replaced_dirs.contains(parent)
            }
        };
        if parent_kept {
            let whiteout = Entry {
                path: rel.clone(),
                kind: EntryKind::Whiteout,
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            };
            whiteouts.push((whiteout, true));
        }
    }
    whiteouts
}

/// The entries that are changes of their own (required), and the directories that lead to
/// them; an unchanged directory on no such path is left out.
fn required_and_their_parents(candidates: Vec<(Entry, bool)>) -> Vec<Entry> {
    let mut keep: HashSet<String> = HashSet::new();
    for (e, required) in &candidates {
        if *required {
            let mut p = e.path.as_str();
            keep.insert(p.to_owned());
            while let Some((parent, _)) = p.rsplit_once('/') {
                keep.insert(parent.to_owned());
                p = parent;
            }
        }
    }
    candidates.into_iter().map(|(e, _)| e).filter(|e| keep.contains(&e.path)).collect()
}
