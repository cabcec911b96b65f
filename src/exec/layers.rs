//! Producing layers: materialising stored layers as trees, turning `copy`, `file` and
//! `workdir` steps into layer entries, and writing entries as a compressed, content-addressed
//! layer blob.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use globset::GlobBuilder;

use super::view::View;
use crate::context::{FileKind, Selected, open};
use crate::digest::{OciDigest, Sha256Writer};
use crate::oci::compress::{ChunkTable, Compression, Compressor, Reuse};
use crate::oci::extract::{self, IndexKind, LayerIndex};
use crate::oci::image::{Descriptor, LayerRef};
use crate::oci::layer::{Entry, EntryKind};
use crate::oci::tar_writer::{self, add_missing_parents};
use crate::plan::{CopyOp, CopySource, FileOp, RemoteFile};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    #[error(transparent)]
    Tar(#[from] tar_writer::TarWriteError),
    #[error("failed to read layer `{layer}`")]
    Read {
        layer: OciDigest,
        #[source]
        source: io::Error,
    },
    /// A `chown` the step's file system cannot resolve.
    #[error("{0}")]
    Owner(String),
    /// A file or folder a layer is made from could not be read.
    #[error("cannot read `{}`", path.display())]
    ReadInput {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A context file differs from the one planning hashed.
    #[error("file `{}` changed during the build", path.display())]
    Changed { path: PathBuf },
    /// A local archive an `add` unpacks is broken.
    #[error("cannot unpack `{name}`")]
    Unpack {
        name: String,
        #[source]
        source: extract::ExtractError,
    },
    /// The files of an unpacked layer could not be moved into the folder asked for.
    #[error("cannot move the files of layer `{layer}` into `{}`", dir.display())]
    PlaceUnpacked {
        layer: OciDigest,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{pattern}` is not a valid pattern")]
    BadPattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("`{pattern}` matches nothing in the source stage")]
    NoMatch { pattern: String },
    #[error("`/{path}` has a symlink loop in the source stage")]
    SymlinkLoop { path: String },
    #[error("`/{path}` does not exist in the source stage")]
    NotInStage { path: String },
    /// A stored layer re-encoded to a tar that is not the one recorded.
    #[error("its tar has digest `{actual}`, not the recorded `{expected}`")]
    DiffIdMismatch { actual: OciDigest, expected: OciDigest },
}

/// The files of `dir` as one layer in the store (`None` when it is empty): how a cache mount
/// travels. Times are clamped to the epoch 0, so the same files give the same blob.
pub(crate) fn folder_layer(
    store: &Store,
    dir: &Path,
    compression: Compression,
) -> Result<Option<LayerRef>, LayerError> {
    let entries = super::sandbox::folder_entries(dir)
        .map_err(|source| LayerError::ReadInput { path: dir.to_owned(), source })?;
    if entries.is_empty() {
        return Ok(None);
    }
    write_layer(store, &entries, 0, compression, None).map(Some)
}

/// Unpacks layer `layer` (whose blob the store has or fetches) into the empty folder `dir`,
/// safely: nothing lands outside it.
pub(crate) fn unpack_into(store: &Store, layer: &LayerRef, dir: &Path) -> Result<(), LayerError> {
    let tmp = store.temp_dir("mount-")?;
    let blob = store.open_blob(&layer.blob.digest)?;
    let mut reader = extract::decompress(blob, media_compression(&layer.blob.media_type))
        .map_err(|source| LayerError::Read { layer: layer.blob.digest.clone(), source })?;
    extract::extract(&mut reader, &layer.blob.digest, Some(&layer.diff_id), tmp.path())?;
    let tree = tmp.path().join("tree");
    let place = |source| LayerError::PlaceUnpacked {
        layer: layer.blob.digest.clone(),
        dir: dir.to_owned(),
        source,
    };
    for item in fs_err::read_dir(&tree).map_err(place)? {
        let item = item.map_err(place)?;
        fs_err::rename(item.path(), dir.join(item.file_name())).map_err(place)?;
    }
    Ok(())
}

/// Ensures a layer is extracted in the store; returns its index and tree folder.
pub(crate) fn materialize(
    store: &Store,
    layer: &LayerRef,
) -> Result<(LayerIndex, PathBuf), LayerError> {
    let dir = store.layer_dir(&layer.diff_id);
    if let Ok(index) = extract::read_index(&dir) {
        return Ok((index, dir.join("tree")));
    }
    let tmp = store.temp_dir("layer-")?;
    let blob = store.open_blob(&layer.blob.digest)?;
    let mut reader = extract::decompress(blob, media_compression(&layer.blob.media_type))
        .map_err(|source| LayerError::Read { layer: layer.blob.digest.clone(), source })?;
    let index =
        extract::extract(&mut reader, &layer.blob.digest, Some(&layer.diff_id), tmp.path())?;
    let dir = store.commit_layer_dir(tmp, &layer.diff_id)?;
    Ok((index, dir.join("tree")))
}

/// The merged view of a stack of layers (extracting what is not yet extracted).
pub(crate) fn view_of(store: &Store, layers: &[LayerRef]) -> Result<View, LayerError> {
    let mut parts = Vec::with_capacity(layers.len());
    for l in layers {
        parts.push(materialize(store, l)?);
    }
    Ok(View::new(&parts))
}

/// Folders that hold the files of unpacked archives until the layer is written; removed
/// when dropped (they live in the store's `tmp/`, so a crash leaves them to the next build).
#[derive(Debug, Default)]
pub(crate) struct Scratch(Vec<tempfile::TempDir>);

/// Entries for a `copy`/`add` step onto the file system `target`. Archives that `add`
/// unpacks go into folders that `scratch` keeps until the layer is written.
pub(crate) fn copy_entries(
    op: &CopyOp,
    target: &View,
    source_view: Option<&View>,
    epoch: i64,
    (store, scratch): (&Store, &mut Scratch),
) -> Result<Vec<Entry>, LayerError> {
    let path = op.dest.trim_start_matches('/');
    let owner = match &op.chown {
        Some(spec) => Some(target.resolve_owner(spec).map_err(LayerError::Owner)?),
        None => None,
    };
    let dest = Dest { path, is_dir: op.dest_is_dir || target.is_dir(path) };
    let Copied { mut entries, dest_dirs } = match &op.source {
        CopySource::Context { selected, sources } => {
            let add = op.add.then_some((store, scratch));
            copy_from_context(selected, sources, op.parents, &dest, epoch, add)?
        }
        CopySource::Remote { files } => copy_downloads(files, &dest, epoch),
        CopySource::Node { paths, .. } => {
            let src = source_view.expect("copy from a node comes with that node's view");
            copy_from_stage(paths, src, &dest)?
        }
    };
    for e in &mut entries {
        if let Some((uid, gid)) = owner {
            e.uid = uid;
            e.gid = gid;
        }
        if let Some(mode) = op.chmod
            && !matches!(e.kind, EntryKind::Symlink { .. })
        {
            e.mode = mode;
        }
    }
    // The destination folder of a folder copy exists even when the folder was empty.
    for d in dest_dirs {
        if !d.is_empty() && !entries.iter().any(|e| e.path == d) {
            let (mode, uid, gid, mtime) = existing_dir(target, &d).unwrap_or((
                0o755,
                owner.map_or(0, |o| o.0),
                owner.map_or(0, |o| o.1),
                epoch,
            ));
            entries.push(Entry {
                path: d,
                kind: EntryKind::Dir { opaque: false },
                mode,
                uid,
                gid,
                mtime,
                xattrs: Vec::new(),
            });
        }
    }
    finish_entries(entries, target, epoch, owner.unwrap_or((0, 0)))
}

/// Where a `copy` puts what it copies.
struct Dest<'a> {
    /// Relative to the root.
    path: &'a str,
    /// Whether files go into it (it is a folder, or the step says so with a trailing `/`)
    /// rather than become it.
    is_dir: bool,
}

impl Dest<'_> {
    /// The path a file named `name` is copied to.
    fn file(&self, name: &str) -> String {
        if self.is_dir { join(self.path, name) } else { self.path.to_owned() }
    }
}

/// What a `copy` source gives: its entries, and the folders that must exist even when
/// nothing was copied into them.
#[derive(Default)]
struct Copied {
    entries: Vec<Entry>,
    dest_dirs: Vec<String>,
}

/// The context files `selected` (one list per source path in `sources`) under `dest`; with
/// `add`, local archives are unpacked into folders of `scratch` instead.
fn copy_from_context(
    selected: &[Vec<Selected>],
    sources: &[String],
    parents: bool,
    dest: &Dest<'_>,
    epoch: i64,
    mut add: Option<(&Store, &mut Scratch)>,
) -> Result<Copied, LayerError> {
    let mut out = Copied::default();
    for (items, source) in selected.iter().zip(sources) {
        for item in items {
            let base = if parents {
                // `parents=#true` keeps the source's own path under the destination.
                join(dest.path, source)
            } else if item.is_dir {
                dest.path.to_owned()
            } else {
                dest.file(&item.name)
            };
            if item.is_dir {
                out.dest_dirs.push(base.clone());
            }
            if let Some((store, scratch)) = add.as_mut()
                && !item.is_dir
                && let Some((entries, dir)) = unpack_if_archive(item, dest.path, epoch, store)?
            {
                out.entries.extend(entries);
                scratch.0.push(dir);
                continue;
            }
            context_entries(item, &base, epoch, &mut out.entries);
        }
    }
    Ok(out)
}

/// The files an `add` downloaded, under `dest`.
fn copy_downloads(files: &[(String, RemoteFile)], dest: &Dest<'_>, epoch: i64) -> Copied {
    let entries = files
        .iter()
        .map(|(name, file)| Entry {
            path: dest.file(name),
            kind: EntryKind::File { source: file.path.clone(), size: file.size },
            // Like BuildKit, a downloaded file is private (0600) unless `chmod` says
            // otherwise; its time is the build's, as for context files.
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: epoch,
            xattrs: Vec::new(),
        })
        .collect();
    Copied { entries, dest_dirs: Vec::new() }
}

/// The paths of another stage's file system `src` that `patterns` name, under `dest`.
fn copy_from_stage(patterns: &[String], src: &View, dest: &Dest<'_>) -> Result<Copied, LayerError> {
    let mut out = Copied::default();
    for pattern in patterns {
        for m in stage_matches(pattern, src)? {
            let resolved =
                src.resolve(&m, true).ok_or_else(|| LayerError::SymlinkLoop { path: m.clone() })?;
            let Some(e) = src.get(&resolved).cloned() else {
                if resolved.is_empty() {
                    copy_tree(src, "", dest.path, &mut out.entries);
                    out.dest_dirs.push(dest.path.to_owned());
                    continue;
                }
                return Err(LayerError::NotInStage { path: m });
            };
            if e.is_dir() {
                out.dest_dirs.push(dest.path.to_owned());
                copy_tree(src, &resolved, dest.path, &mut out.entries);
            } else {
                let mut entry = src.entry(&resolved, &e);
                entry.path = dest.file(m.rsplit('/').next().unwrap_or(""));
                out.entries.push(entry);
            }
        }
    }
    Ok(out)
}

/// The paths of `src` that `pattern` names: those its glob matches, or the path itself.
fn stage_matches(pattern: &str, src: &View) -> Result<Vec<String>, LayerError> {
    let rel = pattern.trim_start_matches('/');
    let matches: Vec<String> = if rel.contains(['*', '?', '[']) {
        let glob = GlobBuilder::new(rel)
            .literal_separator(true)
            .build()
            .map_err(|source| LayerError::BadPattern { pattern: pattern.to_owned(), source })?
            .compile_matcher();
        src.paths().filter(|p| glob.is_match(p.as_str())).cloned().collect()
    } else {
        vec![rel.to_owned()]
    };
    if matches.is_empty() {
        return Err(LayerError::NoMatch { pattern: pattern.to_owned() });
    }
    Ok(matches)
}

fn existing_dir(view: &View, path: &str) -> Option<(u32, u32, u32, i64)> {
    let e = view.get(path)?;
    e.is_dir().then_some((e.mode, e.uid, e.gid, e.mtime))
}

/// Dedupes by path (last wins), adds missing parents with their existing metadata; folders
/// that do not exist yet are created `0755` and owned by `owner`, as `BuildKit` creates them
/// for `COPY --chown` and for `WORKDIR` under `USER`.
fn finish_entries(
    out: Vec<Entry>,
    target: &View,
    epoch: i64,
    owner: (u32, u32),
) -> Result<Vec<Entry>, LayerError> {
    let mut by_path: std::collections::BTreeMap<String, Entry> = std::collections::BTreeMap::new();
    for e in out {
        if e.path.is_empty() {
            continue;
        }
        by_path.insert(e.path.clone(), e);
    }
    let mut entries: Vec<Entry> = by_path.into_values().collect();
    add_missing_parents(&mut entries, &|p| {
        existing_dir(target, p).or(Some((0o755, owner.0, owner.1, epoch)))
    });
    Ok(entries)
}

fn copy_tree(src: &View, from: &str, dest: &str, out: &mut Vec<Entry>) {
    for (rel, e) in src.below(from) {
        let full = if from.is_empty() { rel.clone() } else { format!("{from}/{rel}") };
        let mut entry = src.entry(&full, e);
        if e.kind == IndexKind::OpaqueDir {
            entry.kind = EntryKind::Dir { opaque: false };
        }
        entry.path = join(dest, &rel);
        out.push(entry);
    }
}

fn context_entries(item: &Selected, base: &str, epoch: i64, out: &mut Vec<Entry>) {
    for (rel, meta) in &item.entries {
        let path = if rel.is_empty() { base.to_owned() } else { join(base, rel) };
        let kind = match meta.kind {
            FileKind::File => EntryKind::ContextFile {
                root: item.root.clone(),
                rel: meta.rel.clone(),
                size: meta.size,
                blake3: meta.hash.expect("planning hashes every regular file").0,
            },
            FileKind::Dir => EntryKind::Dir { opaque: false },
            FileKind::Symlink => {
                EntryKind::Symlink { target: meta.link.clone().unwrap_or_default() }
            }
            FileKind::Fifo => EntryKind::Fifo,
            FileKind::CharDevice { major, minor } => EntryKind::CharDevice { major, minor },
            FileKind::BlockDevice { major, minor } => EntryKind::BlockDevice { major, minor },
        };
        // Context files belong to root and carry the build's timestamp, so that a checkout's
        // owners and mtimes never reach the image.
        out.push(Entry {
            path,
            kind,
            mode: meta.mode,
            uid: 0,
            gid: 0,
            mtime: epoch,
            xattrs: Vec::new(),
        });
    }
}

/// How an `add` source is compressed; `BuildKit` tells by the content, whatever the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Codec {
    fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            [b'B', b'Z', b'h', ..] => Self::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Self::Xz,
            _ => Self::Plain,
        }
    }

    /// `reader` with this compression undone.
    fn decode<'a>(self, reader: impl io::Read + 'a) -> io::Result<Box<dyn io::Read + 'a>> {
        let reader = io::BufReader::new(reader);
        Ok(match self {
            Codec::Plain => Box::new(reader),
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
            Codec::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
            Codec::Xz => Box::new(lzma_rust2::XzReader::new(reader, true)),
        })
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut dyn io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when `block` is a tar header: its checksum (the byte sum with the checksum field
/// read as spaces) matches. That is what makes Go's `tar.Reader` accept a first entry.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .skip_while(|c| *c == ' ')
        .take_while(char::is_ascii_digit)
        .collect();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else { return false };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    sum == stored
}

/// `add` of a local archive: its entries land under the destination folder; `None` when the
/// file is not an archive (it is then copied as it is). An archive is a file that, once any
/// compression (gzip, zstd, bzip2, xz) is undone, starts with a tar header, as `BuildKit`
/// decides; a gzip of a plain file is not one. The file is read once, through a descriptor
/// opened beneath the context root, and must hash to what planning saw.
fn unpack_if_archive(
    item: &Selected,
    dest: &str,
    epoch: i64,
    store: &Store,
) -> Result<Option<(Vec<Entry>, tempfile::TempDir)>, LayerError> {
    let Some((_, meta)) = item.entries.first().filter(|(_, m)| m.kind == FileKind::File) else {
        return Ok(None);
    };
    let changed = || LayerError::Changed { path: meta.abs.clone() };
    let read_err = |source: io::Error| LayerError::ReadInput { path: meta.abs.clone(), source };
    let file = open::open_beneath(&item.root, &meta.rel).map_err(|_| changed())?;
    let mut source = open::HashingReader::new(file);
    let mut head = [0u8; 6];
    let n = read_full(&mut source, &mut head).map_err(read_err)?;
    let codec = Codec::sniff(&head[..n]);
    let digest = OciDigest::of(meta.abs.to_string_lossy().as_bytes());
    let scratch = store.temp_dir("add-")?;
    let unpacked = {
        let whole = io::Cursor::new(head[..n].to_vec()).chain(&mut source);
        // A stream that does not decode, or does not start with a tar header, is no archive.
        let mut block = [0u8; 512];
        match codec.decode(whole) {
            Ok(mut decoded) => {
                let full = read_full(&mut decoded, &mut block).is_ok_and(|k| k == 512);
                (full && is_tar_header(&block)).then(|| {
                    let mut tar = io::Cursor::new(block.to_vec()).chain(decoded);
                    extract::extract(&mut tar, &digest, None, scratch.path())
                        .map_err(|e| LayerError::Unpack { name: item.name.clone(), source: e })
                })
            }
            Err(_) => None,
        }
    };
    // Whatever follows the archive's end still counts towards the file's hash; a file that
    // changed is reported as such even when the change broke the archive.
    io::copy(&mut source, &mut io::sink()).map_err(read_err)?;
    if source.count() != meta.size || Some(source.digest()) != meta.hash {
        return Err(changed());
    }
    let Some(unpacked) = unpacked else { return Ok(None) };
    let index = unpacked?;
    let tree = scratch.path().join("tree");
    let mut out = Vec::new();
    for (path, e) in &index {
        if e.kind == IndexKind::Whiteout {
            continue;
        }
        let mut entry = e.to_entry(path, &tree);
        if let EntryKind::Hardlink { target } = &entry.kind {
            entry.kind = EntryKind::Hardlink { target: join(dest, target) };
        }
        entry.path = join(dest, path);
        entry.mtime = entry.mtime.min(epoch);
        out.push(entry);
    }
    order_hardlinks(&mut out);
    Ok(Some((out, scratch)))
}

/// Makes the first path (in the layer's sorted order) of every hard-link group the file and
/// the others links to it: an archive may name a link before its target sorts, and a layer
/// tar is written sorted, where a link must follow the file it names.
fn order_hardlinks(entries: &mut [Entry]) {
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::Hardlink { target } = &e.kind {
            groups.entry(target.clone()).or_default().push(i);
        }
    }
    for (target, links) in groups {
        let Some(file) = entries.iter().position(|e| e.path == target) else { continue };
        let Some(&first) = links.iter().min_by(|a, b| entries[**a].path.cmp(&entries[**b].path))
        else {
            continue;
        };
        if entries[first].path > entries[file].path {
            continue;
        }
        let new_target = entries[first].path.clone();
        let file_entry = entries[file].clone();
        entries[first] = Entry { path: new_target.clone(), ..file_entry };
        entries[file].kind = EntryKind::Hardlink { target: new_target.clone() };
        for &i in &links {
            if i != first {
                entries[i].kind = EntryKind::Hardlink { target: new_target.clone() };
            }
        }
    }
}

/// Entries for a `file` step.
pub(crate) fn file_entries(
    op: &FileOp,
    target: &View,
    epoch: i64,
) -> Result<Vec<Entry>, LayerError> {
    let (uid, gid) = match &op.chown {
        Some(spec) => target.resolve_owner(spec).map_err(LayerError::Owner)?,
        None => (0, 0),
    };
    let path = op.path.trim_start_matches('/').to_owned();
    let e = Entry {
        path,
        kind: EntryKind::Inline { content: op.content.clone() },
        mode: op.chmod,
        uid,
        gid,
        mtime: epoch,
        xattrs: Vec::new(),
    };
    finish_entries(vec![e], target, epoch, (uid, gid))
}

/// Entries for a `workdir` step: nothing when the folder exists.
pub(crate) fn workdir_entries(
    path: &str,
    user: &str,
    target: &View,
    epoch: i64,
) -> Result<Vec<Entry>, LayerError> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || target.is_dir(rel) {
        return Ok(Vec::new());
    }
    let (uid, gid) =
        if user.is_empty() { (0, 0) } else { target.resolve_owner(user).unwrap_or((0, 0)) };
    let e = Entry {
        path: rel.to_owned(),
        kind: EntryKind::Dir { opaque: false },
        mode: 0o755,
        uid,
        gid,
        mtime: epoch,
        xattrs: Vec::new(),
    };
    finish_entries(vec![e], target, epoch, (uid, gid))
}

fn join(dir: &str, name: &str) -> String {
    let name = name.trim_start_matches('/');
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

/// The record key of a gzip blob's chunk table.
fn chunk_table_key(blob: &OciDigest) -> crate::digest::Digest {
    crate::digest::Digest::of(blob.to_string().as_bytes())
}

/// Counts and hashes what passes through.
struct HashTee<W: Write> {
    inner: W,
    hasher: Sha256Writer,
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes entries as a layer blob in the store. `previous` is the layer this step made last
/// time (if any): gzip copies the compressed pieces of unchanged stretches from it.
pub(crate) fn write_layer(
    store: &Store,
    entries: &[Entry],
    epoch: i64,
    compression: Compression,
    previous: Option<&LayerRef>,
) -> Result<LayerRef, LayerError> {
    let reuse = previous.filter(|_| compression == Compression::Gzip).and_then(|p| {
        let table =
            store.get_record::<ChunkTable>("gzchunks", &chunk_table_key(&p.blob.digest)).ok()??;
        Some(Reuse { blob: store.blob_path(&p.blob.digest), table })
    });
    store_tar(store, compression, reuse, None, |tar| {
        tar_writer::write_tar(entries, epoch, tar)?;
        Ok(())
    })
}

/// Re-encodes a stored layer in another compression: the blob is decompressed and compressed
/// again, so the tar (and the diff id) stays the same and the new blob is byte for byte what
/// building the step with `compression` gives. Fails when the tar's digest is not `diff_id`.
pub(crate) fn recompress(
    store: &Store,
    layer: &LayerRef,
    compression: Compression,
) -> Result<LayerRef, LayerError> {
    let read_err =
        |source: io::Error| LayerError::Read { layer: layer.blob.digest.clone(), source };
    let source = store.open_blob(&layer.blob.digest)?;
    let mut reader =
        extract::decompress(source, media_compression(&layer.blob.media_type)).map_err(read_err)?;
    store_tar(store, compression, None, Some(&layer.diff_id), |tar| {
        io::copy(&mut reader, tar).map(drop).map_err(read_err)
    })
    .map_err(|e| match e {
        e @ LayerError::DiffIdMismatch { .. } => {
            read_err(io::Error::new(io::ErrorKind::InvalidData, e))
        }
        other => other,
    })
}

/// The one road from a layer's tar to a blob in the store: `fill` writes the tar, which is
/// hashed (the diff id) and compressed (reusing `reuse`'s gzip pieces), the blob hashed and
/// committed, and its gzip chunk table recorded. With `expected`, a tar of another digest is
/// refused before anything is committed.
fn store_tar(
    store: &Store,
    compression: Compression,
    reuse: Option<Reuse>,
    expected: Option<&OciDigest>,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), LayerError>,
) -> Result<LayerRef, LayerError> {
    let tmp = store.temp_file()?;
    let tmp_path = tmp.path().to_owned();
    let werr = |source: io::Error| {
        LayerError::Store(StoreError::Io {
            action: "write layer to",
            path: tmp_path.clone(),
            source,
        })
    };
    // An owned handle: the compressor writes from its own thread.
    let file = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone().map_err(werr)?);
    let blob = HashTee { inner: file, hasher: Sha256Writer::default() };
    let compressor = Compressor::with_reuse(compression, blob, reuse).map_err(werr)?;
    let mut diff = HashTee { inner: compressor, hasher: Sha256Writer::default() };
    fill(&mut diff)?;
    let HashTee { inner: compressor, hasher: diff_hasher } = diff;
    let (mut blob, table) = compressor.finish_with_table().map_err(werr)?;
    blob.flush().map_err(werr)?;
    let diff_id = diff_hasher.finish();
    if let Some(expected) = expected
        && diff_id != *expected
    {
        return Err(LayerError::DiffIdMismatch { actual: diff_id, expected: expected.clone() });
    }
    let size = blob.hasher.len();
    let blob_digest = blob.hasher.finish();
    store.commit_blob(tmp, &blob_digest)?;
    if let Some(table) = table {
        // Best effort: a lost table only means the next change of this step compresses all.
        let _ = store.put_record("gzchunks", &chunk_table_key(&blob_digest), &table);
    }
    Ok(LayerRef { diff_id, blob: Descriptor::new(compression.media_type(), blob_digest, size) })
}

/// The compression a layer media type names (`…+gzip`, `…+zstd`, else none).
fn media_compression(media_type: &str) -> Compression {
    match media_type.rsplit_once('+').map(|(_, c)| c) {
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::error_chain;

    /// What copying `pattern` from an empty stage fails with.
    fn copy_error(pattern: &str) -> String {
        let dest = Dest { path: "app", is_dir: true };
        let Err(e) = copy_from_stage(&[pattern.to_owned()], &View::new(&[]), &dest) else {
            panic!("copying `{pattern}` from an empty stage succeeded");
        };
        error_chain(&e)
    }

    #[test]
    fn a_stage_copy_names_what_it_could_not_find() {
        assert_eq!(copy_error("/*.txt"), "`/*.txt` matches nothing in the source stage");
        assert_eq!(copy_error("/nope"), "`/nope` does not exist in the source stage");
        assert!(copy_error("/a[").starts_with("`/a[` is not a valid pattern: "));
    }
}
