//! The deterministic layer tar writer.
//!
//! Invariant: the bytes depend only on the entries: entries are sorted by path, every parent
//! folder an entry needs is present, mtimes are clamped to the epoch given, owners are numeric
//! (no user or group names), there are no atime/ctime fields, and long values go into PAX
//! records with fixed header names.

use std::io::{self, Read, Write};

use super::layer::{Entry, EntryKind};

/// PAX values need a record when they do not fit ustar's fields.
const USTAR_MAX_ID: u32 = 0o7_777_777;
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;

/// Why a layer tar could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TarWriteError {
    #[error("failed to read `{}` while writing a layer", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` changed size while it was being copied (expected {expected} bytes)", path.display())]
    Changed { path: std::path::PathBuf, expected: u64 },
    #[error("file `{}` changed during the build", path.display())]
    ContextChanged { path: std::path::PathBuf },
    #[error("failed to write a layer tar")]
    Write(#[source] io::Error),
}

/// Writes `entries` as a tar stream into `out` and returns `out`.
///
/// Entries must be unique by path; they are written in sorted order. Parent folders that are
/// not among the entries must have been added by the caller (see [`add_missing_parents`]).
pub(crate) fn write_tar<W: Write>(
    entries: &[Entry],
    epoch: i64,
    out: W,
) -> Result<W, TarWriteError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut builder = tar::Builder::new(out);
    for entry in sorted {
        write_entry(&mut builder, entry, epoch)?;
        if matches!(entry.kind, EntryKind::Dir { opaque: true }) {
            let marker = Entry {
                path: join(&entry.path, ".wh..wh..opq"),
                kind: EntryKind::Inline { content: Vec::new() },
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            };
            write_entry(&mut builder, &marker, epoch)?;
        }
    }
    builder.into_inner().map_err(TarWriteError::Write)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn write_entry<W: Write>(
    b: &mut tar::Builder<W>,
    e: &Entry,
    epoch: i64,
) -> Result<(), TarWriteError> {
    let mut header = tar::Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let (name, kind) = match &e.kind {
        EntryKind::Whiteout => {
            let (dir, base) =
                e.path.rsplit_once('/').map_or(("", e.path.as_str()), |(d, b)| (d, b));
            (join(dir, &format!(".wh.{base}")), tar::EntryType::Regular)
        }
        EntryKind::File { .. } | EntryKind::ContextFile { .. } | EntryKind::Inline { .. } => {
            (e.path.clone(), tar::EntryType::Regular)
        }
        EntryKind::Dir { .. } => (format!("{}/", e.path), tar::EntryType::Directory),
        EntryKind::Symlink { .. } => (e.path.clone(), tar::EntryType::Symlink),
        EntryKind::Hardlink { .. } => (e.path.clone(), tar::EntryType::Link),
        EntryKind::CharDevice { .. } => (e.path.clone(), tar::EntryType::Char),
        EntryKind::BlockDevice { .. } => (e.path.clone(), tar::EntryType::Block),
        EntryKind::Fifo => (e.path.clone(), tar::EntryType::Fifo),
    };
    header.set_entry_type(kind);
    if header.set_path(&name).is_err() || name.len() > 255 {
        pax.push(("path".to_owned(), name.clone().into_bytes()));
        header.set_path(truncate(&name, 100)).map_err(TarWriteError::Write)?;
    }
    let whiteout = matches!(e.kind, EntryKind::Whiteout);
    header.set_mode(if whiteout { 0 } else { e.mode & 0o7777 });
    let (uid, gid) = if whiteout { (0, 0) } else { (e.uid, e.gid) };
    for (key, id, setter) in [("uid", uid, 0), ("gid", gid, 1)] {
        let fitted = if id > USTAR_MAX_ID {
            pax.push((key.to_owned(), id.to_string().into_bytes()));
            0
        } else {
            id
        };
        if setter == 0 {
            header.set_uid(u64::from(fitted));
        } else {
            header.set_gid(u64::from(fitted));
        }
    }
    let mtime = if whiteout { 0 } else { e.mtime.clamp(0, epoch.max(0)) };
    header.set_mtime(mtime as u64);
    let size = match &e.kind {
        EntryKind::File { size, .. } | EntryKind::ContextFile { size, .. } => *size,
        EntryKind::Inline { content } => content.len() as u64,
        _ => 0,
    };
    if size > USTAR_MAX_SIZE {
        pax.push(("size".to_owned(), size.to_string().into_bytes()));
        header.set_size(0);
    } else {
        header.set_size(size);
    }
    match &e.kind {
        EntryKind::Symlink { target } | EntryKind::Hardlink { target }
            if (header.set_link_name(target).is_err() || target.len() > 100) =>
        {
            pax.push(("linkpath".to_owned(), target.clone().into_bytes()));
            header.set_link_name(truncate(target, 100)).map_err(TarWriteError::Write)?;
        }
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            header.set_device_major(*major).map_err(TarWriteError::Write)?;
            header.set_device_minor(*minor).map_err(TarWriteError::Write)?;
        }
        _ => {}
    }
    for (name, value) in &e.xattrs {
        pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
    }
    if !pax.is_empty() {
        write_pax(b, &name, &pax)?;
    }
    header.set_cksum();
    match &e.kind {
        EntryKind::File { source, size } => {
            let file = fs_err::File::open(source)
                .map_err(|err| TarWriteError::Read { path: source.clone(), source: err })?;
            let mut reader = ExactReader { inner: file.take(*size), read: 0 };
            b.append(&header, &mut reader).map_err(|err| {
                if err.kind() == io::ErrorKind::UnexpectedEof {
                    TarWriteError::Changed { path: source.clone(), expected: *size }
                } else {
                    TarWriteError::Read { path: source.clone(), source: err }
                }
            })?;
            if reader.read != *size {
                return Err(TarWriteError::Changed { path: source.clone(), expected: *size });
            }
        }
        EntryKind::ContextFile { root, rel, size, blake3 } => {
            append_context_file(b, &header, root, rel, *size, blake3)?;
        }
        EntryKind::Inline { content } => {
            b.append(&header, content.as_slice()).map_err(TarWriteError::Write)?;
        }
        _ => b.append(&header, io::empty()).map_err(TarWriteError::Write)?,
    }
    Ok(())
}

/// Appends a build-context file, read once through a descriptor opened beneath the context
/// root, and fails unless its bytes are exactly those planning hashed.
fn append_context_file<W: Write>(
    b: &mut tar::Builder<W>,
    header: &tar::Header,
    root: &std::path::Path,
    rel: &str,
    size: u64,
    blake3: &[u8; 32],
) -> Result<(), TarWriteError> {
    use crate::context::open::{HashingReader, open_beneath};
    let path = root.join(rel);
    let changed = || TarWriteError::ContextChanged { path: path.clone() };
    let file = open_beneath(root, rel).map_err(|err| match err.raw_os_error() {
        // A symlink or a special file now stands where planning saw a regular file.
        Some(libc::ELOOP | libc::EXDEV | libc::ENOENT | libc::ENOTDIR) => changed(),
        _ if err.kind() == io::ErrorKind::InvalidInput => changed(),
        _ => TarWriteError::Read { path: path.clone(), source: err },
    })?;
    if file.metadata().map_err(|err| TarWriteError::Read { path: path.clone(), source: err })?.len()
        != size
    {
        return Err(changed());
    }
    // Large reads under the hasher: blake3 is several times faster on big slices than on the
    // 8 KiB pieces the tar builder copies in.
    let buffer = usize::try_from(size).unwrap_or(usize::MAX).clamp(1, 1 << 20);
    let mut reader = io::BufReader::with_capacity(buffer, HashingReader::new(file.take(size)));
    b.append(header, &mut reader).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            changed()
        } else {
            TarWriteError::Read { path: path.clone(), source: err }
        }
    })?;
    let reader = reader.into_inner();
    if reader.count() != size || reader.digest().0 != *blake3 {
        return Err(changed());
    }
    Ok(())
}

/// Counts what it reads so a file that shrank while being copied is detected.
struct ExactReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn write_pax<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    records: &[(String, Vec<u8>)],
) -> Result<(), TarWriteError> {
    let mut data = Vec::new();
    let mut sorted: Vec<&(String, Vec<u8>)> = records.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in sorted {
        // A record is "LEN KEY=VALUE\n" where LEN counts the whole record including itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    let base = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    header
        .set_path(truncate(&format!("PaxHeaders.0/{base}"), 100))
        .map_err(TarWriteError::Write)?;
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    header.set_cksum();
    b.append(&header, data.as_slice()).map_err(TarWriteError::Write)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Adds a folder entry for every parent of an entry that has none, using `meta` to give it the
/// metadata it already has in lower layers (or `0755 root:root` when it is new).
pub(crate) fn add_missing_parents(
    entries: &mut Vec<Entry>,
    meta: &dyn Fn(&str) -> Option<(u32, u32, u32, i64)>,
) {
    let mut have: std::collections::BTreeSet<String> =
        entries.iter().map(|e| e.path.clone()).collect();
    let mut added = Vec::new();
    for e in entries.iter() {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if have.insert(parent.to_owned()) {
                let (mode, uid, gid, mtime) = meta(parent).unwrap_or((0o755, 0, 0, 0));
                added.push(Entry {
                    path: parent.to_owned(),
                    kind: EntryKind::Dir { opaque: false },
                    mode,
                    uid,
                    gid,
                    mtime,
                    xattrs: Vec::new(),
                });
            }
            p = parent;
        }
    }
    entries.extend(added);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            xattrs: vec![],
        }
    }

    fn listing(bytes: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|en| {
                let en = en.unwrap();
                let h = en.header();
                format!(
                    "{} {:?} {:o} {}:{} {} {}",
                    en.path().unwrap().display(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    en.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn writes_sorted_entries_with_parents_whiteouts_and_clamped_times() {
        let mut entries = vec![
            e("b/file", EntryKind::Inline { content: b"hi".to_vec() }),
            e("a", EntryKind::Symlink { target: "b/file".into() }),
            e("c/gone", EntryKind::Whiteout),
            e("d", EntryKind::Dir { opaque: true }),
        ];
        add_missing_parents(&mut entries, &|_| None);
        let bytes = write_tar(&entries, 0, Vec::new()).unwrap();
        insta::assert_snapshot!(listing(&bytes).join("\n"));
    }

    #[test]
    fn long_names_and_big_ids_use_pax() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut entry = e(&long, EntryKind::Inline { content: vec![] });
        entry.uid = 5_000_000;
        entry.xattrs = vec![("security.capability".into(), vec![1, 2, 3])];
        let bytes = write_tar(&[entry], 10, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut en = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(en.path().unwrap().to_str().unwrap(), long);
        assert_eq!(en.header().mtime().unwrap(), 10);
        let pax: Vec<_> = en
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap().key().unwrap().to_owned())
            .collect();
        assert_eq!(pax, ["SCHILY.xattr.security.capability", "path", "uid"]);
    }
}
