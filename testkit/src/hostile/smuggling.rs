//! The fail-closed attacks: images that hide EICAR from any reader that differs from the
//! container runtime's (Go's `archive/tar` under containerd). Each is
//! [`Expected::FindsEicar`]: a malware scanner reports EICAR where the runtime extracts it, or
//! refuses the image with a documented code; a report without the finding is "clean" where it
//! is not.
//!
//! The archives a tar library would refuse to write are built from raw header blocks
//! ([`crate::fixtures::ustar_header`]).

use super::{Expected, HostileCase, case, image_from_layer_blobs, img_with};
use crate::fixtures::{
    DEFAULT_MTIME, EICAR, EICAR_PATH, Entry, Image, Layer, MediaStyle, base_layer, ustar_header,
};
use crate::oci::{
    Artifact, Blob, LayerBlob, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, Platform, sha256_digest,
};
use std::io::Write as _;
use tonic::Code;

/// Where the layer attacks put EICAR, as a runtime extracts it.
pub const EVIL_PATH: &str = "/usr/bin/evil";

/// Documented refusal of an archive a runtime would refuse or could read two ways.
const DATA_LOSS: &[Code] = &[Code::DataLoss];

const BLOCK: usize = 512;

/// A header block for `name` of `typeflag` claiming `size` bytes of data.
fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
    let mode = if typeflag == b'5' { 0o755 } else { 0o644 };
    ustar_header(name, mode, 0, 0, size, DEFAULT_MTIME, typeflag, b"", (0, 0))
}

/// Rewrites the checksum of a header block whose bytes were changed.
fn fix_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// The entries of a tar without its two end-of-archive blocks.
fn entries_only(layer: &Layer) -> Vec<u8> {
    let mut t = layer.tar_bytes();
    t.truncate(t.len() - 2 * BLOCK);
    t
}

/// `usr/bin/` and `usr/bin/evil` = EICAR.
fn evil_layer() -> Layer {
    Layer::new([
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/evil", EICAR).mode(0o755),
    ])
}

/// The uncompressed tar of [`header_only_type_smuggling`]: directory `usr/` whose header
/// says `size` = the length of the complete entries `usr/bin/` and `usr/bin/evil` (EICAR)
/// that follow it. Go's reader gives a directory no data section, so those bytes are the
/// next headers; a reader that honours the size skips them as the directory's "body".
pub fn header_only_smuggling_tar() -> Vec<u8> {
    let hidden = entries_only(&evil_layer());
    let mut t = header(b"usr/", b'5', hidden.len() as u64).to_vec();
    t.extend_from_slice(&hidden);
    t.extend_from_slice(&[0u8; 2 * BLOCK]);
    t
}

/// (a) Entries smuggled in the "body" of a header-only type.
pub fn header_only_type_smuggling() -> HostileCase {
    case(
        "header-only-type-smuggling",
        "Directory entry 'usr/' whose header says size = N, followed by N bytes that are \
         complete tar entries 'usr/bin/' and 'usr/bin/evil' = EICAR. Runtimes (Go's reader) give \
         directories no data section and extract /usr/bin/evil; a reader that skips N bytes of \
         'directory body' never sees it. A malware scanner reports EICAR at /usr/bin/evil.",
        Expected::FindsEicar {
            path: EVIL_PATH,
            or_fails: DATA_LOSS,
        },
        true,
        img_with(Layer::raw(header_only_smuggling_tar())),
    )
}

/// (b) One PAX header with two `path` records: a whiteout name first, the real name last.
pub fn duplicate_pax_path() -> HostileCase {
    case(
        "duplicate-pax-path",
        "One PAX header with 'path=usr/bin/.wh.evil' then 'path=usr/bin/evil', then a regular \
         file (ustar name 'usr/bin/.wh.evil') whose body is EICAR. Go's reader keeps the last \
         record: runtimes extract /usr/bin/evil; a reader keeping the first sees a whiteout and \
         scans nothing. A malware scanner reports EICAR at /usr/bin/evil.",
        Expected::FindsEicar {
            path: EVIL_PATH,
            or_fails: DATA_LOSS,
        },
        true,
        img_with(Layer::new([
            Entry::dir("usr"),
            Entry::dir("usr/bin"),
            Entry::file("usr/bin/.wh.evil", EICAR)
                .mode(0o755)
                .pax("path", "usr/bin/.wh.evil")
                .pax("path", "usr/bin/evil"),
        ])),
    )
}

/// Annotation buildx puts on attestation entries of an index.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// (c) The only linux/amd64 image of an index is annotated as an attestation.
pub fn attestation_annotated_entry() -> HostileCase {
    let image = Image::new()
        .layer(base_layer())
        .layer(Layer::new([Entry::file(EICAR_PATH, EICAR)]))
        .build();
    let mut descriptor = image.manifest.descriptor();
    descriptor["platform"] = Platform::linux_amd64().to_json();
    descriptor["annotations"] = serde_json::json!({});
    descriptor["annotations"][REFERENCE_TYPE] = "attestation-manifest".into();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor],
    });
    let mut artifact = Artifact::from_manifest(Blob::new(
        OCI_INDEX,
        serde_json::to_vec(&index).expect("json"),
    ));
    artifact.children.push(image);
    case(
        "attestation-annotated-entry",
        "An index whose only entry is a runnable linux/amd64 image (platform linux/amd64) \
         annotated 'vnd.docker.reference.type: attestation-manifest', with EICAR at \
         /app/eicar.com. Runtimes pull by platform and ignore the annotation; a scanner that \
         skips annotated entries reports the index clean. A malware scanner reports EICAR at \
         /app/eicar.com.",
        Expected::FindsEicar {
            path: "/app/eicar.com",
            or_fails: DATA_LOSS,
        },
        true,
        artifact,
    )
}

/// The polyglot blob of [`polyglot_layer`] and the tar its gzip reading gives.
#[derive(Clone, Debug)]
pub struct Polyglot {
    /// The blob: a plain tar of harmless entries and, byte for byte, a gzip stream.
    pub blob: Vec<u8>,
    /// `gunzip(blob)`: a tar with `usr/bin/evil` = EICAR.
    pub gunzipped: Vec<u8>,
}

/// Builds the polyglot. Layout (every block is 512 bytes):
///
/// ```text
/// block 0  tar header 1 (empty file)  = gzip header 1f 8b 08 FLG=FEXTRA MTIME XFL OS XLEN,
///                                       the rest of the block is inside the FEXTRA field
/// block 1  tar header 2 'polyglot/readme.txt'                      (inside FEXTRA)
/// block 2  its text                                                (inside FEXTRA)
/// block 3  tar header 3 'polyglot/tail.bin', data = the rest        (inside FEXTRA)
/// block 4+ padding (end of FEXTRA), deflate data, gzip CRC32 + ISIZE
/// ```
///
/// The padding makes the blob a whole number of blocks, so the plain-tar reading ends at a
/// header boundary (Go's reader takes the end of the stream there as the end of the archive)
/// and the gzip reading ends at the gzip trailer (no trailing garbage for a multi-member
/// decoder).
pub fn polyglot() -> Polyglot {
    let gunzipped = evil_layer().tar_bytes();
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate.write_all(&gunzipped).expect("deflate");
    let deflate = deflate.finish().expect("deflate");
    let mut crc = flate2::Crc::new();
    crc.update(&gunzipped);
    let mut tail = deflate;
    tail.extend_from_slice(&crc.sum().to_le_bytes());
    tail.extend_from_slice(&(gunzipped.len() as u32).to_le_bytes());

    let head_len = 4 * BLOCK;
    let pad = (BLOCK - (head_len + tail.len()) % BLOCK) % BLOCK;
    let extra_end = head_len + pad;
    let xlen = u16::try_from(extra_end - 12).expect("FEXTRA fits");
    let total = extra_end + tail.len();

    let mut h1 = header(b"", b'0', 0);
    h1[..12].copy_from_slice(&[0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255, 0, 0]);
    h1[10..12].copy_from_slice(&xlen.to_le_bytes());
    fix_checksum(&mut h1);
    let readme = b"sidescan polyglot fixture: a harmless plain tar\n";
    let mut blob = h1.to_vec();
    blob.extend_from_slice(&header(b"polyglot/readme.txt", b'0', readme.len() as u64));
    let mut text = [0u8; BLOCK];
    text[..readme.len()].copy_from_slice(readme);
    blob.extend_from_slice(&text);
    blob.extend_from_slice(&header(
        b"polyglot/tail.bin",
        b'0',
        (total - head_len) as u64,
    ));
    blob.resize(extra_end, 0);
    blob.extend_from_slice(&tail);
    assert_eq!(blob.len() % BLOCK, 0);
    Polyglot { blob, gunzipped }
}

/// The polyglot as a layer declared `media_type`, with the diff_id of that reading.
fn polyglot_image(p: &Polyglot, media_type: &str) -> Artifact {
    let uncompressed: &[u8] = if media_type == OCI_LAYER_TAR {
        &p.blob
    } else {
        &p.gunzipped
    };
    let layer = LayerBlob {
        blob: Blob::new(media_type, p.blob.clone()),
        diff_id: sha256_digest(uncompressed),
        uncompressed_size: uncompressed.len() as u64,
    };
    image_from_layer_blobs(vec![base_layer().build(MediaStyle::Oci), layer])
}

/// (d) One blob that is both a harmless plain tar and a gzip of a tar holding EICAR.
pub fn polyglot_layer() -> HostileCase {
    let p = polyglot();
    let mut c = case(
        "polyglot-layer",
        "One blob that is at once a harmless plain tar and a gzip stream (its FEXTRA field holds \
         the tar headers) of a tar with 'usr/bin/evil' = EICAR. The primer declares it \
         'layer.v1.tar' (diff_id of the blob), the artifact 'layer.v1.tar+gzip' (diff_id of the \
         gunzipped tar). Scanned in that order by one plugin, a cache keyed by the blob digest \
         alone answers 'clean' for the gzip image. A malware scanner reports EICAR at \
         /usr/bin/evil for the artifact.",
        Expected::FindsEicar {
            path: EVIL_PATH,
            or_fails: DATA_LOSS,
        },
        true,
        polyglot_image(&p, OCI_LAYER_GZIP),
    );
    c.primer = Some(polyglot_image(&p, OCI_LAYER_TAR));
    c
}

/// (e) EICAR at `../../evil`.
pub fn eicar_dotdot_path() -> HostileCase {
    case(
        "eicar-dotdot-path",
        "EICAR at '../../evil'. Runtimes confine the path ('..' stops at the root) and extract \
         /evil; a scanner that skips escaping paths never scans it. A malware scanner reports \
         EICAR at /evil.",
        Expected::FindsEicar {
            path: "/evil",
            or_fails: DATA_LOSS,
        },
        true,
        img_with(Layer::new([Entry::file("../../evil", EICAR)])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_entry_is_the_only_amd64_entry_and_annotated() {
        let c = attestation_annotated_entry();
        let index = c.artifact.manifest_json();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["platform"]["architecture"], "amd64");
        assert_eq!(
            entries[0]["annotations"][REFERENCE_TYPE],
            "attestation-manifest"
        );
        assert_eq!(entries[0]["digest"], c.artifact.children[0].digest());
    }
}
