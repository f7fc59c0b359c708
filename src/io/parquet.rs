//! The one way a Parquet file is opened for reading: [`open_parquet`].
//!
//! Every reader of Parquet — the corpus, the consent snapshot, Parquet user lists, `explain`,
//! `verify`, `diff`, the fuzz targets — gets a [`ParquetFile`] from it, and decodes only what
//! [`ParquetFile::check_row_group`] has checked. Guarantees, in the order they are established:
//! 1. cheap claims first: the file's length, `PAR1` at both ends, a footer length that fits;
//! 2. the footer is read as Thrift by [`super::footer`] before the parquet crate sees it, so no
//!    count in it sizes an allocation unchecked (one lenient repair, named in `repaired`);
//! 3. the crate decodes the footer under the panic guard; every column chunk it names lies
//!    between the magic and the footer;
//! 4. before a row group is decoded, every page header of its chunks is walked and checked
//!    ([`super::pages`]) and what decoding it needs is held against `--max-memory`;
//! 5. decoding runs under the panic guard, reading by offset (`pread`), so any number of threads
//!    share one open file.

use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use sha2::{Digest, Sha256};

use super::footer::check_footer;
use super::object::{self, ObjectInfo, ObjectLocation};
use super::pages::{self, ChunkPages, PageKind, PageProblem, ReadAt};
use super::Location;
use crate::error::{Error, ReadError, Result};
use crate::guard;

/// Upper bound for a footer's claimed metadata length; real footers are far smaller.
pub const MAX_FOOTER_BYTES: u64 = 256 << 20;

/// Limits every read of a file is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// `--max-memory`: the most a file's footer or one row group may need to be decoded.
    pub max_memory: u64,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            max_memory: super::memory::default_max_memory(),
        }
    }
}

/// A file's identity for `--resume` and for noticing a file that changes while it is read:
/// size, inode, modification and change times (ns) and the SHA-256 of its footer. Any write, and
/// any replacement of the file, moves the change time, which users cannot set; hashing the whole
/// content instead would read every input a second time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub size: u64,
    pub id: String,
}

impl Identity {
    fn new(meta: &std::fs::Metadata, footer_sha256: &str) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            size: meta.len(),
            id: format!(
                "ino={} mtime={}.{:09} ctime={}.{:09} footer_sha256={}",
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
                footer_sha256
            ),
        }
    }

    /// The identity of any file or object, without a footer's hash (a text file has none): what
    /// a run compares before and after it reads a whole file, to know it read one content.
    /// `None` when it cannot be looked at.
    pub(crate) fn of_location(location: &Location) -> Option<Identity> {
        match location {
            Location::Local(p) => std::fs::metadata(p).ok().map(|m| Identity::new(&m, "")),
            Location::Object(o) => super::object::head(o)
                .ok()
                .map(|i| Identity::of_object(&i, "")),
        }
    }

    /// An object's identity: what the store says of its version (every write gives a new ETag
    /// and last-modified time); the hash of its footer only where there is no ETag (some HTTP
    /// servers), so that with one a HEAD request is enough to know the object again.
    fn of_object(info: &ObjectInfo, footer_sha256: &str) -> Identity {
        let footer = match info.e_tag {
            Some(_) => String::new(),
            None => format!(" footer_sha256={footer_sha256}"),
        };
        Identity {
            size: info.size,
            id: format!(
                "etag={} version={} last_modified={}{footer}",
                info.e_tag.as_deref().unwrap_or("-"),
                info.version.as_deref().unwrap_or("-"),
                info.last_modified,
            ),
        }
    }

    /// The identity of the file at `location` now (its footer as the last 8 bytes say).
    pub fn of(location: &Location) -> Result<Identity> {
        if let Location::Object(o) = location {
            let info =
                super::object::head(o).map_err(|e| Error::io("reading", location.clone(), e))?;
            if info.e_tag.is_some() {
                return Ok(Identity::of_object(&info, ""));
            }
        }
        let source = FileSource::open(location, u64::MAX)?;
        let len = source.len;
        let io = |e| Error::io("reading", location.clone(), e);
        let mut tail = [0u8; 8];
        let footer = if len >= 8 {
            read_exact_at(&source, len - 8, &mut tail).map_err(io)?;
            (u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64 + 8)
                .min(len)
                .min(MAX_FOOTER_BYTES)
        } else {
            len
        };
        let mut buf = vec![0u8; footer as usize];
        read_exact_at(&source, len - footer, &mut buf).map_err(io)?;
        Ok(source.identity(&crate::policy::hex(&Sha256::digest(&buf))))
    }
}

fn read_exact_at(f: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let n = f.read_at(offset, buf)?;
    if n < buf.len() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Row groups whose policy columns are fetched ahead of the one being decided (objects).
const FETCH_AHEAD_ROW_GROUPS: usize = 2;

/// An open file read by offset: one descriptor (or one pinned object version) shared by every
/// thread, no shared cursor.
#[derive(Clone)]
pub struct FileSource {
    backing: Backing,
    len: u64,
    /// Largest range one read may ask for (`--max-memory`).
    max_read: u64,
    /// Buffer of a [`ChunkReader::get_read`] stream.
    buffer: usize,
}

#[derive(Clone)]
enum Backing {
    Local {
        file: Arc<File>,
        stat: Arc<std::fs::Metadata>,
    },
    Object(Arc<RemoteObject>),
}

/// One version of an object, pinned by its ETag, with the ranges fetched for the row groups in
/// flight. Reads that miss fetch a block ahead (page headers are read a few bytes at a time).
struct RemoteObject {
    location: ObjectLocation,
    info: ObjectInfo,
    /// Fetched ranges by start offset; bounded by [`RemoteObject::CACHE_CAP`], oldest dropped
    /// first (a dropped range is fetched again if needed: slower, never wrong).
    cache: Mutex<Vec<(u64, Bytes)>>,
    /// Most bytes the cache holds: a few row groups' worth, set once the footer is read.
    cache_cap: std::sync::atomic::AtomicUsize,
    /// Ranges being fetched in the background; a read that needs one waits for it instead of
    /// asking again. Signalled on `arrived` when one lands (or fails).
    pending: Mutex<Vec<std::ops::Range<u64>>>,
    arrived: std::sync::Condvar,
}

impl RemoteObject {
    const READ_AHEAD: u64 = 1 << 20;

    fn insert(&self, start: u64, bytes: Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.push((start, bytes));
        let mut total: usize = cache.iter().map(|(_, b)| b.len()).sum();
        let cap = self.cache_cap.load(std::sync::atomic::Ordering::Relaxed);
        while total > cap && cache.len() > 1 {
            total -= cache.remove(0).1.len();
        }
    }

    fn cached(&self, offset: u64, want: usize) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.iter().rev().find_map(|(start, b)| {
            let end = start + b.len() as u64;
            (*start <= offset && offset < end).then(|| {
                let from = (offset - start) as usize;
                b.slice(from..(from + want).min(b.len()))
            })
        })
    }

    /// Drop cached ranges that start inside `r` (or all, for `None`).
    fn forget(&self, r: Option<std::ops::Range<u64>>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(start, _)| r.as_ref().is_some_and(|r| !r.contains(start)));
    }

    /// The parts of `r` no cached range covers.
    fn uncovered(&self, r: &std::ops::Range<u64>) -> Vec<std::ops::Range<u64>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut spans: Vec<(u64, u64)> = cache
            .iter()
            .map(|(s, b)| (*s, s + b.len() as u64))
            .filter(|(s, e)| *e > r.start && *s < r.end)
            .collect();
        spans.sort();
        let mut out = Vec::new();
        let mut pos = r.start;
        for (s, e) in spans {
            if s > pos {
                out.push(pos..s.min(r.end));
            }
            pos = pos.max(e);
            if pos >= r.end {
                break;
            }
        }
        if pos < r.end {
            out.push(pos..r.end);
        }
        out
    }

    /// Wait (a bounded time) until no background fetch overlaps `ranges`.
    fn wait_for_pending(&self, ranges: &[std::ops::Range<u64>]) {
        let overlaps = |p: &Vec<std::ops::Range<u64>>| {
            p.iter()
                .any(|q| ranges.iter().any(|r| q.start < r.end && r.start < q.end))
        };
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // A background fetch always ends, but a stuck one must not hold a run forever: after
        // the wait the bytes are fetched here, with retries.
        let _ =
            self.arrived
                .wait_timeout_while(pending, std::time::Duration::from_secs(120), |p| {
                    overlaps(p)
                });
    }

    fn fetch(&self, ranges: &[std::ops::Range<u64>]) -> std::io::Result<()> {
        self.wait_for_pending(ranges);
        let missing: Vec<std::ops::Range<u64>> =
            ranges.iter().flat_map(|r| self.uncovered(r)).collect();
        let merged = object::coalesce(&missing, 1 << 20);
        for (r, b) in merged
            .iter()
            .zip(object::get_ranges(&self.location, &self.info, &merged)?)
        {
            self.insert(r.start, b);
        }
        Ok(())
    }

    /// Start fetching what of `ranges` is neither cached nor on its way; the bytes land in the
    /// cache. Best effort: a failure only means they are fetched again when needed.
    fn fetch_ahead(self: &Arc<Self>, ranges: &[std::ops::Range<u64>]) {
        let missing: Vec<std::ops::Range<u64>> = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            ranges
                .iter()
                .flat_map(|r| self.uncovered(r))
                .filter(|r| !pending.iter().any(|q| q.start < r.end && r.start < q.end))
                .collect()
        };
        let merged = object::coalesce(&missing, 1 << 20);
        if merged.is_empty() {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(merged.iter().cloned());
        let me = Arc::clone(self);
        let spans = merged.clone();
        object::get_ranges_in_background(&self.location, &self.info, merged, move |got| {
            if let Ok(bytes) = got {
                for (r, b) in spans.iter().zip(bytes) {
                    me.insert(r.start, b);
                }
            }
            me.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|q| !spans.contains(q));
            me.arrived.notify_all();
        });
    }
}

impl FileSource {
    /// Open `location` for reading by offset: a local file, or the current version of an
    /// object (its last `SUFFIX` bytes, where the footer is, come with the first request).
    fn open(location: &Location, max_read: u64) -> Result<FileSource> {
        match location {
            Location::Local(path) => {
                let f = File::open(path).map_err(|e| Error::io("opening", location.clone(), e))?;
                let stat = f
                    .metadata()
                    .map_err(|e| Error::io("reading", location.clone(), e))?;
                if stat.is_dir() {
                    return Err(Error::io(
                        "reading",
                        location.clone(),
                        std::io::Error::other("is a directory"),
                    ));
                }
                Ok(FileSource {
                    len: stat.len(),
                    backing: Backing::Local {
                        file: Arc::new(f),
                        stat: Arc::new(stat),
                    },
                    max_read,
                    buffer: 4096,
                })
            }
            Location::Object(o) => {
                // Most footers fit. Not more: some stores (s3s-fs 0.14) answer a suffix longer
                // than the object with an error instead of the whole object.
                const SUFFIX: u64 = 64 << 10;
                let (info, tail) = object::get_suffix(o, SUFFIX)
                    .map_err(|e| Error::io("reading", location.clone(), e))?;
                let len = info.size;
                let remote = RemoteObject {
                    location: o.clone(),
                    info,
                    cache: Mutex::new(Vec::new()),
                    cache_cap: std::sync::atomic::AtomicUsize::new(64 << 20),
                    pending: Mutex::new(Vec::new()),
                    arrived: std::sync::Condvar::new(),
                };
                remote.insert(len - tail.len() as u64, tail);
                Ok(FileSource {
                    len,
                    backing: Backing::Object(Arc::new(remote)),
                    max_read,
                    buffer: 4096,
                })
            }
        }
    }

    fn identity(&self, footer_sha256: &str) -> Identity {
        match &self.backing {
            Backing::Local { stat, .. } => Identity::new(stat, footer_sha256),
            Backing::Object(o) => Identity::of_object(&o.info, footer_sha256),
        }
    }

    /// The same source, streaming reads through a buffer of `bytes` (the crate reads page
    /// headers through small ones; copying whole chunks wants large ones).
    pub fn with_buffer(&self, bytes: usize) -> FileSource {
        FileSource {
            buffer: bytes,
            ..self.clone()
        }
    }

    /// Size the fetch cache of an object for row groups of up to `largest` bytes: three in
    /// flight (two workers and a copy), bounded by `--max-memory`.
    fn size_cache(&self, largest: u64) {
        if let Backing::Object(o) = &self.backing {
            let cap = largest
                .saturating_mul(3)
                .saturating_add(8 << 20)
                .min(self.max_read / 2)
                .max(16 << 20);
            o.cache_cap
                .store(cap as usize, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Drop what was fetched for bytes `range` (all of it for `None`): a row group written out,
    /// a file finished. Memory then holds only the row groups in flight.
    pub fn release(&self, range: Option<std::ops::Range<u64>>) {
        if let Backing::Object(o) = &self.backing {
            o.forget(range);
        }
    }

    /// Fetch `ranges` now, concurrently (objects), or have the kernel start reading them (a
    /// local file: see [`will_need`]).
    pub fn prefetch(&self, ranges: &[std::ops::Range<u64>]) -> std::io::Result<()> {
        match &self.backing {
            Backing::Local { file, .. } => {
                will_need(file, ranges);
                Ok(())
            }
            Backing::Object(o) => o.fetch(ranges),
        }
    }

    /// Start fetching `ranges` in the background, for a row group to come.
    pub fn fetch_ahead(&self, ranges: &[std::ops::Range<u64>]) {
        match &self.backing {
            Backing::Local { file, .. } => will_need(file, ranges),
            Backing::Object(o) => o.fetch_ahead(ranges),
        }
    }
}

/// Ask the kernel to read `ranges` of `file` into its page cache, without waiting for them
/// (`POSIX_FADV_WILLNEED`): a row group's chunks are then read from the disk at once, in large
/// requests, while its first pages are decoded, where a decoder asking for one page after the
/// other waited for each on a cold cache. Pages already cached cost a lookup. Advice only: a
/// failure changes nothing but the speed.
fn will_need(file: &File, ranges: &[std::ops::Range<u64>]) {
    #[cfg(target_os = "linux")]
    for r in ranges {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(r.start),
            libc::off_t::try_from(r.end.saturating_sub(r.start)),
        ) else {
            continue;
        };
        if len > 0 {
            // SAFETY: posix_fadvise reads and writes no memory of ours, and `file` stays open
            // for the call. Its result is advice taken or not; nothing relies on it.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED)
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, ranges);
}

impl ReadAt for FileSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match &self.backing {
            Backing::Local { file, .. } => ReadAt::read_at(file.as_ref(), offset, buf),
            Backing::Object(o) => {
                if offset >= self.len || buf.is_empty() {
                    return Ok(0);
                }
                // As much as is asked, across cached ranges, fetching (a block ahead) what
                // none holds.
                let want = buf.len().min((self.len - offset) as usize);
                let mut done = 0;
                while done < want {
                    let at = offset + done as u64;
                    let rest = want - done;
                    let bytes = match o.cached(at, rest).or_else(|| {
                        // Perhaps on its way: wait for it rather than ask twice.
                        o.wait_for_pending(std::slice::from_ref(&(at..at + 1)));
                        o.cached(at, rest)
                    }) {
                        Some(b) => b,
                        // A short read rather than a fetch: a buffered reader filling its buffer
                        // past the end of a column chunk must not fetch the next column (for a
                        // row group that keeps nothing, payload never needed). Whoever needs
                        // the rest asks again.
                        None if done > 0 => break,
                        None => {
                            let end =
                                (at + (rest as u64).max(RemoteObject::READ_AHEAD)).min(self.len);
                            let b = object::get_range(&o.location, &o.info, at..end)?;
                            o.insert(at, b.clone());
                            b.slice(..rest.min(b.len()))
                        }
                    };
                    if bytes.is_empty() {
                        break;
                    }
                    buf[done..done + bytes.len()].copy_from_slice(&bytes);
                    done += bytes.len();
                }
                Ok(done)
            }
        }
    }
}

impl Length for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A [`Read`] from an offset of a [`FileSource`].
pub struct SourceRead {
    source: FileSource,
    pos: u64,
}

impl Read for SourceRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = ReadAt::read_at(&self.source, self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for FileSource {
    type T = std::io::BufReader<SourceRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // The crate reads page headers through this, a byte at a time: buffer them.
        Ok(std::io::BufReader::with_capacity(
            self.buffer,
            SourceRead {
                source: self.clone(),
                pos: start,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start.checked_add(length as u64);
        if end.is_none_or(|e| e > self.len) || length as u64 > self.max_read {
            return Err(parquet::errors::ParquetError::General(format!(
                "a read of {length} bytes at byte {start} is outside the file or the memory cap"
            )));
        }
        match &self.backing {
            Backing::Local { file, .. } => {
                return Ok(Bytes::from(super::pages::read_new_at(file, start, length)?));
            }
            Backing::Object(o) => {
                if let Some(b) = o.cached(start, length).filter(|b| b.len() == length) {
                    return Ok(b);
                }
            }
        }
        let mut buf = vec![0u8; length];
        read_exact_at(self, start, &mut buf)?;
        Ok(Bytes::from(buf))
    }
}

/// A Parquet file whose footer has been read and checked.
#[derive(Clone)]
pub struct ParquetFile {
    pub location: Location,
    pub identity: Identity,
    /// SHA-256 of the footer (with its length and magic): with the size, what tells two runs'
    /// inputs apart wherever they ran (`diff`).
    pub footer_sha256: String,
    meta: ArrowReaderMetadata,
    source: FileSource,
    /// Where the footer starts: no data lies at or past it.
    data_end: u64,
    options: ReadOptions,
}

/// What [`ParquetFile::check_row_group`] found: every chunk's pages.
pub struct RowGroupPages {
    pub chunks: Vec<ChunkPages>,
    /// The footer corrected for this row group when a chunk's declared size is wrong or the page
    /// index does not describe its pages: read with this instead.
    pub corrected: Option<Arc<ParquetMetaData>>,
    /// Every chunk was walked (not only some columns').
    pub complete: bool,
}

impl RowGroupPages {
    /// Every chunk is exactly its declared bytes (and the index, if any, matches): the row group
    /// may be copied byte for byte.
    pub fn copyable(&self) -> bool {
        self.complete && self.corrected.is_none() && self.chunks.iter().all(|c| c.exact())
    }
}

/// Open `location` as Parquet: read and check the footer. Corrupt input is [`Error::Read`].
pub fn open_parquet(location: &Location, options: ReadOptions) -> Result<ParquetFile> {
    let invalid = |m: String| Error::invalid(location.clone(), None, m);
    let io = |e| Error::io("reading", location.clone(), e);
    let source = FileSource::open(location, options.max_memory)?;
    let len = source.len;
    if len < 12 {
        return Err(invalid(format!(
            "not a Parquet file: {len} bytes is too short"
        )));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 8];
    read_exact_at(&source, len - 8, &mut tail).map_err(io)?;
    // Just the magic: a read that misses would fetch a whole block ahead.
    source.prefetch(std::slice::from_ref(&(0..4))).map_err(io)?;
    read_exact_at(&source, 0, &mut head).map_err(io)?;
    if &head != b"PAR1" || &tail[4..] != b"PAR1" {
        return Err(invalid(
            "not a Parquet file (no PAR1 magic at start and end; truncated or another format?)"
                .into(),
        ));
    }
    let footer_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if footer_len + 12 > len || footer_len > MAX_FOOTER_BYTES || footer_len > options.max_memory {
        return Err(invalid(format!(
            "corrupt footer: it claims {footer_len} bytes of metadata in a {len}-byte file"
        )));
    }
    let data_end = len - 8 - footer_len;
    let mut raw = vec![0u8; footer_len as usize];
    read_exact_at(&source, data_end, &mut raw).map_err(io)?;
    let mut with_tail = raw.clone();
    with_tail.extend_from_slice(&tail);
    let footer_sha256 = crate::policy::hex(&Sha256::digest(&with_tail));
    let identity = source.identity(&footer_sha256);

    let checked = check_footer(&raw).map_err(|p| {
        invalid(match p.field {
            Some(field) => format!("corrupt footer: {field}: {}", p.message),
            None => format!("corrupt footer: {}", p.message),
        })
    })?;
    let writer = |m: &dyn std::fmt::Display| match &checked.created_by {
        Some(w) => format!("reading the footer failed: {m} (written by {w})"),
        None => format!("reading the footer failed: {m}"),
    };
    let panicked = |p: String| invalid(writer(&format!("internal error while decoding ({p})")));
    let pq = guard::catch(|| ParquetMetaDataReader::decode_metadata(&checked.bytes))
        .map_err(panicked)?
        .map_err(|e| invalid(writer(&e)))?;
    check_claims(&pq, data_end).map_err(invalid)?;
    source.size_cache(
        pq.row_groups()
            .iter()
            .map(|g| g.compressed_size().max(0) as u64)
            .max()
            .unwrap_or(0),
    );
    // What other readers read silently, said once: the file is not what the format says.
    for (field, found) in &checked.repaired {
        eprintln!(
            "corpusgate: note: {location}: footer field {field} ({found}) repaired before reading, as other readers do{}",
            checked
                .created_by
                .as_ref()
                .map(|w| format!(" (written by {w})"))
                .unwrap_or_default()
        );
    }
    let meta = guard::catch(|| {
        ArrowReaderMetadata::try_new(
            Arc::new(pq),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip),
        )
    })
    .map_err(panicked)?
    .map_err(|e| invalid(writer(&e)))?;
    let descr = meta.metadata().file_metadata().schema_descr();
    if descr.root_schema().get_fields().len() != meta.schema().fields().len() {
        return Err(invalid(
            "the embedded Arrow schema does not match the Parquet schema".into(),
        ));
    }
    Ok(ParquetFile {
        location: location.clone(),
        identity,
        footer_sha256,
        meta,
        source,
        data_end,
        options,
    })
}

/// Check what the footer claims against the file before any page is read: every column chunk
/// and index lies between the leading magic and the footer, and sizes are not negative.
fn check_claims(pq: &ParquetMetaData, data_end: u64) -> std::result::Result<(), String> {
    let inside = |start: i64, len: i64| {
        start >= 4 && len >= 0 && (start as u64).saturating_add(len as u64) <= data_end
    };
    for (g, rg) in pq.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(format!(
                "corrupt footer: row group {g} claims {} rows",
                rg.num_rows()
            ));
        }
        for c in rg.columns() {
            let name = c.column_path().string();
            // Not `byte_range()`: it panics on the negative offsets a damaged footer can hold.
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            if start < 0 || c.compressed_size() < 0 {
                return Err(format!(
                    "corrupt footer: column '{name}' of row group {g} claims offset {start} and length {}",
                    c.compressed_size()
                ));
            }
            if !inside(start, c.compressed_size()) {
                return Err(format!(
                    "corrupt footer: column '{name}' of row group {g} claims bytes {start}..{} of a file whose data ends at byte {data_end}",
                    start.saturating_add(c.compressed_size())
                ));
            }
            if c.uncompressed_size() < 0 || c.num_values() < 0 {
                return Err(format!(
                    "corrupt footer: column '{name}' of row group {g} claims {} uncompressed bytes and {} values",
                    c.uncompressed_size(),
                    c.num_values()
                ));
            }
            for (what, off, len) in [
                (
                    "offset index",
                    c.offset_index_offset(),
                    c.offset_index_length(),
                ),
                (
                    "column index",
                    c.column_index_offset(),
                    c.column_index_length(),
                ),
            ] {
                if let (Some(o), Some(l)) = (off, len) {
                    if !inside(o, l as i64) {
                        return Err(format!(
                            "corrupt footer: the {what} of column '{name}' of row group {g} claims bytes {o}..{} of a file whose data ends at byte {data_end}",
                            o.saturating_add(l as i64)
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

impl ParquetFile {
    pub fn parquet_meta(&self) -> &Arc<ParquetMetaData> {
        self.meta.metadata()
    }

    pub fn schema(&self) -> &SchemaRef {
        self.meta.schema()
    }

    /// Rows, as the row groups count them (what readers use; a file-level count that
    /// disagrees is ignored, as pyarrow does).
    pub fn rows(&self) -> u64 {
        self.parquet_meta()
            .row_groups()
            .iter()
            .fold(0u64, |acc, g| {
                acc.saturating_add(g.num_rows().max(0) as u64)
            })
    }

    pub fn num_row_groups(&self) -> usize {
        self.parquet_meta().num_row_groups()
    }

    /// The bytes of the file, for the parquet crate's readers and for copying.
    pub fn source(&self) -> FileSource {
        self.source.clone()
    }

    fn err(&self, row_group: Option<usize>, e: impl Into<ReadError>) -> Error {
        Error::read(self.location.clone(), row_group, e)
    }

    /// The footer with the page index, when the file has one that the crate can read. A page
    /// index that cannot be read is left out (it only lets readers skip pages; nothing decides
    /// from it).
    pub fn with_page_index(&self) -> Arc<ParquetMetaData> {
        let source = self.source.clone();
        let loaded = guard::catch(|| {
            let mut reader =
                ParquetMetaDataReader::new_with_metadata(self.parquet_meta().as_ref().clone())
                    .with_page_index_policy(PageIndexPolicy::Optional);
            reader
                .read_page_indexes(&source)
                .and_then(|_| reader.finish())
        });
        match loaded {
            Ok(Ok(pq)) => Arc::new(pq),
            _ => self.parquet_meta().clone(),
        }
    }

    /// The footer parsed again with everything a writer copying its row groups needs to write
    /// them back as they are: page encoding statistics as lists (the default parse keeps a
    /// mask, which writes back shorter) and the page index. Checked at open like any footer.
    pub fn footer_for_copying(&self) -> Result<Arc<ParquetMetaData>> {
        let source = self.source.clone();
        let parsed = guard::catch(|| {
            let mut options = parquet::file::metadata::ParquetMetaDataOptions::new();
            options.set_encoding_stats_as_mask(false);
            ParquetMetaDataReader::new()
                .with_metadata_options(Some(options))
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(&source)
        });
        match parsed {
            Ok(Ok(pq)) => Ok(Arc::new(pq)),
            Ok(Err(e)) => Err(self.err(None, e)),
            Err(panic) => Err(self.err(None, ReadError::Panic(panic))),
        }
    }

    /// Walk and check every page header of row group `rg` in `pq` (this file's footer, with or
    /// without its page index); the memory decoding it needs must fit `--max-memory`.
    pub fn check_row_group(&self, pq: &Arc<ParquetMetaData>, rg: usize) -> Result<RowGroupPages> {
        self.check_columns(pq, rg, None)
    }

    /// [`Self::check_row_group`] for the leaf columns in `leaves` only (all when `None`): the
    /// policy's columns can be checked, fetched and decided before the payload is touched,
    /// which a row group with no kept row then never is.
    pub fn check_columns(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        leaves: Option<&ProjectionMask>,
    ) -> Result<RowGroupPages> {
        self.check(pq, rg, leaves, leaves.is_some())
    }

    /// [`Self::check_columns`] for `leaves`, without starting the next row groups' chunks of
    /// them on their way: for chunks only this row group needs (those of a row group whose
    /// large columns are spliced from PREV_OUT, and then one of those columns if it is read).
    pub fn check_columns_alone(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        leaves: &ProjectionMask,
    ) -> Result<RowGroupPages> {
        self.check(pq, rg, Some(leaves), false)
    }

    /// [`Self::check_columns_alone`] for the `more` leaves of row group `rg`, after `checked`
    /// walked others of it: the memory decoding both needs must fit `--max-memory` together,
    /// as it must when one walk checks them all.
    pub fn check_more_columns(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        checked: &RowGroupPages,
        more: &ProjectionMask,
    ) -> Result<RowGroupPages> {
        let rest = self.check(pq, rg, Some(more), false)?;
        let rows = pq.row_group(rg).num_rows().max(0) as u64;
        let needed = checked
            .chunks
            .iter()
            .chain(&rest.chunks)
            .map(ChunkPages::decode_bytes)
            .fold(
                rows.saturating_mul(pages::BYTES_PER_VALUE),
                u64::saturating_add,
            );
        if needed > self.options.max_memory {
            return Err(self.err(
                Some(rg),
                ReadError::Memory {
                    needed,
                    cap: self.options.max_memory,
                },
            ));
        }
        Ok(rest)
    }

    fn check(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        leaves: Option<&ProjectionMask>,
        ahead: bool,
    ) -> Result<RowGroupPages> {
        let group = pq.row_group(rg);
        let wanted = |i: usize| leaves.is_none_or(|m| m.leaf_included(i));
        // An object's chunks are fetched at once, concurrently, before any page is walked.
        let ranges_of = |rg: usize| -> Vec<std::ops::Range<u64>> {
            pq.row_group(rg)
                .columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| wanted(*i))
                .map(|(_, c)| {
                    let start = c
                        .dictionary_page_offset()
                        .unwrap_or(c.data_page_offset())
                        .max(0) as u64;
                    start
                        ..start
                            .saturating_add(c.compressed_size().max(0) as u64)
                            .min(self.data_end)
                })
                .collect()
        };
        let ranges = ranges_of(rg);
        if ahead {
            // The policy's columns of the next row groups start on their way now, so that the
            // network's latency hides behind this row group's work. Payload is never fetched
            // ahead: only a decision says whether a row group needs it. One row group at a
            // time: near ranges are merged into one request, and across row groups that would
            // fetch the payload between them.
            for next in (rg + 1..pq.num_row_groups()).take(FETCH_AHEAD_ROW_GROUPS) {
                self.source.fetch_ahead(&ranges_of(next));
            }
        }
        self.source
            .prefetch(&ranges)
            .map_err(|e| Error::io("reading", self.location.clone(), e))?;
        let rows = group.num_rows().max(0) as u64;
        let descr = pq.file_metadata().schema_descr();
        let mut chunks = Vec::with_capacity(group.num_columns());
        let mut decode_bytes = rows.saturating_mul(pages::BYTES_PER_VALUE);
        for (i, col) in group.columns().iter().enumerate() {
            if !wanted(i) {
                // Not walked: taken as declared (never copied: the row group is not complete).
                let declared = col.compressed_size().max(0) as u64;
                chunks.push(ChunkPages {
                    declared,
                    len: declared,
                    pages: Vec::new(),
                    uncompressed: 0,
                    values: 0,
                });
                continue;
            }
            let walked = pages::walk_chunk(
                &self.source,
                self.data_end,
                col,
                descr.column(i).as_ref(),
                rows,
                self.options.max_memory,
            )
            .map_err(|p| match p {
                PageProblem::Corrupt(m) => self.err(
                    Some(rg),
                    ReadError::Invalid(format!("column '{}': {m}", col.column_path().string())),
                ),
                PageProblem::TooBig { needed } => self.err(
                    Some(rg),
                    ReadError::Memory {
                        needed,
                        cap: self.options.max_memory,
                    },
                ),
            })?;
            decode_bytes = decode_bytes.saturating_add(walked.decode_bytes());
            chunks.push(walked);
        }
        if decode_bytes > self.options.max_memory {
            return Err(self.err(
                Some(rg),
                ReadError::Memory {
                    needed: decode_bytes,
                    cap: self.options.max_memory,
                },
            ));
        }
        let index_matches = pq.page_index().is_none_or(|index| {
            chunks.iter().enumerate().all(|(i, c)| {
                let Some(oi) = index.offset_index(rg, i).filter(|_| wanted(i)) else {
                    return true;
                };
                let data = c
                    .pages
                    .iter()
                    .filter(|p| matches!(p.kind, PageKind::Data | PageKind::DataV2));
                oi.page_locations().len() == data.clone().count()
                    && oi.page_locations().iter().zip(data).all(|(l, p)| {
                        l.offset as u64 == p.offset
                            && l.compressed_page_size as u64 == p.header_len + p.compressed
                    })
            })
        });
        let exact = chunks.iter().all(|c| c.exact());
        let corrected = (!exact || !index_matches).then(|| {
            let mut builder = pq.as_ref().clone().into_builder();
            if !exact {
                let mut groups = builder.take_row_groups();
                let cols = groups[rg]
                    .columns()
                    .iter()
                    .zip(&chunks)
                    .map(|(c, walked)| {
                        c.clone()
                            .into_builder()
                            .set_total_compressed_size(walked.len as i64)
                            .build()
                            .unwrap_or_else(|_| c.clone())
                    })
                    .collect();
                groups[rg] = groups[rg]
                    .clone()
                    .into_builder()
                    .set_column_metadata(cols)
                    .build()
                    .unwrap_or_else(|_| groups[rg].clone());
                builder = builder.set_row_groups(groups);
            }
            // A changed chunk or a page index that does not describe the pages: read without it.
            Arc::new(builder.set_page_index(None).build())
        });
        Ok(RowGroupPages {
            chunks,
            corrected,
            complete: leaves.is_none(),
        })
    }

    /// Reader metadata for `pq` that reads columns as `schema` says, or as the file's own types
    /// when the reader cannot (the requested types are only a cheaper way to read the values).
    pub fn reader_meta(
        &self,
        pq: &Arc<ParquetMetaData>,
        schema: Option<SchemaRef>,
    ) -> Result<ArrowReaderMetadata> {
        let options = ArrowReaderOptions::new();
        let plain = || ArrowReaderMetadata::try_new(pq.clone(), options.clone());
        let r = match schema {
            Some(s) => ArrowReaderMetadata::try_new(pq.clone(), options.clone().with_schema(s))
                .or_else(|_| plain()),
            None => plain(),
        };
        r.map_err(|e| self.err(None, e))
    }

    /// Decode `columns` (all when `None`) of every row group in order, calling `f` on each batch
    /// (empty row groups yield nothing). Each row group is checked first, and decoded under the
    /// panic guard. For the small files corpusgate reads whole: snapshots, lists, manifests.
    pub fn read_all(
        &self,
        columns: Option<&[&str]>,
        batch_size: usize,
        f: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let pq = self.parquet_meta().clone();
        for rg in 0..self.num_row_groups() {
            self.read_row_group(&pq, rg, columns, batch_size, None, f)?;
        }
        Ok(())
    }

    /// As [`ParquetFile::read_row_group`], each column (each piece of four batches' rows of it,
    /// in a row group read whole) decoded on its own task of the current rayon pool, for the
    /// files read whole before any work can start (a one-file snapshot is one row group,
    /// decoded on one thread otherwise); `f` gets batches of every column, cut as one reader
    /// cuts them.
    /// The string columns named in `as_dictionary` come as dictionary arrays (keys into the
    /// chunk's dictionary, no string copied per row), for columns read to be mapped per value.
    #[allow(clippy::too_many_arguments)]
    pub fn read_row_group_by_column(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        columns: &[&str],
        as_dictionary: &[&str],
        batch_size: usize,
        select: Option<parquet::arrow::arrow_reader::RowSelection>,
        f: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        use rayon::prelude::*;
        let rows = pq.row_group(rg).num_rows().max(0) as usize;
        if rows == 0 {
            return Ok(());
        }
        // Checked once; then each column is decoded (the row group's decoded values are held
        // until the last column is done: for the files read whole into memory anyway).
        let hint =
            (!as_dictionary.is_empty()).then(|| with_dictionaries(self.schema(), as_dictionary));
        let meta = self.checked_meta(pq, rg, Some(columns), hint)?;
        // A large row group read whole is cut into pieces of rows, each column of each piece a
        // task: one column is most of a snapshot's bytes (its update times), and decoded whole
        // it kept one thread busy while the other had finished. A piece is a whole number of
        // batches, so the batches are the ones one reader gives, whatever the threads.
        let piece = batch_size.max(1).saturating_mul(4);
        let pieces: Vec<Option<RowSelection>> = match select {
            Some(s) => vec![Some(s)],
            None if rows > piece => (0..rows)
                .step_by(piece)
                .map(|a| {
                    let take = RowSelector::select(piece.min(rows - a));
                    Some(RowSelection::from(match a {
                        0 => vec![take],
                        _ => vec![RowSelector::skip(a), take],
                    }))
                })
                .collect(),
            None => vec![None],
        };
        let tasks: Vec<(usize, &str)> = (0..pieces.len())
            .flat_map(|p| columns.iter().map(move |c| (p, *c)))
            .collect();
        let mut decoded: Vec<Vec<RecordBatch>> = tasks
            .par_iter()
            .map(|(p, c)| {
                let mut out = Vec::new();
                self.read_checked(
                    &meta,
                    rg,
                    Some(&[c]),
                    batch_size,
                    pieces[*p].clone(),
                    &mut |b| {
                        out.push(b);
                        Ok(())
                    },
                )?;
                Ok(out)
            })
            .collect::<Result<_>>()?;
        // Back to one list of batches per column, the pieces in order.
        let mut per_column: Vec<Vec<RecordBatch>> = vec![Vec::new(); columns.len()];
        for (i, batches) in decoded.iter_mut().enumerate() {
            per_column[i % columns.len().max(1)].append(batches);
        }
        let Some(first) = per_column.first() else {
            return Ok(());
        };
        for (i, lead) in first.iter().enumerate() {
            let mut fields = Vec::with_capacity(columns.len());
            let mut arrays = Vec::with_capacity(columns.len());
            for batches in &per_column {
                // The same rows in the same batches, column by column: one reader's batches
                // are cut by rows, whatever the pages.
                let Some(b) = batches.get(i).filter(|b| b.num_rows() == lead.num_rows()) else {
                    return Err(self.err(
                        Some(rg),
                        ReadError::Invalid("its columns decode to different row counts".into()),
                    ));
                };
                fields.extend(b.schema().fields().iter().cloned());
                arrays.extend(b.columns().iter().cloned());
            }
            let schema = Arc::new(arrow_schema::Schema::new(fields));
            let batch = RecordBatch::try_new(schema, arrays)
                .map_err(|e| self.err(Some(rg), ReadError::Invalid(e.to_string())))?;
            f(batch)?;
        }
        Ok(())
    }

    /// Decode `columns` of row group `rg` (rows `select` only, when given), checked first and
    /// under the panic guard.
    pub fn read_row_group(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        columns: Option<&[&str]>,
        batch_size: usize,
        select: Option<parquet::arrow::arrow_reader::RowSelection>,
        f: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        if pq.row_group(rg).num_rows() == 0 {
            return Ok(());
        }
        let meta = self.checked_meta(pq, rg, columns, None)?;
        self.read_checked(&meta, rg, columns, batch_size, select, f)
    }

    /// Reader metadata for row group `rg`, once the chunks of `columns` (all when `None`) are
    /// checked (corrected where its footer is not what their pages say); `schema`: a reader
    /// schema hint, as [`ParquetFile::reader_meta`]. Only the chunks to be decoded are checked,
    /// so only they are fetched from an object store: reading the user ids of a row group must
    /// not download its text.
    fn checked_meta(
        &self,
        pq: &Arc<ParquetMetaData>,
        rg: usize,
        columns: Option<&[&str]>,
        schema: Option<SchemaRef>,
    ) -> Result<ArrowReaderMetadata> {
        let mask = columns.map(|names| self.projection(pq, names));
        let checked = self.check_columns(pq, rg, mask.as_ref())?;
        let pq = checked.corrected.unwrap_or_else(|| pq.clone());
        self.reader_meta(&pq, schema)
    }

    /// The top-level columns named in `names`, as a projection of `pq`'s leaves.
    fn projection(&self, pq: &ParquetMetaData, names: &[&str]) -> ProjectionMask {
        let roots: Vec<usize> = self
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| names.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        ProjectionMask::roots(pq.file_metadata().schema_descr(), roots)
    }

    /// Decode `columns` of row group `rg`, checked already (`meta`), under the panic guard.
    fn read_checked(
        &self,
        meta: &ArrowReaderMetadata,
        rg: usize,
        columns: Option<&[&str]>,
        batch_size: usize,
        select: Option<parquet::arrow::arrow_reader::RowSelection>,
        f: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let mask = match columns {
            None => ProjectionMask::all(),
            Some(names) => self.projection(meta.metadata(), names),
        };
        let source = self.source.clone();
        guard::catch(|| -> Result<()> {
            let mut builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(source, meta.clone())
                    .with_projection(mask)
                    .with_row_groups(vec![rg])
                    .with_batch_size(batch_size.max(1));
            if let Some(s) = select {
                builder = builder.with_row_selection(s);
            }
            let reader = builder.build().map_err(|e| self.err(Some(rg), e))?;
            for batch in reader {
                f(batch.map_err(|e| self.err(Some(rg), e))?)?;
            }
            Ok(())
        })
        .map_err(|panic| self.err(Some(rg), ReadError::Panic(panic)))?
    }
}

/// `schema` with the top-level fields `to` gives a type for read as that type instead.
pub(crate) fn retyped(schema: &SchemaRef, to: impl Fn(&Field) -> Option<DataType>) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match to(f) {
            Some(t) => Arc::new(f.as_ref().clone().with_data_type(t)),
            None => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` with the string columns named in `names` read as dictionaries (keys into each
/// chunk's dictionary, no string copied per row): for columns mapped once per distinct value.
pub(crate) fn with_dictionaries(schema: &SchemaRef, names: &[&str]) -> SchemaRef {
    retyped(schema, |f| {
        let dict = names.contains(&f.name().as_str())
            && matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8);
        dict.then(|| {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone()))
        })
    })
}

/// Tests: `batch` written to `path` as one Parquet file with `props`.
#[cfg(test)]
pub(crate) fn write_for_test(
    path: &std::path::Path,
    batch: &RecordBatch,
    props: parquet::file::properties::WriterProperties,
) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};

    use super::open_parquet;
    use crate::io::{Location, ReadOptions};

    #[test]
    fn a_row_group_read_by_column_in_pieces_gives_the_batches_of_one_reader() {
        // 2,345 rows in one row group, pages of 100 rows: read in batches of 100, pieces of
        // 400 rows, the last one short; one column read as a dictionary.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let n = 2_345i64;
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7 % 1000)));
        let names: ArrayRef =
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (i % 5 != 0).then(|| ["a", "bb", "ccc"][(i % 3) as usize])
            })));
        let batch = RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .build();
        super::write_for_test(&path, &batch, props);

        let pq = open_parquet(&Location::local(&path), ReadOptions::default()).unwrap();
        let meta = pq.parquet_meta().clone();
        assert_eq!(meta.num_row_groups(), 1);
        let mut whole = Vec::new();
        pq.read_row_group(&meta, 0, Some(&["id", "name"]), 100, None, &mut |b| {
            whole.push(b);
            Ok(())
        })
        .unwrap();
        let mut pieces = Vec::new();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            pq.read_row_group_by_column(&meta, 0, &["id", "name"], &["name"], 100, None, &mut |b| {
                pieces.push(b);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(pieces.len(), 24);
        assert_eq!(whole.len(), pieces.len());
        for (a, b) in whole.iter().zip(&pieces) {
            assert_eq!(a.num_rows(), b.num_rows());
            assert_eq!(a.column(0).as_ref(), b.column(0).as_ref());
            let name = arrow_cast::cast(b.column(1), a.column(1).data_type()).unwrap();
            assert!(matches!(
                b.column(1).data_type(),
                arrow_schema::DataType::Dictionary(..)
            ));
            assert_eq!(a.column(1).as_ref(), name.as_ref());
            assert!(a.column(1).null_count() > 0);
        }
    }
}
