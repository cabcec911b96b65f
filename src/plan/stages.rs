//! The planner core: the `Planner` state, the run from build files to a `Plan`, and the walk
//! through one stage's steps that turns each into a DAG node with its key. The other jobs
//! are `impl Planner` blocks beside it: `args` (top-level args), `order` (which stages, in
//! what order), `base` (what a stage starts from), `config`, `copy` and `run` (one step kind
//! each).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use miette::SourceSpan;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde_json::Value;

use super::config::{healthcheck_json, normalize_port, set_argv, simple_inputs};
use super::onbuild;
use super::scope::Scope;
use super::{
    EdgeKind, FileDiagnostic, FileInput, FileOp, ImageTarget, NamedContext, Node, Op, Place, Plan,
    PlanRequest, Resolver,
};
use crate::diag::Diagnostic;
use crate::digest::KeyHasher;
use crate::oci::image::{DEFAULT_PATH, ImageConfig, Platform};
use crate::syntax::ast::{Origin, Spanned, StepKind, Target};
use crate::syntax::parse_mode;

pub(super) struct Planner<'a> {
    pub(super) files: &'a [FileInput],
    pub(super) request: &'a PlanRequest,
    pub(super) resolver: &'a dyn Resolver,
    pub(super) diags: Vec<FileDiagnostic>,
    pub(super) graph: StableDiGraph<Node, EdgeKind>,
    /// The top-level args each file sees, by file index: the predefined ones, the main file's,
    /// and (for an included file) its own.
    pub(super) globals: Vec<BTreeMap<String, String>>,
    /// Stage name → (file, index of the target in that file).
    pub(super) stages: BTreeMap<String, (usize, usize)>,
    pub(super) done: HashMap<String, StageEnd>,
    /// (platform, reference) → the base node loaded for it.
    pub(super) bases: HashMap<(String, String), NodeIndex>,
    pub(super) scratch: Option<NodeIndex>,
    /// The platform this branch builds images for (`TARGETPLATFORM`).
    pub(super) target_platform: Platform,
    /// The platform of the stage being planned: its `from`'s `platform=`, its base stage's,
    /// else the target.
    pub(super) stage_platform: Platform,
}

#[derive(Clone)]
pub(super) struct StageEnd {
    pub(super) node: NodeIndex,
    pub(super) config: ImageConfig,
    /// The stage's args at its end: a stage built `from` it starts with them, as in `BuildKit`.
    pub(super) args: BTreeMap<String, String>,
    /// Args declared after an `env` of the same name, which win over it (see [`env_view`]).
    pub(super) arg_wins: BTreeSet<String>,
    /// The platform the stage's steps run on.
    pub(super) platform: Platform,
}

impl<'a> Planner<'a> {
    pub(super) fn new(
        files: &'a [FileInput],
        request: &'a PlanRequest,
        resolver: &'a dyn Resolver,
    ) -> Self {
        Self {
            files,
            request,
            resolver,
            diags: Vec::new(),
            graph: StableDiGraph::new(),
            globals: Vec::new(),
            stages: BTreeMap::new(),
            done: HashMap::new(),
            bases: HashMap::new(),
            scratch: None,
            target_platform: request.platform.clone().unwrap_or_else(Platform::host),
            stage_platform: request.platform.clone().unwrap_or_else(Platform::host),
        }
    }

    pub(super) fn error(&mut self, file: usize, d: Diagnostic) {
        self.diags.push(FileDiagnostic { file, diagnostic: d });
    }

    pub(super) fn text(&self, file: usize) -> &'a str {
        self.files[file].source.text.as_str()
    }

    pub(super) fn run(mut self) -> Result<Plan, Vec<FileDiagnostic>> {
        self.collect_globals();
        self.collect_stages();
        self.check_named_contexts();
        let requested = self.requested();
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        // A cycle is reported and its stages left out; the other stages are still planned.
        let order = self.order(&requested);
        for name in &order {
            self.plan_stage(name);
        }
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        let mut images = Vec::new();
        for name in requested {
            let (fi, ti) = self.stages[&name];
            let target = &self.files[fi].ast.targets[ti];
            let mut end = self.done[&name].clone();
            for (k, v) in &self.request.labels {
                end.config.set_label(k, v);
            }
            let scope_args = BTreeMap::new();
            let mut tags = Vec::new();
            for tag in &target.tags {
                let scope = Scope {
                    globals: &self.globals[fi],
                    stage_args: &scope_args,
                    config: &end.config,
                };
                match scope.expand(tag, self.text(fi)) {
                    Ok(t) => tags.push(t),
                    Err(d) => self.error(fi, d),
                }
            }
            images.push(ImageTarget {
                name,
                tags,
                node: end.node,
                config: end.config,
                file: fi,
                span: target.name.span,
                platform: self.target_platform.clone(),
            });
        }
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        Ok(Plan {
            graph: self.graph,
            context_dirs: self.files.iter().map(|f| f.context_dir.clone()).collect(),
            named_contexts: self
                .request
                .contexts
                .iter()
                .filter_map(|(k, c)| match c {
                    NamedContext::Dir(d) => Some((k.clone(), d.clone())),
                    NamedContext::Image(_) => None,
                })
                .collect(),
            images,
            warnings: Vec::new(),
        })
    }

    /// The named context folder `from=` names, when it names one (and no stage).
    pub(super) fn named_dir(&self, name: &str) -> Option<&'a PathBuf> {
        match self.request.contexts.get(name) {
            Some(NamedContext::Dir(d)) if !self.stages.contains_key(name) => Some(d),
            _ => None,
        }
    }

    pub(super) fn target(&self, name: &str) -> (usize, &'a Target) {
        let (fi, ti) = self.stages[name];
        (fi, &self.files[fi].ast.targets[ti])
    }

    pub(super) fn add_node(&mut self, node: Node, source_edges: &[NodeIndex]) -> NodeIndex {
        let parent = node.parent;
        let idx = self.graph.add_node(node);
        if let Some(p) = parent {
            self.graph.add_edge(p, idx, EdgeKind::Parent);
        }
        for s in source_edges {
            self.graph.add_edge(*s, idx, EdgeKind::Source);
        }
        idx
    }

    /// Moves the diagnostics reported since `mark` about a step a template produced (reported
    /// against the stage's file `fi`, with spans in the template) to the template's file, and
    /// shows the `use` they came from.
    fn remap_template_diags(&mut self, mark: usize, fi: usize, origin: &Origin, stage: &str) {
        let use_source = &self.files[origin.use_file].source;
        for d in &mut self.diags[mark..] {
            if d.file != fi {
                continue;
            }
            d.file = origin.file;
            let label = format!("in `{stage}`, from `use {}` here", origin.template);
            let same_file = origin.file == origin.use_file;
            d.diagnostic =
                d.diagnostic.clone().with_place(same_file, use_source, origin.use_span, label);
        }
    }

    /// Points the diagnostics reported since `mark` (about trigger steps, whose text is in no
    /// file) at the `from` that ran them.
    fn remap_trigger_diags(&mut self, mark: usize, from_span: SourceSpan) {
        for d in &mut self.diags[mark..] {
            d.diagnostic.span = from_span;
            d.diagnostic.related.clear();
            d.diagnostic.message =
                format!("in an `ONBUILD` trigger of this base: {}", d.diagnostic.message);
        }
    }

    pub(super) fn label(&self, file: usize, span: SourceSpan) -> String {
        let text = self.text(file);
        let raw = text.get(span.offset()..span.offset() + span.len()).unwrap_or("");
        let first = raw.lines().next().unwrap_or("").trim().trim_end_matches('{').trim();
        if first.chars().count() > 72 {
            format!("{}…", first.chars().take(71).collect::<String>())
        } else {
            first.to_owned()
        }
    }

    /// The platform a stage's steps run on: its `from`'s `platform=` (expanded, so
    /// `${BUILDPLATFORM}` works), else its base stage's, else the branch's target.
    fn stage_platform_of(
        &mut self,
        fi: usize,
        target: &Target,
        written: Option<&Spanned<String>>,
        base: &str,
    ) -> Option<Platform> {
        let Some(written) = written else {
            let inherited = self.done.get(base).map(|end| end.platform.clone());
            return Some(inherited.unwrap_or_else(|| self.target_platform.clone()));
        };
        let value = match self.expand_static(fi, target, written) {
            Ok(v) => v,
            Err(d) => {
                self.error(fi, d);
                return None;
            }
        };
        match Platform::parse(&value) {
            Ok(p) => Some(p),
            Err(problem) => {
                let d = Diagnostic::error("bad-platform", problem, written.span, "not a platform")
                    .with_help(
                        "write OS/ARCH[/VARIANT], e.g. `linux/arm64`, or `${BUILDPLATFORM}`",
                    );
                self.error(fi, d);
                None
            }
        }
    }

    fn plan_stage(&mut self, name: &str) {
        let (fi, target) = self.target(name);
        let Some((base, from_platform)) = target.from_step() else { return };
        let base_value = match self.expand_static(fi, target, base) {
            Ok(v) => v,
            Err(d) => return self.error(fi, d),
        };
        let Some(platform) = self.stage_platform_of(fi, target, from_platform, &base_value) else {
            return;
        };
        self.stage_platform = platform.clone();
        let mut stage_args: BTreeMap<String, String> = BTreeMap::new();
        let mut arg_wins: BTreeSet<String> = BTreeSet::new();
        let (mut parent, mut config) = if base_value == "scratch" {
            (self.scratch_node(), ImageConfig::scratch_for(&platform))
        } else if let Some(end) = self.done.get(&base_value) {
            stage_args.clone_from(&end.args);
            arg_wins.clone_from(&end.arg_wins);
            (end.node, end.config.clone())
        } else {
            match self.base_node(&base_value, fi, base.span, &platform) {
                Some((node, mut config)) => {
                    // BuildKit gives an image without `PATH` the default one.
                    if config.env_var("PATH").is_none() {
                        config.set_env("PATH", DEFAULT_PATH);
                    }
                    (node, config)
                }
                None => return,
            }
        };
        let mut cmd_set_here = false;
        let mut unset_args: BTreeSet<String> = BTreeSet::new();
        let from_span = target.steps[0].span;
        let triggers = self.triggers(fi, &mut config, from_span);
        let diag_mark = self.diags.len();
        let mut remapped = triggers.is_empty();
        let steps = triggers
            .iter()
            .enumerate()
            .map(|(k, (label, step))| (format!("{name}#onbuild{k}"), Some(label), step))
            .chain(
                target
                    .steps
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(n, s)| (format!("{name}#{n}"), None, s)),
            );
        let mut from_template: Option<(usize, Arc<Origin>)> = None;
        for (identity, trigger_label, step) in steps {
            if !remapped && trigger_label.is_none() {
                self.remap_trigger_diags(diag_mark, from_span);
                remapped = true;
            }
            if let Some((mark, origin)) = from_template.take() {
                self.remap_template_diags(mark, fi, &origin, name);
            }
            if let Some(origin) = &step.origin {
                from_template = Some((self.diags.len(), Arc::clone(origin)));
            }
            // A template's step is written in the template's file.
            let node_file = step.origin.as_ref().map_or(fi, |o| o.file);
            let text = self.text(node_file);
            let label = match (trigger_label, &step.origin) {
                (Some(l), _) => l.clone(),
                (None, Some(o)) => {
                    format!("(use {}) {}", o.template, self.label(node_file, step.span))
                }
                (None, None) => self.label(node_file, step.span),
            };
            let parent_node = &self.graph[parent];
            let (parent_key, parent_fs) = (parent_node.key, parent_node.fs_key);
            macro_rules! expand {
                ($v:expr) => {{
                    let view = env_view(&config, &stage_args, &arg_wins);
                    let scope = Scope {
                        globals: &self.globals[fi],
                        stage_args: &stage_args,
                        config: &view,
                    };
                    match scope.expand($v, text) {
                        Ok(x) => x,
                        Err(d) => {
                            self.error(fi, d);
                            continue;
                        }
                    }
                }};
            }
            let config_node = |h: &mut KeyHasher| {
                let key = h.digest(&parent_key).finish();
                let place = Place {
                    stage: name.to_owned(),
                    label: label.clone(),
                    file: node_file,
                    span: step.span,
                };
                Node::new(place, Some(parent), key, parent_fs, Op::Config)
            };
            let node = match &step.kind {
                StepKind::From { .. } | StepKind::Use(_) => continue,
                StepKind::Arg(decl) => {
                    let value = if let Some(v) = self.request.args.get(&decl.name.value) {
                        Some(v.clone())
                    } else if let Some(d) = &decl.default {
                        Some(expand!(d))
                    } else {
                        self.globals[fi].get(&decl.name.value).cloned()
                    };
                    if let Some(v) = value {
                        stage_args.insert(decl.name.value.clone(), v);
                        unset_args.remove(&decl.name.value);
                        arg_wins.insert(decl.name.value.clone());
                    } else {
                        // Declared without a value: `${NAME}` is empty, and `run` steps do
                        // not see it at all (BuildKit leaves it unset).
                        stage_args.insert(decl.name.value.clone(), String::new());
                        unset_args.insert(decl.name.value.clone());
                    }
                    continue;
                }
                StepKind::Env(pairs) => {
                    // Every value sees the environment from before this step, as in Docker.
                    let mut values = Vec::new();
                    for (k, v) in pairs {
                        values.push((k.value.clone(), expand!(v)));
                    }
                    let mut h = KeyHasher::new("env");
                    for (k, v) in &values {
                        arg_wins.remove(k);
                        config.set_env(k, v);
                        h.str(k).str(v);
                    }
                    config_node(&mut h)
                }
                StepKind::Label(pairs) => {
                    let mut h = KeyHasher::new("label");
                    for (k, v) in pairs {
                        let (k, v) = (expand!(k), expand!(v));
                        config.set_label(&k, &v);
                        h.str(&k).str(&v);
                    }
                    config_node(&mut h)
                }
                StepKind::Workdir(p) => {
                    let p = expand!(p);
                    let current = config.string("WorkingDir").unwrap_or_else(|| "/".into());
                    let path = absolute(&current, &p);
                    // BuildKit keeps an absolute path as written (`/app/` stays `/app/`) and
                    // cleans only the join of a relative one.
                    let shown = if p.starts_with('/') { p.clone() } else { path.clone() };
                    config.set_string("WorkingDir", &shown);
                    let user = config.string("User").unwrap_or_default();
                    let key =
                        KeyHasher::new("workdir").digest(&parent_fs).str(&path).str(&user).finish();
                    let place =
                        Place { stage: name.to_owned(), label, file: node_file, span: step.span };
                    Node::new(place, Some(parent), key, key, Op::Workdir { path, user })
                }
                StepKind::User(u) => {
                    let u = expand!(u);
                    config.set_string("User", &u);
                    config_node(KeyHasher::new("user").str(&u))
                }
                StepKind::Shell(argv) => {
                    let argv: Vec<String> = argv.iter().map(|a| a.value.clone()).collect();
                    config.set_strings("Shell", &argv);
                    config_node(KeyHasher::new("shell").strs(&argv))
                }
                StepKind::StopSignal(s) => {
                    let s = expand!(s);
                    config.set_string("StopSignal", &s);
                    config_node(KeyHasher::new("stopsignal").str(&s))
                }
                StepKind::Maintainer(m) => {
                    let m = expand!(m);
                    config.0.insert("author".into(), Value::String(m.clone()));
                    config_node(KeyHasher::new("maintainer").str(&m))
                }
                StepKind::Cmd(argv) => {
                    let argv: Vec<String> = argv.iter().map(|a| a.value.clone()).collect();
                    set_argv(&mut config, "Cmd", &argv);
                    cmd_set_here = true;
                    config_node(KeyHasher::new("cmd").strs(&argv))
                }
                StepKind::Entrypoint(argv) => {
                    let argv: Vec<String> = argv.iter().map(|a| a.value.clone()).collect();
                    set_argv(&mut config, "Entrypoint", &argv);
                    // Docker: a new entrypoint drops a command inherited from the base.
                    if !cmd_set_here {
                        config.config_mut().remove("Cmd");
                    }
                    config_node(KeyHasher::new("entrypoint").strs(&argv))
                }
                StepKind::Expose(ports) => {
                    let mut h = KeyHasher::new("expose");
                    for p in ports {
                        let v = expand!(p);
                        match normalize_port(&v) {
                            Some(ports) => {
                                for port in ports {
                                    config.add_to_set("ExposedPorts", &port);
                                    h.str(&port);
                                }
                            }
                            None => self.error(
                                fi,
                                Diagnostic::error("invalid-port", format!("`{v}` is not a port"), p.span, "not a port")
                                    .with_help("write a port number, optionally with a protocol: \"8080\", \"53/udp\""),
                            ),
                        }
                    }
                    config_node(&mut h)
                }
                StepKind::Volume(vols) => {
                    let mut h = KeyHasher::new("volume");
                    for v in vols {
                        let v = expand!(v);
                        config.add_to_set("Volumes", &v);
                        h.str(&v);
                    }
                    config_node(&mut h)
                }
                StepKind::Onbuild(triggers) => {
                    let mut h = KeyHasher::new("onbuild");
                    for t in triggers {
                        if let Err(message) = onbuild::check(&t.value) {
                            self.error(
                                fi,
                                Diagnostic::error(
                                    "invalid-onbuild",
                                    message,
                                    t.span,
                                    "this trigger",
                                )
                                .with_help(
                                    "write one Dockerfile instruction, e.g. `onbuild \"RUN make\"`",
                                ),
                            );
                            continue;
                        }
                        let mut list = config.strings("OnBuild");
                        list.push(t.value.clone());
                        config.set_strings("OnBuild", &list);
                        h.str(&t.value);
                    }
                    config_node(&mut h)
                }
                StepKind::Healthcheck(hc) => {
                    let value = healthcheck_json(hc);
                    config.config_mut().insert("Healthcheck".into(), value.clone());
                    config_node(KeyHasher::new("healthcheck").str(&value.to_string()))
                }
                StepKind::File(f) => {
                    let path = expand!(&f.path);
                    let current = config.string("WorkingDir").unwrap_or_else(|| "/".into());
                    let path = absolute(&current, &path);
                    let chown = match &f.chown {
                        Some(c) => Some(expand!(c)),
                        None => None,
                    };
                    let content = if f.expand {
                        let scope = Scope {
                            globals: &self.globals[fi],
                            stage_args: &stage_args,
                            config: &config,
                        };
                        match scope.expand(&f.content, text) {
                            Ok(x) => x,
                            Err(mut d) => {
                                // Scripts and configs often hold `${…}` for their own use.
                                if d.code == "undefined-variable" {
                                    let help = d.help.take().unwrap_or_default();
                                    d = d.with_help(format!(
                                        "{help}\nfile content is expanded like every value: write `$${{` for a literal `${{`, or add `expand=#false` to write the content as it is"
                                    ));
                                }
                                self.error(fi, d);
                                continue;
                            }
                        }
                    } else {
                        f.content.value.clone()
                    };
                    let chmod = match &f.chmod {
                        Some(m) => match self.mode(fi, m) {
                            Some(m) => m,
                            None => continue,
                        },
                        None => 0o644,
                    };
                    let key = KeyHasher::new("file")
                        .digest(&parent_fs)
                        .str(&path)
                        .str(&content)
                        .opt_str(chown.as_deref())
                        .u64(u64::from(chmod))
                        .finish();
                    let op = Op::File(FileOp { path, content: content.into_bytes(), chown, chmod });
                    let place =
                        Place { stage: name.to_owned(), label, file: node_file, span: step.span };
                    Node::new(place, Some(parent), key, key, op)
                }
                StepKind::Copy(_) | StepKind::Run(_) => {
                    let view = env_view(&config, &stage_args, &arg_wins).into_owned();
                    let planned = match &step.kind {
                        StepKind::Copy(c) => self
                            .copy(fi, c, &stage_args, &view, parent_fs)
                            .map(|(op, key, src, inputs)| (Op::Copy(op), key, src, inputs)),
                        StepKind::Run(r) => self
                            .run_step(fi, r, &stage_args, &unset_args, &view, parent_fs)
                            .map(|(op, key, src, inputs)| (Op::Run(op), key, src, inputs)),
                        _ => unreachable!("matched above"),
                    };
                    let Some((op, key, sources, inputs)) = planned else { continue };
                    let place =
                        Place { stage: name.to_owned(), label, file: node_file, span: step.span };
                    let node = Node {
                        identity: identity.clone(),
                        inputs,
                        ..Node::new(place, Some(parent), key, key, op)
                    };
                    parent = self.add_node(node, &sources);
                    continue;
                }
            };
            let mut node = node;
            if node.op.makes_layer() {
                node.identity = identity;
                node.inputs = simple_inputs(&node.op, parent_fs);
            }
            parent = self.add_node(node, &[]);
        }
        if !remapped {
            self.remap_trigger_diags(diag_mark, from_span);
        }
        if let Some((mark, origin)) = from_template.take() {
            self.remap_template_diags(mark, fi, &origin, name);
        }
        self.done.insert(
            name.to_owned(),
            StageEnd { node: parent, config, args: stage_args, arg_wins, platform },
        );
    }

    pub(super) fn mode(&mut self, file: usize, m: &Spanned<String>) -> Option<u32> {
        let parsed = parse_mode(&m.value);
        if parsed.is_none() {
            self.error(
                file,
                Diagnostic::error(
                    "invalid-mode",
                    format!("`{}` is not an octal mode", m.value),
                    m.span,
                    "not octal",
                )
                .with_help("write the mode as an octal string, e.g. \"0755\""),
            );
        }
        parsed
    }
}

/// Resolves `path` against `base` and normalises it to an absolute path (keeps a trailing `/`
/// off; `..` stops at the root).
pub(super) fn absolute(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_owned() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The environment values and `run` steps see: the image's, except that an `arg` declared
/// (with a value) after an `env` of the same name wins until the next `env` sets it again.
/// `BuildKit` adds such an arg to the build state's environment, not to the image config.
pub(super) fn env_view<'a>(
    config: &'a ImageConfig,
    stage_args: &BTreeMap<String, String>,
    arg_wins: &BTreeSet<String>,
) -> std::borrow::Cow<'a, ImageConfig> {
    let shadowed: Vec<(&String, &String)> = arg_wins
        .iter()
        .filter(|k| config.env_var(k).is_some())
        .filter_map(|k| stage_args.get(k).map(|v| (k, v)))
        .collect();
    if shadowed.is_empty() {
        return std::borrow::Cow::Borrowed(config);
    }
    let mut view = config.clone();
    for (k, v) in shadowed {
        view.set_env(k, v);
    }
    std::borrow::Cow::Owned(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_docker() {
        assert_eq!(absolute("/app", "src/"), "/app/src");
        assert_eq!(absolute("/app", "/etc/x"), "/etc/x");
        assert_eq!(absolute("/", "../../x"), "/x");
        assert_eq!(absolute("/a/b", "."), "/a/b");
    }
}
