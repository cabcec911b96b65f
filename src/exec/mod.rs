//! Executes a planned build: the parallel scheduler, layer production, and the RUN sandbox.
//! The only module that spawns processes.

pub mod build;
pub mod cancel;
pub mod chain;
pub mod emulation;
mod explain;
pub mod export;
pub mod git;
pub mod layers;
pub mod load;
pub mod rebuild;
mod run;
pub mod sandbox;
mod schedule;
pub mod shared;
mod sshproxy;
pub mod view;

pub use build::{BuildError, BuildOptions, BuildReport, Event, SecretValue, build};
// Built images are OCI documents; kept here too for the callers of the build.
pub use crate::oci::image::BuiltImage;
