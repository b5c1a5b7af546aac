//! The `--nats*` flags and connecting with them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How to reach NATS: the flags (and environment variables) shared by every sidescan program.
/// Its `Debug` output shows no token, password or URL credentials.
#[derive(Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// NATS server URL(s), comma-separated: nats://host:4222, tls://host:4222.
    #[arg(
        long = "nats",
        id = "nats",
        env = "SIDESCAN_NATS_URL",
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// NATS credentials file (.creds).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_creds: Option<PathBuf>,

    /// NATS token.
    #[arg(
        long,
        env = "SIDESCAN_NATS_TOKEN",
        hide_env_values = true,
        requires = "nats"
    )]
    pub nats_token: Option<String>,

    /// NATS user (with --nats-password).
    #[arg(long, requires_all = ["nats", "nats_password"])]
    pub nats_user: Option<String>,

    /// NATS password (with --nats-user).
    #[arg(
        long,
        env = "SIDESCAN_NATS_PASSWORD",
        hide_env_values = true,
        requires_all = ["nats", "nats_user"]
    )]
    pub nats_password: Option<String>,

    /// PEM CA certificate for tls:// NATS servers.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<redacted>" } else { "<none>" };
        f.debug_struct("ConnectArgs")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("nats_creds", &self.nats_creds)
            .field("nats_token", &hidden(self.nats_token.is_some()))
            .field("nats_user", &self.nats_user)
            .field("nats_password", &hidden(self.nats_password.is_some()))
            .field("nats_ca", &self.nats_ca)
            .finish()
    }
}

/// `url` (one or several, comma-separated) with any `user:password@` replaced, for messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}<redacted>@{}", &one[..scheme + 3], &one[at + 1..])
            }
            (None, Some(at)) => format!("<redacted>@{}", &one[at + 1..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects as `name` with `args` (whose URL must be set). With `retry_on_initial_connect` this
/// returns at once and keeps trying in the background; `connected`, when given, follows the
/// connection state. Errors: no URL, an unreadable credentials file, a malformed URL.
pub async fn connect(
    name: &str,
    args: &ConnectArgs,
    retry_on_initial_connect: bool,
    connected: Option<Arc<AtomicBool>>,
) -> Result<async_nats::Client, String> {
    let url = args.url.as_deref().ok_or("--nats is not set")?;
    let mut options = async_nats::ConnectOptions::new().name(name);
    if retry_on_initial_connect {
        options = options.retry_on_initial_connect();
    }
    if let Some(file) = &args.nats_creds {
        options = options
            .credentials_file(file)
            .await
            .map_err(|e| format!("NATS credentials {}: {e}", file.display()))?;
    }
    if let Some(token) = &args.nats_token {
        options = options.token(token.clone());
    }
    if let Some((user, password)) = args.nats_user.clone().zip(args.nats_password.clone()) {
        options = options.user_and_password(user, password);
    }
    if let Some(ca) = &args.nats_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let flag = connected.clone();
    options = options.event_callback(move |event| {
        let flag = flag.clone();
        async move {
            if let Some(flag) = &flag {
                match event {
                    async_nats::Event::Connected => flag.store(true, Ordering::Relaxed),
                    async_nats::Event::Disconnected => flag.store(false, Ordering::Relaxed),
                    _ => {}
                }
            }
            tracing::info!(?event, "NATS");
        }
    });
    let client = options
        .connect(url)
        .await
        .map_err(|e| format!("NATS {}: {e}", redact_url(url)))?;
    if let Some(flag) = &connected {
        flag.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Ordering::Relaxed,
        );
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::ConnectArgs;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        nats: ConnectArgs,
    }

    fn parse(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("prog").chain(args.iter().copied())).map(|c| c.nats)
    }

    #[test]
    fn credentials_need_a_url_and_a_user_needs_a_password() {
        let ok = parse(&[
            "--nats",
            "nats://127.0.0.1:4222",
            "--nats-user",
            "u",
            "--nats-password",
            "p",
        ])
        .unwrap();
        assert_eq!(ok.url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(ok.nats_user.as_deref(), Some("u"));
        for bad in [
            &["--nats-token", "t"][..],
            &["--nats", "nats://127.0.0.1:4222", "--nats-user", "u"][..],
            &["--nats", "nats://127.0.0.1:4222", "--nats-password", "p"][..],
        ] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_output_and_messages_hide_secrets() {
        let args = parse(&[
            "--nats",
            "nats://alice:s3cret-url@127.0.0.1:4222,nats://127.0.0.1:4223",
            "--nats-token",
            "s3cret-token",
            "--nats-user",
            "bob",
            "--nats-password",
            "s3cret-password",
        ])
        .unwrap();
        let text = format!("{args:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("127.0.0.1:4223") && text.contains("bob"),
            "{text}"
        );
        assert_eq!(
            super::redact_url("nats://a:b@h:1,tls://h2:2"),
            "nats://<redacted>@h:1,tls://h2:2"
        );
    }

    #[tokio::test]
    async fn connecting_without_a_url_is_an_error_not_a_panic() {
        let err = super::connect("test", &ConnectArgs::default(), false, None)
            .await
            .unwrap_err();
        assert!(err.contains("--nats"), "{err}");
    }
}
