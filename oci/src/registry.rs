//! A registry client for artifacts: manifests, small blobs, tags, the catalog, the referrers API
//! and deletes, over `oci-client` (which does the token-service exchange and blob uploads).
//!
//! oci-client has no call for the few requests whose status or headers matter here (probing the
//! referrers API, `DELETE`, `ETag`/`If-Match` on the referrers tag), so those are sent with
//! reqwest using the credentials oci-client negotiated (`Registry::raw`).

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageIndex};
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::RegistryOperation;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_MATCH,
};
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::credentials::Credentials;
use crate::media;

mod blob;

/// Largest manifest or index read.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Page size asked for when listing the catalog or tags.
const PAGE: usize = 500;

/// A manifest or index as the registry stored it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The bytes, exactly as served (their digest is [`Manifest::digest`]).
    pub bytes: Bytes,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// The `mediaType` field of the document (empty when absent).
    pub media_type: String,
    /// The parsed document.
    pub json: serde_json::Value,
}

impl Manifest {
    fn parse(bytes: Bytes) -> Result<Self, Error> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                what: "manifest".into(),
                max: MAX_MANIFEST_BYTES as u64,
            });
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Malformed(format!("manifest is not JSON: {e}")))?;
        if !json.is_object() {
            return Err(Error::Malformed("manifest is not a JSON object".into()));
        }
        let media_type = json["mediaType"].as_str().unwrap_or_default().to_string();
        Ok(Self {
            digest: sha256_digest(&bytes),
            bytes,
            media_type,
            json,
        })
    }

    /// Whether the document is an image index (by `mediaType`, or by its `manifests` array).
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
            || (self.media_type.is_empty() && self.json["manifests"].is_array())
    }

    /// The descriptor that points at this manifest.
    pub fn descriptor(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: if self.media_type.is_empty() {
                media::OCI_MANIFEST.into()
            } else {
                self.media_type.clone()
            },
            digest: self.digest.clone(),
            size: self.bytes.len() as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What the referrers tag holds, with the `ETag` to make the next write conditional.
#[derive(Clone, Debug, Default)]
pub struct TaggedIndex {
    /// The index (empty when the tag does not exist).
    pub index: Vec<oci_client::manifest::ImageIndexEntry>,
    /// The `ETag` the registry sent with it, if any.
    pub etag: Option<String>,
    /// Whether the tag existed.
    pub exists: bool,
}

/// One registry, one credential set.
pub struct Registry {
    host: String,
    plain_http: bool,
    client: oci_client::Client,
    http: reqwest::Client,
    creds: Credentials,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("plain_http", &self.plain_http)
            .field("creds", &self.creds)
            .finish()
    }
}

impl Registry {
    /// A client for `url`: `http://host[:port]`, `https://host[:port]`, or a bare `host[:port]`
    /// (https, or http when `insecure`).
    pub fn new(url: &str, creds: Credentials, insecure: bool) -> Result<Self, Error> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        let host = rest.trim_end_matches('/').to_string();
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(Error::BadReference(format!(
                "registry URL {url:?}: want http(s)://HOST[:PORT]"
            )));
        }
        let plain_http = match scheme {
            Some("http") => true,
            Some("https") => insecure,
            None => insecure,
            Some(other) => {
                return Err(Error::BadReference(format!(
                    "registry URL {url:?}: scheme {other:?} is neither http nor https"
                )));
            }
        };
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Http(format!("HTTP client: {e}")))?;
        Ok(Self {
            host,
            plain_http,
            client: oci_client::Client::new(config),
            http,
            creds,
        })
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http(s)://host[:port]`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host)
    }

    /// Whether the registry is spoken to over plain http.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// The credentials used.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    fn scheme(&self) -> &'static str {
        if self.plain_http { "http" } else { "https" }
    }

    fn reference(&self, repo: &str, reference: &str) -> Reference {
        if reference.contains(':') {
            Reference::with_digest(self.host.clone(), repo.into(), reference.into())
        } else {
            Reference::with_tag(self.host.clone(), repo.into(), reference.into())
        }
    }

    fn auth(&self) -> RegistryAuth {
        self.creds.to_registry_auth()
    }

    fn fail(&self, what: String) -> impl FnOnce(OciDistributionError) -> Error + '_ {
        move |source| Error::from_oci(&self.host, what, source)
    }

    /// Whether the registry answers `GET /v2/` (200, or 401 asking for credentials) now.
    pub async fn ping(&self) -> bool {
        match self.http.get(format!("{}/v2/", self.url())).send().await {
            Ok(r) => r.status().is_success() || r.status().as_u16() == 401,
            Err(_) => false,
        }
    }

    /// The manifest or index `repo:reference` (a tag or a digest); `None` when it does not exist.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, Error> {
        let r = self.reference(repo, reference);
        match self
            .client
            .pull_manifest_raw(&r, &self.auth(), media::MANIFEST_TYPES)
            .await
        {
            Ok((bytes, _)) => {
                let manifest = Manifest::parse(bytes)?;
                if reference.contains(':') && manifest.digest != reference {
                    return Err(Error::DigestMismatch {
                        what: format!("manifest {repo}@{reference}"),
                        actual: manifest.digest,
                    });
                }
                Ok(Some(manifest))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.fail(format!("GET manifest {repo}:{reference}"))(e)),
        }
    }

    /// Uploads `data` as a blob of `repo` (skipped when the registry has it) and returns its
    /// descriptor with `media_type`.
    pub async fn push_blob(
        &self,
        repo: &str,
        data: Bytes,
        media_type: &str,
    ) -> Result<OciDescriptor, Error> {
        let digest = sha256_digest(&data);
        let r = self.reference(repo, &digest);
        self.client
            .store_auth_if_needed(&self.host, &self.auth())
            .await;
        self.client
            .auth(&r, &self.auth(), RegistryOperation::Push)
            .await
            .map_err(self.fail(format!("authorize push to {repo}")))?;
        let exists = self
            .client
            .blob_exists(&r, &digest)
            .await
            .map_err(self.fail(format!("HEAD blob {repo}@{digest}")))?;
        let size = data.len() as i64;
        if !exists {
            self.client
                .push_blob(&r, data, &digest)
                .await
                .map_err(self.fail(format!("push blob {repo}@{digest}")))?;
        }
        Ok(OciDescriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            artifact_type: None,
        })
    }

    /// Reads blob `digest` of `repo`, at most `max` bytes, and verifies its digest.
    pub async fn blob(&self, repo: &str, digest: &str, max: u64) -> Result<Vec<u8>, Error> {
        let response = self.blob_response(repo, digest).await?;
        let body = read_capped(response, max, &format!("blob {digest}")).await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {repo}@{digest}"),
                actual,
            });
        }
        Ok(body)
    }

    /// Pushes a manifest under `reference` (a tag, or its own digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: Bytes,
        media_type: &str,
    ) -> Result<String, Error> {
        let digest = sha256_digest(&body);
        let r = self.reference(repo, reference);
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|_| Error::Malformed(format!("media type {media_type:?}")))?;
        self.client
            .store_auth_if_needed(&self.host, &self.auth())
            .await;
        self.client
            .push_manifest_raw(&r, body, content_type)
            .await
            .map_err(self.fail(format!("PUT manifest {repo}:{reference}")))?;
        Ok(digest)
    }

    /// Deletes manifest `digest` of `repo`. `Ok(false)` when the registry does not allow deletes
    /// (405, or `UNSUPPORTED`) or the manifest is already gone.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool, Error> {
        let response = self
            .raw(
                RegistryOperation::Push,
                repo,
                reqwest::Method::DELETE,
                &format!("/v2/{repo}/manifests/{digest}"),
            )
            .await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 | 405 => Ok(false),
            400 => Ok(false), // distribution answers UNSUPPORTED as 400 on some versions
            status => Err(Error::Status {
                what: format!("DELETE manifest {repo}@{digest}"),
                status,
            }),
        }
    }

    /// Every repository of the catalog (`GET /v2/_catalog`, page by page).
    pub async fn repositories(&self) -> Result<Vec<String>, Error> {
        let r = self.reference("library/catalog", "latest");
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = self
                .client
                .catalog(&r, &self.auth(), Some(PAGE), all.last().map(String::as_str))
                .await
                .map_err(self.fail("GET /v2/_catalog".into()))?;
            let n = page.repositories.len();
            all.extend(page.repositories);
            if n < PAGE {
                return Ok(all);
            }
        }
    }

    /// Every tag of `repo` (page by page); empty when the repository does not exist.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, Error> {
        let r = self.reference(repo, "latest");
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = match self
                .client
                .list_tags(&r, &self.auth(), Some(PAGE), all.last().map(String::as_str))
                .await
            {
                Ok(page) => page,
                Err(e) if is_not_found(&e) => return Ok(all),
                Err(e) => return Err(self.fail(format!("GET tags of {repo}"))(e)),
            };
            let n = page.tags.len();
            all.extend(page.tags);
            if n < PAGE {
                return Ok(all);
            }
        }
    }

    /// The referrers API's answer for `subject` of `repo`, or `None` when the registry has no
    /// referrers API (it answers 404, as the distribution spec says such a registry does).
    pub async fn referrers_api(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Option<OciImageIndex>, Error> {
        let response = self
            .raw(
                RegistryOperation::Pull,
                repo,
                reqwest::Method::GET,
                &format!("/v2/{repo}/referrers/{subject}"),
            )
            .await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(Error::Status {
                what: format!("GET referrers of {repo}@{subject}"),
                status,
            });
        }
        let body = read_capped(response, MAX_MANIFEST_BYTES as u64, "referrers index").await?;
        let index: OciImageIndex = serde_json::from_slice(&body)
            .map_err(|e| Error::Malformed(format!("referrers index of {repo}@{subject}: {e}")))?;
        Ok(Some(index))
    }

    /// The index under `tag` (the referrers tag schema), with its `ETag`.
    pub async fn tagged_index(&self, repo: &str, tag: &str) -> Result<TaggedIndex, Error> {
        let mut response = self
            .raw(
                RegistryOperation::Pull,
                repo,
                reqwest::Method::GET,
                &format!("/v2/{repo}/manifests/{tag}"),
            )
            .await?;
        if response.status().as_u16() == 404 {
            return Ok(TaggedIndex::default());
        }
        if !response.status().is_success() {
            return Err(Error::Status {
                what: format!("GET {repo}:{tag}"),
                status: response.status().as_u16(),
            });
        }
        let etag = response
            .headers_mut()
            .remove(ETAG)
            .and_then(|v| v.to_str().ok().map(str::to_string));
        let body = read_capped(response, MAX_MANIFEST_BYTES as u64, "referrers tag").await?;
        let index: OciImageIndex = serde_json::from_slice(&body)
            .map_err(|e| Error::Malformed(format!("{repo}:{tag} is not an image index: {e}")))?;
        Ok(TaggedIndex {
            index: index.manifests,
            etag,
            exists: true,
        })
    }

    /// Pushes `index` under `tag`, with `If-Match: etag` when an ETag is known. A registry that
    /// answers 412 lost the race: [`Error::Conflict`].
    pub async fn put_tagged_index(
        &self,
        repo: &str,
        tag: &str,
        index: &OciImageIndex,
        etag: Option<&str>,
    ) -> Result<String, Error> {
        let body = serde_json::to_vec(index).map_err(|e| Error::Malformed(e.to_string()))?;
        let digest = sha256_digest(&body);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media::OCI_INDEX));
        if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(IF_MATCH, etag);
        }
        let response = self
            .raw_with(
                RegistryOperation::Push,
                repo,
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                headers,
                body,
            )
            .await?;
        match response.status().as_u16() {
            200..=299 => Ok(digest),
            412 => Err(Error::Conflict(format!("{repo}:{tag} changed meanwhile"))),
            status => Err(Error::Status {
                what: format!("PUT {repo}:{tag}"),
                status,
            }),
        }
    }

    /// Sends a request with the credentials oci-client negotiated for `op` on `repo`.
    async fn raw(
        &self,
        op: RegistryOperation,
        repo: &str,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::Response, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media::ACCEPT_MANIFESTS));
        self.raw_with(op, repo, method, path, headers, Vec::new())
            .await
    }

    async fn raw_with(
        &self,
        op: RegistryOperation,
        repo: &str,
        method: reqwest::Method,
        path: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, Error> {
        let r = self.reference(repo, "latest");
        let token = self
            .client
            .auth(&r, &self.auth(), op)
            .await
            .map_err(self.fail(format!("authorize {method} {path}")))?;
        let authorization = match (token, &self.creds) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Credentials::Basic { .. }) => Some(self.creds.authorization()),
            (None, _) => None,
        };
        if let Some(value) = authorization.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(AUTHORIZATION, value);
        }
        let url = format!("{}{path}", self.url());
        self.http
            .request(method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Http(format!("{method} {url}: {e}")))
    }
}

/// The body of `response`, refused once it passes `max` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Http(format!("{what}: {e}")))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(Error::TooLarge {
                what: what.into(),
                max,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
                    | oci_client::errors::OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    }
}

/// Annotations of an index entry or descriptor, empty when absent.
pub fn annotations_of(annotations: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    annotations.as_ref().unwrap_or(&EMPTY)
}
