//! Failures that are not the build file's: a full disk is never blamed on a step, and a
//! registry that cannot be reached has the registry exit code.

use std::process::Command;

use crate::support::{project, run_stack, skip, stderr};

/// A 2 MiB tmpfs, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip("cannot mount a small tmpfs (needs root)");
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// `len` bytes that do not compress.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes
}

#[test]
fn a_full_disk_names_enospc_and_has_its_own_exit_code() {
    let Some(disk) = SmallDisk::mount() else { return };
    let dir = project(
        "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"big\" to=\"/big\"\n}\n",
    );
    // Random bytes do not compress: the layer cannot fit in 2 MiB.
    std::fs::write(dir.path().join("big"), random_bytes(4 << 20)).unwrap();
    let out =
        run_stack(dir.path(), &disk.0.path().join("store"), &["build", "--progress", "plain"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("this is the machine, not the build file"), "{err}");
    assert!(!err.contains("step-failed"), "the step was blamed: {err}");
}

/// A plain HTTP server on loopback serving a folder (Python's), stopped when dropped.
struct FileServer(std::process::Child, u16);

impl FileServer {
    fn serve(dir: &std::path::Path) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Self(child, port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_full_disk_while_planning_is_the_machine_not_the_build_file() {
    let Some(disk) = SmallDisk::mount() else { return };
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("big.bin"), random_bytes(4 << 20)).unwrap();
    let Some(server) = FileServer::serve(served.path()) else {
        return skip("cannot serve files over HTTP on loopback (python3 -m http.server)");
    };
    // `add` downloads into the store while planning: the 4 MiB file cannot fit in 2 MiB.
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"scratch\"\n    add \"http://127.0.0.1:{}/big.bin\" to=\"/big.bin\"\n}}\n",
        server.1
    ));
    let out =
        run_stack(dir.path(), &disk.0.path().join("store"), &["build", "--progress", "plain"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("os error 28"), "{err}");
    assert!(err.contains("stack::machine") && err.contains("not the build file"), "{err}");
    assert!(!err.contains("remote-source-failed"), "the build file was blamed: {err}");
}

#[test]
fn a_refused_registry_exits_with_the_registry_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir =
        project(&format!("stack version=1\nimage app {{\n    from \"127.0.0.1:{port}/x:1\"\n}}\n"));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("stack::base-unreachable") && err.contains("connection refused"), "{err}");
    // A build file with a real mistake as well is the build file's problem first.
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"127.0.0.1:{port}/x:1\"\n    cpy \"a\" to=\"/\"\n}}\n"
    ));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A download server that refuses is the network too, not the build file.
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"scratch\"\n    add \"http://127.0.0.1:{port}/f.tar\" to=\"/f.tar\"\n}}\n"
    ));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("stack::remote-unreachable") && err.contains("connection refused"),
        "{err}"
    );
}
