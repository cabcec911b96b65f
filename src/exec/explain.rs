//! `--explain`: remembers what each step's key covered in its last build, and says, for a
//! step that is not reused, what changed since: a file, an arg or env value, the step before
//! it, or that nothing was cached.
//!
//! Invariant: these records only explain; no build decision ever depends on them.

use std::collections::BTreeMap;

use petgraph::stable_graph::NodeIndex;

use crate::digest::Digest;
use crate::plan::{Node, Plan};
use crate::store::Store;

/// At most this many reasons are listed per step.
const MAX_REASONS: usize = 8;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct History {
    key: String,
    inputs: BTreeMap<String, String>,
}

/// The key under which a step's history is kept: its place in this project, not its content.
impl History {
    /// The key of the step's last build.
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

pub(super) fn history_key(plan: &Plan, node: NodeIndex) -> Digest {
    let n = &plan.graph[node];
    let dir = plan
        .context_dirs
        .get(n.file)
        .map(|d| fs_err::canonicalize(d).unwrap_or_else(|_| d.clone()))
        .unwrap_or_default();
    Digest::of(format!("{}\0{}", dir.display(), n.identity).as_bytes())
}

pub(super) fn load(store: &Store, key: &Digest) -> Option<History> {
    store.get_record("explain", key).ok().flatten()
}

/// Records the step's inputs when they differ from what is remembered (best effort).
pub(super) fn save(store: &Store, key: &Digest, n: &Node, previous: Option<&History>) {
    if previous.is_some_and(|p| p.key == n.key.to_hex()) {
        return;
    }
    let h = History { key: n.key.to_hex(), inputs: n.inputs.iter().cloned().collect() };
    let _ = store.put_record("explain", key, &h);
}

/// Why `node` runs.
pub(super) fn reasons(
    plan: &Plan,
    node: NodeIndex,
    previous: Option<&History>,
    bypass: bool,
) -> Vec<String> {
    let n = &plan.graph[node];
    if bypass {
        return vec!["the cache is bypassed (--no-cache)".into()];
    }
    let Some(prev) = previous else {
        return vec!["nothing was cached for this step: it was never built here".into()];
    };
    if prev.key == n.key.to_hex() {
        return vec!["its cached result is no longer in the store".into()];
    }
    let now: BTreeMap<&str, &str> =
        n.inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    let mut parent_changed = false;
    for (name, old) in &prev.inputs {
        match now.get(name.as_str()) {
            None => out.push(format!("{name} was removed")),
            Some(new) if *new != old => {
                if name == "parent" {
                    parent_changed = true;
                } else if name.starts_with("file ")
                    || name.starts_with("source ")
                    || name == "content"
                {
                    out.push(format!("{name} changed"));
                } else {
                    out.push(format!("{name} changed from `{old}` to `{new}`"));
                }
            }
            Some(_) => {}
        }
    }
    for (name, new) in &now {
        if !prev.inputs.contains_key(*name) {
            if name.starts_with("file ") {
                out.push(format!("{name} was added"));
            } else {
                out.push(format!("{name} was set to `{new}`"));
            }
        }
    }
    if parent_changed {
        let before = before_label(plan, node);
        out.push(format!("the file system it starts from changed ({before})"));
    }
    if out.is_empty() {
        out.push("its definition changed".into());
    }
    if out.len() > MAX_REASONS {
        let more = out.len() - MAX_REASONS;
        out.truncate(MAX_REASONS);
        out.push(format!("and {more} more change(s)"));
    }
    out
}

/// Names the nearest earlier step that changes the file system.
fn before_label(plan: &Plan, node: NodeIndex) -> String {
    let mut cur = plan.graph[node].parent;
    while let Some(p) = cur {
        let n = &plan.graph[p];
        if n.op.makes_layer()
            || matches!(n.op, crate::plan::Op::Base { .. } | crate::plan::Op::Scratch)
        {
            return if n.stage.is_empty() {
                format!("`{}`", n.label)
            } else {
                format!("`[{}] {}`", n.stage, n.label)
            };
        }
        cur = n.parent;
    }
    "its base".into()
}
