//! `--progress json`: each build event as one JSON object on a line of standard error. The
//! schema is `schemas/progress.schema.json`, documented in the book's CLI reference.

use serde_json::{Value, json};

use super::step::StepInfo;
use super::{Tally, text_of};
use crate::exec::Event;

/// Bumped when an event loses or changes a field (new fields and events do not bump it).
pub(super) const SCHEMA_VERSION: u32 = 1;

/// The first event: how many steps the build has and which images it makes.
pub(super) fn build_started(total: usize, images: &[String]) -> Value {
    json!({
        "event": "build-started",
        "version": SCHEMA_VERSION,
        "steps": total,
        "images": images,
    })
}

/// The event for `e`, about the step `step`; `tally` counts the steps ended so far (this one
/// included); `ran_for` is how long the step has run (for a step that failed or was stopped).
pub(super) fn event(e: &Event, step: &StepInfo, tally: &Tally, ran_for: f64) -> Value {
    let (kind, fields) = match e {
        Event::Started { .. } => ("step-started", json!({})),
        Event::Output { bytes, .. } => ("step-output", json!({"text": text_of(bytes)})),
        Event::Explain { reasons, .. } => ("step-explain", json!({"reasons": reasons})),
        Event::Reused { .. } => ("step-finished", ended(tally, "cached", 0.0, json!({}))),
        Event::Shared { source, .. } => {
            ("step-finished", ended(tally, "cached", 0.0, json!({"from": source})))
        }
        Event::Finished { elapsed, layer, .. } => (
            "step-finished",
            ended(tally, "ran", elapsed.as_secs_f64(), json!({"layer_bytes": layer})),
        ),
        Event::Failed { message, exit_code, .. } => (
            "step-finished",
            ended(tally, "failed", ran_for, json!({"message": message, "exit_code": exit_code})),
        ),
        Event::Cancelled { .. } => ("step-finished", ended(tally, "cancelled", ran_for, json!({}))),
    };
    let mut v = json!({"event": kind, "step": step.json()});
    merge(&mut v, fields);
    v
}

/// The fields of a `step-finished` event.
fn ended(tally: &Tally, status: &str, seconds: f64, extra: Value) -> Value {
    let mut v = json!({
        "status": status,
        "seconds": seconds,
        "done": tally.ended(),
        "total": tally.total,
    });
    merge(&mut v, extra);
    v
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}
