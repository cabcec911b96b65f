//! The installed packages of rpm's sqlite database (`var/lib/rpm/rpmdb.sqlite`): each row of
//! its `Packages` table is an rpm header blob, whose name, version, release, epoch and
//! architecture tags are read here.
//!
//! Invariant: pure parsing, sorted output; a header that cannot be read is skipped, a database
//! that cannot be read is an error.

use super::packages::Package;
use super::sqlite::{SqliteError, Value, table_rows};

const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const ARCH: u32 = 1022;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;

/// The packages of an `rpmdb.sqlite` file, sorted; `distro` is the purl namespace.
pub(crate) fn rpmdb(bytes: &[u8], distro: &str) -> Result<Vec<Package>, SqliteError> {
    let mut out: Vec<Package> = table_rows(bytes, "Packages")?
        .iter()
        .filter_map(|row| match row.as_slice() {
            [_, Value::Blob(blob)] => header_package(blob, distro),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A package from one header blob: `il`, `dl` (big-endian), `il` index entries of 16 bytes
/// (tag, type, offset, count), then `dl` bytes of data.
pub(crate) fn header_package(blob: &[u8], distro: &str) -> Option<Package> {
    let be = |at: usize| blob.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let il = be(0)? as usize;
    let dl = be(4)? as usize;
    let data_start = 8 + il.checked_mul(16)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let find = |tag: u32| (0..il).map(|i| 8 + 16 * i).find(|&e| be(e) == Some(tag));
    let string = |tag: u32| {
        let e = find(tag)?;
        if be(e + 4)? != TYPE_STRING {
            return None;
        }
        let rest = data.get(be(e + 8)? as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    };
    let epoch = find(EPOCH).and_then(|e| {
        let off = be(e + 8)? as usize;
        (be(e + 4)? == TYPE_INT32)
            .then(|| data.get(off..off + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])))?
    });
    let version = format!("{}-{}", string(VERSION)?, string(RELEASE)?);
    Some(Package {
        name: string(NAME)?,
        // As rpm prints it: `EPOCH:VERSION-RELEASE` when there is an epoch.
        version: match epoch {
            Some(e) => format!("{e}:{version}"),
            None => version,
        },
        arch: string(ARCH).unwrap_or_default(),
        kind: "rpm",
        distro: distro.to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An rpm header blob with these string tags (and an int32 epoch), as rpm stores it.
    pub(crate) fn header(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let mut entry = |tag: u32, kind: u32, off: usize| {
            for v in [tag, kind, off as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
        };
        if let Some(e) = epoch {
            entry(EPOCH, TYPE_INT32, data.len());
            data.extend_from_slice(&e.to_be_bytes());
        }
        for (tag, s) in strings {
            entry(*tag, TYPE_STRING, data.len());
            data.extend_from_slice(s.as_bytes());
            data.push(0);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    #[test]
    fn a_header_gives_name_epoch_version_release_arch() {
        let blob = header(
            &[(NAME, "bash"), (VERSION, "5.1.8"), (RELEASE, "9.el9"), (ARCH, "x86_64")],
            Some(1),
        );
        let p = header_package(&blob, "rhel").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("bash", "1:5.1.8-9.el9"));
        assert_eq!(p.purl(), "pkg:rpm/rhel/bash@5.1.8-9.el9?arch=x86_64&epoch=1");
        assert!(header_package(&blob[..20], "rhel").is_none(), "a cut header is skipped");
    }
}
