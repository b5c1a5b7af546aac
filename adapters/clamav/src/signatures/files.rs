//! The signature directory on disk (clamd's `DatabaseDirectory`, shared with clamd): staging,
//! the swap, the rollback, the probe signature and the state file.
//!
//! Layout: the database files clamd loads; `sidescan-probe.ndb` (see [`probe`]);
//! `.sidescan-signatures.json` (what is installed); `.staging/` (downloads of the next set) and
//! `.previous/` (hard links to the set being replaced, until clamd has loaded the new one).
//! clamd ignores dot files and directories. Every rename is within the directory, and the
//! directory is fsynced after each step.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sidescan_oci::artifact::visible_files;

/// The probe signature's file name (reserved: an artifact may not carry it).
pub const PROBE_FILE: &str = "sidescan-probe.ndb";
/// The state file's name.
pub const STATE_FILE: &str = ".sidescan-signatures.json";
const STAGING: &str = ".staging";
const PREVIOUS: &str = ".previous";

/// What is installed: written after clamd loaded it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Installed {
    /// The artifact's manifest digest.
    pub digest: String,
    /// Its `org.opencontainers.image.version`.
    pub version: Option<String>,
    /// Its `org.opencontainers.image.created`.
    pub created: Option<String>,
    /// When clamd was seen serving it (RFC 3339).
    pub installed_at: String,
    /// The database files.
    pub files: Vec<String>,
}

/// The probe for the set of artifact `digest`: bytes that only its probe signature matches, and
/// the name clamd reports for them. Finding it in a scan proves clamd serves that set: clamd's
/// `VERSION` does not change for custom databases, and a failed `RELOAD` keeps the old set.
pub fn probe(digest: &str) -> (Vec<u8>, String) {
    let hex = digest.trim_start_matches("sha256:");
    let id = &hex[..hex.len().min(16)];
    (
        format!("sidescan signature probe {hex}\n").into_bytes(),
        format!("Sidescan-Signatures-{id}"),
    )
}

/// The `.ndb` line of [`probe`]'s signature.
fn probe_signature(digest: &str) -> String {
    let (bytes, name) = probe(digest);
    format!("{name}:0:*:{}\n", hex::encode(bytes))
}

/// The directory and its operations.
#[derive(Clone, Debug)]
pub struct SignatureDir {
    dir: PathBuf,
}

fn context(what: String) -> impl FnOnce(std::io::Error) -> std::io::Error {
    move |e| std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl SignatureDir {
    /// The directory at `dir` (created when missing).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// An empty staging directory (a leftover one removed first).
    pub fn fresh_staging(&self) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .map_err(context(format!("create {}", self.dir.display())))?;
        let staging = self.dir.join(STAGING);
        remove_dir_if_exists(&staging)?;
        std::fs::create_dir(&staging).map_err(context(format!("create {}", staging.display())))?;
        Ok(staging)
    }

    /// Removes the staging directory.
    pub fn drop_staging(&self) -> std::io::Result<()> {
        remove_dir_if_exists(&self.dir.join(STAGING))
    }

    /// Writes the probe signature of `digest` into the staging directory.
    pub fn stage_probe(&self, digest: &str) -> std::io::Result<()> {
        write_synced(
            &self.dir.join(STAGING).join(PROBE_FILE),
            probe_signature(digest).as_bytes(),
        )
    }

    /// Puts the staged set in place: the current files are hard-linked into `.previous/`, each
    /// staged file renamed over its name, files not in the new set removed; fsynced.
    pub fn swap(&self) -> std::io::Result<()> {
        let staging = self.dir.join(STAGING);
        let previous = self.dir.join(PREVIOUS);
        remove_dir_if_exists(&previous)?;
        std::fs::create_dir(&previous)
            .map_err(context(format!("create {}", previous.display())))?;
        let old = visible_files(&self.dir)?;
        for name in &old {
            std::fs::hard_link(self.dir.join(name), previous.join(name))
                .map_err(context(format!("keep {name} in {}", previous.display())))?;
        }
        sync_dir(&previous)?;
        let new = visible_files(&staging)?;
        for name in &new {
            std::fs::rename(staging.join(name), self.dir.join(name))
                .map_err(context(format!("install {name}")))?;
        }
        for name in old.iter().filter(|n| !new.contains(n)) {
            std::fs::remove_file(self.dir.join(name)).map_err(context(format!("remove {name}")))?;
        }
        sync_dir(&self.dir)?;
        remove_dir_if_exists(&staging)
    }

    /// Puts `.previous/` back: every file of the directory removed, the kept ones renamed back;
    /// fsynced. A no-op without `.previous/`.
    pub fn restore(&self) -> std::io::Result<()> {
        let previous = self.dir.join(PREVIOUS);
        if !previous.is_dir() {
            return Ok(());
        }
        for name in visible_files(&self.dir)? {
            std::fs::remove_file(self.dir.join(&name))
                .map_err(context(format!("remove {name}")))?;
        }
        for name in visible_files(&previous)? {
            std::fs::rename(previous.join(&name), self.dir.join(&name))
                .map_err(context(format!("restore {name}")))?;
        }
        sync_dir(&self.dir)?;
        remove_dir_if_exists(&previous)
    }

    /// Forgets `.previous/` once clamd serves the new set, and records `installed`.
    pub fn commit(&self, installed: &Installed) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(installed).map_err(std::io::Error::other)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(&json)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.dir.join(STATE_FILE))
            .map_err(|e| e.error)?;
        sync_dir(&self.dir)?;
        remove_dir_if_exists(&self.dir.join(PREVIOUS))
    }

    /// What the state file says is installed (`None` when absent or unreadable).
    pub fn installed(&self) -> Option<Installed> {
        let bytes = std::fs::read(self.dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

fn remove_dir_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(context(format!("remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(context(format!("fsync {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_restore_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SignatureDir::new(tmp.path().to_path_buf());
        std::fs::write(tmp.path().join("old.hdb"), "old").unwrap();
        std::fs::write(tmp.path().join("both.ndb"), "old").unwrap();
        let staging = dir.fresh_staging().unwrap();
        std::fs::write(staging.join("both.ndb"), "new").unwrap();
        dir.stage_probe("sha256:abcd").unwrap();
        dir.swap().unwrap();
        assert_eq!(visible_files(tmp.path()).unwrap(), ["both.ndb", PROBE_FILE]);
        dir.restore().unwrap();
        assert_eq!(visible_files(tmp.path()).unwrap(), ["both.ndb", "old.hdb"]);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("both.ndb")).unwrap(),
            "old"
        );
        dir.fresh_staging().unwrap();
        dir.swap().unwrap();
        let installed = Installed {
            digest: "sha256:abcd".into(),
            version: None,
            created: None,
            installed_at: "2026-01-01T00:00:00Z".into(),
            files: vec![],
        };
        dir.commit(&installed).unwrap();
        assert_eq!(dir.installed(), Some(installed));
        assert!(!tmp.path().join(PREVIOUS).exists());
        assert!(visible_files(tmp.path()).unwrap().is_empty());
    }
}
