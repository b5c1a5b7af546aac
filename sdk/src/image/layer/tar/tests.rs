//! The Go-compatible tar reader on hand-written archives (the differential test in
//! `sdk/tests/tar_differential.rs` covers the rest).

use super::*;

fn header(name: &str, typeflag: u8, size: u64, magic: &[u8; 8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[257..265].copy_from_slice(magic);
    checksum(&mut b);
    b
}

fn checksum(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn entry(out: &mut Vec<u8>, h: [u8; BLOCK], data: &[u8]) {
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
}

fn pax_record(k: &str, v: &str) -> String {
    let body = format!(" {k}={v}\n");
    let mut n = body.len() + 1;
    while format!("{n}{body}").len() != n {
        n += 1;
    }
    format!("{n}{body}")
}

fn list(data: &[u8]) -> Result<Vec<(u8, String, Vec<u8>)>, TarError> {
    let mut r = TarReader::new(data);
    let mut out = Vec::new();
    while let Some(h) = r.next_header()? {
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        out.push((
            h.typeflag,
            String::from_utf8_lossy(&h.name).into_owned(),
            body,
        ));
    }
    Ok(out)
}

const USTAR: &[u8; 8] = b"ustar\x0000";
const GNU: &[u8; 8] = b"ustar  \0";

#[test]
fn header_only_types_have_no_data_section() {
    let mut inner = Vec::new();
    entry(&mut inner, header("usr/bin/evil", b'0', 4, USTAR), b"EVIL");
    let mut t = Vec::new();
    entry(&mut t, header("usr/", b'5', inner.len() as u64, USTAR), &[]);
    t.extend_from_slice(&inner);
    let got = list(&t).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], (b'0', "usr/bin/evil".into(), b"EVIL".to_vec()));
}

#[test]
fn duplicate_pax_records_keep_the_last_value() {
    let records = pax_record("path", "usr/bin/.wh.evil") + &pax_record("path", "usr/bin/evil");
    let mut t = Vec::new();
    entry(
        &mut t,
        header("pax", b'x', records.len() as u64, USTAR),
        records.as_bytes(),
    );
    entry(&mut t, header("x", b'0', 3, USTAR), b"abc");
    assert_eq!(list(&t).unwrap()[0].1, "usr/bin/evil");
}

#[test]
fn gnu_long_names_count_after_a_v7_header_and_prefixes_follow_go() {
    let mut t = Vec::new();
    let long = "a/".repeat(80) + "evil";
    entry(
        &mut t,
        header(
            "././@LongLink",
            b'L',
            long.len() as u64,
            b"\0\0\0\0\0\0\0\0",
        ),
        long.as_bytes(),
    );
    entry(&mut t, header("short", b'0', 1, b"\0\0\0\0\0\0\0\0"), b"x");
    // ustar magic with version "xx": still ustar for Go (prefix applies)
    let mut h = header("name", b'0', 1, b"ustar\0xx");
    h[345..351].copy_from_slice(b"prefix");
    checksum(&mut h);
    entry(&mut t, h, b"y");
    let got = list(&t).unwrap();
    assert_eq!(got[0].1, long);
    assert_eq!(got[1].1, "prefix/name");
    let mut g = Vec::new();
    entry(&mut g, header("gnu", b'0', 1, GNU), b"z");
    assert_eq!(list(&g).unwrap()[0].1, "gnu");
}

#[test]
fn end_of_archive_rules_match_go() {
    let mut t = Vec::new();
    entry(&mut t, header("a", b'0', 1, USTAR), b"1");
    // no end marker at all: a clean end
    assert_eq!(list(&t).unwrap().len(), 1);
    // cut inside the padding: a clean end as well
    assert_eq!(list(&t[..BLOCK + 10]).unwrap().len(), 1);
    // cut inside the data / the header: truncated
    let mut big = Vec::new();
    entry(&mut big, header("a", b'0', 600, USTAR), &[1; 600]);
    assert!(matches!(list(&big[..700]), Err(TarError::Truncated)));
    assert!(matches!(list(&t[..100]), Err(TarError::Truncated)));
    // a zero block, then a header: refused
    let mut z = vec![0u8; BLOCK];
    entry(&mut z, header("a", b'0', 1, USTAR), b"1");
    assert!(matches!(list(&z), Err(TarError::Header(_))));
    // two zero blocks end it; what follows is not read
    let mut e = t.clone();
    e.extend_from_slice(&[0; 2 * BLOCK]);
    entry(&mut e, header("hidden", b'0', 1, USTAR), b"h");
    assert_eq!(list(&e).unwrap().len(), 1);
}

#[test]
fn malformed_fields_are_refused_and_specials_are_capped() {
    let mut h = header("a", b'0', 1, USTAR);
    h[148] = b'9';
    assert!(matches!(list(&h), Err(TarError::Header(_))));
    let mut h = header("a", b'0', 1, USTAR);
    h[100..108].copy_from_slice(b"12 45\0\0\0");
    checksum(&mut h);
    assert!(matches!(list(&h), Err(TarError::Header(_))));
    // base-256 size
    let mut h = header("a", b'0', 0, USTAR);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    checksum(&mut h);
    let mut t = h.to_vec();
    t.extend_from_slice(b"hi");
    t.resize(2 * BLOCK, 0);
    assert_eq!(list(&t).unwrap()[0].2, b"hi");
    // a PAX body over 1 MiB
    let mut t = Vec::new();
    let huge = vec![b'a'; (MAX_SPECIAL_FILE + 1) as usize];
    entry(&mut t, header("p", b'x', huge.len() as u64, USTAR), &huge);
    assert!(matches!(list(&t), Err(TarError::FieldTooLong)));
    // sparse: refused
    let mut t = Vec::new();
    entry(&mut t, header("s", b'S', 0, GNU), &[]);
    assert!(matches!(list(&t), Err(TarError::Sparse)));
    let rec = pax_record("GNU.sparse.major", "1");
    let mut t = Vec::new();
    entry(
        &mut t,
        header("p", b'x', rec.len() as u64, USTAR),
        rec.as_bytes(),
    );
    entry(&mut t, header("s", b'0', 0, USTAR), &[]);
    assert!(matches!(list(&t), Err(TarError::Sparse)));
}

#[test]
fn numbers_parse_like_go_strconv() {
    assert_eq!(parse_int(b"+12"), Some(12));
    assert_eq!(parse_int(b"-3"), Some(-3));
    assert_eq!(parse_int(b"1_0"), None);
    assert_eq!(parse_int(b""), None);
    assert_eq!(parse_int(b"9223372036854775808"), None);
    assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
    let mut p = Parser::default();
    assert_eq!(p.octal(b"  0017 \0"), 15);
    assert_eq!(p.octal(b"\0\0\0"), 0);
    assert!(!p.failed);
    assert_eq!(p.numeric(&[0xff; 8]), -1);
    assert!(!p.failed);
}
