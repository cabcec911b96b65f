//! Several builds sharing one output layout or one store: every image lands, and what a dead
//! build left behind is cleaned by the next one.

use std::fmt::Write;

use std::path::Path;
use std::process::{Child, Command};

use crate::support::Standing;
use crate::support::{project, stack, stderr};

#[test]
fn concurrent_builds_into_one_layout_all_land() {
    const N: usize = 8;
    let mut kdl = String::from("stack version=1\n");
    for i in 0..N {
        let _ = write!(
            kdl,
            "image img{i} {{\n    from \"scratch\"\n    file \"/id\" \"{i}\\n\"\n    tag \"example/img:{i}\"\n}}\n"
        );
    }
    let dir = project(&kdl);
    // Five rounds: the race between reading and replacing `index.json` is narrow.
    for round in 0..5 {
        let out = dir.path().join(format!("out{round}"));
        let children: Vec<_> = (0..N)
            .map(|i| {
                stack()
                    .current_dir(dir.path())
                    .env("STACK_CACHE_DIR", dir.path().join(format!("cache{i}")))
                    .args(["build", "--target", &format!("img{i}"), "--out"])
                    .arg(&out)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "a build failed: {}", stderr(&o));
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap())
            .collect();
        for i in 0..N {
            assert!(
                names.contains(&format!("img{i}").as_str()),
                "round {round}: img{i} lost: {names:?}"
            );
            assert!(
                names.contains(&format!("example/img:{i}").as_str()),
                "round {round}: {names:?}"
            );
        }
        let stray: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("tmp") || n.starts_with(".index"))
            .collect();
        assert!(stray.is_empty(), "temporary files left: {stray:?}");
    }
}

#[test]
fn a_folder_that_is_no_layout_is_refused_untouched() {
    let dir =
        project("stack version=1\nimage a {\n    from \"scratch\"\n    file \"/id\" \"a\"\n}\n");
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/a.txt"), "mine").unwrap();
    let out = crate::support::run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["build", "--out", "notes"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not an OCI image layout"), "{}", stderr(&out));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("notes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["a.txt"]);
}

/// The entries of a store's `tmp/`.
fn temp_entries(cache: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Starts `stack build` of a `run "sleep N"` step as `who` in `dir` with the store `cache`, and
/// returns once the step runs (its temp entries exist).
fn start_sleeping_build(who: Standing, dir: &Path, cache: &Path, secs: u32) -> Child {
    let base = crate::support::busybox_base().expect("checked by the caller");
    let copied = Command::new("cp").arg("-r").arg(&base).arg(dir.join("base")).status();
    assert!(copied.unwrap().success());
    crate::support::write_files(
        dir,
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage slow {{\n    from \"oci:base:base\"\n    run \"sleep {secs}; echo {secs} > /done\"\n}}\n"
            ),
        )],
    );
    who.share(dir);
    let mut child = who
        .stack(dir, &["build", "--out", "out", "--progress", "plain"])
        .env("STACK_CACHE_DIR", cache)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !temp_entries(cache).iter().any(|n| n.starts_with("run-")) {
        assert!(started.elapsed().as_secs() < 30, "{who:?}: the step never started");
        assert!(child.try_wait().unwrap().is_none(), "{who:?}: the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn quick_build(who: Standing, cache: &Path) -> std::process::Output {
    let dir =
        project("stack version=1\nimage quick {\n    from \"scratch\"\n    file \"/q\" \"q\"\n}\n");
    who.share(dir.path());
    who.stack(dir.path(), &["build", "--out", "out"])
        .env("STACK_CACHE_DIR", cache)
        .output()
        .unwrap()
}

/// A folder `nobody` may use too (the test runs as root).
fn shared_folder(who: Standing) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    who.share(dir.path());
    dir
}

#[test]
fn the_next_build_removes_what_a_killed_build_left_in_tmp() {
    if crate::support::busybox_base().is_none() || !crate::support::sandbox_ready() {
        return;
    }
    for who in Standing::available() {
        let dir = shared_folder(who);
        let cache = dir.path().join("cache");
        let mut killed = start_sleeping_build(who, dir.path(), &cache, 5);
        killed.kill().unwrap();
        killed.wait().unwrap();
        // The step's processes die with the build (their parent death signal).
        std::thread::sleep(std::time::Duration::from_millis(300));
        let left = temp_entries(&cache);
        assert!(!left.is_empty(), "{who:?}: the killed build left nothing to clean");
        let out = quick_build(who, &cache);
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        let still: Vec<_> = temp_entries(&cache).into_iter().filter(|n| left.contains(n)).collect();
        assert!(still.is_empty(), "{who:?}: the killed build's temp entries survived: {still:?}");
    }
}

#[test]
fn a_running_builds_temp_entries_are_never_removed() {
    if crate::support::busybox_base().is_none() || !crate::support::sandbox_ready() {
        return;
    }
    for who in Standing::available() {
        let dir = shared_folder(who);
        let cache = dir.path().join("cache");
        let running = start_sleeping_build(who, dir.path(), &cache, 3);
        let before = temp_entries(&cache);
        let out = quick_build(who, &cache);
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        let after = temp_entries(&cache);
        for n in &before {
            assert!(after.contains(n), "{who:?}: `{n}` of the running build was removed");
        }
        let o = running.wait_with_output().unwrap();
        assert!(o.status.success(), "{who:?}: the running build failed: {}", stderr(&o));
    }
}
