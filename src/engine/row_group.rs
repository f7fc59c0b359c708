//! One row group: checked, decided (pass 1), and its outputs encoded (pass 2) — on a worker
//! thread, independent of every other row group.
//!
//! Pass 1 reads only the policy's columns (region and consent read as dictionaries, so they are
//! normalised per distinct value) and decides every row. A row group with nothing kept is not
//! decoded further. A wholly kept one, when codecs are preserved and its chunks are exactly their
//! declared bytes, is copied byte for byte — after its payload pages are decoded once (not
//! re-encoded) to prove they are readable, unless the user trusts them. Otherwise pass 2 reads the
//! remaining columns (a row selection of the kept rows where that skips whole pages) and encodes
//! the output column chunks.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::ProjectionMask;
use parquet::schema::types::SchemaDescriptor;

use super::byte_rows::ByteRows;
use super::chunk::RawChunk;
use super::job::{FileJob, Readers, WriterFactories};
use super::labels::LabelWriter;
use super::prose::ProseWriter;
use super::raw_leaf::copy_kept_int96;
use crate::error::{Error, ReadError, Result};
use crate::io::pages;
use crate::io::parquet::{FileSource, RowGroupPages};
use crate::policy::{Action, Policy, RuleId};
use crate::summary::Counts;

/// Uncompressed bytes per batch when reading the payload for encoding: a batch is decoded
/// whole before it is filtered, so this bounds each worker's decode buffer whatever the row
/// width (32k rows of 10 kB documents would be 320 MB).
const PAYLOAD_BATCH_BYTES: i64 = 4 << 20;

/// One encoded output column chunk.
pub(super) enum OutChunk {
    Arrow(ArrowColumnChunk),
    Raw(RawChunk),
}

/// What to write to the data file for one row group.
pub(super) enum DataOut {
    /// Nothing kept, or a dry run.
    Nothing,
    /// Re-encoded kept rows.
    Encoded(Vec<OutChunk>),
    /// Every row kept and codecs preserved: copy the input column chunks byte for byte.
    PassThrough(Arc<Readers>),
    /// `--reuse`: copy row group `.1` of PREV_OUT's data file byte for byte.
    Previous(Arc<super::job::PreviousRowGroups>, usize),
}

/// What one row group produced.
pub(super) struct RowGroupResult {
    pub rg: usize,
    /// The manifest rows, unencoded, when the run collects them (`verify`).
    pub excluded_rows: Option<RecordBatch>,
    pub rows: u64,
    pub kept: u64,
    pub unmatched: u64,
    pub counts: Counts,
    /// The manifest row group, when anything was excluded (and not a dry run).
    pub manifest: Option<ManifestOut>,
    pub data: DataOut,
    pub bytes: u64,
    /// `--reuse`: pages copied from PREV_OUT into a spliced chunk.
    pub pages_reused: u64,
    /// Pages of PREV_OUT's manifest row group copied into this one's (`--reuse`).
    pub manifest_pages_reused: u64,
    /// Each row's decision and the member filter, when the run records them (see `decisions`).
    pub record: Option<super::decisions::Recorded>,
    /// `--reuse`: rows whose decision was PREV_OUT's record, not decided again.
    pub decisions_reused: u64,
    /// `--reuse`: its data, manifest and decisions are PREV_OUT's row groups of it (or none).
    pub as_previous: bool,
}

/// What to write to the manifest for one row group.
pub(super) enum ManifestOut {
    Encoded(Vec<OutChunk>),
    /// `--reuse`: copy row group `.1` of PREV_OUT's manifest byte for byte.
    Previous(Arc<super::job::PreviousRowGroups>, usize),
}

pub(super) fn process_row_group(
    job: &FileJob,
    rg: usize,
    policy: &Policy,
    write: bool,
    collect: bool,
) -> Result<RowGroupResult> {
    let err = |e: ReadError| Error::read(job.location().clone(), Some(rg), e);
    let rows = job.rg_rows(rg);
    let bytes = job
        .input
        .parquet
        .parquet_meta()
        .row_group(rg)
        .compressed_size()
        .max(0) as u64;
    let mut counts = Counts::new(policy.rules.len());
    if rows == 0 {
        // Writers leave empty row groups (pyarrow's zero-row tables); there is nothing to
        // decide or write, and the chunks may hold no data page at all.
        return Ok(RowGroupResult {
            rg,
            excluded_rows: None,
            rows: 0,
            kept: 0,
            unmatched: 0,
            counts,
            manifest: None,
            data: DataOut::Nothing,
            bytes,
            pages_reused: 0,
            manifest_pages_reused: 0,
            record: None,
            decisions_reused: 0,
            as_previous: true,
        });
    }
    let footer = job.readers()?;
    let source = job.input.parquet.source();
    // The policy's columns, checked first (and, from an object store, fetched alone), read
    // when a decision or the manifest needs them.
    let read_decided = || -> Result<RecordBatch> {
        // Its user ids as `--reuse`'s search read them, when it held them: the other policy
        // columns alone are checked and read (the ids' pages were checked as the search read
        // them). A footer that is not what the pages say has them all read again.
        let held = job
            .previous
            .as_ref()
            .and_then(|p| p.user_ids.get(rg)?.as_ref())
            .and_then(|ids| HeldIds::of(job, footer.pq.file_metadata().schema_descr(), ids));
        if let Some(held) = &held {
            let corrected = match &held.others {
                Some(mask) => job
                    .input
                    .parquet
                    .check_columns(&footer.pq, rg, Some(mask))?
                    .corrected
                    .is_some(),
                None => false,
            };
            if !corrected {
                return decision_batch_with_ids(job, rg, rows, &footer, &source, held).map_err(err);
            }
        }
        let checked = job
            .input
            .parquet
            .check_columns(&footer.pq, rg, Some(&job.decision_mask))?;
        let readers = match &checked.corrected {
            Some(pq) => Arc::new(job.readers_for(pq.clone())?),
            None => footer.clone(),
        };
        read_decision_batch(rg, rows, &readers, &source, &job.decision_mask).map_err(err)
    };
    let rules = policy.rules.len();
    // `--reuse`: PREV_OUT's decisions of this row group, when it recorded them; then only the
    // rows of changed members are decided again.
    let recorded = job
        .previous
        .as_ref()
        .filter(|_| !collect)
        .and_then(|p| Some((p, p.recorded(rg, rows, policy)?)));
    let mut batch: Option<RecordBatch> = None;
    // What PREV_OUT kept of the row group, by its own record.
    let mut recorded_keep = None;
    // PREV_OUT's member filter of the row group: the same input rows, so today's.
    let mut prev_members = None;
    let (decision, prev_codes, decided_again) = match recorded {
        Some((p, (record, was))) => {
            recorded_keep = Some(was);
            prev_members = record.members;
            let prev = record.codes;
            let changed = &p.changed_rows[rg];
            let codes = if changed.is_empty() {
                prev.clone()
            } else {
                // The changed rows' policy columns: their user ids as the search read them,
                // when the policy reads nothing else; else the row group's, read again.
                let ids = p
                    .changed_ids
                    .get(rg)
                    .and_then(Option::as_ref)
                    .filter(|ids| job.decided_by_user_id && ids.len() == changed.len())
                    // A record without a member filter gets one made from the ids read whole.
                    .filter(|_| prev_members.is_some() || !job.record_decisions);
                let sub = match (ids, job.user_id.as_deref()) {
                    (Some(ids), Some(name)) => {
                        let field = arrow_schema::Field::new(name, ids.data_type().clone(), true);
                        RecordBatch::try_new(
                            Arc::new(arrow_schema::Schema::new(vec![field])),
                            vec![ids.clone()],
                        )
                        .map_err(|e| err(e.to_string().into()))?
                    }
                    _ => {
                        let b = read_decided()?;
                        let rows_of = UInt32Array::from(changed.clone());
                        let sub = arrow_select::take::take_record_batch(&b, &rows_of)
                            .map_err(|e| err(e.to_string().into()))?;
                        batch = Some(b);
                        sub
                    }
                };
                let now = job.decider.decide(&sub).map_err(|m| err(m.into()))?;
                super::decisions::merge(&prev, changed, &super::decisions::codes_of(&now, rules))
            };
            let decision = super::decisions::decision_of(&codes, rules).ok_or_else(|| {
                err(String::from("a recorded decision names no rule of this policy").into())
            })?;
            (decision, Some((prev, codes)), changed.len() as u64)
        }
        None => {
            let b = read_decided()?;
            let d = job.decider.decide(&b).map_err(|m| err(m.into()))?;
            batch = Some(b);
            (d, None, rows)
        }
    };
    let keep = BooleanBuffer::collect_bool(rows as usize, |i| {
        policy.action_of(decision.rule[i]) == Action::Include
    });
    let kept = keep.count_set_bits() as u64;

    count(policy, &decision, &mut counts);
    let unchanged = prev_codes.as_ref().is_some_and(|(p, now)| p == now);
    // The input rows whose manifest row is not PREV_OUT's (excluded by one run only, or by
    // both under another rule or region): only changed members' rows are decided again.
    let manifest_dirty: Option<Vec<u32>> = match (&prev_codes, &recorded_keep, &job.previous) {
        (Some((prev, now)), Some(was), Some(p)) => Some(
            p.changed_rows[rg]
                .iter()
                .copied()
                .filter(|&i| {
                    let i = i as usize;
                    prev[i] != now[i] && (!was.value(i) || !keep.value(i))
                })
                .collect(),
        ),
        _ => None,
    };
    let record = match prev_codes {
        _ if !job.record_decisions || !write => None,
        Some((_, codes)) => Some(super::decisions::Recorded {
            codes,
            members: prev_members.or_else(|| member_filter(job, batch.as_ref())),
        }),
        None => Some(super::decisions::Recorded {
            codes: super::decisions::codes_of(&decision, rules),
            members: member_filter(job, batch.as_ref()),
        }),
    };

    let mut excluded_rows = None;
    let mut manifest = None;
    let mut manifest_pages_reused = 0u64;
    if (write || collect) && kept < rows {
        // Decided as PREV_OUT decided, or differently only for rows both runs keep: its
        // manifest row group is today's.
        let same_manifest = unchanged || manifest_dirty.as_ref().is_some_and(Vec::is_empty);
        let copied = job
            .previous
            .as_ref()
            .filter(|p| same_manifest && write && !collect && p.excluded.file().is_some())
            .and_then(|p| Some(ManifestOut::Previous(p.clone(), p.manifest_row_group[rg]?)));
        if let Some(m) = copied {
            manifest = Some(m);
        } else {
            if batch.is_none() {
                batch = Some(read_decided()?);
            }
            let b = build_manifest(
                job,
                rg,
                batch.as_ref().expect("read above"),
                &decision.rule,
                &decision.region,
                &keep,
                policy,
            )
            .map_err(|m| err(m.into()))?;
            if collect {
                excluded_rows = Some(as_schema_says(&b, &job.manifest_schema).map_err(err)?);
            }
            if write {
                let spliced = match (&manifest_dirty, &recorded_keep) {
                    (Some(dirty), Some(was)) if !collect => {
                        splice_manifest(job, rg, &b, &keep, was, dirty)
                    }
                    _ => None,
                };
                let chunks = match spliced {
                    Some((chunks, pages)) => {
                        manifest_pages_reused = pages;
                        chunks
                    }
                    None => encode_manifest(job, b).map_err(|m| err(m.into()))?,
                };
                manifest = Some(ManifestOut::Encoded(chunks));
            }
        }
    }

    let previous = job.previous.as_ref().and_then(|p| {
        let at = p.out_row_group.get(rg).copied().flatten()?;
        // Decided alike, so the same rows: a count that differs means PREV_OUT is not what it
        // recorded, and the row group is encoded afresh.
        (p.meta.row_group(at).num_rows() as u64 == kept).then(|| (p.clone(), at))
    });
    // A row group holding a changed member: what PREV_OUT kept of it, and which rows flipped.
    let touched = match (&previous, write && kept > 0) {
        (None, true) => job.previous.as_ref().and_then(|p| match recorded_keep {
            Some(was) => Touched::of_keeps(p, &was, &keep, rg),
            None => Touched::of(p, job.rg_first_row[rg], &keep, rg),
        }),
        _ => None,
    };
    let mut pages_reused = 0u64;
    let data = if !write || kept == 0 {
        // Nothing of the payload is needed: it is never checked, read nor fetched.
        DataOut::Nothing
    } else if let Some((p, at)) = previous {
        DataOut::Previous(p, at)
    } else if let Some(t) = touched.as_ref().filter(|t| t.flips.is_empty()) {
        // No decision flipped: PREV_OUT's row group holds today's rows.
        DataOut::Previous(t.previous.clone(), t.at)
    } else {
        let parquet = &job.input.parquet;
        let descr = footer.pq.file_metadata().schema_descr();
        // The large columns a touched row group splices from PREV_OUT's pages: the input's
        // chunks of them are read only for rows kept today and not by PREV_OUT (an opt-in), so
        // they are walked (and fetched, from a bucket) only then, not here. The input has the
        // identity PREV_OUT recorded: those are the pages walked when PREV_OUT was written.
        let spliceable = match &touched {
            Some(t) if !(kept == rows && job.pass_through) => splice_leaves(job, rg, descr, t),
            _ => Vec::new(),
        };
        let leaves_but = |skip: &[usize]| {
            ProjectionMask::leaves(
                descr,
                (0..descr.num_columns()).filter(|l| !skip.contains(l)),
            )
        };
        let mut checked = if spliceable.is_empty() {
            parquet.check_row_group(&footer.pq, rg)?
        } else {
            let skip: Vec<usize> = spliceable.iter().map(|(_, leaf)| *leaf).collect();
            parquet.check_columns_alone(&footer.pq, rg, &leaves_but(&skip))?
        };
        if checked.corrected.is_some() && !spliceable.is_empty() {
            // A footer that is not what the pages say is corrected from every chunk's walk.
            checked = parquet.check_row_group(&footer.pq, rg)?;
        }
        let mut readers = match &checked.corrected {
            Some(pq) => Arc::new(job.readers_for(pq.clone())?),
            None => footer.clone(),
        };
        if kept == rows && job.pass_through && checked.copyable() {
            verify_copy(job, rg, &checked, &readers, &source).map_err(err)?;
            DataOut::PassThrough(readers)
        } else {
            let spliced = match &touched {
                Some(t) if !spliceable.is_empty() => {
                    // The input's chunk of a spliced column, walked before any page of it is read.
                    let check_input = |leaf: usize| {
                        let only = ProjectionMask::leaves(descr, [leaf]);
                        parquet
                            .check_columns_alone(&footer.pq, rg, &only)
                            .is_ok_and(|c| c.corrected.is_none())
                    };
                    splice_columns(
                        job,
                        rg,
                        &readers,
                        &source,
                        &keep,
                        t,
                        &spliceable,
                        &check_input,
                    )
                }
                _ => Vec::new(),
            };
            // A large column left to be encoded afresh is walked now, as a fresh run walks it
            // (and held against `--max-memory` with the others); a chunk that is not as the
            // footer says has the row group walked whole, for the footer corrected from it.
            let unspliced: Vec<usize> = spliceable
                .iter()
                .map(|(_, leaf)| *leaf)
                .filter(|leaf| !spliced.iter().any(|s| s.leaf == *leaf))
                .collect();
            if !unspliced.is_empty() && !checked.complete {
                let more = ProjectionMask::leaves(descr, unspliced);
                let rest = parquet.check_more_columns(&footer.pq, rg, &checked, &more)?;
                if rest.corrected.is_some() {
                    if let Some(pq) = parquet.check_row_group(&footer.pq, rg)?.corrected {
                        readers = Arc::new(job.readers_for(pq)?);
                    }
                }
            }
            pages_reused = spliced.iter().map(|s| s.pages_copied).sum();
            let batch = match batch.take() {
                Some(b) => b,
                None => read_decided()?,
            };
            DataOut::Encoded(
                encode_kept(job, rg, &readers, &source, &batch, &keep, kept, spliced)
                    .map_err(err)?,
            )
        }
    };

    // Everything of it as PREV_OUT wrote it: decided alike, its row groups copied.
    let as_previous = unchanged
        && write
        && !collect
        && pages_reused == 0
        && matches!(data, DataOut::Previous(..) | DataOut::Nothing)
        && (kept == rows || matches!(manifest, Some(ManifestOut::Previous(..))));
    Ok(RowGroupResult {
        as_previous,
        rg,
        excluded_rows,
        rows,
        kept,
        unmatched: decision.unmatched,
        counts,
        manifest,
        data,
        bytes,
        pages_reused,
        manifest_pages_reused,
        record,
        decisions_reused: rows - decided_again,
    })
}

/// `--reuse`: today's manifest of row group `rg` (`b`, its rows those `keep` excludes) made from
/// PREV_OUT's manifest row group of it (its rows those `was` excludes) page by page: every page
/// of each column whose input rows hold none of the `dirty` ones is copied, only today's rows
/// between copied pages are encoded (see `splice::splice_manifest_column`). The chunks and the
/// pages copied; `None` when a column cannot be spliced (then it is encoded whole, as a fresh
/// run does, which also reports any problem).
fn splice_manifest(
    job: &FileJob,
    rg: usize,
    b: &RecordBatch,
    keep: &BooleanBuffer,
    was: &BooleanBuffer,
    dirty: &[u32],
) -> Option<(Vec<OutChunk>, u64)> {
    let p = job.previous.as_ref()?;
    let at = p.manifest_row_group.get(rg).copied().flatten()?;
    let (file, meta) = p.excluded.file()?;
    let descr = &job.manifest_descr;
    let prev_rows: Vec<u32> = (!was).set_indices().map(|i| i as u32).collect();
    let now_rows: Vec<u32> = (!keep).set_indices().map(|i| i as u32).collect();
    if at >= meta.num_row_groups()
        || meta.row_group(at).num_rows() as usize != prev_rows.len()
        || b.num_rows() != now_rows.len()
        || b.num_columns() != descr.num_columns()
    {
        return None;
    }
    // A row of PREV_OUT's that is not today's: the byte-array chunks' min and max are then
    // bounds only (integer ones come from their pages, exact).
    let removed = dirty.iter().any(|&i| !was.value(i as usize));
    // PREV_OUT's chunks walked and checked as any chunk read or copied is.
    let walked = file
        .check_columns(meta, at, None)
        .ok()
        .filter(|w| w.corrected.is_none())?;
    let source = file.source();
    let prev = super::splice::PrevManifest {
        source: &source,
        pq: meta,
        at,
        rows: &prev_rows,
    };
    let mut chunks = Vec::with_capacity(descr.num_columns());
    let mut pages = 0;
    for leaf in 0..descr.num_columns() {
        let column = descr.column(leaf);
        let pages_of = walked.chunks.get(leaf).filter(|c| c.exact())?;
        // New pages are plain: the copied ones may refer to PREV_OUT's dictionary page.
        let props = Arc::new(
            job.manifest_props
                .clone()
                .into_builder()
                .set_column_dictionary_enabled(column.path().clone(), false)
                .build(),
        );
        let s = super::splice::splice_manifest_column(
            &prev,
            &column,
            leaf,
            pages_of,
            &now_rows,
            dirty,
            b.column(leaf),
            &props,
            removed,
        )
        .ok()??;
        pages += s.pages_copied;
        chunks.push(OutChunk::Raw(s.chunk));
    }
    Some((chunks, pages))
}

/// The member filter of a row group whose policy columns are `batch` (`None`: no user ids).
fn member_filter(job: &FileJob, batch: Option<&RecordBatch>) -> Option<Vec<u8>> {
    let ids = batch?.column_by_name(job.user_id.as_deref()?)?;
    super::decisions::MemberFilter::build(ids.as_ref())
}

/// `--reuse`: an input row group holding a changed member, whose kept rows PREV_OUT wrote.
struct Touched {
    previous: Arc<super::job::PreviousRowGroups>,
    /// PREV_OUT's row group of them.
    at: usize,
    /// The rows PREV_OUT kept (within the row group), ascending.
    prev_rows: Vec<u32>,
    /// The rows kept by one run and not the other, ascending.
    flips: Vec<u32>,
}

impl Touched {
    /// PREV_OUT's row group of it, read from `source` (its data file's).
    fn prev_group<'a>(&'a self, source: &'a FileSource) -> super::splice::PrevGroup<'a> {
        super::splice::PrevGroup {
            source,
            pq: &self.previous.meta,
            at: self.at,
            rows: &self.prev_rows,
        }
    }

    fn of(
        p: &Arc<super::job::PreviousRowGroups>,
        first: u64,
        keep: &BooleanBuffer,
        rg: usize,
    ) -> Option<Touched> {
        let at = p.touched_row_group.get(rg).copied().flatten()?;
        let excluded = p.excluded.rows()?;
        let (first, rows) = (first as i64, keep.len() as i64);
        let lo = excluded.partition_point(|r| *r < first);
        let hi = excluded.partition_point(|r| *r < first + rows);
        let mut gone = excluded[lo..hi].iter().map(|r| r - first).peekable();
        let mut prev_rows = Vec::with_capacity((rows as usize).saturating_sub(hi - lo));
        let mut flips = Vec::new();
        for i in 0..rows {
            let was = if gone.peek() == Some(&i) {
                gone.next();
                false
            } else {
                prev_rows.push(i as u32);
                true
            };
            if was != keep.value(i as usize) {
                flips.push(i as u32);
            }
        }
        // PREV_OUT's manifest and data file must agree on what it kept.
        (prev_rows.len() as i64 == p.meta.row_group(at).num_rows()).then(|| Touched {
            previous: p.clone(),
            at,
            prev_rows,
            flips,
        })
    }

    /// As [`Touched::of`], from what PREV_OUT recorded it kept (`was`).
    fn of_keeps(
        p: &Arc<super::job::PreviousRowGroups>,
        was: &BooleanBuffer,
        keep: &BooleanBuffer,
        rg: usize,
    ) -> Option<Touched> {
        let at = p.touched_row_group.get(rg).copied().flatten()?;
        let prev_rows: Vec<u32> = was.set_indices().map(|i| i as u32).collect();
        let flips: Vec<u32> = (was ^ keep).set_indices().map(|i| i as u32).collect();
        (prev_rows.len() as i64 == p.meta.row_group(at).num_rows()).then(|| Touched {
            previous: p.clone(),
            at,
            prev_rows,
            flips,
        })
    }
}

/// The `(root, leaf)` columns of a touched row group worth splicing from PREV_OUT's pages.
fn splice_leaves(
    job: &FileJob,
    rg: usize,
    descr: &SchemaDescriptor,
    t: &Touched,
) -> Vec<(usize, usize)> {
    let props = &job.factories[job.rg_factory[rg]].1;
    let prev_source = t.previous.data.source();
    let mut skip_roots: Vec<usize> = job.reused.iter().map(|(root, _)| *root).collect();
    skip_roots.extend(job.raw_leaves.iter().map(|l| descr.get_column_root_idx(*l)));
    super::splice::candidates(descr, &t.prev_group(&prev_source), props, &skip_roots)
}

/// The large columns of a touched row group spliced from PREV_OUT's pages (see `splice`); a
/// column that cannot be (PREV_OUT's pages not as its index says, or none clean) is left to be
/// encoded afresh, which reports any problem with the input.
#[allow(clippy::too_many_arguments)]
fn splice_columns(
    job: &FileJob,
    rg: usize,
    readers: &Readers,
    source: &FileSource,
    keep: &BooleanBuffer,
    t: &Touched,
    leaves: &[(usize, usize)],
    check_input: &dyn Fn(usize) -> bool,
) -> Vec<SplicedColumn> {
    let props = &job.factories[job.rg_factory[rg]].1;
    let descr = readers.pq.file_metadata().schema_descr();
    let prev_source = t.previous.data.source();
    let prev = t.prev_group(&prev_source);
    let removed = t.flips.iter().any(|f| !keep.value(*f as usize));
    let mut out = Vec::new();
    for &(root, leaf) in leaves {
        // New pages are plain: the copied ones may refer to PREV_OUT's dictionary page.
        let plain = Arc::new(
            (**props)
                .clone()
                .into_builder()
                .set_column_dictionary_enabled(descr.column(leaf).path().clone(), false)
                .build(),
        );
        // PREV_OUT's chunk walked and checked as any chunk read or copied is; one whose pages
        // are not as its footer and index say is not spliced.
        let mask = ProjectionMask::leaves(descr, [leaf]);
        let walked = match t
            .previous
            .data
            .check_columns(&t.previous.meta, t.at, Some(&mask))
        {
            Ok(w) if w.corrected.is_none() && w.chunks[leaf].exact() => w,
            _ => continue,
        };
        if let Ok(Some(s)) = super::splice::splice_column(
            source,
            &readers.pq,
            rg,
            leaf,
            &prev,
            &walked.chunks[leaf],
            keep,
            &t.flips,
            removed,
            &plain,
            &|| check_input(leaf),
        ) {
            out.push(SplicedColumn {
                root,
                leaf,
                chunk: s.chunk,
                pages_copied: s.pages_copied,
            });
        }
    }
    out
}

/// A column's output chunk made outside pass 2's batches: spliced from PREV_OUT's pages, or a
/// prose column read from its own pages (`prose_from_pages`; no page copied).
pub(super) struct SplicedColumn {
    root: usize,
    leaf: usize,
    chunk: RawChunk,
    pages_copied: u64,
}

/// Pass 1: read the policy columns of the row group (`columns`: all of them, or some).
fn read_decision_batch(
    rg: usize,
    rows: u64,
    readers: &Readers,
    source: &FileSource,
    columns: &ProjectionMask,
) -> std::result::Result<RecordBatch, ReadError> {
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
        source.clone(),
        readers.decision.clone(),
    )
    .with_projection(columns.clone())
    .with_row_groups(vec![rg])
    .with_batch_size(rows as usize)
    .build()?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(readers.decision.schema().clone()),
        1 => batches.into_iter().next().expect("one batch"),
        _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)?,
    };
    if batch.num_rows() as u64 != rows {
        return Err(ReadError::Invalid(format!(
            "the footer says {rows} rows but {} were decoded",
            batch.num_rows()
        )));
    }
    Ok(batch)
}

/// A row group's user ids held from `--reuse`'s search, and what else its policy columns are.
struct HeldIds<'a> {
    ids: &'a ArrayRef,
    /// Its position among the policy columns.
    at: usize,
    /// The other policy columns' projection (`None`: there are none).
    others: Option<ProjectionMask>,
}

impl<'a> HeldIds<'a> {
    /// `None` when the ids are not the policy columns' user-id column as pass 1 reads it.
    fn of(job: &FileJob, descr: &SchemaDescriptor, ids: &'a ArrayRef) -> Option<HeldIds<'a>> {
        let root = job.decision_schema.index_of(job.user_id.as_deref()?).ok()?;
        if job.decision_schema.field(root).data_type() != ids.data_type() {
            return None;
        }
        let at = job.reused.iter().position(|(r, _)| *r == root)?;
        let roots: Vec<usize> = job
            .reused
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| *r != root)
            .collect();
        let others = (!roots.is_empty()).then(|| ProjectionMask::roots(descr, roots));
        Some(HeldIds { ids, at, others })
    }
}

/// [`read_decision_batch`] with the user ids `held`: the other policy columns are read, and the
/// batch holds the columns, in the order, reading them all gives.
fn decision_batch_with_ids(
    job: &FileJob,
    rg: usize,
    rows: u64,
    readers: &Readers,
    source: &FileSource,
    held: &HeldIds<'_>,
) -> std::result::Result<RecordBatch, ReadError> {
    if held.ids.len() as u64 != rows {
        return Err(ReadError::Invalid(format!(
            "the footer says {rows} rows but {} user ids were decoded",
            held.ids.len()
        )));
    }
    let mut columns: Vec<ArrayRef> = match &held.others {
        None => Vec::new(),
        Some(mask) => read_decision_batch(rg, rows, readers, source, mask)?
            .columns()
            .to_vec(),
    };
    columns.insert(held.at, held.ids.clone());
    let roots: Vec<usize> = job.reused.iter().map(|(r, _)| *r).collect();
    let schema = readers.decision.schema().project(&roots)?;
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Add each row's rule and (region, kept or excluded) to `counts`.
fn count(policy: &Policy, decision: &crate::decide::BatchDecision, counts: &mut Counts) {
    // Rule x region in a dense table while it is small (a few dozen rules), sparse beyond.
    let regions = crate::region::REGION_COUNT;
    let mut dense = (counts.by_rule.len() * regions <= 1 << 16)
        .then(|| vec![0u64; counts.by_rule.len() * regions]);
    for (r, reg) in decision.rule.iter().zip(&decision.region) {
        let slot = counts.rule_slot(*r);
        counts.by_rule[slot] += 1;
        let k = (policy.action_of(*r) == Action::Exclude) as usize;
        counts.by_region[reg.index()][k] += 1;
        match dense.as_mut() {
            Some(d) => d[slot * regions + reg.index()] += 1,
            None => {
                *counts
                    .by_rule_region
                    .entry((slot as u32, reg.index() as u16))
                    .or_default() += 1
            }
        }
    }
    for (i, n) in dense.iter().flatten().enumerate().filter(|(_, n)| **n > 0) {
        *counts
            .by_rule_region
            .entry(((i / regions) as u32, (i % regions) as u16))
            .or_default() += n;
    }
}

/// Before a wholly kept row group is copied byte for byte: the CRC of every page that has one,
/// and, unless `--trust-input-pages`, every payload page decompressed and decoded (pass 1
/// decoded the policy columns already). A copy of a page that does not decode would be an
/// output no reader can read.
fn verify_copy(
    job: &FileJob,
    rg: usize,
    checked: &RowGroupPages,
    readers: &Readers,
    source: &FileSource,
) -> std::result::Result<(), ReadError> {
    for chunk in &checked.chunks {
        pages::check_crcs(source, chunk).map_err(|p| match p {
            pages::PageProblem::Corrupt(m) => ReadError::Invalid(m),
            pages::PageProblem::TooBig { needed } => {
                ReadError::Invalid(format!("a page needs {needed} bytes"))
            }
        })?;
    }
    let Some(mask) = &job.payload_mask else {
        return Ok(());
    };
    if job.trust_input_pages {
        return Ok(());
    }
    let batch_rows = payload_batch_rows(readers.pq.row_group(rg));
    let reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(source.clone(), readers.payload.clone())
            .with_projection(mask.clone())
            .with_row_groups(vec![rg])
            .with_batch_size(batch_rows)
            .build()?;
    let mut decoded = 0u64;
    for b in reader {
        decoded += b?.num_rows() as u64;
    }
    let rows = job.rg_rows(rg);
    if decoded != rows {
        return Err(ReadError::Invalid(format!(
            "its pages decode to {decoded} rows, not the {rows} the footer claims"
        )));
    }
    Ok(())
}

fn build_manifest(
    job: &FileJob,
    rg: usize,
    batch: &RecordBatch,
    rules: &[RuleId],
    regions: &[crate::region::Region],
    keep: &BooleanBuffer,
    policy: &Policy,
) -> std::result::Result<RecordBatch, String> {
    manifest_rows(
        &ManifestOf {
            schema: &job.manifest_schema,
            source_file: Some(job.input.file.rel.as_str()),
            first_row: job.rg_first_row[rg] as i64,
            record_id: job.record_id.as_deref(),
            user_id: job.user_id.as_deref(),
            pseudonymize: job.pseudonymize.as_deref().map(Vec::as_slice),
            policy,
            labels_as_dictionaries: true,
        },
        batch,
        rules,
        regions,
        keep,
    )
}

/// Where excluded rows come from, for [`manifest_rows`].
pub(crate) struct ManifestOf<'a> {
    pub schema: &'a SchemaRef,
    /// `None` for rows that come from no file (batches decided in memory): a null column.
    pub source_file: Option<&'a str>,
    /// The row number of the batch's first row.
    pub first_row: i64,
    pub record_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub pseudonymize: Option<&'a [u8]>,
    pub policy: &'a Policy,
    /// The label columns (`source_file`, `rule`, `region`) as dictionaries of their few values
    /// (`Int32` keys) rather than a string a row, and the batch's schema typed so: for
    /// [`encode_manifest`], whose label writer takes each value once. Otherwise as `schema` says.
    pub labels_as_dictionaries: bool,
}

/// A label column: `values` (each distinct) at `keys`, as a dictionary array or as strings.
fn label_column(
    keys: Vec<i32>,
    values: StringArray,
    as_dictionary: bool,
) -> std::result::Result<ArrayRef, String> {
    let d = DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(values))
        .map_err(|e| e.to_string())?;
    if as_dictionary {
        Ok(Arc::new(d))
    } else {
        arrow_cast::cast(&d, &DataType::Utf8).map_err(|e| e.to_string())
    }
}

/// The manifest rows of `batch`'s rows that `keep` excludes: where each came from, its ids,
/// the rule that excluded it and its region.
pub(crate) fn manifest_rows(
    of: &ManifestOf<'_>,
    batch: &RecordBatch,
    rules: &[RuleId],
    regions: &[crate::region::Region],
    keep: &BooleanBuffer,
) -> std::result::Result<RecordBatch, String> {
    let excluded: Vec<u32> = (!keep).set_indices().map(|i| i as u32).collect();
    let n = excluded.len();
    let idx = UInt32Array::from(excluded.clone());
    let as_dict = of.labels_as_dictionaries;
    let source: ArrayRef = match of.source_file {
        Some(f) => label_column(vec![0; n], StringArray::from(vec![f]), as_dict)?,
        None => arrow_array::new_null_array(&DataType::Utf8, n),
    };
    let mut cols: Vec<ArrayRef> = vec![
        source,
        Arc::new(Int64Array::from_iter_values(
            excluded.iter().map(|i| of.first_row + *i as i64),
        )),
    ];
    for (c, is_user) in [(of.record_id, false), (of.user_id, true)] {
        let Some(c) = c else { continue };
        // A column the schema lacks has no manifest column either (see `manifest_schema`).
        if of
            .schema
            .field_with_name(if is_user { "user_id" } else { "record_id" })
            .is_err()
        {
            continue;
        }
        let col = batch
            .column_by_name(c)
            .ok_or_else(|| format!("column '{c}' missing from the decision batch"))?;
        let taken =
            arrow_select::take::take(col.as_ref(), &idx, None).map_err(|e| e.to_string())?;
        match (of.pseudonymize, is_user) {
            (Some(key), true) => {
                cols.push(Arc::new(crate::join::pseudonymize(key, taken.as_ref())?))
            }
            _ => cols.push(taken),
        }
    }
    // Rule `k` is value `k`, the default rule the last; region `r` is value `r.index()` (the
    // unknown region's is null).
    let named = of.policy.rules.len();
    let rule_names = (0..named)
        .map(|k| RuleId(k as u16))
        .chain([RuleId::DEFAULT])
        .map(|r| of.policy.rule_name(r));
    let rule_key = |r: RuleId| match r {
        RuleId::DEFAULT => named as i32,
        RuleId(k) => i32::from(k),
    };
    cols.push(label_column(
        excluded
            .iter()
            .map(|i| rule_key(rules[*i as usize]))
            .collect(),
        StringArray::from_iter_values(rule_names),
        as_dict,
    )?);
    cols.push(label_column(
        excluded
            .iter()
            .map(|i| regions[*i as usize].index() as i32)
            .collect(),
        StringArray::from_iter(
            (0..crate::region::REGION_COUNT).map(|r| crate::region::Region::from_index(r).code()),
        ),
        as_dict,
    )?);
    batch_of(of.schema, cols).map_err(|e| e.to_string())
}

/// `cols` as a batch of `schema`'s fields, each typed as its column is (the manifest's label
/// columns may be dictionaries of the strings the schema says).
fn batch_of(
    schema: &SchemaRef,
    cols: Vec<ArrayRef>,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(&cols)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let typed = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(typed), cols)
}

/// `batch` with each column in `schema`'s type (the manifest's label columns, dictionaries
/// for encoding, as strings).
fn as_schema_says(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, ReadError> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match c.data_type() == f.data_type() {
            true => Ok(c.clone()),
            false => arrow_cast::cast(c, f.data_type()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .and_then(|cols| RecordBatch::try_new(schema.clone(), cols))
        .map_err(|e| ReadError::Invalid(format!("the exclusion manifest's rows: {e}")))?;
    Ok(cols)
}

/// The manifest row group's column chunks from `batch` ([`manifest_rows`]' with its label
/// columns as dictionaries): those by a [`LabelWriter`], which takes each distinct value once
/// (the Arrow writer hashed and compared every row's string: with the strings built a row
/// each, ~8 % of the CPU of a job that excludes most rows), the others by the Arrow writer.
fn encode_manifest(
    job: &FileJob,
    batch: RecordBatch,
) -> std::result::Result<Vec<OutChunk>, String> {
    let schema = &job.manifest_schema;
    let mut own: Vec<Option<OwnWriter>> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .enumerate()
        .map(|(leaf, (f, c))| match c.data_type() {
            DataType::Dictionary(..) => LabelWriter::new(
                job.manifest_descr.column(leaf),
                f.data_type(),
                &job.manifest_props,
            )
            .map(|w| OwnWriter::Labels(Box::new(w))),
            _ => None,
        })
        .collect();
    // What no writer of ours takes goes to the Arrow writer in the schema's type.
    let batch = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(&own)
        .map(|((c, f), w)| match w {
            None if c.data_type() != f.data_type() => arrow_cast::cast(c, f.data_type()),
            _ => Ok(c.clone()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .and_then(|cols| batch_of(schema, cols))
        .map_err(|e| e.to_string())?;
    let (chunks, _) = encode_batches_with(
        &job.manifest_factory,
        schema,
        &[],
        &[],
        &mut own,
        std::iter::once(Ok(batch)),
    )?;
    chunks
        .into_iter()
        .zip(own)
        .map(|(chunk, own)| match own {
            Some(w) => w.close().map(OutChunk::Raw),
            None => chunk
                .map(OutChunk::Arrow)
                .ok_or_else(|| "a manifest column has no writer".to_string()),
        })
        .collect()
}

/// A column chunk written by corpusgate rather than by the Arrow writer.
enum OwnWriter {
    Prose(Box<ProseWriter>),
    Labels(Box<LabelWriter>),
}

impl OwnWriter {
    fn write(&mut self, array: &ArrayRef) -> std::result::Result<(), String> {
        match self {
            OwnWriter::Prose(w) => w.write(array),
            OwnWriter::Labels(w) => w.write(array),
        }
    }

    fn close(self) -> std::result::Result<RawChunk, String> {
        match self {
            OwnWriter::Prose(w) => w.close(),
            OwnWriter::Labels(w) => w.close(),
        }
    }
}

/// Encode batches of `schema` into one row group's column chunks with `factories`' settings.
/// Leaves listed in `skip` are not written (the caller encodes them itself); the batches lack
/// the root columns listed in `skip_roots` (flat, one leaf each), whose writers write nothing.
/// The flat leaves that have a writer in `own` (by leaf index) are written by it and not by the
/// Arrow writer. A leaf's chunk is `None` where no Arrow writer was made for it: only roots with
/// a leaf the Arrow writer writes get writers (see [`WriterFactories`]).
fn encode_batches_with(
    factories: &WriterFactories,
    schema: &Schema,
    skip: &[usize],
    skip_roots: &[usize],
    own: &mut [Option<OwnWriter>],
    batches: impl Iterator<Item = std::result::Result<RecordBatch, String>>,
) -> std::result::Result<(Vec<Option<ArrowColumnChunk>>, u64), String> {
    let leaves = factories.leaves();
    let mut writers: Vec<Option<ArrowColumnWriter>> = (0..leaves.last().map_or(0, |r| r.end))
        .map(|_| None)
        .collect();
    for (root, range) in leaves.iter().enumerate() {
        let arrow_writes = range
            .clone()
            .any(|l| !skip.contains(&l) && !matches!(own.get(l), Some(Some(_))));
        if skip_roots.contains(&root) || !arrow_writes {
            continue;
        }
        for (w, leaf) in factories.writers(root)?.into_iter().zip(range.clone()) {
            writers[leaf] = Some(w);
        }
    }
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let mut leaf = 0usize;
        let mut arrays = batch.columns().iter();
        for (root, field) in schema.fields().iter().enumerate() {
            if skip_roots.contains(&root) {
                leaf += 1;
                continue;
            }
            let array = arrays
                .next()
                .ok_or("the batch has fewer columns than the schema")?;
            if let Some(Some(w)) = own.get_mut(leaf) {
                w.write(array)
                    .map_err(|e| format!("encoding column '{}': {e}", field.name()))?;
                leaf += 1;
                continue;
            }
            for column in compute_leaves(field, array).map_err(|e| format!("encoding: {e}"))? {
                if !skip.contains(&leaf) {
                    let w = writers
                        .get_mut(leaf)
                        .and_then(Option::as_mut)
                        .ok_or("more leaf columns than writers")?;
                    w.write(&column)
                        .map_err(|e| format!("encoding column '{}': {e}", field.name()))?;
                }
                leaf += 1;
            }
        }
    }
    let chunks = writers
        .into_iter()
        .map(|w| {
            w.map(|w| w.close().map_err(|e| format!("encoding: {e}")))
                .transpose()
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((chunks, rows))
}

/// The kept rows of each column pass 1 read, in the column's own type, by root column index.
/// Those of `labelled` roots that pass 1 read as a dictionary of the column's own type stay
/// dictionaries (a label writer takes them).
fn reused_kept(
    job: &FileJob,
    decided: &RecordBatch,
    keep: &BooleanArray,
    all_kept: bool,
    labelled: &[usize],
) -> std::result::Result<Vec<Option<ArrayRef>>, String> {
    let schema = job.input.parquet.schema();
    let mut reused: Vec<Option<ArrayRef>> = vec![None; schema.fields().len()];
    for (root, pos) in &job.reused {
        let col = decided.column(*pos);
        let col = if all_kept {
            col.clone()
        } else {
            arrow_select::filter::filter(col.as_ref(), keep).map_err(|e| e.to_string())?
        };
        let want = schema.field(*root).data_type();
        let label_dictionary = labelled.contains(root)
            && matches!(col.data_type(), DataType::Dictionary(_, v) if v.as_ref() == want);
        reused[*root] = Some(if col.data_type() == want || label_dictionary {
            col
        } else {
            crate::decide::cast_exact(col.as_ref(), want)?
        });
    }
    Ok(reused)
}

/// Rows per payload batch: [`PAYLOAD_BATCH_BYTES`] at the row group's mean uncompressed row size.
fn payload_batch_rows(rg: &parquet::file::metadata::RowGroupMetaData) -> usize {
    let row_bytes = rg.columns().iter().fold(0i64, |acc, c| {
        acc.saturating_add(c.uncompressed_size().max(0))
    }) / rg.num_rows().max(1);
    (PAYLOAD_BATCH_BYTES / row_bytes.max(1)).clamp(1024, 64 * 1024) as usize
}

/// By leaf index, a writer of ours for each flat leaf of row group `rg` encoded here (not in
/// `skip_leaves`) that one takes: a [`ProseWriter`] where the leaf holds prose (see `prose`), a
/// [`LabelWriter`] where it is a string written with a dictionary; `schema`: the batches' (views
/// for the payload's strings), without the `skip_roots`.
fn own_writers(
    readers: &Readers,
    rg: usize,
    schema: &Schema,
    skip_leaves: &[usize],
    skip_roots: &[usize],
    props: &Arc<parquet::file::properties::WriterProperties>,
) -> Vec<Option<OwnWriter>> {
    let descr = readers.pq.file_metadata().schema_descr();
    let group = readers.pq.row_group(rg);
    let roots = descr.root_schema().get_fields();
    let mut batch_fields = schema.fields().iter();
    let mut writers: Vec<Option<OwnWriter>> = (0..descr.num_columns()).map(|_| None).collect();
    let mut leaf = 0usize;
    for (root, parquet_field) in roots.iter().enumerate() {
        let leaves = (leaf..descr.num_columns())
            .take_while(|l| descr.get_column_root_idx(*l) == root)
            .count();
        if !skip_roots.contains(&root) {
            let field = batch_fields.next();
            if let (Some(field), true) = (field, parquet_field.is_primitive() && leaves == 1) {
                let input = group.column(leaf);
                if !skip_leaves.contains(&leaf) {
                    writers[leaf] = if super::job::holds_prose(input) {
                        ProseWriter::new(descr.column(leaf), field.data_type(), props)
                            .map(|w| OwnWriter::Prose(Box::new(w)))
                    } else {
                        LabelWriter::new(descr.column(leaf), field.data_type(), props)
                            .map(|w| OwnWriter::Labels(Box::new(w)))
                    };
                }
            }
        }
        leaf += leaves;
    }
    writers
}

/// The prose leaves pass 2 reads in row group `rg` (flat, not read in pass 1 nor spliced, not
/// INT96), each encoded by a [`ProseWriter`] from the kept rows of its pages, read directly
/// (see [`ProseWriter::write_kept`]). Pages with no kept row go unread where the offset index
/// says where pages start, as the Arrow reader's row selection skips them.
fn prose_from_pages(
    job: &FileJob,
    rg: usize,
    readers: &Readers,
    source: &FileSource,
    keep: &BooleanBuffer,
    props: &Arc<parquet::file::properties::WriterProperties>,
    spliced: &[SplicedColumn],
) -> std::result::Result<Vec<SplicedColumn>, ReadError> {
    let Some(mask) = &job.payload_mask else {
        return Ok(Vec::new());
    };
    let descr = readers.pq.file_metadata().schema_descr();
    let group = readers.pq.row_group(rg);
    let roots = descr.root_schema().get_fields();
    let payload = readers.payload.schema();
    let mut out = Vec::new();
    for leaf in 0..descr.num_columns().min(group.num_columns()) {
        let root = descr.get_column_root_idx(leaf);
        let wanted = roots.get(root).is_some_and(|f| f.is_primitive())
            && mask.leaf_included(leaf)
            && !spliced.iter().any(|s| s.root == root)
            && !job.reused.iter().any(|(r, _)| *r == root)
            && !job.raw_leaves.contains(&leaf)
            && super::job::holds_prose(group.column(leaf));
        let field = payload.fields().get(root);
        let writer = field
            .filter(|_| wanted)
            .and_then(|f| ProseWriter::new(descr.column(leaf), f.data_type(), props));
        let Some(mut writer) = writer else {
            continue;
        };
        let column = descr.column(leaf);
        let name = column.path().string();
        let locations = readers
            .pq
            .page_index()
            .and_then(|i| i.offset_index(rg, leaf))
            .map(|o| o.page_locations().clone());
        let chunk = ByteRows::open(source, group.column(leaf), keep.len(), locations, &column)
            .and_then(ByteRows::walking)
            .and_then(|rows| writer.write_kept(rows, keep))
            .and_then(|()| writer.close())
            .map_err(|m| ReadError::Invalid(format!("column '{name}': {m}")))?;
        out.push(SplicedColumn {
            root,
            leaf,
            chunk,
            pages_copied: 0,
        });
    }
    Ok(out)
}

/// Pass 2: decode the kept rows of the columns pass 1 did not read, and encode them with the
/// kept rows of those it did (`decided`, filtered and cast back from the dictionaries pass 1
/// asked for) as output column chunks. INT96 leaves are copied value by value; the `spliced`
/// columns are neither read nor encoded, their chunks are taken as they are.
#[allow(clippy::too_many_arguments)]
fn encode_kept(
    job: &FileJob,
    rg: usize,
    readers: &Readers,
    source: &FileSource,
    decided: &RecordBatch,
    keep: &BooleanBuffer,
    kept: u64,
    spliced: Vec<SplicedColumn>,
) -> std::result::Result<Vec<OutChunk>, ReadError> {
    let full = job.input.parquet.schema();
    let (factory, props) = &job.factories[job.rg_factory[rg]];
    // The prose read from its pages is taken out of the batches as a spliced column is.
    let mut spliced = spliced;
    let direct = prose_from_pages(job, rg, readers, source, keep, props, &spliced)?;
    spliced.extend(direct);
    spliced.sort_by_key(|s| s.leaf);
    let skip_roots: Vec<usize> = spliced.iter().map(|s| s.root).collect();
    // The batches encoded: the schema without the spliced columns, with the payload's strings
    // and binaries as the views pass 2 read them as. The writer takes a view for a string or
    // binary column (parquet's `types_compatible`; same pages, statistics and bytes) and copies
    // each kept value once, into its page, where a cast back to the column's own type first
    // copied the whole text once more (1.3 % of a write-heavy run's CPU).
    let reused_roots: Vec<usize> = job.reused.iter().map(|(root, _)| *root).collect();
    let payload_fields = readers.payload.schema().fields();
    let plain_schema = Schema::new(
        full.fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip_roots.contains(i))
            .map(|(i, f)| match payload_fields.get(i) {
                Some(p) if !reused_roots.contains(&i) && p.data_type() != f.data_type() => {
                    Arc::new(f.as_ref().clone().with_data_type(p.data_type().clone()))
                }
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let skip_leaves: Vec<usize> = job
        .raw_leaves
        .iter()
        .copied()
        .chain(spliced.iter().map(|s| s.leaf))
        .collect();
    let mut own = own_writers(readers, rg, &plain_schema, &skip_leaves, &skip_roots, props);
    // The policy columns pass 1 read as dictionaries that a label writer encodes are handed to
    // it as they are: it maps each dictionary value once, where a cast back to strings made it
    // look up every row's value.
    let descr = readers.pq.file_metadata().schema_descr();
    let labelled: Vec<usize> = (0..descr.num_columns())
        .filter(|leaf| matches!(own[*leaf], Some(OwnWriter::Labels(_))))
        .map(|leaf| descr.get_column_root_idx(leaf))
        .collect();
    let all_kept = kept as usize == keep.len();
    let keep_mask = BooleanArray::new(keep.clone(), None);
    let reused = reused_kept(job, decided, &keep_mask, all_kept, &labelled)?;
    // Label columns pass 2 reads as dictionaries (`FileJob::prepare`) that no label writer
    // takes in this row group go to the Arrow writer as views, as the other strings do.
    let schema: SchemaRef = Arc::new(Schema::new(
        plain_schema
            .fields()
            .iter()
            .zip(
                reused
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !skip_roots.contains(i)),
            )
            .map(|(f, (root, r))| match (r, f.data_type()) {
                (Some(c), _) if c.data_type() != f.data_type() => {
                    Arc::new(f.as_ref().clone().with_data_type(c.data_type().clone()))
                }
                (None, DataType::Dictionary(_, v)) if !labelled.contains(&root) => {
                    let view = match v.as_ref() {
                        DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                        _ => DataType::Utf8View,
                    };
                    Arc::new(f.as_ref().clone().with_data_type(view))
                }
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let payload_mask = match &job.payload_mask {
        Some(_) if !skip_roots.is_empty() => {
            let roots: Vec<usize> = (0..full.fields().len())
                .filter(|i| !reused_roots.contains(i) && !skip_roots.contains(i))
                .collect();
            let descr = readers.pq.file_metadata().schema_descr();
            (!roots.is_empty()).then(|| parquet::arrow::ProjectionMask::roots(descr, roots))
        }
        m => m.clone(),
    };
    // Reassemble batches: payload columns from the reader, the others sliced from the re-used
    // columns at the same kept-row offset.
    let mut out_offset = 0usize;
    let mut assemble = |payload: Option<RecordBatch>, n: usize| {
        if out_offset + n > kept as usize {
            return Err(format!("decoded more than the {kept} kept rows"));
        }
        let mut payload_cols = payload.iter().flat_map(|b| b.columns().iter().cloned());
        let cols: Vec<ArrayRef> = reused
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip_roots.contains(i))
            .map(|(_, r)| r)
            .zip(schema.fields())
            .map(|(r, field)| match r {
                Some(c) => Ok(c.slice(out_offset, n)),
                None => {
                    let c = payload_cols
                        .next()
                        .ok_or("the payload batch has fewer columns than the schema")?;
                    if c.data_type() == field.data_type() {
                        Ok(c)
                    } else {
                        crate::decide::cast_exact(c.as_ref(), field.data_type())
                    }
                }
            })
            .collect::<std::result::Result<_, String>>()?;
        out_offset += n;
        RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| e.to_string())
    };

    let batch_rows = payload_batch_rows(readers.pq.row_group(rg));
    let chunks = match &payload_mask {
        None => {
            // Every column was read in pass 1 (or is spliced).
            let kept = kept as usize;
            let batches = (0..kept)
                .step_by(batch_rows)
                .map(|start| assemble(None, batch_rows.min(kept - start)))
                .collect::<Vec<_>>();
            encode_batches_with(
                factory,
                full,
                &skip_leaves,
                &skip_roots,
                &mut own,
                batches.into_iter(),
            )?
            .0
        }
        Some(mask) => {
            let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
                source.clone(),
                readers.payload.clone(),
            )
            .with_projection(mask.clone())
            .with_row_groups(vec![rg])
            .with_batch_size(batch_rows);
            // A selection of long runs lets the reader skip whole pages; a scattered one costs
            // more in skipping than it saves, so then every row is decoded and the batch
            // filtered instead.
            let selection = RowSelection::from_filters(std::slice::from_ref(&keep_mask));
            let runs = selection.iter().count();
            let scattered = runs * 16 > keep.len();
            if !all_kept && !scattered {
                builder = builder.with_row_selection(selection);
            }
            let reader = builder.build()?;
            let mut offset = 0usize;
            let filtered = reader.map(|b| {
                let b = b.map_err(|e| e.to_string())?;
                let b = if scattered {
                    let mask = BooleanArray::new(keep.slice(offset, b.num_rows()), None);
                    offset += b.num_rows();
                    arrow_select::filter::filter_record_batch(&b, &mask)
                        .map_err(|e| e.to_string())?
                } else {
                    b
                };
                let n = b.num_rows();
                assemble(Some(b), n)
            });
            let (chunks, seen) =
                encode_batches_with(factory, full, &skip_leaves, &skip_roots, &mut own, filtered)?;
            if seen != kept {
                return Err(ReadError::Invalid(format!(
                    "decoded {seen} kept rows where {kept} were selected"
                )));
            }
            chunks
        }
    };
    let mut out = Vec::with_capacity(chunks.len());
    let mut spliced = spliced.into_iter().peekable();
    let mut own = own.into_iter();
    for (leaf, chunk) in chunks.into_iter().enumerate() {
        let own = own.next().flatten();
        out.push(if spliced.peek().is_some_and(|s| s.leaf == leaf) {
            OutChunk::Raw(spliced.next().expect("peeked").chunk)
        } else if let Some(w) = own {
            OutChunk::Raw(w.close().map_err(ReadError::Invalid)?)
        } else if job.raw_leaves.contains(&leaf) {
            OutChunk::Raw(copy_kept_int96(source, &readers.pq, rg, leaf, keep, props)?)
        } else {
            OutChunk::Arrow(
                chunk.ok_or_else(|| ReadError::Invalid(format!("column {leaf} has no writer")))?,
            )
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    use super::{encode_batches_with, LabelWriter, OwnWriter, WriterFactories};

    /// A flat root, a struct of two leaves, a string and an integer: leaves 0 to 4.
    fn batch() -> RecordBatch {
        let inner = Fields::from(vec![
            Field::new("x", DataType::Int32, true),
            Field::new("y", DataType::Utf8, true),
        ]);
        let s = StructArray::new(
            inner.clone(),
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
                Arc::new(StringArray::from(vec![
                    Some("p"),
                    Some("q"),
                    None,
                    Some("r"),
                ])),
            ],
            None,
        );
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Struct(inner), true),
            Field::new("t", DataType::Utf8, true),
            Field::new("u", DataType::Int32, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![10, 11, 12, 13])),
                Arc::new(s),
                Arc::new(StringArray::from(vec![
                    Some("uk"),
                    None,
                    Some("fr"),
                    Some("uk"),
                ])),
                Arc::new(Int32Array::from(vec![Some(7), Some(8), None, Some(9)])),
            ],
        )
        .unwrap()
    }

    fn props() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .build()
    }

    #[test]
    fn arrow_writers_are_made_only_for_the_roots_the_arrow_writer_writes() {
        let b = batch();
        let descr = ArrowSchemaConverter::new().convert(&b.schema()).unwrap();
        let props = props();
        let f = WriterFactories::new(&b.schema(), &props, &descr);
        assert_eq!(f.leaves(), &[0..1, 1..3, 3..4, 4..5]);
        // `t` taken by a label writer, `u` by the caller.
        let mut own: Vec<Option<OwnWriter>> = (0..5).map(|_| None).collect();
        own[3] = LabelWriter::new(descr.column(3), &DataType::Utf8, &props)
            .map(|w| OwnWriter::Labels(Box::new(w)));
        assert!(own[3].is_some());
        let (chunks, rows) = encode_batches_with(
            &f,
            &b.schema(),
            &[4],
            &[],
            &mut own,
            [Ok(b.clone())].into_iter(),
        )
        .unwrap();
        assert_eq!(rows, 4);
        let made: Vec<bool> = chunks.iter().map(Option::is_some).collect();
        assert_eq!(made, [true, true, true, false, false]);
        // No factory, so no column writer and no codec, for the roots nobody asked of it.
        assert_eq!(f.made(), [true, true, false, false]);
    }

    #[test]
    fn chunks_of_the_roots_factories_make_the_file_the_whole_schema_would() {
        let b = batch();
        let descr = ArrowSchemaConverter::new().convert(&b.schema()).unwrap();
        let f = WriterFactories::new(&b.schema(), &props(), &descr);
        let mut own: Vec<Option<OwnWriter>> = (0..5).map(|_| None).collect();
        let (chunks, _) = encode_batches_with(
            &f,
            &b.schema(),
            &[],
            &[],
            &mut own,
            [Ok(b.clone())].into_iter(),
        )
        .unwrap();
        // Appended to a row group of the whole schema: each chunk's column descriptor must
        // be the whole schema's, or the writer refuses it.
        let mut file = Vec::new();
        let options =
            parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_properties(props());
        let (mut w, _) = ArrowWriter::try_new_with_options(&mut file, b.schema(), options)
            .and_then(|w| w.into_serialized_writer())
            .unwrap();
        let mut group = w.next_row_group().unwrap();
        for c in chunks {
            c.expect("every leaf written")
                .append_to_row_group(&mut group)
                .unwrap();
        }
        group.close().unwrap();
        w.close().unwrap();
        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].columns(), b.columns());
    }
}
