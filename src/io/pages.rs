//! The pages of a column chunk, walked header by header before the parquet crate reads them.
//!
//! A page header is where a file claims how much to allocate: its uncompressed size sizes the
//! decompression buffer, a dictionary's value count sizes the dictionary, a data page's value
//! count sizes some decoders' length buffers. Each claim is checked here against what the bytes
//! can hold and against the memory cap, so that the crate only ever sees headers whose
//! allocations are bounded.
//!
//! The walk also says whether the chunk is exactly the bytes its footer declares — the condition
//! for copying it byte for byte — and finds the real extent of a chunk whose declared size is too
//! small but whose pages are whole (parquet-mr ≤ 1.2.8 left the dictionary page header out of
//! `total_compressed_size`: PARQUET-816).

use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::schema::types::ColumnDescriptor;

use super::thrift::{self, ThriftErrorKind};

/// Bytes at a position of a file or object.
pub trait ReadAt: Send + Sync {
    /// Fill as much of `buf` as the source holds from `offset`; returns the bytes read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match std::os::unix::fs::FileExt::read_at(self, &mut buf[done..], offset + done as u64)
            {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// `len` bytes of `file` from `offset`, in a buffer the kernel fills without it being zeroed
/// first: a chunk's pages are read so, and zeroing each page's buffer before the read
/// overwrote it was ~0.2 % of a write-heavy job's CPU. An end of file before `len` bytes is
/// `UnexpectedEof`.
pub fn read_new_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut done = 0;
    while done < len {
        let at = offset
            .checked_add(done as u64)
            .and_then(|a| libc::off_t::try_from(a).ok())
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        let rest = &mut buf.spare_capacity_mut()[done..len];
        // SAFETY: `rest` is `len - done` bytes the buffer owns and nothing else refers to;
        // pread writes at most that many into them and reads none of them.
        let n = unsafe { libc::pread(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) };
        match n {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => done += n as usize,
        }
    }
    // SAFETY: the loop ends only once pread has written all `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

/// Largest page header read. Headers hold a few integers and optional min/max statistics.
const MAX_HEADER_BYTES: usize = 16 << 20;

/// Bytes of memory a decoder may hold per value it is told about (a string view is 16 bytes).
pub const BYTES_PER_VALUE: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Dictionary,
    Data,
    DataV2,
    Index,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub offset: u64,
    pub header_len: u64,
    pub compressed: u64,
    pub uncompressed: u64,
    pub kind: PageKind,
    pub num_values: u64,
    pub crc: Option<u32>,
}

/// What a chunk's pages hold.
#[derive(Debug, Clone)]
pub struct ChunkPages {
    /// `total_compressed_size` as the footer declares it.
    pub declared: u64,
    /// The bytes its pages really take.
    pub len: u64,
    pub pages: Vec<Page>,
    /// Sum of the pages' uncompressed sizes, headers included.
    pub uncompressed: u64,
    pub values: u64,
}

impl ChunkPages {
    /// The declared bytes are exactly the chunk's pages: it can be copied as declared.
    pub fn exact(&self) -> bool {
        self.len == self.declared
    }

    /// Memory a decoder of this chunk may need: every page decompressed, plus per value.
    pub fn decode_bytes(&self) -> u64 {
        self.uncompressed
            .saturating_add(self.values.saturating_mul(BYTES_PER_VALUE))
    }
}

/// Why a chunk's pages cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageProblem {
    Corrupt(String),
    /// A page would need more memory than the cap.
    TooBig {
        needed: u64,
    },
}

fn corrupt(m: impl Into<String>) -> PageProblem {
    PageProblem::Corrupt(m.into())
}

/// Bytes one value of `descr`'s physical type takes at least in a PLAIN dictionary page, in
/// eighths of a byte (booleans are bits).
fn min_value_eighths(descr: &ColumnDescriptor) -> u64 {
    match descr.physical_type() {
        PhysicalType::BOOLEAN => 1,
        PhysicalType::INT32 | PhysicalType::FLOAT => 32,
        PhysicalType::INT64 | PhysicalType::DOUBLE => 64,
        PhysicalType::INT96 => 96,
        PhysicalType::BYTE_ARRAY => 32,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => 8 * descr.type_length().max(1) as u64,
    }
}

/// Read and parse the header at `pos`, reading no further than `end`.
fn read_header(src: &dyn ReadAt, pos: u64, end: u64) -> Result<(thrift::Node, u64), PageProblem> {
    let room = (end - pos).min(MAX_HEADER_BYTES as u64) as usize;
    let mut want = room.min(256);
    loop {
        let mut buf = vec![0u8; want];
        let got = src
            .read_at(pos, &mut buf)
            .map_err(|e| corrupt(format!("reading a page header at byte {pos}: {e}")))?;
        buf.truncate(got);
        match thrift::read_struct(&buf) {
            Ok((node, used)) => return Ok((node, used as u64)),
            // A header cut short by the buffer ends early, or claims a string (a statistic:
            // pyarrow writes min/max of long strings in page headers) longer than what is
            // left of it; read more and parse again.
            Err(e)
                if matches!(
                    e.kind,
                    ThriftErrorKind::Eof | ThriftErrorKind::Claims { .. }
                ) && got == want
                    && want < room =>
            {
                want = (want * 4).min(room);
            }
            Err(e) => {
                return Err(corrupt(format!(
                    "the page header at byte {pos} is not readable: {e}"
                )))
            }
        }
    }
}

fn i32_field(node: &thrift::Node, id: i16, what: &str, pos: u64) -> Result<u64, PageProblem> {
    let v = node
        .field(id)
        .and_then(|n| n.int())
        .ok_or_else(|| corrupt(format!("the page header at byte {pos} has no {what}")))?;
    if !(0..=i64::from(i32::MAX)).contains(&v) {
        return Err(corrupt(format!(
            "the page header at byte {pos} claims {what} {v}"
        )));
    }
    Ok(v as u64)
}

/// Check one page header's claims; returns the page.
fn check_page(
    header: &thrift::Node,
    header_len: u64,
    pos: u64,
    end: u64,
    descr: &ColumnDescriptor,
    max_memory: u64,
) -> Result<Page, PageProblem> {
    let kind = match header.field(1).and_then(|n| n.int()) {
        Some(0) => PageKind::Data,
        Some(1) => PageKind::Index,
        Some(2) => PageKind::Dictionary,
        Some(3) => PageKind::DataV2,
        other => {
            return Err(corrupt(format!(
                "the page header at byte {pos} has page type {}",
                other.map_or("none".into(), |t| t.to_string())
            )))
        }
    };
    let uncompressed = i32_field(header, 2, "uncompressed_page_size", pos)?;
    let compressed = i32_field(header, 3, "compressed_page_size", pos)?;
    if compressed > end - pos - header_len {
        return Err(corrupt(format!(
            "the page at byte {pos} claims {compressed} bytes but the column chunk ends {} bytes after its header",
            end - pos - header_len
        )));
    }
    if uncompressed > max_memory {
        return Err(PageProblem::TooBig {
            needed: uncompressed,
        });
    }
    let sub = |id: i16, name: &str| {
        header
            .field(id)
            .ok_or_else(|| corrupt(format!("the page header at byte {pos} has no {name}")))
    };
    let num_values = match kind {
        PageKind::Dictionary => {
            let d = sub(7, "dictionary_page_header")?;
            let n = i32_field(d, 1, "num_values", pos)?;
            // PLAIN dictionary values are at least this wide: more values than the page
            // could hold is a lie that would size the dictionary.
            if n.saturating_mul(min_value_eighths(descr)) > uncompressed.saturating_mul(8)
                || (n == 0 && uncompressed > 0)
            {
                return Err(corrupt(format!(
                    "the dictionary page at byte {pos} claims {n} values in {uncompressed} bytes"
                )));
            }
            n
        }
        PageKind::Data => i32_field(sub(5, "data_page_header")?, 1, "num_values", pos)?,
        PageKind::DataV2 => {
            let h = sub(8, "data_page_header_v2")?;
            let n = i32_field(h, 1, "num_values", pos)?;
            let nulls = i32_field(h, 2, "num_nulls", pos)?;
            let rows = i32_field(h, 3, "num_rows", pos)?;
            let def = i32_field(h, 5, "definition_levels_byte_length", pos)?;
            let rep = i32_field(h, 6, "repetition_levels_byte_length", pos)?;
            if nulls > n || rows > n {
                return Err(corrupt(format!(
                    "the data page at byte {pos} claims {nulls} nulls and {rows} rows in {n} values"
                )));
            }
            if def + rep > compressed.min(uncompressed) {
                return Err(corrupt(format!(
                    "the data page at byte {pos} claims {} bytes of levels in a {}-byte page",
                    def + rep,
                    compressed.min(uncompressed)
                )));
            }
            n
        }
        PageKind::Index => 0,
    };
    let needed = num_values.saturating_mul(BYTES_PER_VALUE);
    if needed > max_memory {
        return Err(PageProblem::TooBig { needed });
    }
    Ok(Page {
        offset: pos,
        header_len,
        compressed,
        uncompressed,
        kind,
        num_values,
        crc: header
            .field(4)
            .and_then(|n| n.int())
            .map(|c| c as i32 as u32),
    })
}

/// Walk the pages of `col` (a chunk of a row group of `rows` rows) in `src`, reading no byte at
/// or past `limit` (where the footer starts). Pages are walked to the declared end; if they hold
/// fewer values than the chunk claims, on until they do (the PARQUET-816 case).
pub fn walk_chunk(
    src: &dyn ReadAt,
    limit: u64,
    col: &ColumnChunkMetaData,
    descr: &ColumnDescriptor,
    rows: u64,
    max_memory: u64,
) -> Result<ChunkPages, PageProblem> {
    let start = col
        .dictionary_page_offset()
        .unwrap_or(col.data_page_offset());
    let declared = col.compressed_size();
    let expected = col.num_values();
    if start < 0 || declared < 0 || expected < 0 {
        return Err(corrupt(format!(
            "the footer claims offset {start}, {declared} bytes and {expected} values"
        )));
    }
    let (start, declared, expected) = (start as u64, declared as u64, expected as u64);
    if start.saturating_add(declared) > limit {
        return Err(corrupt(format!(
            "the footer claims bytes {start}..{} but the data ends at byte {limit}",
            start.saturating_add(declared)
        )));
    }
    if descr.max_rep_level() == 0 && expected != rows {
        return Err(corrupt(format!(
            "the footer claims {expected} values in a row group of {rows} rows"
        )));
    }
    let declared_end = start + declared;
    let mut pages: Vec<Page> = Vec::new();
    let mut pos = start;
    let mut values = 0u64;
    let mut uncompressed = 0u64;
    while pos < declared_end || (values < expected && pos < limit) {
        let (header, header_len) = read_header(src, pos, limit)?;
        let page = check_page(&header, header_len, pos, limit, descr, max_memory)?;
        if page.kind == PageKind::Dictionary && !pages.is_empty() {
            return Err(corrupt(format!("a second dictionary page at byte {pos}")));
        }
        if matches!(page.kind, PageKind::Data | PageKind::DataV2) {
            values += page.num_values;
            if values > expected {
                return Err(corrupt(format!(
                    "its pages hold more than the {expected} values the footer claims"
                )));
            }
        }
        uncompressed = uncompressed.saturating_add(header_len + page.uncompressed);
        pos += header_len + page.compressed;
        pages.push(page);
    }
    if values != expected {
        return Err(corrupt(format!(
            "its pages hold {values} values but the footer claims {expected}"
        )));
    }
    Ok(ChunkPages {
        declared,
        len: pos - start,
        pages,
        uncompressed,
        values,
    })
}

/// Check the CRC-32 of every page that carries one (the parquet crate does not).
pub fn check_crcs(src: &dyn ReadAt, chunk: &ChunkPages) -> Result<(), PageProblem> {
    for p in chunk.pages.iter().filter(|p| p.crc.is_some()) {
        let mut body = vec![0u8; p.compressed as usize];
        let at = p.offset + p.header_len;
        let got = src
            .read_at(at, &mut body)
            .map_err(|e| corrupt(format!("reading the page at byte {}: {e}", p.offset)))?;
        if got != body.len() || crc32fast::hash(&body) != p.crc.expect("filtered") {
            return Err(corrupt(format!(
                "the page at byte {} fails its CRC-32 check",
                p.offset
            )));
        }
    }
    Ok(())
}
