//! The registry step cache on the wire: one small OCI 1.1 artifact per step, tagged with a
//! name derived from the step's record key, whose layer is the step's layer blob.
//!
//! ```text
//! manifest (artifactType application/vnd.stack.step.v1), tag s1-<hex>
//!   config  application/vnd.stack.step.config.v1+json  {"key": …, "layer": {…} | null}
//!   layers  [the step's layer blob]                     (none for a step without files)
//!   annotations  dev.stack.step.key, dev.stack.step.diff-id, org.opencontainers.image.created (day)
//! ```
//!
//! Invariant: an entry is written whole (blobs first, manifest last), and the same step gives
//! the same bytes on every machine on a given day, so concurrent writers are harmless. A
//! manifest that does not describe the key it is tagged for is an error, never a hit.

use serde::{Deserialize, Serialize};
use ureq::http::Method;

use super::client::{Ctx, Payload, Req};
use super::push::{PushOptions, PushReport};
use super::{Client, Reference, RegistryError};
use crate::digest::OciDigest;
use crate::oci::image::{Descriptor, LayerRef, OCI_MANIFEST};
use crate::store::Store;

pub(crate) const STEP_ARTIFACT: &str = "application/vnd.stack.step.v1";
pub(crate) const STEP_CONFIG: &str = "application/vnd.stack.step.config.v1+json";
const KEY_ANNOTATION: &str = "dev.stack.step.key";
const DIFF_ID_ANNOTATION: &str = "dev.stack.step.diff-id";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// Prefix of every entry's tag; its number changes with the entry format.
pub(crate) const TAG_PREFIX: &str = "s1-";
/// Prefix of the tags of saved cache mounts (same entry format, keyed by the mount's id).
pub(crate) const MOUNT_TAG_PREFIX: &str = "m1-";
/// An entry's manifest is small; anything bigger is not one.
const MAX_ENTRY: u64 = 64 << 10;

/// An entry's manifest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryManifest {
    schema_version: u32,
    media_type: String,
    artifact_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: std::collections::BTreeMap<String, String>,
}

/// An entry's config: the step record, readable by people and tools.
#[derive(Debug, Serialize, Deserialize)]
struct EntryConfig {
    key: String,
    layer: Option<LayerRef>,
}

/// An entry as listed by [`Client::step_entries`].
#[derive(Debug, Clone)]
pub(crate) struct ListedEntry {
    pub tag: String,
    pub manifest: OciDigest,
    /// Bytes of the manifest, config and layer.
    pub size: u64,
    /// The layer blob, shared with images that hold the same layer.
    pub layer: Option<OciDigest>,
    /// Seconds since the epoch of the day it was last written, when it says.
    pub written: Option<i64>,
}

/// The bytes of an entry: config and manifest.
pub(crate) struct EntryBytes {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// The entry for step record `key` (hex) with `layer`, written on the day of `now`.
pub(crate) fn entry_bytes(key: &str, layer: Option<&LayerRef>, now: i64) -> EntryBytes {
    let config =
        crate::json::to_canonical(&EntryConfig { key: key.to_owned(), layer: layer.cloned() });
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(KEY_ANNOTATION.to_owned(), key.to_owned());
    if let Some(l) = layer {
        annotations.insert(DIFF_ID_ANNOTATION.to_owned(), l.diff_id.to_string());
    }
    // The day, not the second: two machines writing the same step on one day write the same
    // bytes, and `stack cache prune --remote` still tells old entries from new.
    annotations.insert(
        CREATED_ANNOTATION.to_owned(),
        crate::oci::image::rfc3339(now - now.rem_euclid(86_400)),
    );
    let manifest = EntryManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_owned(),
        artifact_type: STEP_ARTIFACT.to_owned(),
        config: Descriptor::new(STEP_CONFIG, OciDigest::of(&config), config.len() as u64),
        layers: layer.map(|l| l.blob.clone()).into_iter().collect(),
        annotations,
    };
    EntryBytes { manifest: crate::json::to_canonical(&manifest), config }
}

/// The step record an entry's manifest describes, checked against the key it was asked for.
pub(crate) fn parse_entry(bytes: &[u8], key: &str) -> Result<Option<LayerRef>, String> {
    let m: EntryManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a step cache entry: {e}"))?;
    if m.artifact_type != STEP_ARTIFACT || m.config.media_type != STEP_CONFIG {
        return Err(format!("an artifact of type `{}`, not a stack step", m.artifact_type));
    }
    if m.annotations.get(KEY_ANNOTATION).map(String::as_str) != Some(key) {
        return Err("the entry names another step than its tag".to_owned());
    }
    let diff_id = m.annotations.get(DIFF_ID_ANNOTATION);
    match (m.layers.as_slice(), diff_id) {
        ([], None) => Ok(None),
        ([blob], Some(diff_id)) => {
            let diff_id = diff_id.parse().map_err(|_| format!("bad diff id `{diff_id}`"))?;
            if !LAYER_TYPES.contains(&blob.media_type.as_str()) {
                return Err(format!("a layer of type `{}`", blob.media_type));
            }
            Ok(Some(LayerRef { diff_id, blob: blob.clone() }))
        }
        _ => Err("an entry holds one layer with its diff id, or none".to_owned()),
    }
}

/// The layer types stack writes.
const LAYER_TYPES: [&str; 2] =
    ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"];

/// When an entry's manifest says it was written: the day of its `created` annotation.
fn written(m: &EntryManifest) -> Option<i64> {
    let s = m.annotations.get(CREATED_ANNOTATION)?;
    let mut parts = s.get(..10)?.split('-').map(str::parse::<i64>);
    let (y, mo, d) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    Some(days_from_civil(y, mo, d) * 86_400)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Client {
    /// The entry tagged `tag` in `repo` (whose tag and digest are ignored): `Ok(None)` when
    /// there is none, `Ok(Some(layer))` for an entry (whose step may have no layer), an
    /// `Invalid` error when the manifest is not the entry of `key`.
    #[allow(
        clippy::option_option,
        reason = "no entry, and an entry of a step without a layer, differ"
    )]
    pub(crate) fn step_entry(
        &self,
        repo: &Reference,
        tag: &str,
        key: &str,
    ) -> Result<Option<Option<LayerRef>>, RegistryError> {
        let Some((_, bytes)) = self.entry_manifest(repo, tag)? else { return Ok(None) };
        parse_entry(&bytes, key).map(Some).map_err(|problem| RegistryError::Invalid {
            registry: repo.registry.clone(),
            repository: repo.repository.clone(),
            problem: format!("step cache entry `{tag}`: {problem}"),
        })
    }

    /// The manifest tagged `tag`, with its digest; `None` when the tag does not exist.
    fn entry_manifest(
        &self,
        repo: &Reference,
        tag: &str,
    ) -> Result<Option<(OciDigest, Vec<u8>)>, RegistryError> {
        let ctx = Ctx::pull(&repo.registry, &repo.repository);
        let what = format!("looking up step cache entry `{tag}`");
        let req = Req {
            method: Method::GET,
            url: self.manifest_url(repo, tag),
            headers: vec![("Accept", OCI_MANIFEST.to_owned())],
            body: Payload::Empty,
            retry: true,
            what: what.clone(),
        };
        let mut resp = self.send(&ctx, &req)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&ctx, &what, tag, resp));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_ENTRY)
            .read_to_vec()
            .map_err(|e| self.transport_error(&ctx, &what, 1, e))?;
        Ok(Some((OciDigest::of(&bytes), bytes)))
    }

    /// Writes the entry of step record `key` (hex) under `tag`: its layer blob (skipped when
    /// the repository has it, mounted from `mount_from` when possible), config, manifest.
    pub(crate) fn put_step_entry(
        &self,
        repo: &Reference,
        tag: &str,
        entry: &EntryBytes,
        layer: Option<&LayerRef>,
        store: &Store,
    ) -> Result<PushReport, RegistryError> {
        let st = |source| RegistryError::Store {
            registry: repo.registry.clone(),
            repository: repo.repository.clone(),
            source,
        };
        let config = store.put_blob(&entry.config).map_err(st)?;
        let mut blobs = vec![Descriptor::new(STEP_CONFIG, config, entry.config.len() as u64)];
        blobs.extend(layer.map(|l| l.blob.clone()));
        let target = Reference { tag: Some(tag.to_owned()), digest: None, ..repo.clone() };
        self.push_with(
            &entry.manifest,
            OCI_MANIFEST,
            &blobs,
            &target,
            store,
            &PushOptions::default(),
        )
    }

    /// Downloads blob `desc` of the cache repository `repo` into the store, verified.
    pub(crate) fn fetch_cache_blob(
        &self,
        repo: &Reference,
        desc: &Descriptor,
        store: &Store,
    ) -> Result<u64, RegistryError> {
        self.download_blob(repo, desc, store)
    }

    /// Every tag of `repo`, following the registry's pagination.
    pub(crate) fn list_tags(&self, repo: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let ctx = Ctx::pull(&repo.registry, &repo.repository);
        let mut url =
            format!("{}/v2/{}/tags/list?n=1000", self.base_url(&repo.registry), repo.repository);
        let mut tags = Vec::new();
        // Bounded: a registry that links pages in a circle must not keep us forever.
        for _ in 0..10_000 {
            let what = "listing tags".to_owned();
            let req = Req {
                method: Method::GET,
                url: url.clone(),
                headers: Vec::new(),
                body: Payload::Empty,
                retry: true,
                what: what.clone(),
            };
            let mut resp = self.send(&ctx, &req)?;
            if resp.status().as_u16() == 404 {
                return Ok(tags);
            }
            if !resp.status().is_success() {
                return Err(self.status_error(&ctx, &what, &repo.repository, resp));
            }
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(|l| self.absolute(&repo.registry, &l));
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .map_err(|e| self.transport_error(&ctx, &what, 1, e))?;
            let page: Page = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                registry: repo.registry.clone(),
                repository: repo.repository.clone(),
                problem: format!("the tag list is not JSON: {e}"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// Every step cache entry of `repo`, read with `parallel` requests at once. Tags that are
    /// not entries are left out.
    pub(crate) fn step_entries(&self, repo: &Reference) -> Result<Vec<ListedEntry>, RegistryError> {
        let tags: Vec<String> = self
            .list_tags(repo)?
            .into_iter()
            .filter(|t| t.starts_with(TAG_PREFIX) || t.starts_with(MOUNT_TAG_PREFIX))
            .collect();
        let found = std::sync::Mutex::new(Vec::new());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failure = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.opts.parallel.clamp(1, tags.len().max(1)) {
                s.spawn(|| {
                    while let Some(tag) =
                        tags.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        match self.entry_manifest(repo, tag) {
                            Ok(Some((digest, bytes))) => {
                                if let Some(e) = listed(tag, digest, &bytes) {
                                    found.lock().expect("lock").push(e);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                failure.lock().expect("lock").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("lock") {
            return Err(e);
        }
        let mut found = found.into_inner().expect("lock");
        found.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(found)
    }

    /// Deletes a manifest by digest (the registry must allow deletes).
    pub(crate) fn delete_manifest(
        &self,
        repo: &Reference,
        digest: &OciDigest,
    ) -> Result<(), RegistryError> {
        let ctx = Ctx {
            registry: &repo.registry,
            repository: &repo.repository,
            scope: vec![format!("repository:{}:delete", repo.repository)],
        };
        let what = format!("deleting manifest `{digest}`");
        let req = Req {
            method: Method::DELETE,
            url: self.manifest_url(repo, &digest.to_string()),
            headers: Vec::new(),
            body: Payload::Empty,
            retry: true,
            what: what.clone(),
        };
        let resp = self.send(&ctx, &req)?;
        if resp.status().is_success() || resp.status().as_u16() == 404 {
            return Ok(());
        }
        Err(self.status_error(&ctx, &what, &digest.to_string(), resp))
    }
}

/// A listed entry from its manifest; `None` for a manifest that is not one.
fn listed(tag: &str, manifest: OciDigest, bytes: &[u8]) -> Option<ListedEntry> {
    let m: EntryManifest = serde_json::from_slice(bytes).ok()?;
    if m.artifact_type != STEP_ARTIFACT {
        return None;
    }
    let size = bytes.len() as u64 + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
    Some(ListedEntry {
        tag: tag.to_owned(),
        manifest,
        size,
        layer: m.layers.first().map(|l| l.digest.clone()),
        written: written(&m),
    })
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        (start < end).then(|| part[start..end].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> LayerRef {
        LayerRef {
            diff_id: OciDigest::of(b"tar"),
            blob: Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                OciDigest::of(b"gz"),
                2,
            ),
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_step_it_was_written_for() {
        let l = layer();
        let e = entry_bytes("abc", Some(&l), 86_400 * 3 + 5);
        assert_eq!(parse_entry(&e.manifest, "abc").unwrap(), Some(l));
        let empty = entry_bytes("abc", None, 0);
        assert_eq!(parse_entry(&empty.manifest, "abc").unwrap(), None);
        assert!(parse_entry(&e.manifest, "abd").unwrap_err().contains("another step"));
    }

    #[test]
    fn entries_of_one_day_are_the_same_bytes() {
        let l = layer();
        let a = entry_bytes("k", Some(&l), 86_400 * 10 + 1);
        let b = entry_bytes("k", Some(&l), 86_400 * 10 + 86_399);
        assert_eq!(a.manifest, b.manifest);
        let m: EntryManifest = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(written(&m), Some(86_400 * 10));
    }

    #[test]
    fn garbage_is_never_a_hit() {
        assert!(parse_entry(b"{}", "k").is_err());
        assert!(parse_entry(b"\xff", "k").is_err());
        let e = entry_bytes("k", Some(&layer()), 0);
        let text = String::from_utf8(e.manifest).unwrap().replace("dev.stack.step.diff-id", "x");
        assert!(parse_entry(text.as_bytes(), "k").is_err());
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        assert_eq!(
            next_link("</v2/r/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/r/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
    }
}
