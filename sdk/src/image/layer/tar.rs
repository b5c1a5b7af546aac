//! A tar reader that reads an archive exactly as Go's `archive/tar` does (Go 1.19,
//! `reader.go`), which is what containerd, Docker and BuildKit extract layers with.
//!
//! Why not the `tar` crate: its reading differs from Go's on inputs an attacker controls, and
//! every difference is a file a runtime extracts that the scanner never sees. It gives
//! header-only types (directories, links, devices, fifos) a data section of `size` bytes (Go
//! gives them none, so entries hidden in that "body" are extracted by runtimes); it keeps the
//! first of duplicate PAX records (Go the last); it honours `L`/`K` headers only after a
//! ustar/GNU header and ustar magic only with version `00` (Go does regardless); and it reads
//! PAX and GNU long-name bodies into memory without a cap. No crate reads tar the Go way, so this
//! one mirrors Go's reader function by function (`next`, `readHeader`, `parsePAX`, `mergePAX`,
//! the numeric parsers), and `sdk/tests/tar_differential.rs` compares it with the real Go
//! reader on hand-written and generated archives.
//!
//! Deliberate refusals where Go would read on: sparse files (old GNU `S` entries and any PAX
//! `GNU.sparse.*` record) are refused, so holes can never bypass the size limits.

use std::collections::HashMap;
use std::io::{self, Read};

/// Go's `maxSpecialFileSize`: PAX and GNU long-name bodies above this are refused.
pub(crate) const MAX_SPECIAL_FILE: u64 = 1 << 20;
const BLOCK: usize = 512;

/// Why an archive cannot be read. Every variant is a malformed or ambiguous archive (DATA_LOSS),
/// except `Io`, which carries the underlying reader's error (a tripped limit, a bad blob).
#[derive(Debug)]
pub(crate) enum TarError {
    /// A header Go's reader rejects (`tar.ErrHeader`).
    Header(&'static str),
    /// The archive ends inside a header or an entry's data (`io.ErrUnexpectedEOF`).
    Truncated,
    /// A PAX or GNU long-name body over 1 MiB (`tar.ErrFieldTooLong`).
    FieldTooLong,
    /// A sparse entry (refused by the SDK).
    Sparse,
    /// The underlying reader failed.
    Io(io::Error),
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Header(why) => write!(f, "invalid tar header: {why}"),
            TarError::Truncated => f.write_str("archive ends inside a header or an entry's data"),
            TarError::FieldTooLong => {
                write!(f, "PAX or GNU long-name header over {MAX_SPECIAL_FILE} bytes")
            }
            TarError::Sparse => f.write_str(
                "sparse entries (GNU sparse formats) are refused: their holes would bypass the size limits",
            ),
            TarError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated
        } else {
            TarError::Io(e)
        }
    }
}

/// One entry as Go's `Reader.Next` returns it (the fields a runtime uses to extract it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeader {
    /// Type flag after Go's normalisation (`\0` becomes `0`, or `5` with a trailing slash).
    pub typeflag: u8,
    /// Name after prefix, PAX `path` and GNU long name, as raw bytes.
    pub name: Vec<u8>,
    /// Link name after PAX `linkpath` and GNU long link.
    pub linkname: Vec<u8>,
    /// Size after PAX `size` (the data section is empty for header-only types).
    pub size: u64,
    /// Permission bits from the header.
    pub mode: u32,
}

/// Types Go gives no data section (`isHeaderOnlyType`).
pub(crate) fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Go's `tar.Reader`, over any byte stream.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
    /// A sticky error or end: once set, `next` keeps returning it.
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader at the start of an archive.
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            remaining: 0,
            pad: 0,
            done: false,
        }
    }

    /// The underlying stream, positioned wherever reading stopped.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Go's `Reader.Next`: skips the rest of the current entry and returns the next one, or
    /// `None` at the end of the archive (two zero blocks, or the end of the stream at a header
    /// boundary, as Go accepts).
    pub(crate) fn next_header(&mut self) -> Result<Option<RawHeader>, TarError> {
        if self.done {
            return Ok(None);
        }
        let result = self.next_inner();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn next_inner(&mut self) -> Result<Option<RawHeader>, TarError> {
        let mut pax: Option<HashMap<Vec<u8>, Vec<u8>>> = None;
        let mut long_name: Vec<u8> = Vec::new();
        let mut long_link: Vec<u8> = Vec::new();
        loop {
            self.skip_rest()?;
            let Some(block) = self.read_header_block()? else {
                return Ok(None);
            };
            let mut hdr = parse_header(&block)?;
            self.set_data(&hdr)?;
            match hdr.typeflag {
                b'x' | b'g' => {
                    let records = parse_pax(&self.read_special()?)?;
                    if hdr.typeflag == b'g' {
                        // Go returns the global header as an entry of its own; its records are
                        // not applied to later entries (and runtimes ignore it).
                        return Ok(Some(RawHeader {
                            typeflag: b'g',
                            name: hdr.name,
                            linkname: hdr.linkname,
                            size: 0,
                            mode: hdr.mode,
                        }));
                    }
                    pax = Some(records);
                }
                b'L' | b'K' => {
                    let body = self.read_special()?;
                    let value = cut_nul(&body).to_vec();
                    if hdr.typeflag == b'L' {
                        long_name = value;
                    } else {
                        long_link = value;
                    }
                }
                _ => {
                    if let Some(records) = &pax {
                        merge_pax(&mut hdr, records)?;
                    }
                    if !long_name.is_empty() {
                        hdr.name = long_name;
                    }
                    if !long_link.is_empty() {
                        hdr.linkname = long_link;
                    }
                    if hdr.typeflag == 0 {
                        hdr.typeflag = if hdr.name.ends_with(b"/") { b'5' } else { b'0' };
                    }
                    // PAX records may have changed the size: set the data section again.
                    self.set_data_signed(hdr.size_signed, hdr.typeflag)?;
                    if hdr.typeflag == b'S' {
                        return Err(TarError::Sparse);
                    }
                    return Ok(Some(RawHeader {
                        typeflag: hdr.typeflag,
                        name: hdr.name,
                        linkname: hdr.linkname,
                        size: hdr.size_signed.max(0) as u64,
                        mode: hdr.mode,
                    }));
                }
            }
        }
    }

    /// Go's `handleRegularFile`.
    fn set_data(&mut self, hdr: &Parsed) -> Result<(), TarError> {
        self.set_data_signed(hdr.size_signed, hdr.typeflag)
    }

    fn set_data_signed(&mut self, size: i64, typeflag: u8) -> Result<(), TarError> {
        let nb = if is_header_only(typeflag) { 0 } else { size };
        if nb < 0 {
            return Err(TarError::Header("negative size"));
        }
        let nb = nb as u64;
        self.remaining = nb;
        self.pad = (BLOCK as u64 - nb % BLOCK as u64) % BLOCK as u64;
        Ok(())
    }

    /// Discards the unread data and the padding (Go: `discard` then `tryReadFull`; a stream
    /// that ends inside the padding is a clean end, as in Go).
    fn skip_rest(&mut self) -> Result<(), TarError> {
        if self.remaining > 0 {
            let want = self.remaining;
            let copied = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())?;
            self.remaining = 0;
            if copied < want {
                return Err(TarError::Truncated);
            }
        }
        let mut pad = [0u8; BLOCK];
        let want = self.pad as usize;
        self.pad = 0;
        let mut got = 0;
        while got < want {
            match self.inner.read(&mut pad[got..want]) {
                Ok(0) => {
                    self.done = true;
                    return Ok(());
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next header block, or `None` at a clean end (Go's `readHeader` EOF rules).
    fn read_header_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        if self.done {
            return Ok(None);
        }
        let mut block = [0u8; BLOCK];
        if !read_block(&mut self.inner, &mut block)? {
            return Ok(None);
        }
        if block.iter().all(|&b| b == 0) {
            if !read_block(&mut self.inner, &mut block)? {
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err(TarError::Header(
                "a zero block followed by a non-zero block",
            ));
        }
        Ok(Some(block))
    }

    /// Go's `readSpecialFile`: the current entry's data, at most 1 MiB.
    fn read_special(&mut self) -> Result<Vec<u8>, TarError> {
        let mut buf = Vec::new();
        self.take(MAX_SPECIAL_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(TarError::from)?;
        if buf.len() as u64 > MAX_SPECIAL_FILE {
            return Err(TarError::FieldTooLong);
        }
        if self.remaining > 0 {
            return Err(TarError::Truncated);
        }
        Ok(buf)
    }
}

/// Reads the current entry's data (`io::ErrorKind::UnexpectedEof` when the archive ends
/// inside it).
impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Fills `block`; `false` on a clean end (no byte read), an error on a partial block.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(TarError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// A header block as Go's `readHeader` parses it, before PAX and GNU records apply.
#[derive(Debug)]
struct Parsed {
    typeflag: u8,
    name: Vec<u8>,
    linkname: Vec<u8>,
    size_signed: i64,
    mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    UstarOrPax,
    Gnu,
    Star,
}

/// Go's `block.getFormat`: `None` when the checksum does not match.
fn format_of(b: &[u8; BLOCK]) -> Option<Format> {
    let mut p = Parser::default();
    let value = p.octal(&b[148..156]);
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if p.failed || (value != unsigned && value != signed) {
        return None;
    }
    let magic = &b[257..263];
    let version = &b[263..265];
    Some(if magic == b"ustar\0" && &b[508..512] == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::UstarOrPax
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    })
}

/// Go's `readHeader` on one non-zero block.
fn parse_header(b: &[u8; BLOCK]) -> Result<Parsed, TarError> {
    let format = format_of(b).ok_or(TarError::Header("checksum mismatch"))?;
    let mut p = Parser::default();
    let typeflag = b[156];
    let mut name = cut_nul(&b[0..100]).to_vec();
    let linkname = cut_nul(&b[157..257]).to_vec();
    let size_signed = p.numeric(&b[124..136]);
    let mode = p.numeric(&b[100..108]);
    p.numeric(&b[108..116]); // uid
    p.numeric(&b[116..124]); // gid
    p.numeric(&b[136..148]); // mtime
    if format != Format::V7 {
        p.numeric(&b[329..337]); // devmajor
        p.numeric(&b[337..345]); // devminor
        let prefix: &[u8] = match format {
            Format::UstarOrPax => cut_nul(&b[345..500]),
            Format::Star => {
                p.numeric(&b[476..488]); // atime
                p.numeric(&b[488..500]); // ctime
                cut_nul(&b[345..476])
            }
            Format::Gnu => {
                // Go parses atime/ctime skeptically: when they do not parse, the field is taken
                // as a pre-Go-1.8 ustar prefix if it is ASCII.
                let mut p2 = Parser::default();
                for field in [&b[345..357], &b[357..369]] {
                    if field[0] != 0 {
                        p2.numeric(field);
                    }
                }
                let prefix = cut_nul(&b[345..500]);
                if p2.failed && prefix.is_ascii() {
                    prefix
                } else {
                    &[]
                }
            }
            Format::V7 => &[],
        };
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    if p.failed {
        return Err(TarError::Header("a numeric field does not parse"));
    }
    Ok(Parsed {
        typeflag,
        name,
        linkname,
        size_signed,
        mode: (mode & 0o7777_7777) as u32,
    })
}

/// Go's `parser`: numeric fields, with a sticky error.
#[derive(Default)]
struct Parser {
    failed: bool,
}

impl Parser {
    /// Go's `parseNumeric`: base-256 when the high bit is set, else octal.
    fn numeric(&mut self, b: &[u8]) -> i64 {
        if let Some(&first) = b.first()
            && first & 0x80 != 0
        {
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in b.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 > 0 {
                    self.failed = true;
                    return 0;
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 > 0 {
                self.failed = true;
                return 0;
            }
            return if inv == 0xff { !(x as i64) } else { x as i64 };
        }
        self.octal(b)
    }

    /// Go's `parseOctal`: trims spaces and NULs, cuts at a NUL, then base 8.
    fn octal(&mut self, b: &[u8]) -> i64 {
        let is_pad = |c: &u8| *c == b' ' || *c == 0;
        let start = b.iter().position(|c| !is_pad(c)).unwrap_or(b.len());
        let end = b.iter().rposition(|c| !is_pad(c)).map_or(start, |i| i + 1);
        let trimmed = cut_nul(&b[start..end]);
        if start == end {
            return 0;
        }
        match parse_uint(trimmed, 8) {
            Some(x) => x as i64,
            None => {
                self.failed = true;
                0
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, base, 64)` for base 8 or 10 (no sign, no underscores).
fn parse_uint(s: &[u8], base: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &c in s {
        let d = (c as char).to_digit(base)?;
        x = x.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
    }
    Some(x)
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint(digits, 10)?;
    if neg {
        if u > i64::MAX as u64 + 1 {
            None
        } else {
            Some((u as i64).wrapping_neg())
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `parseString`: up to the first NUL.
fn cut_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's `parsePAX`: records in order, a later duplicate replacing an earlier one. Any
/// `GNU.sparse.*` record is refused (sparse files are).
fn parse_pax(mut s: &[u8]) -> Result<HashMap<Vec<u8>, Vec<u8>>, TarError> {
    let bad = || TarError::Header("malformed PAX record");
    let mut records = HashMap::new();
    while !s.is_empty() {
        let space = s.iter().position(|&c| c == b' ').ok_or_else(bad)?;
        let n = parse_int(&s[..space]).ok_or_else(bad)?;
        if n < 5 || n > s.len() as i64 {
            return Err(bad());
        }
        let n = n as usize;
        let rest_start = space + 1;
        if n <= rest_start {
            return Err(bad());
        }
        let record = &s[rest_start..n - 1];
        if s[n - 1] != b'\n' {
            return Err(bad());
        }
        let eq = record.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let valid = !key.is_empty()
            && match key {
                b"path" | b"linkpath" | b"uname" | b"gname" => !value.contains(&0),
                _ => !key.contains(&0),
            };
        if !valid {
            return Err(bad());
        }
        if key.starts_with(b"GNU.sparse.") {
            return Err(TarError::Sparse);
        }
        records.insert(key.to_vec(), value.to_vec());
        s = &s[n..];
    }
    Ok(records)
}

/// Go's `mergePAX`: empty values keep the header's; malformed numbers are errors.
fn merge_pax(hdr: &mut Parsed, records: &HashMap<Vec<u8>, Vec<u8>>) -> Result<(), TarError> {
    let bad = |what| TarError::Header(what);
    for (k, v) in records {
        if v.is_empty() {
            continue;
        }
        match k.as_slice() {
            b"path" => hdr.name = v.clone(),
            b"linkpath" => hdr.linkname = v.clone(),
            b"uid" | b"gid" => {
                parse_int(v).ok_or(bad("PAX uid/gid is not a number"))?;
            }
            b"atime" | b"mtime" | b"ctime" if !valid_pax_time(v) => {
                return Err(bad("PAX time is malformed"));
            }
            b"size" => hdr.size_signed = parse_int(v).ok_or(bad("PAX size is not a number"))?,
            _ => {}
        }
    }
    Ok(())
}

/// Go's `parsePAXTime` succeeds: seconds, optionally `.` and digits.
fn valid_pax_time(v: &[u8]) -> bool {
    let (secs, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    parse_int(secs).is_some() && frac.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests;
