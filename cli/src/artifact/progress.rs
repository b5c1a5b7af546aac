//! Transfer progress on stderr, drawn only when stderr is a terminal.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar over a transfer of known size.
pub(crate) struct Transfer {
    bar: ProgressBar,
}

impl Transfer {
    /// A bar labelled `what` over `total` bytes (hidden unless stderr is a terminal).
    pub(crate) fn new(what: &str, total: u64) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Self { bar }
    }

    /// Adds `n` bytes.
    pub(crate) fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Clears the bar.
    pub(crate) fn done(self) {
        self.bar.finish_and_clear();
    }
}
