//! `filter --target-file-size` and `--row-group-size`: the kept rows laid out the way trainers
//! read them.
//!
//! The engine first writes every input's kept rows to `data/<input>` as it always does. This
//! module then rewrites them, in input order, either as `data/part-NNNNN.parquet` files of about
//! the target size (with a target size), or each input's file again (without one), always with
//! row groups of the given row count: small filtered row groups are merged, so readers do not
//! crawl through thousands of tiny ones. The per-input files are then removed. Manifests are not
//! touched: they keep naming each input's source file and row.
//!
//! Guarantees:
//! - **Nothing lost.** Every kept row lands in exactly one part, in input order; a part's rows
//!   are counted per input in [`PartRecord::inputs`] and checked against what the engine kept.
//! - **Deterministic.** The cut points come from the per-input files' footers alone, which are
//!   the same bytes for any thread count; parts are written in parallel but each one's content
//!   is fixed before any is written.
//! - **Bounded memory.** A part is read one source row group at a time (only the rows it takes)
//!   and written one row group at a time.
//! - **One schema per part.** An input whose schema differs from the previous input's starts a
//!   new part.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::{open_parquet, Checksum, Location, OutputFile, ParquetFile, ReadOptions, Written};
use crate::summary::FileStats;

/// Row groups of this many rows when only a target size is given (DuckDB writes 122,880;
/// pyarrow up to 1Mi): big enough for fast scans, small enough to write in bounded memory.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

/// A row group being written is flushed early when it holds this many encoded bytes, whatever
/// its row count: very long rows must not hold a row group of gigabytes in memory.
const MAX_ROW_GROUP_BYTES: usize = 512 << 20;

/// How the kept rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `--target-file-size`: parts of about this many bytes; `None` keeps one file per input.
    pub target_bytes: Option<u64>,
    /// `--row-group-size`.
    pub row_group_rows: usize,
}

/// One output file of a laid-out run, as summary.json records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// Relative to `data/`.
    pub path: String,
    pub rows: u64,
    pub row_groups: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The inputs whose kept rows it holds, in order: (input path as in `files`, rows).
    pub inputs: Vec<PartInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartInput {
    pub path: String,
    pub rows: u64,
}

/// Rows `first..first + rows` of row group `rg` of one per-input data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    file: usize,
    rg: usize,
    first: u64,
    rows: u64,
}

/// One per-input data file, opened once (its footer read and checked) for planning and for
/// every part that reads it.
struct Source {
    rel: String,
    location: Location,
    pq: ParquetFile,
    meta: Arc<ParquetMetaData>,
    schema: SchemaRef,
}

/// What one part will hold, fixed before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartPlan {
    name: String,
    segments: Vec<Segment>,
}

/// Lay out the kept rows under `out/data/`: `files` are the inputs in input order (quarantined
/// ones are absent). Returns the parts written; the per-input data files are gone.
pub fn lay_out(
    out: &Location,
    files: &[FileStats],
    layout: Layout,
    read: ReadOptions,
) -> Result<Vec<PartRecord>> {
    let sources = files
        .par_iter()
        .map(|f| {
            let location = out.join("data").join(&f.rel);
            let pq = open_parquet(&location, read)?;
            Ok(Source {
                rel: f.rel.clone(),
                meta: pq.parquet_meta().clone(),
                schema: pq.schema().clone(),
                pq,
                location,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for (s, f) in sources.iter().zip(files) {
        let rows = s.meta.file_metadata().num_rows() as u64;
        if rows != f.kept {
            return Err(Error::invalid(
                s.location.clone(),
                None,
                format!(
                    "holds {rows} rows, but {} of the input were kept; not laid out",
                    f.kept
                ),
            ));
        }
    }
    let plans = plan_parts(&shapes(&sources), layout);
    // Parts are written aside first: a part's name may be an input's (`part-00000.parquet` is a
    // common input name too, and without a target size every part has its input's name), and
    // no input may change while any part still reads it.
    let staging = out.join(STAGING);
    let written = plans
        .par_iter()
        .enumerate()
        .map(|(n, p)| write_part(&staging.join(&format!("{n}.parquet")), &sources, p, layout))
        .collect::<Result<Vec<_>>>()?;
    for s in &sources {
        crate::io::remove_written(&s.location)?;
        // An input in a subdirectory leaves it empty (objects have no directories).
        if let Some(data) = out.join("data").local_path() {
            let mut dir = s.location.local_path().and_then(|p| p.parent());
            while let Some(d) = dir.filter(|d| *d != data) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    let mut records = Vec::with_capacity(plans.len());
    for (n, ((record, w), plan)) in written.into_iter().zip(&plans).enumerate() {
        let at = staging.join(&format!("{n}.parquet"));
        crate::io::move_written(&at, &out.join("data").join(&plan.name), &w)?;
        records.push(record);
    }
    if let Some(dir) = staging.local_path() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(records)
}

/// Where parts are written before they take their names under `data/`.
const STAGING: &str = "_parts";

/// What the cut points depend on: each source's row groups as (rows, compressed bytes), and
/// which sources share a schema (equal `schema` numbers for consecutive equal schemas).
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    schema: usize,
    row_groups: Vec<(u64, u64)>,
}

fn shapes(sources: &[Source]) -> Vec<Shape> {
    let mut schema = 0;
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i > 0 && sources[i - 1].schema.fields() != s.schema.fields() {
                schema += 1;
            }
            Shape {
                name: s.rel.clone(),
                schema,
                row_groups: s
                    .meta
                    .row_groups()
                    .iter()
                    .map(|rg| {
                        (
                            rg.num_rows().max(0) as u64,
                            rg.compressed_size().max(0) as u64,
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Where the parts are cut. With a target size, a part is closed once the compressed bytes of
/// the rows it took reach the target (a row group's bytes spread evenly over its rows), or when
/// the schema changes; without one, each input is its own part.
fn plan_parts(shapes: &[Shape], layout: Layout) -> Vec<PartPlan> {
    let Some(target) = layout.target_bytes else {
        return shapes
            .iter()
            .enumerate()
            .map(|(i, s)| PartPlan {
                name: s.name.clone(),
                segments: s
                    .row_groups
                    .iter()
                    .enumerate()
                    .filter(|(_, (rows, _))| *rows > 0)
                    .map(|(rg, (rows, _))| Segment {
                        file: i,
                        rg,
                        first: 0,
                        rows: *rows,
                    })
                    .collect(),
            })
            .collect();
    };
    // Bytes are counted in 1/1024ths, so that rows smaller than a byte compressed still count.
    let target = target.max(1).saturating_mul(1024);
    let mut parts: Vec<Vec<Segment>> = Vec::new();
    let mut current: Vec<Segment> = Vec::new();
    let mut bytes = 0u64;
    let mut schema = None;
    for (i, s) in shapes.iter().enumerate() {
        if schema.is_some_and(|prev| prev != s.schema) && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            bytes = 0;
        }
        schema = Some(s.schema);
        for (rg, &(rows, compressed)) in s.row_groups.iter().enumerate() {
            if rows == 0 {
                continue;
            }
            let per_row = (compressed.saturating_mul(1024) / rows).max(1);
            let mut first = 0;
            while first < rows {
                let take = (target - bytes).div_ceil(per_row).clamp(1, rows - first);
                current.push(Segment {
                    file: i,
                    rg,
                    first,
                    rows: take,
                });
                bytes += take * per_row;
                first += take;
                if bytes >= target {
                    parts.push(std::mem::take(&mut current));
                    bytes = 0;
                }
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    if parts.is_empty() && !shapes.is_empty() {
        // No row kept anywhere: one empty part, so that readers still find the schema.
        parts.push(Vec::new());
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(n, segments)| PartPlan {
            name: format!("part-{n:05}.parquet"),
            segments,
        })
        .collect()
}

/// The writer settings of a part: those the engine chose for its first input's data file
/// (codec and dictionary per column, the policy's key-values).
fn part_props(s: &Source, layout: Layout) -> WriterProperties {
    let kv: Vec<_> = s
        .meta
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key != "ARROW:schema")
        .cloned()
        .collect();
    let mut b = crate::engine::base_props(Some(kv))
        .set_max_row_group_row_count(Some(layout.row_group_rows.max(1)));
    let descr = s.meta.file_metadata().schema_descr();
    if let Some(rg) = s.meta.row_groups().first() {
        for (i, col) in descr.columns().iter().enumerate() {
            let chunk = rg.column(i);
            b = b
                .set_column_compression(col.path().clone(), chunk.compression())
                .set_column_dictionary_enabled(
                    col.path().clone(),
                    crate::engine::wants_dictionary(chunk),
                );
        }
    }
    b.build()
}

fn write_err(path: &Location, e: parquet::errors::ParquetError) -> Error {
    Error::Write {
        path: path.clone(),
        source: e,
    }
}

/// Write the part `plan` at `location`; returns its record (named as planned) and what was
/// written.
fn write_part(
    location: &Location,
    sources: &[Source],
    plan: &PartPlan,
    layout: Layout,
) -> Result<(PartRecord, Written)> {
    let location = location.clone();
    // The schema of the part's first input (an empty part: of the first input).
    let first = &sources[plan.segments.first().map_or(0, |s| s.file)];
    let mut options = ArrowWriterOptions::new().with_properties(part_props(first, layout));
    let descr = first.meta.file_metadata().schema_descr_ptr();
    // The input's Parquet types are kept (field ids, INT32 dates...) except INT96, which the
    // Arrow writer cannot encode: those become INT64 timestamps, the Arrow schema's own type.
    if !descr
        .columns()
        .iter()
        .any(|c| c.physical_type() == PhysicalType::INT96)
    {
        options = options.with_parquet_schema(descr.as_ref().clone());
    }
    // summary.json shows each part's SHA-256.
    let file = OutputFile::create_with(&location, Checksum::Sha256)?;
    let mut writer = ArrowWriter::try_new_with_options(file, first.schema.clone(), options)
        .map_err(|e| write_err(&location, e))?;
    let mut inputs: Vec<PartInput> = Vec::new();
    let mut rows = 0u64;
    for seg in &plan.segments {
        if let Some(signal) = crate::signals::requested() {
            return Err(Error::Interrupted {
                signal,
                kept: false,
            });
        }
        let source = &sources[seg.file];
        let in_group = source.meta.row_group(seg.rg).num_rows().max(0) as u64;
        let mut select = Vec::new();
        if seg.first > 0 {
            select.push(RowSelector::skip(seg.first as usize));
        }
        select.push(RowSelector::select(seg.rows as usize));
        let rest = in_group - seg.first - seg.rows;
        if rest > 0 {
            select.push(RowSelector::skip(rest as usize));
        }
        let mut got = 0u64;
        source.pq.read_row_group(
            &source.meta,
            seg.rg,
            None,
            8192,
            Some(RowSelection::from(select)),
            &mut |batch| {
                got += batch.num_rows() as u64;
                // Each input's batches carry its own schema metadata; the part's is the first's
                // (the fields are the same: a part holds one schema).
                let batch = RecordBatch::try_new(first.schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::invalid(source.location.clone(), None, e.to_string()))?;
                writer.write(&batch).map_err(|e| write_err(&location, e))?;
                if writer.in_progress_size() >= MAX_ROW_GROUP_BYTES {
                    writer.flush().map_err(|e| write_err(&location, e))?;
                }
                Ok(())
            },
        )?;
        if got != seg.rows {
            return Err(Error::invalid(
                source.location.clone(),
                Some(seg.rg),
                format!("read {got} rows where {} were expected", seg.rows),
            ));
        }
        rows += seg.rows;
        match inputs.last_mut() {
            Some(last) if last.path == source.rel => last.rows += seg.rows,
            _ => inputs.push(PartInput {
                path: source.rel.clone(),
                rows: seg.rows,
            }),
        }
    }
    let row_groups =
        writer.flushed_row_groups().len() as u64 + u64::from(writer.in_progress_rows() > 0);
    let file = writer.into_inner().map_err(|e| write_err(&location, e))?;
    let written = file.finish()?;
    let sha256 = match &written.sha256 {
        Some(s) => s.clone(),
        None => crate::io::sha256_of(&location)?.1,
    };
    Ok((
        PartRecord {
            path: plan.name.clone(),
            rows,
            row_groups,
            bytes: written.size,
            sha256,
            inputs,
        },
        written,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(name: &str, schema: usize, row_groups: &[(u64, u64)]) -> Shape {
        Shape {
            name: name.into(),
            schema,
            row_groups: row_groups.to_vec(),
        }
    }

    fn layout(target: Option<u64>) -> Layout {
        Layout {
            target_bytes: target,
            row_group_rows: 100,
        }
    }

    /// Every row of every source, in order, as (source, row group, row).
    fn rows_of(plans: &[PartPlan]) -> Vec<(usize, usize, u64)> {
        plans
            .iter()
            .flat_map(|p| &p.segments)
            .flat_map(|s| (s.first..s.first + s.rows).map(move |r| (s.file, s.rg, r)))
            .collect()
    }

    #[test]
    fn without_a_target_each_input_is_its_own_part_and_empty_row_groups_go() {
        let plans = plan_parts(
            &[
                shape("a.parquet", 0, &[(3, 30), (0, 0)]),
                shape("b/c.parquet", 1, &[]),
            ],
            layout(None),
        );
        let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a.parquet", "b/c.parquet"]);
        assert_eq!(rows_of(&plans), [(0, 0, 0), (0, 0, 1), (0, 0, 2)]);
    }

    #[test]
    fn a_schema_change_starts_a_part_and_nothing_kept_leaves_one_empty_part() {
        let plans = plan_parts(
            &[shape("a", 0, &[(10, 10)]), shape("b", 1, &[(10, 10)])],
            layout(Some(1 << 30)),
        );
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].segments[0].file, 1);
        let plans = plan_parts(
            &[shape("a", 0, &[]), shape("b", 0, &[(0, 0)])],
            layout(Some(8)),
        );
        assert_eq!(plans.len(), 1);
        assert!(plans[0].segments.is_empty());
        assert_eq!(plans[0].name, "part-00000.parquet");
    }

    proptest! {
        /// Every row lands in exactly one part, in order; every part but the last of a schema
        /// reaches the target, and none passes it by a whole row.
        #[test]
        fn parts_hold_every_row_once_in_order_near_the_target(
            files in proptest::collection::vec(
                (0usize..2, proptest::collection::vec((0u64..50, 0u64..5000), 0..4)),
                0..6,
            ),
            target in 1u64..20_000,
        ) {
            let shapes: Vec<Shape> = files
                .iter()
                .enumerate()
                .map(|(i, (schema, rgs))| shape(&format!("f{i}"), *schema, rgs))
                .collect();
            let plans = plan_parts(&shapes, layout(Some(target)));
            let want: Vec<(usize, usize, u64)> = shapes
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.row_groups
                        .iter()
                        .enumerate()
                        .flat_map(move |(rg, (rows, _))| (0..*rows).map(move |r| (i, rg, r)))
                })
                .collect();
            prop_assert_eq!(rows_of(&plans), want);
            for (n, p) in plans.iter().enumerate() {
                prop_assert_eq!(&p.name, &format!("part-{n:05}.parquet"));
                let schemas: std::collections::BTreeSet<usize> =
                    p.segments.iter().map(|s| shapes[s.file].schema).collect();
                prop_assert!(schemas.len() <= 1);
                let per_row = |s: &Segment| {
                    let (rows, bytes) = shapes[s.file].row_groups[s.rg];
                    (bytes * 1024 / rows).max(1)
                };
                let bytes: u64 = p.segments.iter().map(|s| s.rows * per_row(s)).sum();
                let last_row = p.segments.last().map_or(0, per_row);
                prop_assert!(bytes < target * 1024 + last_row, "part {} overshoots", n);
                // Cut before the target only where the schema changes before the next part.
                let next = plans.get(n + 1).and_then(|q| q.segments.first());
                let changes = |from: usize, to: usize| {
                    (from + 1..=to).any(|k| shapes[k].schema != shapes[k - 1].schema)
                };
                if let (Some(last), Some(next)) = (p.segments.last(), next) {
                    if changes(last.file, next.file) {
                        continue;
                    }
                    prop_assert!(bytes >= target * 1024, "part {} cut early", n);
                }
            }
        }
    }
}
