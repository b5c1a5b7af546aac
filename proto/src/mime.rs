//! Report and artifact MIME types known to `sidescan.v1`.

/// Harbor's vulnerability report.
pub const VULNERABILITY_REPORT: &str = "application/vnd.security.vulnerability.report; version=1.1";
/// sidescan's malware report (Harbor defines none).
pub const MALWARE_REPORT: &str = "application/vnd.security.malware.report; version=1.0";
/// An SBOM; the `sbom_media_type` parameter picks CycloneDX or SPDX JSON.
pub const SBOM_REPORT: &str = "application/vnd.security.sbom.report+json; version=1.0";
/// The request parameter that picks the SBOM format.
pub const SBOM_MEDIA_TYPE_PARAMETER: &str = "sbom_media_type";
/// CycloneDX JSON.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";
/// SPDX JSON.
pub const SPDX_JSON: &str = "application/spdx+json";

/// Every report MIME type `sidescan.v1` defines.
pub const KNOWN_REPORTS: [&str; 3] = [VULNERABILITY_REPORT, MALWARE_REPORT, SBOM_REPORT];

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Normalises a MIME type for comparison: lower-case, no spaces around `;` and `=`.
///
/// `application/vnd.security.vulnerability.report;version=1.1` and the form with a space compare
/// equal after this.
pub fn normalize(mime: &str) -> String {
    mime.split(';')
        .map(|part| {
            part.split('=')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_ignores_spacing_and_case() {
        assert_eq!(
            normalize("Application/vnd.security.vulnerability.report;version = 1.1"),
            VULNERABILITY_REPORT
        );
        assert_ne!(normalize(MALWARE_REPORT), normalize(VULNERABILITY_REPORT));
    }
}
