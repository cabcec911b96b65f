//! `run` steps end to end: real images built in the sandbox, unpacked with umoci and run
//! with runc; failures reported at their line; secrets never stored.

use std::path::Path;
use std::process::Command;

use crate::support::{
    busybox_base, have, project, run_stack, sandbox_ready, skip, stderr, stderr_unwrapped, stdout,
    unpack, write_files,
};

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: build, then runc runs the image and checks each step's effect"
)]
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
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"echo first line\"\n    run \"echo about to fail; echo oops >&2; exit 7\"\n    run \"echo never\"\n}}\n",
        base.display()
    ));
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

/// A build folder everyone can read and write (for `stack` run as `nobody`), with the base.
pub(crate) fn open_folder(base: &Path, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .args(["-r", base.to_str().unwrap(), dir.path().join("base").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    write_files(dir.path(), files);
    let status =
        Command::new("chmod").args(["-R", "a+rwX", dir.path().to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    dir
}

/// Runs `stack` as `nobody` (uid 65534) in `dir`, with its own store.
/// `stack ARGS` as `nobody` (uid 65534) in `dir`, with the store `dir/cache`. `setpriv` execs
/// stack, so the child's pid is stack's.
fn nobody_stack(dir: &Path, cache: &str, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_stack"))
        .args(args)
        .current_dir(dir)
        .env("STACK_CACHE_DIR", dir.join(cache))
        .env("HOME", dir)
        .env("NO_COLOR", "1");
    c
}

/// Runs `stack` as `nobody` in `dir`, with its own store.
pub(crate) fn stack_as_nobody(
    dir: &Path,
    cache: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    nobody_stack(dir, cache, args).envs(env.iter().copied()).output().unwrap()
}

pub(crate) fn rootless_ready() -> bool {
    if !sandbox_ready() {
        return false;
    }
    if !rustix::process::geteuid().is_root() || !have("setpriv") {
        skip("needs root and setpriv to run stack again as an unprivileged user");
        return false;
    }
    true
}

const USERS_BUILD: &str = r#"stack version=1
image a {
    from "oci:base:base"
    copy "hello.txt" to="/srv/"
    run "echo made > /made.txt && rm /bin/vi"
    run "mkdir -p /home/app && chown app:app /home/app && chmod 700 /home/app"
    user "app"
    run "echo mine > /home/app/mine && chmod 600 /home/app/mine && id > /home/app/id && echo kept > /home/app/.cache/kept && chmod 600 /home/app/.cache/kept" {
        cache "/home/app/.cache" uid=1000 gid=1000
    }
}
"#;

/// Whether `nobody` has subordinate ids to build with (`.ci/run` gives it some).
pub(crate) fn subids_ready() -> bool {
    if !rootless_ready() {
        return false;
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    if !subuid.lines().any(|l| l.starts_with("nobody:"))
        || !subgid.lines().any(|l| l.starts_with("nobody:"))
    {
        skip(
            "needs subordinate ids for nobody (`nobody:100000:65536` in /etc/subuid and /etc/subgid)",
        );
        return false;
    }
    if !have("newuidmap") {
        skip("needs newuidmap and newgidmap (apt-get install uidmap)");
        return false;
    }
    true
}

#[test]
fn a_rootless_build_with_subordinate_ids_gives_the_same_image_as_root() {
    let Some(base) = busybox_base() else { return };
    if !subids_ready() {
        return;
    }
    let dir = open_folder(&base, &[("hello.txt", "hello\n"), ("stack.kdl", USERS_BUILD)]);
    let root =
        run_stack(dir.path(), &dir.path().join("cache-root"), &["build", "--out", "out-root"]);
    assert!(root.status.success(), "{}", stderr(&root));
    let rootless =
        stack_as_nobody(dir.path(), "cache-rootless", &["build", "--out", "out-rootless"], &[]);
    let err = stderr(&rootless);
    if err.contains("user namespace") && err.contains("cannot") {
        return skip(&format!("unprivileged user namespaces are not allowed here: {err}"));
    }
    assert!(rootless.status.success(), "rootless build failed: {err}");
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(stdout(&rootless), stdout(&root), "root and rootless builds differ");
    // The step ran as app (uid 1000 inside), which is a subordinate id outside.
    let layout = dir.path().join("out-rootless");
    if have("umoci") {
        let bundle = dir.path().join("bundle");
        unpack(&layout, "a", &bundle);
        let id = std::fs::read_to_string(bundle.join("rootfs/home/app/id")).unwrap();
        assert!(id.starts_with("uid=1000(app) gid=1000(app)"), "{id}");
    }
    let kept = walkdir::WalkDir::new(dir.path().join("cache-rootless/cache-v1"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "kept")
        .expect("the cache mount kept its file");
    let owner = std::os::unix::fs::MetadataExt::uid(&kept.metadata().unwrap());
    assert!(owner >= 100_000, "owned by a subordinate id, not {owner}");
    // Files of subordinate ids are still removable: prune runs in the namespace too.
    let pruned = stack_as_nobody(dir.path(), "cache-rootless", &["cache", "prune", "--all"], &[]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let store = dir.path().join("cache-rootless");
    let left: Vec<_> = ["layers-v1", "cache-v1", "tmp"]
        .iter()
        .flat_map(|area| walkdir::WalkDir::new(store.join(area)).min_depth(1))
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(left.is_empty(), "prune left {left:?}");
}

#[test]
fn a_rootless_build_without_subordinate_ids_runs_steps_as_root_only() {
    let Some(base) = busybox_base() else { return };
    if !rootless_ready() {
        return;
    }
    let simple = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    copy \"hello.txt\" to=\"/srv/\"\n    run \"echo made > /made.txt && rm /bin/vi\"\n}\n";
    let dir = open_folder(
        &base,
        &[("hello.txt", "hello\n"), ("stack.kdl", simple), ("users.kdl", USERS_BUILD)],
    );
    let root =
        run_stack(dir.path(), &dir.path().join("cache-root"), &["build", "--out", "out-root"]);
    assert!(root.status.success(), "{}", stderr(&root));
    let off = [("STACK_SUBIDS", "off")];
    let rootless =
        stack_as_nobody(dir.path(), "cache-rootless", &["build", "--out", "out-rootless"], &off);
    let err = stderr(&rootless);
    if err.contains("user namespace") && err.contains("cannot") {
        return skip(&format!("unprivileged user namespaces are not allowed here: {err}"));
    }
    assert!(rootless.status.success(), "rootless build failed: {err}");
    assert_eq!(stdout(&rootless), stdout(&root), "root and rootless builds differ");
    // Only root exists inside: the chown fails, and the diagnostic says what would help.
    let users = stack_as_nobody(
        dir.path(),
        "cache-rootless",
        &["build", "users.kdl", "--out", "out-users"],
        &off,
    );
    assert_eq!(users.status.code(), Some(3), "{}", stderr(&users));
    let err = stderr(&users);
    assert!(err.contains("users.kdl:6:5"), "{err}");
    assert!(err.contains("/etc/subuid"), "{err}");
}

#[test]
fn a_rootless_build_with_subordinate_ids_stops_cleanly_when_terminated() {
    let Some(base) = busybox_base() else { return };
    if !subids_ready() {
        return;
    }
    let build = "stack version=1\nimage a {\n    from \"oci:base:base\"\n    user \"app\"\n    run \"sleep 67\"\n}\n";
    let dir = open_folder(&base, &[("stack.kdl", build)]);
    let cache = dir.path().join("cache");
    // The spawned process is the stack that waits for the namespaced child.
    let mut child = nobody_stack(dir.path(), "cache", &["build", "--progress", "plain"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let tmp_entries = || cache.join("tmp").read_dir().map_or(0, Iterator::count);
    while tmp_entries() == 0 || !sleeping("sleep67") {
        assert!(started.elapsed().as_secs() < 20, "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the parent exits as the child does");
    assert!(started.elapsed().as_secs() < 30);
    assert_eq!(tmp_entries(), 0, "the scratch dir (files of subordinate ids) was removed");
    assert!(!dir.path().join("stack-out").exists());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!sleeping("sleep67"), "the step's process survived");
}

/// Whether a process runs whose command line, NULs removed, is `cmdline`.
fn sleeping(cmdline: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            c.iter().filter(|b| **b != 0).copied().collect::<Vec<u8>>() == cmdline.as_bytes()
        })
    })
}

/// Copies `program` and the shared libraries `ldd` lists into `rootfs`, at the same paths.
fn copy_with_libraries(program: &str, rootfs: &Path) {
    let out = Command::new("ldd").arg(program).output().unwrap();
    assert!(out.status.success(), "ldd {program}");
    let mut files = vec![program.to_owned()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(p.to_owned());
        }
    }
    for f in files {
        let dest = rootfs.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

#[test]
fn an_ssh_mount_forwards_the_agent_and_leaves_nothing_in_the_image() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    if !have("ssh-agent") || !have("ssh-add") || !have("ldd") || !have("umoci") {
        return skip("ssh-agent, ssh-add (apt-get install openssh-client), ldd or umoci missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "stack-test-key", "-f"])
        .arg(d.join("key"))
        .status()
        .unwrap();
    assert!(keygen.success());
    let sock = d.join("agent.sock");
    let _agent = KillOnDrop(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while !sock.exists() {
        assert!(started.elapsed().as_secs() < 10, "ssh-agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added =
        Command::new("ssh-add").arg(d.join("key")).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &sock).output().unwrap();
    let host_listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(host_listing.contains("stack-test-key"), "{host_listing}");

    copy_with_libraries("/usr/bin/ssh-add", &d.join("rootfs"));
    write_files(
        d,
        &[(
            "stack.kdl",
            &format!(
                r#"stack version=1
image a {{
    from "oci:{}:base"
    copy "rootfs/" to="/"
    run "echo sock=$SSH_AUTH_SOCK && ssh-add -l > /listed" {{
        ssh required=#true
    }}
    user "app"
    run "ssh-add -l > /tmp/listed-by-app && ls -ln /home/app/agent" {{
        ssh "deploy" target="/home/app/agent" uid=1000 mode="0600"
    }}
}}
"#,
                base.display()
            ),
        )],
    );
    let cache = d.join("cache");
    let run = |args: &[&str], auth_sock: Option<&Path>| {
        let mut c = crate::support::stack();
        c.args(args).current_dir(d).env("STACK_CACHE_DIR", &cache).env("NO_COLOR", "1");
        match auth_sock {
            Some(s) => c.env("SSH_AUTH_SOCK", s),
            None => c.env_remove("SSH_AUTH_SOCK"),
        };
        c.output().unwrap()
    };
    // Required and not given: the step says how to give it.
    let missing = run(&["build", "--progress", "plain"], None);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    let err = stderr_unwrapped(&missing);
    assert!(err.contains("ssh agent `default` is required"), "{err}");
    let sock_arg = format!("deploy={}", sock.display());
    let built =
        run(&["build", "--progress", "plain", "--ssh", "default", "--ssh", &sock_arg], Some(&sock));
    let err = stderr(&built);
    assert!(built.status.success(), "{err}");
    assert!(err.contains("sock=/run/buildkit/ssh_agent.0"), "{err}");
    // The step's own socket, owned by the step's user with the mode asked for.
    assert!(err.contains("srw-------    1 1000     0"), "{err}");
    let bundle = d.join("bundle");
    unpack(&d.join("stack-out"), "a", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("listed")).unwrap(), host_listing);
    assert_eq!(std::fs::read_to_string(rootfs.join("tmp/listed-by-app")).unwrap(), host_listing);
    // Neither socket nor its mount point is in the image.
    assert!(!rootfs.join("run/buildkit").exists());
    assert!(!rootfs.join("home/app/agent").exists());
    // A key file instead of an agent is refused before anything runs.
    let key_arg = format!("deploy={}", d.join("key").display());
    let refused = run(&["build", "--no-cache", "--ssh", "default", "--ssh", &key_arg], Some(&sock));
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("ssh-add"), "{}", stderr(&refused));
}

/// A child process killed (and reaped) when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
