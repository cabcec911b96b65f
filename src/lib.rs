//! stack builds reproducible OCI container images from a declarative KDL build file,
//! without a daemon.
//!
//! The modules form a pipeline, listed here in data-flow order: the build file is parsed
//! (`syntax`), the build context is snapshotted (`context`), both are planned into a layer DAG
//! with cache keys (`plan`), the DAG is executed (`exec`) against the content-addressed
//! `store`, and images are written by `oci`. `cli` is the only module that prints.

// Unit tests read and write files and print freely: the rules of clippy.toml are for the
// library itself, which clippy checks in its own (non-test) build too.
#![cfg_attr(test, allow(clippy::disallowed_macros, clippy::disallowed_methods))]

pub(crate) mod attest;
pub mod cli;
pub mod context;
pub mod diag;
pub mod digest;
pub mod dockerfile;
pub mod exec;
pub(crate) mod fleet;
pub(crate) mod json;
pub mod lockfile;
pub mod oci;
pub(crate) mod paths;
pub mod plan;
pub(crate) mod privilege;
pub(crate) mod registry;
pub(crate) mod sbom;
pub mod store;
pub mod syntax;
