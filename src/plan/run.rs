//! `run` lowering: the command line, the environment it sees, its mounts (cache, secret,
//! ssh, tmpfs, bind), network and platform, and the cache key and `--explain` inputs they make.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::NodeIndex;

use super::scope::Scope;
use super::stages::{Planner, StageState, StepAt, absolute, env_view};
use super::{Node, Op, PlannedMount, RunOp, hash_selected};
use crate::context::normalize;
use crate::diag::Diagnostic;
use crate::digest::{Digest, KeyHasher};
use crate::oci::image::{DEFAULT_PATH, ImageConfig};
use crate::syntax::ast::{RunMount, RunStep, Spanned};

impl Planner<'_> {
    /// A `run` step's node and the nodes its `bind from=` mounts read.
    pub(super) fn run_node(
        &mut self,
        stage: &StageState<'_>,
        at: &StepAt<'_>,
        r: &RunStep,
    ) -> Option<(Node, Vec<NodeIndex>)> {
        let view = env_view(&stage.config, &stage.stage_args, &stage.arg_wins).into_owned();
        let (op, key, sources, inputs) = self.run_step(
            stage.file,
            r,
            &stage.stage_args,
            &stage.unset_args,
            &view,
            at.parent_fs,
        )?;
        Some((at.layer_node(key, Op::Run(op), inputs), sources))
    }

    /// Lowers a `run`: its op, its key, the nodes its mounts read and its `--explain` inputs.
    fn run_step(
        &mut self,
        fi: usize,
        r: &RunStep,
        stage_args: &BTreeMap<String, String>,
        unset_args: &BTreeSet<String>,
        config: &ImageConfig,
        parent_fs: Digest,
    ) -> Option<(RunOp, Digest, Vec<NodeIndex>, Vec<(String, String)>)> {
        let argv = command_line(r, config);
        let env = run_env(config, stage_args, unset_args);
        let cwd =
            config.string("WorkingDir").filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
        let user = config.string("User").filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
        // The step's own `network` wins; `--network` only changes the default. Either way the
        // network (and `--add-host`) is part of the key: it changes what the command can see.
        let network = r.network.as_ref().map_or(self.request.default_network, |n| n.value);
        let hosts = self.request.add_hosts.clone();
        let globals = self.globals[fi].clone();
        let mut h = KeyHasher::new("run");
        h.digest(&parent_fs).strs(&argv).seq(env.len());
        for (k, v) in &env {
            h.str(k).str(v);
        }
        h.str(&cwd).str(&user).u8(network as u8);
        // Only when given, so that the keys of steps without `--add-host` stay as they were.
        if !hosts.is_empty() {
            h.str("add-host").seq(hosts.len());
            for (name, ip) in &hosts {
                h.str(name).str(ip);
            }
        }
        // The platform the command runs on, hashed unless it is `linux/amd64` (a constant, not
        // the host's, so that keys are the same on every machine and the keys of steps from
        // before platforms existed stay as they were).
        let platform = self.stage_platform.clone();
        if platform.to_string() != "linux/amd64" {
            h.str("platform").str(&platform.to_string());
        }
        let mut cx = Mounts {
            fi,
            scope: Scope { globals: &globals, stage_args, config },
            text: self.text(fi),
            cwd: &cwd,
            h,
            edges: Vec::new(),
            planned: Vec::new(),
        };
        for m in &r.mounts {
            let mount = self.plan_mount(&mut cx, m)?;
            cx.planned.push(mount);
        }
        let Mounts { h, edges, planned: mounts, .. } = cx;
        let op = RunOp { argv, env, cwd, user, network, hosts, mounts, platform };
        let inputs = run_inputs(parent_fs, &op, config);
        Some((op, h.finish(), edges, inputs))
    }

    /// Plans one mount of a `run` and adds its definition to the step's key (never what it
    /// holds: cache content, a secret's value, an ssh agent's keys).
    fn plan_mount(&mut self, cx: &mut Mounts<'_>, m: &RunMount) -> Option<PlannedMount> {
        let fi = cx.fi;
        let mount = match m {
            RunMount::Cache {
                target,
                id,
                sharing,
                readonly,
                mode,
                uid,
                gid,
                from,
                source,
                export,
            } => {
                let target = absolute(cx.cwd, &self.mount_value(cx, target)?);
                let id = match id {
                    Some(i) => self.mount_value(cx, i)?,
                    None => target.clone(),
                };
                if let Some(f) = from.as_ref().or(source.as_ref()) {
                    self.error(
                        fi,
                        Diagnostic::error("unsupported-cache-source", "seeding a cache from another stage is not supported yet", f.span, "here")
                            .with_help("remove `from=`/`source=`; the cache starts empty and persists between builds"),
                    );
                    return None;
                }
                // Cache content never enters the key; only the mount's definition does.
                cx.h.str("cache").str(&target).str(&id).u8(*sharing as u8).bool(*readonly);
                PlannedMount::Cache {
                    target,
                    id,
                    sharing: *sharing,
                    readonly: *readonly,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    export: *export,
                }
            }
            RunMount::Secret { id, target, env: var, required, mode, uid, gid } => {
                let id_v = self.mount_value(cx, id)?;
                let target = match target {
                    Some(t) => Some(absolute(cx.cwd, &self.mount_value(cx, t)?)),
                    None if var.is_none() => Some(format!("/run/secrets/{id_v}")),
                    None => None,
                };
                let var = match var {
                    Some(v) => Some(self.mount_value(cx, v)?),
                    None => None,
                };
                cx.h.str("secret").str(&id_v).opt_str(target.as_deref()).opt_str(var.as_deref());
                PlannedMount::Secret {
                    id: id_v,
                    target,
                    env: var,
                    required: *required,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                }
            }
            RunMount::Ssh { id, target, required, mode, uid, gid } => {
                let id = match id {
                    Some(i) => self.mount_value(cx, i)?,
                    None => "default".to_owned(),
                };
                // BuildKit's default: /run/buildkit/ssh_agent.N, N counting this step's
                // ssh mounts.
                let nth =
                    cx.planned.iter().filter(|m| matches!(m, PlannedMount::Ssh { .. })).count();
                let target = match target {
                    Some(t) => absolute(cx.cwd, &self.mount_value(cx, t)?),
                    None => format!("/run/buildkit/ssh_agent.{nth}"),
                };
                // The agent itself (its keys) never enters the key, like a secret's value.
                cx.h.str("ssh").str(&id).str(&target);
                PlannedMount::Ssh {
                    id,
                    target,
                    required: *required,
                    mode: mode.unwrap_or(0o600),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                }
            }
            RunMount::Tmpfs { target, size } => {
                let target = absolute(cx.cwd, &self.mount_value(cx, target)?);
                let size = match size {
                    Some(s) => Some(self.tmpfs_size(cx, s)?),
                    None => None,
                };
                cx.h.str("tmpfs").str(&target);
                PlannedMount::Tmpfs { target, size }
            }
            RunMount::Bind { source, target, from, readwrite } => {
                self.bind_mount(cx, source, target, from.as_ref(), *readwrite)?
            }
        };
        Some(mount)
    }

    /// A `bind`: a folder or file of another stage or image (`from=`), else of the build
    /// context or a named context folder.
    fn bind_mount(
        &mut self,
        cx: &mut Mounts<'_>,
        source: &Spanned<String>,
        target: &Spanned<String>,
        from: Option<&Spanned<String>>,
        readwrite: bool,
    ) -> Option<PlannedMount> {
        let fi = cx.fi;
        let src = self.mount_value(cx, source)?;
        let target = absolute(cx.cwd, &self.mount_value(cx, target)?);
        let from = match from {
            Some(f) => Some((self.mount_value(cx, f)?, f.span)),
            None => None,
        };
        let named = from.as_ref().and_then(|(f, _)| self.named_dir(f).map(|_| f.clone()));
        if let Some((fv, from_span)) = from.filter(|_| named.is_none()) {
            let node = self.source_node(fi, &fv, from_span)?;
            cx.h.str("bind-node")
                .digest(&self.graph[node].fs_key)
                .str(&src)
                .str(&target)
                .bool(readwrite);
            cx.edges.push(node);
            return Some(PlannedMount::BindNode {
                node,
                source: absolute("/", &src),
                target,
                readwrite,
            });
        }
        let selected = match &named {
            Some(n) => self.resolver.select_named(n, &src, &[]),
            None => self.resolver.select(fi, &src, &[]),
        };
        let folder = match selected {
            Ok(sel) => {
                // `-selected`: steps cached when a bind showed the whole folder
                // (ignored files too) must not be reused.
                cx.h.str("bind-context-selected").str(&src).str(&target).bool(readwrite);
                hash_selected(&mut cx.h, &sel);
                match sel.as_slice() {
                    [one] if one.is_dir => Some(one.clone()),
                    _ => None,
                }
            }
            Err(e) => {
                self.error(
                    fi,
                    Diagnostic::error(
                        "source-not-found",
                        e.to_string(),
                        source.span,
                        "cannot bind this",
                    ),
                );
                return None;
            }
        };
        Some(PlannedMount::BindContext {
            file: fi,
            named,
            source: normalize(&src).unwrap_or_default(),
            target,
            readwrite,
            folder,
        })
    }

    /// A `tmpfs` mount's `size=`, in bytes.
    fn tmpfs_size(&mut self, cx: &Mounts<'_>, s: &Spanned<String>) -> Option<u64> {
        let v = self.mount_value(cx, s)?;
        if let Some(b) = parse_size(&v) {
            return Some(b);
        }
        self.error(
            cx.fi,
            Diagnostic::error("invalid-size", format!("`{v}` is not a size"), s.span, "not a size")
                .with_help("write sizes like \"64m\" or \"1g\""),
        );
        None
    }

    /// Expands a value of a mount; `None` once the problem is reported.
    fn mount_value(&mut self, cx: &Mounts<'_>, v: &Spanned<String>) -> Option<String> {
        match cx.scope.expand(v, cx.text) {
            Ok(x) => Some(x),
            Err(d) => {
                self.error(cx.fi, d);
                None
            }
        }
    }
}

/// A `run`'s mounts while they are planned: what their values expand with, and what they add
/// to the step's key and edges.
struct Mounts<'s> {
    fi: usize,
    scope: Scope<'s>,
    text: &'s str,
    /// The working folder, which relative targets are resolved against.
    cwd: &'s str,
    h: KeyHasher,
    /// The nodes `bind from=` mounts read.
    edges: Vec<NodeIndex>,
    planned: Vec<PlannedMount>,
}

/// The command a `run` runs: its exec form as written, else its commands in the image's
/// shell (`/bin/sh -c` by default).
fn command_line(r: &RunStep, config: &ImageConfig) -> Vec<String> {
    let commands: Vec<String> = r.commands.iter().map(|c| c.value.clone()).collect();
    if r.exec {
        commands
    } else {
        let mut shell = config.strings("Shell");
        if shell.is_empty() {
            shell = vec!["/bin/sh".into(), "-c".into()];
        }
        shell.push(join_commands(&commands));
        shell
    }
}

/// The environment a `run` sees: the image environment, then the stage's args that it does not
/// set (Docker's rule: a top-level arg reaches `run` only through an `arg` in the stage, so
/// changing one never invalidates the steps of stages that do not declare it).
fn run_env(
    config: &ImageConfig,
    stage_args: &BTreeMap<String, String>,
    unset_args: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut env = config.env();
    for (k, v) in stage_args {
        if !unset_args.contains(k) && !env.iter().any(|(ek, _)| ek == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// What a `run` depends on, by name, for `--explain`.
fn run_inputs(parent_fs: Digest, op: &RunOp, config: &ImageConfig) -> Vec<(String, String)> {
    let mut inputs = vec![
        ("parent".to_owned(), parent_fs.to_hex()),
        ("command".to_owned(), op.argv.join(" ")),
        ("working folder".to_owned(), op.cwd.clone()),
        ("user".to_owned(), op.user.clone()),
    ];
    let image_env: Vec<String> = config.env().into_iter().map(|(k, _)| k).collect();
    for (k, v) in &op.env {
        let kind = if image_env.contains(k) { "env" } else { "arg" };
        inputs.push((format!("{kind} `{k}`"), v.clone()));
    }
    inputs.push((
        "mounts".to_owned(),
        format!("{:?}", op.mounts.iter().map(mount_summary).collect::<Vec<_>>()),
    ));
    if !op.hosts.is_empty() {
        let lines: Vec<String> = op.hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect();
        inputs.push(("added hosts".to_owned(), lines.join(" ")));
    }
    inputs
}

fn mount_summary(m: &PlannedMount) -> String {
    match m {
        PlannedMount::Cache { target, id, .. } => format!("cache {target} id={id}"),
        PlannedMount::Secret { id, target, env, .. } => {
            format!("secret {id} target={target:?} env={env:?}")
        }
        PlannedMount::Ssh { id, target, .. } => format!("ssh {id} {target}"),
        PlannedMount::Tmpfs { target, .. } => format!("tmpfs {target}"),
        PlannedMount::BindNode { source, target, .. }
        | PlannedMount::BindContext { source, target, .. } => format!("bind {source} {target}"),
    }
}

/// Runs several shell-form commands in one shell, stopping at the first failure; each keeps
/// its own lines, so multi-line scripts work unchanged.
fn join_commands(commands: &[String]) -> String {
    if commands.len() == 1 {
        return commands[0].clone();
    }
    commands.iter().map(|c| format!("{{ {c}\n}}")).collect::<Vec<_>>().join(" && \\\n")
}

fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let mult = match v[digits..].trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
    }
}
