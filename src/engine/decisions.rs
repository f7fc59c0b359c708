//! What a run decided for each row of an input, recorded in `OUT/_state/decisions/<rel>` so
//! that a later `--reuse` of OUT decides again only the rows of changed members: every other
//! row's rule and region (for the manifest and the counts) are read from here.
//!
//! Invariants:
//! - One [`Code`] per input row, in row order: the rule slot that decided it (16 bits; the
//!   policy's rule count means `default`), its region index (15 bits) and whether it had no
//!   snapshot member (1 bit). The codes of a row group, decoded, are a [`BatchDecision`] of it.
//! - Parquet, one row group per non-empty input row group (in order). Column `code`: the
//!   non-null UInt32 codes, dictionary-encoded (an input holds a few dozen distinct codes, so a
//!   row costs a few bits). Column `members`: null but on the row group's first row, which holds
//!   a [`MemberFilter`] of its rows' members (null when their ids could not be read). Recorded
//!   only by runs that join a snapshot or lists (only they have changed members).
//! - The member filter answers "may this row group hold one of these members?" with no false
//!   "no": a later `--reuse` reads the user ids only of the row groups it says "maybe" for.
//! - A reader trusts the file only when its size and checksum are what `_state/files.json`
//!   records and every code it hands out names a rule of this policy and a known region; else
//!   the rows are decided afresh.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt32Array};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::bloom_filter::Sbbf;

use crate::decide::BatchDecision;
use crate::error::{Error, Result};
use crate::io::{Location, OutputFile, ParquetFile, ReadOptions, Written};
use crate::policy::RuleId;
use crate::region::{Region, REGION_COUNT};

/// One row's decision, packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(u32);

impl Code {
    /// `rules`: the policy's rule count (the slot of `default`).
    fn of(rule: RuleId, rules: usize, region: Region, unmatched: bool) -> Code {
        let slot = if rule == RuleId::DEFAULT {
            rules
        } else {
            rule.0 as usize
        };
        Code((slot as u32) << 16 | (region.index() as u32) << 1 | unmatched as u32)
    }

    /// The rule, region and unmatched flag; `None` when the code names no rule of a policy of
    /// `rules` rules or no known region.
    fn parts(self, rules: usize) -> Option<(RuleId, Region, bool)> {
        let slot = (self.0 >> 16) as usize;
        let region = ((self.0 >> 1) & 0x7FFF) as usize;
        if slot > rules || region >= REGION_COUNT {
            return None;
        }
        let rule = if slot == rules {
            RuleId::DEFAULT
        } else {
            RuleId(slot as u16)
        };
        Some((rule, Region::from_index(region), self.0 & 1 == 1))
    }
}

// The packing holds every region index and rule id there is.
const _: () = assert!(REGION_COUNT <= 1 << 15);

/// The codes of a decided row group.
pub(super) fn codes_of(d: &BatchDecision, rules: usize) -> Vec<Code> {
    d.rule
        .iter()
        .zip(&d.region)
        .enumerate()
        .map(|(i, (r, g))| Code::of(*r, rules, *g, d.is_unmatched(i)))
        .collect()
}

/// The decision the codes say (`None`: a code of another policy or none at all).
pub(super) fn decision_of(codes: &[Code], rules: usize) -> Option<BatchDecision> {
    let mut rule = Vec::with_capacity(codes.len());
    let mut region = Vec::with_capacity(codes.len());
    let mut unmatched = 0u64;
    for c in codes {
        let (r, g, u) = c.parts(rules)?;
        rule.push(r);
        region.push(g);
        unmatched += u as u64;
    }
    let unmatched_rows =
        (unmatched > 0).then(|| BooleanBuffer::collect_bool(codes.len(), |i| codes[i].0 & 1 == 1));
    Some(BatchDecision {
        rule,
        region,
        unmatched,
        unmatched_rows,
    })
}

/// The rows the codes keep; `None` when one names no rule of `policy` or no known region.
pub(super) fn keep_mask(codes: &[Code], policy: &crate::policy::Policy) -> Option<BooleanBuffer> {
    let rules = policy.rules.len();
    let mut valid = true;
    let keep = BooleanBuffer::collect_bool(codes.len(), |i| match codes[i].parts(rules) {
        Some((r, _, _)) => policy.action_of(r) == crate::policy::Action::Include,
        None => {
            valid = false;
            false
        }
    });
    valid.then_some(keep)
}

/// `prev` with `rows` (ascending, within the row group) replaced by `now`'s decisions of them,
/// in that order.
pub(super) fn merge(prev: &[Code], rows: &[u32], now: &[Code]) -> Vec<Code> {
    let mut out = prev.to_vec();
    for (r, c) in rows.iter().zip(now) {
        out[*r as usize] = *c;
    }
    out
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::UInt32, false),
        Field::new("members", DataType::Binary, true),
    ]))
}

/// What is recorded of one input row group: each row's code, and its member filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    pub codes: Vec<Code>,
    /// A [`MemberFilter`]'s bytes; `None` when the row group's user ids could not be read.
    pub members: Option<Vec<u8>>,
}

/// The false-positive rate a member filter is built for: with ten changed members, about one
/// row group in ten of those that hold none is still read for its user ids.
const FILTER_FPP: f64 = 0.01;

/// The largest filter a reader accepts (Parquet's own limit for a split-block Bloom filter).
const FILTER_MAX_BYTES: usize = 128 * 1024 * 1024;

/// A split-block Bloom filter (Parquet's) of the key hashes ([`crate::join::digest::key_hash`])
/// of a row group's members: "no" is certain, "maybe" means read the user ids.
pub struct MemberFilter(Sbbf);

impl MemberFilter {
    /// The filter of a user-id column (`None`: not a key column); sized for its rows, then
    /// folded to the size its distinct members need. The same ids give the same bytes.
    pub(super) fn build(ids: &dyn Array) -> Option<Vec<u8>> {
        let rows = ids.len().max(1) as u64;
        let mut f = Sbbf::new_with_ndv_fpp(rows, FILTER_FPP).ok()?;
        // Hashed as little-endian bytes whatever the machine (a u64's own bytes are native):
        // a filter written on one machine answers alike on another.
        crate::join::digest::for_each_key_hash(ids, |_, h| f.insert(&h.to_le_bytes()[..])).ok()?;
        f.fold_to_target_fpp(FILTER_FPP);
        let mut bytes = Vec::with_capacity(f.num_blocks() * 32);
        f.write_bitset(&mut bytes).ok()?;
        Some(bytes)
    }

    /// The filter of `bytes`, when they can be one (whole 32-byte blocks, a power of two of
    /// them, as [`MemberFilter::build`] makes).
    pub fn of(bytes: &[u8]) -> Option<MemberFilter> {
        let ok =
            bytes.len() >= 32 && bytes.len() <= FILTER_MAX_BYTES && bytes.len().is_power_of_two();
        ok.then(|| MemberFilter(Sbbf::new(bytes)))
    }

    /// Whether a member of one of these key hashes may be in the row group.
    pub fn may_hold_any(&self, hashes: &[u64]) -> bool {
        hashes.iter().any(|h| self.0.check(&h.to_le_bytes()[..]))
    }
}

/// An input's decisions being written, row group by row group.
pub(super) struct DecisionsWriter {
    at: Location,
    writer: ArrowWriter<OutputFile>,
}

impl DecisionsWriter {
    pub fn create(at: Location) -> Result<DecisionsWriter> {
        use parquet::basic::{Compression, ZstdLevel};
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        use parquet::schema::types::ColumnPath;
        let members = ColumnPath::from("members");
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::None)
            // A filter's bits neither repeat nor compress.
            .set_column_dictionary_enabled(members.clone(), false)
            .set_column_compression(members, Compression::UNCOMPRESSED)
            // Row groups end where the input's do (`append`), however long.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            .build();
        let out = OutputFile::create(&at)?;
        let writer =
            ArrowWriter::try_new(out, schema(), Some(props)).map_err(|source| Error::Write {
                path: at.clone(),
                source,
            })?;
        Ok(DecisionsWriter { at, writer })
    }

    /// The record of the next non-empty input row group, as one row group.
    pub fn append(&mut self, r: &Recorded) -> Result<()> {
        if r.codes.is_empty() {
            return Ok(());
        }
        let n = r.codes.len();
        let codes: Vec<u32> = r.codes.iter().map(|c| c.0).collect();
        let codes: ArrayRef = Arc::new(UInt32Array::from(codes));
        // Null but on the first row: its buffers made whole, not value by value (a row group's
        // forty thousand nulls pushed one at a time were ~5 % of a `--reuse` night's writing).
        let filter = r.members.as_deref().unwrap_or_default();
        let end = i32::try_from(filter.len()).map_err(|_| Error::Write {
            path: self.at.clone(),
            source: parquet::errors::ParquetError::General(format!(
                "a member filter of {} bytes is too large to record",
                filter.len()
            )),
        })?;
        let mut offsets = vec![end; n + 1];
        offsets[0] = 0;
        let valid = NullBuffer::from(BooleanBuffer::collect_bool(n, |i| {
            i == 0 && r.members.is_some()
        }));
        let members: ArrayRef = Arc::new(BinaryArray::new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(filter.to_vec()),
            Some(valid),
        ));
        let batch = RecordBatch::try_new(schema(), vec![codes, members]).expect("schema matches");
        self.writer
            .write(&batch)
            .and_then(|_| self.writer.flush())
            .map_err(|source| Error::Write {
                path: self.at.clone(),
                source,
            })
    }

    /// The file complete, to be synced and moved to its name ([`crate::io::Unsynced::place`]).
    pub fn finish(self) -> Result<crate::io::Unsynced> {
        let out = self.writer.into_inner().map_err(|source| Error::Write {
            path: self.at.clone(),
            source,
        })?;
        out.finish_unsynced()
    }
}

/// PREV_OUT's decisions of one input, opened on first use.
pub struct PreviousDecisions {
    at: Location,
    /// As `_state/` recorded it: a file that is not is not read.
    written: Written,
    read: ReadOptions,
    file: OnceLock<Option<ParquetFile>>,
}

impl PreviousDecisions {
    pub fn new(at: Location, written: Written, read: ReadOptions) -> PreviousDecisions {
        PreviousDecisions {
            at,
            written,
            read,
            file: OnceLock::new(),
        }
    }

    fn file(&self) -> Option<&ParquetFile> {
        self.file
            .get_or_init(|| {
                if !self.written.holds(&self.at) {
                    return None;
                }
                crate::io::open_parquet(&self.at, self.read).ok()
            })
            .as_ref()
    }

    /// The record of the file's row group `index` (the input's `index`-th non-empty one), which
    /// must hold `rows` rows; `None` when it cannot be had as recorded.
    pub(super) fn record(&self, index: usize, rows: u64) -> Option<Recorded> {
        let mut codes = Vec::with_capacity(rows as usize);
        let mut members = None;
        let mut ok = true;
        self.read(index, rows, &["code", "members"], None, &mut |b| {
            let c = b.column(0).as_primitive_opt::<UInt32Type>();
            let m = b.column(1).as_binary_opt::<i32>();
            match (c, m) {
                (Some(c), Some(m)) if c.null_count() == 0 && !m.is_empty() => {
                    // A filter on the row group's first row, and nothing else.
                    let at_start = codes.is_empty() && m.is_valid(0);
                    ok &= m.len() - m.null_count() == usize::from(at_start);
                    if at_start {
                        members = Some(m.value(0).to_vec());
                    }
                    codes.extend(c.values().iter().map(|v| Code(*v)));
                }
                _ => ok = false,
            }
        })?;
        (ok && codes.len() as u64 == rows).then_some(Recorded { codes, members })
    }

    /// The member filter of the file's row group `index` (of `rows` rows); `None` when there
    /// is none to be had (then any member may be there).
    pub fn member_filter(&self, index: usize, rows: u64) -> Option<MemberFilter> {
        let mut filter = None;
        let mut first = true;
        // The filter is on the first row: the others (nulls) are skipped, not decoded (for
        // every file of a night, each a row group's worth of them).
        let first_row = parquet::arrow::arrow_reader::RowSelection::from(vec![
            parquet::arrow::arrow_reader::RowSelector::select(1),
            parquet::arrow::arrow_reader::RowSelector::skip(rows.saturating_sub(1) as usize),
        ]);
        self.read(index, rows, &["members"], Some(first_row), &mut |b| {
            let m = b.column(0).as_binary_opt::<i32>();
            if let Some(m) = m.filter(|m| first && !m.is_empty() && m.is_valid(0)) {
                filter = MemberFilter::of(m.value(0));
            }
            first = false;
        })?;
        filter
    }

    /// Call `f` on the batches of `columns` of row group `index`, which must hold `rows` rows
    /// (of those `select` picks, when given).
    fn read(
        &self,
        index: usize,
        rows: u64,
        columns: &[&str],
        select: Option<parquet::arrow::arrow_reader::RowSelection>,
        f: &mut dyn FnMut(&RecordBatch),
    ) -> Option<()> {
        let file = self.file()?;
        if index >= file.num_row_groups() {
            return None;
        }
        let pq = file.parquet_meta().clone();
        if pq.row_group(index).num_rows() as u64 != rows {
            return None;
        }
        let mut ok = true;
        file.read_row_group(&pq, index, Some(columns), rows as usize, select, &mut |b| {
            if b.num_columns() == columns.len() {
                f(&b);
            } else {
                ok = false;
            }
            Ok(())
        })
        .ok()?;
        ok.then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_says_the_rule_region_and_match_it_was_made_of() {
        let rules = 7;
        for (rule, region, unmatched) in [
            (RuleId(0), Region::UNKNOWN, false),
            (RuleId(6), Region::from_index(REGION_COUNT - 1), true),
            (RuleId::DEFAULT, Region::from_index(3), true),
            (RuleId::DEFAULT, Region::UNKNOWN, false),
        ] {
            let c = Code::of(rule, rules, region, unmatched);
            assert_eq!(c.parts(rules), Some((rule, region, unmatched)));
        }
        // A rule this policy lacks, or a region no table has, is not a decision.
        assert_eq!(Code((rules as u32 + 1) << 16).parts(rules), None);
        assert_eq!(Code((REGION_COUNT as u32) << 1).parts(rules), None);
    }

    #[test]
    fn a_member_filter_says_maybe_for_every_member_and_no_for_most_others() {
        use crate::join::digest::key_hash;
        use crate::join::KeyRef;
        let ids = arrow_array::Int64Array::from_iter((0..5000).map(|i| (i % 7 != 0).then_some(i)));
        let bytes = MemberFilter::build(&ids).unwrap();
        // The same ids, the same bytes (outputs must not depend on the run).
        assert_eq!(MemberFilter::build(&ids), Some(bytes.clone()));
        let f = MemberFilter::of(&bytes).unwrap();
        let hash = |v: i64| key_hash(KeyRef::Int(v as i128));
        assert!((0..5000)
            .filter(|i| i % 7 != 0)
            .all(|i| f.may_hold_any(&[hash(i)])));
        let others = (5000..105_000)
            .filter(|i| f.may_hold_any(&[hash(*i)]))
            .count();
        assert!(others < 3000, "{others} of 100,000 non-members said maybe");
        assert!(!f.may_hold_any(&[]));
        // Bytes that cannot be a filter are none: any member may then be there.
        assert!(MemberFilter::of(&bytes[..48]).is_none());
        assert!(MemberFilter::of(&[]).is_none());
    }

    #[test]
    fn decisions_round_trip_and_merge_replaces_only_the_rows_named() {
        let d = BatchDecision {
            rule: vec![RuleId(1), RuleId::DEFAULT, RuleId(0)],
            region: vec![
                Region::from_index(5),
                Region::UNKNOWN,
                Region::from_index(9),
            ],
            unmatched: 1,
            unmatched_rows: Some(BooleanBuffer::from(vec![false, true, false])),
        };
        let codes = codes_of(&d, 2);
        let back = decision_of(&codes, 2).unwrap();
        assert_eq!(back.rule, d.rule);
        assert_eq!(back.region, d.region);
        assert_eq!(back.unmatched, 1);
        assert!(back.is_unmatched(1) && !back.is_unmatched(0));
        let now = [Code::of(RuleId(1), 2, Region::from_index(7), false)];
        let merged = merge(&codes, &[2], &now);
        assert_eq!(&merged[..2], &codes[..2]);
        assert_eq!(merged[2], now[0]);
    }
}
