//! The OCI distribution (registry) client: resolves references to manifest digests, pulls
//! images into the store, pushes images from it, and stores `stack login` credentials.
//!
//! Speaks the OCI distribution API over blocking HTTP (`ureq`, rustls): manifest negotiation
//! across OCI and Docker media types, anonymous and credentialed Bearer tokens and Basic auth,
//! retries with exponential backoff, resumed blob downloads (`Range`), parallel layer
//! transfers, cross-repository mounts, and monolithic or chunked uploads.
//!
//! Invariants: a blob reaches the store only after its sha256 and size matched the descriptor
//! (data that fails is discarded, never used); a manifest fetched by digest is checked against
//! that digest; secrets (passwords, tokens) never appear in an error, a `Debug` or a log.

mod auth;
mod client;
pub(crate) mod daemon;
pub(crate) mod deadline;
pub(crate) mod download;
mod each;
mod pull;
mod push;
mod reference;
pub(crate) mod referrers;
pub(crate) mod stepcache;
mod trust;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use auth::{CredentialSources, Credentials};
pub(crate) use client::Client;
pub(crate) use push::PushOptions;
pub(crate) use reference::{DOCKER_HUB, Reference, ReferenceError};
pub(crate) use trust::TrustSources;

use crate::digest::OciDigest;
use crate::oci::image::Platform;
use crate::store::StoreError;

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP. Loopback hosts always are.
    pub insecure_registries: Vec<String>,
    pub user_agent: String,
    /// How many times a failed request (5xx, 429, reset, timeout) or broken download is
    /// retried before giving up.
    pub retries: u32,
    /// The first backoff delay; it doubles on each retry (with jitter), up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// How long a response or a body read may stall before the attempt counts as failed (and
    /// is retried, resuming where it stopped); a body that brings fewer than
    /// [`deadline::MIN_PROGRESS_BYTES`] in this long counts as stalled too.
    /// `STACK_DOWNLOAD_STALL_TIMEOUT` (seconds), default 60.
    pub read_timeout: Duration,
    /// The most one download (a blob, an `add` URL) may take, retries included.
    /// `STACK_DOWNLOAD_TIMEOUT` (seconds), default 1800.
    pub transfer_timeout: Duration,
    /// How many blobs are transferred at once.
    pub parallel: usize,
    /// The platform pulled from multi-platform images; `None` is this host
    /// (`linux/<arch>[/variant]`).
    #[cfg_attr(not(test), allow(dead_code, reason = "builds choose a platform per pull"))]
    pub platform: Option<Platform>,
    /// Where credentials are read from (default: `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`).
    pub credentials: CredentialSources,
    /// Which CAs registries' certificates may chain to (default: the system's, `certs.d`).
    pub trust: TrustSources,
    /// Asked while downloading and between retries: `true` gives up at once (the CLI passes
    /// its Ctrl-C/SIGTERM flag, so that a pull during planning stops too).
    pub cancelled: fn() -> bool,
}

fn never() -> bool {
    false
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            user_agent: format!("stack/{}", env!("CARGO_PKG_VERSION")),
            retries: 5,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(15),
            read_timeout: deadline::from_env(deadline::STALL_ENV, Duration::from_mins(1)),
            transfer_timeout: deadline::from_env(deadline::TOTAL_ENV, Duration::from_mins(30)),
            parallel: 4,
            platform: None,
            credentials: CredentialSources::from_env(),
            trust: TrustSources::from_env(),
            cancelled: never,
        }
    }
}

/// Stores credentials for `registry` for later pulls and pushes (`stack login`), in the Docker
/// config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), through its
/// credential helper when one is configured. It does not contact the registry; use
/// [`Client::check_login`] first for that.
pub(crate) fn login(registry: &str, username: &str, password: &str) -> Result<(), RegistryError> {
    login_to(&CredentialSources::from_env(), registry, username, password).map(|_| ())
}

/// The registry a login is for, from what users type: `docker.io`,
/// `https://index.docker.io/v1/`, `localhost:5000`, `http://host:port/path`.
pub(crate) fn login_registry(typed: &str) -> &str {
    let registry = typed.trim_start_matches("https://").trim_start_matches("http://");
    let registry = registry.split('/').next().unwrap_or(registry);
    match registry {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        r => r,
    }
}

/// [`login`] with an explicit config file; returns the file written.
pub(crate) fn login_to(
    sources: &CredentialSources,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<std::path::PathBuf, RegistryError> {
    let creds = Credentials { username: username.to_owned(), password: password.to_owned() };
    auth::store_credentials(sources, login_registry(registry), &creds)
}

/// Why a registry operation failed. Every message names the registry and repository involved
/// and says what to do; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "`{registry}/{repository}:{reference}` was not found (HTTP {status}{code}): check the image name and tag, and that it exists on `{registry}`"
    )]
    NotFound { registry: String, repository: String, reference: String, status: u16, code: String },
    #[error("`{registry}/{repository}`: authentication required (HTTP {status}){}", if *had_credentials { "; the stored credentials were rejected: run `stack login` again" } else { "; run `stack login` for this registry" })]
    Unauthorized { registry: String, repository: String, status: u16, had_credentials: bool },
    #[error(
        "`{registry}/{repository}`: access denied (HTTP {status}{code}): the account lacks permission for this repository; check the name or run `stack login` with an account that has access"
    )]
    Denied { registry: String, repository: String, status: u16, code: String },
    #[error("`{registry}/{repository}`: rate limited by the registry (HTTP 429){}", match retry_after { Some(d) => format!("; retry in {} s", d.as_secs().max(1)), None => "; retry later, or run `stack login` for a higher limit".to_owned() })]
    RateLimited { registry: String, repository: String, retry_after: Option<Duration> },
    #[error(
        "`{registry}/{repository}`: `{what}` should have digest `{expected}` but the registry sent content hashing to `{actual}`; the data was discarded (a proxy or the registry corrupted it; retry)"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        expected: OciDigest,
        actual: OciDigest,
    },
    #[error(
        "`{registry}/{repository}`: `{what}` should have {expected} bytes but the registry sent {actual}; the data was discarded"
    )]
    SizeMismatch { registry: String, repository: String, what: String, expected: u64, actual: u64 },
    #[error(
        "`{registry}`: TLS failed ({detail}); if this registry speaks plain HTTP, list it as an insecure registry; if its certificate comes from your own CA, put the CA in `/etc/docker/certs.d/{registry}/ca.crt` (or `~/.config/containers/certs.d/`), or in the system's trust store; else check the system clock"
    )]
    Tls { registry: String, detail: String },
    #[error("cannot use the CA certificates in `{}`: {problem}", path.display())]
    CaFile { path: std::path::PathBuf, problem: String },
    #[error(
        "`{registry}`: connection refused at `{url}`: is the registry running, and is the host and port right?"
    )]
    ConnectionRefused { registry: String, url: String },
    #[error("`{registry}`: cannot resolve host `{host}`: check the registry name and the network")]
    HostNotFound { registry: String, host: String },
    #[error("`{registry}/{repository}`: {what} failed after {attempts} attempts: {detail}")]
    Transport { registry: String, repository: String, what: String, attempts: u32, detail: String },
    #[error("`{registry}/{repository}`: {what} answered HTTP {status}{code}{message}")]
    Http {
        registry: String,
        repository: String,
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("`{registry}/{repository}`: {problem}")]
    Invalid { registry: String, repository: String, problem: String },
    #[error("`{registry}/{repository}` has no image for `{wanted}` (it has: {available})")]
    NoPlatform { registry: String, repository: String, wanted: String, available: String },
    #[error("credentials for `{registry}`: {problem}")]
    Credentials { registry: String, problem: String },
    #[error(
        "`{registry}/{repository}`: blob `{digest}` is not in the local store, so it cannot be pushed"
    )]
    MissingBlob { registry: String, repository: String, digest: OciDigest },
    #[error("`{registry}/{repository}`: the store failed")]
    Store {
        registry: String,
        repository: String,
        #[source]
        source: StoreError,
    },
}

impl RegistryError {
    /// Whether retrying later may help (rate limits, transport failures, server errors).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Transport { .. }
            | Self::DigestMismatch { .. }
            | Self::SizeMismatch { .. } => true,
            Self::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
