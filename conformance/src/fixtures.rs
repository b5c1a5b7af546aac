//! Where fixture images come from: the embedded read-only fake registry (default, with fault
//! injection) or a real registry the suite pushes into.

use std::net::SocketAddr;

use sidescan_proto::v1::Registry;
use sidescan_testkit::client::RegistryClient;
use sidescan_testkit::fake_registry::FakeRegistry;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::basic_authorization;

/// The fixture source.
#[derive(Clone, Debug, Default)]
pub enum FixtureSource {
    /// The embedded fake registry, listening on `listen` (default `127.0.0.1:0`) and named to
    /// the plugin as `advertise` (default `http://<bound address>`).
    #[default]
    Embedded,
    /// The embedded fake registry on a chosen address, for plugins on another host or in a
    /// container.
    EmbeddedAt {
        /// Address to bind.
        listen: SocketAddr,
        /// Registry URL given to the plugin (how the plugin reaches `listen`).
        advertise: Option<String>,
    },
    /// A real registry: fixtures are pushed to it. Cases that need fault injection are skipped.
    Registry {
        /// Base URL, `http://host:port` or `https://host:port`.
        url: String,
        /// Basic credentials `(user, password)`, used to push and given to the plugin.
        credentials: Option<(String, String)>,
    },
}

/// The running fixture registry.
pub struct Fixtures {
    fake: Option<FakeRegistry>,
    push: Option<RegistryClient>,
    url: String,
    authorization: String,
}

impl std::fmt::Debug for Fixtures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixtures")
            .field("url", &self.url)
            .field("embedded", &self.fake.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a fixture was put.
#[derive(Clone, Debug)]
pub struct Placed {
    /// Repository.
    pub repo: String,
    /// Tag.
    pub tag: String,
    /// Digest of the top manifest (or index).
    pub digest: String,
}

impl Placed {
    /// `repo:tag`.
    pub fn by_tag(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// `repo@digest`.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

impl Fixtures {
    /// Starts (or connects to) the fixture registry.
    pub async fn start(source: &FixtureSource) -> Result<Self, String> {
        match source {
            FixtureSource::Embedded => {
                let fake = FakeRegistry::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
                Ok(Fixtures {
                    url: fake.url(),
                    fake: Some(fake),
                    push: None,
                    authorization: String::new(),
                })
            }
            FixtureSource::EmbeddedAt { listen, advertise } => {
                let fake = FakeRegistry::start_on(*listen)
                    .map_err(|e| format!("cannot bind {listen}: {e}"))?;
                let url = advertise.clone().unwrap_or_else(|| fake.url());
                Ok(Fixtures {
                    url: url.trim_end_matches('/').to_string(),
                    fake: Some(fake),
                    push: None,
                    authorization: String::new(),
                })
            }
            FixtureSource::Registry { url, credentials } => {
                let client = RegistryClient::new(
                    url,
                    credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                );
                client
                    .ping()
                    .await
                    .map_err(|e| format!("{url} does not answer /v2/: {e}"))?;
                Ok(Fixtures {
                    url: url.trim_end_matches('/').to_string(),
                    fake: None,
                    push: Some(client),
                    authorization: credentials
                        .as_ref()
                        .map(|(u, p)| basic_authorization(u, p))
                        .unwrap_or_default(),
                })
            }
        }
    }

    /// The fake registry, when fixtures are served by it (fault injection needs it).
    pub fn fake(&self) -> Option<&FakeRegistry> {
        self.fake.as_ref()
    }

    /// Registry URL as the plugin is told.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Registry` message for requests.
    pub fn registry(&self) -> Registry {
        Registry {
            url: self.url.clone(),
            authorization: self.authorization.clone(),
            insecure: self.url.starts_with("http://"),
        }
    }

    /// Serves or pushes `artifact` as `repo:tag`.
    pub async fn put(&self, repo: &str, tag: &str, artifact: &Artifact) -> Result<Placed, String> {
        if let Some(fake) = &self.fake {
            fake.add(repo, tag, artifact);
        } else if let Some(client) = &self.push {
            client
                .push(artifact, repo, tag)
                .await
                .map_err(|e| format!("pushing {repo}:{tag}: {e}"))?;
        }
        Ok(Placed {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest: artifact.manifest.digest.clone(),
        })
    }

    /// Removes every injected fault and the credential requirement (after each case).
    pub fn reset(&self) {
        if let Some(fake) = &self.fake {
            fake.clear_faults();
            fake.require_authorization(None);
        }
    }
}
