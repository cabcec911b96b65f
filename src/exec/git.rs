//! The time of the last commit of the git repository holding a folder, for the default
//! `SOURCE_DATE_EPOCH`: reproducible (the same commit gives the same time on every machine)
//! and meaningful (`docker images` shows when the source last changed, not 1970).
//!
//! It asks the `git` command, as the reproducible-builds tools do, rather than reading
//! `.git` itself: worktrees, packed refs and alternates are git's business.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why no commit time could be had.
#[derive(Debug, thiserror::Error)]
pub enum CommitTimeError {
    #[error("`git` could not be run")]
    NoGit(#[source] std::io::Error),
    /// Not a repository, no commit yet, a repository git refuses (another owner), …
    #[error("`git log` in `{}` failed: {message}", dir.display())]
    NoCommit { dir: PathBuf, message: String },
    #[error("`git log` in `{}` printed `{output}`, not a time", dir.display())]
    Unreadable { dir: PathBuf, output: String },
}

/// The committer time (seconds since the epoch) of the last commit of the repository that
/// holds `dir`.
pub fn last_commit_time(dir: &Path) -> Result<i64, CommitTimeError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        // The repository is the one holding `dir`, whatever the caller's environment points at.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .map_err(CommitTimeError::NoGit)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(CommitTimeError::NoCommit {
            dir: dir.to_owned(),
            message: message.trim_start_matches("fatal: ").to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    text.parse().map_err(|_| CommitTimeError::Unreadable { dir: dir.to_owned(), output: text })
}
