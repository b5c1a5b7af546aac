//! Fixture images Trivy recognises: an Alpine-like and a Debian-like rootfs with known packages,
//! npm packages under node_modules, and an AWS key in a config file.

use sidescan_testkit::fixtures::{Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;

/// An AWS access key id that Trivy's `aws-access-key-id` rule matches (not a real key).
pub(crate) const AWS_ACCESS_KEY_ID: &str = "AKIA2E0A8F3B244C9986";
/// An AWS secret access key Trivy's `aws-secret-access-key` rule matches (not a real key).
pub(crate) const AWS_SECRET_ACCESS_KEY: &str = "Zx9vQ2mB7kL4pR8sT1wY5nC3hF6jD0gA2eK7uI9o";
/// Where the secrets live.
pub(crate) const SECRET_PATH: &str = "app/config.env";

fn apk_entry(name: &str, version: &str, origin: &str) -> String {
    format!(
        "C:Q1fixture{name}=\nP:{name}\nV:{version}\nA:x86_64\nS:1000\nI:2000\nT:{name} fixture\nU:https://example.invalid/{name}\nL:MIT\no:{origin}\nm:fixture\nt:1700000000\nc:0000000000000000000000000000000000000000\n\n"
    )
}

/// Alpine 3.22 base layer: os files and the apk database.
pub(crate) fn alpine_base_layer() -> Layer {
    let installed: String = [
        apk_entry("busybox", "1.36.1-r2", "busybox"),
        apk_entry("libcrypto3", "3.3.0-r0", "openssl"),
        apk_entry("libssl3", "3.3.0-r0", "openssl"),
        apk_entry("zlib", "1.3.1-r1", "zlib"),
        apk_entry("musl", "1.2.5-r10", "musl"),
    ]
    .concat();
    Layer::new([
        Entry::dir("etc"),
        Entry::file("etc/alpine-release", "3.22.1\n"),
        Entry::file(
            "etc/os-release",
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.22.1\nPRETTY_NAME=\"Alpine Linux v3.22\"\nHOME_URL=\"https://alpinelinux.org/\"\n",
        ),
        Entry::dir("etc/apk"),
        Entry::file(
            "etc/apk/repositories",
            "https://dl-cdn.alpinelinux.org/alpine/v3.22/main\nhttps://dl-cdn.alpinelinux.org/alpine/v3.22/community\n",
        ),
        Entry::dir("lib"),
        Entry::dir("lib/apk"),
        Entry::dir("lib/apk/db"),
        Entry::file("lib/apk/db/installed", installed),
    ])
}

/// Alpine image: the base layer plus an app layer (a harmless file).
pub(crate) fn alpine_image() -> Artifact {
    Image::new()
        .layer(alpine_base_layer())
        .layer(Layer::new([
            Entry::dir("app"),
            Entry::file("app/README", "fixture app\n"),
        ]))
        .build()
}

fn dpkg_entry(package: &str, source: &str, version: &str) -> String {
    format!(
        "Package: {package}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 100\nMaintainer: Fixture <fixture@example.invalid>\nArchitecture: amd64\nSource: {source}\nVersion: {version}\nDescription: {package} fixture\n\n"
    )
}

/// Debian 12 base layer: os files and the dpkg status database.
pub(crate) fn debian_base_layer() -> Layer {
    let status: String = [
        dpkg_entry("libssl3", "openssl", "3.0.11-1~deb12u2"),
        dpkg_entry("zlib1g", "zlib", "1:1.2.13.dfsg-1"),
        dpkg_entry("tar", "tar", "1.34+dfsg-1.2"),
        dpkg_entry("base-files", "base-files", "12.4+deb12u5"),
    ]
    .concat();
    Layer::new([
        Entry::dir("etc"),
        Entry::file(
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        ),
        Entry::file("etc/debian_version", "12.5\n"),
        Entry::dir("var"),
        Entry::dir("var/lib"),
        Entry::dir("var/lib/dpkg"),
        Entry::file("var/lib/dpkg/status", status),
    ])
}

/// npm packages as installed under node_modules (what Trivy reads in images) and a Cargo.lock.
pub(crate) fn node_layer() -> Layer {
    let pkg = |name: &str, version: &str| {
        format!(r#"{{"name": "{name}", "version": "{version}", "license": "MIT"}}"#)
    };
    Layer::new([
        Entry::dir("app"),
        Entry::dir("app/node_modules"),
        Entry::dir("app/node_modules/lodash"),
        Entry::file(
            "app/node_modules/lodash/package.json",
            pkg("lodash", "4.17.20"),
        ),
        Entry::dir("app/node_modules/minimist"),
        Entry::file(
            "app/node_modules/minimist/package.json",
            pkg("minimist", "1.2.8"),
        ),
        Entry::file(
            "app/Cargo.lock",
            "version = 3\n\n[[package]]\nname = \"fixture-app\"\nversion = \"0.1.0\"\ndependencies = [\n \"smallvec\",\n]\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e\"\n",
        ),
        Entry::file(
            "app/package.json",
            r#"{"name": "fixture-app", "version": "1.0.0", "dependencies": {"lodash": "4.17.20", "minimist": "1.2.8"}}"#,
        ),
    ])
}

/// Debian image: base layer, npm layer.
pub(crate) fn debian_image() -> Artifact {
    Image::new()
        .layer(debian_base_layer())
        .layer(node_layer())
        .build()
}

/// Alpine image with AWS credentials in [`SECRET_PATH`] (top layer).
pub(crate) fn alpine_with_secret() -> Artifact {
    Image::new()
        .layer(alpine_base_layer())
        .layer(Layer::new([
            Entry::dir("app"),
            Entry::file(
                SECRET_PATH,
                format!(
                    "REGION=eu-west-1\nAWS_ACCESS_KEY_ID={AWS_ACCESS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET_ACCESS_KEY}\n"
                ),
            ),
        ]))
        .build()
}
