//! Registries end to end: pull a base from a local reference registry, pin it in
//! `stack.lock`, push the result, and stay reproducible when the tag moves.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{busybox_base, have, project, run_stack, skip, stderr, stdout, write_files};

pub(crate) struct Registry {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Option<Self> {
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
            "version: 0.1\nlog:\n  level: error\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
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
        Some(Self { child, port, dir })
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps what it was sent.
    pub(crate) fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn skopeo_copy(from: &str, to: &str) {
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

pub(crate) fn registry_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

/// A project whose image `app` copies `hello.txt` onto `HOST/base:1` and is tagged with each
/// of `repos` on that registry.
fn app_on(host: &str, repos: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tags: Vec<String> = repos.iter().map(|r| format!("\"{host}/{r}\"")).collect();
    let kdl = format!(
        "stack version=1\nimage app {{\n    from \"{host}/base:1\"\n    copy \"hello.txt\" to=\"/srv/\"\n    tag {}\n}}\n",
        tags.join(" ")
    );
    write_files(dir.path(), &[("hello.txt", "hello\n"), ("stack.kdl", &kdl)]);
    dir
}

#[test]
fn pull_lock_push_and_stay_reproducible_when_the_tag_moves() {
    let Some(base) = busybox_base() else { return };
    let Some(reg) = Registry::start() else { return };
    let host = reg.host();
    skopeo_copy(&format!("oci:{}:base", base.display()), &format!("docker://{host}/base:1"));

    let dir = app_on(&host, &["team/app:1", "team/app:latest"]);
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

    // A re-push sends nothing: both tags already name the image.
    let again = run_stack(dir.path(), &cache, &["build", "--push"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!("unchanged {host}/team/app:latest@{digest}")),
        "{}",
        stderr(&again)
    );

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
    assert!(
        stderr(&relock).contains("(0 added, 1 changed, 0 no longer used"),
        "{}",
        stderr(&relock)
    );
    assert_ne!(std::fs::read_to_string(dir.path().join("stack.lock")).unwrap(), lock);
    // An entry nothing uses any more is dropped; one of another platform is kept.
    let lock_file = dir.path().join("stack.lock");
    let stale = "image \"example.invalid/gone:1\" platform=\"linux/amd64\" digest=\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let other = "image \"example.invalid/gone:1\" platform=\"linux/s390x\" digest=\"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\n";
    let here_stale = if cfg!(target_arch = "aarch64") {
        stale.replace("amd64", "arm64")
    } else {
        stale.to_owned()
    };
    let text = std::fs::read_to_string(&lock_file).unwrap() + &here_stale + other;
    std::fs::write(&lock_file, text).unwrap();
    let pruned = run_stack(dir.path(), &fresh_cache, &["lock"]);
    assert!(stderr(&pruned).contains("1 no longer used and dropped"), "{}", stderr(&pruned));
    let text = std::fs::read_to_string(&lock_file).unwrap();
    assert!(!text.contains("0000000000") && text.contains("linux/s390x"), "{text}");
    let again = run_stack(dir.path(), &fresh_cache, &["lock"]);
    assert!(stderr(&again).contains("stack.lock is up to date"), "{}", stderr(&again));
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
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"{}/nothing/here:1\"\n}}\n",
        reg.host()
    ));
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

/// A network namespace of our own with `10.9.9.9` on its loopback device: a registry there
/// is not on a loopback address, so stack speaks HTTPS to it (as to any real registry).
struct PrivateNet {
    holder: Child,
}

impl PrivateNet {
    const IP: &str = "10.9.9.9";

    fn start() -> Option<Self> {
        if !rustix::process::geteuid().is_root() || !have("nsenter") || !have("openssl") {
            skip("needs root, nsenter and openssl (apt-get install openssl) for a TLS registry");
            return None;
        }
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "/bin/sh", "-c"])
            .arg(format!(
                "busybox ip link set lo up && busybox ip addr add {}/32 dev lo && echo ready && exec sleep 600",
                Self::IP
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "could not set up the private network");
        Some(PrivateNet { holder })
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-n", "--", program]);
        c
    }
}

impl Drop for PrivateNet {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: the CA, the registry, then each way of trusting it"
)]
fn a_tls_registry_with_its_own_ca_is_trusted_through_ssl_cert_file_or_certs_d() {
    let Some(base) = busybox_base() else { return };
    if !Path::new("/usr/bin/docker-registry").exists() || !have("skopeo") {
        return skip(
            "docker-registry or skopeo is missing (apt-get install docker-registry skopeo)",
        );
    }
    let Some(net) = PrivateNet::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA of our own and a certificate for 10.9.9.9 that it signed.
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=stack test CA"]);
    openssl(d, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=10.9.9.9"]);
    openssl(d, &csr);
    std::fs::write(
        d.join("ext.cnf"),
        format!(
            "subjectAltName=IP:{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            PrivateNet::IP
        ),
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let host = format!("{}:5443", PrivateNet::IP);
    std::fs::write(
        d.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n  tls:\n    certificate: {}\n    key: {}\n",
            d.join("data").display(),
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    let mut registry = net
        .command("/usr/bin/docker-registry")
        .arg("serve")
        .arg(d.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = || {
        net.command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{}/5443", PrivateNet::IP)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let start = Instant::now();
    while !up() {
        assert!(start.elapsed() < Duration::from_secs(20), "the TLS registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    write_files(
        d,
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    env TLS=\"1\"\n}}\n",
                base.display()
            ),
        )],
    );
    let built = run_stack(d, &d.join("cache"), &["build"]);
    assert!(built.status.success(), "{}", stderr(&built));
    let digest = stdout(&built).split_whitespace().nth(1).unwrap().to_owned();
    let target = format!("{host}/tls/app:1");
    let stack_in_net = |home: &str, cert_file: Option<&Path>, args: &[&str]| {
        let mut c = net.command(env!("CARGO_BIN_EXE_stack"));
        c.args(args)
            .current_dir(d)
            .env("STACK_CACHE_DIR", d.join("cache"))
            .env("HOME", d.join(home))
            .env("XDG_CONFIG_HOME", d.join(home).join(".config"))
            .env("DOCKER_CONFIG", d.join(home).join(".docker"))
            .env("NO_COLOR", "1")
            .env_remove("SSL_CERT_DIR");
        match cert_file {
            Some(f) => c.env("SSL_CERT_FILE", f),
            None => c.env_remove("SSL_CERT_FILE"),
        };
        c.output().unwrap()
    };

    // Not trusted: a clear TLS error that names the registry and where a CA goes.
    let refused = stack_in_net("plain", None, &["push", "app", &target]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(err.contains("TLS failed") && err.contains(&host), "{err}");
    assert!(err.contains("certs.d"), "says where the CA goes: {err}");
    println!("untrusted: {err}");

    // SSL_CERT_FILE (a bundle with the CA) is the system's trust store.
    let pushed = stack_in_net("plain", Some(&d.join("ca.pem")), &["push", "app", &target]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    // The CA in the user's certs.d folder for that host: a pull (a build from it) works.
    let certs = d.join("user/.config/containers/certs.d").join(&host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(d.join("ca.pem"), certs.join("ca.crt")).unwrap();
    write_files(
        d,
        &[(
            "pull/stack.kdl",
            &format!("stack version=1\nimage again {{\n    from \"{target}\"\n}}\n"),
        )],
    );
    let pulled = stack_in_net("user", None, &["build", "pull/stack.kdl", "--out", "pulled"]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));

    // skopeo, told about the CA, sees the digest stack computed.
    let out = net
        .command("skopeo")
        .args(["inspect", "--cert-dir", certs.to_str().unwrap(), &format!("docker://{target}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);

    // A CA file that is not one is named, not skipped.
    std::fs::write(certs.join("broken.crt"), "not a certificate").unwrap();
    let broken = stack_in_net("user", None, &["push", "app", &target]);
    assert_eq!(broken.status.code(), Some(4), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("broken.crt"), "{}", stderr(&broken));
    println!("broken CA file: {}", stderr(&broken));
    let _ = registry.kill();
    let _ = registry.wait();
}

/// `stack verify --against` a registry reference: the image CI pushed is checked against a
/// rebuild from nothing.
#[test]
fn verify_against_a_pushed_image_says_identical() {
    let Some(base) = busybox_base() else { return };
    let Some(reg) = Registry::start() else { return };
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/etc/motd\" \"hi\\n\"\n}}\n",
        base.display()
    ));
    let cache = dir.path().join("cache");
    let out = run_stack(dir.path(), &cache, &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = format!("{}/ci/app:1", reg.host());
    let out = run_stack(dir.path(), &cache, &["push", "app", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_stack(dir.path(), &cache, &["verify", "--against", &target]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("app: identical sha256:"), "{}", stdout(&out));
    assert!(
        !dir.path().join("stack.lock").exists()
            || !std::fs::read_to_string(dir.path().join("stack.lock")).unwrap().contains("ci/app"),
        "the compared image is not pinned"
    );
}

#[test]
fn pushing_to_another_repository_of_the_registry_mounts_the_blobs() {
    let Some(base) = busybox_base() else { return };
    let Some(reg) = Registry::start() else { return };
    let host = reg.host();
    skopeo_copy(&format!("oci:{}:base", base.display()), &format!("docker://{host}/base:1"));
    let dir = app_on(&host, &["team/a:1", "team/b:1"]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--push"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = |repo: &str| {
        err.lines()
            .find(|l| l.starts_with(&format!("pushed {host}/team/{repo}:1@")))
            .unwrap_or_else(|| panic!("{err}"))
            .to_owned()
    };
    // The base's layer comes from `base`; the config and the new layer are uploaded once.
    assert!(line("a").ends_with("(2 blob(s) uploaded, 0 already there, 1 mounted)"), "{err}");
    // The second repository gets everything from the first: no upload at all.
    assert!(line("b").ends_with("(0 blob(s) uploaded, 0 already there, 3 mounted)"), "{err}");
    assert_eq!(
        registry_digest(&format!("{host}/team/b:1")),
        registry_digest(&format!("{host}/team/a:1"))
    );
}
