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

/// Room the spinner, the elapsed time (`59m`) and their spaces take on a step's line.
const STEP_LINE_FIXED: usize = 8;

pub(super) struct Live {
    multi: MultiProgress,
    counter: ProgressBar,
    /// Each running step's line, and the columns its name takes.
    bars: HashMap<NodeIndex, (ProgressBar, usize)>,
    quiet: QuietControlKeys,
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
        Self { multi, counter, bars: HashMap::new(), quiet: QuietControlKeys::on_stderr() }
    }

    /// A running step: a spinner line with its name.
    pub(super) fn started(&mut self, node: NodeIndex, name: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:.dim} {msg:.dim}")
                .expect("a valid template"),
        );
        // At most two thirds of the line, so that the step's last output line shows too.
        let name = cut(name, (width() * 2 / 3).saturating_sub(STEP_LINE_FIXED + SPARE));
        let used = console::measure_text_width(&name) + STEP_LINE_FIXED;
        bar.set_prefix(name);
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bars.insert(node, (bar, used));
    }

    /// The last line a running step printed, shown after its name in the room left.
    pub(super) fn output(&self, node: NodeIndex, line: &str) {
        if let Some((bar, used)) = self.bars.get(&node) {
            bar.set_message(cut(line.trim(), width().saturating_sub(used + SPARE)));
        }
    }

    /// A step is over (done, cached, failed or stopped): its line, if any, goes, the counter
    /// moves, and `line` is printed above the view.
    pub(super) fn ended(&mut self, node: NodeIndex, line: Option<&str>) {
        if let Some((bar, _)) = self.bars.remove(&node) {
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
        for (_, (bar, _)) in self.bars.drain() {
            bar.finish_and_clear();
        }
        self.counter.finish_and_clear();
        let _ = self.multi.clear();
        self.quiet.restore();
    }
}

/// While the view is shown, the terminal does not echo control keys (`^C`): the echo would
/// land after the view's last line, which fills the width, push the view down one line, and
/// leave its first line on the screen once the view is cleared. The setting is restored when
/// the view is cleared or dropped.
struct QuietControlKeys {
    saved: Option<rustix::termios::Termios>,
}

impl QuietControlKeys {
    fn on_stderr() -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stderr = std::io::stderr();
        let Ok(saved) = tcgetattr(&stderr) else { return Self { saved: None } };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHOCTL);
        if tcsetattr(&stderr, OptionalActions::Now, &quiet).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }

    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let stderr = std::io::stderr();
            let _ =
                rustix::termios::tcsetattr(&stderr, rustix::termios::OptionalActions::Now, &saved);
        }
    }
}

impl Drop for QuietControlKeys {
    fn drop(&mut self) {
        self.restore();
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
