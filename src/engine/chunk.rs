//! Encoded column chunks held in memory ([`RawChunk`], its bytes in pieces: [`ChunkBytes`]), and
//! what corpusgate's own column chunk writers ([`super::prose`], [`super::labels`]) share: the
//! settings they write under, the page codec, page headers, definition levels, and each page's
//! entries in the column and offset index with the chunk's statistics and metadata, made as the
//! parquet crate's column writer makes them (its truncation rules included), so that a reader
//! sees the same kind of chunk whichever wrote it.

use std::cell::RefCell;
use std::io::Read;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use bytes::{Buf, Bytes};
use parquet::basic::{BoundaryOrder, Compression, Encoding, SortOrder, Type};
use parquet::column::page::PageWriteSpec;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use crate::io::thrift::put_varint;

/// An encoded column chunk held in memory, ready to be appended to a row group.
pub struct RawChunk {
    pub bytes: ChunkBytes,
    pub close: ColumnCloseResult,
}

/// A column chunk's bytes in file order, in pieces: our writers' pages each as its header and
/// the buffer its body was compressed into. The row group writer copies each piece once, into
/// the output file; one buffer for the whole chunk cost a copy of every page more and the
/// reallocations of a growing `Vec` (0.8 % of a write-heavy run's CPU, measured). A splice takes
/// the previous chunk's pages as slices of it the same way.
#[derive(Clone, Default)]
pub struct ChunkBytes {
    pieces: Vec<Bytes>,
    len: u64,
}

/// The pages our writers append: v1 data pages (levels RLE-encoded) of PLAIN values or of
/// dictionary ids, and the dictionary page (PLAIN, unsorted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum PageKind {
    Plain,
    DictionaryIds,
    Dictionary,
}

impl From<Bytes> for ChunkBytes {
    fn from(b: Bytes) -> ChunkBytes {
        let mut c = ChunkBytes::default();
        c.push(b);
        c
    }
}

impl ChunkBytes {
    /// The chunk as one buffer (its pieces copied, unless there is one): for the few pages a
    /// splice encodes between copied ones.
    pub(super) fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.pieces) {
            Ok([one]) => one,
            Err(pieces) => Bytes::from(pieces.concat()),
        }
    }

    /// Append `b`.
    pub(super) fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len() as u64;
            self.pieces.push(b);
        }
    }

    /// Append a page: its header as the parquet crate's page writer writes it (Thrift compact;
    /// no CRC, no statistics), then `body`, `uncompressed` bytes before compression.
    pub(super) fn push_page(
        &mut self,
        kind: PageKind,
        body: Bytes,
        uncompressed: usize,
        num_values: u32,
    ) -> Result<PageWriteSpec, String> {
        let int = |v: usize| {
            i32::try_from(v)
                .map_err(|_| format!("a page of {v} bytes or values is more than Parquet allows"))
        };
        // A field one id after the last, of type i32 (zigzag varint).
        fn next_i32(h: &mut Vec<u8>, v: i32) {
            h.push(0x15);
            put_varint(h, ((v << 1) ^ (v >> 31)) as u32 as u64);
        }
        // Thrift values of the parquet enums used here.
        const DATA_PAGE: i32 = 0;
        const DICTIONARY_PAGE: i32 = 2;
        const PLAIN: i32 = 0;
        const RLE: i32 = 3;
        const RLE_DICTIONARY: i32 = 8;
        let num_values = int(num_values as usize)?;
        let mut header = Vec::with_capacity(32);
        let (page_type, encoding) = match kind {
            PageKind::Plain => (DATA_PAGE, PLAIN),
            PageKind::DictionaryIds => (DATA_PAGE, RLE_DICTIONARY),
            PageKind::Dictionary => (DICTIONARY_PAGE, PLAIN),
        };
        next_i32(&mut header, page_type); // 1: type
        next_i32(&mut header, int(uncompressed)?); // 2: uncompressed_page_size
        next_i32(&mut header, int(body.len())?); // 3: compressed_page_size
        if kind == PageKind::Dictionary {
            header.push(0x4C); // 7: dictionary_page_header, a struct
            next_i32(&mut header, num_values);
            next_i32(&mut header, encoding);
            header.push(0x12); // 3: is_sorted, false
        } else {
            header.push(0x2C); // 5: data_page_header, a struct
            next_i32(&mut header, num_values);
            next_i32(&mut header, encoding);
            next_i32(&mut header, RLE); // definition levels
            next_i32(&mut header, RLE); // repetition levels
        }
        header.extend_from_slice(&[0, 0]); // the end of both structs
        let mut spec = PageWriteSpec::new();
        spec.page_type = if kind == PageKind::Dictionary {
            parquet::basic::PageType::DICTIONARY_PAGE
        } else {
            parquet::basic::PageType::DATA_PAGE
        };
        spec.uncompressed_size = uncompressed + header.len();
        spec.compressed_size = body.len() + header.len();
        spec.num_values = num_values as u32;
        spec.offset = self.len;
        spec.bytes_written = spec.compressed_size as u64;
        self.push(Bytes::from(header));
        self.push(body);
        Ok(spec)
    }
}

impl Length for ChunkBytes {
    fn len(&self) -> u64 {
        self.len
    }
}

/// [`ChunkBytes`] read from an offset on.
pub struct ChunkRead {
    rest: std::vec::IntoIter<Bytes>,
    current: Bytes,
}

impl Read for ChunkRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rest.next() {
                Some(p) => self.current = p,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl ChunkReader for ChunkBytes {
    type T = ChunkRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ChunkRead> {
        if start > self.len {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "offset {start} is past the chunk's {} bytes",
                self.len
            )));
        }
        let mut skip = start;
        let mut rest = self.pieces.clone().into_iter();
        let mut current = Bytes::new();
        for p in rest.by_ref() {
            if skip < p.len() as u64 {
                current = p.slice(skip as usize..);
                break;
            }
            skip -= p.len() as u64;
        }
        Ok(ChunkRead { rest, current })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut read = self.get_read(start)?;
        if read.current.len() >= length {
            return Ok(read.current.slice(..length));
        }
        let mut out = vec![0; length];
        read.read_exact(&mut out)?;
        Ok(out.into())
    }
}

/// How one of our writers writes a chunk: as text (truncated at character boundaries) or bytes,
/// and at which zstd level (`None`: uncompressed).
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub utf8: bool,
    pub codec: PageCodec,
}

/// The codecs our writers compress pages with: the output's, when it is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PageCodec {
    Uncompressed,
    /// At this level.
    Zstd(i32),
    /// Raw snappy, as the parquet crate's codec writes it (pyarrow's, Spark's and DuckDB's
    /// default, so what `--compression preserve` writes most often).
    Snappy,
}

impl Settings {
    /// The settings for leaf `descr` holding arrays of `data_type` (or dictionaries of them)
    /// under `props`, when they are ones our writers make: a top-level BYTE_ARRAY ordered as
    /// bytes, with a dictionary or without as `dictionary` says, at zstd, snappy or no codec, with
    /// page statistics, in PARQUET_1_0 pages without page header statistics or bloom filter.
    pub(super) fn of(
        descr: &ColumnDescPtr,
        data_type: &DataType,
        props: &WriterProperties,
        dictionary: bool,
    ) -> Option<Settings> {
        let path = descr.path();
        let value_type = match data_type {
            DataType::Dictionary(_, v) => v.as_ref(),
            other => other,
        };
        let utf8 = match value_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => false,
            _ => return None,
        };
        let codec = Settings::codec(props, path)?.codec;
        let fits = descr.physical_type() == Type::BYTE_ARRAY
            && descr.sort_order() == SortOrder::UNSIGNED
            && descr.max_rep_level() == 0
            && descr.max_def_level() <= 1
            && props.dictionary_enabled(path) == dictionary
            && props.statistics_enabled(path) == EnabledStatistics::Page
            && !props.write_page_header_statistics(path)
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && props.bloom_filter_properties(path).is_none();
        fits.then_some(Settings { utf8, codec })
    }

    /// The codec alone of column `path` under `props`, when it is one our writers compress
    /// with (for pages of values that are not byte arrays).
    pub(super) fn codec(props: &WriterProperties, path: &ColumnPath) -> Option<Settings> {
        let codec = match props.compression(path) {
            Compression::ZSTD(l) => PageCodec::Zstd(l.compression_level()),
            Compression::SNAPPY => PageCodec::Snappy,
            Compression::UNCOMPRESSED => PageCodec::Uncompressed,
            _ => return None,
        };
        Some(Settings { utf8: false, codec })
    }

    /// `page` compressed as the chunk's codec says.
    pub(super) fn compress(&self, page: &[u8]) -> Result<Bytes, String> {
        match self.codec {
            PageCodec::Zstd(level) => {
                zstd_compress(level, page).map_err(|e| format!("compressing a page: {e}"))
            }
            PageCodec::Snappy => {
                snappy_compress(page).map_err(|e| format!("compressing a page: {e}"))
            }
            PageCodec::Uncompressed => Ok(Bytes::copy_from_slice(page)),
        }
    }

    /// The codec as the chunk's metadata names it.
    fn compression(&self) -> parquet::errors::Result<Compression> {
        Ok(match self.codec {
            PageCodec::Zstd(l) => Compression::ZSTD(parquet::basic::ZstdLevel::try_new(l)?),
            PageCodec::Snappy => Compression::SNAPPY,
            PageCodec::Uncompressed => Compression::UNCOMPRESSED,
        })
    }
}

thread_local! {
    /// A thread's snappy encoder (its hash table), kept from page to page.
    static SNAPPY: RefCell<snap::raw::Encoder> = RefCell::new(snap::raw::Encoder::new());
}

/// `src` compressed as raw snappy, the bytes the parquet crate's snappy codec writes (the same
/// encoder, into a buffer of its own).
fn snappy_compress(src: &[u8]) -> Result<Bytes, snap::Error> {
    SNAPPY.with(|e| e.borrow_mut().compress_vec(src).map(Bytes::from))
}

thread_local! {
    /// One zstd compression context per level, kept by each thread from chunk to chunk: making
    /// one costs about what compressing a few kilobytes does.
    static ZSTD: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    /// The buffer a thread's pages are compressed into, kept from page to page (see
    /// [`zstd_compress`]).
    static ZSTD_OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A kept compression buffer larger than this is let go after use: one page of very long rows
/// does not hold its size per thread for the rest of the run.
const ZSTD_OUT_KEEP: usize = 16 << 20;

/// `src` compressed at zstd `level`, the frame the parquet crate's codec makes (content size in
/// the header, no checksum).
///
/// Compressed into a buffer the thread keeps, then copied into one of the frame's size. Before,
/// each page had a new buffer of zstd's bound, handed over as it was: every page waiting to be
/// written held that bound (2.7 times the frame on prose). On 2026-12-07, against that: peak RSS
/// 117-130 MB instead of 147-154 on the join write-heavy bench corpus and 102-104 instead of
/// 121-138 inline, a fifth fewer page faults, CPU medians 3.9 % and 2.5 % lower over four
/// alternating runs each, and zstd's compression 1.07 times the floor's in perf samples instead
/// of 1.22 (medians of six pairs; same bytes). The copy is the frame's size, ~0.3 % of the CPU.
/// (A session before measured the kept buffer as ~2 % more CPU; these machines drift by more
/// than that between runs.)
pub(super) fn zstd_compress(level: i32, src: &[u8]) -> std::io::Result<Bytes> {
    ZSTD.with(|cell| {
        let kept = &mut *cell.borrow_mut();
        let at = match kept.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                kept.push((level, zstd::bulk::Compressor::new(level)?));
                kept.len() - 1
            }
        };
        ZSTD_OUT.with(|cell| {
            let out = &mut *cell.borrow_mut();
            out.clear();
            out.reserve(zstd::zstd_safe::compress_bound(src.len()));
            let compressed = kept[at].1.compress_to_buffer(src, out);
            let frame = compressed.map(|_| Bytes::copy_from_slice(out));
            if out.capacity() > ZSTD_OUT_KEEP {
                *out = Vec::new();
            }
            frame
        })
    })
}

/// A chunk's pages as they are written: their entries in the column and offset index, the
/// boundary order, and what the chunk's statistics and metadata sum up.
pub(super) struct PageIndex {
    settings: Settings,
    optional: bool,
    index_truncate: Option<usize>,
    stats_truncate: Option<usize>,
    column_index: ColumnIndexBuilder,
    offset_index: Option<OffsetIndexBuilder>,
    /// The last non-null page's min and max, untruncated, for the boundary order.
    last: Option<(Vec<u8>, Vec<u8>)>,
    ascending: bool,
    descending: bool,
    min: Option<Vec<u8>>,
    max: Option<Vec<u8>>,
    rows: u64,
    nulls: u64,
    unencoded: i64,
    uncompressed: i64,
}

/// `f` for each value of `array` (a string or binary array, views included), in order, `None`
/// for a null; the error names the column's type when it is not one of these.
pub(super) fn each_value<'a>(
    array: &'a dyn Array,
    mut f: impl FnMut(Option<&'a [u8]>) -> Result<(), String>,
) -> Result<(), String> {
    macro_rules! each {
        ($a:expr) => {{
            let a = $a;
            for i in 0..a.len() {
                let v: Option<&[u8]> = (!a.is_null(i)).then(|| a.value(i).as_ref());
                f(v)?;
            }
            Ok(())
        }};
    }
    match array.data_type() {
        DataType::Utf8 => each!(array.as_string::<i32>()),
        DataType::LargeUtf8 => each!(array.as_string::<i64>()),
        DataType::Utf8View => each!(array.as_string_view()),
        DataType::Binary => each!(array.as_binary::<i32>()),
        DataType::LargeBinary => each!(array.as_binary::<i64>()),
        DataType::BinaryView => each!(array.as_binary_view()),
        other => Err(format!("a string or binary column given {other} values")),
    }
}

/// One more row's definition level in `runs` (`(defined, count)`, as [`rle_levels`] encodes
/// them).
pub(super) fn push_level(runs: &mut Vec<(bool, u32)>, defined: bool) {
    push_levels(runs, defined, 1);
}

/// [`push_level`] `count` times.
pub(super) fn push_levels(runs: &mut Vec<(bool, u32)>, defined: bool, mut count: usize) {
    const MOST: u32 = u32::MAX >> 2;
    while count > 0 {
        match runs.last_mut() {
            Some((d, n)) if *d == defined && *n < MOST => {
                let add = count.min((MOST - *n) as usize);
                *n += add as u32;
                count -= add;
            }
            _ => {
                let add = count.min(MOST as usize);
                runs.push((defined, add as u32));
                count -= add;
            }
        }
    }
}

/// One page, as [`PageIndex::add`] records it.
pub(super) struct PageEntry<'a> {
    pub spec: &'a PageWriteSpec,
    pub rows: usize,
    pub nulls: usize,
    /// Its least and greatest value (`None`: all null).
    pub bounds: Option<(&'a [u8], &'a [u8])>,
    /// Its values' bytes, lengths excluded.
    pub value_bytes: i64,
}

impl PageIndex {
    pub(super) fn new(settings: Settings, optional: bool, props: &WriterProperties) -> PageIndex {
        PageIndex {
            settings,
            optional,
            index_truncate: props.column_index_truncate_length(),
            stats_truncate: props.statistics_truncate_length(),
            column_index: ColumnIndexBuilder::new(Type::BYTE_ARRAY),
            offset_index: (!props.offset_index_disabled()).then(OffsetIndexBuilder::new),
            last: None,
            ascending: true,
            descending: true,
            min: None,
            max: None,
            rows: 0,
            nulls: 0,
            unencoded: 0,
            uncompressed: 0,
        }
    }

    /// A page that holds no values (a dictionary page): its bytes only.
    pub(super) fn add_bytes(&mut self, spec: &PageWriteSpec) {
        self.uncompressed += spec.uncompressed_size as i64;
    }

    /// A data page written.
    pub(super) fn add(&mut self, page: PageEntry<'_>) {
        let utf8 = self.settings.utf8;
        match page.bounds.filter(|_| page.nulls < page.rows) {
            Some((lo, hi)) => {
                if let Some((last_lo, last_hi)) = &self.last {
                    self.ascending &= last_lo.as_slice() <= lo && last_hi.as_slice() <= hi;
                    self.descending &= last_lo.as_slice() >= lo && last_hi.as_slice() >= hi;
                }
                self.column_index.append(
                    false,
                    truncate_min(utf8, self.index_truncate, lo).0,
                    truncate_max(utf8, self.index_truncate, hi).0,
                    page.nulls as i64,
                    None,
                );
                if self.min.as_deref().is_none_or(|m| lo < m) {
                    self.min = Some(lo.to_vec());
                }
                if self.max.as_deref().is_none_or(|m| hi > m) {
                    self.max = Some(hi.to_vec());
                }
                self.last = Some((lo.to_vec(), hi.to_vec()));
            }
            None => self
                .column_index
                .append(true, Vec::new(), Vec::new(), page.nulls as i64, None),
        }
        let histogram = self.histogram(page.rows as u64, page.nulls as u64);
        self.column_index.append_histograms(&None, &histogram);
        if let Some(o) = self.offset_index.as_mut() {
            o.append_offset_and_size(page.spec.offset as i64, page.spec.bytes_written as i32);
            o.append_row_count(page.rows as i64);
            o.append_unencoded_byte_array_data_bytes(Some(page.value_bytes));
        }
        self.rows += page.rows as u64;
        self.nulls += page.nulls as u64;
        self.unencoded += page.value_bytes;
        self.uncompressed += page.spec.uncompressed_size as i64;
    }

    /// The definition level histogram (`[nulls, values]`) of an optional column.
    fn histogram(&self, rows: u64, nulls: u64) -> Option<LevelHistogram> {
        self.optional
            .then(|| LevelHistogram::from(vec![nulls as i64, (rows - nulls) as i64]))
    }

    /// The chunk of `bytes` (its data pages from `data_page_offset`, a dictionary page at 0 if
    /// `dictionary`), its metadata and page index.
    pub(super) fn finish(
        self,
        descr: ColumnDescPtr,
        bytes: ChunkBytes,
        data_page_offset: i64,
        dictionary: bool,
        page_stats: Vec<PageEncodingStats>,
    ) -> Result<RawChunk, String> {
        let bad =
            |e: parquet::errors::ParquetError| format!("encoding column '{}': {e}", descr.path());
        let utf8 = self.settings.utf8;
        let min = self
            .min
            .as_deref()
            .map(|m| truncate_min(utf8, self.stats_truncate, m));
        let max = self
            .max
            .as_deref()
            .map(|m| truncate_max(utf8, self.stats_truncate, m));
        let exact = |b: &Option<(Vec<u8>, bool)>| b.as_ref().is_some_and(|(_, cut)| !cut);
        let (min_exact, max_exact) = (exact(&min), exact(&max));
        let stats = ValueStatistics::new(
            min.map(|(m, _)| m.into()),
            max.map(|(m, _)| m.into()),
            None,
            Some(self.nulls),
            false,
        )
        .with_min_is_exact(min_exact)
        .with_max_is_exact(max_exact);
        let encodings: &[Encoding] = if dictionary {
            &[Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY]
        } else {
            &[Encoding::PLAIN, Encoding::RLE]
        };
        let mut meta = ColumnChunkMetaData::builder(descr.clone())
            .set_compression(self.settings.compression().map_err(bad)?)
            .set_encodings_mask(parquet::basic::EncodingMask::new_from_encodings(
                encodings.iter(),
            ))
            .set_page_encoding_stats(page_stats)
            .set_total_compressed_size(bytes.len as i64)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_page_offset)
            .set_dictionary_page_offset(dictionary.then_some(0))
            .set_statistics(Statistics::ByteArray(stats))
            .set_unencoded_byte_array_data_bytes(Some(self.unencoded));
        if self.optional {
            meta = meta.set_definition_level_histogram(self.histogram(self.rows, self.nulls));
        }
        let metadata = meta.build().map_err(bad)?;
        let mut column_index = self.column_index;
        column_index.set_boundary_order(if self.ascending {
            BoundaryOrder::ASCENDING
        } else if self.descending {
            BoundaryOrder::DESCENDING
        } else {
            BoundaryOrder::UNORDERED
        });
        Ok(RawChunk {
            close: ColumnCloseResult {
                bytes_written: bytes.len,
                rows_written: self.rows,
                metadata,
                bloom_filter: None,
                column_index: Some(column_index.build().map_err(bad)?),
                offset_index: self.offset_index.map(|o| o.build()),
            },
            bytes,
        })
    }
}

/// Definition levels 0 and 1 as v1 pages hold them: their byte length (4 bytes, little-endian),
/// then the RLE/bit-packed hybrid with bit width 1, here all RLE runs.
pub(super) fn rle_levels(runs: &[(bool, u32)]) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    for &(defined, n) in runs {
        crate::io::thrift::put_varint(&mut out, u64::from(n) << 1);
        out.push(u8::from(defined));
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// A lower bound of `v` of at most `limit` bytes (a prefix, ending at a character boundary when
/// `utf8` and `v` is UTF-8), and whether it is shorter than `v`: the parquet crate's rule.
pub(super) fn truncate_min(utf8: bool, limit: Option<usize>, v: &[u8]) -> (Vec<u8>, bool) {
    limit
        .filter(|l| v.len() > *l)
        .and_then(|l| match std::str::from_utf8(v) {
            Ok(s) if utf8 => (1..=l)
                .rfind(|x| s.is_char_boundary(*x))
                .map(|x| v[..x].to_vec()),
            _ => Some(v[..l].to_vec()),
        })
        .map_or_else(|| (v.to_vec(), false), |t| (t, true))
}

/// An upper bound of `v` of at most `limit` bytes (a prefix with its last character, or byte,
/// incremented), and whether it differs from `v`: the parquet crate's rule.
pub(super) fn truncate_max(utf8: bool, limit: Option<usize>, v: &[u8]) -> (Vec<u8>, bool) {
    limit
        .filter(|l| v.len() > *l)
        .and_then(|l| match std::str::from_utf8(v) {
            Ok(s) if utf8 => {
                let split = (l.saturating_sub(3)..=l).rfind(|x| s.is_char_boundary(*x))?;
                increment_utf8(s.get(..split)?)
            }
            _ => increment(v[..l].to_vec()),
        })
        .map_or_else(|| (v.to_vec(), false), |t| (t, true))
}

/// `s` with its last character that can be incremented without growing incremented, the rest
/// dropped; `None` when none can.
fn increment_utf8(s: &str) -> Option<Vec<u8>> {
    for (i, c) in s.char_indices().rev() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            if next.len_utf8() == c.len_utf8() {
                let mut out = s.as_bytes()[..i + c.len_utf8()].to_vec();
                next.encode_utf8(&mut out[i..]);
                return Some(out);
            }
        }
    }
    None
}

/// `v` plus one, as a big-endian number of its length; `None` when every byte is 0xFF.
fn increment(mut v: Vec<u8>) -> Option<Vec<u8>> {
    for b in v.iter_mut().rev() {
        let (n, overflow) = b.overflowing_add(1);
        *b = n;
        if !overflow {
            return Some(v);
        }
    }
    None
}

/// A file of one row group holding `chunk`, a column of `field` written under `props`.
#[cfg(test)]
pub(super) fn file_of(
    field: &arrow_schema::Field,
    chunk: RawChunk,
    props: &std::sync::Arc<WriterProperties>,
) -> Bytes {
    let schema = arrow_schema::Schema::new(vec![field.clone()]);
    let descr = parquet::arrow::ArrowSchemaConverter::new()
        .convert(&schema)
        .unwrap();
    let mut file = parquet::file::writer::SerializedFileWriter::new(
        Vec::new(),
        descr.root_schema_ptr(),
        props.clone(),
    )
    .unwrap();
    let mut rg = file.next_row_group().unwrap();
    rg.append_column(&chunk.bytes, chunk.close).unwrap();
    rg.close().unwrap();
    Bytes::from(file.into_inner().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages appended by [`ChunkBytes::push_page`] come out as the parquet crate's page writer
    /// writes them, header bytes and write specs alike, and read back from any offset.
    #[test]
    fn pages_are_written_as_the_parquet_crate_writes_them() {
        use parquet::column::page::{CompressedPage, Page, PageWriter};
        use parquet::file::writer::{SerializedPageWriter, TrackedWrite};

        let mut ours = ChunkBytes::default();
        let mut theirs = TrackedWrite::new(Vec::new());
        // Sizes and counts across the varint widths (1 to 5 bytes, zigzag doubling them).
        let sizes = [0usize, 1, 63, 64, 8191, 8192, 1 << 20, (1 << 27) + 5];
        let counts = [0u32, 1, 63, 64, 131_072, 1 << 30];
        let mut n = 0;
        for (i, kind) in [
            PageKind::Dictionary,
            PageKind::DictionaryIds,
            PageKind::Plain,
        ]
        .into_iter()
        .cycle()
        .take(sizes.len() * counts.len())
        .enumerate()
        {
            let uncompressed = sizes[i % sizes.len()];
            let num_values = counts[(i / sizes.len() + i) % counts.len()];
            let body = Bytes::from(vec![i as u8; (i * 37) % 300]);
            let page = match kind {
                PageKind::Dictionary => Page::DictionaryPage {
                    buf: body.clone(),
                    num_values,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                },
                PageKind::DictionaryIds | PageKind::Plain => Page::DataPage {
                    buf: body.clone(),
                    num_values,
                    encoding: if kind == PageKind::Plain {
                        Encoding::PLAIN
                    } else {
                        Encoding::RLE_DICTIONARY
                    },
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                },
            };
            let want = SerializedPageWriter::new(&mut theirs)
                .write_page(CompressedPage::new(page, uncompressed))
                .unwrap();
            let got = ours
                .push_page(kind, body, uncompressed, num_values)
                .unwrap();
            assert_eq!(
                (got.page_type, got.offset, got.bytes_written, got.num_values),
                (
                    want.page_type,
                    want.offset,
                    want.bytes_written,
                    want.num_values
                ),
                "page {i}"
            );
            assert_eq!(
                (got.compressed_size, got.uncompressed_size),
                (want.compressed_size, want.uncompressed_size)
            );
            n += 1;
        }
        assert_eq!(n, 48);
        let theirs = Bytes::from(theirs.into_inner().unwrap());
        assert_eq!(Length::len(&ours), theirs.len() as u64);
        for start in [
            0,
            1,
            2,
            17,
            500,
            theirs.len() / 2,
            theirs.len() - 1,
            theirs.len(),
        ] {
            let mut read = Vec::new();
            ours.get_read(start as u64)
                .unwrap()
                .read_to_end(&mut read)
                .unwrap();
            assert_eq!(read, theirs[start..], "from {start}");
            let n = (theirs.len() - start).min(1000);
            assert_eq!(
                ours.get_bytes(start as u64, n).unwrap(),
                theirs[start..start + n]
            );
        }
        assert!(ours.get_read(theirs.len() as u64 + 1).is_err());
        assert!(ours.get_bytes(theirs.len() as u64 - 2, 3).is_err());
        // A page larger than Parquet allows is refused, not wrapped.
        assert!(ChunkBytes::default()
            .push_page(PageKind::Plain, Bytes::new(), 1 << 31, 1)
            .is_err());
    }

    #[test]
    fn bounds_are_truncated_as_the_parquet_crate_truncates_them() {
        let long = "aé".repeat(40); // 120 bytes
        let (min, cut) = truncate_min(true, Some(64), long.as_bytes());
        assert!(cut && min.len() <= 64 && std::str::from_utf8(&min).is_ok());
        assert!(long.as_bytes().starts_with(&min));
        let (max, cut) = truncate_max(true, Some(64), long.as_bytes());
        assert!(cut && max.len() <= 64 && std::str::from_utf8(&max).is_ok());
        assert!(max.as_slice() > long.as_bytes());
        // Short values are their own bounds.
        assert_eq!(
            truncate_max(true, Some(64), b"abc"),
            (b"abc".to_vec(), false)
        );
        // Bytes that cannot be incremented: the value itself.
        let ff = vec![0xFF; 100];
        assert_eq!(truncate_max(false, Some(64), &ff), (ff.clone(), false));
        let mut v = vec![1u8; 100];
        v[63] = 0xFF;
        let (max, cut) = truncate_max(false, Some(64), &v);
        assert!(cut && max.len() == 64 && max[62] == 2 && max[63] == 0);
        assert_eq!(increment_utf8("a\u{10FFFF}"), Some(b"b".to_vec()));
        assert_eq!(
            rle_levels(&[(true, 3), (false, 1)]),
            vec![4, 0, 0, 0, 6, 1, 2, 0]
        );
    }
}
