//! Reads images from local files, with the transports skopeo uses: `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]` and `docker-archive:FILE[:REPO:TAG]`. Every blob is imported into
//! the store and verified against its digest; the result is normalised to an OCI manifest.
//!
//! Invariant: a local image is identified by the digest of its (normalised) manifest, which is
//! what cache keys of steps built on it depend on.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::image::ImageConfig;
use super::image::{
    DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index, LayerRef, Manifest, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST, Platform, REF_NAME, oci_layer_media_type,
};
use crate::digest::OciDigest;
use crate::store::{Store, StoreError};

/// A reference to an image in a local file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalRef {
    OciDir { path: PathBuf, tag: Option<String> },
    OciArchive { path: PathBuf, tag: Option<String> },
    DockerArchive { path: PathBuf, tag: Option<String> },
}

impl LocalRef {
    /// Parses `oci:…`, `oci-archive:…` or `docker-archive:…`; `None` for anything else.
    /// Relative paths resolve against `base`.
    pub(crate) fn parse(reference: &str, base: &Path) -> Option<Self> {
        let (transport, rest) = reference.split_once(':')?;
        let (path, tag) = match rest.split_once(':') {
            Some((p, t)) => (p, Some(t.to_owned()).filter(|t| !t.is_empty())),
            None => (rest, None),
        };
        let path = base.join(path);
        Some(match transport {
            "oci" => Self::OciDir { path, tag },
            "oci-archive" => Self::OciArchive { path, tag },
            "docker-archive" => Self::DockerArchive { path, tag },
            _ => return None,
        })
    }
}

/// An image loaded into the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub manifest_digest: OciDigest,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalImageError {
    #[error("cannot read image `{reference}`: `{}` does not exist", path.display())]
    Missing { reference: String, path: PathBuf },
    #[error("image `{reference}`: {problem}")]
    Invalid { reference: String, problem: String },
    #[error("image `{reference}`: failed to read `{}`", path.display())]
    Io {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image `{reference}`")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
}

/// Loads a local image into the store.
pub(crate) fn load(
    reference: &str,
    local: &LocalRef,
    store: &Store,
    platform: &Platform,
) -> Result<LoadedImage, LocalImageError> {
    let invalid =
        |problem: String| LocalImageError::Invalid { reference: reference.to_owned(), problem };
    let st = |source| LocalImageError::Store { reference: reference.to_owned(), source };
    match local {
        LocalRef::OciDir { path, tag } => {
            if !path.join("index.json").is_file() {
                return Err(LocalImageError::Missing {
                    reference: reference.to_owned(),
                    path: path.join("index.json"),
                });
            }
            let index_bytes =
                fs_err::read(path.join("index.json")).map_err(|source| LocalImageError::Io {
                    reference: reference.to_owned(),
                    path: path.join("index.json"),
                    source,
                })?;
            let fetch = |d: &Descriptor| -> Result<(), LocalImageError> {
                let blob = path.join("blobs").join("sha256").join(d.digest.hex());
                let mut f = fs_err::File::open(&blob).map_err(|source| LocalImageError::Io {
                    reference: reference.to_owned(),
                    path: blob.clone(),
                    source,
                })?;
                store.import_blob(&mut f, &d.digest, Some(d.size)).map_err(st)
            };
            from_index(reference, &index_bytes, tag.as_deref(), store, &fetch, platform)
        }
        LocalRef::OciArchive { path, tag } => {
            let files = import_archive(reference, path, store)?;
            let index_digest = files
                .get("index.json")
                .ok_or_else(|| invalid("the archive has no `index.json`".into()))?;
            let index_bytes = store.read_blob(index_digest).map_err(st)?;
            let fetch = |d: &Descriptor| -> Result<(), LocalImageError> {
                if store.has_blob(&d.digest) {
                    Ok(())
                } else {
                    Err(invalid(format!("blob `{}` is missing from the archive", d.digest)))
                }
            };
            from_index(reference, &index_bytes, tag.as_deref(), store, &fetch, platform)
        }
        LocalRef::DockerArchive { path, tag } => {
            let files = import_archive(reference, path, store)?;
            let manifest_digest = files
                .get("manifest.json")
                .ok_or_else(|| invalid("the archive has no `manifest.json`".into()))?;
            let bytes = store.read_blob(manifest_digest).map_err(st)?;
            let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("`manifest.json` is not valid: {e}")))?;
            let entry = match tag {
                None if entries.len() == 1 => &entries[0],
                None => {
                    return Err(invalid(format!(
                        "the archive holds {} images; name one with `docker-archive:FILE:REPO:TAG`",
                        entries.len()
                    )));
                }
                Some(t) => entries
                    .iter()
                    .find(|e| e.repo_tags.iter().any(|rt| rt == t))
                    .ok_or_else(|| invalid(format!("the archive has no image tagged `{t}`")))?,
            };
            let file = |name: &str| {
                files
                    .get(name.trim_start_matches("./"))
                    .cloned()
                    .ok_or_else(|| invalid(format!("`{name}` is missing from the archive")))
            };
            let config_digest = file(&entry.config)?;
            let config_bytes = store.read_blob(&config_digest).map_err(st)?;
            let mut layers = Vec::new();
            for name in &entry.layers {
                let d = file(name)?;
                let size = fs_err::metadata(store.blob_path(&d)).map_or(0, |m| m.len());
                let mut head = [0u8; 4];
                let n = fs_err::File::open(store.blob_path(&d))
                    .and_then(|mut f| f.read(&mut head))
                    .unwrap_or(0);
                let mt = super::compress::Compression::sniff(&head[..n]).media_type();
                layers.push(Descriptor::new(mt, d, size));
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                config: Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64),
                layers,
                annotations: None,
            };
            finish(reference, manifest, &config_bytes, store)
        }
    }
}

#[derive(serde::Deserialize)]
struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Imports every regular file of an archive into the store; returns name → digest.
fn import_archive(
    reference: &str,
    path: &Path,
    store: &Store,
) -> Result<BTreeMap<String, OciDigest>, LocalImageError> {
    let io_err = |source| LocalImageError::Io {
        reference: reference.to_owned(),
        path: path.to_owned(),
        source,
    };
    if !path.is_file() {
        return Err(LocalImageError::Missing {
            reference: reference.to_owned(),
            path: path.to_owned(),
        });
    }
    let file = fs_err::File::open(path).map_err(io_err)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name =
            entry.path().map_err(io_err)?.to_string_lossy().trim_start_matches("./").to_owned();
        // Stream into a temp file while hashing, then commit under the computed digest.
        let mut tmp = store
            .temp_file()
            .map_err(|source| LocalImageError::Store { reference: reference.to_owned(), source })?;
        let mut hasher = crate::digest::Sha256Writer::default();
        let mut tee = TeeWriter { a: &mut hasher, b: tmp.as_file_mut() };
        std::io::copy(&mut entry, &mut tee).map_err(io_err)?;
        let digest = hasher.finish();
        if let Some(hex) = name.strip_prefix("blobs/sha256/")
            && hex != digest.hex()
        {
            return Err(LocalImageError::Invalid {
                reference: reference.to_owned(),
                problem: format!("blob `{name}` hashes to `{digest}`"),
            });
        }
        store
            .commit_blob(tmp, &digest)
            .map_err(|source| LocalImageError::Store { reference: reference.to_owned(), source })?;
        files.insert(name, digest);
    }
    Ok(files)
}

struct TeeWriter<'a, A: std::io::Write, B: std::io::Write> {
    a: &'a mut A,
    b: &'a mut B,
}

impl<A: std::io::Write, B: std::io::Write> std::io::Write for TeeWriter<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.write_all(buf)?;
        self.b.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.b.flush()
    }
}

fn from_index(
    reference: &str,
    index_bytes: &[u8],
    tag: Option<&str>,
    store: &Store,
    fetch: &dyn Fn(&Descriptor) -> Result<(), LocalImageError>,
    platform: &Platform,
) -> Result<LoadedImage, LocalImageError> {
    let invalid =
        |problem: String| LocalImageError::Invalid { reference: reference.to_owned(), problem };
    let st = |source| LocalImageError::Store { reference: reference.to_owned(), source };
    let index: Index = serde_json::from_slice(index_bytes)
        .map_err(|e| invalid(format!("`index.json` is not a valid OCI index: {e}")))?;
    let names = |i: &Index| {
        i.manifests
            .iter()
            .filter_map(|m| m.annotations.as_ref()?.get(REF_NAME).cloned())
            .collect::<Vec<_>>()
            .join("`, `")
    };
    let named = |t: &str| Index {
        manifests: index
            .manifests
            .iter()
            .filter(|m| {
                m.annotations.as_ref().and_then(|a| a.get(REF_NAME)).is_some_and(|n| n == t)
            })
            .cloned()
            .collect(),
        ..index.clone()
    };
    let picked;
    let desc = match tag {
        // Some tools write one entry per platform under the same name.
        Some(t) => {
            let same_name = named(t);
            picked = match same_name.manifests.as_slice() {
                [] => {
                    return Err(invalid(format!(
                        "no image is named `{t}` (names: `{}`)",
                        names(&index)
                    )));
                }
                [one] => one.clone(),
                _ => crate::oci::platform::pick_platform(&same_name, platform)
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!(
                            "`{t}` has no image for {platform}; it has {}",
                            crate::oci::platform::offered(&same_name)
                        ))
                    })?,
            };
            &picked
        }
        None if index.manifests.len() == 1 => &index.manifests[0],
        None if index.manifests.is_empty() => {
            return Err(invalid("the layout holds no image".into()));
        }
        None => {
            return Err(invalid(format!(
                "the layout holds {} images; add `:NAME` (names: `{}`)",
                index.manifests.len(),
                names(&index)
            )));
        }
    };
    let mut desc = desc.clone();
    // Follow nested indexes down to the manifest for this platform.
    for _ in 0..4 {
        if desc.media_type != OCI_INDEX && desc.media_type != DOCKER_LIST {
            break;
        }
        fetch(&desc)?;
        let nested: Index = serde_json::from_slice(&store.read_blob(&desc.digest).map_err(st)?)
            .map_err(|e| invalid(format!("index `{}` is not valid: {e}", desc.digest)))?;
        let unlabelled = nested.manifests.iter().find(|m| m.platform.is_none());
        desc = crate::oci::platform::pick_platform(&nested, platform)
            .or(unlabelled)
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "index `{}` has no image for {platform}; it has {}",
                    desc.digest,
                    crate::oci::platform::offered(&nested)
                ))
            })?;
    }
    if desc.media_type != OCI_MANIFEST && desc.media_type != DOCKER_MANIFEST {
        return Err(invalid(format!(
            "`{}` is a `{}`, not an image manifest",
            desc.digest, desc.media_type
        )));
    }
    fetch(&desc)?;
    let manifest: Manifest = serde_json::from_slice(&store.read_blob(&desc.digest).map_err(st)?)
        .map_err(|e| invalid(format!("manifest `{}` is not valid: {e}", desc.digest)))?;
    fetch(&manifest.config)?;
    for layer in &manifest.layers {
        fetch(layer)?;
    }
    let config_bytes = store.read_blob(&manifest.config.digest).map_err(st)?;
    finish(reference, manifest, &config_bytes, store)
}

/// Normalises media types to OCI, pairs layers with diff ids, and stores the manifest.
fn finish(
    reference: &str,
    manifest: Manifest,
    config_bytes: &[u8],
    store: &Store,
) -> Result<LoadedImage, LocalImageError> {
    let (config, layers, bytes) = normalize(manifest, config_bytes)
        .map_err(|problem| LocalImageError::Invalid { reference: reference.to_owned(), problem })?;
    let manifest_digest = store
        .put_blob(&bytes)
        .map_err(|source| LocalImageError::Store { reference: reference.to_owned(), source })?;
    Ok(LoadedImage { manifest_digest, config, layers })
}

/// Normalises an image however it was obtained (local file, registry): OCI media types, each
/// layer paired with the config's diff id. Returns the config, the layers and the canonical
/// bytes of the normalised manifest (whose digest identifies the image); `Err` says what is
/// wrong.
pub(crate) fn normalize(
    mut manifest: Manifest,
    config_bytes: &[u8],
) -> Result<(ImageConfig, Vec<LayerRef>, Vec<u8>), String> {
    let config: serde_json::Value = serde_json::from_slice(config_bytes)
        .map_err(|e| format!("config `{}` is not valid JSON: {e}", manifest.config.digest))?;
    let serde_json::Value::Object(config) = config else {
        return Err(format!("config `{}` is not a JSON object", manifest.config.digest));
    };
    let config = ImageConfig(config);
    let diff_ids: Vec<OciDigest> = config
        .0
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| d.as_array())
        .ok_or_else(|| "the config has no `rootfs.diff_ids`".to_owned())?
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or("")
                .parse::<OciDigest>()
                .map_err(|e| format!("bad diff id in the config: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "the manifest has {} layers but the config lists {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        ));
    }
    manifest.media_type = Some(OCI_MANIFEST.into());
    manifest.config.media_type = OCI_CONFIG.into();
    for layer in &mut manifest.layers {
        layer.media_type = oci_layer_media_type(&layer.media_type)
            .ok_or_else(|| {
                format!(
                    "layer `{}` has unsupported media type `{}`",
                    layer.digest, layer.media_type
                )
            })?
            .to_owned();
    }
    let layers = diff_ids
        .into_iter()
        .zip(manifest.layers.iter().cloned())
        .map(|(diff_id, blob)| LayerRef { diff_id, blob })
        .collect();
    Ok((config, layers, crate::json::to_canonical(&manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports_like_skopeo() {
        let base = Path::new("/ctx");
        assert_eq!(
            LocalRef::parse("oci:out:app", base),
            Some(LocalRef::OciDir { path: "/ctx/out".into(), tag: Some("app".into()) })
        );
        assert_eq!(
            LocalRef::parse("oci:/abs/dir", base),
            Some(LocalRef::OciDir { path: "/abs/dir".into(), tag: None })
        );
        assert_eq!(
            LocalRef::parse("docker-archive:x.tar:repo/a:1", base),
            Some(LocalRef::DockerArchive {
                path: "/ctx/x.tar".into(),
                tag: Some("repo/a:1".into())
            })
        );
        assert_eq!(LocalRef::parse("alpine:3.20", base), None);
    }
}
