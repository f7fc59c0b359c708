//! What corpusgate's own column chunk writers ([`super::prose`], [`super::labels`]) share: the
//! settings they write under, the page codec, definition levels, and each page's entries in the
//! column and offset index with the chunk's statistics and metadata, made as the parquet crate's
//! column writer makes them (its truncation rules included), so that a reader sees the same kind
//! of chunk whichever wrote it.

use std::cell::RefCell;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, SortOrder, Type};
use parquet::column::page::PageWriteSpec;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::raw_leaf::RawChunk;

/// How one of our writers writes a chunk: as text (truncated at character boundaries) or bytes,
/// and at which zstd level (`None`: uncompressed).
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub utf8: bool,
    pub zstd_level: Option<i32>,
}

impl Settings {
    /// The settings for leaf `descr` holding arrays of `data_type` (or dictionaries of them)
    /// under `props`, when they are ones our writers make: a top-level BYTE_ARRAY ordered as
    /// bytes, with a dictionary or without as `dictionary` says, at zstd or uncompressed, with
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
        let zstd_level = match props.compression(path) {
            Compression::ZSTD(l) => Some(l.compression_level()),
            Compression::UNCOMPRESSED => None,
            _ => return None,
        };
        let fits = descr.physical_type() == Type::BYTE_ARRAY
            && descr.sort_order() == SortOrder::UNSIGNED
            && descr.max_rep_level() == 0
            && descr.max_def_level() <= 1
            && props.dictionary_enabled(path) == dictionary
            && props.statistics_enabled(path) == EnabledStatistics::Page
            && !props.write_page_header_statistics(path)
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && props.bloom_filter_properties(path).is_none();
        fits.then_some(Settings { utf8, zstd_level })
    }

    /// `page` compressed as the chunk's codec says.
    pub(super) fn compress(&self, page: &[u8]) -> Result<Bytes, String> {
        match self.zstd_level {
            Some(level) => {
                zstd_compress(level, page).map_err(|e| format!("compressing a page: {e}"))
            }
            None => Ok(Bytes::copy_from_slice(page)),
        }
    }
}

thread_local! {
    /// One zstd compression context per level, kept by each thread from chunk to chunk: making
    /// one costs about what compressing a few kilobytes does.
    static ZSTD: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
}

/// `src` compressed at zstd `level`, the frame the parquet crate's codec makes (content size in
/// the header, no checksum). Into a buffer of its own, handed to the page writer as it is: a
/// buffer kept per thread and copied out of cost the write-heavy job ~2 % more CPU (the heap
/// hands back the block the last page freed, so nothing faults in) and a page more memory per
/// thread.
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
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(src.len()));
        kept[at].1.compress_to_buffer(src, &mut out)?;
        Ok(Bytes::from(out))
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
    match runs.last_mut() {
        Some((d, n)) if *d == defined && *n < u32::MAX >> 2 => *n += 1,
        _ => runs.push((defined, 1)),
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
        bytes: Vec<u8>,
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
            .set_compression(match self.settings.zstd_level {
                Some(l) => Compression::ZSTD(parquet::basic::ZstdLevel::try_new(l).map_err(bad)?),
                None => Compression::UNCOMPRESSED,
            })
            .set_encodings_mask(parquet::basic::EncodingMask::new_from_encodings(
                encodings.iter(),
            ))
            .set_page_encoding_stats(page_stats)
            .set_total_compressed_size(bytes.len() as i64)
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
                bytes_written: bytes.len() as u64,
                rows_written: self.rows,
                metadata,
                bloom_filter: None,
                column_index: Some(column_index.build().map_err(bad)?),
                offset_index: self.offset_index.map(|o| o.build()),
            },
            bytes: Bytes::from(bytes),
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
