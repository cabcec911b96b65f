//! The SPDX 2.3 JSON document of an image: the image itself, its base images and the OS
//! packages of its root file system.
//!
//! Invariant: the document depends only on its inputs: the namespace comes from the image
//! digest, the creation time is `SOURCE_DATE_EPOCH`, packages are sorted, and the JSON is
//! canonical (sorted keys, no whitespace).

use serde_json::{Value, json};

use super::packages::Package;
use crate::digest::OciDigest;

/// A base image: the reference written in the build file and its manifest digest.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub reference: String,
    pub digest: OciDigest,
}

/// What the document describes.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    pub digest: &'a OciDigest,
    pub bases: &'a [Base],
    pub packages: &'a [Package],
    pub epoch: i64,
}

/// The SPDX 2.3 document, as canonical JSON bytes.
pub(crate) fn document(s: &Subject<'_>) -> Vec<u8> {
    let mut packages = vec![image_package(s.name, s.digest)];
    let mut relationships = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")];
    for (i, b) in s.bases.iter().enumerate() {
        let id = format!("SPDXRef-Base-{i}");
        packages.push(base_package(&id, b));
        relationships.push(rel("SPDXRef-Image", "DESCENDANT_OF", &id));
    }
    for (i, p) in s.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", spdx_id_part(&p.name));
        packages.push(os_package(&id, p));
        relationships.push(rel("SPDXRef-Image", "CONTAINS", &id));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": s.name,
        "documentNamespace": format!("https://stack.invalid/spdx/{}/{}", spdx_id_part(s.name), s.digest.hex()),
        "creationInfo": {
            "created": crate::oci::image::rfc3339(s.epoch),
            "creators": [format!("Tool: stack-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "relationships": relationships,
    });
    crate::json::to_canonical(&doc)
}

fn rel(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// The fields every package of this document shares: nothing is asserted about licenses or
/// where to download it, and no files were analysed.
fn package(id: &str, name: &str, version: &str, purl: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

/// The package URL of the built image: `pkg:oci/NAME@sha256%3AHEX`.
pub(crate) fn image_purl(name: &str, digest: &OciDigest) -> String {
    format!("pkg:oci/{}@sha256%3A{}", spdx_id_part(name).to_ascii_lowercase(), digest.hex())
}

/// The package URL of a base image, with its full reference as `repository_url`.
pub(crate) fn base_purl(b: &Base) -> String {
    // `docker.io/library/busybox:1.37` → `busybox`, with the full reference as a qualifier.
    let repo = b.reference.rsplit('/').next().unwrap_or(&b.reference);
    let repo = repo.split([':', '@']).next().unwrap_or(repo).to_ascii_lowercase();
    format!(
        "pkg:oci/{}@sha256%3A{}?repository_url={}",
        if repo.is_empty() { "image".to_owned() } else { spdx_id_part(&repo) },
        b.digest.hex(),
        super::packages::enc(&b.reference)
    )
}

fn image_package(name: &str, digest: &OciDigest) -> Value {
    let mut p = package("SPDXRef-Image", name, &digest.to_string(), &image_purl(name, digest));
    p["primaryPackagePurpose"] = json!("CONTAINER");
    p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": digest.hex()}]);
    p
}

fn base_package(id: &str, b: &Base) -> Value {
    let mut p = package(id, &b.reference, &b.digest.to_string(), &base_purl(b));
    p["primaryPackagePurpose"] = json!("CONTAINER");
    p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": b.digest.hex()}]);
    p
}

fn os_package(id: &str, p: &Package) -> Value {
    let mut v = package(id, &p.name, &p.version, &p.purl());
    v["primaryPackagePurpose"] = json!("OPERATING-SYSTEM");
    if !p.arch.is_empty() {
        v["comment"] = json!(format!("architecture {}", p.arch));
    }
    v
}

/// Characters SPDX ids allow (`[A-Za-z0-9.-]`); anything else becomes `-`.
fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_canonical_and_its_ids_are_valid() {
        let digest: OciDigest =
            format!("sha256:{}", "ab".repeat(32)).parse().expect("a valid digest");
        let packages = [Package {
            name: "libstdc++6".into(),
            version: "12.2.0-14".into(),
            arch: "amd64".into(),
            kind: "deb",
            distro: "debian".into(),
        }];
        let bases =
            [Base { reference: "docker.io/library/debian:12".into(), digest: digest.clone() }];
        let s = Subject {
            name: "app",
            digest: &digest,
            bases: &bases,
            packages: &packages,
            epoch: 86400,
        };
        let doc = document(&s);
        assert_eq!(doc, document(&s), "the same inputs give the same bytes");
        let v: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(crate::json::to_canonical(&v), doc);
        assert_eq!(v["creationInfo"]["created"], "1970-01-02T00:00:00Z");
        for p in v["packages"].as_array().unwrap() {
            let id = p["SPDXID"].as_str().unwrap();
            assert!(
                id.strip_prefix("SPDXRef-").is_some_and(|r| r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')),
                "{id}"
            );
        }
    }
}
