//! What a container runtime makes of each tar entry, and the one classified-entries iterator
//! that the streaming walk, the rootfs unpack and the verify-only read all use.
//!
//! The rules are containerd's (`archive/tar.go`, `applyNaive`), applied to what Go's
//! `archive/tar` returns (see [`super::tar`]):
//! - a path is `filepath.Join("/", name)`: cleaned, with `..` stopping at the root, so
//!   `../../evil` is extracted, and scanned, as `/evil`; a hard link's target likewise;
//! - an entry that resolves to the root itself is ignored;
//! - whiteouts are recognised by the last path component, whatever the entry's type:
//!   `.wh..wh..opq` empties its directory, `.wh.NAME` deletes NAME, other `.wh..wh.` names are
//!   aufs metadata; `.wh.`, `.wh..` and `.wh...` are refused (containerd's
//!   `validateWhiteout`); a whiteout never extracts a body, so one that carries data is refused;
//! - regular files, directories, symlinks and hard links are extracted; devices and fifos carry
//!   no data (nothing to scan) and PAX global headers are ignored;
//! - every other type (contiguous files, GNU sparse, vendor types) is refused, as containerd
//!   refuses it ("unhandled tar header type").

use std::io::Read as _;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::decode::{LayerCheck, LayerFailure, OpenLayer, read_failure, tar_failure};
use super::tar::{RawHeader, is_header_only};
use super::verified::LayerTotals;
use crate::error::Error;
use crate::input::EntryKind;

/// What an archive entry is, after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Classified {
    /// An entry to report / apply.
    Item(Item),
    /// Nothing to report or apply (the root, PAX globals, devices, fifos, aufs metadata).
    Ignore,
}

/// An entry to report or apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Kind.
    pub kind: EntryKind,
    /// Normalised path components below the root (empty only for an opaque whiteout of the
    /// root directory).
    pub components: Vec<Vec<u8>>,
    /// Link target: raw for symlinks, the normalised absolute path for hard links.
    pub link: Option<Vec<u8>>,
    /// Hard-link target components.
    pub link_components: Vec<Vec<u8>>,
    /// Data bytes (files only; 0 otherwise).
    pub size: u64,
    /// Permission bits from the header.
    pub mode: u32,
}

/// Splits a tar path into normalised components, `..` stopping at the root (containerd's
/// `filepath.Join("/", name)`).
pub(crate) fn normalize(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

/// Absolute display path of components.
pub(crate) fn display_path(components: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in components {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn refuse(what: String) -> Error {
    Error::data_loss(what)
}

/// Classifies one entry as Go's reader returned it. `Err` refuses the layer (DataLoss).
pub(crate) fn classify(h: &RawHeader) -> Result<Classified, Error> {
    if h.typeflag == b'g' {
        return Ok(Classified::Ignore);
    }
    let mut components = normalize(&h.name);
    let Some(name) = components.last().cloned() else {
        return Ok(Classified::Ignore); // the root directory itself
    };
    let has_data = !is_header_only(h.typeflag) && h.size > 0;
    let item = |kind, components| Item {
        kind,
        components,
        link: None,
        link_components: Vec::new(),
        size: 0,
        mode: h.mode & 0o7777,
    };
    if let Some(rest) = name.strip_prefix(b".wh.") {
        if has_data {
            return Err(refuse(format!(
                "whiteout {} carries {} bytes of data, which no runtime extracts",
                display_path(&components),
                h.size
            )));
        }
        components.pop();
        if rest == b".wh..opq" {
            return Ok(Classified::Item(item(
                EntryKind::OpaqueWhiteout,
                components,
            )));
        }
        if rest.is_empty() || rest == b"." || rest == b".." {
            // containerd's validateWhiteout: the deleted path must stay inside the directory.
            return Err(refuse(format!(
                "invalid whiteout name {:?} (it names no entry of its directory)",
                String::from_utf8_lossy(&name)
            )));
        }
        if rest.starts_with(b".wh.") {
            return Ok(Classified::Ignore); // aufs metadata (.wh..wh.plnk, ...)
        }
        components.push(rest.to_vec());
        return Ok(Classified::Item(item(EntryKind::Whiteout, components)));
    }
    let kind = match h.typeflag {
        b'0' => EntryKind::File,
        b'5' => EntryKind::Directory,
        b'2' => EntryKind::Symlink,
        b'1' => EntryKind::Hardlink,
        b'3' | b'4' | b'6' => return Ok(Classified::Ignore),
        other => {
            return Err(refuse(format!(
                "entry {} has type {:?}, which container runtimes refuse to extract",
                display_path(&components),
                char::from(other)
            )));
        }
    };
    let mut out = item(kind, components);
    match kind {
        EntryKind::File => out.size = h.size,
        EntryKind::Symlink => out.link = Some(h.linkname.clone()),
        EntryKind::Hardlink => {
            let target = normalize(&h.linkname);
            if target.is_empty() {
                return Err(refuse(format!(
                    "hard link {} points at the root directory",
                    display_path(&out.components)
                )));
            }
            out.link = Some(display_path(&target).into_bytes());
            out.link_components = target;
        }
        _ => {}
    }
    Ok(Classified::Item(out))
}

/// The classified entries of one layer, in archive order, with the budget applied: the one loop
/// behind the streaming walk, the rootfs unpack, the verify-only read and [`crate::archive`].
pub(crate) struct LayerEntries {
    open: OpenLayer,
    check: LayerCheck,
    budget: Arc<Budget>,
    /// Tar headers read so far.
    headers: u64,
    /// The largest regular file so far, with its path.
    largest_file: Option<(u64, String)>,
}

impl LayerEntries {
    /// Opens the decode chain over a cached blob.
    pub(crate) fn open(
        check: &LayerCheck,
        budget: &Arc<Budget>,
        cancel: &CancellationToken,
    ) -> Result<Self, LayerFailure> {
        Self::open_copying(check, budget, cancel, None)
    }

    /// [`open`](Self::open), writing the uncompressed stream to `copy` as it is read and checked.
    pub(crate) fn open_copying(
        check: &LayerCheck,
        budget: &Arc<Budget>,
        cancel: &CancellationToken,
        copy: Option<(std::fs::File, std::path::PathBuf)>,
    ) -> Result<Self, LayerFailure> {
        Ok(Self {
            open: OpenLayer::open(check, budget, cancel, copy)?,
            check: check.clone(),
            budget: budget.clone(),
            headers: 0,
            largest_file: None,
        })
    }

    /// Reads an uncompressed tar stream that has no blob to verify (listing an archive).
    pub(crate) fn uncompressed(reader: Box<dyn std::io::Read>, budget: &Arc<Budget>) -> Self {
        let check = LayerCheck {
            path: Default::default(),
            format: crate::image::manifest::LayerFormat::Tar,
            digest: "(listed archive)".into(),
            size: 0,
            diff_id: String::new(),
            hashed_at_download: false,
        };
        Self {
            open: OpenLayer::uncompressed(reader, budget, &CancellationToken::new()),
            check,
            budget: budget.clone(),
            headers: 0,
            largest_file: None,
        }
    }

    /// The next entry to report or apply; `None` at the end of the archive.
    pub(crate) fn next_item(&mut self) -> Result<Option<Item>, LayerFailure> {
        loop {
            let header = self
                .open
                .tar()
                .next_header()
                .map_err(|e| tar_failure(e, &self.check, &self.budget))?;
            let Some(header) = header else {
                return Ok(None);
            };
            self.budget.add_entry()?;
            self.headers += 1;
            match classify(&header)? {
                Classified::Ignore => continue,
                Classified::Item(item) => {
                    if item.kind == EntryKind::File {
                        let path = display_path(&item.components);
                        self.budget.check_file(item.size, &path)?;
                        if self
                            .largest_file
                            .as_ref()
                            .is_none_or(|(s, _)| item.size > *s)
                        {
                            self.largest_file = Some((item.size, path));
                        }
                    }
                    return Ok(Some(item));
                }
            }
        }
    }

    /// Reads the current entry's body (0 at its end).
    pub(crate) fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, LayerFailure> {
        self.open
            .tar()
            .read(buf)
            .map_err(|e| read_failure(e, &self.check, &self.budget))
    }

    /// Reads the rest of the stream and checks the blob digest and the diff_id.
    pub(crate) fn finish(self) -> Result<(), LayerFailure> {
        self.finish_with_totals().map(drop)
    }

    /// [`finish`](Self::finish), returning what the layer charged to the budget, for
    /// [`VerifiedLayers`](super::verified::VerifiedLayers).
    pub(crate) fn finish_with_totals(self) -> Result<LayerTotals, LayerFailure> {
        let uncompressed = self.open.finish(&self.check, &self.budget)?;
        Ok(LayerTotals {
            entries: self.headers,
            uncompressed,
            largest_file: self.largest_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(typeflag: u8, name: &str, link: &str, size: u64) -> RawHeader {
        RawHeader {
            typeflag,
            name: name.as_bytes().to_vec(),
            linkname: link.as_bytes().to_vec(),
            size,
            mode: 0o644,
        }
    }

    fn item(c: Result<Classified, Error>) -> (EntryKind, String, Option<String>) {
        match c {
            Ok(Classified::Item(i)) => (
                i.kind,
                display_path(&i.components),
                i.link.map(|l| String::from_utf8_lossy(&l).into_owned()),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_are_confined_like_containerd() {
        assert_eq!(
            item(classify(&raw(b'0', "./etc//passwd", "", 1))),
            (EntryKind::File, "/etc/passwd".into(), None)
        );
        for escaping in ["../../evil", "/../evil", "a/../../evil", "/evil"] {
            assert_eq!(
                item(classify(&raw(b'0', escaping, "", 1))).1,
                "/evil",
                "{escaping}"
            );
        }
        assert_eq!(
            item(classify(&raw(b'1', "x", "../../etc/shadow", 0))),
            (EntryKind::Hardlink, "/x".into(), Some("/etc/shadow".into()))
        );
        assert_eq!(
            item(classify(&raw(b'2', "l", "../../etc", 0))).2,
            Some("../../etc".into())
        );
        assert_eq!(
            classify(&raw(b'5', "./", "", 0)).unwrap(),
            Classified::Ignore
        );
        assert_eq!(
            classify(&raw(b'0', "..", "", 3)).unwrap(),
            Classified::Ignore
        );
    }

    #[test]
    fn whiteouts_are_recognised_on_any_type_and_refused_with_data() {
        assert_eq!(
            item(classify(&raw(b'0', "etc/.wh.passwd", "", 0))),
            (EntryKind::Whiteout, "/etc/passwd".into(), None)
        );
        assert_eq!(
            item(classify(&raw(b'3', "etc/.wh.passwd", "", 0))).0,
            EntryKind::Whiteout
        );
        assert_eq!(
            item(classify(&raw(b'0', "etc/.wh..wh..opq", "", 0))),
            (EntryKind::OpaqueWhiteout, "/etc".into(), None)
        );
        assert_eq!(
            classify(&raw(b'0', "x/.wh..wh.plnk", "", 0)).unwrap(),
            Classified::Ignore
        );
        let e = classify(&raw(b'0', "usr/bin/.wh.evil", "", 68)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::DataLoss, "{e}");
        for bad in ["a/b/.wh.", "a/b/.wh..", "a/b/.wh..."] {
            let e = classify(&raw(b'0', bad, "", 0)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::DataLoss, "{bad}");
        }
        // a directory whiteout has no data section whatever its size field says
        assert_eq!(
            item(classify(&raw(b'5', "usr/.wh.bin", "", 4096))).0,
            EntryKind::Whiteout
        );
    }

    #[test]
    fn types_runtimes_refuse_are_refused_and_devices_ignored() {
        for t in [b'7', b'S', b'V', b'M', b'A', b'9'] {
            let e = classify(&raw(t, "f", "", 10)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::DataLoss, "{}", t as char);
        }
        for t in [b'3', b'4', b'6', b'g'] {
            assert_eq!(
                classify(&raw(t, "dev/x", "", 0)).unwrap(),
                Classified::Ignore
            );
        }
        assert_eq!(
            classify(&raw(b'1', "x", "..", 0)).unwrap_err().code(),
            tonic::Code::DataLoss
        );
    }
}
