//! The synthetic workload: 5 gzip layers, about 250 MiB uncompressed, ~5,000 files of mixed
//! sizes, partly incompressible, EICAR in layer 2; and a second image sharing all but its top
//! layer (the re-scan).

use sidescan_testkit::fixtures::{EICAR, Entry, Image, Layer, PseudoRandom};
use sidescan_testkit::oci::Artifact;

pub(crate) const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// `len` bytes of text-like content (words from a small dictionary): compresses about 3:1.
fn text(rng: &mut PseudoRandom, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "layer", "registry", "scan", "image", "config", "manifest", "digest", "blob",
        "sha256", "index", "platform", "linux", "amd64", "library", "package", "version",
        "release", "notes", "error", "warning", "info", "debug", "function", "return", "value",
        "struct", "impl", "module", "export", "import", "default", "static", "const", "buffer",
        "stream", "socket", "thread", "memory", "cache", "result", "option", "string", "number",
        "array", "object", "null", "true", "false", "http", "https", "server", "client", "request",
        "response", "header", "body", "status", "timeout", "retry", "limit", "size",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut col = 0;
    while out.len() < len {
        let r = rng.next_u64();
        let word = WORDS[(r % WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        col += word.len() + 1;
        if r >> 60 == 0 {
            out.extend_from_slice(format!(" {}", (r >> 20) % 100_000).as_bytes());
        }
        if col > 72 {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// `count` files under `dir` added to `layer`, sizes in `lo..=hi`, pseudo-random
/// (incompressible) when `random`, text otherwise; sizes and seeds from `rng`.
pub(crate) fn files(
    layer: Layer,
    rng: &mut PseudoRandom,
    dir: &str,
    count: usize,
    (lo, hi): (u64, u64),
    random: bool,
) -> Layer {
    let mut layer = layer.push(Entry::dir(dir));
    for i in 0..count {
        let len = lo + rng.next_u64() % (hi - lo + 1);
        let path = format!("{dir}/f{i:05}.{}", if random { "bin" } else { "txt" });
        layer = layer.push(if random {
            Entry::pseudo_random(path, len, rng.next_u64())
        } else {
            Entry::file(path, text(rng, len as usize))
        });
    }
    layer
}

/// `layer` with the directory `dir` holding the EICAR test file `eicar.com`.
pub(crate) fn with_eicar(layer: Layer, dir: &str) -> Layer {
    layer
        .push(Entry::dir(dir))
        .push(Entry::file(format!("{dir}/eicar.com"), EICAR))
}

/// Four shared layers (EICAR in the second) and a top layer made from `top_seed`.
pub(crate) fn image(top_seed: u64) -> Artifact {
    let mut rng = PseudoRandom::new(2024);
    let rng = &mut rng;
    let base = files(
        Layer::new([]),
        rng,
        "usr/share/doc",
        2500,
        (512, 24 * K),
        false,
    );
    let base = files(base, rng, "usr/lib/x86_64", 150, (64 * K, 640 * K), true);
    let runtime = files(Layer::new([]), rng, "opt/runtime/lib", 16, (M, 5 * M), true);
    let runtime = files(runtime, rng, "opt/runtime/share", 800, (K, 16 * K), false);
    let runtime = with_eicar(runtime, "opt/runtime/tools");
    let libs = files(
        Layer::new([]),
        rng,
        "usr/local/lib/a",
        600,
        (4 * K, 96 * K),
        true,
    );
    let libs = files(libs, rng, "usr/local/lib/b", 600, (4 * K, 96 * K), false);
    let assets = files(
        Layer::new([]),
        rng,
        "srv/assets/bin",
        2,
        (12 * M, 12 * M),
        true,
    );
    let assets = files(assets, rng, "srv/assets/text", 2, (10 * M, 10 * M), false);
    let top = &mut PseudoRandom::new(top_seed);
    let app = files(Layer::new([]), top, "app/src", 400, (K, 8 * K), false);
    let app = files(app, top, "app/bin", 1, (3 * M, 3 * M), true);
    Image::new()
        .layer(base)
        .layer(runtime)
        .layer(libs)
        .layer(assets)
        .layer(app)
        .build()
}
