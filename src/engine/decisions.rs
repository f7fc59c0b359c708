//! What a run decided for each row of an input, recorded in `OUT/_state/decisions/<rel>` so
//! that a later `--reuse` of OUT decides again only the rows of changed members: every other
//! row's rule and region (for the manifest and the counts) are read from here.
//!
//! Invariants:
//! - One [`Code`] per input row, in row order: the rule slot that decided it (16 bits; the
//!   policy's rule count means `default`), its region index (15 bits) and whether it had no
//!   snapshot member (1 bit). The codes of a row group, decoded, are a [`BatchDecision`] of it.
//! - Parquet, one non-null UInt32 column, one row group per non-empty input row group (in
//!   order), dictionary-encoded: an input holds a few dozen distinct codes, so a row costs a few
//!   bits. Recorded only by runs that join a snapshot or lists (only they have changed members).
//! - A reader trusts the file only when its size and SHA-256 are what `_state/files.json`
//!   records and every code it hands out names a rule of this policy and a known region; else
//!   the rows are decided afresh.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

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
    Arc::new(Schema::new(vec![Field::new(
        "code",
        DataType::UInt32,
        false,
    )]))
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
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::None)
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

    /// The codes of the next non-empty input row group, as one row group.
    pub fn append(&mut self, codes: &[Code]) -> Result<()> {
        if codes.is_empty() {
            return Ok(());
        }
        let array: ArrayRef = Arc::new(UInt32Array::from_iter_values(codes.iter().map(|c| c.0)));
        let batch = RecordBatch::try_new(schema(), vec![array]).expect("schema matches");
        self.writer
            .write(&batch)
            .and_then(|_| self.writer.flush())
            .map_err(|source| Error::Write {
                path: self.at.clone(),
                source,
            })
    }

    pub fn finish(self) -> Result<Written> {
        let out = self.writer.into_inner().map_err(|source| Error::Write {
            path: self.at.clone(),
            source,
        })?;
        out.finish()
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
                let (size, sha) = crate::io::sha256_of(&self.at).ok()?;
                if size != self.written.size || sha != self.written.sha256 {
                    return None;
                }
                crate::io::open_parquet(&self.at, self.read).ok()
            })
            .as_ref()
    }

    /// The codes of the file's row group `index` (the input's `index`-th non-empty one), which
    /// must hold `rows` rows; `None` when they cannot be had as recorded.
    pub(super) fn codes(&self, index: usize, rows: u64) -> Option<Vec<Code>> {
        let file = self.file()?;
        if index >= file.num_row_groups() {
            return None;
        }
        let pq = file.parquet_meta().clone();
        if pq.row_group(index).num_rows() as u64 != rows {
            return None;
        }
        let mut codes = Vec::with_capacity(rows as usize);
        let mut ok = true;
        file.read_row_group(&pq, index, None, rows as usize, None, &mut |b| {
            match b
                .columns()
                .first()
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            {
                Some(c) if c.null_count() == 0 && b.num_columns() == 1 => {
                    codes.extend(c.values().iter().map(|v| Code(*v)))
                }
                _ => ok = false,
            }
            Ok(())
        })
        .ok()?;
        (ok && codes.len() as u64 == rows).then_some(codes)
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
