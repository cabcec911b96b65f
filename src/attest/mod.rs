//! Attestations about a built image: in-toto statements (`intoto`) holding its SBOM or its SLSA
//! provenance v1 (`provenance`), with the build inputs the provenance names gathered from the
//! plan (`inputs`).
//!
//! Invariant: a statement is a pure function of the image digest and the build's inputs (build
//! files, target, args, base digests, context files, `SOURCE_DATE_EPOCH`): no clock, host name
//! or absolute path, so two builds of the same image give byte-identical attestations.

pub(crate) mod inputs;
pub(crate) mod intoto;
pub(crate) mod provenance;
