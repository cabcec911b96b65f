//! Test fixtures built by code: temporary projects, a busybox base image made with stack
//! itself from Debian's `busybox-static`, and helpers to run `stack` and the real clients.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Skips a test with a reason, or fails it when `STACK_REQUIRE_SANDBOX=1` (CI) says every
/// prerequisite must be present.
pub(crate) fn skip(reason: &str) {
    assert!(
        std::env::var("STACK_REQUIRE_SANDBOX").as_deref() != Ok("1"),
        "required prerequisite missing: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// Whether `run` steps can execute here; skips (or, in CI, fails) with the reason otherwise.
pub(crate) fn sandbox_ready() -> bool {
    if let Err(why) = stack::api::exec::sandbox::probe() {
        skip(&format!("the sandbox cannot run here: {why}"));
        return false;
    }
    true
}

/// Whether a program is on PATH.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn stack() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stack"));
    c.env_remove("SOURCE_DATE_EPOCH").env("NO_COLOR", "1");
    c
}

/// Runs stack in `dir` with a private cache; returns the output.
pub(crate) fn run_stack(dir: &Path, cache: &Path, args: &[&str]) -> Output {
    stack().current_dir(dir).env("STACK_CACHE_DIR", cache).args(args).output().expect("stack runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard error with a diagnostic's wrapped message lines joined back (`x\n  │ y` → `x y`),
/// so a test can look for a phrase wherever the wrap fell.
pub(crate) fn stderr_unwrapped(o: &Output) -> String {
    stderr(o).replace("\n  │ ", " ")
}

/// A fresh build folder holding `stack.kdl` with this text.
pub(crate) fn project(stack_kdl: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("stack.kdl", stack_kdl)]);
    dir
}

/// Writes files (path, content) under `dir`.
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// A busybox base image as an OCI layout, built once per test process by stack itself.
/// Returns `None` (after `skip`) when `/bin/busybox` is missing.
pub(crate) fn busybox_base() -> Option<PathBuf> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            return None;
        }
        let root = std::env::temp_dir().join(format!("stack-it-base-{}", std::process::id()));
        let ctx = root.join("ctx");
        let bin = ctx.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(ctx.join("rootfs/tmp")).unwrap();
        std::fs::set_permissions(ctx.join("rootfs/tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        write_files(&ctx, &[
            ("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"),
            ("rootfs/etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"),
            ("stack.kdl", "stack version=1\nimage base {\n    from \"scratch\"\n    copy \"rootfs/\" to=\"/\"\n    env PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n}\n"),
        ]);
        let out = run_stack(&ctx, &root.join("cache"), &["build", "--out", root.join("layout").to_str().unwrap()]);
        assert!(out.status.success(), "building the busybox base failed: {}", stderr(&out));
        Some(root.join("layout"))
    })
    .clone()
    .or_else(|| {
        skip("/bin/busybox is missing (apt-get install busybox-static)");
        None
    })
}

/// Unpacks image `name` of the OCI layout `layout` into the runtime bundle `bundle` with umoci
/// (callers check `have("umoci")` first).
pub(crate) fn unpack(layout: &Path, name: &str, bundle: &Path) {
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{name}", layout.display())])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
}

/// The files of image `name` in the OCI layout `layout` (its layers applied in order, gzip or
/// zstd), by path without the leading `/`: regular files with their content, folders and
/// other entries with none.
pub(crate) fn image_files(
    layout: &Path,
    name: &str,
) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    use std::io::Read;
    let json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&blob(layout, digest)).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no image `{name}` in {index}"));
    let manifest = json(entry["digest"].as_str().unwrap());
    let mut files = std::collections::BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let bytes = blob(layout, layer["digest"].as_str().unwrap());
        let tar_bytes = if layer["mediaType"].as_str().unwrap().ends_with("+zstd") {
            zstd::decode_all(bytes.as_slice()).unwrap()
        } else {
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut v).unwrap();
            v
        };
        let mut ar = tar::Archive::new(tar_bytes.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone =
                    if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                files.retain(|k: &String, _| k != &gone && !k.starts_with(&format!("{gone}/")));
                continue;
            }
            let content = if e.header().entry_type().is_file() {
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                Some(v)
            } else {
                None
            };
            files.insert(path, content);
        }
    }
    files
}

/// The bytes of a blob of an OCI layout.
pub(crate) fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

/// Who runs stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Root,
    /// `nobody`, with `STACK_SUBIDS=off`: steps run as root only.
    Nobody,
    /// `nobody` in a user namespace with its subordinate ids.
    NobodySubids,
}

impl Standing {
    /// The standings this machine can test (root only when not run as root with `setpriv`).
    pub(crate) fn available() -> Vec<Self> {
        let mut out = vec![Self::Root];
        if !rustix::process::geteuid().is_root() || !have("setpriv") {
            skip("rootless cases need root and setpriv to run stack as `nobody`");
            return out;
        }
        out.push(Self::Nobody);
        let has = |f: &str| {
            std::fs::read_to_string(f).unwrap_or_default().lines().any(|l| l.starts_with("nobody:"))
        };
        if has("/etc/subuid") && has("/etc/subgid") && have("newuidmap") {
            out.push(Self::NobodySubids);
        } else {
            skip("rootless cases with subordinate ids need `nobody` in /etc/subuid, /etc/subgid");
        }
        out
    }

    /// `stack ARGS` in `dir` with the store `dir/cache-STANDING`; as `nobody`, `setpriv` execs
    /// stack, so the child's pid is stack's.
    pub(crate) fn stack(self, dir: &Path, args: &[&str]) -> Command {
        let mut c = if self == Self::Root {
            Command::new(env!("CARGO_BIN_EXE_stack"))
        } else {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_stack"))
                .env("HOME", dir);
            c
        };
        if self == Self::Nobody {
            c.env("STACK_SUBIDS", "off");
        }
        c.args(args)
            .current_dir(dir)
            .env_remove("SOURCE_DATE_EPOCH")
            .env("NO_COLOR", "1")
            .env("STACK_CACHE_DIR", self.store(dir));
        c
    }

    /// The store [`Standing::stack`] uses in `dir`.
    pub(crate) fn store(self, dir: &Path) -> PathBuf {
        dir.join(format!("cache-{self:?}"))
    }

    /// Lets `nobody` use everything under `dir` (the test made it as root).
    pub(crate) fn share(self, dir: &Path) {
        if self != Self::Root {
            let status = Command::new("chmod").args(["-R", "a+rwX"]).arg(dir).status().unwrap();
            assert!(status.success());
        }
    }

    /// Runs `stack ARGS` to the end, after sharing `dir` with `nobody`.
    pub(crate) fn output(self, dir: &Path, args: &[&str]) -> std::process::Output {
        self.share(dir);
        self.stack(dir, args).output().unwrap()
    }
}

/// A tmux server of the test's own, with one 60-column window running `command`.
pub(crate) struct Tmux {
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    pub(crate) fn start(command: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let tmux = Self { socket, _dir: dir };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", "60", "-y", "24", command])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    pub(crate) fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new("tmux");
        c.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    /// The screen's rows, as shown.
    pub(crate) fn screen(&self) -> Vec<String> {
        let out = self.command().args(["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Waits (up to 60 s) until the screen satisfies `found`; returns it.
    pub(crate) fn wait_for(&self, what: &str, found: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..600 {
            let screen = self.screen();
            if found(&screen) {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("never saw {what}:\n{}", self.screen().join("\n"));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}
