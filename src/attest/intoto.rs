//! The in-toto Statement v1 envelope (unsigned) that wraps every attestation stack writes.
//!
//! Invariant: canonical JSON (sorted keys, no whitespace), so the same predicate for the same
//! subject always has the same bytes.

use serde_json::{Value, json};

use crate::digest::OciDigest;

/// The statement type of in-toto Statement v1.
pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of an SPDX document (as BuildKit attaches SBOMs).
pub(crate) const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
/// The predicate type of a CycloneDX document.
pub(crate) const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";
/// The predicate type of SLSA provenance v1.
pub(crate) const SLSA_PREDICATE: &str = "https://slsa.dev/provenance/v1";

/// What a statement is about: an image, by name and manifest digest.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    pub digest: &'a OciDigest,
}

/// The statement `{_type, subject, predicateType, predicate}`, as canonical JSON bytes.
pub(crate) fn statement(subject: &Subject<'_>, predicate_type: &str, predicate: &Value) -> Vec<u8> {
    let v = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject.name, "digest": {"sha256": subject.digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    crate::json::to_canonical(&v)
}

/// Wraps an SBOM document (JSON bytes stack wrote) in a statement of `predicate_type`.
pub(crate) fn wrap_document(
    subject: &Subject<'_>,
    predicate_type: &str,
    document: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    Ok(statement(subject, predicate_type, &serde_json::from_slice(document)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_names_the_subject_by_sha256() {
        let digest: OciDigest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let s = statement(&Subject { name: "app", digest: &digest }, SLSA_PREDICATE, &json!({}));
        let v: Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["subject"][0]["digest"]["sha256"], "cd".repeat(32));
        assert_eq!(crate::json::to_canonical(&v), s);
    }
}
