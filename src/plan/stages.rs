//! The planner proper: orders the stages an image needs, detects cycles, and turns each
//! stage's steps into DAG nodes with keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use miette::SourceSpan;
use petgraph::graph::DiGraph;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde_json::Value;

use super::onbuild;
use super::scope::Scope;
use super::{
    CopyOp, CopySource, EdgeKind, FileDiagnostic, FileInput, FileOp, ImageTarget, NamedContext,
    Node, Op, Place, Plan, PlanRequest, PlannedMount, Resolver, RunOp, hash_selected,
};
use crate::context::{ContextError, FileKind, SelectError, normalize};
use crate::diag::{Diagnostic, did_you_mean};
use crate::digest::{Digest, KeyHasher, OciDigest};
use crate::oci::image::{DEFAULT_PATH, ImageConfig, Platform};
use crate::syntax::ast::{
    CopyStep, Healthcheck, Origin, RunMount, RunStep, Spanned, StepKind, Target, TargetKind,
};
use crate::syntax::{is_git_source, parse_duration, parse_mode};

pub(super) struct Planner<'a> {
    files: &'a [FileInput],
    request: &'a PlanRequest,
    resolver: &'a dyn Resolver,
    diags: Vec<FileDiagnostic>,
    graph: StableDiGraph<Node, EdgeKind>,
    /// The top-level args each file sees, by file index: the predefined ones, the main file's,
    /// and (for an included file) its own.
    globals: Vec<BTreeMap<String, String>>,
    /// Stage name → (file, index of the target in that file).
    stages: BTreeMap<String, (usize, usize)>,
    done: HashMap<String, StageEnd>,
    /// (platform, reference) → the base node loaded for it.
    bases: HashMap<(String, String), NodeIndex>,
    scratch: Option<NodeIndex>,
    /// The platform this branch builds images for (`TARGETPLATFORM`).
    target_platform: Platform,
    /// The platform of the stage being planned: its `from`'s `platform=`, its base stage's,
    /// else the target.
    stage_platform: Platform,
}

#[derive(Clone)]
struct StageEnd {
    node: NodeIndex,
    config: ImageConfig,
    /// The stage's args at its end: a stage built `from` it starts with them, as in `BuildKit`.
    args: BTreeMap<String, String>,
    /// Args declared after an `env` of the same name, which win over it (see [`env_view`]).
    arg_wins: BTreeSet<String>,
    /// The platform the stage's steps run on.
    platform: Platform,
}

/// A reference to something a stage depends on, and where it is written.
struct Dependency {
    stage: String,
    file: usize,
    span: SourceSpan,
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

    fn error(&mut self, file: usize, d: Diagnostic) {
        self.diags.push(FileDiagnostic { file, diagnostic: d });
    }

    fn text(&self, file: usize) -> &'a str {
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

    fn collect_globals(&mut self) {
        let mut base = BTreeMap::new();
        for (name, value) in predefined_args(&self.target_platform, &Platform::host()) {
            let value = self.request.args.get(&name).cloned().unwrap_or(value);
            base.insert(name, value);
        }
        let main = self.file_args(0, base);
        self.globals = vec![main.clone()];
        for fi in 1..self.files.len() {
            let own = self.file_args(fi, main.clone());
            self.globals.push(own);
        }
    }

    /// `seen` with file `fi`'s own top-level args added: `--arg`, else the value its
    /// `include` gives, else its default.
    fn file_args(
        &mut self,
        fi: usize,
        mut seen: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let Some(file) = self.files.get(fi) else { return seen };
        let given = file.included.as_ref().map_or(&[][..], |i| &i.args[..]);
        self.check_include_args(fi);
        for arg in &file.ast.args {
            let name = arg.name.value.clone();
            if fi > 0 {
                self.check_arg_clash(fi, arg);
            }
            let included = given.iter().rev().find(|(n, _)| n.value == name);
            let (written, in_file) = match (included, &arg.default) {
                (Some((_, v)), _) => (Some(v), file.included.as_ref().map_or(fi, |i| i.by)),
                (None, d) => (d.as_ref(), fi),
            };
            let value = if let Some(v) = self.request.args.get(&name) {
                v.clone()
            } else if let Some(written) = written {
                let empty = BTreeMap::new();
                let config = ImageConfig(serde_json::Map::new());
                let scope = Scope { globals: &seen, stage_args: &empty, config: &config };
                match scope.expand(written, self.text(in_file)) {
                    Ok(v) => v,
                    Err(d) => {
                        self.error(in_file, d);
                        continue;
                    }
                }
            } else {
                String::new()
            };
            seen.insert(name, value);
        }
        seen
    }

    /// An included file's args are its own; one the main file declares too would mean two
    /// different things in two places.
    fn check_arg_clash(&mut self, fi: usize, arg: &crate::syntax::ast::ArgDecl) {
        let main = &self.files[0];
        let Some(first) = main.ast.args.iter().find(|a| a.name.value == arg.name.value) else {
            return;
        };
        let name = &arg.name.value;
        let d = Diagnostic::error(
            "duplicate-arg",
            format!("arg `{name}` is declared here and in the main file `{}`", main.source.name),
            arg.name.span,
            "declared again",
        )
        .with_help("the main file's args are seen by every file: remove one, or rename this one")
        .with_note(&main.source, first.name.span, "declared in the main file");
        self.error(fi, d);
    }

    /// Every `include … { arg NAME … }` names an arg the included file declares.
    fn check_include_args(&mut self, fi: usize) {
        let file = &self.files[fi];
        let Some(included) = &file.included else { return };
        let declared: Vec<&str> = file.ast.args.iter().map(|a| a.name.value.as_str()).collect();
        for (name, _) in &included.args {
            if declared.contains(&name.value.as_str()) {
                continue;
            }
            let mut d = Diagnostic::error(
                "unknown-include-arg",
                format!("`{}` declares no top-level arg `{}`", file.source.name, name.value),
                name.span,
                "not an arg of the included file",
            );
            d = match did_you_mean(&name.value, declared.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("declare `arg {}` in that file", name.value)),
            };
            self.error(included.by, d);
        }
    }

    /// A named context never shadows a stage silently: the same name for both is an error
    /// naming both (the stage would win in one place and the context in another).
    fn check_named_contexts(&mut self) {
        for name in self.request.contexts.keys() {
            if let Some(&(fi, ti)) = self.stages.get(name) {
                let span = self.files[fi].ast.targets[ti].name.span;
                self.error(
                    fi,
                    Diagnostic::error(
                        "context-shadows-stage",
                        format!(
                            "the named context `{name}` (`--build-context {name}=…`) has the same \
                             name as the stage `{name}`"
                        ),
                        span,
                        "this stage",
                    )
                    .with_help("rename the stage, or give the context another name"),
                );
            }
        }
    }

    /// The named context folder `from=` names, when it names one (and no stage).
    fn named_dir(&self, name: &str) -> Option<&'a PathBuf> {
        match self.request.contexts.get(name) {
            Some(NamedContext::Dir(d)) if !self.stages.contains_key(name) => Some(d),
            _ => None,
        }
    }

    fn collect_stages(&mut self) {
        let mut seen: HashMap<String, (usize, SourceSpan)> = HashMap::new();
        for (fi, file) in self.files.iter().enumerate() {
            for (ti, target) in file.ast.targets.iter().enumerate() {
                let name = &target.name.value;
                if let Some(&(first_file, first_span)) = seen.get(name) {
                    let first = &self.files[first_file].source;
                    let message = if first_file == fi {
                        format!("`{name}` is defined twice")
                    } else {
                        format!("`{name}` is defined twice (first in `{}`)", first.name)
                    };
                    let d = Diagnostic::error(
                        "duplicate-stage",
                        message,
                        target.name.span,
                        "second definition",
                    )
                    .with_help("stage and image names must be unique across all included files")
                    .with_place(
                        first_file == fi,
                        first,
                        first_span,
                        "first defined here",
                    );
                    self.error(fi, d);
                    continue;
                }
                seen.insert(name.clone(), (fi, target.name.span));
                self.stages.insert(name.clone(), (fi, ti));
            }
        }
    }

    fn target(&self, name: &str) -> (usize, &'a Target) {
        let (fi, ti) = self.stages[name];
        (fi, &self.files[fi].ast.targets[ti])
    }

    fn requested(&mut self) -> Vec<String> {
        if self.request.targets.is_empty() {
            let images: Vec<String> = self
                .files
                .iter()
                .flat_map(|f| f.ast.targets.iter())
                .filter(|t| t.kind == TargetKind::Image)
                .map(|t| t.name.value.clone())
                .collect();
            if images.is_empty() && self.diags.is_empty() {
                let span = self.files[0]
                    .ast
                    .targets
                    .first()
                    .map_or(SourceSpan::from((0, 0)), |t| t.name.span);
                self.error(
                    0,
                    Diagnostic::error(
                        "no-image",
                        "the build file declares no `image`",
                        span,
                        "only stages here",
                    )
                    .with_help("declare `image NAME { … }`, or name a stage with `--target`"),
                );
            }
            let mut unique = Vec::new();
            for i in images {
                if !unique.contains(&i) {
                    unique.push(i);
                }
            }
            return unique;
        }
        let mut out = Vec::new();
        for t in &self.request.targets {
            if self.stages.contains_key(t) {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            } else {
                let names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
                let mut d = Diagnostic::error(
                    "unknown-target",
                    format!("`--target {t}` names no image or stage"),
                    (0, 0),
                    "targets are looked up in this file",
                );
                d = match did_you_mean(t, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("the file defines: {}", names.join(", "))),
                };
                self.error(0, d);
            }
        }
        out
    }

    /// Expands a value that may only use build args (stage names, `from` references).
    fn expand_static(
        &self,
        file: usize,
        target: &Target,
        value: &Spanned<String>,
    ) -> Result<String, Diagnostic> {
        let mut stage_args = BTreeMap::new();
        for step in &target.steps {
            if let StepKind::Arg(a) = &step.kind {
                let v = self
                    .request
                    .args
                    .get(&a.name.value)
                    .cloned()
                    .or_else(|| a.default.as_ref().map(|d| d.value.clone()));
                stage_args.insert(a.name.value.clone(), v.unwrap_or_default());
            }
        }
        let config = ImageConfig(serde_json::Map::new());
        let stage_file = self.stages.get(&target.name.value).map_or(file, |s| s.0);
        Scope { globals: &self.globals[stage_file], stage_args: &stage_args, config: &config }
            .expand(value, self.text(file))
    }

    /// The stages a stage reads from.
    fn dependencies(&mut self, name: &str) -> Vec<Dependency> {
        let (fi, target) = self.target(name);
        let mut refs: Vec<(usize, &Spanned<String>)> = Vec::new();
        for step in &target.steps {
            let sf = step.origin.as_ref().map_or(fi, |o| o.file);
            match &step.kind {
                StepKind::From { base, .. } => refs.push((sf, base)),
                StepKind::Copy(c) => refs.extend(c.from.as_ref().map(|f| (sf, f))),
                StepKind::Run(r) => {
                    for m in &r.mounts {
                        match m {
                            RunMount::Bind { from: Some(f), .. }
                            | RunMount::Cache { from: Some(f), .. } => refs.push((sf, f)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let mut deps = Vec::new();
        for (sf, r) in refs {
            match self.expand_static(sf, target, r) {
                Ok(v) if self.stages.contains_key(&v) => {
                    deps.push(Dependency { stage: v, file: sf, span: r.span });
                }
                Ok(_) => {}
                Err(d) => self.error(sf, d),
            }
        }
        deps
    }

    /// Orders the needed stages so that each comes after what it reads; reports cycles.
    fn order(&mut self, requested: &[String]) -> Vec<String> {
        let mut needed: BTreeSet<String> = BTreeSet::new();
        let mut edges: Vec<(String, Dependency)> = Vec::new();
        let mut todo: Vec<String> = requested.to_vec();
        while let Some(name) = todo.pop() {
            if !needed.insert(name.clone()) {
                continue;
            }
            for dep in self.dependencies(&name) {
                todo.push(dep.stage.clone());
                edges.push((name.clone(), dep));
            }
        }
        let mut g: DiGraph<String, usize> = DiGraph::new();
        let idx: HashMap<String, petgraph::graph::NodeIndex> =
            needed.iter().map(|n| (n.clone(), g.add_node(n.clone()))).collect();
        for (i, (from, dep)) in edges.iter().enumerate() {
            g.add_edge(idx[&dep.stage], idx[from], i);
        }
        if let Ok(order) = petgraph::algo::toposort(&g, None) {
            order.into_iter().map(|i| g[i].clone()).collect()
        } else {
            let mut blocked: Vec<petgraph::graph::NodeIndex> = Vec::new();
            for scc in petgraph::algo::kosaraju_scc(&g) {
                let cyclic = scc.len() > 1 || g.find_edge(scc[0], scc[0]).is_some();
                if !cyclic {
                    continue;
                }
                blocked.extend(&scc);
                let members: BTreeSet<&str> = scc.iter().map(|i| g[*i].as_str()).collect();
                // Walk the cycle from its first member (sorted) for a stable message.
                let start = *members.iter().next().expect("non-empty");
                let mut path = vec![start.to_owned()];
                let mut cur = start.to_owned();
                let mut closing = None;
                for _ in 0..=members.len() {
                    let Some((_, dep)) = edges
                        .iter()
                        .filter(|(from, dep)| *from == cur && members.contains(dep.stage.as_str()))
                        .min_by(|a, b| a.1.stage.cmp(&b.1.stage))
                    else {
                        break;
                    };
                    closing = Some(dep);
                    if dep.stage == start {
                        break;
                    }
                    cur.clone_from(&dep.stage);
                    path.push(cur.clone());
                }
                path.push(start.to_owned());
                if let Some(dep) = closing {
                    self.error(
                        dep.file,
                        Diagnostic::error(
                            "stage-cycle",
                            format!("stages depend on each other in a cycle: {}", path.join(" → ")),
                            dep.span,
                            "this closes the cycle",
                        )
                        .with_help("a stage cannot read, directly or indirectly, from itself"),
                    );
                }
            }
            Self::order_without(g, &blocked)
        }
    }

    /// The stages of `g` in dependency order, leaving out `blocked` (stages in a cycle) and
    /// every stage that needs one: the others are still planned, so their problems are
    /// reported in the same run.
    fn order_without(
        mut g: DiGraph<String, usize>,
        blocked: &[petgraph::graph::NodeIndex],
    ) -> Vec<String> {
        let mut out = BTreeSet::new();
        let mut todo = blocked.to_vec();
        while let Some(n) = todo.pop() {
            if out.insert(g[n].clone()) {
                todo.extend(g.neighbors_directed(n, petgraph::Direction::Outgoing));
            }
        }
        g.retain_nodes(|g, n| !out.contains(&g[n]));
        petgraph::algo::toposort(&g, None)
            .map(|order| order.into_iter().map(|i| g[i].clone()).collect())
            .unwrap_or_default()
    }

    fn add_node(&mut self, node: Node, source_edges: &[NodeIndex]) -> NodeIndex {
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

    fn scratch_node(&mut self) -> NodeIndex {
        if let Some(n) = self.scratch {
            return n;
        }
        let key = KeyHasher::new("scratch").finish();
        let n = self.add_node(
            Node::new(
                Place {
                    stage: String::new(),
                    label: "scratch".into(),
                    file: 0,
                    span: (0, 0).into(),
                },
                None,
                key,
                key,
                Op::Scratch,
            ),
            &[],
        );
        self.scratch = Some(n);
        n
    }

    /// The node that provides an image's layers, loaded once per reference.
    fn base_node(
        &mut self,
        reference: &str,
        file: usize,
        span: SourceSpan,
        platform: &Platform,
    ) -> Option<(NodeIndex, ImageConfig)> {
        // A named context stands for what `--build-context` gave: an image, or a folder,
        // which `copy from=`/`bind from=` read (and which is no base).
        match self.request.contexts.get(reference) {
            Some(NamedContext::Image(image)) if !self.stages.contains_key(reference) => {
                return self.base_node(&image.clone(), file, span, platform);
            }
            Some(NamedContext::Dir(dir)) if !self.stages.contains_key(reference) => {
                self.error(
                    file,
                    Diagnostic::error(
                        "context-as-base",
                        format!(
                            "the named context `{reference}` is the folder `{}`, which is no image",
                            dir.display()
                        ),
                        span,
                        "not an image",
                    )
                    .with_help("a folder context is read with `copy from=` or `bind from=`; give an image as `--build-context NAME=docker-image://REF`"),
                );
                return None;
            }
            _ => {}
        }
        let base_key = (platform.to_string(), reference.to_owned());
        if let Some(n) = self.bases.get(&base_key)
            && let Op::Base { image, .. } = &self.graph[*n].op
        {
            let config = image.config.clone();
            return Some((*n, strip(config)));
        }
        // A stage of this build that is not planned failed (stages are planned after those
        // they read): its error is already reported, and it is no image to look for.
        if self.stages.contains_key(reference) {
            return None;
        }
        // A plain word close to a stage name is a typo, not an image to pull from Docker Hub.
        if !reference.contains(['/', ':', '@', '.']) {
            let stage_names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
            if let Some(s) = did_you_mean(reference, stage_names.iter().copied()) {
                self.error(
                    file,
                    Diagnostic::error("unknown-stage", format!("`{reference}` is not a stage of this build"), span, "no such stage")
                        .with_help(format!("did you mean stage `{s}`? (to use an image of that name, write its full reference, e.g. `docker.io/library/{reference}:latest`)")),
                );
                return None;
            }
        }
        match self.resolver.image(reference, file, platform) {
            Ok(image) => {
                let key = KeyHasher::new("base").str(&image.manifest_digest.to_string()).finish();
                let config = strip(image.config.clone());
                let n = self.add_node(
                    Node::new(
                        Place {
                            stage: String::new(),
                            label: format!("from {reference}"),
                            file,
                            span,
                        },
                        None,
                        key,
                        key,
                        Op::Base { reference: reference.to_owned(), image: Arc::clone(&image) },
                    ),
                    &[],
                );
                self.bases.insert(base_key, n);
                Some((n, config))
            }
            Err(problem) => {
                let stage_names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
                // A registry that cannot be reached is no mistake in the build file.
                let code = if problem.unreachable { "base-unreachable" } else { "unknown-base" };
                let mut d = Diagnostic::error(code, problem.message, span, "cannot use this base");
                if let Some(s) = did_you_mean(reference, stage_names.iter().copied()) {
                    d = d.with_help(format!("did you mean stage `{s}`?"));
                } else if !reference.contains(':') && !reference.contains('/') {
                    d = d.with_help(format!(
                        "`{reference}` is not a stage of this build; stages are: {}",
                        if stage_names.is_empty() {
                            "(none)".to_owned()
                        } else {
                            stage_names.join(", ")
                        }
                    ));
                }
                self.error(file, d);
                None
            }
        }
    }

    /// Takes the `ONBUILD` triggers of a stage's base out of its config (they do not pass on
    /// to the stages built from this one) and returns the steps they stand for.
    fn triggers(
        &mut self,
        file: usize,
        config: &mut ImageConfig,
        from_span: SourceSpan,
    ) -> Vec<(String, crate::syntax::ast::Step)> {
        let triggers = config.strings("OnBuild");
        config.config_mut().remove("OnBuild");
        if triggers.is_empty() {
            return Vec::new();
        }
        match onbuild::steps(&triggers, from_span) {
            Ok(steps) => steps,
            Err(message) => {
                self.error(
                    file,
                    Diagnostic::error(
                        "invalid-onbuild",
                        format!("this base cannot be used: {message}"),
                        from_span,
                        "this base",
                    ),
                );
                Vec::new()
            }
        }
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

    fn label(&self, file: usize, span: SourceSpan) -> String {
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

    fn mode(&mut self, file: usize, m: &Spanned<String>) -> Option<u32> {
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

    /// Resolves a stage name or image reference used by `copy from=` or a mount.
    fn source_node(&mut self, file: usize, value: &str, span: SourceSpan) -> Option<NodeIndex> {
        if let Some(end) = self.done.get(value) {
            return Some(end.node);
        }
        let platform = self.target_platform.clone();
        self.base_node(value, file, span, &platform).map(|(n, _)| n)
    }

    /// Checks what a `copy`/`add` may fetch: `http(s)` URLs, only with `add`, all sources
    /// alike, no `from=`; git sources are not supported. Returns whether the sources are URLs.
    fn check_remote_sources(
        &mut self,
        fi: usize,
        c: &CopyStep,
        sources: &[(String, SourceSpan)],
        has_from: bool,
    ) -> Option<bool> {
        let mut urls = 0;
        for (s, span) in sources {
            let fail = |code: &'static str, message: String, help: &str| {
                Diagnostic::error(code, message, *span, "this source").with_help(help.to_owned())
            };
            if is_url(s) && !is_git_source(s) {
                urls += 1;
                if !c.add {
                    self.error(
                        fi,
                        fail(
                            "copy-url",
                            format!("`copy` does not fetch `{s}`"),
                            "use `add` to download a URL",
                        ),
                    );
                    return None;
                }
            } else if s.contains("://") || s.starts_with("git@") {
                let what = if is_git_source(s) { "a git source" } else { "a remote source" };
                self.error(
                    fi,
                    fail(
                        "unsupported-remote-source",
                        format!("`{s}` is {what}, which stack cannot fetch yet"),
                        "clone it in a `run` step, or add it to the build context",
                    ),
                );
                return None;
            }
        }
        if urls > 0 && (urls != sources.len() || has_from) {
            let span = sources[0].1;
            self.error(
                fi,
                Diagnostic::error(
                    "mixed-sources",
                    "URLs cannot be mixed with context files or `from=` in one step",
                    span,
                    "here",
                )
                .with_help("use one `add` for the URLs and another step for the rest"),
            );
            return None;
        }
        if urls != 1
            && let Some(cs) = &c.checksum
        {
            self.error(
                fi,
                Diagnostic::error(
                    "checksum-without-url",
                    "`checksum=` applies to an `add` of exactly one URL",
                    cs.span,
                    "here",
                ),
            );
            return None;
        }
        Some(urls > 0)
    }

    /// The `checksum="sha256:…"` of an `add`, parsed (`Err` once the error is reported).
    fn checksum(&mut self, fi: usize, c: &CopyStep) -> Result<Option<OciDigest>, ()> {
        let Some(cs) = &c.checksum else { return Ok(None) };
        match cs.value.parse::<OciDigest>() {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                self.error(
                    fi,
                    Diagnostic::error(
                        "invalid-checksum",
                        format!("`{}` is not a checksum: {e}", cs.value),
                        cs.span,
                        "here",
                    )
                    .with_help("write checksum=\"sha256:<64 hex digits>\""),
                );
                Err(())
            }
        }
    }

    fn copy(
        &mut self,
        fi: usize,
        c: &CopyStep,
        stage_args: &BTreeMap<String, String>,
        config: &ImageConfig,
        parent_fs: Digest,
    ) -> Option<(CopyOp, Digest, Vec<NodeIndex>, Vec<(String, String)>)> {
        let text = self.text(fi);
        let globals = self.globals[fi].clone();
        let scope = Scope { globals: &globals, stage_args, config };
        let mut failed = false;
        let mut expand = |v: &Spanned<String>, this: &mut Self| match scope.expand(v, text) {
            Ok(x) => Some(x),
            Err(d) => {
                this.error(fi, d);
                failed = true;
                None
            }
        };
        let sources: Vec<(String, SourceSpan)> =
            c.sources.iter().filter_map(|s| expand(s, self).map(|v| (v, s.span))).collect();
        let dest_raw = expand(&c.dest, self)?;
        let from = c.from.as_ref().and_then(|f| expand(f, self).map(|v| (v, f.span)));
        let chown = c.chown.as_ref().and_then(|v| expand(v, self));
        let excludes: Vec<String> = c.excludes.iter().filter_map(|e| expand(e, self)).collect();
        let chmod = match &c.chmod {
            Some(m) => Some(self.mode(fi, m)?),
            None => None,
        };
        if failed {
            return None;
        }
        let urls = self.check_remote_sources(fi, c, &sources, from.is_some())?;
        let workdir = config.string("WorkingDir").unwrap_or_else(|| "/".into());
        let dest = absolute(&workdir, &dest_raw);
        // A URL's `?` starts its query, not a pattern.
        let has_glob = !urls && sources.iter().any(|(s, _)| s.contains(['*', '?', '[']));
        let dest_is_dir =
            dest_raw.ends_with('/') || dest_raw.ends_with("/.") || sources.len() > 1 || has_glob;
        let mut h = KeyHasher::new("copy");
        h.digest(&parent_fs).str(&dest).bool(dest_is_dir).opt_str(chown.as_deref());
        match chmod {
            Some(m) => h.u8(1).u64(u64::from(m)),
            None => h.u8(0),
        };
        h.bool(c.add).bool(c.parents).strs(&excludes);
        let mut edges = Vec::new();
        // `from=NAME` of a `--build-context NAME=DIR` reads that folder like the context.
        let named: Option<String> =
            from.as_ref().and_then(|(f, _)| self.named_dir(f).map(|_| f.clone()));
        let source = match from {
            None if urls => {
                let checksum = self.checksum(fi, c).ok()?;
                let mut files = Vec::new();
                for (url, span) in &sources {
                    let name = url_file_name(url);
                    if name.is_empty() && dest_is_dir {
                        self.error(
                            fi,
                            Diagnostic::error(
                                "remote-source-unnamed",
                                format!("`{url}` names no file, so it needs a file destination"),
                                *span,
                                "no file name in this URL",
                            )
                            .with_help(
                                "write the destination as a file path, e.g. to=\"/opt/tool\"",
                            ),
                        );
                        return None;
                    }
                    match self.resolver.remote(url, checksum.as_ref()) {
                        Ok(file) => {
                            // The content and the name it lands under make the key, not the URL.
                            h.u8(2).str(&name).str(&file.digest.to_string());
                            files.push((name, file));
                        }
                        Err(e) => {
                            self.error(
                                fi,
                                Diagnostic::error(
                                    "remote-source-failed",
                                    format!("cannot fetch `{url}`: {e}"),
                                    *span,
                                    "this URL",
                                ),
                            );
                            return None;
                        }
                    }
                }
                CopySource::Remote { files }
            }
            Some((from, span)) if named.is_none() => {
                let node = self.source_node(fi, &from, span)?;
                let paths: Vec<String> = sources.iter().map(|(s, _)| absolute("/", s)).collect();
                h.u8(1).digest(&self.graph[node].fs_key).strs(&paths);
                edges.push(node);
                CopySource::Node { node, paths }
            }
            _ => {
                let context_dir = match &named {
                    Some(n) => self.request.contexts_dir(n),
                    None => self.files[fi].context_dir.clone(),
                };
                let mut selected = Vec::new();
                let mut normalized = Vec::new();
                for (s, span) in &sources {
                    let Some(norm) = normalize(s) else {
                        self.error(
                            fi,
                            Diagnostic::error("source-outside-context", format!("`{s}` is outside the build context"), *span, "outside the context")
                                .with_help(format!(
                                    "the context is `{}`; move the file into it, or run stack from a folder that contains it",
                                    context_dir.display()
                                )),
                        );
                        return None;
                    };
                    let sel = match &named {
                        Some(n) => self.resolver.select_named(n, s, &excludes),
                        None => self.resolver.select(fi, s, &excludes),
                    };
                    match sel {
                        Ok(sel) => selected.push(sel),
                        Err(e) => {
                            let (code, help) = match &e {
                                SelectError::Outside { .. } => (
                                    "source-outside-context",
                                    "a symlink in the context points outside it",
                                ),
                                SelectError::NotFound { excluded: true, .. } => (
                                    "source-excluded",
                                    "remove it from `.stackignore`/`.dockerignore`, or add a `!` exception",
                                ),
                                SelectError::NotFound { .. } => {
                                    ("source-not-found", "paths are relative to the build context")
                                }
                                SelectError::Reserved { .. } => (
                                    "source-reserved",
                                    "stack never copies its own output or store into an image; copy the files from elsewhere, or write the output elsewhere with `--out`",
                                ),
                                SelectError::SymlinkLoop { .. } => (
                                    "symlink-loop",
                                    "a symlink on this path leads back to itself; fix or remove it",
                                ),
                                SelectError::Context(ContextError::Socket { .. }) => (
                                    "unsupported-file",
                                    "an image cannot hold a socket; add it to `.stackignore`",
                                ),
                                _ => ("context-error", "check the file's permissions"),
                            };
                            self.error(
                                fi,
                                Diagnostic::error(code, e.to_string(), *span, "cannot copy this")
                                    .with_help(help),
                            );
                            return None;
                        }
                    }
                    normalized.push(norm);
                }
                h.u8(0);
                for sel in &selected {
                    hash_selected(&mut h, sel);
                }
                CopySource::Context { selected, sources: normalized }
            }
        };
        let mut inputs = vec![
            ("parent".to_owned(), parent_fs.to_hex()),
            ("destination".to_owned(), dest.clone()),
        ];
        inputs.push((
            "options".to_owned(),
            format!("chown={chown:?} chmod={chmod:?} excludes={excludes:?}"),
        ));
        match &source {
            CopySource::Context { selected, .. } => {
                for (items, (src, _)) in selected.iter().zip(&sources) {
                    for item in items {
                        for (rel, meta) in &item.entries {
                            let path = if rel.is_empty() {
                                src.clone()
                            } else {
                                format!("{}/{rel}", src.trim_end_matches('/'))
                            };
                            let what = match (meta.kind, &meta.hash, &meta.link) {
                                (_, Some(h), _) => format!("{} mode {:o}", h.short(), meta.mode),
                                (_, None, Some(l)) => format!("symlink to {l}"),
                                (FileKind::Fifo, ..) => format!("fifo mode {:o}", meta.mode),
                                (FileKind::CharDevice { major, minor }, ..) => {
                                    format!("char device {major}:{minor} mode {:o}", meta.mode)
                                }
                                (FileKind::BlockDevice { major, minor }, ..) => {
                                    format!("block device {major}:{minor} mode {:o}", meta.mode)
                                }
                                _ => format!("folder mode {:o}", meta.mode),
                            };
                            inputs.push((format!("file `{path}`"), what));
                        }
                    }
                }
            }
            CopySource::Remote { files } => {
                for ((url, _), (_, file)) in sources.iter().zip(files) {
                    inputs.push((format!("URL `{url}`"), file.digest.to_string()));
                }
            }
            CopySource::Node { node, .. } => {
                let n = &self.graph[*node];
                let from = if n.stage.is_empty() {
                    n.label.clone()
                } else {
                    format!("stage `{}`", n.stage)
                };
                inputs.push((format!("source {from}"), n.fs_key.to_hex()));
            }
        }
        let op = CopyOp {
            source,
            dest,
            dest_is_dir,
            chown,
            chmod,
            add: c.add,
            parents: c.parents,
            excludes,
        };
        Some((op, h.finish(), edges, inputs))
    }

    fn run_step(
        &mut self,
        fi: usize,
        r: &RunStep,
        stage_args: &BTreeMap<String, String>,
        unset_args: &BTreeSet<String>,
        config: &ImageConfig,
        parent_fs: Digest,
    ) -> Option<(RunOp, Digest, Vec<NodeIndex>, Vec<(String, String)>)> {
        let text = self.text(fi);
        let commands: Vec<String> = r.commands.iter().map(|c| c.value.clone()).collect();
        let argv = if r.exec {
            commands
        } else {
            let mut shell = config.strings("Shell");
            if shell.is_empty() {
                shell = vec!["/bin/sh".into(), "-c".into()];
            }
            shell.push(join_commands(&commands));
            shell
        };
        // The image environment, then the stage's args that it does not set (Docker's rule:
        // a top-level arg reaches `run` only through an `arg` in the stage, so changing one
        // never invalidates the steps of stages that do not declare it).
        let mut env = config.env();
        for (k, v) in stage_args {
            if !unset_args.contains(k) && !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.clone(), v.clone()));
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let cwd =
            config.string("WorkingDir").filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
        let user = config.string("User").filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
        // The step's own `network` wins; `--network` only changes the default. Either way the
        // network (and `--add-host`) is part of the key: it changes what the command can see.
        let network = r.network.as_ref().map_or(self.request.default_network, |n| n.value);
        let hosts = self.request.add_hosts.clone();
        let globals = self.globals[fi].clone();
        let scope = Scope { globals: &globals, stage_args, config };
        let mut mounts = Vec::new();
        let mut edges = Vec::new();
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
        for m in &r.mounts {
            let ex = |v: &Spanned<String>, this: &mut Self| match scope.expand(v, text) {
                Ok(x) => Some(x),
                Err(d) => {
                    this.error(fi, d);
                    None
                }
            };
            match m {
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
                    let target = absolute(&cwd, &ex(target, self)?);
                    let id = match id {
                        Some(i) => ex(i, self)?,
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
                    h.str("cache").str(&target).str(&id).u8(*sharing as u8).bool(*readonly);
                    mounts.push(PlannedMount::Cache {
                        target,
                        id,
                        sharing: *sharing,
                        readonly: *readonly,
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        export: *export,
                    });
                }
                RunMount::Secret { id, target, env: var, required, mode, uid, gid } => {
                    let id_v = ex(id, self)?;
                    let target = match target {
                        Some(t) => Some(absolute(&cwd, &ex(t, self)?)),
                        None if var.is_none() => Some(format!("/run/secrets/{id_v}")),
                        None => None,
                    };
                    let var = match var {
                        Some(v) => Some(ex(v, self)?),
                        None => None,
                    };
                    h.str("secret").str(&id_v).opt_str(target.as_deref()).opt_str(var.as_deref());
                    mounts.push(PlannedMount::Secret {
                        id: id_v,
                        target,
                        env: var,
                        required: *required,
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                    });
                }
                RunMount::Ssh { id, target, required, mode, uid, gid } => {
                    let id = match id {
                        Some(i) => ex(i, self)?,
                        None => "default".to_owned(),
                    };
                    // BuildKit's default: /run/buildkit/ssh_agent.N, N counting this step's
                    // ssh mounts.
                    let nth =
                        mounts.iter().filter(|m| matches!(m, PlannedMount::Ssh { .. })).count();
                    let target = match target {
                        Some(t) => absolute(&cwd, &ex(t, self)?),
                        None => format!("/run/buildkit/ssh_agent.{nth}"),
                    };
                    // The agent itself (its keys) never enters the key, like a secret's value.
                    h.str("ssh").str(&id).str(&target);
                    mounts.push(PlannedMount::Ssh {
                        id,
                        target,
                        required: *required,
                        mode: mode.unwrap_or(0o600),
                        uid: uid.unwrap_or(0),
                        gid: gid.unwrap_or(0),
                    });
                }
                RunMount::Tmpfs { target, size } => {
                    let target = absolute(&cwd, &ex(target, self)?);
                    let size = match size {
                        Some(s) => {
                            let v = ex(s, self)?;
                            if let Some(b) = parse_size(&v) {
                                Some(b)
                            } else {
                                self.error(
                                    fi,
                                    Diagnostic::error(
                                        "invalid-size",
                                        format!("`{v}` is not a size"),
                                        s.span,
                                        "not a size",
                                    )
                                    .with_help("write sizes like \"64m\" or \"1g\""),
                                );
                                return None;
                            }
                        }
                        None => None,
                    };
                    h.str("tmpfs").str(&target);
                    mounts.push(PlannedMount::Tmpfs { target, size });
                }
                RunMount::Bind { source, target, from, readwrite } => {
                    let src = ex(source, self)?;
                    let target = absolute(&cwd, &ex(target, self)?);
                    let from = match from {
                        Some(f) => Some((ex(f, self)?, f.span)),
                        None => None,
                    };
                    let named =
                        from.as_ref().and_then(|(f, _)| self.named_dir(f).map(|_| f.clone()));
                    if let Some((fv, from_span)) = from.filter(|_| named.is_none()) {
                        let node = self.source_node(fi, &fv, from_span)?;
                        h.str("bind-node")
                            .digest(&self.graph[node].fs_key)
                            .str(&src)
                            .str(&target)
                            .bool(*readwrite);
                        edges.push(node);
                        mounts.push(PlannedMount::BindNode {
                            node,
                            source: absolute("/", &src),
                            target,
                            readwrite: *readwrite,
                        });
                    } else {
                        let selected = match &named {
                            Some(n) => self.resolver.select_named(n, &src, &[]),
                            None => self.resolver.select(fi, &src, &[]),
                        };
                        let folder = match selected {
                            Ok(sel) => {
                                // `-selected`: steps cached when a bind showed the whole folder
                                // (ignored files too) must not be reused.
                                h.str("bind-context-selected")
                                    .str(&src)
                                    .str(&target)
                                    .bool(*readwrite);
                                hash_selected(&mut h, &sel);
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
                        mounts.push(PlannedMount::BindContext {
                            file: fi,
                            named,
                            source: normalize(&src).unwrap_or_default(),
                            target,
                            readwrite: *readwrite,
                            folder,
                        });
                    }
                }
            }
        }
        let mut inputs = vec![
            ("parent".to_owned(), parent_fs.to_hex()),
            ("command".to_owned(), argv.join(" ")),
            ("working folder".to_owned(), cwd.clone()),
            ("user".to_owned(), user.clone()),
        ];
        let image_env: Vec<String> = config.env().into_iter().map(|(k, _)| k).collect();
        for (k, v) in &env {
            let kind = if image_env.contains(k) { "env" } else { "arg" };
            inputs.push((format!("{kind} `{k}`"), v.clone()));
        }
        inputs.push((
            "mounts".to_owned(),
            format!("{:?}", mounts.iter().map(mount_summary).collect::<Vec<_>>()),
        ));
        if !hosts.is_empty() {
            let lines: Vec<String> = hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect();
            inputs.push(("added hosts".to_owned(), lines.join(" ")));
        }
        let op = RunOp { argv, env, cwd, user, network, hosts, mounts, platform };
        Some((op, h.finish(), edges, inputs))
    }
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

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// The file name a URL gives a download: the last segment of its path.
fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    match path.split_once('/') {
        Some((_, p)) => p.rsplit('/').next().unwrap_or("").to_owned(),
        None => String::new(),
    }
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

/// The platform args `BuildKit` predefines in the global scope: `TARGETPLATFORM`,
/// `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` for `target` and their `BUILD…` twins for `build`.
pub(crate) fn predefined_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut args = target.args("TARGET");
    args.extend(build.args("BUILD"));
    args
}

/// Drops the parts of a base config that the executor rebuilds.
fn strip(mut config: ImageConfig) -> ImageConfig {
    config.0.remove("history");
    config.0.remove("rootfs");
    config.0.remove("created");
    config.0.remove("container");
    config.0.remove("container_config");
    config.0.remove("docker_version");
    config
}

/// Runs several shell-form commands in one shell, stopping at the first failure; each keeps
/// its own lines, so multi-line scripts work unchanged.
fn join_commands(commands: &[String]) -> String {
    if commands.len() == 1 {
        return commands[0].clone();
    }
    commands.iter().map(|c| format!("{{ {c}\n}}")).collect::<Vec<_>>().join(" && \\\n")
}

/// Resolves `path` against `base` and normalises it to an absolute path (keeps a trailing `/`
/// off; `..` stops at the root).
pub(crate) fn absolute(base: &str, path: &str) -> String {
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

/// The environment values and `run` steps see: the image's, except that an `arg` declared
/// (with a value) after an `env` of the same name wins until the next `env` sets it again.
/// `BuildKit` adds such an arg to the build state's environment, not to the image config.
fn env_view<'a>(
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
    fn paths_resolve_like_docker() {
        assert_eq!(absolute("/app", "src/"), "/app/src");
        assert_eq!(absolute("/app", "/etc/x"), "/etc/x");
        assert_eq!(absolute("/", "../../x"), "/x");
        assert_eq!(absolute("/a/b", "."), "/a/b");
    }

    #[test]
    fn ports_and_sizes() {
        let one = |v: &str| normalize_port(v).map(|p| p.join(" "));
        assert_eq!(one("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(one("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(one("http"), None);
        assert_eq!(one("7000-7002/udp").as_deref(), Some("7000/udp 7001/udp 7002/udp"));
        assert_eq!(one("9-8"), None);
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
    }
}
