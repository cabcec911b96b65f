//! A recording [`Sys`] for unit tests: every call is logged as one line, nothing touches the
//! kernel (its pipes are `/dev/null`, never read), `open_in_root` pretends only the configured
//! paths exist, and forks, waits, signals and reads answer from scripts.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use super::sys::{
    Forked, Handle, MountFlags, Namespaces, SignalSet, Sys, SysError, SysResult, Target, WaitStatus,
};

pub(crate) struct RecordingSys {
    pub(crate) log: String,
    /// Paths (relative to the rootfs) that exist in the image.
    pub(crate) existing: BTreeSet<String>,
    pub(crate) files: Vec<(String, Vec<u8>)>,
    /// What successive `fork`s return (an error once empty).
    pub(crate) forks: VecDeque<Forked>,
    /// What successive `wait_signal`s return: the signal, and whether a process sent it.
    pub(crate) signals: VecDeque<(i32, bool)>,
    /// What successive `waitpid`s return (`None`: no child has ended).
    pub(crate) reaped: VecDeque<Option<(i32, WaitStatus)>>,
    /// What successive `read_to_end`s return (nothing once empty).
    pub(crate) reads: VecDeque<Vec<u8>>,
    next_fd: i32,
    root: String,
}

impl RecordingSys {
    pub(crate) fn new(existing: &[&str], files: &[(&str, &str)]) -> Self {
        RecordingSys {
            log: String::new(),
            existing: existing.iter().map(|s| (*s).to_owned()).collect(),
            files: files.iter().map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec())).collect(),
            forks: VecDeque::new(),
            signals: VecDeque::new(),
            reaped: VecDeque::new(),
            reads: VecDeque::new(),
            next_fd: 10,
            root: String::new(),
        }
    }

    fn rec(&mut self, line: impl AsRef<str>) {
        self.log.push_str(line.as_ref());
        self.log.push('\n');
    }

    fn handle(&mut self, label: &str) -> Handle {
        self.next_fd += 1;
        Handle { raw: self.next_fd, label: label.to_owned() }
    }
}

fn loc(t: Target<'_>) -> String {
    t.to_string()
}

impl Sys for RecordingSys {
    fn unshare(&mut self, ns: Namespaces) -> SysResult<()> {
        self.rec(format!("unshare {ns}"));
        Ok(())
    }
    fn write_file(&mut self, path: &Path, data: &[u8]) -> SysResult<()> {
        self.rec(format!("write {} {:?}", path.display(), String::from_utf8_lossy(data)));
        Ok(())
    }
    fn read_file(&mut self, path: &Path) -> SysResult<Vec<u8>> {
        self.rec(format!("read {}", path.display()));
        let p = path.to_string_lossy();
        self.files
            .iter()
            .find(|(f, _)| *f == p)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| SysError::new("read", p, libc::ENOENT))
    }
    fn mount(
        &mut self,
        source: Option<Target<'_>>,
        target: Target<'_>,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let mut line = format!("mount {} -> {}", source.map_or("-".into(), loc), loc(target));
        let _ = write!(line, " type={} flags={flags}", fstype.unwrap_or("-"));
        if let Some(d) = data {
            let _ = write!(line, " data={d}");
        }
        self.rec(line);
        Ok(())
    }
    fn mount_flags_of(&mut self, _target: Target<'_>) -> SysResult<MountFlags> {
        Ok(MountFlags::NOSUID)
    }
    fn umount_detach(&mut self, path: &Path) -> SysResult<()> {
        self.rec(format!("umount -l {}", path.display()));
        Ok(())
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.rec(format!("pivot_root {} {}", new_root.display(), put_old.display()));
        Ok(())
    }
    fn chdir(&mut self, path: &Path) -> SysResult<()> {
        self.rec(format!("chdir {}", path.display()));
        Ok(())
    }
    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult<bool> {
        self.rec(format!("mkdir {} {mode:o}", path.display()));
        let rel = path.to_string_lossy().trim_start_matches('/').to_owned();
        Ok(self.existing.insert(rel))
    }
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()> {
        self.rec(format!("symlink {} -> {target}", link.display()));
        Ok(())
    }
    fn chown(&mut self, path: &Path, uid: u32, gid: u32) -> SysResult<()> {
        self.rec(format!("chown {} {uid}:{gid}", path.display()));
        Ok(())
    }
    fn chmod(&mut self, path: &Path, mode: u32) -> SysResult<()> {
        self.rec(format!("chmod {} {mode:o}", path.display()));
        Ok(())
    }
    fn open_dir(&mut self, path: &Path) -> SysResult<Handle> {
        let label = path.display().to_string();
        // The first directory opened is the rootfs, which `path_of` reports against.
        if self.root.is_empty() {
            self.root.clone_from(&label);
        }
        Ok(self.handle(&label))
    }
    fn path_of(&mut self, h: &Handle) -> SysResult<std::path::PathBuf> {
        Ok(Path::new(&self.root).join(&h.label))
    }
    fn open_in_root(&mut self, _root: &Handle, rel: &str) -> SysResult<Handle> {
        if rel.is_empty() || self.existing.contains(rel) {
            Ok(self.handle(rel))
        } else {
            Err(SysError::new("openat2", rel, libc::ENOENT))
        }
    }
    fn mkdir_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        let p = join(&parent.label, name);
        self.rec(format!("mkdirat <root>/{p} {mode:o}"));
        self.existing.insert(p);
        Ok(())
    }
    fn create_file_at(&mut self, parent: &Handle, name: &str, mode: u32) -> SysResult<()> {
        let p = join(&parent.label, name);
        self.rec(format!("create <root>/{p} {mode:o}"));
        self.existing.insert(p);
        Ok(())
    }
    fn symlink_at(&mut self, parent: &Handle, name: &str, target: &str) -> SysResult<()> {
        self.rec(format!("symlinkat <root>/{} -> {target}", join(&parent.label, name)));
        Ok(())
    }
    fn sethostname(&mut self, name: &str) -> SysResult<()> {
        self.rec(format!("sethostname {name}"));
        Ok(())
    }
    fn loopback_up(&mut self) -> SysResult<()> {
        self.rec("ifup lo");
        Ok(())
    }
    fn setgroups(&mut self, groups: &[u32]) -> SysResult<()> {
        self.rec(format!("setgroups {groups:?}"));
        Ok(())
    }
    fn setresgid(&mut self, gid: u32) -> SysResult<()> {
        self.rec(format!("setresgid {gid}"));
        Ok(())
    }
    fn setresuid(&mut self, uid: u32) -> SysResult<()> {
        self.rec(format!("setresuid {uid}"));
        Ok(())
    }
    fn umask(&mut self, mask: u32) {
        self.rec(format!("umask {mask:03o}"));
    }
    fn is_dir_handle(&mut self, h: &Handle) -> bool {
        std::path::Path::new(&h.label).extension().is_none_or(|e| e != "txt")
    }
    fn reset_signals(&mut self) {
        self.rec("signals reset to default, mask empty");
    }
    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> SysResult<()> {
        self.rec(format!("seccomp {} filters", filters.len()));
        Ok(())
    }
    fn drop_bounding_caps(&mut self, keep: &[u32]) -> SysResult<()> {
        self.rec(format!("capbset keep {keep:?}"));
        Ok(())
    }

    fn fork(&mut self) -> SysResult<Forked> {
        self.rec("fork");
        self.forks.pop_front().ok_or_else(|| SysError::new("fork", "helper", libc::EAGAIN))
    }
    fn waitpid(&mut self, pid: i32, nohang: bool) -> SysResult<Option<(i32, WaitStatus)>> {
        self.rec(format!("waitpid {pid}{}", if nohang { " nohang" } else { "" }));
        Ok(self.reaped.pop_front().flatten())
    }
    fn kill(&mut self, pid: i32, sig: i32) {
        self.rec(format!("kill {pid} {sig}"));
    }
    fn block_signals(&mut self, signals: SignalSet<'_>, block: bool) {
        self.rec(format!("{} {}", if block { "block" } else { "unblock" }, set_name(signals)));
    }
    fn wait_signal(&mut self, signals: SignalSet<'_>) -> (i32, bool) {
        self.rec(format!("wait signal {}", set_name(signals)));
        self.signals.pop_front().expect("a signal is scripted for every wait")
    }
    fn setsid(&mut self) {
        self.rec("setsid");
    }
    fn die_with_parent(&mut self) {
        self.rec("pdeathsig");
    }
    fn cloexec_from_3(&mut self) {
        self.rec("cloexec from 3");
    }
    fn execve(&mut self, path: &Path, argv: &[String], _env: &[(String, String)]) -> i32 {
        self.rec(format!("execve {} {argv:?}", path.display()));
        libc::ENOENT
    }
    fn exit(&mut self, code: i32) -> ! {
        self.rec(format!("exit {code}"));
        panic!("exit {code}")
    }
    fn pipe(&mut self) -> SysResult<(OwnedFd, OwnedFd)> {
        self.rec("pipe");
        Ok((null_fd(), null_fd()))
    }
    fn dup_onto(&mut self, _fd: &OwnedFd, to: i32) -> SysResult<()> {
        self.rec(format!("dup onto {to}"));
        Ok(())
    }
    fn keep_on_exec(&mut self, _fd: &OwnedFd) {
        self.rec("keep on exec");
    }
    fn close_on_exec(&mut self, _fd: &OwnedFd) {
        self.rec("close on exec");
    }
    fn read_byte(&mut self, _fd: &OwnedFd) -> Option<u8> {
        self.rec("read byte");
        self.reads.pop_front().and_then(|r| r.first().copied())
    }
    fn read_to_end(&mut self, _fd: OwnedFd) -> Vec<u8> {
        self.rec("read to end");
        self.reads.pop_front().unwrap_or_default()
    }
    fn write_all(&mut self, _fd: &OwnedFd, data: &[u8]) {
        self.rec(format!("write {:?}", String::from_utf8_lossy(data)));
    }

    fn xattrs(&mut self, path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
        self.rec(format!("xattrs {}", path.display()));
        Ok(Vec::new())
    }
    fn set_xattr(&mut self, path: &Path, name: &str, _value: &[u8]) -> std::io::Result<()> {
        self.rec(format!("setxattr {} {name}", path.display()));
        Ok(())
    }
    fn mknod(&mut self, path: &Path, mode: u32, rdev: u64) -> std::io::Result<()> {
        self.rec(format!("mknod {} {mode:o} {rdev}", path.display()));
        Ok(())
    }
}

fn null_fd() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null opens"))
}

fn set_name(signals: SignalSet<'_>) -> String {
    match signals {
        SignalSet::All => "all".to_owned(),
        SignalSet::Only(list) => format!("{list:?}"),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") }
}
