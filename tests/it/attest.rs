//! `stack build --provenance` (SLSA provenance v1 in an in-toto statement) and the attestation
//! manifests `--sbom`/`--provenance` attach to the output: valid for the in-toto/SLSA shape,
//! naming every input by digest, byte-identical across stores and folders.

use std::path::Path;
use std::process::Command;

use crate::support::{busybox_base, run_stack, skip, stderr, stdout, write_files};

/// Validates `doc` against `tests/data/intoto/NAME` (Draft 2020-12) with Python's
/// `jsonschema`; skips when it is missing.
pub(crate) fn check_intoto(name: &str, doc: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/intoto").join(name);
    let script = "import json,sys,jsonschema\n\
        s=json.load(open(sys.argv[1]));d=json.load(open(sys.argv[2]))\n\
        jsonschema.Draft202012Validator.check_schema(s)\n\
        jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker()).validate(d)\n";
    let probe = Command::new("python3").args(["-c", "import jsonschema"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return skip("python3 with jsonschema is missing (pip install jsonschema)");
    }
    let out = Command::new("python3").arg("-c").arg(script).arg(&schema).arg(doc).output().unwrap();
    assert!(out.status.success(), "{}: {}", doc.display(), String::from_utf8_lossy(&out.stderr));
}

/// A project with an include, a context file and a `--arg`, on the busybox base.
fn write_project(dir: &Path, base: &Path, greeting: &str) {
    write_files(
        dir,
        &[
            ("greeting.txt", greeting),
            // An included file's args are its own: the main file declares the one it uses.
            ("parts/args.kdl", "stack version=1\narg PART default=\"x\"\n"),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\ninclude \"parts/args.kdl\"\narg WHO default=\"world\"\nimage app {{\n    from \"oci:{}:base\"\n    copy \"greeting.txt\" to=\"/srv/\"\n    file \"/srv/who\" \"${{WHO}}\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
}

fn sha256_of(path: &Path) -> String {
    stack::api::digest::OciDigest::of(&std::fs::read(path).unwrap()).hex().to_owned()
}

#[test]
fn provenance_names_the_inputs_by_digest_and_is_reproducible() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let build = |store: &str, out: &str| {
        let args = ["build", "--provenance", "--arg", "WHO=you", "--out", out];
        let o = run_stack(dir.path(), &dir.path().join(store), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let digest = stdout(&o).split_whitespace().nth(1).unwrap().to_owned();
        let path = dir.path().join(out).with_file_name("app.provenance.json");
        (digest, std::fs::read(path).unwrap())
    };
    let (digest, bytes) = build("c1", "one/out");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["subject"][0]["digest"]["sha256"], digest.trim_start_matches("sha256:"));
    let def = &v["predicate"]["buildDefinition"];
    assert_eq!(def["externalParameters"]["buildFile"], "stack.kdl");
    assert_eq!(def["externalParameters"]["args"]["WHO"], "you");
    assert_eq!(def["externalParameters"]["target"], "app");
    let deps = def["resolvedDependencies"].as_array().unwrap();
    let dep = |uri: &str| {
        deps.iter().find(|d| d["uri"] == uri).unwrap_or_else(|| panic!("no {uri} in {deps:?}"))
    };
    assert_eq!(dep("file:stack.kdl")["digest"]["sha256"], sha256_of(&dir.path().join("stack.kdl")));
    let include = &dep("file:parts/args.kdl")["digest"]["sha256"];
    assert_eq!(*include, sha256_of(&dir.path().join("parts/args.kdl")));
    let base_dep = dep(&format!("oci:oci:{}:base", base.display()));
    assert!(base_dep["digest"]["sha256"].as_str().is_some_and(|d| d.len() == 64));
    let context = dep("context:")["digest"]["sha256"].clone();
    let version = &v["predicate"]["runDetails"]["builder"]["version"]["stack"];
    assert_eq!(*version, env!("CARGO_PKG_VERSION"));
    let text = String::from_utf8_lossy(&bytes);
    let folder = dir.path().display().to_string();
    assert!(!text.contains(&folder), "an absolute path of the project: {text}");
    assert!(!text.contains("startedOn"), "a time: {text}");
    check_intoto("slsa-provenance-v1.schema.json", &dir.path().join("one/app.provenance.json"));

    // Another store and output folder: the same bytes.
    assert_eq!(build("c2", "two/out").1, bytes);
    // A changed context file changes the context digest.
    write_project(dir.path(), &base, "bye\n");
    let (_, changed) = build("c2", "three/out");
    let changed: serde_json::Value = serde_json::from_slice(&changed).unwrap();
    let deps = changed["predicate"]["buildDefinition"]["resolvedDependencies"].to_string();
    assert!(!deps.contains(context.as_str().unwrap()), "{deps}");
}

/// The blob `digest` (`sha256:…`) of a layout, as JSON.
fn blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The image index `name` of a layout names, with its manifests: the image first, then the
/// attestation manifest (checked here), and each statement by predicate type.
fn attestations(
    layout: &Path,
    name: &str,
) -> (serde_json::Value, Vec<(String, serde_json::Value)>) {
    let top = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(layout.join("index.json")).unwrap(),
    )
    .unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap()
        .clone();
    assert_eq!(entry["mediaType"], "application/vnd.oci.image.index.v1+json");
    let index = blob_json(layout, entry["digest"].as_str().unwrap());
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    let att = &manifests[1];
    assert_eq!(att["annotations"]["vnd.docker.reference.type"], "attestation-manifest");
    assert_eq!(att["annotations"]["vnd.docker.reference.digest"], manifests[0]["digest"]);
    assert_eq!(att["platform"], serde_json::json!({"architecture": "unknown", "os": "unknown"}));
    let att_manifest = blob_json(layout, att["digest"].as_str().unwrap());
    let statements = att_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            let kind = l["annotations"]["in-toto.io/predicate-type"].as_str().unwrap().to_owned();
            let statement = blob_json(layout, l["digest"].as_str().unwrap());
            assert_eq!(statement["predicateType"], kind.as_str());
            assert_eq!(
                format!("sha256:{}", statement["subject"][0]["digest"]["sha256"].as_str().unwrap()),
                manifests[0]["digest"].as_str().unwrap()
            );
            (kind, statement)
        })
        .collect();
    (index, statements)
}

fn ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn attestation_manifests_are_reproducible_and_skopeo_and_umoci_read_the_image() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let build = |store: &str, out: &str| {
        let args = ["build", "--sbom", "--provenance", "--out", out];
        let o = run_stack(dir.path(), &dir.path().join(store), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    build("c1", "one/out");
    build("c2", "two/out");
    let one = dir.path().join("one/out");
    let (index, statements) = attestations(&one, "app");
    let kinds: Vec<&str> = statements.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["https://spdx.dev/Document", "https://slsa.dev/provenance/v1"]);
    assert_eq!(statements[0].1["predicate"]["spdxVersion"], "SPDX-2.3");
    // Two stores, two folders: the same index, so the same attestations, byte for byte.
    let two = dir.path().join("two/out");
    assert_eq!(attestations(&two, "app").0, index);
    assert_eq!(
        std::fs::read(one.join("index.json")).unwrap(),
        std::fs::read(two.join("index.json")).unwrap()
    );
    let statement = dir.path().join("provenance.json");
    std::fs::write(&statement, statements[1].1.to_string()).unwrap();
    check_intoto("slsa-provenance-v1.schema.json", &statement);

    if crate::support::have("skopeo") {
        let o = Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:app", one.display())])
            .output()
            .unwrap();
        ok(&o, "skopeo inspect");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Architecture"], stack::api::oci::image::host_arch());
    } else {
        skip("skopeo is missing");
    }
    if crate::support::have("umoci") {
        let arch = stack::api::oci::image::host_arch();
        let bundle = dir.path().join("bundle");
        let image = format!("{}:app+linux-{arch}", one.display());
        let o = Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle)
            .output()
            .unwrap();
        ok(&o, "umoci unpack");
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/srv/greeting.txt")).unwrap(),
            "hello\n"
        );
    } else {
        skip("umoci is missing");
    }
}

#[test]
fn docker_loads_the_docker_archive_with_attestations() {
    let Some(base) = busybox_base() else { return };
    if !Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()) {
        return skip("no Docker daemon answers (start dockerd to test `docker load`)");
    }
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let tag = format!("stackit/attest-{}:1", std::process::id());
    let file = dir.path().join("app.tar");
    let o = run_stack(
        dir.path(),
        &dir.path().join("c"),
        &[
            "build",
            "--sbom",
            "--provenance",
            "-t",
            &tag,
            "--format",
            "docker-archive",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let load =
        Command::new("docker").args(["load", "-i", file.to_str().unwrap()]).output().unwrap();
    ok(&load, "docker load");
    let inspect = Command::new("docker").args(["image", "inspect", &tag]).output().unwrap();
    ok(&inspect, "docker image inspect");
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
}

/// A local registry and a project whose image goes to `HOST/team/app:1` (the tag returned);
/// `None` (skipped, with why) without busybox or the registry.
fn project_for_a_registry() -> Option<(crate::registry::Registry, tempfile::TempDir, String)> {
    let base = busybox_base()?;
    let registry = crate::registry::Registry::start()?;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let tag = format!("{}/team/app:1", registry.host());
    Some((registry, dir, tag))
}

#[test]
fn attestation_manifests_survive_a_push_and_a_pull() {
    // The registry runs until `_registry` is dropped at the end of the test.
    let Some((_registry, dir, tag)) = project_for_a_registry() else { return };
    let o = run_stack(
        dir.path(),
        &dir.path().join("c"),
        &["build", "--sbom", "--provenance", "-t", &tag, "--push", "--out", "out"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (index, _) = attestations(&dir.path().join("out"), "app");
    // Pulled back with every manifest of the index: the same index and statements.
    let pulled = dir.path().join("pulled");
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--all", "--src-tls-verify=false", &format!("docker://{tag}")])
        .arg(format!("oci:{}:app", pulled.display()))
        .output()
        .unwrap();
    ok(&o, "skopeo copy --all");
    let (pulled_index, statements) = attestations(&pulled, "app");
    assert_eq!(pulled_index, index);
    assert_eq!(statements.len(), 2);
    // A second push of the unchanged image sends nothing.
    let o = run_stack(
        dir.path(),
        &dir.path().join("c"),
        &["build", "--sbom", "--provenance", "-t", &tag, "--push", "--out", "out"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unchanged"), "{}", stderr(&o));
}

#[test]
fn the_build_files_attest_node_asks_for_the_attestations() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let kdl = std::fs::read_to_string(dir.path().join("stack.kdl")).unwrap();
    let with_attest = kdl.replacen(
        "stack version=1\n",
        "stack version=1\nattest sbom=#true sbom-format=\"cyclonedx\" provenance=#true\n",
        1,
    );
    std::fs::write(dir.path().join("stack.kdl"), &with_attest).unwrap();
    let o = run_stack(dir.path(), &dir.path().join("c"), &["build", "--out", "out/lay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("out/app.cdx.json").is_file());
    assert!(dir.path().join("out/app.provenance.json").is_file());
    let (_, statements) = attestations(&dir.path().join("out/lay"), "app");
    let kinds: Vec<&str> = statements.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1"]);

    // An unknown format is the build file's mistake, at its line.
    let bad = with_attest.replace("\"cyclonedx\"", "\"swid\"");
    std::fs::write(dir.path().join("stack.kdl"), bad).unwrap();
    let o = run_stack(dir.path(), &dir.path().join("c"), &["build", "--out", "out/lay"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("swid") && err.contains("stack.kdl:2"), "{err}");
}

#[test]
fn stack_provenance_prints_the_attached_statement() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &base, "hello\n");
    let cache = dir.path().join("c");
    let o = run_stack(dir.path(), &cache, &["build", "--provenance", "--out", "out/lay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_stack(dir.path(), &cache, &["provenance", "app", "--from", "out/lay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let beside = std::fs::read_to_string(dir.path().join("out/app.provenance.json")).unwrap();
    assert_eq!(stdout(&o), format!("{beside}\n"));
    // Without attestations: an error naming the image and the layout.
    let o = run_stack(dir.path(), &cache, &["build", "--out", "plain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_stack(dir.path(), &cache, &["provenance", "app", "--from", "plain"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("`app`") && err.contains("plain") && err.contains("sha256:"), "{err}");
}

/// `skopeo inspect --raw` of a registry reference, as JSON.
fn raw(reference: &str) -> serde_json::Value {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    ok(&o, "skopeo inspect --raw");
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn referrers_reach_a_registry_without_the_api_through_the_tag_schema() {
    let Some((registry, dir, tag)) = project_for_a_registry() else { return };
    let host = registry.host();
    let push = || {
        let args = [
            "build",
            "--sbom",
            "--provenance",
            "--attest-as",
            "referrers",
            "-t",
            &tag,
            "--push",
            "--out",
            "out",
        ];
        let o = run_stack(dir.path(), &dir.path().join("c"), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("listed by the fallback tag"), "{}", stderr(&o));
        stdout(&o).split_whitespace().nth(1).unwrap().to_owned()
    };
    let digest = push();
    // The image itself stays a manifest; its tag names it.
    let image = raw(&tag);
    assert_eq!(image["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let fallback = format!("{host}/team/app:{}", digest.replace(':', "-"));
    let index = raw(&fallback);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{index}");
    let mut kinds = Vec::new();
    for entry in listed {
        assert_eq!(entry["artifactType"], "application/vnd.in-toto+json");
        let artifact = raw(&format!("{host}/team/app@{}", entry["digest"].as_str().unwrap()));
        assert_eq!(artifact["subject"]["digest"], digest.as_str());
        kinds.push(artifact["layers"][0]["annotations"]["in-toto.io/predicate-type"].clone());
    }
    kinds.sort_by_key(ToString::to_string);
    assert_eq!(kinds, ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"]);
    // A second push lists each referrer once: the same index.
    assert_eq!(push(), digest);
    assert_eq!(raw(&fallback), index);
}
