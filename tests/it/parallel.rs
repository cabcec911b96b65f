//! The scheduler: parallel stages give the same images at any `--jobs`, a failure cancels
//! running steps, Ctrl-C stops the build and leaves nothing behind, and `--explain` says why.

use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::support::{
    busybox_base, project, run_stack, sandbox_ready, stack, stderr, stdout, write_files,
};

fn stages(base: &std::path::Path, bad: bool) -> String {
    let mut s = String::from("stack version=1\n");
    for name in ["a", "b", "c", "d"] {
        let _ = write!(
            s,
            "stage {name} {{\n    from \"oci:{}:base\"\n    run \"echo {name} > /{name}.out\"\n}}\n",
            base.display()
        );
    }
    if bad {
        let _ = write!(
            s,
            "stage slow {{\n    from \"oci:{}:base\"\n    run \"sleep 60\"\n}}\nstage bad {{\n    from \"oci:{}:base\"\n    run \"sleep 0.3; exit 4\"\n}}\n",
            base.display(),
            base.display()
        );
    }
    let _ = write!(s, "image all {{\n    from \"oci:{}:base\"\n", base.display());
    for name in ["a", "b", "c", "d"] {
        let _ = writeln!(s, "    copy \"/{name}.out\" to=\"/out/{name}\" from={name}");
    }
    if bad {
        s.push_str("    copy \"/etc/passwd\" to=\"/x\" from=slow\n    copy \"/etc/passwd\" to=\"/y\" from=bad\n");
    }
    s.push_str("}\n");
    s
}

fn leftovers(cache: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn any_job_count_gives_the_same_images() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("stack.kdl", &stages(&base, false))]);
    let one =
        run_stack(dir.path(), &dir.path().join("c1"), &["build", "--jobs", "1", "--out", "o1"]);
    let eight =
        run_stack(dir.path(), &dir.path().join("c8"), &["build", "--jobs", "8", "--out", "o8"]);
    assert!(one.status.success() && eight.status.success(), "{}{}", stderr(&one), stderr(&eight));
    assert_eq!(stdout(&one), stdout(&eight));
}

#[test]
fn a_failure_cancels_running_steps_cleanly() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("stack.kdl", &stages(&base, true))]);
    let cache = dir.path().join("cache");
    let started = Instant::now();
    let out = run_stack(dir.path(), &cache, &["build", "--jobs", "8"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "the 60 s step was not cancelled");
    assert!(stderr(&out).contains("exited with code 4"), "{}", stderr(&out));
    assert!(leftovers(&cache).is_empty(), "temporary files left: {:?}", leftovers(&cache));
    assert!(!dir.path().join("stack-out").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(cache.to_str().unwrap()));
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_nothing_behind() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = project(&format!(
        "stack version=1\nimage a {{\n    from \"oci:{}:base\"\n    run \"sleep 60\"\n}}\n",
        base.display()
    ));
    let cache = dir.path().join("cache");
    let mut child = stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", &cache)
        .arg("build")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the step runs.
    let started = Instant::now();
    while !cache.join("tmp").read_dir().is_ok_and(|mut d| d.next().is_some()) {
        assert!(started.elapsed() < Duration::from_secs(20), "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY-free: sending a signal to our own child process.
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(leftovers(&cache).is_empty(), "temporary files left: {:?}", leftovers(&cache));
    assert!(!dir.path().join("stack-out").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(cache.to_str().unwrap()), "a mount was left behind");
}

#[test]
fn explain_names_what_changed() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("src/a.txt", "a"),
            ("src/b.txt", "b"),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\narg V default=\"1\"\nimage a {{\n    from \"oci:{}:base\"\n    arg V\n    copy \"src/\" to=\"/src/\"\n    env E=\"x\"\n    run \"echo $V $E > /v\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
    let cache = dir.path().join("cache");
    let first = run_stack(dir.path(), &cache, &["build", "--explain"]);
    assert!(stderr(&first).contains("never built here"), "{}", stderr(&first));
    std::fs::write(dir.path().join("src/b.txt"), "changed").unwrap();
    let second = run_stack(dir.path(), &cache, &["build", "--explain", "--arg", "V=2"]);
    let err = stderr(&second);
    assert!(err.contains("runs because file `src/b.txt` changed"), "{err}");
    assert!(!err.contains("src/a.txt"), "an unchanged file is not blamed: {err}");
    assert!(err.contains("arg `V` changed from `1` to `2`"), "{err}");
    assert!(err.contains("the file system it starts from changed"), "{err}");
    // env changes invalidate the run step, not the copy before it.
    std::fs::write(
        dir.path().join("stack.kdl"),
        std::fs::read_to_string(dir.path().join("stack.kdl"))
            .unwrap()
            .replace("E=\"x\"", "E=\"y\""),
    )
    .unwrap();
    let third = run_stack(dir.path(), &cache, &["build", "--explain", "--arg", "V=2"]);
    let err = stderr(&third);
    assert!(err.contains("copy \"src/\" to=\"/src/\" (cached)"), "{err}");
    assert!(err.contains("env `E` changed from `x` to `y`"), "{err}");
}
