//! The resolved inputs of an image, from its plan: the base images its steps start from (with
//! the digests `stack.lock` pins) and a digest of the build context files its `copy` steps read.
//!
//! Invariant: pure; the context digest covers each file's path relative to the context, kind,
//! mode and content hash (or link target), sorted, never an absolute path or a time.

use std::collections::BTreeSet;

use petgraph::graph::NodeIndex;

use super::provenance::Dependency;
use crate::context::FileKind;
use crate::digest::OciDigest;
use crate::plan::{CopySource, Op, Plan};

/// The bases and the context an image's steps read, sorted: `oci:REFERENCE` for each base,
/// `context:` for the files of the build context (absent when it reads none).
pub(crate) fn plan_dependencies(plan: &Plan, node: NodeIndex) -> Vec<Dependency> {
    let mut out = BTreeSet::new();
    let mut files = BTreeSet::new();
    for n in plan.ancestors(node) {
        match &plan.graph[n].op {
            Op::Base { reference, image } => {
                out.insert(Dependency {
                    uri: format!("oci:{reference}"),
                    name: reference.clone(),
                    digest: image.manifest_digest.clone(),
                });
            }
            Op::Copy(c) => {
                if let CopySource::Context { selected, .. } = &c.source {
                    files.extend(selected.iter().flatten().flat_map(|s| &s.entries).map(line));
                }
            }
            _ => {}
        }
    }
    if !files.is_empty() {
        let listing: Vec<String> = files.into_iter().collect();
        out.insert(Dependency {
            uri: "context:".into(),
            name: "build context".into(),
            digest: OciDigest::of(&crate::json::to_canonical(&listing)),
        });
    }
    out.into_iter().collect()
}

/// One context file as the context digest covers it: `PATH KIND MODE HASH-OR-TARGET`.
fn line((_, meta): &(String, crate::context::FileMeta)) -> String {
    let what = match (&meta.hash, &meta.link) {
        (Some(h), _) => h.to_string(),
        (None, Some(target)) => target.clone(),
        (None, None) => String::new(),
    };
    format!("{} {} {:o} {what}", meta.rel, kind(meta.kind), meta.mode)
}

/// A context entry's kind as the context digest spells it (never `Debug` output).
fn kind(k: FileKind) -> String {
    match k {
        FileKind::File => "file".into(),
        FileKind::Dir => "dir".into(),
        FileKind::Symlink => "symlink".into(),
        FileKind::Fifo => "fifo".into(),
        FileKind::CharDevice { major, minor } => format!("char:{major}:{minor}"),
        FileKind::BlockDevice { major, minor } => format!("block:{major}:{minor}"),
    }
}
