//! Rootless builds with subordinate ids. An unprivileged `stack` whose user has ranges in
//! `/etc/subuid` and `/etc/subgid`, with the setuid helpers `newuidmap` and `newgidmap` at
//! hand, runs its command as root of a user namespace that maps 0 to the caller and 1, 2, …
//! to those ranges, as rootless podman and buildah do. Extraction then keeps the owners
//! layers record, steps may run as any mapped user (`user "app"`), and what those users write
//! (upper dirs, cache mounts) can be read and removed by the next `stack` command, which runs
//! in such a namespace too.
//!
//! How: the process forks. The child unshares a user namespace and waits; the parent writes
//! the maps with `newuidmap`/`newgidmap` (only a process outside the namespace can), lets the
//! child go on with the command, and from then on only forwards signals sent to it and exits
//! with the child's status. Without ranges, helpers or user namespaces nothing happens: the
//! sandbox helper then maps only the caller.
//!
//! Invariant: [`enter`] runs while the process is single-threaded (first thing in `main`).

use std::process::Command;

use super::sys::{self, Forked, Namespaces, RealSys, SignalSet, Sys, WaitStatus};

/// Set to `off` to keep a rootless `stack` out of the namespace (steps then run as root only).
pub(crate) const SUBIDS_ENV: &str = "STACK_SUBIDS";

/// One subordinate range of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges a `/etc/subuid`-format text gives the user named `name` or numbered `id`, in
/// file order. Comments and malformed lines are skipped.
pub(crate) fn ranges_for(text: &str, name: Option<&str>, id: u32) -> Vec<SubIdRange> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            let mine = owner == id || name == Some(owner);
            let range = SubIdRange { start: start.parse().ok()?, count: count.parse().ok()? };
            (mine && range.count > 0).then_some(range)
        })
        .collect()
}

/// The map `newuidmap`/`newgidmap` take after the pid: `0 <own id> 1`, then each range from
/// inside id 1 on.
pub(crate) fn map_args(own: u32, ranges: &[SubIdRange]) -> Vec<String> {
    let mut args = vec!["0".to_owned(), own.to_string(), "1".to_owned()];
    let mut inside: u64 = 1;
    for r in ranges {
        if inside + u64::from(r.count) > u64::from(u32::MAX) {
            break;
        }
        args.extend([inside.to_string(), r.start.to_string(), r.count.to_string()]);
        inside += u64::from(r.count);
    }
    args
}

/// What [`enter`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entered {
    /// This process now runs as root of a user namespace with subordinate ids.
    Yes,
    /// It stays as it was; `Some` says why when the user would expect otherwise (ranges are
    /// configured but could not be mapped).
    No(Option<String>),
}

/// Signals the waiting parent passes on to the command.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Moves the rest of this process into a user namespace with the caller's subordinate ids,
/// when it is unprivileged and they are configured (see the module doc). Only the child
/// returns `Yes`; the parent never returns from there.
pub(crate) fn enter() -> Entered {
    if sys::geteuid() == 0 || std::env::var(SUBIDS_ENV).is_ok_and(|v| v == "off") {
        return Entered::No(None);
    }
    let (uid, gid) = (sys::getuid(), sys::getgid());
    let name = sys::user_name(uid);
    let read = |p: &str| fs_err::read_to_string(p).unwrap_or_default();
    let uids = ranges_for(&read("/etc/subuid"), name.as_deref(), uid);
    let gids = ranges_for(&read("/etc/subgid"), name.as_deref(), uid);
    if uids.is_empty() || gids.is_empty() {
        return Entered::No(None);
    }
    let (Some(newuidmap), Some(newgidmap)) = (find_tool("newuidmap"), find_tool("newgidmap"))
    else {
        return Entered::No(None);
    };
    if sys::thread_count() > 1 {
        return Entered::No(Some(
            "stack started threads before entering its user namespace \
                                 (a bug in stack)"
                .into(),
        ));
    }
    let sys: &mut dyn Sys = &mut RealSys;
    let (Ok((ready_r, ready_w)), Ok((go_r, go_w))) = (sys.pipe(), sys.pipe()) else {
        return Entered::No(None);
    };
    let mut signals = FORWARDED.to_vec();
    signals.push(libc::SIGCHLD);
    // Blocked before the fork so that none sent meanwhile is lost; the child unblocks them.
    sys.block_signals(SignalSet::Only(&signals), true);
    let parent = sys::getpid();
    // The process is single-threaded (checked above), so the child may do anything.
    let child = match sys.fork() {
        Err(_) => {
            sys.block_signals(SignalSet::Only(&signals), false);
            return Entered::No(None);
        }
        Ok(Forked::Child) => {
            drop((ready_r, go_w));
            sys.block_signals(SignalSet::Only(&signals), false);
            sys.die_with_parent();
            if sys::getppid() != parent {
                sys.exit(1);
            }
            let unshared = sys.unshare(Namespaces { user: true, ..Namespaces::default() });
            sys.write_all(&ready_w, if unshared.is_ok() { b"u" } else { b"e" });
            drop(ready_w);
            if unshared.is_ok() && sys.read_to_end(go_r) == b"g" {
                return Entered::Yes;
            }
            // The parent carries on without the namespace.
            sys.exit(0)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    drop((ready_w, go_r));
    let mapped = if sys.read_to_end(ready_r) == b"u" {
        write_map(&newuidmap, child, &map_args(uid, &uids))
            .and_then(|()| write_map(&newgidmap, child, &map_args(gid, &gids)))
            .map_err(Some)
    } else {
        // User namespaces are refused here; the sandbox probe explains it when it matters.
        Err(None)
    };
    if mapped.is_ok() {
        sys.write_all(&go_w, b"g");
    }
    drop(go_w);
    match mapped {
        Ok(()) => std::process::exit(forward_until_exit(sys, child, &signals)),
        Err(reason) => {
            let _ = sys.waitpid(child, false);
            sys.block_signals(SignalSet::Only(&signals), false);
            Entered::No(reason)
        }
    }
}

/// Runs `tool <pid> <map…>`; the error carries the tool's own explanation.
fn write_map(tool: &std::path::Path, pid: i32, args: &[String]) -> Result<(), String> {
    #[allow(clippy::disallowed_methods, reason = "exec is the module that spawns processes")]
    let out = Command::new(tool)
        .arg(pid.to_string())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", tool.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{} {pid} {}` failed ({}): {}",
        tool.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Finds `newuidmap` or `newgidmap` on `PATH`, then in the usual places.
fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(Into::into))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The parent's remaining life: pass on signals sent to it, and return the code to exit
/// with once the child ends (as the child did).
fn forward_until_exit(sys: &mut dyn Sys, child: i32, signals: &[i32]) -> i32 {
    loop {
        let (sig, sent) = sys.wait_signal(SignalSet::Only(signals));
        if sig == libc::SIGCHLD {
            match sys.waitpid(child, true) {
                Ok(Some((_, WaitStatus::Exited(code)))) => return code,
                Ok(Some((_, WaitStatus::Signaled(s)))) => return 128 + s,
                Ok(None) => {}
                Err(_) => return 1,
            }
        } else if sent {
            sys.kill(child, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\nbroken\n\
                    alice:400000:0\nalice:500000:100\n";
        assert_eq!(
            ranges_for(text, Some("alice"), 1000),
            [
                SubIdRange { start: 100_000, count: 65536 },
                SubIdRange { start: 300_000, count: 10 },
                SubIdRange { start: 500_000, count: 100 },
            ]
        );
        assert_eq!(ranges_for(text, None, 1001), []);
        assert_eq!(ranges_for(text, Some("bob"), 1001).len(), 1);
    }

    #[test]
    fn maps_put_the_caller_at_0_and_ranges_after() {
        let ranges =
            [SubIdRange { start: 100_000, count: 65536 }, SubIdRange { start: 300_000, count: 10 }];
        assert_eq!(map_args(1000, &ranges).join(" "), "0 1000 1 1 100000 65536 65537 300000 10");
        assert_eq!(map_args(1000, &[]).join(" "), "0 1000 1");
        let huge = [SubIdRange { start: 1, count: u32::MAX }];
        assert_eq!(map_args(7, &huge).join(" "), "0 7 1", "a range past 2^32 is left out");
    }
}
