//! The registry step caches of `stack build`: which ones (flags, environment, the build file's
//! `cache` nodes), and what they did.

use std::sync::Arc;

use super::args::{FileArgs, RemoteCacheArgs};
use super::{Failure, fail};
use crate::fleet::{CacheConfig, CacheReport, RegistryCache};
use crate::plan::FileInput;
use crate::registry::Reference;
use crate::store::Store;

/// The caches this build reads and writes: the flags' and the build files' `cache` nodes. A
/// read-only build (`--cache-read-only`) writes none.
pub(super) fn config(args: &RemoteCacheArgs, files: &[FileInput]) -> Result<CacheConfig, Failure> {
    let mut config = CacheConfig::default();
    if args.no_remote {
        return Ok(config);
    }
    for from in args.from.iter().filter(|f| !f.trim().is_empty()) {
        push_unique(&mut config.from, repository(from, "--cache-from")?);
    }
    for file in files {
        for c in &file.ast.caches {
            let what = format!("`cache` in {}", file.source.name);
            let repo = repository(&c.repository.value, &what)?;
            if !c.read_only && config.to.is_none() {
                config.to = Some(repo.clone());
            }
            push_unique(&mut config.from, repo);
        }
    }
    if let Some(to) = args.to.as_deref().filter(|t| !t.trim().is_empty()) {
        config.to = Some(repository(to, "--cache-to")?);
    }
    if args.read_only {
        config.to = None;
    }
    Ok(config)
}

fn push_unique(list: &mut Vec<Reference>, r: Reference) {
    if !list.iter().any(|x| x.registry == r.registry && x.repository == r.repository) {
        list.push(r);
    }
}

/// A cache repository: a registry reference without tag or digest.
fn repository(text: &str, what: &str) -> Result<Reference, Failure> {
    let r = Reference::parse(text.trim())
        .map_err(|e| fail(format!("{what}: `{text}` is not a registry repository: {e}"), None))?;
    if r.digest.is_some() || text.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(fail(
            format!("{what}: `{text}` names a tag or digest; a step cache is a whole repository"),
            Some("write the repository alone, e.g. `registry.example/team/cache`"),
        ));
    }
    Ok(Reference { tag: None, digest: None, ..r })
}

/// Opens the caches of `config` (none: `None`); the returned store fetches the blobs of
/// steps reused from them when something reads them.
pub(super) fn open(
    config: &CacheConfig,
    file: &FileArgs,
    store: Store,
) -> (Store, Option<Arc<RegistryCache>>) {
    // A cache must cost little when it fails: few quick retries, short timeouts (a pull of
    // a base image, which the build needs, waits far longer).
    let client = crate::registry::Client::new(crate::registry::ClientOptions {
        insecure_registries: file.insecure_registries.clone(),
        cancelled: crate::exec::cancel::interrupted,
        retries: 2,
        backoff: std::time::Duration::from_millis(100),
        max_backoff: std::time::Duration::from_secs(1),
        connect_timeout: std::time::Duration::from_secs(5),
        read_timeout: std::time::Duration::from_secs(15),
        ..Default::default()
    });
    match RegistryCache::new(client, &store, config) {
        Some(cache) => (store.with_fallback(cache.clone()), Some(cache)),
        None => (store, None),
    }
}

/// Waits for the exports and says what the caches did and what went wrong with them.
pub(super) fn finish(cache: Option<&RegistryCache>) -> CacheReport {
    let Some(cache) = cache else { return CacheReport::default() };
    let report = cache.finish();
    for w in &report.warnings {
        super::output::note(format!("warning: {w}"));
    }
    for (id, bytes) in &report.mounts_restored {
        super::output::note(format!(
            "restored cache mount `{id}` ({}) from the step cache",
            super::cache::human(*bytes)
        ));
    }
    for (id, bytes) in &report.mounts_saved {
        super::output::note(format!(
            "saved cache mount `{id}` ({}) to the step cache",
            super::cache::human(*bytes)
        ));
    }
    if report.bytes_downloaded > 0 {
        super::output::note(format!(
            "fetched {} from the step cache",
            super::cache::human(report.bytes_downloaded)
        ));
    }
    if let (_, Some(to)) = cache.sources()
        && report.exported > 0
    {
        super::output::note(format!(
            "exported {} step(s) to cache {} ({} uploaded)",
            report.exported,
            to.name(),
            super::cache::human(report.bytes_uploaded)
        ));
    }
    report
}
