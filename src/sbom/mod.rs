//! Software bills of materials: the OS packages an image holds (from its package databases)
//! and its base images, as a deterministic SPDX 2.3 or CycloneDX 1.5 JSON document.
//!
//! Invariant: an SBOM is a pure function of the image's layers, its bases and
//! `SOURCE_DATE_EPOCH`, so two builds of the same image give byte-identical SBOMs.

pub(crate) mod cyclonedx;
pub(crate) mod packages;
pub(crate) mod rootfs;
pub(crate) mod rpm;
pub(crate) mod spdx;
pub(crate) mod sqlite;

use crate::digest::OciDigest;
use crate::oci::image::Descriptor;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum SbomError {
    #[error("cannot read layer `{digest}` for the SBOM")]
    Store {
        digest: String,
        #[source]
        source: StoreError,
    },
    #[error("`/{path}` of the image is not a readable rpm database")]
    Rpmdb {
        path: String,
        #[source]
        source: sqlite::SqliteError,
    },
    #[error("layer `{digest}` is not a readable tar")]
    Layer {
        digest: String,
        #[source]
        source: std::io::Error,
    },
}

const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";
const APK_INSTALLED: &str = "lib/apk/db/installed";
const RPMDB: [&str; 2] = ["var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite"];
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// The packages the image's databases list (dpkg, apk and rpm's sqlite database), sorted.
pub(crate) fn image_packages(
    store: &Store,
    layers: &[Descriptor],
) -> Result<Vec<packages::Package>, SbomError> {
    let want = |p: &str| {
        p == DPKG_STATUS
            || p == APK_INSTALLED
            || RPMDB.contains(&p)
            || OS_RELEASE.contains(&p)
            || p.strip_prefix(DPKG_STATUS_D).is_some_and(|rest| !rest.contains('/'))
    };
    let files = rootfs::files(store, layers, &want)?;
    let text = |p: &str| files.get(p).map(|b| String::from_utf8_lossy(b).into_owned());
    let os = OS_RELEASE.iter().find_map(|p| packages::os_id(&text(p)?));
    let mut out = Vec::new();
    for (path, bytes) in &files {
        let body = String::from_utf8_lossy(bytes);
        if path == DPKG_STATUS || path.starts_with(DPKG_STATUS_D) {
            out.extend(packages::dpkg(&body, os.as_deref().unwrap_or("debian")));
        } else if path == APK_INSTALLED {
            out.extend(packages::apk(&body, os.as_deref().unwrap_or("alpine")));
        } else if RPMDB.contains(&path.as_str()) {
            let distro = os.as_deref().unwrap_or("redhat");
            let rpms = rpm::rpmdb(bytes, distro)
                .map_err(|source| SbomError::Rpmdb { path: path.clone(), source })?;
            out.extend(rpms);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The document formats an SBOM can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    /// SPDX 2.3 JSON (`NAME.spdx.json`), what BuildKit attaches.
    #[default]
    Spdx,
    /// CycloneDX 1.5 JSON (`NAME.cdx.json`).
    CycloneDx,
}

impl Format {
    /// The file name suffix of a document of this format.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Format::Spdx => "spdx.json",
            Format::CycloneDx => "cdx.json",
        }
    }
}

/// The SBOM of an image whose layers are in `store`, in `format`.
pub(crate) fn document(
    store: &Store,
    format: Format,
    name: &str,
    digest: &OciDigest,
    layers: &[Descriptor],
    bases: &[spdx::Base],
    epoch: i64,
) -> Result<Vec<u8>, SbomError> {
    let packages = image_packages(store, layers)?;
    let subject = spdx::Subject { name, digest, bases, packages: &packages, epoch };
    Ok(match format {
        Format::Spdx => spdx::document(&subject),
        Format::CycloneDx => cyclonedx::document(&subject),
    })
}
