//! The registry side of the CLI: `sidescan report` (print the reports attached to an image,
//! latest per scanner, without scanning) and `sidescan scan --attach` (attach a CLI scan's
//! report, for CI), in the referrer format `sidescan-watch` writes (see `sidescan_oci::report`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use sidescan_oci::report::{self, Format as DocFormat, ReportInfo, ScannerId};
use sidescan_oci::{CredentialSources, Registry, referrers};
use sidescan_proto::v1::{GetMetadataResponse, ScanResponse};

use crate::args::{Secret, SeverityArg};
use crate::outcome::{CliError, Outcome, scan_outcome};
use crate::render::{canonical_json, scan_table};

/// Largest report document read.
const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// Registry flags of `report` (and the credentials of `scan --attach`).
#[derive(Debug, Args)]
pub(crate) struct RegistryFlags {
    /// Registry base URL (https://HOST[:PORT] or http://HOST[:PORT]); default: the host of
    /// IMAGE, over https.
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,

    /// Registry user name (with --password): sent as `Basic base64(user:password)`.
    #[arg(long, env = "SIDESCAN_REGISTRY_USERNAME", hide_env_values = true)]
    pub(crate) username: Option<String>,

    /// Registry password; prefer the environment variable.
    #[arg(long, env = "SIDESCAN_REGISTRY_PASSWORD", hide_env_values = true, value_parser = crate::args::secret)]
    pub(crate) password: Option<Secret>,

    /// Registry bearer token: sent as `Bearer TOKEN`.
    #[arg(long, env = "SIDESCAN_REGISTRY_TOKEN", hide_env_values = true, value_parser = crate::args::secret)]
    pub(crate) token: Option<Secret>,

    /// A containers auth.json / docker config.json, searched before the standard ones
    /// ($XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json) when no credentials are
    /// given; used by `report` and `scan --attach` to talk to the registry.
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub(crate) authfile: Option<PathBuf>,

    /// The registry speaks plain http.
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// Output formats of `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// A summary line per scanner, then each report's findings.
    Table,
    /// `{"subject", "reports": [{scanner, version, engineVersion, created, complete, digest,
    /// response}]}`, each response a ScanResponse in the proto3 JSON mapping.
    Json,
    /// One SARIF 2.1.0 log with a run per scanner.
    Sarif,
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Image: HOST[:PORT]/REPO[:TAG][@DIGEST], or REPO[:TAG][@DIGEST] with --registry.
    pub(crate) image: String,

    #[command(flatten)]
    pub(crate) registry: RegistryFlags,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub(crate) format: ReportFormat,

    /// Only reports by this scanner (its product name, e.g. sidescan-clamav).
    #[arg(long, value_name = "NAME")]
    pub(crate) scanner: Option<String>,

    /// Exit 1 when a report has a finding of this severity or higher, or is incomplete, or
    /// when no report is attached (an unscanned image is not a clean one).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub(crate) fail_on: Option<SeverityArg>,

    /// With --fail-on, do not fail on an incomplete report alone.
    #[arg(long)]
    pub(crate) allow_incomplete: bool,
}

/// An image reference split for the registry client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) registry_url: String,
    pub(crate) repository: String,
    pub(crate) reference: String,
}

/// Splits `image` (full, or relative to `registry`) into registry, repository and a tag or
/// digest (`latest` when neither is given).
pub(crate) fn target(image: &str, registry: Option<&str>) -> Result<Target, String> {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    let (first, path) = rest.split_once('/').unwrap_or(("", rest));
    let first_is_host =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let (host, path) = if first_is_host {
        (Some(first), path)
    } else {
        (None, rest)
    };
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (path, None),
    };
    if repository.is_empty()
        || !repository
            .split('/')
            .all(sidescan_proto::names::is_path_component)
    {
        return Err(format!("{image:?} is not an image reference"));
    }
    let registry_url = match (registry, host) {
        (Some(url), None) => url.to_string(),
        (Some(url), Some(host)) => {
            let url_host = url
                .split_once("://")
                .map_or(url, |(_, h)| h)
                .trim_end_matches('/');
            if url_host != host {
                return Err(format!(
                    "{image:?} names host {host}, but --registry is {url}"
                ));
            }
            url.to_string()
        }
        (None, Some(host)) => format!("https://{host}"),
        (None, None) => {
            return Err(format!(
                "{image:?} names no registry: give HOST/REPO or --registry URL"
            ));
        }
    };
    Ok(Target {
        registry_url,
        repository: repository.to_string(),
        reference: digest.or(tag).unwrap_or("latest").to_string(),
    })
}

/// A registry client for `flags` at `url`.
pub(crate) fn client(flags: &RegistryFlags, url: &str) -> Result<Registry, CliError> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, h)| h)
        .trim_end_matches('/');
    let creds = CredentialSources {
        username: flags.username.clone().filter(|u| !u.is_empty()),
        password: flags
            .password
            .as_ref()
            .map(|p| p.0.clone())
            .filter(|p| !p.is_empty()),
        token: flags
            .token
            .as_ref()
            .map(|t| t.0.clone())
            .filter(|t| !t.is_empty()),
        auth_file: flags.authfile.clone(),
        no_standard_files: false,
    }
    .resolve(host, None)
    .map_err(|e| CliError::Usage(e.to_string()))?;
    Registry::new(url, creds, flags.insecure).map_err(|e| CliError::Usage(e.to_string()))
}

fn registry_error(e: sidescan_oci::Error) -> CliError {
    CliError::Registry(e.to_string())
}

/// `sidescan report`.
pub(crate) async fn report(args: &ReportArgs) -> Result<(String, Outcome), CliError> {
    let target = target(&args.image, args.registry.registry.as_deref()).map_err(CliError::Usage)?;
    let registry = client(&args.registry, &target.registry_url)?;
    let manifest = registry
        .manifest(&target.repository, &target.reference)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CliError::Registry(format!(
                "NOT_FOUND: {}:{} does not exist",
                target.repository, target.reference
            ))
        })?;
    let listed = referrers::list(&registry, &target.repository, &manifest.digest)
        .await
        .map_err(registry_error)?;
    let latest: Vec<ReportInfo> = report::latest(&listed.entries)
        .into_iter()
        .filter(|r| r.artifact_type == report::REPORT_ARTIFACT_TYPE)
        .filter(|r| args.scanner.as_ref().is_none_or(|s| &r.scanner.name == s))
        .collect();
    let mut responses = Vec::new();
    for info in &latest {
        let doc = referrers::document(
            &registry,
            &target.repository,
            &info.digest,
            MAX_DOCUMENT_BYTES,
        )
        .await
        .map_err(registry_error)?;
        let response: ScanResponse =
            sidescan_proto::json::from_slice(&doc, "sidescan.v1.ScanResponse").map_err(|e| {
                CliError::Registry(format!("report {} is not a ScanResponse: {e}", info.digest))
            })?;
        responses.push((info, response));
    }
    let text = match args.format {
        ReportFormat::Table => table(&target, &manifest.digest, &responses),
        ReportFormat::Json => json(&manifest.digest, &responses)?,
        ReportFormat::Sarif => sarif(&responses),
    };
    if responses.is_empty() {
        eprintln!(
            "no sidescan report is attached to {}@{}",
            target.repository, manifest.digest
        );
        return Ok((
            text,
            if args.fail_on.is_some() {
                Outcome::Incomplete
            } else {
                Outcome::Done
            },
        ));
    }
    let fail_on = args.fail_on.map(|s| s.to_proto());
    let outcome = responses
        .iter()
        .map(|(_, r)| scan_outcome(r, fail_on, args.allow_incomplete))
        .max_by_key(|o| (o.code(), *o == Outcome::FindingsAtOrAbove))
        .unwrap_or(Outcome::Done);
    Ok((text, outcome))
}

fn table(target: &Target, digest: &str, responses: &[(&ReportInfo, ScanResponse)]) -> String {
    let mut out = format!("{}@{digest}\n", target.repository);
    if responses.is_empty() {
        out.push_str("no sidescan report attached\n");
    }
    for (info, response) in responses {
        out.push_str(&format!(
            "\n{} {} (engine {}), {}: {}, report {}\n",
            info.scanner.name,
            info.scanner.version,
            info.scanner.engine_version,
            info.created,
            if info.complete {
                "complete"
            } else {
                "INCOMPLETE"
            },
            info.digest
        ));
        out.push_str(&scan_table(response, &[]));
    }
    out
}

fn json(digest: &str, responses: &[(&ReportInfo, ScanResponse)]) -> Result<String, CliError> {
    let mut reports = Vec::new();
    for (info, response) in responses {
        let text = canonical_json(response, "sidescan.v1.ScanResponse")?;
        let response: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CliError::Render(e.to_string()))?;
        reports.push(serde_json::json!({
            "scanner": info.scanner.name,
            "version": info.scanner.version,
            "engineVersion": info.scanner.engine_version,
            "created": info.created,
            "complete": info.complete,
            "digest": info.digest,
            "response": response,
        }));
    }
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "subject": digest,
        "reports": reports,
    }))
    .map_err(|e| CliError::Render(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

fn sarif(responses: &[(&ReportInfo, ScanResponse)]) -> String {
    let mut runs = Vec::new();
    for (_, response) in responses {
        let log: serde_json::Value = serde_json::from_slice(&sidescan_oci::sarif::render(
            &response.report.clone().unwrap_or_default(),
        ))
        .unwrap_or_default();
        if let Some(r) = log["runs"].as_array() {
            runs.extend(r.iter().cloned());
        }
    }
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "version": "2.1.0",
        "$schema": sidescan_oci::sarif::SCHEMA,
        "runs": runs,
    }))
    .unwrap_or_default();
    text.push('\n');
    text
}

/// Flags of `scan --attach`.
#[derive(Debug, Args)]
pub(crate) struct AttachFlags {
    /// Attach the report to the scanned image in the registry as an OCI referrer (the format
    /// sidescan-watch writes), with the scan's registry credentials.
    #[arg(long)]
    pub(crate) attach: bool,

    /// With --attach, also attach SARIF 2.1.0 (repeatable: sarif, spdx, cyclonedx; the SBOMs
    /// when the scan returned them).
    #[arg(
        long = "attach-format",
        value_enum,
        value_delimiter = ',',
        requires = "attach"
    )]
    pub(crate) attach_formats: Vec<AttachFormat>,
}

/// Extra documents of `scan --attach`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AttachFormat {
    /// SARIF 2.1.0.
    Sarif,
    /// SPDX JSON (from an SBOM report type of the scan).
    Spdx,
    /// CycloneDX JSON (from an SBOM report type of the scan).
    Cyclonedx,
}

/// Attaches `response` (made by the plugin described by `metadata`) to the image it names.
/// Returns the line printed on stderr.
pub(crate) async fn attach(
    flags: &RegistryFlags,
    formats: &[AttachFormat],
    metadata: &GetMetadataResponse,
    plugin_url: &str,
    response: &ScanResponse,
) -> Result<String, CliError> {
    let report = response.report.clone().unwrap_or_default();
    let image = report.image.unwrap_or_default();
    if image.digest.is_empty() || image.repository.is_empty() {
        return Err(CliError::Usage(
            "--attach: the plugin's report names no repository or digest to attach to".into(),
        ));
    }
    let url = match (&flags.registry, image.registry.is_empty()) {
        (Some(url), _) => url.clone(),
        (None, false) => image.registry.clone(),
        (None, true) => {
            return Err(CliError::Usage("--attach needs --registry".into()));
        }
    };
    let url = if url.contains("://") {
        url
    } else if flags.insecure {
        format!("http://{url}")
    } else {
        format!("https://{url}")
    };
    let registry = client(flags, &url)?;
    let manifest = registry
        .manifest(&image.repository, &image.digest)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CliError::Registry(format!("{}@{} is gone", image.repository, image.digest))
        })?;
    let id = ScannerId::from_metadata(metadata, plugin_url);
    let formats: Vec<DocFormat> = formats
        .iter()
        .map(|f| match f {
            AttachFormat::Sarif => DocFormat::Sarif,
            AttachFormat::Spdx => DocFormat::Spdx,
            AttachFormat::Cyclonedx => DocFormat::CycloneDx,
        })
        .collect();
    let (documents, not_made) =
        report::attachments(response, &id, &report::now_rfc3339(), &formats)
            .map_err(registry_error)?;
    for (_, why) in not_made {
        eprintln!("attach: {why}");
    }
    let mut last = String::new();
    for document in &documents {
        let done = referrers::attach(
            &registry,
            &image.repository,
            &manifest.descriptor(),
            document,
        )
        .await
        .map_err(registry_error)?;
        last = done.digest;
    }
    Ok(format!(
        "attached: {}@{} (report {last})",
        image.repository, image.digest
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = target("127.0.0.1:5000/team/app:1.0", None).unwrap();
        assert_eq!(t.registry_url, "https://127.0.0.1:5000");
        assert_eq!(
            (t.repository.as_str(), t.reference.as_str()),
            ("team/app", "1.0")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let t = target(&format!("app@{d}"), Some("http://127.0.0.1:5000")).unwrap();
        assert_eq!(
            (t.repository.as_str(), t.reference.as_str()),
            ("app", d.as_str())
        );
        assert_eq!(
            target("app", Some("http://r:1")).unwrap().reference,
            "latest"
        );
        assert!(target("app", None).is_err());
        assert!(target("other:1/app", Some("http://r:1")).is_err());
        assert!(target("Bad Name", Some("http://r:1")).is_err());
    }
}
