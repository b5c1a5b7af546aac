//! The fail-closed smuggling fixtures of the hostile corpus
//! ([`sidescan_testkit::hostile::smuggling`]) read as the SDK reads them (Go's
//! `archive/tar`) and as the `tar` crate reads them: each hides EICAR from one of the two.

use sidescan_sdk::archive::{ListedEntry, list_tar};
use sidescan_sdk::{EntryKind, Limits};
use sidescan_testkit::fixtures::EICAR;
use sidescan_testkit::hostile::smuggling::{
    duplicate_pax_path, eicar_dotdot_path, header_only_smuggling_tar, polyglot, polyglot_layer,
};
use sidescan_testkit::oci::{OCI_LAYER_GZIP, OCI_LAYER_TAR, sha256_digest};
use std::io::Read as _;

fn eicar_sha() -> String {
    sha256_digest(EICAR)
        .trim_start_matches("sha256:")
        .to_owned()
}

fn files(entries: &[ListedEntry]) -> Vec<(String, Option<String>)> {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.path.clone(), e.sha256.clone()))
        .collect()
}

fn has_eicar(bytes: &[u8]) -> bool {
    bytes.windows(EICAR.len()).any(|w| w == EICAR)
}

#[test]
fn header_only_smuggling_hides_eicar_from_a_size_honouring_reader() {
    let tar = header_only_smuggling_tar();
    // Go's way (the SDK's reader): the directory has no body, the hidden entries follow.
    let listed = list_tar(&tar, Limits::default()).unwrap();
    assert_eq!(
        files(&listed),
        [("/usr/bin/evil".to_owned(), Some(eicar_sha()))]
    );
    // The tar crate gives the directory a body of `size` bytes and sees nothing else.
    let mut ar = tar::Archive::new(&tar[..]);
    let seen: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(seen, ["usr/"]);
}

#[test]
fn duplicate_pax_path_is_a_whiteout_to_a_first_wins_reader() {
    let case = duplicate_pax_path();
    let mut tar = vec![];
    flate2::read::GzDecoder::new(&case.artifact.layers[1].blob.data[..])
        .read_to_end(&mut tar)
        .unwrap();
    let listed = list_tar(&tar, Limits::default()).unwrap();
    assert_eq!(
        files(&listed),
        [("/usr/bin/evil".to_owned(), Some(eicar_sha()))]
    );
    let mut ar = tar::Archive::new(&tar[..]);
    let last = ar.entries().unwrap().last().unwrap().unwrap();
    assert_eq!(
        last.path().unwrap().display().to_string(),
        "usr/bin/.wh.evil"
    );
}

#[test]
fn polyglot_reads_as_a_harmless_tar_and_as_a_gzip_of_eicar() {
    let p = polyglot();
    assert!(!has_eicar(&p.blob), "EICAR must not be visible in the blob");
    // Plain-tar reading: harmless entries only, and no EICAR in any of them.
    let plain = list_tar(&p.blob, Limits::default()).unwrap();
    let names: Vec<&str> = plain.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(&names[1..], ["/polyglot/readme.txt", "/polyglot/tail.bin"]);
    assert!(plain.iter().all(|e| e.kind == EntryKind::File));
    assert!(plain.iter().all(|e| e.sha256 != Some(eicar_sha())));
    assert_eq!(plain[0].size, 0);
    // gzip reading (a multi-member decoder, as the SDK and containerd use): EICAR.
    let mut gunzipped = vec![];
    flate2::read::MultiGzDecoder::new(&p.blob[..])
        .read_to_end(&mut gunzipped)
        .unwrap();
    assert_eq!(gunzipped, p.gunzipped);
    let inner = list_tar(&gunzipped, Limits::default()).unwrap();
    assert_eq!(
        files(&inner),
        [("/usr/bin/evil".to_owned(), Some(eicar_sha()))]
    );
    // The two images share the blob and differ in media type and diff_id.
    let c = polyglot_layer();
    let primer = c.primer.as_ref().unwrap();
    assert_eq!(
        primer.layers[1].blob.digest,
        c.artifact.layers[1].blob.digest
    );
    assert_eq!(primer.layers[1].blob.media_type, OCI_LAYER_TAR);
    assert_eq!(c.artifact.layers[1].blob.media_type, OCI_LAYER_GZIP);
    assert_eq!(primer.layers[1].diff_id, sha256_digest(&p.blob));
    assert_eq!(c.artifact.layers[1].diff_id, sha256_digest(&p.gunzipped));
}

#[test]
fn dotdot_eicar_is_confined_to_slash_evil() {
    let c = eicar_dotdot_path();
    let mut tar = vec![];
    flate2::read::GzDecoder::new(&c.artifact.layers[1].blob.data[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        files(&list_tar(&tar, Limits::default()).unwrap()),
        [("/evil".to_owned(), Some(eicar_sha()))]
    );
}
