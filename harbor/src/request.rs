//! `POST /scan` bodies: parsed (400 when not JSON of the right shape), validated (422 for a
//! missing or malformed field) and planned against the plugin's metadata (501 for what it cannot
//! do) into one `sidescan.v1` [`ScanRequest`].
//!
//! Mapping: `artifact.repository` + `artifact.digest` become `ScanRequest.image =
//! "repository@digest"` (relative to the registry); `registry.url` becomes `Registry.url` as
//! Harbor sent it (`http://core:8080`); `registry.authorization` passes through unchanged;
//! `registry.insecure` becomes `Registry.insecure` only for a URL without a scheme (a scheme
//! decides by itself). Fields Harbor adds beyond the spec (`artifact.size`) are ignored.

use serde::Deserialize;
use sidescan_proto::mime as pmime;
use sidescan_proto::v1::{ReportParameters, ScanRequest};

use crate::error::ApiError;
use crate::jobs::ArtifactRef;
use crate::mime;

#[derive(Deserialize)]
struct Body {
    registry: Option<RegistryBody>,
    artifact: Option<ArtifactBody>,
    enabled_capabilities: Option<Vec<CapabilityBody>>,
}

#[derive(Deserialize)]
struct RegistryBody {
    url: Option<String>,
    authorization: Option<String>,
    insecure: Option<bool>,
}

#[derive(Deserialize)]
struct ArtifactBody {
    repository: Option<String>,
    digest: Option<String>,
    tag: Option<String>,
    mime_type: Option<String>,
}

#[derive(Deserialize)]
struct CapabilityBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    produces_mime_types: Option<Vec<String>>,
    parameters: Option<ParametersBody>,
}

#[derive(Deserialize)]
struct ParametersBody {
    sbom_media_types: Option<Vec<String>>,
}

/// A capability Harbor enabled in a scan request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enabled {
    /// `vulnerability`, with the report types asked for (empty: all).
    Vulnerability(Vec<String>),
    /// `sbom`, with the report types and SBOM formats asked for.
    Sbom {
        /// Report types (empty: all).
        produces: Vec<String>,
        /// SBOM formats, spelled as in [`mime::SBOM_FORMATS`].
        formats: Vec<String>,
    },
}

/// A scan request that passed validation: everything needed to call the plugin.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The artifact as Harbor named it.
    pub artifact: ArtifactRef,
    /// The plugin request, without report types.
    pub request: ScanRequest,
    /// The capabilities enabled; absent or empty: `vulnerability` only (the primary report is
    /// always produced; an SBOM is a second engine run, so it is made only when asked for).
    pub enabled: Vec<Enabled>,
}

impl Validated {
    /// The SBOM formats asked for, without duplicates, in request order.
    pub fn sbom_formats(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.enabled {
            if let Enabled::Sbom { formats, .. } = e {
                for f in formats {
                    if !out.contains(f) {
                        out.push(f.clone());
                    }
                }
            }
        }
        out
    }
}

/// Parses and validates a `POST /scan` body (400 / 422). Capability checks need the plugin's
/// metadata and are in [`crate::metadata`].
pub fn parse(body: &[u8]) -> Result<Validated, ApiError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let registry = body
        .registry
        .ok_or_else(|| invalid("registry is required"))?;
    let url = registry
        .url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("registry.url is required"))?;
    let url_host = registry_host(&url)?;
    let authorization = registry.authorization.unwrap_or_default();
    check_authorization(&authorization)?;
    let artifact = body
        .artifact
        .ok_or_else(|| invalid("artifact is required"))?;
    let repository = required(artifact.repository, "artifact.repository")?;
    check_repository(&repository)?;
    let digest = required(artifact.digest, "artifact.digest")?;
    check_digest(&digest)?;
    let mime_type = required(artifact.mime_type, "artifact.mime_type")?;
    if !mime::CONSUMES.iter().any(|m| mime::same(m, &mime_type)) {
        return Err(ApiError::Unsupported(format!(
            "artifact.mime_type {mime_type:?} is not scanned here: only {} and {} (Harbor \
             sends one request per image of an index)",
            mime::CONSUMES[0],
            mime::CONSUMES[1]
        )));
    }
    let image = image_reference(&repository, &digest, &url_host)?;
    let enabled = enabled_capabilities(body.enabled_capabilities.unwrap_or_default())?;
    let has_scheme = url.contains("://");
    Ok(Validated {
        artifact: ArtifactRef {
            repository,
            digest,
            tag: artifact.tag.unwrap_or_default(),
            mime_type,
        },
        request: ScanRequest {
            image,
            registry: Some(sidescan_proto::v1::Registry {
                url: url.trim_end_matches('/').to_owned(),
                authorization,
                insecure: !has_scheme && registry.insecure.unwrap_or(false),
            }),
            ..ScanRequest::default()
        },
        enabled,
    })
}

/// The plugin request asking, besides the primary report, for an SBOM in `format`.
pub fn with_sbom(request: &ScanRequest, format: &str) -> ScanRequest {
    let mut request = request.clone();
    let mut parameters = ReportParameters::default();
    parameters.parameters.insert(
        pmime::SBOM_MEDIA_TYPE_PARAMETER.to_owned(),
        format.to_owned(),
    );
    request
        .report_types
        .insert(pmime::SBOM_REPORT.to_owned(), parameters);
    request
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidField(message.to_owned())
}

fn required(value: Option<String>, name: &str) -> Result<String, ApiError> {
    value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::InvalidField(format!("{name} is required")))
}

fn enabled_capabilities(list: Vec<CapabilityBody>) -> Result<Vec<Enabled>, ApiError> {
    let mut out = Vec::new();
    for (i, c) in list.into_iter().enumerate() {
        let produces = c.produces_mime_types.unwrap_or_default();
        match c.kind.as_deref().map(str::trim) {
            Some("vulnerability") => out.push(Enabled::Vulnerability(produces)),
            Some("sbom") => {
                let asked = c.parameters.and_then(|p| p.sbom_media_types);
                let formats = match asked {
                    None => vec![pmime::SPDX_JSON.to_owned()],
                    Some(list) if list.is_empty() => vec![pmime::SPDX_JSON.to_owned()],
                    Some(list) => list
                        .iter()
                        .map(|f| {
                            mime::sbom_format(f).map(str::to_owned).ok_or_else(|| {
                                ApiError::InvalidField(format!(
                                    "enabled_capabilities[{i}].parameters.sbom_media_types: \
                                     {f:?} is neither {} nor {}",
                                    mime::SBOM_FORMATS[0],
                                    mime::SBOM_FORMATS[1]
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                };
                out.push(Enabled::Sbom { produces, formats });
            }
            Some(other) => {
                return Err(ApiError::InvalidField(format!(
                    "enabled_capabilities[{i}].type {other:?} is neither \"vulnerability\" nor \
                     \"sbom\""
                )));
            }
            None => {
                return Err(ApiError::InvalidField(format!(
                    "enabled_capabilities[{i}].type is required"
                )));
            }
        }
    }
    if out.is_empty() {
        out.push(Enabled::Vulnerability(Vec::new()));
    }
    Ok(out)
}

/// Validates `registry.url` (`http://host[:port]`, `https://host[:port]` or a bare
/// `host[:port]`, no credentials, no path) and returns its `host[:port]`.
fn registry_host(url: &str) -> Result<String, ApiError> {
    let rest = if let Some((scheme, rest)) = url.split_once("://") {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(invalid(
                "registry.url: only http:// and https:// URLs are supported",
            ));
        }
        rest
    } else {
        url
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.contains('@') {
        // Never echo: the part before '@' is a password.
        return Err(invalid(
            "registry.url: credentials in the URL are not accepted; send them in \
             registry.authorization",
        ));
    }
    if host.is_empty() || !valid_host(host) {
        return Err(ApiError::InvalidField(format!(
            "registry.url {url:?}: expected scheme://host[:port] without a path"
        )));
    }
    Ok(host.to_ascii_lowercase())
}

/// `name[:port]` or `[ipv6][:port]`; names are dot-separated labels of letters, digits and `-`.
fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty()
            || !ip
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    port_ok && name_ok
}

fn check_authorization(value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Ok(());
    }
    let ok = value.split_once(' ').is_some_and(|(scheme, token)| {
        (scheme.eq_ignore_ascii_case("basic") || scheme.eq_ignore_ascii_case("bearer"))
            && !token.trim().is_empty()
            && token.trim().bytes().all(|b| b.is_ascii_graphic())
    });
    if ok {
        Ok(())
    } else {
        // Never echo the value: it is a credential.
        Err(invalid(
            "registry.authorization must be \"Basic <base64 user:password>\" or \"Bearer <token>\"",
        ))
    }
}

/// The repository grammar of the distribution spec: lower-case components joined by `/`.
fn check_repository(repository: &str) -> Result<(), ApiError> {
    let ok = repository.len() <= 255
        && repository
            .split('/')
            .all(sidescan_proto::names::is_path_component);
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidField(format!(
            "artifact.repository {repository:?} is not a repository name (lower-case \
             components of letters and digits, separated by '.', '_', '__' or '-', joined by '/')"
        )))
    }
}

fn check_digest(digest: &str) -> Result<(), ApiError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidField(format!(
            "artifact.digest {digest:?} is not sha256:<64 lower-case hex digits>"
        )))
    }
}

/// `repository@digest`, relative to `registry.url`. When the repository's first component would
/// read as a host (it contains `.` or `:`, or is `localhost`: the Docker rule sidescan.v1
/// follows), the registry's own host is put in front, which is only possible when that host
/// reads as one too.
fn image_reference(repository: &str, digest: &str, url_host: &str) -> Result<String, ApiError> {
    let looks_like_host =
        |s: &str| s.contains('.') || s.contains(':') || s == "localhost" || s.starts_with('[');
    let first = repository.split('/').next().unwrap_or_default();
    if !(repository.contains('/') && looks_like_host(first)) {
        return Ok(format!("{repository}@{digest}"));
    }
    if looks_like_host(url_host) {
        Ok(format!("{url_host}/{repository}@{digest}"))
    } else {
        Err(ApiError::InvalidField(format!(
            "artifact.repository {repository:?} starts with what reads as a host and \
             registry.url's host {url_host:?} does not: give registry.url with a port or a \
             domain name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn body(v: serde_json::Value) -> Result<Validated, ApiError> {
        parse(v.to_string().as_bytes())
    }

    fn harbor_like() -> serde_json::Value {
        json!({
            "registry": {"url": "http://core:8080", "authorization": "Basic cm9ib3Q6c2VjcmV0", "insecure": false},
            "artifact": {"repository": "library/alpine", "digest": DIGEST, "tag": "3.20",
                          "mime_type": "application/vnd.docker.distribution.manifest.v2+json", "size": 1234},
            "enabled_capabilities": [{"type": "vulnerability",
                "produces_mime_types": ["application/vnd.security.vulnerability.report; version=1.1"],
                "parameters": null}]
        })
    }

    #[test]
    fn harbors_request_maps_to_a_relative_image_and_the_full_url() {
        let v = body(harbor_like()).unwrap();
        assert_eq!(v.request.image, format!("library/alpine@{DIGEST}"));
        let registry = v.request.registry.clone().unwrap();
        assert_eq!(registry.url, "http://core:8080");
        assert_eq!(registry.authorization, "Basic cm9ib3Q6c2VjcmV0");
        assert!(!registry.insecure);
        assert_eq!(v.artifact.tag, "3.20");
        assert!(v.sbom_formats().is_empty());
    }

    #[test]
    fn bad_json_is_400_and_bad_fields_422() {
        assert!(matches!(parse(b"{"), Err(ApiError::BadJson(_))));
        assert!(matches!(parse(b"null"), Err(ApiError::BadJson(_))));
        assert!(matches!(
            body(json!({"registry": {"url": 5}})),
            Err(ApiError::BadJson(_))
        ));
        let cases = [
            ("/registry", json!(null)),
            ("/registry/url", json!("")),
            ("/registry/url", json!("ftp://x")),
            ("/registry/url", json!("http://u:p@core:8080")),
            ("/registry/url", json!("http://core:8080/path")),
            ("/registry/url", json!("http://core:99999")),
            ("/registry/authorization", json!("Digest abc")),
            ("/artifact/repository", json!("Library/Alpine")),
            ("/artifact/repository", json!("a//b")),
            ("/artifact/digest", json!("sha256:abc")),
            ("/artifact/digest", json!("sha512:abc")),
            ("/artifact/mime_type", json!("")),
            ("/enabled_capabilities/0/type", json!("malware")),
            (
                "/enabled_capabilities/0/parameters",
                json!({"sbom_media_types": ["text/plain"]}),
            ),
        ];
        for (pointer, value) in cases {
            let mut v = harbor_like();
            if pointer.contains("parameters") {
                v["enabled_capabilities"][0]["type"] = json!("sbom");
            }
            *v.pointer_mut(pointer).unwrap() = value.clone();
            match body(v) {
                Err(ApiError::InvalidField(m)) => assert!(!m.contains("cm9ib3Q"), "{m}"),
                other => panic!("{pointer} = {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn credentials_are_never_echoed() {
        let mut v = harbor_like();
        v["registry"]["url"] = json!("http://robot:s3cret@core:8080");
        let Err(e) = body(v) else { panic!() };
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let mut v = harbor_like();
        v["registry"]["authorization"] = json!("Token s3cret");
        let Err(e) = body(v) else { panic!() };
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn an_index_is_not_implemented() {
        let mut v = harbor_like();
        v["artifact"]["mime_type"] = json!(pmime::OCI_INDEX);
        assert!(matches!(body(v), Err(ApiError::Unsupported(_))));
    }

    #[test]
    fn sbom_formats_default_to_spdx() {
        let mut v = harbor_like();
        v["enabled_capabilities"] = json!([{"type": "sbom"}, {"type": "sbom",
            "parameters": {"sbom_media_types": ["application/vnd.cyclonedx+json", "application/spdx+json"]}}]);
        let v = body(v).unwrap();
        assert_eq!(v.sbom_formats(), [pmime::SPDX_JSON, pmime::CYCLONEDX_JSON]);
        let with = with_sbom(&v.request, pmime::SPDX_JSON);
        assert_eq!(
            with.report_types[pmime::SBOM_REPORT].parameters["sbom_media_type"],
            pmime::SPDX_JSON
        );
    }

    #[test]
    fn a_dotted_project_gets_the_registry_host_in_front() {
        assert_eq!(
            image_reference("my.project/app", DIGEST, "core:8080").unwrap(),
            format!("core:8080/my.project/app@{DIGEST}")
        );
        assert!(image_reference("my.project/app", DIGEST, "core").is_err());
        assert_eq!(
            image_reference("my.app", DIGEST, "core").unwrap(),
            format!("my.app@{DIGEST}")
        );
    }

    #[test]
    fn insecure_applies_only_without_a_scheme() {
        let mut v = harbor_like();
        v["registry"]["insecure"] = json!(true);
        assert!(!body(v.clone()).unwrap().request.registry.unwrap().insecure);
        v["registry"]["url"] = json!("core:8080");
        assert!(body(v).unwrap().request.registry.unwrap().insecure);
    }
}
