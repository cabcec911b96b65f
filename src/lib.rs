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

pub mod api;
pub(crate) mod attest;
pub(crate) mod cli;
pub use cli::main;
pub(crate) mod context;
pub(crate) mod diag;
pub(crate) mod digest;
pub(crate) mod dockerfile;
pub(crate) mod exec;
pub(crate) mod fleet;
pub(crate) mod json;
pub(crate) mod lockfile;
pub(crate) mod oci;
pub(crate) mod paths;
pub(crate) mod plan;
pub(crate) mod privilege;
pub(crate) mod registry;
pub(crate) mod sbom;
pub(crate) mod store;
pub(crate) mod syntax;
