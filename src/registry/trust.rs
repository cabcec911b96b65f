//! Which certificate authorities a registry's TLS certificate may chain to, decided as Docker
//! and podman decide: the system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR`, else the
//! distribution's bundle, where `update-ca-certificates` puts a company's CA), Mozilla's roots
//! when the system has none, and, for one registry host only, the `*.crt` files of its
//! `certs.d` folder (`/etc/docker/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/…`,
//! `~/.config/containers/certs.d/…`).
//!
//! Invariant: a CA file that is there but unreadable or not PEM certificates is an error that
//! names the file, never silently skipped (a build would then fail later with a vaguer TLS
//! error, or trust less than the user configured).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ureq::tls::{Certificate, PemItem, RootCerts};

use super::RegistryError;

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustSources {
    /// A PEM bundle that replaces the system's (`SSL_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// A folder of PEM files that replaces the system's (`SSL_CERT_DIR`).
    pub cert_dir: Option<PathBuf>,
    /// The system bundles to look for, the first that exists is used.
    pub system_bundles: Vec<PathBuf>,
    /// `certs.d` folders holding one folder of `*.crt` CA files per registry host.
    pub certs_d: Vec<PathBuf>,
}

impl TrustSources {
    /// `SSL_CERT_FILE`, `SSL_CERT_DIR`, the usual distribution bundles, and the `certs.d`
    /// folders of Docker and podman (system-wide, then the user's).
    pub(crate) fn from_env() -> Self {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let config_home = var("XDG_CONFIG_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".config")))
            .unwrap_or_else(|| PathBuf::from("/nonexistent"));
        TrustSources {
            cert_file: var("SSL_CERT_FILE"),
            cert_dir: var("SSL_CERT_DIR"),
            system_bundles: [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from)
            .to_vec(),
            certs_d: vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
                config_home.join("containers/certs.d"),
            ],
        }
    }
}

/// The roots to verify each host with; the system's are read once, on first use.
#[derive(Debug)]
pub(super) struct Trust {
    sources: TrustSources,
    system: OnceLock<Result<Vec<Certificate<'static>>, (PathBuf, String)>>,
}

impl Trust {
    pub(super) fn new(sources: TrustSources) -> Self {
        Trust { sources, system: OnceLock::new() }
    }

    /// The roots for a TLS connection to `authority` (`host` or `host:port`, as in the URL).
    pub(super) fn roots_for(&self, authority: &str) -> Result<RootCerts, RegistryError> {
        let bad = |(path, problem): (PathBuf, String)| RegistryError::CaFile { path, problem };
        let system =
            self.system.get_or_init(|| system_roots(&self.sources)).clone().map_err(bad)?;
        let own = host_cas(&self.sources.certs_d, authority).map_err(bad)?;
        Ok(match (system.is_empty(), own.is_empty()) {
            (true, true) => RootCerts::WebPki,
            _ => system.into_iter().chain(own).into(),
        })
    }
}

/// The system's roots: `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the first bundle
/// that exists; empty when there is none.
fn system_roots(src: &TrustSources) -> Result<Vec<Certificate<'static>>, (PathBuf, String)> {
    let mut out = Vec::new();
    if let Some(file) = &src.cert_file {
        out.extend(read_certs(file, Strict::Yes)?);
    }
    if let Some(dir) = &src.cert_dir {
        // OpenSSL's folder layout mixes bundles and hashed links; files without certificates
        // are not errors there.
        out.extend(read_dir_certs(dir, |_| true, Strict::No)?);
    }
    if src.cert_file.is_none()
        && src.cert_dir.is_none()
        && let Some(bundle) = src.system_bundles.iter().find(|p| p.is_file())
    {
        out.extend(read_certs(bundle, Strict::No)?);
    }
    Ok(out)
}

/// The `*.crt` files of `authority`'s folder in each `certs.d` (Docker's layout; `.cert` and
/// `.key` files there are client certificates, which stack does not send).
fn host_cas(
    certs_d: &[PathBuf],
    authority: &str,
) -> Result<Vec<Certificate<'static>>, (PathBuf, String)> {
    // A host name never contains `/` or `..`; refuse rather than look outside the folder.
    if authority.is_empty() || authority.contains('/') || authority.contains("..") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for dir in certs_d {
        let host_dir = dir.join(authority);
        if host_dir.is_dir() {
            let is_ca = |p: &Path| p.extension().is_some_and(|e| e == "crt");
            out.extend(read_dir_certs(&host_dir, is_ca, Strict::Yes)?);
        }
    }
    Ok(out)
}

fn read_dir_certs(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool,
    strict: Strict,
) -> Result<Vec<Certificate<'static>>, (PathBuf, String)> {
    let entries = fs_err::read_dir(dir).map_err(|e| (dir.to_owned(), e.kind().to_string()))?;
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.is_file() && wanted(p)).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(read_certs(&f, strict)?);
    }
    Ok(out)
}

/// How a file that is not a clean PEM certificate file is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strict {
    /// An error naming the file: the user put it there for stack (or Docker) to use.
    Yes,
    /// Skipped (the system's store, which other programs share and may extend).
    No,
}

/// Every certificate of a PEM file.
fn read_certs(path: &Path, strict: Strict) -> Result<Vec<Certificate<'static>>, (PathBuf, String)> {
    let fail = |problem: String| (path.to_owned(), problem);
    let bytes = fs_err::read(path).map_err(|e| fail(e.kind().to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Err(e) if strict == Strict::Yes => {
                return Err(fail(format!("not a valid PEM file ({e})")));
            }
            // Keys and other PEM items, or a damaged block in a shared store.
            Ok(_) | Err(_) => {}
        }
    }
    if certs.is_empty() && strict == Strict::Yes {
        return Err(fail("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real self-signed certificate (`openssl req -x509`; only parsing is tested here).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIULAbwSZ4oKFYmVcxUFevlvfQXvLAwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKc3RhY2stdGVzdDAeFw0yNjExMjcxMTA3MTBaFw0zNjExMjQx
MTA3MTBaMBUxEzARBgNVBAMMCnN0YWNrLXRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATO81azTBXOq0OzG48iJkF6T6Hm8fAwUWLBO6u0TIBrnrUd0Ga/1Rc6
u6gQ6j6Um9h4T1UQbnRZuCMGtEq7CXbio1MwUTAdBgNVHQ4EFgQU+0/jVqAxieHz
ONiVAuqoKyBOcPgwHwYDVR0jBBgwFoAU+0/jVqAxieHzONiVAuqoKyBOcPgwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAuWWDpGxeKo47sO/HONif
EWWRGullB87aVsq+Pk0pLv8CIAMSn//asArBWIngjxghAEh54MzGUMc7i5Dx7fIL
KZM9
-----END CERTIFICATE-----
";

    fn sources(dir: &Path) -> TrustSources {
        TrustSources {
            cert_file: None,
            cert_dir: None,
            system_bundles: vec![dir.join("bundle.pem")],
            certs_d: vec![dir.join("certs.d")],
        }
    }

    fn count(roots: &RootCerts) -> Option<usize> {
        match roots {
            RootCerts::Specific(c) => Some(c.len()),
            _ => None,
        }
    }

    #[test]
    fn system_bundle_then_the_hosts_own_cas() {
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::new(sources(dir.path()));
        assert!(matches!(trust.roots_for("r.example:5000").unwrap(), RootCerts::WebPki));

        fs_err::write(dir.path().join("bundle.pem"), format!("{CERT}{CERT}")).unwrap();
        let trust = Trust::new(sources(dir.path()));
        assert_eq!(count(&trust.roots_for("r.example:5000").unwrap()), Some(2));

        let host = dir.path().join("certs.d/r.example:5000");
        fs_err::create_dir_all(&host).unwrap();
        fs_err::write(host.join("ca.crt"), CERT).unwrap();
        fs_err::write(host.join("client.cert"), "not read").unwrap();
        assert_eq!(count(&trust.roots_for("r.example:5000").unwrap()), Some(3));
        assert_eq!(count(&trust.roots_for("other.example").unwrap()), Some(2), "only that host");
        assert_eq!(count(&trust.roots_for("../r.example:5000").unwrap()), Some(2));
    }

    #[test]
    fn ssl_cert_file_replaces_the_system_bundle() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("bundle.pem"), format!("{CERT}{CERT}")).unwrap();
        fs_err::write(dir.path().join("mine.pem"), CERT).unwrap();
        let mut src = sources(dir.path());
        src.cert_file = Some(dir.path().join("mine.pem"));
        assert_eq!(count(&Trust::new(src).roots_for("h").unwrap()), Some(1));
    }

    #[test]
    fn the_systems_own_bundle_reads_whole() {
        let Some(bundle) =
            TrustSources::from_env().system_bundles.into_iter().find(|p| p.is_file())
        else {
            println!("skipped: no system CA bundle here");
            return;
        };
        let certs = read_certs(&bundle, Strict::Yes).unwrap();
        assert!(certs.len() > 50, "{} certificates in {}", certs.len(), bundle.display());
    }

    #[test]
    fn a_broken_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("certs.d/r.example");
        fs_err::create_dir_all(&host).unwrap();
        fs_err::write(host.join("ca.crt"), "hello").unwrap();
        let err = Trust::new(sources(dir.path())).roots_for("r.example").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ca.crt") && text.contains("no PEM certificate"), "{text}");
        let mut src = sources(dir.path());
        src.cert_file = Some(dir.path().join("missing.pem"));
        let err = Trust::new(src).roots_for("h").unwrap_err().to_string();
        assert!(err.contains("missing.pem") && err.contains("not found"), "{err}");
    }
}
