//! The seccomp profile of a step: the system calls Docker's default profile refuses to a
//! container without `CAP_SYS_ADMIN`, refused here too.
//!
//! Docker's profile is an allow-list of about 370 calls; its effect for a build step is that
//! of a deny-list of the calls below (kernel modules, keyrings, mounts, namespaces, clocks,
//! BPF, perf, handles that bypass path checks, `io_uring`, and `clone` with namespace flags).
//! A deny-list keeps working when the kernel adds a call the C library starts to use, which an
//! allow-list compiled into a binary would break. On top of Docker, `mknod` of block devices
//! and of character devices other than the 0:0 whiteout is refused, so a root step can never
//! create a node for a host device (Docker gets that from the device cgroup; a rootless builder
//! has none). `clone3` answers `ENOSYS`, as in Docker, so the C library falls back to `clone`,
//! whose flags a filter can read.
//!
//! The filters are compiled by `seccompiler` (Firecracker's BPF compiler: pure Rust, no C
//! library to install, maintained for a production VMM) and installed by `Sys::seccomp`
//! without `PR_SET_NO_NEW_PRIVS`, so setuid programs in images keep working, as in Docker.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule,
};

/// Calls refused outright with `EPERM`.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
];

/// Namespace flags `clone` may not carry (a step must not build namespaces of its own).
const CLONE_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Why the profile could not be compiled (a bug in the rules, or an unsupported CPU).
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the seccomp profile: {0}")]
pub(crate) struct ProfileError(String);

/// The step's filters, to be installed in order: the `EPERM` deny-list, then `clone3` →
/// `ENOSYS`.
pub(crate) fn profile() -> Result<Vec<BpfProgram>, ProfileError> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| ProfileError(format!("{e}")))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    let clone_flags = CLONE_NAMESPACES
        .iter()
        .map(|flag| rule(vec![cond(0, Len::Qword, Op::MaskedEq(*flag), *flag)?]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_clone, clone_flags);
    rules.insert(libc::SYS_mknodat, device_rules(2)?);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, device_rules(1)?);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| ProfileError(e.to_string()))?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| ProfileError(e.to_string()))?;
    [deny, clone3]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| ProfileError(e.to_string())))
        .collect()
}

/// `mknod`/`mknodat` rules with the mode at argument `mode`: any block device, and any
/// character device but 0:0 (the dev number follows the mode).
fn device_rules(mode: u8) -> Result<Vec<SeccompRule>, ProfileError> {
    let kind = |k: libc::mode_t| {
        cond(mode, Len::Dword, Op::MaskedEq(u64::from(libc::S_IFMT)), u64::from(k))
    };
    Ok(vec![
        rule(vec![kind(libc::S_IFBLK)?])?,
        rule(vec![kind(libc::S_IFCHR)?, cond(mode + 1, Len::Dword, Op::Ne, 0)?])?,
    ])
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Result<SeccompCondition, ProfileError> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| ProfileError(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, ProfileError> {
    SeccompRule::new(conditions).map_err(|e| ProfileError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_for_this_machine() {
        let filters = profile().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > DENIED.len(), "every denied call has a comparison");
    }
}
