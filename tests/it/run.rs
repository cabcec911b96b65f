//! `run` steps end to end: real images built in the sandbox, unpacked with umoci and run
//! with runc; failures reported at their line; secrets never stored.

use std::path::Path;
use std::process::Command;

use crate::support::{
    busybox_base, have, run_stack, sandbox_ready, skip, stderr, stdout, write_files,
};

fn unpack(layout: &Path, name: &str, bundle: &Path) {
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--image",
            &format!("{}:{name}", layout.display()),
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_steps_make_images_that_runc_runs() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    if !have("umoci") || !have("runc") {
        return skip("umoci or runc is missing (apt-get install umoci runc)");
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("secret.txt", "s3cr3t-value-123"),
            (
                "stack.kdl",
                &format!(
                    r#"stack version=1
image app {{
    from "oci:{base}:base"
    env GREETING="hello"
    run "echo $GREETING from stack > /hello.txt" "rm /bin/vi"
    workdir "/work"
    run "pwd > /where.txt && id -u > /uid-root.txt"
    run "cat /run/secrets/token | wc -c > /secret-len.txt" {{
        secret "token"
    }}
    run "date +%s%N >> /cache/runs; wc -l < /cache/runs > /cache-runs.txt" {{
        cache "/cache"
    }}
    user "app"
    run "id -u > /tmp/uid && id -G > /tmp/groups"
    shell "/bin/sh" "-e" "-c"
    run "echo shell=$0 > /tmp/shell"
    cmd "cat" "/hello.txt"
}}
"#,
                    base = base.display()
                ),
            ),
        ],
    );
    let cache = dir.path().join("cache");
    let out = run_stack(dir.path(), &cache, &["build", "--secret", "id=token,src=secret.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle = dir.path().join("bundle");
    unpack(&dir.path().join("stack-out"), "app", &bundle);
    let rootfs = bundle.join("rootfs");
    let read =
        |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("hello.txt"), "hello from stack\n");
    assert!(!rootfs.join("bin/vi").exists(), "the whiteout hides the deleted base file");
    assert!(rootfs.join("bin/ls").exists());
    assert_eq!(read("where.txt"), "/work\n");
    assert_eq!(read("uid-root.txt"), "0\n");
    assert_eq!(read("secret-len.txt").trim(), "16");
    assert_eq!(read("cache-runs.txt"), "1\n");
    assert_eq!(read("tmp/uid"), "1000\n");
    assert_eq!(read("tmp/groups"), "1000 50\n", "supplementary groups from /etc/group");
    assert_eq!(read("tmp/shell"), "shell=/bin/sh\n");
    assert!(!rootfs.join("cache/runs").exists() && !rootfs.join("run/secrets/token").exists());

    // The secret's value is in no blob of the store or the output.
    for root in [&cache, &dir.path().join("stack-out")] {
        for entry in
            walkdir::WalkDir::new(root).into_iter().flatten().filter(|e| e.file_type().is_file())
        {
            let bytes = std::fs::read(entry.path()).unwrap();
            let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut v = Vec::new();
                let _ = std::io::Read::read_to_end(
                    &mut flate2::read::MultiGzDecoder::new(bytes.as_slice()),
                    &mut v,
                );
                v
            } else {
                bytes
            };
            assert!(
                !plain.windows(16).any(|w| w == b"s3cr3t-value-123"),
                "secret found in {}",
                entry.path().display()
            );
        }
    }

    // runc runs the image and prints what the build file says.
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let id = format!("stack-it-{}", std::process::id());
    let run = Command::new("runc")
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "runc: {}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello from stack\n");

    // A rebuild without the cache reruns the steps; the cache mount keeps its content.
    let again = run_stack(
        dir.path(),
        &cache,
        &["build", "--no-cache", "--secret", "id=token,src=secret.txt", "--out", "out2"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let bundle2 = dir.path().join("bundle2");
    unpack(&dir.path().join("out2"), "app", &bundle2);
    assert_eq!(std::fs::read_to_string(bundle2.join("rootfs/cache-runs.txt")).unwrap(), "2\n");
}

#[test]
fn a_failing_step_is_reported_at_its_line_and_writes_nothing() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"echo first line\"\n    run \"echo about to fail; echo oops >&2; exit 7\"\n    run \"echo never\"\n}}\n",
                base.display()
            ),
        )],
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stack.kdl:5:5"), "points at the step: {err}");
    assert!(err.contains("exited with code 7"), "{err}");
    assert!(err.contains("oops"), "shows the last output lines: {err}");
    assert!(!err.contains("echo never ..."), "no step starts after a failure: {err}");
    assert!(!dir.path().join("stack-out").exists());
    assert!(stdout(&out).is_empty());
    // Nothing of the failed step is left mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.path().to_str().unwrap()), "a mount was left behind");
}

#[test]
fn a_rootless_build_gives_the_same_image_as_root() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    if !rustix::process::geteuid().is_root() || !have("setpriv") {
        return skip("needs root and setpriv to run stack again as an unprivileged user");
    }
    let dir = tempfile::tempdir().unwrap();
    // Everything the unprivileged user reads or writes must be open to it.
    let status = Command::new("cp")
        .args(["-r", base.to_str().unwrap(), dir.path().join("base").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    write_files(
        dir.path(),
        &[
            ("hello.txt", "hello\n"),
            (
                "stack.kdl",
                "stack version=1\nimage a {\n    from \"oci:base:base\"\n    copy \"hello.txt\" to=\"/srv/\"\n    run \"echo made > /made.txt && rm /bin/vi\"\n}\n",
            ),
        ],
    );
    let status =
        Command::new("chmod").args(["-R", "a+rwX", dir.path().to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    let root =
        run_stack(dir.path(), &dir.path().join("cache-root"), &["build", "--out", "out-root"]);
    assert!(root.status.success(), "{}", stderr(&root));
    let rootless = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_stack"))
        .args(["build", "--out", "out-rootless"])
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", dir.path().join("cache-rootless"))
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = stderr(&rootless);
    if err.contains("user namespace") && err.contains("cannot") {
        return skip(&format!("unprivileged user namespaces are not allowed here: {err}"));
    }
    assert!(rootless.status.success(), "rootless build failed: {err}");
    assert_eq!(stdout(&rootless), stdout(&root), "root and rootless builds differ");
}
