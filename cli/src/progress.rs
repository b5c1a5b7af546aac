//! The progress bar shown on a terminal while `ScanImageStream` runs.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sidescan_proto::v1::{Progress, ScanPhase};

/// A progress bar on stderr fed by `Progress` events.
pub(crate) struct ProgressView {
    bar: ProgressBar,
    bytes_mode: Option<bool>,
}

/// The phase as a lower-case word.
pub(crate) fn phase_name(phase: i32) -> &'static str {
    match ScanPhase::try_from(phase) {
        Ok(ScanPhase::Queued) => "queued",
        Ok(ScanPhase::Resolving) => "resolving",
        Ok(ScanPhase::Downloading) => "downloading",
        Ok(ScanPhase::Scanning) => "scanning",
        Ok(ScanPhase::Reporting) => "reporting",
        Ok(ScanPhase::Unspecified) | Err(_) => "working",
    }
}

/// The text next to the bar: phase, layers and the plugin's note.
pub(crate) fn progress_message(p: &Progress) -> String {
    let mut message = format!("{:<11}", phase_name(p.phase));
    if p.layers_total > 0 {
        message.push_str(&format!(" layers {}/{}", p.layers_done, p.layers_total));
    }
    if !p.message.is_empty() {
        message.push(' ');
        message.push_str(&crate::render::truncate(&p.message, 48));
    }
    message
}

impl ProgressView {
    /// Starts a spinner on stderr.
    pub(crate) fn start() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(spinner_style());
        bar.set_message("connecting");
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressView {
            bar,
            bytes_mode: None,
        }
    }

    /// Shows one event.
    pub(crate) fn update(&mut self, p: &Progress) {
        let bytes = p.bytes_total > 0;
        if self.bytes_mode != Some(bytes) {
            self.bar
                .set_style(if bytes { bar_style() } else { spinner_style() });
            self.bytes_mode = Some(bytes);
        }
        if bytes {
            self.bar.set_length(p.bytes_total);
            self.bar.set_position(p.bytes_done.min(p.bytes_total));
        }
        self.bar.set_message(progress_message(p));
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {elapsed:>4} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let p = Progress {
            phase: ScanPhase::Downloading as i32,
            layers_done: 1,
            layers_total: 3,
            message: "sha256:abc".into(),
            ..Default::default()
        };
        assert_eq!(progress_message(&p), "downloading layers 1/3 sha256:abc");
        assert_eq!(phase_name(99), "working");
    }
}
