//! `stack check`: parse and plan, report every problem, build nothing.

use super::Failure;
use super::args::CheckArgs;
use super::load::{CliResolver, load_files, open_store, print_plan_errors};
use crate::plan::{PlanRequest, plan};

pub(super) fn run(args: &CheckArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let request = PlanRequest {
        args: args.file.args.iter().cloned().collect(),
        targets: args.file.targets.clone(),
    };
    match plan(&files, &request, &resolver) {
        Ok(p) => {
            let layers = p.graph.node_weights().filter(|n| n.op.makes_layer()).count();
            eprintln!(
                "ok: {} image(s), {} step(s), {} of them layer steps",
                p.images.len(),
                p.graph.node_count(),
                layers
            );
            Ok(())
        }
        Err(diags) => {
            print_plan_errors(&files, diags);
            Err(Failure::UserFiles)
        }
    }
}
