//! Registries end to end: pull a base from a local reference registry, pin it in
//! `stack.lock`, push the result, and stay reproducible when the tag moves.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{busybox_base, have, run_stack, skip, stderr, stdout, write_files};

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Self> {
        if !Path::new("/usr/bin/docker-registry").exists() || !have("skopeo") {
            skip("docker-registry or skopeo is missing (apt-get install docker-registry skopeo)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the registry did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
        Some(Self { child, port, _dir: dir })
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", from, to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn registry_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

#[test]
fn pull_lock_push_and_stay_reproducible_when_the_tag_moves() {
    let Some(base) = busybox_base() else { return };
    let Some(reg) = Registry::start() else { return };
    let host = reg.host();
    skopeo_copy(&format!("oci:{}:base", base.display()), &format!("docker://{host}/base:1"));

    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("hello.txt", "hello\n"),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\nimage app {{\n    from \"{host}/base:1\"\n    copy \"hello.txt\" to=\"/srv/\"\n    tag \"{host}/team/app:1\" \"{host}/team/app:latest\"\n}}\n"
                ),
            ),
        ],
    );
    let cache = dir.path().join("cache");
    let first = run_stack(dir.path(), &cache, &["build", "--push"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let digest =
        stdout(&first).lines().next().unwrap().split_whitespace().nth(1).unwrap().to_owned();
    let lock = std::fs::read_to_string(dir.path().join("stack.lock")).unwrap();
    assert!(lock.contains(&format!("{host}/base:1")), "{lock}");
    // The registry serves exactly the digest stack computed, under both tags.
    assert_eq!(registry_digest(&format!("{host}/team/app:1")), digest);
    assert_eq!(registry_digest(&format!("{host}/team/app:latest")), digest);

    // A re-push uploads nothing.
    let again = run_stack(dir.path(), &cache, &["build", "--push"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("0 blob(s) uploaded"), "{}", stderr(&again));

    // The tag moves to another image; the locked build does not move.
    write_files(
        dir.path(),
        &[(
            "other/stack.kdl",
            &format!(
                "stack version=1\nimage other {{\n    from \"oci:{}:base\"\n    env MOVED=\"1\"\n}}\n",
                base.display()
            ),
        )],
    );
    let other = run_stack(&dir.path().join("other"), &cache, &["build"]);
    assert!(other.status.success(), "{}", stderr(&other));
    skopeo_copy(
        &format!("oci:{}:other", dir.path().join("other/stack-out").display()),
        &format!("docker://{host}/base:1"),
    );
    let fresh_cache = dir.path().join("cache2");
    let locked = run_stack(dir.path(), &fresh_cache, &["build", "--locked", "--out", "out2"]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    assert_eq!(
        stdout(&locked).lines().next().unwrap().split_whitespace().nth(1).unwrap(),
        digest,
        "pinned base, same image"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stack.lock")).unwrap(),
        lock,
        "the lock is untouched"
    );

    // `stack lock` follows the tag; then the image changes.
    let relock = run_stack(dir.path(), &fresh_cache, &["lock"]);
    assert!(relock.status.success(), "{}", stderr(&relock));
    assert_ne!(std::fs::read_to_string(dir.path().join("stack.lock")).unwrap(), lock);
    let moved = run_stack(dir.path(), &fresh_cache, &["build", "--out", "out3"]);
    assert_ne!(stdout(&moved).lines().next().unwrap().split_whitespace().nth(1).unwrap(), digest);

    // `--locked` refuses a reference the lock does not pin.
    std::fs::remove_file(dir.path().join("stack.lock")).unwrap();
    let refused = run_stack(dir.path(), &fresh_cache, &["build", "--locked", "--out", "out4"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("stack lock"), "{}", stderr(&refused));
}

#[test]
fn a_missing_image_names_the_registry_and_status() {
    let Some(reg) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    from \"{}/nothing/here:1\"\n}}\n",
                reg.host()
            ),
        )],
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&reg.host()) && err.contains("nothing/here"), "{err}");
    assert!(err.contains("404") || err.contains("not found") || err.contains("unknown"), "{err}");
}
