//! Resolving and pulling: manifest negotiation, platform selection in indexes, and blob
//! downloads that are parallel, verified, retried and resumed with `Range`.
//!
//! Invariant: a downloaded blob is committed to the store only after its sha256 and size
//! matched the descriptor; anything else is deleted with its temporary file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use ureq::http::Method;

use super::client::{Ctx, Payload, Req};
use super::{Client, Reference, RegistryError};
use crate::digest::{OciDigest, Sha256Writer};
use crate::oci::image::{
    DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index, Manifest, OCI_INDEX, OCI_MANIFEST, Platform,
};
use crate::oci::local::LoadedImage;
pub(super) use crate::oci::platform::pick_platform;
use crate::store::Store;

pub(super) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";
const MAX_MANIFEST: u64 = 8 << 20;

/// A manifest or index as the registry serves it.
#[derive(Debug, Clone)]
pub(super) struct RawManifest {
    pub digest: OciDigest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl RawManifest {
    fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// What a pull did, beyond the loaded image.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    /// The image, normalised like a local load (its `manifest_digest` is that of the
    /// normalised OCI manifest, the identity cache keys use).
    pub image: LoadedImage,
    /// The digest of the platform manifest as the registry serves it (what `stack.lock` pins
    /// and `org.opencontainers.image.base.digest` names).
    pub registry_digest: OciDigest,
    /// The index the platform manifest was chosen from, if the reference named one.
    #[cfg_attr(not(test), allow(dead_code, reason = "the registry tests check what a pull chose"))]
    pub index_digest: Option<OciDigest>,
    /// Blobs fetched over the network in this pull (those already stored are not).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the registry tests check what a pull fetched")
    )]
    pub downloaded: Vec<OciDigest>,
}

/// `{"mediaType": …}` or the field that tells a manifest from an index.
fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = p.media_type {
        return Some(mt);
    }
    if p.schema_version == Some(1) {
        return Some(SCHEMA1.to_owned());
    }
    if p.manifests.is_some() {
        Some(OCI_INDEX.to_owned())
    } else if p.layers.is_some() {
        Some(OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

/// The stored copy of manifest `digest`, if the store has it and it reads as a manifest.
fn stored_manifest(
    r: &Reference,
    store: &Store,
    digest: &OciDigest,
) -> Result<Option<RawManifest>, RegistryError> {
    if !store.has_blob(digest) {
        return Ok(None);
    }
    let bytes = store.read_blob(digest).map_err(|source| RegistryError::Store {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        source,
    })?;
    Ok(sniff_media_type(&bytes).map(|media_type| RawManifest {
        digest: digest.clone(),
        media_type,
        bytes,
    }))
}

/// The `Docker-Content-Digest` header of a manifest response, when it holds a digest.
fn content_digest(resp: &ureq::http::Response<ureq::Body>) -> Option<OciDigest> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<OciDigest>().ok())
}

/// The media type of a fetched manifest: its `Content-Type` when that names a manifest or
/// index, else what its JSON says. Schema 1 and non-image artifacts are refused.
fn manifest_media_type(
    r: &Reference,
    reference: &str,
    content_type: Option<String>,
    bytes: &[u8],
) -> Result<String, RegistryError> {
    let invalid = |problem: String| RegistryError::Invalid {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        problem,
    };
    let known = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
    let media_type = content_type
        .filter(|c| known.contains(&c.as_str()) || c.starts_with(SCHEMA1))
        .or_else(|| sniff_media_type(bytes))
        .ok_or_else(|| invalid(format!("manifest `{reference}` has no recognisable media type")))?;
    if media_type.starts_with(SCHEMA1) {
        return Err(invalid(format!(
            "manifest `{reference}` uses the retired Docker schema 1, which stack does not read; push the image again with a current client"
        )));
    }
    if !known.contains(&media_type.as_str()) {
        return Err(invalid(format!("manifest `{reference}` is a `{media_type}`, not an image")));
    }
    Ok(media_type)
}

impl Client {
    pub(super) fn manifest_url(&self, r: &Reference, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base_url(&r.registry), r.repository)
    }

    /// Fetches a manifest or index by tag or digest. By digest, a stored copy is used without
    /// a request; by tag, a `HEAD` tells the digest and a stored copy avoids the `GET`.
    pub(super) fn fetch_manifest(
        &self,
        r: &Reference,
        store: &Store,
    ) -> Result<RawManifest, RegistryError> {
        let ctx = Ctx::pull(&r.registry, &r.repository);
        let reference = r.manifest_reference();
        let known_digest = match &r.digest {
            Some(d) => Some(d.clone()),
            None => self.head_manifest_digest(&ctx, r, &reference)?,
        };
        if let Some(m) = known_digest.map(|d| stored_manifest(r, store, &d)).transpose()?.flatten()
        {
            return Ok(m);
        }
        let what = format!("fetching manifest `{reference}`");
        let req = Req {
            method: Method::GET,
            url: self.manifest_url(r, &reference),
            headers: vec![("Accept", ACCEPT.to_owned())],
            body: Payload::Empty,
            retry: true,
            what: what.clone(),
        };
        let mut attempt = 0;
        loop {
            let mut resp = self.send(&ctx, &req)?;
            if !resp.status().is_success() {
                return Err(self.status_error(&ctx, &what, &reference, resp));
            }
            let header_digest = content_digest(&resp);
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
            let bytes = match resp.body_mut().with_config().limit(MAX_MANIFEST).read_to_vec() {
                Ok(b) => b,
                Err(e) if attempt < self.opts.retries => {
                    let _ = e;
                    self.backoff(attempt, None);
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(self.transport_error(&ctx, &what, attempt + 1, e)),
            };
            let actual = OciDigest::of(&bytes);
            let expected = r.digest.clone().or(header_digest);
            if let Some(expected) = expected.filter(|e| *e != actual) {
                if attempt < self.opts.retries {
                    self.backoff(attempt, None);
                    attempt += 1;
                    continue;
                }
                return Err(RegistryError::DigestMismatch {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    what: format!("manifest `{reference}`"),
                    expected,
                    actual,
                });
            }
            let media_type = manifest_media_type(r, &reference, content_type, &bytes)?;
            store.put_blob(&bytes).map_err(|source| RegistryError::Store {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                source,
            })?;
            return Ok(RawManifest { digest: actual, media_type, bytes });
        }
    }

    /// The digest a `HEAD` on a manifest tag reports, if the registry tells it (a failed
    /// `HEAD` other than a busy or broken server leaves the answer to the `GET`).
    fn head_manifest_digest(
        &self,
        ctx: &Ctx<'_>,
        r: &Reference,
        reference: &str,
    ) -> Result<Option<OciDigest>, RegistryError> {
        let req = Req {
            method: Method::HEAD,
            url: self.manifest_url(r, reference),
            headers: vec![("Accept", ACCEPT.to_owned())],
            body: Payload::Empty,
            retry: true,
            what: format!("checking manifest `{reference}`"),
        };
        let resp = self.send(ctx, &req)?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(self.status_error(ctx, &req.what, reference, resp));
        }
        Ok(if resp.status().is_success() { content_digest(&resp) } else { None })
    }

    /// Resolves a reference to the digest of its manifest for this client's platform
    /// (`linux/<host arch>[/variant]` unless set in the options), downloading no layers. For a
    /// single-platform image that is the manifest's digest; for an index, the chosen entry's.
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn resolve(&self, r: &Reference) -> Result<OciDigest, RegistryError> {
        let scratch = tempfile::tempdir().map_err(|e| RegistryError::Invalid {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            problem: format!("cannot create a temporary folder: {e}"),
        })?;
        let store = Store::open(scratch.path()).map_err(|source| RegistryError::Store {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            source,
        })?;
        self.resolve_in(r, &store)
    }

    /// [`Client::resolve`] that keeps the manifests it fetched in `store` (and reads them from
    /// there when pinned by digest).
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn resolve_in(
        &self,
        r: &Reference,
        store: &Store,
    ) -> Result<OciDigest, RegistryError> {
        let top = self.fetch_manifest(r, store)?;
        let want = self.default_platform();
        if top.is_index() { Ok(Self::choose(r, &top, &want)?.digest) } else { Ok(top.digest) }
    }

    /// The platform pulls pick from an index unless told: the options', else the host's.
    #[cfg(test)] // used by the registry tests only
    fn default_platform(&self) -> Platform {
        self.opts.platform.clone().unwrap_or_else(Platform::host)
    }

    fn choose(
        r: &Reference,
        index: &RawManifest,
        want: &Platform,
    ) -> Result<Descriptor, RegistryError> {
        let parsed: Index =
            serde_json::from_slice(&index.bytes).map_err(|e| RegistryError::Invalid {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                problem: format!("index `{}` is not valid: {e}", index.digest),
            })?;
        pick_platform(&parsed, want).cloned().ok_or_else(|| RegistryError::NoPlatform {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            wanted: want.to_string(),
            available: parsed
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("`{}`", ToString::to_string(p)))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Pulls an image into the store: manifest (through an index if needed), config and
    /// layers, each verified. Returns the image normalised like a local load.
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn pull(&self, r: &Reference, store: &Store) -> Result<LoadedImage, RegistryError> {
        self.pull_image(r, store).map(|p| p.image)
    }

    /// [`Client::pull`], also telling the registry digest and what was downloaded.
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn pull_image(&self, r: &Reference, store: &Store) -> Result<Pulled, RegistryError> {
        self.pull_image_for(r, store, &self.default_platform())
    }

    /// [`Client::pull_image`] of the image for `want` when `r` names an index.
    pub(crate) fn pull_image_for(
        &self,
        r: &Reference,
        store: &Store,
        want: &Platform,
    ) -> Result<Pulled, RegistryError> {
        let invalid = |problem: String| RegistryError::Invalid {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            problem,
        };
        let st = |source| RegistryError::Store {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            source,
        };
        let mut top = self.fetch_manifest(r, store)?;
        let mut index_digest = None;
        // Nested indexes are allowed by the spec; follow a few levels.
        for _ in 0..3 {
            if !top.is_index() {
                break;
            }
            let chosen = Self::choose(r, &top, want)?;
            index_digest.get_or_insert(top.digest.clone());
            top = self.fetch_manifest(&r.with_digest(chosen.digest.clone()), store)?;
            if top.bytes.len() as u64 != chosen.size {
                return Err(invalid(format!(
                    "manifest `{}` has {} bytes but its index says {}",
                    chosen.digest,
                    top.bytes.len(),
                    chosen.size
                )));
            }
        }
        if top.is_index() {
            return Err(invalid(format!("index `{}` nests too deeply", top.digest)));
        }
        let manifest: Manifest = serde_json::from_slice(&top.bytes)
            .map_err(|e| invalid(format!("manifest `{}` is not valid: {e}", top.digest)))?;
        let mut wanted = vec![manifest.config.clone()];
        wanted.extend(manifest.layers.iter().cloned());
        let (downloaded, _bytes) = self.download_all(r, &wanted, store)?;
        let config_bytes = store.read_blob(&manifest.config.digest).map_err(st)?;
        let image = normalise(r, manifest, &config_bytes, store)?;
        Ok(Pulled { image, registry_digest: top.digest, index_digest, downloaded })
    }

    /// Downloads the missing blobs with up to `parallel` threads; returns what was fetched.
    fn download_all(
        &self,
        r: &Reference,
        blobs: &[Descriptor],
        store: &Store,
    ) -> Result<(Vec<OciDigest>, u64), RegistryError> {
        let mut todo: Vec<&Descriptor> = Vec::new();
        for b in blobs {
            if !store.has_blob(&b.digest) && !todo.iter().any(|t| t.digest == b.digest) {
                todo.push(b);
            }
        }
        // Largest first, so the longest download starts at once.
        todo.sort_by_key(|d| std::cmp::Reverse(d.size));
        let total = AtomicU64::new(0);
        super::each::try_each_parallel(&todo, self.opts.parallel, |desc| {
            total.fetch_add(self.download_blob(r, desc, store)?, Ordering::Relaxed);
            Ok::<(), RegistryError>(())
        })?;
        Ok((todo.iter().map(|d| d.digest.clone()).collect(), total.into_inner()))
    }

    /// Downloads one blob into a store temp file, resuming with `Range` after a broken
    /// transfer, restarting after corrupt data, and committing only verified content.
    /// Returns the bytes received over the network.
    pub(super) fn download_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        store: &Store,
    ) -> Result<u64, RegistryError> {
        let ctx = Ctx::pull(&r.registry, &r.repository);
        let st = |source| RegistryError::Store {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            source,
        };
        let what = format!("downloading blob `{}`", desc.digest);
        let url =
            format!("{}/v2/{}/blobs/{}", self.base_url(&r.registry), r.repository, desc.digest);
        let mut part =
            PartialBlob { tmp: store.temp_file().map_err(st)?, hasher: Sha256Writer::default() };
        let tmp_path = part.tmp.path().to_owned();
        let io_fail = |e: std::io::Error| RegistryError::Store {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            source: crate::store::StoreError::Io {
                action: "write",
                path: tmp_path.clone(),
                source: e,
            },
        };
        let mut received = 0u64;
        let mut attempt = 0u32;
        let mut buf = vec![0u8; 256 * 1024];
        let deadline = self.download_deadline();
        let gave_up = |attempts: u32, detail: String| RegistryError::Transport {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            what: what.clone(),
            attempts,
            detail,
        };
        loop {
            if (self.opts.cancelled)() {
                return Err(gave_up(attempt + 1, "interrupted".to_owned()));
            }
            if deadline.expired() {
                return Err(gave_up(attempt + 1, deadline.expired_message()));
            }
            let offset = part.len();
            let mut headers = Vec::new();
            if offset > 0 {
                headers.push(("Range", format!("bytes={offset}-")));
            }
            let req = Req {
                method: Method::GET,
                url: url.clone(),
                headers,
                body: Payload::Empty,
                retry: true,
                what: what.clone(),
            };
            let resp = self.send(&ctx, &req)?;
            let status = resp.status().as_u16();
            match status {
                200 if offset > 0 => {
                    // The registry ignored the range: start over.
                    part.restart().map_err(io_fail)?;
                }
                206 => {
                    if content_range_start(&resp) != Some(offset) {
                        part.restart().map_err(io_fail)?;
                        if attempt >= self.opts.retries {
                            return Err(wrong_range(r, desc));
                        }
                        attempt += 1;
                        continue;
                    }
                }
                200 => {}
                _ => return Err(self.status_error(&ctx, &what, &desc.digest.to_string(), resp)),
            }
            let body = deadline.reader(resp.into_body().into_reader());
            let outcome = part.append(body, &mut buf, desc.size, &mut received).map_err(io_fail)?;
            let failure = match outcome {
                Ok(()) if part.len() == desc.size => {
                    let actual = part.hasher.clone().finish();
                    if actual == desc.digest {
                        part.tmp.flush().map_err(io_fail)?;
                        store.commit_blob(part.tmp, &desc.digest).map_err(st)?;
                        return Ok(received);
                    }
                    // Corrupt content: discard everything and fetch it again.
                    part.restart().map_err(io_fail)?;
                    blob_digest_mismatch(r, desc, actual)
                }
                Ok(()) => blob_size_mismatch(r, desc, part.len()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::Other
                        && e.to_string().contains("more bytes") =>
                {
                    part.restart().map_err(io_fail)?;
                    blob_size_mismatch(r, desc, desc.size + 1)
                }
                Err(e) => gave_up(attempt + 1, e.to_string()),
            };
            if attempt >= self.opts.retries || deadline.expired() || (self.opts.cancelled)() {
                return Err(failure);
            }
            // A broken transfer keeps what verified so far in the hasher; the next request
            // asks for the rest.
            self.backoff(attempt, None);
            attempt += 1;
        }
    }
}

/// A blob download's temporary file and the hash of the bytes it holds so far: what a `Range`
/// request continues from.
struct PartialBlob {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256Writer,
}

impl PartialBlob {
    /// The bytes received and verified so far.
    fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Discards everything received so far.
    fn restart(&mut self) -> std::io::Result<()> {
        restart(&mut self.tmp, &mut self.hasher)
    }

    /// Appends a response body, counting its bytes in `received`. The outer error is a failed
    /// write to the temp file (final); the inner one a broken transfer or more bytes than
    /// `size` (both worth another request).
    fn append(
        &mut self,
        mut body: impl Read,
        buf: &mut [u8],
        size: u64,
        received: &mut u64,
    ) -> std::io::Result<std::io::Result<()>> {
        loop {
            match body.read(buf) {
                Ok(0) => return Ok(Ok(())),
                Ok(n) => {
                    *received += n as u64;
                    if self.hasher.len() + n as u64 > size {
                        return Ok(Err(std::io::Error::other(
                            "more bytes than the descriptor's size",
                        )));
                    }
                    self.hasher.update(&buf[..n]);
                    self.tmp.write_all(&buf[..n])?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// Where a `206 Partial Content` answer says its bytes start.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A registry that keeps answering a `Range` request from another offset.
fn wrong_range(r: &Reference, desc: &Descriptor) -> RegistryError {
    RegistryError::Invalid {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        problem: format!(
            "blob `{}`: the registry answered a range request with the wrong range",
            desc.digest
        ),
    }
}

/// A blob whose downloaded bytes hash to `actual` instead of the descriptor's digest.
fn blob_digest_mismatch(r: &Reference, desc: &Descriptor, actual: OciDigest) -> RegistryError {
    RegistryError::DigestMismatch {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        what: format!("blob `{}`", desc.digest),
        expected: desc.digest.clone(),
        actual,
    }
}

/// A blob whose download ended with `actual` bytes instead of the descriptor's size.
fn blob_size_mismatch(r: &Reference, desc: &Descriptor, actual: u64) -> RegistryError {
    RegistryError::SizeMismatch {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        what: format!("blob `{}`", desc.digest),
        expected: desc.size,
        actual,
    }
}

/// Empties the temp file and the running hash.
fn restart(tmp: &mut tempfile::NamedTempFile, hasher: &mut Sha256Writer) -> std::io::Result<()> {
    let f = tmp.as_file_mut();
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    *hasher = Sha256Writer::default();
    Ok(())
}

/// Normalises a pulled manifest exactly like a local load (`oci::local::normalize`), so an
/// image has the same identity however it arrived, and stores the canonical manifest.
fn normalise(
    r: &Reference,
    manifest: Manifest,
    config_bytes: &[u8],
    store: &Store,
) -> Result<LoadedImage, RegistryError> {
    let (config, layers, bytes) =
        crate::oci::local::normalize(manifest, config_bytes).map_err(|problem| {
            RegistryError::Invalid {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                problem,
            }
        })?;
    let manifest_digest = store.put_blob(&bytes).map_err(|source| RegistryError::Store {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        source,
    })?;
    Ok(LoadedImage { manifest_digest, config, layers })
}
