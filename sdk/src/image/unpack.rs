//! Unpacking layers into a root filesystem with OCI whiteouts applied, safely.
//!
//! Safety rules (Architecture Invariant: no entry writes outside `root`):
//! - paths are normalised; an entry whose `..` climbs above the root is skipped with a notice;
//! - parent directories are resolved *inside* the root: symlinks met on the way are followed as
//!   if `root` were `/` (absolute targets restart at `root`, `..` stops at `root`), like
//!   `umoci`/`securejoin`, so a symlink planted by an earlier entry or layer can never redirect a
//!   write outside;
//! - the last component is never followed: an existing entry there is removed and the new one
//!   created with `O_CREAT|O_EXCL`;
//! - hard links must point at an existing non-directory inside the root (resolved the same way);
//! - device, fifo and socket entries are skipped with a notice; permissions are kept to `0o777`
//!   (no setuid/setgid/sticky), with owner read/write(/search) added so the SDK can clean up;
//!   ownership and times are not restored.
//!
//! Whiteouts: `.wh.NAME` deletes NAME from lower layers; `.wh..wh..opq` empties its directory of
//! lower-layer entries, keeping what the same layer created (tracked per layer).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::cache::sha256_file;
use super::error::Error as ImageError;
use super::layer::{
    Budget, Item, LayerCheck, LayerEntries, LayerFailure, NOT_HASHED_AGAIN, VerifiedLayers,
    display_path,
};
use crate::input::EntryKind;
use crate::model::{Notice, notice_codes};

/// Symlinks followed while resolving one path before giving up (Linux's limit).
const MAX_LINKS: u32 = 40;

/// Why a path could not be resolved inside the root.
#[derive(Debug)]
enum Resolve {
    /// Too many symlinks, or a non-directory where a directory is needed.
    Unsafe(String),
    Io(io::Error),
}

/// Resolves `components` as a directory path inside `root`, following symlinks within the root,
/// creating missing directories when `create` is set. Returns the real path.
fn resolve_dir(
    root: &Path,
    components: &[Vec<u8>],
    create: bool,
) -> Result<Option<PathBuf>, Resolve> {
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut queue: std::collections::VecDeque<Vec<u8>> = components.iter().cloned().collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        for s in &stack {
            candidate.push(OsStr::from_bytes(s));
        }
        candidate.push(OsStr::from_bytes(&c));
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Resolve::Unsafe("too many levels of symbolic links".into()));
                }
                let target = std::fs::read_link(&candidate).map_err(Resolve::Io)?;
                let t = target.as_os_str().as_bytes();
                if t.starts_with(b"/") {
                    stack.clear();
                }
                for part in t.split(|&b| b == b'/').rev() {
                    queue.push_front(part.to_vec());
                }
            }
            Ok(m) if m.is_dir() => stack.push(c),
            Ok(_) => {
                return Err(Resolve::Unsafe(format!(
                    "{} is not a directory",
                    display_path(&stack_with(&stack, &c))
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                std::fs::create_dir(&candidate).map_err(Resolve::Io)?;
                std::fs::set_permissions(&candidate, std::fs::Permissions::from_mode(0o755))
                    .map_err(Resolve::Io)?;
                stack.push(c);
            }
            Err(e) => return Err(Resolve::Io(e)),
        }
    }
    let mut out = root.to_path_buf();
    for s in &stack {
        out.push(OsStr::from_bytes(s));
    }
    Ok(Some(out))
}

fn stack_with(stack: &[Vec<u8>], c: &[u8]) -> Vec<Vec<u8>> {
    let mut v = stack.to_vec();
    v.push(c.to_vec());
    v
}

/// Removes whatever is at `path` without following a symlink there.
fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn io_fail(action: &str, path: &Path, e: io::Error) -> LayerFailure {
    ImageError::io("unpacking", action, path, e).into()
}

/// Hashes a cached blob whose layer was verified before: the layer is not decoded again, but its
/// bytes are still checked against the digest (a damaged cache file that kept its stamp is a
/// cache-suspect failure, exactly as when decoding it). A blob this scan has just downloaded and
/// hashed ([`LayerCheck::hashed_at_download`]) has only its size checked.
fn check_blob_bytes(check: &LayerCheck) -> Result<(), LayerFailure> {
    let suspect = |error: crate::error::Error| LayerFailure {
        error,
        cache_suspect: true,
    };
    let size = std::fs::metadata(&check.path)
        .map_err(|e| suspect(ImageError::io("verifying", "read", &check.path, e).into()))?
        .len();
    let actual = if check.hashed_at_download {
        None
    } else {
        let hex = sha256_file(&check.path)
            .map_err(|e| suspect(ImageError::io("verifying", "read", &check.path, e).into()))?;
        Some(format!("sha256:{hex}"))
    };
    if size != check.size || actual.as_ref().is_some_and(|a| *a != check.digest) {
        return Err(suspect(
            ImageError::ChangedOnDisk {
                digest: check.digest.clone(),
                actual: actual.unwrap_or_else(|| NOT_HASHED_AGAIN.into()),
                bytes: size,
            }
            .into(),
        ));
    }
    Ok(())
}

/// Reads a layer to its end without unpacking it: the same decode chain, limits (entries,
/// single-file size, uncompressed bytes, compression ratio) and digest and diff_id checks as
/// [`unpack_layer`]. For whole-image scanners that take only the OCI layout, so that their layers
/// are verified and bounded too. It writes nothing unless asked to (`copy_to`).
///
/// A layer `verified` holds (the same blob, compression and diff_id, read to its end before by
/// this process) is not read again: its totals are charged to `budget` instead, so the image-wide
/// limits still apply. A layer that passes is remembered there.
///
/// With `copy_to`, the layer is always read, and its uncompressed tar stream is written to that
/// new file as it passes the checks (an [`Input::UncompressedLayout`](crate::Input) layer); the
/// file is complete and matches the diff_id only when this returns `Ok`.
pub(crate) fn verify_layer(
    check: &LayerCheck,
    budget: &Arc<Budget>,
    cancel: &CancellationToken,
    verified: &VerifiedLayers,
    copy_to: Option<&Path>,
) -> Result<(), LayerFailure> {
    let copy = match copy_to {
        Some(path) => Some((
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io_fail("create", path, e))?,
            path.to_path_buf(),
        )),
        None => {
            if let Some(totals) = verified.get(check) {
                tracing::debug!(layer = %check.digest, "layer verified before: its totals replayed");
                check_blob_bytes(check)?;
                return totals.replay(check.size, budget).map_err(Into::into);
            }
            None
        }
    };
    let mut entries = LayerEntries::open_copying(check, budget, cancel, copy)?;
    while entries.next_item()?.is_some() {}
    let totals = entries.finish_with_totals()?;
    verified.insert(check, totals);
    Ok(())
}

/// Applies one cached, verified layer blob onto `root`. Returns the SDK's notices for it.
pub(crate) fn unpack_layer(
    root: &Path,
    check: &LayerCheck,
    budget: &Arc<Budget>,
    cancel: &CancellationToken,
) -> Result<Vec<Notice>, LayerFailure> {
    let mut entries = LayerEntries::open(check, budget, cancel)?;
    let mut notices = Vec::new();
    let mut created: HashSet<Vec<Vec<u8>>> = HashSet::new();
    let mut buf = vec![0u8; 256 << 10];
    let skip = |notices: &mut Vec<Notice>, code: &str, msg: String, path: String| {
        let mut n = Notice::new(code, msg).at_path(path);
        n.layer_digest = check.digest.clone();
        notices.push(n);
    };
    {
        while let Some(Item {
            kind,
            components,
            link,
            link_components,
            mode,
            ..
        }) = entries.next_item()?
        {
            let shown = display_path(&components);
            if kind == EntryKind::OpaqueWhiteout {
                // `components` is the directory itself (empty: the root).
                let dir = match resolve_dir(root, &components, false) {
                    Ok(Some(d)) => d,
                    _ => continue,
                };
                let children = std::fs::read_dir(&dir).map_err(|e| io_fail("list", &dir, e))?;
                for child in children {
                    let child = child.map_err(|e| io_fail("list", &dir, e))?;
                    let mut logical = components.clone();
                    logical.push(child.file_name().as_bytes().to_vec());
                    if !created.contains(&logical) {
                        remove_any(&child.path())
                            .map_err(|e| io_fail("remove", &child.path(), e))?;
                    }
                }
                continue;
            }
            let Some((name, parent)) = components.split_last() else {
                continue;
            };
            let parent_dir = match resolve_dir(root, parent, kind != EntryKind::Whiteout) {
                Ok(Some(p)) => p,
                Ok(None) => continue, // whiteout of something that does not exist
                Err(Resolve::Unsafe(why)) => {
                    skip(
                        &mut notices,
                        notice_codes::UNSAFE_PATH_SKIPPED,
                        format!("entry not unpacked: {why}"),
                        shown,
                    );
                    continue;
                }
                Err(Resolve::Io(e)) => {
                    return Err(io_fail(
                        "resolve",
                        &root.join(shown.trim_start_matches('/')),
                        e,
                    ));
                }
            };
            let target = parent_dir.join(OsStr::from_bytes(name));
            match kind {
                EntryKind::Whiteout => {
                    if !created.contains(&components) {
                        remove_any(&target).map_err(|e| io_fail("remove", &target, e))?;
                    }
                }
                EntryKind::OpaqueWhiteout => {}
                EntryKind::Directory => {
                    match std::fs::symlink_metadata(&target) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => {
                            remove_any(&target).map_err(|e| io_fail("replace", &target, e))?;
                            std::fs::create_dir(&target)
                                .map_err(|e| io_fail("create", &target, e))?;
                        }
                        Err(_) => std::fs::create_dir(&target)
                            .map_err(|e| io_fail("create", &target, e))?,
                    }
                    let mode = (mode & 0o777) | 0o700;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| io_fail("chmod", &target, e))?;
                    created.insert(components);
                }
                EntryKind::File => {
                    remove_any(&target).map_err(|e| io_fail("replace", &target, e))?;
                    let mode = (mode & 0o777) | 0o600;
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&target)
                        .map_err(|e| io_fail("create", &target, e))?;
                    loop {
                        let n = entries.read_body(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        out.write_all(&buf[..n])
                            .map_err(|e| io_fail("write", &target, e))?;
                    }
                    created.insert(components);
                }
                EntryKind::Symlink => {
                    remove_any(&target).map_err(|e| io_fail("replace", &target, e))?;
                    let link = link.unwrap_or_default();
                    std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                        .map_err(|e| io_fail("create symlink", &target, e))?;
                    created.insert(components);
                }
                EntryKind::Hardlink => {
                    let Some((lname, lparent)) = link_components.split_last() else {
                        continue;
                    };
                    let source = match resolve_dir(root, lparent, false) {
                        Ok(Some(p)) => p.join(OsStr::from_bytes(lname)),
                        _ => {
                            skip(
                                &mut notices,
                                notice_codes::UNSAFE_PATH_SKIPPED,
                                format!(
                                    "hard link target {} is not inside the image",
                                    display_path(&link_components)
                                ),
                                shown,
                            );
                            continue;
                        }
                    };
                    match std::fs::symlink_metadata(&source) {
                        Ok(m) if !m.is_dir() => {}
                        _ => {
                            skip(
                                &mut notices,
                                notice_codes::UNSAFE_PATH_SKIPPED,
                                format!(
                                    "hard link target {} does not exist or is a directory",
                                    display_path(&link_components)
                                ),
                                shown,
                            );
                            continue;
                        }
                    }
                    if source == target {
                        continue;
                    }
                    remove_any(&target).map_err(|e| io_fail("replace", &target, e))?;
                    std::fs::hard_link(&source, &target)
                        .map_err(|e| io_fail("hard link", &target, e))?;
                    created.insert(components);
                }
            }
        }
    }
    entries.finish()?;
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::super::layer::testutil::{E, gzip, tar};
    use super::super::layer::{sha256_digest, write_blob};
    use super::super::manifest::LayerFormat;
    use super::*;
    use crate::limits::Limits;

    fn apply(root: &Path, blobs: &Path, entries: &[E<'_>]) -> Vec<Notice> {
        let t = tar(entries);
        let blob = gzip(&t);
        let check = LayerCheck {
            path: write_blob(blobs, &blob),
            format: LayerFormat::Gzip,
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            diff_id: sha256_digest(&t),
            hashed_at_download: false,
        };
        unpack_layer(
            root,
            &check,
            &Budget::new(Limits::default()),
            &CancellationToken::new(),
        )
        .unwrap_or_else(|f| panic!("{f:?}"))
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else if m.file_type().is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        std::fs::read_link(&p).unwrap().display()
                    ));
                } else {
                    out.push(format!(
                        "{rel}={}",
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                    ));
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn whiteouts_apply_to_lower_layers_only() {
        let root = tempfile::tempdir().unwrap();
        let blobs = tempfile::tempdir().unwrap();
        apply(
            root.path(),
            blobs.path(),
            &[
                E::Dir("etc/"),
                E::File("etc/keep", b"k"),
                E::File("etc/gone", b"g"),
                E::Dir("var/"),
                E::File("var/old1", b"1"),
                E::Dir("var/sub/"),
                E::File("var/sub/old2", b"2"),
                E::Dir("tree/"),
                E::File("tree/x", b"x"),
            ],
        );
        apply(
            root.path(),
            blobs.path(),
            &[
                E::File("etc/.wh.gone", b""),
                E::File("var/new-before", b"nb"),
                E::File("var/.wh..wh..opq", b""),
                E::File("var/new-after", b"na"),
                E::File(".wh.tree", b""),
                E::File(".wh.never-existed", b""),
                // same-layer whiteout must not delete what this layer creates
                E::File("etc/fresh", b"f"),
                E::File("etc/.wh.fresh", b""),
            ],
        );
        assert_eq!(
            listing(root.path()),
            vec![
                "etc/",
                "etc/fresh=f",
                "etc/keep=k",
                "var/",
                "var/new-after=na",
                "var/new-before=nb",
            ]
        );
    }

    #[test]
    fn no_entry_escapes_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        let victim = outer.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let blobs = tempfile::tempdir().unwrap();
        let victim_s = victim.display().to_string();
        let notices = apply(
            &root,
            blobs.path(),
            &[
                E::File("../escape", b"x"),
                E::File("/abs", b"abs"),
                // symlink to an absolute host dir, then write through it
                E::Symlink("link", &victim_s),
                E::File("link/through", b"x"),
                // relative symlink climbing out, then write through it
                E::Symlink("up", "../../.."),
                E::File("up/through2", b"x"),
                // hard link escapes
                E::Hardlink("hl", "../victim/secret"),
                E::Hardlink("hl2", &format!("{victim_s}/secret")),
                E::Fifo("fifo"),
            ],
        );
        // a later layer writes through the symlink planted earlier
        apply(
            &root,
            blobs.path(),
            &[E::File("link/later", b"x"), E::File("up/x/y", b"x")],
        );
        assert_eq!(
            std::fs::read_dir(&victim).unwrap().count(),
            0,
            "victim dir written"
        );
        assert!(!outer.path().join("escape").exists());
        assert!(!outer.path().join("through2").exists());
        // writes through symlinks landed inside the root, resolved as if root were /
        assert!(
            root.join(victim.strip_prefix("/").unwrap())
                .join("through")
                .exists()
        );
        assert!(root.join("through2").exists());
        assert_eq!(std::fs::read(root.join("abs")).unwrap(), b"abs");
        // `../escape` is confined as a runtime confines it: extracted at /escape
        assert_eq!(std::fs::read(root.join("escape")).unwrap(), b"x");
        // the fifo has no content; the two hard links point at nothing inside the root
        let codes: Vec<&str> = notices.iter().map(|n| n.code.as_str()).collect();
        assert_eq!(
            codes,
            vec![notice_codes::UNSAFE_PATH_SKIPPED; 2],
            "{notices:?}"
        );
    }

    #[test]
    fn replaces_across_types_and_links_hard() {
        let root = tempfile::tempdir().unwrap();
        let blobs = tempfile::tempdir().unwrap();
        apply(
            root.path(),
            blobs.path(),
            &[
                E::File("a", b"file"),
                E::Dir("d/"),
                E::File("d/x", b"x"),
                E::Symlink("s", "/etc/passwd"),
            ],
        );
        apply(
            root.path(),
            blobs.path(),
            &[
                E::Dir("a/"),
                E::File("d", b"now a file"),
                E::File("s", b"replaced the symlink"),
                E::Hardlink("h", "s"),
            ],
        );
        assert_eq!(
            listing(root.path()),
            vec![
                "a/",
                "d=now a file",
                "h=replaced the symlink",
                "s=replaced the symlink"
            ]
        );
    }

    #[test]
    fn verified_layers_are_remembered_with_their_totals_and_failures_are_not() {
        let blobs = tempfile::tempdir().unwrap();
        let big = vec![9u8; 3000];
        let t = tar(&[
            E::Dir("d/"),
            E::File("d/small", b"s"),
            E::File("d/big", &big),
            E::File("d/.wh.gone", b""),
        ]);
        let blob = gzip(&t);
        let mut check = LayerCheck {
            path: write_blob(blobs.path(), &blob),
            format: LayerFormat::Gzip,
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            diff_id: sha256_digest(b"not the tar"),
            hashed_at_download: false,
        };
        let memo = VerifiedLayers::default();
        let cancel = CancellationToken::new();
        let budget = || Budget::new(Limits::default());
        for _ in 0..2 {
            let f = verify_layer(&check, &budget(), &cancel, &memo, None).unwrap_err();
            assert_eq!(f.error.code(), tonic::Code::DataLoss, "{:?}", f.error);
            assert!(memo.get(&check).is_none(), "a failure was remembered");
        }
        check.diff_id = sha256_digest(&t);
        let first = budget();
        verify_layer(&check, &first, &cancel, &memo, None).unwrap();
        let totals = memo.get(&check).expect("success remembered");
        assert_eq!(totals.entries, 4);
        assert_eq!(totals.uncompressed, t.len() as u64);
        assert_eq!(totals.largest_file, Some((3000, "/d/big".into())));
        // replayed: the budget is charged exactly as by reading
        let second = budget();
        verify_layer(&check, &second, &cancel, &memo, None).unwrap();
        assert_eq!(first.checkpoint(), second.checkpoint());
        // but the blob's bytes are still checked: damaged (same size), it is cache-suspect
        let mut bytes = std::fs::read(&check.path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&check.path, &bytes).unwrap();
        let f = verify_layer(&check, &budget(), &cancel, &memo, None).unwrap_err();
        assert!(f.cache_suspect, "{f:?}");
        assert_eq!(f.error.code(), tonic::Code::DataLoss, "{:?}", f.error);
    }
}
