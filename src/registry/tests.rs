//! Integration tests against the reference registry (`/usr/bin/docker-registry`) on loopback,
//! with `skopeo` as an independent client, a test-written token server, and a fault-injecting
//! proxy. Nothing here leaves 127.0.0.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::oci::image::{Descriptor, OCI_CONFIG, OCI_MANIFEST, REF_NAME};
use crate::store::Store;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether the reference registry is here; prints the skip (or fails under
/// `STACK_REQUIRE_SANDBOX=1`) when it is not.
fn have_registry() -> bool {
    if Path::new(REGISTRY_BIN).is_file() {
        return true;
    }
    assert!(
        std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
        "docker-registry not installed and STACK_REQUIRE_SANDBOX=1"
    );
    println!("skipped: docker-registry not installed");
    false
}

fn have_skopeo() -> bool {
    if Path::new("/usr/bin/skopeo").is_file() {
        return true;
    }
    assert!(
        std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
        "skopeo not installed and STACK_REQUIRE_SANDBOX=1"
    );
    println!("skipped: skopeo not installed");
    false
}

/// A `docker-registry serve` child on a free loopback port.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(entry) = htpasswd {
            let path = dir.path().join("htpasswd");
            fs_err::write(&path, entry).unwrap();
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: stack-test\n    path: {}\n",
                path.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        fs_err::write(&config_path, config).unwrap();
        let log = fs_err::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log.into_parts().0)
            .spawn()
            .unwrap();
        let reg = Self { child, port, _dir: dir };
        wait_for_port(port);
        reg
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "registry on port {port} did not start");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn test_client() -> Client {
    Client::new(ClientOptions {
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        retries: 4,
        read_timeout: Duration::from_secs(20),
        credentials: CredentialSources {
            auth_file: None,
            docker_config: PathBuf::from("/nonexistent/config.json"),
        },
        ..ClientOptions::default()
    })
}

fn client_with(credentials: CredentialSources) -> Client {
    Client::new(ClientOptions { credentials, ..test_client().opts })
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// An image written into a store by test code.
struct TestImage {
    manifest: Vec<u8>,
    digest: OciDigest,
    blobs: Vec<Descriptor>,
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Builds a one-layer image (gzip or plain tar layer) in the store.
fn make_image(store: &Store, files: &[(&str, &[u8])], gzip: bool, label: &str) -> TestImage {
    let tar = tar_of(files);
    let diff_id = OciDigest::of(&tar);
    let (layer, mt) = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        (enc.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
    } else {
        (tar, "application/vnd.oci.image.layer.v1.tar")
    };
    let layer_digest = store.put_blob(&layer).unwrap();
    let config = serde_json::json!({
        "architecture": crate::oci::image::host_arch(),
        "os": "linux",
        "config": {"Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    let config_bytes = crate::json::to_canonical(&config);
    let config_digest = store.put_blob(&config_bytes).unwrap();
    let blobs = vec![
        Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64),
        Descriptor::new(mt, layer_digest, layer.len() as u64),
    ];
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blobs[0],
        "layers": [blobs[1]],
    });
    let manifest = crate::json::to_canonical(&manifest);
    let digest = store.put_blob(&manifest).unwrap();
    TestImage { manifest, digest, blobs }
}

/// Writes the image as an OCI layout that skopeo reads (`oci:DIR:tag`).
fn write_layout(store: &Store, img: &TestImage, dir: &Path, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).unwrap();
    for d in img.blobs.iter().map(|b| &b.digest).chain([&img.digest]) {
        fs_err::copy(store.blob_path(d), blobs.join(d.hex())).unwrap();
    }
    let mut ann = BTreeMap::new();
    ann.insert(REF_NAME.to_owned(), tag.to_owned());
    let mut desc = Descriptor::new(OCI_MANIFEST, img.digest.clone(), img.manifest.len() as u64);
    desc.annotations = Some(ann);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    fs_err::write(dir.join("index.json"), index.to_string()).unwrap();
    fs_err::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").arg("--insecure-policy").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo_digest(image: &str) -> OciDigest {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{image}"),
    ])
    .trim()
    .parse()
    .unwrap()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A loopback HTTP proxy that forwards to the registry, with a hook to answer, drop, truncate or
// corrupt. One request per connection (`Connection: close`), which keeps it simple.

#[derive(Debug, Clone)]
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Forward,
    /// Forward, but send only half the body (the announced length stays).
    Truncate,
    /// Forward with one body byte flipped.
    Corrupt,
    /// Close the connection without answering.
    Drop,
    /// Answer with this status, extra headers and body.
    Answer(u16, Vec<(String, String)>, String),
}

type Hook = dyn Fn(&Head) -> Reply + Send + Sync;

struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Head>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, hook: impl Fn(&Head) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hook: Arc<Hook> = Arc::new(hook);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (hook, log) = (hook.clone(), log2.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &*hook, &log);
                });
            }
        });
        Self { port, log, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Head> {
        self.log.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    hook: &Hook,
    log: &Mutex<Vec<Head>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let head = Head { method, path, headers };
    let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    log.lock().unwrap().push(head.clone());
    let mut conn = conn;
    let reply = hook(&head);
    let action = match reply {
        Reply::Drop => {
            conn.shutdown(std::net::Shutdown::Both)?;
            return Ok(());
        }
        Reply::Answer(status, extra, text) => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                text.len()
            );
            for (k, v) in extra {
                let _ = write!(out, "{k}: {v}\r\n");
            }
            out.push_str("\r\n");
            out.push_str(&text);
            conn.write_all(out.as_bytes())?;
            return Ok(());
        }
        other => other,
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut req = format!("{} {} HTTP/1.1\r\n", head.method, head.path);
    for (k, v) in &head.headers {
        if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("authorization") {
            let _ = write!(req, "{k}: {v}\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let (rhead, rbody) = resp.split_at(split);
    let rhead = String::from_utf8_lossy(rhead);
    let mut out_head = String::new();
    for l in rhead.split("\r\n").filter(|l| !l.is_empty()) {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out_head.push_str(l);
            out_head.push_str("\r\n");
        }
    }
    out_head.push_str("Connection: close\r\n\r\n");
    let mut rbody = rbody.to_vec();
    match action {
        Reply::Truncate => rbody.truncate(rbody.len() / 2),
        Reply::Corrupt if !rbody.is_empty() => {
            let i = rbody.len() / 3;
            rbody[i] ^= 0x55;
        }
        _ => {}
    }
    conn.write_all(out_head.as_bytes())?;
    conn.write_all(&rbody)?;
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Both)?;
    Ok(())
}

fn is_blob_get(h: &Head) -> bool {
    h.method == "GET" && h.path.contains("/blobs/sha256:")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn pulls_by_tag_and_digest_and_a_second_pull_downloads_nothing() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, seed) = new_store();
    let img = make_image(
        &seed,
        &[("etc/hello", b"hello from a skopeo push\n"), ("bin/x", &noise(200_000, 7))],
        true,
        "seeded",
    );
    let layout = tempfile::tempdir().unwrap();
    write_layout(&seed, &img, layout.path(), "v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{}/app/one:v1", reg.host()),
    ]);
    let registry_digest = skopeo_digest(&format!("{}/app/one:v1", reg.host()));

    // Count requests through a pass-through proxy.
    let proxy = Proxy::start(reg.port, |_| Reply::Forward);
    let client = test_client();
    let (_d, store) = new_store();
    let r = reference(&format!("{}/app/one:v1", proxy.host()));
    assert_eq!(client.resolve(&r).unwrap(), registry_digest);
    let pulled = client.pull_image(&r, &store).unwrap();
    assert_eq!(pulled.registry_digest, registry_digest);
    assert_eq!(pulled.downloaded.len(), 2, "config and layer");
    assert_eq!(pulled.image.layers.len(), 1);
    assert_eq!(pulled.image.layers[0].blob.digest, img.blobs[1].digest);
    assert_eq!(pulled.image.config.0["config"]["Labels"]["test"], "seeded");
    for b in &img.blobs {
        assert_eq!(store.read_blob(&b.digest).unwrap(), seed.read_blob(&b.digest).unwrap());
    }

    proxy.clear();
    let again = client.pull_image(&r, &store).unwrap();
    assert!(again.downloaded.is_empty());
    assert_eq!(again.image.manifest_digest, pulled.image.manifest_digest);
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 1, "only a manifest HEAD: {reqs:?}");
    assert_eq!(reqs[0].method, "HEAD");

    // By digest, into a fresh store; then again with no request at all.
    let (_d2, store2) = new_store();
    let by_digest = reference(&format!("{}/app/one@{registry_digest}", proxy.host()));
    let p2 = client.pull_image(&by_digest, &store2).unwrap();
    assert_eq!(p2.image.manifest_digest, pulled.image.manifest_digest);
    proxy.clear();
    let p3 = client.pull_image(&by_digest, &store2).unwrap();
    assert!(p3.downloaded.is_empty());
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}

#[test]
fn push_matches_skopeo_and_a_repush_uploads_nothing() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(
        &store,
        &[("a.txt", b"pushed by stack\n"), ("n", &noise(100_000, 3))],
        true,
        "pushed",
    );
    let client = test_client();
    let target = reference(&format!("{}/team/app:1.0", reg.host()));
    let opts = PushOptions { extra_tags: vec!["latest".into()], ..PushOptions::default() };
    let report =
        client.push_with(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store, &opts).unwrap();
    assert_eq!(report.digest, img.digest);
    assert_eq!(report.uploaded.len(), 2);
    assert_eq!(report.bytes_uploaded, img.blobs.iter().map(|b| b.size).sum::<u64>());
    assert_eq!(skopeo_digest(&format!("{}/team/app:1.0", reg.host())), img.digest);
    assert_eq!(skopeo_digest(&format!("{}/team/app:latest", reg.host())), img.digest);

    let again = client.push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap();
    assert!(again.uploaded.is_empty());
    assert_eq!(again.skipped.len(), 2);
    assert_eq!(again.bytes_uploaded, 0);

    // A blob missing from the store is refused before anything is sent.
    let mut missing = img.blobs.clone();
    missing.push(Descriptor::new(OCI_CONFIG, OciDigest::of(b"nope"), 4));
    let err = client.push(&img.manifest, OCI_MANIFEST, &missing, &target, &store).unwrap_err();
    assert!(matches!(err, RegistryError::MissingBlob { .. }), "{err}");
}

#[test]
fn a_tag_s_digest_comes_from_one_manifest_head_accepting_every_manifest_kind() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let proxy = Proxy::start(reg.port, |_| Reply::Forward);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("a.txt", b"tagged\n")], true, "tagged");
    let client = test_client();
    let target = reference(&format!("{}/team/app:1", proxy.host()));
    assert_eq!(client.tag_digest(&target).unwrap(), None, "no such tag yet");
    client.push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap();
    proxy.clear();
    assert_eq!(client.tag_digest(&target).unwrap(), Some(img.digest.clone()));
    let heads: Vec<Head> =
        proxy.requests().into_iter().filter(|h| h.path.contains("/manifests/")).collect();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0].method, "HEAD");
    let accept = heads[0].header("accept").unwrap_or_default();
    for kind in [
        OCI_MANIFEST,
        crate::oci::image::OCI_INDEX,
        crate::oci::image::DOCKER_MANIFEST,
        crate::oci::image::DOCKER_LIST,
    ] {
        assert!(accept.contains(kind), "{accept}");
    }
}

#[test]
fn mounts_across_repositories_and_uploads_in_chunks() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("big", &noise(700_000, 11))], false, "chunked");
    let client = test_client();
    let base = reference(&format!("{}/base/image:1", reg.host()));
    let chunked = PushOptions { chunk_size: Some(128 * 1024), ..PushOptions::default() };
    let first =
        client.push_with(&img.manifest, OCI_MANIFEST, &img.blobs, &base, &store, &chunked).unwrap();
    assert_eq!(first.uploaded.len(), 2);

    // The chunked upload reads back intact.
    let (_d, fresh) = new_store();
    let pulled = client.pull_image(&base, &fresh).unwrap();
    assert_eq!(
        fresh.read_blob(&img.blobs[1].digest).unwrap(),
        store.read_blob(&img.blobs[1].digest).unwrap()
    );
    assert_eq!(pulled.registry_digest, img.digest);

    let other = reference(&format!("{}/derived/app:2", reg.host()));
    let opts = PushOptions { mount_from: vec!["base/image".into()], ..PushOptions::default() };
    let report =
        client.push_with(&img.manifest, OCI_MANIFEST, &img.blobs, &other, &store, &opts).unwrap();
    assert_eq!(report.mounted.len(), 2, "{report:?}");
    assert!(report.uploaded.is_empty());
    assert_eq!(client.resolve(&other).unwrap(), img.digest);
}

#[test]
fn basic_auth_uses_the_docker_config_and_never_leaks_the_password() {
    if !have_registry() {
        return;
    }
    let out = Command::new("htpasswd").args(["-Bbn", "alice", "s3cret-pw"]).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        assert!(std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"), "htpasswd missing");
        println!("skipped: htpasswd (apache2-utils) not installed");
        return;
    };
    let reg = Registry::start(Some(&String::from_utf8(out.stdout).unwrap()));
    let (_s, store) = new_store();
    let img = make_image(&store, &[("f", b"secret image")], true, "auth");
    let target = reference(&format!("{}/private/app:1", reg.host()));

    let anonymous = test_client();
    let err = anonymous.push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { had_credentials: false, .. }), "{err}");
    assert!(err.to_string().contains("stack login"), "{err}");

    let cfg = tempfile::tempdir().unwrap();
    let sources = CredentialSources::docker_config_dir(cfg.path());
    let wrong = login_to(&sources, &reg.host(), "alice", "wrong-pw").unwrap();
    assert_eq!(wrong, cfg.path().join("config.json"));
    let err = client_with(sources.clone()).pull(&target, &store).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { had_credentials: true, .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pw"));

    login_to(&sources, &format!("http://{}", reg.host()), "alice", "s3cret-pw").unwrap();
    let text = fs_err::read_to_string(cfg.path().join("config.json")).unwrap();
    assert_eq!(text.matches("auth\"").count(), 1, "one entry per registry: {text}");
    let client = client_with(sources);
    client.check_credentials(&reg.host()).unwrap();
    let report = client.push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap();
    assert_eq!(report.digest, img.digest);
    let (_d, fresh) = new_store();
    client.pull(&target, &fresh).unwrap();
    assert!(fresh.has_blob(&img.blobs[1].digest));

    // REGISTRY_AUTH_FILE (containers-auth.json) comes first.
    let auth_file = cfg.path().join("auth.json");
    let entry =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret-pw");
    fs_err::write(&auth_file, format!(r#"{{"auths":{{"{}":{{"auth":"{entry}"}}}}}}"#, reg.host()))
        .unwrap();
    let c = client_with(CredentialSources {
        auth_file: Some(auth_file),
        docker_config: PathBuf::from("/nonexistent"),
    });
    c.resolve(&target).unwrap();
}

/// State of the test's token server.
#[derive(Default)]
struct TokenState {
    issued: Vec<String>,
    scopes: Vec<String>,
    valid: Vec<String>,
    token_requests: usize,
}

fn query_params(path: &str) -> Vec<(String, String)> {
    let q = path.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() + 1 {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            (k.to_owned(), String::from_utf8(out).unwrap())
        })
        .collect()
}

#[test]
fn bearer_tokens_are_fetched_per_scope_cached_and_renewed() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let state = Arc::new(Mutex::new(TokenState::default()));
    let realm_port = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let (st, rp) = (state.clone(), realm_port.clone());
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bob:tok-pass")
    );
    let proxy = Proxy::start(reg.port, move |h| {
        let mut s = st.lock().unwrap();
        if h.path.starts_with("/token") {
            s.token_requests += 1;
            let params = query_params(&h.path);
            let scopes: Vec<String> =
                params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
            let wants_push = scopes.iter().any(|s| s.contains("push"));
            // Anonymous tokens may pull; pushing needs bob's password.
            if wants_push && h.header("authorization") != Some(basic.as_str()) {
                return Reply::Answer(401, vec![], r#"{"details":"bad credentials"}"#.into());
            }
            assert_eq!(
                params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.as_str()),
                Some("stack-test")
            );
            s.scopes.extend(scopes);
            let t = format!("tok-{}", s.issued.len());
            s.issued.push(t.clone());
            s.valid.push(t.clone());
            return Reply::Answer(
                200,
                vec![("Content-Type".into(), "application/json".into())],
                format!(r#"{{"token":"{t}","expires_in":300}}"#),
            );
        }
        let ok = h
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| s.valid.iter().any(|v| v == t));
        if ok {
            Reply::Forward
        } else {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="stack-test""#,
                rp.load(Ordering::SeqCst)
            );
            Reply::Answer(
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .into(),
            )
        }
    });
    // The realm is the proxy itself (its `/token` path).
    realm_port.store(proxy.port, Ordering::SeqCst);

    let (_s, store) = new_store();
    let img = make_image(&store, &[("t", b"behind a token server")], true, "bearer");
    let target = reference(&format!("{}/secure/app:1", proxy.host()));

    // Without credentials pushing is refused, with a `stack login` hint.
    let err =
        test_client().push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    let cfg = tempfile::tempdir().unwrap();
    let sources = CredentialSources::docker_config_dir(cfg.path());
    login_to(&sources, &proxy.host(), "bob", "tok-pass").unwrap();
    let client = client_with(sources);
    let before = state.lock().unwrap().token_requests;
    let report = client.push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap();
    assert_eq!(report.digest, img.digest);
    {
        let s = state.lock().unwrap();
        assert!(s.scopes.contains(&"repository:secure/app:pull,push".to_owned()), "{:?}", s.scopes);
        // One token for the whole push: cached across its requests and threads.
        assert_eq!(s.token_requests - before, 1, "token requests");
    }

    // Anonymous pull gets its own pull-scoped token.
    let anon = test_client();
    let (_d, fresh) = new_store();
    anon.pull(&target, &fresh).unwrap();
    assert!(state.lock().unwrap().scopes.contains(&"repository:secure/app:pull".to_owned()));

    // Revoke every token: the next request gets a 401 and the client fetches a new one.
    let before = state.lock().unwrap().token_requests;
    state.lock().unwrap().valid.clear();
    let (_d2, fresh2) = new_store();
    anon.pull(&target, &fresh2).unwrap();
    assert!(state.lock().unwrap().token_requests > before);
    assert!(fresh2.has_blob(&img.blobs[1].digest));
}

#[test]
fn faults_are_retried_resumed_and_corrupt_data_is_never_stored() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("data", &noise(600_000, 5))], false, "faults");
    test_client()
        .push(
            &img.manifest,
            OCI_MANIFEST,
            &img.blobs,
            &reference(&format!("{}/f/app:1", reg.host())),
            &store,
        )
        .unwrap();
    let layer = img.blobs[1].digest.clone();

    // Blob GETs for the layer: a 500, a dropped connection, a truncated body (resumed with
    // Range), a corrupt body (restarted), then the real thing. Manifest GET: one 503 first.
    let counter = Arc::new(Mutex::new((0usize, 0usize)));
    let c = counter.clone();
    let layer_path = format!("/blobs/{layer}");
    let proxy = Proxy::start(reg.port, move |h| {
        let mut n = c.lock().unwrap();
        if h.method == "GET" && h.path.contains("/manifests/") {
            n.0 += 1;
            if n.0 == 1 {
                return Reply::Answer(503, vec![], String::new());
            }
        }
        if is_blob_get(h) && h.path.ends_with(&layer_path) {
            n.1 += 1;
            return match n.1 {
                1 => Reply::Answer(500, vec![], "boom".into()),
                2 => Reply::Drop,
                3 => Reply::Truncate,
                4 => Reply::Corrupt,
                _ => Reply::Forward,
            };
        }
        Reply::Forward
    });
    let (_d, fresh) = new_store();
    let client = test_client();
    let r = reference(&format!("{}/f/app:1", proxy.host()));
    let pulled = client.pull_image(&r, &fresh).unwrap();
    assert_eq!(pulled.registry_digest, img.digest);
    assert_eq!(fresh.read_blob(&layer).unwrap(), store.read_blob(&layer).unwrap());
    let reqs = proxy.requests();
    assert!(
        reqs.iter().any(|h| is_blob_get(h)
            && h.header("range").is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")),
        "a resumed request: {reqs:?}"
    );
    assert!(counter.lock().unwrap().1 >= 5);

    // A registry that always corrupts: the pull fails with a digest mismatch and nothing is
    // stored, not even a temporary file.
    let bad =
        Proxy::start(reg.port, |h| if is_blob_get(h) { Reply::Corrupt } else { Reply::Forward });
    let (_d2, clean) = new_store();
    let client = Client::new(ClientOptions { retries: 2, ..test_client().opts });
    let err = client.pull(&reference(&format!("{}/f/app:1", bad.host())), &clean).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("discarded"), "{err}");
    assert!(!clean.has_blob(&layer));
    assert_eq!(
        fs_err::read_dir(clean.root().join("tmp")).unwrap().count(),
        0,
        "temporary files left behind"
    );
}

#[test]
fn errors_name_the_image_and_say_what_to_do() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let client = test_client();
    let (_d, store) = new_store();
    let err = client.pull(&reference(&format!("{}/no/such:tag", reg.host())), &store).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { status: 404, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}/no/such:tag", reg.host())) && text.contains("404"),
        "{text}"
    );

    // Rate limited, with a Retry-After beyond what is worth waiting for.
    let limited = Proxy::start(reg.port, |_| {
        Reply::Answer(429, vec![("Retry-After".into(), "120".into())], String::new())
    });
    let err = client.resolve(&reference(&format!("{}/x/y:1", limited.host()))).unwrap_err();
    assert!(
        matches!(err, RegistryError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 120),
        "{err}"
    );
    assert!(err.to_string().contains("retry in 120 s"), "{err}");

    // Persistent 500s give up after the retries and say which request failed.
    let broken = Proxy::start(reg.port, |_| Reply::Answer(500, vec![], String::new()));
    let c = Client::new(ClientOptions { retries: 2, ..test_client().opts });
    let err = c.resolve(&reference(&format!("{}/x/y:1", broken.host()))).unwrap_err();
    assert!(matches!(err, RegistryError::Http { status: 500, .. }), "{err}");
    assert_eq!(broken.requests().len(), 3, "the HEAD, retried twice: {:?}", broken.requests());

    // Nothing listening.
    let dead = free_port();
    let err = client.resolve(&reference(&format!("127.0.0.1:{dead}/x/y:1"))).unwrap_err();
    assert!(matches!(err, RegistryError::ConnectionRefused { .. }), "{err}");
    assert!(err.to_string().contains("is the registry running"), "{err}");
}

#[test]
fn pulls_docker_schema2_images_and_indexes_for_this_platform() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("d", b"docker format")], true, "v2s2");
    let layout = tempfile::tempdir().unwrap();
    write_layout(&store, &img, layout.path(), "v1");
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{}/docker/app:v1", reg.host()),
    ]);
    let client = test_client();
    let (_d, fresh) = new_store();
    let pulled =
        client.pull_image(&reference(&format!("{}/docker/app:v1", reg.host())), &fresh).unwrap();
    assert_eq!(pulled.registry_digest, skopeo_digest(&format!("{}/docker/app:v1", reg.host())));
    assert_ne!(pulled.registry_digest, img.digest, "skopeo converted the manifest");
    assert_eq!(
        pulled.image.layers[0].blob.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let normalised: serde_json::Value =
        serde_json::from_slice(&fresh.read_blob(&pulled.image.manifest_digest).unwrap()).unwrap();
    assert_eq!(normalised["mediaType"], OCI_MANIFEST);

    // An index with this platform and another: the manifests go by digest, the index by tag.
    let other = make_image(&store, &[("o", b"other arch")], true, "other");
    for m in [&img, &other] {
        let by_digest = reference(&format!("{}/multi/app@{}", reg.host(), m.digest));
        client.push(&m.manifest, OCI_MANIFEST, &m.blobs, &by_digest, &store).unwrap();
    }
    let entry = |m: &TestImage, arch: &str| {
        let mut d = Descriptor::new(OCI_MANIFEST, m.digest.clone(), m.manifest.len() as u64);
        d.platform =
            Some(Platform { architecture: arch.into(), os: "linux".into(), variant: None });
        d
    };
    let foreign = if crate::oci::image::host_arch() == "s390x" { "ppc64le" } else { "s390x" };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::image::OCI_INDEX,
        "manifests": [entry(&other, foreign), entry(&img, crate::oci::image::host_arch())],
    });
    let index_bytes = crate::json::to_canonical(&index);
    let tagged = reference(&format!("{}/multi/app:latest", reg.host()));
    client.push(&index_bytes, crate::oci::image::OCI_INDEX, &[], &tagged, &store).unwrap();
    assert_eq!(client.resolve(&tagged).unwrap(), img.digest);
    let (_d2, fresh2) = new_store();
    let pulled = client.pull_image(&tagged, &fresh2).unwrap();
    assert_eq!(pulled.registry_digest, img.digest);
    assert_eq!(pulled.index_digest, Some(OciDigest::of(&index_bytes)));
    assert!(!fresh2.has_blob(&other.blobs[1].digest), "the other platform's layer is not pulled");
    let wrong = Client::new(ClientOptions {
        platform: Some(Platform { architecture: "mips".into(), os: "linux".into(), variant: None }),
        ..test_client().opts
    });
    let err = wrong.resolve(&tagged).unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains(foreign), "{err}");
}

#[test]
fn picks_the_host_platform_from_an_index() {
    let d = |s: &str| OciDigest::of(s.as_bytes());
    let entry = |arch: &str, variant: Option<&str>, tag: &str| {
        let mut desc = Descriptor::new(OCI_MANIFEST, d(tag), 1);
        desc.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_owned),
        });
        desc
    };
    let index = crate::oci::image::Index {
        schema_version: 2,
        media_type: None,
        manifests: vec![
            entry("arm", Some("v6"), "armv6"),
            entry("arm", Some("v7"), "armv7"),
            entry("arm64", None, "arm64"),
            entry("amd64", None, "amd64"),
        ],
        annotations: None,
    };
    let want = |arch: &str, variant: Option<&str>| Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: variant.map(str::to_owned),
    };
    assert_eq!(pull::pick_platform(&index, &want("amd64", None)).unwrap().digest, d("amd64"));
    assert_eq!(pull::pick_platform(&index, &want("arm64", Some("v8"))).unwrap().digest, d("arm64"));
    assert_eq!(pull::pick_platform(&index, &want("arm", Some("v7"))).unwrap().digest, d("armv7"));
    assert!(pull::pick_platform(&index, &want("arm", Some("v5"))).is_none());
    assert!(pull::pick_platform(&index, &want("s390x", None)).is_none());
}

/// Measures pull and push of a ~50 MB layer on loopback against `skopeo copy` of the same
/// image, and prints the numbers (run with `--nocapture`).
#[test]
fn throughput_of_a_50mb_layer_compared_with_skopeo() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("blob", &noise(50 << 20, 99))], false, "perf");
    let size_mb = f64::from(u32::try_from(img.blobs[1].size).unwrap()) / f64::from(1u32 << 20);
    let mb = |secs: f64| size_mb / secs;
    let client = test_client();

    let t = Instant::now();
    client
        .push(
            &img.manifest,
            OCI_MANIFEST,
            &img.blobs,
            &reference(&format!("{}/perf/stack:1", reg.host())),
            &store,
        )
        .unwrap();
    let push_stack = t.elapsed().as_secs_f64();

    let layout = tempfile::tempdir().unwrap();
    write_layout(&store, &img, layout.path(), "1");
    let t = Instant::now();
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.path().display()),
        &format!("docker://{}/perf/skopeo:1", reg.host()),
    ]);
    let push_skopeo = t.elapsed().as_secs_f64();

    let (_d, fresh) = new_store();
    let t = Instant::now();
    client.pull(&reference(&format!("{}/perf/stack:1", reg.host())), &fresh).unwrap();
    let pull_stack = t.elapsed().as_secs_f64();
    assert!(fresh.has_blob(&img.blobs[1].digest));

    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{}/perf/skopeo:1", reg.host()),
        &format!("oci:{}:1", out.path().display()),
    ]);
    let pull_skopeo = t.elapsed().as_secs_f64();

    println!(
        "throughput ({:.1} MB layer): push stack {:.2} s ({:.0} MB/s), skopeo {:.2} s ({:.0} MB/s); pull stack {:.2} s ({:.0} MB/s), skopeo {:.2} s ({:.0} MB/s)",
        size_mb,
        push_stack,
        mb(push_stack),
        push_skopeo,
        mb(push_skopeo),
        pull_stack,
        mb(pull_stack),
        pull_skopeo,
        mb(pull_skopeo)
    );
}

/// A registry whose blobs trickle (one byte every 100 ms, forever): a pull gives up at the
/// overall deadline, resuming after each stall in between, and keeps nothing.
#[test]
fn a_trickling_blob_download_ends_at_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let mut conn = conn;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                while conn.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    let client = Client::new(ClientOptions {
        read_timeout: Duration::from_millis(500),
        transfer_timeout: Duration::from_secs(2),
        ..test_client().opts
    });
    let (_d, store) = new_store();
    let desc = Descriptor::new("application/octet-stream", OciDigest::of(b"never"), 100_000);
    let started = Instant::now();
    let err = client
        .download_blob(&reference(&format!("127.0.0.1:{port}/x/y:1")), &desc, &store)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert!(err.to_string().contains(deadline::TOTAL_ENV), "{err}");
    assert!(!store.has_blob(&desc.digest));
}

#[test]
fn a_manifest_refused_while_the_registry_catches_up_is_put_again() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start(None);
    let (_s, store) = new_store();
    let img = make_image(&store, &[("data", b"race")], false, "race");
    // What distribution answers when a concurrent writer is rewriting the blob's link file.
    let refusals = Arc::new(AtomicUsize::new(0));
    let r2 = refusals.clone();
    let proxy = Proxy::start(reg.port, move |h| {
        if h.method == "PUT"
            && h.path.contains("/manifests/")
            && r2.fetch_add(1, Ordering::SeqCst) < 2
        {
            let body = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
            return Reply::Answer(400, vec![], body.into());
        }
        Reply::Forward
    });
    let target = reference(&format!("{}/race/app:1", proxy.host()));
    let report =
        test_client().push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap();
    assert_eq!(report.digest, img.digest);
    assert_eq!(refusals.load(Ordering::SeqCst), 3);

    // Any other refusal of the manifest counts at once.
    let invalid = Proxy::start(reg.port, |h| {
        if h.method == "PUT" && h.path.contains("/manifests/") {
            let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad"}]}"#;
            return Reply::Answer(400, vec![], body.into());
        }
        Reply::Forward
    });
    let target = reference(&format!("{}/race/app:2", invalid.host()));
    let err =
        test_client().push(&img.manifest, OCI_MANIFEST, &img.blobs, &target, &store).unwrap_err();
    assert!(err.to_string().contains("MANIFEST_INVALID"), "{err}");
    let puts = invalid
        .requests()
        .iter()
        .filter(|h| h.method == "PUT" && h.path.contains("/manifests/"))
        .count();
    assert_eq!(puts, 1);
}
