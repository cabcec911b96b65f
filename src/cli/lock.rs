//! `stack lock`: resolves every registry reference again and rewrites `stack.lock`.

use super::Failure;
use super::args::LockArgs;
use super::load::{CliResolver, LockMode, load_files, open_store, print_plan_errors};
use crate::plan::{PlanRequest, plan};

pub(super) fn run(args: &LockArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::with_mode(&files, &store, &args.file, LockMode::Refresh)?;
    let request = PlanRequest {
        args: args.file.args.iter().cloned().collect(),
        targets: args.file.targets.clone(),
    };
    plan(&files, &request, &resolver).map_err(|d| {
        print_plan_errors(&files, d);
        Failure::UserFiles
    })?;
    resolver.save_lock()?;
    eprintln!("stack.lock is up to date");
    Ok(())
}
