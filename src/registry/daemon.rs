//! Images from a local Docker (or podman) daemon's image store, read through the Engine API
//! on its Unix socket, like skopeo's `docker-daemon:` transport: `GET /images/NAME/json` says
//! whether the daemon has it, `GET /images/NAME/get` streams it as a `docker save` archive.
//!
//! The daemon is trusted no more than a registry: the archive goes through the same verified
//! loading as any local archive.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why an image could not be had from the daemon.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error("no Docker or podman daemon answers (tried {tried})")]
    NoDaemon { tried: String },
    #[error("the daemon at `{}` has no image `{name}`", socket.display())]
    NotFound { socket: PathBuf, name: String },
    #[error("the daemon at `{}` answered `{status}` for `{name}`", socket.display())]
    Refused { socket: PathBuf, name: String, status: String },
    #[error("cannot read `{name}` from the daemon at `{}`", socket.display())]
    Io {
        socket: PathBuf,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The sockets to try, in order: `DOCKER_HOST` when it names a Unix socket, Docker's default,
/// then podman's (rootless, then root).
pub(crate) fn sockets() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && let Some(path) = host.strip_prefix("unix://")
    {
        out.push(PathBuf::from(path));
    }
    out.push(PathBuf::from("/var/run/docker.sock"));
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(Path::new(&run).join("podman/podman.sock"));
    }
    out.push(PathBuf::from("/run/podman/podman.sock"));
    out
}

/// The first daemon socket that holds image `name`.
pub(crate) fn find(name: &str) -> Result<PathBuf, DaemonError> {
    let mut answered = None;
    for socket in sockets().into_iter().filter(|s| s.exists()) {
        match request(&socket, &format!("/images/{}/json", path_segment(name)), name) {
            Ok((200, _)) => return Ok(socket),
            Ok(_) => answered = Some(socket),
            Err(_) => {}
        }
    }
    Err(match answered {
        Some(socket) => DaemonError::NotFound { socket, name: name.to_owned() },
        None => DaemonError::NoDaemon {
            tried: sockets().iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(", "),
        },
    })
}

/// Saves image `name` from the daemon at `socket` into the file `dest` (a `docker save`
/// archive).
pub(crate) fn save(socket: &Path, name: &str, dest: &Path) -> Result<(), DaemonError> {
    let io_err =
        |source| DaemonError::Io { socket: socket.to_owned(), name: name.to_owned(), source };
    let (status, mut body) = request(socket, &format!("/images/{}/get", path_segment(name)), name)?;
    if status != 200 {
        return Err(DaemonError::Refused {
            socket: socket.to_owned(),
            name: name.to_owned(),
            status: status.to_string(),
        });
    }
    let mut file = fs_err::File::create(dest).map_err(io_err)?;
    io::copy(&mut body, &mut file).map_err(io_err)?;
    file.flush().map_err(io_err)
}

/// One HTTP/1.0 GET over the Unix socket (the daemon then closes the connection after the
/// body, so no chunked encoding is involved): the status and a reader over the body.
fn request(
    socket: &Path,
    path: &str,
    name: &str,
) -> Result<(u16, BufReader<UnixStream>), DaemonError> {
    let io_err =
        |source| DaemonError::Io { socket: socket.to_owned(), name: name.to_owned(), source };
    let mut stream = UnixStream::connect(socket).map_err(io_err)?;
    // Generous: `docker save` of a large image takes a while to start streaming.
    stream.set_read_timeout(Some(Duration::from_mins(5))).map_err(io_err)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io_err)?;
    let status =
        line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| {
            io_err(io::Error::other(format!("not an HTTP answer: `{}`", line.trim())))
        })?;
    // Skip the headers, up to the blank line.
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io_err)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    Ok((status, reader))
}

/// `name` as one URL path segment run (the API's route takes slashes and colons as they are).
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b':' | b'.' | b'-' | b'_' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn names_become_path_segments() {
        assert_eq!(path_segment("localhost:5000/a/b:1.0"), "localhost:5000/a/b:1.0");
        assert_eq!(path_segment("a b"), "a%20b");
    }

    #[test]
    fn a_fake_daemon_answers_over_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                // Read the whole request head, however the client's writes were split.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                let req = String::from_utf8_lossy(&head).into_owned();
                let answer = if i == 0 {
                    assert!(req.starts_with("GET /images/app:dev/json "), "{req}");
                    "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such image"
                } else {
                    assert!(req.starts_with("GET /images/app:dev/get "), "{req}");
                    "HTTP/1.0 200 OK\r\nContent-Type: application/x-tar\r\n\r\nTARBYTES"
                };
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let (status, _) = request(&socket, "/images/app:dev/json", "app:dev").unwrap();
        assert_eq!(status, 404);
        let dest = dir.path().join("out.tar");
        save(&socket, "app:dev", &dest).unwrap();
        assert_eq!(fs_err::read(&dest).unwrap(), b"TARBYTES");
    }
}
