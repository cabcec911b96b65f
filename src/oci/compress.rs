//! Layer compression whose bytes never depend on the number of cores.
//!
//! gzip: the stream is cut into fixed 1 MiB chunks, each deflated independently (ending in a
//! full flush, the last one finished), and the pieces concatenated into one gzip member, like
//! pigz without dictionaries. The chunking is fixed, so any thread count yields the same bytes.
//! zstd: libzstd with at least one worker, whose output is independent of the worker count.
//!
//! Invariant: the settings here are part of the output contract; golden-digest tests pin them.

use std::io::{self, Write};

use rayon::prelude::*;

const CHUNK: usize = 1 << 20;
/// Chunks compressed per parallel batch; bounds memory to about 2 × BATCH × CHUNK.
const BATCH: usize = 16;
/// gzip level 1 ("best speed", go-containerregistry's default too): on typical layers it is
/// about 4x faster than level 6 for output some 10-15% larger, and layer compression is on
/// the critical path of every cold build.
pub const GZIP_LEVEL: u32 = 1;
pub const ZSTD_LEVEL: i32 = 3;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Self::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }

    /// Guesses the compression of a blob from its first bytes.
    pub fn sniff(head: &[u8]) -> Self {
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
pub enum Compressor<W: Write + Send + 'static> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write + Send + 'static> Compressor<W> {
    pub fn new(kind: Compression, out: W) -> io::Result<Self> {
        Ok(match kind {
            Compression::Gzip => Self::Gzip(ParallelGzip::new(out)),
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

    pub fn finish(self) -> io::Result<W> {
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

/// gzip over fixed-size chunks deflated in parallel.
///
/// The caller's thread only cuts chunks (and keeps the CRC); full batches go to a compressing
/// thread, which deflates each batch's chunks on rayon's pool and writes them in order. So the
/// work that produces the data (reading files, writing the tar, hashing it) overlaps with the
/// compression instead of alternating with it.
pub struct ParallelGzip<W: Write + Send + 'static> {
    buf: Vec<u8>,
    ready: Vec<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u64,
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    worker: Option<std::thread::JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    pub fn new(out: W) -> Self {
        // One batch queued while another is compressed bounds memory to ~3 batches.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
        let worker = std::thread::spawn(move || -> io::Result<W> {
            let mut out = out;
            // Magic, deflate, no flags, mtime 0, no extra flags, OS "unknown": fixed bytes.
            out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            for (batch, last) in rx {
                let n = batch.len();
                let pieces: Vec<io::Result<Vec<u8>>> = batch
                    .par_iter()
                    .enumerate()
                    .map(|(i, chunk)| deflate_chunk(chunk, last && i + 1 == n))
                    .collect();
                for piece in pieces {
                    out.write_all(&piece?)?;
                }
            }
            Ok(out)
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

    fn join(&mut self) -> io::Result<W> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w
                .join()
                .map_err(|_| io::Error::other("the gzip thread panicked (a bug in stack)"))?,
            None => Err(io::Error::other("the gzip stream was already finished")),
        }
    }

    pub fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.buf);
        self.ready.push(rest);
        self.send(true)?;
        let mut out = self.join()?;
        let crc = self.crc.clone().finalize();
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(self.len as u32).to_le_bytes())?;
        out.flush()?;
        Ok(out)
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
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut c = Compressor::new(Compression::Gzip, Vec::new()).unwrap();
            c.write_all(data).unwrap();
            c.finish().unwrap()
        })
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() {
        let data = sample();
        let one = gz(&data, 1);
        assert_eq!(one, gz(&data, 4));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(one.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let empty = gz(&[], 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(empty.as_slice()).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
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
