//! The snapshot file: what `snapshots/current` holds, what travels to a lagging follower and
//! what a backup is. Written and read as a stream, so that no side ever holds the whole state.
//!
//! ```text
//! magic "RAFTQSNP" | format u32 | meta length u32 | meta (postcard SnapshotMeta)
//! frame*: length u32 (> 0) | postcard Chunk        (one chunk: about DEFAULT_CHUNK_BYTES)
//! end:    length u32 = 0 | entries u64 | BLAKE3 of every byte before it (32 bytes)
//! ```
//!
//! Integers are big-endian. The digest covers the header, so a reader knows the meta it
//! decoded first was the writer's only once the trailer checked; [`verify`] reads a whole file
//! before anything relies on it (an install checks it before the old state is touched).

use crate::types::SnapshotMeta;
use queue_fsm::snapshot::Chunk;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RAFTQSNP";
/// The format this code writes and reads. A newer one is refused with the way out (upgrade).
pub const FORMAT: u32 = 1;
/// Bound of the encoded meta (a log id and a membership: a few hundred bytes).
const MAX_META_BYTES: u32 = 1 << 20;
/// Bound of one frame. A chunk is about `DEFAULT_CHUNK_BYTES`, or one entry larger than that;
/// the state machine bounds its records far below this.
pub const MAX_FRAME_BYTES: u32 = 256 << 20;
/// Buffer of the file reader and writer.
const IO_BUFFER_BYTES: usize = 1 << 20;

/// Why a snapshot stream is refused. The file (or peer) it came from is named by the caller.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a raftq snapshot (it does not start with {MAGIC:?})")]
    NotASnapshot,
    #[error(
        "snapshot format {0} is newer than this raftq's ({FORMAT}); use the raftq release \
         that wrote it, or a newer one"
    )]
    NewerFormat(u32),
    #[error("truncated: it ends after {0} bytes, before its checksum trailer")]
    Truncated(u64),
    #[error("checksum mismatch: the content hashes to {found}, the trailer says {stored}")]
    DigestMismatch { stored: String, found: String },
    #[error("corrupt at byte {at}: {what}")]
    Corrupt { at: u64, what: String },
}

impl SnapshotError {
    /// As an `io::Error` naming `source` (a file, a peer).
    pub fn naming(self, source: &str) -> io::Error {
        io::Error::other(format!("snapshot {source}: {self}"))
    }
}

/// What a complete stream held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub meta: SnapshotMeta,
    /// Key/value entries in all chunks.
    pub entries: u64,
    /// The file's length in bytes.
    pub bytes: u64,
    /// The BLAKE3 digest of the trailer, hex.
    pub digest: String,
}

/// Writes a snapshot stream: [`Writer::new`] (header), [`Writer::chunk`] for each chunk,
/// [`Writer::finish`] (trailer).
pub struct Writer<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    bytes: u64,
    entries: u64,
    meta: SnapshotMeta,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, meta: &SnapshotMeta) -> io::Result<Writer<W>> {
        let encoded = postcard::to_allocvec(meta).map_err(|e| io::Error::other(e.to_string()))?;
        let mut w = Writer {
            out,
            hasher: blake3::Hasher::new(),
            bytes: 0,
            entries: 0,
            meta: meta.clone(),
        };
        w.put(MAGIC)?;
        w.put(&FORMAT.to_be_bytes())?;
        w.put(&(encoded.len() as u32).to_be_bytes())?;
        w.put(&encoded)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    pub fn chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        if chunk.entries.is_empty() {
            return Ok(());
        }
        let encoded = postcard::to_allocvec(chunk).map_err(|e| io::Error::other(e.to_string()))?;
        let len = u32::try_from(encoded.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME_BYTES)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "a snapshot chunk of {} bytes is over the {MAX_FRAME_BYTES}-byte frame bound",
                    encoded.len()
                ))
            })?;
        self.put(&len.to_be_bytes())?;
        self.put(&encoded)?;
        self.entries += chunk.entries.len() as u64;
        Ok(())
    }

    /// Writes the trailer and flushes; returns the output and what was written.
    pub fn finish(mut self) -> io::Result<(W, Summary)> {
        self.put(&0u32.to_be_bytes())?;
        let entries = self.entries;
        self.put(&entries.to_be_bytes())?;
        let digest = self.hasher.finalize();
        self.out.write_all(digest.as_bytes())?;
        self.out.flush()?;
        let summary = Summary {
            meta: self.meta,
            entries,
            bytes: self.bytes + 32,
            digest: digest.to_hex().to_string(),
        };
        Ok((self.out, summary))
    }
}

/// Reads a snapshot stream frame by frame. Chunks come out before the trailer is checked:
/// callers that must not act on a bad stream [`verify`] it first.
pub struct Reader<R: Read> {
    input: R,
    hasher: blake3::Hasher,
    at: u64,
    entries: u64,
    meta: SnapshotMeta,
    done: Option<Summary>,
}

impl<R: Read> Reader<R> {
    /// Reads the header.
    pub fn new(input: R) -> Result<Reader<R>, SnapshotError> {
        let mut r = Reader {
            input,
            hasher: blake3::Hasher::new(),
            at: 0,
            entries: 0,
            meta: SnapshotMeta::default(),
            done: None,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let format = r.u32()?;
        if format > FORMAT {
            return Err(SnapshotError::NewerFormat(format));
        }
        if format != FORMAT {
            return Err(r.corrupt(format!("unknown snapshot format {format}")));
        }
        let len = r.u32()?;
        if len > MAX_META_BYTES {
            return Err(r.corrupt(format!("meta of {len} bytes")));
        }
        let mut meta = vec![0u8; len as usize];
        r.take(&mut meta)?;
        r.meta = postcard::from_bytes(&meta).map_err(|e| r.corrupt(format!("meta: {e}")))?;
        Ok(r)
    }

    /// The meta of the header (checked only once the trailer is).
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn corrupt(&self, what: String) -> SnapshotError {
        SnapshotError::Corrupt { at: self.at, what }
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.hasher.update(buf);
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(SnapshotError::Truncated(self.at))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// The next chunk, or `None` after the trailer was read and checked.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, SnapshotError> {
        if self.done.is_some() {
            return Ok(None);
        }
        let len = self.u32()?;
        if len == 0 {
            self.trailer()?;
            return Ok(None);
        }
        if len > MAX_FRAME_BYTES {
            return Err(self.corrupt(format!("frame of {len} bytes")));
        }
        // Grown as the bytes arrive, so a damaged length costs no more memory than the bytes
        // that are really there.
        let mut frame = Vec::new();
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut frame)?;
        if frame.len() < len as usize {
            return Err(SnapshotError::Truncated(self.at + frame.len() as u64));
        }
        self.hasher.update(&frame);
        self.at += frame.len() as u64;
        let chunk: Chunk =
            postcard::from_bytes(&frame).map_err(|e| self.corrupt(format!("chunk: {e}")))?;
        self.entries += chunk.entries.len() as u64;
        Ok(Some(chunk))
    }

    fn trailer(&mut self) -> Result<(), SnapshotError> {
        let mut count = [0u8; 8];
        self.take(&mut count)?;
        let count = u64::from_be_bytes(count);
        let found = self.hasher.finalize();
        let mut stored = [0u8; 32];
        match self.input.read_exact(&mut stored) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(SnapshotError::Truncated(self.at))
            }
            Err(e) => return Err(e.into()),
        }
        if stored != *found.as_bytes() {
            return Err(SnapshotError::DigestMismatch {
                stored: blake3::Hash::from(stored).to_hex().to_string(),
                found: found.to_hex().to_string(),
            });
        }
        if count != self.entries {
            return Err(self.corrupt(format!(
                "the trailer counts {count} entries, the chunks hold {}",
                self.entries
            )));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(self.corrupt("bytes after the checksum trailer".into()));
        }
        self.done = Some(Summary {
            meta: self.meta.clone(),
            entries: self.entries,
            bytes: self.at + 32,
            digest: found.to_hex().to_string(),
        });
        Ok(())
    }

    /// What the stream held, once [`next_chunk`](Self::next_chunk) returned `None`.
    pub fn summary(&self) -> Option<&Summary> {
        self.done.as_ref()
    }
}

/// Reads a whole stream and checks it: structure, entry count and digest.
pub fn verify_stream(input: impl Read) -> Result<Summary, SnapshotError> {
    let mut r = Reader::new(input)?;
    while r.next_chunk()?.is_some() {}
    Ok(r.summary().cloned().expect("next_chunk returned None"))
}

/// A snapshot file held open: what openraft passes around as the snapshot's data. The handle
/// stays valid when the file is renamed or replaced (a follower's received file becomes
/// `snapshots/current`; a newer snapshot replaces that), so a reader always sees the snapshot
/// it was given.
#[derive(Debug)]
pub struct SnapshotData {
    path: PathBuf,
    file: std::fs::File,
}

impl SnapshotData {
    pub fn open(path: &Path) -> io::Result<SnapshotData> {
        let file = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(SnapshotData {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Where the file is (for messages; the install moves a received file into place).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the file was renamed to `path`.
    pub(crate) fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Another handle on the same file (the two share one read position: use one at a time).
    pub fn try_clone(&self) -> io::Result<SnapshotData> {
        Ok(SnapshotData {
            path: self.path.clone(),
            file: self.file.try_clone()?,
        })
    }

    /// The file from its start.
    pub fn into_file(mut self) -> io::Result<std::fs::File> {
        self.file.rewind()?;
        Ok(self.file)
    }

    /// A buffered reader from the start of the file.
    pub fn reader(&self) -> io::Result<BufReader<std::fs::File>> {
        let mut f = self.file.try_clone()?;
        f.rewind()?;
        Ok(BufReader::with_capacity(IO_BUFFER_BYTES, f))
    }

    /// Reads the whole file and checks it (see [`verify_stream`]); errors name the file.
    pub fn verify(&self) -> io::Result<Summary> {
        verify_stream(self.reader()?).map_err(|e| e.naming(&self.path.display().to_string()))
    }
}

/// A buffered writer of a new file at `path` (created or truncated).
pub fn create(path: &Path) -> io::Result<BufWriter<std::fs::File>> {
    let f = std::fs::File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(BufWriter::with_capacity(IO_BUFFER_BYTES, f))
}

/// The meta in the header of the snapshot file at `path` (None: no file), reading only the
/// header. The file is not checked (see [`verify_stream`]).
pub fn read_meta(path: &Path) -> io::Result<Option<SnapshotMeta>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let r = Reader::new(BufReader::new(file)).map_err(|e| e.naming(&path.display().to_string()))?;
    Ok(Some(r.meta().clone()))
}
