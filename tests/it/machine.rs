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

#[test]
fn a_full_disk_names_enospc_and_has_its_own_exit_code() {
    let Some(disk) = SmallDisk::mount() else { return };
    let dir = project(
        "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"big\" to=\"/big\"\n}\n",
    );
    // Random bytes do not compress: the layer cannot fit in 2 MiB.
    let mut big = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut big {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.path().join("big"), big).unwrap();
    let out =
        run_stack(dir.path(), &disk.0.path().join("store"), &["build", "--progress", "plain"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("this is the machine, not the build file"), "{err}");
    assert!(!err.contains("step-failed"), "the step was blamed: {err}");
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
}
