//! The setup sequence, written once against [`Sys`] so the real helper and the recording fake
//! run the very same code: namespaces, the overlay root, `/proc`, `/dev`, `/sys`, generated
//! files, the spec's mounts, `pivot_root`, and the privilege drop before `exec`.
//!
//! Invariant: every mount target inside the rootfs is opened with `RESOLVE_IN_ROOT` and
//! mounted through its fd, so a symlink in an image can never aim a mount (or a stub) at the
//! host; every file or directory this code creates in the rootfs is reported as a stub.

use std::path::{Path, PathBuf};

use super::sys::{Handle, MountFlags, Namespaces, Sys, SysError, SysResult, Target};
use super::user::{self, ResolvedUser};
use super::{Mount, Network, SandboxSpec};
use crate::privilege::{self, IdRange};

/// Everything the setup needs besides the spec, decided by the helper at start.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    pub(crate) spec: &'a SandboxSpec,
    /// The root is a merged copy of the lower dirs (no overlay).
    pub(crate) copy_root: bool,
    /// The ids the command can run as, and whether the helper makes a user namespace.
    pub(crate) ids: Ids,
    pub(crate) host_uid: u32,
    pub(crate) host_gid: u32,
}

/// Where the helper stands, which decides the user namespace and the ids a step may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ids {
    /// Root on the host: every id.
    HostRoot,
    /// Root of a user namespace entered before (by `stack` with subordinate ids, or a rootless
    /// container): the ids its maps hold (as seen inside); `setgroups` says whether
    /// supplementary groups can be set.
    Mapped { uids: Vec<IdRange>, gids: Vec<IdRange>, setgroups: bool },
    /// An unprivileged caller: the helper makes a user namespace that maps only the caller, to
    /// root.
    OwnNamespace,
}

/// A setup failure: which step, and the syscall that failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum SetupError {
    Sys { step: String, error: SysError },
    UserNs { error: SysError },
    User { spec: String, reason: String },
    BadTarget { target: String, reason: String },
}

type SetupResult<T> = Result<T, SetupError>;

trait Step<T> {
    fn step(self, step: &str) -> SetupResult<T>;
}

impl<T> Step<T> for SysResult<T> {
    fn step(self, step: &str) -> SetupResult<T> {
        self.map_err(|error| SetupError::Sys { step: step.to_owned(), error })
    }
}

/// Capabilities a root command keeps (Docker's default set minus nothing, plus nothing).
pub(crate) const DEFAULT_CAPS: [u32; 14] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// `CAP_NET_RAW`: raw and packet sockets.
const CAP_NET_RAW: u32 = 13;

/// The capabilities a root command keeps: Docker's set, but on the host's network without
/// `CAP_NET_RAW`, which would let a step open packet sockets and capture the host's traffic
/// (Docker keeps it only inside a network namespace of the container's own).
fn kept_caps(network: Network) -> Vec<u32> {
    DEFAULT_CAPS.into_iter().filter(|c| network != Network::Host || *c != CAP_NET_RAW).collect()
}

impl Plan<'_> {
    pub(crate) fn scratch(&self) -> &Path {
        &self.spec.scratch_dir
    }
    pub(crate) fn upper(&self) -> PathBuf {
        self.scratch().join("upper")
    }
    fn root(&self) -> PathBuf {
        self.scratch().join("root")
    }
    /// Whether the sandbox lives in a user namespace (`userxattr` overlay, no `trusted.`).
    pub(crate) fn userns(&self) -> bool {
        self.ids != Ids::HostRoot
    }
}

/// Step 1, in the helper: the user namespace (for an unprivileged caller) and the PID, IPC,
/// UTS and network namespaces. The mount namespace is left to PID 1 so that its `pivot_root`
/// cannot move the helper's own root.
pub(crate) fn enter_namespaces(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<()> {
    if plan.ids == Ids::OwnNamespace {
        sys.unshare(Namespaces { user: true, ..Namespaces::default() })
            .map_err(|error| SetupError::UserNs { error })?;
        sys.write_file(Path::new("/proc/self/setgroups"), b"deny").step("user namespace")?;
        sys.write_file(
            Path::new("/proc/self/uid_map"),
            format!("0 {} 1\n", plan.host_uid).as_bytes(),
        )
        .step("user namespace")?;
        sys.write_file(
            Path::new("/proc/self/gid_map"),
            format!("0 {} 1\n", plan.host_gid).as_bytes(),
        )
        .step("user namespace")?;
    }
    sys.unshare(Namespaces {
        pid: true,
        ipc: true,
        uts: true,
        net: plan.spec.network != Network::Host,
        ..Namespaces::default()
    })
    .step("namespaces")
}

/// The kind of object a mount target must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Splits an absolute or relative in-image path into normal components.
fn components(target: &str) -> SetupResult<Vec<&str>> {
    let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if comps.contains(&"..") || comps.is_empty() {
        return Err(SetupError::BadTarget {
            target: target.to_owned(),
            reason: "a mount target must be a path below `/` without `..`".to_owned(),
        });
    }
    Ok(comps)
}

/// Opens `target` inside the rootfs, creating missing components (recorded as stubs).
fn open_target(
    sys: &mut dyn Sys,
    root: &Handle,
    target: &str,
    kind: Kind,
    stubs: &mut Vec<String>,
) -> SetupResult<Handle> {
    let comps = components(target)?;
    let rel = comps.join("/");
    match sys.open_in_root(root, &rel) {
        Ok(h) => return Ok(h),
        Err(e) if e.errno == libc::ENOENT => {}
        Err(error) => {
            return Err(SetupError::Sys { step: format!("mount target `/{rel}`"), error });
        }
    }
    let mut parent = sys.open_in_root(root, "").step("rootfs")?;
    for i in 0..comps.len() {
        let prefix = comps[..=i].join("/");
        match sys.open_in_root(root, &prefix) {
            Ok(h) => parent = h,
            Err(e) if e.errno == libc::ENOENT => {
                let step = format!("mount target `/{rel}`");
                let created = if i + 1 == comps.len() && kind == Kind::File {
                    sys.create_file_at(&parent, comps[i], 0o644)
                } else {
                    sys.mkdir_at(&parent, comps[i], 0o755)
                };
                match created {
                    // It exists but cannot be opened: a symlink leading nowhere in the image.
                    Err(e) if e.errno == libc::EEXIST => {
                        return Err(SetupError::BadTarget {
                            target: format!("/{rel}"),
                            reason: format!(
                                "`/{prefix}` is a symlink that leads nowhere inside the image"
                            ),
                        });
                    }
                    other => other.step(&step)?,
                }
                parent = sys.open_in_root(root, &prefix).step(&step)?;
                // Record where it really is: `prefix` may run through image symlinks.
                let resolved = sys.path_of(&parent).step(&step)?;
                let root_path = sys.path_of(root).step(&step)?;
                let in_root = resolved.strip_prefix(&root_path).unwrap_or(&resolved);
                stubs.push(in_root.to_string_lossy().into_owned());
            }
            Err(error) => {
                return Err(SetupError::Sys { step: format!("mount target `/{rel}`"), error });
            }
        }
    }
    Ok(parent)
}

/// Bind-mounts `source` onto `target` in the rootfs, read-only if asked. Every bind is
/// `nosuid,nodev`: a setuid file or a device node in a cache folder, a context or another
/// stage's files gains nothing from being bound in.
fn bind(
    sys: &mut dyn Sys,
    root: &Handle,
    source: Target<'_>,
    target: &str,
    kind: Kind,
    readonly: bool,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let step = format!("bind mount on `{target}`");
    let t = open_target(sys, root, target, kind, stubs)?;
    sys.mount(Some(source), Target::Fd(&t), None, MountFlags::BIND | MountFlags::REC, None)
        .step(&step)?;
    // Re-open: the old handle points below the new mount.
    let t = sys.open_in_root(root, &components(target)?.join("/")).step(&step)?;
    let locked = sys.mount_flags_of(Target::Fd(&t)).step(&step)?;
    let mut flags =
        MountFlags::BIND | MountFlags::REMOUNT | MountFlags::NOSUID | MountFlags::NODEV | locked;
    if readonly {
        flags = flags | MountFlags::RDONLY;
    }
    sys.mount(None, Target::Fd(&t), None, flags, None).step(&step)
}

/// Files of `/proc` and `/sys` that runc hides (kernel memory, keys, timers, firmware):
/// `/dev/null` is bound over files and an empty read-only tmpfs over folders.
const MASKED_FILES: [&str; 6] = [
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
];
const MASKED_DIRS: [&str; 5] =
    ["proc/acpi", "proc/asound", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap"];
/// Folders of `/proc` that runc makes read-only (besides `/proc/sys`).
const READONLY_DIRS: [&str; 4] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys"];

/// Binds the host's `/dev/null` read-only over `target` (a device, so no `nodev` here).
fn mask_file(
    sys: &mut dyn Sys,
    root: &Handle,
    target: &str,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let step = format!("mask `/{target}`");
    let t = open_target(sys, root, target, Kind::File, stubs)?;
    let null = Target::Path(Path::new("/dev/null"));
    sys.mount(Some(null), Target::Fd(&t), None, MountFlags::BIND, None).step(&step)?;
    let t = sys.open_in_root(root, target).step(&step)?;
    let locked = sys.mount_flags_of(Target::Fd(&t)).step(&step)?;
    let flags =
        MountFlags::BIND | MountFlags::REMOUNT | MountFlags::RDONLY | MountFlags::NOSUID | locked;
    sys.mount(None, Target::Fd(&t), None, flags, None).step(&step)
}

/// Masks and write-protects the paths runc does; paths this kernel lacks are skipped.
fn mask_paths(sys: &mut dyn Sys, root: &Handle, stubs: &mut Vec<String>) -> SetupResult<()> {
    let exists = |sys: &mut dyn Sys, path: &str| match sys.open_in_root(root, path) {
        Ok(_) => Ok(true),
        Err(e) if e.errno == libc::ENOENT => Ok(false),
        Err(error) => Err(SetupError::Sys { step: format!("mask `/{path}`"), error }),
    };
    for path in MASKED_FILES {
        if exists(sys, path)? {
            mask_file(sys, root, path, stubs)?;
        }
    }
    for path in MASKED_DIRS {
        if exists(sys, path)? {
            fs_mount(
                sys,
                root,
                path,
                "tmpfs",
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                Some("size=4k"),
                stubs,
            )?
            .step(&format!("mask `/{path}`"))?;
        }
    }
    for path in READONLY_DIRS {
        if exists(sys, path)? {
            let t = sys.open_in_root(root, path).step(&format!("read-only `/{path}`"))?;
            bind(sys, root, Target::Fd(&t), path, Kind::Dir, true, stubs)?;
        }
    }
    Ok(())
}

fn fs_mount(
    sys: &mut dyn Sys,
    root: &Handle,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
    stubs: &mut Vec<String>,
) -> SetupResult<SysResult<()>> {
    let t = open_target(sys, root, target, Kind::Dir, stubs)?;
    Ok(sys.mount(Some(Target::Path(Path::new(fstype))), Target::Fd(&t), Some(fstype), flags, data))
}

/// Mounts the `binfmt_misc` instance of the sandbox's user namespace (Linux 6.7 or later) on
/// its fresh `/proc/sys/fs/binfmt_misc` and registers the emulator there: the foreign programs
/// of this sandbox run through it, and the host's registrations are untouched. The mount stays
/// (under the read-only `/proc/sys` made later) because the registration lives as long as it.
/// Another sandbox of the same namespace may have registered it already.
fn register_emulator(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    line: &str,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let step = "own binfmt_misc for the emulator";
    if !plan.userns() {
        // As root the step's own process registers it, in a user namespace made for it
        // (`register_in_own_userns`): the emulator waits at a stub the diff drops.
        let (Some(stub), Some(host)) = (emulator_stub(line), line.split(':').nth(6)) else {
            return Err(SetupError::Sys {
                step: format!("{step}: a malformed registration"),
                error: SysError::new("binfmt_misc", line, libc::EINVAL),
            });
        };
        return bind(sys, root, Target::Path(Path::new(host)), &stub, Kind::File, true, stubs);
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    fs_mount(sys, root, "proc/sys/fs/binfmt_misc", "binfmt_misc", flags, None, stubs)?
        .step(&format!("{step} (Linux 6.7 or later mounts one in a user namespace)"))?;
    let register = plan.root().join("proc/sys/fs/binfmt_misc/register");
    match sys.write_file(&register, line.as_bytes()) {
        Err(e) if e.errno == libc::EEXIST => Ok(()),
        other => other.step(step),
    }
}

/// Where a root sandbox's root holds the emulator for the step's process to register: a stub
/// named as Debian's QEMU wants its own name to keep argv[0] (`…-binfmt-P`).
pub(crate) fn emulator_stub(line: &str) -> Option<String> {
    line.split(':').nth(1).map(|name| format!(".{name}-binfmt-P"))
}

/// In the step's process of a root sandbox, once it is root of a user namespace of its own
/// (with the identity map) and a mount namespace: mounts that namespace's `binfmt_misc` and
/// registers the emulator from its stub (the fix-binary flag opens it now).
pub(crate) fn register_in_own_userns(sys: &mut dyn Sys, line: &str) -> SetupResult<()> {
    let step =
        "own binfmt_misc for the emulator (Linux 6.7 or later mounts one in a user namespace)";
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let fs = Target::Path(Path::new("binfmt_misc"));
    sys.mount(Some(fs), Target::Path(dir), Some("binfmt_misc"), flags, None).step(step)?;
    let mut fields: Vec<String> = line.split(':').map(str::to_owned).collect();
    let stub = emulator_stub(line).unwrap_or_default();
    if let Some(interpreter) = fields.get_mut(6) {
        *interpreter = format!("/{stub}");
    }
    match sys.write_file(&dir.join("register"), fields.join(":").as_bytes()) {
        Err(e) if e.errno == libc::EEXIST => Ok(()),
        other => other.step(step),
    }
}

/// Overlay's limit on stacked lower dirs.
pub(crate) const MAX_OVERLAY_LAYERS: usize = 500;

/// The overlay mount options for `lowers` stacked lower dirs (paths relative to the scratch
/// dir, which is the working directory at mount time, so the option stays short).
pub(crate) fn overlay_options(lowers: usize, userns: bool) -> String {
    let lower: Vec<String> = (0..lowers).map(|i| format!("l/{i}")).collect();
    let mut o = format!("lowerdir={},upperdir=upper,workdir=work", lower.join(":"));
    o.push_str(if userns { ",userxattr" } else { ",redirect_dir=off,metacopy=off,index=off" });
    o
}

/// Step 2, in PID 1 of the new PID namespace: builds the root and pivots into it. Returns
/// the stubs (paths relative to the root) created in the upper dir, which the diff drops.
pub(crate) fn setup_rootfs(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<Vec<String>> {
    let mut stubs = Vec::new();
    prepare_scratch(sys, plan)?;
    let root = mount_root(sys, plan)?;
    mount_proc(sys, plan, &root, &mut stubs)?;
    mount_dev(sys, plan, &root, &mut stubs)?;
    mount_sys(sys, plan, &root, &mut stubs)?;
    if plan.spec.network != Network::None {
        bind_network_files(sys, plan, &root, &mut stubs)?;
    }
    mount_step_mounts(sys, plan, &root, &mut stubs)?;
    pivot(sys, plan)?;
    Ok(stubs)
}

/// A mount namespace of our own, private from `/` down, and the scratch dir's folders with
/// the lower dirs linked as `l/0`, `l/1`, … (short overlay options); the scratch dir becomes
/// the working directory.
fn prepare_scratch(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<()> {
    let scratch = plan.scratch();
    sys.unshare(Namespaces { mount: true, ..Namespaces::default() }).step("mount namespace")?;
    sys.mount(
        None,
        Target::Path(Path::new("/")),
        None,
        MountFlags::REC | MountFlags::PRIVATE,
        None,
    )
    .step("make `/` private")?;
    for dir in ["upper", "work", "root", "l", "gen"] {
        sys.mkdir(&scratch.join(dir), 0o755).step("scratch dir")?;
    }
    for (i, lower) in plan.spec.lower_dirs.iter().enumerate() {
        let link = scratch.join("l").join(i.to_string());
        sys.symlink(&lower.to_string_lossy(), &link).step("lower dir link")?;
    }
    sys.chdir(scratch).step("scratch dir")
}

/// Mounts the root (the overlay, or the copied root bound onto itself) and opens it.
fn mount_root(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<Handle> {
    let root_path = plan.root();
    if plan.copy_root {
        // Already merged by the helper; a bind makes it a mount point for pivot_root.
        sys.mount(
            Some(Target::Path(&root_path)),
            Target::Path(&root_path),
            None,
            MountFlags::BIND | MountFlags::REC,
            None,
        )
        .step("copied root")?;
        // Like the overlay root: device nodes in the image (or made by the step) open nothing.
        let locked = sys.mount_flags_of(Target::Path(&root_path)).step("copied root")?;
        sys.mount(
            None,
            Target::Path(&root_path),
            None,
            MountFlags::BIND | MountFlags::REMOUNT | MountFlags::NODEV | locked,
            None,
        )
        .step("copied root")?;
    } else {
        let flags = if plan.userns() { MountFlags::NONE } else { MountFlags::NODEV };
        let opts = overlay_options(plan.spec.lower_dirs.len(), plan.userns());
        sys.mount(
            Some(Target::Path(Path::new("overlay"))),
            Target::Path(&root_path),
            Some("overlay"),
            flags,
            Some(&opts),
        )
        .step("overlay root")?;
    }
    sys.open_dir(&root_path).step("overlay root")
}

/// Mounts without set-id programs, devices or executables.
const NOSUID_NODEV_NOEXEC: MountFlags =
    MountFlags(MountFlags::NOSUID.0 | MountFlags::NODEV.0 | MountFlags::NOEXEC.0);

/// `/proc`: a fresh one for the new PID namespace (with the emulator registered in it when
/// the step needs one), else the host's.
fn mount_proc(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let fresh = fs_mount(sys, root, "proc", "proc", NOSUID_NODEV_NOEXEC, None, stubs)?;
    if fresh.is_ok() {
        mask_file(sys, root, "proc/sysrq-trigger", stubs).ok();
        if let Some(line) = &plan.spec.emulator {
            register_emulator(sys, plan, root, line, stubs)?;
        }
        return Ok(());
    }
    bind(sys, root, Target::Path(Path::new("/proc")), "proc", Kind::Dir, false, stubs)
}

/// `/dev`: a small tmpfs with the harmless host devices bound in, the usual links, a private
/// `devpts` and a `shm`.
fn mount_dev(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let nse = NOSUID_NODEV_NOEXEC;
    fs_mount(sys, root, "dev", "tmpfs", nse, Some("mode=755,size=65536k"), stubs)?.step("/dev")?;
    let dev = sys.open_in_root(root, "dev").step("/dev")?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        sys.create_file_at(&dev, name, 0o666).step("/dev")?;
        let host = PathBuf::from("/dev").join(name);
        let t = sys.open_in_root(root, &format!("dev/{name}")).step("/dev")?;
        sys.mount(Some(Target::Path(&host)), Target::Fd(&t), None, MountFlags::BIND, None)
            .step("/dev")?;
    }
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink_at(&dev, name, target).step("/dev")?;
    }
    let tty_group_mapped = match &plan.ids {
        Ids::HostRoot => true,
        Ids::Mapped { gids, .. } => privilege::maps(gids, 5),
        Ids::OwnNamespace => false,
    };
    let pts_opts = if tty_group_mapped {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    let pts_flags = MountFlags::NOSUID | MountFlags::NOEXEC;
    fs_mount(sys, root, "dev/pts", "devpts", pts_flags, Some(pts_opts), stubs)?.step("/dev/pts")?;
    fs_mount(sys, root, "dev/shm", "tmpfs", nse, Some("mode=1777,size=65536k"), stubs)?
        .step("/dev/shm")
}

/// `/sys`, read-only (a fresh sysfs needs a network namespace of our own, else the host's is
/// bound), then the masked paths of `/proc` and `/sys`.
fn mount_sys(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let sysfs = if plan.spec.network != Network::Host || !plan.userns() {
        let flags = NOSUID_NODEV_NOEXEC | MountFlags::RDONLY;
        fs_mount(sys, root, "sys", "sysfs", flags, None, stubs)?
    } else {
        Err(SysError::new("mount", "sys", libc::EPERM))
    };
    if sysfs.is_err() {
        bind(sys, root, Target::Path(Path::new("/sys")), "sys", Kind::Dir, true, stubs)?;
    }
    mask_paths(sys, root, stubs)
}

/// Generated `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`, bound read-only (only when
/// the step has a network).
fn bind_network_files(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let spec = plan.spec;
    let resolv = if spec.network == Network::Private {
        format!("nameserver {}\n", super::SLIRP_DNS).into_bytes()
    } else {
        sys.read_file(Path::new("/etc/resolv.conf")).unwrap_or_default()
    };
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    for (name, ip) in &spec.extra_hosts {
        hosts.extend([ip.as_str(), "\t", name.as_str(), "\n"]);
    }
    let hostname = format!("{}\n", spec.hostname);
    for (name, content) in [
        ("resolv.conf", resolv),
        ("hosts", hosts.into_bytes()),
        ("hostname", hostname.into_bytes()),
    ] {
        let src = plan.scratch().join("gen").join(name);
        sys.write_file(&src, &content).step("generated network files")?;
        let target = format!("etc/{name}");
        bind(sys, root, Target::Path(&src), &target, Kind::File, true, stubs)?;
    }
    Ok(())
}

/// The spec's mounts (caches, binds, tmpfs, secrets), in order.
fn mount_step_mounts(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let mut secrets_ready = false;
    for (i, mount) in plan.spec.mounts.iter().enumerate() {
        match mount {
            Mount::Cache { host_dir, target, readonly } => {
                bind(sys, root, Target::Path(host_dir), target, Kind::Dir, *readonly, stubs)?;
            }
            Mount::Bind { source, target, readonly } => {
                let step = format!("bind source `{}`", source.path);
                let within = sys.open_dir(&source.root).step(&step)?;
                let src = sys.open_in_root(&within, &source.path).step(&step)?;
                let kind = if sys.is_dir_handle(&src) { Kind::Dir } else { Kind::File };
                bind(sys, root, Target::Fd(&src), target, kind, *readonly, stubs)?;
            }
            Mount::Tmpfs { target, size } => {
                let data = match size {
                    Some(bytes) => format!("mode=1777,size={bytes}"),
                    None => "mode=1777".to_owned(),
                };
                let flags = MountFlags::NOSUID | MountFlags::NODEV;
                fs_mount(sys, root, target, "tmpfs", flags, Some(&data), stubs)?
                    .step(&format!("tmpfs on `{target}`"))?;
            }
            Mount::Secret { .. } => {
                if !secrets_ready {
                    secrets_tmpfs(sys, plan, mount)?;
                    secrets_ready = true;
                }
                mount_secret(sys, plan, root, i, mount, stubs)?;
            }
        }
    }
    Ok(())
}

/// The tmpfs in the scratch dir that holds the secrets' copies (never on disk).
fn secrets_tmpfs(sys: &mut dyn Sys, plan: &Plan<'_>, first: &Mount) -> SetupResult<()> {
    let Mount::Secret { target, .. } = first else { return Ok(()) };
    let step = format!("secret on `{target}`");
    let dir = plan.scratch().join("secrets");
    sys.mkdir(&dir, 0o700).step(&step)?;
    sys.mount(
        Some(Target::Path(Path::new("tmpfs"))),
        Target::Path(&dir),
        Some("tmpfs"),
        NOSUID_NODEV_NOEXEC,
        Some("mode=0755,size=16m"),
    )
    .step(&step)
}

/// Secret number `i`: its copy in the secrets tmpfs, with its mode and owner, bound
/// read-only on its target.
fn mount_secret(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    root: &Handle,
    i: usize,
    secret: &Mount,
    stubs: &mut Vec<String>,
) -> SetupResult<()> {
    let Mount::Secret { content, target, mode, uid, gid } = secret else { return Ok(()) };
    let step = format!("secret on `{target}`");
    let copy = plan.scratch().join("secrets").join(i.to_string());
    sys.write_file(&copy, content).step(&step)?;
    sys.chmod(&copy, *mode).step(&step)?;
    sys.chown(&copy, *uid, *gid).step(&step)?;
    bind(sys, root, Target::Path(&copy), target, Kind::File, true, stubs)
}

/// Pivots into the root and detaches the old one; then the hostname and, in a network
/// namespace of its own, the loopback interface.
fn pivot(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<()> {
    sys.chdir(&plan.root()).step("pivot_root")?;
    sys.pivot_root(Path::new("."), Path::new(".")).step("pivot_root")?;
    sys.umount_detach(Path::new(".")).step("detach the old root")?;
    sys.chdir(Path::new("/")).step("pivot_root")?;
    sys.sethostname(&plan.spec.hostname).step("hostname")?;
    if plan.spec.network != Network::Host {
        sys.loopback_up().step("loopback interface")?;
    }
    Ok(())
}

/// Step 3, in PID 1 after the pivot: resolves the user and creates the working directory
/// (owned by that user, like `BuildKit`).
pub(crate) fn prepare_command(sys: &mut dyn Sys, plan: &Plan<'_>) -> SetupResult<ResolvedUser> {
    let text = |sys: &mut dyn Sys, p: &str| {
        String::from_utf8_lossy(&sys.read_file(Path::new(p)).unwrap_or_default()).into_owned()
    };
    let passwd = text(sys, "/etc/passwd");
    let group = text(sys, "/etc/group");
    let spec = &plan.spec.user.0;
    let user = user::resolve(spec, &passwd, &group)
        .map_err(|reason| SetupError::User { spec: spec.clone(), reason })?;
    if let Some(reason) = unmapped(&plan.ids, &user) {
        return Err(SetupError::User { spec: spec.clone(), reason });
    }
    let mut dir = PathBuf::from("/");
    for comp in plan.spec.cwd.split('/').filter(|c| !c.is_empty() && *c != ".") {
        dir.push(comp);
        let step = format!("working directory `{}`", plan.spec.cwd);
        if sys.mkdir(&dir, 0o755).step(&step)? {
            sys.chown(&dir, user.uid, user.gid).step(&step)?;
        }
    }
    Ok(user)
}

/// Why `user` cannot run in this sandbox: an id its user namespace does not map.
fn unmapped(ids: &Ids, user: &ResolvedUser) -> Option<String> {
    match ids {
        Ids::HostRoot => None,
        Ids::OwnNamespace => (user.uid != 0 || user.gid != 0).then(|| {
            format!(
                "uid {} gid {} is not mapped: without subordinate ids a rootless sandbox maps \
                 only the caller, to root (give this user ranges in /etc/subuid and \
                 /etc/subgid, and install `newuidmap`/`newgidmap`, Debian's `uidmap` package)",
                user.uid, user.gid
            )
        }),
        Ids::Mapped { uids, gids, setgroups } => {
            let (kind, id, ranges, file) = if !privilege::maps(uids, user.uid) {
                ("uid", user.uid, uids, "/etc/subuid")
            } else if let Some(gid) = std::iter::once(&user.gid)
                .chain(if *setgroups { &user.groups[..] } else { &[] })
                .find(|g| !privilege::maps(gids, **g))
            {
                ("gid", *gid, gids, "/etc/subgid")
            } else {
                return None;
            };
            let held: Vec<String> = ranges
                .iter()
                .map(|r| format!("{}-{}", r.inside, u64::from(r.inside) + u64::from(r.count) - 1))
                .collect();
            Some(format!(
                "{kind} {id} is outside the ids this user namespace maps ({}); a larger range \
                 in {file} would cover it",
                held.join(", ")
            ))
        }
    }
}

/// Step 4, in the command's process just before `exec`: drops capabilities and ids.
pub(crate) fn drop_privileges(
    sys: &mut dyn Sys,
    plan: &Plan<'_>,
    user: &ResolvedUser,
) -> SetupResult<()> {
    let setgroups = match &plan.ids {
        Ids::HostRoot => true,
        Ids::Mapped { setgroups, .. } => *setgroups,
        Ids::OwnNamespace => false,
    };
    if plan.ids != Ids::OwnNamespace {
        sys.drop_bounding_caps(&kept_caps(plan.spec.network)).step("capabilities")?;
    }
    // `stack` ignores SIGPIPE (as every Rust program does) and blocks signals in PID 1;
    // ignored dispositions survive `exec`, and `yes | head` would then never end.
    sys.reset_signals();
    // Installed while still root of the namespace (no `no_new_privs` needed, so setuid
    // programs keep working), and after the last mount, which the profile refuses.
    let filters = super::seccomp::profile().map_err(|e| SetupError::Sys {
        step: "seccomp".to_owned(),
        error: SysError::new("seccomp", e.to_string(), libc::EINVAL),
    })?;
    sys.seccomp(&filters).step("seccomp")?;
    if setgroups {
        sys.setgroups(&user.groups).step("user")?;
    }
    // Files the command creates must not depend on the caller's umask.
    sys.umask(0o022);
    sys.setresgid(user.gid).step("user")?;
    sys.setresuid(user.uid).step("user")?;
    let cwd = if plan.spec.cwd.is_empty() { "/" } else { &plan.spec.cwd };
    sys.chdir(Path::new(cwd)).step("working directory")
}
