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
        Self::start_with(None)
    }

    /// A registry that wants Basic auth with this `htpasswd` line when given.
    fn start_with(htpasswd: Option<&str>) -> Option<Self> {
        if !Path::new("/usr/bin/docker-registry").exists() || !have("skopeo") {
            skip("docker-registry or skopeo is missing (apt-get install docker-registry skopeo)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(line) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, line).unwrap();
            config += "auth:\n  htpasswd:\n    realm: stack-test\n    path: ";
            config += &path.display().to_string();
            config += "\n";
        }
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

/// A credential helper in the Docker protocol: `store` keeps the JSON it is given, `get`
/// answers with it (and notes which server was asked), `erase` forgets it.
const FAKE_HELPER: &str = r#"#!/bin/sh
dir="$(dirname "$0")"
case "$1" in
  store) cat > "$dir/stored.json" ;;
  get)
    read -r server
    echo "$server" >> "$dir/asked"
    if [ -f "$dir/stored.json" ]; then cat "$dir/stored.json"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f "$dir/stored.json" ;;
  *) exit 2 ;;
esac
"#;

#[test]
fn login_and_push_go_through_a_credential_helper() {
    let Some(base) = busybox_base() else { return };
    if !have("htpasswd") {
        return skip("htpasswd is missing (apt-get install apache2-utils)");
    }
    let line = Command::new("htpasswd").args(["-Bbn", "alice", "s3cret-pw"]).output().unwrap();
    let Some(reg) = Registry::start_with(Some(&String::from_utf8_lossy(&line.stdout))) else {
        return;
    };
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    write_files(
        dir.path(),
        &[
            ("bin/docker-credential-stacktest", FAKE_HELPER),
            ("docker/config.json", r#"{"credsStore": "stacktest", "experimental": "kept"}"#),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    env MADE_BY=\"stack\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
    std::fs::set_permissions(
        bin.join("docker-credential-stacktest"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let stack_with_helper = |args: &[&str], stdin: &str| {
        let mut child = crate::support::stack()
            .args(args)
            .current_dir(dir.path())
            .env("STACK_CACHE_DIR", dir.path().join("cache"))
            .env("DOCKER_CONFIG", dir.path().join("docker"))
            .env("PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let built = stack_with_helper(&["build"], "");
    assert!(built.status.success(), "{}", stderr(&built));
    let digest = stdout(&built).split_whitespace().nth(1).unwrap().to_owned();
    let target = format!("{host}/private/app:1");

    // The helper has nothing yet: the registry refuses, and the error says what to do.
    let refused = stack_with_helper(&["push", "app", &target], "");
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("stack login"), "{}", stderr(&refused));

    let wrong = stack_with_helper(&["login", &host, "-u", "alice", "--password-stdin"], "nope\n");
    assert_eq!(wrong.status.code(), Some(4), "a wrong password is checked before it is stored");
    let err = stderr(&wrong);
    assert!(err.contains("refused the credentials of `alice`"), "{err}");
    assert!(err.contains("nothing was stored") && !err.contains("nope"), "{err}");
    assert!(!bin.join("stored.json").exists());
    let login =
        stack_with_helper(&["login", &host, "-u", "alice", "--password-stdin"], "s3cret-pw\n");
    assert!(login.status.success(), "{}", stderr(&login));
    // The secret went to the helper, not into config.json (whose other fields are kept).
    let stored = std::fs::read_to_string(bin.join("stored.json")).unwrap();
    assert!(stored.contains("s3cret-pw") && stored.contains("alice"), "{stored}");
    let config = std::fs::read_to_string(dir.path().join("docker/config.json")).unwrap();
    assert!(!config.contains("s3cret-pw") && config.contains("experimental"), "{config}");

    let pushed = stack_with_helper(&["push", "app", &target], "");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(std::fs::read_to_string(bin.join("asked")).unwrap().lines().any(|l| l == host));
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", "alice:s3cret-pw"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);
}
