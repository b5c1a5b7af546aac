//! The mutator: derives archives from the seeds by editing raw bytes the way an attacker would:
//! header fields (typeflag, size incl. base-256, magic/version, names, links; checksum recomputed
//! or not), PAX records (duplicated, reordered, dropped, rewritten, added), whole entries
//! (spliced in from other seeds, duplicated, dropped), truncation, zero blocks, and archives
//! nested in the bodies of other entries. Deterministic for a given [`Rng`].

use super::corpus::{
    BLOCK, Checksum, Field, Format, Header, Rng, Tar, checksums, pax_record, set_base256,
    set_field, write_checksum,
};

/// Seeds larger than this are not mutated (they are still in the corpus as themselves).
const MAX_PARENT: usize = 256 << 10;

/// Derives one mutant: the index of its parent seed, the archive, and a log of the edits.
pub(crate) fn mutant(
    seeds: &[(&'static str, Vec<u8>)],
    rng: &mut Rng,
) -> (usize, Vec<u8>, Vec<String>) {
    let parent = loop {
        let i = rng.below(seeds.len());
        if seeds[i].1.len() <= MAX_PARENT && !seeds[i].1.is_empty() {
            break i;
        }
    };
    let mut data = seeds[parent].1.clone();
    let mut log = Vec::new();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let op = rng.below(100);
        let entry = match op {
            0..=9 => typeflag(&mut data, rng),
            10..=19 => size(&mut data, rng),
            20..=25 => magic(&mut data, rng),
            26..=29 => checksum(&mut data, rng),
            30..=44 => pax(&mut data, rng),
            45..=52 => splice(&mut data, seeds, rng),
            53..=56 => truncate(&mut data, rng),
            57..=60 => zero_blocks(&mut data, rng),
            61..=65 => nest(&mut data, rng),
            66..=75 => name(&mut data, rng),
            76..=79 => linkname(&mut data, rng),
            80..=84 => drop_or_dup(&mut data, rng),
            85..=88 => byte_flip(&mut data, rng),
            89..=92 => prefix(&mut data, rng),
            _ => gnu_long(&mut data, rng),
        };
        log.push(entry);
    }
    (parent, data, log)
}

/// Offsets of the blocks that look like headers (their checksum verifies).
fn headers(data: &[u8]) -> Vec<usize> {
    (0..data.len() / BLOCK)
        .map(|i| i * BLOCK)
        .filter(|&pos| {
            let b = &data[pos..pos + BLOCK];
            if b.iter().all(|&x| x == 0) {
                return false;
            }
            let text = String::from_utf8_lossy(&b[148..156]);
            let Ok(v) = i64::from_str_radix(text.trim_matches(|c| c == ' ' || c == '\0'), 8) else {
                return false;
            };
            let (u, s) = checksums(b);
            v == u || v == s
        })
        .collect()
}

/// The size field as Go parses it (base-256 or trimmed octal), 0 on garbage.
fn size_of(block: &[u8]) -> u64 {
    let f = &block[124..136];
    if f[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for (i, &b) in f.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { b };
            v = v.wrapping_shl(8) | u64::from(b);
        }
        return v;
    }
    let text = String::from_utf8_lossy(f);
    let t = text.trim_matches(|c| c == ' ' || c == '\0');
    let t = t.split('\0').next().unwrap_or("");
    u64::from_str_radix(t, 8).unwrap_or(0)
}

/// Bytes the entry at `pos` occupies (header + padded data as Go reads it), clamped to the end.
fn span(data: &[u8], pos: usize) -> usize {
    let block = &data[pos..pos + BLOCK];
    let header_only = matches!(block[156], b'1'..=b'6');
    let size = if header_only { 0 } else { size_of(block) };
    let padded = size.saturating_add(BLOCK as u64 - 1) / BLOCK as u64 * BLOCK as u64;
    (BLOCK as u64)
        .saturating_add(padded)
        .min((data.len() - pos) as u64) as usize
}

/// A header offset, or None when there is none.
fn some_header(data: &[u8], rng: &mut Rng) -> Option<usize> {
    let h = headers(data);
    (!h.is_empty()).then(|| *rng.pick(&h))
}

/// A place to insert an entry: a header offset or the end of the entries (before zero blocks).
fn boundary(data: &[u8], rng: &mut Rng) -> usize {
    let mut h = headers(data);
    let mut end = data.len() / BLOCK * BLOCK;
    while end >= BLOCK && data[end - BLOCK..end].iter().all(|&b| b == 0) {
        end -= BLOCK;
    }
    h.push(end);
    *rng.pick(&h)
}

/// Recomputes the checksum of the header at `pos` with probability `percent`.
fn maybe_checksum(data: &mut [u8], pos: usize, rng: &mut Rng, percent: u64) -> &'static str {
    if rng.chance(percent) {
        write_checksum(&mut data[pos..pos + BLOCK], false);
        ""
    } else {
        " (stale checksum)"
    }
}

/// Sets the typeflag of a header.
fn typeflag(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "typeflag: no header".into();
    };
    let t = *rng.pick(b"0000\x001234556677gxxLKSVDMNAZ");
    data[pos + 156] = t;
    let ck = maybe_checksum(data, pos, rng, 85);
    format!("typeflag@{pos}={:?}{ck}", t as char)
}

/// Rewrites the size field of a header: nearby values, the distance to the next header (hides
/// it), base-256, space padding, no terminator, huge.
fn size(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "size: no header".into();
    };
    let old = size_of(&data[pos..pos + BLOCK]);
    let h = headers(data);
    let next = h
        .iter()
        .find(|&&p| p > pos)
        .map_or(0, |&p| (p - pos - BLOCK) as u64);
    let choice = rng.below(10);
    let v = match choice {
        0 => old.saturating_add(1),
        1 => old.saturating_sub(1),
        2 => old.saturating_add(BLOCK as u64),
        3 => 0,
        4 => rng.below(2048) as u64,
        5 => next,
        6 => old.saturating_sub(BLOCK as u64),
        _ => old,
    };
    let block = &mut data[pos..pos + BLOCK];
    let how = match (choice, rng.below(4)) {
        (7, _) => {
            let neg = rng.chance(20);
            set_base256(
                block,
                Field::Size,
                if neg {
                    (v as i64).wrapping_neg().wrapping_sub(1)
                } else {
                    v as i64
                },
            );
            if neg { "base-256 negative" } else { "base-256" }
        }
        (8, _) => {
            set_field(block, Field::Size, format!("{v:>11o} ").as_bytes());
            "space-padded"
        }
        (9, 0) => {
            set_field(block, Field::Size, format!("{v:012o}").as_bytes());
            "no terminator"
        }
        (9, _) => {
            set_field(block, Field::Size, b"77777777777\0");
            "huge"
        }
        _ => {
            set_field(block, Field::Size, format!("{v:011o}\0").as_bytes());
            "octal"
        }
    };
    let ck = maybe_checksum(data, pos, rng, 85);
    format!("size@{pos}={v} {how}{ck}")
}

/// Sets magic and version (ustar, GNU, V7, bad versions) and the STAR trailer.
fn magic(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "magic: no header".into();
    };
    let (m, v, star): (&[u8], &[u8], bool) = *rng.pick(&[
        (b"ustar\0".as_slice(), b"00".as_slice(), false),
        (b"ustar\0", b"xx", false),
        (b"ustar\0", b"\0\0", false),
        (b"ustar ", b" \0", false),
        (b"ustar ", b"00", false),
        (b"\0\0\0\0\0\0", b"\0\0", false),
        (b"ustar\0", b"00", true),
    ]);
    let block = &mut data[pos..pos + BLOCK];
    set_field(block, Field::Magic, m);
    set_field(block, Field::Version, v);
    set_field(block, Field::StarTrailer, if star { b"tar\0" } else { b"" });
    let ck = maybe_checksum(data, pos, rng, 90);
    format!(
        "magic@{pos}={:?}/{:?} star={star}{ck}",
        String::from_utf8_lossy(m),
        String::from_utf8_lossy(v)
    )
}

/// Rewrites a checksum: signed, corrupted, or space-padded.
fn checksum(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "checksum: no header".into();
    };
    let block = &mut data[pos..pos + BLOCK];
    match rng.below(3) {
        0 => {
            write_checksum(block, true);
            format!("checksum@{pos} signed")
        }
        1 => {
            block[150] = block[150].wrapping_add(1);
            format!("checksum@{pos} corrupted")
        }
        _ => {
            let (u, _) = checksums(block);
            set_field(block, Field::Chksum, format!("{u:>7o} ").as_bytes());
            format!("checksum@{pos} space-padded")
        }
    }
}

/// Parses PAX records leniently (stops at the first malformed one).
fn records(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(sp) = rest.iter().position(|&b| b == b' ') {
        let Ok(n) = String::from_utf8_lossy(&rest[..sp]).parse::<usize>() else {
            break;
        };
        if n <= sp + 1 || n > rest.len() {
            break;
        }
        let rec = &rest[sp + 1..n - 1];
        let Some(eq) = rec.iter().position(|&b| b == b'=') else {
            break;
        };
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[n..];
    }
    out
}

/// A random PAX record an attacker would add.
fn new_record(rng: &mut Rng, name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut wh = b"usr/bin/.wh.".to_vec();
    wh.extend_from_slice(name.rsplit(|&b| b == b'/').next().unwrap_or(b"x"));
    let (k, v): (&[u8], Vec<u8>) = match rng.below(12) {
        0 => (b"path", b"usr/bin/evil".to_vec()),
        1 => (b"path", b"../../usr/bin/evil".to_vec()),
        2 => (b"path", wh),
        3 => (b"path", Vec::new()),
        4 => (b"linkpath", b"../../etc/shadow".to_vec()),
        5 => (b"size", rng.below(1200).to_string().into_bytes()),
        6 => (b"size", Vec::new()),
        7 => (b"GNU.sparse.name", b"usr/bin/sparse".to_vec()),
        8 => (b"GNU.sparse.major", b"1".to_vec()),
        9 => (b"mtime", b"1700000000.5".to_vec()),
        10 => (b"uid", b"1000".to_vec()),
        _ => (b"comment", b"x".repeat(rng.below(600))),
    };
    (k.to_vec(), v)
}

/// Edits the records of a PAX header (duplicate, reverse, drop, rewrite, add), or inserts a new
/// `x` header.
fn pax(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    let metas: Vec<usize> = headers(data)
        .into_iter()
        .filter(|&p| matches!(data[p + 156], b'x' | b'g'))
        .collect();
    if metas.is_empty() || rng.chance(25) {
        let at = boundary(data, rng);
        let name = if at + BLOCK <= data.len() {
            data[at..at + 100]
                .split(|&b| b == 0)
                .next()
                .unwrap_or(b"")
                .to_vec()
        } else {
            Vec::new()
        };
        let recs: Vec<u8> = (0..1 + rng.below(3))
            .flat_map(|_| {
                let (k, v) = new_record(rng, &name);
                pax_record(&k, &v)
            })
            .collect();
        let x = Tar::new().pax_raw(b'x', &recs).done();
        data.splice(at..at, x);
        return format!("pax: new x header @{at}");
    }
    let pos = *rng.pick(&metas);
    let old_span = span(data, pos);
    let body_len = (size_of(&data[pos..pos + BLOCK]) as usize).min(old_span - BLOCK);
    let mut recs = records(&data[pos + BLOCK..pos + BLOCK + body_len]);
    let next = pos + old_span;
    let name = if next + BLOCK <= data.len() {
        data[next..next + 100]
            .split(|&b| b == 0)
            .next()
            .unwrap_or(b"")
            .to_vec()
    } else {
        Vec::new()
    };
    let what = match rng.below(6) {
        0 if !recs.is_empty() => {
            let i = rng.below(recs.len());
            let r = recs[i].clone();
            let j = rng.below(recs.len() + 1);
            recs.insert(j, r);
            "duplicate"
        }
        1 if recs.len() > 1 => {
            recs.reverse();
            "reverse"
        }
        2 if !recs.is_empty() => {
            recs.remove(rng.below(recs.len()));
            "drop"
        }
        3 if !recs.is_empty() => {
            let i = rng.below(recs.len());
            recs[i].1 = new_record(rng, &name).1;
            "rewrite"
        }
        _ => {
            let r = new_record(rng, &name);
            let j = rng.below(recs.len() + 1);
            recs.insert(j, r);
            "add"
        }
    };
    let body: Vec<u8> = recs.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    let mut block: [u8; BLOCK] = data[pos..pos + BLOCK].try_into().unwrap();
    let h = Header {
        block,
        checksum: Checksum::Unsigned,
    }
    .octal(Field::Size, body.len() as u64);
    block = h.bytes();
    let replacement = Tar::new().raw(&block).body(&body).done();
    data.splice(pos..pos + old_span, replacement);
    format!("pax@{pos}: {what}")
}

/// Inserts an entry of a seed (header plus data) at an entry boundary.
fn splice(data: &mut Vec<u8>, seeds: &[(&'static str, Vec<u8>)], rng: &mut Rng) -> String {
    let (donor_name, donor) = rng.pick(seeds);
    if donor.len() > MAX_PARENT {
        return "splice: donor too big".into();
    }
    let Some(from) = some_header(donor, rng) else {
        return "splice: donor has no header".into();
    };
    let piece = donor[from..from + span(donor, from)].to_vec();
    let at = boundary(data, rng);
    data.splice(at..at, piece);
    format!("splice {donor_name}@{from} -> @{at}")
}

/// Cuts the archive (at a block boundary 60% of the time).
fn truncate(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    if data.is_empty() {
        return "truncate: empty".into();
    }
    let mut at = rng.below(data.len());
    if rng.chance(60) {
        at -= at % BLOCK;
    }
    data.truncate(at);
    format!("truncate @{at}")
}

/// Inserts zero blocks at an entry boundary, or ends the archive there without a marker.
fn zero_blocks(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = boundary(data, rng);
    if rng.chance(30) {
        data.truncate(at);
        return format!("end at @{at} without end marker");
    }
    let n = 1 + rng.below(2);
    data.splice(at..at, vec![0; n * BLOCK]);
    format!("{n} zero block(s) @{at}")
}

/// Makes the whole archive the data section of a new entry.
fn nest(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    let t = *rng.pick(b"0000552166\0");
    let name = *rng.pick(&["nested.tar", "opt/d", "opt/d/", "usr/bin/.wh.evil"]);
    let h = Header::new(Format::Ustar, t, name.as_bytes(), data.len() as u64);
    let mut out = Tar::new().entry(&h, data);
    if rng.chance(50) {
        out = out.end();
    }
    *data = out.done();
    format!("nest in {:?} {name:?}", t as char)
}

/// Rewrites a name: `..`, whiteouts, trailing slash, NUL, root, non-UTF-8, absolute, meta.
fn name(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "name: no header".into();
    };
    let old: Vec<u8> = data[pos..pos + 100]
        .split(|&b| b == 0)
        .next()
        .unwrap_or(b"")
        .to_vec();
    let (dir, base) = match old.iter().rposition(|&b| b == b'/') {
        Some(i) => (old[..=i].to_vec(), old[i + 1..].to_vec()),
        None => (Vec::new(), old.clone()),
    };
    let cat = |parts: &[&[u8]]| parts.concat();
    let (how, new): (&str, Vec<u8>) = match rng.below(11) {
        0 => ("dotdot", cat(&[b"../../", &old])),
        1 => ("whiteout", cat(&[&dir, b".wh.", &base])),
        2 => ("opaque", cat(&[&dir, b".wh..wh..opq"])),
        3 => ("slash", cat(&[&old, b"/"])),
        4 => ("nul", cat(&[&old, b"\0tail"])),
        5 => ("root", b"./".to_vec()),
        6 => ("non-utf8", cat(&[&dir, b"\xff", &base])),
        7 => ("absolute", cat(&[b"/", &old])),
        8 => ("evil", b"usr/bin/evil".to_vec()),
        9 => ("meta", cat(&[&dir, b".wh..wh.", &base])),
        _ => ("dot", cat(&[b"./", &dir, b"./", &base])),
    };
    set_field(&mut data[pos..pos + BLOCK], Field::Name, &new);
    let ck = maybe_checksum(data, pos, rng, 90);
    format!("name@{pos} {how}{ck}")
}

/// Rewrites a link name.
fn linkname(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "linkname: no header".into();
    };
    let target = *rng.pick(&[
        b"../../etc/shadow".as_slice(),
        b"/etc/shadow",
        b"",
        b"usr/bin/evil",
        b".",
        b"..",
        b"a\xffb",
    ]);
    set_field(&mut data[pos..pos + BLOCK], Field::Linkname, target);
    let ck = maybe_checksum(data, pos, rng, 90);
    format!("linkname@{pos}={:?}{ck}", String::from_utf8_lossy(target))
}

/// Drops an entry or duplicates it elsewhere.
fn drop_or_dup(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "drop/dup: no header".into();
    };
    let n = span(data, pos);
    if rng.chance(50) {
        data.drain(pos..pos + n);
        format!("drop entry @{pos}")
    } else {
        let piece = data[pos..pos + n].to_vec();
        let at = boundary(data, rng);
        data.splice(at..at, piece);
        format!("dup entry @{pos} -> @{at}")
    }
}

/// Sets one byte of a header (checksum recomputed half the time).
fn byte_flip(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "flip: no header".into();
    };
    let off = rng.below(BLOCK);
    let v = rng.next_u64() as u8;
    data[pos + off] = v;
    let ck = maybe_checksum(data, pos, rng, 50);
    format!("flip @{}={v:#04x}{ck}", pos + off)
}

/// Writes the ustar prefix field.
fn prefix(data: &mut [u8], rng: &mut Rng) -> String {
    let Some(pos) = some_header(data, rng) else {
        return "prefix: no header".into();
    };
    let long = [b'p'; 155];
    let p = *rng.pick(&[
        b"usr/bin".as_slice(),
        b"../..",
        &long,
        b"a/.wh..wh..opq",
        b"",
    ]);
    set_field(&mut data[pos..pos + BLOCK], Field::Prefix, p);
    let ck = maybe_checksum(data, pos, rng, 90);
    format!("prefix@{pos} len {}{ck}", p.len())
}

/// Inserts a GNU long name (`L`) or long link (`K`) header.
fn gnu_long(data: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = boundary(data, rng);
    let t = *rng.pick(b"LLK");
    let long = format!("{}/evil", "l".repeat(110));
    let value = *rng.pick(&[
        b"usr/bin/evil".as_slice(),
        b"../../usr/bin/evil",
        b"usr/bin/.wh.evil",
        long.as_bytes(),
        b"",
    ]);
    let piece = Tar::new().gnu_long(t, value).done();
    data.splice(at..at, piece);
    format!(
        "gnu {:?} {:?} @{at}",
        t as char,
        String::from_utf8_lossy(value)
    )
}
