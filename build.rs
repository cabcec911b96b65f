//! Records the commit the binary is built from, for `stack --version`.

// A build script talks to cargo on standard output and may run git.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=STACK_GIT_COMMIT");
    let commit = std::env::var("STACK_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!("cargo:rustc-env=STACK_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
