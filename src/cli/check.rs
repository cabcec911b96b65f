//! `stack check`: parse and plan, report every problem, build nothing.

use super::Failure;
use super::args::CheckArgs;
use super::load::{CliResolver, load_files, open_store, plan_files};

pub(super) fn run(args: &CheckArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let p = plan_files(&files, &resolver, &args.file)?;
    let layers = p.graph.node_weights().filter(|n| n.op.makes_layer()).count();
    eprintln!(
        "ok: {} image(s), {} step(s), {} of them layer steps",
        p.images.len(),
        p.graph.node_count(),
        layers
    );
    Ok(())
}
