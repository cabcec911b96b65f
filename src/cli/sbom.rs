//! `stack sbom NAME`: the SPDX 2.3 or CycloneDX 1.5 SBOM of any image of an OCI layout, on
//! standard output or in a file; the image's blobs are read into a private temporary store
//! (verified there). `stack provenance NAME`: the provenance statement attached to an image.

use std::io::Write;

use super::args::{ProvenanceArgs, SbomArgs};
use super::load::error_chain;
use super::{Failure, fail};
use crate::oci::image::Manifest;
use crate::oci::local::LocalRef;
use crate::sbom::spdx::Base;

/// The manifest annotations that name an image's base (OCI image spec).
const BASE_NAME: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

pub(super) fn run(args: &SbomArgs) -> Result<(), Failure> {
    let layout = super::inspect::Layout::open(&args.image.layout)?;
    layout.find(&args.image.name)?;
    let tmp = tempfile::Builder::new().prefix("stack-sbom-").tempdir()?;
    let store = crate::store::Store::open(tmp.path()).map_err(|e| fail(error_chain(&e), None))?;
    let spec = format!("oci:{}:{}", args.image.layout.display(), args.image.name);
    let local =
        LocalRef::OciDir { path: args.image.layout.clone(), tag: Some(args.image.name.clone()) };
    let image =
        crate::oci::local::load(&spec, &local, &store, &crate::oci::image::Platform::host())
            .map_err(|e| fail(error_chain(&e), None))?;
    let manifest: Manifest = serde_json::from_slice(
        &store.read_blob(&image.manifest_digest).map_err(|e| fail(error_chain(&e), None))?,
    )
    .map_err(|e| {
        fail(format!("`{}` is not an image manifest: {e}", image.manifest_digest), None)
    })?;
    let layers: Vec<_> = image.layers.iter().map(|l| l.blob.clone()).collect();
    let doc = crate::sbom::document(
        &store,
        args.format.into(),
        &args.image.name,
        &image.manifest_digest,
        &layers,
        &annotated_base(&manifest),
        // As `stack build --sbom` writes it: the image's creation time.
        args.source_date_epoch.unwrap_or_else(|| {
            image
                .config
                .string("created")
                .and_then(|c| crate::oci::image::parse_rfc3339(&c))
                .unwrap_or(0)
        }),
    )
    .map_err(|e| fail(error_chain(&e), None))?;
    write_out(args.image.output.as_deref(), &doc)
}

/// `stack provenance NAME`: the SLSA provenance statement attached to a layout's image.
pub(super) fn provenance(args: &ProvenanceArgs) -> Result<(), Failure> {
    let layout = super::inspect::Layout::open(&args.image.layout)?;
    let desc = layout.find(&args.image.name)?;
    let Some(statement) = layout.statement(&desc, crate::attest::intoto::SLSA_PREDICATE)? else {
        return Err(fail(
            format!(
                "image `{}` ({}) in `{}` has no provenance attached",
                args.image.name,
                desc.digest,
                args.image.layout.display()
            ),
            Some("build it with `stack build --provenance` (or `attest provenance=#true`)"),
        ));
    };
    write_out(args.image.output.as_deref(), &statement)
}

/// Writes a document to `path`, else to standard output with a newline.
fn write_out(path: Option<&std::path::Path>, doc: &[u8]) -> Result<(), Failure> {
    if let Some(path) = path {
        fs_err::write(path, doc)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(doc)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The base an image's manifest names in its annotations, if it names one with a digest.
fn annotated_base(manifest: &Manifest) -> Vec<Base> {
    let Some(a) = &manifest.annotations else { return Vec::new() };
    let digest = a.get(BASE_DIGEST).and_then(|d| d.parse().ok());
    match (a.get(BASE_NAME), digest) {
        (Some(name), Some(digest)) => vec![Base { reference: name.clone(), digest }],
        _ => Vec::new(),
    }
}
