//! The re-executed helper: reads the spec from fd 0, enters the namespaces, forks PID 1 (which
//! builds the root and supervises the command), then diffs the upper dir and writes the
//! result to fd 3. The command's output goes to fd 4.
//!
//! Invariant: the code that calls `unshare` runs in a single-threaded process; when the
//! helper finds itself threaded (the test harness runs it inside a test thread) it forks
//! first, and the fork's parent only waits.

use std::io::Write;
use std::path::PathBuf;

use super::setup::{self, Ids, Plan, SetupError};
use super::sys::{self, Forked, RealSys, SysError, WaitStatus};
use super::{ExitStatusLike, RootMode, SandboxSpec, WireError, WireOutcome};
use super::{copyroot, diff};

pub(crate) const RESULT_FD: i32 = 3;
pub(crate) const OUTPUT_FD: i32 = 4;

/// One line PID 1 sends to the helper.
#[derive(serde::Serialize, serde::Deserialize)]
enum Report {
    Stubs(Vec<String>),
    Failed(WireError),
    Exit(ExitStatusLike),
}

fn report(fd: i32, r: &Report) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    sys::write_all(fd, &line);
}

/// Runs the helper; returns its exit code.
#[allow(
    clippy::disallowed_macros,
    reason = "the helper is a process of its own: its standard error is the step's"
)]
pub(crate) fn main() -> i32 {
    // Die with the caller (its spawning thread, which blocks in `run` until we are done).
    sys::set_pdeathsig();
    sys::set_cloexec(RESULT_FD);
    sys::set_cloexec(OUTPUT_FD);
    if sys::thread_count() > 1 {
        // SAFETY of the fork: the child continues as the helper; it was exec'd moments ago,
        // and the other threads (a test harness's) hold no lock the child needs: glibc resets
        // malloc locks across fork and nothing here touches stdout.
        match sys::fork() {
            Ok(Forked::Parent(pid)) => {
                for fd in [0, RESULT_FD, OUTPUT_FD] {
                    sys::close(fd);
                }
                return match sys::waitpid(pid, false) {
                    Ok(Some((_, WaitStatus::Exited(c)))) => c,
                    _ => 1,
                };
            }
            Ok(Forked::Child) => {}
            Err(e) => {
                eprintln!("stack sandbox helper: {e}");
                return 1;
            }
        }
    }
    sys::set_pdeathsig();
    let spec = serde_json::from_reader::<_, SandboxSpec>(std::io::stdin().lock());
    let outcome = match spec {
        Ok(spec) => {
            if let Ok(null) = fs_err::File::open("/dev/null") {
                use std::os::fd::IntoRawFd;
                let fd = null.into_raw_fd();
                let _ = sys::dup2(fd, 0);
                sys::close(fd);
            }
            run(&spec)
        }
        Err(e) => {
            Err(WireError::Protocol { what: "sandbox spec".to_owned(), message: e.to_string() })
        }
    };
    let mut out = sys::file_from_fd(RESULT_FD);
    let bytes = serde_json::to_vec(&outcome).unwrap_or_default();
    if out.write_all(&bytes).is_err() {
        return 1;
    }
    0
}

fn run(spec: &SandboxSpec) -> Result<WireOutcome, WireError> {
    let plan = Plan {
        spec,
        copy_root: spec.root_mode == RootMode::Copy || !overlay_usable(spec.lower_dirs.len()),
        ids: standing(),
        host_uid: sys::getuid(),
        host_gid: sys::getgid(),
    };
    let mut real = RealSys;
    let slirp = match (spec.network, &spec.slirp4netns) {
        (super::Network::Private, Some(program)) => Some(Slirp::prepare(program, &plan)?),
        (super::Network::Private, None) => {
            return Err(sys_err("slirp4netns", SysError::new("exec", "slirp4netns", libc::ENOENT)));
        }
        _ => None,
    };
    setup::enter_namespaces(&mut real, &plan).map_err(WireError::Setup)?;
    // Held until the helper exits: slirp4netns ends when this pipe closes.
    let _slirp_exit = slirp.map(Slirp::attach).transpose()?;
    // The copy fallback builds its root in the user namespace, so owners map like overlay's.
    let snapshot = if plan.copy_root {
        let root = spec.scratch_dir.join("root");
        Some(copyroot::build_root(&spec.lower_dirs, &root).map_err(WireError::from)?)
    } else {
        None
    };
    let (report_r, report_w) = sys::pipe().map_err(|e| sys_err("pipe", e))?;
    // The helper is single-threaded here (see `main`), so forking is sound.
    let pid1 = match sys::fork().map_err(|e| sys_err("fork", e))? {
        Forked::Child => {
            sys::close(report_r);
            sys::close(RESULT_FD);
            sys::set_pdeathsig();
            pid1(&plan, report_w)
        }
        Forked::Parent(pid) => pid,
    };
    sys::close(report_w);
    sys::close(OUTPUT_FD);
    let reports = sys::read_to_end(report_r);
    sys::close(report_r);
    let waited = sys::waitpid(pid1, false).map_err(|e| sys_err("waitpid", e))?;
    let mut stubs = Vec::new();
    let mut status = None;
    for line in reports.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Report>(line) {
            Ok(Report::Stubs(s)) => stubs = s,
            Ok(Report::Failed(e)) => return Err(e),
            Ok(Report::Exit(s)) => status = Some(s),
            Err(e) => {
                return Err(WireError::Protocol {
                    what: "pid 1 report".into(),
                    message: e.to_string(),
                });
            }
        }
    }
    let Some(status) = status else {
        return Err(WireError::Protocol {
            what: "pid 1 report".into(),
            message: format!("the sandbox's pid 1 ended ({waited:?}) without reporting a status"),
        });
    };
    let tree = if plan.copy_root { spec.scratch_dir.join("root") } else { plan.upper() };
    let changes = diff::diff_upper(&tree, &spec.lower_dirs, &stubs, snapshot.as_ref())
        .map_err(WireError::from)?;
    Ok(WireOutcome { status, changes })
}

impl From<diff::DiffError> for WireError {
    fn from(e: diff::DiffError) -> Self {
        WireError::Diff {
            path: e.path.display().to_string(),
            errno: e.source.raw_os_error().unwrap_or(0),
            message: e.source.to_string(),
        }
    }
}

/// Where this helper stands (see [`Ids`]).
fn standing() -> Ids {
    use crate::privilege::{Privilege, parse_id_map};
    if sys::geteuid() != 0 {
        return Ids::OwnNamespace;
    }
    if Privilege::current() == Privilege::HostRoot {
        return Ids::HostRoot;
    }
    let read = |p: &str| fs_err::read_to_string(p).unwrap_or_default();
    Ids::Mapped {
        uids: parse_id_map(&read("/proc/self/uid_map")),
        gids: parse_id_map(&read("/proc/self/gid_map")),
        setgroups: read("/proc/self/setgroups").trim() == "allow",
    }
}

/// Whether overlay can stack `lowers` dirs here.
fn overlay_usable(lowers: usize) -> bool {
    lowers <= setup::MAX_OVERLAY_LAYERS
        && fs_err::read_to_string("/proc/filesystems")
            .is_ok_and(|f| f.lines().any(|l| l.trim_end().ends_with("\toverlay")))
}

fn sys_err(step: &str, error: SysError) -> WireError {
    WireError::Setup(SetupError::Sys { step: step.to_owned(), error })
}

/// `slirp4netns`, forked before the helper enters its namespaces so that it stays in the
/// caller's network namespace (the one that reaches the world), started once the step's
/// network namespace exists, and stopped by the closing of a pipe the helper holds.
struct Slirp {
    /// Writing to it tells the waiting child to exec slirp4netns.
    go: i32,
    /// slirp4netns writes a byte here once the namespace's interface is configured.
    ready: i32,
    /// slirp4netns exits when this closes (the helper holds it until it exits).
    exit: i32,
    /// slirp4netns's messages, read when it fails.
    messages: i32,
}

impl Slirp {
    /// Forks the child that will become slirp4netns; it waits for [`Slirp::attach`].
    fn prepare(program: &std::path::Path, plan: &Plan<'_>) -> Result<Slirp, WireError> {
        let (go_r, go_w) = sys::pipe().map_err(|e| sys_err("pipe", e))?;
        let (ready_r, ready_w) = sys::pipe().map_err(|e| sys_err("pipe", e))?;
        let (exit_r, exit_w) = sys::pipe().map_err(|e| sys_err("pipe", e))?;
        let (msg_r, msg_w) = sys::pipe().map_err(|e| sys_err("pipe", e))?;
        let helper = sys::getpid();
        // The helper is single-threaded here (see `main`), so forking is sound.
        match sys::fork().map_err(|e| sys_err("fork", e))? {
            Forked::Child => {
                for fd in [go_w, ready_r, exit_w, msg_r, RESULT_FD, OUTPUT_FD] {
                    sys::close(fd);
                }
                let _ = sys::dup2(msg_w, 1);
                let _ = sys::dup2(msg_w, 2);
                if sys::read_byte(go_r).is_none() {
                    sys::exit_now(1);
                }
                sys::clear_cloexec(ready_w);
                sys::clear_cloexec(exit_r);
                let mut argv = vec![
                    "slirp4netns".to_owned(),
                    "--configure".to_owned(),
                    "--mtu=65520".to_owned(),
                    "--disable-host-loopback".to_owned(),
                    format!("--ready-fd={ready_w}"),
                    format!("--exit-fd={exit_r}"),
                    "--netns-type=path".to_owned(),
                ];
                if plan.ids == Ids::OwnNamespace {
                    argv.push(format!("--userns-path=/proc/{helper}/ns/user"));
                }
                argv.push(format!("/proc/{helper}/ns/net"));
                argv.push("tap0".to_owned());
                let env = [("PATH".to_owned(), "/usr/sbin:/usr/bin:/sbin:/bin".to_owned())];
                sys::execve(program, &argv, &env);
                sys::exit_now(127)
            }
            Forked::Parent(_) => {}
        }
        for fd in [go_r, ready_w, exit_r, msg_w] {
            sys::close(fd);
        }
        Ok(Slirp { go: go_w, ready: ready_r, exit: exit_w, messages: msg_r })
    }

    /// Starts slirp4netns on the helper's (new) network namespace and waits until it is
    /// configured. Returns the fds to hold until the helper exits (closing the first stops it).
    fn attach(self) -> Result<(i32, i32), WireError> {
        sys::write_all(self.go, b"1");
        sys::close(self.go);
        let ready = sys::read_byte(self.ready);
        sys::close(self.ready);
        if ready.is_none() {
            sys::close(self.exit);
            let text = sys::read_to_end(self.messages);
            let message = String::from_utf8_lossy(&text).trim().replace('\n', "; ");
            return Err(WireError::Network { message });
        }
        // The messages pipe stays open with the helper (closing it would kill slirp4netns
        // with SIGPIPE at its next message); slirp4netns writes little once it runs.
        Ok((self.exit, self.messages))
    }
}

/// PID 1 of the sandbox: builds the root, starts the command, forwards signals, reaps.
fn pid1(plan: &Plan<'_>, report_w: i32) -> ! {
    let mut real = RealSys;
    let fail = |e: WireError| -> ! {
        report(report_w, &Report::Failed(e));
        sys::exit_now(1)
    };
    match setup::setup_rootfs(&mut real, plan) {
        Ok(stubs) => report(report_w, &Report::Stubs(stubs)),
        Err(e) => fail(WireError::Setup(e)),
    }
    let user =
        setup::prepare_command(&mut real, plan).unwrap_or_else(|e| fail(WireError::Setup(e)));
    sys::block_all_signals(true);
    let (err_r, err_w) = sys::pipe().unwrap_or_else(|e| fail(sys_err("pipe", e)));
    // As root without a host registration, the step's process gets a user namespace of its own
    // for the emulator: it says when it is in it, and PID 1 (still host root) maps it.
    let own_userns = plan.spec.emulator.as_ref().filter(|_| !plan.userns());
    let sync = own_userns.map(|_| {
        let ready = sys::pipe().unwrap_or_else(|e| fail(sys_err("pipe", e)));
        let mapped = sys::pipe().unwrap_or_else(|e| fail(sys_err("pipe", e)));
        (ready, mapped)
    });
    let child = match sys::fork() {
        Err(e) => fail(sys_err("fork", e)),
        Ok(Forked::Child) => {
            sys::close(err_r);
            sys::close(report_w);
            sys::block_all_signals(false);
            sys::setsid();
            let _ = sys::dup2(OUTPUT_FD, 1);
            let _ = sys::dup2(OUTPUT_FD, 2);
            let registered = match (own_userns, sync) {
                (Some(line), Some(((ready_r, ready_w), (mapped_r, mapped_w)))) => {
                    sys::close(ready_r);
                    sys::close(mapped_w);
                    enter_own_userns(&mut real, line, ready_w, mapped_r)
                }
                _ => Ok(()),
            };
            let e = if let Err(e) =
                registered.and_then(|()| setup::drop_privileges(&mut real, plan, &user))
            {
                WireError::Setup(e)
            } else {
                sys::cloexec_from_3();
                let mut env = plan.spec.env.clone();
                if !env.iter().any(|(k, _)| k == "HOME") {
                    env.push(("HOME".to_owned(), user.home.clone()));
                }
                exec(&plan.spec.argv, &env)
            };
            sys::write_all(err_w, &serde_json::to_vec(&e).unwrap_or_default());
            sys::exit_now(127)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    if let Some(((ready_r, ready_w), (mapped_r, mapped_w))) = sync {
        sys::close(ready_w);
        sys::close(mapped_r);
        map_identity(&mut real, child, ready_r);
        sys::close(mapped_w);
    }
    sys::close(err_w);
    sys::close(OUTPUT_FD);
    let start = sys::read_to_end(err_r);
    if !start.is_empty() {
        let _ = sys::waitpid(child, false);
        match serde_json::from_slice::<WireError>(&start) {
            Ok(e) => fail(e),
            Err(e) => {
                fail(WireError::Protocol { what: "exec report".into(), message: e.to_string() })
            }
        }
    }
    loop {
        let sig = sys::wait_signal();
        if sig == libc::SIGCHLD {
            while let Ok(Some((pid, status))) = sys::waitpid(-1, true) {
                if pid == child {
                    let (st, code) = match status {
                        WaitStatus::Exited(c) => (ExitStatusLike::Exited(c), c),
                        WaitStatus::Signaled(s) => (ExitStatusLike::Signaled(s), 128 + s),
                    };
                    report(report_w, &Report::Exit(st));
                    sys::exit_now(code);
                }
            }
        } else if sys::FORWARDED_SIGNALS.contains(&sig) {
            sys::kill(-child, sig);
        }
    }
}

/// In the step's process of a root sandbox: a user and a mount namespace of its own, mapped by
/// PID 1 (`map_identity`, told through `ready_w`, done when `mapped_r` closes), then the
/// emulator registered in that namespace's `binfmt_misc`.
fn enter_own_userns(
    real: &mut RealSys,
    line: &str,
    ready_w: i32,
    mapped_r: i32,
) -> Result<(), setup::SetupError> {
    use super::sys::{Namespaces, Sys};
    let entered = real.unshare(Namespaces { user: true, mount: true, ..Namespaces::default() });
    sys::close(ready_w);
    entered.map_err(|error| setup::SetupError::Sys {
        step: "user namespace for the emulator".into(),
        error,
    })?;
    let _ = sys::read_to_end(mapped_r);
    sys::close(mapped_r);
    setup::register_in_own_userns(real, line)
}

/// In PID 1 (host root): once the step's process is in its own user namespace (it closes
/// `ready_r`'s other end), maps every id to itself there, so files keep their owners.
fn map_identity(real: &mut RealSys, child: i32, ready_r: i32) {
    use super::sys::Sys;
    let _ = sys::read_to_end(ready_r);
    sys::close(ready_r);
    // A child that failed before says so itself; these writes then fail harmlessly.
    for map in ["uid_map", "gid_map"] {
        let path = std::path::PathBuf::from(format!("/proc/{child}/{map}"));
        let _ = real.write_file(&path, b"0 0 4294967295\n");
    }
}

/// Executes the command, searching `PATH` from the spec's env; returns the failure.
fn exec(argv: &[String], env: &[(String, String)]) -> WireError {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let fail = |errno| WireError::Exec { argv0: argv0.clone(), errno };
    if argv0.is_empty() {
        return fail(libc::ENOENT);
    }
    if argv0.contains('/') {
        return fail(sys::execve(&PathBuf::from(&argv0), argv, env));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", |(_, v)| v);
    let mut errno = libc::ENOENT;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        match sys::execve(&PathBuf::from(dir).join(&argv0), argv, env) {
            libc::ENOENT | libc::ENOTDIR => {}
            e => errno = e,
        }
    }
    fail(errno)
}
