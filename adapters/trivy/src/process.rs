//! Running one Trivy process: its own process group, a timeout, cancellation, and a bounded tail
//! of its stderr.
//!
//! Trivy is started with `process_group(0)`, so it leads a new process group; on timeout, on
//! cancellation, and when the future is dropped half-way (e.g. the SDK gives up on the scan), the
//! whole group gets SIGKILL, so nothing Trivy started is left behind.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::error::TrivyError;

/// What a finished Trivy run left behind.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Captured stdout (bounded by the caller's expectations; reports go to files instead).
    pub stdout: Vec<u8>,
    /// The last bytes of stderr.
    pub stderr_tail: String,
}

/// Kills a process group when dropped, unless disarmed after the leader was reaped.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (group already gone) is fine.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bin args...` and returns its output when it exits with status 0. `envs` sets (`Some`)
/// or removes (`None`) variables of the inherited environment: the way secrets reach Trivy,
/// never on the command line, which any local user can read.
///
/// - `timeout`: past it, the process group is killed and [`TrivyError::Timeout`] returned;
/// - `cancel`: when cancelled, the same with [`TrivyError::Cancelled`];
/// - a non-zero exit is [`TrivyError::Failed`] with the last `stderr_tail_bytes` of stderr;
/// - an executable that cannot be started is [`TrivyError::BinaryMissing`].
pub async fn run(
    bin: &Path,
    args: &[OsString],
    envs: &[(&str, Option<&str>)],
    timeout: Duration,
    cancel: &CancellationToken,
    stderr_tail_bytes: usize,
) -> Result<RunOutput, TrivyError> {
    let mut cmd = Command::new(bin);
    for (name, value) in envs {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| TrivyError::BinaryMissing {
        path: bin.to_owned(),
        reason: e.to_string(),
    })?;
    let mut guard = GroupGuard {
        pgid: child.id().and_then(|id| Pid::from_raw(id as i32)),
    };
    tracing::debug!(pid = ?child.id(), ?args, "trivy started");

    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_stdout = async {
        let mut buf = Vec::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_stderr = async {
        let mut tail: VecDeque<u8> = VecDeque::new();
        if let Some(err) = stderr.as_mut() {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = err.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend(&chunk[..n]);
                let excess = tail.len().saturating_sub(stderr_tail_bytes);
                tail.drain(..excess);
            }
        }
        String::from_utf8_lossy(tail.make_contiguous()).into_owned()
    };
    let work = async {
        let (out, err, status) = tokio::join!(read_stdout, read_stderr, child.wait());
        (out, err, status)
    };

    let outcome = tokio::select! {
        done = work => Ok(done),
        () = tokio::time::sleep(timeout) => Err(TrivyError::Timeout(timeout)),
        () = cancel.cancelled() => Err(TrivyError::Cancelled),
    };
    match outcome {
        Ok((stdout, stderr_tail, status)) => {
            // The leader has been reaped: its pid may be reused, so do not signal the group
            // any more. (Trivy starts no helpers of its own on success.)
            guard.pgid = None;
            let status = status.map_err(|e| TrivyError::io("waiting for trivy", e))?;
            if status.success() {
                Ok(RunOutput {
                    stdout,
                    stderr_tail,
                })
            } else {
                Err(TrivyError::Failed {
                    status: status.to_string(),
                    stderr_tail: stderr_tail.trim().to_owned(),
                })
            }
        }
        Err(err) => {
            guard.kill();
            // Reap the leader so no zombie stays behind.
            let _ = child.wait().await;
            tracing::warn!(error = %err, "trivy run stopped");
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn envs_set_and_remove_variables_of_the_inherited_environment() {
        assert!(
            std::env::var_os("PATH").is_some(),
            "the test needs PATH set"
        );
        let out = run(
            Path::new("/usr/bin/env"),
            &[],
            &[("TRIVY_USERNAME", Some("alice")), ("PATH", None)],
            Duration::from_secs(10),
            &CancellationToken::new(),
            1024,
        )
        .await
        .expect("env runs");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(
            lines.contains(&"TRIVY_USERNAME=alice".to_owned()),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("PATH=")), "{lines:?}");
    }
}
