//! `stack cache du|prune|verify`: inspecting and managing the local store.

use super::args::{CacheCommand, CacheDuArgs, CachePruneArgs, CacheVerifyArgs, StoreArgs};
use super::load::error_chain;
use super::{Failure, fail};
use crate::store::{self, Area, PruneOptions, Store, StoreLock};

pub(super) fn run(cmd: &CacheCommand) -> Result<(), Failure> {
    match cmd {
        CacheCommand::Du(a) => du(a),
        CacheCommand::Prune(a) => prune(a),
        CacheCommand::Verify(a) => verify(a),
    }
}

fn open(args: &StoreArgs) -> Result<Store, Failure> {
    let dir = args.cache_dir.clone().unwrap_or_else(Store::default_dir);
    Store::open(&dir)
        .map_err(|e| fail(error_chain(&e), Some("set STACK_CACHE_DIR to a writable folder")))
}

/// Takes the store lock exclusively, saying so when running builds make us wait.
fn lock_exclusive(store: &Store) -> Result<StoreLock, Failure> {
    if let Some(lock) = store.try_lock_exclusive()? {
        return Ok(lock);
    }
    eprintln!("waiting for running builds to release the store `{}`", store.root().display());
    Ok(store.lock_exclusive()?)
}

/// `{"blobs": {"entries": N, "bytes": B}, …}` for `--json`.
fn areas_json(areas: &[store::AreaUsage]) -> serde_json::Map<String, serde_json::Value> {
    areas
        .iter()
        .map(|a| {
            (key(a.area).into(), serde_json::json!({ "entries": a.entries, "bytes": a.bytes }))
        })
        .collect()
}

fn du(args: &CacheDuArgs) -> Result<(), Failure> {
    if let Some(repo) = &args.remote.repository {
        return super::remote_cache::du(args, repo);
    }
    let store = open(&args.store)?;
    let usage = store::usage(&store)?;
    if args.json {
        let areas = areas_json(&usage.areas);
        let doc = serde_json::json!({
            "store": store.root(),
            "areas": areas,
            "total": { "entries": usage.total_entries(), "bytes": usage.total_bytes() },
        });
        println!("{doc:#}");
        return Ok(());
    }
    println!("store: {}", store.root().display());
    println!("{:<18} {:>8} {:>11}", "AREA", "ENTRIES", "SIZE");
    for a in &usage.areas {
        println!("{:<18} {:>8} {:>11}", a.area.label(), a.entries, human(a.bytes));
    }
    println!("{:<18} {:>8} {:>11}", "total", usage.total_entries(), human(usage.total_bytes()));
    Ok(())
}

/// The JSON key of an area.
fn key(area: Area) -> &'static str {
    match area {
        Area::Records => "records",
        Area::Blobs => "blobs",
        Area::Layers => "layers",
        Area::CacheMounts => "cache_mounts",
        Area::Temp => "temp",
    }
}

fn prune(args: &CachePruneArgs) -> Result<(), Failure> {
    if let Some(repo) = &args.remote.repository {
        return super::remote_cache::prune(args, repo);
    }
    let store = open(&args.store)?;
    let lock = lock_exclusive(&store)?;
    let opts =
        PruneOptions { keep_storage: args.keep_storage, all: args.all, ..PruneOptions::default() };
    let report = store::prune(&store, &lock, &opts)?;
    drop(lock);
    if args.json {
        let removed = areas_json(&report.removed);
        let doc = serde_json::json!({
            "removed": removed,
            "before": report.before,
            "after": report.after,
        });
        println!("{doc:#}");
        return Ok(());
    }
    let parts: Vec<String> = report
        .removed
        .iter()
        .filter(|a| a.entries > 0)
        .map(|a| format!("{} {}", a.entries, a.area.label()))
        .collect();
    if parts.is_empty() {
        println!("nothing to remove; the store takes {}", human(report.after));
    } else {
        println!(
            "removed {}: freed {}, the store now takes {}",
            parts.join(", "),
            human(report.before.saturating_sub(report.after)),
            human(report.after)
        );
    }
    if args.keep_storage.is_none() && !args.all {
        eprintln!(
            "hint: only garbage was removed; use `--keep-storage SIZE` or `--all` to free more"
        );
    }
    Ok(())
}

fn verify(args: &CacheVerifyArgs) -> Result<(), Failure> {
    let store = open(&args.store)?;
    let lock = lock_exclusive(&store)?;
    let report = store::verify(&store, &lock, &crate::oci::extract::check_layer_dir)?;
    drop(lock);
    for bad in &report.bad {
        println!("bad {} `{}`: {} (removed)", singular(bad.area), bad.name, bad.reason);
    }
    println!(
        "checked {} blobs, {} extracted layers, {} step records: {} bad, {} records dropped",
        report.blobs,
        report.layers,
        report.records,
        report.bad.len(),
        report.dropped_records
    );
    if report.bad.is_empty() {
        Ok(())
    } else {
        Err(fail(
            format!(
                "the store `{}` held {} corrupt objects",
                store.root().display(),
                report.bad.len()
            ),
            Some("they were removed; the next build recreates what it needs"),
        ))
    }
}

fn singular(area: Area) -> &'static str {
    match area {
        Area::Records => "step record",
        Area::Blobs => "blob",
        Area::Layers => "extracted layer",
        Area::CacheMounts => "cache mount",
        Area::Temp => "temp entry",
    }
}

/// A size for people, in powers of 1024.
pub(super) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
