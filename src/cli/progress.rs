//! Build progress on standard error: a live view on a terminal (one line per running step
//! with its elapsed time and the last line of its output), plain lines in CI logs, or JSON
//! objects for tools.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use petgraph::stable_graph::NodeIndex;

use super::args::Progress;
use crate::exec::Event;
use crate::plan::Plan;

/// Receives build events and shows them.
pub(super) struct Printer<'a> {
    mode: Mode,
    plan: &'a Plan,
    lock: Mutex<Live>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Plain,
    Json,
}

#[derive(Default)]
struct Live {
    multi: Option<MultiProgress>,
    bars: HashMap<NodeIndex, ProgressBar>,
    /// Output not yet ending in a newline, per step.
    partial: HashMap<NodeIndex, Vec<u8>>,
}

impl<'a> Printer<'a> {
    pub(super) fn new(mode: Progress, plan: &'a Plan) -> Self {
        let mode = match mode {
            Progress::Json => Mode::Json,
            Progress::Auto
                if std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("CI").is_none() =>
            {
                Mode::Live
            }
            Progress::Auto | Progress::Plain => Mode::Plain,
        };
        let live = Live {
            multi: (mode == Mode::Live)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            ..Live::default()
        };
        Self { mode, plan, lock: Mutex::new(live) }
    }

    fn name(&self, n: NodeIndex) -> String {
        let node = &self.plan.graph[n];
        if node.stage.is_empty() {
            node.label.clone()
        } else {
            format!("[{}] {}", node.stage, node.label)
        }
    }

    /// Shows one event.
    pub(super) fn event(&self, e: &Event) {
        let mut live = self.lock.lock().expect("no panics while locked");
        match self.mode {
            Mode::Json => self.json(e),
            Mode::Plain => self.plain(e, &mut live),
            Mode::Live => self.live(e, &mut live),
        }
    }

    /// Clears the live view before the summary is printed.
    pub(super) fn finish(&self) {
        let mut live = self.lock.lock().expect("no panics while locked");
        for (_, bar) in live.bars.drain() {
            bar.finish_and_clear();
        }
        if let Some(m) = &live.multi {
            let _ = m.clear();
        }
    }

    fn json(&self, e: &Event) {
        let v = match e {
            Event::Started { node } => {
                serde_json::json!({"event": "started", "step": self.name(*node)})
            }
            Event::Reused { node } => {
                serde_json::json!({"event": "reused", "step": self.name(*node)})
            }
            Event::Shared { node, source } => {
                serde_json::json!({"event": "reused", "step": self.name(*node), "from": source})
            }
            Event::Output { node, bytes } => {
                serde_json::json!({"event": "output", "step": self.name(*node), "text": String::from_utf8_lossy(bytes)})
            }
            Event::Finished { node, elapsed, layer } => {
                serde_json::json!({"event": "finished", "step": self.name(*node), "seconds": elapsed.as_secs_f64(), "layer_bytes": layer})
            }
            Event::Failed { node, message } => {
                serde_json::json!({"event": "failed", "step": self.name(*node), "message": message})
            }
            Event::Explain { node, reasons } => {
                serde_json::json!({"event": "explain", "step": self.name(*node), "reasons": reasons})
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{v}");
    }

    fn plain(&self, e: &Event, live: &mut Live) {
        let mut err = std::io::stderr().lock();
        let _ = match e {
            Event::Started { node } => writeln!(err, "{} ...", self.name(*node)),
            Event::Reused { node } => writeln!(err, "{} (cached)", self.name(*node)),
            Event::Shared { node, source } => {
                writeln!(err, "{} (from cache {source})", self.name(*node))
            }
            Event::Output { node, bytes } => {
                let prefix = format!("[{}]", self.plan.graph[*node].stage);
                for line in take_lines(live.partial.entry(*node).or_default(), bytes) {
                    let _ = writeln!(err, "{prefix} | {line}");
                }
                Ok(())
            }
            Event::Finished { node, elapsed, layer } => writeln!(
                err,
                "{} done in {:.2}s ({})",
                self.name(*node),
                elapsed.as_secs_f64(),
                size(*layer)
            ),
            Event::Failed { node, message } => {
                writeln!(err, "{} FAILED: {message}", self.name(*node))
            }
            Event::Explain { node, reasons } => {
                for r in reasons {
                    let _ = writeln!(err, "{} runs because {r}", self.name(*node));
                }
                Ok(())
            }
        };
    }

    fn live(&self, e: &Event, live: &mut Live) {
        let Some(multi) = live.multi.clone() else { return };
        match e {
            Event::Started { node } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix} {elapsed:.dim} {wide_msg:.dim}",
                    )
                    .expect("a valid template"),
                );
                bar.set_prefix(self.name(*node));
                bar.enable_steady_tick(Duration::from_millis(100));
                live.bars.insert(*node, bar);
            }
            Event::Output { node, bytes } => {
                let lines = take_lines(live.partial.entry(*node).or_default(), bytes);
                if let (Some(bar), Some(last)) =
                    (live.bars.get(node), lines.iter().rev().find(|l| !l.trim().is_empty()))
                {
                    bar.set_message(last.trim().to_owned());
                }
            }
            Event::Reused { node } => multi.suspend(|| eprintln!("  cached  {}", self.name(*node))),
            Event::Shared { node, source } => {
                multi.suspend(|| eprintln!("  shared  {} (from {source})", self.name(*node)));
            }
            Event::Finished { node, elapsed, layer } => {
                if let Some(bar) = live.bars.remove(node) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                multi.suspend(|| {
                    eprintln!(
                        "  {:>5.1}s  {} ({})",
                        elapsed.as_secs_f64(),
                        self.name(*node),
                        size(*layer)
                    );
                });
            }
            Event::Failed { node, message } => {
                if let Some(bar) = live.bars.remove(node) {
                    bar.finish_and_clear();
                }
                multi.suspend(|| eprintln!("  FAILED  {}: {message}", self.name(*node)));
            }
            Event::Explain { node, reasons } => multi.suspend(|| {
                for r in reasons {
                    eprintln!("  why     {} runs because {r}", self.name(*node));
                }
            }),
        }
    }
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
