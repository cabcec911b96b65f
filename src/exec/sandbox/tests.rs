//! Sandbox tests: the recorded setup plan (no root needed), and real runs over a busybox
//! rootfs built here from `/bin/busybox`, as root and (re-running the `real` tests through
//! `setpriv` as `nobody`) rootless.
//!
//! The helper is this test binary itself: `run_with_helper` starts it with a filter that
//! selects only [`helper_entry`], which calls `helper_main()`. Since libtest runs that test on
//! a thread, the helper forks once to become single-threaded before it `unshare`s.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::fake::RecordingSys;
use super::setup::{self, Ids, Plan};
use super::*;
use crate::oci::layer::EntryKind;
use crate::privilege::IdRange;

/// The entry point of the helper when the test binary is re-executed as one.
#[test]
fn helper_entry() {
    if let Some(code) = helper_main() {
        std::process::exit(code);
    }
}

fn test_helper() -> Helper {
    Helper {
        program: PathBuf::from("/proc/self/exe"),
        args: [
            "--exact",
            "exec::sandbox::tests::helper_entry",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]
        .map(String::from)
        .to_vec(),
    }
}

pub(super) fn sample_spec() -> SandboxSpec {
    SandboxSpec {
        lower_dirs: vec![PathBuf::from("/store/layers/b"), PathBuf::from("/store/layers/a")],
        scratch_dir: PathBuf::from("/scratch/step1"),
        argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: "/src/app".into(),
        user: UserSpec("app".into()),
        hostname: "stack".into(),
        network: Network::Host,
        extra_hosts: vec![("db".into(), "10.0.0.5".into())],
        mounts: vec![
            Mount::Cache {
                host_dir: "/cache/apt".into(),
                target: "/var/cache/apt".into(),
                readonly: false,
            },
            Mount::Tmpfs { target: "/tmp".into(), size: Some(1 << 20) },
            Mount::Secret {
                content: b"token".to_vec(),
                target: "/run/secrets/token".into(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            Mount::Bind {
                source: BindSource { root: "/ctx".into(), path: "file.txt".into() },
                target: "/src/file.txt".into(),
                readonly: true,
            },
        ],
        root_mode: RootMode::Auto,
        emulator: None,
        slirp4netns: None,
    }
}

fn recorded_plan(ids: Ids) -> String {
    let spec = sample_spec();
    let plan = Plan { spec: &spec, copy_root: false, ids, host_uid: 1000, host_gid: 1000 };
    let mut sys = RecordingSys::new(
        &[
            "etc",
            "etc/hosts",
            "proc",
            "proc/sys",
            "proc/sysrq-trigger",
            "proc/kcore",
            "proc/acpi",
            "sys/firmware",
            "tmp",
            "var",
            "src",
            "file.txt",
        ],
        &[
            ("/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
            ("/etc/group", "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"),
            ("/etc/resolv.conf", "nameserver 10.0.0.1\n"),
        ],
    );
    setup::enter_namespaces(&mut sys, &plan).unwrap();
    sys.log.push_str("--- pid 1\n");
    let stubs = setup::setup_rootfs(&mut sys, &plan).unwrap();
    writeln!(sys.log, "--- stubs {stubs:?}").unwrap();
    match setup::prepare_command(&mut sys, &plan) {
        Ok(user) => {
            sys.log.push_str("--- command\n");
            setup::drop_privileges(&mut sys, &plan, &user).unwrap();
        }
        Err(e) => writeln!(sys.log, "--- command refused: {e:?}").unwrap(),
    }
    sys.log
}

#[test]
fn setup_plan_as_root() {
    insta::assert_snapshot!(recorded_plan(Ids::HostRoot));
}

#[test]
fn setup_plan_rootless() {
    insta::assert_snapshot!(recorded_plan(Ids::OwnNamespace));
}

fn subid_map() -> Vec<IdRange> {
    crate::privilege::parse_id_map("0 1000 1\n1 100000 65536\n")
}

#[test]
fn setup_plan_in_a_mapped_user_namespace() {
    insta::assert_snapshot!(recorded_plan(Ids::Mapped {
        uids: subid_map(),
        gids: subid_map(),
        setgroups: true
    }));
}

#[test]
fn users_outside_the_map_are_refused_clearly() {
    let narrow = crate::privilege::parse_id_map("0 1000 1\n1 100000 999\n");
    let log = recorded_plan(Ids::Mapped { uids: narrow.clone(), gids: narrow, setgroups: true });
    assert!(
        log.contains("uid 1000 is outside the ids this user namespace maps (0-0, 1-999); a larger range in /etc/subuid would cover it"),
        "{log}"
    );
    let log = recorded_plan(Ids::Mapped {
        uids: subid_map(),
        gids: crate::privilege::parse_id_map("0 1000 1\n1 100000 10\n"),
        setgroups: true,
    });
    assert!(log.contains("gid 1000 is outside"), "{log}");
    let log = recorded_plan(Ids::OwnNamespace);
    assert!(log.contains("/etc/subuid"), "says how to get subordinate ids: {log}");
}

#[test]
fn overlay_options_stay_short_for_500_layers() {
    let opts = setup::overlay_options(500, false);
    assert!(opts.len() < 4096, "{} bytes", opts.len());
    assert!(opts.starts_with("lowerdir=l/0:l/1:"));
}

#[test]
fn errors_name_what_failed() {
    let e = SandboxError::from(WireError::Setup(SetupError::Sys {
        step: "overlay root".into(),
        error: sys::SysError::new("mount", "/scratch/root", libc::EINVAL),
    }));
    assert_eq!(e.to_string(), "sandbox setup failed at overlay root: `mount` on `/scratch/root`");
    let e = SandboxError::from(WireError::Exec { argv0: "nope".into(), errno: libc::ENOENT });
    assert_eq!(e.to_string(), "cannot execute `nope` in the sandbox");
}

/// Real runs. Also re-run as `nobody` by `rootless_suite`.
mod real {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::time::{Duration, Instant};

    use super::*;

    /// Returns whether the sandbox works here; prints `skipped: <reason>` otherwise, or
    /// panics when `STACK_REQUIRE_SANDBOX=1`.
    pub(super) fn sandbox_available() -> bool {
        match probe() {
            Ok(()) => true,
            Err(reason) => {
                assert!(
                    std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
                    "sandbox required but unavailable: {reason}"
                );
                println!("skipped: {reason}");
                false
            }
        }
    }

    pub(super) fn rootless() -> bool {
        sys::geteuid() != 0
    }

    struct Fixture {
        tmp: tempfile::TempDir,
        lower: PathBuf,
        runs: std::cell::Cell<u32>,
        mode: RootMode,
    }

    fn write(path: &Path, content: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        let bin = lower.join("bin");
        fs_err::create_dir_all(&bin).unwrap();
        fs_err::copy("/bin/busybox", bin.join("busybox")).unwrap();
        let list = std::process::Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        write(
            &lower.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        );
        write(&lower.join("etc/group"), "root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app\n");
        write(&lower.join("etc/base.txt"), "base\n");
        write(&lower.join("data/a"), "a\n");
        write(&lower.join("data/b"), "b\n");
        Fixture { tmp, lower, runs: std::cell::Cell::new(0), mode: RootMode::Auto }
    }

    impl Fixture {
        fn spec(&self, script: &str) -> SandboxSpec {
            self.runs.set(self.runs.get() + 1);
            SandboxSpec {
                lower_dirs: vec![self.lower.clone()],
                scratch_dir: self.tmp.path().join(format!("scratch{}", self.runs.get())),
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: vec![("PATH".into(), "/bin".into())],
                cwd: "/".into(),
                user: UserSpec::default(),
                hostname: "sandbox".into(),
                network: Network::None,
                mounts: vec![],
                root_mode: self.mode,
                slirp4netns: None,
                extra_hosts: vec![],
                emulator: None,
            }
        }
    }

    fn go(spec: &SandboxSpec) -> (RunOutcome, String) {
        let mut out = Vec::new();
        let outcome =
            run_with_helper(spec, &mut |chunk| out.extend_from_slice(chunk), &test_helper())
                .unwrap_or_else(|e| {
                    panic!("run failed: {e} ({:?})", std::error::Error::source(&e))
                });
        (outcome, String::from_utf8_lossy(&out).into_owned())
    }

    fn paths(o: &RunOutcome) -> Vec<&str> {
        o.changes.iter().map(|e| e.path.as_str()).collect()
    }

    fn entry<'a>(o: &'a RunOutcome, path: &str) -> &'a Entry {
        o.changes
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no `{path}` in {:?}", paths(o)))
    }

    #[test]
    fn created_file_and_streamed_output() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let (o, out) = go(&fx.spec("echo hello; echo oops >&2; echo data > /new.txt"));
        assert_eq!(o.status, ExitStatusLike::Exited(0));
        assert!(out.contains("hello\n") && out.contains("oops\n"), "{out:?}");
        // No stub (proc, dev, sys mount points) and nothing else.
        assert_eq!(paths(&o), ["new.txt"]);
        let EntryKind::File { source, size } = &entry(&o, "new.txt").kind else { panic!() };
        assert_eq!(*size, 5);
        assert_eq!(fs_err::read_to_string(source).unwrap(), "data\n");
        assert_eq!((entry(&o, "new.txt").uid, entry(&o, "new.txt").mode), (0, 0o644));
    }

    #[test]
    fn whiteouts_opaque_dirs_hardlinks_and_untouched_copy_ups() {
        whiteouts_opaque_dirs_hardlinks(RootMode::Auto);
    }

    #[test]
    fn copied_root_fallback_gives_the_same_entries() {
        whiteouts_opaque_dirs_hardlinks(RootMode::Copy);
    }

    fn whiteouts_opaque_dirs_hardlinks(mode: RootMode) {
        if !sandbox_available() {
            return;
        }
        let mut fx = fixture();
        fx.mode = mode;
        let script = "rm /etc/base.txt && rm -rf /data && mkdir /data && echo c > /data/c \
                      && echo h > /h1 && ln /h1 /h2 && touch /etc/passwd && cat /etc/group >/dev/null";
        let (o, out) = go(&fx.spec(script));
        assert!(o.status.success(), "{out}");
        assert_eq!(paths(&o), ["data", "data/c", "etc", "etc/base.txt", "h1", "h2"]);
        assert_eq!(entry(&o, "etc/base.txt").kind, EntryKind::Whiteout);
        assert_eq!(entry(&o, "data").kind, EntryKind::Dir { opaque: true });
        assert_eq!(entry(&o, "etc").kind, EntryKind::Dir { opaque: false });
        assert_eq!(entry(&o, "h2").kind, EntryKind::Hardlink { target: "h1".into() });
        let EntryKind::File { source, .. } = &entry(&o, "h1").kind else { panic!() };
        let tree = if mode == RootMode::Copy { "root" } else { "upper" };
        assert!(source.parent().unwrap().ends_with(tree), "{}", source.display());
        assert!(o.changes.iter().all(|e| e.xattrs.iter().all(|(n, _)| !n.contains("overlay"))));
    }

    #[test]
    fn stacked_lowers_with_whiteouts_and_opaque_dirs() {
        stacked_lowers(RootMode::Auto);
    }

    #[test]
    fn stacked_lowers_in_a_copied_root() {
        stacked_lowers(RootMode::Copy);
    }

    fn stacked_lowers(mode: RootMode) {
        if !sandbox_available() {
            return;
        }
        let mut fx = fixture();
        fx.mode = mode;
        write(&fx.lower.join("data2/x"), "x\n");
        write(&fx.lower.join("data2/y"), "y\n");
        let top = fx.tmp.path().join("top");
        write(&top.join("data2/z"), "z\n");
        // The lower-dir format: `user.` xattrs in a user namespace (overlay with `userxattr`).
        let opaque = format!(
            "{}.overlay.opaque",
            crate::privilege::Privilege::current().overlay_xattr_prefix()
        );
        sys::Sys::set_xattr(&mut sys::RealSys, &top.join("data2"), &opaque, b"y").unwrap();
        // A whiteout: unprivileged users may create 0:0 character devices (Linux ≥ 5.8).
        fs_err::create_dir_all(top.join("data")).unwrap();
        sys::Sys::mknod(&mut sys::RealSys, &top.join("data/b"), libc::S_IFCHR | 0o600, 0).unwrap();
        let mut spec = fx.spec("ls /data; ls /data2; touch /data/a; echo new > /data2/z");
        spec.lower_dirs.insert(0, top);
        let (o, out) = go(&spec);
        assert_eq!(out, "a\nz\n");
        assert_eq!(paths(&o), ["data2", "data2/z"]);
        assert_eq!(entry(&o, "data2").kind, EntryKind::Dir { opaque: false });
    }

    /// The child half of `killing_the_caller_kills_the_whole_step`.
    #[test]
    fn orphan_caller_entry() {
        let Ok(token) = std::env::var("STACK_SANDBOX_TEST_ORPHAN") else { return };
        let fx = fixture();
        let mut spec = fx.spec("");
        spec.argv = vec!["sleep".into(), token];
        let _ = go(&spec);
        unreachable!("the caller is killed while its step sleeps");
    }

    fn processes_with_arg(arg: &str) -> Vec<u32> {
        fs_err::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
            })
            .collect()
    }

    #[test]
    fn killing_the_caller_kills_the_whole_step() {
        if !sandbox_available() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let token = (800_000 + std::process::id()).to_string();
        let mut caller = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "exec::sandbox::tests::real::orphan_caller_entry", "--nocapture"])
            .env("STACK_SANDBOX_TEST_ORPHAN", &token)
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while processes_with_arg(&token).is_empty() {
            assert!(Instant::now() < deadline, "the step never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        caller.kill().unwrap();
        caller.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with_arg(&token).is_empty() {
            assert!(Instant::now() < deadline, "the step outlived its caller");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(mounts_mentioning(tmp.path()), Vec::<String>::new());
    }

    #[test]
    fn env_cwd_and_hostname() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let mut spec = fx.spec("echo $FOO; pwd; hostname; echo $HOME");
        spec.env.push(("FOO".into(), "bar baz".into()));
        spec.cwd = "/work/dir".into();
        let (o, out) = go(&spec);
        assert_eq!(out, "bar baz\n/work/dir\nsandbox\n/root\n");
        assert_eq!(paths(&o), ["work", "work/dir"]);
    }

    #[test]
    fn users_by_name_and_id_with_supplementary_groups() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let mut spec = fx.spec("id");
        spec.user = UserSpec("app".into());
        spec.cwd = "/home/app/w".into();
        if rootless() {
            let err = run_with_helper(&spec, &mut |_| {}, &test_helper()).unwrap_err();
            assert!(err.to_string().contains("cannot run as user `app`"), "{err}");
            println!("note: the helper's own user namespace maps only the caller");
            return;
        }
        let (o, out) = go(&spec);
        assert_eq!(out, "uid=1000(app) gid=1000(app) groups=10(wheel),29(audio)\n");
        assert_eq!((entry(&o, "home/app/w").uid, entry(&o, "home/app/w").gid), (1000, 1000));
        let mut spec = fx.spec("id");
        spec.user = UserSpec("1000:10".into());
        let (_, out) = go(&spec);
        // A named group means no supplementary groups, as with runc.
        assert_eq!(out, "uid=1000(app) gid=10(wheel)\n");
        let mut spec = fx.spec("touch /root-only || echo denied");
        spec.user = UserSpec("app".into());
        assert_eq!(go(&spec).1.trim_end().rsplit('\n').next(), Some("denied"));
    }

    #[test]
    fn exit_codes_signals_and_exec_errors() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        assert_eq!(go(&fx.spec("exit 3")).0.status, ExitStatusLike::Exited(3));
        assert_eq!(go(&fx.spec("kill -9 $$")).0.status, ExitStatusLike::Signaled(9));
        let (o, _) = go(&fx.spec("echo x > /failed; exit 1"));
        assert_eq!((o.status.code(), paths(&o)), (1, vec!["failed"]));
        let mut spec = fx.spec("");
        spec.argv = vec!["no-such-tool".into()];
        let err = run_with_helper(&spec, &mut |_| {}, &test_helper()).unwrap_err();
        assert!(matches!(err, SandboxError::Exec { .. }), "{err}");
        assert_eq!(err.to_string(), "cannot execute `no-such-tool` in the sandbox");
    }

    #[test]
    fn proc_dev_and_pid_namespace() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let script = "echo $$; cat /proc/1/cmdline | tr '\\0' ' ' | wc -c >/dev/null && echo proc; \
                      echo x > /dev/null && head -c 3 /dev/zero | wc -c; ls /dev/pts/ptmx; \
                      touch /dev/shm/x && echo shm; touch /sys/x 2>/dev/null || echo sys-ro; \
                      ls /proc/self/fd";
        let (o, out) = go(&fx.spec(script));
        assert_eq!(out, "2\nproc\n3\n/dev/pts/ptmx\nshm\nsys-ro\n0\n1\n2\n3\n", "{out}");
        assert!(paths(&o).is_empty(), "{:?}", paths(&o));
    }

    #[test]
    fn network_none_has_only_loopback_and_host_gets_generated_files() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let (o, out) = go(&fx.spec("ls /sys/class/net; cat /sys/class/net/lo/flags"));
        assert_eq!(out, "lo\n0x9\n");
        assert!(paths(&o).is_empty());
        let mut spec = fx.spec(
            "cat /etc/hostname; grep -c localhost /etc/hosts; echo x >> /etc/hosts || echo ro",
        );
        spec.network = Network::Host;
        spec.hostname = "builder".into();
        spec.extra_hosts = vec![("db.internal".into(), "10.1.2.3".into())];
        let (o, out) = go(&spec);
        assert!(out.starts_with("builder\n2\n") && out.ends_with("ro\n"), "{out}");
        let mut spec = fx.spec("grep db.internal /etc/hosts");
        spec.network = Network::Host;
        spec.extra_hosts = vec![("db.internal".into(), "10.1.2.3".into())];
        assert_eq!(go(&spec).1, "10.1.2.3\tdb.internal\n");
        assert!(paths(&o).is_empty(), "{:?}", paths(&o));
    }

    #[test]
    fn cache_persists_tmpfs_and_secret_leave_no_trace() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let cache = fx.tmp.path().join("cache");
        fs_err::create_dir(&cache).unwrap();
        let secret = fx.tmp.path().join("secret");
        fs_err::write(&secret, "s3cret").unwrap();
        let mounts = vec![
            Mount::Cache {
                host_dir: cache.clone(),
                target: "/var/cache/x".into(),
                readonly: false,
            },
            Mount::Tmpfs { target: "/scratchpad".into(), size: Some(1 << 20) },
            Mount::Secret {
                content: b"s3cret".to_vec(),
                target: "/run/secrets/token".into(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        ];
        let mut spec = fx.spec(
            "echo 1 >> /var/cache/x/c; echo t > /scratchpad/f; cat /run/secrets/token; echo; \
             stat -c %a /run/secrets/token; echo no >> /run/secrets/token || echo ro",
        );
        spec.mounts = mounts.clone();
        let (o, out) = go(&spec);
        assert!(out.starts_with("s3cret\n400\n") && out.ends_with("ro\n"), "{out}");
        assert!(paths(&o).is_empty(), "{:?}", paths(&o));
        let mut spec = fx.spec("cat /var/cache/x/c; ls /scratchpad");
        spec.mounts = mounts;
        let (o, out) = go(&spec);
        assert_eq!(out, "1\n");
        assert!(paths(&o).is_empty());
        assert_eq!(fs_err::read_to_string(cache.join("c")).unwrap(), "1\n");
        assert_eq!(fs_err::read_to_string(&secret).unwrap(), "s3cret");
    }

    #[test]
    fn bind_mounts_are_read_only_by_default() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let host = fx.tmp.path().join("ctx");
        write(&host.join("file"), "ctx\n");
        let mut spec = fx.spec("cat /src/file; touch /src/new 2>/dev/null || echo denied");
        spec.mounts = vec![Mount::Bind {
            source: BindSource { root: host.clone(), path: String::new() },
            target: "/src".into(),
            readonly: true,
        }];
        let (o, out) = go(&spec);
        assert_eq!(out, "ctx\ndenied\n");
        assert!(!host.join("new").exists());
        assert!(paths(&o).is_empty(), "{:?}", paths(&o));
    }

    #[test]
    fn a_pipeline_ends_when_its_reader_does() {
        // `stack` ignores SIGPIPE; a step must not inherit that, or `yes | head` never ends.
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        // The shell's `echo` ignores a failed write: only SIGPIPE ends this loop.
        let spec = fx.spec("while :; do echo y; done | head -n 2");
        let started = Instant::now();
        let (o, out) = go(&spec);
        assert_eq!(out, "y\ny\n");
        assert_eq!(o.status, ExitStatusLike::Exited(0));
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn the_seccomp_profile_refuses_namespaces_mounts_keyrings_and_devices() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let spec = fx.spec(
            "mkdir -p /tmp; unshare -m true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
             mount -t tmpfs t /mnt 2>/dev/null && echo mount-ok || echo mount-denied; \
             mknod /tmp/disk b 8 0 2>/dev/null && echo blk-ok || echo blk-denied; \
             mknod /tmp/mem c 1 1 2>/dev/null && echo chr-ok || echo chr-denied; \
             mkfifo /tmp/fifo && echo fifo-ok",
        );
        let (_o, out) = go(&spec);
        assert_eq!(out, "unshare-denied\nmount-denied\nblk-denied\nchr-denied\nfifo-ok\n", "{out}");
    }

    #[test]
    fn on_the_host_network_a_step_cannot_open_packet_sockets() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        // Bit 13 of the bounding set is CAP_NET_RAW.
        let script = "bnd=$(grep CapBnd /proc/self/status | cut -f2); \
                      echo $(( (0x$bnd >> 13) & 1 ))";
        let mut spec = fx.spec(script);
        spec.network = Network::Host;
        let (_o, out) = go(&spec);
        let own_namespace = !rustix::process::geteuid().is_root();
        // A rootless helper without subordinate ids keeps every capability of its own user
        // namespace, whose network capabilities reach only namespaces it owns.
        if !own_namespace {
            assert_eq!(out, "0\n", "CAP_NET_RAW kept on the host network");
        }
        let spec = fx.spec(script);
        let (_o, out) = go(&spec);
        if !own_namespace {
            assert_eq!(out, "1\n", "CAP_NET_RAW dropped in a private network");
        }
    }

    #[test]
    fn the_private_network_reaches_out_but_not_the_hosts_loopback() {
        if !sandbox_available() {
            return;
        }
        let Some(slirp) = ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            assert!(
                std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
                "slirp4netns is required (apt-get install slirp4netns)"
            );
            return println!("skipped: slirp4netns is missing (apt-get install slirp4netns)");
        };
        // A service on the host's loopback, and one on every address (reachable through the
        // host's own outward address, as from any container).
        let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let outward = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|u| u.connect("192.0.2.1:9").map(|()| u))
            .and_then(|u| u.local_addr())
            .map(|a| a.ip());
        local.set_nonblocking(true).unwrap();
        let any_port = any.local_addr().unwrap().port();
        // Answer and close at once, so the step's `nc` ends.
        std::thread::spawn(move || {
            for conn in any.incoming().take(1) {
                drop(conn);
            }
        });
        let fx = fixture();
        let lp = local.local_addr().unwrap().port();
        let ap = any_port;
        let out_ip = outward.as_ref().map_or("none".to_owned(), ToString::to_string);
        let mut spec = fx.spec(&format!(
            "ip -o link show tap0 >/dev/null && echo tap0; \
             nc -w 2 127.0.0.1 {lp} </dev/null 2>/dev/null && echo lo-reached || echo lo-refused; \
             nc -w 2 10.0.2.2 {lp} </dev/null 2>/dev/null && echo gw-reached || echo gw-refused; \
             [ {out_ip} = none ] || nc -w 3 {out_ip} {ap} </dev/null && echo out-reached; \
             cat /etc/resolv.conf"
        ));
        spec.network = Network::Private;
        spec.slirp4netns = Some(slirp);
        let (_o, out) = go(&spec);
        assert!(out.starts_with("tap0\nlo-refused\ngw-refused\n"), "{out}");
        assert!(out.contains("out-reached"), "{out}");
        assert!(out.ends_with("nameserver 10.0.2.3\n"), "{out}");
        assert!(local.accept().is_err(), "a step reached the host's loopback");
    }

    #[test]
    fn the_paths_runc_masks_are_masked() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let spec = fx.spec(
            "wc -c < /proc/timer_list 2>/dev/null || echo none; \
             ls /sys/firmware 2>/dev/null | wc -l; \
             (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-rw || echo sys-ro",
        );
        let (_o, out) = go(&spec);
        assert_eq!(out, "0\n0\nsys-ro\n");
    }

    #[test]
    fn a_bind_source_symlink_resolves_inside_its_root() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let ctx = fx.tmp.path().join("ctx");
        write(&ctx.join("etc/marker"), "context etc\n");
        std::os::unix::fs::symlink("/etc", ctx.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ctx.join("hostfile")).unwrap();
        let mut spec = fx.spec("ls /mnt; cat /mnt/marker");
        spec.mounts = vec![Mount::Bind {
            source: BindSource { root: ctx.clone(), path: "hostetc".into() },
            target: "/mnt".into(),
            readonly: true,
        }];
        let (_o, out) = go(&spec);
        assert_eq!(out, "marker\ncontext etc\n", "the host's /etc was bound");
        // A symlink to a host file that the context lacks is an error, not the host's file.
        let mut spec = fx.spec("cat /f");
        spec.mounts = vec![Mount::Bind {
            source: BindSource { root: ctx, path: "hostfile".into() },
            target: "/f".into(),
            readonly: true,
        }];
        let err = run_with_helper(&spec, &mut |_| {}, &test_helper()).unwrap_err();
        assert!(err.to_string().contains("bind source `hostfile`"), "{err}");
    }

    #[test]
    fn setuid_files_in_binds_do_not_elevate() {
        if !sandbox_available() || !rustix::process::geteuid().is_root() {
            return;
        }
        let fx = fixture();
        let cache = fx.tmp.path().join("cache");
        fs_err::create_dir(&cache).unwrap();
        let mut spec = fx.spec(
            "grep -E '^(nosuid|nodev)' /proc/self/mountinfo >/dev/null; \
            awk '$5 == \"/var/cache/x\" { print $6 }' /proc/self/mountinfo",
        );
        spec.mounts =
            vec![Mount::Cache { host_dir: cache, target: "/var/cache/x".into(), readonly: false }];
        let (_o, out) = go(&spec);
        assert!(out.contains("nosuid") && out.contains("nodev"), "{out}");
    }

    #[test]
    fn a_step_cannot_write_outside_its_rootfs() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let host_dir = fx.tmp.path().join("host");
        let marker = host_dir.join("marker");
        write(&marker, "untouched\n");
        fs_err::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let m = marker.display().to_string();
        let h = host_dir.display().to_string();
        std::os::unix::fs::symlink(&h, fx.lower.join("hostlink")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../..", fx.lower.join("up")).unwrap();
        let script = format!(
            "for p in {m} /../../../..{m} /hostlink/marker /up{m} /proc/1/root{m} \
             /proc/self/root{m} /proc/self/cwd/../../..{m}; do echo pwned > $p 2>/dev/null; done; \
             for fd in /proc/self/fd/*; do echo pwned > $fd/../..{m} 2>/dev/null; done; \
             mkdir -p /up/made; echo done"
        );
        let mut spec = fx.spec(&script);
        // Mount targets through image symlinks land inside the rootfs too.
        spec.mounts = vec![Mount::Tmpfs { target: "/up/up-target".into(), size: None }];
        let (o, out) = go(&spec);
        // A symlink to a host path that does not exist in the image is refused, not followed.
        let mut bad = fx.spec("true");
        bad.mounts = vec![Mount::Tmpfs { target: "/hostlink/tmpfs-target".into(), size: None }];
        let err = run_with_helper(&bad, &mut |_| {}, &test_helper()).unwrap_err();
        assert!(matches!(err, SandboxError::BadTarget { .. }), "{err}");
        assert!(out.ends_with("done\n"), "{out}");
        assert_eq!(fs_err::read_to_string(&marker).unwrap(), "untouched\n");
        let listing: Vec<_> =
            fs_err::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(listing, ["marker"]);
        assert!(!Path::new("/up-target").exists() && !Path::new("/tmpfs-target").exists());
        // Writes through the symlink went into the layer, at the in-image path.
        assert_eq!(paths(&o), ["made"]);
        assert!(!Path::new("/made").exists());
    }

    fn mounts_mentioning(dir: &Path) -> Vec<String> {
        let text = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = dir.display().to_string();
        text.lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
    }

    #[test]
    fn nothing_stays_mounted_even_when_the_command_is_killed() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let start = Instant::now();
        let (o, _) = go(&fx.spec("sleep 600 & sleep 600 & kill -KILL $$"));
        assert_eq!(o.status, ExitStatusLike::Signaled(9));
        assert!(start.elapsed() < Duration::from_mins(1), "background processes outlived the step");
        let (o, _) = go(&fx.spec("true"));
        assert!(o.status.success());
        assert_eq!(mounts_mentioning(fx.tmp.path()), Vec::<String>::new());
        drop(o);
        // The guard cleaned the scratch dir, even overlay's mode-000 work dir.
        let scratch = fx.tmp.path().join("scratch2");
        assert_eq!(fs_err::read_dir(&scratch).unwrap().count(), 0);
    }

    #[test]
    fn overhead_of_a_trivial_run() {
        if !sandbox_available() {
            return;
        }
        let fx = fixture();
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let mut spec = fx.spec("");
                spec.argv = vec!["true".into()];
                let t = Instant::now();
                let (o, _) = go(&spec);
                assert!(o.status.success());
                t.elapsed()
            })
            .collect();
        times.sort();
        let median = times[10];
        println!(
            "sandbox overhead: median {median:?} over 20 runs of `true` (rootless: {})",
            rootless()
        );
        assert!(median < Duration::from_secs(5));
        let _ = fx.tmp.path().metadata().unwrap().uid();
    }
}

/// Re-runs the `real` tests as `nobody` through `setpriv`, when we are root: once as a plain
/// unprivileged user (the helper's own namespace maps only the caller), once as root of a user
/// namespace with `nobody`'s subordinate ids (what `stack` sets up, see `userns`).
#[test]
fn rootless_suite() {
    if sys::geteuid() != 0 || !real::sandbox_available() {
        return;
    }
    if !Path::new("/usr/bin/setpriv").exists() {
        println!("skipped: no setpriv to drop privileges");
        return;
    }
    run_real_tests_as_nobody("rootless", &[]);
    let text = |p| fs_err::read_to_string(p).unwrap_or_default();
    let uids = userns::ranges_for(&text("/etc/subuid"), Some("nobody"), 65534);
    let gids = userns::ranges_for(&text("/etc/subgid"), Some("nobody"), 65534);
    let (Some(u), Some(g)) = (uids.first(), gids.first()) else {
        assert!(
            std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "the subordinate-id run needs `nobody:100000:65536` in /etc/subuid and /etc/subgid"
        );
        println!("skipped: no subordinate ids for nobody in /etc/subuid and /etc/subgid");
        return;
    };
    let prefix = [
        "/usr/bin/unshare".to_owned(),
        "--map-root-user".to_owned(),
        format!("--map-users={},1,{}", u.start, u.count),
        format!("--map-groups={},1,{}", g.start, g.count),
    ];
    run_real_tests_as_nobody("subordinate ids", &prefix);
}

fn run_real_tests_as_nobody(what: &str, prefix: &[String]) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(prefix)
        .arg(&exe)
        .args(["exec::sandbox::tests::real::", "--nocapture", "--test-threads=2"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("--- {what} run of the real tests ---\n{text}");
    if text.contains("skipped: cannot create a user namespace") {
        assert!(
            std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "rootless sandbox required: {text}"
        );
        return;
    }
    assert!(out.status.success(), "the {what} run failed");
    assert!(text.contains("test result: ok"), "{text}");
}
