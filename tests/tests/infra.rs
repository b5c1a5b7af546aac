//! Self-tests of the test helpers in `sidescan_testkit`: real registries in every auth
//! mode, fixtures pushed and read back with skopeo, OCI layouts unpacked with umoci,
//! the fault-injecting fake registry, and the hostile corpus.

use serde_json::Value;
use sidescan_testkit::client::RegistryClient;
use sidescan_testkit::fixtures;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::{Auth, Registry, basic_authorization};
use sidescan_testkit::tool;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn skopeo_inspect(reg: &Registry, repo: &str, tag: &str, raw: bool) -> Value {
    let mut cmd = Command::new(tool::skopeo());
    cmd.args(["inspect", "--tls-verify=false", "--retry-times", "0"])
        .args(reg.skopeo_creds_args());
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg(reg.docker_ref(repo, tag));
    serde_json::from_str(&run(&mut cmd)).expect("skopeo JSON")
}

async fn status_of(url: &str, auth: Option<&str>) -> u16 {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut rb = c.get(url);
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn registry_anonymous_answers_v2_with_200() {
    let reg = Registry::anonymous();
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    assert_eq!(reg.authorization(), None);
    assert_eq!(status_of(&format!("{}/v2/", reg.url()), None).await, 200);
}

#[tokio::test]
async fn registry_htpasswd_requires_basic_credentials() {
    let reg = Registry::htpasswd();
    let v2 = format!("{}/v2/", reg.url());
    assert_eq!(status_of(&v2, None).await, 401);
    assert_eq!(
        status_of(&v2, Some(&basic_authorization("sidescan", "wrong"))).await,
        401
    );
    let auth = reg.authorization().expect("credentials");
    assert!(auth.starts_with("Basic "));
    assert_eq!(status_of(&v2, Some(&auth)).await, 200);
}

#[tokio::test]
async fn registry_token_mode_accepts_token_from_token_server() {
    let reg = Registry::token();
    let v2 = format!("{}/v2/", reg.url());
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c.get(&v2).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let (scheme, params) = sidescan_testkit::client::parse_challenge(&challenge);
    assert_eq!(scheme, "Bearer");
    let realm = &params["realm"];
    assert_eq!(realm, &reg.token_server().unwrap().realm());

    // No credentials: the token server refuses.
    let r = c
        .get(format!("{realm}?service={}", params["service"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Basic credentials: a token, which the registry accepts.
    let r = c
        .get(format!(
            "{realm}?service={}&scope=repository:foo:pull",
            params["service"]
        ))
        .header("authorization", reg.authorization().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "JWT");
    assert_eq!(status_of(&v2, Some(&format!("Bearer {token}"))).await, 200);
    // A tampered token is refused.
    // Change the signature's first character: all six of its bits are signature bits (the last
    // character's low bits are padding a decoder may ignore, so changing it could be a no-op).
    let sig_start = token.rfind('.').unwrap() + 1;
    let first = token.as_bytes()[sig_start];
    let mut bad = token.clone();
    bad.replace_range(sig_start..=sig_start, if first == b'A' { "B" } else { "A" });
    assert_eq!(status_of(&v2, Some(&format!("Bearer {bad}"))).await, 401);
    // Basic credentials straight to the registry are not enough in token mode.
    assert_eq!(
        status_of(&v2, Some(&reg.authorization().unwrap())).await,
        401
    );
}

#[tokio::test]
async fn registry_token_mode_push_and_pull_with_token_exchange() {
    let reg = Registry::token();
    let img = fixtures::clean_image();
    let digest = reg.push(&img, "team/clean", "v1").await;
    assert_eq!(digest, img.digest());
    let client = reg.client();
    let m = client.get_manifest("team/clean", "v1").await.unwrap();
    assert_eq!(m.data, img.manifest.data);
    assert!(reg.token_server().unwrap().requests() >= 1);
    // A minted pull token works for GET on that repository only.
    let bearer = reg.bearer_authorization("team/clean", &["pull"]);
    let url = format!("{}/v2/team/clean/manifests/v1", reg.url());
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .get(&url)
        .header("authorization", &bearer)
        .header("accept", sidescan_testkit::oci::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let other = format!("{}/v2/team/other/manifests/v1", reg.url());
    assert_eq!(status_of(&other, Some(&bearer)).await, 401);
    // Anonymous client: refused.
    let anon = RegistryClient::new(&reg.url(), None);
    let err = anon.get_manifest("team/clean", "v1").await.unwrap_err();
    assert_eq!(err.status, Some(401));
}

#[tokio::test]
async fn every_fixture_pushes_and_skopeo_reads_it_back() {
    let reg = Registry::start(Auth::htpasswd());
    for (repo, artifact) in fixtures::all_fixtures() {
        let digest = reg.push(&artifact, repo, "latest").await;
        assert_eq!(digest, artifact.digest());
        let raw = skopeo_inspect(&reg, repo, "latest", true);
        let expected: Value = serde_json::from_slice(&artifact.manifest.data).unwrap();
        assert_eq!(raw, expected, "{repo}: raw manifest differs");
        if artifact.is_index() || repo == "falco-rules" {
            continue;
        }
        let info = skopeo_inspect(&reg, repo, "latest", false);
        assert_eq!(info["Digest"], digest, "{repo}");
        let layers: Vec<&str> = info["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let want: Vec<&str> = artifact
            .layers
            .iter()
            .map(|l| l.blob.digest.as_str())
            .collect();
        assert_eq!(layers, want, "{repo}: layers");
        assert_eq!(info["Os"], "linux");
        assert_eq!(info["Architecture"], "amd64");
    }
}

#[tokio::test]
async fn multi_arch_index_platforms_resolve_with_skopeo() {
    let reg = Registry::anonymous();
    let idx = fixtures::multi_arch_index();
    reg.push(&idx, "multi", "v1").await;
    for (arch, variant, child) in [
        ("amd64", None, &idx.children[0]),
        ("arm64", Some("v8"), &idx.children[1]),
    ] {
        let mut cmd = Command::new(tool::skopeo());
        cmd.args([
            "inspect",
            "--tls-verify=false",
            "--override-os",
            "linux",
            "--override-arch",
            arch,
        ]);
        if let Some(v) = variant {
            cmd.args(["--override-variant", v]);
        }
        cmd.arg(reg.docker_ref("multi", "v1"));
        let info: Value = serde_json::from_str(&run(&mut cmd)).unwrap();
        // skopeo reports the digest of what the tag points at (the index) and the
        // layers of the platform it selected.
        assert_eq!(info["Digest"], idx.digest(), "{arch}");
        let want: Vec<Value> = child
            .layers
            .iter()
            .map(|l| Value::from(l.blob.digest.clone()))
            .collect();
        assert_eq!(info["Layers"].as_array().unwrap(), &want, "{arch}");
        assert_eq!(info["Architecture"], arch);
    }
    assert_ne!(
        idx.children[0].layers[1].blob.digest,
        idx.children[1].layers[1].blob.digest
    );
}

fn umoci_unpack(layout: &std::path::Path, tag: &str, bundle: &std::path::Path) {
    run(Command::new(tool::umoci())
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
}

fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn whiteout_image_unpacks_with_umoci_to_expected_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = fixtures::whiteout_image();
    img.write_oci_layout(&layout, "v1").unwrap();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(files_under(&rootfs), fixtures::WHITEOUT_IMAGE_FILES);
    for gone in fixtures::WHITEOUT_IMAGE_REMOVED {
        assert!(!rootfs.join(gone).exists(), "{gone} should be whited out");
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("b/new")).unwrap(),
        "bnew\n"
    );
}

#[test]
fn eicar_fixtures_unpack_with_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fixtures::eicar_top_layer()
        .write_oci_layout(&layout, "top")
        .unwrap();
    fixtures::eicar_lower_layer_whited_out()
        .write_oci_layout(&layout, "whited")
        .unwrap();
    let top = tmp.path().join("top");
    umoci_unpack(&layout, "top", &top);
    let eicar = std::fs::read(top.join("rootfs").join(fixtures::EICAR_PATH)).unwrap();
    assert_eq!(eicar, fixtures::EICAR);
    assert_eq!(eicar.len(), 68);
    let whited = tmp.path().join("whited");
    umoci_unpack(&layout, "whited", &whited);
    assert!(!whited.join("rootfs").join(fixtures::EICAR_PATH).exists());
    assert!(whited.join("rootfs/app/hello.txt").exists());
}

#[test]
fn fixtures_are_deterministic() {
    let a: Vec<(&str, Artifact)> = fixtures::all_fixtures();
    let b: Vec<(&str, Artifact)> = fixtures::all_fixtures();
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.digest(), y.digest(), "{n}");
    }
    // Distinct fixtures, distinct digests.
    let mut digests: Vec<&str> = a.iter().map(|(_, x)| x.digest()).collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), a.len());
}

#[test]
fn layers_have_correct_diff_ids_and_media_types() {
    use flate2::read::GzDecoder;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let img = fixtures::clean_image();
    let config: Value = serde_json::from_slice(&img.config.as_ref().unwrap().data).unwrap();
    for (i, l) in img.layers.iter().enumerate() {
        assert!(l.blob.is_verified());
        let mut tar = vec![];
        GzDecoder::new(&l.blob.data[..])
            .read_to_end(&mut tar)
            .unwrap();
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        assert_eq!(diff, l.diff_id);
        assert_eq!(config["rootfs"]["diff_ids"][i], diff);
        assert_eq!(l.blob.media_type, sidescan_testkit::oci::OCI_LAYER_GZIP);
        // The tar crate reads it back.
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), fixtures::DEFAULT_MTIME);
            assert_eq!(e.header().uid().unwrap(), 0);
        }
    }
    let z = fixtures::zstd_image();
    assert_eq!(
        z.layers[0].blob.media_type,
        sidescan_testkit::oci::OCI_LAYER_ZSTD
    );
    let dec = zstd::decode_all(&z.layers[1].blob.data[..]).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&dec))),
        z.layers[1].diff_id
    );
    let d = fixtures::docker_media_types_image();
    assert_eq!(d.media_type(), sidescan_testkit::oci::DOCKER_MANIFEST);
    assert_eq!(
        d.layers[0].blob.media_type,
        sidescan_testkit::oci::DOCKER_LAYER_GZIP
    );
}

mod fake {
    use super::*;
    use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
    use sidescan_testkit::oci::sha256_digest;
    use std::time::{Duration, Instant};

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn setup() -> (FakeRegistry, Artifact, String) {
        let fake = FakeRegistry::start();
        let img = fixtures::clean_image();
        fake.add("lib/clean", "v1", &img);
        let blob_path = format!("/v2/lib/clean/blobs/{}", img.layers[0].blob.digest);
        (fake, img, blob_path)
    }

    #[tokio::test]
    async fn serves_manifests_and_blobs_and_counts_requests() {
        let (fake, img, blob_path) = setup();
        assert!(fake.url().starts_with("http://127.0.0.1:"));
        let c = http();
        assert_eq!(
            c.get(format!("{}/v2/", fake.url()))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let r = c
            .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            sidescan_testkit::oci::OCI_MANIFEST
        );
        assert_eq!(r.headers()["docker-content-digest"], img.digest());
        assert_eq!(r.bytes().await.unwrap(), img.manifest.data);
        let r = c
            .head(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            img.layers[0].blob.data.len().to_string()
        );
        let body = c
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha256_digest(&body), img.layers[0].blob.digest);
        // Range requests resume.
        let r = c
            .get(format!("{}{blob_path}", fake.url()))
            .header("range", "bytes=10-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.bytes().await.unwrap(),
            img.layers[0].blob.data.slice(10..)
        );
        // Unknown things are 404 with OCI error codes.
        let r = c
            .get(format!("{}/v2/lib/clean/manifests/nope", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
        assert_eq!(fake.requests(&blob_path), 3);
        assert_eq!(fake.blob_gets(&img.layers[0].blob.digest), 2);
        assert_eq!(fake.manifest_gets("lib/clean", "v1"), 1);
        assert_eq!(fake.total_requests(), 6);
        fake.reset_counters();
        assert_eq!(fake.total_requests(), 0);
        // The same digest in the client's eyes: the fake serves the whole artifact.
        let client = RegistryClient::new(&fake.url(), None);
        for b in img.all_blobs() {
            assert_eq!(
                client.get_blob("lib/clean", &b.digest).await.unwrap(),
                b.data
            );
        }
        assert_eq!(
            client.tags("lib/clean").await.unwrap(),
            vec!["v1".to_owned()]
        );
    }

    #[tokio::test]
    async fn wrong_bytes_keep_length_but_break_digest() {
        let (fake, img, blob_path) = setup();
        let digest = img.layers[0].blob.digest.clone();
        fake.inject(Match::Digest(digest.clone()), Fault::WrongBytes);
        let body = http()
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), img.layers[0].blob.data.len());
        assert_ne!(sha256_digest(&body), digest);
        // Manifests are untouched by a blob fault.
        let m = RegistryClient::new(&fake.url(), None)
            .get_manifest("lib/clean", "v1")
            .await
            .unwrap();
        assert_eq!(m.data, img.manifest.data);
    }

    #[tokio::test]
    async fn truncate_cuts_the_connection_mid_body() {
        let (fake, img, blob_path) = setup();
        fake.inject(
            Match::Path(blob_path.clone()),
            Fault::Truncate { after: 100 },
        );
        let r = http()
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            img.layers[0].blob.data.len().to_string()
        );
        assert!(
            r.bytes().await.is_err(),
            "a truncated body must fail to read"
        );
    }

    #[tokio::test]
    async fn replace_serves_short_consistent_body() {
        let (fake, _img, blob_path) = setup();
        fake.inject(
            Match::Path(blob_path.clone()),
            Fault::Replace(bytes::Bytes::from_static(b"short")),
        );
        let body = http()
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"short");
    }

    #[tokio::test]
    async fn status_n_times_then_ok() {
        let (fake, _img, blob_path) = setup();
        fake.inject_times(Match::Path(blob_path.clone()), Fault::Status(503), 2);
        let c = http();
        let url = format!("{}{blob_path}", fake.url());
        assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
        assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
        assert_eq!(fake.requests(&blob_path), 3);
        // Always-on statuses: 401 with a challenge, 403, 404, 500.
        for code in [401u16, 403, 404, 500] {
            fake.clear_faults();
            fake.inject(
                Match::PathContains("/manifests/".into()),
                Fault::Status(code),
            );
            let r = c
                .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), code);
            assert_eq!(r.headers().contains_key("www-authenticate"), code == 401);
            let r2 = c
                .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(r2.status().as_u16(), code, "always-on fault stays on");
        }
        fake.clear_faults();
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn stall_never_answers() {
        let (fake, _img, blob_path) = setup();
        fake.inject(Match::Path(blob_path.clone()), Fault::Stall);
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let t = Instant::now();
        let err = c
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(t.elapsed() >= Duration::from_millis(450));
        // Other paths still answer while one request hangs.
        assert_eq!(
            c.get(format!("{}/v2/", fake.url()))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn stall_after_sends_headers_then_hangs() {
        let (fake, _img, blob_path) = setup();
        fake.inject(
            Match::Path(blob_path.clone()),
            Fault::StallAfter { after: 10 },
        );
        let c = reqwest::Client::builder()
            .no_proxy()
            .read_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let r = c
            .get(format!("{}{blob_path}", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let err = r.bytes().await.unwrap_err();
        assert!(err.is_timeout() || err.is_body(), "{err}");
    }

    #[tokio::test]
    async fn dribble_is_slow_but_complete() {
        let (fake, img, _) = setup();
        let cfg = img.config.clone().unwrap();
        fake.inject(
            Match::Digest(cfg.digest.clone()),
            Fault::Dribble {
                chunk: cfg.data.len().div_ceil(5),
                interval: Duration::from_millis(100),
            },
        );
        let t = Instant::now();
        let body = http()
            .get(format!("{}/v2/lib/clean/blobs/{}", fake.url(), cfg.digest))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body, cfg.data);
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn require_basic_auth() {
        let (fake, img, _) = setup();
        fake.require_basic("u", "p");
        let anon = RegistryClient::new(&fake.url(), None);
        assert_eq!(
            anon.get_manifest("lib/clean", "v1")
                .await
                .unwrap_err()
                .status,
            Some(401)
        );
        let wrong = RegistryClient::new(&fake.url(), Some(("u", "x")));
        assert_eq!(
            wrong
                .get_manifest("lib/clean", "v1")
                .await
                .unwrap_err()
                .status,
            Some(401)
        );
        let ok = RegistryClient::new(&fake.url(), Some(("u", "p")));
        assert_eq!(
            ok.get_manifest("lib/clean", "v1").await.unwrap().data,
            img.manifest.data
        );
        assert!(
            fake.request_log()
                .iter()
                .any(|r| r.authorization.as_deref() == Some(&basic_authorization("u", "p")))
        );
    }

    #[test]
    fn stops_on_drop() {
        let fake = FakeRegistry::start();
        let addr = fake.addr();
        fake.inject(Match::Any, Fault::Stall);
        // A hanging connection must not keep the server alive.
        let _hung = std::net::TcpStream::connect(addr).unwrap();
        drop(fake);
        std::thread::sleep(Duration::from_millis(200));
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
    }
}

mod process {
    use sidescan_testkit::process::{ChildGuard, free_port, wait_for_tcp};
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry; a zombie would say "Z".
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
            .unwrap_or(false)
    }

    #[test]
    fn child_guard_terminates_on_drop() {
        let g = ChildGuard::new(Command::new("sleep").arg("30").spawn().unwrap(), "sleep");
        let pid = g.pid();
        assert!(alive(pid));
        let t = Instant::now();
        drop(g);
        assert!(!alive(pid));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "SIGTERM suffices for sleep"
        );
    }

    #[test]
    fn child_guard_kills_what_ignores_sigterm() {
        let mut g = ChildGuard::new(
            Command::new("sh")
                .args(["-c", "trap '' TERM; exec sleep 30"])
                .spawn()
                .unwrap(),
            "stubborn",
        );
        let pid = g.pid();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let status = g.stop().expect("exit status");
        assert!(
            t.elapsed() >= Duration::from_millis(2900),
            "waited for the grace period"
        );
        assert!(!status.success());
        assert!(!alive(pid));
        assert!(g.stop().is_none(), "stop is idempotent");
    }

    #[test]
    fn free_port_and_wait_for_tcp() {
        let port = free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let err = wait_for_tcp(addr, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let _l = std::net::TcpListener::bind(addr).unwrap();
        wait_for_tcp(addr, Duration::from_secs(1)).unwrap();
    }

    #[test]
    #[should_panic(expected = "run 'apt-get install -y no-such-package' (or scripts/install-deps)")]
    fn missing_tool_panics_with_install_command() {
        sidescan_testkit::tool::require(
            "sidescan-no-such-binary",
            "apt-get install -y no-such-package",
        );
    }

    #[test]
    fn registry_stops_and_cleans_up_on_drop() {
        let reg = sidescan_testkit::registry::Registry::anonymous();
        let (pid, dir, addr) = (reg.pid(), reg.dir().to_path_buf(), reg.addr());
        assert!(alive(pid) && dir.exists());
        drop(reg);
        assert!(!alive(pid));
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
    }
}

mod hostile {
    use super::*;
    use sidescan_testkit::fake_registry::FakeRegistry;
    use sidescan_testkit::hostile::{self, Expected, HostileSizes};
    use sidescan_testkit::oci::sha256_digest;
    use std::io::Read;
    use std::path::Path;
    use tonic::Code;

    fn layer_tar(l: &sidescan_testkit::oci::LayerBlob) -> Vec<u8> {
        let mut out = vec![];
        flate2::read::GzDecoder::new(&l.blob.data[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// (raw ustar name, effective path as the tar crate sees it incl. PAX) per entry.
    fn tar_paths(tar_bytes: &[u8]) -> Vec<(String, String)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let raw = String::from_utf8_lossy(&e.header().path_bytes()).into_owned();
                let eff = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (raw, eff)
            })
            .collect()
    }

    #[test]
    fn corpus_is_named_documented_and_large_enough() {
        let c = hostile::corpus();
        assert!(c.len() >= 15, "{} cases", c.len());
        let mut names: Vec<&str> = c.iter().map(|x| x.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), c.len(), "names are unique");
        for x in c {
            assert!(x.description.len() > 40, "{}", x.name);
            if let Expected::Fails(codes) = &x.expected {
                assert!(
                    !codes.is_empty() && !codes.contains(&Code::Internal),
                    "{}",
                    x.name
                );
            }
        }
        assert!(
            hostile::by_name("gzip-bomb")
                .expected
                .accepts_code(Code::ResourceExhausted)
        );
        assert!(
            !hostile::by_name("gzip-bomb")
                .expected
                .accepts_code(Code::Internal)
        );
        assert!(hostile::by_name("duplicate-entries").expected.succeeds());
    }

    #[test]
    fn fail_closed_cases_expect_eicar_or_data_loss_never_clean() {
        let cases = hostile::fail_closed();
        let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "header-only-type-smuggling",
                "duplicate-pax-path",
                "attestation-annotated-entry",
                "polyglot-layer",
                "eicar-dotdot-path",
            ]
        );
        for c in &cases {
            assert!(c.real_registry, "{}", c.name);
            let path = c
                .expected
                .eicar_path()
                .unwrap_or_else(|| panic!("{}", c.name));
            assert!(path.starts_with('/'), "{}", c.name);
            assert!(c.expected.succeeds() && c.expected.accepts_code(Code::DataLoss));
            assert!(!c.expected.accepts_code(Code::Internal), "{}", c.name);
            assert!(!c.expected.accepts_code(Code::NotFound), "{}", c.name);
            // Every attack is in the default corpus too.
            assert_eq!(hostile::by_name(c.name).expected, c.expected);
        }
        assert_eq!(
            hostile::by_name("eicar-dotdot-path").expected.eicar_path(),
            Some("/evil")
        );
        // Only the polyglot has a primer: the same blob under the other media type.
        let p = hostile::by_name("polyglot-layer");
        let primer = p.primer.as_ref().expect("polyglot primer");
        assert_eq!(
            primer.layers[1].blob.digest,
            p.artifact.layers[1].blob.digest
        );
        assert_ne!(primer.layers[1].diff_id, p.artifact.layers[1].diff_id);
        assert_eq!(
            hostile::corpus()
                .iter()
                .filter(|c| c.primer.is_some())
                .count(),
            1
        );
        // Paths that used to be skipped are confined now, and no case expects a silent skip
        // of content: the only SkippedWithNotice left is the unreadable media type.
        for name in ["path-traversal", "pax-path-traversal", "hardlink-traversal"] {
            assert_eq!(
                hostile::by_name(name).expected,
                Expected::Confined,
                "{name}"
            );
        }
        assert_eq!(
            hostile::by_name("devices-and-fifo").expected,
            Expected::Succeeds
        );
        let skipped: Vec<&str> = hostile::corpus()
            .iter()
            .filter(|c| c.expected == Expected::SkippedWithNotice)
            .map(|c| c.name)
            .collect();
        assert_eq!(skipped, ["unknown-layer-media-type"]);
    }

    #[test]
    fn escape_entries_are_written_verbatim() {
        let t = hostile::by_name("path-traversal");
        let paths = tar_paths(&layer_tar(&t.artifact.layers[1]));
        assert!(
            paths.iter().any(|(_, p)| p.starts_with("../../../")
                && p.ends_with("/tmp/sidescan-canary-traversal"))
        );
        assert!(
            paths
                .iter()
                .any(|(_, p)| p == "../../sidescan-canary-traversal-up2")
        );
        let t = hostile::by_name("absolute-path");
        assert_eq!(
            tar_paths(&layer_tar(&t.artifact.layers[1]))[0].1,
            "/tmp/sidescan-canary-absolute"
        );
        let t = hostile::by_name("pax-path-traversal");
        let (raw, eff) = tar_paths(&layer_tar(&t.artifact.layers[1])).remove(0);
        assert_eq!(raw, "app/innocent.txt");
        assert!(eff.ends_with("/tmp/sidescan-canary-pax") && eff.starts_with("../"));
        // Link targets and device numbers survive too.
        let t = hostile::by_name("hardlink-absolute");
        let tarb = layer_tar(&t.artifact.layers[1]);
        let mut ar = tar::Archive::new(&tarb[..]);
        let links: Vec<(tar::EntryType, String)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let l = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                (e.header().entry_type(), l)
            })
            .collect();
        assert_eq!(links[1], (tar::EntryType::Link, "/etc/passwd".to_owned()));
        let t = hostile::by_name("devices-and-fifo");
        let tarb = layer_tar(&t.artifact.layers[1]);
        let mut ar = tar::Archive::new(&tarb[..]);
        let kinds: Vec<(tar::EntryType, Option<u32>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.header().entry_type(), e.header().device_major().unwrap())
            })
            .collect();
        assert!(kinds.contains(&(tar::EntryType::Char, Some(1))));
        assert!(kinds.contains(&(tar::EntryType::Block, Some(8))));
        assert!(kinds.iter().any(|k| k.0 == tar::EntryType::Fifo));
    }

    #[test]
    fn bombs_are_small_compressed_and_large_uncompressed() {
        let bomb = hostile::by_name("gzip-bomb");
        let l = &bomb.artifact.layers[1];
        assert_eq!(l.uncompressed_size, (1 << 30) + 512 + 1024);
        assert!(
            l.blob.size() * 500 < l.uncompressed_size,
            "ratio: {} -> {}",
            l.blob.size(),
            l.uncompressed_size
        );
        let tarb = hostile::by_name("tar-bomb");
        assert!(tar_paths(&layer_tar(&tarb.artifact.layers[1])).len() == 100_000);
        // A smaller bomb from the same generator inflates to exactly what its diff_id
        // and tar header promise.
        let small = hostile::gzip_bomb(48 << 20);
        let tar_bytes = layer_tar(&small.artifact.layers[1]);
        assert_eq!(
            tar_bytes.len() as u64,
            small.artifact.layers[1].uncompressed_size
        );
        assert_eq!(sha256_digest(&tar_bytes), small.artifact.layers[1].diff_id);
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().size().unwrap(), 48 << 20);
        // And it equals the plain tar writer's output for the same entry.
        let plain =
            fixtures::Layer::new([fixtures::Entry::zeros("bomb/zeros", 48 << 20)]).tar_bytes();
        assert!(plain == tar_bytes);
        // Odd sizes too (padding, segment tail).
        let odd = fixtures::zeros_gzip_layer("z", 3 * 1024 * 1024 + 17, fixtures::MediaStyle::Oci);
        let mut out = vec![];
        flate2::read::GzDecoder::new(&odd.blob.data[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(
            out == fixtures::Layer::new([fixtures::Entry::zeros("z", 3 * 1024 * 1024 + 17)])
                .tar_bytes()
        );
        let sizes = HostileSizes {
            tar_bomb_entries: 10,
            ..HostileSizes::default()
        };
        assert_eq!(sizes.tar_bomb_entries, 10);
    }

    #[test]
    fn lying_cases_really_lie() {
        let w = hostile::by_name("wrong-layer-digest");
        assert!(!w.artifact.layers[1].blob.is_verified());
        let t = hostile::by_name("truncated-blob");
        assert!(!t.artifact.layers[1].blob.is_verified());
        let m: Value = t.artifact.manifest_json();
        assert!(m["layers"][1]["size"].as_u64().unwrap() > t.artifact.layers[1].blob.size());
        let d = hostile::by_name("wrong-diff-id");
        let cfg: Value = serde_json::from_slice(&d.artifact.config.as_ref().unwrap().data).unwrap();
        assert_ne!(cfg["rootfs"]["diff_ids"][1], d.artifact.layers[1].diff_id);
        assert_eq!(cfg["rootfs"]["diff_ids"][0], d.artifact.layers[0].diff_id);
        let h = hostile::by_name("huge-manifest");
        assert!(h.artifact.manifest.size() > 4 << 20);
        let lp = hostile::by_name("index-loop");
        let b = &lp.artifact.children[0].manifest;
        let b_json: Value = serde_json::from_slice(&b.data).unwrap();
        assert_eq!(b_json["manifests"][0]["digest"], lp.artifact.digest());
        assert_eq!(
            lp.artifact.manifest_json()["manifests"][0]["digest"],
            b.digest
        );
        let deep = hostile::by_name("index-too-deep");
        let mut depth = 0;
        let mut a = &deep.artifact;
        while a.is_index() {
            depth += 1;
            a = &a.children[0];
        }
        assert_eq!(depth, 6);
        assert!(
            serde_json::from_slice::<Value>(
                &hostile::by_name("config-not-json")
                    .artifact
                    .config
                    .as_ref()
                    .unwrap()
                    .data
            )
            .is_err()
        );
        assert_eq!(
            hostile::by_name("zero-layers").artifact.manifest_json()["layers"],
            serde_json::json!([])
        );
    }

    #[tokio::test]
    async fn real_registry_accepts_exactly_the_cases_marked_real() {
        let reg = Registry::anonymous();
        let client = reg.client();
        for c in hostile::corpus() {
            let res = client.push(&c.artifact, c.name, "v1").await;
            if c.real_registry {
                res.unwrap_or_else(|e| panic!("{}: {e}", c.name));
                let raw = skopeo_inspect(&reg, c.name, "v1", true);
                assert_eq!(raw, c.artifact.manifest_json(), "{}", c.name);
            } else {
                let e = res.expect_err(c.name);
                assert!(matches!(e.status, Some(400) | Some(413)), "{}: {e}", c.name);
            }
        }
    }

    #[tokio::test]
    async fn fake_registry_serves_every_case_as_is() {
        let fake = FakeRegistry::start();
        let client = RegistryClient::new(&fake.url(), None);
        for c in hostile::corpus() {
            fake.add(c.name, "v1", &c.artifact);
            let m = client.get_manifest(c.name, "v1").await.unwrap();
            assert_eq!(m.data, c.artifact.manifest.data, "{}", c.name);
            assert_eq!(m.digest.as_deref(), Some(c.artifact.digest()));
            for b in c
                .artifact
                .all_blobs()
                .into_iter()
                .filter(|b| b.size() < 4 << 20)
            {
                assert_eq!(
                    client.get_blob(c.name, &b.digest).await.unwrap(),
                    b.data,
                    "{}",
                    c.name
                );
            }
        }
        // The lying index child comes back under its (wrong) digest.
        let lp = hostile::by_name("index-loop");
        let child = &lp.artifact.children[0].manifest;
        let got = client
            .get_manifest("index-loop", &child.digest)
            .await
            .unwrap();
        assert_ne!(sha256_digest(&got.data), child.digest);
    }

    /// A deliberately naive extractor (`root.join(path)`, follows symlinks): proves the
    /// escape cases escape, and that `find_canaries` sees it. Then umoci, a careful
    /// extractor, must not let any canary out. One test, so no other test sees the
    /// canaries in between.
    #[test]
    fn escape_cases_escape_a_naive_extractor_but_not_umoci() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c/rootfs");
        std::fs::create_dir_all(&deep).unwrap();
        hostile::remove_canaries(&[&deep]);
        assert!(hostile::find_canaries(&[&deep]).is_empty());

        for name in [
            "path-traversal",
            "absolute-path",
            "pax-path-traversal",
            "symlink-escape-write-through",
        ] {
            let c = hostile::by_name(name);
            let tarb = layer_tar(c.artifact.layers.last().unwrap());
            let mut ar = tar::Archive::new(&tarb[..]);
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let p = e.path().unwrap().into_owned();
                let dest = deep.join(&p);
                match e.header().entry_type() {
                    tar::EntryType::Symlink => {
                        let _ = std::os::unix::fs::symlink(e.link_name().unwrap().unwrap(), &dest);
                    }
                    tar::EntryType::Regular => {
                        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                        let mut v = vec![];
                        e.read_to_end(&mut v).unwrap();
                        std::fs::write(&dest, v).unwrap();
                    }
                    _ => {}
                }
            }
        }
        let found = hostile::find_canaries(&[&deep]);
        hostile::remove_canaries(&[&deep]);
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "sidescan-canary-traversal",
            "sidescan-canary-traversal-up2",
            "sidescan-canary-absolute",
            "sidescan-canary-pax",
            "sidescan-canary-symlink-write",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "naive extractor should leak {want}: {found:?}"
            );
        }
        assert!(hostile::find_canaries(&[&deep]).is_empty());

        // umoci: no canary may escape, the whiteout victim survives, and no file in the
        // rootfs is the host's /etc/passwd.
        hostile::create_whiteout_victim();
        use std::os::unix::fs::MetadataExt;
        let host_passwd = std::fs::metadata("/etc/passwd").unwrap().ino();
        let layout = tmp.path().join("layout");
        for c in hostile::corpus()
            .iter()
            .filter(|c| c.real_registry && c.expected.succeeds() && !matches!(c.name, "huge-file"))
        {
            c.artifact.write_oci_layout(&layout, c.name).unwrap();
            let bundle = tmp.path().join(format!("u/{}", c.name));
            let _ = Command::new(tool::umoci())
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:{}", layout.display(), c.name))
                .arg(&bundle)
                .output()
                .unwrap();
            let rootfs = bundle.join("rootfs");
            assert!(
                hostile::find_canaries(&[&rootfs]).is_empty(),
                "{} escaped via umoci",
                c.name
            );
            assert!(hostile::whiteout_victim_survived(), "{}", c.name);
            for f in files_under_if_exists(&rootfs) {
                let md = std::fs::symlink_metadata(rootfs.join(&f)).unwrap();
                assert!(
                    md.ino() != host_passwd,
                    "{}: {f} is the host passwd",
                    c.name
                );
            }
        }
        let _ = std::fs::remove_file(hostile::WHITEOUT_VICTIM);
        // Confined hardlink: the image's passwd, not the host's.
        let hl = tmp
            .path()
            .join("u/hardlink-absolute/rootfs/app/passwd-link");
        assert_eq!(
            std::fs::read_to_string(hl).unwrap(),
            hostile::FIXTURE_PASSWD
        );
        // The `..` hard link is confined to the image's passwd too.
        let hl = tmp
            .path()
            .join("u/hardlink-traversal/rootfs/app/passwd-link");
        assert_eq!(
            std::fs::read_to_string(hl).unwrap(),
            hostile::FIXTURE_PASSWD
        );
        // Duplicate entries: last wins.
        let dup = tmp.path().join("u/duplicate-entries/rootfs/app/dup.txt");
        assert_eq!(std::fs::read(dup).unwrap(), fixtures::EICAR);
        // umoci reads with Go's archive/tar, as runtimes do: it extracts the EICAR each
        // fail-closed layer attack hides from other readers, where the case says.
        for c in hostile::fail_closed()
            .iter()
            .filter(|c| !c.artifact.is_index())
        {
            let path = c
                .expected
                .eicar_path()
                .expect("fail-closed cases find EICAR");
            let f = tmp.path().join(format!("u/{}/rootfs{path}", c.name));
            assert_eq!(
                std::fs::read(&f).ok().as_deref(),
                Some(fixtures::EICAR),
                "{}: umoci should extract EICAR at {path}",
                c.name
            );
        }
    }

    fn files_under_if_exists(root: &Path) -> Vec<String> {
        if root.is_dir() {
            files_under(root)
        } else {
            vec![]
        }
    }
}
