//! Content digests: [`Digest`] (blake3, internal cache keys and file hashes) and [`OciDigest`]
//! (sha256, every digest a client or registry sees), plus [`KeyHasher`], the one canonical
//! encoding that cache keys are computed over.
//!
//! Invariant: a cache key is blake3 over a versioned, length-prefixed encoding written through
//! [`KeyHasher`], never over `Debug` output or map iteration order.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Version of the cache-key encoding; bump it whenever the bytes fed to [`KeyHasher`] change.
pub(crate) const KEY_VERSION: u32 = 1;

/// A blake3 digest: cache keys and content hashes inside the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for logs and graphs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// An OCI content digest, always `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    hex: String,
}

impl OciDigest {
    pub fn of(bytes: &[u8]) -> Self {
        Self { hex: hex::encode(sha2::Sha256::digest(bytes)) }
    }

    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Self { hex: hex::encode(bytes) }
    }

    /// The 64 hex digits without the algorithm prefix (the blob's file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for OciDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for OciDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.hex[..12])
    }
}

/// Why a string is not an OCI digest stack can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("digest `{0}` uses an unsupported algorithm (only sha256 is supported)")]
    Algorithm(String),
    #[error("digest `{0}` is not `sha256:` followed by 64 lowercase hex digits")]
    Malformed(String),
}

impl FromStr for OciDigest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestParseError::Malformed(s.to_owned()));
        };
        if algo != "sha256" {
            return Err(DigestParseError::Algorithm(s.to_owned()));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestParseError::Malformed(s.to_owned()));
        }
        Ok(Self { hex: hex.to_owned() })
    }
}

impl serde::Serialize for OciDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for OciDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming sha256 that yields an [`OciDigest`].
#[derive(Default, Clone)]
pub(crate) struct Sha256Writer {
    hasher: sha2::Sha256,
    len: u64,
}

impl Sha256Writer {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn finish(self) -> OciDigest {
        OciDigest::from_sha256(self.hasher.finalize().into())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds a cache key with fixed encoding rules: every item is tagged, strings and sequences
/// are length-prefixed, integers are little-endian.
pub(crate) struct KeyHasher {
    inner: blake3::Hasher,
}

impl KeyHasher {
    /// Starts a key for one kind of thing (`domain` keeps keys of different kinds apart).
    pub(crate) fn new(domain: &str) -> Self {
        let mut inner = blake3::Hasher::new();
        inner.update(&KEY_VERSION.to_le_bytes());
        let mut this = Self { inner };
        this.str(domain);
        this
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.inner.update(&[b'u', v]);
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.inner.update(b"q");
        self.inner.update(&v.to_le_bytes());
        self
    }

    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.inner.update(b"b");
        self.inner.update(&(v.len() as u64).to_le_bytes());
        self.inner.update(v);
        self
    }

    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    pub(crate) fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }

    pub(crate) fn digest(&mut self, v: &Digest) -> &mut Self {
        self.inner.update(b"d");
        self.inner.update(&v.0);
        self
    }

    /// Starts a sequence of `len` items; the caller writes them next.
    pub(crate) fn seq(&mut self, len: usize) -> &mut Self {
        self.inner.update(b"s");
        self.inner.update(&(len as u64).to_le_bytes());
        self
    }

    pub(crate) fn strs<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.seq(v.len());
        for s in v {
            self.str(s.as_ref());
        }
        self
    }

    pub(crate) fn finish(&self) -> Digest {
        Digest(*self.inner.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_is_pinned() {
        // Changing these bytes changes every cache key: bump KEY_VERSION in the same commit.
        let mut h = KeyHasher::new("test");
        h.str("copy").u64(7).strs(&["a", "b"]).bool(true);
        insta::assert_snapshot!(h.finish().to_hex(), @"571daa421f5ea6627cafde49587ad4de3f180082cf73eb296e52dbc295fd2bdc");
    }

    #[test]
    fn length_prefix_separates_items() {
        let a = KeyHasher::new("t").str("ab").str("c").finish();
        let b = KeyHasher::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn oci_digest_parses_strictly() {
        let d = OciDigest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<OciDigest>().unwrap(), d);
        assert!("sha512:00".parse::<OciDigest>().is_err());
        assert!("sha256:ABC".parse::<OciDigest>().is_err());
        assert!("sha256".parse::<OciDigest>().is_err());
    }
}
