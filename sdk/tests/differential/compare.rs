//! What the SDK must yield for an archive, derived from Go's listing (`tarlist.go`), and the
//! comparison with what it did yield.
//!
//! Rules (Go's `archive/tar` plus containerd's path rule, see the test's module doc):
//! - a Go error anywhere: the SDK must refuse;
//! - `g` entries and entries at `/` are not expected;
//! - whiteouts (last component of the confined path): `.wh..wh..opq` is an opaque whiteout of the
//!   parent, `.wh.NAME` (NAME non-empty, not `.wh.`-prefixed) a whiteout of parent/NAME, `.wh.`,
//!   `.wh..` and `.wh...` a refusal (containerd's validateWhiteout), other `.wh.` names nothing;
//!   a whiteout of a data-bearing type with size > 0 must be refused;
//! - `0` is a file (path, size, sha256), `5` a directory, `2` a symlink (raw target), `1` a hard
//!   link (confined target); `3`, `4`, `6` are not expected; every other type must be refused.

use serde::Deserialize;
use sidescan_sdk::EntryKind;
use sidescan_sdk::archive::ListedEntry;

/// One archive as Go's `archive/tar` reads it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GoListing {
    /// File name in the corpus directory.
    pub name: String,
    /// Entries `Next` returned, in order.
    pub entries: Vec<GoEntry>,
    /// The error that stopped `Next` or `Read`.
    pub error: Option<String>,
    /// An entry had more data than the harness reads (the SDK must refuse it as over the limit).
    pub over_limit: bool,
}

/// One entry as Go returned it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GoEntry {
    /// Display form of the path.
    pub path: String,
    /// `filepath.Join("/", Name)` as hex of raw bytes.
    pub path_hex: String,
    /// Typeflag: a one-character string, or a number when not printable.
    #[serde(rename = "type")]
    pub typeflag: serde_json::Value,
    /// `hdr.Size`.
    pub size: i64,
    /// sha256 of the data `Read` yielded.
    pub sha256: String,
    /// Bytes `Read` yielded.
    pub read: i64,
    /// Link (raw for symlinks, confined for hard links) as hex of raw bytes.
    pub link_hex: Option<String>,
}

impl GoEntry {
    /// The typeflag byte.
    pub(crate) fn flag(&self) -> u8 {
        match &self.typeflag {
            serde_json::Value::String(s) => s.as_bytes()[0],
            serde_json::Value::Number(n) => {
                n.as_u64().and_then(|n| u8::try_from(n).ok()).unwrap_or(0)
            }
            other => panic!("bad typeflag in tarlist output: {other}"),
        }
    }

    fn raw_path(&self) -> Vec<u8> {
        hex::decode(&self.path_hex).expect("tarlist path_hex")
    }
}

/// One entry the SDK must yield.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    /// Absolute confined path, raw bytes.
    pub raw_path: Vec<u8>,
    /// Kind.
    pub kind: EntryKind,
    /// Size and sha256 (files only).
    pub content: Option<(u64, String)>,
    /// Link target, raw bytes (links only).
    pub link: Option<Vec<u8>>,
}

/// What the SDK must do with an archive.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Refuse it, for this reason.
    Refuse(String),
    /// Yield exactly these entries, in order (or refuse: allowed, counted).
    Accept(Vec<Expected>),
}

/// `filepath.Join("/", p)` on raw bytes: cleaned, `..` clamped at the root.
pub(crate) fn confine(p: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return b"/".to_vec();
    }
    parts
        .iter()
        .flat_map(|c| [b"/".as_slice(), c])
        .flatten()
        .copied()
        .collect()
}

/// The expectation for Go's listing of an archive.
pub(crate) fn expect(go: &GoListing) -> Expect {
    if go.over_limit {
        return Expect::Refuse("an entry is larger than the harness's limit (SDK limit)".into());
    }
    if let Some(e) = &go.error {
        return Expect::Refuse(format!("Go's archive/tar fails: {e}"));
    }
    let mut out = Vec::new();
    for (i, e) in go.entries.iter().enumerate() {
        let flag = e.flag();
        let path = e.raw_path();
        if flag == b'g' || path == b"/" {
            continue;
        }
        let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let (parent, base) = (&path[..cut.max(1)], &path[cut + 1..]);
        if let Some(name) = base.strip_prefix(b".wh.") {
            let data_bearing = !matches!(flag, b'1'..=b'6');
            if data_bearing && e.size > 0 {
                return Expect::Refuse(format!(
                    "entry {i} is a whiteout {:?} of type {:?} with {} bytes of data",
                    short(&e.path),
                    flag as char,
                    e.size
                ));
            }
            if name.is_empty() || name == b"." || name == b".." {
                return Expect::Refuse(format!(
                    "entry {i} is the whiteout {:?}, which containerd's validateWhiteout refuses",
                    short(&e.path)
                ));
            }
            let (kind, target) = if name == b".wh..opq" {
                (EntryKind::OpaqueWhiteout, parent.to_vec())
            } else if !name.is_empty() && !name.starts_with(b".wh.") {
                (EntryKind::Whiteout, confine(&[parent, b"/", name].concat()))
            } else {
                continue;
            };
            out.push(Expected {
                raw_path: target,
                kind,
                content: None,
                link: None,
            });
            continue;
        }
        let link = || {
            e.link_hex
                .as_ref()
                .map(|h| hex::decode(h).expect("tarlist link_hex"))
        };
        let (kind, content, link) = match flag {
            b'0' => (
                EntryKind::File,
                Some((e.size as u64, e.sha256.clone())),
                None,
            ),
            b'5' => (EntryKind::Directory, None, None),
            b'2' => (EntryKind::Symlink, None, link()),
            b'1' => (EntryKind::Hardlink, None, link()),
            b'3' | b'4' | b'6' => continue,
            other => {
                return Expect::Refuse(format!(
                    "entry {i} {:?} has type {:?} (byte {other}), which the SDK does not support",
                    short(&e.path),
                    other as char
                ));
            }
        };
        if kind == EntryKind::File && e.read != e.size {
            // Go's reader guarantees this; a mismatch is a harness bug.
            panic!("{}: entry {i} read {} of {} bytes", go.name, e.read, e.size);
        }
        out.push(Expected {
            raw_path: path,
            kind,
            content,
            link,
        });
    }
    Expect::Accept(out)
}

/// The outcome of comparing one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go failed and the SDK refused.
    BothRefused,
    /// Go accepted and the SDK yielded the same entries.
    Equal,
    /// Go accepted and the SDK refused (allowed).
    SdkRefused,
    /// Anything else: the reason.
    Fail(String),
}

/// Compares the SDK's result with the expectation.
pub(crate) fn judge(
    expect: &Expect,
    sdk: &Result<Vec<ListedEntry>, sidescan_sdk::Error>,
) -> Verdict {
    match (expect, sdk) {
        (Expect::Refuse(_), Err(_)) => Verdict::BothRefused,
        (Expect::Refuse(why), Ok(_)) => Verdict::Fail(format!("the SDK must refuse: {why}")),
        (Expect::Accept(_), Err(_)) => Verdict::SdkRefused,
        (Expect::Accept(want), Ok(got)) => {
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                if let Some(why) = differs(w, g) {
                    return Verdict::Fail(format!("entry {i}: {why}"));
                }
            }
            if want.len() != got.len() {
                return Verdict::Fail(format!(
                    "expected {} entries, the SDK yielded {}",
                    want.len(),
                    got.len()
                ));
            }
            Verdict::Equal
        }
    }
}

/// A string for a report: at most 160 characters (mutants make names of hundreds of KiB).
fn short(s: &str) -> String {
    if s.chars().count() <= 160 {
        return s.to_string();
    }
    let head: String = s.chars().take(150).collect();
    format!("{head}…({} bytes)", s.len())
}

/// Raw bytes for a report.
fn show(b: &[u8]) -> String {
    short(&String::from_utf8_lossy(b))
}

/// Why `g` is not `w`, if it is not.
fn differs(w: &Expected, g: &ListedEntry) -> Option<String> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if g.raw_path != w.raw_path {
        return Some(format!(
            "path {:?}, expected {:?}",
            show(&g.raw_path),
            show(&w.raw_path)
        ));
    }
    if g.path != lossy(&g.raw_path) {
        return Some(format!(
            "path {:?} is not the lossy form of raw_path",
            short(&g.path)
        ));
    }
    if g.kind != w.kind {
        return Some(format!(
            "{} is {:?}, expected {:?}",
            short(&g.path),
            g.kind,
            w.kind
        ));
    }
    if let Some((size, sha)) = &w.content
        && (g.size != *size || g.sha256.as_deref() != Some(sha.as_str()))
    {
        return Some(format!(
            "{}: {} bytes sha256 {:?}, expected {size} bytes sha256 {sha}",
            short(&g.path),
            g.size,
            g.sha256
        ));
    }
    if let Some(link) = &w.link
        && g.link_target.as_deref() != Some(lossy(link).as_str())
    {
        return Some(format!(
            "{}: link {:?}, expected {:?}",
            short(&g.path),
            g.link_target.as_deref().map(short),
            show(link)
        ));
    }
    None
}

/// A listing for people.
pub(crate) fn show_expect(e: &Expect) -> String {
    match e {
        Expect::Refuse(why) => format!("  (refuse: {why})\n"),
        Expect::Accept(v) if v.is_empty() => "  (no entries)\n".into(),
        Expect::Accept(v) => v
            .iter()
            .map(|x| {
                let what = match (&x.content, &x.link) {
                    (Some((n, sha)), _) => format!(" {n} bytes sha256 {}", &sha[..16]),
                    (_, Some(l)) => format!(" -> {:?}", show(l)),
                    _ => String::new(),
                };
                format!("  {:?} {:?}{what}\n", x.kind, show(&x.raw_path))
            })
            .collect(),
    }
}

/// The SDK's result for people.
pub(crate) fn show_sdk(r: &Result<Vec<ListedEntry>, sidescan_sdk::Error>) -> String {
    match r {
        Err(e) => format!("  (refused: {:?}: {e})\n", e.code()),
        Ok(v) if v.is_empty() => "  (no entries)\n".into(),
        Ok(v) => v
            .iter()
            .map(|x| {
                let what = match (&x.sha256, &x.link_target) {
                    (Some(sha), _) => {
                        format!(" {} bytes sha256 {}", x.size, &sha[..sha.len().min(16)])
                    }
                    (_, Some(l)) => format!(" -> {:?}", short(l)),
                    _ => String::new(),
                };
                format!("  {:?} {:?}{what}\n", x.kind, short(&x.path))
            })
            .collect(),
    }
}
