//! The ClamAV database artifact, sidescan's format (ClamAV has no OCI packaging of its own):
//!
//! - `artifactType: application/vnd.sidescan.clamav.database.v1`, the empty config;
//! - one layer per database file, media type `application/vnd.clamav.database`, the file name
//!   in `org.opencontainers.image.title` (a plain name with one of [`EXTENSIONS`]);
//! - manifest annotations `org.opencontainers.image.created` (when it was pushed) and
//!   `org.opencontainers.image.version` (the `daily` database's version when known).

use std::collections::BTreeMap;

use crate::Error;
use crate::artifact::{ArtifactFile, CREATED, VERSION, check_file_name, files_of};
use crate::registry::Manifest;

/// The artifact type of a ClamAV database.
pub const ARTIFACT_TYPE: &str = "application/vnd.sidescan.clamav.database.v1";

/// The media type of each database file.
pub const LAYER_TYPE: &str = "application/vnd.clamav.database";

/// File extensions clamd loads from its `DatabaseDirectory` (and ClamAV 1.5's `.sign` files).
pub const EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "sign", "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "mdu", "msu", "ndb",
    "ndu", "ldb", "ldu", "idb", "cdb", "crb", "cat", "cbc", "cfg", "fp", "sfp", "ign", "ign2",
    "ftm", "pdb", "gdb", "wdb", "pwdb", "imp", "info", "yar", "yara",
];

/// Refuses a name that is not a plain file name ([`check_file_name`]) with a database
/// extension ([`EXTENSIONS`]).
pub fn check_database_file_name(name: &str) -> Result<(), Error> {
    check_file_name(name)?;
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    if EXTENSIONS.contains(&ext) {
        Ok(())
    } else {
        Err(Error::Malformed(format!(
            "{name:?} is not a ClamAV database file (extensions: {})",
            EXTENSIONS.join(", ")
        )))
    }
}

/// A ClamAV database artifact as read from a registry.
#[derive(Clone, Debug)]
pub struct Database {
    /// The manifest's digest.
    pub digest: String,
    /// Its files, checked.
    pub files: Vec<ArtifactFile>,
    /// `org.opencontainers.image.version`, when set.
    pub version: Option<String>,
    /// `org.opencontainers.image.created`, when set.
    pub created: Option<String>,
}

impl Database {
    /// Reads `manifest` as a ClamAV database: the artifact type, the layers' media type, and
    /// every file name are checked; at least one file.
    pub fn parse(manifest: &Manifest) -> Result<Self, Error> {
        let artifact_type = manifest.json["artifactType"].as_str().unwrap_or_default();
        if artifact_type != ARTIFACT_TYPE {
            return Err(Error::Malformed(format!(
                "{} is not a ClamAV database: artifactType {artifact_type:?}, want {ARTIFACT_TYPE}",
                manifest.digest
            )));
        }
        let all = files_of(manifest, None)?;
        if let Some(other) = all.iter().find(|f| f.descriptor.media_type != LAYER_TYPE) {
            return Err(Error::Malformed(format!(
                "layer {} has media type {:?}, want {LAYER_TYPE}",
                other.name, other.descriptor.media_type
            )));
        }
        for file in &all {
            check_database_file_name(&file.name)?;
        }
        if all.is_empty() {
            return Err(Error::Malformed(format!(
                "ClamAV database {} has no files",
                manifest.digest
            )));
        }
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(manifest.json["annotations"].clone()).unwrap_or_default();
        Ok(Self {
            digest: manifest.digest.clone(),
            files: all,
            version: annotations.get(VERSION).cloned(),
            created: annotations.get(CREATED).cloned(),
        })
    }
}

/// The version in a `.cvd`/`.cld` header (`ClamAV-VDB:date:VERSION:sigs:...`), if `header`
/// starts with one.
pub fn cvd_version(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header.get(..header.len().min(512))?).ok()?;
    let mut fields = text.strip_prefix("ClamAV-VDB:")?.split(':');
    let version = fields.nth(1)?.trim();
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())).then(|| version.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        check_database_file_name("daily.cld").unwrap();
        check_database_file_name("custom.hdb").unwrap();
        assert!(check_database_file_name("notes.txt").is_err());
        assert!(check_database_file_name("../main.cvd").is_err());
        let header = b"ClamAV-VDB:16 Nov 2026 07-25 -0500:27100:2070000:90:sig:builder:1700000000";
        assert_eq!(cvd_version(header).as_deref(), Some("27100"));
        assert_eq!(cvd_version(b"garbage"), None);
    }
}
