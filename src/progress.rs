//! Progress of a long loop (calibration, evaluation, sensitivity): a bar when stderr is a
//! terminal, a plain line every tenth of the way otherwise, so CI logs stay readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    /// The bar on a terminal; `None` prints plain lines.
    bar: Option<ProgressBar>,
    /// Next fraction (in tenths) at which a plain line is printed.
    next_tenth: usize,
    start: Instant,
    hidden: bool,
}

impl Progress {
    /// `total` steps of `label`; a bar on a terminal, plain lines otherwise.
    pub fn new(label: &str, total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| terminal_bar(label, total));
        Progress { label: label.to_string(), total, done: 0, bar, next_tenth: 1, start: Instant::now(), hidden: false }
    }

    /// Shows nothing (a caller printing its own lines, tests).
    pub fn hidden() -> Progress {
        Progress { hidden: true, ..Progress::plain("", 0) }
    }

    /// Always plain lines (what `new` does without a terminal).
    pub fn plain(label: &str, total: usize) -> Progress {
        Progress { label: label.to_string(), total, done: 0, bar: None, next_tenth: 1, start: Instant::now(), hidden: false }
    }

    /// `show` false gives a hidden one.
    pub fn maybe(show: bool, label: &str, total: usize) -> Progress {
        if show {
            Progress::new(label, total)
        } else {
            Progress::hidden()
        }
    }

    /// Text after the counts (a loss, the layer being measured).
    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.into());
        }
    }

    /// Runs `f` (which prints) with the bar hidden, so lines and bar do not mix.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn inc(&mut self, n: usize) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        } else if !self.hidden && self.total > 0 {
            self.plain_lines();
        }
    }

    /// Clears the bar; plain mode has printed its last line at 100 %.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn done(&self) -> usize {
        self.done
    }

    /// One line each time another tenth is reached (one line, however many were passed).
    fn plain_lines(&mut self) {
        let tenth = (self.done * 10 / self.total).min(10);
        if tenth >= self.next_tenth {
            let pct = (self.done * 100 / self.total).min(100);
            eprintln!("  {} {}/{} ({pct}%) {:.1} s", self.label, self.done, self.total, self.start.elapsed().as_secs_f64());
            self.next_tenth = tenth + 1;
        }
    }
}

fn terminal_bar(label: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    let template = format!("  {label} {{bar:30}} {{pos}}/{{len}} [{{elapsed}}<{{eta}}] {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_counts_and_stops_at_the_end() {
        let mut p = Progress::plain("x", 3);
        for _ in 0..3 {
            p.inc(1);
        }
        assert_eq!(p.done(), 3);
        // the last line said 100 %, nothing is left to print
        assert_eq!(p.next_tenth, 11);
        let mut one = Progress::plain("y", 1);
        one.inc(1);
        assert_eq!(one.next_tenth, 11, "one step to the end prints one line, not ten");
        let mut h = Progress::hidden();
        h.inc(5);
        assert_eq!((h.done(), h.next_tenth), (5, 1));
    }
}
