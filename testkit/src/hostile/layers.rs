//! Cases in layer content: escapes, links, special files, bombs, broken archives.

use super::{Expected, FIXTURE_PASSWD, HostileCase, UP, case, image_from_layer_blobs, img_with};
use crate::fixtures::{
    Entry, Image, Layer, MediaStyle, PseudoRandom, base_layer, zeros_gzip_layer,
};
use bytes::Bytes;
use tonic::Code;

/// `../` paths: one deep enough to land in `/tmp/sidescan-canary-traversal`, one two
/// levels above the layer root, next to a normal file.
pub fn path_traversal() -> HostileCase {
    case(
        "path-traversal",
        "Entries '<many ../>/tmp/sidescan-canary-traversal' and '../../sidescan-canary-traversal-up2' \
         next to a normal file. Confined as containerd places them ('..' stops at the root): \
         extracted and scanned as '/tmp/sidescan-canary-traversal' and \
         '/sidescan-canary-traversal-up2', never written outside the root.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::file("app/ok.txt", "ok\n"),
            Entry::file(format!("{UP}/tmp/sidescan-canary-traversal"), "escaped\n"),
            Entry::file("../../sidescan-canary-traversal-up2", "escaped\n"),
        ])),
    )
}

/// An absolute path `/tmp/sidescan-canary-absolute`.
pub fn absolute_path() -> HostileCase {
    case(
        "absolute-path",
        "Entry '/tmp/sidescan-canary-absolute'. Must stay inside the root (extracted as \
         '<root>/tmp/sidescan-canary-absolute', or skipped with a notice), never written to the \
         host's /tmp.",
        Expected::Confined,
        true,
        img_with(Layer::new([Entry::file(
            "/tmp/sidescan-canary-absolute",
            "abs\n",
        )])),
    )
}

/// `escape -> /` then a file written through it.
pub fn symlink_escape_write_through() -> HostileCase {
    case(
        "symlink-escape-write-through",
        "Symlink 'escape -> /' then file 'escape/tmp/sidescan-canary-symlink-write' (the classic \
         'link/etc/passwd' attack, aimed at a canary). The symlink may exist inside the root; the \
         write through it must not happen outside. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("escape", "/"),
            Entry::file("escape/tmp/sidescan-canary-symlink-write", "escaped\n"),
        ])),
    )
}

/// `up -> ../../..` then a file written through it.
pub fn symlink_dotdot_write_through() -> HostileCase {
    case(
        "symlink-dotdot-write-through",
        "Symlink 'up -> <many ../>' then file 'up/tmp/sidescan-canary-symlink-dotdot'. Nothing is \
         written outside the root. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("up", UP),
            Entry::file("up/tmp/sidescan-canary-symlink-dotdot", "escaped\n"),
        ])),
    )
}

/// `a -> b`, `b -> ../..`, then a write through `a`.
pub fn symlink_chain_escape() -> HostileCase {
    case(
        "symlink-chain-escape",
        "Symlinks 'a -> b' and 'b -> <many ../>' then file 'a/tmp/sidescan-canary-symlink-chain': \
         the escape only shows after resolving two links. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("a", "b"),
            Entry::symlink("b", UP),
            Entry::file("a/tmp/sidescan-canary-symlink-chain", "escaped\n"),
        ])),
    )
}

/// Symlink escape split across two layers.
pub fn symlink_escape_across_layers() -> HostileCase {
    case(
        "symlink-escape-across-layers",
        "Layer 2 has symlink 'app/cache -> /tmp'; layer 3 writes \
         'app/cache/sidescan-canary-cross-layer'. Per-layer checks miss it unless the extractor \
         resolves paths against the rootfs built so far. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        Image::new()
            .layer(base_layer())
            .layer(Layer::new([Entry::symlink("app/cache", "/tmp")]))
            .layer(Layer::new([Entry::file(
                "app/cache/sidescan-canary-cross-layer",
                "escaped\n",
            )]))
            .build(),
    )
}

/// `loop1 -> loop2 -> loop1`, then a write through them.
pub fn symlink_loop() -> HostileCase {
    case(
        "symlink-loop",
        "Symlinks 'loop1 -> loop2', 'loop2 -> loop1', then file 'loop1/x'. Resolving must stop \
         (no hang, no stack overflow); nothing lands outside the root, and skipping the file with \
         a notice is acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("loop1", "loop2"),
            Entry::symlink("loop2", "loop1"),
            Entry::file("loop1/x", "x\n"),
        ])),
    )
}

/// A hard link whose target climbs out with `..`.
pub fn hardlink_traversal() -> HostileCase {
    case(
        "hardlink-traversal",
        "The layer has 'etc/passwd' (fixture content) and hard link 'app/passwd-link' -> \
         '<many ../>/etc/passwd'. Confined as containerd places it: the target is the image's \
         /etc/passwd (FIXTURE_PASSWD); no file in the root may share an inode with the host's \
         /etc/passwd.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::file("etc/passwd", FIXTURE_PASSWD),
            Entry::hardlink("app/passwd-link", format!("{UP}/etc/passwd")),
        ])),
    )
}

/// A hard link to an absolute path, which in tar means "that path in this archive".
pub fn hardlink_absolute() -> HostileCase {
    case(
        "hardlink-absolute",
        "The layer has 'etc/passwd' (fixture content) and hard link 'app/passwd-link' -> \
         '/etc/passwd'. Confined: the link resolves to the image's etc/passwd (its content is \
         FIXTURE_PASSWD), never the host's; skipping with a notice is acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::file("etc/passwd", FIXTURE_PASSWD),
            Entry::hardlink("app/passwd-link", "/etc/passwd"),
        ])),
    )
}

/// A hard link through a symlink that points out of the root.
pub fn hardlink_through_symlink() -> HostileCase {
    case(
        "hardlink-through-symlink",
        "Symlink 'esc -> /' then hard link 'app/shadow-link' -> 'esc/etc/passwd': following the \
         symlink while resolving the link target would link the host's /etc/passwd. The target must \
         resolve inside the root (or the link be skipped with a notice).",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("esc", "/"),
            Entry::hardlink("app/shadow-link", "esc/etc/passwd"),
        ])),
    )
}

/// Character device, block device and FIFO entries.
pub fn devices_and_fifo() -> HostileCase {
    case(
        "devices-and-fifo",
        "Char device 'dev/sidescan-null' (1,3), block device 'dev/sidescan-sda' (8,0), FIFO \
         'run/sidescan-fifo', plus a normal file. Devices and FIFOs carry no data (nothing to \
         scan) and are never created nor read (a FIFO read would hang): ignored, as runtimes \
         create them empty; the normal file is scanned. Succeeds.",
        Expected::Succeeds,
        true,
        img_with(Layer::new([
            Entry::dir("dev"),
            Entry::char_device("dev/sidescan-null", 1, 3),
            Entry::block_device("dev/sidescan-sda", 8, 0),
            Entry::dir("run"),
            Entry::fifo("run/sidescan-fifo"),
            Entry::file("app/normal.txt", "normal\n"),
        ])),
    )
}

/// One file of `uncompressed` zeros, gzip ratio ~1000:1.
pub fn gzip_bomb(uncompressed: u64) -> HostileCase {
    let layer = zeros_gzip_layer("bomb/zeros", uncompressed, MediaStyle::Oci);
    case(
        "gzip-bomb",
        "A ~1 MiB gzip layer (per GiB) that inflates to `gzip_bomb_bytes` of zeros (ratio ~1000:1). \
         Must stop at the decompression-ratio or total-size limit without writing it all: \
         RESOURCE_EXHAUSTED.",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        image_from_layer_blobs(vec![base_layer().build(MediaStyle::Oci), layer]),
    )
}

/// `entries` empty files.
pub fn tar_bomb(entries: usize) -> HostileCase {
    let layer = Layer::new((0..entries).map(|i| Entry::file(format!("bomb/{i:08}"), Bytes::new())))
        .compression(crate::fixtures::Compression::GzipLevel(1));
    case(
        "tar-bomb",
        "`tar_bomb_entries` tiny files in one layer. Must stop at the file-count limit: \
         RESOURCE_EXHAUSTED.",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        img_with(layer),
    )
}

/// One incompressible file of `size` bytes (for a single-file size limit).
pub fn huge_file(size: u64) -> HostileCase {
    case(
        "huge-file",
        "One incompressible file 'data/huge.bin' of `huge_file_bytes` plus a normal file. Over the \
         single-file limit the scan fails with RESOURCE_EXHAUSTED (never a clean report).",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        img_with(Layer::new([
            Entry::file("app/normal.txt", "normal\n"),
            Entry::pseudo_random("data/huge.bin", size, 99),
        ])),
    )
}

/// A gzip layer whose content is random bytes, not a tar.
pub fn not_a_tar() -> HostileCase {
    case(
        "not-a-tar",
        "Layer 2 is valid gzip (digest and diff_id right) of 64 KiB of random bytes, not a tar. \
         DATA_LOSS (FAILED_PRECONDITION acceptable); never INTERNAL, never 'clean'.",
        Expected::Fails(&[Code::DataLoss, Code::FailedPrecondition]),
        true,
        img_with(Layer::raw(PseudoRandom::new(11).bytes(64 * 1024))),
    )
}

/// A layer declared `+gzip` that is not gzip.
pub fn not_gzip() -> HostileCase {
    let l = Layer::raw(PseudoRandom::new(12).bytes(4096))
        .compression(crate::fixtures::Compression::None)
        .media_type(crate::oci::OCI_LAYER_GZIP);
    case(
        "not-gzip",
        "Layer 2 claims '+gzip' but is random bytes. DATA_LOSS (FAILED_PRECONDITION acceptable).",
        Expected::Fails(&[Code::DataLoss, Code::FailedPrecondition]),
        true,
        img_with(l),
    )
}

/// The same path twice in one layer, EICAR last.
pub fn duplicate_entries() -> HostileCase {
    case(
        "duplicate-entries",
        "'app/dup.txt' appears twice in one layer: first clean text, then EICAR (and 'app/d' first \
         as a dir, then as a file). Last entry wins, as in tar; EICAR must be reported. Succeeds.",
        Expected::Succeeds,
        true,
        img_with(Layer::new([
            Entry::file("app/dup.txt", "clean\n"),
            Entry::dir("app/d"),
            Entry::file("app/dup.txt", crate::fixtures::EICAR),
            Entry::file("app/d", "now a file\n"),
        ])),
    )
}

/// A benign ustar name overridden by a PAX `path` that escapes.
pub fn pax_path_traversal() -> HostileCase {
    case(
        "pax-path-traversal",
        "ustar name 'app/innocent.txt' overridden by a PAX 'path' record \
         '<many ../>/tmp/sidescan-canary-pax'. Extractors that check the ustar name but write the \
         PAX path escape. The PAX path wins (as in Go's reader) and is confined: extracted and \
         scanned as '/tmp/sidescan-canary-pax' inside the root.",
        Expected::Confined,
        true,
        img_with(Layer::new([Entry::file("app/innocent.txt", "pax\n")
            .pax("path", format!("{UP}/tmp/sidescan-canary-pax"))])),
    )
}

/// A whiteout whose path climbs out of the root.
pub fn whiteout_traversal() -> HostileCase {
    case(
        "whiteout-traversal",
        "Whiteout '<many ../>/tmp/.wh.sidescan-canary-whiteout-victim': an unsafe whiteout handler \
         deletes the host file WHITEOUT_VICTIM (create it before the scan, check it after). \
         Confined: it deletes '/tmp/sidescan-canary-whiteout-victim' of the image (nothing), \
         never the host's file.",
        Expected::Confined,
        true,
        img_with(Layer::new([Entry::file(
            format!("{UP}/tmp/.wh.sidescan-canary-whiteout-victim"),
            Bytes::new(),
        )])),
    )
}
