//! The timestamps of a build. `--source-date-epoch` (or `SOURCE_DATE_EPOCH`), when given, is
//! every timestamp of the output. Otherwise the image's creation time (config and history) is
//! the committer time of the last commit of the git repository holding the context, which is
//! reproducible and says when the source last changed (`docker images` then shows a real age),
//! and files keep time 0, so that a new commit reuses every cached layer. Outside a repository
//! (or without git), both are 0.

use std::path::Path;

/// The build's timestamps and where they came from.
pub(super) struct Epoch {
    /// The time of the files the build writes, and their mtimes' clamp.
    pub(super) files: i64,
    /// The image's creation time.
    pub(super) created: i64,
    origin: Origin,
}

enum Origin {
    Given,
    Commit,
    /// Why there is no commit time.
    Zero(String),
}

/// The timestamps of a build whose (first) build file has `context` as its context.
pub(super) fn resolve(given: Option<i64>, context: Option<&Path>) -> Epoch {
    if let Some(seconds) = given {
        return Epoch { files: seconds, created: seconds, origin: Origin::Given };
    }
    let zero = |why: String| Epoch { files: 0, created: 0, origin: Origin::Zero(why) };
    let Some(context) = context else { return zero("the build has no context".into()) };
    match crate::exec::git::last_commit_time(context) {
        Ok(seconds) => Epoch { files: 0, created: seconds, origin: Origin::Commit },
        Err(e) => zero(crate::diag::error_chain(&e)),
    }
}

impl Epoch {
    /// Where the timestamps come from, for `--explain`.
    pub(super) fn describe(&self) -> String {
        let time = crate::oci::image::rfc3339(self.created);
        let s = self.created;
        match &self.origin {
            Origin::Given => {
                format!("note: every timestamp is SOURCE_DATE_EPOCH={s} ({time}), as given")
            }
            Origin::Commit => format!(
                "note: the image's creation time is {time} ({s}), the context's last git commit; \
                 files keep time 0 (set SOURCE_DATE_EPOCH or --source-date-epoch for another \
                 time everywhere)"
            ),
            Origin::Zero(why) => format!(
                "note: every timestamp is 0 ({time}): no git commit gives the context a time \
                 ({why})"
            ),
        }
    }

    /// Where the image's creation time comes from, in one word, for `--progress json`.
    pub(super) fn origin(&self) -> &'static str {
        match self.origin {
            Origin::Given => "given",
            Origin::Commit => "git-commit",
            Origin::Zero(_) => "default",
        }
    }
}
