//! The image index of built images with attestations, as BuildKit writes it: every platform's
//! image manifest, then one attestation manifest per platform manifest
//! (`vnd.docker.reference.type=attestation-manifest`, `vnd.docker.reference.digest` = the
//! platform manifest's digest, platform `unknown/unknown`) whose layers are in-toto statements
//! (`application/vnd.in-toto+json`, annotated `in-toto.io/predicate-type`).
//!
//! Invariant: pure and deterministic: the documents are canonical JSON and their order is the
//! order of the platforms given, then of their statements; nothing depends on the store.

use std::collections::BTreeMap;

use serde_json::json;

use super::image::{Descriptor, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Platform};
use crate::digest::OciDigest;
use crate::json::to_canonical;

/// The media type of an in-toto statement layer.
pub(crate) const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The annotation naming a statement layer's predicate type.
pub(crate) const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// BuildKit's annotation that marks an attestation manifest.
pub(crate) const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// BuildKit's annotation naming the manifest an attestation manifest is about.
pub(crate) const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`REFERENCE_TYPE`] for attestation manifests.
pub(crate) const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// The media type of the empty config of an artifact manifest (OCI 1.1).
pub(crate) const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// An OCI 1.1 referrer: an artifact manifest whose `subject` is the image manifest, holding one
/// in-toto statement (`artifactType` `application/vnd.in-toto+json`, annotated with its
/// predicate type). Returns its descriptor as a referrers index lists it (with
/// `artifactType` and annotations), its bytes, and the blobs it refers to with their bytes.
pub(crate) fn referrer(subject: &Descriptor, statement: &Statement) -> Referrer {
    let empty = b"{}".to_vec();
    let config = document(EMPTY_JSON, &empty);
    let mut layer = document(IN_TOTO, &statement.bytes);
    let annotations =
        BTreeMap::from([(PREDICATE_TYPE.to_owned(), statement.predicate_type.clone())]);
    layer.annotations = Some(annotations.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": IN_TOTO,
        "config": {"mediaType": EMPTY_JSON, "digest": config.digest.to_string(), "size": 2, "data": "e30="},
        "layers": [layer],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size},
        "annotations": annotations,
    });
    let bytes = to_canonical(&manifest);
    let desc = document(OCI_MANIFEST, &bytes);
    let listed = json!({
        "mediaType": OCI_MANIFEST,
        "digest": desc.digest.to_string(),
        "size": desc.size,
        "artifactType": IN_TOTO,
        "annotations": annotations,
    });
    Referrer { bytes, listed, blobs: vec![(config, empty), (layer, statement.bytes.clone())] }
}

/// An artifact manifest made by [`referrer`].
#[derive(Debug, Clone)]
pub(crate) struct Referrer {
    pub bytes: Vec<u8>,
    /// Its entry in a referrers index.
    pub listed: serde_json::Value,
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

/// The referrers index of the tag schema (`sha256-<hex>`): the entries it already lists and
/// `new` ones, each digest once, sorted by digest so the bytes never depend on push order.
pub(crate) fn referrers_index(
    existing: &[serde_json::Value],
    new: &[serde_json::Value],
) -> Vec<u8> {
    let mut by_digest = BTreeMap::new();
    for e in existing.iter().chain(new) {
        if let Some(d) = e["digest"].as_str() {
            by_digest.insert(d.to_owned(), e.clone());
        }
    }
    let manifests: Vec<serde_json::Value> = by_digest.into_values().collect();
    to_canonical(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
}

/// The tag of the referrers tag schema for `digest`: `sha256-<hex>`.
pub(crate) fn referrers_tag(digest: &OciDigest) -> String {
    digest.to_string().replace(':', "-")
}

/// Whether a descriptor of an index is an attestation manifest (BuildKit's annotation).
pub(crate) fn is_attestation(d: &Descriptor) -> bool {
    d.annotations
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE))
        .is_some_and(|t| t == ATTESTATION_MANIFEST)
}

/// One in-toto statement (canonical JSON) and its predicate type.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// One platform's image manifest (its descriptor carries the platform), the blobs it refers
/// to, and the statements about it.
#[derive(Debug, Clone)]
pub(crate) struct PlatformImage {
    pub manifest: Descriptor,
    pub blobs: Vec<Descriptor>,
    pub statements: Vec<Statement>,
}

/// A manifest the index lists, with the blobs it refers to.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub manifest: Descriptor,
    pub blobs: Vec<Descriptor>,
}

/// The assembled index: its descriptor, its children (platform manifests first), and every
/// document this assembly created (statements, configs, attestation manifests, the index),
/// which the caller stores.
#[derive(Debug, Clone)]
pub(crate) struct Assembled {
    pub index: Descriptor,
    pub children: Vec<Child>,
    pub documents: Vec<(Descriptor, Vec<u8>)>,
}

/// Assembles the index of `platforms` and their attestation manifests (none for a platform
/// without statements).
pub(crate) fn assemble(platforms: &[PlatformImage]) -> Assembled {
    let mut children: Vec<Child> = platforms
        .iter()
        .map(|p| Child { manifest: p.manifest.clone(), blobs: p.blobs.clone() })
        .collect();
    let mut documents = Vec::new();
    for p in platforms.iter().filter(|p| !p.statements.is_empty()) {
        let child = attestation_manifest(p, &mut documents);
        children.push(child);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: children.iter().map(|c| c.manifest.clone()).collect(),
        annotations: None,
    };
    let bytes = to_canonical(&index);
    let desc = document(OCI_INDEX, &bytes);
    documents.push((desc.clone(), bytes));
    Assembled { index: desc, children, documents }
}

fn document(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, OciDigest::of(bytes), bytes.len() as u64)
}

/// The attestation manifest of one platform manifest; its documents go to `documents`.
fn attestation_manifest(p: &PlatformImage, documents: &mut Vec<(Descriptor, Vec<u8>)>) -> Child {
    let mut layers = Vec::new();
    for s in &p.statements {
        let mut d = document(IN_TOTO, &s.bytes);
        d.annotations = Some(BTreeMap::from([(PREDICATE_TYPE.into(), s.predicate_type.clone())]));
        documents.push((d.clone(), s.bytes.clone()));
        layers.push(d);
    }
    // As BuildKit's: an empty image config of platform unknown/unknown whose diff ids are the
    // statements' digests (they are not compressed).
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = to_canonical(&config);
    let config_desc = document(OCI_CONFIG, &config_bytes);
    documents.push((config_desc.clone(), config_bytes));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: config_desc.clone(),
        layers: layers.clone(),
        annotations: None,
    };
    let bytes = to_canonical(&manifest);
    let mut desc = document(OCI_MANIFEST, &bytes);
    documents.push((desc.clone(), bytes));
    desc.annotations = Some(BTreeMap::from([
        (REFERENCE_DIGEST.into(), p.manifest.digest.to_string()),
        (REFERENCE_TYPE.into(), ATTESTATION_MANIFEST.into()),
    ]));
    desc.platform =
        Some(Platform { architecture: "unknown".into(), os: "unknown".into(), variant: None });
    let mut blobs = vec![config_desc];
    blobs.extend(layers);
    Child { manifest: desc, blobs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(arch: &str, statements: usize) -> PlatformImage {
        let bytes = format!("manifest {arch}").into_bytes();
        let mut manifest = document(OCI_MANIFEST, &bytes);
        manifest.platform =
            Some(Platform { architecture: arch.into(), os: "linux".into(), variant: None });
        PlatformImage {
            manifest,
            blobs: Vec::new(),
            statements: (0..statements)
                .map(|i| Statement {
                    predicate_type: format!("https://example.com/{i}"),
                    bytes: format!("{{\"s\":{i},\"a\":\"{arch}\"}}").into_bytes(),
                })
                .collect(),
        }
    }

    #[test]
    fn platforms_come_first_then_one_attestation_manifest_each() {
        let a = assemble(&[platform("amd64", 2), platform("arm64", 1)]);
        let kinds: Vec<(String, Option<String>)> = a
            .children
            .iter()
            .map(|c| {
                let p = c.manifest.platform.as_ref().unwrap();
                let about = c.manifest.annotations.as_ref().map(|x| x[REFERENCE_DIGEST].clone());
                (p.architecture.clone(), about)
            })
            .collect();
        let d = |i: usize| Some(a.children[i].manifest.digest.to_string());
        assert_eq!(kinds[0], ("amd64".into(), None));
        assert_eq!(kinds[1], ("arm64".into(), None));
        assert_eq!(kinds[2], ("unknown".into(), d(0)));
        assert_eq!(kinds[3], ("unknown".into(), d(1)));
        assert_eq!(a.children[2].blobs.len(), 3, "config and two statements");
        let (index, bytes) = a.documents.last().unwrap();
        assert_eq!(index, &a.index);
        assert_eq!(OciDigest::of(bytes), a.index.digest);
        let again = assemble(&[platform("amd64", 2), platform("arm64", 1)]);
        assert_eq!(again.index, a.index, "the same inputs give the same index");
    }

    #[test]
    fn a_referrer_names_its_subject_and_the_fallback_index_merges() {
        let image = platform("amd64", 0).manifest;
        let s = Statement {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            bytes: b"{}".to_vec(),
        };
        let r = referrer(&image, &s);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes).unwrap();
        assert_eq!(v["subject"]["digest"], image.digest.to_string());
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let one = referrers_index(&[], std::slice::from_ref(&r.listed));
        let again =
            referrers_index(std::slice::from_ref(&r.listed), std::slice::from_ref(&r.listed));
        assert_eq!(one, again, "a second push lists the referrer once");
        assert!(referrers_tag(&image.digest).starts_with("sha256-"));
    }

    #[test]
    fn a_platform_without_statements_gets_no_attestation_manifest() {
        let a = assemble(&[platform("amd64", 0)]);
        assert_eq!(a.children.len(), 1);
    }
}
