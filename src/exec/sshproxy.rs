//! Forwarding an SSH agent into a `run` step, as `BuildKit` does: the step gets a socket of its
//! own (with the mode and owner its `ssh` mount asks for) that relays every connection to the
//! agent socket given on the command line. The agent's keys never leave the agent, and the
//! host's socket path and permissions never reach the step.
//!
//! Invariant: a proxy relays only to the one agent socket it was made for, and stops
//! accepting (its socket removed) when dropped, which happens when the step ends.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A listening socket that relays to an agent; see the module doc.
pub(super) struct SshProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accepter: Option<JoinHandle<()>>,
    // Removed after the accepting thread has stopped (field order: dropped last).
    _dir: tempfile::TempDir,
}

impl SshProxy {
    /// Listens on a fresh socket (`mode`, `uid`:`gid`) that relays to `agent`.
    pub(super) fn start(agent: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<SshProxy> {
        let md = fs_err::metadata(agent)?;
        if !md.file_type().is_socket() {
            return Err(io::Error::other(
                "it is not a socket (stack forwards an agent, not a key file)",
            ));
        }
        // The system's temp folder keeps the path short: a socket path has at most 107 bytes.
        let dir = tempfile::Builder::new().prefix("stack-ssh-").tempdir()?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        // Only root (on the host or of stack's user namespace) can give the socket away; an
        // unprivileged build runs its steps as root anyway.
        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        // The step reaches the socket through bind mounts; the folder only needs to be
        // traversable.
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_owned();
        let stopping = Arc::clone(&stop);
        let accepter = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(client) = client {
                    let agent = agent.clone();
                    std::thread::spawn(move || relay(client, &agent));
                }
            }
        });
        Ok(SshProxy { path, stop, accepter: Some(accepter), _dir: dir })
    }

    /// The socket to bind into the step.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SshProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so it sees `stop`.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accepter.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways between a step's connection and a new connection to the agent, until
/// either side closes.
fn relay(client: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else { return };
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let requests = std::thread::spawn(move || {
        let _ = io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = io::copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(std::net::Shutdown::Write);
    let _ = requests.join();
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Write};

    use super::*;

    /// A stand-in agent: answers each line with `agent: <line>`.
    fn fake_agent(path: &Path) -> JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(2) {
                let conn = conn.unwrap();
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    for line in io::BufReader::new(conn).lines() {
                        let _ = writeln!(out, "agent: {}", line.unwrap());
                    }
                });
            }
        })
    }

    #[test]
    fn relays_each_connection_to_the_agent_and_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        let _agent = fake_agent(&agent);
        let proxy = SshProxy::start(&agent, 0o600, 0, 0).unwrap();
        let md = fs_err::metadata(proxy.path()).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        for word in ["one", "two"] {
            let mut c = UnixStream::connect(proxy.path()).unwrap();
            writeln!(c, "{word}").unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            io::Read::read_to_string(&mut c, &mut answer).unwrap();
            assert_eq!(answer, format!("agent: {word}\n"));
        }
        let path = proxy.path().to_owned();
        drop(proxy);
        assert!(!path.exists(), "the socket goes with the proxy");
    }

    #[test]
    fn a_key_file_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        fs_err::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----").unwrap();
        let err = SshProxy::start(&key, 0o600, 0, 0).err().unwrap();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
