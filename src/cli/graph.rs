//! `stack graph`: the layer DAG as Graphviz DOT on standard output, marking the steps whose
//! results are already in the store.

use std::io::Write;

use super::Failure;
use super::args::GraphArgs;
use super::load::{CliResolver, load_files, open_store, plan_files};
use crate::plan::to_dot;

pub(super) fn run(args: &GraphArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let p = plan_files(&files, &resolver, &args.file)?;
    let mut marks = crate::plan::dot::Marks::new();
    for idx in p.graph.node_indices() {
        let n = &p.graph[idx];
        if n.op.makes_layer() {
            let cached =
                store.get_record::<serde_json::Value>("step", &n.key).ok().flatten().is_some();
            marks.insert(idx, if cached { "reused" } else { "rebuild" });
        }
    }
    std::io::stdout().write_all(to_dot(&p, &marks).as_bytes())?;
    Ok(())
}
