//! The seam between the build and a step cache shared between machines (the registry step
//! cache in `fleet`): the build asks for every key at once before any step runs, reuses what
//! the shared cache holds, and hands it every step it records.
//!
//! Invariant: a shared cache is an optimisation. Nothing it answers can fail a build: a lookup
//! that fails is a miss, and a fetch that fails mid-build makes the build start again without
//! it (see `build`), reusing what it has already recorded here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::digest::Digest;
use crate::oci::image::LayerRef;

/// A step recorded in a shared cache: its layer (`None` for a step that changes no file) and
/// where it was found.
#[derive(Debug, Clone)]
pub(crate) struct SharedHit {
    pub layer: Option<LayerRef>,
    /// The cache's name for people, e.g. `registry.example/team/cache`.
    pub source: String,
}

/// A step cache shared between machines. Keys are record keys: a step's key with its layer
/// compression, as in the store.
pub(crate) trait SharedCache: Send + Sync {
    /// Looks every key up at once; returns the hits. Never fails: a cache that cannot answer
    /// has no entries.
    fn lookup(&self, keys: &[Digest]) -> HashMap<Digest, SharedHit>;
    /// Why `key` had no entry, for `--explain` (e.g. "no entry in cache R", "cache R was
    /// unreachable: …"); `None` when it was not asked.
    fn miss_reason(&self, key: &Digest) -> Option<String>;
    /// Whether steps built here are exported (`--cache-to`).
    fn exports(&self) -> bool;
    /// A step built (or found only) here: export it, in the background.
    fn export(&self, key: &Digest, layer: Option<&LayerRef>);
    /// A step mounts cache `id` (marked for export) from `dir`; `fresh` when this store had
    /// none, in which case the shared cache fills it first if it has it. Mounted caches are
    /// saved to the shared cache when the build is done.
    fn cache_mount(&self, id: &str, dir: &std::path::Path, fresh: bool);
    /// Whether fetching a blob failed during this build: what was reused from the cache may
    /// then be unobtainable, so the build starts again without it.
    fn broken(&self) -> bool;
}

/// A shared cache as the build options hold it.
#[derive(Clone)]
pub(crate) struct SharedHandle(pub Arc<dyn SharedCache>);

impl std::fmt::Debug for SharedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCache")
    }
}

impl std::ops::Deref for SharedHandle {
    type Target = dyn SharedCache;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
