//! The layer DAG as Graphviz DOT, for `stack graph`.

use std::collections::HashMap;
use std::fmt::Write;

use super::{EdgeKind, Op, Plan};

/// Per-node status shown in the graph (e.g. from a cache lookup).
pub(crate) type Marks = HashMap<petgraph::stable_graph::NodeIndex, &'static str>;

/// Renders the plan; `marks` colours nodes (`reused`, `rebuild`).
pub(crate) fn to_dot(plan: &Plan, marks: &Marks) -> String {
    let mut out = String::from(
        "digraph stack {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    let ids = super::node_ids(plan);
    let mut order: Vec<_> = plan.graph.node_indices().collect();
    order.sort_by_key(|n| ids[n]);
    for n in &order {
        let node = &plan.graph[*n];
        let kind = match &node.op {
            Op::Scratch | Op::Base { .. } => "base",
            Op::Config => "config",
            _ => "layer",
        };
        let mut label = if node.stage.is_empty() {
            node.label.clone()
        } else {
            format!("[{}] {}", node.stage, node.label)
        };
        let _ = write!(label, "\\n{}", node.key.short());
        let mut attrs = format!("label=\"{}\"", escape(&label));
        match kind {
            "base" => attrs.push_str(", shape=folder"),
            "config" => attrs.push_str(", style=dashed"),
            _ => {}
        }
        if let Some(mark) = marks.get(n) {
            let color = if *mark == "reused" { "palegreen" } else { "lightsalmon" };
            let _ = write!(attrs, ", style=filled, fillcolor={color}, tooltip=\"{mark}\"");
        }
        let _ = writeln!(out, "  n{} [{attrs}];", ids[n]);
    }
    let mut edges: Vec<_> = plan
        .graph
        .edge_indices()
        .filter_map(|e| {
            plan.graph.edge_endpoints(e).map(|(a, b)| (ids[&a], ids[&b], plan.graph[e]))
        })
        .collect();
    edges.sort_by_key(|(a, b, _)| (*a, *b));
    for (a, b, kind) in edges {
        let style = if kind == EdgeKind::Source { " [style=bold, color=blue]" } else { "" };
        let _ = writeln!(out, "  n{a} -> n{b}{style};");
    }
    for image in &plan.images {
        let _ = writeln!(out, "  \"image {}\" [shape=doubleoctagon];", escape(&image.name));
        let _ = writeln!(out, "  n{} -> \"image {}\";", ids[&image.node], escape(&image.name));
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace("\\\\n", "\\n")
}
