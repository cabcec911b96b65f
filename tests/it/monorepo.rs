//! Monorepo features end to end: pushes of unchanged images that send no manifest, the
//! results file (checked against its schema and the registry), shards that partition the
//! images, and `stack affected` on a git repository made here.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::fleet::{Fault, Proxy};
use crate::registry::{Registry, registry_digest};
use crate::support::{
    busybox_base, have, run_stack, sandbox_ready, skip, stderr, stdout, write_files,
};

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Validates `doc` against `schemas/results.schema.json` with Python's `jsonschema`; skips
/// when it is missing.
pub(crate) fn check_schema(doc: &Path) {
    check_against("results.schema.json", doc);
}

/// Validates `doc` against `schemas/NAME` (see [`check_schema`]).
fn check_against(name: &str, doc: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    let script = "import json,sys,jsonschema\n\
        s=json.load(open(sys.argv[1]));d=json.load(open(sys.argv[2]))\n\
        jsonschema.Draft202012Validator.check_schema(s)\n\
        jsonschema.Draft202012Validator(s).validate(d)\n";
    let probe = Command::new("python3").args(["-c", "import jsonschema"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("python3 with jsonschema is missing (pip install jsonschema)");
        return;
    }
    let out = Command::new("python3").arg("-c").arg(script).arg(&schema).arg(doc).output().unwrap();
    assert!(out.status.success(), "{}: {}", doc.display(), String::from_utf8_lossy(&out.stderr));
}

/// The image names of a results file.
fn names(results: &serde_json::Value) -> BTreeSet<String> {
    results["images"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_second_push_of_an_unchanged_image_sends_no_manifest() {
    let Some(base) = busybox_base() else { return };
    let Some(registry) = Registry::start() else { return };
    let proxy = Proxy::start(registry.port, Fault::None, 0);
    let host = proxy.host();
    let dir = tempfile::tempdir().unwrap();
    let kdl = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    copy \"hello.txt\" to=\"/srv/\"\n    tag \"{host}/team/app:1\" \"{host}/team/app:latest\"\n}}\n",
        base.display()
    );
    write_files(dir.path(), &[("stack.kdl", &kdl), ("hello.txt", "hello\n")]);
    let cache = dir.path().join("cache");
    let push = |results: &str| {
        let path = dir.path().join(results);
        let o = run_stack(
            dir.path(),
            &cache,
            &["build", "--push", "--results", path.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        check_schema(&path);
        (o, read_json(&path))
    };
    let statuses = |r: &serde_json::Value| -> Vec<String> {
        r["images"]["app"]["pushed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} {}", p["tag"].as_str().unwrap(), p["status"].as_str().unwrap()))
            .collect()
    };
    let (_, first) = push("first.json");
    assert_eq!(
        statuses(&first),
        [format!("{host}/team/app:1 pushed"), format!("{host}/team/app:latest pushed")]
    );
    let digest = first["images"]["app"]["manifest_digest"].as_str().unwrap().to_owned();
    assert_eq!(registry_digest(&format!("{}/team/app:1", registry.host())), digest);
    assert_eq!(first["images"]["app"]["containerimage.digest"], digest.as_str());

    let before = proxy.requests().len();
    let (second, again) = push("second.json");
    assert!(
        stderr(&second).contains(&format!("unchanged {host}/team/app:1@{digest}")),
        "{}",
        stderr(&second)
    );
    assert!(stdout(&second).contains(&format!("{host}/team/app:latest {digest}")));
    assert_eq!(
        statuses(&again),
        [format!("{host}/team/app:1 unchanged"), format!("{host}/team/app:latest unchanged")]
    );
    // One manifest HEAD per tag and nothing else: no blob checks, no manifest PUT.
    let requests: Vec<String> = proxy.requests()[before..].to_vec();
    let heads = requests.iter().filter(|r| r.starts_with("HEAD /v2/team/app/manifests/")).count();
    assert_eq!(heads, 2, "{requests:#?}");
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("HEAD /v2/team/app/manifests/") || r == "GET /v2/ HTTP/1.1"),
        "{requests:#?}"
    );

    // A changed image is pushed again.
    write_files(dir.path(), &[("hello.txt", "hello again\n")]);
    let (_, third) = push("third.json");
    assert_eq!(
        statuses(&third),
        [format!("{host}/team/app:1 pushed"), format!("{host}/team/app:latest pushed")]
    );
    assert_ne!(third["images"]["app"]["manifest_digest"].as_str().unwrap(), digest);
    // `stack push` from the layout checks the tag the same way.
    let o = run_stack(dir.path(), &cache, &["push", "app", &format!("{host}/team/app:1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).starts_with(&format!("unchanged {host}/team/app:1@")), "{}", stderr(&o));
    drop(registry);
}

#[test]
fn the_results_file_says_what_was_built_and_where_a_step_failed() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            "stack version=1\nimage one {\n    from \"scratch\"\n    file \"/a\" \"1\"\n    tag \"example/one:1\"\n}\nimage two {\n    from \"scratch\"\n    file \"/b\" \"2\"\n}\n",
        )],
    );
    let cache = dir.path().join("cache");
    let results = dir.path().join("results.json");
    let o = run_stack(dir.path(), &cache, &["build", "--results", results.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_schema(&results);
    let r = read_json(&results);
    assert_eq!(r["status"], "succeeded");
    assert_eq!(names(&r), BTreeSet::from(["one".to_owned(), "two".to_owned()]));
    assert_eq!(r["steps"]["run"], 2);
    let one = &r["images"]["one"];
    assert_eq!(one["tags"], serde_json::json!(["example/one:1"]));
    assert_eq!(one["image.name"], "example/one:1");
    assert_eq!(one["output"], "stack-out");
    assert!(one["platform"].as_str().unwrap().starts_with("linux/"));
    // The digests are the layout's.
    let line = stdout(&o).lines().find(|l| l.starts_with("one ")).unwrap().to_owned();
    assert_eq!(line, format!("one {}", one["manifest_digest"].as_str().unwrap()));
    if have("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:one", dir.path().join("stack-out").display())])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Digest"], one["manifest_digest"]);
    }
    // Keys come in a fixed order: a rebuild differs only in its duration.
    let text = std::fs::read_to_string(&results).unwrap();
    let o = run_stack(dir.path(), &cache, &["build", "--results", results.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let strip = |t: &str| {
        t.lines().filter(|l| !l.contains("duration_seconds")).collect::<Vec<_>>().join("\n")
    };
    let again = std::fs::read_to_string(&results).unwrap();
    assert_eq!(
        strip(&text).replace("\"run\": 2", "\"run\": 0"),
        strip(&again).replace("\"reused\": 2", "\"reused\": 0")
    );

    if !sandbox_ready() {
        return;
    }
    let base = busybox_base().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage broken {{\n    from \"oci:{}:base\"\n    run \"exit 3\"\n}}\n",
                base.display()
            ),
        )],
    );
    let o = run_stack(dir.path(), &cache, &["build", "--results", results.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    check_schema(&results);
    let r = read_json(&results);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failure"]["line"], 4);
    assert_eq!(r["failure"]["column"], 5);
    assert!(r["failure"]["file"].as_str().unwrap().ends_with("stack.kdl"));
    assert!(r["images"].as_object().unwrap().is_empty());
}

/// A build file of `n` small images from scratch, `img0` … `img{n-1}`.
fn many_images(n: usize) -> String {
    let mut kdl = "stack version=1\n".to_owned();
    for i in 0..n {
        let _ = write!(kdl, "image img{i} {{\n    from \"scratch\"\n    file \"/n\" \"{i}\"\n}}\n");
    }
    kdl
}

/// The images each shard of `count` builds.
fn shards(dir: &Path, count: usize) -> Vec<BTreeSet<String>> {
    (1..=count)
        .map(|i| {
            let results = dir.join(format!("shard-{i}.json"));
            let o = run_stack(
                dir,
                &dir.join("cache"),
                &[
                    "build",
                    "--shard",
                    &format!("{i}/{count}"),
                    "--results",
                    results.to_str().unwrap(),
                ],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            let r = read_json(&results);
            assert_eq!(r["shard"], serde_json::json!({"index": i, "count": count}));
            names(&r)
        })
        .collect()
}

#[test]
fn shards_partition_the_images_and_stay_put_when_images_are_added() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("stack.kdl", &many_images(9))]);
    let parts = shards(dir.path(), 3);
    let all: BTreeSet<String> = (0..9).map(|i| format!("img{i}")).collect();
    let union: BTreeSet<String> = parts.iter().flatten().cloned().collect();
    assert_eq!(union, all);
    assert_eq!(parts.iter().map(BTreeSet::len).sum::<usize>(), 9, "shards overlap: {parts:?}");
    // Adding images moves none of the others.
    write_files(dir.path(), &[("stack.kdl", &many_images(12))]);
    let grown = shards(dir.path(), 3);
    for (before, after) in parts.iter().zip(&grown) {
        assert!(before.is_subset(after), "{before:?} → {after:?}");
    }
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--shard", "4/3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Runs git in `dir` with a fixed identity.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A monorepo in git: a shared stage at the top, services `a` and `b` in their own folders
/// with their own build files (and `a` with an ignore file), image `c` in the main file.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str| {
        format!("image {name} {{\n    from shared\n    copy \"src/\" to=\"/app/\"\n}}\n")
    };
    write_files(
        dir.path(),
        &[
            (
                "stack.kdl",
                "stack version=1\ninclude \"services/*/stack.kdl\"\nstage shared {\n    from \"scratch\"\n    copy \"lib/\" to=\"/lib/\"\n}\nimage c {\n    from \"scratch\"\n    copy \"c.txt\" to=\"/c.txt\"\n}\n",
            ),
            (".stackignore", "**/*.log\n"),
            ("README.md", "a monorepo\n"),
            ("lib/x.txt", "x\n"),
            ("c.txt", "c\n"),
            ("services/a/stack.kdl", &format!("stack version=1\n{}", service("a"))),
            ("services/a/.stackignore", "**/*.tmp\n"),
            ("services/a/src/main.txt", "a\n"),
            ("services/a/src/old.txt", "old\n"),
            ("services/a/notes.txt", "not copied\n"),
            ("services/b/stack.kdl", &format!("stack version=1\n{}", service("b"))),
            ("services/b/src/main.txt", "b\n"),
        ],
    );
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "start"]);
    dir
}

/// `stack affected --since HEAD` after `change` ran on the repository, then reverted.
fn affected_by(repo: &Path, cache: &Path, change: &dyn Fn(&Path)) -> Vec<String> {
    change(repo);
    let o = run_stack(repo, cache, &["affected", "--since", "HEAD"]);
    assert!(o.status.success(), "{}", stderr(&o));
    git(repo, &["checkout", "-q", "--", "."]);
    git(repo, &["clean", "-qfd"]);
    stdout(&o).lines().map(str::to_owned).collect()
}

#[test]
fn affected_follows_what_each_step_selects() {
    if !have("git") {
        skip("git is missing (apt-get install git)");
        return;
    }
    let repo = repository();
    let cache = tempfile::tempdir().unwrap();
    let (r, c) = (repo.path(), cache.path());
    let write =
        |path: &'static str, text: &'static str| move |d: &Path| write_files(d, &[(path, text)]);
    assert!(affected_by(r, c, &|_| {}).is_empty());
    let o = run_stack(
        r,
        c,
        &["build", "--affected-since", "HEAD", "-o", c.join("none").to_str().unwrap()],
    );
    assert!(o.status.success() && stderr(&o).contains("nothing to build"), "{}", stderr(&o));
    assert!(!c.join("none").exists(), "nothing is written when nothing is affected");
    assert_eq!(affected_by(r, c, &write("services/a/src/main.txt", "a2\n")), ["a"]);
    // Added, ignored, or selected by no step: nothing.
    assert_eq!(affected_by(r, c, &write("services/b/src/new.txt", "new\n")), ["b"]);
    assert!(affected_by(r, c, &write("services/a/src/debug.tmp", "x\n")).is_empty());
    assert!(affected_by(r, c, &write("services/a/notes.txt", "changed\n")).is_empty());
    assert!(affected_by(r, c, &write("README.md", "changed\n")).is_empty());
    assert!(affected_by(r, c, &write("lib/debug.log", "x\n")).is_empty());
    // Deleted: the step that copied it.
    let delete = |d: &Path| std::fs::remove_file(d.join("services/a/src/old.txt")).unwrap();
    assert_eq!(affected_by(r, c, &delete), ["a"]);
    // The shared stage reaches both of its users, not `c`.
    assert_eq!(affected_by(r, c, &write("lib/x.txt", "x2\n")), ["a", "b"]);
    // A service's build file: its image; the main build file: every image.
    let edit = |path: &'static str| {
        move |d: &Path| {
            let p = d.join(path);
            let text = std::fs::read_to_string(&p).unwrap() + "// changed\n";
            std::fs::write(p, text).unwrap();
        }
    };
    assert_eq!(affected_by(r, c, &edit("services/b/stack.kdl")), ["b"]);
    assert_eq!(affected_by(r, c, &edit("stack.kdl")), ["a", "b", "c"]);
    // A new ignore file can change what its context selects.
    assert_eq!(affected_by(r, c, &write("services/b/.stackignore", "nothing\n")), ["b"]);

    // JSON says why; an unknown revision is an error that names it.
    write_files(r, &[("services/a/src/main.txt", "a3\n")]);
    let o = run_stack(r, c, &["affected", "--since", "HEAD", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    std::fs::write(c.join("affected.json"), stdout(&o)).unwrap();
    check_against("affected.schema.json", &c.join("affected.json"));
    assert_eq!(v["images"], serde_json::json!(["a"]));
    assert_eq!(v["reasons"]["a"], serde_json::json!(["services/a/src/main.txt"]));
    let o = run_stack(r, c, &["affected", "--since", "no-such-rev"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("`no-such-rev` is not a revision"), "{}", stderr(&o));

    // `build --affected-since` builds just those.
    let results = c.join("results.json");
    let out = c.join("out");
    let o = run_stack(
        r,
        c,
        &[
            "build",
            "--affected-since",
            "HEAD",
            "-o",
            out.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&read_json(&results)), BTreeSet::from(["a".to_owned()]));
    assert!(stderr(&o).contains("1 of 3 image(s) affected"), "{}", stderr(&o));
}

#[test]
fn a_stack_lock_change_affects_the_images_on_that_base() {
    if !have("git") {
        skip("git is missing (apt-get install git)");
        return;
    }
    let Some(base) = busybox_base() else { return };
    let Some(registry) = Registry::start() else { return };
    let host = registry.host();
    crate::registry::skopeo_copy(
        &format!("oci:{}:base", base.display()),
        &format!("docker://{host}/base:1"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage on-base {{\n    from \"{host}/base:1\"\n    env A=\"1\"\n}}\nimage on-scratch {{\n    from \"scratch\"\n    file \"/a\" \"1\"\n}}\n"
            ),
        )],
    );
    let o = run_stack(dir.path(), cache.path(), &["lock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "start"]);
    // The tag moves to another image and `stack lock` follows it.
    let other = tempfile::tempdir().unwrap();
    write_files(
        other.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage other {{\n    from \"oci:{}:base\"\n    env MOVED=\"1\"\n}}\n",
                base.display()
            ),
        )],
    );
    let o = run_stack(other.path(), cache.path(), &["build"]);
    assert!(o.status.success(), "{}", stderr(&o));
    crate::registry::skopeo_copy(
        &format!("oci:{}:other", other.path().join("stack-out").display()),
        &format!("docker://{host}/base:1"),
    );
    let o = run_stack(dir.path(), cache.path(), &["lock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_stack(dir.path(), cache.path(), &["affected", "--since", "HEAD", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["images"], serde_json::json!(["on-base"]), "{v}");
    assert_eq!(v["reasons"]["on-base"], serde_json::json!([format!("stack.lock: {host}/base:1")]));
    drop(registry);
}

/// Copies the folder `src` into `dir`, leaving out the generated `base/` and `stack-out/`.
fn copy_tree(src: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in walkdir::WalkDir::new(src).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(src).unwrap();
        if rel.starts_with("base") || rel.starts_with("stack-out") {
            continue;
        }
        let to = dir.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

#[test]
fn the_monorepo_example_builds_pushes_and_reports_what_a_change_affects() {
    if !have("git") || !sandbox_ready() {
        return skip("git or the sandbox is missing");
    }
    // The Python service's base comes from Debian's .deb files, which `.ci/run` downloads.
    let debs = std::env::var_os("STACK_PYTHON_DEBS").map(std::path::PathBuf::from);
    let Some(debs) = debs.filter(|d| d.is_dir()) else {
        return skip("STACK_PYTHON_DEBS names no folder of Python .debs (see .ci/run)");
    };
    if !have("busybox") || !have("dpkg-deb") {
        return skip("busybox or dpkg-deb is missing");
    }
    let Some(registry) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo"), &repo);
    // The example's own script makes both bases.
    let made = Command::new("sh")
        .arg(repo.join("make-base.sh"))
        .arg(env!("CARGO_BIN_EXE_stack"))
        .env("PYTHON_DEBS", &debs)
        .env("STACK_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(made.status.success(), "make-base.sh: {}", String::from_utf8_lossy(&made.stderr));
    let base_arg = "BASE=oci:base/layout:base".to_owned();
    let reg_arg = format!("REGISTRY={}/monorepo", registry.host());
    let build = |results: &str| {
        let path = dir.path().join(results);
        let args = ["build", "--push", "--arg", &base_arg, "--arg", &reg_arg, "--results"];
        let mut args: Vec<&str> = args.to_vec();
        args.push(path.to_str().unwrap());
        let o = run_stack(&repo, &cache, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        check_schema(&path);
        read_json(&path)
    };
    let first = build("first.json");
    let all =
        ["counter", "greeter", "inventory", "report", "worker-mail", "worker-push", "worker-sms"];
    assert_eq!(names(&first), all.iter().map(|s| (*s).to_owned()).collect());
    let greeter = crate::support::image_files(&repo.join("stack-out"), "greeter");
    assert!(greeter.contains_key("srv/greeter/main.sh") && greeter.contains_key("opt/lib/log.sh"));
    assert!(!greeter.contains_key("srv/greeter/NOTES.md"), "greeter's own .stackignore applies");
    let inventory = crate::support::image_files(&repo.join("stack-out"), "inventory");
    assert!(
        inventory.contains_key("usr/bin/python3.11")
            && inventory.contains_key("srv/inventory/inventory.py")
    );
    // Its `run "python3 … --self-test"` step ran the service with the image's own interpreter.
    assert!(inventory.contains_key("usr/lib/python3.11/csv.py"));
    let again = build("again.json");
    for name in all {
        let pushed = &again["images"][name]["pushed"][0];
        assert_eq!(pushed["status"], "unchanged", "{name}: {pushed}");
    }
    // `stack verify` rebuilds all seven from nothing: identical.
    let o = run_stack(&repo, &cache, &["verify", "--arg", &base_arg, "--arg", &reg_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches(": identical").count(), 7);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    let affected = |path: &'static str, text: &'static str| {
        let mut v = affected_by(&repo, &cache, &move |d: &Path| {
            let old = std::fs::read_to_string(d.join(path)).unwrap_or_default();
            write_files(d, &[(path, &format!("{old}{text}"))]);
        });
        v.sort();
        v
    };
    assert_eq!(affected("services/counter/src/count.awk", "# more\n"), ["counter"]);
    assert_eq!(affected("services/inventory/src/inventory.py", "# more\n"), ["inventory"]);
    assert!(affected("services/greeter/src/NOTES.md", "more\n").is_empty());
    assert!(affected("services/greeter/test/run.sh", "# more\n").is_empty());
    assert_eq!(affected("lib/log.sh", "# more\n"), all);
    let sh_users = affected_by(&repo, &cache, &|d: &Path| {
        let t = std::fs::read_to_string(d.join("templates.kdl")).unwrap();
        let t = t.replace("run \"sh -n", "run \"sh -n -e");
        write_files(d, &[("templates.kdl", &t)]);
    });
    assert_eq!(sh_users, ["greeter", "worker-mail", "worker-push", "worker-sms"]);
    let workers = affected("services/workers/stack.kdl", "// more\n");
    assert_eq!(workers, ["worker-mail", "worker-push", "worker-sms"]);
}
