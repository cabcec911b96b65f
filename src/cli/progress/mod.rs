//! Build progress on standard error: a live view on a terminal (a counter of the steps, one
//! line per running step with its elapsed time and the last line of its output), plain lines
//! in CI logs, or JSON objects for tools.

mod json;
mod live;
mod step;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use petgraph::stable_graph::NodeIndex;

use super::args::Progress;
use super::output;
use crate::exec::Event;
use crate::plan::{FileInput, Plan};
use step::StepInfo;
pub(super) use step::{run_step, step_text, which_command_failed};

/// Receives build events and shows them.
pub(super) struct Printer<'a> {
    mode: Mode,
    plan: &'a Plan,
    files: &'a [FileInput],
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Plain,
    Json,
    /// `-q`: events are counted, nothing is shown.
    Quiet,
}

/// How many of the build's steps have ended, and how.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// The steps the build has (those that make a layer).
    pub(super) total: usize,
    pub(super) ran: usize,
    pub(super) cached: usize,
    pub(super) failed: usize,
    pub(super) cancelled: usize,
}

impl Tally {
    pub(super) fn ended(&self) -> usize {
        self.ran + self.cached + self.failed + self.cancelled
    }

    fn count(&mut self, e: &Event) {
        match e {
            Event::Reused { .. } | Event::Shared { .. } => self.cached += 1,
            Event::Finished { .. } => self.ran += 1,
            Event::Failed { .. } => self.failed += 1,
            Event::Cancelled { .. } => self.cancelled += 1,
            Event::Started { .. } | Event::Output { .. } | Event::Explain { .. } => {}
        }
    }
}

#[derive(Default)]
struct State {
    live: Option<live::Live>,
    tally: Tally,
    /// When each running step started.
    started: HashMap<NodeIndex, Instant>,
    /// Output not yet ending in a newline, per step.
    partial: HashMap<NodeIndex, Vec<u8>>,
    /// Each step's description, made once: a chatty step sends thousands of events.
    steps: HashMap<NodeIndex, std::sync::Arc<StepInfo>>,
}

impl<'a> Printer<'a> {
    /// Starts showing the build of `plan` (the JSON `build-started` event, the live counter).
    /// `None` (`-q`) shows nothing.
    pub(super) fn start(mode: Option<Progress>, plan: &'a Plan, files: &'a [FileInput]) -> Self {
        let mode = match mode {
            None => Mode::Quiet,
            Some(Progress::Json) => Mode::Json,
            Some(Progress::Auto)
                if std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("CI").is_none() =>
            {
                Mode::Live
            }
            Some(Progress::Auto | Progress::Plain) => Mode::Plain,
        };
        let total = crate::exec::build::needed_in_order(plan)
            .into_iter()
            .filter(|n| plan.graph[*n].op.makes_layer())
            .count();
        if mode == Mode::Json {
            let images: Vec<String> = plan.images.iter().map(|i| i.name.clone()).collect();
            output::emit(&json::build_started(total, &images));
        }
        let state = State {
            live: (mode == Mode::Live).then(|| live::Live::new(total)),
            tally: Tally { total, ..Tally::default() },
            ..State::default()
        };
        Self { mode, plan, files, state: Mutex::new(state) }
    }

    /// Shows one event.
    pub(super) fn event(&self, e: &Event) {
        let mut state = self.state.lock().expect("no panics while locked");
        state.tally.count(e);
        let node = node_of(e);
        let step = std::sync::Arc::clone(
            state
                .steps
                .entry(node)
                .or_insert_with(|| StepInfo::of(self.plan, self.files, node).into()),
        );
        let ran_for = match e {
            Event::Started { .. } => {
                state.started.insert(node, Instant::now());
                0.0
            }
            Event::Reused { .. }
            | Event::Shared { .. }
            | Event::Finished { .. }
            | Event::Failed { .. }
            | Event::Cancelled { .. } => {
                state.started.remove(&node).map_or(0.0, |t| t.elapsed().as_secs_f64())
            }
            Event::Output { .. } | Event::Explain { .. } => 0.0,
        };
        match self.mode {
            Mode::Json => output::emit(&json::event(e, &step, &state.tally, ran_for)),
            Mode::Plain => plain(e, &step, &mut state),
            Mode::Live => live(e, &step, &mut state),
            Mode::Quiet => {}
        }
    }

    /// Clears the live view (before the summary, a diagnostic or Ctrl-C's message) and tells
    /// how the steps ended.
    pub(super) fn finish(&self) -> Tally {
        let mut state = self.state.lock().expect("no panics while locked");
        if let Some(live) = &mut state.live {
            live.clear();
        }
        state.tally
    }
}

fn node_of(e: &Event) -> NodeIndex {
    match e {
        Event::Started { node }
        | Event::Reused { node }
        | Event::Shared { node, .. }
        | Event::Output { node, .. }
        | Event::Finished { node, .. }
        | Event::Failed { node, .. }
        | Event::Cancelled { node }
        | Event::Explain { node, .. } => *node,
    }
}

fn plain(e: &Event, step: &StepInfo, state: &mut State) {
    let mut err = std::io::stderr().lock();
    let name = &step.name;
    // Lines of steps that ended say how far the build is, as the live view's counter does.
    let count = format!("[{}/{}]", state.tally.ended(), state.tally.total);
    let _ = match e {
        Event::Started { .. } => writeln!(err, "{name} ..."),
        Event::Reused { .. } => writeln!(err, "{name} (cached) {count}"),
        Event::Shared { source, .. } => writeln!(err, "{name} (from cache {source}) {count}"),
        Event::Output { node, bytes } => {
            let prefix = format!("[{}]", step.stage);
            for line in take_lines(state.partial.entry(*node).or_default(), bytes) {
                let _ = writeln!(err, "{prefix} | {line}");
            }
            Ok(())
        }
        Event::Finished { elapsed, layer, .. } => {
            writeln!(err, "{name} done in {:.2}s ({}) {count}", elapsed.as_secs_f64(), size(*layer))
        }
        Event::Failed { message, .. } => writeln!(err, "{name} FAILED: {message} {count}"),
        Event::Cancelled { .. } => writeln!(err, "{name} stopped {count}"),
        Event::Explain { reasons, .. } => {
            for r in reasons {
                let _ = writeln!(err, "{name} runs because {r}");
            }
            Ok(())
        }
    };
}

fn live(e: &Event, step: &StepInfo, state: &mut State) {
    let Some(view) = state.live.as_mut() else { return };
    let name = &step.name;
    match e {
        Event::Started { node } => view.started(*node, name),
        Event::Output { node, bytes } => {
            let lines = take_lines(state.partial.entry(*node).or_default(), bytes);
            if let Some(last) = lines.iter().rev().find(|l| !l.trim().is_empty()) {
                view.output(*node, last);
            }
        }
        Event::Reused { node } => view.ended(*node, Some(&format!("  cached  {name}"))),
        Event::Shared { node, source } => {
            view.ended(*node, Some(&format!("  shared  {name} (from {source})")));
        }
        Event::Finished { node, elapsed, layer } => {
            let line = format!("  {:>5.1}s  {name} ({})", elapsed.as_secs_f64(), size(*layer));
            view.ended(*node, Some(&line));
        }
        Event::Failed { node, message, .. } => {
            view.ended(*node, Some(&format!("  FAILED  {name}: {message}")));
        }
        Event::Cancelled { node } => view.ended(*node, Some(&format!("  stopped {name}"))),
        Event::Explain { reasons, .. } => {
            for r in reasons {
                view.print(&format!("  why     {name} runs because {r}"));
            }
        }
    }
}

/// A step's output as text (invalid UTF-8 replaced).
pub(super) fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits complete lines off the front of a step's output.
fn take_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
    partial.extend_from_slice(bytes);
    let mut lines = Vec::new();
    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
    }
    lines
}

fn size(layer: Option<u64>) -> String {
    match layer {
        None => "no changes".into(),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}
