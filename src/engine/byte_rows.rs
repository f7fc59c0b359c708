//! One flat byte-array column chunk read row by row, forward only: each value a slice of its
//! decompressed page (no copy), rows skipped without being materialised, nothing checked of a
//! value that is not asked for. What `splice` reads PREV_OUT's and the input's text with, and
//! what `prose` reads the kept rows of an input's text with ([`ByteRows::each_kept`]).
//!
//! Two ways to read: the parquet crate's column reader ([`ByteRows::open`], every encoding),
//! and, for [`ByteRows::each_kept`] of a chunk made [`ByteRows::walking`], our own walk of its
//! PLAIN and dictionary-encoded pages. The column reader hands each value over as a `ByteArray`,
//! a reference-counted slice of its page: two atomic operations and a decoder call a value, ~2 %
//! of the CPU of a write-heavy job. The walk reads the page's levels, lengths or dictionary
//! indices and hands over plain slices. A page it does not read (another encoding, levels not
//! RLE, a second dictionary) hands the rest of the chunk to the column reader, from that page on.

use std::sync::Arc;

use arrow_buffer::BooleanBuffer;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::column::reader::{get_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnDescriptor;

use crate::io::parquet::FileSource;

/// Values read at once by [`ByteRows::each_kept`]: each holds its page alive, so a bounded
/// number of them bounds the pages held to the one being read and the one before.
const PIECE: usize = 1024;

/// What a chunk is opened from, kept to open it again with the column reader.
struct Chunk {
    source: FileSource,
    meta: ColumnChunkMetaData,
    rows: usize,
    locations: Option<Vec<PageLocation>>,
    descr: Arc<ColumnDescriptor>,
}

impl Chunk {
    fn pages(&self) -> Result<SerializedPageReader<FileSource>, String> {
        SerializedPageReader::new(
            Arc::new(self.source.clone()),
            &self.meta,
            self.rows,
            self.locations.clone(),
        )
        .map_err(|e| e.to_string())
    }

    fn reader(&self) -> Result<ColumnReaderImpl<ByteArrayType>, String> {
        match get_column_reader(self.descr.clone(), Box::new(self.pages()?)) {
            ColumnReader::ByteArrayColumnReader(reader) => Ok(reader),
            _ => Err("not a byte array column".into()),
        }
    }
}

/// How the rows are read.
enum Read {
    Reader(Box<ColumnReaderImpl<ByteArrayType>>),
    /// Our walk of the pages, from the start of the next one (at `ByteRows::at`).
    Pages(Box<SerializedPageReader<FileSource>>),
}

/// A column reader of byte arrays that moves forward only, and where it is.
pub(super) struct ByteRows {
    read: Read,
    chunk: Box<Chunk>,
    optional: bool,
    at: usize,
}

impl ByteRows {
    /// The chunk `chunk` of `source` (of `rows` rows, leaf `descr`), its pages found by the
    /// offset index's `locations` when given (which lets whole pages of skipped rows go unread).
    pub(super) fn open(
        source: &FileSource,
        chunk: &ColumnChunkMetaData,
        rows: usize,
        locations: Option<Vec<PageLocation>>,
        descr: &Arc<ColumnDescriptor>,
    ) -> Result<ByteRows, String> {
        if descr.max_rep_level() > 0 || descr.max_def_level() > 1 {
            return Err("not a flat column".into());
        }
        let chunk = Chunk {
            source: source.clone(),
            meta: chunk.clone(),
            rows,
            locations,
            descr: descr.clone(),
        };
        Ok(ByteRows {
            read: Read::Reader(Box::new(chunk.reader()?)),
            chunk: Box::new(chunk),
            optional: descr.max_def_level() == 1,
            at: 0,
        })
    }

    /// For [`ByteRows::each_kept`] to walk the chunk's PLAIN and dictionary pages itself (from
    /// its start: a reader that has moved is left as it is).
    pub(super) fn walking(mut self) -> Result<ByteRows, String> {
        if self.at == 0 {
            self.read = Read::Pages(Box::new(self.chunk.pages()?));
        }
        Ok(self)
    }

    /// The column reader, opened at the row the walk of the pages got to.
    fn reader(&mut self) -> Result<&mut ColumnReaderImpl<ByteArrayType>, String> {
        if let Read::Pages(_) = &self.read {
            let mut reader = self.chunk.reader()?;
            if self.at > 0 {
                let skipped = reader.skip_records(self.at).map_err(|e| e.to_string())?;
                if skipped != self.at {
                    return Err(format!("it ends before row {}", self.at));
                }
            }
            self.read = Read::Reader(Box::new(reader));
        }
        match &mut self.read {
            Read::Reader(r) => Ok(r),
            Read::Pages(_) => Err("the column reader is not open".into()),
        }
    }

    /// Append rows `from..from + n` (at or after where it is) to `values` and, for an optional
    /// column, their definition levels to `defs` (`values` holds only the non-null ones).
    pub(super) fn read(
        &mut self,
        from: usize,
        n: usize,
        values: &mut Vec<ByteArray>,
        defs: Option<&mut Vec<i16>>,
    ) -> Result<(), String> {
        if from < self.at {
            return Err(format!("row {from} asked for after row {}", self.at));
        }
        let at = self.at;
        let reader = self.reader()?;
        let mut now = at;
        if from > now {
            let want = from - now;
            let skipped = reader.skip_records(want).map_err(|e| e.to_string())?;
            if skipped != want {
                return Err(format!("it ends before row {from}"));
            }
            now = from;
        }
        let end = from + n;
        let mut defs = defs;
        while now < end {
            let (records, _, _) = reader
                .read_records(end - now, defs.as_deref_mut(), None, values)
                .map_err(|e| e.to_string())?;
            if records == 0 {
                self.at = now;
                return Err(format!("it ends before row {now}"));
            }
            now += records;
        }
        self.at = now;
        Ok(())
    }

    /// `f` with each row `keep` holds and its value (`None` for a null), in order; the rows
    /// between are skipped. `keep` starts at the row where the reader is. Takes the reader: the
    /// walk of the pages ends at a page's end, not at the last kept row.
    pub(super) fn each_kept(
        mut self,
        keep: &BooleanBuffer,
        mut f: impl FnMut(usize, Option<&[u8]>) -> Result<(), String>,
    ) -> Result<(), String> {
        let base = self.at;
        let mut from = 0;
        if matches!(self.read, Read::Pages(..)) {
            from = self.walk_pages(keep, &mut f)?;
            if from == keep.len() {
                return Ok(());
            }
        }
        let mut values: Vec<ByteArray> = Vec::with_capacity(PIECE);
        let mut defs: Vec<i16> = Vec::with_capacity(PIECE);
        for (a, b) in keep.slice(from, keep.len() - from).set_slices() {
            let (a, b) = (a + from, b + from);
            let mut row = base + a;
            while row < base + b {
                let n = PIECE.min(base + b - row);
                values.clear();
                defs.clear();
                let optional = self.optional;
                self.read(row, n, &mut values, optional.then_some(&mut defs))?;
                if optional {
                    if defs.len() != n {
                        return Err(format!("{} levels read for {n} rows", defs.len()));
                    }
                    let mut next = values.iter();
                    for (i, d) in defs.iter().enumerate() {
                        let v = match *d {
                            0 => None,
                            _ => Some(next.next().ok_or("fewer values than levels")?.data()),
                        };
                        f(row - base + i, v)?;
                    }
                } else {
                    if values.len() != n {
                        return Err(format!("{} values read for {n} rows", values.len()));
                    }
                    for (i, v) in values.iter().enumerate() {
                        f(row - base + i, Some(v.data()))?;
                    }
                }
                row += n;
            }
        }
        Ok(())
    }

    /// [`ByteRows::each_kept`] by our walk of the pages, page after page, as long as they are
    /// PLAIN or dictionary-encoded with RLE levels; pages without a kept row are skipped unread.
    /// Returns the row of `keep` it got to: `keep.len()`, or the first row of the first page it
    /// does not read (which the column reader then reads from).
    fn walk_pages(
        &mut self,
        keep: &BooleanBuffer,
        f: &mut impl FnMut(usize, Option<&[u8]>) -> Result<(), String>,
    ) -> Result<usize, String> {
        let Read::Pages(pages) = &mut self.read else {
            return Ok(0);
        };
        let base = self.at;
        let total = keep.len();
        let mut done = 0usize;
        let mut handed_over = false;
        // The chunk's dictionary: its page and each value's `(start, end)` in it.
        let mut dictionary: Option<(bytes::Bytes, Vec<(usize, usize)>)> = None;
        let mut indices: Vec<u32> = Vec::new();
        while done < total {
            let ends = || format!("it ends before row {}", base + done);
            let Some(meta) = pages.peek_next_page().map_err(|e| e.to_string())? else {
                return Err(ends());
            };
            if meta.is_dict {
                match pages.get_next_page().map_err(|e| e.to_string())? {
                    Some(Page::DictionaryPage {
                        buf,
                        num_values,
                        encoding: Encoding::PLAIN | Encoding::PLAIN_DICTIONARY,
                        ..
                    }) if dictionary.is_none() => {
                        let at = plain_values(&buf, num_values as usize)
                            .map_err(|m| format!("its dictionary: {m}"))?;
                        dictionary = Some((buf, at));
                        continue;
                    }
                    _ => {
                        handed_over = true;
                        break;
                    }
                }
            }
            // A flat column's levels are its rows.
            let Some(n) = meta.num_rows.or(meta.num_levels) else {
                handed_over = true;
                break;
            };
            if n == 0 {
                return Err(format!("an empty page at row {}", base + done));
            }
            let upto = (done + n).min(total);
            if keep.slice(done, upto - done).count_set_bits() == 0 {
                pages.skip_next_page().map_err(|e| e.to_string())?;
                done += n;
                self.at = base + done;
                continue;
            }
            let page = pages
                .get_next_page()
                .map_err(|e| e.to_string())?
                .ok_or_else(ends)?;
            let Some(data) = data_page(&page, self.optional) else {
                // Read by the column reader, from this page's first row on.
                handed_over = true;
                break;
            };
            if data.rows != n {
                return Err(format!(
                    "a page at row {} holds {} rows, its header or index says {n}",
                    base + done,
                    data.rows
                ));
            }
            // Each defined value of the page, in order.
            let mut cursor = data.values;
            let mut next_index = 0usize;
            let dict = match data.dictionary {
                false => None,
                true => {
                    let Some((buf, at)) = &dictionary else {
                        return Err("a dictionary-encoded page without a dictionary".into());
                    };
                    // The indices are as many as the defined rows (PLAIN values need no count).
                    let defined = match data.levels {
                        None => n,
                        Some(levels) => {
                            let mut d = 0;
                            hybrid(levels, 1, n, |v, c| {
                                d += v as usize * c;
                                Ok(())
                            })
                            .map_err(|m| format!("its definition levels: {m}"))?;
                            d
                        }
                    };
                    let (&width, rest) = data
                        .values
                        .split_first()
                        .ok_or("a dictionary-encoded page without its bit width")?;
                    indices.clear();
                    hybrid(rest, u32::from(width), defined, |v, c| {
                        indices.extend(std::iter::repeat_n(v, c));
                        Ok(())
                    })
                    .map_err(|m| format!("its dictionary indices: {m}"))?;
                    Some((buf, at))
                }
            };
            let mut value = || -> Result<&[u8], String> {
                match dict {
                    None => {
                        let (len, rest) = cursor
                            .split_first_chunk::<4>()
                            .ok_or("a page holds fewer values than its levels say")?;
                        let len = u32::from_le_bytes(*len) as usize;
                        if len > rest.len() {
                            return Err("a value runs past the end of its page".into());
                        }
                        let (v, rest) = rest.split_at(len);
                        cursor = rest;
                        Ok(v)
                    }
                    Some((buf, at)) => {
                        let i = *indices
                            .get(next_index)
                            .ok_or("more values than dictionary indices")?
                            as usize;
                        next_index += 1;
                        let &(a, b) = at.get(i).ok_or_else(|| {
                            format!("a dictionary index {i} beyond its {} values", at.len())
                        })?;
                        Ok(&buf[a..b])
                    }
                }
            };
            let mut row = done;
            let mut rows = |defined: bool, count: usize| -> Result<(), String> {
                for _ in 0..count {
                    let v = if defined { Some(value()?) } else { None };
                    if row < total && keep.value(row) {
                        f(row, v)?;
                    }
                    row += 1;
                }
                Ok(())
            };
            match data.levels {
                None => rows(true, n)?,
                Some(levels) => hybrid(levels, 1, n, |v, c| rows(v == 1, c))?,
            }
            done += n;
            self.at = base + done;
        }
        if handed_over {
            // `self.at` is the first row of the page not read: the column reader starts there.
            self.reader()?;
            return Ok(done);
        }
        Ok(total)
    }
}

/// A data page as [`ByteRows::walk_pages`] reads it.
struct DataPage<'a> {
    /// Definition levels (RLE/bit-packed hybrid, width 1); `None`: a required column's.
    levels: Option<&'a [u8]>,
    /// PLAIN values, or a dictionary page's indices (a bit width, then the hybrid encoding).
    values: &'a [u8],
    dictionary: bool,
    rows: usize,
}

/// `page` when it is a data page of a flat column whose values are PLAIN or dictionary indices,
/// its levels RLE.
fn data_page(page: &Page, optional: bool) -> Option<DataPage<'_>> {
    let dictionary = |e: &Encoding| match e {
        Encoding::PLAIN => Some(false),
        Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => Some(true),
        _ => None,
    };
    match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            ..
        } => {
            let dictionary = dictionary(encoding)?;
            let rows = *num_values as usize;
            if !optional {
                return Some(DataPage {
                    levels: None,
                    values: buf,
                    dictionary,
                    rows,
                });
            }
            if *def_level_encoding != Encoding::RLE {
                return None;
            }
            let (len, rest) = buf.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            (len <= rest.len()).then(|| {
                let (levels, values) = rest.split_at(len);
                DataPage {
                    levels: Some(levels),
                    values,
                    dictionary,
                    rows,
                }
            })
        }
        Page::DataPageV2 {
            buf,
            num_rows,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len: 0,
            ..
        } => {
            let dictionary = dictionary(encoding)?;
            let len = *def_levels_byte_len as usize;
            if len > buf.len() || (!optional && len > 0) {
                return None;
            }
            let (levels, values) = buf.split_at(len);
            Some(DataPage {
                levels: optional.then_some(levels),
                values,
                dictionary,
                rows: *num_rows as usize,
            })
        }
        _ => None,
    }
}

/// Where each of the `n` PLAIN byte arrays of `buf` is, as `(start, end)`.
fn plain_values(buf: &[u8], n: usize) -> Result<Vec<(usize, usize)>, String> {
    let mut at = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        let len = buf
            .get(pos..pos + 4)
            .ok_or("fewer values than it says")?
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| "fewer values than it says")? as usize;
        let end = pos + 4 + len;
        if end > buf.len() {
            return Err("a value runs past its end".into());
        }
        at.push((pos + 4, end));
        pos = end;
    }
    Ok(at)
}

/// Walk `n` values of bit width `width` (at most 32) in the RLE/bit-packed hybrid encoding, as
/// runs `(value, count)` (a bit-packed group's values may come one by one).
fn hybrid(
    data: &[u8],
    width: u32,
    n: usize,
    mut run: impl FnMut(u32, usize) -> Result<(), String>,
) -> Result<(), String> {
    if width > 32 {
        return Err(format!("a bit width of {width}"));
    }
    let short = || String::from("it ends early");
    let value_bytes = width.div_ceil(8) as usize;
    let mask = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let mut pos = 0usize;
    let mut left = n;
    while left > 0 {
        let mut header = 0u64;
        let mut shift = 0;
        loop {
            let b = *data.get(pos).ok_or_else(short)?;
            pos += 1;
            if shift > 56 {
                return Err("a run header is too long".into());
            }
            header |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let count = usize::try_from(header >> 1).map_err(|_| short())?;
        if header & 1 == 0 {
            let bytes = data.get(pos..pos + value_bytes).ok_or_else(short)?;
            pos += value_bytes;
            let mut v = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                v |= u64::from(*b) << (8 * i);
            }
            if v > mask {
                return Err(format!("a value of {v} in {width} bits"));
            }
            let take = count.min(left);
            if take > 0 {
                run(v as u32, take)?;
            }
            left -= take;
        } else {
            // `count` groups of 8 values, `width` bytes each, the first value the lowest bits.
            let len = count.checked_mul(width as usize).ok_or_else(short)?;
            let end = pos.checked_add(len).ok_or_else(short)?;
            let bytes = data.get(pos..end).ok_or_else(short)?;
            pos = end;
            let values = count.saturating_mul(8).min(left);
            let mut cur: Option<(u32, usize)> = None;
            for i in 0..values {
                let bit = i * width as usize;
                let mut word = [0u8; 8];
                let from = bit / 8;
                let avail = bytes.len().saturating_sub(from).min(8);
                word[..avail].copy_from_slice(&bytes[from..from + avail]);
                let v = ((u64::from_le_bytes(word) >> (bit % 8)) & mask) as u32;
                cur = match cur {
                    Some((d, c)) if d == v => Some((d, c + 1)),
                    Some((d, c)) => {
                        run(d, c)?;
                        Some((v, 1))
                    }
                    None => Some((v, 1)),
                };
            }
            if let Some((d, c)) = cur {
                run(d, c)?;
            }
            left -= values;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use arrow_buffer::BooleanBuffer;
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use proptest::prelude::*;

    use super::ByteRows;
    use crate::io::{open_parquet, Location, ReadOptions};

    /// How the test file's values are encoded.
    #[derive(Debug, Clone, Copy)]
    enum Values {
        Plain,
        /// A dictionary, given up part of the way through the chunk.
        Dictionary,
        /// DELTA_LENGTH_BYTE_ARRAY: neither PLAIN nor a dictionary.
        DeltaLength,
    }

    /// A file of one string column holding `values` (optional, or required when none is null),
    /// in pages of a few values, encoded as `encoding` says, in v1 or v2 pages.
    fn file(values: &[Option<String>], encoding: Values, v2: bool) -> tempfile::NamedTempFile {
        let nullable = values.iter().any(Option::is_none);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "text",
            DataType::Utf8,
            nullable,
        )]));
        let array: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_dictionary_enabled(matches!(encoding, Values::Dictionary))
            .set_dictionary_page_size_limit(300)
            .set_data_page_size_limit(200)
            .set_write_batch_size(7)
            .set_writer_version(if v2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            });
        if let Values::DeltaLength = encoding {
            props = props.set_encoding(parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY);
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w =
            ArrowWriter::try_new(f.reopen().unwrap(), schema.clone(), Some(props.build())).unwrap();
        w.write(&RecordBatch::try_new(schema, vec![array]).unwrap())
            .unwrap();
        w.close().unwrap();
        f
    }

    /// The kept rows of the file's only chunk, as [`ByteRows::each_kept`] gives them.
    fn kept(
        f: &tempfile::NamedTempFile,
        keep: &BooleanBuffer,
        indexed: bool,
        walk: bool,
    ) -> Vec<(usize, Option<Vec<u8>>)> {
        let pq = open_parquet(
            &Location::local(f.path().to_path_buf()),
            ReadOptions::default(),
        )
        .unwrap();
        let meta = pq.with_page_index();
        let locations = meta
            .page_index()
            .and_then(|i| i.offset_index(0, 0))
            .map(|o| o.page_locations().clone())
            .filter(|_| indexed);
        let descr = meta.file_metadata().schema_descr().column(0);
        let rows = ByteRows::open(
            &pq.source(),
            meta.row_group(0).column(0),
            keep.len(),
            locations,
            &descr,
        )
        .unwrap();
        let rows = if walk { rows.walking().unwrap() } else { rows };
        let mut got = Vec::new();
        rows.each_kept(keep, |row, v| {
            got.push((row, v.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the pages (plain, dictionary or delta-encoded, v1 or v2, nulls among them
        /// or a required column) and whichever rows are kept (runs long enough to skip whole
        /// pages, or scattered), the rows given are the kept ones, in order, with their values,
        /// with or without the offset index, read by the column reader or by our walk of the
        /// pages (which hands a chunk it does not read to the column reader).
        #[test]
        fn the_kept_rows_are_given_with_their_values(
            values in prop::collection::vec(
                prop::option::weighted(0.9, "[a-e]{0,3}( [a-z]{1,12}){0,6}"),
                1..400,
            ),
            keep_bits in prop::collection::vec(any::<bool>(), 400),
            runs in any::<bool>(),
            encoding in prop::sample::select(vec![Values::Plain, Values::Dictionary, Values::DeltaLength]),
            v2 in any::<bool>(),
            required in any::<bool>(),
        ) {
            let values: Vec<Option<String>> = match required {
                true => values.into_iter().map(|v| Some(v.unwrap_or_default())).collect(),
                false => values,
            };
            let n = values.len();
            // Runs of 40 rows kept or not, or each row by itself.
            let keep = BooleanBuffer::from_iter((0..n).map(|i| keep_bits[if runs { i / 40 } else { i }]));
            let f = file(&values, encoding, v2);
            let want: Vec<(usize, Option<Vec<u8>>)> = (0..n)
                .filter(|i| keep.value(*i))
                .map(|i| (i, values[i].as_ref().map(|s| s.as_bytes().to_vec())))
                .collect();
            for (indexed, walk) in [(true, false), (false, false), (true, true), (false, true)] {
                prop_assert_eq!(&kept(&f, &keep, indexed, walk), &want, "indexed {} walk {}", indexed, walk);
            }
        }
    }

    /// Definition levels in both kinds of run: RLE runs and bit-packed groups (whose last group
    /// holds levels past the page's end, which are not given).
    #[test]
    fn definition_levels_are_walked_in_both_kinds_of_run() {
        let mut runs = Vec::new();
        // RLE: 5 defined; bit-packed, 2 groups: 0b1010_0110, 0b0000_0011 (10 levels asked for
        // of the 16); RLE: 3 undefined.
        let data = [0x0a, 0x01, 0x05, 0b1010_0110, 0b0000_0011, 0x06, 0x00];
        super::hybrid(&data, 1, 5 + 16 + 3, |d, c| {
            runs.push((d == 1, c));
            Ok(())
        })
        .unwrap();
        let levels: Vec<bool> = runs
            .iter()
            .flat_map(|&(d, c)| std::iter::repeat_n(d, c))
            .collect();
        let mut want = vec![true; 5];
        want.extend((0..16).map(|i| [0b1010_0110u8, 0b0000_0011][i / 8] >> (i % 8) & 1 == 1));
        want.extend([false; 3]);
        assert_eq!(levels, want);
        // Asked for fewer: the bit-packed group's surplus is not given.
        let mut n = 0;
        super::hybrid(&data, 1, 9, |_, c| {
            n += c;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 9);
        // Too few levels, a level above 1: errors, not panics.
        assert!(super::hybrid(&data[..3], 1, 6, |_, _| Ok(())).is_err());
        assert!(super::hybrid(&[0x02, 0x02], 1, 1, |_, _| Ok(())).is_err());
        assert!(super::hybrid(&[0x03], 1, 1, |_, _| Ok(())).is_err());
        // Run headers claiming ~2^62 groups: refused at width 1, bounded by the levels asked
        // for at width 0 (whose groups take no bytes); no arithmetic overflows.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(super::hybrid(&huge, 1, 4, |_, _| Ok(())).is_err());
        let mut zeros = 0;
        super::hybrid(&huge, 0, 4, |v, c| {
            assert_eq!(v, 0);
            zeros += c;
            Ok(())
        })
        .unwrap();
        assert_eq!(zeros, 4);
    }
}
