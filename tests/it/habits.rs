//! `docker build` habits through the binary: a folder argument, `-f` with either format and a
//! positional context, `-t`, `--build-arg NAME` from the environment, warnings for args nobody
//! declares, `--out -`.

use std::io::Read;
use std::path::Path;

use crate::support::{run_stack, stderr, stdout, write_files};

const KDL: &str = "stack version=1\narg VERSION default=\"1\"\nimage site {\n    from \"scratch\"\n    copy \"a.txt\" to=\"/a.txt\"\n    label v=\"${VERSION}\"\n}\n";
const DOCKERFILE: &str = "FROM scratch\nARG V=default\nCOPY a.txt /a.txt\nLABEL v=$V\n";

/// Builds in `dir` and returns (status code, stdout, stderr).
fn build(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut a = vec!["build"];
    a.extend(args);
    let o = run_stack(dir, &dir.join(".cache"), &a);
    (o.status.code(), stdout(&o), stderr(&o))
}

/// The names of the layout `stack-out` in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let o = run_stack(dir, &dir.join(".cache"), &["images", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()))
        .collect()
}

/// The label `v` of image `name` in the layout `stack-out` of `dir`.
fn label(dir: &Path, name: &str) -> String {
    let o = run_stack(dir, &dir.join(".cache"), &["inspect", name, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["config"]["config"]["Labels"]["v"].as_str().unwrap().to_owned()
}

#[test]
fn a_folder_argument_finds_the_build_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_files(
        dir,
        &[
            ("kdl/stack.kdl", KDL),
            ("kdl/a.txt", "a\n"),
            ("kdl/Dockerfile", "not read: stack.kdl comes first\n"),
            ("webapp/Dockerfile", DOCKERFILE),
            ("webapp/a.txt", "a\n"),
        ],
    );
    let (code, _, err) = build(dir, &["kdl"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = build(dir, &["webapp"]);
    assert_eq!(code, Some(0), "{err}");
    // An imported Dockerfile's image is named after its folder, not `app`.
    assert!(out.starts_with("webapp sha256:"), "{out}");
    let (code, _, err) = build(&dir.join("kdl"), &["."]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = build(dir, &["."]);
    assert_eq!(code, Some(4));
    assert!(err.contains("`.` holds no `stack.kdl` and no `Dockerfile`"), "{err}");
}

#[test]
fn dash_f_takes_either_format_and_a_positional_context() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_files(
        dir,
        &[
            ("a.txt", "a\n"),
            ("build/site.kdl", KDL),
            // No telling name: recognised by its `stack version=` line.
            ("build/Stackfile", KDL),
            ("build/Dockerfile.prod", DOCKERFILE),
        ],
    );
    for file in ["build/site.kdl", "build/Stackfile"] {
        let (code, out, err) = build(dir, &["-f", file, "."]);
        assert_eq!(code, Some(0), "{file}: {err}");
        assert!(out.starts_with("site sha256:"), "{out}");
    }
    let (code, out, err) = build(dir, &["-f", "build/Dockerfile.prod", ".", "-t", "example/web:2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("web sha256:"), "{out}");
    // Without the positional context, the file's folder is the context (no a.txt there).
    let (code, _, err) = build(dir, &["-f", "build/Dockerfile.prod"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`a.txt` is not in the build context"), "{err}");
    let (code, _, err) = build(dir, &["-f", "build/site.kdl", "a.txt"]);
    assert_eq!(code, Some(4));
    assert!(
        err.contains("`a.txt` is not a folder") && err.contains("docker build -f FILE DIR"),
        "{err}"
    );
}

#[test]
fn tags_name_the_image_in_the_layout_and_the_docker_archive() {
    let dir = crate::support::project(KDL);
    write_files(dir.path(), &[("a.txt", "a\n")]);
    let (code, _, err) =
        build(dir.path(), &["-t", "example/site:1", "--tag", "registry.example.com/site:latest"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("example/site:1, registry.example.com/site:latest"), "{err}");
    assert_eq!(names(dir.path()), ["site", "example/site:1", "registry.example.com/site:latest"]);
    let (code, _, err) = build(
        dir.path(),
        &["-t", "example/site:1", "--format", "docker-archive", "--out", "site.tar"],
    );
    assert_eq!(code, Some(0), "{err}");
    let mut ar = tar::Archive::new(std::fs::File::open(dir.path().join("site.tar")).unwrap());
    let mut manifest = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("manifest.json") {
            e.read_to_string(&mut manifest).unwrap();
        }
    }
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["example/site:1"]));
    let (code, _, err) = build(dir.path(), &["-t", "Not A Name"]);
    assert_eq!(code, Some(4));
    assert!(err.contains("`-t Not A Name` is not an image name"), "{err}");
    // Two images: `-t` cannot say which.
    let two = KDL.to_owned() + "image other {\n    from \"scratch\"\n}\n";
    write_files(dir.path(), &[("stack.kdl", &two)]);
    let (code, _, err) = build(dir.path(), &["-t", "x:1"]);
    assert_eq!(code, Some(4));
    assert!(err.contains("`-t` tags one image, but this build makes 2: site, other"), "{err}");
    let (code, _, err) = build(dir.path(), &["-t", "x:1", "--target", "other"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn build_args_come_from_the_environment_and_unknown_ones_warn() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("Dockerfile", DOCKERFILE), ("a.txt", "a\n")]);
    let name = dir.path().file_name().unwrap().to_string_lossy().to_lowercase();
    let name = name.trim_start_matches('.').to_owned();
    let with_env = crate::support::stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", dir.path().join(".cache"))
        .env("V", "from-env")
        .args(["build", ".", "--build-arg", "V"])
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    assert_eq!(label(dir.path(), &name), "from-env");
    // Unset in the environment: the arg keeps its default, as with docker.
    let (code, _, err) = build(dir.path(), &["--build-arg", "V"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(label(dir.path(), &name), "default");
    let (code, _, err) = build(dir.path(), &["--arg", "NOPE=1", "--arg", "W=2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "warning: `--arg NOPE` sets an arg the build file does not declare; it is unused"
        ),
        "{err}"
    );
    assert!(
        err.contains("`--arg W` sets an arg the build file does not declare (did you mean `V`?)"),
        "{err}"
    );
    // Platform args are always defined.
    let (_, _, err) = build(dir.path(), &["--arg", "TARGETARCH=amd64"]);
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn out_dash_writes_the_archive_to_standard_output() {
    let dir = crate::support::project(KDL);
    write_files(dir.path(), &[("a.txt", "a\n")]);
    let o = run_stack(dir.path(), &dir.path().join(".cache"), &["build", "--out", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.path().join("-").exists());
    let mut ar = tar::Archive::new(o.stdout.as_slice());
    let paths: Vec<String> =
        ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(
        paths.contains(&"index.json".to_owned()) && paths.contains(&"oci-layout".to_owned()),
        "{paths:?}"
    );
    assert!(stderr(&o).contains("into standard output"), "{}", stderr(&o));
    let docker = run_stack(
        dir.path(),
        &dir.path().join(".cache"),
        &["build", "-o", "-", "--format", "docker-archive"],
    );
    assert!(docker.status.success(), "{}", stderr(&docker));
    let mut ar = tar::Archive::new(docker.stdout.as_slice());
    assert!(
        ar.entries().unwrap().any(|e| e.unwrap().path().unwrap().to_str() == Some("manifest.json"))
    );
    let (code, _, err) = build(dir.path(), &["--out", "-", "--format", "oci"]);
    assert_eq!(code, Some(4));
    assert!(err.contains("`--out -` writes an archive, not a layout folder"), "{err}");
}

#[test]
fn load_puts_the_image_into_docker() {
    let docker_answers =
        std::process::Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    if !docker_answers {
        return crate::support::skip("no Docker daemon answers (start dockerd to test `--load`)");
    }
    let dir = crate::support::project(KDL);
    write_files(dir.path(), &[("a.txt", "a\n")]);
    let tag = format!("stackit/load-flag-{}:1", std::process::id());
    let (code, _, err) = build(dir.path(), &["--load", "-t", &tag]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("Loaded image: {tag}")), "{err}");
    let o = run_stack(dir.path(), &dir.path().join(".cache"), &["inspect", "site", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let config = v["manifest"]["config"]["digest"].as_str().unwrap().to_owned();
    let inspect = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}} {{index .Config.Labels \"v\"}}", &tag])
        .output()
        .unwrap();
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    // Docker's image id is the config's digest: the very image stack built.
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), format!("{config} 1"));
}

#[test]
fn version_completions_and_man_pages_come_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = run_stack(dir.path(), &cache, &["--version"]);
    let text = stdout(&out);
    assert!(text.starts_with("stack ") && text.contains("(commit "), "{text}");
    assert!(text.contains("features:"), "{text}");
    for (shell, marker) in
        [("bash", "_stack()"), ("zsh", "#compdef stack"), ("fish", "complete -c stack")]
    {
        let out = run_stack(dir.path(), &cache, &["completions", shell]);
        assert!(out.status.success(), "{}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker) && script.contains("build"), "{shell}: {script}");
    }
    let man = dir.path().join("man");
    let out = run_stack(dir.path(), &cache, &["man", "--out", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["stack.1", "stack-build.1", "stack-cache.1", "stack-import.1"] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}: {text}");
    }
    let build_page = std::fs::read_to_string(man.join("stack-build.1")).unwrap();
    assert!(build_page.contains("source\\-date\\-epoch"), "{build_page}");
    // `--help` never shows an environment variable's value.
    let out = run_stack(dir.path(), &cache, &["build", "--help"]);
    assert!(!stdout(&out).contains("SOURCE_DATE_EPOCH="), "{}", stdout(&out));
}

#[test]
fn import_never_overwrites_and_archives_follow_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    write_files(
        dir.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("a.txt", "a"),
            ("keep.kdl", "mine"),
        ],
    );
    let out = run_stack(dir.path(), &cache, &["import", "-o", "keep.kdl"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not overwrite"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.kdl")).unwrap(), "mine");
    let out = run_stack(dir.path(), &cache, &["import", "-o", "keep.kdl", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(dir.path().join("keep.kdl")).unwrap().contains("stack version=1")
    );
    let out = run_stack(
        dir.path(),
        &cache,
        &["build", "-f", "Dockerfile", "--format", "docker-archive", "--out", "img.tar"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("img.tar")).unwrap().permissions(),
    ) & 0o777;
    // The test process's umask (022 here) decides, as for any new file.
    assert_eq!(mode & 0o044, 0o044, "archive mode {mode:o}");
}

#[test]
fn a_base_only_the_local_daemon_holds_is_used_and_pinned() {
    let docker_answers =
        std::process::Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    if !docker_answers {
        return crate::support::skip(
            "no Docker daemon answers (start dockerd to test daemon bases)",
        );
    }
    let Some(base) = crate::support::busybox_base() else { return };
    if !crate::support::sandbox_ready() {
        return;
    }
    // An image that exists in the daemon only (no registry has this name).
    let tag = format!("stack-it/daemon-only-{}:1", std::process::id());
    let copied = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:base", base.display()))
        .arg(format!("docker-daemon:{tag}"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for from in [tag.clone(), format!("docker-daemon:{tag}")] {
        let kdl = format!(
            "stack version=1\nimage a {{\n    from \"{from}\"\n    run \"echo hi > /x\"\n}}\n"
        );
        write_files(dir.path(), &[("stack.kdl", &kdl)]);
        for extra in [&[][..], &["--locked"][..]] {
            let mut args = vec!["build"];
            args.extend_from_slice(extra);
            let out = run_stack(dir.path(), &cache, &args);
            assert!(out.status.success(), "{from} {extra:?}: {}", stderr(&out));
        }
        let lock = std::fs::read_to_string(dir.path().join("stack.lock")).unwrap();
        assert!(lock.contains("daemon-only") && lock.contains("digest=\"sha256:"), "{lock}");
    }
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
}

#[test]
fn an_unreachable_registry_fails_fast_naming_the_local_alternatives() {
    // `.invalid` never resolves (RFC 2606): a registry that cannot be reached at all is not
    // retried for seconds, and the error says how to name an image on this machine.
    let dir = tempfile::tempdir().unwrap();
    let kdl = "stack version=1\nimage a {\n    from \"registry.invalid/team/app:1\"\n}\n";
    write_files(dir.path(), &[("stack.kdl", kdl)]);
    let started = std::time::Instant::now();
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(err.contains("after 1 attempts"), "{err}");
    assert!(err.contains("docker-daemon:NAME") && err.contains("oci:DIR:NAME"), "{err}");
}

#[test]
fn a_swapped_letter_gets_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let kdl = "stack version=1\nimage a {\n    from \"scratch\"\n    copy \"a\" to=\"/a\" chwon=\"1:1\"\n}\n";
    write_files(dir.path(), &[("stack.kdl", kdl), ("a", "a")]);
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert!(stderr(&out).contains("did you mean `chown`?"), "{}", stderr(&out));
}
