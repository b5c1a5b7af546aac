//! A real `nats-server` (Debian package `nats-server`) on 127.0.0.1, with JetStream and file
//! storage in a temp dir; stopped by PID on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, wait_for_tcp};
use crate::tool;

/// A running nats-server.
#[derive(Debug)]
pub struct NatsServer {
    child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p PORT -js -sd DIR` and waits until it accepts
    /// connections (retrying on another port if the chosen one was taken). Panics with the
    /// install command when nats-server is missing.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sidescan-nats-")
            .tempdir()
            .expect("temp dir");
        Self::start_in(dir, None)
    }

    /// Starts a server on 127.0.0.1:`port` (for a client told the address before the server
    /// exists).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sidescan-nats-")
            .tempdir()
            .expect("temp dir");
        Self::start_in(dir, Some(port))
    }

    fn start_in(dir: tempfile::TempDir, port: Option<u16>) -> Self {
        let bin = tool::nats_server();
        let mut last = String::new();
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = std::fs::File::create(dir.path().join("nats.log")).expect("log file");
            let child = Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path().join("store"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut child = ChildGuard::new(child, format!("nats-server {addr}"));
            match wait_for_tcp(addr, Duration::from_secs(15)) {
                Ok(()) if child.try_wait().is_none() => return Self { child, addr, dir },
                _ => {
                    last = std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default();
                    child.stop();
                }
            }
        }
        panic!("nats-server did not start; last log:\n{last}");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The storage and log directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server and starts it again on the same port with the same storage.
    pub fn restart(self) -> Self {
        let Self {
            mut child,
            addr,
            dir,
        } = self;
        child.stop();
        Self::start_in(dir, Some(addr.port()))
    }
}
