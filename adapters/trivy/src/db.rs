//! Trivy's vulnerability DB on disk: `<cache>/db/trivy.db` (a bbolt file) and
//! `<cache>/db/metadata.json`, and how the adapter checks and replaces them.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::error::TrivyError;

/// The bbolt meta-page magic (`0xED0CDAED`), at offset 16 of a bbolt file, little-endian.
const BOLT_MAGIC: u32 = 0xED0C_DAED;

/// `metadata.json` of Trivy's vulnerability DB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DbMetadata {
    /// Schema version of the DB (2 for Trivy 0.76).
    pub version: u32,
    /// When the DB was built (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// When the next DB is due (RFC 3339).
    #[serde(default)]
    pub next_update: String,
    /// When this copy was downloaded (RFC 3339).
    #[serde(default)]
    pub downloaded_at: String,
}

/// Reads `<db_dir>/metadata.json` and checks that `<db_dir>/trivy.db` looks like a bbolt file.
///
/// This is the readiness test of the vulnerability DB: anything it rejects is a DB Trivy cannot use.
pub fn check(db_dir: &Path) -> Result<DbMetadata, TrivyError> {
    let meta_path = db_dir.join("metadata.json");
    let raw = std::fs::read(&meta_path)
        .map_err(|e| TrivyError::DbUnusable(format!("cannot read {}: {e}", meta_path.display())))?;
    let meta: DbMetadata = serde_json::from_slice(&raw).map_err(|e| {
        TrivyError::DbUnusable(format!("cannot parse {}: {e}", meta_path.display()))
    })?;
    if meta.updated_at.is_empty() {
        return Err(TrivyError::DbUnusable(format!(
            "{} has no UpdatedAt",
            meta_path.display()
        )));
    }
    let db_path = db_dir.join("trivy.db");
    let mut header = [0u8; 20];
    std::fs::File::open(&db_path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| TrivyError::DbUnusable(format!("cannot read {}: {e}", db_path.display())))?;
    let magic = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if magic != BOLT_MAGIC {
        return Err(TrivyError::DbUnusable(format!(
            "{} is not a bbolt database (bad magic {magic:#010x})",
            db_path.display()
        )));
    }
    Ok(meta)
}

/// Moves the DB downloaded into `staging_db` (a `db` directory holding trivy.db + metadata.json)
/// over `db_dir`, keeping the old one only until the new one is in place.
///
/// Call with scans excluded (the scanner holds its DB write lock), so no Trivy run sees a
/// half-replaced directory.
pub fn replace(staging_db: &Path, db_dir: &Path) -> Result<(), TrivyError> {
    check(staging_db)?;
    let old = db_dir.with_extension("old");
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| TrivyError::io(format!("removing {}", old.display()), e))?;
    }
    if db_dir.exists() {
        std::fs::rename(db_dir, &old)
            .map_err(|e| TrivyError::io(format!("moving {} aside", db_dir.display()), e))?;
    }
    if let Err(e) = std::fs::rename(staging_db, db_dir) {
        // Put the old DB back so the scanner keeps working.
        let _ = std::fs::rename(&old, db_dir);
        return Err(TrivyError::io(
            format!("moving the new DB to {}", db_dir.display()),
            e,
        ));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rejects_missing_garbage_and_accepts_bolt_magic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path();
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(db.join("metadata.json"), b"not json").expect("write");
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(
            db.join("metadata.json"),
            br#"{"Version":2,"NextUpdate":"2999-01-01T00:00:00Z","UpdatedAt":"2024-05-01T00:00:00Z","DownloadedAt":"2024-05-01T00:00:00Z"}"#,
        )
        .expect("write");
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(db.join("trivy.db"), [0u8; 4096]).expect("write");
        let err = check(db).expect_err("zeros are no bolt file");
        assert!(err.to_string().contains("bad magic"), "{err}");
        let mut page = vec![0u8; 4096];
        page[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
        std::fs::write(db.join("trivy.db"), page).expect("write");
        let meta = check(db).expect("usable");
        assert_eq!(meta.version, 2);
        assert_eq!(meta.updated_at, "2024-05-01T00:00:00Z");
    }
}
