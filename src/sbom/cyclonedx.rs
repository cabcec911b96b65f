//! The CycloneDX 1.5 JSON document of an image: the same facts as the SPDX document (the
//! image, its base images, the OS packages of its root file system) in CycloneDX's shape.
//!
//! Invariant: the document depends only on its inputs: the serial number is derived from the
//! image digest, the timestamp is `SOURCE_DATE_EPOCH`, components are sorted, and the JSON is
//! canonical (sorted keys, no whitespace).

use serde_json::{Value, json};

use super::packages::Package;
use super::spdx::{Base, Subject};
use crate::digest::OciDigest;

/// The `bom-ref` of the image itself.
const IMAGE_REF: &str = "image";

/// The CycloneDX 1.5 document, as canonical JSON bytes.
pub(crate) fn document(s: &Subject<'_>) -> Vec<u8> {
    let mut components: Vec<Value> =
        s.bases.iter().enumerate().map(|(i, b)| base_component(i, b)).collect();
    components.extend(s.packages.iter().map(os_component));
    let refs: Vec<&Value> = components.iter().map(|c| &c["bom-ref"]).collect();
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial_number(s.digest),
        "version": 1,
        "metadata": {
            "timestamp": crate::oci::image::rfc3339(s.epoch),
            "tools": {"components": [{
                "type": "application",
                "name": "stack",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": image_component(s.name, s.digest),
        },
        "components": components,
        "dependencies": [{"ref": IMAGE_REF, "dependsOn": refs}],
    });
    crate::json::to_canonical(&doc)
}

/// `urn:uuid:…` from the image digest: its first 128 bits with the version (5, name-based)
/// and variant bits set, so the same image always gets the same serial number.
pub(crate) fn serial_number(digest: &OciDigest) -> String {
    let hex = digest.hex();
    let h = |r: std::ops::Range<usize>| hex.get(r).unwrap_or("0");
    let variant = u8::from_str_radix(h(16..17), 16).unwrap_or(0) & 0x3 | 0x8;
    format!(
        "urn:uuid:{}-{}-5{}-{variant:x}{}-{}",
        h(0..8),
        h(8..12),
        h(13..16),
        h(17..20),
        h(20..32)
    )
}

fn sha256(digest: &OciDigest) -> Value {
    json!([{"alg": "SHA-256", "content": digest.hex()}])
}

fn image_component(name: &str, digest: &OciDigest) -> Value {
    json!({
        "type": "container",
        "bom-ref": IMAGE_REF,
        "name": name,
        "version": digest.to_string(),
        "purl": super::spdx::image_purl(name, digest),
        "hashes": sha256(digest),
    })
}

fn base_component(i: usize, b: &Base) -> Value {
    json!({
        "type": "container",
        "bom-ref": format!("base-{i}"),
        "name": b.reference,
        "version": b.digest.to_string(),
        "purl": super::spdx::base_purl(b),
        "hashes": sha256(&b.digest),
    })
}

fn os_component(p: &Package) -> Value {
    let purl = p.purl();
    let mut c = json!({
        "type": "library",
        "bom-ref": purl,
        "name": p.name,
        "version": p.version,
        "purl": purl,
    });
    if !p.arch.is_empty() {
        c["properties"] = json!([{"name": "stack:package:architecture", "value": p.arch}]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_number_is_a_version_5_uuid_of_the_digest() {
        let digest: OciDigest =
            format!("sha256:{}", "0123456789abcdef".repeat(4)).parse().expect("a valid digest");
        assert_eq!(serial_number(&digest), "urn:uuid:01234567-89ab-5def-8123-456789abcdef");
    }

    #[test]
    fn the_document_is_canonical_and_refs_resolve() {
        let digest: OciDigest =
            format!("sha256:{}", "ab".repeat(32)).parse().expect("a valid digest");
        let packages = [Package {
            name: "bash".into(),
            version: "5.2.15-2+b2".into(),
            arch: "amd64".into(),
            kind: "deb",
            distro: "debian".into(),
        }];
        let bases =
            [Base { reference: "docker.io/library/debian:12".into(), digest: digest.clone() }];
        let s =
            Subject { name: "app", digest: &digest, bases: &bases, packages: &packages, epoch: 0 };
        let doc = document(&s);
        assert_eq!(doc, document(&s), "the same inputs give the same bytes");
        let v: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(crate::json::to_canonical(&v), doc);
        assert_eq!(v["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
        let deps = v["dependencies"][0]["dependsOn"].as_array().unwrap();
        assert_eq!(deps.len(), 2);
        assert_eq!(v["components"][1]["purl"], "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64");
    }
}
