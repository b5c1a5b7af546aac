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

mod fake;
mod hostile;
mod process;
