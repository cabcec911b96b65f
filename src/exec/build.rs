//! Runs a plan: every node's layers are looked up by key in the store or produced, then each
//! requested image's config and manifest are assembled and stored.
//!
//! Invariant: a node's result is a pure function of its key; results are recorded under the
//! key only after the layer blob they name is committed, so a crash never leaves a record
//! pointing at nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::stable_graph::NodeIndex;
use serde_json::{Map, Value};

use super::failure::StepFailure;
use super::layers::{self, LayerError};
use super::shared::{SharedHandle, SharedHit};
use crate::digest::OciDigest;
use crate::json::to_canonical;
use crate::oci::compress::Compression;
use crate::oci::image::{
    BuiltImage, Descriptor, LayerRef, Manifest, OCI_CONFIG, OCI_MANIFEST, rfc3339,
};
use crate::oci::layer::Entry;
use crate::plan::{CopySource, Op, Plan};
use crate::store::{Store, StoreError};

/// How to build.
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions {
    pub compression: Compression,
    /// The time of the files the build writes, and the clamp for file mtimes: the given
    /// `SOURCE_DATE_EPOCH`, else 0. Part of what selects a cached layer.
    pub epoch: i64,
    /// The image's creation time (the config's `created`, its history entries): the given
    /// `SOURCE_DATE_EPOCH`, else the time of the context's last git commit, else 0. Only the
    /// config carries it, so a new commit reuses every cached layer.
    pub created: i64,
    /// Ignore cached results (all steps, or the named stages).
    pub no_cache: bool,
    pub no_cache_stages: Vec<String>,
    /// Parallel steps at most.
    pub jobs: usize,
    /// Secrets by id, for `run` steps.
    pub secrets: BTreeMap<String, SecretValue>,
    /// SSH agent sockets by id, for `run` steps' `ssh` mounts.
    pub ssh: BTreeMap<String, std::path::PathBuf>,
    pub keep_going: bool,
    /// Say why each step that is not reused runs.
    pub explain: bool,
    /// Set to stop the build: no new steps start and running ones are killed.
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Steps to run even when cached (`stack verify --steps` runs one step again over the
    /// same, cached, input).
    pub rerun: Vec<NodeIndex>,
    /// A step cache shared between machines (`--cache-from`/`--cache-to`).
    pub shared: Option<SharedHandle>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            epoch: 0,
            created: 0,
            no_cache: false,
            no_cache_stages: Vec::new(),
            jobs: default_jobs(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            keep_going: false,
            explain: false,
            cancel: std::sync::Arc::default(),
            rerun: Vec::new(),
            shared: None,
        }
    }
}

/// Steps run at once by default: twice the cores, at least 4. Steps mostly wait (on a
/// sandboxed process, on the disk); the CPU-bound work inside them (hashing, compression)
/// runs on rayon's pool, which is sized to the cores, so more steps than cores pay off.
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get).saturating_mul(2).max(4)
}

/// Where a secret's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum SecretValue {
    File(std::path::PathBuf),
    Env(String),
}

/// What happened to a node, for progress displays and logs.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Started {
        node: NodeIndex,
    },
    Reused {
        node: NodeIndex,
    },
    /// Reused from a step cache shared between machines.
    Shared {
        node: NodeIndex,
        source: String,
    },
    Output {
        node: NodeIndex,
        bytes: Vec<u8>,
    },
    Finished {
        node: NodeIndex,
        elapsed: Duration,
        layer: Option<u64>,
    },
    /// The step failed (`exit_code` when its command ran and exited non-zero).
    Failed {
        node: NodeIndex,
        message: String,
        exit_code: Option<i32>,
    },
    /// The step was stopped before it ended: another step failed, or Ctrl-C.
    Cancelled {
        node: NodeIndex,
    },
    /// Why a step runs instead of being reused (`--explain`).
    Explain {
        node: NodeIndex,
        reasons: Vec<String>,
    },
}

/// The summary of a build.
#[derive(Debug, Default, Clone)]
pub(crate) struct BuildReport {
    pub images: Vec<BuiltImage>,
    pub steps_run: usize,
    /// Reused from this machine's store.
    pub steps_reused: usize,
    /// Reused from a shared step cache, by cache.
    pub steps_shared: BTreeMap<String, usize>,
    /// Every node's layers (its parent's and its own), for telling which step made a layer.
    pub node_layers: HashMap<NodeIndex, Vec<LayerRef>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("step `{label}` failed")]
    Step {
        node: NodeIndex,
        label: String,
        #[source]
        cause: StepFailure,
        /// The last lines of the command's output, when it ran.
        output_tail: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The machine failed a step (a full disk, no memory): not the step's fault.
    #[error("step `{label}` could not be completed")]
    Machine {
        label: String,
        #[source]
        source: StepFailure,
    },
    #[error("the build was interrupted")]
    Interrupted,
    /// A `run` step of another platform, and no emulator for it on this machine.
    #[error(transparent)]
    Emulation(#[from] super::emulation::EmulationError),
}

/// The record stored under a layer step's key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StepRecord {
    layer: Option<LayerRef>,
}

/// One lock per key being built, so that identical steps run once.
type KeyLocks = Mutex<HashMap<crate::digest::Digest, Arc<Mutex<()>>>>;

/// Fails before anything runs when a `run` step is for a platform this machine cannot run.
fn check_emulation(plan: &Plan) -> Result<(), BuildError> {
    let mut checked: Vec<&crate::oci::image::Platform> = Vec::new();
    for n in plan.graph.node_weights() {
        if let Op::Run(r) = &n.op
            && !checked.contains(&&r.platform)
        {
            super::emulation::plan(&r.platform)?;
            checked.push(&r.platform);
        }
    }
    Ok(())
}

/// Runs every node the requested images need and assembles the images.
///
/// With a shared cache whose blobs turn out to be unobtainable mid-build, the build starts
/// again without it: what this machine built meanwhile is recorded, so only the steps that
/// came from the cache run again.
pub(crate) fn build(
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    events: &(dyn Fn(Event) + Sync),
) -> Result<BuildReport, BuildError> {
    check_emulation(plan)?;
    let first = build_once(plan, store, opts, events);
    match (&opts.shared, &first) {
        (Some(shared), Err(BuildError::Step { .. } | BuildError::Store(_)))
            if shared.broken() && !super::cancel::interrupted() =>
        {
            let alone = BuildOptions { shared: None, ..opts.clone() };
            build_once(plan, store, &alone, events)
        }
        _ => first,
    }
}

/// Counts of what happened to the steps.
#[derive(Default)]
struct Counters {
    run: usize,
    reused: usize,
    shared: BTreeMap<String, usize>,
}

fn build_once(
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    events: &(dyn Fn(Event) + Sync),
) -> Result<BuildReport, BuildError> {
    let in_flight: KeyLocks = Mutex::new(HashMap::new());
    let results: Mutex<HashMap<NodeIndex, Vec<LayerRef>>> = Mutex::new(HashMap::new());
    let mut report = BuildReport::default();
    let order = super::schedule::order(plan);
    let hits = shared_lookup(plan, &order, store, opts);
    let counters = Mutex::new(Counters::default());
    // Ctrl-C reaches the steps through the same flag as a failure.
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if super::cancel::interrupted() {
                    opts.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                std::thread::park_timeout(std::time::Duration::from_millis(25));
            }
        });
        // Even if a step panics, the monitor must stop, or the scope would wait for it forever.
        let stop_monitor = SetOnDrop(&done);
        let r =
            super::schedule::run(plan, &order, opts.jobs, opts.keep_going, &opts.cancel, &|node| {
                let shared = Shared {
                    plan,
                    store,
                    opts,
                    results: &results,
                    events,
                    counters: &counters,
                    in_flight: &in_flight,
                    hits: &hits,
                };
                let layers = exec_node(&shared, node).inspect_err(|e| {
                    report_failure(e, &opts.cancel, events);
                })?;
                results.lock().expect("no panics while locked").insert(node, layers);
                Ok(())
            });
        drop(stop_monitor);
        // Wake the monitor so the build does not wait out its timeout.
        monitor.thread().unpark();
        r
    });
    if super::cancel::interrupted() {
        return Err(BuildError::Interrupted);
    }
    result?;
    let counters = counters.into_inner().expect("no panics while locked");
    report.steps_run = counters.run;
    report.steps_reused = counters.reused;
    report.steps_shared = counters.shared;
    let results = results.into_inner().expect("no panics while locked");
    for target in &plan.images {
        let image = assemble(plan, target, &results, store, opts)?;
        // A built image has all its blobs here: those reused from a shared cache come now.
        for layer in &image.layers {
            store.ensure_blob(&layer.digest)?;
        }
        report.images.push(image);
    }
    report.images = crate::oci::image::group_platforms(std::mem::take(&mut report.images), store)?;
    record_shared_hits(plan, store, opts, &hits);
    report.node_layers = results;
    Ok(report)
}

/// Asks the shared cache, at once, for every step this build may need from it: the steps the
/// store lacks, or all steps when exporting (a step built here before is exported if the
/// cache lacks it).
fn shared_lookup(
    plan: &Plan,
    order: &[NodeIndex],
    store: &Store,
    opts: &BuildOptions,
) -> HashMap<crate::digest::Digest, SharedHit> {
    let Some(shared) = &opts.shared else { return HashMap::new() };
    let keys: Vec<crate::digest::Digest> = order
        .iter()
        .map(|i| &plan.graph[*i])
        .filter(|n| matches!(n.op, Op::Copy(_) | Op::File(_) | Op::Workdir { .. } | Op::Run(_)))
        .filter(|n| !(opts.no_cache || opts.no_cache_stages.contains(&n.stage)))
        .map(|n| record_key(&layer_key(&n.key, opts.epoch), opts.compression))
        .filter(|k| shared.exports() || !has_usable_record(store, k))
        .collect();
    shared.lookup(&keys)
}

/// Whether the store has a record under `record` whose blob it holds.
fn has_usable_record(store: &Store, record: &crate::digest::Digest) -> bool {
    matches!(
        store.get_record::<StepRecord>("step", record),
        Ok(Some(rec)) if rec.layer.as_ref().is_none_or(|l| store.has_blob(&l.blob.digest))
    )
}

/// Records here the steps reused from the shared cache whose blobs came here, so the next
/// build reuses them without asking.
fn record_shared_hits(
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    hits: &HashMap<crate::digest::Digest, SharedHit>,
) {
    for n in plan.graph.node_weights() {
        let key = record_key(&layer_key(&n.key, opts.epoch), opts.compression);
        let Some(hit) = hits.get(&key) else { continue };
        if hit.layer.as_ref().is_none_or(|l| store.has_blob(&l.blob.digest))
            && !has_usable_record(store, &key)
        {
            // Best effort: a record not written is asked for again next time.
            let _ = store.put_record("step", &key, &StepRecord { layer: hit.layer.clone() });
        }
    }
}

/// Tells the display that a step failed, or that it was stopped: once the build is cancelled
/// (by the first failure or Ctrl-C), the steps killed on the way did not fail by themselves.
fn report_failure(
    e: &BuildError,
    cancel: &std::sync::atomic::AtomicBool,
    events: &(dyn Fn(Event) + Sync),
) {
    let BuildError::Step { node, cause, .. } = e else { return };
    let node = *node;
    // Ctrl-C reaches the step's processes (they share the terminal) before the build's flag
    // is set, so an interrupted build also counts as cancelled.
    if cancel.load(std::sync::atomic::Ordering::SeqCst) || super::cancel::interrupted() {
        events(Event::Cancelled { node });
    } else {
        let message = crate::diag::error_chain(cause);
        events(Event::Failed { node, message, exit_code: cause.exit_code() });
    }
}

/// The nodes the requested images need, in an order where parents come first.
pub(crate) fn needed_in_order(plan: &Plan) -> Vec<NodeIndex> {
    super::schedule::order(plan)
}

/// Sets a flag when dropped, including while unwinding from a panic.
struct SetOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What every node's execution shares.
struct Shared<'a> {
    plan: &'a Plan,
    store: &'a Store,
    opts: &'a BuildOptions,
    results: &'a Mutex<HashMap<NodeIndex, Vec<LayerRef>>>,
    events: &'a (dyn Fn(Event) + Sync),
    counters: &'a Mutex<Counters>,
    in_flight: &'a KeyLocks,
    /// What the shared cache holds, by record key.
    hits: &'a HashMap<crate::digest::Digest, SharedHit>,
}

/// Produces node `node`'s layers: reused from the store or the shared cache when its key is
/// there, else made by running the step.
fn exec_node(sh: &Shared<'_>, node: NodeIndex) -> Result<Vec<LayerRef>, BuildError> {
    let Shared { plan, store, opts, events, counters, in_flight, .. } = *sh;
    let n = &plan.graph[node];
    let parent_layers = n.parent.map(|p| sh.layers_of(p)).unwrap_or_default();
    match &n.op {
        Op::Scratch => return Ok(Vec::new()),
        Op::Base { image, .. } => return Ok(image.layers.clone()),
        Op::Config => return Ok(parent_layers),
        _ => {}
    }
    // Identical steps (same key, e.g. in two stages) run once: the second waits for the first
    // and then finds its record.
    let slot =
        Arc::clone(in_flight.lock().expect("no panics while locked").entry(n.key).or_default());
    let _running = slot.lock().expect("no panics while locked");
    let bypass =
        opts.no_cache || opts.no_cache_stages.contains(&n.stage) || opts.rerun.contains(&node);
    let history_key = super::explain::history_key(plan, node);
    let previous = super::explain::load(store, &history_key);
    let remember = || super::explain::save(store, &history_key, n, previous.as_ref());
    let layer_key = layer_key(&n.key, opts.epoch);
    let shared_key = record_key(&layer_key, opts.compression);
    if !bypass && let Some(layers) = sh.reuse(node, &layer_key, &parent_layers, &remember)? {
        return Ok(layers);
    }
    if opts.explain {
        let mut reasons = super::explain::reasons(plan, node, previous.as_ref(), bypass);
        if let Some(why) = opts.shared.as_ref().and_then(|s| s.miss_reason(&shared_key)) {
            reasons.push(why);
        }
        events(Event::Explain { node, reasons });
    }
    events(Event::Started { node });
    if let Op::Run(op) = &n.op {
        let parents = parent_layers.len();
        let get = |i: NodeIndex| sh.layers_of(i);
        return super::run::run_step(plan, node, op, &parent_layers, store, opts, events, &get)
            .inspect(|layers| {
                remember();
                counters.lock().expect("no panics while locked").run += 1;
                if let Some(shared) = opts.shared.as_ref().filter(|s| s.exports()) {
                    shared.export(&shared_key, layers.get(parents));
                }
            });
    }
    let started = Instant::now();
    let blame = Blame { node, label: &n.label };
    // Unpacked `add` archives: kept until the layer is written, then removed.
    let mut scratch = layers::Scratch::default();
    let entries = sh
        .layer_entries(&n.op, &parent_layers, &mut scratch)
        .map_err(|e| blame.machine_or_step(e))?;
    let layer = if entries.is_empty() {
        None
    } else {
        let last_time = previous_layer(store, previous.as_ref(), opts);
        Some(
            layers::write_layer(store, &entries, opts.epoch, opts.compression, last_time.as_ref())
                .map_err(|e| blame.machine_or_step(e))?,
        )
    };
    store.put_record("step", &shared_key, &StepRecord { layer: layer.clone() })?;
    if let Some(shared) = opts.shared.as_ref().filter(|s| s.exports()) {
        shared.export(&shared_key, layer.as_ref());
    }
    remember();
    events(Event::Finished {
        node,
        elapsed: started.elapsed(),
        layer: layer.as_ref().map(|l| l.blob.size),
    });
    counters.lock().expect("no panics while locked").run += 1;
    let mut layers = parent_layers;
    layers.extend(layer);
    Ok(layers)
}

impl Shared<'_> {
    /// The layers of a node that has run (a dependency of the one running).
    fn layers_of(&self, node: NodeIndex) -> Vec<LayerRef> {
        self.results
            .lock()
            .expect("no panics while locked")
            .get(&node)
            .cloned()
            .expect("dependencies run first")
    }

    /// Node `node`'s layers when its result is in the store (re-encoded if need be) or in the
    /// shared cache, counted and reported as reused; `None` when the step must run.
    fn reuse(
        &self,
        node: NodeIndex,
        layer_key: &crate::digest::Digest,
        parent_layers: &[LayerRef],
        remember: &dyn Fn(),
    ) -> Result<Option<Vec<LayerRef>>, BuildError> {
        let Shared { store, opts, events, counters, hits, .. } = *self;
        let shared_key = record_key(layer_key, opts.compression);
        let layer = if let Some(rec) = cached_layer(store, layer_key, opts.compression)? {
            remember();
            events(Event::Reused { node });
            counters.lock().expect("no panics while locked").reused += 1;
            if let Some(shared) = opts.shared.as_ref().filter(|s| s.exports())
                && !hits.contains_key(&shared_key)
            {
                shared.export(&shared_key, rec.layer.as_ref());
            }
            rec.layer
        } else if let Some(hit) = hits.get(&shared_key) {
            remember();
            events(Event::Shared { node, source: hit.source.clone() });
            *counters
                .lock()
                .expect("no panics while locked")
                .shared
                .entry(hit.source.clone())
                .or_default() += 1;
            hit.layer.clone()
        } else {
            return Ok(None);
        };
        let mut layers = parent_layers.to_vec();
        layers.extend(layer);
        Ok(Some(layers))
    }

    /// The entries of a `copy`, `file` or `workdir` step onto the layers `parent`; archives an
    /// `add` unpacks stay in `scratch` until the layer is written.
    fn layer_entries(
        &self,
        op: &Op,
        parent: &[LayerRef],
        scratch: &mut layers::Scratch,
    ) -> Result<Vec<Entry>, LayerError> {
        let Shared { store, opts, .. } = *self;
        let target = layers::view_of(store, parent)?;
        match op {
            Op::Copy(op) => {
                let source_view = match &op.source {
                    CopySource::Node { node: src, .. } => {
                        Some(layers::view_of(store, &self.layers_of(*src))?)
                    }
                    CopySource::Context { .. } | CopySource::Remote { .. } => None,
                };
                let scratch = (store, scratch);
                layers::copy_entries(op, &target, source_view.as_ref(), opts.epoch, scratch)
            }
            Op::File(op) => layers::file_entries(op, &target, opts.epoch),
            Op::Workdir { path, user } => layers::workdir_entries(path, user, &target, opts.epoch),
            Op::Scratch | Op::Base { .. } | Op::Config | Op::Run(_) => {
                unreachable!("only copy, file and workdir steps are made of entries")
            }
        }
    }
}

/// Turns the causes of step `node`'s failure into the build's error, blaming the step or the
/// machine.
pub(super) struct Blame<'a> {
    pub node: NodeIndex,
    pub label: &'a str,
}

impl Blame<'_> {
    /// The step failed because of `cause`.
    pub(super) fn step(&self, cause: StepFailure) -> BuildError {
        BuildError::Step {
            node: self.node,
            label: self.label.to_owned(),
            cause,
            output_tail: Vec::new(),
        }
    }

    /// A failure of the machine's own file operations (making a layer, a step's folders): the
    /// machine's failure (a full disk…) keeps its cause and is never blamed on the step;
    /// anything else is the step's.
    pub(super) fn machine_or_step(&self, cause: impl Into<StepFailure>) -> BuildError {
        let cause = cause.into();
        if crate::diag::is_machine_error(&cause) {
            BuildError::Machine { label: self.label.to_owned(), source: cause }
        } else {
            self.step(cause)
        }
    }
}

/// The layer this step produced the last time it was built with this compression, if the
/// store still has it.
fn previous_layer(
    store: &Store,
    previous: Option<&super::explain::History>,
    opts: &BuildOptions,
) -> Option<LayerRef> {
    let key = layer_key(&crate::digest::Digest::from_hex(previous?.key())?, opts.epoch);
    let rec =
        store.get_record::<StepRecord>("step", &record_key(&key, opts.compression)).ok()??;
    rec.layer.filter(|l| store.has_blob(&l.blob.digest))
}

/// What selects a step's layer besides its compression: its key, and the time its files get
/// (`epoch`), which the key does not cover (a layer's mtimes are `epoch` or clamped to it, so
/// a layer of another epoch is another layer). Epoch 0 keeps the step key itself.
pub(super) fn layer_key(key: &crate::digest::Digest, epoch: i64) -> crate::digest::Digest {
    if epoch == 0 {
        *key
    } else {
        crate::digest::Digest::of(format!("{}@epoch={epoch}", key.to_hex()).as_bytes())
    }
}

/// Where the record of a step built with `compression` is stored. A step's key says what the
/// layer holds, not how it is compressed, so each compression has its own record: a build
/// must never return a layer blob of another compression than it was asked for (the digest
/// would then depend on what the store has seen). gzip keeps the step key itself.
fn record_key(key: &crate::digest::Digest, compression: Compression) -> crate::digest::Digest {
    match compression {
        Compression::Gzip => *key,
        other => crate::digest::Digest::of(format!("{}+{}", key.to_hex(), other.name()).as_bytes()),
    }
}

/// The compressions a step's layer may already be stored in, for re-encoding.
const ENCODINGS: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

/// The cached result of a step in `compression`: its own record, or else the record of
/// another compression, whose layer is then re-encoded (the tar, and so the diff id, stays the
/// same; only the blob changes) and recorded under `compression`. `None` when the step must
/// run.
fn cached_layer(
    store: &Store,
    key: &crate::digest::Digest,
    compression: Compression,
) -> Result<Option<StepRecord>, BuildError> {
    let usable = |c: Compression| -> Result<Option<StepRecord>, StoreError> {
        Ok(store
            .get_record::<StepRecord>("step", &record_key(key, c))?
            .filter(|rec| rec.layer.as_ref().is_none_or(|l| store.has_blob(&l.blob.digest))))
    };
    if let Some(rec) = usable(compression)? {
        return Ok(Some(rec));
    }
    for other in ENCODINGS.into_iter().filter(|c| *c != compression) {
        let Some(rec) = usable(other)? else { continue };
        let layer = match rec.layer {
            None => None,
            // A blob that cannot be re-encoded (corrupt, say) is a miss: the step runs.
            Some(l) => match layers::recompress(store, &l, compression) {
                Ok(l) => Some(l),
                Err(_) => continue,
            },
        };
        let rec = StepRecord { layer };
        store.put_record("step", &record_key(key, compression), &rec)?;
        return Ok(Some(rec));
    }
    Ok(None)
}

/// Stores the outcome of a layer step (used by the run executor too), under the record of
/// the layer's compression; `layer_key` is the step's [`layer_key`].
pub(super) fn record(
    store: &Store,
    layer_key: &crate::digest::Digest,
    layer: Option<&LayerRef>,
) -> Result<(), StoreError> {
    let compression = layer.map_or(Compression::Gzip, |l| {
        ENCODINGS
            .into_iter()
            .find(|c| c.media_type() == l.blob.media_type)
            .unwrap_or(Compression::Gzip)
    });
    store.put_record(
        "step",
        &record_key(layer_key, compression),
        &StepRecord { layer: layer.cloned() },
    )
}

/// The `user` in effect at a node, found from the plan's run ops or config (for workdir).
/// Builds the config and manifest of one image and stores them.
fn assemble(
    plan: &Plan,
    target: &crate::plan::ImageTarget,
    results: &HashMap<NodeIndex, Vec<LayerRef>>,
    store: &Store,
    opts: &BuildOptions,
) -> Result<BuiltImage, BuildError> {
    let chain = plan.chain(target.node);
    let created = rfc3339(opts.created);
    let mut history: Vec<Value> = Vec::new();
    let mut prev_layers = 0usize;
    for idx in &chain {
        let n = &plan.graph[*idx];
        let layers = &results[idx];
        match &n.op {
            Op::Scratch => {}
            Op::Base { image, .. } => history.extend(image.config.history()),
            _ => {
                let mut h = Map::new();
                h.insert("created".into(), Value::String(created.clone()));
                h.insert("created_by".into(), Value::String(n.label.clone()));
                h.insert("comment".into(), Value::String("stack".into()));
                if layers.len() == prev_layers {
                    h.insert("empty_layer".into(), Value::Bool(true));
                }
                history.push(Value::Object(h));
            }
        }
        prev_layers = layers.len();
    }
    let layers = &results[&target.node];
    let mut config = target.config.clone();
    config.0.insert("created".into(), Value::String(created));
    config.0.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
    );
    config.0.insert("history".into(), Value::Array(history));
    let config_bytes = to_canonical(&config.0);
    let config_digest = store.put_blob(&config_bytes)?;
    let config_desc = Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: config_desc.clone(),
        layers: layers.iter().map(|l| l.blob.clone()).collect(),
        annotations: None,
    };
    let manifest_bytes = to_canonical(&manifest);
    let manifest_digest: OciDigest = store.put_blob(&manifest_bytes)?;
    Ok(BuiltImage {
        name: target.name.clone(),
        tags: target.tags.clone(),
        manifest: Descriptor::new(OCI_MANIFEST, manifest_digest, manifest_bytes.len() as u64),
        config: config_desc,
        layers: manifest.layers,
        platform: target.platform.clone(),
        platforms: Vec::new(),
        index: None,
    })
}
