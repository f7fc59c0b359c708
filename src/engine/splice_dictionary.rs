//! The dictionary of a manifest chunk being spliced (`splice::splice_manifest_column`): PREV_OUT's
//! dictionary page, extended with the values today's new pages hold that it lacks, and those
//! pages encoded as ids into it, as a fresh run's pages are.
//!
//! The copied pages' ids name PREV_OUT's values, which keep their ids: new values are appended,
//! so the chunk's dictionary page is PREV_OUT's when nothing was added, else a new one holding
//! PREV_OUT's values first. Written plain instead, the new pages grew a manifest night after
//! night (rule 2.7×, region 1.5× after six chained nights of 100 changed members per million),
//! and user ids, new to a row group's dictionary whenever a member's rows come in, would have
//! turned each chunk plain page by page.
//!
//! Byte arrays (the label columns, string user ids) are encoded by the label writer seeded with
//! the dictionary; 32- and 64-bit integers (user ids) here. Both in v1 pages, levels RLE-encoded,
//! with the output's codec, each page's bounds and null count in the column index. A dictionary
//! page of another encoding, a value type or codec not covered, or a dictionary that would
//! outgrow the dictionary page limit (where a fresh run falls back to plain pages) is `None`:
//! the manifest row group is then encoded whole.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{Encoding, EncodingMask, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder,
};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::Length;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnDescriptor;

use super::chunk::{each_value, push_level, rle_levels, ChunkBytes, PageKind, Settings};
use super::labels::{bits_for, rle_hybrid, FoldMap, LabelWriter};
use crate::io::parquet::FileSource;

/// A dictionary's values, in id order.
enum Values {
    /// Byte arrays, and each one's id.
    Bytes(Vec<Bytes>, FoldMap<Bytes>),
    /// Integers of `width` bytes (4 or 8), and each one's id.
    Ints(usize, Vec<i64>, FoldMap<i64>),
}

/// PREV_OUT's dictionary of a chunk, and the values appended to it.
pub(super) struct SplicedDictionary {
    values: Values,
    /// How many of `values` PREV_OUT's page holds.
    prev_len: usize,
}

impl SplicedDictionary {
    /// The dictionary page of PREV_OUT's `chunk` (of `rows` rows, leaf `descr`): `None` when its
    /// type is not one of those spliced with a dictionary; an error when its first page is not
    /// a PLAIN dictionary page holding the values it declares.
    pub(super) fn read(
        source: &FileSource,
        chunk: &ColumnChunkMetaData,
        rows: usize,
        descr: &ColumnDescriptor,
    ) -> Result<Option<SplicedDictionary>, String> {
        let width = match descr.physical_type() {
            PhysicalType::BYTE_ARRAY => None,
            PhysicalType::INT32 => Some(4),
            PhysicalType::INT64 => Some(8),
            _ => return Ok(None),
        };
        let mut pages = SerializedPageReader::new(Arc::new(source.clone()), chunk, rows, None)
            .map_err(|e| e.to_string())?;
        let Some(Page::DictionaryPage {
            buf,
            num_values,
            encoding: Encoding::PLAIN | Encoding::PLAIN_DICTIONARY,
            ..
        }) = pages.get_next_page().map_err(|e| e.to_string())?
        else {
            return Err("its first page is not a PLAIN dictionary page".into());
        };
        let bad = || String::from("its dictionary page does not hold the values it says");
        let n = num_values as usize;
        let values = match width {
            None => {
                let mut values = Vec::with_capacity(n);
                let mut at = 0usize;
                for _ in 0..n {
                    let len = buf
                        .get(at..at + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(|b| u32::from_le_bytes(b) as usize)
                        .ok_or_else(bad)?;
                    let end = (at + 4)
                        .checked_add(len)
                        .filter(|e| *e <= buf.len())
                        .ok_or_else(bad)?;
                    values.push(buf.slice(at + 4..end));
                    at = end;
                }
                if at != buf.len() {
                    return Err(bad());
                }
                let ids = ids_of(&values).ok_or_else(bad)?;
                Values::Bytes(values, ids)
            }
            Some(w) => {
                if n.checked_mul(w) != Some(buf.len()) {
                    return Err(bad());
                }
                let values: Vec<i64> = buf
                    .chunks_exact(w)
                    .map(|b| match w {
                        4 => i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))),
                        _ => i64::from_le_bytes(b.try_into().expect("8 bytes")),
                    })
                    .collect();
                let ids = ids_of(&values).ok_or_else(bad)?;
                Values::Ints(w, values, ids)
            }
        };
        Ok(Some(SplicedDictionary {
            values,
            prev_len: n,
        }))
    }

    fn len(&self) -> usize {
        match &self.values {
            Values::Bytes(v, _) => v.len(),
            Values::Ints(_, v, _) => v.len(),
        }
    }

    /// Append the values of `array` it lacks, in order of first appearance; `false` when the
    /// array is of a type not covered.
    pub(super) fn extend(&mut self, array: &ArrayRef) -> Result<bool, String> {
        match &mut self.values {
            Values::Bytes(values, ids) => {
                let strings = |t: &DataType| {
                    matches!(
                        t,
                        DataType::Utf8
                            | DataType::LargeUtf8
                            | DataType::Utf8View
                            | DataType::Binary
                            | DataType::LargeBinary
                            | DataType::BinaryView
                    )
                };
                let mut add = |v: Option<&[u8]>| {
                    if let Some(v) = v {
                        if !ids.contains_key(v) {
                            let v = Bytes::copy_from_slice(v);
                            ids.insert(v.clone(), values.len() as u32);
                            values.push(v);
                        }
                    }
                };
                if let Some(d) = array.as_any_dictionary_opt() {
                    // A label column (the manifest's file, rule and region) holds a few values
                    // over thousands of rows: each of its dictionary's values is looked up once,
                    // at its first row (rows cast to strings and hashed one by one were a third
                    // of a `--reuse` night's manifest splicing).
                    if !strings(d.values().data_type()) {
                        return Ok(false);
                    }
                    let mut seen = vec![false; d.values().len()];
                    let mut firsts = Vec::new();
                    for (row, k) in d.normalized_keys().into_iter().enumerate() {
                        if d.keys().is_valid(row) && !std::mem::replace(&mut seen[k], true) {
                            firsts.push(k);
                        }
                    }
                    // Added in the order of their first rows, not the dictionary's own.
                    let mut all = Vec::with_capacity(d.values().len());
                    each_value(d.values().as_ref(), |v| {
                        all.push(v);
                        Ok(())
                    })?;
                    firsts.into_iter().for_each(|k| add(all[k]));
                    return Ok(true);
                }
                if !strings(array.data_type()) {
                    return Ok(false);
                }
                each_value(array.as_ref(), |v| {
                    add(v);
                    Ok(())
                })?;
                Ok(true)
            }
            Values::Ints(_, values, ids) => {
                let Some(all) = ints(array) else {
                    return Ok(false);
                };
                for v in all.into_iter().flatten() {
                    ids.entry(v).or_insert_with(|| {
                        values.push(v);
                        (values.len() - 1) as u32
                    });
                }
                Ok(true)
            }
        }
    }

    /// The chunk's dictionary page (header and compressed body) and its size uncompressed,
    /// header included, when values were appended to PREV_OUT's: `Ok(None)` when none were (its
    /// page is kept), `Err` when the page would pass the dictionary page limit or the codec is
    /// not one the writers here compress with.
    pub(super) fn page(
        &self,
        descr: &ColumnDescriptor,
        props: &WriterProperties,
    ) -> Result<Option<(Bytes, i64)>, String> {
        if self.len() == self.prev_len {
            return Ok(None);
        }
        let mut plain = Vec::new();
        match &self.values {
            Values::Bytes(values, _) => {
                for v in values {
                    plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    plain.extend_from_slice(v);
                }
            }
            Values::Ints(4, values, _) => {
                for v in values {
                    plain.extend_from_slice(&(*v as i32).to_le_bytes());
                }
            }
            Values::Ints(_, values, _) => {
                for v in values {
                    plain.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        if plain.len() > props.dictionary_page_size_limit() {
            return Err("the dictionary would pass its page limit".into());
        }
        let settings =
            Settings::codec(props, descr.path()).ok_or("a codec the splice does not write")?;
        let mut chunk = ChunkBytes::default();
        let spec = chunk.push_page(
            PageKind::Dictionary,
            settings.compress(&plain)?,
            plain.len(),
            self.len() as u32,
        )?;
        Ok(Some((chunk.into_bytes(), spec.uncompressed_size as i64)))
    }

    /// `array` (holding only values [`SplicedDictionary::extend`] was given) encoded as pages of
    /// ids; `None` when its type or the settings are not ones covered here.
    pub(super) fn encode(
        &self,
        descr: &Arc<ColumnDescriptor>,
        props: &WriterProperties,
        array: &ArrayRef,
    ) -> Result<Option<(Bytes, ColumnCloseResult)>, String> {
        match &self.values {
            Values::Bytes(values, _) => {
                let Some(mut w) =
                    LabelWriter::seeded(descr.clone(), array.data_type(), props, values)
                else {
                    return Ok(None);
                };
                w.write(array)?;
                Ok(w.close_ids(values.len())?
                    .map(|c| (c.bytes.into_bytes(), c.close)))
            }
            Values::Ints(_, values, ids) => encode_ints(descr, props, array, values.len(), ids),
        }
    }
}

/// Each value's id, its index; `None` when one appears twice.
fn ids_of<T: Clone + Eq + std::hash::Hash>(values: &[T]) -> Option<FoldMap<T>> {
    let mut ids = FoldMap::with_capacity_and_hasher(values.len(), Default::default());
    for (i, v) in values.iter().enumerate() {
        if ids.insert(v.clone(), i as u32).is_some() {
            return None;
        }
    }
    Some(ids)
}

/// The values of a 32- or 64-bit integer array, nulls as `None`.
fn ints(array: &ArrayRef) -> Option<Vec<Option<i64>>> {
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().iter().collect()),
        DataType::Int32 => Some(
            array
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect(),
        ),
        _ => None,
    }
}

/// Integers as v1 pages of ids into a dictionary of `dictionary` values (`ids`), pages of the
/// row limit, with an offset index and a column index of each page's bounds.
fn encode_ints(
    descr: &Arc<ColumnDescriptor>,
    props: &WriterProperties,
    array: &ArrayRef,
    dictionary: usize,
    ids: &FoldMap<i64>,
) -> Result<Option<(Bytes, ColumnCloseResult)>, String> {
    let path = descr.path();
    let fits = descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && props.writer_version() == parquet::file::properties::WriterVersion::PARQUET_1_0
        && props.statistics_enabled(path) == parquet::file::properties::EnabledStatistics::Page;
    let (Some(values), Some(settings), true) = (ints(array), Settings::codec(props, path), fits)
    else {
        return Ok(None);
    };
    let optional = descr.max_def_level() == 1;
    if !optional && values.iter().any(Option::is_none) {
        return Err(format!("column '{path}' is required and a value is null"));
    }
    let width = bits_for(dictionary.saturating_sub(1) as u64);
    let wide = descr.physical_type() == PhysicalType::INT64;
    let bound = |v: i64| {
        if wide {
            v.to_le_bytes().to_vec()
        } else {
            (v as i32).to_le_bytes().to_vec()
        }
    };
    let mut chunk = ChunkBytes::default();
    let mut offsets = OffsetIndexBuilder::new();
    let mut index = ColumnIndexBuilder::new(descr.physical_type());
    let (mut uncompressed, mut nulls_in_chunk) = (0i64, 0i64);
    let mut buf = Vec::new();
    for page in values.chunks(props.data_page_row_count_limit().max(1)) {
        let mut runs = Vec::new();
        let mut page_ids = Vec::with_capacity(page.len());
        let mut bounds: Option<(i64, i64)> = None;
        for v in page {
            if optional {
                push_level(&mut runs, v.is_some());
            }
            if let Some(v) = *v {
                page_ids.push(*ids.get(&v).ok_or("a value not in the dictionary")?);
                bounds = Some(bounds.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            }
        }
        buf.clear();
        if optional {
            buf.extend_from_slice(&rle_levels(&runs));
        }
        buf.push(width);
        rle_hybrid(&mut buf, &page_ids, width);
        let spec = chunk.push_page(
            PageKind::DictionaryIds,
            settings.compress(&buf)?,
            buf.len(),
            page.len() as u32,
        )?;
        let nulls = (page.len() - page_ids.len()) as i64;
        nulls_in_chunk += nulls;
        offsets.append_offset_and_size(spec.offset as i64, spec.bytes_written as i32);
        offsets.append_row_count(page.len() as i64);
        match bounds {
            Some((lo, hi)) => index.append(false, bound(lo), bound(hi), nulls, None),
            None => index.append(true, Vec::new(), Vec::new(), nulls, None),
        }
        if optional {
            let h = LevelHistogram::from(vec![nulls, page.len() as i64 - nulls]);
            index.append_histograms(&None, &Some(h));
        }
        uncompressed += spec.uncompressed_size as i64;
    }
    let bad = |e: parquet::errors::ParquetError| format!("encoding column '{path}': {e}");
    let rows = values.len() as i64;
    let mut meta = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(props.compression(path))
        .set_encodings_mask(EncodingMask::new_from_encodings(
            [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY].iter(),
        ))
        .set_total_compressed_size(chunk.len() as i64)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(rows)
        .set_data_page_offset(0);
    if optional {
        meta = meta.set_definition_level_histogram(Some(LevelHistogram::from(vec![
            nulls_in_chunk,
            rows - nulls_in_chunk,
        ])));
    }
    let close = ColumnCloseResult {
        bytes_written: chunk.len(),
        rows_written: rows as u64,
        metadata: meta.build().map_err(bad)?,
        bloom_filter: None,
        column_index: Some(index.build().map_err(bad)?),
        offset_index: Some(offsets.build()),
    };
    Ok(Some((chunk.into_bytes(), close)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int32Array, RecordBatch};
    use arrow_schema::{Field, Schema};
    use parquet::basic::Compression;
    use parquet::column::reader::{get_column_reader, ColumnReader};
    use parquet::file::metadata::ColumnChunkMetaData;
    use parquet::file::properties::WriterProperties;
    use parquet::file::serialized_reader::SerializedPageReader;

    use super::SplicedDictionary;
    use crate::io::{open_parquet, Location, ReadOptions};

    /// A label column given as a dictionary array extends PREV_OUT's values as the same rows
    /// given as strings do: the values it lacks, in the order of their first rows (not the
    /// dictionary's own), a value held under two keys once, nulls and unused values never.
    #[test]
    fn a_dictionary_array_extends_as_its_rows_do() {
        use arrow_array::{DictionaryArray, StringArray};
        use bytes::Bytes;
        let prev = || {
            let values = vec![Bytes::from_static(b"paused")];
            let mut ids = super::FoldMap::default();
            ids.insert(values[0].clone(), 0);
            SplicedDictionary {
                values: super::Values::Bytes(values, ids),
                prev_len: 1,
            }
        };
        let names = |d: &SplicedDictionary| match &d.values {
            super::Values::Bytes(v, _) => v.clone(),
            super::Values::Ints(..) => unreachable!(),
        };
        // Keys into [unused, allowed, opted-out, paused, opted-out, null].
        let dictionary: ArrayRef = Arc::new(DictionaryArray::new(
            arrow_array::Int8Array::from(vec![Some(2), Some(3), None, Some(1), Some(4), Some(5)]),
            Arc::new(StringArray::from(vec![
                Some("unused"),
                Some("allowed"),
                Some("opted-out"),
                Some("paused"),
                Some("opted-out"),
                None,
            ])),
        ));
        let rows: ArrayRef = Arc::new(StringArray::from(vec![
            Some("opted-out"),
            Some("paused"),
            None,
            Some("allowed"),
            Some("opted-out"),
            None,
        ]));
        let (mut a, mut b) = (prev(), prev());
        assert!(a.extend(&dictionary).unwrap());
        assert!(b.extend(&rows).unwrap());
        assert_eq!(names(&a), names(&b));
        assert_eq!(
            names(&a),
            ["paused", "opted-out", "allowed"].map(|v| Bytes::from_static(v.as_bytes()))
        );
    }

    /// PREV_OUT's INT32 dictionary chunk, extended with the values of new pages (nulls among
    /// them), and those pages: read back after the new dictionary page, they are the values
    /// written, ids of PREV_OUT's values unchanged.
    #[test]
    fn an_integer_dictionary_extended_reads_back_as_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prev.parquet");
        let field = Field::new("user_id", arrow_schema::DataType::Int32, true);
        let schema = Arc::new(Schema::new(vec![field]));
        let prev: ArrayRef = Arc::new(Int32Array::from(vec![7, -3, 7, 12, -3, 7]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .set_data_page_row_count_limit(3)
            .build();
        let batch = RecordBatch::try_new(schema, vec![prev]).unwrap();
        crate::io::parquet::write_for_test(&path, &batch, props.clone());
        let pq = open_parquet(&Location::local(&path), ReadOptions::default()).unwrap();
        let meta = pq.parquet_meta().clone();
        let chunk = meta.row_group(0).column(0);
        let descr = meta.file_metadata().schema_descr().column(0);
        let mut d = SplicedDictionary::read(&pq.source(), chunk, 6, &descr)
            .unwrap()
            .expect("an INT32 dictionary");
        assert_eq!(d.prev_len, 3);

        let new: ArrayRef = Arc::new(Int32Array::from(vec![
            Some(12),
            None,
            Some(i32::MIN),
            Some(7),
            Some(40),
            None,
            Some(i32::MIN),
        ]));
        assert!(d.extend(&new).unwrap());
        assert_eq!(d.len(), 5);
        let (dictionary, _) = d.page(&descr, &props).unwrap().expect("values appended");
        let (pages, close) = d.encode(&descr, &props, &new).unwrap().expect("ids");
        assert_eq!(close.rows_written, 7);
        assert_eq!(
            close.offset_index.as_ref().unwrap().page_locations().len(),
            3
        );

        // The new dictionary page, then the pages, as one chunk.
        let bytes = bytes::Bytes::from([dictionary.as_ref(), pages.as_ref()].concat());
        let read_meta = ColumnChunkMetaData::builder(descr.clone())
            .set_compression(chunk.compression())
            .set_dictionary_page_offset(Some(0))
            .set_data_page_offset(dictionary.len() as i64)
            .set_total_compressed_size(bytes.len() as i64)
            .set_num_values(7)
            .build()
            .unwrap();
        let page_reader = SerializedPageReader::new(Arc::new(bytes), &read_meta, 7, None).unwrap();
        let ColumnReader::Int32ColumnReader(mut r) =
            get_column_reader(descr.clone(), Box::new(page_reader))
        else {
            panic!("not an INT32 reader");
        };
        let (mut values, mut defs) = (Vec::new(), Vec::new());
        let (records, _, _) = r
            .read_records(100, Some(&mut defs), None, &mut values)
            .unwrap();
        assert_eq!(records, 7);
        assert_eq!(defs, vec![1, 0, 1, 1, 1, 0, 1]);
        assert_eq!(values, vec![12, i32::MIN, 7, 40, i32::MIN]);
    }
}
