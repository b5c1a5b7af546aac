//! Seeds, continued: header fields (V7 meta headers, magic, numeric fields, GNU long names,
//! typeflags), the end of the archive, paths and whiteouts.

use super::corpus::{Checksum, Field, Format, Header, Tar, pax_body};
use super::seeds::{MARK, b256, file_with};

/// V7 headers carrying PAX/GNU meta headers; magic, version, prefix, STAR.
pub(crate) fn v7_and_magic(s: &mut Vec<(&'static str, Vec<u8>)>) {
    let v7x = Header::new(Format::V7, b'x', b"PaxHeaders/x", 0);
    let body = pax_body(&[("path", b"usr/bin/evil")]);
    s.push((
        "v7-pax-header",
        Tar::new()
            .entry(&v7x.octal(Field::Size, body.len() as u64), &body)
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    let v7l = Header::new(Format::V7, b'L', b"././@LongLink", 13);
    s.push((
        "v7-gnu-longname",
        Tar::new()
            .entry(&v7l, b"usr/bin/evil\0")
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    let v7k = Header::new(Format::V7, b'K', b"././@LongLink", 12);
    s.push((
        "v7-gnu-longlink",
        Tar::new()
            .entry(&v7k, b"/etc/shadow\0")
            .symlink("usr/bin/link", "decoy")
            .end()
            .done(),
    ));

    // --- magic, version, prefix, STAR ---------------------------------------------------------
    let prefixed = |h: Header| h.set(Field::Name, b"evil").set(Field::Prefix, b"usr/bin");
    s.push(("ustar-prefix", file_with("x", prefixed)));
    s.push((
        "ustar-bad-version-prefix",
        file_with("x", |h| prefixed(h).set(Field::Version, b"xx")),
    ));
    s.push((
        "ustar-nul-version-prefix",
        file_with("x", |h| prefixed(h).set(Field::Version, b"\0\0")),
    ));
    s.push((
        "gnu-buggy-prefix",
        Tar::new()
            .entry(
                &Header::new(Format::Gnu, b'0', b"evil", MARK.len() as u64)
                    .set(Field::Prefix, b"usr/bin"),
                MARK,
            )
            .end()
            .done(),
    ));
    let star = Header::new(Format::Star, b'0', b"evil", MARK.len() as u64)
        .set(Field::StarPrefix, b"usr/bin")
        .octal(Field::StarAtime, 1_600_000_000)
        .octal(Field::StarCtime, 1_600_000_000);
    s.push(("star-prefix", Tar::new().entry(&star, MARK).end().done()));
    let full = [b'p'; 131];
    let star_full = star.clone().set(Field::StarPrefix, &full);
    s.push((
        "star-full-prefix",
        Tar::new().entry(&star_full, MARK).end().done(),
    ));
    s.push((
        "magic-gnu-with-ustar-version",
        file_with("usr/bin/evil", |h| {
            h.set(Field::Magic, b"ustar ").set(Field::Version, b"00")
        }),
    ));
}

/// Numeric fields: base-256, padding, invalid octal.
pub(crate) fn numeric(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push((
        "base256-size",
        file_with("usr/bin/evil", |h| b256(h, MARK.len() as i64)),
    ));
    s.push((
        "base256-size-negative",
        file_with("usr/bin/evil", |h| b256(h, -1)),
    ));
    s.push((
        "base256-size-huge",
        file_with("usr/bin/evil", |h| b256(h, 1 << 62)),
    ));
    s.push((
        "base256-mode",
        file_with("usr/bin/evil", |h| h.base256(Field::Mode, 0o644)),
    ));
    let spaced = format!("{:>11o} ", MARK.len());
    s.push((
        "octal-space-padded",
        file_with("usr/bin/evil", |h| h.set(Field::Size, spaced.as_bytes())),
    ));
    let nul_lead = format!("\0\0\0{:08o}\0", MARK.len());
    s.push((
        "octal-nul-leading",
        file_with("usr/bin/evil", |h| h.set(Field::Size, nul_lead.as_bytes())),
    ));
    let no_term = format!("{:012o}", MARK.len());
    s.push((
        "octal-no-terminator",
        file_with("usr/bin/evil", |h| h.set(Field::Size, no_term.as_bytes())),
    ));
    s.push((
        "octal-invalid-digit-size",
        file_with("usr/bin/evil", |h| h.set(Field::Size, b"0000000008a\0")),
    ));
    s.push((
        "octal-embedded-space-size",
        file_with("usr/bin/evil", |h| h.set(Field::Size, b"000 0000070\0")),
    ));
    s.push((
        "octal-invalid-mode",
        file_with("usr/bin/evil", |h| h.set(Field::Mode, b"0x644\0\0\0")),
    ));
    s.push((
        "octal-invalid-uid",
        file_with("usr/bin/evil", |h| h.set(Field::Uid, b"root\0\0\0\0")),
    ));
    s.push((
        "octal-invalid-mtime",
        file_with("usr/bin/evil", |h| h.set(Field::Mtime, b"yesterday\0\0\0")),
    ));
    s.push((
        "octal-invalid-devmajor",
        file_with("usr/bin/evil", |h| h.set(Field::Devmajor, b"9\0")),
    ));
}

/// GNU long names and links.
pub(crate) fn gnu_long(s: &mut Vec<(&'static str, Vec<u8>)>) {
    let long = format!("{}/evil", "d".repeat(150));
    s.push((
        "gnu-longname",
        Tar::new()
            .gnu_long(b'L', long.as_bytes())
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    let target = format!("{}/x", "t".repeat(120));
    s.push((
        "gnu-longlink-hardlink",
        Tar::new()
            .gnu_long(b'L', target.as_bytes())
            .file("decoy", MARK)
            .gnu_long(b'K', target.as_bytes())
            .hardlink("usr/bin/copy", "decoy")
            .end()
            .done(),
    ));
    s.push((
        "gnu-longlink-symlink",
        Tar::new()
            .gnu_long(b'K', b"../../../etc/shadow")
            .symlink("usr/bin/link", "decoy")
            .end()
            .done(),
    ));
    s.push((
        "gnu-longname-twice",
        Tar::new()
            .gnu_long(b'L', b"usr/bin/.wh.evil")
            .gnu_long(b'L', b"usr/bin/evil")
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push((
        "gnu-longname-vs-pax-path",
        Tar::new()
            .pax(&[("path", b"pax/name")])
            .gnu_long(b'L', b"usr/bin/evil")
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push((
        "gnu-longname-with-nul",
        Tar::new()
            .gnu_long(b'L', b"usr/bin/evil\0junk")
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push((
        "gnu-longname-over-1mib",
        Tar::new()
            .gnu_long(b'L', &vec![b'a'; (1 << 20) + 8])
            .file("decoy", MARK)
            .end()
            .done(),
    ));
    s.push((
        "gnu-longname-dangling",
        Tar::new()
            .file("a", MARK)
            .gnu_long(b'L', b"usr/bin/evil")
            .end()
            .done(),
    ));
}

/// Typeflags beyond the supported ones, and the legacy `\0`.
pub(crate) fn typeflags(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push((
        "rega-trailing-slash",
        Tar::new()
            .header(&Header::ustar(0, "opt/dir/", 0))
            .file("opt/dir/f", MARK)
            .end()
            .done(),
    ));
    s.push((
        "rega-file",
        file_with("usr/bin/evil", |h| h.set(Field::Typeflag, &[0])),
    ));
    s.push((
        "contiguous-file",
        file_with("usr/bin/evil", |h| h.set(Field::Typeflag, b"7")),
    ));
    s.push((
        "unknown-type-letter",
        file_with("usr/bin/evil", |h| h.set(Field::Typeflag, b"Z")),
    ));
    s.push((
        "gnu-volume-header",
        file_with("usr/bin/evil", |h| h.set(Field::Typeflag, b"V")),
    ));
    s.push((
        "gnu-dumpdir",
        file_with("usr/bin/evil", |h| h.set(Field::Typeflag, b"D")),
    ));
    s.push((
        "devices-and-fifo",
        Tar::new()
            .header(
                &Header::ustar(b'3', "dev/null", 0)
                    .octal(Field::Devmajor, 1)
                    .octal(Field::Devminor, 3),
            )
            .header(&Header::ustar(b'4', "dev/sda", 0))
            .header(&Header::ustar(b'6', "run/fifo", 0))
            .file("after", MARK)
            .end()
            .done(),
    ));
}

/// End of archive, truncation, checksums.
pub(crate) fn ends(s: &mut Vec<(&'static str, Vec<u8>)>) {
    let two = Tar::new().file("a", MARK).file("usr/bin/evil", MARK);
    s.push(("no-end-marker", two.clone().done()));
    s.push(("one-zero-block-end", two.clone().zeros(1).done()));
    s.push((
        "zero-block-then-header",
        Tar::new()
            .file("a", MARK)
            .zeros(1)
            .file("usr/bin/evil", MARK)
            .end()
            .done(),
    ));
    s.push((
        "trailing-garbage",
        two.clone()
            .end()
            .raw(b"garbage after the end marker")
            .done(),
    ));
    s.push((
        "trailing-entry-after-end",
        two.clone().end().file("late", MARK).end().done(),
    ));
    let full_two = two.clone().done();
    s.push(("truncated-body", full_two[..512 + 512 + 512 + 10].to_vec()));
    s.push(("truncated-header", full_two[..1024 + 100].to_vec()));
    s.push((
        "truncated-in-padding",
        full_two[..1024 + 512 + MARK.len() + 3].to_vec(),
    ));
    let bad =
        Header::ustar(b'0', "usr/bin/evil", MARK.len() as u64).set(Field::Chksum, b"0000000\0");
    s.push((
        "bad-checksum-first",
        Tar::new()
            .entry(&bad.clone().checksum(Checksum::Keep), MARK)
            .end()
            .done(),
    ));
    s.push((
        "bad-checksum-second",
        Tar::new()
            .file("a", MARK)
            .entry(&bad.checksum(Checksum::Keep), MARK)
            .end()
            .done(),
    ));
    s.push((
        "checksum-signed",
        Tar::new()
            .entry(
                &Header::ustar(b'0', "usr/bin/\u{e9}vil", MARK.len() as u64)
                    .checksum(Checksum::Signed),
                MARK,
            )
            .end()
            .done(),
    ));
    let mut spaced_ck = Header::ustar(b'0', "usr/bin/evil", MARK.len() as u64).bytes();
    let ck = String::from_utf8_lossy(&spaced_ck[148..154])
        .trim_start_matches('0')
        .to_string();
    let text = format!("{ck:>7} ");
    spaced_ck[148..156].copy_from_slice(text.as_bytes());
    s.push((
        "checksum-space-padded",
        Tar::new().raw(&spaced_ck).body(MARK).end().done(),
    ));
}

/// Paths: `..`, absolute, root entries, non-UTF-8, NUL, link targets.
pub(crate) fn paths(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push((
        "dotdot-escape",
        Tar::new().file("../../evil", MARK).end().done(),
    ));
    s.push((
        "dotdot-middle",
        Tar::new().file("usr/../../etc/evil", MARK).end().done(),
    ));
    s.push((
        "absolute-path",
        Tar::new().file("/usr/bin/evil", MARK).end().done(),
    ));
    s.push((
        "dot-slash-path",
        Tar::new().file("./usr/bin/evil", MARK).end().done(),
    ));
    s.push((
        "double-slash-path",
        Tar::new().file("usr//bin///evil", MARK).end().done(),
    ));
    s.push((
        "root-entries",
        Tar::new()
            .dir("./")
            .dir("/")
            .dir(".")
            .dir("..")
            .file("./", MARK)
            .file("usr/bin/evil", MARK)
            .end()
            .done(),
    ));
    s.push((
        "non-utf8-path",
        Tar::new()
            .entry(
                &Header::new(
                    Format::Ustar,
                    b'0',
                    b"usr/bin/ev\xffil\xc3",
                    MARK.len() as u64,
                ),
                MARK,
            )
            .end()
            .done(),
    ));
    s.push((
        "name-with-nul",
        Tar::new().file("usr/bin/evil\0.txt", MARK).end().done(),
    ));
    s.push((
        "hardlink-dotdot-target",
        Tar::new()
            .file("etc/shadow", MARK)
            .hardlink("usr/x", "../../etc/shadow")
            .end()
            .done(),
    ));
    s.push((
        "hardlink-empty-target",
        Tar::new()
            .file("a", MARK)
            .hardlink("usr/x", "")
            .end()
            .done(),
    ));
    s.push((
        "symlink-dotdot-target",
        Tar::new()
            .symlink("usr/bin/link", "../../../etc/shadow")
            .end()
            .done(),
    ));
}

/// Whiteouts with and without bodies.
pub(crate) fn whiteouts(s: &mut Vec<(&'static str, Vec<u8>)>) {
    s.push((
        "whiteouts",
        Tar::new()
            .file(".wh.gone", b"")
            .file("etc/.wh.passwd", b"")
            .file("etc/.wh..wh..opq", b"")
            .header(&Header::ustar(b'5', "var/.wh.cache", 0))
            .end()
            .done(),
    ));
    s.push((
        "whiteout-root-opaque",
        Tar::new().file(".wh..wh..opq", b"").end().done(),
    ));
    s.push((
        "whiteout-with-body",
        Tar::new().file("usr/bin/.wh.evil", MARK).end().done(),
    ));
    s.push((
        "whiteout-opaque-with-body",
        Tar::new().file("usr/bin/.wh..wh..opq", MARK).end().done(),
    ));
    s.push((
        "whiteout-meta-plnk",
        Tar::new()
            .dir(".wh..wh.plnk")
            .file(".wh..wh.plnk/1", b"")
            .end()
            .done(),
    ));
    s.push((
        "whiteout-meta-with-body",
        Tar::new().file(".wh..wh.plnk", MARK).end().done(),
    ));
    s.push((
        "whiteout-empty-name",
        Tar::new().file("etc/.wh.", b"").end().done(),
    ));
    s.push((
        "whiteout-dot-names",
        Tar::new()
            .file("a/b/.wh..", b"")
            .file("a/b/.wh...", b"")
            .end()
            .done(),
    ));
    s.push((
        "whiteout-symlink",
        Tar::new().symlink("etc/.wh.passwd", "x").end().done(),
    ));
}
