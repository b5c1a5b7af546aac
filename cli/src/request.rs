//! Turning `scan` flags into a `ScanRequest`.

use std::collections::HashMap;

use base64::Engine as _;
use sidescan_proto::{
    mime,
    v1::{Registry, ReportParameters, ScanRequest},
};

use crate::args::{ScanArgs, Secret};

/// The HTTP Authorization value for the registry credentials given, if any.
///
/// `--username` + `--password` give `Basic base64(user:password)`, `--token` gives
/// `Bearer TOKEN`; empty values count as absent. Mixing the two, or half a user/password
/// pair, is an error.
pub(crate) fn authorization(
    username: Option<&str>,
    password: Option<&Secret>,
    token: Option<&Secret>,
) -> Result<Option<Secret>, String> {
    let username = username.filter(|u| !u.is_empty());
    let password = password.filter(|p| !p.0.is_empty());
    let token = token.filter(|t| !t.0.is_empty());
    match (username, password, token) {
        (None, None, None) => Ok(None),
        (None, None, Some(token)) => Ok(Some(Secret(format!("Bearer {}", token.0)))),
        (_, _, Some(_)) => Err(
            "give either --username/--password (SIDESCAN_REGISTRY_USERNAME/_PASSWORD) or --token \
             (SIDESCAN_REGISTRY_TOKEN), not both"
                .to_string(),
        ),
        (Some(user), Some(password), None) => {
            if user.contains(':') {
                return Err("--username must not contain ':'".to_string());
            }
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.0));
            Ok(Some(Secret(format!("Basic {encoded}"))))
        }
        (Some(_), None, None) => {
            Err("--username needs --password (or SIDESCAN_REGISTRY_PASSWORD)".to_string())
        }
        (None, Some(_), None) => {
            Err("--password needs --username (or SIDESCAN_REGISTRY_USERNAME)".to_string())
        }
    }
}

/// Expands a report-type alias (`vulnerability`, `malware`, `sbom`) or checks a MIME type.
pub(crate) fn report_type(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.to_ascii_lowercase().as_str() {
        "vulnerability" | "vuln" => Ok(mime::VULNERABILITY_REPORT.to_string()),
        "malware" => Ok(mime::MALWARE_REPORT.to_string()),
        "sbom" => Ok(mime::SBOM_REPORT.to_string()),
        _ if text.contains('/') => Ok(text.to_string()),
        _ => Err(format!(
            "invalid --report-type {text:?}: expected a MIME type or one of vulnerability, malware, sbom"
        )),
    }
}

/// Builds the request; `default_registry` is the plugin config's `zot-addr`, used when
/// `--registry` is not given.
pub(crate) fn build_scan_request(
    args: &ScanArgs,
    default_registry: Option<&str>,
) -> Result<ScanRequest, String> {
    if args.image.trim().is_empty() {
        return Err("IMAGE must not be empty".to_string());
    }
    let authorization = authorization(
        args.registry.username.as_deref(),
        args.registry.password.as_ref(),
        args.registry.token.as_ref(),
    )?;
    let url = args
        .registry
        .registry
        .as_deref()
        .or(default_registry)
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let registry = if url.is_empty() && authorization.is_none() && !args.registry.insecure {
        None
    } else {
        Some(Registry {
            url,
            authorization: authorization.map(|a| a.0).unwrap_or_default(),
            insecure: args.registry.insecure,
        })
    };
    if !args.report_params.is_empty() && args.report_types.is_empty() {
        return Err("--report-param needs at least one --report-type".to_string());
    }
    let parameters: HashMap<String, String> = args.report_params.iter().cloned().collect();
    let mut report_types = HashMap::new();
    for text in &args.report_types {
        report_types.insert(
            report_type(text)?,
            ReportParameters {
                parameters: parameters.clone(),
            },
        );
    }
    Ok(ScanRequest {
        image: args.image.trim().to_string(),
        registry,
        report_types,
        platform: args.platform.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn scan_args(argv: &[&str]) -> ScanArgs {
        let mut full = vec!["sidescan", "scan"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).expect("parses").command {
            Command::Scan(args) => *args,
            other => panic!("not scan: {other:?}"),
        }
    }

    fn secret(s: &str) -> Secret {
        Secret(s.to_string())
    }

    #[test]
    fn credentials_become_an_authorization_header() {
        assert_eq!(
            authorization(Some("alice"), Some(&secret("s3cret")), None),
            Ok(Some(secret("Basic YWxpY2U6czNjcmV0")))
        );
        assert_eq!(
            authorization(None, None, Some(&secret("tok.en"))),
            Ok(Some(secret("Bearer tok.en")))
        );
        assert_eq!(authorization(None, None, None), Ok(None));
        assert_eq!(
            authorization(Some(""), Some(&secret("")), Some(&secret(""))),
            Ok(None)
        );
        assert!(authorization(Some("alice"), None, None).is_err());
        assert!(authorization(None, Some(&secret("p")), None).is_err());
        assert!(authorization(Some("a"), Some(&secret("p")), Some(&secret("t"))).is_err());
        assert!(authorization(Some("a:b"), Some(&secret("p")), None).is_err());
    }

    #[test]
    fn errors_never_contain_the_secret() {
        for result in [
            authorization(
                Some("alice"),
                Some(&secret("hunter2")),
                Some(&secret("tok")),
            ),
            authorization(None, Some(&secret("hunter2")), None),
        ] {
            let err = result.expect_err("error");
            assert!(!err.contains("hunter2") && !err.contains("tok\""), "{err}");
        }
    }

    #[test]
    fn request_from_flags() {
        let args = scan_args(&[
            "app:1.0",
            "--registry",
            "http://127.0.0.1:5000",
            "--username",
            "alice",
            "--password",
            "s3cret",
            "--insecure",
            "--platform",
            "linux/arm64/v8",
            "--report-type",
            "sbom",
            "--report-type",
            "application/vnd.security.malware.report; version=1.0",
            "--report-param",
            "sbom_media_type=application/spdx+json",
        ]);
        let request = build_scan_request(&args, Some("zot:8080")).expect("request");
        assert_eq!(request.image, "app:1.0");
        let registry = request.registry.expect("registry");
        assert_eq!(registry.url, "http://127.0.0.1:5000");
        assert_eq!(registry.authorization, "Basic YWxpY2U6czNjcmV0");
        assert!(registry.insecure);
        let platform = request.platform.expect("platform");
        assert_eq!(
            (
                platform.os.as_str(),
                platform.architecture.as_str(),
                platform.variant.as_str()
            ),
            ("linux", "arm64", "v8")
        );
        assert_eq!(request.report_types.len(), 2);
        let sbom = &request.report_types[mime::SBOM_REPORT];
        assert_eq!(sbom.parameters["sbom_media_type"], "application/spdx+json");
        assert!(request.report_types.contains_key(mime::MALWARE_REPORT));
    }

    #[test]
    fn registry_defaults_to_the_plugin_config() {
        let args = scan_args(&["app:1.0"]);
        let request = build_scan_request(&args, Some("localhost:8080")).expect("request");
        assert_eq!(request.registry.expect("registry").url, "localhost:8080");

        let request = build_scan_request(&args, None).expect("request");
        assert_eq!(request.registry, None);
        assert_eq!(request.platform, None);
        assert!(request.report_types.is_empty());

        let args = scan_args(&["127.0.0.1:5000/app:1.0", "--token", "abc"]);
        let registry = build_scan_request(&args, None)
            .expect("request")
            .registry
            .expect("registry");
        assert_eq!(
            (registry.url.as_str(), registry.authorization.as_str()),
            ("", "Bearer abc")
        );
    }

    #[test]
    fn report_type_aliases() {
        assert_eq!(
            report_type("vulnerability").as_deref(),
            Ok(mime::VULNERABILITY_REPORT)
        );
        assert_eq!(report_type("Malware").as_deref(), Ok(mime::MALWARE_REPORT));
        assert_eq!(
            report_type("application/x; v=1").as_deref(),
            Ok("application/x; v=1")
        );
        assert!(report_type("virus").is_err());
        let args = scan_args(&["app", "--report-param", "k=v"]);
        assert!(build_scan_request(&args, None).is_err());
    }
}
