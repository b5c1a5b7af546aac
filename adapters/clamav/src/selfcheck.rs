//! The startup self-check: does clamd alert on content it stops scanning at one of its limits?
//!
//! Without `AlertExceedsMax yes` clamd answers `OK` for a file over `MaxFileSize` or
//! `MaxScanSize`, or for an archive nested deeper than `MaxRecursion`: content it never looked
//! at would pass as clean. clamd's limits cannot be read over its socket, so the plugin asks it
//! to scan a sample that is over a limit whatever the configuration: a few KB of gzip nested
//! [`SAMPLE_DEPTH`] times, deeper than the largest `MaxRecursion` clamd accepts (100; 0 is
//! refused). clamd 1.4.6 answers `stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND` with
//! `AlertExceedsMax yes` and `stream: OK` without it.
//!
//! The innermost text carries a nonce, so that no layer of the sample is ever in clamd's cache
//! of clean results (a cached inner layer would end the descent early and answer `OK`).
//! [`ClamavScanner`](crate::ClamavScanner) runs the check whenever clamd (again) answers `PING`
//! and refuses readiness until it passes. clamd logs each check as an alert of the stream.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::client::Clamd;
use crate::reply::Verdict;

/// Nesting depth of the sample: above clamd's largest `MaxRecursion` (100, `CLI_MAX_MAXRECLEVEL`).
pub const SAMPLE_DEPTH: usize = 110;

/// The self-check sample: a unique text (over clamd's 5-byte minimum) gzipped
/// [`SAMPLE_DEPTH`] times (about 2.5 KB).
pub fn limits_sample() -> std::io::Result<Vec<u8>> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut data = format!(
        "sidescan-clamav self-check {nanos}.{}.{}: clamd must alert on exceeded limits (AlertExceedsMax yes)\n",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes();
    for _ in 0..SAMPLE_DEPTH {
        let mut gz = GzEncoder::new(Vec::with_capacity(data.len() + 32), Compression::none());
        gz.write_all(&data)?;
        data = gz.finish()?;
    }
    Ok(data)
}

/// Scans a fresh [`limits_sample`] and says why clamd is not fit to scan, if it is not: `Ok`
/// when clamd answers `Heuristics.Limits.Exceeded.*`.
pub async fn check_limits_alert(clamd: &Clamd) -> Result<(), String> {
    let sample = limits_sample().map_err(|e| format!("cannot build the self-check sample: {e}"))?;
    let verdict = clamd
        .scan_sample(&sample)
        .await
        .map_err(|e| format!("self-check scan failed: {e}"))?;
    match verdict {
        Verdict::LimitExceeded(_) => Ok(()),
        Verdict::Clean => Err(format!(
            "clamd does not alert on exceeded scan limits: a self-check archive nested {SAMPLE_DEPTH} deep (beyond any MaxRecursion) came back OK, so content clamd skips at MaxFileSize, MaxScanSize or MaxRecursion would pass as clean; set `AlertExceedsMax yes` (and keep `HeuristicAlerts yes`) in clamd.conf and restart clamd"
        )),
        Verdict::Found(signatures) => Err(format!(
            "self-check sample matched {}: cannot tell whether clamd alerts on exceeded limits (AlertExceedsMax yes)",
            signatures.join(", ")
        )),
        Verdict::Encrypted(signature) => Err(format!(
            "self-check sample reported as {signature}: cannot tell whether clamd alerts on exceeded limits (AlertExceedsMax yes)"
        )),
        Verdict::StreamTooLong => Err(format!(
            "clamd refused the {}-byte self-check sample as longer than its StreamMaxLength",
            sample.len()
        )),
        Verdict::Error(message) => Err(format!(
            "clamd could not scan the self-check sample: {message}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sample_is_small_unique_and_nested_to_the_depth() {
        let a = limits_sample().expect("sample");
        let b = limits_sample().expect("sample");
        assert!(a.len() < 4096, "{} bytes", a.len());
        assert_ne!(
            a, b,
            "two samples alike: clamd's cache would answer the second"
        );
        let mut data = a;
        let mut depth = 0;
        while data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .expect("gunzip");
            data = out;
            depth += 1;
        }
        assert_eq!(depth, SAMPLE_DEPTH);
        let text = String::from_utf8(data).expect("text");
        assert!(
            text.contains("AlertExceedsMax yes") && text.len() > 5,
            "{text}"
        );
    }
}
