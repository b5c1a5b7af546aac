//! The hand-written seed archives: one per construct on which tar readers are known to disagree
//! with Go's `archive/tar` (the reader container runtimes extract layers with), each named after
//! its construct. The mutator derives the rest of the corpus from these.

use super::corpus::{Field, Format, Header, Tar, pax_body};

/// The content of files that must be scanned (an EICAR-like marker, not the real test string).
pub(crate) const MARK: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$SIDESCAN-HIDDEN-MARKER!$H+H*";

/// A complete tar entry (header + padded body, no end marker): the payload hidden in the data
/// section of header-only types.
pub(crate) fn hidden() -> Vec<u8> {
    Tar::new().file("usr/bin/evil", MARK).done()
}

/// `typeflag name` with the hidden entry as its "data", then a decoy and the end marker.
pub(crate) fn header_only_with_data(typeflag: u8, name: &str, link: &str) -> Vec<u8> {
    let payload = hidden();
    let h =
        Header::ustar(typeflag, name, payload.len() as u64).set(Field::Linkname, link.as_bytes());
    Tar::new()
        .entry(&h, &payload)
        .file("decoy", b"decoy")
        .end()
        .done()
}

/// One file with a header built by `f` from a ustar file header of `MARK`'s size.
pub(crate) fn file_with(name: &str, f: impl FnOnce(Header) -> Header) -> Vec<u8> {
    let h = f(Header::ustar(b'0', name, MARK.len() as u64));
    Tar::new().entry(&h, MARK).end().done()
}

/// A PAX header with `records`, then a file `name` with `MARK`, then the end marker.
pub(crate) fn pax_file(records: &[(&str, &[u8])], name: &str) -> Vec<u8> {
    Tar::new().pax(records).file(name, MARK).end().done()
}

/// A base-256 size field.
pub(crate) fn b256(h: Header, v: i64) -> Header {
    h.base256(Field::Size, v)
}

/// Every seed, named after its construct.
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut s = Vec::new();
    baselines(&mut s);
    header_only(&mut s);
    pax(&mut s);
    sparse(&mut s);
    super::seeds_headers::v7_and_magic(&mut s);
    super::seeds_headers::numeric(&mut s);
    super::seeds_headers::gnu_long(&mut s);
    super::seeds_headers::typeflags(&mut s);
    super::seeds_headers::ends(&mut s);
    super::seeds_headers::paths(&mut s);
    super::seeds_headers::whiteouts(&mut s);
    s
}

/// Well-formed archives.
fn baselines(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push(("plain", plain(Format::Ustar)));
    s.push(("plain-gnu", plain(Format::Gnu)));
    s.push(("plain-v7", plain(Format::V7)));
    s.push((
        "plain-large-file",
        Tar::new()
            .file("big/blob", &big())
            .file("big/after", MARK)
            .end()
            .done(),
    ));
    s.push(("empty-archive", Vec::new()));
    s.push(("only-end-marker", Tar::new().end().done()));
    s.push((
        "nested-tar-in-file",
        Tar::new()
            .file("layer.tar", &plain(Format::Ustar))
            .end()
            .done(),
    ));
}

/// Header-only types with a data section (Go: no data; the "data" is more entries).
fn header_only(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push((
        "dir-with-hidden-entries",
        header_only_with_data(b'5', "opt/d", ""),
    ));
    s.push((
        "symlink-with-hidden-entries",
        header_only_with_data(b'2', "opt/l", "target"),
    ));
    s.push((
        "hardlink-with-hidden-entries",
        header_only_with_data(b'1', "opt/h", "decoy"),
    ));
    s.push((
        "fifo-with-hidden-entries",
        header_only_with_data(b'6', "opt/f", ""),
    ));
    s.push((
        "chardev-with-hidden-entries",
        header_only_with_data(b'3', "opt/c", ""),
    ));
    s.push((
        "blockdev-with-hidden-entries",
        header_only_with_data(b'4', "opt/b", ""),
    ));
    s.push((
        "rega-slash-with-hidden-entries",
        header_only_with_data(0, "opt/d/", ""),
    ));
    let payload = hidden();
    s.push((
        "pax-size-on-dir-with-hidden-entries",
        Tar::new()
            .pax(&[("size", payload.len().to_string().as_bytes())])
            .header(&Header::ustar(b'5', "opt/d", 0))
            .raw(&payload)
            .end()
            .done(),
    ));
    s.push((
        "whiteout-dir-with-hidden-entries",
        header_only_with_data(b'5', "opt/.wh.gone", ""),
    ));
}

/// PAX records: duplicates (Go keeps the last), two `x` headers, empty values, bad records.
fn pax(s: &mut Vec<(&'static str, Vec<u8>)>) {
    let len = MARK.len().to_string();
    let len = len.as_bytes();
    s.push((
        "pax-duplicate-path",
        pax_file(
            &[("path", b"usr/bin/.wh.evil"), ("path", b"usr/bin/evil")],
            "decoy",
        ),
    ));
    s.push((
        "pax-duplicate-path-whiteout-last",
        pax_file(
            &[("path", b"usr/bin/evil"), ("path", b"usr/bin/.wh.evil")],
            "decoy",
        ),
    ));
    s.push((
        "pax-duplicate-linkpath",
        Tar::new()
            .pax(&[("linkpath", b"/safe"), ("linkpath", b"/etc/shadow")])
            .symlink("usr/bin/link", "decoy")
            .end()
            .done(),
    ));
    s.push((
        "pax-duplicate-size",
        Tar::new()
            .pax(&[("size", b"0"), ("size", len)])
            .entry(&Header::ustar(b'0', "usr/bin/evil", 0), MARK)
            .end()
            .done(),
    ));
    let payload = hidden();
    let plen = payload.len().to_string();
    s.push((
        "pax-duplicate-size-hidden",
        Tar::new()
            .pax(&[("size", plen.as_bytes()), ("size", b"0")])
            .entry(
                &Header::ustar(b'0', "decoy", payload.len() as u64),
                &payload,
            )
            .end()
            .done(),
    ));
    s.push((
        "pax-two-x-headers",
        Tar::new()
            .pax(&[("path", b"usr/bin/evil")])
            .pax(&[("mtime", b"1")])
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push(("pax-empty-path", pax_file(&[("path", b"")], "usr/bin/evil")));
    s.push((
        "pax-empty-size",
        Tar::new()
            .pax(&[("size", b"")])
            .file("usr/bin/evil", MARK)
            .end()
            .done(),
    ));
    s.push(("pax-path", pax_file(&[("path", b"usr/bin/evil")], "decoy")));
    s.push((
        "pax-path-dotdot",
        pax_file(&[("path", b"../../usr/bin/evil")], "decoy"),
    ));
    s.push((
        "pax-path-whiteout-with-body",
        pax_file(&[("path", b"etc/.wh.shadow")], "decoy"),
    ));
    s.push((
        "pax-path-whiteout",
        Tar::new()
            .pax(&[("path", b"etc/.wh.shadow")])
            .file("decoy", b"")
            .end()
            .done(),
    ));
    s.push((
        "pax-linkpath-symlink",
        Tar::new()
            .pax(&[("linkpath", b"../../../etc/shadow")])
            .symlink("usr/bin/link", "decoy")
            .end()
            .done(),
    ));
    s.push((
        "pax-linkpath-hardlink",
        Tar::new()
            .file("usr/bin/evil", MARK)
            .pax(&[("linkpath", b"../../usr/bin/evil")])
            .hardlink("usr/bin/copy", "decoy")
            .end()
            .done(),
    ));
    s.push((
        "pax-global-path",
        Tar::new()
            .pax_raw(b'g', &pax_body(&[("path", b"usr/bin/evil")]))
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push((
        "pax-dangling-at-end",
        Tar::new()
            .file("a", MARK)
            .pax(&[("path", b"usr/bin/evil")])
            .end()
            .done(),
    ));
    s.push((
        "pax-bad-record-length",
        Tar::new()
            .pax_raw(b'x', b"99 path=x\n")
            .file("a", MARK)
            .end()
            .done(),
    ));
    s.push((
        "pax-path-with-nul",
        pax_file(&[("path", b"usr/bin/evil\0.txt")], "decoy"),
    ));
    s.push((
        "pax-size-not-decimal",
        pax_file(&[("size", b"0x10")], "decoy"),
    ));
    s.push(("pax-uid-not-decimal", pax_file(&[("uid", b"abc")], "decoy")));
    s.push((
        "pax-unknown-keys",
        pax_file(&[("SCHILY.xattr.user.x", b"1"), ("comment", b"hi")], "a"),
    ));
    let huge = vec![b'a'; (1 << 20) + 16];
    s.push(("pax-over-1mib", pax_file(&[("comment", &huge)], "a")));
}

/// GNU sparse files: PAX formats 0.0, 0.1, 1.0 and the old `S` type.
fn sparse(s: &mut Vec<(&'static str, Vec<u8>)>) {
    let len = MARK.len().to_string();
    let len = len.as_bytes();
    s.push((
        "pax-gnu-sparse-name-only",
        pax_file(&[("GNU.sparse.name", b"usr/bin/evil")], "decoy"),
    ));
    s.push((
        "pax-sparse-0.0",
        pax_file(
            &[
                ("GNU.sparse.size", len),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.offset", b"0"),
                ("GNU.sparse.numbytes", len),
                ("GNU.sparse.name", b"usr/bin/evil"),
            ],
            "GNUSparseFile.0/evil",
        ),
    ));
    let map = format!("0,{}", MARK.len());
    s.push((
        "pax-sparse-0.1",
        pax_file(
            &[
                ("GNU.sparse.size", len),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.map", map.as_bytes()),
                ("GNU.sparse.name", b"usr/bin/evil"),
            ],
            "GNUSparseFile.0/evil",
        ),
    ));
    let hole_map = format!("1024,{}", MARK.len());
    s.push((
        "pax-sparse-0.1-holes",
        pax_file(
            &[
                ("GNU.sparse.realsize", b"3000"),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.map", hole_map.as_bytes()),
            ],
            "usr/bin/holes",
        ),
    ));
    let mut sparse10 = format!("1\n0\n{}\n", MARK.len()).into_bytes();
    sparse10.resize(512, 0);
    sparse10.extend_from_slice(MARK);
    s.push((
        "pax-sparse-1.0",
        Tar::new()
            .pax(&[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", b"usr/bin/evil"),
                ("GNU.sparse.realsize", len),
            ])
            .file("GNUSparseFile.0/evil", &sparse10)
            .end()
            .done(),
    ));
    let mut old = Header::new(Format::Gnu, b'S', b"usr/bin/evil", MARK.len() as u64)
        .octal(Field::GnuRealSize, MARK.len() as u64);
    let mut sp = [0u8; 24];
    sp[..12].copy_from_slice(b"00000000000\0");
    sp[12..].copy_from_slice(format!("{:011o}\0", MARK.len()).as_bytes());
    old = old.set(Field::GnuSparse, &sp);
    s.push((
        "old-gnu-sparse",
        Tar::new().entry(&old.clone(), MARK).end().done(),
    ));
    let mut ext = [0u8; 512];
    ext[..12].copy_from_slice(format!("{:011o}\0", MARK.len() + 100).as_bytes());
    ext[12..24].copy_from_slice(b"00000000000\0");
    let extended = old
        .set(Field::GnuIsExtended, b"\x01")
        .octal(Field::GnuRealSize, MARK.len() as u64 + 100);
    s.push((
        "old-gnu-sparse-extended",
        Tar::new()
            .header(&extended)
            .raw(&ext)
            .body(MARK)
            .end()
            .done(),
    ));
    let times = Header::new(Format::Gnu, b'0', b"usr/bin/evil", MARK.len() as u64)
        .octal(Field::GnuAtime, 1_600_000_000)
        .octal(Field::GnuCtime, 1_600_000_000);
    s.push((
        "gnu-atime-ctime",
        Tar::new().entry(&times, MARK).end().done(),
    ));
}

/// A well-formed archive of every supported kind, in `format`.
fn plain(format: Format) -> Vec<u8> {
    let h = |t: u8, name: &str, size: usize| Header::new(format, t, name.as_bytes(), size as u64);
    Tar::new()
        .header(&h(b'5', "etc/", 0))
        .entry(&h(b'0', "etc/passwd", 13), b"root:x:0:0::\n")
        .entry(&h(b'0', "usr/bin/evil", MARK.len()), MARK)
        .header(&h(b'2', "usr/bin/link", 0).set(Field::Linkname, b"evil"))
        .header(&h(b'1', "usr/bin/hard", 0).set(Field::Linkname, b"usr/bin/evil"))
        .entry(&h(b'0', "empty", 0), b"")
        .end()
        .done()
}

/// 200 KiB of patterned data with the marker in the middle.
fn big() -> Vec<u8> {
    let mut v: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    v[100_000..100_000 + MARK.len()].copy_from_slice(MARK);
    v
}
