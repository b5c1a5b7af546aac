//! A fixture Trivy vulnerability DB (schema 2), written with bbolt-rs (`compat` feature: Go
//! bbolt's magic, or Trivy says `invalid database`).
//!
//! Layout (trivy-db): advisory buckets `"<platform>" -> "<package>" -> "<vuln id>" = advisory
//! JSON`; `data-source` bucket: `"<platform>" = {"ID","Name","URL"}`; `vulnerability` bucket:
//! `"<vuln id>" = details JSON`; plus `metadata.json` beside `trivy.db`.

use std::path::Path;

use bbolt_rs::{Bolt, BucketRwApi, DbRwAPI, TxRwRefApi};
use serde_json::{Value, json};

/// Alpine advisories: `alpine 3.22` (from `/etc/apk/repositories` v3.22).
pub(crate) const ALPINE_BUCKET: &str = "alpine 3.22";
/// Debian advisories: `debian 12` (major version only).
pub(crate) const DEBIAN_BUCKET: &str = "debian 12";
/// Rust (Cargo.lock) advisories from GHSA.
pub(crate) const CARGO_BUCKET: &str = "cargo::GitHub Security Advisory Rust";
/// smallvec (crate) < 1.6.1: installed 1.6.0 (Cargo.lock), patched 1.6.1. HIGH (ghsa).
pub(crate) const CVE_CARGO_SMALLVEC: &str = "CVE-2099-3001";
/// npm advisories from GHSA.
pub(crate) const NPM_BUCKET: &str = "npm::GitHub Security Advisory npm";

/// openssl (libcrypto3 + libssl3) on Alpine: fixed in 3.3.1-r1, installed 3.3.0-r0. HIGH (nvd).
pub(crate) const CVE_ALPINE_OPENSSL: &str = "CVE-2099-0001";
/// busybox on Alpine: fixed in 1.36.1-r1 but 1.36.1-r2 is installed: must NOT be reported.
pub(crate) const CVE_ALPINE_BUSYBOX_ALREADY_FIXED: &str = "CVE-2099-0002";
/// zlib on Alpine: fixed in 1.3.1-r2, installed 1.3.1-r1. MEDIUM in nvd, CRITICAL by Alpine.
pub(crate) const CVE_ALPINE_ZLIB: &str = "CVE-2099-0003";
/// openssl (libssl3) on Debian: fixed in 3.0.13-1~deb12u1, installed 3.0.11-1~deb12u2. HIGH.
pub(crate) const CVE_DEBIAN_OPENSSL: &str = "CVE-2099-1001";
/// zlib (zlib1g) on Debian: no fix, will_not_fix, LOW by Debian.
pub(crate) const CVE_DEBIAN_ZLIB_WONTFIX: &str = "CVE-2099-1002";
/// tar on Debian: fixed in 1.34+dfsg-1, installed 1.34+dfsg-1.2: must NOT be reported.
pub(crate) const CVE_DEBIAN_TAR_ALREADY_FIXED: &str = "CVE-2099-1003";
/// lodash (npm) < 4.17.21: installed 4.17.20, patched 4.17.21. MEDIUM (ghsa).
pub(crate) const CVE_NPM_LODASH: &str = "CVE-2099-2001";
/// GHSA id of [`CVE_NPM_LODASH`].
pub(crate) const GHSA_NPM_LODASH: &str = "GHSA-aaaa-bbbb-cccc";
/// minimist (npm) < 1.2.6: installed 1.2.8: must NOT be reported.
pub(crate) const CVE_NPM_MINIMIST_ALREADY_FIXED: &str = "CVE-2099-2002";

/// One advisory: bucket, package, id, advisory JSON.
pub(crate) struct Advisory {
    pub bucket: &'static str,
    pub package: &'static str,
    pub id: &'static str,
    pub value: Value,
}

/// The standard fixture content: advisories, data sources and vulnerability details.
pub(crate) fn standard_advisories() -> Vec<Advisory> {
    vec![
        Advisory {
            bucket: ALPINE_BUCKET,
            package: "openssl",
            id: CVE_ALPINE_OPENSSL,
            value: json!({"FixedVersion": "3.3.1-r1"}),
        },
        Advisory {
            bucket: ALPINE_BUCKET,
            package: "busybox",
            id: CVE_ALPINE_BUSYBOX_ALREADY_FIXED,
            value: json!({"FixedVersion": "1.36.1-r1"}),
        },
        Advisory {
            bucket: ALPINE_BUCKET,
            package: "zlib",
            id: CVE_ALPINE_ZLIB,
            value: json!({"FixedVersion": "1.3.1-r2"}),
        },
        Advisory {
            bucket: DEBIAN_BUCKET,
            package: "openssl",
            id: CVE_DEBIAN_OPENSSL,
            value: json!({"FixedVersion": "3.0.13-1~deb12u1"}),
        },
        Advisory {
            bucket: DEBIAN_BUCKET,
            package: "zlib",
            id: CVE_DEBIAN_ZLIB_WONTFIX,
            value: json!({"Status": 5, "Severity": 1}),
        },
        Advisory {
            bucket: DEBIAN_BUCKET,
            package: "tar",
            id: CVE_DEBIAN_TAR_ALREADY_FIXED,
            value: json!({"FixedVersion": "1.34+dfsg-1"}),
        },
        Advisory {
            bucket: NPM_BUCKET,
            package: "lodash",
            id: CVE_NPM_LODASH,
            value: json!({
                "VulnerableVersions": ["< 4.17.21"],
                "PatchedVersions": ["4.17.21"],
                "VendorIDs": [GHSA_NPM_LODASH],
            }),
        },
        Advisory {
            bucket: CARGO_BUCKET,
            package: "smallvec",
            id: CVE_CARGO_SMALLVEC,
            value: json!({
                "VulnerableVersions": [">= 0.6.3, < 1.6.1"],
                "PatchedVersions": ["1.6.1"],
                "VendorIDs": ["GHSA-1111-2222-3333"],
            }),
        },
        Advisory {
            bucket: NPM_BUCKET,
            package: "minimist",
            id: CVE_NPM_MINIMIST_ALREADY_FIXED,
            value: json!({
                "VulnerableVersions": ["< 1.2.6"],
                "PatchedVersions": ["1.2.6"],
                "VendorIDs": ["GHSA-dddd-eeee-ffff"],
            }),
        },
    ]
}

/// Data sources of the advisory buckets.
pub(crate) fn data_sources() -> Vec<(&'static str, Value)> {
    vec![
        (
            ALPINE_BUCKET,
            json!({"ID": "alpine", "Name": "Alpine Secdb", "URL": "https://secdb.alpinelinux.org/"}),
        ),
        (
            DEBIAN_BUCKET,
            json!({"ID": "debian", "Name": "Debian Security Tracker", "URL": "https://salsa.debian.org/security-tracker-team/security-tracker"}),
        ),
        (
            CARGO_BUCKET,
            json!({"ID": "ghsa", "Name": "GitHub Security Advisory Rust", "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Arust"}),
        ),
        (
            NPM_BUCKET,
            json!({"ID": "ghsa", "Name": "GitHub Security Advisory npm", "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Anpm"}),
        ),
    ]
}

fn detail(title: &str, severity: &str, vendor: Value, cvss: Value, cwe: &[&str]) -> Value {
    json!({
        "Title": title,
        "Description": format!("{title}: a fixture vulnerability for sidescan-trivy tests."),
        "Severity": severity,
        "CweIDs": cwe,
        "VendorSeverity": vendor,
        "CVSS": cvss,
        "References": [
            format!("https://example.invalid/advisories/{}", title.replace(' ', "-")),
            "https://example.invalid/shared-reference",
        ],
        "PublishedDate": "2099-01-02T03:04:05Z",
        "LastModifiedDate": "2099-02-03T04:05:06Z",
    })
}

/// Vulnerability details keyed by id.
pub(crate) fn vulnerability_details() -> Vec<(&'static str, Value)> {
    vec![
        (
            CVE_ALPINE_OPENSSL,
            detail(
                "openssl out-of-bounds read",
                "HIGH",
                json!({"nvd": 3}),
                json!({"nvd": {
                    "V2Vector": "AV:N/AC:L/Au:N/C:P/I:N/A:N", "V2Score": 5.0,
                    "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", "V3Score": 7.5
                }}),
                &["CWE-125"],
            ),
        ),
        (
            CVE_ALPINE_BUSYBOX_ALREADY_FIXED,
            detail("busybox bug", "HIGH", json!({"nvd": 3}), json!({}), &[]),
        ),
        (
            CVE_ALPINE_ZLIB,
            detail(
                "zlib heap overflow",
                "MEDIUM",
                json!({"nvd": 2, "alpine": 4}),
                json!({"nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": 9.8}}),
                &["CWE-787"],
            ),
        ),
        (
            CVE_DEBIAN_OPENSSL,
            detail(
                "openssl timing side channel",
                "HIGH",
                json!({"debian": 3, "nvd": 2}),
                json!({"nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", "V3Score": 5.9}}),
                &["CWE-208"],
            ),
        ),
        (
            CVE_DEBIAN_ZLIB_WONTFIX,
            detail(
                "zlib minor issue",
                "MEDIUM",
                json!({"nvd": 2}),
                json!({}),
                &[],
            ),
        ),
        (
            CVE_DEBIAN_TAR_ALREADY_FIXED,
            detail("tar bug", "HIGH", json!({"nvd": 3}), json!({}), &[]),
        ),
        (
            CVE_NPM_LODASH,
            detail(
                "lodash prototype pollution",
                "HIGH",
                json!({"ghsa": 2, "nvd": 3}),
                json!({"ghsa": {"V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:N", "V3Score": 5.9}}),
                &["CWE-1321"],
            ),
        ),
        (
            CVE_CARGO_SMALLVEC,
            detail(
                "smallvec buffer overflow",
                "MEDIUM",
                json!({"ghsa": 3}),
                json!({"ghsa": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": 9.8}}),
                &["CWE-787"],
            ),
        ),
        (
            CVE_NPM_MINIMIST_ALREADY_FIXED,
            detail(
                "minimist bug",
                "CRITICAL",
                json!({"ghsa": 4}),
                json!({}),
                &[],
            ),
        ),
    ]
}

/// Writes `metadata.json` with `updated_at` (RFC 3339).
pub(crate) fn write_metadata(db_dir: &Path, updated_at: &str) {
    let meta = json!({
        "Version": 2,
        "NextUpdate": "2999-01-01T00:00:00Z",
        "UpdatedAt": updated_at,
        "DownloadedAt": updated_at,
    });
    std::fs::create_dir_all(db_dir).expect("db dir");
    std::fs::write(
        db_dir.join("metadata.json"),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("write metadata.json");
}

/// Writes `trivy.db` with `advisories` and the standard data sources and details.
pub(crate) fn write_db(db_dir: &Path, advisories: &[Advisory]) {
    std::fs::create_dir_all(db_dir).expect("db dir");
    let path = db_dir.join("trivy.db");
    let _ = std::fs::remove_file(&path);
    let mut db = Bolt::open(&path).expect("open bbolt file");
    db.update(|mut tx| {
        for a in advisories {
            let mut b = tx.create_bucket_path(&[a.bucket, a.package])?;
            b.put(a.id, serde_json::to_vec(&a.value).expect("json"))?;
        }
        {
            let mut ds = tx.create_bucket_if_not_exists("data-source")?;
            for (bucket, v) in data_sources() {
                ds.put(bucket, serde_json::to_vec(&v).expect("json"))?;
            }
        }
        {
            let mut vb = tx.create_bucket_if_not_exists("vulnerability")?;
            for (id, v) in vulnerability_details() {
                vb.put(id, serde_json::to_vec(&v).expect("json"))?;
            }
        }
        Ok(())
    })
    .expect("write fixture DB");
}

/// The standard fixture DB in `db_dir`, updated at `updated_at`.
pub(crate) fn write_standard(db_dir: &Path, updated_at: &str) {
    write_db(db_dir, &standard_advisories());
    write_metadata(db_dir, updated_at);
}
