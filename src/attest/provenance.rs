//! The SLSA provenance v1 predicate of an image built by stack.
//!
//! Invariant: no wall-clock time, host name or absolute path: build files are named relative to
//! the build context, the context by the digest of the files the image reads, bases by their
//! pinned digests; `runDetails` holds the builder and its version only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::intoto::{SLSA_PREDICATE, Subject, statement};
use crate::digest::OciDigest;

/// The build type of `stack build` (documented in the book's "Proving what you ship").
pub(crate) const BUILD_TYPE: &str = "https://stack.invalid/provenance/build/v1";
/// The builder id; its version is in `runDetails.builder.version.stack`.
pub(crate) const BUILDER_ID: &str = "https://stack.invalid/builder";

/// One resolved input: a build file, a base image, the context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dependency {
    /// `file:stack.kdl`, `oci:REFERENCE`, `context:` (relative, never absolute).
    pub uri: String,
    pub name: String,
    pub digest: OciDigest,
}

/// What the provenance of one image says.
#[derive(Debug, Clone)]
#[allow(clippy::struct_field_names, reason = "`build_file` is what SLSA calls it")]
pub(crate) struct Build<'a> {
    pub image: &'a str,
    pub digest: &'a OciDigest,
    /// The main build file, relative to the build context.
    pub build_file: &'a str,
    /// `--arg` values given on the command line.
    pub args: &'a BTreeMap<String, String>,
    /// `os/architecture[/variant]` of the image.
    pub platform: &'a str,
    /// Build files (main first, then includes), bases and the context.
    pub dependencies: &'a [Dependency],
    /// `SOURCE_DATE_EPOCH` as the build used it.
    pub epoch: i64,
    /// The layer compression (`gzip`, `zstd`): it changes the layers' bytes.
    pub compression: &'a str,
}

/// The in-toto statement of the image's SLSA provenance v1, as canonical JSON bytes.
pub(crate) fn statement_of(b: &Build<'_>) -> Vec<u8> {
    statement(&Subject { name: b.image, digest: b.digest }, SLSA_PREDICATE, &predicate(b))
}

fn predicate(b: &Build<'_>) -> Value {
    let deps: Vec<Value> = b
        .dependencies
        .iter()
        .map(|d| json!({"uri": d.uri, "name": d.name, "digest": {"sha256": d.digest.hex()}}))
        .collect();
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "buildFile": b.build_file,
                "target": b.image,
                "args": b.args,
                "platform": b.platform,
            },
            "internalParameters": {"sourceDateEpoch": b.epoch, "compression": b.compression},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"stack": env!("CARGO_PKG_VERSION")}},
            "metadata": {},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predicate_holds_the_inputs_and_no_time() {
        let digest: OciDigest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let deps = [Dependency {
            uri: "file:stack.kdl".into(),
            name: "stack.kdl".into(),
            digest: digest.clone(),
        }];
        let args = BTreeMap::from([("VERSION".to_owned(), "2".to_owned())]);
        let b = Build {
            image: "app",
            digest: &digest,
            build_file: "stack.kdl",
            args: &args,
            platform: "linux/amd64",
            dependencies: &deps,
            epoch: 5,
            compression: "gzip",
        };
        let v: Value = serde_json::from_slice(&statement_of(&b)).unwrap();
        let def = &v["predicate"]["buildDefinition"];
        assert_eq!(def["externalParameters"]["args"]["VERSION"], "2");
        assert_eq!(def["resolvedDependencies"][0]["digest"]["sha256"], "ab".repeat(32));
        assert_eq!(def["internalParameters"]["compression"], "gzip");
        let text = v.to_string();
        assert!(!text.contains("startedOn") && !text.contains("finishedOn"), "{text}");
    }
}
