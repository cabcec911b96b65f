//! Opening and hashing context files safely: beneath the context root, never through a
//! symlink, never blocking on a FIFO or a device.
//!
//! Invariant: a context file is only ever read through [`open_beneath`], which refuses any
//! symlink on the way (so a file swapped for a link to `/etc/shadow` after planning cannot
//! be read) and anything that is not a regular file (so a FIFO swapped in cannot hang the
//! build). Planning hashes through it, and the layer writer checks what it reads against
//! that hash with [`HashingReader`].

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::digest::Digest;

/// How much is read between two checks for Ctrl-C while hashing.
const CHUNK: usize = 1 << 20;

/// Opens the regular file `rel` (relative, normalised, no symlinks expected) beneath `root`
/// without following any symlink, and checks that it is a regular file.
pub(crate) fn open_beneath(root: &Path, rel: &str) -> io::Result<std::fs::File> {
    if rel.is_empty() || rel.split('/').any(|c| matches!(c, "" | "." | "..")) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a normalised relative path"));
    }
    let dir =
        rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    // O_NONBLOCK: opening a FIFO swapped in after planning returns at once instead of waiting
    // for a writer; it changes nothing for regular files.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => fd,
        // Kernels before 5.6 (or seccomp profiles that hide openat2): one component at a time.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            open_by_components(dir, rel, flags)?
        }
        Err(e) => return Err(e.into()),
    };
    let file = std::fs::File::from(fd);
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

/// Opens the folder `rel` (relative, normalised; empty for the root itself) beneath `root`
/// without following any symlink, for reading its entries.
pub(crate) fn open_dir_beneath(root: &Path, rel: &str) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::open(root, flags, Mode::empty())?;
    if rel.is_empty() {
        return Ok(dir);
    }
    if rel.split('/').any(|c| matches!(c, "" | "." | "..")) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a normalised relative path"));
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            open_by_components(dir, rel, flags)
        }
        Err(e) => Err(e.into()),
    }
}

/// The fallback of [`open_beneath`]: every folder is opened with `O_NOFOLLOW` relative to its
/// parent's descriptor, so no symlink is ever followed.
fn open_by_components(root: OwnedFd, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let mut dir = root;
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return Ok(rustix::fs::openat(&dir, part, flags, Mode::empty())?);
        }
        let dflags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = rustix::fs::openat(&dir, part, dflags, Mode::empty())?;
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"))
}

/// blake3 of everything `file` holds, read in chunks; `cancelled` is asked between chunks so
/// that Ctrl-C stops the hashing of a huge file. `size_hint` (the size `fstat` gave) sizes the
/// buffer, so that small files cost no large allocation. Returns the hash and the byte count.
pub(crate) fn hash_open_file(
    mut file: impl Read,
    size_hint: u64,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    // One byte more than the hint, so that the end is seen in the first read when it holds.
    let len = usize::try_from(size_hint.saturating_add(1)).unwrap_or(CHUNK).clamp(1, CHUNK);
    let mut buf = vec![0u8; len];
    let mut total = 0u64;
    loop {
        if cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest(*hasher.finalize().as_bytes()), total))
}

/// Hashes what passes through, so a reader can be checked against the hash planning saw.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, hasher: blake3::Hasher::new(), read: 0 }
    }

    /// How many bytes went through.
    pub(crate) fn count(&self) -> u64 {
        self.read
    }

    /// The blake3 of what went through.
    pub(crate) fn digest(&self) -> Digest {
        Digest(*self.hasher.finalize().as_bytes())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_anywhere_on_the_path() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("dir")).unwrap();
        fs_err::write(d.path().join("dir/f"), "x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("ldir")).unwrap();
        std::os::unix::fs::symlink("dir", d.path().join("inner")).unwrap();
        assert!(open_beneath(d.path(), "dir/f").is_ok());
        for bad in ["link", "ldir/secret", "inner/f", "../x", "dir/../dir/f", ""] {
            assert!(open_beneath(d.path(), bad).is_err(), "{bad} opened");
        }
        let root =
            rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW;
        assert!(open_by_components(root, "ldir/secret", flags).is_err());
    }

    #[test]
    fn never_blocks_on_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = open_beneath(d.path(), "fifo").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn hashing_stops_when_cancelled() {
        let data = vec![7u8; 3 * CHUNK];
        for hint in [0, 10, data.len() as u64, u64::MAX] {
            let (d, n) = hash_open_file(data.as_slice(), hint, &|| false).unwrap();
            assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        }
        let err = hash_open_file(data.as_slice(), 0, &|| true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
