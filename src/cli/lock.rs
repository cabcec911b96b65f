//! `stack lock`: resolves every registry reference again and rewrites `stack.lock`.

use super::Failure;
use super::args::LockArgs;
use super::load::{CliResolver, LockMode, load_files, open_store, plan_files};

pub(super) fn run(args: &LockArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::with_mode(&files, &store, &args.file, LockMode::Refresh)?;
    plan_files(&files, &resolver, &args.file)?;
    resolver.save_lock()?;
    let (pinned, added, changed, dropped) = resolver.lock_changes();
    if added + changed + dropped == 0 {
        eprintln!("stack.lock is up to date ({pinned} pinned)");
    } else {
        eprintln!(
            "stack.lock updated: {pinned} pinned ({added} added, {changed} changed, {dropped} \
             no longer used and dropped)"
        );
    }
    Ok(())
}
