//! The live view on a terminal: a counter of the steps done out of the build's, a spinner
//! line per running step (its elapsed time and last output line), and finished steps printed
//! above. Every line is cut to the terminal's width, never wrapped: a wrapped line would throw
//! off the count of lines the view redraws and leave stale copies behind.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use petgraph::stable_graph::NodeIndex;

/// Columns kept free at the end of every line: the terminal echoes `^C` there when the build
/// is interrupted, which must not wrap the line before the view is cleared.
const SPARE: usize = 3;

/// Room the spinner, the elapsed time and their spaces take on a step's line.
const STEP_LINE_FIXED: usize = 14;

pub(super) struct Live {
    multi: MultiProgress,
    counter: ProgressBar,
    bars: HashMap<NodeIndex, ProgressBar>,
}

impl Live {
    pub(super) fn new(total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let counter = multi.add(ProgressBar::new(total as u64));
        let bar = (width().saturating_sub(40)).clamp(4, 30);
        counter.set_style(
            ProgressStyle::with_template(&format!(
                "{{bar:{bar}.cyan/dim}} {{pos}}/{{len}} steps  {{elapsed_precise:.dim}}"
            ))
            .expect("a valid template")
            .progress_chars("=> "),
        );
        counter.enable_steady_tick(Duration::from_millis(200));
        Self { multi, counter, bars: HashMap::new() }
    }

    /// A running step: a spinner line with its name.
    pub(super) fn started(&mut self, node: NodeIndex, name: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:.dim} {wide_msg:.dim}")
                .expect("a valid template"),
        );
        bar.set_prefix(cut(name, width().saturating_sub(STEP_LINE_FIXED + SPARE)));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bars.insert(node, bar);
    }

    /// The last line a running step printed, shown after its name.
    pub(super) fn output(&self, node: NodeIndex, line: &str) {
        if let Some(bar) = self.bars.get(&node) {
            bar.set_message(cut(line.trim(), width().saturating_sub(SPARE)));
        }
    }

    /// A step is over (done, cached, failed or stopped): its line, if any, goes, the counter
    /// moves, and `line` is printed above the view.
    pub(super) fn ended(&mut self, node: NodeIndex, line: Option<&str>) {
        if let Some(bar) = self.bars.remove(&node) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.counter.inc(1);
        if let Some(line) = line {
            self.print(line);
        }
    }

    /// Prints lines above the view, each cut to the width.
    pub(super) fn print(&self, text: &str) {
        let w = width().saturating_sub(SPARE);
        self.multi.suspend(|| {
            for line in text.lines() {
                eprintln!("{}", cut(line, w));
            }
        });
    }

    /// Removes the whole view from the screen.
    pub(super) fn clear(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        self.counter.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// The terminal's width in columns (80 when unknown).
fn width() -> usize {
    console::Term::stderr().size_checked().map_or(80, |(_, cols)| usize::from(cols))
}

/// `text` cut to `width` columns (wide characters count twice), `…` marking the cut.
pub(super) fn cut(text: &str, width: usize) -> String {
    console::truncate_str(text, width, "…").into_owned()
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_count_columns_not_bytes() {
        assert_eq!(cut("héllo wörld", 8), "héllo w…");
        assert_eq!(cut("日本語のテキスト", 7), "日本語…");
        assert_eq!(cut("short", 60), "short");
    }
}
