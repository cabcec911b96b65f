//! `run`/`exec` steps: the bridge between the plan and the sandbox. Prepares the lower dirs,
//! cache folders, secrets and binds, runs the command, and turns its changes into a layer.
//!
//! Invariants: secret values are never part of a key, a record, a layer or the printed log
//! (they reach the step only through a private file or its environment); cache-mount contents
//! never enter a layer.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use petgraph::stable_graph::NodeIndex;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::build::{Blame, BuildError, BuildOptions, Event, SecretValue, record};
use super::failure::StepFailure;
use super::layers;
use super::sandbox::{
    self, BindSource, Mount, Network as SandboxNetwork, RootMode, SandboxSpec, UserSpec,
};
use super::sshproxy::SshProxy;
use crate::digest::Digest;
use crate::oci::image::LayerRef;
use crate::plan::{Plan, PlannedMount, RunOp};
use crate::store::Store;
use crate::syntax::ast::{CacheSharing, Network};

/// Whether the sandbox works here. Probing forks a process: do it once, not once per step.
static PROBE: std::sync::OnceLock<Result<(), sandbox::Unavailable>> = std::sync::OnceLock::new();

/// Lines of output kept to show with a failure.
const TAIL_LINES: usize = 20;

/// Runs `op` in the sandbox over the layers `parent` and records the layer of its changes.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_step(
    plan: &Plan,
    node: NodeIndex,
    op: &RunOp,
    parent: &[LayerRef],
    store: &Store,
    opts: &BuildOptions,
    events: &(dyn Fn(Event) + Sync),
    get: &dyn Fn(NodeIndex) -> Vec<LayerRef>,
) -> Result<Vec<LayerRef>, BuildError> {
    let n = &plan.graph[node];
    let started = Instant::now();
    let blame = Blame { node, label: &n.label };
    PROBE
        .get_or_init(sandbox::probe)
        .clone()
        .map_err(|why| blame.step(StepFailure::SandboxUnavailable(why)))?;
    let mut lower_dirs = Vec::with_capacity(parent.len());
    for layer in parent.iter().rev() {
        let (_, tree) = layers::materialize(store, layer).map_err(|e| blame.machine_or_step(e))?;
        lower_dirs.push(tree);
    }
    let scratch = store.temp_dir("run-").map_err(|e| blame.machine_or_step(e))?;
    let extras = store.temp_dir("run-mounts-").map_err(|e| blame.machine_or_step(e))?;
    let prep = MountPrep { plan, store, opts, get, extras: extras.path(), blame: &blame };
    // Cache locks are held, and SSH agent relays live, until the step has ended.
    let Prepared { mut mounts, env, locks: _locks, ssh_proxies } =
        prep.prepare(&op.mounts, op.env.clone())?;
    let (network, slirp4netns) = step_network(op.network).map_err(|e| blame.step(e))?;
    let mut argv = op.argv.clone();
    let chain = shell_chain(&argv);
    let marks = match &chain {
        Some(parts) => Some(
            mark_progress(parts, &mut argv, extras.path(), &mut mounts)
                .map_err(|e| blame.machine_or_step(StepFailure::Marks(e)))?,
        ),
        None => None,
    };
    let spec = SandboxSpec {
        lower_dirs,
        scratch_dir: scratch.path().to_owned(),
        argv,
        env,
        cwd: op.cwd.clone(),
        user: UserSpec(op.user.clone()),
        hostname: "stack".into(),
        network,
        slirp4netns,
        extra_hosts: op.hosts.clone(),
        mounts,
        root_mode: RootMode::Auto,
        emulator: super::emulation::plan(&op.platform).map_err(|e| blame.step(e.into()))?,
    };
    let mut tail = OutputTail::default();
    let outcome = sandbox::run_cancellable(
        &spec,
        &mut |bytes| {
            events(Event::Output { node, bytes: bytes.to_vec() });
            tail.push(bytes);
        },
        &opts.cancel,
    )
    .map_err(|e| blame.step(e.into()))?;
    drop(ssh_proxies);
    if !outcome.status.success() {
        let command = failed_command(chain.as_deref(), marks.as_deref());
        return Err(BuildError::Step {
            node,
            label: n.label.clone(),
            cause: StepFailure::Exited { command, code: outcome.status.code() },
            output_tail: tail.finish(),
        });
    }
    let layer = if outcome.changes.is_empty() {
        None
    } else {
        Some(
            layers::write_layer(store, &outcome.changes, opts.epoch, opts.compression, None)
                .map_err(|e| blame.machine_or_step(e))?,
        )
    };
    drop(outcome);
    record(store, &super::build::layer_key(&n.key, opts.epoch), layer.as_ref())?;
    events(Event::Finished {
        node,
        elapsed: started.elapsed(),
        layer: layer.as_ref().map(|l| l.blob.size),
    });
    let mut layers = parent.to_vec();
    layers.extend(layer);
    Ok(layers)
}

/// What a step's mounts need while it runs: the sandbox's mounts, the environment with the
/// variables secrets add, the locks of `locked` caches and the SSH agent relays.
struct Prepared {
    mounts: Vec<Mount>,
    env: Vec<(String, String)>,
    locks: Vec<std::fs::File>,
    ssh_proxies: Vec<SshProxy>,
}

/// Lays out, before a step runs, what its mounts show.
struct MountPrep<'a> {
    plan: &'a Plan,
    store: &'a Store,
    opts: &'a BuildOptions,
    get: &'a dyn Fn(NodeIndex) -> Vec<LayerRef>,
    /// A folder in the store's tmp for the files binds show (links, copies) and the marks.
    extras: &'a Path,
    blame: &'a Blame<'a>,
}

impl MountPrep<'_> {
    /// The mounts of `planned`, with the step's environment `env`.
    fn prepare(
        &self,
        planned: &[PlannedMount],
        env: Vec<(String, String)>,
    ) -> Result<Prepared, BuildError> {
        let blame = self.blame;
        let mut out =
            Prepared { mounts: Vec::new(), env, locks: Vec::new(), ssh_proxies: Vec::new() };
        for m in planned {
            match m {
                PlannedMount::Cache { target, id, sharing, readonly, mode, uid, gid, export } => {
                    let dir = self.cache_dir(id, *mode, (*uid, *gid), *export)?;
                    if *sharing == CacheSharing::Locked {
                        out.locks.push(lock_dir(&dir).map_err(|source| {
                            blame.step(StepFailure::CacheLock { id: id.clone(), source })
                        })?);
                    }
                    let target = target.clone();
                    out.mounts.push(Mount::Cache { host_dir: dir, target, readonly: *readonly });
                }
                PlannedMount::Secret { id, target, env: var, required, mode, uid, gid } => {
                    let Some(value) = self.secret_value(id, *required)? else { continue };
                    if let Some(var) = var {
                        out.env.push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
                    }
                    if let Some(target) = target {
                        out.mounts.push(Mount::Secret {
                            content: value,
                            target: target.clone(),
                            mode: mode.unwrap_or(0o400),
                            uid: uid.unwrap_or(0),
                            gid: gid.unwrap_or(0),
                        });
                    }
                }
                PlannedMount::Ssh { id, target, required, mode, uid, gid } => {
                    let Some(agent) = self.opts.ssh.get(id) else {
                        if *required {
                            return Err(blame.step(StepFailure::SshAgentMissing { id: id.clone() }));
                        }
                        continue;
                    };
                    let proxy = SshProxy::start(agent, *mode, *uid, *gid).map_err(|source| {
                        let (id, agent) = (id.clone(), agent.clone());
                        blame.step(StepFailure::SshForward { id, agent, source })
                    })?;
                    // Like BuildKit, the first agent is the one ssh and git find by default.
                    if !out.env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                        out.env.push(("SSH_AUTH_SOCK".to_owned(), target.clone()));
                    }
                    out.mounts.push(Mount::Bind {
                        source: BindSource::file(proxy.path()),
                        target: target.clone(),
                        readonly: false,
                    });
                    out.ssh_proxies.push(proxy);
                }
                PlannedMount::Tmpfs { target, size } => {
                    out.mounts.push(Mount::Tmpfs { target: target.clone(), size: *size });
                }
                PlannedMount::BindNode { node: src, source, target, readwrite } => {
                    let name = format!("bind-{}", out.mounts.len());
                    let source = self.stage_bind(*src, source, name, *readwrite)?;
                    let (target, readonly) = (target.clone(), !readwrite);
                    out.mounts.push(Mount::Bind { source, target, readonly });
                }
                PlannedMount::BindContext { file, named, source, target, readwrite, folder } => {
                    let name = format!("bind-{}", out.mounts.len());
                    let ctx = match named {
                        Some(named) => absolute_dir(self.plan.named_contexts[named].clone()),
                        None => plan_context_dir(self.plan, *file),
                    };
                    let source =
                        self.context_bind(ctx, source, folder.as_ref(), name, *readwrite)?;
                    let (target, readonly) = (target.clone(), !readwrite);
                    out.mounts.push(Mount::Bind { source, target, readonly });
                }
            }
        }
        Ok(out)
    }

    /// The host folder of cache `id`, created (with `mode` and `owner`) when new.
    fn cache_dir(
        &self,
        id: &str,
        mode: Option<u32>,
        (uid, gid): (Option<u32>, Option<u32>),
        export: bool,
    ) -> Result<PathBuf, BuildError> {
        let dir = self.store.root().join("cache-v1").join(Digest::of(id.as_bytes()).to_hex());
        let fresh = !dir.exists();
        Store::note_use(&dir);
        fs_err::create_dir_all(&dir).map_err(|source| {
            self.blame.machine_or_step(StepFailure::CacheFolder { id: id.to_owned(), source })
        })?;
        if fresh {
            let _ = fs_err::set_permissions(
                &dir,
                std::fs::Permissions::from_mode(mode.unwrap_or(0o755)),
            );
            if uid.is_some() || gid.is_some() {
                let _ = std::os::unix::fs::chown(&dir, uid, gid);
            }
        }
        if let Some(shared) = self.opts.shared.as_ref().filter(|_| export) {
            shared.cache_mount(id, &dir, fresh);
        }
        Ok(dir)
    }

    /// The value of secret `id`; `None` when it was not given and is not `required`.
    fn secret_value(&self, id: &str, required: bool) -> Result<Option<Vec<u8>>, BuildError> {
        let value = match self.opts.secrets.get(id) {
            Some(SecretValue::File(p)) => Some(fs_err::read(p).map_err(|source| {
                self.blame.step(StepFailure::SecretUnreadable { id: id.to_owned(), source })
            })?),
            Some(SecretValue::Env(v)) => {
                std::env::var_os(v).map(std::ffi::OsString::into_encoded_bytes)
            }
            None => None,
        };
        if value.is_none() && required {
            return Err(self.blame.step(StepFailure::SecretMissing { id: id.to_owned() }));
        }
        Ok(value)
    }

    /// `source` of stage `node`'s file system, laid out as `name` in the extras folder.
    fn stage_bind(
        &self,
        node: NodeIndex,
        source: &str,
        name: String,
        readwrite: bool,
    ) -> Result<BindSource, BuildError> {
        // Reading the stage's layers is the machine's work: a full disk there is not the step's.
        let view = layers::view_of(self.store, &(self.get)(node)).map_err(|e| {
            self.blame
                .machine_or_step(StepFailure::BindStage { path: source.to_owned(), source: e })
        })?;
        let dest = self.extras.join(&name);
        materialize_path(&view, source.trim_start_matches('/'), &dest, readwrite).map_err(|e| {
            self.blame.machine_or_step(StepFailure::Bind { path: source.to_owned(), source: e })
        })?;
        Ok(BindSource { root: self.extras.to_owned(), path: name })
    }

    /// `source` of the context folder `ctx`: only what the context selects (`folder`), a copy
    /// laid out as `name` for a writable bind, else the context's own files.
    fn context_bind(
        &self,
        ctx: PathBuf,
        source: &str,
        folder: Option<&crate::context::Selected>,
        name: String,
        readwrite: bool,
    ) -> Result<BindSource, BuildError> {
        let path = || source.to_owned();
        if let Some(sel) = folder {
            // Only what the context selects: not the files the ignore file leaves out, nor
            // stack's own output, as BuildKit sends only those.
            materialize_selection(sel, &self.extras.join(&name), readwrite).map_err(|e| {
                self.blame.machine_or_step(StepFailure::Bind { path: path(), source: e })
            })?;
        } else if readwrite {
            // A writable bind works on a copy: nothing a step does reaches the context.
            copy_from_context(&ctx, source, &self.extras.join(&name)).map_err(|e| {
                self.blame
                    .machine_or_step(StepFailure::WritableBindCopy { path: path(), source: e })
            })?;
        } else {
            return Ok(BindSource { root: ctx, path: path() });
        }
        Ok(BindSource { root: self.extras.to_owned(), path: name })
    }
}

/// Instruments the `&&` chain `parts` (the script of `argv`) to leave a mark per command that
/// succeeded, in a marks file bound into the step; returns that file.
fn mark_progress(
    parts: &[String],
    argv: &mut [String],
    extras: &Path,
    mounts: &mut Vec<Mount>,
) -> std::io::Result<PathBuf> {
    let marks = extras.join("marks");
    fs_err::write(&marks, b"")?;
    // Whoever the step runs as may mark; the file lives in the store's tmp only.
    let _ = fs_err::set_permissions(&marks, std::fs::Permissions::from_mode(0o666));
    mounts.push(Mount::Bind {
        source: BindSource { root: extras.to_owned(), path: "marks".into() },
        target: super::chain::MARKS_TARGET.into(),
        readonly: false,
    });
    if let Some(script) = argv.last_mut() {
        *script = super::chain::instrument(parts);
    }
    Ok(marks)
}

/// The last [`TAIL_LINES`] lines of a step's output, to show with a failure.
#[derive(Default)]
struct OutputTail {
    lines: VecDeque<String>,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
}

impl OutputTail {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            self.lines.push_back(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    /// The lines, with an unfinished last line as it is.
    fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines.push_back(String::from_utf8_lossy(&self.partial).into_owned());
        }
        self.lines.into()
    }
}

/// The top-level commands of a shell-form script that is a plain `&&` chain (`sh -c "a && b"`
/// with a POSIX-like shell), which [`super::chain`] can tell apart when one fails.
fn shell_chain(argv: &[String]) -> Option<Vec<String>> {
    let [shell, .., flag, script] = argv else { return None };
    let name = shell.rsplit('/').next().unwrap_or(shell);
    let posix = matches!(name, "sh" | "bash" | "ash" | "dash" | "ksh" | "zsh");
    if !posix || flag != "-c" || argv.len() != 3 {
        return None;
    }
    super::chain::and_chain(script)
}

/// "command 2 of 3 (`b`)": the command of `chain` that failed, from how many marks it left.
fn failed_command(chain: Option<&[String]>, marks: Option<&Path>) -> Option<String> {
    let parts = chain?;
    let done = fs_err::metadata(marks?).ok()?.len();
    let index = usize::try_from(done).ok().filter(|i| *i < parts.len())?;
    Some(format!("command {} of {} (`{}`)", index + 1, parts.len(), parts[index]))
}

/// The sandbox network for a step's `network` setting: the default is a private network
/// namespace reaching the world through slirp4netns; `host` must be asked for.
fn step_network(network: Network) -> Result<(SandboxNetwork, Option<PathBuf>), StepFailure> {
    match network {
        Network::None => Ok((SandboxNetwork::None, None)),
        Network::Host => Ok((SandboxNetwork::Host, None)),
        Network::Default => {
            let slirp = find_program("slirp4netns").ok_or(StepFailure::NoSlirp4netns)?;
            Ok((SandboxNetwork::Private, Some(slirp)))
        }
    }
}

/// The first executable `name` on `PATH` (or in the usual system folders).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The context folder of build file `file`, absolute: the sandbox resolves bind sources from
/// its own working directory, which is not the caller's.
fn plan_context_dir(plan: &Plan, file: usize) -> PathBuf {
    absolute_dir(plan.context_dirs.get(file).cloned().unwrap_or_else(|| PathBuf::from(".")))
}

fn absolute_dir(dir: PathBuf) -> PathBuf {
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Takes an exclusive lock on a cache folder for the life of the returned file.
fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    let f = fs_err::File::open(dir)?.into_file();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(f)
}

/// Recreates `path` of a merged view at `dest`: hard links to the store's files for a
/// read-only bind (the mount is read-only, so they cannot change), private copies for a
/// writable one, so that nothing a step writes ever reaches the store.
fn materialize_path(
    view: &super::view::View,
    path: &str,
    dest: &Path,
    writable: bool,
) -> std::io::Result<()> {
    let resolved = view.resolve(path, true).unwrap_or_default();
    if !resolved.is_empty() && !view.is_dir(&resolved) {
        let src = view
            .source(&resolved)
            .ok_or_else(|| std::io::Error::other(format!("`/{path}` does not exist")))?;
        fs_err::copy(src, dest)?;
        return Ok(());
    }
    fs_err::create_dir_all(dest)?;
    for (rel, e) in view.below(&resolved) {
        let full = if resolved.is_empty() { rel.clone() } else { format!("{resolved}/{rel}") };
        let target = dest.join(&rel);
        if e.is_dir() {
            fs_err::create_dir_all(&target)?;
        } else if let Some(link) =
            e.link.as_ref().filter(|_| e.kind == crate::oci::extract::IndexKind::Symlink)
        {
            let _ = std::os::unix::fs::symlink(link, &target);
        } else if let Some(src) = view.source(&full)
            && (writable || fs_err::hard_link(&src, &target).is_err())
        {
            let _ = fs_err::copy(&src, &target);
        }
    }
    Ok(())
}

/// Recreates a selected context folder at `dest`: hard links to the context's files for a
/// read-only bind (the mount is read-only), private copies for a writable one or when a link
/// cannot be made, so that nothing a step writes reaches the context.
fn materialize_selection(
    sel: &crate::context::Selected,
    dest: &Path,
    writable: bool,
) -> std::io::Result<()> {
    use crate::context::FileKind;
    fs_err::create_dir_all(dest)?;
    for (rel, meta) in &sel.entries {
        let target = dest.join(rel);
        match meta.kind {
            FileKind::Dir => fs_err::create_dir_all(&target)?,
            FileKind::Symlink => {
                if let Some(link) = &meta.link {
                    std::os::unix::fs::symlink(link, &target)?;
                }
            }
            FileKind::File => {
                // `link` never follows a symlink; a copy reads through a descriptor opened
                // beneath the context root, so a file swapped for a symlink is refused.
                if writable || fs_err::hard_link(&meta.abs, &target).is_err() {
                    let mut from = crate::context::open::open_beneath(&sel.root, &meta.rel)?;
                    let mut to = fs_err::File::create(&target)?;
                    std::io::copy(&mut from, &mut to)?;
                }
            }
            // Never opened: a FIFO would block, a device is not the context's to share.
            FileKind::Fifo | FileKind::CharDevice { .. } | FileKind::BlockDevice { .. } => {}
        }
    }
    Ok(())
}

/// Copies `source` of the context at `ctx` to `dest`. The source is resolved inside the
/// context (a symlink to `/etc` means the context's `etc`); below it, symlinks are copied as
/// symlinks and special files are refused rather than read (a FIFO would block forever).
fn copy_from_context(ctx: &Path, source: &str, dest: &Path) -> std::io::Result<()> {
    let root =
        rustix::fs::open(ctx, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let how = source.trim_start_matches('/');
    let fd = rustix::fs::openat2(
        &root,
        if how.is_empty() { "." } else { how },
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let src = fs_err::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(&src).unwrap_or(entry.path());
        let target = if rel.as_os_str().is_empty() { dest.to_owned() } else { dest.join(rel) };
        let kind = entry.file_type();
        if kind.is_dir() {
            fs_err::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            fs_err::copy(entry.path(), &target)?;
        } else {
            return Err(std::io::Error::other(format!(
                "`{}` is a FIFO, socket or device; a writable bind copies only files, folders \
                 and symlinks",
                entry.path().display()
            )));
        }
    }
    Ok(())
}
