//! [`Sys`] on the real kernel.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{
    Forked, Handle, MountFlags, Namespaces, SignalSet, Sys, SysError, SysResult, Target,
    WaitStatus, check, cstr, fd_path, files, process, safe, target_path,
};

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
        use rustix::fs::{OFlags, ResolveFlags};
        let path = if rel.is_empty() { "." } else { rel };
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        // A path through `..` fails with EAGAIN when any mount or rename happens anywhere on
        // the system during the lookup (other steps mount all the time): retry, as openat2(2)
        // asks. The bound only guards against a livelock.
        let mut attempts = 0;
        let fd = loop {
            match rustix::fs::openat2(root.fd(), path, flags, rustix::fs::Mode::empty(), resolve) {
                Err(rustix::io::Errno::AGAIN) if attempts < 1000 => attempts += 1,
                other => break safe("openat2", rel, other)?,
            }
        };
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        Ok(Handle { raw, label: rel.to_owned() })
    }

    fn mkdir_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        let r = rustix::fs::mkdirat(parent.fd(), name, rustix::fs::Mode::from_raw_mode(mode));
        safe("mkdirat", format!("{}/{name}", parent.label), r)
    }

    fn create_file_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        use rustix::fs::OFlags;
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let r = rustix::fs::openat(parent.fd(), name, flags, rustix::fs::Mode::from_raw_mode(mode));
        // Dropping the descriptor closes it.
        safe("openat", format!("{}/{name}", parent.label), r).map(drop)
    }

    fn symlink_at(&mut self, parent: &Handle, name: &str, target: &str) -> SysResult<()> {
        let r = rustix::fs::symlinkat(target, parent.fd(), name);
        safe("symlinkat", format!("{}/{name}", parent.label), r)
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

    // The ids are set per thread (the raw system calls, not glibc's process-wide wrappers):
    // they are set in the step's process just before `exec`, which has one thread.
    fn setgroups(&mut self, groups: &[u32]) -> SysResult<()> {
        let gids: Vec<rustix::fs::Gid> =
            groups.iter().map(|g| rustix::fs::Gid::from_raw(*g)).collect();
        safe("setgroups", format!("{groups:?}"), rustix::thread::set_thread_groups(&gids))
    }

    fn setresgid(&mut self, gid: u32) -> SysResult<()> {
        let g = rustix::fs::Gid::from_raw(gid);
        safe("setresgid", gid, rustix::thread::set_thread_res_gid(g, g, g))
    }

    fn setresuid(&mut self, uid: u32) -> SysResult<()> {
        let u = rustix::fs::Uid::from_raw(uid);
        safe("setresuid", uid, rustix::thread::set_thread_res_uid(u, u, u))
    }

    fn umask(&mut self, mask: u32) {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    }

    fn is_dir_handle(&mut self, h: &Handle) -> bool {
        rustix::fs::fstat(h.fd()).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
    }

    fn reset_signals(&mut self) {
        process::reset_signals();
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
            // Capabilities this kernel does not know (EINVAL) are not there to drop.
            let capability = rustix::thread::CapabilitySet::from_bits_retain(1 << cap);
            match rustix::thread::remove_capability_from_bounding_set(capability) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => {
                    return Err(SysError::new("prctl(PR_CAPBSET_DROP)", cap, e.raw_os_error()));
                }
            }
        }
        Ok(())
    }

    fn fork(&mut self) -> SysResult<Forked> {
        process::fork()
    }
    fn waitpid(&mut self, pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>> {
        process::waitpid(pid, nohang)
    }
    fn kill(&mut self, pid: i32, sig: i32) {
        process::kill(pid, sig);
    }
    fn block_signals(&mut self, signals: SignalSet<'_>, block: bool) {
        process::block_signals(signals, block);
    }
    fn wait_signal(&mut self, signals: SignalSet<'_>) -> (i32, bool) {
        process::wait_signal(signals)
    }
    fn setsid(&mut self) {
        process::setsid();
    }
    fn die_with_parent(&mut self) {
        process::set_pdeathsig();
    }
    fn cloexec_from_3(&mut self) {
        process::cloexec_from_3();
    }
    fn execve(&mut self, path: &Path, argv: &[String], env: &[(String, String)]) -> i32 {
        process::execve(path, argv, env)
    }
    fn exit(&mut self, code: i32) -> ! {
        process::exit_now(code)
    }
    fn pipe(&mut self) -> SysResult<(OwnedFd, OwnedFd)> {
        process::pipe()
    }
    fn dup_onto(&mut self, fd: &OwnedFd, to: i32) -> SysResult<()> {
        process::dup_onto(fd, to)
    }
    fn keep_on_exec(&mut self, fd: &OwnedFd) {
        process::keep_on_exec(fd);
    }
    fn close_on_exec(&mut self, fd: &OwnedFd) {
        process::close_on_exec(fd);
    }
    fn read_byte(&mut self, fd: &OwnedFd) -> Option<u8> {
        process::read_byte(fd)
    }
    fn read_to_end(&mut self, fd: OwnedFd) -> Vec<u8> {
        process::read_to_end(fd)
    }
    fn write_all(&mut self, fd: &OwnedFd, data: &[u8]) {
        process::write_all(fd, data);
    }

    fn xattrs(&mut self, path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
        files::xattrs(path)
    }
    fn set_xattr(&mut self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        files::set_xattr(path, name, value)
    }
    fn mknod(&mut self, path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
        files::mknod(path, mode, rdev)
    }
}
