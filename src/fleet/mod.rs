//! The fleet cache: a step cache shared between machines through any OCI registry
//! (`--cache-from`, `--cache-to`, the build file's `cache` node).
//!
//! Every key the build may need is looked up at once, with bounded parallel requests, before
//! any step runs; a hit's layer blob is downloaded only when something here reads it (through
//! the store's [`BlobSource`] fallback); steps built here are exported in the background as
//! they finish.
//!
//! Invariant: the cache is an optimisation. Every failure becomes a warning (one per cache and
//! kind) and a miss; a blob that does not hash to its digest, or a layer that does not unpack
//! to its diff id, is never stored or used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::digest::{Digest, OciDigest};
use crate::exec::shared::{SharedCache, SharedHit};
use crate::oci::image::{Descriptor, LayerRef};
use crate::registry::stepcache::{MOUNT_TAG_PREFIX, TAG_PREFIX, entry_bytes};
use crate::registry::{Client, Reference, RegistryError};
use crate::store::{BlobSource, Store, StoreError};

/// Lookups in flight at once.
const LOOKUPS: usize = 16;
/// Exports in flight at once.
const EXPORTERS: usize = 4;

/// Which caches a build reads and writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheConfig {
    /// Read, in this order.
    pub from: Vec<Reference>,
    /// Written (and read: a cache written is also read).
    pub to: Option<Reference>,
}

/// What the cache did during a build, for the summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheReport {
    pub exported: usize,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// One line per problem met (unreachable cache, bad entry, failed export…).
    pub warnings: Vec<String>,
    /// Cache mounts restored from the cache before their first step: id and bytes.
    pub mounts_restored: Vec<(String, u64)>,
    /// Cache mounts saved to the cache after the build: id and bytes.
    pub mounts_saved: Vec<(String, u64)>,
}

/// The registry step cache of one build.
pub(crate) struct RegistryCache {
    client: Client,
    store: Store,
    /// Caches read, in order; the written one last if it is not read already.
    sources: Vec<Reference>,
    target: Option<Reference>,
    /// Mixed into every entry's name when this process's steps see other owners than a
    /// machine with subordinate ids (see [`entry_key`]).
    standing: &'static str,
    /// Blobs of hits: where each can be fetched.
    blobs: Mutex<HashMap<OciDigest, (usize, LayerRef)>>,
    misses: Mutex<HashMap<Digest, String>>,
    /// Caches that failed and are no longer asked.
    dead: Mutex<Vec<bool>>,
    broken: AtomicBool,
    warnings: Mutex<Vec<String>>,
    exports: Mutex<Option<mpsc::Sender<Export>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    exported: AtomicUsize,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    /// Cache mounts marked for export that steps mounted, by id.
    mounts: Mutex<std::collections::BTreeMap<String, std::path::PathBuf>>,
    mounts_restored: Mutex<Vec<(String, u64)>>,
}

struct Export {
    key: Digest,
    layer: Option<LayerRef>,
}

impl std::fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCache").field("sources", &self.sources).finish_non_exhaustive()
    }
}

/// The name entries are stored under: the record key, made distinct for a process whose
/// steps see a single id (their layers own files differently for the same key).
fn entry_key(record: &Digest, standing: &str) -> Digest {
    if standing.is_empty() {
        *record
    } else {
        Digest::of(format!("{}{standing}", record.to_hex()).as_bytes())
    }
}

/// The tag of the entry for `record`.
pub(crate) fn entry_tag(record: &Digest, standing: &str) -> String {
    format!("{TAG_PREFIX}{}", entry_key(record, standing).to_hex())
}

impl RegistryCache {
    /// A cache for one build; `None` when the configuration names no cache.
    pub(crate) fn new(client: Client, store: &Store, config: &CacheConfig) -> Option<Arc<Self>> {
        let mut sources = config.from.clone();
        if let Some(t) = &config.to
            && !sources.iter().any(|s| same_repo(s, t))
        {
            sources.push(t.clone());
        }
        if sources.is_empty() {
            return None;
        }
        let standing = match crate::privilege::Privilege::current() {
            crate::privilege::Privilege::SingleId => ".flat",
            _ => "",
        };
        let cache = Arc::new(Self {
            client,
            store: store.clone(),
            dead: Mutex::new(vec![false; sources.len()]),
            sources,
            target: config.to.clone(),
            standing,
            blobs: Mutex::default(),
            misses: Mutex::default(),
            broken: AtomicBool::new(false),
            warnings: Mutex::default(),
            exports: Mutex::new(None),
            workers: Mutex::default(),
            exported: AtomicUsize::new(0),
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            mounts: Mutex::default(),
            mounts_restored: Mutex::default(),
        });
        if cache.target.is_some() {
            start_exporters(&cache);
        }
        Some(cache)
    }

    fn warn(&self, line: String) {
        let mut w = self.warnings.lock().expect("no panics while locked");
        if !w.contains(&line) {
            w.push(line);
        }
    }

    /// Marks cache `i` as failed: one warning, and it is asked no more.
    fn give_up(&self, i: usize, e: &RegistryError) {
        let mut dead = self.dead.lock().expect("no panics while locked");
        if !dead[i] {
            dead[i] = true;
            self.warn(format!(
                "cache {} failed ({}); going on without it",
                self.sources[i].name(),
                chain(e)
            ));
        }
    }

    fn is_dead(&self, i: usize) -> bool {
        self.dead.lock().expect("no panics while locked")[i]
    }

    /// Looks one key up in every live cache in order.
    fn lookup_one(&self, record: &Digest) -> Option<SharedHit> {
        let key = entry_key(record, self.standing);
        let tag = entry_tag(record, self.standing);
        let mut why = Vec::new();
        for (i, repo) in self.sources.iter().enumerate() {
            if self.is_dead(i) {
                why.push(format!("cache {} was unreachable", repo.name()));
                continue;
            }
            match self.client.step_entry(repo, &tag, &key.to_hex()) {
                Ok(Some(layer)) => {
                    if let Some(l) = &layer {
                        self.blobs
                            .lock()
                            .expect("no panics while locked")
                            .insert(l.blob.digest.clone(), (i, l.clone()));
                    }
                    return Some(SharedHit { layer, source: repo.name() });
                }
                Ok(None) => why.push(format!("cache {} has no entry for it", repo.name())),
                Err(e @ RegistryError::Invalid { .. }) => {
                    self.warn(format!("ignored a bad entry: {}", chain(&e)));
                    why.push(format!("the entry in cache {} is invalid", repo.name()));
                }
                Err(e) if is_per_entry(&e) => {
                    why.push(format!("cache {} could not answer for it", repo.name()));
                    self.warn(format!("cache {}: {}", repo.name(), chain(&e)));
                }
                Err(e) => {
                    self.give_up(i, &e);
                    why.push(format!("cache {} was unreachable", repo.name()));
                }
            }
        }
        self.misses.lock().expect("no panics while locked").insert(*record, why.join("; "));
        None
    }

    /// Waits for every export and says what the cache did.
    pub(crate) fn finish(&self) -> CacheReport {
        drop(self.exports.lock().expect("no panics while locked").take());
        let workers = std::mem::take(&mut *self.workers.lock().expect("no panics while locked"));
        for w in workers {
            let _ = w.join();
        }
        let mounts_saved = self.save_mounts();
        CacheReport {
            exported: self.exported.load(Ordering::SeqCst),
            bytes_uploaded: self.uploaded.load(Ordering::SeqCst),
            bytes_downloaded: self.downloaded.load(Ordering::SeqCst),
            warnings: self.warnings.lock().expect("no panics while locked").clone(),
            mounts_restored: self.mounts_restored.lock().expect("no panics while locked").clone(),
            mounts_saved,
        }
    }

    /// The name a cache mount's entry is stored under.
    fn mount_key(&self, id: &str) -> Digest {
        Digest::of(format!("mount:{id}{}", self.standing).as_bytes())
    }

    /// Fills the empty folder of cache mount `id` from the first cache that has it.
    fn restore_mount(&self, id: &str, dir: &std::path::Path) {
        let key = self.mount_key(id);
        let tag = format!("{MOUNT_TAG_PREFIX}{}", key.to_hex());
        for (i, repo) in self.sources.iter().enumerate() {
            if self.is_dead(i) {
                continue;
            }
            let layer = match self.client.step_entry(repo, &tag, &key.to_hex()) {
                Ok(Some(Some(layer))) => layer,
                Ok(_) => continue,
                Err(e) => {
                    self.warn(format!(
                        "cache mount `{id}` from cache {}: {}",
                        repo.name(),
                        chain(&e)
                    ));
                    continue;
                }
            };
            let restored = self
                .client
                .fetch_cache_blob(repo, &layer.blob, &self.store)
                .map_err(|e| chain(&e))
                .and_then(|n| {
                    crate::exec::layers::unpack_into(&self.store, &layer, dir)
                        .map(|()| n)
                        .map_err(|e| chain(&e))
                });
            match restored {
                Ok(n) => {
                    self.downloaded.fetch_add(n, Ordering::SeqCst);
                    self.mounts_restored
                        .lock()
                        .expect("no panics while locked")
                        .push((id.to_owned(), layer.blob.size));
                }
                Err(why) => self.warn(format!(
                    "cache mount `{id}` could not be restored from cache {}: {why}",
                    repo.name()
                )),
            }
            return;
        }
    }

    /// Saves every exported cache mount a step used (last writer wins); returns id and size
    /// of each saved.
    fn save_mounts(&self) -> Vec<(String, u64)> {
        let Some(target) = &self.target else { return Vec::new() };
        let mounts = std::mem::take(&mut *self.mounts.lock().expect("no panics while locked"));
        let mut saved = Vec::new();
        for (id, dir) in mounts {
            let key = self.mount_key(&id);
            let tag = format!("{MOUNT_TAG_PREFIX}{}", key.to_hex());
            let layer = match crate::exec::layers::folder_layer(
                &self.store,
                &dir,
                crate::oci::compress::Compression::Zstd,
            ) {
                Ok(l) => l,
                Err(e) => {
                    self.warn(format!("cache mount `{id}` could not be saved: {}", chain(&e)));
                    continue;
                }
            };
            let entry = entry_bytes(&key.to_hex(), layer.as_ref(), now());
            match self.client.put_step_entry(target, &tag, &entry, layer.as_ref(), &self.store) {
                Ok(_) => saved.push((id, layer.map_or(0, |l| l.blob.size))),
                Err(e) => self.warn(format!(
                    "cache mount `{id}` could not be saved to cache {}: {}",
                    target.name(),
                    chain(&e)
                )),
            }
        }
        saved
    }

    /// Where blob `digest` of a hit can be fetched, while the cache works.
    fn blob_home(&self, digest: &OciDigest) -> Option<(usize, LayerRef)> {
        if self.broken.load(Ordering::SeqCst) {
            return None;
        }
        self.blobs.lock().expect("no panics while locked").get(digest).cloned()
    }

    /// Downloads a hit's layer blob (verified against its digest on the way in) and checks
    /// that it unpacks to the diff id the entry claims: an image's config must name its
    /// layers' real content.
    fn fetch_layer(&self, store: &Store, i: usize, layer: &LayerRef) -> Result<(), String> {
        let repo = &self.sources[i];
        let n = self.client.fetch_cache_blob(repo, &layer.blob, store).map_err(|e| chain(&e))?;
        self.downloaded.fetch_add(n, Ordering::SeqCst);
        let actual = diff_id_of(store, &layer.blob).map_err(|e| chain(&*e))?;
        if actual != layer.diff_id {
            return Err(format!(
                "its entry says the layer unpacks to {}, but it unpacks to {actual}",
                layer.diff_id
            ));
        }
        Ok(())
    }

    /// The caches whose blobs a push to the same registry can mount instead of uploading.
    pub(crate) fn mountable(&self) -> Vec<Reference> {
        self.sources.clone()
    }

    /// The caches read, and the one written.
    pub(crate) fn sources(&self) -> (&[Reference], Option<&Reference>) {
        (&self.sources, self.target.as_ref())
    }
}

/// Seconds since the epoch, now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The sha256 of a stored layer blob's uncompressed tar.
fn diff_id_of(
    store: &Store,
    blob: &Descriptor,
) -> Result<OciDigest, Box<dyn std::error::Error + Send + Sync>> {
    use crate::oci::compress::Compression;
    let compression = match blob.media_type.rsplit_once('+').map(|(_, c)| c) {
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    };
    let mut reader = crate::oci::extract::decompress(store.open_blob(&blob.digest)?, compression)?;
    let mut hasher = crate::digest::Sha256Writer::default();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hasher.finish())
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

/// Errors that concern one entry, not the cache as a whole.
fn is_per_entry(e: &RegistryError) -> bool {
    matches!(e, RegistryError::NotFound { .. } | RegistryError::DigestMismatch { .. })
        || matches!(e, RegistryError::Http { status, .. } if *status < 500)
}

fn same_repo(a: &Reference, b: &Reference) -> bool {
    a.registry == b.registry && a.repository == b.repository
}

impl SharedCache for RegistryCache {
    fn lookup(&self, keys: &[Digest]) -> HashMap<Digest, SharedHit> {
        let hits = Mutex::new(HashMap::new());
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..LOOKUPS.min(keys.len()) {
                s.spawn(|| {
                    while let Some(k) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Some(hit) = self.lookup_one(k) {
                            hits.lock().expect("no panics while locked").insert(*k, hit);
                        }
                    }
                });
            }
        });
        hits.into_inner().expect("no panics while locked")
    }

    fn miss_reason(&self, key: &Digest) -> Option<String> {
        self.misses.lock().expect("no panics while locked").get(key).cloned()
    }

    fn exports(&self) -> bool {
        self.target.is_some()
    }

    fn export(&self, key: &Digest, layer: Option<&LayerRef>) {
        if let Some(tx) = self.exports.lock().expect("no panics while locked").as_ref() {
            let _ = tx.send(Export { key: *key, layer: layer.cloned() });
        }
    }

    fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    fn cache_mount(&self, id: &str, dir: &std::path::Path, fresh: bool) {
        let mut mounts = self.mounts.lock().expect("no panics while locked");
        let first = !mounts.contains_key(id);
        if self.target.is_some() {
            mounts.insert(id.to_owned(), dir.to_owned());
        }
        drop(mounts);
        if fresh && first {
            self.restore_mount(id, dir);
        }
    }
}

impl BlobSource for RegistryCache {
    fn has(&self, digest: &OciDigest) -> bool {
        self.blob_home(digest).is_some()
    }

    fn fetch(&self, store: &Store, digest: &OciDigest) -> Result<(), StoreError> {
        let Some((i, desc)) = self.blob_home(digest) else {
            return Err(StoreError::MissingBlob { digest: digest.clone() });
        };
        self.fetch_layer(store, i, &desc).map_err(|reason| {
            self.broken.store(true, Ordering::SeqCst);
            self.warn(format!(
                "fetching blob {digest} from cache {} failed ({reason}); building without the cache",
                self.sources[i].name()
            ));
            StoreError::Fetch {
                digest: digest.clone(),
                source_name: format!("cache {}", self.sources[i].name()),
                reason,
            }
        })
    }
}

/// Starts the export workers: each writes entries until the build says it is done.
fn start_exporters(cache: &Arc<RegistryCache>) {
    let (tx, rx) = mpsc::channel::<Export>();
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = cache.workers.lock().expect("no panics while locked");
    for _ in 0..EXPORTERS {
        let rx = Arc::clone(&rx);
        let cache = Arc::downgrade(cache);
        workers.push(std::thread::spawn(move || {
            loop {
                let job = rx.lock().expect("no panics while locked").recv();
                let Ok(job) = job else { return };
                let Some(cache) = cache.upgrade() else { return };
                cache.export_one(&job);
            }
        }));
    }
    *cache.exports.lock().expect("no panics while locked") = Some(tx);
}

impl RegistryCache {
    fn export_one(&self, job: &Export) {
        let Some(target) = &self.target else { return };
        let Some(i) = self.sources.iter().position(|s| same_repo(s, target)) else { return };
        if self.is_dead(i) {
            return;
        }
        let key = entry_key(&job.key, self.standing);
        let entry = entry_bytes(&key.to_hex(), job.layer.as_ref(), now());
        let tag = entry_tag(&job.key, self.standing);
        let put =
            || self.client.put_step_entry(target, &tag, &entry, job.layer.as_ref(), &self.store);
        // Another machine writing the same entry at the same moment can make the registry
        // refuse ours (distribution answers DIGEST_INVALID to one of two identical manifest
        // PUTs): the entry is there all the same, which is all that counts.
        let written_by_another = || matches!(self.client.step_entry(target, &tag, &key.to_hex()), Ok(Some(l)) if l == job.layer);
        let result = match put() {
            Err(e) if is_per_entry(&e) && !written_by_another() => put(),
            other => other,
        };
        match result {
            Ok(report) => {
                self.exported.fetch_add(1, Ordering::SeqCst);
                self.uploaded.fetch_add(report.bytes_uploaded, Ordering::SeqCst);
            }
            Err(e) if is_per_entry(&e) && written_by_another() => {
                self.exported.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if is_per_entry(&e) => {
                self.warn(format!("exporting to cache {}: {}", target.name(), chain(&e)));
            }
            Err(e) => self.give_up(i, &e),
        }
    }
}
