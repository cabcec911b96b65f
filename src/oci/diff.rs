//! Compares two layer tars entry by entry, for `stack verify`: which files differ and in
//! what (content, mode, owner, mtime, xattrs, link target, entry order), with a short line
//! diff of text files.
//!
//! Invariant: reading a layer only decompresses and hashes it; nothing is extracted, so a
//! hostile layer cannot write anywhere.

use std::collections::BTreeMap;
use std::io::Read;

use super::compress::Compression;
use super::image::Descriptor;
use crate::store::{Store, StoreError};

/// Files larger than this are compared by hash only, never diffed line by line.
const TEXT_LIMIT: u64 = 256 * 1024;
/// Lines of a content diff shown per file.
const DIFF_LINES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiffError {
    #[error("cannot read layer `{digest}`")]
    Store {
        digest: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot read layer `{digest}` as a tar")]
    Tar {
        digest: String,
        #[source]
        source: std::io::Error,
    },
}

/// One tar entry as far as a comparison cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarEntry {
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo` or the type byte.
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub link: Option<String>,
    pub size: u64,
    pub blake3: [u8; 32],
    /// The bytes of a small file, kept for a line diff.
    pub small: Option<Vec<u8>>,
}

/// What differs between two layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Difference {
    /// A path only one side has (`left` says which).
    Only { path: String, left: bool },
    /// An attribute differs: its name and both values.
    Attribute { path: String, what: &'static str, left: String, right: String },
    /// The bytes differ; `diff` is a short line diff when both sides are text.
    Content { path: String, left_size: u64, right_size: u64, diff: Option<String> },
    /// The same entries in another order.
    Order,
}

/// Reads every entry of a layer blob in `store`.
pub(crate) fn read_layer(store: &Store, blob: &Descriptor) -> Result<Vec<TarEntry>, DiffError> {
    let digest = blob.digest.to_string();
    let reader = store
        .open_blob(&blob.digest)
        .map_err(|source| DiffError::Store { digest: digest.clone(), source })?;
    let compression = compression_of(&blob.media_type);
    let tar_err = |source| DiffError::Tar { digest: digest.clone(), source };
    let plain = super::extract::decompress(reader, compression).map_err(tar_err)?;
    read_tar(plain).map_err(tar_err)
}

fn compression_of(media_type: &str) -> Compression {
    if media_type.ends_with("+zstd") {
        Compression::Zstd
    } else if media_type.ends_with("gzip") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// Reads the entries of an uncompressed tar stream.
pub(crate) fn read_tar(reader: impl Read) -> std::io::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        out.push(read_entry(entry?)?);
    }
    Ok(out)
}

fn read_entry<R: Read>(mut entry: tar::Entry<'_, R>) -> std::io::Result<TarEntry> {
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    xattrs.sort();
    let header = entry.header().clone();
    let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
    let size = entry.size();
    let mut hasher = blake3::Hasher::new();
    let mut small = (size <= TEXT_LIMIT).then(Vec::new);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(s) = small.as_mut() {
            s.extend_from_slice(&buf[..n]);
        }
    }
    Ok(TarEntry {
        path: path.trim_end_matches('/').to_owned(),
        kind: kind_name(header.entry_type()),
        mode: header.mode()? & 0o7777,
        uid: header.uid()?,
        gid: header.gid()?,
        mtime: header.mtime()?,
        xattrs,
        link,
        size,
        blake3: *hasher.finalize().as_bytes(),
        small,
    })
}

fn kind_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file".into(),
        tar::EntryType::Directory => "dir".into(),
        tar::EntryType::Symlink => "symlink".into(),
        tar::EntryType::Link => "hardlink".into(),
        tar::EntryType::Char => "char".into(),
        tar::EntryType::Block => "block".into(),
        tar::EntryType::Fifo => "fifo".into(),
        other => format!("type {}", other.as_byte()),
    }
}

/// Every difference between two layers' entries, by path, then their order.
pub(crate) fn compare(left: &[TarEntry], right: &[TarEntry]) -> Vec<Difference> {
    let l: BTreeMap<&str, &TarEntry> = left.iter().map(|e| (e.path.as_str(), e)).collect();
    let r: BTreeMap<&str, &TarEntry> = right.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    for (path, a) in &l {
        match r.get(path) {
            None => out.push(Difference::Only { path: (*path).to_owned(), left: true }),
            Some(b) => out.extend(compare_entry(a, b)),
        }
    }
    for path in r.keys().filter(|p| !l.contains_key(*p)) {
        out.push(Difference::Only { path: (*path).to_owned(), left: false });
    }
    let order = |v: &[TarEntry]| v.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(left) != order(right) {
        out.push(Difference::Order);
    }
    out
}

fn compare_entry(a: &TarEntry, b: &TarEntry) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut attr = |what: &'static str, left: String, right: String| {
        if left != right {
            out.push(Difference::Attribute { path: a.path.clone(), what, left, right });
        }
    };
    attr("kind", a.kind.clone(), b.kind.clone());
    attr("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
    attr("owner", format!("{}:{}", a.uid, a.gid), format!("{}:{}", b.uid, b.gid));
    attr("mtime", a.mtime.to_string(), b.mtime.to_string());
    attr("xattrs", show_xattrs(&a.xattrs), show_xattrs(&b.xattrs));
    let none = || "(none)".to_owned();
    attr("link target", a.link.clone().unwrap_or_else(none), b.link.clone().unwrap_or_else(none));
    if a.blake3 != b.blake3 {
        let diff = match (&a.small, &b.small) {
            (Some(x), Some(y)) => line_diff(x, y),
            _ => None,
        };
        out.push(Difference::Content {
            path: a.path.clone(),
            left_size: a.size,
            right_size: b.size,
            diff,
        });
    }
    out
}

fn show_xattrs(x: &[(String, Vec<u8>)]) -> String {
    if x.is_empty() {
        return "(none)".into();
    }
    let items: Vec<String> =
        x.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))).collect();
    items.join(", ")
}

/// A short `-`/`+` diff of two texts, `None` when either is not UTF-8 text. Lines common to
/// both ends are skipped; what lies between is shown as removed then added, which is enough
/// to see what a step wrote differently without a full diff algorithm.
pub(crate) fn line_diff(a: &[u8], b: &[u8]) -> Option<String> {
    let (a, b) = (std::str::from_utf8(a).ok()?, std::str::from_utf8(b).ok()?);
    if a.contains('\0') || b.contains('\0') {
        return None;
    }
    let (al, bl): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let head = al.iter().zip(&bl).take_while(|(x, y)| x == y).count();
    let tail =
        al[head..].iter().rev().zip(bl[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let removed = &al[head..al.len() - tail];
    let added = &bl[head..bl.len() - tail];
    let mut lines: Vec<String> = removed.iter().map(|l| format!("-{l}")).collect();
    lines.extend(added.iter().map(|l| format!("+{l}")));
    if lines.is_empty() {
        // Only line endings differ (e.g. a final newline).
        lines.push("(only line endings differ)".into());
    }
    let more = lines.len().saturating_sub(DIFF_LINES);
    lines.truncate(DIFF_LINES);
    if more > 0 {
        lines.push(format!("… {more} more line(s)"));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8], mode: u32) -> TarEntry {
        TarEntry {
            path: path.into(),
            kind: "file".into(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
            link: None,
            size: content.len() as u64,
            blake3: *blake3::hash(content).as_bytes(),
            small: Some(content.to_vec()),
        }
    }

    #[test]
    fn names_content_and_mode_differences() {
        let a = [entry("etc/a", b"one\ntwo\n", 0o644), entry("t", b"x", 0o644)];
        let b = [entry("etc/a", b"one\nthree\n", 0o644), entry("t", b"x", 0o600)];
        let d = compare(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(matches!(&d[0], Difference::Content { diff: Some(t), .. } if t == "-two\n+three"));
        assert!(matches!(&d[1], Difference::Attribute { what: "mode", .. }));
    }

    #[test]
    fn names_missing_paths_and_order() {
        let a = [entry("a", b"", 0o644), entry("b", b"", 0o644)];
        let b = [entry("b", b"", 0o644), entry("a", b"", 0o644)];
        assert_eq!(compare(&a, &b), vec![Difference::Order]);
        let d = compare(&a[..1], &b[..1]);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn binary_content_has_no_line_diff() {
        assert_eq!(line_diff(b"\0\x01", b"\0\x02"), None);
    }
}
