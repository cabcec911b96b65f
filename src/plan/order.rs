//! Which stages a build needs and in what order: stage names (unique across files, never
//! shadowed by a named context), the requested images, what each stage reads, and the order
//! that puts each stage after what it reads; a cycle is reported and its stages left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use miette::SourceSpan;
use petgraph::graph::DiGraph;

use super::scope::Scope;
use super::stages::Planner;
use crate::diag::{Diagnostic, did_you_mean};
use crate::oci::image::ImageConfig;
use crate::syntax::ast::{RunMount, Spanned, StepKind, Target, TargetKind};

/// A reference to something a stage depends on, and where it is written.
struct Dependency {
    stage: String,
    file: usize,
    span: SourceSpan,
}

impl Planner<'_> {
    /// A named context never shadows a stage silently: the same name for both is an error
    /// naming both (the stage would win in one place and the context in another).
    pub(super) fn check_named_contexts(&mut self) {
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

    /// Indexes every stage and image by name; a name defined twice (in any of the files) is
    /// an error, and the first definition counts.
    pub(super) fn collect_stages(&mut self) {
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

    /// The stages to build: each `--target`, else every `image`, without repeats.
    pub(super) fn requested(&mut self) -> Vec<String> {
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
    pub(super) fn expand_static(
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
    pub(super) fn order(&mut self, requested: &[String]) -> Vec<String> {
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
                self.report_cycle(&g, &scc, &edges);
            }
            Self::order_without(g, &blocked)
        }
    }

    /// Reports a cycle (the stages of `scc`) at the dependency that closes it.
    fn report_cycle(
        &mut self,
        g: &DiGraph<String, usize>,
        scc: &[petgraph::graph::NodeIndex],
        edges: &[(String, Dependency)],
    ) {
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
}
