//! `sha256:<hex>` digests: of bytes ([`sha256_digest`]), of a finished hash
//! ([`sha256_of_hash`]), and of everything written through a [`HashWriter`].

use std::io::{self, Write};

/// `sha256:<hex>` of `data` (aws-lc: fast even in unoptimised test builds).
pub fn sha256_digest(data: &[u8]) -> String {
    sha256_of_hash(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

/// `sha256:<hex>` of a finished sha256 `hash` (any hasher's 32 bytes).
pub fn sha256_of_hash(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// A writer that hashes (sha256) and counts everything passing through.
pub struct HashWriter<W> {
    inner: W,
    hasher: aws_lc_rs::digest::Context,
    n: u64,
}

impl<W> std::fmt::Debug for HashWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashWriter").field("n", &self.n).finish()
    }
}

impl<W: Write> HashWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            n: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Returns the inner writer and the `sha256:` digest of what went through.
    pub fn finish(self) -> (W, String) {
        (self.inner, sha256_of_hash(self.hasher.finish().as_ref()))
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
