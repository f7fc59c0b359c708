//! Leaf columns the Arrow writer cannot encode — INT96 timestamps, as Spark, Hive and Impala
//! write them — copied with the parquet crate's low-level column reader and writer instead: the
//! kept rows' values and levels, bytes unchanged, written as the same physical type.

use std::sync::Arc;

use arrow_buffer::BooleanBuffer;
use bytes::Bytes;
use parquet::column::reader::{get_column_reader, ColumnReader};
use parquet::column::writer::{get_column_writer, ColumnWriter};
use parquet::data_type::Int96;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};

use super::chunk::RawChunk;
use crate::io::parquet::FileSource;

/// Levels and values of one leaf of a row group, with the rows `keep` selects kept.
struct Kept {
    defs: Vec<i16>,
    reps: Vec<i16>,
    values: Vec<Int96>,
}

fn read_kept(
    source: &FileSource,
    pq: &ParquetMetaData,
    rg: usize,
    leaf: usize,
    keep: &BooleanBuffer,
) -> Result<Kept, String> {
    let descr = pq.file_metadata().schema_descr().column(leaf);
    let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
    let group = pq.row_group(rg);
    let pages = SerializedPageReader::new(
        Arc::new(source.clone()),
        group.column(leaf),
        group.num_rows().max(0) as usize,
        None,
    )
    .map_err(|e| e.to_string())?;
    let ColumnReader::Int96ColumnReader(mut reader) = get_column_reader(descr, Box::new(pages))
    else {
        return Err(format!("leaf column {leaf} is not INT96"));
    };
    let mut out = Kept {
        defs: Vec::new(),
        reps: Vec::new(),
        values: Vec::new(),
    };
    let mut row: usize = 0;
    let mut started = false;
    loop {
        let (mut defs, mut reps, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let (records, n_values, n_levels) = reader
            .read_records(64 * 1024, Some(&mut defs), Some(&mut reps), &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            break;
        }
        let levels = if max_def > 0 { n_levels } else { n_values };
        let mut v = 0usize;
        for i in 0..levels {
            if max_rep == 0 || reps[i] == 0 {
                if started {
                    row += 1;
                }
                started = true;
            }
            let has_value = max_def == 0 || defs[i] == max_def;
            if row >= keep.len() {
                return Err(format!(
                    "leaf column {leaf} holds more rows than the row group"
                ));
            }
            if keep.value(row) {
                if max_def > 0 {
                    out.defs.push(defs[i]);
                }
                if max_rep > 0 {
                    out.reps.push(reps[i]);
                }
                if has_value {
                    out.values.push(values[v]);
                }
            }
            if has_value {
                v += 1;
            }
        }
        if v != n_values {
            return Err(format!(
                "leaf column {leaf}: {v} values for {n_values} decoded"
            ));
        }
    }
    if started && row + 1 != keep.len() || !started && !keep.is_empty() {
        return Err(format!(
            "leaf column {leaf} holds {} rows where the row group has {}",
            if started { row + 1 } else { 0 },
            keep.len()
        ));
    }
    Ok(out)
}

/// Encode the kept rows of INT96 leaf `leaf` of row group `rg` with `props` (the output's codec
/// and statistics settings).
pub fn copy_kept_int96(
    source: &FileSource,
    pq: &ParquetMetaData,
    rg: usize,
    leaf: usize,
    keep: &BooleanBuffer,
    props: &Arc<WriterProperties>,
) -> Result<RawChunk, String> {
    let kept = read_kept(source, pq, rg, leaf, keep)?;
    let descr = pq.file_metadata().schema_descr().column(leaf);
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let pages = SerializedPageWriter::new(&mut sink);
        let ColumnWriter::Int96ColumnWriter(mut w) =
            get_column_writer(descr.clone(), props.clone(), Box::new(pages))
        else {
            return Err(format!("leaf column {leaf} is not INT96"));
        };
        let defs = (descr.max_def_level() > 0).then_some(kept.defs.as_slice());
        let reps = (descr.max_rep_level() > 0).then_some(kept.reps.as_slice());
        w.write_batch(&kept.values, defs, reps)
            .map_err(|e| format!("encoding INT96 column '{}': {e}", descr.path()))?;
        w.close()
            .map_err(|e| format!("encoding INT96 column '{}': {e}", descr.path()))?
    };
    let bytes = sink.into_inner().map_err(|e| e.to_string())?;
    Ok(RawChunk {
        bytes: Bytes::from(bytes).into(),
        close,
    })
}
