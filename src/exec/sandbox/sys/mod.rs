//! The syscall seam: every kernel operation of the sandbox's processes (the helper, its PID 1,
//! the step's process, the rootless parent) goes through [`Sys`], with typed arguments, so the
//! whole mount plan can be recorded by a fake and snapshotted, and the process plumbing
//! (forks, waits, signals, pipes) scripted by one.
//!
//! Invariant: this folder holds every `unsafe` block of the sandbox, each with a `// SAFETY:`
//! comment; nothing outside it calls `libc` directly. `real.rs` is [`RealSys`], `process.rs`
//! and `files.rs` the calls it makes for processes and for the trees' xattrs and nodes.

// Kernel files (`/proc`, fds) are read with plain `std::fs`: each call maps its error to a
// `SysError` naming the operation and path itself.
#![allow(clippy::disallowed_methods)]

mod files;
mod process;
mod real;

pub(crate) use process::{
    geteuid, getgid, getpid, getppid, getuid, inherited_fd, probe_unshare, spawn_with_fds,
    thread_count, user_name,
};
pub(crate) use real::RealSys;

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A failed system call: what was attempted, on which path or object, and the errno.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SysError {
    pub(crate) op: String,
    pub(crate) path: String,
    pub(crate) errno: i32,
}

impl SysError {
    pub(crate) fn new(op: &str, path: impl fmt::Display, errno: i32) -> Self {
        SysError { op: op.to_owned(), path: path.to_string(), errno }
    }

    fn last(op: &str, path: impl fmt::Display) -> Self {
        Self::new(op, path, io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub(crate) fn io(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` on `{}`: {}", self.op, self.path, self.io())
    }
}

pub(crate) type SysResult<T> = Result<T, SysError>;

/// The namespaces one `unshare` call creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Namespaces {
    pub(crate) user: bool,
    pub(crate) mount: bool,
    pub(crate) pid: bool,
    pub(crate) ipc: bool,
    pub(crate) uts: bool,
    pub(crate) net: bool,
}

impl Namespaces {
    fn clone_flags(self) -> libc::c_int {
        let mut flags = 0;
        for (on, flag) in [
            (self.user, libc::CLONE_NEWUSER),
            (self.mount, libc::CLONE_NEWNS),
            (self.pid, libc::CLONE_NEWPID),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.uts, libc::CLONE_NEWUTS),
            (self.net, libc::CLONE_NEWNET),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags
    }
}

impl fmt::Display for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.user, "user"),
            (self.mount, "mount"),
            (self.pid, "pid"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.net, "net"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        f.write_str(&names.join("|"))
    }
}

/// `mount(2)` flags, typed so the recorded plan reads as names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MountFlags(pub(crate) u64);

impl MountFlags {
    pub(crate) const NONE: MountFlags = MountFlags(0);
    pub(crate) const RDONLY: MountFlags = MountFlags(libc::MS_RDONLY);
    pub(crate) const NOSUID: MountFlags = MountFlags(libc::MS_NOSUID);
    pub(crate) const NODEV: MountFlags = MountFlags(libc::MS_NODEV);
    pub(crate) const NOEXEC: MountFlags = MountFlags(libc::MS_NOEXEC);
    pub(crate) const REMOUNT: MountFlags = MountFlags(libc::MS_REMOUNT);
    pub(crate) const BIND: MountFlags = MountFlags(libc::MS_BIND);
    pub(crate) const REC: MountFlags = MountFlags(libc::MS_REC);
    pub(crate) const PRIVATE: MountFlags = MountFlags(libc::MS_PRIVATE);

    pub(crate) fn contains(self, other: MountFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for MountFlags {
    type Output = MountFlags;
    fn bitor(self, rhs: MountFlags) -> MountFlags {
        MountFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (Self::BIND, "bind"),
            (Self::REC, "rec"),
            (Self::REMOUNT, "remount"),
            (Self::PRIVATE, "private"),
            (Self::RDONLY, "ro"),
            (Self::NOSUID, "nosuid"),
            (Self::NODEV, "nodev"),
            (Self::NOEXEC, "noexec"),
        ]
        .iter()
        .filter(|(flag, _)| self.contains(*flag))
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() { f.write_str("-") } else { f.write_str(&names.join(",")) }
    }
}

/// An open file descriptor with a human-readable label (the path it was opened for).
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) raw: i32,
    pub(crate) label: String,
}

impl Handle {
    /// The descriptor, for the real kernel's calls (a fake's handles are never passed there).
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `RealSys` opened `raw` and never closes it: handles live as long as the
        // short-lived sandbox process that made them.
        unsafe { BorrowedFd::borrow_raw(self.raw) }
    }
}

/// Where a mount goes: a plain path, or an fd resolved safely inside the rootfs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Path(&'a Path),
    Fd(&'a Handle),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(p) => write!(f, "{}", p.display()),
            Target::Fd(h) => write!(f, "<root>/{}", h.label),
        }
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// The result of `fork`.
pub(crate) enum Forked {
    Child,
    Parent(i32),
}

/// A set of signals to block or wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignalSet<'a> {
    All,
    Only(&'a [i32]),
}

/// Signals the PID 1 forwards to the command.
pub(crate) const FORWARDED_SIGNALS: [i32; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Every kernel operation of the sandbox setup, with typed arguments.
pub(crate) trait Sys {
    fn unshare(&mut self, ns: Namespaces) -> SysResult<()>;
    fn write_file(&mut self, path: &Path, data: &[u8]) -> SysResult<()>;
    fn read_file(&mut self, path: &Path) -> SysResult<Vec<u8>>;
    fn mount(
        &mut self,
        source: Option<Target<'_>>,
        target: Target<'_>,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// Returns the flags (nosuid, nodev, noexec, rdonly) the mount at `target` carries.
    fn mount_flags_of(&mut self, target: Target<'_>) -> SysResult<MountFlags>;
    fn umount_detach(&mut self, path: &Path) -> SysResult<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    fn chdir(&mut self, path: &Path) -> SysResult<()>;
    /// Creates a directory; `Ok(false)` when it already existed.
    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult<bool>;
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()>;
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> SysResult<()>;
    fn chmod(&mut self, path: &Path, mode: u32) -> SysResult<()>;
    fn open_dir(&mut self, path: &Path) -> SysResult<Handle>;
    /// Opens `rel` under `root` with every symlink and `..` resolved inside `root`
    /// (`openat2` + `RESOLVE_IN_ROOT`), as an `O_PATH` handle.
    fn open_in_root(&mut self, root: &Handle, rel: &str) -> SysResult<Handle>;
    /// Creates directory `name` in the directory `parent` (a handle from `open_in_root`).
    fn mkdir_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()>;
    /// Creates the empty regular file `name` in the directory `parent`.
    fn create_file_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()>;
    /// Creates the symlink `name` -> `target` in the directory `parent`.
    fn symlink_at(&mut self, parent: &Handle, name: &str, target: &str) -> SysResult<()>;
    /// The path an open handle really refers to (after symlinks were resolved).
    fn path_of(&mut self, h: &Handle) -> SysResult<PathBuf>;
    fn sethostname(&mut self, name: &str) -> SysResult<()>;
    fn loopback_up(&mut self) -> SysResult<()>;
    fn setgroups(&mut self, groups: &[u32]) -> SysResult<()>;
    fn setresgid(&mut self, gid: u32) -> SysResult<()>;
    fn setresuid(&mut self, uid: u32) -> SysResult<()>;
    /// Drops every capability outside `keep` from the bounding set.
    fn drop_bounding_caps(&mut self, keep: &[u32]) -> SysResult<()>;
    fn umask(&mut self, mask: u32);
    /// Whether an open handle is a directory.
    fn is_dir_handle(&mut self, h: &Handle) -> bool;
    /// Sets every signal's disposition to the default and empties the signal mask.
    fn reset_signals(&mut self);
    /// Installs seccomp filters, in order, without `PR_SET_NO_NEW_PRIVS` (the caller must hold
    /// `CAP_SYS_ADMIN` in its user namespace).
    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> SysResult<()>;

    // Processes, signals and pipes.
    /// Forks. Only from a single-threaded process, or with nothing but async-signal-safe calls
    /// in the child.
    fn fork(&mut self) -> SysResult<Forked>;
    /// Waits for `pid` (-1: any child); `None` when `nohang` and none has ended.
    fn waitpid(&mut self, pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>>;
    /// Sends `sig` to process `pid`, or to process group `-pid`.
    fn kill(&mut self, pid: i32, sig: i32);
    /// Blocks (`true`) or unblocks (`false`) `signals` for the calling thread.
    fn block_signals(&mut self, signals: SignalSet<'_>, block: bool);
    /// Waits for one of `signals` (which must be blocked); returns it and whether a process
    /// sent it (as opposed to the kernel).
    fn wait_signal(&mut self, signals: SignalSet<'_>) -> (i32, bool);
    /// Starts a new session (the step's command leads its own process group).
    fn setsid(&mut self);
    /// Has the kernel kill this process when its parent dies.
    fn die_with_parent(&mut self);
    /// Marks every fd from 3 up close-on-exec, so an exec'd program inherits only stdio.
    fn cloexec_from_3(&mut self);
    /// Replaces the process image; returns only on failure, with the errno.
    fn execve(&mut self, path: &Path, argv: &[String], env: &[(String, String)]) -> i32;
    /// Ends the process at once, without destructors or atexit handlers (forked children).
    fn exit(&mut self, code: i32) -> !;
    /// A pipe with both ends close-on-exec: (read, write).
    fn pipe(&mut self) -> SysResult<(OwnedFd, OwnedFd)>;
    /// Makes `fd` the process's standard input (0), output (1) or error (2).
    fn dup_onto(&mut self, fd: &OwnedFd, to: i32) -> SysResult<()>;
    /// Lets `fd` survive `exec` (for the fds a child program is told about).
    fn keep_on_exec(&mut self, fd: &OwnedFd);
    /// Closes `fd` at `exec`.
    fn close_on_exec(&mut self, fd: &OwnedFd);
    /// Reads one byte; `None` at end of file or on error.
    fn read_byte(&mut self, fd: &OwnedFd) -> Option<u8>;
    /// Reads until end of file (or an error), then closes `fd`.
    fn read_to_end(&mut self, fd: OwnedFd) -> Vec<u8>;
    /// Writes all of `data`, giving up at an error (a reader that went away).
    fn write_all(&mut self, fd: &OwnedFd, data: &[u8]);

    // The trees the sandbox reads and writes (the upper dir, the copy fallback's root).
    /// The extended attributes of `path` (not following symlinks), sorted by name.
    fn xattrs(&mut self, path: &Path) -> io::Result<Vec<(String, Vec<u8>)>>;
    /// Sets one extended attribute on `path` (not following symlinks).
    fn set_xattr(&mut self, path: &Path, name: &str, value: &[u8]) -> io::Result<()>;
    /// Creates a device node or fifo.
    fn mknod(&mut self, path: &Path, mode: u32, rdev: u64) -> io::Result<()>;
}

fn cstr(op: &str, s: &OsStr) -> SysResult<CString> {
    CString::new(s.as_bytes()).map_err(|_| SysError::new(op, s.to_string_lossy(), libc::EINVAL))
}

fn fd_path(h: &Handle) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", h.raw))
}

fn target_path(t: Target<'_>) -> PathBuf {
    match t {
        Target::Path(p) => p.to_owned(),
        Target::Fd(h) => fd_path(h),
    }
}

fn check(op: &str, path: impl fmt::Display, rc: libc::c_int) -> SysResult<()> {
    if rc < 0 { Err(SysError::last(op, path)) } else { Ok(()) }
}

/// A `rustix` call's result as a [`SysResult`] naming the operation and its object.
fn safe<T>(op: &str, path: impl fmt::Display, r: rustix::io::Result<T>) -> SysResult<T> {
    r.map_err(|e| SysError::new(op, path, e.raw_os_error()))
}
