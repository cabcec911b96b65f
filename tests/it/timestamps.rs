//! The image's creation time: the context's last git commit by default (files keep time 0, so
//! a new commit reuses every layer), 0 outside git, `SOURCE_DATE_EPOCH` everywhere when given;
//! and whatever the store has seen, the same inputs and times give the same digest.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{have, project, run_stack, skip, stack, stderr, stdout};

const BUILD: &str = "stack version=1\nimage app {\n    from \"scratch\"\n    file \"/a\" \"a\"\n    copy \"src.txt\" to=\"/src.txt\"\n}\n";

/// Commits everything in `dir` at `date` (committer and author).
fn commit(dir: &Path, date: &str) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date)
            .env_remove("GIT_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    if !dir.join(".git").exists() {
        git(&["init", "-q"]);
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "--allow-empty", "-m", "change"]);
}

/// The config of image `name` of the layout `out` in `dir`.
fn config(dir: &Path, out: &str) -> Value {
    let o = stack()
        .current_dir(dir)
        .args(["inspect", "app", "--from", out, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["config"].clone()
}

#[test]
fn timestamps_default_to_the_last_commit_of_the_context() {
    if !have("git") {
        return skip("git is missing (apt-get install git)");
    }
    let dir = project(BUILD);
    std::fs::write(dir.path().join("src.txt"), "source\n").unwrap();
    std::fs::write(dir.path().join(".gitignore"), "cache/\nstack-out/\n").unwrap();
    commit(dir.path(), "2024-05-06T07:08:09Z");
    let cache = dir.path().join("cache");
    let first = run_stack(dir.path(), &cache, &["build", "--explain"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("2024-05-06T07:08:09Z (1714979289), the context's last git commit"),
        "{}",
        stderr(&first)
    );
    let c = config(dir.path(), "stack-out");
    assert_eq!(c["created"], "2024-05-06T07:08:09Z");
    assert!(
        c["history"].as_array().unwrap().iter().all(|h| h["created"] == "2024-05-06T07:08:09Z")
    );
    let diff_ids = c["rootfs"]["diff_ids"].clone();

    // A new commit: another creation time, the same layers, every step reused.
    commit(dir.path(), "2025-01-02T03:04:05Z");
    let second = run_stack(dir.path(), &cache, &["build"]);
    assert!(stderr(&second).contains("0 step(s) run"), "{}", stderr(&second));
    let c = config(dir.path(), "stack-out");
    assert_eq!(c["created"], "2025-01-02T03:04:05Z");
    assert_eq!(c["rootfs"]["diff_ids"], diff_ids, "files keep time 0");

    // `stack verify`'s rebuild stamps the same time.
    let verify = run_stack(dir.path(), &cache, &["verify", "--progress", "plain"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));

    // An explicit SOURCE_DATE_EPOCH wins.
    let given = stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", &cache)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--out", "given"])
        .output()
        .unwrap();
    assert!(given.status.success(), "{}", stderr(&given));
    assert_eq!(config(dir.path(), "given")["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn timestamps_are_zero_outside_git() {
    let dir = project(BUILD);
    std::fs::write(dir.path().join("src.txt"), "source\n").unwrap();
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("every timestamp is 0"), "{}", stderr(&out));
    assert_eq!(config(dir.path(), "stack-out")["created"], "1970-01-01T00:00:00Z");
}

#[test]
fn timestamps_given_never_mix_with_cached_layers_of_another_time() {
    let dir = project(BUILD);
    std::fs::write(dir.path().join("src.txt"), "source\n").unwrap();
    let build = |cache: &Path, epoch: Option<&str>| {
        let mut c = stack();
        c.current_dir(dir.path()).env("STACK_CACHE_DIR", cache).args(["build", "--out", "o"]);
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let shared = dir.path().join("shared");
    let fresh = |name: &str| dir.path().join(name);
    // In every order, one store gives the digests of fresh stores.
    let at_1700 = build(&shared, Some("1700000000"));
    let at_0 = build(&shared, None);
    let at_1800 = build(&shared, Some("1800000000"));
    assert_eq!(at_0, build(&fresh("f0"), None));
    assert_eq!(at_1700, build(&fresh("f1"), Some("1700000000")));
    assert_eq!(at_1800, build(&fresh("f2"), Some("1800000000")));
    assert_eq!(build(&shared, Some("1700000000")), at_1700);
}
