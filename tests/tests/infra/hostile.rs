//! The hostile corpus: named and documented, lying and bomb cases really lie and explode,
//! escapes are written verbatim, and the real and fake registries take the cases they should.

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
        paths
            .iter()
            .any(|(_, p)| p.starts_with("../../../")
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
    let plain = fixtures::Layer::new([fixtures::Entry::zeros("bomb/zeros", 48 << 20)]).tar_bytes();
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
