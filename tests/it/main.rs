//! The one integration-test binary: black-box tests of the `stack` command and end-to-end
//! builds checked with real clients (skopeo, umoci).

// Tests read and write files, print and run tools freely: the rules of clippy.toml are for `src/`.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

mod support;

mod attest;
mod build;
mod cache;
mod cli_output;
mod context_safety;
mod deadlines;
mod diagnostics;
mod docs;
mod equivalence;
mod fleet;
mod habits;
mod habits_buildx;
mod hostile;
mod login;
mod machine;
mod monorepo;
mod outputs;
mod parallel;
mod parity;
mod platforms;
mod progress;
mod realworld;
mod registry;
mod remote;
mod reuse;
mod robustness;
mod run;
mod sbom;
mod tidy;
mod timestamps;
mod verify;
