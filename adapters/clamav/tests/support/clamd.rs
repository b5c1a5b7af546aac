//! Starts a real clamd on a Unix socket and 127.0.0.1 (a free port), with a temp dir holding its
//! config, test signatures and logs; stops it by PID on drop (SIGTERM, then SIGKILL).
//!
//! Signatures: `custom.hdb` matches the 68-byte EICAR test file (`Eicar-Test-Signature`),
//! `custom.ndb` matches [`BODY_MARKER`] anywhere in a file (`Sidescan-Test-Body`); clamd reports
//! both with `.UNOFFICIAL` appended. A missing `clamd` binary fails the test with the install
//! command.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The EICAR anti-virus test file (68 bytes, no newline).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Name clamd reports for [`EICAR`].
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature.UNOFFICIAL";

/// Bytes matched by the `custom.ndb` body signature, anywhere in a file.
pub const BODY_MARKER: &[u8] = b"SIDESCAN-BODY-TEST-MARKER";

/// Name clamd reports for [`BODY_MARKER`].
pub const BODY_SIGNATURE: &str = "Sidescan-Test-Body.UNOFFICIAL";

/// Settings of a test clamd.
#[derive(Debug, Clone)]
pub struct ClamdOptions {
    /// `StreamMaxLength` (clamd size syntax, e.g. `2M`).
    pub stream_max_length: String,
    /// `MaxFileSize`, when not clamd's default.
    pub max_file_size: Option<String>,
}

impl Default for ClamdOptions {
    fn default() -> Self {
        Self {
            stream_max_length: "2M".into(),
            max_file_size: None,
        }
    }
}

/// A running clamd, stopped on drop.
pub struct ClamdProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// Path of the clamd binary; panics with the install command when there is none.
pub fn clamd_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d: PathBuf| d.join("clamd"));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "clamd is not installed: these tests need a real clamd. Install it with `apt-get install -y clamav-daemon`"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free 127.0.0.1 port")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl ClamdProcess {
    /// Starts clamd with default test options (`StreamMaxLength 2M`) and waits for `PING`.
    pub fn start() -> Self {
        Self::start_with(&ClamdOptions::default())
    }

    /// Starts clamd with `options` and waits until it answers `PING`.
    pub fn start_with(options: &ClamdOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for clamd");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("clamd db dir");
        std::fs::write(
            db.join("custom.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )
        .expect("custom.hdb");
        std::fs::write(
            db.join("custom.ndb"),
            format!("Sidescan-Test-Body:0:*:{}\n", hex(BODY_MARKER)),
        )
        .expect("custom.ndb");
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "Foreground yes\nLogFile {d}/clamd.log\nPidFile {d}/clamd.pid\nDatabaseDirectory {d}/db\n\
             TemporaryDirectory {d}\nLocalSocket {d}/clamd.sock\nFixStaleSocket yes\n\
             TCPSocket {port}\nTCPAddr 127.0.0.1\nStreamMaxLength {}\nAlertExceedsMax yes\nSelfCheck 0\n",
            options.stream_max_length
        );
        if let Some(max) = &options.max_file_size {
            let _ = writeln!(conf, "MaxFileSize {max}");
        }
        std::fs::write(dir.path().join("clamd.conf"), conf).expect("clamd.conf");
        let mut clamd = Self {
            child: None,
            dir,
            port,
        };
        clamd.spawn();
        clamd
    }

    fn spawn(&mut self) {
        let stderr =
            std::fs::File::create(self.dir.path().join("clamd.stderr")).expect("clamd stderr file");
        let child = Command::new(clamd_binary())
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("clamd.conf").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start clamd: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Blocks until clamd answers `PING` on its Unix socket (30 s at most).
    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if self.ping_blocking() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
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

    fn ping_blocking(&self) -> bool {
        use std::io::{Read, Write};
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

    /// `unix:/path` address.
    pub fn unix_addr(&self) -> String {
        format!("unix:{}", self.socket_path().display())
    }

    /// `tcp://127.0.0.1:PORT` address.
    pub fn tcp_addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// clamd's DatabaseDirectory.
    pub fn database_dir(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// clamd's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// clamd's log file and stderr.
    pub fn logs(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("clamd.stderr")).unwrap_or_default();
        format!("{log}\n--- stderr ---\n{err}")
    }

    /// Kills clamd at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts clamd again with the same config (after [`Self::kill`]) and waits for `PING`.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops clamd: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for ClamdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A zip archive with `files` stored (not compressed), built by hand.
pub fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        let name_len = name.len() as u16;
        // local file header
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&10u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // central directory entry
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&10u16.to_le_bytes()); // needed
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x21u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}
