//! OCI image-spec document types: descriptors, manifests, indexes, and the image config (kept
//! as JSON so fields stack does not know, e.g. from a base image, pass through untouched).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::OciDigest;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: OciDigest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: OciDigest, size: u64) -> Self {
        Self { media_type: media_type.to_owned(), digest, size, annotations: None, platform: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One layer of an image: its uncompressed digest and its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: OciDigest,
    pub blob: Descriptor,
}

/// Maps Docker media types to their OCI equivalents (the bytes are the same).
pub(crate) fn oci_layer_media_type(mt: &str) -> Option<&'static str> {
    Some(match mt {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar"
        }
        _ => return None,
    })
}

/// The image config: a JSON object, edited through typed helpers.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig(pub Map<String, Value>);

impl ImageConfig {
    /// The config of an empty image for this host (what `from "scratch"` starts with).
    pub fn scratch() -> Self {
        Self::scratch_for(&Platform::host())
    }

    /// The config of an empty image for `platform`.
    pub fn scratch_for(platform: &Platform) -> Self {
        let mut m = Map::new();
        m.insert("architecture".into(), Value::String(platform.architecture.clone()));
        m.insert("os".into(), Value::String(platform.os.clone()));
        // As in the index entry (and Docker Hub's arm64 images): `arm64` carries `v8`.
        if let Some(v) = &platform.variant {
            m.insert("variant".into(), Value::String(v.clone()));
        }
        let mut c = Map::new();
        // Like BuildKit, an empty image still gets a PATH so that later steps find programs.
        c.insert("Env".into(), Value::Array(vec![Value::String(format!("PATH={DEFAULT_PATH}"))]));
        // BuildKit's empty image starts in `/` too.
        c.insert("WorkingDir".into(), Value::String("/".into()));
        m.insert("config".into(), Value::Object(c));
        m.insert("rootfs".into(), serde_json::json!({"type": "layers", "diff_ids": []}));
        Self(m)
    }

    /// The `config` object, created when missing.
    pub fn config_mut(&mut self) -> &mut Map<String, Value> {
        let v = self.0.entry("config").or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("made an object above")
    }

    pub fn config(&self) -> Option<&Map<String, Value>> {
        self.0.get("config").and_then(Value::as_object)
    }

    /// The environment as `(name, value)` pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv, String::new()),
            })
            .collect()
    }

    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env().into_iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets one variable, replacing it in place when present (Docker's order).
    pub fn set_env(&mut self, name: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => value.clone_into(&mut slot.1),
            None => env.push((name.to_owned(), value.to_owned())),
        }
        let list = env.into_iter().map(|(k, v)| Value::String(format!("{k}={v}"))).collect();
        self.config_mut().insert("Env".into(), Value::Array(list));
    }

    /// A string-list field of `config` (`Cmd`, `Entrypoint`, `Shell`, `Env`).
    pub fn strings(&self, field: &str) -> Vec<String> {
        self.config()
            .and_then(|c| c.get(field))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    pub fn set_strings(&mut self, field: &str, values: &[String]) {
        let list = values.iter().cloned().map(Value::String).collect();
        self.config_mut().insert(field.into(), Value::Array(list));
    }

    pub fn string(&self, field: &str) -> Option<String> {
        self.config().and_then(|c| c.get(field)).and_then(Value::as_str).map(str::to_owned)
    }

    pub fn set_string(&mut self, field: &str, value: &str) {
        self.config_mut().insert(field.into(), Value::String(value.to_owned()));
    }

    /// Adds a key to a set-like object field (`ExposedPorts`, `Volumes`).
    pub fn add_to_set(&mut self, field: &str, key: &str) {
        let v = self.config_mut().entry(field).or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("object").insert(key.to_owned(), Value::Object(Map::new()));
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        let v = self.config_mut().entry("Labels").or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("object").insert(key.to_owned(), Value::String(value.to_owned()));
    }

    pub fn architecture(&self) -> String {
        self.0.get("architecture").and_then(Value::as_str).unwrap_or("amd64").to_owned()
    }

    pub fn os(&self) -> String {
        self.0.get("os").and_then(Value::as_str).unwrap_or("linux").to_owned()
    }

    /// The history entries of the config.
    pub fn history(&self) -> Vec<Value> {
        self.0.get("history").and_then(Value::as_array).cloned().unwrap_or_default()
    }
}

/// `BuildKit`'s default `PATH` for Linux images.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI architecture name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// Formats seconds since the epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Reads an RFC 3339 time in UTC as [`rfc3339`] writes it (`2023-11-14T22:13:20Z`, fractions
/// of a second ignored); `None` for other forms.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let whole_seconds = time.split('.').next()?;
    let numbers = |part: &str, sep: char| -> Option<Vec<i64>> {
        part.split(sep).map(|n| n.parse::<i64>().ok()).collect()
    };
    let (ymd, hms) = (numbers(date, '-')?, numbers(whole_seconds, ':')?);
    let ([year, month, day], [hour, minute, second]) = (ymd.as_slice(), hms.as_slice()) else {
        return None;
    };
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of `rfc3339`'s.
    let year = if *month <= 2 { year - 1 } else { *year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (if *month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A built image, with all its blobs in the store: one platform's manifest, published as an
/// index (`index`) when it has several platforms or attestations.
#[derive(Debug, Clone)]
pub(crate) struct BuiltImage {
    pub name: String,
    pub tags: Vec<String>,
    /// The image manifest (the first platform's, for a multi-platform image).
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The platform the manifest is for.
    pub platform: Platform,
    /// Each platform's image, in the order the build asked for them (empty for one platform).
    pub platforms: Vec<BuiltImage>,
    /// The index its tags name, holding every platform's manifest and the attestation
    /// manifests (see [`super::index`]); `None` for a plain single-platform image.
    pub index: Option<AttachedIndex>,
}

/// An image index a built image is published as, and the manifests it lists.
#[derive(Debug, Clone)]
pub(crate) struct AttachedIndex {
    pub descriptor: Descriptor,
    pub children: Vec<super::index::Child>,
}

impl BuiltImage {
    /// What its tags name: the index when it has one, else the image manifest.
    pub(crate) fn top(&self) -> &Descriptor {
        self.index.as_ref().map_or(&self.manifest, |i| &i.descriptor)
    }

    /// Every blob a copy of the image holds: config, layers, manifest, and with an index every
    /// manifest it lists, their blobs and the index (each once).
    pub(crate) fn all_blobs(&self) -> Vec<Descriptor> {
        let mut v = self.blobs();
        v.push(self.manifest.clone());
        for c in self.children() {
            v.extend(c.blobs);
            v.push(c.manifest);
        }
        if let Some(i) = &self.index {
            v.push(i.descriptor.clone());
        }
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|d| seen.insert(d.digest.clone()));
        v
    }

    /// Every manifest below [`Self::top`] (none without an index) with the blobs each refers
    /// to, platform manifests first.
    pub(crate) fn children(&self) -> Vec<super::index::Child> {
        self.index.as_ref().map(|i| i.children.clone()).unwrap_or_default()
    }

    /// Config and layers: every blob the manifest refers to.
    pub(crate) fn blobs(&self) -> Vec<Descriptor> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }

    /// The digest that names the image: its index's for several platforms, else its
    /// manifest's (the subject of its attestations, when it has an index for them only).
    pub(crate) fn digest(&self) -> &crate::digest::OciDigest {
        if self.is_multi_platform() { &self.top().digest } else { &self.manifest.digest }
    }

    /// Whether it is built for several platforms.
    pub(crate) fn is_multi_platform(&self) -> bool {
        !self.platforms.is_empty()
    }

    /// Each platform's image: the platforms of a multi-platform image, else itself.
    pub(crate) fn parts(&self) -> Vec<&BuiltImage> {
        if self.platforms.is_empty() { vec![self] } else { self.platforms.iter().collect() }
    }

    /// Its manifest's descriptor as an index lists it (with the platform).
    pub(crate) fn platform_manifest(&self) -> Descriptor {
        Descriptor { platform: Some(self.platform.clone()), ..self.manifest.clone() }
    }
}

/// Groups single-platform images of the same name into one multi-platform image each (in
/// the order the names first appear), published as an index; an image built for one platform
/// stays a plain manifest.
pub(crate) fn group_platforms(
    images: Vec<BuiltImage>,
    store: &crate::store::Store,
) -> Result<Vec<BuiltImage>, crate::store::StoreError> {
    let mut groups: Vec<Vec<BuiltImage>> = Vec::new();
    for image in images {
        match groups.iter_mut().find(|g| g[0].name == image.name) {
            Some(g) => g.push(image),
            None => groups.push(vec![image]),
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                return Ok(g.remove(0));
            }
            let first = g[0].clone();
            let mut image = BuiltImage { platforms: g, ..first };
            image.index = Some(index_of(&image, &[], store)?);
            Ok(image)
        })
        .collect()
}

/// The index of `image`'s platforms with the attestation statements of each (`statements[i]`
/// for part `i`; missing ones are none), its documents stored.
pub(crate) fn index_of(
    image: &BuiltImage,
    statements: &[Vec<super::index::Statement>],
    store: &crate::store::Store,
) -> Result<AttachedIndex, crate::store::StoreError> {
    let platforms: Vec<super::index::PlatformImage> = image
        .parts()
        .iter()
        .enumerate()
        .map(|(i, p)| super::index::PlatformImage {
            manifest: p.platform_manifest(),
            blobs: p.blobs(),
            statements: statements.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let assembled = super::index::assemble(&platforms);
    for (_, bytes) in &assembled.documents {
        store.put_blob(bytes)?;
    }
    Ok(AttachedIndex { descriptor: assembled.index, children: assembled.children })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dates_it_writes() {
        for t in [0, 1_700_000_000, 951_782_400, 1_714_979_289, -86_400] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2024-05-06T07:08:09.123456Z"), Some(1_714_979_289));
        assert_eq!(parse_rfc3339("2024-05-06 07:08:09"), None);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn env_replaces_in_place() {
        let mut c = ImageConfig::scratch();
        c.set_env("A", "1");
        c.set_env("PATH", "/bin");
        assert_eq!(c.strings("Env"), ["PATH=/bin", "A=1"]);
    }
}
