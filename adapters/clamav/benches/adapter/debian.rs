//! The Debian 12 workload: a real Debian 12 root filesystem (`debootstrap --variant=minbase
//! bookworm`, as root) as one gzip layer, the way an image carries it (numeric owners, modes,
//! links and xattrs kept; `proc/`, `sys/`, `dev/` empty; without the .deb files debootstrap
//! leaves and apt's lists and caches, which Debian's official images drop too), under a
//! test-sample layer holding EICAR. The rootfs layer is built once (1 to 3 minutes) and cached in
//! `target/bench-fixtures/debian12-minbase/` (`layer.tar.gz`, `layer.json`): remove that
//! directory to build it again.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sidescan_testkit::fixtures::{
    HashWriter, Image, Layer, MediaStyle, PseudoRandom, config_json, image_manifest,
};
use sidescan_testkit::oci::{Artifact, Blob, LayerBlob, OCI_CONFIG, OCI_LAYER_GZIP};
use sidescan_testkit::tool;

use crate::methods::run;
use crate::synthetic::{K, files, with_eicar};

/// Removed from the rootfs before it is packed: (directory, extension) for that directory's
/// entries with that extension, or all of them for `""`.
const CLEAN: [(&str, &str); 6] = [
    ("dev", ""),
    ("proc", ""),
    ("sys", ""),
    ("var/lib/apt/lists", ""),
    ("var/cache/apt/archives", "deb"),
    ("var/cache/apt", "bin"),
];

/// What `layer.json` records about the cached rootfs layer.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Rootfs {
    pub(crate) diff_id: String,
    /// Size of the uncompressed tar, bytes.
    pub(crate) uncompressed: u64,
    /// Regular files in it.
    pub(crate) files: u64,
    /// How long `debootstrap` took when the layer was built.
    pub(crate) debootstrap_secs: f64,
}

/// The Debian 12 image and what its rootfs layer is made of.
pub(crate) struct Debian {
    pub(crate) image: Artifact,
    pub(crate) rootfs: Rootfs,
    /// The rootfs layer came from the cache (not built in this run).
    pub(crate) cached: bool,
}

/// `path: error`, for `map_err`.
fn at(path: &Path) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// The cache directory, in the cargo target dir (the bench runs as `target/release/deps/*`).
fn cache_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| format!("no target dir above {}", exe.display()))?;
    Ok(target.join("bench-fixtures/debian12-minbase"))
}

/// The Debian 12 image: the cached rootfs layer (built first when missing) under the
/// test-sample layer.
pub(crate) fn image() -> Result<Debian, String> {
    let dir = cache_dir()?;
    let (blob, meta) = (dir.join("layer.tar.gz"), dir.join("layer.json"));
    let cached = blob.is_file() && meta.is_file();
    if !cached {
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        let rootfs = build(&dir, &blob)?;
        let json = serde_json::to_vec_pretty(&rootfs).map_err(|e| e.to_string())?;
        // Written last: a build cut short leaves no `layer.json`, so the next run builds again.
        fs::write(&meta, json).map_err(at(&meta))?;
    }
    let rootfs: Rootfs = serde_json::from_slice(&fs::read(&meta).map_err(at(&meta))?)
        .map_err(|e| format!("{}: {e}", meta.display()))?;
    let layer = LayerBlob {
        blob: Blob::new(OCI_LAYER_GZIP, fs::read(&blob).map_err(at(&blob))?),
        diff_id: rootfs.diff_id.clone(),
        uncompressed_size: rootfs.uncompressed,
    };
    Ok(Debian {
        image: assemble(layer)?,
        rootfs,
        cached,
    })
}

/// The test-sample layer: EICAR and a few ordinary text files under `opt/samples`.
fn sample_layer() -> Layer {
    let layer = with_eicar(Layer::new([]), "opt/samples");
    let rng = &mut PseudoRandom::new(12);
    files(layer, rng, "opt/samples/docs", 8, (K, 16 * K), false)
}

/// An OCI image (linux/amd64) of `rootfs` under the test-sample layer.
fn assemble(rootfs: LayerBlob) -> Result<Artifact, String> {
    let template = Image::new();
    let layers = vec![rootfs, sample_layer().build(MediaStyle::Oci)];
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = config_json(&template.platform, &diff_ids, &template.env);
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&config).map_err(|e| e.to_string())?,
    );
    let blobs: Vec<Blob> = layers.iter().map(|l| l.blob.clone()).collect();
    Ok(Artifact {
        manifest: image_manifest(MediaStyle::Oci, &config, &blobs, &template.annotations),
        config: Some(config),
        layers,
        children: vec![],
        platform: Some(template.platform),
        extra_blobs: vec![],
    })
}

/// Runs debootstrap into `dir/rootfs.partial`, writes its layer to `blob`, removes the rootfs.
fn build(dir: &Path, blob: &Path) -> Result<Rootfs, String> {
    let debootstrap = tool::require("debootstrap", "apt-get install -y debootstrap");
    let rootfs = dir.join("rootfs.partial");
    discard(&rootfs)?;
    eprintln!(
        "bench-clamav: building the Debian 12 image once: debootstrap --variant=minbase bookworm (1 to 3 minutes)"
    );
    let started = Instant::now();
    run(
        Command::new(debootstrap)
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs),
        &[0],
    )?;
    let debootstrap_secs = started.elapsed().as_secs_f64();
    let layer = clean(&rootfs).and_then(|()| tar_layer(&rootfs, blob));
    discard(&rootfs)?;
    let (diff_id, uncompressed, files) = layer?;
    Ok(Rootfs {
        diff_id,
        uncompressed,
        files,
        debootstrap_secs,
    })
}

/// Removes what [`CLEAN`] names from `rootfs`, after unmounting whatever is mounted in it.
fn clean(rootfs: &Path) -> Result<(), String> {
    unmount_below(rootfs)?;
    for (dir, ext) in CLEAN {
        let dir = rootfs.join(dir);
        for entry in fs::read_dir(&dir).map_err(at(&dir))? {
            let path = entry.map_err(at(&dir))?.path();
            if !ext.is_empty() && path.extension().is_none_or(|e| e != ext) {
                continue;
            }
            let kind = fs::symlink_metadata(&path).map_err(at(&path))?.file_type();
            if kind.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .map_err(at(&path))?;
        }
    }
    Ok(())
}

/// Streams a tar of `rootfs` (pax without sub-second times, sorted, numeric owners, xattrs,
/// entries named without `./`) through the diff_id hash and gzip into `blob`. Returns the
/// diff_id, the tar's size and the regular files in it.
fn tar_layer(rootfs: &Path, blob: &Path) -> Result<(String, u64, u64), String> {
    let mut top: Vec<OsString> = fs::read_dir(rootfs)
        .map_err(at(rootfs))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(at(rootfs))?;
    top.sort();
    let files = count_files(rootfs).map_err(at(rootfs))?;
    let mut child = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args([
            "--create",
            "--file=-",
            "--format=pax",
            "--pax-option=delete=atime,delete=ctime,delete=mtime",
            "--sort=name",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .args(&top)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tar: {e}"))?;
    let partial = blob.with_extension("partial");
    let file = fs::File::create(&partial).map_err(at(&partial))?;
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(BufWriter::new(file), flate2::Compression::new(6));
    let mut hashed = HashWriter::new(gzip);
    let mut stdout = child.stdout.take().ok_or("tar: no stdout")?;
    let copied = io::copy(&mut stdout, &mut hashed);
    drop(stdout); // a failed copy must not leave tar blocked on a full pipe
    let status = child.wait().map_err(|e| format!("tar: {e}"))?;
    copied.map_err(at(&partial))?;
    if !status.success() {
        return Err(format!("tar of {} failed: {status}", rootfs.display()));
    }
    let size = hashed.count();
    let (gzip, diff_id) = hashed.finish();
    gzip.finish()
        .and_then(|mut w| w.flush())
        .map_err(at(&partial))?;
    fs::rename(&partial, blob).map_err(at(blob))?;
    Ok((diff_id, size, files))
}

/// Regular files at or below `path` (symbolic links not followed).
fn count_files(path: &Path) -> io::Result<u64> {
    let kind = fs::symlink_metadata(path)?.file_type();
    if !kind.is_dir() {
        return Ok(u64::from(kind.is_file()));
    }
    let mut n = 0;
    for entry in fs::read_dir(path)? {
        n += count_files(&entry?.path())?;
    }
    Ok(n)
}

/// Removes `dir` (a rootfs being built), first unmounting whatever an interrupted debootstrap
/// left mounted below it (`proc`, `sys`), so that nothing outside it is touched.
fn discard(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_below(dir)?;
    fs::remove_dir_all(dir).map_err(at(dir))
}

/// Unmounts every mount point at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Result<(), String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mut below: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in below {
        run(Command::new("umount").args(["--lazy", mount]), &[0])?;
    }
    Ok(())
}
