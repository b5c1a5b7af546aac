//! Child processes that die with the test, free ports and readiness waits.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long [`ChildGuard::stop`] waits after SIGTERM before sending SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// Owns a [`Child`] and stops it by PID when dropped: SIGTERM, wait up to
/// [`TERM_GRACE`], then SIGKILL, then reap.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Takes ownership of `child`; `name` is used in messages.
    pub fn new(child: Child, name: impl Into<String>) -> Self {
        Self {
            child: Some(child),
            name: name.into(),
        }
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (valid until [`stop`](Self::stop) or drop).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Mutable access to the owned child (e.g. to take its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already stopped")
    }

    /// `Some(status)` if the process has already exited, `None` if it still runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Sends `signal` to the process (if it is still owned).
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(child) = &self.child {
            send_signal(child.id(), signal);
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status, or `None`
    /// when it is still running (or was already reaped).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `SIGTERM`, waits up to [`TERM_GRACE`], then `SIGKILL`s; returns the exit
    /// status (`None` if it was already stopped). Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        send_signal(child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        send_signal(child.id(), rustix::process::Signal::KILL);
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send_signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Peak resident set (`VmHWM` of `/proc/PID/status`) of the running process `pid`, in bytes.
pub fn peak_rss(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other(format!("no VmHWM in /proc/{pid}/status")))
}

/// CPU time (user + system) `pid` has used so far, in seconds, from `/proc/PID/stat`; with
/// `children`, that of its children it has waited for too.
pub fn cpu_seconds(pid: u32, children: bool) -> io::Result<f64> {
    let [utime, stime, cutime, cstime] = cpu_ticks(pid)?;
    let ticks = if children {
        utime + stime + cutime + cstime
    } else {
        utime + stime
    };
    Ok(ticks / CLOCK_TICKS)
}

/// CPU time (user + system) of the children this process has waited for, in seconds: its
/// difference over a `Command::output()` call is what that command used.
pub fn waited_children_cpu_seconds() -> io::Result<f64> {
    let [_, _, cutime, cstime] = cpu_ticks(std::process::id())?;
    Ok((cutime + cstime) / CLOCK_TICKS)
}

/// USER_HZ, the unit of `/proc/PID/stat`'s times: 100 on every Linux the test kit runs on.
const CLOCK_TICKS: f64 = 100.0;

/// utime, stime, cutime and cstime of `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<[f64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses; utime is field 14.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))?;
    let mut ticks = [0.0; 4];
    for (t, field) in ticks.iter_mut().zip(rest.split_whitespace().skip(11)) {
        *t = field.parse().unwrap_or(0.0);
    }
    Ok(ticks)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind `:0`, read, release).
///
/// Another process may take it before you use it: callers that start servers on it
/// must retry with a new port when the bind fails (the registry helper does).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits until a TCP connection to `addr` succeeds, polling every 25 ms.
/// Fails with [`io::ErrorKind::TimedOut`] after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr} not accepting connections after {timeout:?}: {e}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// Sends a bare `GET path` over HTTP/1.0 to `addr` and returns the status code, or an
/// error if nothing answered. Blocking and runtime-free, so usable anywhere (readiness
/// checks from sync or async code).
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not HTTP: {line:?}")))
}
