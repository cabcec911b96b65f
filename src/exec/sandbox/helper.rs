//! The re-executed helper: reads the spec from fd 0, enters the namespaces, forks PID 1 (which
//! builds the root and supervises the command), then diffs the upper dir and writes the
//! result to fd 3. The command's output goes to fd 4.
//!
//! Invariant: the code that calls `unshare` runs in a single-threaded process; when the
//! helper finds itself threaded (the test harness runs it inside a test thread) it forks
//! first, and the fork's parent only waits.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::setup::{self, Ids, Plan, SetupError};
use super::sys::{self, Forked, Namespaces, RealSys, SignalSet, Sys, SysError, WaitStatus};
use super::user::ResolvedUser;
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

fn report(sys: &mut dyn Sys, fd: &OwnedFd, r: &Report) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    sys.write_all(fd, &line);
}

/// The fds the helper inherits: it writes its outcome to `result`, and the command's output
/// goes to `output`. Each process of the sandbox drops the ones it must not hold.
struct Inherited {
    result: Option<OwnedFd>,
    output: Option<OwnedFd>,
}

/// Runs the helper; returns its exit code.
#[allow(
    clippy::disallowed_macros,
    reason = "the helper is a process of its own: its standard error is the step's"
)]
pub(crate) fn main() -> i32 {
    let sys: &mut dyn Sys = &mut RealSys;
    // Die with the caller (its spawning thread, which blocks in `run` until we are done).
    sys.die_with_parent();
    let mut fds = Inherited {
        result: Some(sys::inherited_fd(RESULT_FD)),
        output: Some(sys::inherited_fd(OUTPUT_FD)),
    };
    for fd in fds.result.iter().chain(&fds.output) {
        sys.close_on_exec(fd);
    }
    if sys::thread_count() > 1 {
        // SAFETY of the fork: the child continues as the helper; it was exec'd moments ago,
        // and the other threads (a test harness's) hold no lock the child needs: glibc resets
        // malloc locks across fork and nothing here touches stdout.
        match sys.fork() {
            Ok(Forked::Parent(pid)) => {
                drop(fds);
                return match sys.waitpid(pid, false) {
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
    sys.die_with_parent();
    let spec = serde_json::from_reader::<_, SandboxSpec>(std::io::stdin().lock());
    let outcome = match spec {
        Ok(spec) => {
            // The command reads nothing: its standard input is /dev/null, not the spec pipe.
            if let Ok(null) = fs_err::File::open("/dev/null") {
                let _ = sys.dup_onto(&OwnedFd::from(null.into_parts().0), 0);
            }
            run(sys, &spec, &mut fds)
        }
        Err(e) => {
            Err(WireError::Protocol { what: "sandbox spec".to_owned(), message: e.to_string() })
        }
    };
    let Some(result) = fds.result.take() else { return 1 };
    let bytes = serde_json::to_vec(&outcome).unwrap_or_default();
    if std::fs::File::from(result).write_all(&bytes).is_err() {
        return 1;
    }
    0
}

fn run(
    sys: &mut dyn Sys,
    spec: &SandboxSpec,
    fds: &mut Inherited,
) -> Result<WireOutcome, WireError> {
    let plan = Plan {
        spec,
        copy_root: spec.root_mode == RootMode::Copy || !overlay_usable(spec.lower_dirs.len()),
        ids: standing(),
        host_uid: sys::getuid(),
        host_gid: sys::getgid(),
    };
    let slirp = match (spec.network, &spec.slirp4netns) {
        (super::Network::Private, Some(program)) => Some(Slirp::prepare(sys, program, &plan, fds)?),
        (super::Network::Private, None) => {
            return Err(sys_err("slirp4netns", SysError::new("exec", "slirp4netns", libc::ENOENT)));
        }
        _ => None,
    };
    setup::enter_namespaces(sys, &plan).map_err(WireError::Setup)?;
    // Held until the helper exits: slirp4netns ends when this pipe closes.
    let _slirp_exit = slirp.map(|s| s.attach(sys)).transpose()?;
    // The copy fallback builds its root in the user namespace, so owners map like overlay's.
    let snapshot = if plan.copy_root {
        let root = spec.scratch_dir.join("root");
        Some(copyroot::build_root(sys, &spec.lower_dirs, &root).map_err(WireError::from)?)
    } else {
        None
    };
    let (stubs, status) = run_pid1(sys, &plan, fds)?;
    let tree = if plan.copy_root { spec.scratch_dir.join("root") } else { plan.upper() };
    let changes = diff::diff_upper(sys, &tree, &spec.lower_dirs, &stubs, snapshot.as_ref())
        .map_err(WireError::from)?;
    Ok(WireOutcome { status, changes })
}

/// Forks PID 1 and reads what it reports: the stubs it made and the command's status.
fn run_pid1(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    fds: &mut Inherited,
) -> Result<(Vec<String>, ExitStatusLike), WireError> {
    let (report_r, report_w) = sys.pipe().map_err(|e| sys_err("pipe", e))?;
    // The helper is single-threaded here (see `main`), so forking is sound.
    let pid1 = match sys.fork().map_err(|e| sys_err("fork", e))? {
        Forked::Child => {
            drop(report_r);
            drop(fds.result.take());
            sys.die_with_parent();
            let output = fds.output.take();
            pid1(sys, plan, &report_w, output)
        }
        Forked::Parent(pid) => pid,
    };
    drop(report_w);
    drop(fds.output.take());
    let reports = sys.read_to_end(report_r);
    let waited = sys.waitpid(pid1, false).map_err(|e| sys_err("waitpid", e))?;
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
    Ok((stubs, status))
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
    go: OwnedFd,
    /// slirp4netns writes a byte here once the namespace's interface is configured.
    ready: OwnedFd,
    /// slirp4netns exits when this closes (the helper holds it until it exits).
    exit: OwnedFd,
    /// slirp4netns's messages, read when it fails.
    messages: OwnedFd,
}

impl Slirp {
    /// Forks the child that will become slirp4netns; it waits for [`Slirp::attach`].
    fn prepare(
        sys: &mut dyn Sys,
        program: &Path,
        plan: &Plan<'_>,
        fds: &mut Inherited,
    ) -> Result<Slirp, WireError> {
        let mut pipe = || sys.pipe().map_err(|e| sys_err("pipe", e));
        let ((go_r, go_w), (ready_r, ready_w)) = (pipe()?, pipe()?);
        let ((exit_r, exit_w), (msg_r, msg_w)) = (pipe()?, pipe()?);
        let helper = sys::getpid();
        // The helper is single-threaded here (see `main`), so forking is sound.
        match sys.fork().map_err(|e| sys_err("fork", e))? {
            Forked::Child => {
                drop((go_w, ready_r, exit_w, msg_r, fds.result.take(), fds.output.take()));
                let _ = sys.dup_onto(&msg_w, 1);
                let _ = sys.dup_onto(&msg_w, 2);
                if sys.read_byte(&go_r).is_none() {
                    sys.exit(1);
                }
                sys.keep_on_exec(&ready_w);
                sys.keep_on_exec(&exit_r);
                let argv = slirp_argv(plan, helper, &ready_w, &exit_r);
                let env = [("PATH".to_owned(), "/usr/sbin:/usr/bin:/sbin:/bin".to_owned())];
                sys.execve(program, &argv, &env);
                sys.exit(127)
            }
            Forked::Parent(_) => {}
        }
        Ok(Slirp { go: go_w, ready: ready_r, exit: exit_w, messages: msg_r })
    }

    /// Starts slirp4netns on the helper's (new) network namespace and waits until it is
    /// configured. Returns the fds to hold until the helper exits (closing the first stops it).
    fn attach(self, sys: &mut dyn Sys) -> Result<(OwnedFd, OwnedFd), WireError> {
        sys.write_all(&self.go, b"1");
        drop(self.go);
        let ready = sys.read_byte(&self.ready);
        drop(self.ready);
        if ready.is_none() {
            drop(self.exit);
            let text = sys.read_to_end(self.messages);
            let message = String::from_utf8_lossy(&text).trim().replace('\n', "; ");
            return Err(WireError::Network { message });
        }
        // The messages pipe stays open with the helper (closing it would kill slirp4netns
        // with SIGPIPE at its next message); slirp4netns writes little once it runs.
        Ok((self.exit, self.messages))
    }
}

/// slirp4netns's command line: configure the step's network namespace (the helper's) as tap0.
fn slirp_argv(plan: &Plan<'_>, helper: i32, ready_w: &OwnedFd, exit_r: &OwnedFd) -> Vec<String> {
    let mut argv = vec![
        "slirp4netns".to_owned(),
        "--configure".to_owned(),
        "--mtu=65520".to_owned(),
        "--disable-host-loopback".to_owned(),
        format!("--ready-fd={}", ready_w.as_raw_fd()),
        format!("--exit-fd={}", exit_r.as_raw_fd()),
        "--netns-type=path".to_owned(),
    ];
    if plan.ids == Ids::OwnNamespace {
        argv.push(format!("--userns-path=/proc/{helper}/ns/user"));
    }
    argv.push(format!("/proc/{helper}/ns/net"));
    argv.push("tap0".to_owned());
    argv
}

/// PID 1 of the sandbox: builds the root, starts the command, forwards signals, reaps.
fn pid1(sys: &mut dyn Sys, plan: &Plan<'_>, report_w: &OwnedFd, output: Option<OwnedFd>) -> ! {
    let fail = |sys: &mut dyn Sys, e: WireError| -> ! {
        report(sys, report_w, &Report::Failed(e));
        sys.exit(1)
    };
    match setup::setup_rootfs(sys, plan) {
        Ok(stubs) => report(sys, report_w, &Report::Stubs(stubs)),
        Err(e) => fail(sys, WireError::Setup(e)),
    }
    let user = match setup::prepare_command(sys, plan) {
        Ok(user) => user,
        Err(e) => fail(sys, WireError::Setup(e)),
    };
    sys.block_signals(SignalSet::All, true);
    let child = match start_command(sys, plan, &user, output) {
        Ok(child) => child,
        Err(e) => fail(sys, e),
    };
    let status = supervise(sys, child);
    report(sys, report_w, &Report::Exit(status));
    sys.exit(match status {
        ExitStatusLike::Exited(c) => c,
        ExitStatusLike::Signaled(s) => 128 + s,
    })
}

/// Forks the step's process, which drops its privileges and execs the command; returns its
/// pid once it runs the command, or why it could not.
fn start_command(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    user: &ResolvedUser,
    output: Option<OwnedFd>,
) -> Result<i32, WireError> {
    let (err_r, err_w) = sys.pipe().map_err(|e| sys_err("pipe", e))?;
    // As root without a host registration, the step's process gets a user namespace of its own
    // for the emulator: it says when it is in it, and PID 1 (still host root) maps it.
    let own_userns = plan.spec.emulator.as_ref().filter(|_| !plan.userns());
    let sync = match own_userns {
        Some(_) => Some(UsernsSync::new(sys)?),
        None => None,
    };
    let child = match sys.fork().map_err(|e| sys_err("fork", e))? {
        Forked::Child => {
            drop(err_r);
            let e = exec_command(sys, plan, user, output, own_userns.zip(sync));
            sys.write_all(&err_w, &serde_json::to_vec(&e).unwrap_or_default());
            sys.exit(127)
        }
        Forked::Parent(pid) => pid,
    };
    if let Some(sync) = sync {
        map_identity(sys, child, sync);
    }
    drop(err_w);
    drop(output);
    // The pipe closes at exec (close-on-exec) without a word, or carries why exec failed.
    let start = sys.read_to_end(err_r);
    if start.is_empty() {
        return Ok(child);
    }
    let _ = sys.waitpid(child, false);
    Err(serde_json::from_slice::<WireError>(&start).unwrap_or_else(|e| WireError::Protocol {
        what: "exec report".into(),
        message: e.to_string(),
    }))
}

/// In the step's process: a session of its own with the output as stdout and stderr, the
/// emulator's user namespace if it needs one, privileges dropped, then the command. Returns
/// only on failure, with why.
fn exec_command(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    user: &ResolvedUser,
    output: Option<OwnedFd>,
    own_userns: Option<(&String, UsernsSync)>,
) -> WireError {
    sys.block_signals(SignalSet::All, false);
    sys.setsid();
    if let Some(out) = output {
        let _ = sys.dup_onto(&out, 1);
        let _ = sys.dup_onto(&out, 2);
    }
    let registered = match own_userns {
        Some((line, sync)) => enter_own_userns(sys, line, sync),
        None => Ok(()),
    };
    if let Err(e) = registered.and_then(|()| setup::drop_privileges(sys, plan, user)) {
        return WireError::Setup(e);
    }
    sys.cloexec_from_3();
    let mut env = plan.spec.env.clone();
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_owned(), user.home.clone()));
    }
    exec(sys, &plan.spec.argv, &env)
}

/// PID 1's remaining life: forward the signals it is sent to the command's process group,
/// reap every orphan the namespace hands it, and return once the command itself ends.
fn supervise(sys: &mut dyn Sys, child: i32) -> ExitStatusLike {
    loop {
        let (sig, _) = sys.wait_signal(SignalSet::All);
        if sig == libc::SIGCHLD {
            while let Ok(Some((pid, status))) = sys.waitpid(-1, true) {
                if pid == child {
                    return match status {
                        WaitStatus::Exited(c) => ExitStatusLike::Exited(c),
                        WaitStatus::Signaled(s) => ExitStatusLike::Signaled(s),
                    };
                }
            }
        } else if sys::FORWARDED_SIGNALS.contains(&sig) {
            sys.kill(-child, sig);
        }
    }
}

/// The two pipes of a step's process entering a user namespace of its own: it closes `ready`
/// once in it; PID 1 closes `mapped` once it has written the namespace's id maps.
struct UsernsSync {
    ready: (OwnedFd, OwnedFd),
    mapped: (OwnedFd, OwnedFd),
}

impl UsernsSync {
    fn new(sys: &mut dyn Sys) -> Result<Self, WireError> {
        let ready = sys.pipe().map_err(|e| sys_err("pipe", e))?;
        let mapped = sys.pipe().map_err(|e| sys_err("pipe", e))?;
        Ok(UsernsSync { ready, mapped })
    }
}

/// In the step's process of a root sandbox: a user and a mount namespace of its own, mapped by
/// PID 1 ([`map_identity`]), then the emulator registered in that namespace's `binfmt_misc`.
fn enter_own_userns(
    sys: &mut dyn Sys,
    line: &str,
    sync: UsernsSync,
) -> Result<(), setup::SetupError> {
    let UsernsSync { ready: (ready_r, ready_w), mapped: (mapped_r, mapped_w) } = sync;
    drop((ready_r, mapped_w));
    let entered = sys.unshare(Namespaces { user: true, mount: true, ..Namespaces::default() });
    drop(ready_w);
    entered.map_err(|error| setup::SetupError::Sys {
        step: "user namespace for the emulator".into(),
        error,
    })?;
    let _ = sys.read_to_end(mapped_r);
    setup::register_in_own_userns(sys, line)
}

/// In PID 1 (host root): once the step's process is in its own user namespace (it closes
/// the ready pipe), maps every id to itself there, so files keep their owners.
fn map_identity(sys: &mut dyn Sys, child: i32, sync: UsernsSync) {
    let UsernsSync { ready: (ready_r, ready_w), mapped: (mapped_r, mapped_w) } = sync;
    drop((ready_w, mapped_r));
    let _ = sys.read_to_end(ready_r);
    // A child that failed before says so itself; these writes then fail harmlessly.
    for map in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{child}/{map}"));
        let _ = sys.write_file(&path, b"0 0 4294967295\n");
    }
    drop(mapped_w);
}

/// Executes the command, searching `PATH` from the spec's env; returns the failure.
fn exec(sys: &mut dyn Sys, argv: &[String], env: &[(String, String)]) -> WireError {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let fail = |errno| WireError::Exec { argv0: argv0.clone(), errno };
    if argv0.is_empty() {
        return fail(libc::ENOENT);
    }
    if argv0.contains('/') {
        return fail(sys.execve(&PathBuf::from(&argv0), argv, env));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", |(_, v)| v);
    let mut errno = libc::ENOENT;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        match sys.execve(&PathBuf::from(dir).join(&argv0), argv, env) {
            libc::ENOENT | libc::ENOTDIR => {}
            e => errno = e,
        }
    }
    fail(errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sandbox::fake::RecordingSys;

    #[test]
    fn pid1_forwards_signals_to_the_command_and_reaps_orphans_until_it_ends() {
        let mut sys = RecordingSys::new(&[], &[]);
        sys.signals = [
            (libc::SIGTERM, true),
            (libc::SIGCHLD, false),
            (libc::SIGUSR1, true),
            (libc::SIGCHLD, false),
        ]
        .into();
        // An orphan the PID namespace handed to PID 1 ends first, then the command.
        sys.reaped =
            [Some((77, WaitStatus::Exited(0))), None, Some((42, WaitStatus::Signaled(15)))].into();
        assert_eq!(supervise(&mut sys, 42), ExitStatusLike::Signaled(15));
        assert_eq!(
            sys.log,
            "wait signal all\nkill -42 15\nwait signal all\nwaitpid -1 nohang\nwaitpid -1 nohang\n\
             wait signal all\nwait signal all\nwaitpid -1 nohang\n",
            "SIGTERM goes to the command's process group, SIGUSR1 is not forwarded"
        );
    }

    #[test]
    fn a_command_that_cannot_start_is_reported_with_its_errno() {
        let mut sys = RecordingSys::new(&[], &[]);
        sys.forks = [Forked::Parent(42)].into();
        let why = WireError::Exec { argv0: "nope".into(), errno: libc::ENOENT };
        sys.reads = [serde_json::to_vec(&why).unwrap()].into();
        sys.reaped = [Some((42, WaitStatus::Exited(127)))].into();
        let spec = crate::exec::sandbox::tests::sample_spec();
        let plan =
            Plan { spec: &spec, copy_root: false, ids: Ids::HostRoot, host_uid: 0, host_gid: 0 };
        let user = ResolvedUser { uid: 0, gid: 0, groups: Vec::new(), home: "/root".into() };
        let err = start_command(&mut sys, &plan, &user, None).unwrap_err();
        assert!(matches!(err, WireError::Exec { errno: libc::ENOENT, .. }), "{err:?}");
        assert_eq!(sys.log, "pipe\nfork\nread to end\nwaitpid 42\n");
        sys.forks = [Forked::Parent(43)].into();
        sys.log.clear();
        // A pipe closed by exec without a word: the command runs.
        assert_eq!(start_command(&mut sys, &plan, &user, None).unwrap(), 43);
    }
}
