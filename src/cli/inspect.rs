//! `stack images` and `stack inspect`: what an OCI layout holds, read from its index, manifests
//! and configs (every blob checked against its digest), so a build's result can be looked at
//! without other tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::args::{ImagesArgs, InspectArgs};
use super::cache::human;
use super::{Failure, fail};
use crate::digest::{OciDigest, Sha256Writer};
use crate::oci::compress::Compression;
use crate::oci::image::{Descriptor, Index, Manifest, OCI_INDEX, REF_NAME};

/// An OCI image layout folder opened for reading.
pub(super) struct Layout {
    dir: PathBuf,
    index: Index,
}

/// One image of a layout: its manifest descriptor and every name that points at it.
struct Named {
    names: Vec<String>,
    manifest: Descriptor,
}

impl Layout {
    pub(super) fn open(dir: &Path) -> Result<Self, Failure> {
        let path = dir.join("index.json");
        if !dir.join("oci-layout").is_file() || !path.is_file() {
            return Err(fail(
                format!("`{}` is not an OCI image layout", dir.display()),
                Some(
                    "build into it first (`stack build --out DIR`), or name the layout with `--from DIR`",
                ),
            ));
        }
        let index: Index = serde_json::from_slice(&fs_err::read(&path)?)
            .map_err(|e| fail(format!("`{}` is not an OCI index: {e}", path.display()), None))?;
        Ok(Self { dir: dir.to_owned(), index })
    }

    fn blob_path(&self, digest: &OciDigest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// A (small) blob's bytes, verified against its digest.
    fn blob(&self, digest: &OciDigest) -> Result<Vec<u8>, Failure> {
        let path = self.blob_path(digest);
        let bytes = fs_err::read(&path)?;
        if OciDigest::of(&bytes) != *digest {
            return Err(fail(format!("blob `{}` does not match its digest", path.display()), None));
        }
        Ok(bytes)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, d: &Descriptor) -> Result<T, Failure> {
        serde_json::from_slice(&self.blob(&d.digest)?)
            .map_err(|e| fail(format!("`{}` is not valid JSON of its kind: {e}", d.digest), None))
    }

    /// The names of the index, one entry per manifest, in the index's order.
    fn images(&self) -> Vec<Named> {
        let mut out: Vec<Named> = Vec::new();
        for d in &self.index.manifests {
            let name = d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned();
            match out.iter_mut().find(|n| n.manifest.digest == d.digest) {
                Some(n) => n.names.extend(name),
                None => out.push(Named { names: name.into_iter().collect(), manifest: d.clone() }),
            }
        }
        for n in &mut out {
            // The image's own name (no registry, no tag) before its tags.
            n.names.sort_by_key(|x| (x.contains([':', '/']), x.clone()));
        }
        out
    }

    /// The image manifest `desc` stands for: itself, or for an index (an image with
    /// attestations) the manifest of this machine's platform, else its first image manifest.
    pub(super) fn image_manifest(&self, desc: &Descriptor) -> Result<Descriptor, Failure> {
        if desc.media_type != OCI_INDEX {
            return Ok(desc.clone());
        }
        let index: Index = self.json(desc)?;
        let images: Vec<&Descriptor> =
            index.manifests.iter().filter(|d| !crate::oci::index::is_attestation(d)).collect();
        let host = crate::oci::image::host_arch();
        images
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.architecture == host))
            .or(images.first())
            .map(|d| (*d).clone())
            .ok_or_else(|| fail(format!("index `{}` lists no image manifest", desc.digest), None))
    }

    /// The attached in-toto statement of `predicate_type` about the image `desc` (an index
    /// with an attestation manifest) stands for, if it has one.
    pub(super) fn statement(
        &self,
        desc: &Descriptor,
        predicate_type: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        if desc.media_type != OCI_INDEX {
            return Ok(None);
        }
        let image = self.image_manifest(desc)?;
        let index: Index = self.json(desc)?;
        let about = |d: &&Descriptor| {
            crate::oci::index::is_attestation(d)
                && d.annotations.as_ref().and_then(|a| a.get(crate::oci::index::REFERENCE_DIGEST))
                    == Some(&image.digest.to_string())
        };
        let Some(att) = index.manifests.iter().find(about) else { return Ok(None) };
        let manifest: Manifest = self.json(att)?;
        let layer = manifest.layers.iter().find(|l| {
            l.annotations
                .as_ref()
                .and_then(|a| a.get(crate::oci::index::PREDICATE_TYPE))
                .is_some_and(|t| t == predicate_type)
        });
        layer.map(|l| self.blob(&l.digest)).transpose()
    }

    /// The manifest named `name`; the error lists the names there are.
    pub(super) fn find(&self, name: &str) -> Result<Descriptor, Failure> {
        let names: Vec<String> = self.images().into_iter().flat_map(|n| n.names).collect();
        self.index
            .manifests
            .iter()
            .find(|m| {
                m.annotations.as_ref().and_then(|a| a.get(REF_NAME)).is_some_and(|n| n == name)
            })
            .cloned()
            .ok_or_else(|| {
                let hint = if names.is_empty() {
                    "the layout holds no named image".to_owned()
                } else {
                    format!("the names in it: {}", names.join(", "))
                };
                fail(format!("`{}` has no image named `{name}`", self.dir.display()), Some(&hint))
            })
    }
}

/// What `images` and `inspect` say about one image.
struct Summary {
    names: Vec<String>,
    digest: OciDigest,
    manifest: Manifest,
    config: Value,
    /// Manifest, config and layers: what pulling the image transfers.
    size: u64,
}

fn summarize(layout: &Layout, names: Vec<String>, desc: &Descriptor) -> Result<Summary, Failure> {
    let desc = &layout.image_manifest(desc)?;
    let manifest: Manifest = layout.json(desc)?;
    let config: Value = layout.json(&manifest.config)?;
    let size =
        desc.size + manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(Summary { names, digest: desc.digest.clone(), manifest, config, size })
}

fn platform(config: &Value) -> String {
    let s = |k: &str| config[k].as_str().unwrap_or("?").to_owned();
    match config["variant"].as_str() {
        Some(v) => format!("{}/{}/{v}", s("os"), s("architecture")),
        None => format!("{}/{}", s("os"), s("architecture")),
    }
}

/// `stack images`: one line per image of the layout.
pub(super) fn images(args: &ImagesArgs) -> Result<(), Failure> {
    let layout = Layout::open(&args.layout)?;
    let mut rows = Vec::new();
    for n in layout.images() {
        rows.push(summarize(&layout, n.names, &n.manifest)?);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "names": r.names,
                    "digest": r.digest.to_string(),
                    "size": r.size,
                    "layers": r.manifest.layers.len(),
                    "created": r.config["created"],
                    "platform": platform(&r.config),
                })
            })
            .collect();
        writeln!(out, "{}", Value::Array(v))?;
        return Ok(());
    }
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.names.join(", "),
                r.digest.to_string(),
                human(r.size),
                r.manifest.layers.len().to_string(),
                platform(&r.config),
            ]
        })
        .collect();
    write_table(&mut out, ["NAMES", "DIGEST", "SIZE", "LAYERS", "PLATFORM"], &table)?;
    Ok(())
}

/// Writes rows under a header, columns padded to their widest cell.
pub(super) fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `stack inspect NAME`: the image's configuration and layers, or its files.
pub(super) fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let layout = Layout::open(&args.layout)?;
    let desc = layout.find(&args.name)?;
    let names = layout
        .images()
        .into_iter()
        .find(|n| n.manifest.digest == desc.digest)
        .map(|n| n.names)
        .unwrap_or_default();
    let s = summarize(&layout, names, &desc)?;
    let mut out = std::io::stdout().lock();
    if let Some(path) = &args.cat {
        let rel = crate::paths::normalize(path).unwrap_or_default();
        let (_, content) = image_files(&layout, &s.manifest, Some(&rel))?;
        let Some(content) = content else {
            return Err(fail(
                format!("image `{}` has no regular file `{path}`", args.name),
                Some("list its files with `stack inspect NAME --files`"),
            ));
        };
        out.write_all(&content)?;
        return Ok(());
    }
    if args.files {
        let (files, _) = image_files(&layout, &s.manifest, None)?;
        if args.json {
            let v: Vec<Value> = files.iter().map(|(p, f)| f.to_json(p)).collect();
            writeln!(out, "{}", Value::Array(v))?;
        } else {
            for (p, f) in &files {
                writeln!(out, "{}", f.line(p))?;
            }
        }
        return Ok(());
    }
    if args.json {
        let v = json!({
            "names": s.names,
            "digest": s.digest.to_string(),
            "size": s.size,
            "manifest": s.manifest,
            "config": s.config,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default())?;
        return Ok(());
    }
    write_summary(&mut out, &s)?;
    Ok(())
}

fn write_summary(out: &mut dyn Write, s: &Summary) -> std::io::Result<()> {
    let c = &s.config["config"];
    let strings = |v: &Value| -> Option<String> {
        let items: Vec<String> =
            v.as_array()?.iter().filter_map(|x| x.as_str()).map(|x| format!("{x:?}")).collect();
        Some(format!("[{}]", items.join(", ")))
    };
    let keys = |v: &Value| -> Option<String> {
        let o = v.as_object().filter(|o| !o.is_empty())?;
        Some(o.keys().cloned().collect::<Vec<_>>().join(", "))
    };
    writeln!(out, "names:       {}", s.names.join(", "))?;
    writeln!(out, "digest:      {}", s.digest)?;
    writeln!(out, "platform:    {}", platform(&s.config))?;
    writeln!(out, "created:     {}", s.config["created"].as_str().unwrap_or("?"))?;
    writeln!(out, "size:        {} (compressed, with config and manifest)", human(s.size))?;
    let fields: [(&str, Option<String>); 7] = [
        ("user", c["User"].as_str().filter(|u| !u.is_empty()).map(str::to_owned)),
        ("workdir", c["WorkingDir"].as_str().filter(|u| !u.is_empty()).map(str::to_owned)),
        ("entrypoint", strings(&c["Entrypoint"])),
        ("cmd", strings(&c["Cmd"])),
        ("ports", keys(&c["ExposedPorts"])),
        ("volumes", keys(&c["Volumes"])),
        ("stopsignal", c["StopSignal"].as_str().map(str::to_owned)),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            writeln!(out, "{:<12} {v}", format!("{k}:"))?;
        }
    }
    let list = |out: &mut dyn Write, title: &str, v: &Value| -> std::io::Result<()> {
        let items: Vec<String> = match v {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Value::Object(o) => {
                o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect()
            }
            _ => Vec::new(),
        };
        if !items.is_empty() {
            writeln!(out, "{title}:")?;
            for i in items {
                writeln!(out, "  {i}")?;
            }
        }
        Ok(())
    };
    list(out, "env", &c["Env"])?;
    list(out, "labels", &c["Labels"])?;
    // History entries pair with layers in order, skipping the empty ones.
    let history: Vec<&Value> = s.config["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["empty_layer"] != Value::Bool(true)).collect())
        .unwrap_or_default();
    writeln!(out, "layers:")?;
    for (i, l) in s.manifest.layers.iter().enumerate() {
        let by = history.get(i).and_then(|h| h["created_by"].as_str()).unwrap_or("");
        let kind = l.media_type.rsplit_once('+').map_or("tar", |(_, c)| c);
        writeln!(out, "  {}  {:>10}  {kind:<4}  {by}", l.digest, human(l.size))?;
    }
    Ok(())
}

/// A reader that hashes what passes through.
struct Verified<R> {
    inner: R,
    hasher: Sha256Writer,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A file of the image, as its layers leave it.
struct FileInfo {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    link: Option<String>,
}

impl FileInfo {
    fn line(&self, path: &str) -> String {
        let mut s = format!(
            "{}{:04o} {:>5}:{:<5} {:>9}  /{path}",
            self.kind, self.mode, self.uid, self.gid, self.size
        );
        if let Some(l) = &self.link {
            let _ = write!(s, " -> {l}");
        }
        s
    }

    fn to_json(&self, path: &str) -> Value {
        json!({
            "path": format!("/{path}"),
            "type": match self.kind { 'd' => "dir", 'l' => "symlink", 'h' => "hardlink", '-' => "file", _ => "other" },
            "mode": format!("{:04o}", self.mode),
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "link": self.link,
        })
    }
}

/// Applies the layers in order (with whiteouts) and lists what is left, sorted by path.
/// With `cat`, also the content of that file (its last version).
fn image_files(
    layout: &Layout,
    manifest: &Manifest,
    cat: Option<&str>,
) -> Result<(BTreeMap<String, FileInfo>, Option<Vec<u8>>), Failure> {
    let mut files: BTreeMap<String, FileInfo> = BTreeMap::new();
    let mut catted = None;
    for l in &manifest.layers {
        let bad = |e: std::io::Error| {
            fail(format!("layer `{}` is not a readable tar: {e}", l.digest), None)
        };
        // Layers can be large: streamed, and hashed on the way (checked once read).
        let path = layout.blob_path(&l.digest);
        let file = fs_err::File::open(&path)?;
        let mut blob =
            std::io::BufReader::new(Verified { inner: file, hasher: Sha256Writer::default() });
        let compression = match l.media_type.rsplit_once('+').map(|(_, c)| c) {
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            _ => Compression::sniff(std::io::BufRead::fill_buf(&mut blob).map_err(bad)?),
        };
        let reader = crate::oci::extract::decompress(&mut blob, compression).map_err(bad)?;
        let mut ar = tar::Archive::new(reader);
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let path = e
                .path()
                .map_err(bad)?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            if path.is_empty() || path == "." {
                continue;
            }
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if base == ".wh..wh..opq" {
                crate::paths::remove_below(&mut files, dir);
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone =
                    if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                files.remove(&gone);
                crate::paths::remove_below(&mut files, &gone);
                continue;
            }
            let h = e.header();
            let t = h.entry_type();
            let kind = if t.is_dir() {
                'd'
            } else if t.is_symlink() {
                'l'
            } else if t.is_hard_link() {
                'h'
            } else if t.is_file() {
                '-'
            } else {
                '?'
            };
            let info = FileInfo {
                kind,
                mode: h.mode().unwrap_or(0) & 0o7777,
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                size: if kind == '-' { e.size() } else { 0 },
                link: e.link_name().ok().flatten().map(|p| p.to_string_lossy().into_owned()),
            };
            if kind != 'd' {
                // A file replaces a folder of the same name, with everything below it.
                crate::paths::remove_below(&mut files, &path);
            }
            if kind == '-' && cat.is_some_and(|c| c == path) {
                let mut content = Vec::new();
                e.read_to_end(&mut content).map_err(bad)?;
                catted = Some(content);
            }
            files.insert(path, info);
        }
        drop(ar);
        std::io::copy(&mut blob, &mut std::io::sink()).map_err(bad)?;
        if blob.into_inner().hasher.finish() != l.digest {
            return Err(fail(format!("blob `{}` does not match its digest", path.display()), None));
        }
    }
    // A file whiteout-deleted or replaced after its last version is gone.
    let catted =
        catted.filter(|_| cat.is_some_and(|c| files.get(c).is_some_and(|f| f.kind == '-')));
    Ok((files, catted))
}
