//! A real clamd for tests: [`ClamdProcess`] starts `clamd` on a Unix socket and a free
//! 127.0.0.1 port, with its config, test signatures and logs in a temp dir, and stops it by PID
//! on drop ([`ChildGuard`]: SIGTERM, then SIGKILL).
//!
//! Signatures are written by this module, since real ones need a download: `custom.hdb` matches
//! the 68-byte EICAR test file ([`crate::fixtures::EICAR`], reported as [`EICAR_SIGNATURE`]),
//! `custom.ndb` matches [`BODY_MARKER`] anywhere in a file ([`BODY_SIGNATURE`]). clamd reports
//! both with `.UNOFFICIAL` appended. A missing `clamd` binary fails the test with the install
//! command ([`tool::clamd`]).
//!
//! ```no_run
//! use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess};
//! let clamd = ClamdProcess::start();
//! // sidescan-clamav --clamd <clamd.unix_addr()>  (or clamd.tcp_addr())
//! let small = ClamdProcess::start_with(&ClamdOptions { stream_max_length: "1M".into(), ..Default::default() });
//! ```

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, free_port};
use crate::tool;

/// Name clamd reports for the EICAR test file.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature.UNOFFICIAL";

/// The `custom.hdb` line matching the EICAR test file (`md5:size:name`).
pub const EICAR_HDB: &str = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature";

/// Bytes matched by the `custom.ndb` body signature, anywhere in a file.
pub const BODY_MARKER: &[u8] = b"SIDESCAN-BODY-TEST-MARKER";

/// Name clamd reports for [`BODY_MARKER`].
pub const BODY_SIGNATURE: &str = "Sidescan-Test-Body.UNOFFICIAL";

/// Settings of a test clamd.
#[derive(Debug, Clone)]
pub struct ClamdOptions {
    /// `StreamMaxLength` (clamd size syntax, e.g. `2M`).
    pub stream_max_length: String,
    /// `MaxFileSize`, when not clamd's default (100M).
    pub max_file_size: Option<String>,
    /// `MaxScanSize`, when not clamd's default (400M).
    pub max_scan_size: Option<String>,
    /// `MaxThreads`, when not clamd's default (20).
    pub max_threads: Option<u32>,
    /// `LogClean yes`: one log line per clean file too, so tests can count what clamd scanned.
    pub log_clean: bool,
    /// More `clamd.conf` lines, as is (e.g. `DisableCache yes`).
    pub extra_config: Vec<String>,
}

impl Default for ClamdOptions {
    fn default() -> Self {
        Self {
            stream_max_length: "2M".into(),
            max_file_size: None,
            max_scan_size: None,
            max_threads: None,
            log_clean: false,
            extra_config: Vec::new(),
        }
    }
}

/// A running clamd with its own temp dir, stopped by PID on drop.
pub struct ClamdProcess {
    // Field order is drop order: the process first, then its directory.
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
    port: u16,
}

impl std::fmt::Debug for ClamdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClamdProcess")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}

/// Writes the test signature files ([`EICAR_HDB`] as `custom.hdb`, the [`BODY_MARKER`] rule as
/// `custom.ndb`) into `db_dir`.
pub fn write_test_signatures(db_dir: &Path) -> std::io::Result<()> {
    std::fs::write(db_dir.join("custom.hdb"), format!("{EICAR_HDB}\n"))?;
    std::fs::write(
        db_dir.join("custom.ndb"),
        format!("Sidescan-Test-Body:0:*:{}\n", hex::encode(BODY_MARKER)),
    )
}

/// The `clamd.conf` of a test clamd whose files all live in `dir`. Like
/// `deploy/clamav/clamd.conf` it alerts on exceeded limits and encrypted content
/// (`AlertExceedsMax yes`, `AlertEncrypted yes`, which `sidescan-clamav` needs), unless
/// `extra_config` sets those options itself (clamd keeps the first value of an option).
pub fn config(dir: &Path, port: u16, options: &ClamdOptions) -> String {
    let d = dir.display();
    let mut conf = format!(
        "Foreground yes\nLogFile {d}/clamd.log\nLogTime yes\nPidFile {d}/clamd.pid\n\
         DatabaseDirectory {d}/db\nTemporaryDirectory {d}\nLocalSocket {d}/clamd.sock\n\
         FixStaleSocket yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nStreamMaxLength {}\n\
         SelfCheck 0\n",
        options.stream_max_length
    );
    for key in ["AlertExceedsMax", "AlertEncrypted"] {
        let overridden = options
            .extra_config
            .iter()
            .any(|line| line.split_whitespace().next() == Some(key));
        if !overridden {
            let _ = writeln!(conf, "{key} yes");
        }
    }
    let extra = [
        ("MaxFileSize", options.max_file_size.clone()),
        ("MaxScanSize", options.max_scan_size.clone()),
        ("MaxThreads", options.max_threads.map(|n| n.to_string())),
        ("LogClean", options.log_clean.then(|| "yes".to_owned())),
    ];
    for (key, value) in extra {
        if let Some(value) = value {
            let _ = writeln!(conf, "{key} {value}");
        }
    }
    for line in &options.extra_config {
        let _ = writeln!(conf, "{line}");
    }
    conf
}

impl ClamdProcess {
    /// Starts clamd with default test options (`StreamMaxLength 2M`) and waits for `PING`.
    pub fn start() -> Self {
        Self::start_with(&ClamdOptions::default())
    }

    /// Starts clamd with `options` and waits until it answers `PING` on its Unix socket.
    /// Panics with the install command when `clamd` is missing, and with clamd's log when it
    /// does not come up.
    pub fn start_with(options: &ClamdOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sidescan-clamd-")
            .tempdir()
            .expect("temp dir for clamd");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("clamd database dir");
        write_test_signatures(&db).expect("write test signatures");
        let port = free_port();
        std::fs::write(
            dir.path().join("clamd.conf"),
            config(dir.path(), port, options),
        )
        .expect("write clamd.conf");
        let mut clamd = Self {
            child: None,
            dir,
            port,
        };
        clamd.spawn();
        clamd
    }

    fn spawn(&mut self) {
        let bin = tool::clamd();
        let stderr =
            std::fs::File::create(self.dir.path().join("clamd.stderr")).expect("clamd stderr file");
        let child = Command::new(&bin)
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("clamd.conf").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(ChildGuard::new(child, format!("clamd {}", self.port)));
        self.wait_ready();
    }

    /// Blocks until clamd answers `PING` (30 s at most).
    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_wait) {
                panic!("clamd exited at start with {status}; log:\n{}", self.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "clamd did not answer PING within 30 s; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether clamd answers `PING` on its Unix socket now (1 s timeout).
    pub fn ping(&self) -> bool {
        let Ok(mut sock) = std::os::unix::net::UnixStream::connect(self.socket_path()) else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        if sock.write_all(b"zPING\0").is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let _ = sock.read_to_end(&mut reply);
        reply.starts_with(b"PONG")
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    /// `unix:/path`: the address form `sidescan-clamav --clamd` takes.
    pub fn unix_addr(&self) -> String {
        format!("unix:{}", self.socket_path().display())
    }

    /// `tcp://127.0.0.1:PORT`: the address form `sidescan-clamav --clamd` takes.
    pub fn tcp_addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// clamd's `DatabaseDirectory` (holds `custom.hdb` and `custom.ndb`; add files to change the
    /// signatures, then [`Self::restart`] or let the plugin send `RELOAD`).
    pub fn database_dir(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// clamd's temp dir (config, socket, logs, database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `clamd.conf` path (for `clamdscan --config-file`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("clamd.conf")
    }

    /// clamd's process id (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildGuard::pid)
    }

    /// clamd's log file so far (`LogFile`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// clamd's log file and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let err = std::fs::read_to_string(self.dir.path().join("clamd.stderr")).unwrap_or_default();
        format!("{}\n--- stderr ---\n{err}", self.log())
    }

    /// Kills clamd at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            child.signal(rustix::process::Signal::KILL);
            drop(child); // reaps it (the guard's SIGTERM to a dead process is harmless)
        }
    }

    /// Starts clamd again with the same config and database (after [`Self::kill`] or
    /// [`Self::stop`], or while running: it is killed first) and waits for `PING`.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops clamd: SIGTERM, then SIGKILL after [`crate::process::TERM_GRACE`]. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }
}
