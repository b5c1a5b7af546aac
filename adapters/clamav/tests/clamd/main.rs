//! The clamd side of sidescan-clamav against a real clamd (and a fake one that hangs): protocol,
//! verdicts, size limits and the SCAN fallback, outages, timeouts, cancellation and readiness.
//!
//! One test binary, one module per area; the helpers they share are here.

mod faults;
mod fildes;
mod readiness;
mod verdicts;

use std::sync::Arc;
use std::time::Duration;

use sidescan_clamav::{ClamavError, Clamd, ClamdAddr, ScanPolicy};
use sidescan_sdk::Severity;

pub(crate) fn addr(s: &str) -> ClamdAddr {
    s.parse().expect("clamd address")
}

pub(crate) fn client(a: &str) -> Clamd {
    Clamd::new(addr(a), 4, Duration::from_secs(10), Duration::from_secs(1))
}

pub(crate) fn policy(stream_max_length: u64, local_scan: bool) -> Arc<ScanPolicy> {
    Arc::new(ScanPolicy {
        stream_max_length,
        max_file_size: 100 << 20,
        local_scan,
        severity: Severity::Critical,
    })
}

pub(crate) fn code(err: ClamavError) -> String {
    format!("{:?}", sidescan_sdk::Error::from(err).code())
}

/// `len` bytes of harmless filler.
pub(crate) fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"clean filler "[i % 13]).collect()
}
