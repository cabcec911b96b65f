//! OCI 1.1 referrers: artifacts whose `subject` is an image, pushed by digest, and found
//! through the registry's referrers API or, on a registry without it, through the tag schema
//! fallback (an index tagged `sha256-<hex>` listing them).
//!
//! Invariant: the fallback index keeps every entry it already lists and adds each new one
//! once, sorted by digest: pushing the same artifacts again changes nothing.

use ureq::http::Method;

use super::client::{Ctx, Payload, Req};
use super::push::PushOptions;
use super::{Client, Reference, RegistryError};
use crate::digest::OciDigest;
use crate::oci::image::{OCI_INDEX, OCI_MANIFEST};
use crate::oci::index::{Referrer, referrers_index, referrers_tag};
use crate::store::Store;

/// The largest referrers index read.
const MAX_INDEX: u64 = 4 << 20;

/// How the referrers reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReferrersMode {
    /// The registry has the referrers API: it lists them itself.
    Api,
    /// The tag schema fallback: the index tagged `sha256-<hex>` lists them.
    TagSchema,
}

impl Client {
    /// Pushes `referrers` of image `subject` to `repo` (tag and digest ignored) and makes them
    /// findable: by the referrers API when the registry has it, else by the fallback tag.
    pub(crate) fn push_referrers(
        &self,
        repo: &Reference,
        subject: &OciDigest,
        referrers: &[Referrer],
        store: &Store,
    ) -> Result<ReferrersMode, RegistryError> {
        let by_digest = Reference { tag: None, digest: None, ..repo.clone() };
        let st = |source| RegistryError::Store {
            registry: repo.registry.clone(),
            repository: repo.repository.clone(),
            source,
        };
        for r in referrers {
            let mut blobs = Vec::new();
            for (desc, bytes) in &r.blobs {
                store.put_blob(bytes).map_err(st)?;
                blobs.push(desc.clone());
            }
            self.push_with(
                &r.bytes,
                OCI_MANIFEST,
                &blobs,
                &by_digest,
                store,
                &PushOptions::default(),
            )?;
        }
        if self.referrers_api(repo, subject)?.is_some() {
            return Ok(ReferrersMode::Api);
        }
        let tag = referrers_tag(subject);
        let existing = self.get_json(repo, &tag, OCI_INDEX)?;
        let listed =
            existing.as_ref().and_then(|v| v["manifests"].as_array().cloned()).unwrap_or_default();
        let new: Vec<serde_json::Value> = referrers.iter().map(|r| r.listed.clone()).collect();
        let index = referrers_index(&listed, &new);
        let target = Reference { tag: Some(tag), digest: None, ..repo.clone() };
        self.push_with(&index, OCI_INDEX, &[], &target, store, &PushOptions::default())?;
        Ok(ReferrersMode::TagSchema)
    }

    /// The referrers API's index for `subject`; `None` when the registry has no such API.
    pub(crate) fn referrers_api(
        &self,
        repo: &Reference,
        subject: &OciDigest,
    ) -> Result<Option<serde_json::Value>, RegistryError> {
        let v = self.get_json(repo, &format!("referrers/{subject}"), OCI_INDEX)?;
        // A registry without the API may answer with something that is not an index.
        Ok(v.filter(|v| v["manifests"].is_array()))
    }

    /// GET `/v2/REPO/manifests/TAG` (or `/v2/REPO/PATH` for `referrers/…`) as JSON; `None`
    /// for a 404 (or, for the referrers API, any 4xx: no API).
    fn get_json(
        &self,
        repo: &Reference,
        what_path: &str,
        accept: &str,
    ) -> Result<Option<serde_json::Value>, RegistryError> {
        let ctx = Ctx::pull(&repo.registry, &repo.repository);
        let path = if what_path.starts_with("referrers/") {
            what_path.to_owned()
        } else {
            format!("manifests/{what_path}")
        };
        let what = format!("fetching `{path}`");
        let req = Req {
            method: Method::GET,
            url: format!("{}/v2/{}/{path}", self.base_url(&repo.registry), repo.repository),
            headers: vec![("Accept", accept.to_owned())],
            body: Payload::Empty,
            retry: true,
            what: what.clone(),
        };
        let mut resp = self.send(&ctx, &req)?;
        let status = resp.status().as_u16();
        if status == 404 || (path.starts_with("referrers/") && (400..500).contains(&status)) {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&ctx, &what, what_path, resp));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_INDEX)
            .read_to_vec()
            .map_err(|e| self.transport_error(&ctx, &what, 1, e))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| RegistryError::Invalid {
            registry: repo.registry.clone(),
            repository: repo.repository.clone(),
            problem: format!("`{path}` is not JSON: {e}"),
        })
    }
}
