//! Layer compression whose bytes never depend on the number of cores.
//!
//! gzip: the stream is cut into fixed 1 MiB chunks, each deflated independently (ending in a
//! full flush, the last one finished), and the pieces concatenated into one gzip member, like
//! pigz without dictionaries. The chunking is fixed, so any thread count yields the same bytes.
//! zstd: libzstd with at least one worker, whose output is independent of the worker count.
//!
//! Invariant: the settings here are part of the output contract; golden-digest tests pin them.

use std::io::{self, Write};

const CHUNK: usize = 1 << 20;
/// Chunks compressed per parallel batch; bounds memory to about 2 × BATCH × CHUNK.
const BATCH: usize = 16;
/// gzip level 1 ("best speed", go-containerregistry's default too): on typical layers it is
/// about 4x faster than level 6 for output some 10-15% larger, and layer compression is on
/// the critical path of every cold build.
pub(crate) const GZIP_LEVEL: u32 = 1;
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Self::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }

    /// Guesses the compression of a blob from its first bytes.
    pub(crate) fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// A writer that compresses into `W`.
pub(crate) enum Compressor<W: Write + Send + 'static> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write + Send + 'static> Compressor<W> {
    #[cfg(test)]
    pub(crate) fn new(kind: Compression, out: W) -> io::Result<Self> {
        Self::with_reuse(kind, out, None)
    }

    /// Like [`Compressor::new`]; gzip reuses pieces of an earlier blob where it can.
    pub(crate) fn with_reuse(kind: Compression, out: W, reuse: Option<Reuse>) -> io::Result<Self> {
        Ok(match kind {
            Compression::Gzip => Self::Gzip(ParallelGzip::with_reuse(out, reuse)),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                // Any worker count ≥ 1 gives the same bytes; 0 (single-threaded mode) differs.
                let workers =
                    std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u32;
                enc.multithread(workers)?;
                enc.include_checksum(false)?;
                enc.include_contentsize(false)?;
                Self::Zstd(enc)
            }
            Compression::None => Self::None(out),
        })
    }

    /// Finishes the stream; gzip also gives its chunk table (for later reuse).
    pub(crate) fn finish_with_table(self) -> io::Result<(W, Option<ChunkTable>)> {
        match self {
            Self::Gzip(g) => g.finish_with_table().map(|(w, t, _)| (w, Some(t))),
            other => other.finish().map(|w| (w, None)),
        }
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Self::Gzip(g) => g.finish(),
            Self::Zstd(z) => z.finish(),
            Self::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(g) => g.write(buf),
            Self::Zstd(z) => z.write(buf),
            Self::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A batch of chunks for the compressing thread, and whether it ends the stream.
type Batch = (Vec<Vec<u8>>, bool);

/// Names the deflate implementation and settings. Pieces are reused from an earlier blob only
/// when its table carries the same id, so a reused piece is always the exact bytes a fresh
/// deflate would give. Change it with `GZIP_LEVEL` or the deflate backend (the golden-digest
/// test fails when the backend's output changes).
pub(crate) const GZIP_ID: &str = "stack-gzip-v1/zlib-rs/level-1/1MiB";

/// One non-final chunk of a gzip blob: the blake3 of its uncompressed bytes, and where its
/// compressed piece sits in the blob (with the piece's blake3, checked before reuse).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChunkEntry {
    pub chunk: String,
    pub offset: u64,
    pub len: u64,
    pub piece: String,
}

/// The chunk table of a gzip blob, kept so a later layer of the same step can reuse the
/// compressed pieces of unchanged stretches instead of deflating them again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChunkTable {
    pub id: String,
    pub chunks: Vec<ChunkEntry>,
}

/// Where reusable pieces come from: an earlier blob and its table.
pub(crate) struct Reuse {
    pub blob: std::path::PathBuf,
    pub table: ChunkTable,
}

/// What the compressing thread needs to reuse pieces, and what it learns.
struct Pieces {
    reuse: Option<(std::fs::File, std::collections::HashMap<String, (u64, u64, String)>)>,
    table: Vec<ChunkEntry>,
    offset: u64,
    reused: usize,
}

impl Pieces {
    fn new(reuse: Option<Reuse>) -> Self {
        let reuse = reuse.filter(|r| r.table.id == GZIP_ID).and_then(|r| {
            let file = fs_err::File::open(&r.blob).ok()?.into_file();
            let map =
                r.table.chunks.into_iter().map(|c| (c.chunk, (c.offset, c.len, c.piece))).collect();
            Some((file, map))
        });
        Self { reuse, table: Vec::new(), offset: 10, reused: 0 }
    }

    /// The compressed piece of a non-final chunk from the earlier blob, when it is there and
    /// intact.
    fn lookup(&self, chunk_hash: &str) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let (file, map) = self.reuse.as_ref()?;
        let (offset, len, piece_hash) = map.get(chunk_hash)?;
        let mut piece = vec![0u8; usize::try_from(*len).ok()?];
        file.read_exact_at(&mut piece, *offset).ok()?;
        (blake3::hash(&piece).to_hex().as_str() == piece_hash).then_some(piece)
    }
}

/// gzip over fixed-size chunks deflated in parallel.
///
/// The caller's thread only cuts chunks (and keeps the CRC); full batches go to a compressing
/// thread, which deflates each batch's chunks on rayon's pool and writes them in order. So the
/// work that produces the data (reading files, writing the tar, hashing it) overlaps with the
/// compression instead of alternating with it. Chunks whose bytes an earlier blob of the same
/// step already compressed are copied from it instead (see [`Reuse`]).
pub(crate) struct ParallelGzip<W: Write + Send + 'static> {
    buf: Vec<u8>,
    ready: Vec<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u64,
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    worker: Option<std::thread::JoinHandle<io::Result<(W, Pieces)>>>,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    #[cfg(test)]
    pub(crate) fn new(out: W) -> Self {
        Self::with_reuse(out, None)
    }

    pub(crate) fn with_reuse(out: W, reuse: Option<Reuse>) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with_workers(out, reuse, workers)
    }

    /// Like [`ParallelGzip::with_reuse`] with a given number of compressing threads (which
    /// never changes the output bytes).
    pub(crate) fn with_workers(out: W, reuse: Option<Reuse>, workers: usize) -> Self {
        // One batch queued while another is compressed bounds memory to ~3 batches.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
        let worker = std::thread::spawn(move || -> io::Result<(W, Pieces)> {
            let mut out = out;
            let mut pieces_state = Pieces::new(reuse);
            // Magic, deflate, no flags, mtime 0, no extra flags, OS "unknown": fixed bytes.
            out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            for (batch, last) in rx {
                let n = batch.len();
                let state = &pieces_state;
                let one = |i: usize| -> io::Result<(Vec<u8>, Option<String>, bool)> {
                    let chunk = &batch[i];
                    if last && i + 1 == n {
                        return deflate_chunk(chunk, true).map(|p| (p, None, false));
                    }
                    let hash = blake3::hash(chunk).to_hex().to_string();
                    match state.lookup(&hash) {
                        Some(piece) => Ok((piece, Some(hash), true)),
                        None => deflate_chunk(chunk, false).map(|p| (p, Some(hash), false)),
                    }
                };
                let pieces = in_parallel(workers, n, &one);
                for piece in pieces {
                    let (piece, hash, reused) = piece?;
                    if let Some(chunk) = hash {
                        pieces_state.table.push(ChunkEntry {
                            chunk,
                            offset: pieces_state.offset,
                            len: piece.len() as u64,
                            piece: blake3::hash(&piece).to_hex().to_string(),
                        });
                    }
                    pieces_state.reused += usize::from(reused);
                    pieces_state.offset += piece.len() as u64;
                    out.write_all(&piece)?;
                }
            }
            Ok((out, pieces_state))
        });
        Self {
            buf: Vec::with_capacity(CHUNK),
            ready: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let batch = std::mem::take(&mut self.ready);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send((batch, last)).is_ok());
        if sent {
            Ok(())
        } else {
            // The compressing thread stopped: report why.
            Err(self.join().err().unwrap_or_else(|| io::Error::other("the gzip thread stopped")))
        }
    }

    fn join(&mut self) -> io::Result<(W, Pieces)> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w
                .join()
                .map_err(|_| io::Error::other("the gzip thread panicked (a bug in stack)"))?,
            None => Err(io::Error::other("the gzip stream was already finished")),
        }
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        self.finish_with_table().map(|(w, _, _)| w)
    }

    /// Finishes the stream; also returns its chunk table and how many pieces were reused.
    pub(crate) fn finish_with_table(mut self) -> io::Result<(W, ChunkTable, usize)> {
        let rest = std::mem::take(&mut self.buf);
        self.ready.push(rest);
        self.send(true)?;
        let (mut out, pieces) = self.join()?;
        let crc = self.crc.clone().finalize();
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(self.len as u32).to_le_bytes())?;
        out.flush()?;
        Ok((out, ChunkTable { id: GZIP_ID.to_owned(), chunks: pieces.table }, pieces.reused))
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.crc.update(data);
        self.len += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
                self.ready.push(full);
                if self.ready.len() == BATCH {
                    self.send(false)?;
                }
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f(0..n)` on one scoped thread per core and returns the results in order. Plain
/// threads rather than rayon: rayon's idle workers spin (`sched_yield`) after each batch, and
/// on two cores that steals the time the tar-writing thread needs.
fn in_parallel<T: Send>(workers: usize, n: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let workers = workers.min(n).max(1);
    if workers == 1 {
        return (0..n).map(f).collect();
    }
    let mut out: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || (w..n).step_by(workers).map(|i| (i, f(i))).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a gzip worker panicked (a bug in stack)"))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Raw-deflates one chunk; a non-final chunk ends on a byte boundary (full flush) so the pieces
/// concatenate into one valid stream.
fn deflate_chunk(chunk: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    let flush = if last { flate2::FlushCompress::Finish } else { flate2::FlushCompress::Full };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(chunk.len() / 4 + 1024);
        }
        let status =
            c.compress_vec(&chunk[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == chunk.len();
        match status {
            flate2::Status::StreamEnd => break,
            _ if done_input && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..3_500_000u32).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut g = ParallelGzip::with_workers(Vec::new(), None, threads);
        g.write_all(data).unwrap();
        g.finish().unwrap()
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() {
        let data = sample();
        let one = gz(&data, 1);
        assert_eq!(one, gz(&data, 2));
        assert_eq!(one, gz(&data, 7));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(one.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let empty = gz(&[], 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(empty.as_slice()).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn reused_pieces_give_the_same_bytes_as_fresh_compression() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample();
        let mut g = ParallelGzip::new(Vec::new());
        g.write_all(&data).unwrap();
        let (first, table, reused) = g.finish_with_table().unwrap();
        assert_eq!(reused, 0);
        assert_eq!(table.chunks.len(), 3, "three full chunks before the final one");
        let blob = dir.path().join("blob");
        fs_err::write(&blob, &first).unwrap();
        // Change the end of the stream: the first chunks are unchanged.
        let mut changed = data.clone();
        let n = changed.len();
        changed[n - 10] ^= 1;
        let fresh = gz(&changed, 2);
        let mut g = ParallelGzip::with_reuse(
            Vec::new(),
            Some(Reuse { blob: blob.clone(), table: table.clone() }),
        );
        g.write_all(&changed).unwrap();
        let (reusing, _, reused) = g.finish_with_table().unwrap();
        assert_eq!(reused, 3);
        assert_eq!(reusing, fresh, "reuse must not change a single byte");
        // A corrupt earlier blob is never trusted.
        let mut bad = first.clone();
        bad[20] ^= 0xff;
        fs_err::write(&blob, &bad).unwrap();
        let mut g = ParallelGzip::with_reuse(
            Vec::new(),
            Some(Reuse { blob: blob.clone(), table: table.clone() }),
        );
        g.write_all(&changed).unwrap();
        let (out, _, reused) = g.finish_with_table().unwrap();
        assert_eq!(reused, 2);
        assert_eq!(out, fresh);
        // Another compressor id: nothing is reused.
        let mut other = table;
        other.id = "something else".into();
        let mut g = ParallelGzip::with_reuse(Vec::new(), Some(Reuse { blob, table: other }));
        g.write_all(&changed).unwrap();
        assert_eq!(g.finish_with_table().unwrap().2, 0);
    }

    #[test]
    fn compressed_bytes_are_pinned() {
        // A changed digest here means a dependency changed the output bytes of every layer.
        let data = sample();
        let gzip = crate::digest::OciDigest::of(&gz(&data, 2));
        let mut z = Compressor::new(Compression::Zstd, Vec::new()).unwrap();
        z.write_all(&data).unwrap();
        let zstd = crate::digest::OciDigest::of(&z.finish().unwrap());
        insta::assert_snapshot!(format!("gzip {gzip}\nzstd {zstd}"));
    }
}
