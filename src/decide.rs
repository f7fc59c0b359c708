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
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::error::{Error, Result};
use crate::join::{lookup, JoinData, KeyKind};
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

/// Cast without losing anything: a value that does not convert (an integer out of range, bytes
/// that are not UTF-8) is an error. arrow's default turns it into a null, which a condition
/// would read as "unknown" and a later rule could then let through.
pub fn cast_exact(a: &dyn Array, to: &DataType) -> std::result::Result<ArrayRef, String> {
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(a, to, &options).map_err(|e| e.to_string())
}

/// Two column types a comparison can bring to one: equal, or a common type to cast both to.
fn common_type(l: &DataType, r: &DataType) -> std::result::Result<Option<DataType>, String> {
    let (l, r) = (value_type(l), value_type(r));
    if l == r {
        return Ok(None);
    }
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
    };
    let zone = |t: &DataType| match t {
        DataType::Timestamp(_, tz) => tz.is_some(),
        _ => false,
    };
    if temporal(l) && temporal(r) {
        let (lz, rz) = (zone(l), zone(r));
        let dates = |t: &DataType| matches!(t, DataType::Date32 | DataType::Date64);
        if lz != rz && !(dates(l) || dates(r)) {
            return Err(format!(
                "cannot compare {l} with {r}: one has a time zone and the other does not"
            ));
        }
        let tz = if lz || rz { Some("UTC".into()) } else { None };
        return Ok(Some(DataType::Timestamp(TimeUnit::Microsecond, tz)));
    }
    if l.is_integer() && r.is_integer() {
        return Ok(Some(DataType::Int64));
    }
    if l.is_numeric() && r.is_numeric() {
        return Ok(Some(DataType::Float64));
    }
    if is_string_type(l) && is_string_type(r) {
        return Ok(Some(DataType::Utf8));
    }
    Err(format!(
        "cannot compare a column of type {l} with one of type {r}"
    ))
}

impl FileDecider {
    /// Bind `policy` to a file with `schema`; `file` only names the file in errors.
    pub fn new(
        policy: &Policy,
        schema: &Schema,
        file: &crate::io::Location,
        join: Option<&Arc<JoinData>>,
    ) -> Result<FileDecider> {
        let schema_err = |column: &str, message: String| Error::Schema {
            file: file.clone(),
            column: column.to_owned(),
            message,
        };
        let field = |name: &str, role: &str| {
            schema.field_with_name(name).map_err(|_| {
                schema_err(
                    name,
                    format!(
                        "missing; the policy maps it as columns.{role} (columns present: {})",
                        {
                            let names: Vec<&str> =
                                schema.fields().iter().map(|f| f.name().as_str()).collect();
                            names.join(", ")
                        }
                    ),
                )
            })
        };
        let table = join.and_then(|j| j.table.as_ref());

        let region = match policy.corpus_region() {
            Some(col) => {
                let f = field(col, "region")?;
                if !is_string_type(value_type(f.data_type())) {
                    return Err(schema_err(
                        col,
                        format!(
                            "has type {}; a region column must hold strings",
                            f.data_type()
                        ),
                    ));
                }
                Source::Corpus(col.to_owned())
            }
            None if table.is_some() => Source::Snapshot,
            None => Source::Absent,
        };
        for (col, role) in [
            (&policy.columns.record_id, "record_id"),
            (&policy.columns.user_id, "user_id"),
        ] {
            if let Some(c) = col {
                let f = field(c, role)?;
                if f.data_type().is_nested() {
                    return Err(schema_err(
                        c,
                        format!("has nested type {}; ids must be scalars", f.data_type()),
                    ));
                }
            }
        }

        let user_column = if policy.needs_user_id() {
            let c = policy.columns.user_id.as_deref().expect("validated policy");
            let f = field(c, "user_id")?;
            let kind = KeyKind::of(f.data_type());
            let want = join.and_then(|j| j.kind());
            match (kind, want) {
                (None, _) => {
                    return Err(schema_err(
                        c,
                        format!(
                            "has type {}; a user id must be an integer, string or binary",
                            f.data_type()
                        ),
                    ))
                }
                (Some(k), Some(w)) if k != w => {
                    return Err(schema_err(
                        c,
                        format!(
                            "holds {} ids, but the consent snapshot and user lists hold {} keys",
                            k.as_str(),
                            w.as_str()
                        ),
                    ))
                }
                _ => {}
            }
            Some(c.to_owned())
        } else {
            None
        };

        let (consent, consent_matcher) = match (policy.corpus_consent(), &policy.consent_values) {
            (Some(col), Some(values)) => {
                let f = field(col, "consent")?;
                let m = ConsentMatcher::for_type(values, f.data_type())
                    .map_err(|m| schema_err(col, m))?;
                (Source::Corpus(col.to_owned()), Some(m))
            }
            _ if table.is_some_and(|t| t.consent.is_some()) => (Source::Snapshot, None),
            _ => (Source::Absent, None),
        };

        // The type of a column a predicate reads: the snapshot's extra, else the corpus column.
        let column_type = |name: &str, pos_line: usize| -> Result<DataType> {
            if policy.from_snapshot(name) {
                if let Some(a) = table.and_then(|t| t.extra(name)) {
                    return Ok(a.data_type().clone());
                }
            }
            let f = schema.field_with_name(name).map_err(|_| {
                schema_err(
                    name,
                    format!("missing; the policy's where predicate on line {pos_line} reads it"),
                )
            })?;
            if f.data_type().is_nested() {
                return Err(schema_err(
                    name,
                    format!(
                        "has nested type {}; where predicates read scalar columns",
                        f.data_type()
                    ),
                ));
            }
            Ok(f.data_type().clone())
        };
        let mut extras_used: Vec<String> = Vec::new();
        let mut note_extra = |name: &str| {
            if policy.from_snapshot(name) && !extras_used.iter().any(|e| e == name) {
                extras_used.push(name.to_owned());
            }
        };

        let mut compile_conds = |conds: &[Condition]| -> Result<Vec<CompiledCondition>> {
            let mut out = Vec::new();
            for c in conds {
                out.push(match c {
                    Condition::Region { set, .. } => CompiledCondition::Region(*set),
                    Condition::Consent(set) => CompiledCondition::Consent(set.0),
                    Condition::UserIn(lists) => CompiledCondition::UserIn(lists.clone()),
                    Condition::Where(preds) => {
                        let mut cp = Vec::new();
                        for p in preds {
                            let dt = column_type(&p.column, p.pos.line)?;
                            note_extra(&p.column);
                            let at = |m: String| {
                                schema_err(
                                    &p.column,
                                    format!(
                                        "{m} (policy line {}, column {})",
                                        p.pos.line, p.pos.column
                                    ),
                                )
                            };
                            let lit = |v: &Scalar| literal(v, &dt).map_err(at);
                            let mut cast = None;
                            let kind = match &p.op {
                                PredicateOp::Compare(op, Operand::Literal(v)) => {
                                    if matches!(
                                        op,
                                        CompareOp::Lt
                                            | CompareOp::Le
                                            | CompareOp::Gt
                                            | CompareOp::Ge
                                    ) && value_type(&dt) == &DataType::Boolean
                                    {
                                        return Err(schema_err(
                                            &p.column,
                                            format!(
                                                "is boolean and cannot be ordered (policy line {})",
                                                p.pos.line
                                            ),
                                        ));
                                    }
                                    PredKind::Compare(*op, lit(v)?)
                                }
                                PredicateOp::Compare(op, Operand::Column(other)) => {
                                    let rt = column_type(other, p.pos.line)?;
                                    note_extra(other);
                                    cast = common_type(&dt, &rt).map_err(at)?;
                                    PredKind::CompareColumn(*op, other.clone(), cast.clone())
                                }
                                PredicateOp::In(vs) => {
                                    PredKind::In(vs.iter().map(lit).collect::<Result<_>>()?)
                                }
                                PredicateOp::NotIn(vs) => {
                                    PredKind::NotIn(vs.iter().map(lit).collect::<Result<_>>()?)
                                }
                                PredicateOp::IsNull(b) => PredKind::IsNull(*b),
                            };
                            cp.push(CompiledPredicate {
                                column: p.column.clone(),
                                cast,
                                kind,
                            });
                        }
                        CompiledCondition::Where(cp)
                    }
                });
            }
            Ok(out)
        };

        let mut rules = Vec::with_capacity(policy.rules.len());
        for r in &policy.rules {
            rules.push(CompiledRule {
                when: compile_conds(&r.when)?,
                unless: compile_conds(&r.unless)?,
            });
        }

        let simple = rules.iter().all(|r| {
            r.when.iter().chain(&r.unless).all(|c| {
                matches!(
                    c,
                    CompiledCondition::Region(_) | CompiledCondition::Consent(_)
                )
            })
        });
        let table_rules = simple.then(|| {
            let mut t = vec![RuleId::DEFAULT; REGION_COUNT * 3];
            for ri in 0..REGION_COUNT {
                for cs in 0..3u8 {
                    let region = Region::from_index(ri);
                    let hit = rules.iter().position(|r| {
                        let holds = |c: &CompiledCondition| match c {
                            CompiledCondition::Region(set) => set.contains(region),
                            CompiledCondition::Consent(set) => set[cs as usize],
                            _ => unreachable!("only region and consent conditions"),
                        };
                        r.when.iter().all(holds)
                            && (r.unless.is_empty() || !r.unless.iter().all(holds))
                    });
                    t[ri * 3 + cs as usize] =
                        hit.map(|i| RuleId(i as u16)).unwrap_or(RuleId::DEFAULT);
                }
            }
            t
        });

        Ok(FileDecider {
            region,
            consent,
            consent_matcher,
            user_column,
            join: join.cloned(),
            extras_used,
            rules,
            table: table_rules,
        })
    }

    /// Decide every row of `batch`, which holds (at least) the policy's corpus columns.
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
            return Ok(BatchDecision {
                rule,
                region: ctx.region,
                unmatched: ctx.unmatched,
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
        Ok(BatchDecision {
            rule,
            region: ctx.region,
            unmatched: ctx.unmatched,
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
            (Some(t), Some(u)) => Some(lookup(&t.keys, u.as_ref())?),
            _ => None,
        };
        let unmatched = member
            .as_ref()
            .map_or(0, |m| m.iter().filter(|i| **i == u32::MAX).count() as u64);

        let region: Vec<Region> = match (&self.region, table, &member) {
            (Source::Corpus(c), _, _) => regions(col(c)?.as_ref())?,
            (Source::Snapshot, Some(t), Some(m)) => match &t.region {
                Some(r) => m
                    .iter()
                    .map(|i| r.get(*i as usize).copied().unwrap_or(Region::UNKNOWN))
                    .collect(),
                None => vec![Region::UNKNOWN; n],
            },
            _ => vec![Region::UNKNOWN; n],
        };
        let unknown = ConsentState::Unknown as u8;
        let consent: Vec<u8> = match (&self.consent, &self.consent_matcher, table, &member) {
            (Source::Corpus(c), Some(m), _, _) => consents(col(c)?.as_ref(), m)?,
            (Source::Snapshot, _, Some(t), Some(m)) => match &t.consent {
                Some(cs) => m
                    .iter()
                    .map(|i| cs.get(*i as usize).copied().unwrap_or(unknown))
                    .collect(),
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

struct BatchCtx<'a> {
    n: usize,
    batch: &'a RecordBatch,
    region: Vec<Region>,
    consent: Vec<u8>,
    member: Option<Vec<u32>>,
    unmatched: u64,
    extras: Vec<(&'a str, ArrayRef)>,
    lists: Vec<BooleanBuffer>,
}

impl BatchCtx<'_> {
    fn value(&self, name: &str) -> std::result::Result<ArrayRef, String> {
        if let Some((_, a)) = self.extras.iter().find(|(e, _)| *e == name) {
            return Ok(a.clone());
        }
        self.batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| format!("column '{name}' missing from the decision batch"))
    }

    fn predicate(&self, p: &CompiledPredicate) -> std::result::Result<BooleanBuffer, String> {
        let mut left = self.value(&p.column)?;
        if let Some(t) = &p.cast {
            left = cast_exact(&left, t)?;
        }
        let right = match &p.kind {
            PredKind::CompareColumn(_, other, cast) => {
                let mut r = self.value(other)?;
                if let Some(t) = cast {
                    r = cast_exact(&r, t)?;
                }
                Some(r)
            }
            _ => None,
        };
        predicate_mask(left.as_ref(), &p.kind, right.as_deref())
    }

    fn condition(&self, c: &CompiledCondition) -> std::result::Result<BooleanBuffer, String> {
        let n = self.n;
        Ok(match c {
            CompiledCondition::Region(set) => {
                BooleanBuffer::collect_bool(n, |i| set.contains(self.region[i]))
            }
            CompiledCondition::Consent(set) => {
                BooleanBuffer::collect_bool(n, |i| set[self.consent[i] as usize])
            }
            CompiledCondition::UserIn(which) => {
                let mut m = BooleanBuffer::new_unset(n);
                for l in which {
                    if let Some(b) = self.lists.get(*l) {
                        m = &m | b;
                    }
                }
                m
            }
            CompiledCondition::Where(preds) => {
                let mut m = BooleanBuffer::new_set(n);
                for p in preds {
                    m = &m & &self.predicate(p)?;
                }
                m
            }
        })
    }

    /// Rows where every condition holds.
    fn all(&self, conds: &[CompiledCondition]) -> std::result::Result<BooleanBuffer, String> {
        let mut acc = BooleanBuffer::new_set(self.n);
        for c in conds {
            acc = &acc & &self.condition(c)?;
        }
        Ok(acc)
    }
}

/// True where the comparison holds; a null (or any row where it can't be decided) is false.
fn true_bits(r: &BooleanArray) -> BooleanBuffer {
    match r.nulls() {
        Some(n) => r.values() & n.inner(),
        None => r.values().clone(),
    }
}

fn compare(
    op: CompareOp,
    l: &dyn Datum,
    r: &dyn Datum,
) -> std::result::Result<BooleanBuffer, String> {
    use arrow_ord::cmp;
    let res = match op {
        CompareOp::Eq => cmp::eq(l, r),
        CompareOp::Ne => cmp::neq(l, r),
        CompareOp::Lt => cmp::lt(l, r),
        CompareOp::Le => cmp::lt_eq(l, r),
        CompareOp::Gt => cmp::gt(l, r),
        CompareOp::Ge => cmp::gt_eq(l, r),
    }
    .map_err(|e| e.to_string())?;
    Ok(true_bits(&res))
}

/// Rows where the predicate holds; `right` is the other column of a column comparison.
fn predicate_mask(
    array: &dyn Array,
    kind: &PredKind,
    right: Option<&dyn Array>,
) -> std::result::Result<BooleanBuffer, String> {
    let n = array.len();
    let cmp_one = |op: CompareOp, lit: &Arc<dyn Array>| {
        compare(op, &array, &arrow_array::Scalar::new(lit.clone()))
    };
    match kind {
        PredKind::Compare(op, lit) => cmp_one(*op, lit),
        PredKind::CompareColumn(op, ..) => {
            let right = right.ok_or("column comparison without its other column")?;
            compare(*op, &array, &right)
        }
        PredKind::In(lits) | PredKind::NotIn(lits) => {
            let mut any = BooleanBuffer::new_unset(n);
            for l in lits {
                any = &any | &cmp_one(CompareOp::Eq, l)?;
            }
            if matches!(kind, PredKind::In(_)) {
                Ok(any)
            } else {
                // Null is in no list and not outside any list: false either way.
                let valid = array
                    .logical_nulls()
                    .map(|v| v.inner().clone())
                    .unwrap_or_else(|| BooleanBuffer::new_set(n));
                Ok(&!&any & &valid)
            }
        }
        PredKind::IsNull(want_null) => {
            let valid = array
                .logical_nulls()
                .map(|v| v.inner().clone())
                .unwrap_or_else(|| BooleanBuffer::new_set(n));
            Ok(if *want_null { !&valid } else { valid })
        }
    }
}

/// A one-element array of the column's value type holding `v`, or why that can't be.
fn literal(v: &Scalar, dt: &DataType) -> std::result::Result<Arc<dyn Array>, String> {
    let vt = value_type(dt);
    let mismatch = || format!("cannot compare {} {v} with a column of type {dt}", v.kind());
    macro_rules! int {
        ($arr:ty, $native:ty, $i:expr) => {{
            let x = <$native>::try_from(*$i)
                .map_err(|_| format!("value {} is out of range for a column of type {dt}", $i))?;
            Arc::new(<$arr>::from(vec![x])) as Arc<dyn Array>
        }};
    }
    Ok(match (vt, v) {
        (DataType::Utf8, Scalar::Str(s)) => Arc::new(StringArray::from(vec![s.as_str()])),
        (DataType::LargeUtf8, Scalar::Str(s)) => Arc::new(LargeStringArray::from(vec![s.as_str()])),
        (DataType::Utf8View, Scalar::Str(s)) => Arc::new(StringViewArray::from(vec![s.as_str()])),
        (DataType::Boolean, Scalar::Bool(b)) => Arc::new(BooleanArray::from(vec![*b])),
        (DataType::Int8, Scalar::Int(i)) => int!(Int8Array, i8, i),
        (DataType::Int16, Scalar::Int(i)) => int!(Int16Array, i16, i),
        (DataType::Int32, Scalar::Int(i)) => int!(Int32Array, i32, i),
        (DataType::Int64, Scalar::Int(i)) => int!(Int64Array, i64, i),
        (DataType::UInt8, Scalar::Int(i)) => int!(UInt8Array, u8, i),
        (DataType::UInt16, Scalar::Int(i)) => int!(UInt16Array, u16, i),
        (DataType::UInt32, Scalar::Int(i)) => int!(UInt32Array, u32, i),
        (DataType::UInt64, Scalar::Int(i)) => int!(UInt64Array, u64, i),
        (DataType::Float64, Scalar::Int(i)) => Arc::new(Float64Array::from(vec![*i as f64])),
        (DataType::Float64, Scalar::Float(f)) => Arc::new(Float64Array::from(vec![*f])),
        (DataType::Float32, Scalar::Int(i)) => Arc::new(Float32Array::from(vec![*i as f32])),
        (DataType::Float32, Scalar::Float(f)) => Arc::new(Float32Array::from(vec![*f as f32])),
        (DataType::Date32, Scalar::Str(s)) => {
            let d = parse_date(s).ok_or_else(|| {
                format!("'{s}' is not a date (YYYY-MM-DD) for a column of type {dt}")
            })?;
            Arc::new(Date32Array::from(vec![
                (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32,
            ]))
        }
        (DataType::Date64, Scalar::Str(s)) => {
            let d = parse_date(s).ok_or_else(|| {
                format!("'{s}' is not a date (YYYY-MM-DD) for a column of type {dt}")
            })?;
            let ms = d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
            Arc::new(Date64Array::from(vec![ms]))
        }
        (DataType::Timestamp(unit, tz), Scalar::Str(s)) => {
            let t = parse_instant(s, tz.is_some())
                .map_err(|m| format!("{m} for a column of type {dt}"))?;
            let (secs, nanos) = (
                t.and_utc().timestamp(),
                t.and_utc().timestamp_subsec_nanos() as i64,
            );
            let value = match unit {
                TimeUnit::Second => (nanos == 0).then_some(secs),
                TimeUnit::Millisecond => secs
                    .checked_mul(1_000)
                    .and_then(|v| v.checked_add(nanos / 1_000_000)),
                TimeUnit::Microsecond => secs
                    .checked_mul(1_000_000)
                    .and_then(|v| v.checked_add(nanos / 1_000)),
                TimeUnit::Nanosecond => secs
                    .checked_mul(1_000_000_000)
                    .and_then(|v| v.checked_add(nanos)),
            }
            .ok_or_else(|| {
                format!("'{s}' cannot be represented exactly in a column of type {dt}")
            })?;
            let arr: Arc<dyn Array> = match unit {
                TimeUnit::Second => {
                    Arc::new(TimestampSecondArray::from(vec![value]).with_timezone_opt(tz.clone()))
                }
                TimeUnit::Millisecond => Arc::new(
                    TimestampMillisecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Microsecond => Arc::new(
                    TimestampMicrosecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    TimestampNanosecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
            };
            arr
        }
        _ => return Err(mismatch()),
    })
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// A policy time literal as a naive date-time: UTC for time-zoned columns, as written for naive ones.
fn parse_instant(s: &str, zoned: bool) -> std::result::Result<NaiveDateTime, String> {
    let s = s.trim();
    if let Some(d) = parse_date(s) {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        if !zoned {
            return Err(format!(
                "'{s}' has a UTC offset, but the column has no time zone (its values are local times as written); write the time without an offset"
            ));
        }
        return Ok(t.naive_utc());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    Err(format!(
        "'{s}' is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SS[+HH:MM])"
    ))
}

#[cfg(test)]
mod tests;
