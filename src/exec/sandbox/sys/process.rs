//! Process plumbing: forks, waits, signals, pipes and exec. The sandbox's processes reach these
//! through [`Sys`](super::Sys) (see `real.rs`), so a fake can script and record them; the
//! free functions left `pub(crate)` are the read-only identity queries and the two things the
//! threaded `stack` process itself does (probing `unshare` in a throwaway child, spawning the
//! helper), which no sandbox process does.

// `/proc/self` is read with plain `std::fs`; nothing here names a user's path.
#![allow(clippy::disallowed_methods)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

use super::{Forked, Namespaces, SignalSet, SysError, SysResult, WaitStatus};

pub(crate) fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

pub(crate) fn getgid() -> u32 {
    rustix::process::getgid().as_raw()
}

pub(crate) fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

pub(crate) fn getppid() -> i32 {
    // No parent (0) only for the first process of a PID namespace, which this never is.
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
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

/// Takes ownership of an fd this process inherited by protocol (the helper's result and output
/// fds, which its parent placed at 3 and 4 for it alone).
pub(crate) fn inherited_fd(fd: i32) -> OwnedFd {
    // SAFETY: by the helper protocol the fd is open, and nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Forks. Only call from a single-threaded process, or do nothing but async-signal-safe
/// calls in the child.
pub(super) fn fork() -> SysResult<Forked> {
    // SAFETY: callers keep to the rule above (documented at every call site).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(SysError::last("fork", "helper")),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

pub(super) fn waitpid(pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>> {
    let options = if nohang { WaitOptions::NOHANG } else { WaitOptions::empty() };
    loop {
        // -1 waits for any child: rustix's `wait` (its `waitpid(None)` means "any child in
        // this process group", which misses the command: it leads a session of its own).
        let waited = match pid {
            1.. => rustix::process::waitpid(Pid::from_raw(pid), options),
            _ => rustix::process::wait(options),
        };
        match waited {
            Err(Errno::INTR) => {}
            Err(e) => return Err(SysError::new("waitpid", pid, e.raw_os_error())),
            Ok(None) => return Ok(None),
            Ok(Some((pid, status))) => {
                let status = match status.terminating_signal() {
                    Some(sig) => WaitStatus::Signaled(sig),
                    None => WaitStatus::Exited(status.exit_status().unwrap_or(0)),
                };
                return Ok(Some((pid.as_raw_nonzero().get(), status)));
            }
        }
    }
}

pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and skips atexit handlers, which is what a forked child
    // of a threaded process needs.
    unsafe { libc::_exit(code) }
}

pub(super) fn set_pdeathsig() {
    // It cannot fail for a valid signal.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
}

/// Sends `sig` to process `pid`, or to process group `-pid`; a process already gone is fine.
pub(super) fn kill(pid: i32, sig: i32) {
    // SAFETY: `sig` is one of the signals the sandbox forwards, all valid signal numbers.
    let signal = unsafe { Signal::from_raw_unchecked(sig) };
    let _ = match Pid::from_raw(pid.abs()) {
        Some(p) if pid < 0 => rustix::process::kill_process_group(p, signal),
        Some(p) => rustix::process::kill_process(p, signal),
        None => Ok(()),
    };
}

pub(super) fn setsid() {
    // Failure (already a session leader) is harmless.
    let _ = rustix::process::setsid();
}

/// Creates a pipe with both ends close-on-exec: (read, write).
pub(super) fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SysError::new("pipe2", "pipe", e.raw_os_error()))
}

/// Makes `fd` the process's standard input (0), output (1) or error (2).
pub(super) fn dup_onto(fd: &OwnedFd, to: i32) -> SysResult<()> {
    let done = match to {
        0 => rustix::stdio::dup2_stdin(fd),
        1 => rustix::stdio::dup2_stdout(fd),
        _ => rustix::stdio::dup2_stderr(fd),
    };
    done.map_err(|e| SysError::new("dup2", to, e.raw_os_error()))
}

/// Lets `fd` survive `exec` (for the fds a child program is told about).
pub(super) fn keep_on_exec(fd: &OwnedFd) {
    let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
}

/// Closes `fd` when the process execs.
pub(super) fn close_on_exec(fd: &OwnedFd) {
    let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
}

/// Reads one byte; `None` at end of file or on error.
pub(super) fn read_byte(fd: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match rustix::io::read(fd, &mut b) {
            Err(Errno::INTR) => {}
            Ok(n) => return (n == 1).then_some(b[0]),
            Err(_) => return None,
        }
    }
}

pub(super) fn write_all(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Err(Errno::INTR) => {}
            Ok(n) if n > 0 => data = &data[n..],
            _ => return,
        }
    }
}

/// Reads until end of file (or an error), then closes `fd`.
pub(super) fn read_to_end(fd: OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Err(Errno::INTR) => {}
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => {
                drop(fd);
                return out;
            }
        }
    }
}

fn sigset_of(signals: SignalSet<'_>) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset/sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        match signals {
            SignalSet::All => libc::sigfillset(&raw mut set),
            SignalSet::Only(list) => {
                libc::sigemptyset(&raw mut set);
                for sig in list {
                    libc::sigaddset(&raw mut set, *sig);
                }
                0
            }
        };
        set
    }
}

/// Blocks (`true`) or unblocks (`false`) `signals` for the calling thread.
pub(super) fn block_signals(signals: SignalSet<'_>, block: bool) {
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
pub(super) fn wait_signal(signals: SignalSet<'_>) -> (i32, bool) {
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

/// Sets every signal's disposition to the default and empties the signal mask.
pub(super) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; failures
        // (numbers glibc reserves) leave that signal as it was.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    block_signals(SignalSet::All, false);
}

/// Marks every fd from 3 up close-on-exec, so the command inherits only stdio.
pub(super) fn cloexec_from_3() {
    // SAFETY: close_range with integer arguments only; CLOSE_RANGE_CLOEXEC closes nothing now.
    let rc =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        // Old kernels: walk /proc/self/fd.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> =
                dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
            for fd in fds.into_iter().filter(|fd| *fd > 2) {
                // SAFETY: fcntl with integer arguments only, on an fd the listing showed open.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Replaces the process image; returns only on failure, with the errno.
pub(super) fn execve(path: &Path, argv: &[String], env: &[(String, String)]) -> i32 {
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
    fds: &[OwnedFd],
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // The fds stay open in this process until the spawn is done: the caller drops them after.
    let fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
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
