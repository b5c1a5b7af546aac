//! Finding the external programs the tests rely on.
//!
//! A missing program is a test failure with a message naming the install command,
//! never a silent skip.

use std::path::{Path, PathBuf};

/// Install hint for CNCF distribution (`docker-registry`).
pub const DOCKER_REGISTRY_HINT: &str = "apt-get install -y docker-registry";
/// Install hint for `skopeo`.
pub const SKOPEO_HINT: &str = "apt-get install -y skopeo";
/// Install hint for `umoci`.
pub const UMOCI_HINT: &str = "apt-get install -y umoci";
/// Install hint for `htpasswd` (apache2-utils).
pub const HTPASSWD_HINT: &str = "apt-get install -y apache2-utils";
/// Install hint for `nats-server`.
pub const NATS_SERVER_HINT: &str = "apt-get install -y nats-server";
/// Install hint for `clamd` (clamav-daemon).
pub const CLAMD_HINT: &str = "apt-get install -y clamav-daemon";

/// Looks `binary` up like a shell would: a path containing `/` is taken as is, otherwise
/// each directory of `$PATH` (plus `/usr/sbin` and `/sbin`, which are often missing from
/// non-root `PATH`s) is searched for an executable file of that name.
pub fn find(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| is_executable(p))
}

/// Returns the path of `binary`, or panics with a message that names the install
/// command, e.g. `docker-registry not found: run 'apt-get install -y docker-registry'
/// (or scripts/install-deps)`.
pub fn require(binary: &str, install_hint: &str) -> PathBuf {
    match find(binary) {
        Some(p) => p,
        None => panic!(
            "{binary} not found on PATH: run '{install_hint}' (or scripts/install-deps); \
             tests never skip a missing dependency"
        ),
    }
}

/// `require("docker-registry", ...)` with the right hint.
pub fn docker_registry() -> PathBuf {
    require("docker-registry", DOCKER_REGISTRY_HINT)
}

/// `require("skopeo", ...)` with the right hint.
pub fn skopeo() -> PathBuf {
    require("skopeo", SKOPEO_HINT)
}

/// `require("nats-server", ...)` with the right hint.
pub fn nats_server() -> PathBuf {
    require("nats-server", NATS_SERVER_HINT)
}

/// `require("umoci", ...)` with the right hint.
pub fn umoci() -> PathBuf {
    require("umoci", UMOCI_HINT)
}

/// `require("htpasswd", ...)` with the right hint.
pub fn htpasswd() -> PathBuf {
    require("htpasswd", HTPASSWD_HINT)
}

/// `require("clamd", ...)` with the right hint.
pub fn clamd() -> PathBuf {
    require("clamd", CLAMD_HINT)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
