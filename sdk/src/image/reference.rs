//! Image references: parsing, normalisation, and how `ScanJob.image` combines with
//! `ScanJob.registry_url` (the rules of `ScanRequest.image` in `proto/sidescan/v1/scan.proto`).
//!
//! Grammar (distribution-spec / docker reference grammar):
//!
//! ```text
//! reference  := [host[:port] "/"] path [":" tag] ["@" digest]
//! host       := label ("." label)* | "[" ipv6 "]"      label := [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?
//! path       := component ("/" component)*            component := [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
//! tag        := [\w][\w.-]{0,127}
//! digest     := "sha256:" 64 lowercase hex            (the only algorithm the SDK verifies)
//! ```
//!
//! The first path component is a host when it contains `.` or `:` or is `localhost`. Docker Hub
//! names are normalised: `docker.io` is `index.docker.io`, a one-component repository gets
//! `library/`.

use std::fmt;

use crate::error::Error;

/// Docker Hub's registry host as `oci-client` addresses it.
pub(crate) const DOCKER_HUB: &str = "index.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// `host[:port]`, lower-case, Docker Hub as [`DOCKER_HUB`].
    pub registry: String,
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// Tag; `None` only when a digest was given without a tag.
    pub tag: Option<String>,
    /// `sha256:<hex>`, if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The reference as `oci-client` wants it (the digest decides what is pulled).
    #[cfg(test)]
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (Some(tag), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Where and how to pull: the reference plus the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The normalised reference.
    pub image: ImageRef,
    /// Plain http instead of https.
    pub plain_http: bool,
}

/// Combines `image` with `registry_url` and `insecure` as the proto specifies.
pub(crate) fn resolve_target(
    image: &str,
    registry_url: &str,
    insecure: bool,
) -> Result<Target, Error> {
    refuse_credentials(image, registry_url)?;
    let url = parse_registry_url(registry_url)?;
    let image_trimmed = image.trim();
    if image_trimmed.is_empty() {
        return Err(Error::invalid_argument("image reference is empty"));
    }
    let (host_in_image, rest) = split_host(image_trimmed);
    let registry = match (&url, host_in_image) {
        (Some(url), Some(host)) => {
            let host = normalize_host(host, image_trimmed)?;
            if host != url.host {
                return Err(Error::invalid_argument(format!(
                    "image {image_trimmed:?} names registry {host} but registry.url is {}: send a \
                     reference relative to registry.url (e.g. \"repo:tag\") or a matching host",
                    url.host
                )));
            }
            host
        }
        (Some(url), None) => url.host.clone(),
        (None, Some(host)) => normalize_host(host, image_trimmed)?,
        (None, None) => DOCKER_HUB.to_string(),
    };
    let (repository, tag, digest) = parse_remainder(rest, image_trimmed)?;
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if registry.len() + 1 + repository.len() > 255 {
        return Err(Error::invalid_argument(format!(
            "image name {registry}/{repository} is longer than 255 characters"
        )));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    let plain_http = insecure || url.as_ref().is_some_and(|u| u.plain_http);
    Ok(Target {
        image: ImageRef {
            registry,
            repository,
            tag,
            digest,
        },
        plain_http,
    })
}

/// Refuses `user:password@` in the registry URL or in the image's host without echoing either:
/// error messages are logged and the password must never be.
fn refuse_credentials(image: &str, registry_url: &str) -> Result<(), Error> {
    let image_host = image.trim().split_once('/').map(|(first, _)| first);
    if registry_url.contains('@') || image_host.is_some_and(|host| host.contains('@')) {
        return Err(Error::invalid_argument(
            "credentials (user:password@) in the registry url or image reference are not \
             accepted: send them in Registry.authorization",
        ));
    }
    Ok(())
}

/// A parsed `Registry.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RegistryUrl {
    host: String,
    plain_http: bool,
}

fn parse_registry_url(url: &str) -> Result<Option<RegistryUrl>, Error> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let (plain_http, rest) = if let Some(rest) = strip_prefix_ci(url, "http://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ci(url, "https://") {
        (false, rest)
    } else if url.contains("://") {
        return Err(Error::invalid_argument(format!(
            "registry url {url:?}: only http:// and https:// are supported"
        )));
    } else {
        (false, url)
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.contains('/') || host.contains('@') || host.contains('?') || host.contains('#') {
        return Err(Error::invalid_argument(format!(
            "registry url {url:?}: expected scheme://host[:port] without a path"
        )));
    }
    let host = normalize_host(host, url)?;
    Ok(Some(RegistryUrl { host, plain_http }))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Splits off the host when the first component is one (the Docker rule).
fn split_host(image: &str) -> (Option<&str>, &str) {
    match image.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            (Some(first), rest)
        }
        _ => (None, image),
    }
}

/// Validates `host[:port]` and normalises it: lower case, Docker Hub aliases to [`DOCKER_HUB`].
pub(crate) fn normalize_host(host: &str, context: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        Error::invalid_argument(format!(
            "invalid registry host {host:?} in {context:?}: {why}"
        ))
    };
    if host.is_empty() {
        return Err(bad("empty"));
    }
    let (name, port) = if let Some(stripped) = host.strip_prefix('[') {
        let (v6, after) = stripped.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        if name.is_empty() {
            return Err(bad("empty host name"));
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(bad("not a valid host name"));
            }
        }
        (name.to_ascii_lowercase(), port)
    };
    if let Some(port) = port {
        let valid = !port.is_empty() && port.len() <= 5 && port.chars().all(|c| c.is_ascii_digit());
        if !valid || port.parse::<u32>().map_or(true, |p| p == 0 || p > 65535) {
            return Err(bad("invalid port"));
        }
    }
    let full = match port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    };
    Ok(match full.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => full,
    })
}

/// Parses `path[:tag][@digest]`.
fn parse_remainder(
    rest: &str,
    whole: &str,
) -> Result<(String, Option<String>, Option<String>), Error> {
    let (name_tag, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        // A ':' after the last '/' separates the tag.
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if name.is_empty() {
        return Err(Error::invalid_argument(format!(
            "image {whole:?} has no repository"
        )));
    }
    for component in name.split('/') {
        if !sidescan_proto::names::is_path_component(component) {
            return Err(Error::invalid_argument(format!(
                "invalid repository {name:?} in image {whole:?}: path components are lower-case \
                 letters and digits separated by '.', '_', '__' or '-'"
            )));
        }
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(Error::invalid_argument(format!(
            "invalid tag {tag:?} in image {whole:?}: 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )));
    }
    let digest =
        match digest {
            Some(d) => Some(parse_digest(d).map_err(|e| {
                Error::invalid_argument(format!("image {whole:?}: {}", e.message()))
            })?),
            None => None,
        };
    Ok((name.to_string(), tag.map(str::to_string), digest))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// Validates a digest string; only `sha256:<64 lowercase hex>` is accepted.
pub(crate) fn parse_digest(d: &str) -> Result<String, Error> {
    let (algo, hex) = d.split_once(':').ok_or_else(|| {
        Error::invalid_argument(format!("invalid digest {d:?}: expected algorithm:hex"))
    })?;
    if algo != "sha256" {
        return Err(Error::invalid_argument(format!(
            "unsupported digest algorithm in {d:?}: only sha256 is supported"
        )));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(Error::invalid_argument(format!(
            "invalid digest {d:?}: sha256 needs 64 lower-case hex digits"
        )));
    }
    Ok(d.to_string())
}

/// The hex part of a validated `sha256:` digest.
pub(crate) fn digest_hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ok(
        image: &str,
        url: &str,
        insecure: bool,
    ) -> (String, String, Option<String>, Option<String>, bool) {
        let t = resolve_target(image, url, insecure)
            .unwrap_or_else(|e| panic!("{image:?} {url:?}: {e}"));
        (
            t.image.registry,
            t.image.repository,
            t.image.tag,
            t.image.digest,
            t.plain_http,
        )
    }

    #[test]
    fn references_normalise() {
        let s = |x: &str| Some(x.to_string());
        type Want<'a> = (&'a str, &'a str, Option<String>, Option<String>, bool);
        let cases: Vec<(&str, &str, bool, Want<'_>)> = vec![
            (
                "alpine",
                "",
                false,
                (
                    "index.docker.io",
                    "library/alpine",
                    s("latest"),
                    None,
                    false,
                ),
            ),
            (
                "docker.io/alpine:3.20",
                "",
                false,
                ("index.docker.io", "library/alpine", s("3.20"), None, false),
            ),
            (
                "docker.io/bitnami/redis",
                "",
                false,
                ("index.docker.io", "bitnami/redis", s("latest"), None, false),
            ),
            (
                "index.docker.io/library/alpine",
                "",
                false,
                (
                    "index.docker.io",
                    "library/alpine",
                    s("latest"),
                    None,
                    false,
                ),
            ),
            (
                "127.0.0.1:5000/app:1.0",
                "",
                false,
                ("127.0.0.1:5000", "app", s("1.0"), None, false),
            ),
            (
                "localhost/a/b",
                "",
                true,
                ("localhost", "a/b", s("latest"), None, true),
            ),
            (
                "app:1.0",
                "http://127.0.0.1:5000",
                false,
                ("127.0.0.1:5000", "app", s("1.0"), None, true),
            ),
            (
                "app:1.0",
                "https://Reg.Example.com/",
                false,
                ("reg.example.com", "app", s("1.0"), None, false),
            ),
            (
                "app",
                "reg.example.com:443",
                false,
                ("reg.example.com:443", "app", s("latest"), None, false),
            ),
            (
                "app",
                "reg.example.com",
                true,
                ("reg.example.com", "app", s("latest"), None, true),
            ),
            (
                "127.0.0.1:5000/app:1.0",
                "http://127.0.0.1:5000",
                false,
                ("127.0.0.1:5000", "app", s("1.0"), None, true),
            ),
            (
                "my_repo/a.b-c__d:v1.2_3-x",
                "http://h:1",
                false,
                ("h:1", "my_repo/a.b-c__d", s("v1.2_3-x"), None, true),
            ),
            (
                "[::1]:5000/app",
                "",
                false,
                ("[::1]:5000", "app", s("latest"), None, false),
            ),
        ];
        for (image, url, insecure, want) in cases {
            let got = ok(image, url, insecure);
            assert_eq!(
                got,
                (
                    want.0.to_string(),
                    want.1.to_string(),
                    want.2,
                    want.3,
                    want.4
                ),
                "{image:?} with url {url:?}"
            );
        }
        // digest only: no tag; tag and digest: both kept, digest pulled
        let got = ok(&format!("app@{D}"), "http://h:5000", false);
        assert_eq!((got.2, got.3), (None, Some(D.to_string())));
        let t = resolve_target(&format!("h:5000/app:v1@{D}"), "", false).unwrap();
        assert_eq!(t.image.tag.as_deref(), Some("v1"));
        assert_eq!(t.image.to_oci().digest(), Some(D));
        assert_eq!(t.image.to_string(), format!("h:5000/app:v1@{D}"));
        // upper-case host is lowered; a localhost host with port
        assert_eq!(ok("LOCALHOST:5000/a", "", false).0, "localhost:5000");
    }

    #[test]
    fn bad_references_are_invalid_argument() {
        let bad: &[(&str, &str)] = &[
            ("", ""),
            ("   ", ""),
            ("App", ""),
            ("app:", ""),
            ("app:-x", ""),
            ("a//b", ""),
            ("a/-b", ""),
            ("a..b", ""),
            ("a___b", ""),
            ("app@sha256:abc", ""),
            ("app@md5:0123", ""),
            ("app@sha512:00", ""),
            ("a:", ""),
            ("team/app@", ""),
            ("h:99999/app", ""),
            ("h:0/app", ""),
            ("-h.com/app", ""),
            ("exa mple.com/app", ""),
            ("other.example.com/app:1", "https://reg.example.com"),
            ("127.0.0.1:5001/app", "http://127.0.0.1:5000"),
            ("app", "ftp://reg.example.com"),
            ("app", "https://reg.example.com/v2/"),
            ("app", "https://user@reg.example.com"),
            ("app", "http://"),
        ];
        for (image, url) in bad {
            let err = resolve_target(image, url, false)
                .expect_err(&format!("{image:?} {url:?} accepted"));
            assert_eq!(
                err.code(),
                tonic::Code::InvalidArgument,
                "{image:?} {url:?}: {err}"
            );
        }
        let long = format!("h.com/{}", "a".repeat(260));
        assert!(resolve_target(&long, "", false).is_err());
        let long_tag = format!("app:{}", "a".repeat(129));
        assert!(resolve_target(&long_tag, "", false).is_err());
    }

    #[test]
    fn credentials_in_a_url_or_reference_are_refused_without_echo() {
        for (image, url) in [
            ("app:1", "http://alice:s3cret-pw@127.0.0.1:5000"),
            ("alice:s3cret-pw@127.0.0.1:5000/app:1", ""),
            ("alice:s3cret-pw@registry.example/app:1", ""),
        ] {
            let err = resolve_target(image, url, false).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{image} {url}");
            assert!(!err.message().contains("s3cret"), "{}", err.message());
        }
        // A digest's '@' is no credential.
        resolve_target("127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", false)
            .unwrap();
    }

    #[test]
    fn docker_hub_aliases_match_registry_url() {
        let t =
            resolve_target("docker.io/library/alpine", "https://index.docker.io", false).unwrap();
        assert_eq!(t.image.registry, DOCKER_HUB);
        assert_eq!(t.image.to_oci().resolve_registry(), DOCKER_HUB);
    }
}
