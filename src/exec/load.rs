//! `stack build --load`: hands a `docker load` archive to the local Docker daemon through its
//! client (`docker load`, else `podman load`), as `docker build --load` does.
//!
//! Invariant: the archive is complete before the client sees it; a failed load leaves the
//! daemon as it was (`docker load` imports an archive whole or not at all).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why the images could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("neither `docker` nor `podman` is on PATH")]
    NoClient,
    #[error("failed to run `{}`", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{} load` failed ({status}): {stderr}", program.display())]
    Failed { program: PathBuf, status: std::process::ExitStatus, stderr: String },
}

/// The client to load with: `docker`, else `podman`, found on PATH.
fn client() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["docker", "podman"].iter().find_map(|name| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    })
}

/// Loads the archive at `archive`; returns what the client printed (`Loaded image: …`).
pub(crate) fn load_archive(archive: &Path) -> Result<String, LoadError> {
    let program = client().ok_or(LoadError::NoClient)?;
    let spawn = |source| LoadError::Spawn { program: program.clone(), source };
    let file = fs_err::File::open(archive).map_err(spawn)?;
    // `wait_with_output` drains both pipes together, so neither can fill up and block.
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
    let out = Command::new(&program)
        .arg("load")
        .stdin(Stdio::from(file.into_parts().0))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(std::process::Child::wait_with_output)
        .map_err(spawn)?;
    if !out.status.success() {
        return Err(LoadError::Failed {
            program,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
