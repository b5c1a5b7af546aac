//! The corpus of the tar differential test: a raw tar header writer (every field written as bytes,
//! so headers can be invalid or ambiguous in ways the `tar` crate's builder refuses), a seeded
//! PRNG, and the corpus itself: the hand-written seeds of [`super::seeds`] plus mutants derived
//! from them by [`super::mutate`].
//!
//! Replay: the seed and the case count come from `SIDESCAN_DIFF_SEED` / `SIDESCAN_DIFF_CASES`;
//! mutant `i` depends only on the seed, `i` and the seed archives, so `m-000123.tar` is the same
//! archive in every run with the same seed.

use sidescan_testkit::random::PseudoRandom;
use std::fmt::Write as _;

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// The default PRNG seed (`SIDESCAN_DIFF_SEED` overrides it).
pub(crate) const DEFAULT_SEED: u64 = 0x5EED_7A12_D1FF_0001;
/// The default number of mutants (`SIDESCAN_DIFF_CASES` overrides it).
pub(crate) const DEFAULT_CASES: usize = 12_000;

/// A field of a tar header block (V7, ustar, GNU and STAR layouts overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// `name[100]`.
    Name,
    /// `mode[8]`.
    Mode,
    /// `uid[8]`.
    Uid,
    /// `gid[8]`.
    Gid,
    /// `size[12]`.
    Size,
    /// `mtime[12]`.
    Mtime,
    /// `chksum[8]`.
    Chksum,
    /// `typeflag[1]`.
    Typeflag,
    /// `linkname[100]`.
    Linkname,
    /// `magic[6]`.
    Magic,
    /// `version[2]`.
    Version,
    /// `uname[32]`.
    Uname,
    /// `gname[32]`.
    Gname,
    /// `devmajor[8]`.
    Devmajor,
    /// `devminor[8]`.
    Devminor,
    /// ustar `prefix[155]`.
    Prefix,
    /// STAR `prefix[131]`.
    StarPrefix,
    /// STAR `atime[12]`.
    StarAtime,
    /// STAR `ctime[12]`.
    StarCtime,
    /// STAR `trailer[4]` (`tar\0` at offset 508).
    StarTrailer,
    /// GNU `atime[12]`.
    GnuAtime,
    /// GNU `ctime[12]`.
    GnuCtime,
    /// GNU old sparse map: 4 × (`offset[12]`, `numbytes[12]`).
    GnuSparse,
    /// GNU `isextended[1]`.
    GnuIsExtended,
    /// GNU `realsize[12]`.
    GnuRealSize,
}

impl Field {
    /// Offset and length in the block.
    pub(crate) const fn range(self) -> (usize, usize) {
        match self {
            Self::Name => (0, 100),
            Self::Mode => (100, 8),
            Self::Uid => (108, 8),
            Self::Gid => (116, 8),
            Self::Size => (124, 12),
            Self::Mtime => (136, 12),
            Self::Chksum => (148, 8),
            Self::Typeflag => (156, 1),
            Self::Linkname => (157, 100),
            Self::Magic => (257, 6),
            Self::Version => (263, 2),
            Self::Uname => (265, 32),
            Self::Gname => (297, 32),
            Self::Devmajor => (329, 8),
            Self::Devminor => (337, 8),
            Self::Prefix => (345, 155),
            Self::StarPrefix => (345, 131),
            Self::StarAtime => (476, 12),
            Self::StarCtime => (488, 12),
            Self::StarTrailer => (508, 4),
            Self::GnuAtime => (345, 12),
            Self::GnuCtime => (357, 12),
            Self::GnuSparse => (386, 96),
            Self::GnuIsExtended => (482, 1),
            Self::GnuRealSize => (483, 12),
        }
    }
}

/// Which magic a new header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// No magic at all.
    V7,
    /// `ustar\0` `00`.
    Ustar,
    /// `ustar ` ` \0` (old GNU).
    Gnu,
    /// ustar magic plus the `tar\0` trailer.
    Star,
}

/// How [`Header::bytes`] writes the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// The standard unsigned byte sum.
    Unsigned,
    /// The sum of the bytes as signed chars (accepted by Go as an alternative).
    Signed,
    /// Leave the chksum field as written.
    Keep,
}

/// One raw header block being written.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    /// The block.
    pub block: [u8; BLOCK],
    /// How the checksum is finished.
    pub checksum: Checksum,
}

impl Header {
    /// A header of `format` with a type, name (raw, truncated to 100 bytes) and octal size;
    /// mode 0644 (0755 for directories), uid/gid 0, a fixed mtime, uname/gname `root`.
    pub(crate) fn new(format: Format, typeflag: u8, name: &[u8], size: u64) -> Self {
        let mode = if typeflag == b'5' { 0o755 } else { 0o644 };
        let mut h = Self {
            block: [0; BLOCK],
            checksum: Checksum::Unsigned,
        }
        .set(Field::Name, name)
        .octal(Field::Mode, mode)
        .octal(Field::Uid, 0)
        .octal(Field::Gid, 0)
        .octal(Field::Size, size)
        .octal(Field::Mtime, 1_700_000_000)
        .set(Field::Typeflag, &[typeflag]);
        match format {
            Format::V7 => {}
            Format::Ustar | Format::Star => {
                h = h.set(Field::Magic, b"ustar\0").set(Field::Version, b"00");
            }
            Format::Gnu => h = h.set(Field::Magic, b"ustar ").set(Field::Version, b" \0"),
        }
        if format != Format::V7 {
            h = h.set(Field::Uname, b"root").set(Field::Gname, b"root");
            if format != Format::Gnu {
                h = h.octal(Field::Devmajor, 0).octal(Field::Devminor, 0);
            }
        }
        if format == Format::Star {
            h = h.set(Field::StarTrailer, b"tar\0");
        }
        h
    }

    /// A ustar header.
    pub(crate) fn ustar(typeflag: u8, name: &str, size: u64) -> Self {
        Self::new(Format::Ustar, typeflag, name.as_bytes(), size)
    }

    /// Writes `raw` into a field: zero-filled first, truncated to the field's length.
    pub(crate) fn set(mut self, f: Field, raw: &[u8]) -> Self {
        set_field(&mut self.block, f, raw);
        self
    }

    /// Writes `v` in octal the standard way: zero-padded digits and a trailing NUL.
    pub(crate) fn octal(self, f: Field, v: u64) -> Self {
        let (_, len) = f.range();
        let s = format!("{v:0width$o}\0", width = len - 1);
        let raw = s.as_bytes();
        let start = raw.len().saturating_sub(len);
        self.set(f, &raw[start..])
    }

    /// Writes `v` in base-256 (GNU binary: high bit set, two's complement, big-endian).
    pub(crate) fn base256(mut self, f: Field, v: i64) -> Self {
        set_base256(&mut self.block, f, v);
        self
    }

    /// How the checksum is written.
    pub(crate) fn checksum(mut self, c: Checksum) -> Self {
        self.checksum = c;
        self
    }

    /// The finished block.
    pub(crate) fn bytes(&self) -> [u8; BLOCK] {
        let mut b = self.block;
        match self.checksum {
            Checksum::Unsigned => write_checksum(&mut b, false),
            Checksum::Signed => write_checksum(&mut b, true),
            Checksum::Keep => {}
        }
        b
    }
}

/// Writes `raw` into field `f` of a block (zero-filled, truncated).
pub(crate) fn set_field(block: &mut [u8], f: Field, raw: &[u8]) {
    let (off, len) = f.range();
    let field = &mut block[off..off + len];
    field.fill(0);
    let n = raw.len().min(len);
    field[..n].copy_from_slice(&raw[..n]);
}

/// Writes `v` into field `f` of a block in base-256 (high bit set, two's complement, big-endian).
pub(crate) fn set_base256(block: &mut [u8], f: Field, v: i64) {
    let (off, len) = f.range();
    let field = &mut block[off..off + len];
    field.fill(if v < 0 { 0xff } else { 0 });
    field[len - 8..].copy_from_slice(&v.to_be_bytes());
    field[0] |= 0x80;
}

/// The header checksums of a block: unsigned and signed byte sums with the chksum field as spaces.
pub(crate) fn checksums(block: &[u8]) -> (i64, i64) {
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block[..BLOCK].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Recomputes the checksum of a block in place (`%06o\0 `, the form GNU tar writes).
pub(crate) fn write_checksum(block: &mut [u8], signed: bool) {
    let (u, s) = checksums(block);
    let v = if signed { s } else { u };
    let text = format!("{:06o}\0 ", v.rem_euclid(1 << 18));
    block[148..156].copy_from_slice(text.as_bytes());
}

/// One PAX record with its correct length prefix.
pub(crate) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut n = body + 1;
    while n != body + n.to_string().len() {
        n = body + n.to_string().len();
    }
    let mut r = format!("{n} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// PAX records concatenated.
pub(crate) fn pax_body(records: &[(&str, &[u8])]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|(k, v)| pax_record(k.as_bytes(), v))
        .collect()
}

/// An archive being written block by block.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tar(pub Vec<u8>);

impl Tar {
    /// An empty archive.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends a header block.
    pub(crate) fn header(mut self, h: &Header) -> Self {
        self.0.extend_from_slice(&h.bytes());
        self
    }

    /// Appends data padded to a block boundary.
    pub(crate) fn body(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(BLOCK), 0);
        self
    }

    /// Appends raw bytes, unpadded.
    pub(crate) fn raw(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        self
    }

    /// A header and its padded body.
    pub(crate) fn entry(self, h: &Header, data: &[u8]) -> Self {
        self.header(h).body(data)
    }

    /// A regular ustar file.
    pub(crate) fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(&Header::ustar(b'0', name, data.len() as u64), data)
    }

    /// A ustar directory.
    pub(crate) fn dir(self, name: &str) -> Self {
        self.header(&Header::ustar(b'5', name, 0))
    }

    /// A ustar symlink.
    pub(crate) fn symlink(self, name: &str, target: &str) -> Self {
        self.header(&Header::ustar(b'2', name, 0).set(Field::Linkname, target.as_bytes()))
    }

    /// A ustar hard link.
    pub(crate) fn hardlink(self, name: &str, target: &str) -> Self {
        self.header(&Header::ustar(b'1', name, 0).set(Field::Linkname, target.as_bytes()))
    }

    /// A PAX extended header (`x`) with a raw body.
    pub(crate) fn pax_raw(self, typeflag: u8, body: &[u8]) -> Self {
        let h = Header::ustar(typeflag, "PaxHeaders.0/x", body.len() as u64);
        self.entry(&h, body)
    }

    /// A PAX extended header (`x`) with records.
    pub(crate) fn pax(self, records: &[(&str, &[u8])]) -> Self {
        self.pax_raw(b'x', &pax_body(records))
    }

    /// A GNU long name (`L`) or long link (`K`) header; `name` gets a trailing NUL.
    pub(crate) fn gnu_long(self, typeflag: u8, name: &[u8]) -> Self {
        let mut data = name.to_vec();
        data.push(0);
        let h = Header::new(Format::Gnu, typeflag, b"././@LongLink", data.len() as u64);
        self.entry(&h, &data)
    }

    /// `n` zero blocks.
    pub(crate) fn zeros(mut self, n: usize) -> Self {
        self.0.resize(self.0.len() + n * BLOCK, 0);
        self
    }

    /// The end-of-archive marker (two zero blocks).
    pub(crate) fn end(self) -> Self {
        self.zeros(2)
    }

    /// The bytes.
    pub(crate) fn done(self) -> Vec<u8> {
        self.0
    }
}

/// The mutator's deterministic generator: the test kit's SplitMix64 ([`PseudoRandom`]), stable
/// across platforms and Rust versions, with the choices the mutator makes.
#[derive(Clone, Debug)]
pub(crate) struct Rng(PseudoRandom);

impl Rng {
    /// The generator of mutant `index` under `seed` (independent of every other mutant).
    pub(crate) fn for_case(seed: u64, index: usize) -> Self {
        let mut r = Self(PseudoRandom::new(
            seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        ));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One archive of the corpus.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    /// File name in the corpus directory (`s-NAME.tar` for seeds, `m-NNNNNN.tar` for mutants).
    pub name: String,
    /// The seed it is (seeds) or was derived from (mutants).
    pub seed_name: &'static str,
    /// Mutant index (None for seeds).
    pub index: Option<usize>,
    /// What the mutator did, in order.
    pub log: Vec<String>,
    /// The archive.
    pub data: Vec<u8>,
}

impl Case {
    /// How to replay this case.
    pub(crate) fn replay_hint(&self, seed: u64) -> String {
        let mut s = format!("seed archive {:?}", self.seed_name);
        if let Some(i) = self.index {
            let _ = write!(
                s,
                ", mutant index {i} (SIDESCAN_DIFF_SEED={seed:#x}), mutations: {}",
                self.log.join("; ")
            );
        }
        s
    }
}

/// The PRNG seed and the number of mutants, from the environment or the defaults.
pub(crate) fn settings() -> (u64, usize) {
    let seed = std::env::var("SIDESCAN_DIFF_SEED")
        .ok()
        .map(|s| {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("SIDESCAN_DIFF_SEED={s:?}: {e}"))
        })
        .unwrap_or(DEFAULT_SEED);
    let cases = std::env::var("SIDESCAN_DIFF_CASES")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("SIDESCAN_DIFF_CASES={s:?}: {e}"))
        })
        .unwrap_or(DEFAULT_CASES);
    (seed, cases)
}

/// The whole corpus: every seed, then `cases` mutants.
pub(crate) fn generate(seed: u64, cases: usize) -> Vec<Case> {
    let seeds = super::seeds::seeds();
    let mut out: Vec<Case> = seeds
        .iter()
        .map(|(name, data)| Case {
            name: format!("s-{name}.tar"),
            seed_name: name,
            index: None,
            log: Vec::new(),
            data: data.clone(),
        })
        .collect();
    for index in 0..cases {
        let mut rng = Rng::for_case(seed, index);
        let (parent, data, log) = super::mutate::mutant(&seeds, &mut rng);
        out.push(Case {
            name: format!("m-{index:06}.tar"),
            seed_name: seeds[parent].0,
            index: Some(index),
            log,
            data,
        });
    }
    out
}
