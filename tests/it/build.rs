//! End-to-end builds, checked with skopeo and umoci.

use std::fmt::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::support::{busybox_base, have, run_stack, skip, stderr, stdout, write_files};

fn project(dir: &Path, base: &Path) {
    write_files(
        dir,
        &[
            ("src/app.sh", "#!/bin/sh\necho hello from app\n"),
            ("src/lib/util.txt", "util\n"),
            ("docs/readme.md", "not copied\n"),
            (".dockerignore", "docs\n"),
            (
                "stack.kdl",
                &format!(
                    r#"stack version=1
arg VERSION default="1.2"
stage assets {{
    from "scratch"
    copy "src/lib/" to="/assets/"
}}
image app {{
    from "oci:{base}:base"
    env APP_VERSION="${{VERSION}}"
    workdir "/srv"
    copy "src/" to="./" chown="app:staff" chmod="0755"
    copy "/assets/util.txt" to="/opt/util.txt" from=assets
    file "/etc/app.conf" "mode=prod\n" chmod="0640" chown="1000:50"
    user "app"
    expose 8080
    volume "/data"
    label "org.opencontainers.image.version"="${{VERSION}}"
    stopsignal "SIGTERM"
    entrypoint "/bin/sh"
    cmd "/srv/app.sh"
    tag "example/app:${{VERSION}}"
}}
"#,
                    base = base.display()
                ),
            ),
        ],
    );
}

#[test]
fn builds_an_image_real_clients_accept() {
    let Some(base) = busybox_base() else { return };
    if !have("skopeo") || !have("umoci") {
        return skip("skopeo or umoci is missing (apt-get install skopeo umoci)");
    }
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).split_whitespace().nth(1).unwrap().to_owned();

    let layout = dir.path().join("stack-out");
    for name in ["app", "example/app:1.2"] {
        let inspect = Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:{name}", layout.display())])
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "skopeo inspect {name}: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(v["Digest"], digest.as_str());
    }
    let config = Command::new("skopeo")
        .args(["inspect", "--config", &format!("oci:{}:app", layout.display())])
        .output()
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    let cc = &c["config"];
    assert_eq!(cc["User"], "app");
    assert_eq!(cc["WorkingDir"], "/srv");
    assert_eq!(cc["Entrypoint"], serde_json::json!(["/bin/sh"]));
    assert_eq!(cc["Cmd"], serde_json::json!(["/srv/app.sh"]));
    assert!(cc["Env"].as_array().unwrap().contains(&serde_json::json!("APP_VERSION=1.2")));
    assert_eq!(cc["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(cc["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(cc["Labels"]["org.opencontainers.image.version"], "1.2");
    assert_eq!(cc["StopSignal"], "SIGTERM");
    assert_eq!(c["created"], "1970-01-01T00:00:00Z");
    let history = c["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["empty_layer"] == true
                && h["created_by"].as_str().unwrap().starts_with("env"))
    );

    let bundle = dir.path().join("bundle");
    crate::support::unpack(&layout, "app", &bundle);
    let rootfs = bundle.join("rootfs");
    let app = std::fs::metadata(rootfs.join("srv/app.sh")).unwrap();
    assert_eq!((app.uid(), app.gid(), app.mode() & 0o7777), (1000, 50, 0o755));
    assert_eq!(std::fs::read_to_string(rootfs.join("srv/lib/util.txt")).unwrap(), "util\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("opt/util.txt")).unwrap(), "util\n");
    let conf = std::fs::metadata(rootfs.join("etc/app.conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid(), conf.mode() & 0o7777), (1000, 50, 0o640));
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/app.conf")).unwrap(), "mode=prod\n");
    assert!(rootfs.join("bin/busybox").exists(), "base layers are present");
    assert!(
        !rootfs.join("srv/docs").exists() && !rootfs.join("docs").exists(),
        ".dockerignore applies"
    );
    assert_eq!(app.mtime(), 0, "mtimes are clamped to SOURCE_DATE_EPOCH (default 0)");
}

#[test]
fn same_inputs_give_the_same_digest_from_any_folder() {
    let Some(base) = busybox_base() else { return };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    project(a.path(), &base);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    project(b.path(), &base);
    // Different mtimes and a different umask-independent checkout time.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(b.path().join("src/app.sh"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out_a = run_stack(a.path(), &a.path().join("cache"), &["build"]);
    let out_b = run_stack(b.path(), &b.path().join("cache"), &["build"]);
    assert!(out_a.status.success(), "{}", stderr(&out_a));
    assert!(out_b.status.success(), "{}", stderr(&out_b));
    assert_eq!(stdout(&out_a), stdout(&out_b));
    // SOURCE_DATE_EPOCH is part of the output.
    let out_c = crate::support::stack()
        .current_dir(a.path())
        .env("STACK_CACHE_DIR", a.path().join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .output()
        .unwrap();
    assert!(out_c.status.success());
    assert_ne!(stdout(&out_a), stdout(&out_c));
}

#[test]
fn a_second_build_reuses_every_step() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    let cache = dir.path().join("cache");
    let first = run_stack(dir.path(), &cache, &["build"]);
    let second = run_stack(dir.path(), &cache, &["build"]);
    assert!(second.status.success());
    assert_eq!(stdout(&first), stdout(&second));
    assert!(stderr(&second).contains("0 step(s) run"), "{}", stderr(&second));
    std::fs::write(dir.path().join("src/lib/util.txt"), "changed\n").unwrap();
    let third = run_stack(dir.path(), &cache, &["build"]);
    assert_ne!(stdout(&first), stdout(&third));
    // The changed file is in both copies of it; the workdir step before them is reused.
    assert!(stderr(&third).contains("4 step(s) run, 1 reused"), "{}", stderr(&third));
}

#[test]
fn archives_load_in_real_clients() {
    let Some(base) = busybox_base() else { return };
    if !have("skopeo") {
        return skip("skopeo is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    let cache = dir.path().join("cache");
    let layout = run_stack(dir.path(), &cache, &["build"]);
    let digest = stdout(&layout);
    for (format, transport) in
        [("oci-archive", "oci-archive"), ("docker-archive", "docker-archive")]
    {
        let file = dir.path().join(format!("{format}.tar"));
        let out = run_stack(
            dir.path(),
            &cache,
            &["build", "--format", format, "--out", file.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), digest);
        let reference = if transport == "oci-archive" {
            format!("{transport}:{}:app", file.display())
        } else {
            format!("{transport}:{}", file.display())
        };
        let inspect =
            Command::new("skopeo").args(["inspect", "--config", &reference]).output().unwrap();
        assert!(inspect.status.success(), "{format}: {}", String::from_utf8_lossy(&inspect.stderr));
        let c: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(c["config"]["User"], "app");
        // The archive bytes are reproducible too.
        let again = dir.path().join(format!("{format}-2.tar"));
        run_stack(
            dir.path(),
            &cache,
            &["build", "--format", format, "--out", again.to_str().unwrap()],
        );
        assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&again).unwrap());
    }
    // A built archive is usable as a base.
    let sub = tempfile::tempdir().unwrap();
    write_files(
        sub.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage x {{\n    from \"docker-archive:{}\"\n    env X=\"1\"\n}}\n",
                dir.path().join("docker-archive.tar").display()
            ),
        )],
    );
    let out = run_stack(sub.path(), &cache, &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn zstd_layers_are_valid() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--compression", "zstd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Debian's umoci predates zstd layers: read them back with the zstd and tar crates.
    let layout = dir.path().join("stack-out");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut names = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        if layer["mediaType"] != "application/vnd.oci.image.layer.v1.tar+zstd" {
            continue;
        }
        let bytes = zstd::decode_all(blob(layer["digest"].as_str().unwrap()).as_slice()).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
    }
    assert!(names.contains(&"opt/util.txt".to_owned()), "{names:?}");
}

#[test]
fn bad_local_images_fail_clearly_and_write_nothing() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Copy the base layout and corrupt one blob.
    let copy = dir.path().join("base");
    let status = Command::new("cp")
        .args(["-r", base.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let blobs: Vec<_> =
        std::fs::read_dir(copy.join("blobs/sha256")).unwrap().flatten().map(|e| e.path()).collect();
    let biggest = blobs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(biggest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(biggest, bytes).unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!("stack version=1\nimage x {{\n    from \"oci:{}:base\"\n}}\n", copy.display()),
        )],
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let name = biggest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr(&out).contains(&name), "the error names the blob: {}", stderr(&out));
    assert!(!dir.path().join("stack-out").exists(), "no output on failure");

    write_files(
        dir.path(),
        &[
            ("junk.tar", "not a tar"),
            ("stack.kdl", "stack version=1\nimage x {\n    from \"docker-archive:junk.tar\"\n}\n"),
        ],
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(!dir.path().join("stack-out").exists());
}

#[test]
fn every_input_of_a_step_is_in_its_key() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = |chown: &str, base_ref: &str| {
        format!(
            "stack version=1\narg A default=\"1\"\nimage x {{\n    from \"{base_ref}\"\n    copy \"f.txt\" to=\"/f.txt\" chown=\"{chown}\"\n    copy \"g.txt\" to=\"/g-${{A}}.txt\"\n}}\n"
        )
    };
    let base_ref = format!("oci:{}:base", base.display());
    write_files(
        dir.path(),
        &[("f.txt", "f"), ("g.txt", "g"), ("stack.kdl", &file("0:0", &base_ref))],
    );
    let cache = dir.path().join("cache");
    let build = |args: &[&str]| {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        let out = run_stack(dir.path(), &cache, &all);
        assert!(out.status.success(), "{}", stderr(&out));
        let runs = stderr(&out)
            .split(" step(s) run")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        (stdout(&out), runs)
    };
    let (first, _) = build(&[]);
    assert_eq!(build(&[]), (first.clone(), 0), "nothing changed: everything is reused");
    // Content.
    std::fs::write(dir.path().join("f.txt"), "F").unwrap();
    assert_eq!(build(&[]).1, 2);
    // Mode.
    std::fs::set_permissions(
        dir.path().join("f.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(build(&[]).1, 2);
    // Owner.
    std::fs::write(dir.path().join("stack.kdl"), file("1000:1000", &base_ref)).unwrap();
    assert_eq!(build(&[]).1, 2);
    // An arg: only the step that uses it.
    assert_eq!(build(&["--arg", "A=2"]).1, 1);
    // mtime alone: nothing.
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("g.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(build(&["--arg", "A=2"]).1, 0);
    // The base image.
    let other = dir.path().join("other");
    write_files(
        &other,
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage o {{\n    from \"{base_ref}\"\n    env CHANGED=\"1\"\n    file \"/marker\" \"m\"\n}}\n"
            ),
        )],
    );
    assert!(run_stack(&other, &cache, &["build"]).status.success());
    std::fs::write(
        dir.path().join("stack.kdl"),
        file("1000:1000", &format!("oci:{}:o", other.join("stack-out").display())),
    )
    .unwrap();
    assert_eq!(build(&["--arg", "A=2"]).1, 2);
}

/// The registry base the README and the examples use; tests build them on the local busybox
/// image instead (no internet in tests).
pub(crate) const EXAMPLE_BASE: &str = "docker.io/library/busybox:1.37";

/// Copies the files of `from` (recursively) into `to`.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Builds the project in `dir` (a registry base `EXAMPLE_BASE` becomes the local busybox) with
/// `args`, then checks what it claims: its image has `/srv/www/VERSION` holding the version and
/// the site's files, and the command it declares exists in it.
fn build_example(dir: &Path, base: &Path, args: &[&str], version: &str) {
    let kdl = std::fs::read_to_string(dir.join("stack.kdl")).unwrap();
    let local = format!("oci:{}:base", base.display());
    std::fs::write(dir.join("stack.kdl"), kdl.replace(EXAMPLE_BASE, &local)).unwrap();
    let cache = dir.join(".cache");
    let out = dir.join("out");
    let mut build = vec!["build", "stack.kdl", "--out", out.to_str().unwrap()];
    build.extend(args);
    let o = run_stack(dir, &cache, &build);
    assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
    let name = stdout(&o).split_whitespace().next().unwrap().to_owned();
    // The summary names the image, its digest and tag.
    let err = stderr(&o);
    assert!(err.contains(&format!("example/{name}:{version}")), "{err}");
    let inspect = |extra: &[&str]| {
        let mut a = vec!["inspect", name.as_str(), "--from", out.to_str().unwrap()];
        a.extend(extra);
        let o = run_stack(dir, &cache, &a);
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    };
    let cat = |path: &str| String::from_utf8(inspect(&["--cat", path])).unwrap();
    assert_eq!(cat("/srv/www/VERSION"), format!("{version}\n"));
    assert_eq!(cat("/srv/www/index.html"), "<h1>hello from stack</h1>\n");
    let config: serde_json::Value = serde_json::from_slice(&inspect(&["--json"])).unwrap();
    let files: serde_json::Value =
        serde_json::from_slice(&inspect(&["--files", "--json"])).unwrap();
    if let Some(cmd) = config["config"]["config"]["Cmd"][0].as_str() {
        let program = if cmd.starts_with('/') { cmd.to_owned() } else { format!("/bin/{cmd}") };
        assert!(
            files.as_array().unwrap().iter().any(|f| f["path"] == program.as_str()),
            "{}: the command `{cmd}` is not in the image",
            dir.display()
        );
    }
}

#[test]
fn the_examples_and_the_readme_build_what_they_claim() {
    let Some(base) = busybox_base() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut built = 0;
    for e in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        // The monorepo example makes six images and has a test of its own (`monorepo::`).
        if !e.path().join("stack.kdl").exists() || e.file_name() == "monorepo" {
            continue;
        }
        for (args, version) in [(&[][..], "1.0"), (&["--arg", "VERSION=2.5"][..], "2.5")] {
            let dir = tempfile::tempdir().unwrap();
            copy_tree(&e.path(), dir.path());
            build_example(dir.path(), &base, args, version);
        }
        built += 1;
    }
    assert!(built >= 2);
    // The README's example, with the files of examples/web.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("```kdl\n").unwrap() + 7;
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&root.join("examples/web"), dir.path());
    std::fs::write(dir.path().join("stack.kdl"), block).unwrap();
    build_example(dir.path(), &base, &[], "1.0");
}

/// The README's quick start, as written, works offline with stack alone.
#[test]
fn the_quick_start_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("hello-out");
    let mut commands = 0;
    for line in readme.lines().filter(|l| l.starts_with("cargo run --release -- ")) {
        let line = line.split('#').next().unwrap().trim();
        let line = line.replace("/tmp/hello-out", layout.to_str().unwrap());
        let args: Vec<&str> = line.split_whitespace().skip(4).collect();
        let o = crate::support::stack()
            .current_dir(root)
            .env("STACK_CACHE_DIR", out.path().join("cache"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "`{line}`: {}", stderr(&o));
        if line.contains("--cat /srv/www/VERSION") {
            assert_eq!(stdout(&o), "1.0\n");
        }
        commands += 1;
    }
    assert!(commands >= 3, "the quick start has no commands");
    assert!(!root.join("examples/hello/stack.lock").exists(), "the quick start pinned a download");
}

#[test]
fn docker_loads_the_docker_archive() {
    let Some(base) = busybox_base() else { return };
    if !Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()) {
        return skip("no Docker daemon answers (start dockerd to test `docker load`)");
    }
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &base);
    let tag = format!("stackit/load-{}:1.2", std::process::id());
    std::fs::write(
        dir.path().join("stack.kdl"),
        std::fs::read_to_string(dir.path().join("stack.kdl"))
            .unwrap()
            .replace("example/app:${VERSION}", &tag.replace("1.2", "${VERSION}")),
    )
    .unwrap();
    let file = dir.path().join("app.tar");
    let out = run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["build", "--format", "docker-archive", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let load =
        Command::new("docker").args(["load", "-i", file.to_str().unwrap()]).output().unwrap();
    assert!(load.status.success(), "docker load: {}", String::from_utf8_lossy(&load.stderr));
    let inspect = Command::new("docker").args(["image", "inspect", &tag]).output().unwrap();
    assert!(
        inspect.status.success(),
        "docker image inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Config"]["User"], "app");
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["/srv/app.sh"]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
}

#[test]
fn reusing_compressed_chunks_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    // ~3 MiB of text in 30 files, so the layer spans several 1 MiB gzip chunks.
    for i in 0..30 {
        let mut body = String::new();
        for j in 0..10_000 {
            let _ = writeln!(body, "{i} {j} {}", j * 7919 % 1013);
        }
        write_files(dir.path(), &[(&format!("data/f{i:02}.txt"), &body)]);
    }
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            "stack version=1\nimage x {\n    from \"scratch\"\n    copy \"data/\" to=\"/data/\"\n}\n",
        )],
    );
    let cache = dir.path().join("cache");
    assert!(run_stack(dir.path(), &cache, &["build"]).status.success());
    std::fs::write(dir.path().join("data/f29.txt"), "the last file changed\n").unwrap();
    let reused = run_stack(dir.path(), &cache, &["build", "--out", "o2"]);
    assert!(reused.status.success(), "{}", stderr(&reused));
    assert!(
        std::fs::read_dir(cache.join("records-v1/gzchunks")).unwrap().count() >= 2,
        "chunk tables are kept"
    );
    let fresh = run_stack(dir.path(), &dir.path().join("fresh-cache"), &["build", "--out", "o3"]);
    assert_eq!(
        stdout(&reused),
        stdout(&fresh),
        "a build that reuses chunks must equal a fresh one"
    );
}

#[test]
fn file_content_expands_like_every_value() {
    let dir = crate::support::project(
        r#"stack version=1
arg NAME default="world"
image app {
    from "scratch"
    env GREETING="hello"
    file "/a" "${GREETING} ${NAME}\n"
    file "/b" "literal $${NAME}\n"
    file "/c" "raw ${HOME} $${NAME}\n" expand=#false
}
"#,
    );
    let cache = dir.path().join(".cache");
    let out = run_stack(dir.path(), &cache, &["build", "--arg", "NAME=you"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cat = |path: &str| {
        let o = run_stack(dir.path(), &cache, &["inspect", "app", "--cat", path]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(cat("/a"), "hello you\n");
    assert_eq!(cat("/b"), "literal ${NAME}\n");
    assert_eq!(cat("/c"), "raw ${HOME} $${NAME}\n");
    // A name the build does not define is an error that says how to write it literally.
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            "stack version=1\nimage app {\n    from \"scratch\"\n    file \"/s\" \"echo ${HOME}\\n\"\n}\n",
        )],
    );
    let o = run_stack(dir.path(), &cache, &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let err = crate::support::stderr_unwrapped(&o);
    assert!(err.contains("stack::undefined-variable") && err.contains("expand=#false"), "{err}");
}

#[test]
fn images_and_inspect_read_the_layout() {
    let dir = crate::support::project(
        "stack version=1\nimage app {\n    from \"scratch\"\n    file \"/etc/app.conf\" \"x=1\\n\"\n    cmd \"/app\"\n    tag \"example/app:1.0\"\n}\n",
    );
    let cache = dir.path().join(".cache");
    let out = run_stack(dir.path(), &cache, &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).split_whitespace().nth(1).unwrap().to_owned();
    // The build's closing table.
    let table = stderr(&out);
    let row = table.lines().find(|l| l.starts_with("app ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&digest) && row.contains("example/app:1.0"), "{table}");
    let images = run_stack(dir.path(), &cache, &["images"]);
    assert!(images.status.success(), "{}", stderr(&images));
    let listed = stdout(&images);
    assert!(listed.starts_with("NAMES"), "{listed}");
    assert!(listed.contains(&format!("app, example/app:1.0  {digest}")), "{listed}");
    let json = run_stack(dir.path(), &cache, &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["digest"], digest.as_str());
    assert_eq!(v[0]["layers"], 1);
    let shown = stdout(&run_stack(dir.path(), &cache, &["inspect", "example/app:1.0"]));
    assert!(shown.contains("cmd:         [\"/app\"]"), "{shown}");
    assert!(shown.contains("file \"/etc/app.conf\""), "{shown}");
    let files = stdout(&run_stack(dir.path(), &cache, &["inspect", "app", "--files"]));
    assert!(files.contains("-0644     0:0             4  /etc/app.conf"), "{files}");
    let missing = run_stack(dir.path(), &cache, &["inspect", "nosuch"]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        stderr(&missing).contains("the names in it: app, example/app:1.0"),
        "{}",
        stderr(&missing)
    );
    // A damaged layer is refused, not listed.
    let v: serde_json::Value = serde_json::from_slice(
        &run_stack(dir.path(), &cache, &["inspect", "app", "--json"]).stdout,
    )
    .unwrap();
    let layer = v["manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let blob = dir.path().join("stack-out/blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.push(0);
    std::fs::write(&blob, bytes).unwrap();
    let damaged = run_stack(dir.path(), &cache, &["inspect", "app", "--files"]);
    assert_eq!(damaged.status.code(), Some(4));
    assert!(stderr(&damaged).contains(&layer), "{}", stderr(&damaged));
    assert!(damaged.stdout.is_empty());
    let no_layout = run_stack(dir.path(), &cache, &["images", "--from", "nowhere"]);
    assert!(
        stderr(&no_layout).contains("`nowhere` is not an OCI image layout"),
        "{}",
        stderr(&no_layout)
    );
}
