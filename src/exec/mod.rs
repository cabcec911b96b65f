//! Executes a planned build: the parallel scheduler, layer production, and the RUN sandbox.
//! The only module that spawns processes.

pub(crate) mod build;
pub(crate) mod cancel;
pub(crate) mod chain;
pub(crate) mod emulation;
mod explain;
pub(crate) mod export;
mod failure;
pub(crate) mod git;
pub(crate) mod layers;
pub(crate) mod load;
pub(crate) mod rebuild;
mod run;
pub(crate) mod sandbox;
mod schedule;
pub(crate) mod shared;
mod sshproxy;
pub(crate) mod view;

pub(crate) use build::{BuildError, BuildOptions, BuildReport, Event, SecretValue, build};
// Built images are OCI documents; kept here too for the callers of the build.
pub(crate) use crate::oci::image::BuiltImage;
