//! Pushing: blobs first (skipped when the registry has them, mounted from another repository
//! when possible, else uploaded in one request or in chunks), the manifest last, under every
//! tag.
//!
//! Invariant: a manifest is only put after every blob it names is on the registry, and the
//! digest the registry reports for it must equal the local one.

use std::sync::Mutex;

use ureq::http::Method;

use super::client::{Ctx, Payload, Req, query_escape};
use super::{Client, Reference, RegistryError};
use crate::digest::OciDigest;
use crate::oci::image::Descriptor;
use crate::store::Store;

/// Extra choices for [`Client::push_with`].
#[derive(Debug, Clone, Default)]
pub(crate) struct PushOptions {
    /// Repositories of the same registry that may already hold the blobs (e.g. the base
    /// image's), tried as cross-repository mounts before uploading.
    pub mount_from: Vec<String>,
    /// Tags to put the manifest under besides the target's own.
    pub extra_tags: Vec<String>,
    /// Blobs larger than this are uploaded in `PATCH` chunks of this size; `None` uploads
    /// every blob in one `PUT`.
    pub chunk_size: Option<u64>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushReport {
    /// The manifest digest the registry reported (equal to the local one).
    pub digest: OciDigest,
    pub uploaded: Vec<OciDigest>,
    /// Blobs the registry already had.
    pub skipped: Vec<OciDigest>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<OciDigest>,
    pub bytes_uploaded: u64,
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

impl Client {
    /// Pushes an image whose blobs are all in the store, under the target's tag (or by digest
    /// when the target has no tag).
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn push(
        &self,
        manifest_bytes: &[u8],
        manifest_media_type: &str,
        blobs: &[Descriptor],
        target: &Reference,
        store: &Store,
    ) -> Result<PushReport, RegistryError> {
        self.push_with(
            manifest_bytes,
            manifest_media_type,
            blobs,
            target,
            store,
            &PushOptions::default(),
        )
    }

    /// [`Client::push`] with mounts, more tags and chunked uploads.
    pub(crate) fn push_with(
        &self,
        manifest_bytes: &[u8],
        manifest_media_type: &str,
        blobs: &[Descriptor],
        target: &Reference,
        store: &Store,
        opts: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let local_digest = OciDigest::of(manifest_bytes);
        for b in blobs {
            if !store.has_blob(&b.digest) {
                return Err(RegistryError::MissingBlob {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    digest: b.digest.clone(),
                });
            }
        }
        let mut unique: Vec<&Descriptor> = Vec::new();
        for b in blobs {
            if !unique.iter().any(|u| u.digest == b.digest) {
                unique.push(b);
            }
        }
        unique.sort_by_key(|d| std::cmp::Reverse(d.size));
        let mounts: Vec<&str> = opts
            .mount_from
            .iter()
            .map(String::as_str)
            .filter(|m| *m != target.repository)
            .collect();
        let mut scope = vec![format!("repository:{}:pull,push", target.repository)];
        scope.extend(mounts.iter().map(|m| format!("repository:{m}:pull")));
        let ctx = Ctx { registry: &target.registry, repository: &target.repository, scope };

        let results = self.push_blobs(&ctx, &unique, &mounts, store, opts.chunk_size)?;
        let mut report = PushReport {
            digest: local_digest.clone(),
            uploaded: Vec::new(),
            skipped: Vec::new(),
            mounted: Vec::new(),
            bytes_uploaded: 0,
        };
        for (d, o) in results {
            match o {
                BlobOutcome::Skipped => report.skipped.push(d),
                BlobOutcome::Mounted => report.mounted.push(d),
                BlobOutcome::Uploaded(n) => {
                    report.bytes_uploaded += n;
                    report.uploaded.push(d);
                }
            }
        }

        let mut references: Vec<String> = target.tag.iter().cloned().collect();
        references
            .extend(opts.extra_tags.iter().filter(|t| Some(*t) != target.tag.as_ref()).cloned());
        if references.is_empty() {
            references.push(local_digest.to_string());
        }
        for reference in references {
            let resp =
                self.put_manifest(&ctx, target, &reference, manifest_bytes, manifest_media_type)?;
            let reported = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<OciDigest>().ok());
            if let Some(reported) = reported {
                if reported != local_digest {
                    return Err(RegistryError::DigestMismatch {
                        registry: target.registry.clone(),
                        repository: target.repository.clone(),
                        what: format!("manifest `{reference}`"),
                        expected: local_digest,
                        actual: reported,
                    });
                }
                report.digest = reported;
            }
        }
        Ok(report)
    }

    /// Pushes `unique` blobs on parallel workers, stopping at the first failure; returns what
    /// happened to each blob, in digest order.
    fn push_blobs(
        &self,
        ctx: &Ctx<'_>,
        unique: &[&Descriptor],
        mounts: &[&str],
        store: &Store,
        chunk_size: Option<u64>,
    ) -> Result<Vec<(OciDigest, BlobOutcome)>, RegistryError> {
        let results: Mutex<Vec<(OciDigest, BlobOutcome)>> = Mutex::new(Vec::new());
        super::each::try_each_parallel(unique, self.opts.parallel, |desc| {
            let outcome = self.push_blob(ctx, desc, mounts, store, chunk_size)?;
            results.lock().expect("lock").push((desc.digest.clone(), outcome));
            Ok::<(), RegistryError>(())
        })?;
        let mut results = results.into_inner().expect("lock");
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    /// Puts the manifest under `reference`. Every blob it names was just confirmed on the
    /// registry, so a refusal that says a blob is unknown or its link unreadable is the
    /// registry catching up with concurrent writers of the same blobs (distribution rewrites
    /// a repository's blob link in place; S3-backed registries are eventually consistent):
    /// such answers are retried with backoff before they count.
    fn put_manifest(
        &self,
        ctx: &Ctx<'_>,
        target: &Reference,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let what = format!("putting manifest `{reference}`");
        let req = Req {
            method: Method::PUT,
            url: self.manifest_url(target, reference),
            headers: vec![("Content-Type", media_type.to_owned())],
            body: Payload::Bytes(bytes),
            retry: true,
            what: what.clone(),
        };
        let mut attempt = 0;
        loop {
            let resp = self.send(ctx, &req)?;
            if resp.status().is_success() {
                return Ok(resp);
            }
            let err = self.status_error(ctx, &what, reference, resp);
            if !blobs_not_visible_yet(&err) || attempt >= self.opts.retries {
                return Err(err);
            }
            self.backoff(attempt, None);
            attempt += 1;
        }
    }

    /// The digest `target`'s tag names on the registry now, from one manifest `HEAD` (the
    /// `Docker-Content-Digest` header); `None` when the tag does not exist or the registry
    /// does not say. Asked before pushing, so that a tag already naming the image is left
    /// alone: no blob checks, no manifest `PUT`.
    pub(crate) fn tag_digest(
        &self,
        target: &Reference,
    ) -> Result<Option<OciDigest>, RegistryError> {
        let reference = target.manifest_reference();
        // The push's own scope, so that the token serves the push that may follow.
        let scope = vec![format!("repository:{}:pull,push", target.repository)];
        let ctx = Ctx { registry: &target.registry, repository: &target.repository, scope };
        let req = Req {
            method: Method::HEAD,
            url: self.manifest_url(target, &reference),
            headers: vec![("Accept", super::pull::ACCEPT.to_owned())],
            body: Payload::Empty,
            retry: true,
            what: format!("checking manifest `{reference}`"),
        };
        let resp = self.send(&ctx, &req)?;
        match resp.status().as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<OciDigest>().ok())),
            _ => Err(self.status_error(&ctx, &req.what, &reference, resp)),
        }
    }

    fn blob_url(&self, ctx: &Ctx<'_>, digest: &OciDigest) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base_url(ctx.registry), ctx.repository)
    }

    /// Pushes one blob: `HEAD` to skip, mounts, then an upload (restarted on failure).
    fn push_blob(
        &self,
        ctx: &Ctx<'_>,
        desc: &Descriptor,
        mounts: &[&str],
        store: &Store,
        chunk: Option<u64>,
    ) -> Result<BlobOutcome, RegistryError> {
        let head = Req {
            method: Method::HEAD,
            url: self.blob_url(ctx, &desc.digest),
            headers: Vec::new(),
            body: Payload::Empty,
            retry: true,
            what: format!("checking blob `{}`", desc.digest),
        };
        let resp = self.send(ctx, &head)?;
        if resp.status().is_success() {
            return Ok(BlobOutcome::Skipped);
        }
        if resp.status().as_u16() != 404 {
            return Err(self.status_error(ctx, &head.what, &desc.digest.to_string(), resp));
        }
        let mut session = None;
        for from in mounts {
            let what = format!("mounting blob `{}` from `{from}`", desc.digest);
            let req = Req {
                method: Method::POST,
                url: format!(
                    "{}/v2/{}/blobs/uploads/?mount={}&from={}",
                    self.base_url(ctx.registry),
                    ctx.repository,
                    query_escape(&desc.digest.to_string()),
                    query_escape(from)
                ),
                headers: Vec::new(),
                body: Payload::Empty,
                retry: true,
                what: what.clone(),
            };
            let resp = self.send(ctx, &req)?;
            match resp.status().as_u16() {
                201 => return Ok(BlobOutcome::Mounted),
                // Not in that repository: the registry opened an upload session instead,
                // kept for the upload should no other repository hold the blob either.
                202 if session.is_none() => {
                    session = location(&resp).map(|l| self.absolute(ctx.registry, &l));
                }
                _ => {}
            }
        }
        let mut attempt = 0;
        loop {
            match self.upload(ctx, desc, store, chunk, session.take()) {
                Ok(n) => return Ok(BlobOutcome::Uploaded(n)),
                Err(e) if e.is_transient() && attempt < self.opts.retries => {
                    self.backoff(attempt, None);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One upload attempt in a fresh (or the given) session.
    fn upload(
        &self,
        ctx: &Ctx<'_>,
        desc: &Descriptor,
        store: &Store,
        chunk: Option<u64>,
        session: Option<String>,
    ) -> Result<u64, RegistryError> {
        let digest = &desc.digest;
        let mut url = if let Some(s) = session {
            s
        } else {
            let what = format!("starting the upload of blob `{digest}`");
            let req = Req {
                method: Method::POST,
                url: format!(
                    "{}/v2/{}/blobs/uploads/",
                    self.base_url(ctx.registry),
                    ctx.repository
                ),
                headers: Vec::new(),
                body: Payload::Empty,
                retry: true,
                what: what.clone(),
            };
            let resp = self.send(ctx, &req)?;
            if resp.status().as_u16() != 202 {
                return Err(self.status_error(ctx, &what, &digest.to_string(), resp));
            }
            let loc = location(&resp).ok_or_else(|| {
                self.invalid(
                    ctx,
                    format!("the registry opened an upload for `{digest}` without a `Location`"),
                )
            })?;
            self.absolute(ctx.registry, &loc)
        };
        let path = store.blob_path(digest);
        let size = desc.size;
        let mut offset = 0u64;
        if let Some(chunk) = chunk.filter(|c| *c > 0 && size > *c) {
            while offset < size {
                let len = chunk.min(size - offset);
                let what =
                    format!("uploading bytes {offset}-{} of blob `{digest}`", offset + len - 1);
                let req = Req {
                    method: Method::PATCH,
                    url: url.clone(),
                    headers: vec![
                        ("Content-Type", "application/octet-stream".into()),
                        ("Content-Range", format!("{offset}-{}", offset + len - 1)),
                    ],
                    body: Payload::File { path: path.clone(), offset, len },
                    retry: false,
                    what: what.clone(),
                };
                let resp = self.send(ctx, &req)?;
                if resp.status().as_u16() != 202 {
                    return Err(self.status_error(ctx, &what, &digest.to_string(), resp));
                }
                if let Some(l) = location(&resp) {
                    url = self.absolute(ctx.registry, &l);
                }
                offset += len;
            }
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let what = format!("uploading blob `{digest}`");
        let req = Req {
            method: Method::PUT,
            url: format!("{url}{sep}digest={}", query_escape(&digest.to_string())),
            headers: vec![("Content-Type", "application/octet-stream".into())],
            body: if offset == size {
                Payload::Empty
            } else {
                Payload::File { path, offset, len: size - offset }
            },
            retry: false,
            what: what.clone(),
        };
        let resp = self.send(ctx, &req)?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(ctx, &what, &digest.to_string(), resp));
        }
        Ok(size)
    }

    fn invalid(&self, ctx: &Ctx<'_>, problem: String) -> RegistryError {
        let _ = self;
        RegistryError::Invalid {
            registry: ctx.registry.to_owned(),
            repository: ctx.repository.to_owned(),
            problem,
        }
    }
}

fn location(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Whether a manifest refusal says the registry does not see a blob the manifest names (yet).
fn blobs_not_visible_yet(e: &RegistryError) -> bool {
    let (RegistryError::NotFound { code, .. } | RegistryError::Http { code, .. }) = e else {
        return false;
    };
    ["DIGEST_INVALID", "BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"].contains(&code.trim())
}
