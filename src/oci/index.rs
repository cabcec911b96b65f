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
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The annotation naming a statement layer's predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// BuildKit's annotation that marks an attestation manifest.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// BuildKit's annotation naming the manifest an attestation manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`REFERENCE_TYPE`] for attestation manifests.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// Whether a descriptor of an index is an attestation manifest (BuildKit's annotation).
pub fn is_attestation(d: &Descriptor) -> bool {
    d.annotations
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE))
        .is_some_and(|t| t == ATTESTATION_MANIFEST)
}

/// One in-toto statement (canonical JSON) and its predicate type.
#[derive(Debug, Clone)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// One platform's image manifest (its descriptor carries the platform), the blobs it refers
/// to, and the statements about it.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub manifest: Descriptor,
    pub blobs: Vec<Descriptor>,
    pub statements: Vec<Statement>,
}

/// A manifest the index lists, with the blobs it refers to.
#[derive(Debug, Clone)]
pub struct Child {
    pub manifest: Descriptor,
    pub blobs: Vec<Descriptor>,
}

/// The assembled index: its descriptor, its children (platform manifests first), and every
/// document this assembly created (statements, configs, attestation manifests, the index),
/// which the caller stores.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub index: Descriptor,
    pub children: Vec<Child>,
    pub documents: Vec<(Descriptor, Vec<u8>)>,
}

/// Assembles the index of `platforms` and their attestation manifests (none for a platform
/// without statements).
pub fn assemble(platforms: &[PlatformImage]) -> Assembled {
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
    fn a_platform_without_statements_gets_no_attestation_manifest() {
        let a = assemble(&[platform("amd64", 0)]);
        assert_eq!(a.children.len(), 1);
    }
}
