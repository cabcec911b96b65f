//! Why a step failed: one variant per kind of failure, each keeping its cause as its source,
//! so that the message users see is the whole chain ([`crate::diag::error_chain`]) and a
//! machine failure (a full disk) can still be told from the step's own by walking it.

use std::io;
use std::path::PathBuf;

use super::emulation::EmulationError;
use super::layers::LayerError;
use super::sandbox::SandboxError;
use crate::store::StoreError;

/// The cause of a failed step, carried by [`super::BuildError::Step`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepFailure {
    /// The step's command ran and exited non-zero, or was killed (code 128 + the signal, the
    /// shell's convention).
    #[error("{} exited with code {code}", command.as_deref().unwrap_or("the command"))]
    Exited {
        /// Which command of a plain `a && b && c` script failed: "command 2 of 3 (`b`)".
        command: Option<String>,
        code: i32,
    },
    /// This machine cannot run sandboxed steps at all (no overlay, no user namespaces…).
    #[error("cannot run steps here")]
    SandboxUnavailable(#[source] crate::exec::sandbox::Unavailable),
    /// The sandbox failed around the command (its setup, the exec, reading its changes).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A `run` step of another platform whose emulator cannot be used.
    #[error(transparent)]
    Emulation(#[from] EmulationError),
    /// The default network needs `slirp4netns`, which this machine lacks.
    #[error(
        "the default network of a `run` step is a private network namespace, which needs \
         `slirp4netns` (Debian/Ubuntu: apt-get install slirp4netns); or give the step \
         `network \"host\"` (its network is then the host's) or `network \"none\"`"
    )]
    NoSlirp4netns,
    #[error("secret `{id}` is required; pass it with `--secret id={id},src=FILE`")]
    SecretMissing { id: String },
    #[error("cannot read secret `{id}`")]
    SecretUnreadable {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "ssh agent `{id}` is required; pass it with `--ssh {id}` (the agent of SSH_AUTH_SOCK) \
         or `--ssh {id}=SOCKET`"
    )]
    SshAgentMissing { id: String },
    #[error("cannot forward ssh agent `{id}` (`{}`)", agent.display())]
    SshForward {
        id: String,
        agent: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the cache folder for `{id}`")]
    CacheFolder {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock the cache `{id}`")]
    CacheLock {
        id: String,
        #[source]
        source: io::Error,
    },
    /// The files a `bind` mount shows could not be laid out.
    #[error("cannot prepare bind `{path}`")]
    Bind {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The stage a `bind from=` mount shows could not be read from the store.
    #[error("cannot read the stage of bind `{path}`")]
    BindStage {
        path: String,
        #[source]
        source: LayerError,
    },
    #[error("cannot copy `{path}` for a writable bind")]
    WritableBindCopy {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The file through which a `&&` chain marks its progress could not be written.
    #[error("cannot write the marks file")]
    Marks(#[source] io::Error),
    /// The step's scratch folders could not be made in the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be read or written, or a `copy`, `file` or `workdir` step's entries
    /// could not be made.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

impl StepFailure {
    /// The command's exit code, when it ran and exited non-zero.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Exited { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Which command of a `a && b && c` script failed: "command 2 of 3 (`b`)".
    pub(crate) fn failed_command(&self) -> Option<&str> {
        match self {
            Self::Exited { command, .. } => command.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{error_chain, is_machine_error};

    #[test]
    fn exit_messages_name_the_failed_command() {
        let whole = StepFailure::Exited { command: None, code: 7 };
        assert_eq!(whole.to_string(), "the command exited with code 7");
        let part = StepFailure::Exited { command: Some("command 2 of 3 (`b`)".into()), code: 1 };
        assert_eq!(part.to_string(), "command 2 of 3 (`b`) exited with code 1");
        assert_eq!(
            (part.exit_code(), part.failed_command()),
            (Some(1), Some("command 2 of 3 (`b`)"))
        );
    }

    #[test]
    fn the_chain_keeps_the_cause() {
        let e = StepFailure::SecretUnreadable {
            id: "token".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(error_chain(&e), "cannot read secret `token`: no such file");
        assert_eq!(e.exit_code(), None);
    }

    #[test]
    fn a_full_disk_is_the_machine_s_failure() {
        let full =
            StepFailure::Bind { path: "/src".into(), source: io::Error::from_raw_os_error(28) };
        assert!(is_machine_error(&full));
        let missing = StepFailure::Bind {
            path: "/src".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(!is_machine_error(&missing));
    }
}
