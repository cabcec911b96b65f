//! `run`/`exec` steps: the bridge between the plan and the sandbox.

use petgraph::stable_graph::NodeIndex;

use super::build::{BuildError, BuildOptions, Event};
use crate::oci::image::LayerRef;
use crate::plan::{Plan, RunOp};
use crate::store::Store;

#[allow(clippy::too_many_arguments)]
pub(super) fn run_step(
    plan: &Plan,
    node: NodeIndex,
    _op: &RunOp,
    _parent: &[LayerRef],
    _store: &Store,
    _opts: &BuildOptions,
    _events: &(dyn Fn(Event) + Sync),
    _get: &dyn Fn(NodeIndex) -> Vec<LayerRef>,
) -> Result<Vec<LayerRef>, BuildError> {
    Err(BuildError::Step {
        node,
        label: plan.graph[node].label.clone(),
        message: "run steps are not available in this build of stack yet".into(),
        output_tail: Vec::new(),
    })
}
