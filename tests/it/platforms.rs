//! Multi-platform images: a base made here for amd64 and arm64 (Debian's `busybox-static` of
//! each), `run` steps in both (arm64 through QEMU user emulation), one index per image.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{have, run_stack, sandbox_ready, skip, stderr, write_files};

/// The arm64 `busybox-static` package `.ci/run` downloads (`apt-get download`), unpacked once
/// per test process (tests run in parallel: none may see it half written).
fn arm64_busybox() -> Option<PathBuf> {
    static UNPACKED: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let found = UNPACKED.get_or_init(|| {
        let deb = std::env::var_os("STACK_ARM64_BUSYBOX_DEB").map(PathBuf::from);
        let deb = deb.filter(|d| d.is_file())?;
        let dir = std::env::temp_dir().join(format!("stack-it-arm64-{}", std::process::id()));
        let out = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some(dir.join("bin/busybox"))
    });
    if found.is_none() {
        skip("STACK_ARM64_BUSYBOX_DEB names no arm64 busybox-static .deb (see .ci/run)");
    }
    found.clone()
}

/// A project whose `base` image holds busybox for amd64 and arm64; returns the project.
fn two_platform_base(arm64: &Path) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    for (arch, busybox) in [("amd64", Path::new("/bin/busybox")), ("arm64", arm64)] {
        let root = ctx.path().join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "uname", "cat", "echo", "cp", "mkdir"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        write_files(
            &root,
            &[("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")],
        );
    }
    write_files(
        ctx.path(),
        &[(
            "base.kdl",
            "stack version=1\nplatforms \"linux/amd64\" \"linux/arm64\"\nimage base {\n    from \"scratch\"\n    copy \"rootfs-${TARGETARCH}/\" to=\"/\"\n    env PATH=\"/bin\"\n}\n",
        )],
    );
    ctx
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The digest `index.json` of `layout` names for `name`.
fn digest_of(layout: &Path, name: &str) -> String {
    let index = json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap();
    entry["digest"].as_str().unwrap().to_owned()
}

/// One platform's files of a multi-platform image, unpacked with skopeo and umoci.
fn unpack_platform(layout: &Path, name: &str, arch: &str, into: &Path) -> PathBuf {
    let single = into.join(format!("one-{arch}"));
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--override-arch", arch])
        .arg(format!("oci:{}:{name}", layout.display()))
        .arg(format!("oci:{}:{name}", single.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    let bundle = into.join(format!("bundle-{arch}"));
    crate::support::unpack(&single, name, &bundle);
    bundle.join("rootfs")
}

/// The two-platform base project, its base built into `out` with the store `stores/a`.
fn built_base() -> Option<(tempfile::TempDir, tempfile::TempDir, PathBuf)> {
    let arm64 = ready()?;
    let ctx = two_platform_base(&arm64);
    let stores = tempfile::tempdir().unwrap();
    let out = ctx.path().join("out");
    let args = ["build", "-f", "base.kdl", "-o", out.to_str().unwrap()];
    let o = run_stack(ctx.path(), &stores.path().join("a"), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    Some((ctx, stores, out))
}

fn ready() -> Option<PathBuf> {
    if !sandbox_ready() {
        return None;
    }
    if !have("skopeo") || !have("umoci") || !have("dpkg-deb") {
        skip("skopeo, umoci or dpkg-deb is missing");
        return None;
    }
    arm64_busybox()
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, checked by three clients in turn")]
fn one_build_makes_an_index_with_both_platforms_and_runs_steps_in_each() {
    let Some((ctx, stores, out)) = built_base() else { return };
    write_files(
        ctx.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nplatforms \"linux/amd64\" \"linux/arm64\"\nimage app {{\n    from \"oci:{}:base\"\n    arg TARGETARCH\n    run \"uname -m > /arch && echo $TARGETARCH > /target\"\n}}\n",
                out.display()
            ),
        )],
    );
    let app = ctx.path().join("app");
    let o = run_stack(
        ctx.path(),
        &stores.path().join("a"),
        &["build", "--progress", "plain", "-o", app.to_str().unwrap(), "--results", "results.json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("[app linux/arm64/v8, emulated] run"), "{}", stderr(&o));
    // The results file gives the index and each platform's manifest.
    crate::monorepo::check_schema(&ctx.path().join("results.json"));
    let results = json(&ctx.path().join("results.json"));
    let parts: Vec<&str> = results["images"]["app"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["linux/amd64", "linux/arm64/v8"]);
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:app", app.display()))
        .output()
        .unwrap();
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let root = unpack_platform(&app, "app", arch, ctx.path());
        assert_eq!(std::fs::read_to_string(root.join("arch")).unwrap().trim(), uname);
        assert_eq!(std::fs::read_to_string(root.join("target")).unwrap().trim(), arch);
        let config = Command::new("skopeo")
            .args(["inspect", "--config", "--override-arch", arch])
            .arg(format!("oci:{}:app", app.display()))
            .output()
            .unwrap();
        let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
        assert_eq!(config["architecture"], arch);
    }
    // Reproducible: another store gives the same index.
    let again = ctx.path().join("again");
    let fresh = stores.path().join("b");
    let o =
        run_stack(ctx.path(), &fresh, &["build", "-f", "base.kdl", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_stack(ctx.path(), &fresh, &["build", "-o", again.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest_of(&again, "app"), digest_of(&app, "app"));
    // `stack verify` rebuilds both platforms from nothing and compares each.
    let o = run_stack(ctx.path(), &fresh, &["verify"]);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{said}{}", stderr(&o));
    assert!(
        said.contains("app (linux/amd64): identical")
            && said.contains("app (linux/arm64/v8): identical"),
        "{said}"
    );
    // With attestations: one attestation manifest per platform, each naming its platform's
    // manifest, and one SBOM and provenance per platform beside the output.
    let attested = ctx.path().join("attested/layout");
    let o = run_stack(
        ctx.path(),
        &fresh,
        &["build", "--sbom", "--provenance", "-o", attested.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:app", attested.display()))
        .output()
        .unwrap();
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 4, "{index}");
    let about: Vec<&str> = manifests[2..]
        .iter()
        .map(|m| m["annotations"]["vnd.docker.reference.digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        about,
        [manifests[0]["digest"].as_str().unwrap(), manifests[1]["digest"].as_str().unwrap()]
    );
    for p in ["linux-amd64", "linux-arm64-v8"] {
        assert!(ctx.path().join(format!("attested/app.{p}.spdx.json")).is_file(), "{p}");
        assert!(ctx.path().join(format!("attested/app.{p}.provenance.json")).is_file(), "{p}");
    }
    // One platform of the two: a plain manifest, as before platforms existed.
    let one = ctx.path().join("one");
    let o = run_stack(
        ctx.path(),
        &fresh,
        &["build", "--platform", "linux/arm64", "-o", one.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let index = json(&one.join("index.json"));
    assert_eq!(index["manifests"][0]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    // A docker archive holds one platform: refused before building, saying how to choose.
    let o = run_stack(ctx.path(), &fresh, &["build", "--format", "docker-archive", "-o", "x.tar"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds one platform per image"), "{}", stderr(&o));
}

#[test]
fn a_stage_on_the_build_platform_runs_once_for_every_target() {
    let Some((ctx, stores, out)) = built_base() else { return };
    // The cross-compilation idiom: the build stage runs natively and writes every target's
    // file; each platform's image copies its own.
    write_files(
        ctx.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nplatforms \"linux/amd64\" \"linux/arm64\"\nstage build {{\n    from \"oci:{0}:base\" platform=\"${{BUILDPLATFORM}}\"\n    run \"mkdir -p /out && echo built-on-$(uname -m) > /out/amd64 && echo also-built-on-$(uname -m) > /out/arm64\"\n}}\nimage app {{\n    from \"oci:{0}:base\"\n    copy \"/out/${{TARGETARCH}}\" from=\"build\" to=\"/built\"\n}}\n",
                out.display()
            ),
        )],
    );
    let app = ctx.path().join("app");
    let o = run_stack(
        ctx.path(),
        &stores.path().join("a"),
        &["build", "--progress", "plain", "-o", app.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let runs =
        stderr(&o).lines().filter(|l| l.contains("run \"mkdir") && l.contains("done in")).count();
    assert_eq!(runs, 1, "{}", stderr(&o));
    for (arch, built) in [("amd64", "built-on-x86_64"), ("arm64", "also-built-on-x86_64")] {
        let root = unpack_platform(&app, "app", arch, ctx.path());
        assert_eq!(std::fs::read_to_string(root.join("built")).unwrap().trim(), built);
    }
}

#[test]
fn without_a_host_registration_root_registers_its_own_and_without_qemu_fails_first() {
    let Some((ctx, stores, out)) = built_base() else { return };
    write_files(
        ctx.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    platforms \"linux/arm64\"\n    from \"oci:{}:base\"\n    run \"uname -m > /arch\"\n}}\n",
                out.display()
            ),
        )],
    );
    let empty = tempfile::tempdir().unwrap();
    let build = |descriptions: &Path, dest: &str| {
        crate::support::stack()
            .current_dir(ctx.path())
            .env("STACK_CACHE_DIR", stores.path().join(dest))
            .env("STACK_BINFMT_DIR", empty.path())
            .env("STACK_BINFMTS_DIR", descriptions)
            .args(["build", "--progress", "plain", "-o", dest])
            .output()
            .unwrap()
    };
    // The host's registration hidden: as root, the step's process registers QEMU in a user
    // namespace made for it (identity map), and the image is the same.
    let own = build(Path::new("/usr/share/binfmts"), "own");
    assert!(own.status.success(), "{}", stderr(&own));
    let native = run_stack(ctx.path(), &stores.path().join("host"), &["build", "-o", "host"]);
    assert!(native.status.success(), "{}", stderr(&native));
    assert_eq!(
        digest_of(&ctx.path().join("own"), "app"),
        digest_of(&ctx.path().join("host"), "app")
    );
    let files = crate::support::image_files(&ctx.path().join("own"), "app");
    assert_eq!(files["arch"].as_deref(), Some(&b"aarch64\n"[..]));
    assert!(
        !files.keys().any(|f| f.contains("binfmt")),
        "the emulator's stub stays out: {files:?}"
    );
    // No QEMU at all: the build fails before any step.
    let o = build(empty.path(), "none");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("need an emulator") && err.contains("qemu-user-static"), "{err}");
    assert!(!err.contains("run \"uname -m > /arch\" ..."), "a step started: {err}");
    assert_eq!(o.status.code(), Some(7), "{err}");
}

#[test]
fn rootless_builds_register_the_emulator_for_their_own_sandboxes() {
    let Some(arm64) = ready() else { return };
    if !crate::run::subids_ready() {
        return;
    }
    let ctx = two_platform_base(&arm64);
    let o = run_stack(
        ctx.path(),
        &ctx.path().join("root-cache"),
        &["build", "-f", "base.kdl", "-o", "base"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    write_files(
        ctx.path(),
        &[(
            "stack.kdl",
            "stack version=1\nplatforms \"linux/amd64\" \"linux/arm64\"\nimage app {\n    from \"oci:base:base\"\n    run \"uname -m > /arch\"\n}\n",
        )],
    );
    let status = Command::new("chmod").args(["-R", "a+rwX"]).arg(ctx.path()).status().unwrap();
    assert!(status.success());
    let root = run_stack(ctx.path(), &ctx.path().join("root-cache"), &["build", "-o", "out-root"]);
    assert!(root.status.success(), "{}", stderr(&root));
    // The host's registration is hidden from stack: each sandbox registers QEMU in the
    // binfmt_misc of its own user namespace (Linux 6.7+), with and without subordinate ids.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    for (cache, subids) in [("cache-own", "off"), ("cache-subids", "on")] {
        let env = [("STACK_BINFMT_DIR", empty), ("STACK_SUBIDS", subids)];
        let out = format!("out-{cache}");
        let o = crate::run::stack_as_nobody(ctx.path(), cache, &["build", "-o", &out], &env);
        assert!(o.status.success(), "rootless ({cache}): {}", stderr(&o));
        assert_eq!(
            digest_of(&ctx.path().join(&out), "app"),
            digest_of(&ctx.path().join("out-root"), "app")
        );
    }
    let rootfs = unpack_platform(&ctx.path().join("out-cache-own"), "app", "arm64", ctx.path());
    assert_eq!(std::fs::read_to_string(rootfs.join("arch")).unwrap().trim(), "aarch64");
}

#[test]
fn an_index_is_pushed_and_pulled_back_as_the_base_of_each_platform() {
    let Some(arm64) = ready() else { return };
    let Some(registry) = crate::registry::Registry::start() else { return };
    let ctx = two_platform_base(&arm64);
    let store = ctx.path().join("cache");
    let tag = format!("{}/multi/base:1", registry.host());
    let o = run_stack(
        ctx.path(),
        &store,
        &["build", "-f", "base.kdl", "-o", "out", "-t", &tag, "--push"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The registry holds the index and each platform's manifest, as skopeo sees them.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{tag}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw.stdout)),
        digest_of(&ctx.path().join("out"), "base")
    );
    // Pulled back as a base: each platform's image, pinned per platform in stack.lock.
    write_files(
        ctx.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nplatforms \"linux/amd64\" \"linux/arm64\"\nimage app {{\n    from \"{tag}\"\n    copy \"base.kdl\" to=\"/\"\n}}\n"
            ),
        )],
    );
    let fresh = ctx.path().join("fresh");
    let o = run_stack(
        ctx.path(),
        &fresh,
        &["build", "--insecure-registry", &registry.host(), "-o", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lock = std::fs::read_to_string(ctx.path().join("stack.lock")).unwrap();
    assert!(
        lock.contains("platform=\"linux/amd64\"") && lock.contains("platform=\"linux/arm64/v8\""),
        "{lock}"
    );
    // `stack lock` keeps both pins, and drops a stale pin of a planned platform.
    let gone = format!("{}/gone/base:1", registry.host());
    let stale = format!(
        "{lock}image \"{gone}\" platform=\"linux/arm64/v8\" digest=\"sha256:{}\"\n",
        "0".repeat(64)
    );
    std::fs::write(ctx.path().join("stack.lock"), stale).unwrap();
    let o = run_stack(ctx.path(), &fresh, &["lock", "--insecure-registry", &registry.host()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 pinned") && stderr(&o).contains("1 no longer used"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(ctx.path().join("stack.lock")).unwrap(), lock);
    for (arch, elf_machine) in [("amd64", 0x3e_u8), ("arm64", 0xb7)] {
        let root = unpack_platform(&ctx.path().join("app"), "app", arch, ctx.path());
        let busybox = std::fs::read(root.join("bin/busybox")).unwrap();
        assert_eq!(busybox[18], elf_machine, "{arch}'s busybox");
    }
    // A platform the base lacks is an error naming those it has.
    let o = run_stack(ctx.path(), &fresh, &["build", "--platform", "linux/s390x", "-o", "none"]);
    assert!(!o.status.success());
    let err = crate::support::stderr_unwrapped(&o);
    assert!(err.contains("no image for `linux/s390x`") && err.contains("`linux/amd64`"), "{err}");
}

/// The sha256 of `bytes`, in hex, with the tools every test machine has.
fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}
