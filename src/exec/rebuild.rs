//! `stack verify`'s rebuild from nothing: `stack build` run again as a child process with a
//! fresh store, fresh temporary folders, another umask, time zone and job count, so that
//! nothing of the first build (cache, process state, environment) can leak into the second.
//!
//! Invariant: the child never writes the caller's store, output or `stack.lock` (`--locked`,
//! and every path it writes lies in the folder it is given).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why the rebuild could not run or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RebuildError {
    #[error("cannot find the running `stack` executable to rebuild with")]
    Exe(#[source] std::io::Error),
    #[error("failed to create `{}` for the rebuild", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start the rebuild `{}`", exe.display())]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The child printed its own diagnostics on standard error.
    #[error("the rebuild from nothing failed ({status})")]
    Failed { status: std::process::ExitStatus },
}

/// How the rebuild's environment differs from the first build's.
#[derive(Debug, Clone)]
pub(crate) struct Fresh {
    /// Holds `store/`, `out/` and `tmp/`.
    pub root: PathBuf,
    pub jobs: usize,
    pub umask: u32,
    pub tz: String,
}

impl Fresh {
    /// A rebuild in `root` that differs from the current process in umask, time zone and
    /// job count (`jobs` is the first build's). Call it before any thread starts (see
    /// `current_umask`).
    pub(crate) fn unlike_this_process(root: &Path, jobs: usize) -> Self {
        let current = current_umask();
        let tz = std::env::var("TZ").unwrap_or_default();
        Self {
            root: root.to_owned(),
            jobs: if jobs > 1 { 1 } else { 3 },
            umask: if current == 0o077 { 0o002 } else { 0o077 },
            tz: if tz == "Pacific/Kiritimati" { "America/Adak" } else { "Pacific/Kiritimati" }
                .to_owned(),
        }
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    pub(crate) fn out(&self) -> PathBuf {
        self.root.join("out")
    }
}

/// The process's umask, read by setting it and setting it back: call it before any thread
/// starts, or a file created in between would get the wrong mode.
fn current_umask() -> u32 {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.as_raw_mode()
}

/// Runs `stack build ARGS… --cache-dir STORE --out OUT --jobs N --locked` in `fresh`'s
/// environment, in its root folder (so ARGS must hold absolute paths); standard error is the caller's, so the rebuild's progress and diagnostics
/// show.
pub(crate) fn rebuild(build_args: &[OsString], fresh: &Fresh) -> Result<(), RebuildError> {
    let exe = std::env::current_exe().map_err(RebuildError::Exe)?;
    let tmp = fresh.root.join("tmp");
    fs_err::create_dir_all(&tmp)
        .map_err(|source| RebuildError::Folder { path: tmp.clone(), source })?;
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
    let mut cmd = Command::new(&exe);
    cmd.arg("build")
        .args(build_args)
        .arg("--cache-dir")
        .arg(fresh.store())
        .arg("--out")
        .arg(fresh.out())
        .arg("--jobs")
        .arg(fresh.jobs.to_string())
        .arg("--locked")
        // From nothing means no shared step cache either, whatever the build file says.
        .arg("--no-remote-cache")
        .env_remove("STACK_CACHE_DIR")
        .env_remove("STACK_CACHE_FROM")
        .env_remove("STACK_CACHE_TO")
        .env("TMPDIR", &tmp)
        .env("TZ", &fresh.tz)
        .current_dir(&fresh.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let umask = rustix::fs::Mode::from_raw_mode(fresh.umask);
    // SAFETY: the closure runs in the forked child before exec and only calls umask(2),
    // which is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            rustix::process::umask(umask);
            Ok(())
        });
    }
    let status = cmd.status().map_err(|source| RebuildError::Spawn { exe: exe.clone(), source })?;
    if status.success() { Ok(()) } else { Err(RebuildError::Failed { status }) }
}
