//! The compiled decider: the policy bound to one file's schema, deciding batches of rows.
//!
//! [`FileDecider::new`] checks that a file fits the policy (columns present, types usable, every
//! `where` literal comparable, the user id joinable with the snapshot and lists) and turns
//! literals into typed Arrow scalars; an unfit file is an [`Error::Schema`].
//! [`FileDecider::decide`] then maps a batch of the policy's corpus columns to one [`RuleId`] per
//! row, joining the consent snapshot and user lists by user id where the policy asks for them.
//! Region and consent are normalised once per dictionary value where the column is
//! dictionary-encoded, and a policy with only region and consent conditions is precomputed into a
//! table indexed by (region, consent), so deciding a row is a lookup.

use std::sync::Arc;

use arrow_array::*;
use arrow_buffer::BooleanBuffer;
use arrow_schema::DataType;

use crate::error::{Error, Result};
use crate::join::{gather, lookup, lookup_indexed, JoinData, KeyKind};
use crate::policy::{
    CompareOp, Condition, ConsentState, Operand, Policy, PredicateOp, RuleId, Scalar,
};
use crate::region::{Region, RegionSet, REGION_COUNT};
use crate::values::{consents, is_string_type, regions, value_type, ConsentMatcher};

/// The decision for each row of a batch.
#[derive(Debug, Default)]
pub struct BatchDecision {
    pub rule: Vec<RuleId>,
    pub region: Vec<Region>,
    /// Rows whose user id is null or absent from the consent snapshot.
    pub unmatched: u64,
    /// Which rows those are (`None`: no snapshot joined, so none).
    pub unmatched_rows: Option<BooleanBuffer>,
}

impl BatchDecision {
    /// Whether row `i` is one of the `unmatched`.
    pub fn is_unmatched(&self, i: usize) -> bool {
        self.unmatched_rows.as_ref().is_some_and(|b| b.value(i))
    }
}

enum PredKind {
    Compare(CompareOp, Arc<dyn Array>),
    /// Compare with another column, cast to `cast` first when the types differ.
    CompareColumn(CompareOp, String, Option<DataType>),
    In(Vec<Arc<dyn Array>>),
    NotIn(Vec<Arc<dyn Array>>),
    IsNull(bool),
}

struct CompiledPredicate {
    column: String,
    /// Cast the left column to this type first (column-to-column comparisons of unlike types).
    cast: Option<DataType>,
    kind: PredKind,
}

enum CompiledCondition {
    Region(RegionSet),
    Consent([bool; 3]),
    Where(Vec<CompiledPredicate>),
    UserIn(Vec<usize>),
}

struct CompiledRule {
    when: Vec<CompiledCondition>,
    unless: Vec<CompiledCondition>,
}

/// Where the region or consent of a row comes from.
enum Source {
    Corpus(String),
    Snapshot,
    Absent,
}

/// The policy bound to one file's schema.
pub struct FileDecider {
    region: Source,
    consent: Source,
    consent_matcher: Option<ConsentMatcher>,
    user_column: Option<String>,
    join: Option<Arc<JoinData>>,
    /// Snapshot extras the predicates read.
    extras_used: Vec<String>,
    rules: Vec<CompiledRule>,
    /// When every condition is on region or consent: the rule for each (region, consent) pair.
    table: Option<Vec<RuleId>>,
}

impl FileDecider {
    pub fn decide(&self, batch: &RecordBatch) -> std::result::Result<BatchDecision, String> {
        let ctx = self.context(batch)?;
        let n = ctx.n;
        if let Some(t) = &self.table {
            let rule = ctx
                .region
                .iter()
                .zip(&ctx.consent)
                .map(|(r, c)| t[r.index() * 3 + *c as usize])
                .collect();
            let unmatched_rows = ctx.unmatched_rows();
            return Ok(BatchDecision {
                rule,
                region: ctx.region,
                unmatched: ctx.unmatched,
                unmatched_rows,
            });
        }
        let mut rule = vec![RuleId::DEFAULT; n];
        let mut undecided = BooleanBuffer::new_set(n);
        for (ri, r) in self.rules.iter().enumerate() {
            let mut m = ctx.all(&r.when)?;
            if !r.unless.is_empty() {
                m = &m & &!&ctx.all(&r.unless)?;
            }
            let hit = &m & &undecided;
            for i in hit.set_indices() {
                rule[i] = RuleId(ri as u16);
            }
            undecided = &undecided & &!&m;
            if undecided.count_set_bits() == 0 {
                break;
            }
        }
        let unmatched_rows = ctx.unmatched_rows();
        Ok(BatchDecision {
            rule,
            region: ctx.region,
            unmatched: ctx.unmatched,
            unmatched_rows,
        })
    }

    /// For row 0 of `batch`: every condition of every rule, true or false (for `where`, each
    /// predicate too), with the normalised region and consent the conditions saw.
    pub fn trace(&self, batch: &RecordBatch) -> std::result::Result<Trace, String> {
        let ctx = self.context(batch)?;
        let eval = |conds: &[CompiledCondition]| -> std::result::Result<Vec<CondTrace>, String> {
            conds
                .iter()
                .map(|c| {
                    let parts = match c {
                        CompiledCondition::Where(preds) => preds
                            .iter()
                            .map(|p| ctx.predicate(p).map(|m| m.value(0)))
                            .collect::<std::result::Result<_, _>>()?,
                        _ => Vec::new(),
                    };
                    Ok(CondTrace {
                        holds: ctx.condition(c)?.value(0),
                        parts,
                    })
                })
                .collect()
        };
        let mut rules = Vec::new();
        for r in &self.rules {
            rules.push((eval(&r.when)?, eval(&r.unless)?));
        }
        Ok(Trace {
            region: ctx.region[0],
            consent: ctx.consent[0],
            matched_member: ctx.member.as_ref().map(|m| m[0] != u32::MAX),
            rules,
        })
    }

    /// Everything the conditions read for one batch: joined, normalised, ready to test.
    fn context<'a>(&'a self, batch: &'a RecordBatch) -> std::result::Result<BatchCtx<'a>, String> {
        let n = batch.num_rows();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| format!("column '{name}' missing from the decision batch"))
        };
        let table = self.join.as_ref().and_then(|j| j.table.as_ref());

        // Join: the snapshot member of each row (u32::MAX when none).
        let user = match &self.user_column {
            Some(c) => Some(col(c)?),
            None => None,
        };
        let member: Option<Vec<u32>> = match (table, &user) {
            (Some(t), Some(u)) => Some(lookup_indexed(&t.keys, t.dense.as_ref(), u.as_ref())?),
            _ => None,
        };
        let unmatched = member
            .as_ref()
            .map_or(0, |m| m.iter().filter(|i| **i == u32::MAX).count() as u64);

        let region: Vec<Region> = match (&self.region, table, &member) {
            (Source::Corpus(c), _, _) => regions(col(c)?.as_ref())?,
            (Source::Snapshot, Some(t), Some(m)) => match &t.region {
                Some(r) => gather(r, m, Region::UNKNOWN),
                None => vec![Region::UNKNOWN; n],
            },
            _ => vec![Region::UNKNOWN; n],
        };
        let unknown = ConsentState::Unknown as u8;
        let consent: Vec<u8> = match (&self.consent, &self.consent_matcher, table, &member) {
            (Source::Corpus(c), Some(m), _, _) => consents(col(c)?.as_ref(), m)?,
            (Source::Snapshot, _, Some(t), Some(m)) => match &t.consent {
                Some(cs) => gather(cs, m, unknown),
                None => vec![unknown; n],
            },
            _ => vec![unknown; n],
        };

        // Snapshot extras for this batch: null where the row has no member.
        let mut extras: Vec<(&str, ArrayRef)> = Vec::new();
        if !self.extras_used.is_empty() {
            let idx = match &member {
                Some(m) => UInt32Array::from_iter(m.iter().map(|i| (*i != u32::MAX).then_some(*i))),
                None => UInt32Array::from(vec![None; n]),
            };
            for name in &self.extras_used {
                let a = table
                    .and_then(|t| t.extra(name))
                    .ok_or_else(|| format!("snapshot has no column '{name}'"))?;
                let taken =
                    arrow_select::take::take(a.as_ref(), &idx, None).map_err(|e| e.to_string())?;
                extras.push((name.as_str(), taken));
            }
        }
        let lists: Vec<BooleanBuffer> = match (&self.join, &user) {
            (Some(j), Some(u)) => j
                .lists
                .iter()
                .map(|l| {
                    lookup(&l.keys, u.as_ref())
                        .map(|hits| BooleanBuffer::collect_bool(n, |i| hits[i] != u32::MAX))
                })
                .collect::<std::result::Result<_, _>>()?,
            _ => Vec::new(),
        };
        Ok(BatchCtx {
            n,
            batch,
            region,
            consent,
            member,
            unmatched,
            extras,
            lists,
        })
    }
}

/// One condition's result on a traced row; `parts` are a `where`'s predicates.
#[derive(Debug, Clone)]
pub struct CondTrace {
    pub holds: bool,
    pub parts: Vec<bool>,
}

/// A traced row: what each rule's `if` and `unless` conditions made of it.
#[derive(Debug, Clone)]
pub struct Trace {
    pub region: Region,
    pub consent: u8,
    /// `Some(false)` when the row's user is missing from the consent snapshot.
    pub matched_member: Option<bool>,
    pub rules: Vec<(Vec<CondTrace>, Vec<CondTrace>)>,
}

mod bind;
mod eval;
mod literal;

pub use bind::member_rule_table;
use eval::BatchCtx;
pub use literal::cast_exact;

#[cfg(test)]
mod tests;
