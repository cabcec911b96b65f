//! Extended attributes and device nodes of the trees the sandbox reads and writes (the
//! upper dir, the copy fallback's root), for [`RealSys`](super::RealSys).

use std::io;
use std::path::Path;

use rustix::io::Errno;

/// Lists the extended attributes of `path` (not following symlinks), sorted by name.
pub(super) fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match grown(4096, |buf| rustix::fs::llistxattr(path, buf)) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        match grown(256, |buf| rustix::fs::lgetxattr(path, name, buf)) {
            Ok(value) => out.push((String::from_utf8_lossy(name).into_owned(), value)),
            // Gone meanwhile, or not ours to read: as if it were not there.
            Err(Errno::NODATA | Errno::NOTSUP | Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
}

/// What `read` puts in a buffer, growing the buffer while the kernel says it is too small
/// (`ERANGE`; an xattr list or value is at most 64 KiB, so this ends).
fn grown(
    first: usize,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; first];
    loop {
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => buf.resize(buf.len() * 8, 0),
            Err(e) => return Err(e),
        }
    }
}

/// Sets one extended attribute on `path` (not following symlinks).
pub(super) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

/// Creates a device node or fifo.
pub(super) fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let kind = rustix::fs::FileType::from_raw_mode(mode);
    let perms = rustix::fs::Mode::from_raw_mode(mode & 0o7777);
    rustix::fs::mknodat(rustix::fs::CWD, path, kind, perms, rdev).map_err(Into::into)
}
