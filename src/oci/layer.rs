//! The in-memory description of one layer's changes, shared by every producer of layers
//! (`copy` from the context, `copy` from a stage, the RUN sandbox's upper dir) and the one
//! deterministic tar writer.
//!
//! Invariant: an [`Entry`] path is relative to the root, `/`-separated, normalised (no `.`,
//! `..`, empty components, leading or trailing `/`); the writer never sees anything else.

use std::path::PathBuf;

/// One change in a layer: a file system object to create, or a deletion. Serialisable so the
/// sandbox helper can send its changes back over a pipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Relative, normalised path, e.g. `usr/bin/env`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch; the writer clamps it to `SOURCE_DATE_EPOCH`.
    pub mtime: i64,
    /// Extended attributes, sorted by name, e.g. `security.capability`.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// What kind of object an [`Entry`] is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntryKind {
    /// A regular file whose bytes are read from `source` when the tar is written.
    File {
        source: PathBuf,
        size: u64,
    },
    /// A regular file of the build context: opened as `rel` beneath `root` without following
    /// symlinks, and its bytes checked against `blake3`, the hash the step's key was computed
    /// over, while the tar is written (a file changed since planning fails the step rather than
    /// storing new content under the old key).
    ContextFile {
        root: PathBuf,
        rel: String,
        size: u64,
        blake3: [u8; 32],
    },
    /// A regular file whose bytes are held in memory (generated files, small inline content).
    Inline {
        content: Vec<u8>,
    },
    /// A directory; `opaque` hides everything below it in lower layers (`.wh..wh..opq`).
    Dir {
        opaque: bool,
    },
    Symlink {
        target: String,
    },
    /// A hard link to another path (relative, normalised) of the same layer.
    Hardlink {
        target: String,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// Deletes the path from lower layers (`.wh.NAME`).
    Whiteout,
}
