//! The syscall seam: every kernel operation the sandbox setup performs goes through [`Sys`],
//! with typed arguments, so the whole mount plan can be recorded by a fake and snapshotted.
//!
//! Invariant: this file holds every `unsafe` block of the sandbox, each with a `// SAFETY:`
//! comment; nothing outside it calls `libc` directly.

// Kernel files (`/proc`, fds) are read with plain `std::fs`: each call maps its error to a
// `SysError` naming the operation and path itself.
#![allow(clippy::disallowed_methods)]

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
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

/// The real kernel.
pub(crate) struct RealSys;

impl Sys for RealSys {
    fn unshare(&mut self, ns: Namespaces) -> SysResult<()> {
        // SAFETY: unshare takes a flag word only and touches no memory of ours.
        let rc = unsafe { libc::unshare(ns.clone_flags()) };
        check("unshare", ns, rc)
    }

    fn write_file(&mut self, path: &Path, data: &[u8]) -> SysResult<()> {
        std::fs::write(path, data).map_err(|e| {
            SysError::new("write", path.display(), e.raw_os_error().unwrap_or(libc::EIO))
        })
    }

    fn read_file(&mut self, path: &Path) -> SysResult<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            SysError::new("read", path.display(), e.raw_os_error().unwrap_or(libc::EIO))
        })
    }

    fn mount(
        &mut self,
        source: Option<Target<'_>>,
        target: Target<'_>,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let label = target.to_string();
        let src = source.map_or_else(|| PathBuf::from("none"), target_path);
        let dat = data.map(|s| cstr("mount", OsStr::new(s))).transpose()?;
        // A bind, a remount or a propagation change has no file system type; the kernel
        // ignores the (empty) one given then.
        let flags = rustix::mount::MountFlags::from_bits_retain(flags.0 as u32);
        let r = rustix::mount::mount(
            src.as_path(),
            target_path(target).as_path(),
            fstype.unwrap_or(""),
            flags,
            dat.as_deref(),
        );
        safe("mount", label, r)
    }

    fn mount_flags_of(&mut self, target: Target<'_>) -> SysResult<MountFlags> {
        use rustix::fs::StatVfsMountFlags as St;
        let label = target.to_string();
        let st = safe("statvfs", label, rustix::fs::statvfs(target_path(target).as_path()))?;
        let mut flags = MountFlags::NONE;
        for (st_flag, flag) in [
            (St::RDONLY, MountFlags::RDONLY),
            (St::NOSUID, MountFlags::NOSUID),
            (St::NODEV, MountFlags::NODEV),
            (St::NOEXEC, MountFlags::NOEXEC),
        ] {
            if st.f_flag.contains(st_flag) {
                flags = flags | flag;
            }
        }
        Ok(flags)
    }

    fn umount_detach(&mut self, path: &Path) -> SysResult<()> {
        let r = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
        safe("umount", path.display(), r)
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        safe("pivot_root", new_root.display(), rustix::process::pivot_root(new_root, put_old))
    }

    fn chdir(&mut self, path: &Path) -> SysResult<()> {
        safe("chdir", path.display(), rustix::process::chdir(path))
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult<bool> {
        match rustix::fs::mkdir(path, rustix::fs::Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(SysError::new("mkdir", path.display(), e.raw_os_error())),
        }
    }

    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()> {
        safe("symlink", link.display(), rustix::fs::symlink(target, link))
    }

    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> SysResult<()> {
        let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        let nofollow = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        let r = rustix::fs::chownat(rustix::fs::CWD, path, Some(uid), Some(gid), nofollow);
        safe("chown", path.display(), r)
    }

    fn chmod(&mut self, path: &Path, mode: u32) -> SysResult<()> {
        safe(
            "chmod",
            path.display(),
            rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode)),
        )
    }

    fn open_dir(&mut self, path: &Path) -> SysResult<Handle> {
        use rustix::fs::OFlags;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd =
            safe("open", path.display(), rustix::fs::open(path, flags, rustix::fs::Mode::empty()))?;
        // The handle owns the descriptor from here on (closed by `close`).
        Ok(Handle {
            raw: std::os::fd::IntoRawFd::into_raw_fd(fd),
            label: path.display().to_string(),
        })
    }

    fn open_in_root(&mut self, root: &Handle, rel: &str) -> SysResult<Handle> {
        let p = cstr("openat2", OsStr::new(if rel.is_empty() { "." } else { rel }))?;
        // SAFETY: open_how is plain old data; zeroed is valid and then filled in.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // A path through `..` fails with EAGAIN when any mount or rename happens anywhere on
        // the system during the lookup (other steps mount all the time): retry, as openat2(2)
        // asks. The bound only guards against a livelock.
        let mut attempts = 0;
        let fd = loop {
            // SAFETY: `p` is a valid C string, `how` a valid open_how of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    root.raw,
                    p.as_ptr(),
                    &raw const how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            let again = fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
            if !again || attempts == 1000 {
                break fd;
            }
            attempts += 1;
        };
        check("openat2", rel, fd as libc::c_int)?;
        Ok(Handle { raw: fd as i32, label: rel.to_owned() })
    }

    fn mkdir_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        let n = cstr("mkdirat", OsStr::new(name))?;
        // SAFETY: `n` is a valid C string; `parent.raw` is an open directory fd.
        let rc = unsafe { libc::mkdirat(parent.raw, n.as_ptr(), mode) };
        check("mkdirat", format!("{}/{name}", parent.label), rc)
    }

    fn create_file_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        let n = cstr("openat", OsStr::new(name))?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
        // SAFETY: `n` is a valid C string; `parent.raw` is an open directory fd.
        let fd = unsafe { libc::openat(parent.raw, n.as_ptr(), flags | libc::O_NOFOLLOW, mode) };
        check("openat", format!("{}/{name}", parent.label), fd)?;
        // SAFETY: fd was just opened by us and is closed once.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink_at(&mut self, parent: &Handle, name: &str, target: &str) -> SysResult<()> {
        let n = cstr("symlinkat", OsStr::new(name))?;
        let t = cstr("symlinkat", OsStr::new(target))?;
        // SAFETY: valid C strings; `parent.raw` is an open directory fd.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), parent.raw, n.as_ptr()) };
        check("symlinkat", format!("{}/{name}", parent.label), rc)
    }

    fn path_of(&mut self, h: &Handle) -> SysResult<PathBuf> {
        std::fs::read_link(fd_path(h))
            .map_err(|e| SysError::new("readlink", &h.label, e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn sethostname(&mut self, name: &str) -> SysResult<()> {
        safe("sethostname", name, rustix::system::sethostname(name.as_bytes()))
    }

    fn loopback_up(&mut self) -> SysResult<()> {
        // SAFETY: socket takes integers only.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check("socket", "AF_INET", sock)?;
        // SAFETY: ifreq is plain old data; zeroed is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS on an open socket.
        let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &raw mut req) };
        let res = check("ioctl(SIOCGIFFLAGS)", "lo", rc).and_then(|()| {
            // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS; we set the UP bit.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            // SAFETY: `req` is a valid ifreq for SIOCSIFFLAGS on an open socket.
            let rc = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &raw const req) };
            check("ioctl(SIOCSIFFLAGS)", "lo", rc)
        });
        // SAFETY: `sock` was opened above and is closed once.
        unsafe { libc::close(sock) };
        res
    }

    fn setgroups(&mut self, groups: &[u32]) -> SysResult<()> {
        // SAFETY: pointer and length describe the `groups` slice, alive for the call.
        let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
        check("setgroups", format!("{groups:?}"), rc)
    }

    fn setresgid(&mut self, gid: u32) -> SysResult<()> {
        // SAFETY: integers only.
        let rc = unsafe { libc::setresgid(gid, gid, gid) };
        check("setresgid", gid, rc)
    }

    fn setresuid(&mut self, uid: u32) -> SysResult<()> {
        // SAFETY: integers only.
        let rc = unsafe { libc::setresuid(uid, uid, uid) };
        check("setresuid", uid, rc)
    }

    fn umask(&mut self, mask: u32) {
        // SAFETY: umask takes an integer and cannot fail.
        unsafe { libc::umask(mask) };
    }

    fn is_dir_handle(&mut self, h: &Handle) -> bool {
        // SAFETY: `h.raw` is an open fd owned by the handle for the duration of the call.
        let fd = unsafe { BorrowedFd::borrow_raw(h.raw) };
        rustix::fs::fstat(fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
    }

    fn reset_signals(&mut self) {
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: SIG_DFL is a valid disposition for every catchable signal; failures
            // (numbers glibc reserves) leave that signal as it was.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        block_all_signals(false);
    }

    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> SysResult<()> {
        for filter in filters {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut().cast(),
            };
            // SAFETY: `prog` points at `filter`, a valid BPF program of `len` instructions
            // (seccompiler's `sock_filter` has libc's layout), alive for the whole call.
            let rc = unsafe {
                libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &raw const prog)
            };
            check("seccomp", "filter", rc as libc::c_int)?;
        }
        Ok(())
    }

    fn drop_bounding_caps(&mut self, keep: &[u32]) -> SysResult<()> {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        for cap in 0..=last {
            if keep.contains(&cap) {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                return Err(SysError::last("prctl(PR_CAPBSET_DROP)", cap));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Process plumbing used by the helper and the parent (not part of the recorded plan).

pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

pub(crate) fn getgid() -> u32 {
    // SAFETY: getgid cannot fail and touches no memory.
    unsafe { libc::getgid() }
}

pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Forks. Only call from a single-threaded process, or do nothing but async-signal-safe
/// calls in the child.
pub(crate) fn fork() -> SysResult<Forked> {
    // SAFETY: callers keep to the rule above (documented at every call site).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(SysError::last("fork", "helper")),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

pub(crate) fn waitpid(pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let rc =
            unsafe { libc::waitpid(pid, &raw mut status, if nohang { libc::WNOHANG } else { 0 }) };
        if rc < 0 {
            let err = SysError::last("waitpid", pid);
            if err.errno == libc::EINTR {
                continue;
            }
            return Err(err);
        }
        if rc == 0 {
            return Ok(None);
        }
        let ws = if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        };
        return Ok(Some((rc, ws)));
    }
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and skips atexit handlers, which is what a forked child
    // of a threaded process needs.
    unsafe { libc::_exit(code) }
}

pub(crate) fn set_pdeathsig() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
}

/// Creates a pipe with both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> SysResult<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check("pipe2", "pipe", rc)?;
    Ok((fds[0], fds[1]))
}

pub(crate) fn close(fd: i32) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

pub(crate) fn dup2(from: i32, to: i32) -> SysResult<()> {
    // SAFETY: integers only.
    let rc = unsafe { libc::dup2(from, to) };
    check("dup2", to, rc)
}

/// Lets `fd` survive `exec` (for the fds a child program is told about).
pub(crate) fn clear_cloexec(fd: i32) {
    // SAFETY: fcntl with integer arguments only.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

/// Reads one byte; `None` at end of file or on error.
pub(crate) fn read_byte(fd: i32) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: `b` is a valid writable buffer of one byte.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return (n == 1).then_some(b[0]);
    }
}

pub(crate) fn set_cloexec(fd: i32) {
    // SAFETY: fcntl with integer arguments only.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

pub(crate) fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: pointer and length describe `data`, alive for the call.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

pub(crate) fn read_to_end(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Takes ownership of a raw fd as a `File` (for buffered reads and writes).
pub(crate) fn file_from_fd(fd: i32) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller passes an fd it owns and never uses again.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// Blocks (`true`) or unblocks (`false`) every signal for the calling thread.
pub(crate) fn block_all_signals(block: bool) {
    // SAFETY: sigset_t is plain old data, initialised by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut set);
        libc::sigprocmask(
            if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK },
            &raw const set,
            std::ptr::null_mut(),
        );
    }
}

fn sigset_of(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for sig in signals {
            libc::sigaddset(&raw mut set, *sig);
        }
        set
    }
}

/// Blocks (`true`) or unblocks (`false`) `signals` for the calling thread.
pub(crate) fn block_signals(signals: &[i32], block: bool) {
    let set = sigset_of(signals);
    // SAFETY: `set` is an initialised sigset_t; the old mask is not asked for.
    unsafe {
        libc::sigprocmask(
            if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK },
            &raw const set,
            std::ptr::null_mut(),
        );
    }
}

/// Waits for one of `signals` (which must be blocked); returns it and whether a process sent
/// it (`kill`), as opposed to the kernel (a terminal's Ctrl-C, which reaches the whole
/// foreground process group anyway).
pub(crate) fn wait_signal_among(signals: &[i32]) -> (i32, bool) {
    let set = sigset_of(signals);
    loop {
        // SAFETY: siginfo_t is plain old data that sigwaitinfo fills; `set` is initialised.
        let (sig, code) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&raw const set, &raw mut info);
            (sig, info.si_code)
        };
        if sig > 0 {
            // SI_USER, SI_QUEUE, SI_TKILL and friends are <= 0; SI_KERNEL and CLD_* are > 0.
            return (sig, code <= 0);
        }
    }
}

/// The name of the user `uid` (through NSS, like `newuidmap` looks it up).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: passwd is plain old data filled by getpwuid_r; `buf` outlives every pointer the
    // result holds, and `name` is read before `buf` goes away.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &raw mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid cannot fail and touches no memory.
    unsafe { libc::getpid() }
}

pub(crate) fn getppid() -> i32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() }
}

/// Waits for any signal (all must be blocked) and returns its number.
pub(crate) fn wait_signal() -> i32 {
    // SAFETY: sigset_t is plain old data, initialised by sigfillset; sigwaitinfo accepts a
    // null info pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut set);
        loop {
            let sig = libc::sigwaitinfo(&raw const set, std::ptr::null_mut());
            if sig > 0 {
                return sig;
            }
        }
    }
}

pub(crate) fn kill(pid: i32, sig: i32) {
    // SAFETY: integers only.
    unsafe { libc::kill(pid, sig) };
}

pub(crate) fn setsid() {
    // SAFETY: no arguments; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
}

/// Marks every fd from 3 up close-on-exec, so the command inherits only stdio.
pub(crate) fn cloexec_from_3() {
    // SAFETY: close_range with integer arguments only.
    let rc =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        // Old kernels: walk /proc/self/fd.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> =
                dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
            for fd in fds.into_iter().filter(|fd| *fd > 2) {
                set_cloexec(fd);
            }
        }
    }
}

/// Replaces the process image; returns only on failure, with the errno.
pub(crate) fn execve(path: &Path, argv: &[String], env: &[(String, String)]) -> i32 {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else { return libc::EINVAL };
    let Ok(c_args) = argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<Vec<_>, _>>()
    else {
        return libc::EINVAL;
    };
    let Ok(c_env) =
        env.iter().map(|(k, v)| CString::new(format!("{k}={v}"))).collect::<Result<Vec<_>, _>>()
    else {
        return libc::EINVAL;
    };
    let mut arg_ptrs: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = c_env.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: all arrays are NULL-terminated and point at CStrings alive for the call.
    unsafe { libc::execve(p.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOEXEC)
}

/// The number of threads of the calling process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Probes in a forked child whether `unshare` of `ns` works here; returns the errno if not.
pub(crate) fn probe_unshare(ns: Namespaces) -> Result<(), i32> {
    let flags = ns.clone_flags();
    // SAFETY: the child only calls the async-signal-safe unshare and _exit, so forking from
    // a threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls only (see above).
        unsafe {
            let rc = libc::unshare(flags);
            libc::_exit(if rc < 0 { *libc::__errno_location() } else { 0 });
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN));
    }
    match waitpid(pid, false) {
        Ok(Some((_, WaitStatus::Exited(0)))) => Ok(()),
        Ok(Some((_, WaitStatus::Exited(errno)))) => Err(errno),
        _ => Err(libc::ECHILD),
    }
}

/// Spawns the helper with `fds` (already close-on-exec) duplicated onto 3, 4, … in the child.
pub(crate) fn spawn_with_fds(
    cmd: &mut std::process::Command,
    fds: Vec<i32>,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls dup2, which is
    // async-signal-safe; the target fds are cleared of FD_CLOEXEC by dup2 itself.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                let to = 3 + i as i32;
                if *fd == to {
                    libc::fcntl(to, libc::F_SETFD, 0);
                } else if libc::dup2(*fd, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    cmd.spawn()
}

// ---------------------------------------------------------------------------------------
// Reading the upper dir.

/// Lists the extended attributes of `path` (not following symlinks), sorted by name.
pub(crate) fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let mut names = vec![0u8; 4096];
    let len = loop {
        // SAFETY: `p` is a valid C string, `names` a writable buffer of the given length.
        let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(err),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name)?;
        if let Some(value) = getxattr_c(&p, &cname)? {
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn getxattr_c(p: &CStr, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings and a writable buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 8, 0),
            Some(libc::ENODATA | libc::ENOTSUP | libc::EPERM) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Sets one extended attribute on `path` (not following symlinks).
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: valid C strings and a readable buffer of the given length.
    let rc =
        unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Creates a device node or fifo.
pub(crate) fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid C string and integers.
    let rc = unsafe { libc::mknod(p.as_ptr(), mode, rdev) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
