//! The fleet cache end to end: two stores stand for two machines sharing a step cache in the
//! reference registry (Debian's `docker-registry`) on loopback, with a proxy in front that
//! counts requests or injects faults.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::registry::Registry;
use crate::support::{busybox_base, run_stack, sandbox_ready, stderr, stdout, write_files};

/// What the proxy does to the requests it relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Send half of the body, then close.
    Truncate,
    /// Flip bytes of the body.
    Corrupt,
}

/// A one-request-per-connection HTTP proxy to the registry that logs request lines and
/// applies its fault to every `every`-th request.
pub(crate) struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16, fault: Fault, every: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (l, count) = (Arc::clone(&l), Arc::clone(&count));
                std::thread::spawn(move || {
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    let fault = if every > 0 && n % every == 0 { fault } else { Fault::None };
                    let _ = relay(conn, upstream, fault, &l);
                });
            }
        });
        Self { port, log }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Reads one request from `client`, forwards it, and answers (or not, by `fault`).
fn relay(
    mut client: TcpStream,
    upstream: u16,
    fault: Fault,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    client.read_exact(&mut body)?;
    log.lock().unwrap().push(text.lines().next().unwrap_or("").to_owned());
    match fault {
        Fault::Drop => return Ok(()),
        Fault::Status(code) => {
            let auth = if code == 401 { "WWW-Authenticate: Basic realm=\"x\"\r\n" } else { "" };
            let reply = format!(
                "HTTP/1.1 {code} Fault\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return client.write_all(reply.as_bytes());
        }
        _ => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut request = text.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(&body);
    up.write_all(&request)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let split =
        response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
    let (rhead, rbody) = response.split_at(split);
    let rhead = String::from_utf8_lossy(rhead).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    let mut rbody = rbody.to_vec();
    match fault {
        Fault::Truncate if !rbody.is_empty() => rbody.truncate(rbody.len() / 2),
        Fault::Corrupt => rbody.iter_mut().step_by(7).for_each(|b| *b ^= 0x55),
        _ => {}
    }
    client.write_all(rhead.as_bytes())?;
    client.write_all(&rbody)
}

/// A monorepo of three services on one shared stage, like the bench's w4.
fn monorepo(base: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut kdl = format!(
        "stack version=1\nstage common {{\n    from \"oci:{}:base\"\n    copy \"lib/\" to=\"/opt/lib/\"\n    run \"ls /opt/lib | wc -l > /opt/lib.count\"\n}}\n",
        base.display()
    );
    let mut files = vec![("lib/a.txt".to_owned(), "lib a\n".to_owned())];
    for s in 1..=3 {
        let _ = write!(
            kdl,
            "image svc{s} {{\n    from common\n    copy \"svc{s}/\" to=\"/srv/\"\n    run \"cat /srv/*.txt | sha256sum > /srv.sum\"\n}}\n"
        );
        files.push((format!("svc{s}/main.txt"), format!("service {s}\n")));
    }
    files.push(("stack.kdl".to_owned(), kdl));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_files(dir.path(), &refs);
    dir
}

fn ready() -> Option<(std::path::PathBuf, Registry)> {
    if !sandbox_ready() {
        return None;
    }
    let base = busybox_base()?;
    Some((base, Registry::start()?))
}

/// The `NAME DIGEST` lines a build prints.
fn digests(out: &std::process::Output) -> String {
    stdout(out).lines().filter(|l| l.starts_with("svc")).collect::<Vec<_>>().join("\n")
}

fn build(dir: &Path, store: &Path, extra: &[&str]) -> std::process::Output {
    let out_dir = store.with_extension("out");
    let mut args = vec!["build", "--progress", "plain", "-o", out_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_stack(dir, store, &args);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    out
}

#[test]
fn a_second_machine_runs_no_step_and_pushes_no_layer() {
    let Some((base, registry)) = ready() else { return };
    let proxy = Proxy::start(registry.port, Fault::None, 0);
    let project = monorepo(&base);
    let stores = tempfile::tempdir().unwrap();
    let cache = format!("{}/team/cache", proxy.host());
    let a = build(project.path(), &stores.path().join("a"), &["--cache-to", &cache]);
    assert!(stderr(&a).contains("exported 8 step(s)"), "{}", stderr(&a));

    let b = build(project.path(), &stores.path().join("b"), &["--cache-from", &cache]);
    let text = stderr(&b);
    assert!(text.contains("0 step(s) run, 0 reused here, 8 from cache"), "{text}");
    assert_eq!(digests(&a), digests(&b), "machine B's images differ from A's");

    // One file changes: B runs only that service's two steps.
    write_files(project.path(), &[("svc2/main.txt", "service 2, changed\n")]);
    let b2 = build(project.path(), &stores.path().join("b"), &["--cache-from", &cache]);
    assert!(stderr(&b2).contains("2 step(s) run, 6 reused here"), "{}", stderr(&b2));

    // A fresh machine C pushes the images to the same registry: every layer is mounted from
    // the cache or already there, none is uploaded.
    write_files(project.path(), &[("svc2/main.txt", "service 2\n")]);
    let kdl = std::fs::read_to_string(project.path().join("stack.kdl")).unwrap();
    let tagged = (1..=3).fold(kdl, |k, s| {
        k.replace(
            &format!("image svc{s} {{\n"),
            &format!("image svc{s} {{\n    tag \"{}/team/svc{s}:1\"\n", proxy.host()),
        )
    });
    write_files(project.path(), &[("stack.kdl", &tagged)]);
    let before = proxy.requests().len();
    let c = build(project.path(), &stores.path().join("c"), &["--cache-from", &cache, "--push"]);
    assert!(stderr(&c).contains("0 step(s) run"), "{}", stderr(&c));
    let pushes: Vec<String> = proxy.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("PUT /v2/team/svc") || r.starts_with("PATCH /v2/team/svc"))
        .filter(|r| r.contains("/blobs/"))
        .cloned()
        .collect();
    // The layers the steps made were all mounted from the cache or found there; only configs
    // and the base's layer (from a local layout, never in a registry) may be uploaded.
    let step_layers = step_layers(&stores.path().join("c.out"));
    assert_eq!(step_layers.len(), 8);
    let layer_uploads: Vec<&String> =
        pushes.iter().filter(|p| step_layers.iter().any(|l| p.contains(l.as_str()))).collect();
    assert!(layer_uploads.is_empty(), "step layers were uploaded: {layer_uploads:#?}");
    let mounts = proxy.requests()[before..].iter().filter(|r| r.contains("mount=")).count();
    assert!(mounts > 0, "no blob was mounted from the cache");
    drop(registry);
}

#[test]
fn four_builds_write_one_cache_at_once() {
    let Some((base, registry)) = ready() else { return };
    let project = monorepo(&base);
    let stores = tempfile::tempdir().unwrap();
    let cache = format!("{}/cache", registry.host());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = stores.path().join(format!("n{i}"));
            crate::support::stack()
                .current_dir(project.path())
                .env("STACK_CACHE_DIR", &store)
                .args(["build", "--progress", "plain", "--no-cache", "--cache-to", &cache, "-o"])
                .arg(store.with_extension("out"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.wait_with_output().unwrap()).collect();
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
        assert!(!stderr(o).contains("warning:"), "{}", stderr(o));
        assert_eq!(digests(o), digests(&outs[0]));
    }
    let fresh = build(project.path(), &stores.path().join("fresh"), &["--cache-from", &cache]);
    assert!(stderr(&fresh).contains("0 step(s) run"), "{}", stderr(&fresh));
    assert_eq!(digests(&fresh), digests(&outs[0]));
    let du = run_stack(
        project.path(),
        &stores.path().join("x"),
        &["cache", "du", "--remote", &cache, "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&du.stdout).unwrap();
    assert_eq!(v["entries"], 8, "{v}");
}

#[test]
fn a_faulty_cache_never_fails_a_build_nor_corrupts_a_store() {
    let Some((base, registry)) = ready() else { return };
    let project = monorepo(&base);
    let stores = tempfile::tempdir().unwrap();
    let cache_path = "team/cache";
    let seed = build(
        project.path(),
        &stores.path().join("seed"),
        &["--cache-to", &format!("{}/{cache_path}", registry.host())],
    );
    let faults = [
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(401),
        Fault::Drop,
        Fault::Truncate,
        Fault::Corrupt,
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        for every in [1, 3] {
            let proxy = Proxy::start(registry.port, fault, every);
            let store = stores.path().join(format!("f{i}-{every}"));
            let cache = format!("{}/{cache_path}", proxy.host());
            let out = build(project.path(), &store, &["--cache-from", &cache]);
            assert_eq!(digests(&out), digests(&seed), "{fault:?} every {every}: other digests");
            let verify = run_stack(project.path(), &store, &["cache", "verify"]);
            assert!(verify.status.success(), "{fault:?}: {}", stdout(&verify));
            // A second build reuses whatever the first recorded, and agrees.
            let again = build(project.path(), &store, &["--cache-from", &cache]);
            assert_eq!(digests(&again), digests(&seed), "{fault:?} every {every}: second build");
        }
    }
}

#[test]
fn an_unreachable_cache_is_one_warning() {
    let Some((base, _registry)) = ready() else { return };
    let project = monorepo(&base);
    let store = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = format!("127.0.0.1:{port}/cache");
    let started = std::time::Instant::now();
    let out = build(project.path(), store.path(), &["--cache-from", &cache, "--cache-to", &cache]);
    let text = stderr(&out);
    assert_eq!(text.matches("warning: cache").count(), 1, "{text}");
    assert!(text.contains("8 step(s) run"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn an_entry_that_lies_about_its_layer_is_never_used() {
    let Some((base, registry)) = ready() else { return };
    let project = monorepo(&base);
    let stores = tempfile::tempdir().unwrap();
    let cache = format!("{}/cache", registry.host());
    let honest = build(project.path(), &stores.path().join("a"), &["--cache-to", &cache]);
    // Every entry with a layer now claims another diff id.
    let tags: serde_json::Value =
        serde_json::from_slice(&http(registry.port, "GET", "/v2/cache/tags/list", &[], b""))
            .unwrap();
    for tag in tags["tags"].as_array().unwrap() {
        let path = format!("/v2/cache/manifests/{}", tag.as_str().unwrap());
        let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
        let m = String::from_utf8(http(registry.port, "GET", &path, &accept, b"")).unwrap();
        let Some(at) = m.find("\"dev.stack.step.diff-id\":\"sha256:") else { continue };
        let start = at + "\"dev.stack.step.diff-id\":\"sha256:".len();
        let lie = format!("{}{}{}", &m[..start], "0".repeat(64), &m[start + 64..]);
        let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
        http(registry.port, "PUT", &path, &ct, lie.as_bytes());
    }
    let out = build(project.path(), &stores.path().join("b"), &["--cache-from", &cache]);
    assert_eq!(digests(&out), digests(&honest));
    assert!(stderr(&out).contains("unpacks to"), "{}", stderr(&out));
}

#[test]
fn secrets_never_reach_the_cache() {
    let Some((base, registry)) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kdl = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"wc -c /run/secrets/token > /size\" {{\n        secret \"token\"\n    }}\n}}\n",
        base.display()
    );
    write_files(dir.path(), &[("stack.kdl", &kdl)]);
    let store = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-value-that-must-stay-home";
    let cache = format!("{}/cache", registry.host());
    let out = crate::support::stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", store.path())
        .env("TOKEN", secret)
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=token,env=TOKEN",
            "--cache-to",
            &cache,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("exported"), "{}", stderr(&out));
    let mut scanned = 0;
    for entry in walk(&registry.data()) {
        let bytes = std::fs::read(&entry).unwrap();
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).is_err() {
            plain.clear();
        }
        for b in [&bytes, &plain] {
            assert!(
                !b.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret reached the cache in {}",
                entry.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned > 3);
}

#[test]
fn old_remote_entries_are_pruned() {
    let Some((base, registry)) = ready() else { return };
    let project = monorepo(&base);
    let store = tempfile::tempdir().unwrap();
    let cache = format!("{}/cache", registry.host());
    build(project.path(), store.path(), &["--cache-to", &cache]);
    // Back-date one entry to 2020, as if written then.
    let tags: serde_json::Value =
        serde_json::from_slice(&http(registry.port, "GET", "/v2/cache/tags/list", &[], b""))
            .unwrap();
    let tag = tags["tags"][0].as_str().unwrap().to_owned();
    let path = format!("/v2/cache/manifests/{tag}");
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
    let m = String::from_utf8(http(registry.port, "GET", &path, &accept, b"")).unwrap();
    let key = "\"org.opencontainers.image.created\":\"";
    let at = m.find(key).unwrap() + key.len();
    let old = format!("{}2020-01-01{}", &m[..at], &m[at + 10..]);
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    http(registry.port, "PUT", &path, &ct, old.as_bytes());

    let dry = run_stack(
        project.path(),
        store.path(),
        &["cache", "prune", "--remote", &cache, "--older-than", "30d", "--dry-run"],
    );
    assert!(stdout(&dry).contains("would delete 1 of 8 entries"), "{}", stdout(&dry));
    let real = run_stack(
        project.path(),
        store.path(),
        &["cache", "prune", "--remote", &cache, "--older-than", "30d"],
    );
    assert!(real.status.success(), "{}", stderr(&real));
    assert!(stdout(&real).contains("deleted 1 of 8 entries"), "{}", stdout(&real));
    let du =
        run_stack(project.path(), store.path(), &["cache", "du", "--remote", &cache, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&du.stdout).unwrap();
    assert_eq!(v["entries"], 7, "{v}");
}

/// The digests (`sha256%3A…`, as in a query string) of the layers above the base of every
/// image in an OCI layout.
fn step_layers(layout: &Path) -> Vec<String> {
    let read = |digest: &str| -> serde_json::Value {
        let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut found = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let manifest = read(m["digest"].as_str().unwrap());
        for l in &manifest["layers"].as_array().unwrap()[1..] {
            found.push(l["digest"].as_str().unwrap().replace(':', "%3A"));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else if e.file_type().unwrap().is_file() {
                files.push(e.path());
            }
        }
    }
    files
}

/// One plain HTTP/1.1 request to the registry; returns the body (asserting a 2xx answer).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = String::from_utf8_lossy(&resp[..split]).to_string();
    assert!(
        status.split(' ').nth(1).is_some_and(|c| c.starts_with('2')),
        "{method} {path}: {status}"
    );
    let (head, rest) = resp.split_at(split);
    if String::from_utf8_lossy(head).to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return dechunk(rest);
    }
    rest.to_vec()
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[test]
fn an_exported_cache_mount_travels_with_its_owners() {
    let Some((base, registry)) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kdl = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"echo built >> /var/cache/app/log && chown 1000:50 /var/cache/app/log && ls -ln /var/cache/app > /seen && cat /var/cache/app/log >> /seen\" {{\n        cache \"/var/cache/app\" id=\"app\" export=#true\n    }}\n}}\n",
        base.display()
    );
    write_files(dir.path(), &[("stack.kdl", &kdl)]);
    let stores = tempfile::tempdir().unwrap();
    let cache = format!("{}/cache", registry.host());
    let a = build(dir.path(), &stores.path().join("a"), &["--cache-to", &cache]);
    assert!(stderr(&a).contains("saved cache mount `app`"), "{}", stderr(&a));
    // Machine B runs the step again (`--no-cache`) over the cache A saved.
    let b = build(dir.path(), &stores.path().join("b"), &["--no-cache", "--cache-from", &cache]);
    assert!(stderr(&b).contains("restored cache mount `app`"), "{}", stderr(&b));
    let files = crate::support::image_files(&stores.path().join("b.out"), "app");
    let seen = String::from_utf8(files["seen"].clone().unwrap()).unwrap();
    let log_line: Vec<&str> =
        seen.lines().find(|l| l.ends_with(" log")).unwrap().split_whitespace().collect();
    assert_eq!((log_line[2], log_line[3]), ("1000", "50"), "owners lost: {seen}");
    assert_eq!(seen.matches("built").count(), 2, "A's content did not travel: {seen}");
}
