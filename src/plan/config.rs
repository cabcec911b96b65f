//! Steps that change the image config (`env`, `label`, `user`, `shell`, `cmd`, `entrypoint`,
//! `expose`, `volume`, `onbuild`, `healthcheck`, …) and the small layer steps `workdir` and
//! `file`: how each sets the config and what goes into its key. Each returns the step's node,
//! or `None` when a value does not expand (the problem is reported and the step left out).

use serde_json::Value;

use super::onbuild;
use super::scope::Scope;
use super::stages::{Planner, StageState, StepAt, absolute};
use super::{Digest, FileOp, Node, Op};
use crate::diag::Diagnostic;
use crate::digest::KeyHasher;
use crate::oci::image::ImageConfig;
use crate::syntax::ast::{FileStep, Healthcheck, Spanned};
use crate::syntax::parse_duration;

/// The `NAME=value` pairs of an `env` or `label` step.
type KeyValues = [(Spanned<String>, Spanned<String>)];

impl Planner<'_> {
    /// `env`: sets variables in the image config; a name set here is no longer shadowed by
    /// an earlier `arg` of that name.
    pub(super) fn env(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        pairs: &KeyValues,
    ) -> Option<Node> {
        // Every value sees the environment from before this step, as in Docker.
        let mut values = Vec::new();
        for (k, v) in pairs {
            values.push((k.value.clone(), self.expand_in_stage(stage, at, v)?));
        }
        let mut h = KeyHasher::new("env");
        for (k, v) in &values {
            stage.arg_wins.remove(k);
            stage.config.set_env(k, v);
            h.str(k).str(v);
        }
        Some(at.config_node(&mut h))
    }

    pub(super) fn labels(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        pairs: &KeyValues,
    ) -> Option<Node> {
        let mut h = KeyHasher::new("label");
        for (k, v) in pairs {
            let (k, v) = (self.expand_in_stage(stage, at, k)?, self.expand_in_stage(stage, at, v)?);
            stage.config.set_label(&k, &v);
            h.str(&k).str(&v);
        }
        Some(at.config_node(&mut h))
    }

    /// `workdir`: sets the working folder and makes a layer that creates it (owned by the
    /// current user), so its key covers the parent's filesystem.
    pub(super) fn workdir(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        p: &Spanned<String>,
    ) -> Option<Node> {
        let p = self.expand_in_stage(stage, at, p)?;
        let current = stage.config.string("WorkingDir").unwrap_or_else(|| "/".into());
        let path = absolute(&current, &p);
        // BuildKit keeps an absolute path as written (`/app/` stays `/app/`) and
        // cleans only the join of a relative one.
        let shown = if p.starts_with('/') { p.clone() } else { path.clone() };
        stage.config.set_string("WorkingDir", &shown);
        let user = stage.config.string("User").unwrap_or_default();
        let key = KeyHasher::new("workdir").digest(&at.parent_fs).str(&path).str(&user).finish();
        let op = Op::Workdir { path, user };
        let inputs = simple_inputs(&op, at.parent_fs);
        Some(at.layer_node(key, op, inputs))
    }

    pub(super) fn user(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        u: &Spanned<String>,
    ) -> Option<Node> {
        let u = self.expand_in_stage(stage, at, u)?;
        stage.config.set_string("User", &u);
        Some(at.config_node(KeyHasher::new("user").str(&u)))
    }

    pub(super) fn stop_signal(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        s: &Spanned<String>,
    ) -> Option<Node> {
        let s = self.expand_in_stage(stage, at, s)?;
        stage.config.set_string("StopSignal", &s);
        Some(at.config_node(KeyHasher::new("stopsignal").str(&s)))
    }

    pub(super) fn maintainer(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        m: &Spanned<String>,
    ) -> Option<Node> {
        let m = self.expand_in_stage(stage, at, m)?;
        stage.config.0.insert("author".into(), Value::String(m.clone()));
        Some(at.config_node(KeyHasher::new("maintainer").str(&m)))
    }

    /// `expose`: a value that is no port is reported, and the step keeps the others.
    pub(super) fn expose(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        ports: &[Spanned<String>],
    ) -> Option<Node> {
        let mut h = KeyHasher::new("expose");
        for p in ports {
            let v = self.expand_in_stage(stage, at, p)?;
            match normalize_port(&v) {
                Some(ports) => {
                    for port in ports {
                        stage.config.add_to_set("ExposedPorts", &port);
                        h.str(&port);
                    }
                }
                None => self.error(
                    stage.file,
                    Diagnostic::error(
                        "invalid-port",
                        format!("`{v}` is not a port"),
                        p.span,
                        "not a port",
                    )
                    .with_help(
                        "write a port number, optionally with a protocol: \"8080\", \"53/udp\"",
                    ),
                ),
            }
        }
        Some(at.config_node(&mut h))
    }

    pub(super) fn volumes(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        volumes: &[Spanned<String>],
    ) -> Option<Node> {
        let mut h = KeyHasher::new("volume");
        for v in volumes {
            let v = self.expand_in_stage(stage, at, v)?;
            stage.config.add_to_set("Volumes", &v);
            h.str(&v);
        }
        Some(at.config_node(&mut h))
    }

    /// `onbuild`: a trigger that is no Dockerfile instruction is reported and left out; the
    /// step keeps the others.
    pub(super) fn onbuild(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        triggers: &[Spanned<String>],
    ) -> Option<Node> {
        let mut h = KeyHasher::new("onbuild");
        for t in triggers {
            if let Err(message) = onbuild::check(&t.value) {
                self.error(
                    stage.file,
                    Diagnostic::error("invalid-onbuild", message, t.span, "this trigger")
                        .with_help("write one Dockerfile instruction, e.g. `onbuild \"RUN make\"`"),
                );
                continue;
            }
            let mut list = stage.config.strings("OnBuild");
            list.push(t.value.clone());
            stage.config.set_strings("OnBuild", &list);
            h.str(&t.value);
        }
        Some(at.config_node(&mut h))
    }

    /// `file`: writes the content (expanded unless `expand=#false`) to a path relative to the
    /// working folder.
    pub(super) fn file(
        &mut self,
        stage: &mut StageState<'_>,
        at: &StepAt<'_>,
        f: &FileStep,
    ) -> Option<Node> {
        let path = self.expand_in_stage(stage, at, &f.path)?;
        let current = stage.config.string("WorkingDir").unwrap_or_else(|| "/".into());
        let path = absolute(&current, &path);
        let chown = match &f.chown {
            Some(c) => Some(self.expand_in_stage(stage, at, c)?),
            None => None,
        };
        let content = if f.expand {
            self.file_content(stage, at, &f.content)?
        } else {
            f.content.value.clone()
        };
        let chmod = match &f.chmod {
            Some(m) => self.mode(stage.file, m)?,
            None => 0o644,
        };
        let key = KeyHasher::new("file")
            .digest(&at.parent_fs)
            .str(&path)
            .str(&content)
            .opt_str(chown.as_deref())
            .u64(u64::from(chmod))
            .finish();
        let op = Op::File(FileOp { path, content: content.into_bytes(), chown, chmod });
        let inputs = simple_inputs(&op, at.parent_fs);
        Some(at.layer_node(key, op, inputs))
    }

    /// A `file`'s content with `${…}` expanded against the stage's args and its image config
    /// (an `arg` that shadows an `env` does not apply here).
    fn file_content(
        &mut self,
        stage: &StageState<'_>,
        at: &StepAt<'_>,
        content: &Spanned<String>,
    ) -> Option<String> {
        let scope = Scope {
            globals: &self.globals[stage.file],
            stage_args: &stage.stage_args,
            config: &stage.config,
        };
        match scope.expand(content, self.text(at.file)) {
            Ok(x) => Some(x),
            Err(mut d) => {
                // Scripts and configs often hold `${…}` for their own use.
                if d.code == "undefined-variable" {
                    let help = d.help.take().unwrap_or_default();
                    d = d.with_help(format!(
                        "{help}\nfile content is expanded like every value: write `$${{` for a literal `${{`, or add `expand=#false` to write the content as it is"
                    ));
                }
                self.error(stage.file, d);
                None
            }
        }
    }
}

pub(super) fn shell(stage: &mut StageState<'_>, at: &StepAt<'_>, argv: &[Spanned<String>]) -> Node {
    let argv = as_written(argv);
    stage.config.set_strings("Shell", &argv);
    at.config_node(KeyHasher::new("shell").strs(&argv))
}

pub(super) fn cmd(stage: &mut StageState<'_>, at: &StepAt<'_>, argv: &[Spanned<String>]) -> Node {
    let argv = as_written(argv);
    set_argv(&mut stage.config, "Cmd", &argv);
    stage.cmd_set_here = true;
    at.config_node(KeyHasher::new("cmd").strs(&argv))
}

pub(super) fn entrypoint(
    stage: &mut StageState<'_>,
    at: &StepAt<'_>,
    argv: &[Spanned<String>],
) -> Node {
    let argv = as_written(argv);
    set_argv(&mut stage.config, "Entrypoint", &argv);
    // Docker: a new entrypoint drops a command inherited from the base.
    if !stage.cmd_set_here {
        stage.config.config_mut().remove("Cmd");
    }
    at.config_node(KeyHasher::new("entrypoint").strs(&argv))
}

pub(super) fn healthcheck(stage: &mut StageState<'_>, at: &StepAt<'_>, hc: &Healthcheck) -> Node {
    let value = healthcheck_json(hc);
    stage.config.config_mut().insert("Healthcheck".into(), value.clone());
    at.config_node(KeyHasher::new("healthcheck").str(&value.to_string()))
}

/// The values of an argv list as written: like Docker, stack expands no variables in `shell`,
/// `cmd` and `entrypoint` (a shell-form command's shell does, when it runs).
fn as_written(argv: &[Spanned<String>]) -> Vec<String> {
    argv.iter().map(|a| a.value.clone()).collect()
}

/// Named inputs of `file` and `workdir` steps, for `--explain`.
fn simple_inputs(op: &Op, parent_fs: Digest) -> Vec<(String, String)> {
    let mut inputs = vec![("parent".to_owned(), parent_fs.to_hex())];
    match op {
        Op::File(f) => {
            inputs.push(("path".into(), f.path.clone()));
            inputs.push(("content".into(), Digest::of(&f.content).short()));
            inputs.push(("options".into(), format!("chown={:?} chmod={:o}", f.chown, f.chmod)));
        }
        Op::Workdir { path, user } => {
            inputs.push(("path".into(), path.clone()));
            inputs.push(("user".into(), user.clone()));
        }
        _ => {}
    }
    inputs
}

/// The `ExposedPorts` keys of one `expose` value; a range (`7000-7002/udp`) is every port in
/// it, as Docker's port parser gives.
fn normalize_port(v: &str) -> Option<Vec<String>> {
    let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let valid = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
    let (first, last) = match port.split_once('-') {
        Some((a, b)) => (valid(a)?, valid(b)?),
        None => (valid(port)?, valid(port)?),
    };
    (first <= last).then(|| (first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// Sets `Cmd` or `Entrypoint`; an empty list leaves the field absent, as `BuildKit` writes it.
fn set_argv(config: &mut ImageConfig, field: &str, argv: &[String]) {
    if argv.is_empty() {
        config.config_mut().remove(field);
    } else {
        config.set_strings(field, argv);
    }
}

fn healthcheck_json(hc: &Healthcheck) -> Value {
    match hc {
        Healthcheck::None => serde_json::json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            shell,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let mut m = serde_json::Map::new();
            let mut t: Vec<Value> =
                vec![Value::String(if *shell { "CMD-SHELL" } else { "CMD" }.into())];
            t.extend(test.iter().map(|s| Value::String(s.value.clone())));
            m.insert("Test".into(), Value::Array(t));
            for (key, v) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if let Some(ns) = v.as_ref().and_then(|d| parse_duration(&d.value)) {
                    m.insert(key.into(), Value::from(ns));
                }
            }
            if let Some(r) = retries {
                m.insert("Retries".into(), Value::from(r.value));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let one = |v: &str| normalize_port(v).map(|p| p.join(" "));
        assert_eq!(one("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(one("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(one("http"), None);
        assert_eq!(one("7000-7002/udp").as_deref(), Some("7000/udp 7001/udp 7002/udp"));
        assert_eq!(one("9-8"), None);
    }
}
