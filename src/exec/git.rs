//! The git questions `stack affected` asks, through the `git` command: which files differ
//! between a revision and the working tree, and a file's content at a revision.
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
pub enum GitError {
    #[error("failed to run `git` (is it installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("`git {args}` failed in `{}`: {stderr}", dir.display())]
    Failed { args: String, dir: PathBuf, stderr: String },
    #[error("`{rev}` is not a revision of the repository `{}`", dir.display())]
    UnknownRevision { rev: String, dir: PathBuf },
}

/// Runs `git -C dir ARGS` and returns its standard output.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
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
pub fn toplevel(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(dir, &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim_end_matches('\n')))
}

/// The files that differ between revision `rev` and the working tree (tracked files changed,
/// added or deleted, both sides of a rename), and the untracked files git does not ignore;
/// sorted, relative to `top`.
pub fn changed_paths(top: &Path, rev: &str) -> Result<Vec<String>, GitError> {
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
pub fn show(top: &Path, rev: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let spec = format!("{rev}:{path}");
    // `cat-file -e` tells "absent" from a failure without parsing messages.
    if git(top, &["cat-file", "-e", &spec]).is_err() {
        return Ok(None);
    }
    git(top, &["cat-file", "blob", &spec]).map(Some)
}
