//! Multi-platform planning: one branch per target platform, each planned on its own with its
//! platform's predefined args and bases, then merged into one graph in which steps with equal
//! keys are one node. A stage pinned to the build platform (`from … platform="${BUILDPLATFORM}"`)
//! has the same keys in every branch, so it is planned per branch but built once.

use std::collections::HashMap;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};

use super::stages::Planner;
use super::{CopySource, FileDiagnostic, FileInput, Op, Plan, PlanRequest, PlannedMount, Resolver};
use crate::diag::Diagnostic;
use crate::oci::image::Platform;
use crate::syntax::ast::{Spanned, TargetKind};

/// Plans every branch the request and the build files ask for, and merges them.
pub(super) fn plan(
    files: &[FileInput],
    request: &PlanRequest,
    resolver: &dyn Resolver,
) -> Result<Plan, Vec<FileDiagnostic>> {
    let branches = branches(files, request)?;
    if let [only] = branches.as_slice() {
        return Planner::new(files, only, resolver).run().map(name_run_platforms);
    }
    let mut plans = Vec::new();
    let mut diags: Vec<FileDiagnostic> = Vec::new();
    for branch in &branches {
        match Planner::new(files, branch, resolver).run() {
            Ok(p) => plans.push(p),
            // The same mistake is found in every branch: say it once.
            Err(found) => {
                for d in found {
                    if !diags.iter().any(|e| same(e, &d)) {
                        diags.push(d);
                    }
                }
            }
        }
    }
    if diags.is_empty() { Ok(name_run_platforms(merge(plans))) } else { Err(diags) }
}

/// Progress and graphs say where a `run` step of another platform than this machine's runs:
/// `[app linux/arm64/v8, emulated]`.
fn name_run_platforms(mut plan: Plan) -> Plan {
    for node in plan.graph.node_weights_mut() {
        if let Op::Run(r) = &node.op
            && !r.platform.is_host()
        {
            let platform = r.platform.to_string();
            if !node.stage.ends_with(&platform) {
                node.stage = format!("{} {platform}", node.stage);
            }
            node.stage.push_str(", emulated");
        }
    }
    plan
}

fn same(a: &FileDiagnostic, b: &FileDiagnostic) -> bool {
    a.file == b.file
        && a.diagnostic.code == b.diagnostic.code
        && a.diagnostic.span == b.diagnostic.span
        && a.diagnostic.message == b.diagnostic.message
}

/// One request per target platform, naming the images built for it. Without any platform
/// (none given, none in the files) the one branch is the request itself: the host's.
fn branches(
    files: &[FileInput],
    request: &PlanRequest,
) -> Result<Vec<PlanRequest>, Vec<FileDiagnostic>> {
    let mut diags = Vec::new();
    let mut parse = |file: usize, written: &[Spanned<String>]| -> Vec<Platform> {
        let mut out: Vec<Platform> = Vec::new();
        for w in written {
            match Platform::parse(&w.value) {
                Ok(p) if !out.contains(&p) => out.push(p),
                Ok(_) => {}
                Err(problem) => diags.push(FileDiagnostic {
                    file,
                    diagnostic: Diagnostic::error(
                        "bad-platform",
                        problem,
                        w.span,
                        "not a platform",
                    )
                    .with_help("write OS/ARCH[/VARIANT], e.g. `linux/arm64`"),
                }),
            }
        }
        out
    };
    let file_default: Vec<Platform> =
        files.iter().enumerate().flat_map(|(i, f)| parse(i, &f.ast.platforms)).collect();
    let mut per_image: Vec<(String, Vec<Platform>)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        for t in f.ast.targets.iter().filter(|t| t.kind == TargetKind::Image) {
            let own = parse(i, &t.platforms);
            per_image.push((t.name.value.clone(), own));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let anything_said = !request.platforms.is_empty()
        || !file_default.is_empty()
        || per_image.iter().any(|(_, p)| !p.is_empty());
    if !anything_said {
        return Ok(vec![request.clone()]);
    }
    let default = if file_default.is_empty() { vec![Platform::host()] } else { file_default };
    let platforms_of = |name: &str| -> Vec<Platform> {
        if !request.platforms.is_empty() {
            return request.platforms.clone();
        }
        match per_image.iter().find(|(n, _)| n == name) {
            Some((_, own)) if !own.is_empty() => own.clone(),
            _ => default.clone(),
        }
    };
    let wanted: Vec<String> = if request.targets.is_empty() {
        per_image.iter().map(|(n, _)| n.clone()).collect()
    } else {
        request.targets.clone()
    };
    let mut order: Vec<Platform> = Vec::new();
    for name in &wanted {
        for p in platforms_of(name) {
            if !order.contains(&p) {
                order.push(p);
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|p| {
            let targets = wanted.iter().filter(|n| platforms_of(n).contains(&p)).cloned().collect();
            PlanRequest { platform: Some(p), targets, ..request.clone() }
        })
        .collect())
}

/// One graph from the branches' graphs: a node whose key an earlier branch already has is
/// that node; references between nodes follow.
fn merge(plans: Vec<Plan>) -> Plan {
    let mut graph = StableDiGraph::new();
    let mut by_key = HashMap::new();
    let mut images = Vec::new();
    let mut warnings: Vec<FileDiagnostic> = Vec::new();
    let (context_dirs, named_contexts) =
        (plans[0].context_dirs.clone(), plans[0].named_contexts.clone());
    let mut users: HashMap<NodeIndex, Vec<String>> = HashMap::new();
    for plan in plans {
        let platform = plan.images.first().map(|i| i.platform.to_string()).unwrap_or_default();
        let order = petgraph::algo::toposort(&plan.graph, None).expect("a plan is acyclic");
        let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for old in order {
            let node = &plan.graph[old];
            let new = *by_key.entry(node.key).or_insert_with(|| {
                let mut n = node.clone();
                remap(&mut n, &map);
                graph.add_node(n)
            });
            map.insert(old, new);
            users.entry(new).or_default().push(platform.clone());
        }
        for e in plan.graph.edge_references() {
            let (a, b) = (map[&e.source()], map[&e.target()]);
            if graph.find_edge(a, b).is_none() {
                graph.add_edge(a, b, *e.weight());
            }
        }
        images.extend(plan.images.into_iter().map(|mut i| {
            i.node = map[&i.node];
            i
        }));
        for w in plan.warnings {
            if !warnings.iter().any(|x| same(x, &w)) {
                warnings.push(w);
            }
        }
    }
    // Progress and graphs name the platform of a step only one branch has.
    for (n, platforms) in users {
        if let [only] = platforms.as_slice() {
            let stage = &mut graph[n].stage;
            *stage = if stage.is_empty() { only.clone() } else { format!("{stage} {only}") };
        }
    }
    Plan { graph, context_dirs, images, warnings, named_contexts }
}

/// Points a copied node's references at the merged graph's nodes.
fn remap(node: &mut super::Node, map: &HashMap<NodeIndex, NodeIndex>) {
    node.parent = node.parent.map(|p| map[&p]);
    match &mut node.op {
        Op::Copy(c) => {
            if let CopySource::Node { node, .. } = &mut c.source {
                *node = map[node];
            }
        }
        Op::Run(r) => {
            for m in &mut r.mounts {
                if let PlannedMount::BindNode { node, .. } = m {
                    *node = map[node];
                }
            }
        }
        _ => {}
    }
}
