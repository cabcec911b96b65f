//! `stack cache du|prune|verify` on the store of a real build.

use std::path::Path;

use crate::support::{busybox_base, run_stack, stderr, stdout, write_files};

fn project(dir: &Path, base: &Path) {
    write_files(
        dir,
        &[
            ("src/a.txt", "alpha\n"),
            ("src/b.txt", "beta\n"),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    copy \"src/\" to=\"/srv/\"\n    file \"/etc/app.conf\" \"x=1\\n\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
}

/// Builds and returns the image digest.
fn build(dir: &Path, cache: &Path) -> String {
    let out = run_stack(dir, cache, &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).split_whitespace().nth(1).unwrap().to_owned()
}

fn du(dir: &Path, cache: &Path) -> serde_json::Value {
    let out = run_stack(dir, cache, &["cache", "du", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The blob digests the step records name.
fn recorded_blobs(cache: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cache.join("records-v1/step")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        if let Some(d) = v["layer"]["blob"]["digest"].as_str() {
            out.push(d.to_owned());
        }
    }
    out.sort();
    out
}

fn blob_path(cache: &Path, digest: &str) -> std::path::PathBuf {
    cache.join("blobs-v1/sha256").join(digest.strip_prefix("sha256:").unwrap())
}

#[test]
fn du_shows_sizes_and_prune_empties_the_store() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    project(dir.path(), &base);
    let digest = build(dir.path(), &cache);

    let usage = du(dir.path(), &cache);
    for area in ["blobs", "layers", "records"] {
        assert!(usage["areas"][area]["entries"].as_u64().unwrap() > 0, "{area}: {usage}");
        assert!(usage["areas"][area]["bytes"].as_u64().unwrap() > 0, "{area}: {usage}");
    }
    assert!(usage["total"]["bytes"].as_u64().unwrap() > 100_000, "{usage}");
    let table = run_stack(dir.path(), &cache, &["cache", "du"]);
    assert!(table.status.success(), "{}", stderr(&table));
    for word in ["blobs", "extracted layers", "step records", "cache mounts", "temp", "total"] {
        assert!(stdout(&table).contains(word), "{word} missing from\n{}", stdout(&table));
    }

    // Without flags, a consistent store holds no garbage.
    let out = run_stack(dir.path(), &cache, &["cache", "prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to remove"), "{}", stdout(&out));

    let out = run_stack(dir.path(), &cache, &["cache", "prune", "--keep-storage", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("freed"), "{}", stdout(&out));
    let usage = du(dir.path(), &cache);
    assert_eq!(usage["total"]["entries"], 0, "{usage}");
    assert_eq!(usage["total"]["bytes"], 0, "{usage}");

    // The same image comes back from an empty store.
    assert_eq!(build(dir.path(), &cache), digest);
    let out = run_stack(dir.path(), &cache, &["cache", "prune", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["after"], 0, "{report}");
}

#[test]
fn verify_finds_a_corrupt_blob_and_the_next_build_recreates_it() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    project(dir.path(), &base);
    let digest = build(dir.path(), &cache);

    let out = run_stack(dir.path(), &cache, &["cache", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(": 0 bad"), "{}", stdout(&out));

    let blobs = recorded_blobs(&cache);
    assert!(!blobs.is_empty());
    let victim = &blobs[0];
    let path = blob_path(&cache, victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let out = run_stack(dir.path(), &cache, &["cache", "verify"]);
    assert_eq!(out.status.code(), Some(4), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&format!("bad blob `{victim}`")), "{}", stdout(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    assert!(!path.exists());
    assert!(!recorded_blobs(&cache).contains(victim), "a record still names the dropped blob");

    assert_eq!(build(dir.path(), &cache), digest);
    assert!(path.exists(), "the rebuild recreates the blob");
    let out = run_stack(dir.path(), &cache, &["cache", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn usage_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = run_stack(dir.path(), &cache, &["cache", "prune", "--keep-storage", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`lots` is not a size"), "{}", stderr(&out));
    let out = run_stack(dir.path(), &cache, &["cache", "prune", "--all", "--keep-storage", "1G"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn prune_waits_for_a_running_build() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let store = stack::api::store::Store::open(&cache).unwrap();
    // What a running build holds.
    let build = store.lock_shared().unwrap();
    let mut prune = crate::support::stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", &cache)
        .args(["cache", "prune", "--all"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(prune.try_wait().unwrap().is_none(), "prune ran while a build held the store");
    drop(build);
    let out = prune.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("waiting for running builds"), "{}", stderr(&out));
}

#[test]
fn the_output_and_the_store_never_land_in_the_context() {
    let dir = crate::support::project(
        "stack version=1\nimage app {\n    from \"scratch\"\n    copy \".\" to=\"/app/\"\n}\n",
    );
    write_files(dir.path(), &[("app.txt", "app\n")]);
    // The store inside the context too, as `STACK_CACHE_DIR=.cache` would put it.
    let cache = dir.path().join(".cache");
    let first = run_stack(dir.path(), &cache, &["build"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = run_stack(dir.path(), &cache, &["build", "--explain"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("0 step(s) run"), "{}", stderr(&second));
    assert_eq!(stdout(&first), stdout(&second));
    // Built from another folder, the context still leaves out the layout an earlier build
    // wrote into it (and the step is reused).
    let elsewhere = tempfile::tempdir().unwrap();
    let from_outside = run_stack(
        elsewhere.path(),
        &cache,
        &["build", dir.path().join("stack.kdl").to_str().unwrap()],
    );
    assert!(stderr(&from_outside).contains("0 step(s) run"), "{}", stderr(&from_outside));
    assert_eq!(stdout(&first), stdout(&from_outside));
    // Another output inside the context (an archive): it is kept out too, on the build that
    // writes it and on the next one.
    for _ in 0..2 {
        let archive = run_stack(
            dir.path(),
            &cache,
            &["build", "--format", "oci-archive", "--out", "app.tar"],
        );
        assert!(archive.status.success(), "{}", stderr(&archive));
        assert!(stderr(&archive).contains("0 step(s) run"), "{}", stderr(&archive));
        assert_eq!(stdout(&first), stdout(&archive));
    }
    let files: Vec<String> =
        crate::support::image_files(&dir.path().join("stack-out"), "app").into_keys().collect();
    assert_eq!(files, ["app", "app/app.txt", "app/stack.kdl"]);
    // Naming the output explicitly is an error that says why.
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"stack-out/index.json\" to=\"/\"\n}\n",
        )],
    );
    let named = run_stack(dir.path(), &cache, &["check"]);
    assert_eq!(named.status.code(), Some(1));
    let err = crate::support::stderr_unwrapped(&named);
    assert!(err.contains("stack::source-reserved") && err.contains("stack's output"), "{err}");
}

/// Builds with `--compression c` and returns the image digest, checking every layer the
/// build made has that compression.
fn build_compressed(dir: &Path, cache: &Path, c: &str) -> (String, String) {
    let out = run_stack(dir, cache, &["build", "--compression", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = dir.join("stack-out");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&crate::support::blob(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    // The first layer is the base's (as it was pulled); the build's own follow.
    assert!(layers.len() >= 3, "{manifest}");
    for l in &layers[1..] {
        assert!(l["mediaType"].as_str().unwrap().ends_with(&format!("+{c}")), "{c}: {manifest}");
    }
    (stdout(&out).split_whitespace().nth(1).unwrap().to_owned(), stderr(&out))
}

#[test]
fn compression_never_depends_on_what_the_store_has_seen() {
    let Some(base) = busybox_base() else { return };
    if !crate::support::sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    // A `run` step too: its record is written by the run executor.
    let kdl = std::fs::read_to_string(dir.path().join("stack.kdl"))
        .unwrap()
        .replace("    file", "    run \"echo ran > /srv/ran.txt\"\n    file");
    write_files(dir.path(), &[("stack.kdl", &kdl)]);
    let fresh = |c: &str| build_compressed(dir.path(), &dir.path().join(format!("fresh-{c}")), c).0;
    let (gzip, zstd) = (fresh("gzip"), fresh("zstd"));
    assert_ne!(gzip, zstd);
    for order in [["gzip", "zstd", "gzip", "zstd"], ["zstd", "gzip", "zstd", "gzip"]] {
        let cache = dir.path().join(format!("store-{}", order[0]));
        for (i, c) in order.iter().enumerate() {
            let (digest, err) = build_compressed(dir.path(), &cache, c);
            let want = if *c == "gzip" { &gzip } else { &zstd };
            assert_eq!(&digest, want, "{order:?}, build {i} ({c}) differs from a fresh store's");
            // Only the first build runs steps; the others re-encode or reuse.
            if i > 0 {
                assert!(err.contains(" 0 step(s) run"), "{order:?} build {i}: {err}");
            }
        }
    }
}
