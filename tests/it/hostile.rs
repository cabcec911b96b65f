//! The security boundary, tested as an attacker would: hostile layers, contexts and steps,
//! each as root, rootless with subordinate ids and rootless without them. Every test checks
//! that nothing outside the build changed (modes, contents) and that nothing secret stayed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use stack::api::digest::OciDigest;

use crate::run::open_folder;
use crate::support::{Standing, busybox_base, run_stack, sandbox_ready, stderr};

/// The standings to test here: none without the sandbox and the busybox base (each says why).
fn standings() -> Vec<Standing> {
    if !sandbox_ready() || busybox_base().is_none() {
        return Vec::new();
    }
    Standing::available()
}

/// `stack ARGS` in `dir` to its end. `dir` was shared with `nobody` when it was made, and is
/// not shared again: that would change the modes the tests check.
fn run(standing: Standing, dir: &Path, args: &[&str]) -> std::process::Output {
    standing.stack(dir, args).output().unwrap()
}

/// A folder the test owns, with files `nobody` may use too.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let base = busybox_base().expect("checked by the caller");
    open_folder(&base, files)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A tar with raw entries: (path, type, link target, mode).
fn hostile_tar(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(0);
        let name = h.as_old_mut();
        name.name[..path.len()].copy_from_slice(path.as_bytes());
        name.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes an OCI layout at `dir` holding image `name` with one uncompressed `layer`.
fn layout_with_layer(dir: &Path, name: &str, layer: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = OciDigest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = format!(
        r#"{{"architecture":"{}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#,
        if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}]}}"#
        ),
    )
    .unwrap();
}

#[test]
fn a_hostile_layer_never_changes_a_host_files_mode() {
    for standing in standings() {
        let dir = folder(&[]);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "host binary").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let victim_s = victim.display().to_string();
        // A folder with setuid bits, then a symlink of the same name to the host file: the
        // final folder pass must not chmod through it. Also through `.wh..` (would delete the
        // layer's own tree) in a second layer file.
        let tar = hostile_tar(&[
            ("x", tar::EntryType::Directory, "", 0o6777),
            ("x", tar::EntryType::Symlink, &victim_s, 0o777),
            ("d", tar::EntryType::Directory, "", 0o755),
            ("d/y", tar::EntryType::Directory, "", 0o6777),
            ("d/y", tar::EntryType::Symlink, &victim_s, 0o777),
        ]);
        layout_with_layer(&dir.path().join("evil"), "evil", &tar);
        std::fs::write(dir.path().join("evil.tar"), &tar).unwrap();
        let build = "stack version=1\n\
            image from-base {\n    from \"oci:evil:evil\"\n}\n\
            image via-add {\n    from \"scratch\"\n    add \"evil.tar\" to=\"/\"\n}\n\
            image via-copy {\n    from \"scratch\"\n    copy \"/\" to=\"/\" from=\"oci:evil:evil\"\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
        let _ = std::process::Command::new("chmod")
            .args(["-R", "a+rwX", dir.path().to_str().unwrap()])
            .status();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = run(standing, dir.path(), &["build"]);
        assert!(out.status.success(), "{standing:?}: {}", stderr(&out));
        assert_eq!(mode(&victim), 0o755, "{standing:?}: the host file's mode changed");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host binary");
    }
}

#[test]
fn a_degenerate_whiteout_is_refused_with_the_layer_named() {
    for standing in standings() {
        let dir = folder(&[]);
        let tar = hostile_tar(&[
            ("keep", tar::EntryType::Directory, "", 0o755),
            ("keep/.wh..", tar::EntryType::Regular, "", 0o644),
        ]);
        layout_with_layer(&dir.path().join("evil"), "evil", &tar);
        let build = "stack version=1\nimage a {\n    from \"oci:evil:evil\"\n    run \"true\"\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
        let _ = std::process::Command::new("chmod")
            .args(["-R", "a+rwX", dir.path().to_str().unwrap()])
            .status();
        let out = run(standing, dir.path(), &["build"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{standing:?}");
        assert!(err.contains("whiteout that names no entry") && err.contains("sha256:"), "{err}");
    }
}

#[test]
fn a_context_symlink_in_a_bind_never_reaches_the_host() {
    for standing in standings() {
        // The context has an `etc` of its own, so planning accepts `hostetc -> /etc` (it
        // resolves inside the context); the mount must resolve it the same way.
        let dir = folder(&[("etc/marker", "context\n")]);
        std::os::unix::fs::symlink("/etc", dir.path().join("hostetc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("hostpasswd")).unwrap();
        let file = dir.path().join("stack.kdl");
        let good = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    \
            run \"ls /mnt; test -e /mnt/marker && test ! -e /mnt/passwd\" {\n        bind \"hostetc\" target=\"/mnt\"\n    }\n}\n";
        std::fs::write(&file, good).unwrap();
        // Given by an absolute path as well as from its folder: both must bind the same.
        for args in [vec!["build"], vec!["build", file.to_str().unwrap()]] {
            let out = run(standing, dir.path(), &args);
            assert!(out.status.success(), "{standing:?} {args:?}: {}", stderr(&out));
        }
        let bad = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    \
             run \"cat /mnt; echo leaked\" {\n        bind \"hostpasswd\" target=\"/mnt\"\n    }\n}\n";
        std::fs::write(&file, bad).unwrap();
        let out =
            run(standing, dir.path(), &["build", file.to_str().unwrap(), "--progress", "plain"]);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(!out.status.success(), "{standing:?}: {all}");
        assert!(!all.contains("root:x:0:0"), "{standing:?}: host file leaked: {all}");
    }
}

#[test]
fn a_writable_stage_bind_never_writes_into_the_store() {
    for standing in standings() {
        let dir = folder(&[]);
        let poison = "stack version=1\nstage b {\n    from \"oci:base:base\"\n}\n\
            image a {\n    from \"oci:base:base\"\n    \
            run \"echo POISON >> /mnt/etc/passwd; echo x > /mnt/bin/planted\" {\n        \
            bind \"/\" target=\"/mnt\" from=\"b\" readwrite=#true\n    }\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), poison).unwrap();
        let out = run(standing, dir.path(), &["build"]);
        assert!(out.status.success(), "{standing:?}: {}", stderr(&out));
        let check = "stack version=1\nimage c {\n    from \"oci:base:base\"\n    \
            run \"! grep -q POISON /etc/passwd && test ! -e /bin/planted\"\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), check).unwrap();
        let out = run(standing, dir.path(), &["build"]);
        assert!(out.status.success(), "{standing:?}: the store was poisoned: {}", stderr(&out));
        let out = run(standing, dir.path(), &["cache", "verify"]);
        assert!(out.status.success(), "{standing:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
        assert!(!text.contains("since it was extracted"), "{standing:?}: {text}");
        // The store is its owner's alone.
        assert_eq!(mode(&standing.store(dir.path())), 0o700, "{standing:?}");
    }
}

#[test]
fn cache_verify_finds_a_tree_changed_behind_its_back() {
    let Some(_) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = folder(&[]);
    let build = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    run \"true\"\n}\n";
    std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
    let out = run(Standing::Root, dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layers = Standing::Root.store(dir.path()).join("layers-v1");
    let passwd = walkdir::WalkDir::new(&layers)
        .into_iter()
        .flatten()
        .find(|e| e.path().ends_with("tree/etc/passwd"))
        .expect("an extracted base");
    let mut text = std::fs::read_to_string(passwd.path()).unwrap();
    text.replace_range(0..4, "ROOT");
    std::fs::write(passwd.path(), text).unwrap();
    let out = run(Standing::Root, dir.path(), &["cache", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(text.contains("`etc/passwd` changed content"), "{text}");
    assert!(!passwd.path().exists(), "the changed tree is dropped");
}

#[test]
fn a_secret_is_never_written_to_disk_even_when_the_build_is_killed() {
    const VALUE: &str = "sup3r-s3cret-v4lue-for-the-test";
    for standing in standings() {
        let dir = folder(&[("secret.txt", VALUE)]);
        let build = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    \
            run \"cat /run/secrets/tok > /dev/null; touch /dev/shm/started; sleep 30\" {\n        \
            secret \"tok\"\n    }\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
        let store = standing.store(dir.path());
        let mut child = standing
            .stack(dir.path(), &[])
            .args(["build", "--secret", "id=tok,src=secret.txt"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the step runs (its scratch folder appears), then look and kill.
        let started = Instant::now();
        while started.elapsed() < Duration::from_mins(1) {
            let running = walkdir::WalkDir::new(store.join("tmp"))
                .into_iter()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("run-"));
            if running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let found = |when: &str| {
            for e in walkdir::WalkDir::new(&store).into_iter().flatten() {
                if e.file_type().is_file()
                    && std::fs::read(e.path())
                        .is_ok_and(|b| b.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()))
                {
                    panic!("{standing:?}: the secret is on disk {when}: {}", e.path().display());
                }
            }
        };
        found("while the step runs");
        let _ = child.kill();
        let _ = child.wait();
        found("after the build was killed");
    }
}

#[test]
fn a_pipeline_ends_when_its_reader_does() {
    for standing in standings() {
        let dir = folder(&[]);
        let build = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    \
            run \"while :; do echo y; done | head -n 1 > /y\"\n}\n";
        std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
        let started = Instant::now();
        let out = run(standing, dir.path(), &["build"]);
        assert!(out.status.success(), "{standing:?}: {}", stderr(&out));
        assert!(started.elapsed() < Duration::from_mins(1), "{standing:?}");
    }
}

#[test]
fn a_relative_store_path_still_runs_steps() {
    // The sandbox works from its own folder; the store's paths must not depend on ours.
    if standings().is_empty() {
        return;
    }
    let dir = folder(&[]);
    let build =
        "stack version=1\nimage a {\n    from \"oci:base:base\"\n    run \"echo ok > /ok\"\n}\n";
    std::fs::write(dir.path().join("stack.kdl"), build).unwrap();
    let out = run_stack(dir.path(), Path::new("relative-store"), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("relative-store/layers-v1").is_dir());
}
