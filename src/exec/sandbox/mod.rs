//! The daemonless Linux sandbox that runs `run`/`exec` steps over stacked layers.
//!
//! [`run`] re-executes the current binary as a single-threaded helper (a threaded process
//! cannot `unshare(CLONE_NEWUSER)`), passes it the [`SandboxSpec`] over a pipe, streams the
//! command's output, and returns the overlay upper dir's changes as layer [`Entry`]s.
//!
//! Process tree: caller (threaded) → helper (its own user namespace when the caller is not
//! root, mapping only the caller; `stack` itself runs in a user namespace with subordinate ids
//! when it can, see [`userns`], and then the helper is root already; new PID, IPC, UTS
//! and network namespaces; diffs the upper dir at the end) → PID 1 (own mount namespace,
//! overlay root, `/proc`, `/dev`, `/sys`, mounts, `pivot_root`; forwards signals, reaps) →
//! the command (own session, dropped capabilities and ids).
//!
//! Every mount lives in PID 1's private mount namespace, which dies with it: nothing is ever
//! mounted in the caller's namespace, even if the command is killed.
//!
//! # Wiring
//! The binary's `main` must start with
//! `if let Some(code) = stack::exec::sandbox::helper_main() { std::process::exit(code) }`.
//! The helper is recognised by the environment variable [`HELPER_ENV`], not by argv, so a
//! test binary can serve as the helper too (see [`Helper`]).
//!
//! # Lower dirs
//! Extracted layer trees in overlay format, topmost first: whiteouts are 0:0 character
//! devices, opaque directories carry `trusted.overlay.opaque=y` (root on the host) or
//! `user.overlay.opaque=y` (in a user namespace), as `Privilege::overlay_xattr_prefix` says.
//!
//! Invariant: all `unsafe` lives in `sys/`; the setup sequence (`setup.rs`) only talks to
//! the kernel through the `Sys` trait, so its plan is snapshot-tested with a recording fake.

mod copyroot;
mod diff;
mod helper;
mod seccomp;
mod setup;
mod sys;
mod user;
pub(crate) mod userns;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::oci::layer::Entry;

use setup::SetupError;

/// The environment variable that marks a process as the sandbox helper.
pub(crate) const HELPER_ENV: &str = "__STACK_SANDBOX_HELPER";

/// The first argument given to the helper in production (visible in `ps`).
pub(crate) const HELPER_ARG: &str = "__stack-sandbox";

/// What to run, on what, with which mounts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SandboxSpec {
    /// Extracted layer trees, topmost first, in overlay lower-dir format (see the module doc).
    pub lower_dirs: Vec<PathBuf>,
    /// An empty scratch directory; the sandbox creates `upper/`, `work/`, `root/`, `l/`,
    /// `gen/` inside. It must be on a file system that can hold an overlay upper dir.
    pub scratch_dir: PathBuf,
    /// The final argv, e.g. `["/bin/sh", "-c", "echo hi"]`; `argv[0]` without a `/` is
    /// searched in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// The complete environment; `HOME` is added from `/etc/passwd` when absent.
    pub env: Vec<(String, String)>,
    /// Working directory, created (owned by the user) when missing.
    pub cwd: String,
    pub user: UserSpec,
    pub hostname: String,
    pub network: Network,
    /// The `slirp4netns` program for [`Network::Private`].
    #[serde(default)]
    pub slirp4netns: Option<PathBuf>,
    /// Lines added to the generated `/etc/hosts` (`--add-host`): name and address.
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// How the root is assembled; `Auto` uses overlay when it can.
    #[serde(default)]
    pub root_mode: RootMode,
    /// A `binfmt_misc` registration (the line for `register`) the sandbox makes in its own
    /// user namespace, for an emulated platform the host has not registered.
    pub emulator: Option<String>,
}

/// How the sandbox assembles the root file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum RootMode {
    /// Overlay when the kernel has it and there are at most 500 lower dirs, else `Copy`.
    #[default]
    Auto,
    /// Merge the lower dirs into a plain directory and diff against a snapshot (slower; the
    /// same entries).
    Copy,
}

/// A raw `user` value: `name[:group]` or `uid[:gid]`, resolved through the image's
/// `/etc/passwd` and `/etc/group` (empty means root).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UserSpec(pub String);

/// The network a step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Network {
    /// An empty network namespace with only `lo`, up.
    None,
    /// The host's network, with generated `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`.
    Host,
    /// A network namespace of its own that reaches the outside world through `slirp4netns`
    /// (a user-mode TCP/IP stack, as rootless podman and `BuildKit` use), never the host's
    /// loopback, abstract sockets or interfaces; generated files as for `Host`, with
    /// slirp's DNS forwarder as the name server.
    Private,
}

/// The addresses slirp4netns gives a namespace: its DNS forwarder.
pub(crate) const SLIRP_DNS: &str = "10.0.2.3";

/// An extra mount for the duration of a step; none of them shows up in the changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Mount {
    /// A persistent host directory bound read-write (or read-only).
    Cache { host_dir: PathBuf, target: String, readonly: bool },
    /// A fresh tmpfs, `size` in bytes.
    Tmpfs { target: String, size: Option<u64> },
    /// A read-only file holding `content`, with the given mode and owner. The value travels
    /// to the sandbox over its spec pipe and lives only in a tmpfs of the sandbox's own mount
    /// namespace: nothing of it is ever written to disk, so a crash leaves nothing behind.
    Secret {
        #[serde(with = "secret_bytes")]
        content: Vec<u8>,
        target: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A host file or directory bound in, found inside `source.root` (never outside it, even
    /// through symlinks).
    Bind { source: BindSource, target: String, readonly: bool },
}

/// Where a bind mount's source is: `path` resolved inside `root` (`openat2` with
/// `RESOLVE_IN_ROOT`), so a symlink in a build context that points at `/etc` means the
/// context's own `etc`, never the host's; the mount is made through the opened fd.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct BindSource {
    pub root: PathBuf,
    pub path: String,
}

impl BindSource {
    /// A single host file or socket, named inside its own folder.
    pub(crate) fn file(path: &Path) -> Self {
        let root = path.parent().map_or_else(|| PathBuf::from("/"), Path::to_owned);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self { root, path: name }
    }
}

/// Secrets cross the spec pipe as hex, not as a JSON array of numbers (shorter, and no
/// allocation per byte).
mod secret_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ExitStatusLike {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatusLike {
    pub(crate) fn success(self) -> bool {
        self == ExitStatusLike::Exited(0)
    }

    /// The shell convention: the exit code, or 128 + the signal.
    pub(crate) fn code(self) -> i32 {
        match self {
            ExitStatusLike::Exited(c) => c,
            ExitStatusLike::Signaled(s) => 128 + s,
        }
    }
}

/// The result of a step: its status and its changes.
///
/// `EntryKind::File` sources point into the scratch dir's `upper/`: keep the outcome (its
/// [`ScratchGuard`]) alive until the layer is written; dropping it deletes what the sandbox
/// created in the scratch dir.
#[derive(Debug)]
pub(crate) struct RunOutcome {
    pub status: ExitStatusLike,
    pub changes: Vec<Entry>,
    #[allow(dead_code, reason = "held for its Drop, which removes the sandbox's directories")]
    pub scratch: ScratchGuard,
}

/// Removes the sandbox's directories from the scratch dir when dropped (the scratch dir
/// itself stays); [`ScratchGuard::keep`] disarms it.
#[derive(Debug)]
pub(crate) struct ScratchGuard {
    dir: Option<PathBuf>,
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            for sub in ["upper", "work", "root", "l", "gen", "secrets"] {
                remove_tree(&dir.join(sub));
            }
        }
    }
}

/// Deletes a tree, making directories writable first (overlay's `work/work` is mode 000).
fn remove_tree(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = fs_err::symlink_metadata(path) else { return };
    if md.is_dir() {
        let _ = fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs_err::read_dir(path) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
        let _ = fs_err::remove_dir(path);
    } else {
        let _ = fs_err::remove_file(path);
    }
}

/// Everything that can go wrong running a step.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    #[error("the step was cancelled")]
    Cancelled,
    #[error(
        "the step's private network could not be set up: slirp4netns said `{message}` (it needs \
         read-write access to /dev/net/tun, mode 0666 on most systems; or give the step \
         `network \"host\"` or `network \"none\"`)"
    )]
    Network { message: String },
    #[error("cannot prepare the scratch dir `{}`", path.display())]
    Scratch { path: PathBuf, source: std::io::Error },
    #[error("cannot start the sandbox helper `{}`", exe.display())]
    Spawn { exe: PathBuf, source: std::io::Error },
    #[error("cannot talk to the sandbox helper `{}` ({what})", exe.display())]
    Pipe { exe: PathBuf, what: &'static str, source: std::io::Error },
    #[error("the sandbox helper `{}` ended ({status}) without a result{}", exe.display(), if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    HelperDied { exe: PathBuf, status: String, stderr: String },
    #[error("sandbox protocol error reading the {what}: {message}")]
    Protocol { what: String, message: String },
    #[error("sandbox setup failed at {step}: `{op}` on `{path}`")]
    Syscall { step: String, op: String, path: String, source: std::io::Error },
    #[error("cannot create a user namespace (`{op}`): {reason}")]
    UserNamespaces { op: String, reason: String, source: std::io::Error },
    #[error("cannot run as user `{user}`: {reason}")]
    User { user: String, reason: String },
    #[error("invalid mount target `{target}`: {reason}")]
    BadTarget { target: String, reason: String },
    #[error("cannot execute `{argv0}` in the sandbox")]
    Exec { argv0: String, source: std::io::Error },
    #[error("cannot read the step's change at `{path}`")]
    Diff { path: String, source: std::io::Error },
}

/// An error as it crosses from the helper to the caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum WireError {
    Setup(SetupError),
    Exec { argv0: String, errno: i32 },
    Diff { path: String, errno: i32, message: String },
    Protocol { what: String, message: String },
    Network { message: String },
}

impl From<WireError> for SandboxError {
    fn from(e: WireError) -> Self {
        let os = std::io::Error::from_raw_os_error;
        match e {
            WireError::Setup(SetupError::Sys { step, error }) => SandboxError::Syscall {
                step,
                op: error.op,
                path: error.path,
                source: os(error.errno),
            },
            WireError::Setup(SetupError::UserNs { error }) => SandboxError::UserNamespaces {
                reason: userns_reason(error.errno),
                op: error.op,
                source: os(error.errno),
            },
            WireError::Setup(SetupError::User { spec, reason }) => {
                SandboxError::User { user: spec, reason }
            }
            WireError::Setup(SetupError::BadTarget { target, reason }) => {
                SandboxError::BadTarget { target, reason }
            }
            WireError::Exec { argv0, errno } => SandboxError::Exec { argv0, source: os(errno) },
            WireError::Diff { path, errno, message } => SandboxError::Diff {
                path,
                source: if errno == 0 { std::io::Error::other(message) } else { os(errno) },
            },
            WireError::Protocol { what, message } => SandboxError::Protocol { what, message },
            WireError::Network { message } => SandboxError::Network { message },
        }
    }
}

/// Explains, in plain words, why unprivileged user namespaces are refused here.
fn userns_reason(errno: i32) -> String {
    let read = |p: &str| fs_err::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled by the kernel setting \
                `kernel.unprivileged_userns_clone=0`"
            .into();
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled (`user.max_user_namespaces=0`)".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces \
                (`kernel.apparmor_restrict_unprivileged_userns=1`)"
            .into();
    }
    match errno {
        libc::EINVAL => {
            "the calling process is threaded or the kernel lacks user namespaces".into()
        }
        libc::ENOSPC => "the user namespace limit is reached".into(),
        _ => "the kernel or a security policy refuses unprivileged user namespaces (run as \
              root, or allow them)"
            .into(),
    }
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WireOutcome {
    status: ExitStatusLike,
    changes: Vec<Entry>,
}

/// How to start the helper process.
#[derive(Debug, Clone)]
pub(crate) struct Helper {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Helper {
    /// The running binary (`/proc/self/exe`), whose `main` calls [`helper_main`].
    pub(crate) fn current_exe() -> Helper {
        Helper { program: PathBuf::from("/proc/self/exe"), args: vec![HELPER_ARG.to_owned()] }
    }
}

/// Runs the command with the current binary as helper (see [`run_inner`]), and kills the whole step (the helper, whose death takes the step's PID
/// namespace with it) as soon as `cancel` becomes true.
pub(crate) fn run_cancellable(
    spec: &SandboxSpec,
    output: &mut dyn FnMut(&[u8]),
    cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<RunOutcome, SandboxError> {
    run_inner(spec, output, &Helper::current_exe(), Some(cancel))
}

/// Runs the command, streaming its combined stdout and stderr to `output` chunk by chunk,
/// and returns its status and its changes (on failure too).
#[cfg(test)]
pub(crate) fn run_with_helper(
    spec: &SandboxSpec,
    output: &mut dyn FnMut(&[u8]),
    helper: &Helper,
) -> Result<RunOutcome, SandboxError> {
    run_inner(spec, output, helper, None)
}

fn run_inner(
    spec: &SandboxSpec,
    output: &mut dyn FnMut(&[u8]),
    helper: &Helper,
    cancel: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<RunOutcome, SandboxError> {
    use std::process::{Command, Stdio};
    use sys::Sys as _;
    let exe = helper.program.clone();
    fs_err::create_dir_all(&spec.scratch_dir)
        .map_err(|source| SandboxError::Scratch { path: spec.scratch_dir.clone(), source })?;
    let scratch = ScratchGuard { dir: Some(spec.scratch_dir.clone()) };
    let pipe_err = |what| {
        let exe = exe.clone();
        move |e: sys::SysError| SandboxError::Pipe { exe, what, source: e.io() }
    };
    let mut real = sys::RealSys;
    let (res_r, res_w) = real.pipe().map_err(pipe_err("result pipe"))?;
    let (out_r, out_w) = real.pipe().map_err(pipe_err("output pipe"))?;
    let (res_r, out_r) = (std::fs::File::from(res_r), std::fs::File::from(out_r));
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
    let mut cmd = Command::new(&helper.program);
    cmd.args(&helper.args)
        .env(HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spawned = sys::spawn_with_fds(&mut cmd, &[res_w, out_w]);
    let mut child = spawned.map_err(|source| SandboxError::Spawn { exe: exe.clone(), source })?;
    let spec_json = serde_json::to_vec(spec).map_err(|e| SandboxError::Protocol {
        what: "sandbox spec".into(),
        message: e.to_string(),
    })?;
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    // A watcher kills the helper when the build is cancelled; `finished` stops it.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = cancel.map(|cancel| kill_when_cancelled(cancel, child.id(), &finished));
    // Plain threads (never rayon workers) feed the spec, collect the helper's diagnostics,
    // and wait for it; this thread streams the output.
    let feeder = std::thread::spawn(move || {
        if let Some(mut s) = stdin.take() {
            use std::io::Write;
            let _ = s.write_all(&spec_json);
        }
    });
    let diag = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let waiter = std::thread::spawn(move || {
        let mut res_r = res_r;
        let mut result = Vec::new();
        let read = res_r.read_to_end(&mut result);
        let status = child.wait();
        (read.map(|_| result), status)
    });
    let mut out_r = out_r;
    let mut buf = vec![0u8; 65536];
    loop {
        match out_r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => output(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(SandboxError::Pipe { exe, what: "output pipe", source }),
        }
    }
    let _ = feeder.join();
    let diag = diag.join().unwrap_or_default();
    let (result, status) =
        waiter.join().expect("the sandbox waiter thread panicked (a bug in stack)");
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(w) = watcher {
        // Wake it now rather than waiting out its timeout.
        w.thread().unpark();
        let _ = w.join();
    }
    if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
        return Err(SandboxError::Cancelled);
    }
    let outcome = read_outcome(exe, result, status, &diag)?;
    Ok(RunOutcome { status: outcome.status, changes: outcome.changes, scratch })
}

/// A thread that kills the helper (`pid`), whose death takes the step's PID namespace with it,
/// as soon as `cancel` becomes true; it ends by itself once `finished` is.
fn kill_when_cancelled(
    cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    pid: u32,
    finished: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (cancel, finished) = (std::sync::Arc::clone(cancel), std::sync::Arc::clone(finished));
    let pid = rustix::process::Pid::from_raw(pid as i32);
    std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        while !finished.load(Ordering::SeqCst) {
            if cancel.load(Ordering::SeqCst) {
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                return;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
    })
}

/// The helper's outcome from what it wrote on the result pipe, or why there is none (a helper
/// that died says so on its standard error, `diag`).
fn read_outcome(
    exe: PathBuf,
    result: std::io::Result<Vec<u8>>,
    status: std::io::Result<std::process::ExitStatus>,
    diag: &str,
) -> Result<WireOutcome, SandboxError> {
    let result = result.map_err(|source| SandboxError::Pipe {
        exe: exe.clone(),
        what: "result pipe",
        source,
    })?;
    let status =
        status.map_err(|source| SandboxError::Pipe { exe: exe.clone(), what: "wait", source })?;
    if result.is_empty() {
        return Err(SandboxError::HelperDied {
            exe,
            status: status.to_string(),
            stderr: diag.trim().to_owned(),
        });
    }
    let outcome: Result<WireOutcome, WireError> = serde_json::from_slice(&result).map_err(|e| {
        SandboxError::Protocol { what: "helper result".into(), message: e.to_string() }
    })?;
    Ok(outcome?)
}

/// Every file of `dir` as layer entries (paths relative to `dir`), as a step's changes are
/// read: for saving a cache mount.
pub(crate) fn folder_entries(dir: &Path) -> std::io::Result<Vec<crate::oci::layer::Entry>> {
    diff::diff_upper(&mut sys::RealSys, dir, &[], &[], None).map_err(|e| {
        std::io::Error::new(e.source.kind(), format!("{}: {}", e.path.display(), e.source))
    })
}

/// Why the sandbox cannot work on this machine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    #[error("cannot read `/proc/filesystems`")]
    NoProc(#[source] std::sync::Arc<std::io::Error>),
    #[error("the kernel has no overlay file system (`modprobe overlay`)")]
    NoOverlay,
    /// Rootless: no user namespace, and what on this machine refuses it.
    #[error("cannot create a user namespace: {reason}")]
    NoUserNamespace {
        reason: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("cannot create namespaces ({namespaces})")]
    NoNamespaces {
        namespaces: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

/// Says whether the sandbox can work here, and if not, why.
pub fn probe() -> Result<(), Unavailable> {
    let filesystems = fs_err::read_to_string("/proc/filesystems")
        .map_err(|e| Unavailable::NoProc(std::sync::Arc::new(e)))?;
    if !filesystems.lines().any(|l| l.trim_end().ends_with("overlay")) {
        return Err(Unavailable::NoOverlay);
    }
    let rootless = sys::geteuid() != 0;
    let ns = sys::Namespaces { user: rootless, mount: true, pid: true, ..Default::default() };
    sys::probe_unshare(ns).map_err(|errno| {
        let source = std::sync::Arc::new(std::io::Error::from_raw_os_error(errno));
        if rootless {
            Unavailable::NoUserNamespace { reason: userns_reason(errno), source }
        } else {
            Unavailable::NoNamespaces { namespaces: ns.to_string(), source }
        }
    })
}

/// The helper's entry point: `Some(exit code)` when this process is the sandbox helper
/// (marked by [`HELPER_ENV`]), `None` otherwise. Call it first thing in `main`.
pub(crate) fn helper_main() -> Option<i32> {
    std::env::var_os(HELPER_ENV)?;
    Some(helper::main())
}
