//! The git questions stack asks, through the `git` command: which files differ between a
//! revision and the working tree and a file's content at a revision (`stack affected`), and
//! the time of the last commit, for the default image creation time (reproducible: the same
//! commit gives the same time on every machine; meaningful: `docker images` shows when the
//! source last changed, not 1970).
//!
//! The CLI rather than a crate (`gix`, `git2`): it is the git the user's repository was made
//! with (same config, same `safe.directory`, sparse and partial clones, any object format),
//! it adds no large dependency tree to a build tool that runs it a few times per command, and
//! its plumbing output (`-z`) is stable.
//!
//! Invariant: every path returned is relative to the repository's top folder, as git prints
//! it; nothing here changes the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why git could not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    #[error("failed to run `git` (is it installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("`git {args}` failed in `{}`: {stderr}", dir.display())]
    Failed { args: String, dir: PathBuf, stderr: String },
    #[error("`{rev}` is not a revision of the repository `{}`", dir.display())]
    UnknownRevision { rev: String, dir: PathBuf },
}

/// Runs `git -C dir ARGS` and returns its standard output.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// The top folder of the repository that holds `dir`.
pub(crate) fn toplevel(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(dir, &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim_end_matches('\n')))
}

/// The files that differ between revision `rev` and the working tree (tracked files changed,
/// added or deleted, both sides of a rename), and the untracked files git does not ignore;
/// sorted, relative to `top`.
pub(crate) fn changed_paths(top: &Path, rev: &str) -> Result<Vec<String>, GitError> {
    // `--verify` first: a typo in REV is an error about REV, not an empty change set.
    let spec = format!("{rev}^{{commit}}");
    if let Err(e) = git(top, &["rev-parse", "--verify", "--quiet", &spec]) {
        return Err(match e {
            GitError::Failed { dir, .. } => GitError::UnknownRevision { rev: rev.to_owned(), dir },
            spawn => spawn,
        });
    }
    let diff = git(top, &["diff", "--name-only", "--no-renames", "-z", rev, "--"])?;
    let untracked = git(top, &["ls-files", "--others", "--exclude-standard", "-z"])?;
    let mut paths: Vec<String> = diff
        .split(|b| *b == 0)
        .chain(untracked.split(|b| *b == 0))
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The content of `path` (relative to `top`) at revision `rev`; `None` when it did not exist
/// there.
pub(crate) fn show(top: &Path, rev: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let spec = format!("{rev}:{path}");
    // `cat-file -e` tells "absent" from a failure without parsing messages.
    if git(top, &["cat-file", "-e", &spec]).is_err() {
        return Ok(None);
    }
    git(top, &["cat-file", "blob", &spec]).map(Some)
}

/// Why no commit time could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitTimeError {
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
pub(crate) fn last_commit_time(dir: &Path) -> Result<i64, CommitTimeError> {
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
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
