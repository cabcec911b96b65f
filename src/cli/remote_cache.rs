//! `stack cache du|prune --remote REPO`: the entries of a registry step cache.

use super::args::{CacheDuArgs, CachePruneArgs, RemoteStoreArgs};
use super::cache::human;
use super::load::error_chain;
use super::{Failure, fail};
use crate::registry::stepcache::ListedEntry;
use crate::registry::{Client, Reference};

/// The client and repository of `--remote`.
fn open(args: &RemoteStoreArgs, repo: &str) -> Result<(Client, Reference), Failure> {
    let r = Reference::parse(repo)
        .map_err(|e| fail(format!("`--remote {repo}` is not a registry repository: {e}"), None))?;
    let client = Client::new(crate::registry::ClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        cancelled: crate::exec::cancel::interrupted,
        ..Default::default()
    });
    Ok((client, Reference { tag: None, digest: None, ..r }))
}

fn entries(client: &Client, repo: &Reference) -> Result<Vec<ListedEntry>, Failure> {
    client.step_entries(repo).map_err(|e| fail(error_chain(&e), None))
}

/// The distinct bytes of some entries: a layer blob shared by several counts once.
fn distinct_bytes(list: &[&ListedEntry]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .map(|e| match &e.layer {
            Some(l) if !seen.insert(l.clone()) => 0,
            _ => e.size,
        })
        .sum()
}

pub(super) fn du(args: &CacheDuArgs, repo: &str) -> Result<(), Failure> {
    let (client, repo) = open(&args.remote, repo)?;
    let list = entries(&client, &repo)?;
    let all: Vec<&ListedEntry> = list.iter().collect();
    let bytes = distinct_bytes(&all);
    if args.json {
        let doc = serde_json::json!({
            "cache": repo.name(),
            "entries": list.len(),
            "bytes": bytes,
            "oldest": list.iter().filter_map(|e| e.written).min(),
            "newest": list.iter().filter_map(|e| e.written).max(),
        });
        println!("{doc:#}");
        return Ok(());
    }
    println!("cache: {}", repo.name());
    println!("{} step entries, {}", list.len(), human(bytes));
    Ok(())
}

pub(super) fn prune(args: &CachePruneArgs, repo: &str) -> Result<(), Failure> {
    let Some(older_than) = args.older_than else {
        return Err(fail(
            "`--remote` needs `--older-than DURATION`: which entries to delete",
            Some("e.g. `stack cache prune --remote REPO --older-than 14d --dry-run`"),
        ));
    };
    let (client, repo) = open(&args.remote, repo)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let limit = now.saturating_sub(i64::try_from(older_than).unwrap_or(i64::MAX));
    let list = entries(&client, &repo)?;
    // An entry is stamped with the day it was written: it is old once that whole day is.
    let old: Vec<&ListedEntry> =
        list.iter().filter(|e| e.written.is_some_and(|w| w + 86_400 <= limit)).collect();
    let mut failed = Vec::new();
    if !args.dry_run {
        for e in &old {
            if let Err(err) = client.delete_manifest(&repo, &e.manifest) {
                failed.push(format!("{}: {}", e.tag, error_chain(&err)));
            }
        }
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    let deleted = old.len() - failed.len();
    if args.json {
        let doc = serde_json::json!({
            "cache": repo.name(),
            "dry_run": args.dry_run,
            "deleted": deleted,
            "kept": list.len() - deleted,
            "bytes": distinct_bytes(&old),
            "failed": failed,
        });
        println!("{doc:#}");
    } else {
        println!(
            "{verb} {deleted} of {} entries of cache {} ({}); their blobs go at the registry's next garbage collection",
            list.len(),
            repo.name(),
            human(distinct_bytes(&old))
        );
    }
    if let Some(first) = failed.first() {
        return Err(fail(
            format!("{} entries could not be deleted; the first: {first}", failed.len()),
            Some("the registry must allow deletes (distribution: `storage.delete.enabled: true`)"),
        ));
    }
    Ok(())
}
