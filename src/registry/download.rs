//! Downloads for `add "https://…"`: the file goes into the store as a blob (sha256), and a
//! `url` record remembers its `ETag` and `Last-Modified`, so the next build asks the server
//! only whether it changed (a 304 costs no transfer). With a checksum whose blob is already
//! stored, there is no request at all.
//!
//! Invariant: a blob is used only if its sha256 equals the checksum when one is given; the
//! record is written only after the blob is in place.

use std::io::{Read, Write};

use super::Client;
use crate::digest::{Digest, OciDigest, Sha256Writer};
use crate::store::Store;

/// What the store remembers about a URL.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct UrlRecord {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: OciDigest,
    size: u64,
}

/// Why a file could not be downloaded into the store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    /// The request itself failed (TLS, refused, interrupted…).
    #[error(transparent)]
    Request(#[from] super::client::GetError),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("its content has digest `{got}`, not the checksum `{expected}`")]
    Checksum { got: OciDigest, expected: OciDigest },
    #[error("the download broke off")]
    BrokeOff(#[source] std::io::Error),
    #[error("cannot write the download")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Returns the blob (digest, size) holding the file at `url`, fetching it when needed.
pub(crate) fn fetch_to_store(
    client: &Client,
    store: &Store,
    url: &str,
    checksum: Option<&OciDigest>,
) -> Result<(OciDigest, u64), DownloadError> {
    if let Some(d) = checksum
        && let Ok(md) = fs_err::metadata(store.blob_path(d))
    {
        return Ok((d.clone(), md.len()));
    }
    let key = Digest::of(url.as_bytes());
    let known: Option<UrlRecord> = store
        .get_record("url", &key)
        .ok()
        .flatten()
        .filter(|r: &UrlRecord| r.url == url && store.has_blob(&r.digest));
    let mut headers = Vec::new();
    if let Some(k) = &known {
        if let Some(e) = &k.etag {
            headers.push(("If-None-Match", e.clone()));
        }
        if let Some(m) = &k.last_modified {
            headers.push(("If-Modified-Since", m.clone()));
        }
    }
    let deadline = client.download_deadline();
    let resp = client.get_url(url, &headers).map_err(DownloadError::Request)?;
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (etag, last_modified) = (header("etag"), header("last-modified"));
    let record = match (status, known) {
        (304, Some(k)) => k,
        (200..=299, _) => {
            let (digest, size) =
                write_blob(store, deadline.reader(resp.into_body().into_reader()))?;
            UrlRecord { url: url.to_owned(), etag, last_modified, digest, size }
        }
        _ => return Err(DownloadError::Status(status)),
    };
    if let Some(expected) = checksum
        && &record.digest != expected
    {
        return Err(DownloadError::Checksum { got: record.digest, expected: expected.clone() });
    }
    store.put_record("url", &key, &record)?;
    Ok((record.digest, record.size))
}

/// Streams a body into the store, hashing it on the way.
fn write_blob(store: &Store, mut body: impl Read) -> Result<(OciDigest, u64), DownloadError> {
    let mut tmp = store.temp_file()?;
    let mut hasher = Sha256Writer::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DownloadError::BrokeOff(e)),
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(DownloadError::Write)?;
    }
    let size = hasher.len();
    let digest = hasher.finish();
    store.commit_blob(tmp, &digest)?;
    Ok((digest, size))
}
