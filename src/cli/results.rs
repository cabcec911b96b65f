//! `stack build --results FILE`: one JSON document per build saying what was built, pushed or
//! left unchanged, for CI scripts (schema: `schemas/results.schema.json`).
//!
//! Invariant: the document's keys come in a fixed order (struct fields, images sorted by
//! name), so two builds of the same inputs differ only in `duration_seconds`. It is written
//! on failure too (`"status": "failed"`), whole or not at all (temp file + rename).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::push::PushedTag;
use crate::exec::{BuildReport, BuiltImage};

/// The version of the document's format; a change that removes or renames a key bumps it.
const FORMAT_VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Serialize)]
pub(super) struct Results {
    pub version: u32,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    pub duration_seconds: f64,
    pub steps: Steps,
    /// `--shard I/N` when given.
    pub shard: Option<ShardInfo>,
    /// `--affected-since REV` when given.
    pub affected_since: Option<String>,
    /// By image name.
    pub images: BTreeMap<String, ImageResult>,
    /// Why the build failed, when it did.
    pub failure: Option<FailureInfo>,
}

/// Step counts of the build.
#[derive(Debug, Default, Serialize)]
pub(super) struct Steps {
    pub run: usize,
    /// Reused from this machine's store.
    pub reused: usize,
    /// Reused from registry step caches, all of them.
    pub from_cache: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct ShardInfo {
    pub index: usize,
    pub count: usize,
}

/// One built image. The three dotted keys are those `docker buildx --metadata-file` writes,
/// for scripts written against it.
#[derive(Debug, Serialize)]
pub(super) struct ImageResult {
    pub name: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// `os/architecture[/variant]` (the first platform's, for a multi-platform image).
    pub platform: String,
    /// Each platform's manifest and config (one entry unless the image is an index).
    pub platforms: Vec<PlatformResult>,
    pub tags: Vec<String>,
    /// Manifest, config and layers, in bytes (compressed, as stored).
    pub size: u64,
    /// Where the image was written (`--out`), or `-` for standard output.
    pub output: String,
    /// The registry tags `--push` handled, in push order.
    pub pushed: Vec<PushResult>,
    #[serde(rename = "containerimage.digest")]
    pub buildx_digest: String,
    #[serde(rename = "containerimage.config.digest")]
    pub buildx_config_digest: String,
    /// The tags joined by commas (the image's name when it has none), as buildx writes it.
    #[serde(rename = "image.name")]
    pub buildx_name: String,
}

/// One platform of an image.
#[derive(Debug, Serialize)]
pub(super) struct PlatformResult {
    pub platform: String,
    pub manifest_digest: String,
    pub config_digest: String,
}

#[derive(Debug, Serialize)]
pub(super) struct PushResult {
    pub tag: String,
    /// `pushed` or `unchanged`.
    pub status: &'static str,
}

/// Where and why a failed build stopped.
#[derive(Debug, Default, Serialize)]
pub(super) struct FailureInfo {
    pub message: String,
    /// The failing step as written, when a step failed.
    pub step: Option<String>,
    pub file: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Results {
    /// An empty document (a failure before anything was built fills in `failure` only).
    pub(super) fn new(shard: Option<ShardInfo>, affected_since: Option<String>) -> Self {
        Self {
            version: FORMAT_VERSION,
            status: "succeeded",
            duration_seconds: 0.0,
            steps: Steps::default(),
            shard,
            affected_since,
            images: BTreeMap::new(),
            failure: None,
        }
    }

    /// Records the step counts of a finished build.
    pub(super) fn record_steps(&mut self, report: &BuildReport) {
        self.steps = Steps {
            run: report.steps_run,
            reused: report.steps_reused,
            from_cache: report.steps_shared.values().sum(),
        };
    }

    /// Records the built images.
    pub(super) fn record_images(&mut self, images: &[BuiltImage], output: &str) {
        for i in images {
            let size = i.all_blobs().iter().map(|b| b.size).sum::<u64>();
            let buildx_name = if i.tags.is_empty() { i.name.clone() } else { i.tags.join(",") };
            let parts = i.parts();
            let platforms = parts
                .iter()
                .map(|p| PlatformResult {
                    platform: p.platform.to_string(),
                    manifest_digest: p.manifest.digest.to_string(),
                    config_digest: p.config.digest.to_string(),
                })
                .collect();
            let result = ImageResult {
                name: i.name.clone(),
                manifest_digest: i.digest().to_string(),
                config_digest: i.config.digest.to_string(),
                platform: i.platform.to_string(),
                platforms,
                tags: i.tags.clone(),
                size,
                output: output.to_owned(),
                pushed: Vec::new(),
                buildx_digest: i.digest().to_string(),
                buildx_config_digest: i.config.digest.to_string(),
                buildx_name,
            };
            self.images.insert(i.name.clone(), result);
        }
    }

    /// Records what `--push` did with each tag.
    pub(super) fn record_pushes(&mut self, pushed: &[PushedTag]) {
        for p in pushed {
            if let Some(image) = self.images.get_mut(&p.image) {
                image.pushed.push(PushResult { tag: p.tag.clone(), status: p.status.as_str() });
            }
        }
    }

    /// Marks the build failed.
    pub(super) fn fail(&mut self, failure: FailureInfo) {
        self.status = "failed";
        self.failure = Some(failure);
    }

    /// Writes the document to `path`, replaced whole.
    pub(super) fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        fs_err::write(&tmp, text)?;
        fs_err::rename(&tmp, path)
    }
}
