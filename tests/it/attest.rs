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
            ("parts/args.kdl", "stack version=1\narg WHO default=\"world\"\n"),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\ninclude \"parts/args.kdl\"\nimage app {{\n    from \"oci:{}:base\"\n    copy \"greeting.txt\" to=\"/srv/\"\n    file \"/srv/who\" \"${{WHO}}\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
}

fn sha256_of(path: &Path) -> String {
    stack::digest::OciDigest::of(&std::fs::read(path).unwrap()).hex().to_owned()
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
