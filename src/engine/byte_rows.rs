//! One flat byte-array column chunk read row by row, forward only, by the parquet crate's own
//! column reader: each value a slice of its decompressed page (no copy), rows skipped without
//! being materialised, nothing checked of a value that is not asked for. What `splice` reads
//! PREV_OUT's and the input's text with, and what `prose` reads the kept rows of an input's
//! text with ([`ByteRows::each_kept`]).

use std::sync::Arc;

use arrow_buffer::BooleanBuffer;
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

/// A column reader of byte arrays that moves forward only, and where it is.
pub(super) struct ByteRows {
    reader: ColumnReaderImpl<ByteArrayType>,
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
        let pages = SerializedPageReader::new(Arc::new(source.clone()), chunk, rows, locations)
            .map_err(|e| e.to_string())?;
        match get_column_reader(descr.clone(), Box::new(pages)) {
            ColumnReader::ByteArrayColumnReader(reader) => Ok(ByteRows {
                reader,
                optional: descr.max_def_level() == 1,
                at: 0,
            }),
            _ => Err("not a byte array column".into()),
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
        if from > self.at {
            let want = from - self.at;
            let skipped = self.reader.skip_records(want).map_err(|e| e.to_string())?;
            if skipped != want {
                return Err(format!("it ends before row {from}"));
            }
            self.at = from;
        }
        let end = from + n;
        let mut defs = defs;
        while self.at < end {
            let (records, _, _) = self
                .reader
                .read_records(end - self.at, defs.as_deref_mut(), None, values)
                .map_err(|e| e.to_string())?;
            if records == 0 {
                return Err(format!("it ends before row {}", self.at));
            }
            self.at += records;
        }
        Ok(())
    }

    /// `f` with each row `keep` holds and its value (`None` for a null), in order; the rows
    /// between are skipped. `keep` starts at the row where the reader is.
    pub(super) fn each_kept(
        &mut self,
        keep: &BooleanBuffer,
        mut f: impl FnMut(usize, Option<&[u8]>) -> Result<(), String>,
    ) -> Result<(), String> {
        let base = self.at;
        let mut values: Vec<ByteArray> = Vec::with_capacity(PIECE);
        let mut defs: Vec<i16> = Vec::with_capacity(PIECE);
        for (a, b) in keep.set_slices() {
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

    /// A file of one optional string column holding `values`, in pages of a few values, its
    /// dictionary given up part of the way through the chunk (`dictionary`), in v1 or v2 pages.
    fn file(values: &[Option<String>], dictionary: bool, v2: bool) -> tempfile::NamedTempFile {
        let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, true)]));
        let array: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_dictionary_enabled(dictionary)
            .set_dictionary_page_size_limit(300)
            .set_data_page_size_limit(200)
            .set_write_batch_size(7)
            .set_writer_version(if v2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .build();
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = ArrowWriter::try_new(f.reopen().unwrap(), schema.clone(), Some(props)).unwrap();
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
        let mut rows = ByteRows::open(
            &pq.source(),
            meta.row_group(0).column(0),
            keep.len(),
            locations,
            &descr,
        )
        .unwrap();
        let mut got = Vec::new();
        rows.each_kept(keep, |row, v| {
            got.push((row, v.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the pages (plain or dictionary, v1 or v2, nulls among them) and whichever
        /// rows are kept (runs long enough to skip whole pages, or scattered), the rows given
        /// are the kept ones, in order, with their values, with or without the offset index.
        #[test]
        fn the_kept_rows_are_given_with_their_values(
            values in prop::collection::vec(
                prop::option::weighted(0.9, "[a-e]{0,3}( [a-z]{1,12}){0,6}"),
                1..400,
            ),
            keep_bits in prop::collection::vec(any::<bool>(), 400),
            runs in any::<bool>(),
            dictionary in any::<bool>(),
            v2 in any::<bool>(),
        ) {
            let n = values.len();
            // Runs of 40 rows kept or not, or each row by itself.
            let keep = BooleanBuffer::from_iter((0..n).map(|i| keep_bits[if runs { i / 40 } else { i }]));
            let f = file(&values, dictionary, v2);
            let want: Vec<(usize, Option<Vec<u8>>)> = (0..n)
                .filter(|i| keep.value(*i))
                .map(|i| (i, values[i].as_ref().map(|s| s.as_bytes().to_vec())))
                .collect();
            prop_assert_eq!(&kept(&f, &keep, true), &want);
            prop_assert_eq!(&kept(&f, &keep, false), &want);
        }
    }
}
