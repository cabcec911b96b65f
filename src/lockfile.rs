//! `stack.lock`: the digest each image reference resolved to, per platform, and the content
//! digest of each file an `add` fetched from a URL, so that builds stay reproducible when a
//! tag moves or a server's file changes. A KDL file, sorted, stable across runs. No IO here.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::digest::OciDigest;

/// The pinned digests: (normalised reference, platform) → digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub entries: BTreeMap<(String, String), OciDigest>,
    /// URL → sha256 of the file it served when pinned.
    pub urls: BTreeMap<String, OciDigest>,
}

/// Why a lock file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`stack.lock` is invalid: {0}")]
pub struct LockError(pub String);

impl Lock {
    pub fn get(&self, reference: &str, platform: &str) -> Option<&OciDigest> {
        self.entries.get(&(reference.to_owned(), platform.to_owned()))
    }

    /// Pins a reference; returns whether that changed the lock.
    pub fn insert(&mut self, reference: &str, platform: &str, digest: OciDigest) -> bool {
        self.entries.insert((reference.to_owned(), platform.to_owned()), digest.clone())
            != Some(digest)
    }

    pub fn get_url(&self, url: &str) -> Option<&OciDigest> {
        self.urls.get(url)
    }

    /// Pins a URL's content; returns whether that changed the lock.
    pub fn insert_url(&mut self, url: &str, digest: OciDigest) -> bool {
        self.urls.insert(url.to_owned(), digest.clone()) != Some(digest)
    }

    /// Whether nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.urls.is_empty()
    }

    pub fn parse(text: &str) -> Result<Self, LockError> {
        let doc = kdl::KdlDocument::parse_v2(text).map_err(|e| LockError(e.to_string()))?;
        let mut lock = Self::default();
        for node in doc.nodes() {
            match node.name().value() {
                "lock" => {
                    let v = node.get("version").and_then(kdl::KdlValue::as_integer);
                    if v != Some(1) {
                        return Err(LockError("unsupported `lock version` (expected 1)".into()));
                    }
                }
                "image" => {
                    let reference = node
                        .get(0)
                        .and_then(kdl::KdlValue::as_string)
                        .ok_or_else(|| LockError("an `image` entry has no reference".into()))?;
                    let platform = node
                        .get("platform")
                        .and_then(kdl::KdlValue::as_string)
                        .ok_or_else(|| LockError(format!("`{reference}` has no platform")))?;
                    let digest = node
                        .get("digest")
                        .and_then(kdl::KdlValue::as_string)
                        .ok_or_else(|| LockError(format!("`{reference}` has no digest")))?;
                    let digest: OciDigest =
                        digest.parse().map_err(|e| LockError(format!("`{reference}`: {e}")))?;
                    lock.insert(reference, platform, digest);
                }
                "url" => {
                    let url = node
                        .get(0)
                        .and_then(kdl::KdlValue::as_string)
                        .ok_or_else(|| LockError("a `url` entry has no URL".into()))?;
                    let digest = node
                        .get("digest")
                        .and_then(kdl::KdlValue::as_string)
                        .ok_or_else(|| LockError(format!("`{url}` has no digest")))?;
                    let digest: OciDigest =
                        digest.parse().map_err(|e| LockError(format!("`{url}`: {e}")))?;
                    lock.insert_url(url, digest);
                }
                other => return Err(LockError(format!("unknown node `{other}`"))),
            }
        }
        Ok(lock)
    }

    /// The file's text: a header, then one sorted line per pinned reference.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "// stack.lock: the digests that image references and `add` URLs resolved to.\n// Written by `stack build` and `stack lock`; `stack build --locked` refuses to change it.\nlock version=1\n",
        );
        for ((reference, platform), digest) in &self.entries {
            let _ = writeln!(
                out,
                "image {} platform={} digest=\"{digest}\"",
                quote(reference),
                quote(platform)
            );
        }
        for (url, digest) in &self.urls {
            let _ = writeln!(out, "url {} digest=\"{digest}\"", quote(url));
        }
        out
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted() {
        let mut lock = Lock::default();
        assert!(lock.insert("docker.io/library/debian:12", "linux/amd64", OciDigest::of(b"b")));
        assert!(lock.insert("docker.io/library/alpine:3.20", "linux/amd64", OciDigest::of(b"a")));
        assert!(!lock.insert("docker.io/library/alpine:3.20", "linux/amd64", OciDigest::of(b"a")));
        let text = lock.render();
        assert!(text.find("alpine").unwrap() < text.find("debian").unwrap());
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        assert!(Lock::parse("lock version=2\n").is_err());
        assert!(Lock::parse("image \"x\" platform=\"p\" digest=\"nope\"\n").is_err());
        assert!(lock.insert_url("https://example.com/b.tgz", OciDigest::of(b"b")));
        assert!(lock.insert_url("https://example.com/a.tgz", OciDigest::of(b"a")));
        let text = lock.render();
        assert!(text.find("a.tgz").unwrap() < text.find("b.tgz").unwrap());
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        assert!(Lock::parse("url \"u\"\n").is_err());
    }
}
