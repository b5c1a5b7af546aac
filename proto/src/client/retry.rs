//! [`RetryPolicy`]: which failed calls the client tries again, and when.
//!
//! Retried: `UNAVAILABLE` (the plugin or its engine is not reachable or not ready, a registry
//! behind it is failing), and `RESOURCE_EXHAUSTED` **only when the status carries gRPC's
//! `grpc-retry-pushback-ms`** ([`PUSHBACK_HEADER`]): a plugin built on the SDK sets it on a
//! refusal because its scan queue is full, never on an image over a limit (that refusal is
//! final). Every other status, and a pushback that is negative or not a number, ends the call
//! at once, as gRPC's retry design (A6) says.
//!
//! The wait before retry *n* (1-based) is the server's pushback, if any, plus a uniformly random
//! share of `min(max_backoff, initial_backoff × 2^(n-1))` (exponential backoff with full jitter,
//! which spreads callers refused together). A retry never starts past the call's deadline: when
//! the wait would end at or after it, the call ends with the last status instead. Each attempt
//! sends the time left until that one deadline as its gRPC deadline. A retry only repeats the
//! request: an error stays an error, never an answer.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use super::ClientError;

/// The metadata key of gRPC's retry pushback: milliseconds to wait before retrying, as a
/// decimal integer; negative means "do not retry".
pub const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// How many times, and how far apart, the client tries a failed call again (see the module
/// documentation for which statuses). [`RetryPolicy::default`] makes 5 attempts in all with
/// backoff ceilings of 200 ms, 400 ms, 800 ms and 1.6 s; [`RetryPolicy::disabled`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 and 1 both mean no retries.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
}

/// [`RetryPolicy::default`]'s attempts: gRPC's own cap on `maxAttempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt: no retries.
    pub fn disabled() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets the attempts in all (1: no retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the first backoff ceiling and the largest one.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The backoff ceiling before retry `retry` (1-based).
    fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// The least wait before retrying a call that ended with `status`, or `None` when it must not
/// be retried.
pub(super) fn retry_after(status: &Status) -> Option<Duration> {
    let pushback = match status.metadata().get(PUSHBACK_HEADER) {
        None => None,
        Some(value) => {
            let millis = value.to_str().ok()?.trim().parse::<i64>().ok()?;
            Some(Duration::from_millis(u64::try_from(millis).ok()?))
        }
    };
    match status.code() {
        Code::Unavailable => Some(pushback.unwrap_or_default()),
        Code::ResourceExhausted => pushback,
        _ => None,
    }
}

/// Runs `attempt` until it succeeds, fails for good, runs out of attempts, or the next wait
/// would end at or past `deadline`; returns the last result. `attempt` is given the deadline
/// every attempt must keep.
pub(super) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    deadline: Option<Instant>,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut made = 0u32;
    loop {
        made += 1;
        let err = match attempt().await {
            Ok(answer) => return Ok(answer),
            Err(err) => err,
        };
        let Some(least) = err.status().and_then(retry_after) else {
            return Err(err);
        };
        if made >= policy.max_attempts {
            return Err(err);
        }
        let wait = least.saturating_add(jitter(policy.ceiling(made)));
        if deadline.is_some_and(|deadline| Instant::now() + wait >= deadline) {
            return Err(err);
        }
        tokio::time::sleep(wait).await;
    }
}

/// A uniformly random duration in `0..=ceiling` (std's per-instance random hasher keys, no
/// extra dependency; not for cryptography).
fn jitter(ceiling: Duration) -> Duration {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    Duration::from_nanos(hasher.finish() % nanos.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, pushback: Option<&str>) -> Status {
        let mut status = Status::new(code, "test");
        if let Some(value) = pushback {
            status
                .metadata_mut()
                .insert(PUSHBACK_HEADER, value.parse().unwrap());
        }
        status
    }

    #[test]
    fn which_statuses_are_retried_and_after_how_long() {
        let ms = Duration::from_millis;
        assert_eq!(retry_after(&status(Code::Unavailable, None)), Some(ms(0)));
        assert_eq!(
            retry_after(&status(Code::Unavailable, Some("250"))),
            Some(ms(250))
        );
        assert_eq!(
            retry_after(&status(Code::ResourceExhausted, Some("40"))),
            Some(ms(40))
        );
        assert_eq!(
            retry_after(&status(Code::ResourceExhausted, None)),
            None,
            "a limit without pushback is final"
        );
        for bad in ["-1", "soon", "1.5", ""] {
            assert_eq!(
                retry_after(&status(Code::Unavailable, Some(bad))),
                None,
                "{bad}"
            );
            assert_eq!(
                retry_after(&status(Code::ResourceExhausted, Some(bad))),
                None,
                "{bad}"
            );
        }
        for code in [
            Code::DataLoss,
            Code::NotFound,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Ok,
        ] {
            assert_eq!(retry_after(&status(code, Some("10"))), None, "{code:?}");
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap_and_jitter_stays_below_them() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=6).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(policy.ceiling(u32::MAX), policy.max_backoff);
        let draws: Vec<_> = (0..200)
            .map(|_| jitter(Duration::from_millis(10)))
            .collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(10)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_millis(5))
                && draws.iter().any(|d| *d > Duration::from_millis(5)),
            "jitter spreads: {draws:?}"
        );
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
