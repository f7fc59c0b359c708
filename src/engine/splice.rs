//! `--reuse` inside a row group that holds a changed member, for its large columns and its
//! manifest: the output chunk is PREV_OUT's, with only the pages around a row whose decision
//! flipped (or, in the manifest, whose rule or region changed) encoded again.
//!
//! PREV_OUT's keep mask of the row group is known (its manifest names every row it excluded), and
//! so is today's. A page of PREV_OUT's chunk whose input rows — from its first to its last, the
//! excluded ones between included — kept their decision today holds exactly the rows a fresh run
//! writes there: it is copied as it is (header and compressed bytes). The kept rows between two
//! copied pages (a flipped row, and the rows of PREV_OUT's pages around it) are read from the
//! input and encoded as plain pages with the output's codec and statistics settings. A chunk
//! with a dictionary page keeps it: its copied pages refer to it, the new pages do not. A
//! manifest's chunk with one keeps it too, extended with the values its new pages hold, and
//! those are pages of ids into it (`splice_dictionary`).
//!
//! The chunk's metadata is rebuilt from both: sizes and encodings summed, each page's entry of the
//! offset and column index taken from PREV_OUT's index or from the new pages', and statistics
//! merged. A byte-array chunk's merged min and max are bounds of the rows written — PREV_OUT's
//! bounds still hold after rows leave — and are marked inexact when a row left (its value may
//! have been the min). An integer chunk's are its pages' least min and greatest max, exact: the
//! parquet crate reads integer bounds back as exact whatever the file says, so a bound kept
//! from a row that left would be passed on as exact a night later.
//!
//! Of the data, only flat byte-array columns ordered as bytes (strings and binaries: the text)
//! are spliced, the ones that are large; the others are encoded afresh. A manifest row group is
//! spliced column by column ([`splice_manifest_column`]): its rows are the excluded input rows,
//! so a page of PREV_OUT's is copied when no input row from its first to its last had its
//! manifest row change, and today's manifest rows between copied pages are encoded (its integer
//! columns too, in signed order). The output holds the rows, values and order a fresh run
//! writes; its page boundaries are PREV_OUT's, so its bytes differ.

use std::sync::Arc;

use arrow_buffer::BooleanBuffer;
use bytes::Bytes;
use parquet::basic::{BoundaryOrder, ConvertedType, LogicalType, SortOrder, Type as PhysicalType};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::data_type::ByteArray;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, ParquetMetaData,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

use super::byte_rows::ByteRows;
use super::chunk::{ChunkBytes, RawChunk};
use super::splice_dictionary::SplicedDictionary;
use crate::io::pages::{ChunkPages, Page, PageKind};
use crate::io::parquet::FileSource;

/// PREV_OUT's output row group of one input row group.
pub(super) struct PrevGroup<'a> {
    pub source: &'a FileSource,
    /// PREV_OUT's data file footer, with its page index.
    pub pq: &'a ParquetMetaData,
    pub at: usize,
    /// The input row (within the row group) of each of its rows, ascending.
    pub rows: &'a [u32],
}

/// A chunk spliced from PREV_OUT's pages and new ones.
pub(super) struct Spliced {
    pub chunk: RawChunk,
    pub pages_copied: u64,
}

/// The `(root, leaf)` columns of `descr` worth splicing from `prev`: top-level byte arrays ordered
/// as bytes, not among `skip_roots`, whose PREV_OUT chunk has two data pages or more, an offset and
/// a column index with null counts, and the codec `props` writes today.
pub(super) fn candidates(
    descr: &SchemaDescriptor,
    prev: &PrevGroup<'_>,
    props: &WriterProperties,
    skip_roots: &[usize],
) -> Vec<(usize, usize)> {
    let Some(index) = prev.pq.page_index() else {
        return Vec::new();
    };
    let fields = descr.root_schema().get_fields();
    let group = prev.pq.row_group(prev.at);
    (0..descr.num_columns())
        .filter_map(|leaf| {
            let col = descr.column(leaf);
            let root = descr.get_column_root_idx(leaf);
            let flat = fields.get(root).is_some_and(|f| f.is_primitive());
            let wanted = flat
                && !skip_roots.contains(&root)
                && col.physical_type() == PhysicalType::BYTE_ARRAY
                && col.sort_order() == SortOrder::UNSIGNED
                && col.max_rep_level() == 0;
            if !wanted || leaf >= group.num_columns() {
                return None;
            }
            let chunk = group.column(leaf);
            let pages = index
                .offset_index(prev.at, leaf)
                .map_or(0, |o| o.page_locations().len());
            let indexed = matches!(
                index.column_index(prev.at, leaf),
                Some(ColumnIndexMetaData::BYTE_ARRAY(ci)) if ci.null_count(0).is_some()
            );
            // The codec, not its level: a file does not record the level it was written at
            // (the parquet crate reads back every zstd chunk as level 1), and PREV_OUT's options
            // are this run's (`reuse::load_state`).
            let same_codec = std::mem::discriminant(&chunk.compression())
                == std::mem::discriminant(&props.compression(col.path()));
            (pages >= 2 && indexed && same_codec).then_some((root, leaf))
        })
        .collect()
}

/// One piece of the new chunk.
enum Piece {
    /// PREV_OUT's page `.0`.
    Copy(usize),
    /// The kept input rows in `.0..​.1`, encoded.
    Encode(usize, usize),
}

/// A page of the new chunk, for its offset and column index.
struct PageEntry {
    offset: i64,
    size: i32,
    rows: i64,
    null_page: bool,
    min: Vec<u8>,
    max: Vec<u8>,
    nulls: i64,
    def_histogram: Option<Vec<i64>>,
    unencoded: Option<i64>,
}

/// Splice column `leaf` of input row group `rg` (`keep`: today's kept rows; `flips`: the rows
/// whose decision differs from PREV_OUT's, ascending; `removed`: whether any of them left).
/// `walked`: PREV_OUT's chunk of it, its pages walked and checked against its offset index
/// (`ParquetFile::check_columns`, as any chunk read or copied is). `None` when no page of it
/// can be copied (the caller encodes it afresh).
#[allow(clippy::too_many_arguments)]
pub(super) fn splice_column(
    input: &FileSource,
    in_pq: &ParquetMetaData,
    rg: usize,
    leaf: usize,
    prev: &PrevGroup<'_>,
    walked: &ChunkPages,
    keep: &BooleanBuffer,
    flips: &[u32],
    removed: bool,
    props: &Arc<WriterProperties>,
    check_input: &dyn Fn() -> bool,
) -> Result<Option<Spliced>, String> {
    let descr = in_pq.file_metadata().schema_descr().column(leaf);
    let name = descr.path().string();
    let bad = |m: String| format!("PREV_OUT's column '{name}' (row group {}): {m}", prev.at);
    let index = prev
        .pq
        .page_index()
        .ok_or_else(|| bad("no page index".into()))?;
    let (Some(oi), Some(ci @ ColumnIndexMetaData::BYTE_ARRAY(_))) = (
        index.offset_index(prev.at, leaf),
        index.column_index(prev.at, leaf),
    ) else {
        return Ok(None);
    };
    let pchunk = prev.pq.row_group(prev.at).column(leaf);
    let locs = oi.page_locations();
    let total = prev.rows.len();
    let start = pchunk
        .dictionary_page_offset()
        .unwrap_or(pchunk.data_page_offset());
    let len = pchunk.compressed_size();
    if start < 0 || len <= 0 || pchunk.num_values() as usize != total {
        return Err(bad(format!(
            "{} values at bytes {start}+{len} for {total} rows",
            pchunk.num_values()
        )));
    }
    let chunk = PrevChunk::new(
        &descr,
        prev.source,
        pchunk,
        walked,
        oi,
        ci,
        total,
        Order::Bytes,
    )
    .map_err(bad)?;

    // Which pages are copied, and the input rows encoded between them.
    let kept_in = |lo: usize, hi: usize| keep.slice(lo, hi - lo).count_set_bits();
    let rows = keep.len();
    let pieces = pieces_of(
        &chunk.spans,
        prev.rows,
        flips,
        rows,
        &|lo, hi| kept_in(lo, hi) > 0,
        &|_, _, _| Ok(()),
    )
    .map_err(bad)?;
    let pages_copied = copies(&pieces);
    if pages_copied == 0 {
        return Ok(None);
    }

    let sources = Sources {
        input,
        in_pq,
        rg,
        prev,
        prev_chunk: pchunk,
        prev_locations: locs,
        check_input,
    };
    let segments = encode_segments(&sources, &descr, &pieces, keep, props)?;
    let chunk = assemble(&chunk, &pieces, segments, removed, None).map_err(bad)?;
    let kept = keep.count_set_bits() as u64;
    if chunk.close.rows_written != kept {
        return Err(bad(format!(
            "{} rows spliced where {kept} are kept",
            chunk.close.rows_written
        )));
    }
    Ok(Some(Spliced {
        chunk,
        pages_copied,
    }))
}

/// The pieces of a spliced chunk whose pages hold the rows `spans` of PREV_OUT's, the input row of
/// each of which `rows` gives (ascending). A page is copied when none of the input rows from its
/// first to its last is `changed` (ascending) and `check` (its index and input rows) passes;
/// the input rows between copied pages, up to `end`, are encoded where `has` says they hold any.
fn pieces_of(
    spans: &[(usize, usize)],
    rows: &[u32],
    changed: &[u32],
    end: usize,
    has: &dyn Fn(usize, usize) -> bool,
    check: &dyn Fn(usize, usize, usize) -> Result<(), String>,
) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut next = 0usize;
    for (i, &(a, b)) in spans.iter().enumerate() {
        let (lo, hi) = (rows[a] as usize, rows[b - 1] as usize);
        let c = changed.partition_point(|x| (*x as usize) < lo);
        let clean = changed.get(c).is_none_or(|x| *x as usize > hi);
        if !clean || lo < next || hi >= end {
            continue;
        }
        check(i, lo, hi)?;
        if has(next, lo) {
            pieces.push(Piece::Encode(next, lo));
        }
        pieces.push(Piece::Copy(i));
        next = hi + 1;
    }
    if copies(&pieces) > 0 && has(next, end) {
        pieces.push(Piece::Encode(next, end));
    }
    Ok(pieces)
}

impl<'a> PrevChunk<'a> {
    /// PREV_OUT's chunk of `total` rows, `walked`, with its offset index `offsets` and column
    /// index `index`: its data pages as the walk found them, one per entry of the offset index,
    /// and each one's rows, checked before anything of it is read.
    #[allow(clippy::too_many_arguments)]
    fn new(
        descr: &'a Arc<ColumnDescriptor>,
        source: &'a FileSource,
        chunk: &'a ColumnChunkMetaData,
        walked: &'a ChunkPages,
        offsets: &'a parquet::file::page_index::offset_index::OffsetIndexMetaData,
        index: &'a ColumnIndexMetaData,
        total: usize,
        order: Order,
    ) -> Result<PrevChunk<'a>, String> {
        let locs = offsets.page_locations();
        // The walk found the index's pages where it says, with these sizes.
        let data_pages: Vec<&Page> = walked
            .pages
            .iter()
            .filter(|p| matches!(p.kind, PageKind::Data | PageKind::DataV2))
            .collect();
        if data_pages.len() != locs.len() {
            return Err("its offset index does not describe its pages".into());
        }
        let mut spans = Vec::with_capacity(locs.len());
        for (i, l) in locs.iter().enumerate() {
            let a = l.first_row_index;
            let b = locs.get(i + 1).map_or(total as i64, |n| n.first_row_index);
            if (i == 0 && a != 0) || a < 0 || b <= a || b as usize > total {
                return Err(format!(
                    "its offset index does not describe its rows (page {i})"
                ));
            }
            spans.push((a as usize, b as usize));
        }
        Ok(PrevChunk {
            descr,
            source,
            chunk,
            walked,
            data_pages,
            locations: locs,
            index,
            offsets,
            spans,
            order,
        })
    }
}

/// The pages of PREV_OUT's that `pieces` copy.
fn copies(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .filter(|p| matches!(p, Piece::Copy(_)))
        .count() as u64
}

/// PREV_OUT's chunk of a column being spliced, walked and checked against its index.
struct PrevChunk<'a> {
    descr: &'a Arc<ColumnDescriptor>,
    source: &'a FileSource,
    chunk: &'a ColumnChunkMetaData,
    walked: &'a ChunkPages,
    /// Its data pages as walked, one per entry of its offset index.
    data_pages: Vec<&'a Page>,
    locations: &'a [parquet::file::page_index::offset_index::PageLocation],
    index: &'a ColumnIndexMetaData,
    offsets: &'a parquet::file::page_index::offset_index::OffsetIndexMetaData,
    /// Each data page's rows, `(first, end)` among the chunk's `total` rows.
    spans: Vec<(usize, usize)>,
    order: Order,
}

/// The new chunk: `pieces` in order, PREV_OUT's pages copied as they are and `segments` (one
/// per `Encode` piece, as encoded) between them, with its metadata, offset and column index
/// rebuilt from both. `removed`: whether a value of PREV_OUT's chunk is not in the new one.
/// `dictionary`: the dictionary page (and its size uncompressed, header included) that takes
/// the place of PREV_OUT's, which then holds its values first.
fn assemble(
    prev: &PrevChunk<'_>,
    pieces: &[Piece],
    segments: Vec<(Bytes, ColumnCloseResult)>,
    removed: bool,
    dictionary: Option<(Bytes, i64)>,
) -> Result<RawChunk, String> {
    let (pchunk, locs) = (prev.chunk, prev.locations);
    let start = pchunk
        .dictionary_page_offset()
        .unwrap_or(pchunk.data_page_offset());
    let len = pchunk.compressed_size();
    // Every page taken is a slice of the chunk's bytes (the walk checked the index against the
    // pages; this keeps a slice in bounds whatever it found).
    let inside = |l: &parquet::file::page_index::offset_index::PageLocation| {
        l.offset >= start
            && l.compressed_page_size >= 0
            && l.offset + l.compressed_page_size as i64 <= start + len
    };
    if start < 0 || len <= 0 || locs.is_empty() || !locs.iter().all(inside) {
        return Err("its offset index points outside it".into());
    }
    let prev_bytes = prev
        .source
        .get_bytes(start as u64, len as usize)
        .map_err(|e| e.to_string())?;
    let at = |offset: i64| (offset - start) as usize;
    let mut segments = segments;
    segments.reverse();

    // The previous chunk's pages are taken as slices of it, not copied (see `ChunkBytes`).
    let mut out = ChunkBytes::default();
    let mut uncompressed = 0i64;
    let first_data = at(locs[0].offset);
    if pchunk.dictionary_page_offset().is_some() {
        // The chunk's first page, up to its first data page.
        let dict = prev
            .walked
            .pages
            .first()
            .filter(|p| p.kind == PageKind::Dictionary)
            .filter(|p| at(p.offset as i64) == 0)
            .filter(|p| (p.header_len + p.compressed) as usize == first_data)
            .ok_or("its dictionary page is not its first")?;
        match dictionary {
            Some((page, size)) => {
                uncompressed += size;
                out.push(page);
            }
            None => {
                uncompressed += (dict.header_len + dict.uncompressed) as i64;
                out.push(prev_bytes.slice(..first_data));
            }
        }
    } else if first_data != 0
        || (prev.walked.pages.first()).is_some_and(|p| p.kind == PageKind::Dictionary)
    {
        // Pages before the first data page that the metadata names no dictionary page: left
        // out, the data pages would lose their dictionary.
        return Err("a page its metadata does not name comes before its first data page".into());
    }
    let data_start = out.len() as usize;
    let mut entries: Vec<PageEntry> = Vec::new();
    let mut seg_meta: Vec<ColumnCloseResult> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Copy(i) => {
                let l = &locs[*i];
                let page =
                    prev_bytes.slice(at(l.offset)..at(l.offset) + l.compressed_page_size as usize);
                let walked = prev.data_pages[*i];
                uncompressed += (walked.header_len + walked.uncompressed) as i64;
                let (a, b) = prev.spans[*i];
                let (min, max) =
                    bounds(prev.index, *i).ok_or("its column index is not of its type")?;
                entries.push(PageEntry {
                    offset: out.len() as i64,
                    size: l.compressed_page_size,
                    rows: (b - a) as i64,
                    null_page: prev.index.is_null_page(*i),
                    min,
                    max,
                    nulls: prev.index.null_count(*i).ok_or("no null counts")?,
                    def_histogram: prev
                        .index
                        .definition_level_histogram(*i)
                        .map(<[i64]>::to_vec),
                    unencoded: prev
                        .offsets
                        .unencoded_byte_array_data_bytes()
                        .and_then(|v| v.get(*i).copied()),
                });
                out.push(page);
            }
            Piece::Encode(..) => {
                let (bytes, close) = segments.pop().ok_or("a segment went missing")?;
                let (Some(soi), Some(sci)) = (&close.offset_index, &close.column_index) else {
                    return Err("its new pages have no page index".into());
                };
                let base = out.len() as i64;
                let slocs = soi.page_locations();
                for (j, l) in slocs.iter().enumerate() {
                    let next_row = slocs
                        .get(j + 1)
                        .map_or(close.rows_written as i64, |n| n.first_row_index);
                    let (min, max) =
                        bounds(sci, j).ok_or("its new pages' index is not of its type")?;
                    entries.push(PageEntry {
                        offset: base + l.offset,
                        size: l.compressed_page_size,
                        rows: next_row - l.first_row_index,
                        null_page: sci.is_null_page(j),
                        min,
                        max,
                        nulls: sci.null_count(j).unwrap_or(0),
                        def_histogram: sci.definition_level_histogram(j).map(<[i64]>::to_vec),
                        unencoded: soi
                            .unencoded_byte_array_data_bytes()
                            .and_then(|v| v.get(j).copied()),
                    });
                }
                uncompressed += close.metadata.uncompressed_size();
                out.push(bytes);
                seg_meta.push(close);
            }
        }
    }
    let written: i64 = entries.iter().map(|e| e.rows).sum();
    let close = ColumnCloseResult {
        bytes_written: out.len(),
        rows_written: written as u64,
        metadata: chunk_metadata(
            prev.descr,
            pchunk,
            &seg_meta,
            &entries,
            removed,
            out.len() as usize,
            uncompressed,
            data_start,
            prev.order,
        )
        .map_err(|e| e.to_string())?,
        bloom_filter: None,
        column_index: Some(column_index(&entries, prev.order).map_err(|e| e.to_string())?),
        offset_index: Some(offset_index(&entries)),
    };
    Ok(RawChunk { bytes: out, close })
}

/// How a spliced column's values order, for its statistics and column index: as unsigned bytes,
/// or as signed integers (their index holds them little-endian, as PLAIN encodes them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Order {
    Bytes,
    Int32,
    Int64,
}

impl Order {
    /// The order of `descr`'s values, when splicing knows it.
    fn of(descr: &ColumnDescriptor) -> Option<Order> {
        match (descr.physical_type(), descr.sort_order()) {
            (PhysicalType::BYTE_ARRAY, SortOrder::UNSIGNED) => Some(Order::Bytes),
            (PhysicalType::INT32, SortOrder::SIGNED) => Some(Order::Int32),
            (PhysicalType::INT64, SortOrder::SIGNED) => Some(Order::Int64),
            _ => None,
        }
    }

    fn physical(self) -> PhysicalType {
        match self {
            Order::Bytes => PhysicalType::BYTE_ARRAY,
            Order::Int32 => PhysicalType::INT32,
            Order::Int64 => PhysicalType::INT64,
        }
    }

    fn cmp(self, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        let int = |v: &[u8]| -> i64 {
            match self {
                Order::Int32 => v.try_into().map_or(0, |b| i32::from_le_bytes(b) as i64),
                _ => v.try_into().map_or(0, i64::from_le_bytes),
            }
        };
        match self {
            Order::Bytes => a.cmp(b),
            Order::Int32 | Order::Int64 => int(a).cmp(&int(b)),
        }
    }
}

/// Page `i`'s min and max in `index`, as its column index's bytes (empty for a null page);
/// `None` for an index of a type splicing does not take.
fn bounds(index: &ColumnIndexMetaData, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    Some(match index {
        ColumnIndexMetaData::BYTE_ARRAY(ci) => (
            ci.min_value(i).unwrap_or_default().to_vec(),
            ci.max_value(i).unwrap_or_default().to_vec(),
        ),
        ColumnIndexMetaData::INT64(ci) => (
            ci.min_value(i)
                .map_or(Vec::new(), |v| v.to_le_bytes().to_vec()),
            ci.max_value(i)
                .map_or(Vec::new(), |v| v.to_le_bytes().to_vec()),
        ),
        ColumnIndexMetaData::INT32(ci) => (
            ci.min_value(i)
                .map_or(Vec::new(), |v| v.to_le_bytes().to_vec()),
            ci.max_value(i)
                .map_or(Vec::new(), |v| v.to_le_bytes().to_vec()),
        ),
        _ => return None,
    })
}

/// PREV_OUT's manifest row group of one input row group.
pub(super) struct PrevManifest<'a> {
    pub source: &'a FileSource,
    /// PREV_OUT's manifest footer, with its page index.
    pub pq: &'a ParquetMetaData,
    pub at: usize,
    /// The input row (within the row group) of each of its rows, ascending.
    pub rows: &'a [u32],
}

/// A spliced manifest chunk holds at most this many times the pages a fresh run writes of its
/// rows (counted by the row limit alone; see [`splice_manifest_column`]).
const MAX_PAGE_GROWTH: usize = 2;

/// Splice column `leaf` of a manifest row group: PREV_OUT's pages whose input rows, from their
/// first to their last, hold no `dirty` row are copied as they are, and today's manifest rows
/// between them are encoded as new pages. `now_rows`: the input row of each of today's manifest
/// rows (ascending), whose values `column` holds; `dirty`: the input rows (ascending) whose
/// manifest row is not PREV_OUT's (it left, it came, or its rule or region changed); `removed`:
/// whether one of PREV_OUT's rows is not today's. `walked`: PREV_OUT's chunk, its pages walked
/// and checked against its offset index. `None` when it has one page only or no page of it can
/// be copied.
#[allow(clippy::too_many_arguments)]
pub(super) fn splice_manifest_column(
    prev: &PrevManifest<'_>,
    descr: &Arc<ColumnDescriptor>,
    leaf: usize,
    walked: &ChunkPages,
    now_rows: &[u32],
    dirty: &[u32],
    column: &arrow_array::ArrayRef,
    props: &Arc<WriterProperties>,
    removed: bool,
) -> Result<Option<Spliced>, String> {
    let name = descr.path().string();
    let bad = |m: String| {
        format!(
            "PREV_OUT's manifest column '{name}' (row group {}): {m}",
            prev.at
        )
    };
    let Some(order) = Order::of(descr).filter(|_| descr.max_rep_level() == 0) else {
        return Ok(None);
    };
    // PREV_OUT's column as today's in every way its pages depend on: type (logical type and
    // repetition included), levels and codec. The record's header makes a difference unlikely
    // (same version, policy and options); a copied page of another kind would be unreadable.
    let prev_descr = prev.pq.file_metadata().schema_descr();
    let same_column = leaf < prev_descr.num_columns() && {
        let p = prev_descr.column(leaf);
        p.path() == descr.path()
            && p.self_type() == descr.self_type()
            && p.max_def_level() == descr.max_def_level()
            && p.max_rep_level() == descr.max_rep_level()
    };
    // The codec, not its level: a file does not record the level it was written at.
    let same_codec = prev.at < prev.pq.num_row_groups()
        && leaf < prev.pq.row_group(prev.at).num_columns()
        && std::mem::discriminant(&prev.pq.row_group(prev.at).column(leaf).compression())
            == std::mem::discriminant(&props.compression(descr.path()));
    if !same_column || !same_codec {
        return Ok(None);
    }
    let Some(index) = prev.pq.page_index() else {
        return Ok(None);
    };
    let (Some(oi), Some(ci)) = (
        index.offset_index(prev.at, leaf),
        index.column_index(prev.at, leaf),
    ) else {
        return Ok(None);
    };
    if bounds(ci, 0).is_none() || ci.null_count(0).is_none() {
        return Ok(None);
    }
    let pchunk = prev.pq.row_group(prev.at).column(leaf);
    let locs = oi.page_locations();
    // A chunk of one page (a row group of at most MANIFEST_PAGE_ROWS excluded rows) costs
    // little to encode whole, and spliced it would only gain a page.
    if locs.len() < 2 {
        return Ok(None);
    }
    let total = prev.rows.len();
    if pchunk.num_values() as usize != total {
        return Err(bad(format!(
            "{} values for {total} rows",
            pchunk.num_values()
        )));
    }
    let chunk =
        PrevChunk::new(descr, prev.source, pchunk, walked, oi, ci, total, order).map_err(bad)?;

    // Today's manifest rows of the input rows in `lo..hi`, as indices into `now_rows`.
    let today = |lo: usize, hi: usize| {
        now_rows.partition_point(|r| (*r as usize) < lo)
            ..now_rows.partition_point(|r| (*r as usize) < hi)
    };
    let spans = &chunk.spans;
    let pieces = pieces_of(
        spans,
        prev.rows,
        dirty,
        usize::MAX,
        &|lo, hi| !today(lo, hi).is_empty(),
        // No row of it changed: today's rows there are its rows, one for one.
        &|i, lo, hi| {
            let (a, b) = spans[i];
            (today(lo, hi + 1).len() == b - a)
                .then_some(())
                .ok_or_else(|| format!("page {i} does not hold the rows it should"))
        },
    )
    .map_err(bad)?;
    let pages_copied = copies(&pieces);
    if pages_copied == 0 {
        return Ok(None);
    }
    // Night after night, splices cut a manifest's pages smaller (the rows between copied pages
    // make pages of their own, ~35 bytes a page and column): a chunk that would hold more than
    // MAX_PAGE_GROWTH times the pages a fresh run writes is encoded whole instead, which costs
    // little for a manifest and bounds what fragments cost.
    let limit = props.data_page_row_count_limit().max(1);
    let pages: usize = pieces
        .iter()
        .map(|p| match *p {
            Piece::Copy(_) => 1,
            Piece::Encode(s, e) => today(s, e).len().div_ceil(limit),
        })
        .sum();
    if pages > MAX_PAGE_GROWTH * now_rows.len().div_ceil(limit).max(1) {
        return Ok(None);
    }
    // A chunk with a dictionary page: its new pages are ids into it, extended with the values
    // they hold that it lacks (see `splice_dictionary`); a chunk that cannot be so is encoded
    // whole, never given plain pages.
    let arrays: Vec<arrow_array::ArrayRef> = pieces
        .iter()
        .filter_map(|p| match *p {
            Piece::Encode(s, e) => {
                let r = today(s, e);
                Some(column.slice(r.start, r.len()))
            }
            Piece::Copy(_) => None,
        })
        .collect();
    let mut dictionary = match pchunk.dictionary_page_offset() {
        None => None,
        Some(_) => match SplicedDictionary::read(prev.source, pchunk, total, descr).map_err(bad)? {
            Some(d) => Some(d),
            None => return Ok(None),
        },
    };
    if let Some(d) = dictionary.as_mut() {
        for a in &arrays {
            if !d.extend(a).map_err(bad)? {
                return Ok(None);
            }
        }
    }
    let dictionary_page = match &dictionary {
        Some(d) => match d.page(descr, props) {
            Ok(page) => page,
            Err(_) => return Ok(None),
        },
        None => None,
    };
    let mut segments = Vec::with_capacity(arrays.len());
    for a in &arrays {
        let segment = match &dictionary {
            Some(d) => match d.encode(descr, props, a) {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(None),
                Err(m) => return Err(format!("manifest column '{name}': {m}")),
            },
            None => encode_array(descr, props, a)
                .map_err(|m| format!("manifest column '{name}': {m}"))?,
        };
        segments.push(segment);
    }
    let chunk = assemble(&chunk, &pieces, segments, removed, dictionary_page).map_err(bad)?;
    if chunk.close.rows_written as usize != now_rows.len() {
        return Err(bad(format!(
            "{} rows spliced where the manifest holds {}",
            chunk.close.rows_written,
            now_rows.len()
        )));
    }
    Ok(Some(Spliced {
        chunk,
        pages_copied,
    }))
}

/// The values of `array` that are not null, when it is an Arrow array of `T`.
fn non_null<T: arrow_array::ArrowPrimitiveType>(
    array: &arrow_array::ArrayRef,
) -> Option<Vec<T::Native>> {
    use arrow_array::cast::AsArray;
    Some(array.as_primitive_opt::<T>()?.iter().flatten().collect())
}

/// `array`'s values (a flat column of `descr`: integers, or strings and binaries of any Arrow
/// layout) encoded as a column chunk with `props`.
fn encode_array(
    descr: &Arc<ColumnDescriptor>,
    props: &Arc<WriterProperties>,
    array: &arrow_array::ArrayRef,
) -> Result<(Bytes, ColumnCloseResult), String> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let wrong = || format!("an Arrow {} column", array.data_type());
    // Strings and binaries of any layout (dictionaries, views) as plain binaries: their
    // validity is then each row's own, whatever a dictionary's keys say.
    let array = match descr.physical_type() {
        PhysicalType::BYTE_ARRAY => {
            let flat = match array.data_type() {
                arrow_schema::DataType::Dictionary(_, v) => {
                    arrow_cast::cast(array, v).map_err(|_| wrong())?
                }
                _ => array.clone(),
            };
            arrow_cast::cast(&flat, &arrow_schema::DataType::Binary).map_err(|_| wrong())?
        }
        _ => array.clone(),
    };
    let optional = descr.max_def_level() > 0;
    if !optional && array.logical_null_count() > 0 {
        return Err("a null where the column is required".into());
    }
    let defs: Option<Vec<i16>> = optional.then(|| {
        (0..array.len())
            .map(|i| i16::from(array.is_valid(i)))
            .collect()
    });
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let page_writer = SerializedPageWriter::new(&mut sink);
        let encoding = |e: parquet::errors::ParquetError| format!("encoding: {e}");
        match get_column_writer(descr.clone(), props.clone(), Box::new(page_writer)) {
            ColumnWriter::Int64ColumnWriter(mut w) => {
                let values = non_null::<arrow_array::types::Int64Type>(&array).ok_or_else(wrong)?;
                w.write_batch(&values, defs.as_deref(), None)
                    .map_err(encoding)?;
                w.close().map_err(encoding)?
            }
            ColumnWriter::Int32ColumnWriter(mut w) => {
                let values = non_null::<arrow_array::types::Int32Type>(&array).ok_or_else(wrong)?;
                w.write_batch(&values, defs.as_deref(), None)
                    .map_err(encoding)?;
                w.close().map_err(encoding)?
            }
            ColumnWriter::ByteArrayColumnWriter(mut w) => {
                let binary = array.as_binary_opt::<i32>().ok_or_else(wrong)?;
                // One copy of the values, each a slice of it (not an allocation a value).
                let offsets = binary.value_offsets();
                let (base, end) = (offsets[0] as usize, offsets[binary.len()] as usize);
                let data = Bytes::copy_from_slice(&binary.value_data()[base..end]);
                let base = base as i32;
                let values: Vec<ByteArray> = (0..binary.len())
                    .filter(|i| binary.is_valid(*i))
                    .map(|i| {
                        let (a, b) = (
                            (offsets[i] - base) as usize,
                            (offsets[i + 1] - base) as usize,
                        );
                        ByteArray::from(data.slice(a..b))
                    })
                    .collect();
                w.write_batch(&values, defs.as_deref(), None)
                    .map_err(encoding)?;
                w.close().map_err(encoding)?
            }
            _ => return Err(wrong()),
        }
    };
    let bytes = sink.into_inner().map_err(|e| e.to_string())?;
    Ok((Bytes::from(bytes), close))
}

/// Where a spliced column's new pages take their values from.
struct Sources<'a> {
    input: &'a FileSource,
    in_pq: &'a ParquetMetaData,
    rg: usize,
    prev: &'a PrevGroup<'a>,
    prev_chunk: &'a ColumnChunkMetaData,
    prev_locations: &'a [parquet::file::page_index::offset_index::PageLocation],
    /// Walks the input's chunk of the column (as `ParquetFile::check_columns`): true when its
    /// pages are as its footer and index say. Called before any page of it is read.
    check_input: &'a dyn Fn() -> bool,
}

/// The values of the kept rows of each `Encode` piece, encoded as plain pages. A row PREV_OUT
/// kept too is read from PREV_OUT's chunk (a page or two around the flipped rows, already
/// filtered); only the rows kept today and not by PREV_OUT are read from the input.
fn encode_segments(
    src: &Sources<'_>,
    descr: &Arc<ColumnDescriptor>,
    pieces: &[Piece],
    keep: &BooleanBuffer,
    props: &Arc<WriterProperties>,
) -> Result<Vec<(Bytes, ColumnCloseResult)>, String> {
    let name = descr.path().string();
    let rows = keep.len();
    let prev_rows = src.prev.rows;
    let leaf = descr_leaf(src.in_pq, descr).ok_or("no such leaf")?;
    let mut input: Option<ByteRows> = None;
    let mut prev = ByteRows::open(
        src.prev.source,
        src.prev_chunk,
        prev_rows.len(),
        Some(src.prev_locations.to_vec()),
        descr,
    )
    .map_err(|m| format!("PREV_OUT's column '{name}': {m}"))?;
    let optional = descr.max_def_level() > 0;
    let text = matches!(
        descr.logical_type_ref(),
        Some(LogicalType::String | LogicalType::Json | LogicalType::Enum)
    ) || matches!(
        descr.converted_type(),
        ConvertedType::UTF8 | ConvertedType::JSON | ConvertedType::ENUM
    );
    let mut out = Vec::new();
    for piece in pieces {
        let Piece::Encode(s, e) = *piece else {
            continue;
        };
        let mut values: Vec<ByteArray> = Vec::new();
        let mut defs: Vec<i16> = Vec::new();
        // PREV_OUT's row of input row `i`, if it kept it.
        let prev_row = |i: usize| prev_rows.binary_search(&(i as u32)).ok();
        // Runs of rows kept today that come from one source at consecutive rows of it.
        let mut run: Option<(bool, usize, usize)> = None; // (from PREV_OUT, first row, rows)
        let mut flush = |run: Option<(bool, usize, usize)>,
                         values: &mut Vec<ByteArray>,
                         defs: &mut Vec<i16>|
         -> Result<(), String> {
            let Some((from_prev, first, n)) = run else {
                return Ok(());
            };
            let d = optional.then_some(defs);
            if from_prev {
                prev.read(first, n, values, d)
                    .map_err(|m| format!("PREV_OUT's column '{name}': {m}"))
            } else {
                if input.is_none() {
                    if !(src.check_input)() {
                        return Err(format!(
                            "column '{name}': its pages are not as its footer says"
                        ));
                    }
                    let locations = src
                        .in_pq
                        .page_index()
                        .and_then(|i| i.offset_index(src.rg, leaf))
                        .map(|o| o.page_locations().clone());
                    input = Some(ByteRows::open(
                        src.input,
                        src.in_pq.row_group(src.rg).column(leaf),
                        rows,
                        locations,
                        descr,
                    )?);
                }
                let cursor = input.as_mut().expect("opened");
                cursor
                    .read(first, n, values, d)
                    .map_err(|m| format!("column '{name}': {m}"))
            }
        };
        for (a, b) in keep.slice(s, e - s).set_slices() {
            for i in s + a..s + b {
                let (from_prev, at) = match prev_row(i) {
                    Some(j) => (true, j),
                    None => (false, i),
                };
                run = match run {
                    Some((p, first, n)) if p == from_prev && first + n == at => {
                        Some((p, first, n + 1))
                    }
                    other => {
                        flush(other, &mut values, &mut defs)?;
                        Some((from_prev, at, 1))
                    }
                };
            }
        }
        flush(run.take(), &mut values, &mut defs)?;
        if text {
            if let Some(v) = values
                .iter()
                .find(|v| parquet::utf8::check_valid_utf8(v.data()).is_err())
            {
                return Err(format!(
                    "column '{name}' holds a value that is not UTF-8 ({} bytes)",
                    v.len()
                ));
            }
        }
        let mut sink = TrackedWrite::new(Vec::new());
        let close = {
            let page_writer = SerializedPageWriter::new(&mut sink);
            let ColumnWriter::ByteArrayColumnWriter(mut w) =
                get_column_writer(descr.clone(), props.clone(), Box::new(page_writer))
            else {
                return Err(format!("column '{name}' is not a byte array"));
            };
            w.write_batch(&values, optional.then_some(defs.as_slice()), None)
                .map_err(|e| format!("encoding column '{name}': {e}"))?;
            w.close()
                .map_err(|e| format!("encoding column '{name}': {e}"))?
        };
        let bytes = sink.into_inner().map_err(|e| e.to_string())?;
        out.push((Bytes::from(bytes), close));
    }
    Ok(out)
}

/// The leaf index of `descr` in `pq`'s schema.
fn descr_leaf(pq: &ParquetMetaData, descr: &ColumnDescriptor) -> Option<usize> {
    let schema = pq.file_metadata().schema_descr();
    (0..schema.num_columns()).find(|i| schema.column(*i).path() == descr.path())
}

#[allow(clippy::too_many_arguments)]
fn chunk_metadata(
    descr: &Arc<ColumnDescriptor>,
    prev: &ColumnChunkMetaData,
    segments: &[ColumnCloseResult],
    entries: &[PageEntry],
    removed: bool,
    len: usize,
    uncompressed: i64,
    data_start: usize,
    order: Order,
) -> parquet::errors::Result<ColumnChunkMetaData> {
    let mut encodings = *prev.encodings_mask();
    for s in segments {
        for e in s.metadata.encodings() {
            encodings.insert(e);
        }
    }
    // Sums of what PREV_OUT's page index says: a damaged one is an error (the chunk is then
    // encoded afresh), never an overflow.
    let overflow = || parquet::errors::ParquetError::General("a page index sum overflows".into());
    let sum = |values: &mut dyn Iterator<Item = i64>| {
        let mut total = 0i64;
        for v in values {
            total = total.checked_add(v).ok_or_else(overflow)?;
        }
        Ok::<i64, parquet::errors::ParquetError>(total)
    };
    let rows = sum(&mut entries.iter().map(|e| e.rows))?;
    let mut b = ColumnChunkMetaData::builder(descr.clone())
        .set_compression_codec(prev.compression_codec())
        .set_encodings_mask(encodings)
        .set_total_compressed_size(len as i64)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(rows)
        .set_data_page_offset(data_start as i64)
        .set_dictionary_page_offset(prev.dictionary_page_offset().map(|_| 0));
    if let Some(unencoded) = entries
        .iter()
        .map(|e| e.unencoded)
        .collect::<Option<Vec<i64>>>()
    {
        if prev.unencoded_byte_array_data_bytes().is_some() {
            b = b.set_unencoded_byte_array_data_bytes(Some(sum(&mut unencoded.into_iter())?));
        }
    }
    if prev.definition_level_histogram().is_some() {
        if let Some(h) = entries
            .iter()
            .map(|e| e.def_histogram.clone())
            .collect::<Option<Vec<Vec<i64>>>>()
        {
            let mut total = vec![0i64; h.first().map_or(0, Vec::len)];
            for page in &h {
                for (s, v) in total.iter_mut().zip(page) {
                    *s = s.checked_add(*v).ok_or_else(overflow)?;
                }
            }
            b = b.set_definition_level_histogram(Some(LevelHistogram::from(total)));
        }
    }
    let nulls = sum(&mut entries.iter().map(|e| e.nulls))?;
    let stats = match (prev.statistics(), order) {
        (Some(Statistics::ByteArray(p)), Order::Bytes) => {
            let new_pages = segments
                .iter()
                .filter_map(|s| match s.metadata.statistics() {
                    Some(Statistics::ByteArray(s)) => Some(s),
                    _ => None,
                });
            Some(Statistics::ByteArray(merged(p, new_pages, nulls, removed)))
        }
        // Integers' chunk bounds from the pages' own: PREV_OUT's chunk statistics cannot say
        // whether they were exact (the parquet crate reads an integer bound back as exact
        // whatever the file says), and a bound kept from a row that left, then marked exact by
        // a later night, is a wrong `min()` in a reader that answers from statistics (DuckDB).
        (Some(Statistics::Int64(_)), Order::Int64) => {
            Some(Statistics::Int64(int_bounds(entries, nulls, |b| {
                b.try_into().ok().map(i64::from_le_bytes)
            })?))
        }
        (Some(Statistics::Int32(_)), Order::Int32) => {
            Some(Statistics::Int32(int_bounds(entries, nulls, |b| {
                b.try_into().ok().map(i32::from_le_bytes)
            })?))
        }
        _ => None,
    };
    if let Some(stats) = stats {
        b = b.set_statistics(stats);
    }
    b.build()
}

/// An integer chunk's statistics from its pages' index entries (`decode`: a bound's plain
/// bytes): the least min and greatest max of its pages that hold a value, exact, as an integer
/// page's bounds are (never truncated). An entry whose bound does not decode is an error.
fn int_bounds<T: Copy + Ord>(
    entries: &[PageEntry],
    nulls: i64,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> parquet::errors::Result<ValueStatistics<T>> {
    let mut bounds: Option<(T, T)> = None;
    for e in entries.iter().filter(|e| !e.null_page) {
        let (Some(min), Some(max)) = (decode(&e.min), decode(&e.max)) else {
            return Err(parquet::errors::ParquetError::General(
                "a page's integer bound is not 4 or 8 bytes".into(),
            ));
        };
        bounds = Some(match bounds {
            None => (min, max),
            Some((a, b)) => (a.min(min), b.max(max)),
        });
    }
    let exact = bounds.is_some();
    Ok(ValueStatistics::new(
        bounds.map(|b| b.0),
        bounds.map(|b| b.1),
        None,
        Some(nulls.max(0) as u64),
        false,
    )
    .with_min_is_exact(exact)
    .with_max_is_exact(exact)
    // As the parquet crate's writer does for a signed order: the deprecated fields too.
    .with_backwards_compatible_min_max(true))
}

/// A byte-array chunk's statistics: PREV_OUT's `p` and the new pages' `segments` merged. Min and
/// max are bounds of the values written (PREV_OUT's still hold after values leave; a page's
/// may be truncated, so they cannot come from the page index as integers' do), inexact when a
/// value left.
fn merged<'a>(
    p: &'a ValueStatistics<ByteArray>,
    segments: impl Iterator<Item = &'a ValueStatistics<ByteArray>>,
    nulls: i64,
    removed: bool,
) -> ValueStatistics<ByteArray> {
    let bounds: Vec<&ValueStatistics<ByteArray>> = std::iter::once(p).chain(segments).collect();
    let cmp = |a: &&ByteArray, b: &&ByteArray| a.data().cmp(b.data());
    let min = bounds
        .iter()
        .filter_map(|s| s.min_opt().map(|v| (v, s.min_is_exact())))
        .min_by(|x, y| cmp(&x.0, &y.0));
    let max = bounds
        .iter()
        .filter_map(|s| s.max_opt().map(|v| (v, s.max_is_exact())))
        .max_by(|x, y| cmp(&x.0, &y.0));
    ValueStatistics::new(
        min.map(|m| m.0.clone()),
        max.map(|m| m.0.clone()),
        None,
        Some(nulls as u64),
        false,
    )
    .with_min_is_exact(min.is_some_and(|m| m.1 && !removed))
    .with_max_is_exact(max.is_some_and(|m| m.1 && !removed))
    .with_backwards_compatible_min_max(p.is_min_max_backwards_compatible())
}

fn offset_index(
    entries: &[PageEntry],
) -> parquet::file::page_index::offset_index::OffsetIndexMetaData {
    let mut b = OffsetIndexBuilder::new();
    let unencoded = entries.iter().all(|e| e.unencoded.is_some());
    for e in entries {
        b.append_offset_and_size(e.offset, e.size);
        b.append_row_count(e.rows);
        if unencoded {
            b.append_unencoded_byte_array_data_bytes(e.unencoded);
        }
    }
    b.build()
}

fn column_index(
    entries: &[PageEntry],
    order: Order,
) -> parquet::errors::Result<ColumnIndexMetaData> {
    let mut b = ColumnIndexBuilder::new(order.physical());
    let histograms = entries.iter().all(|e| e.def_histogram.is_some());
    for e in entries {
        b.append(e.null_page, e.min.clone(), e.max.clone(), e.nulls, None);
        if histograms {
            let h = e.def_histogram.clone().map(LevelHistogram::from);
            b.append_histograms(&None, &h);
        }
    }
    let pages: Vec<&PageEntry> = entries.iter().filter(|e| !e.null_page).collect();
    let pairs = || pages.windows(2).map(|w| (w[0], w[1]));
    let le = |x: &[u8], y: &[u8]| order.cmp(x, y).is_le();
    let ascending = pairs().all(|(a, b)| le(&a.min, &b.min) && le(&a.max, &b.max));
    let descending = pairs().all(|(a, b)| le(&b.min, &a.min) && le(&b.max, &a.max));
    b.set_boundary_order(if ascending {
        BoundaryOrder::ASCENDING
    } else if descending {
        BoundaryOrder::DESCENDING
    } else {
        BoundaryOrder::UNORDERED
    });
    b.build()
}
