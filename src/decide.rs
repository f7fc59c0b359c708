//! The compiled decider: the policy bound to one file's schema, deciding batches of rows.
//!
//! [`FileDecider::new`] checks that a file fits the policy (columns present, types usable, every
//! `where` literal comparable) and turns literals into typed Arrow scalars; an unfit file is an
//! [`Error::Schema`]. [`FileDecider::decide`] then maps a batch of the policy's columns to one
//! [`RuleId`] per row. Region and consent are normalised once per dictionary value where the
//! column is dictionary-encoded, and a policy without `where` predicates is precomputed into a
//! table indexed by (region, consent), so deciding a row is a lookup.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::error::{Error, Result};
use crate::policy::{
    consent_key, fold_consent_str, CompareOp, Condition, ConsentKey, ConsentState, Policy,
    PredicateOp, RuleId, Scalar,
};
use crate::region::{self, Region, RegionSet, REGION_COUNT};

/// The decision for each row of a batch.
#[derive(Debug, Default)]
pub struct BatchDecision {
    pub rule: Vec<RuleId>,
    pub region: Vec<Region>,
}

enum ConsentMatcher {
    Str(HashMap<String, ConsentState>),
    Bool(HashMap<bool, ConsentState>),
    Int(HashMap<i128, ConsentState>),
}

enum PredKind {
    Compare(CompareOp, Arc<dyn Array>),
    In(Vec<Arc<dyn Array>>),
    NotIn(Vec<Arc<dyn Array>>),
    IsNull(bool),
}

struct CompiledPredicate {
    column: String,
    kind: PredKind,
}

enum CompiledCondition {
    Region(RegionSet),
    Consent([bool; 3]),
    Where(Vec<CompiledPredicate>),
}

struct CompiledRule {
    when: Vec<CompiledCondition>,
    unless: Vec<CompiledCondition>,
}

/// The policy bound to one file's schema.
pub struct FileDecider {
    region_column: String,
    consent_column: Option<String>,
    consent: Option<ConsentMatcher>,
    rules: Vec<CompiledRule>,
    /// When no rule has a `where` predicate: the rule for each (region, consent) pair.
    table: Option<Vec<RuleId>>,
}

fn is_string_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn value_type(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    }
}

fn is_integer(dt: &DataType) -> bool {
    dt.is_integer()
}

impl FileDecider {
    /// Bind `policy` to a file with `schema`; `file` only names the file in errors.
    pub fn new(policy: &Policy, schema: &Schema, file: &Path) -> Result<FileDecider> {
        let schema_err = |column: &str, message: String| Error::Schema {
            file: file.to_owned(),
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

        let region_field = field(&policy.columns.region, "region")?;
        if !is_string_type(value_type(region_field.data_type())) {
            return Err(schema_err(
                &policy.columns.region,
                format!(
                    "has type {}; a region column must hold strings",
                    region_field.data_type()
                ),
            ));
        }
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

        let consent = match (&policy.columns.consent, &policy.consent_values) {
            (Some(col), Some(values)) => {
                let f = field(col, "consent")?;
                let vt = value_type(f.data_type());
                let mut candidates: Vec<(ConsentKey, ConsentState)> = Vec::new();
                for (list, state) in [
                    (&values.granted, ConsentState::Granted),
                    (&values.denied, ConsentState::Denied),
                ] {
                    for v in list {
                        if let Some(k) = consent_key(v) {
                            candidates.push((k, state));
                        }
                    }
                }
                let kind_ok = |k: &ConsentKey| match k {
                    ConsentKey::Str(_) => is_string_type(vt),
                    ConsentKey::Bool(_) => vt == &DataType::Boolean,
                    ConsentKey::Int(_) => is_integer(vt),
                };
                let usable: Vec<_> = candidates.into_iter().filter(|(k, _)| kind_ok(k)).collect();
                if usable.is_empty() {
                    return Err(schema_err(
                        col,
                        format!(
                            "has type {}, but no value under consent_values (policy line {}) has that type; \
                             list strings for string columns, true/false for boolean, integers for integer columns",
                            f.data_type(),
                            values.pos.line
                        ),
                    ));
                }
                let matcher = if is_string_type(vt) {
                    ConsentMatcher::Str(
                        usable
                            .into_iter()
                            .filter_map(|(k, s)| match k {
                                ConsentKey::Str(v) => Some((v, s)),
                                _ => None,
                            })
                            .collect(),
                    )
                } else if vt == &DataType::Boolean {
                    ConsentMatcher::Bool(
                        usable
                            .into_iter()
                            .filter_map(|(k, s)| match k {
                                ConsentKey::Bool(v) => Some((v, s)),
                                _ => None,
                            })
                            .collect(),
                    )
                } else {
                    ConsentMatcher::Int(
                        usable
                            .into_iter()
                            .filter_map(|(k, s)| match k {
                                ConsentKey::Int(v) => Some((v, s)),
                                _ => None,
                            })
                            .collect(),
                    )
                };
                Some(matcher)
            }
            _ => None,
        };

        let compile_conds = |conds: &[Condition]| -> Result<Vec<CompiledCondition>> {
            let mut out = Vec::new();
            for c in conds {
                out.push(match c {
                    Condition::Region { set, .. } => CompiledCondition::Region(*set),
                    Condition::Consent(set) => CompiledCondition::Consent(set.0),
                    Condition::Where(preds) => {
                        let mut cp = Vec::new();
                        for p in preds {
                            let f = schema.field_with_name(&p.column).map_err(|_| {
                                schema_err(
                                    &p.column,
                                    format!(
                                        "missing; the policy's where predicate on line {} reads it",
                                        p.pos.line
                                    ),
                                )
                            })?;
                            let lit = |v: &Scalar| {
                                literal(v, f.data_type()).map_err(|m| {
                                    schema_err(
                                        &p.column,
                                        format!(
                                            "{m} (policy line {}, column {})",
                                            p.pos.line, p.pos.column
                                        ),
                                    )
                                })
                            };
                            let kind = match &p.op {
                                PredicateOp::Compare(op, v) => {
                                    let l = lit(v)?;
                                    if matches!(
                                        op,
                                        CompareOp::Lt
                                            | CompareOp::Le
                                            | CompareOp::Gt
                                            | CompareOp::Ge
                                    ) && value_type(f.data_type()) == &DataType::Boolean
                                    {
                                        return Err(schema_err(
                                            &p.column,
                                            format!(
                                                "is boolean and cannot be ordered (policy line {})",
                                                p.pos.line
                                            ),
                                        ));
                                    }
                                    PredKind::Compare(*op, l)
                                }
                                PredicateOp::In(vs) => {
                                    PredKind::In(vs.iter().map(lit).collect::<Result<_>>()?)
                                }
                                PredicateOp::NotIn(vs) => {
                                    PredKind::NotIn(vs.iter().map(lit).collect::<Result<_>>()?)
                                }
                                PredicateOp::IsNull(b) => PredKind::IsNull(*b),
                            };
                            if f.data_type().is_nested() {
                                return Err(schema_err(
                                    &p.column,
                                    format!(
                                        "has nested type {}; where predicates read scalar columns",
                                        f.data_type()
                                    ),
                                ));
                            }
                            cp.push(CompiledPredicate {
                                column: p.column.clone(),
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

        let has_where = rules.iter().any(|r| {
            r.when
                .iter()
                .chain(&r.unless)
                .any(|c| matches!(c, CompiledCondition::Where(_)))
        });
        let table = (!has_where).then(|| {
            let mut t = vec![RuleId::DEFAULT; REGION_COUNT * 3];
            for ri in 0..REGION_COUNT {
                for cs in 0..3u8 {
                    let region = Region::from_index(ri);
                    let hit = rules.iter().position(|r| {
                        let holds = |c: &CompiledCondition| match c {
                            CompiledCondition::Region(set) => set.contains(region),
                            CompiledCondition::Consent(set) => set[cs as usize],
                            CompiledCondition::Where(_) => unreachable!("no where predicates"),
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
            region_column: policy.columns.region.clone(),
            consent_column: policy.columns.consent.clone(),
            consent,
            rules,
            table,
        })
    }

    /// Decide every row of `batch`, which holds (at least) the policy's decision columns.
    pub fn decide(&self, batch: &RecordBatch) -> std::result::Result<BatchDecision, String> {
        let n = batch.num_rows();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("column '{name}' missing from the decision batch"))
        };
        let region = regions(col(&self.region_column)?.as_ref())?;
        let consent: Vec<u8> = match (&self.consent_column, &self.consent) {
            (Some(c), Some(m)) => consents(col(c)?.as_ref(), m)?,
            _ => vec![ConsentState::Unknown as u8; n],
        };

        if let Some(table) = &self.table {
            let rule = region
                .iter()
                .zip(&consent)
                .map(|(r, c)| table[r.index() * 3 + *c as usize])
                .collect();
            return Ok(BatchDecision { rule, region });
        }

        let mut rule = vec![RuleId::DEFAULT; n];
        let mut undecided = BooleanBuffer::new_set(n);
        let eval = |conds: &[CompiledCondition]| -> std::result::Result<BooleanBuffer, String> {
            let mut acc = BooleanBuffer::new_set(n);
            for c in conds {
                let m = match c {
                    CompiledCondition::Region(set) => {
                        BooleanBuffer::collect_bool(n, |i| set.contains(region[i]))
                    }
                    CompiledCondition::Consent(set) => {
                        BooleanBuffer::collect_bool(n, |i| set[consent[i] as usize])
                    }
                    CompiledCondition::Where(preds) => {
                        let mut m = BooleanBuffer::new_set(n);
                        for p in preds {
                            m = &m & &predicate_mask(col(&p.column)?.as_ref(), &p.kind)?;
                        }
                        m
                    }
                };
                acc = &acc & &m;
            }
            Ok(acc)
        };
        for (ri, r) in self.rules.iter().enumerate() {
            let mut m = eval(&r.when)?;
            if !r.unless.is_empty() {
                m = &m & &!&eval(&r.unless)?;
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
        Ok(BatchDecision { rule, region })
    }
}

/// Per-row values computed from a plain (non-dictionary) array.
type Leaf<'a, T> = &'a dyn Fn(&dyn Array) -> std::result::Result<Vec<T>, String>;

/// Apply `leaf` to the values of a dictionary once, then spread by key; plain arrays go to `leaf`.
fn per_row<T: Copy>(
    array: &dyn Array,
    null: T,
    leaf: Leaf<'_, T>,
) -> std::result::Result<Vec<T>, String> {
    if let Some(dict) = array.as_any_dictionary_opt() {
        let per_value = per_row(dict.values().as_ref(), null, leaf)?;
        let keys = dict.normalized_keys();
        let valid = dict.keys().logical_nulls();
        return Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| match &valid {
                Some(v) if v.is_null(i) => null,
                _ => per_value.get(*k).copied().unwrap_or(null),
            })
            .collect());
    }
    leaf(array)
}

fn strings<T: Copy>(
    array: &dyn Array,
    null: T,
    f: impl Fn(&str) -> T,
) -> std::result::Result<Vec<T>, String> {
    fn go<'a, T: Copy>(
        it: impl Iterator<Item = Option<&'a str>>,
        null: T,
        f: impl Fn(&str) -> T,
    ) -> Vec<T> {
        it.map(|v| v.map(&f).unwrap_or(null)).collect()
    }
    Ok(match array.data_type() {
        DataType::Utf8 => go(array.as_string::<i32>().iter(), null, f),
        DataType::LargeUtf8 => go(array.as_string::<i64>().iter(), null, f),
        DataType::Utf8View => go(array.as_string_view().iter(), null, f),
        other => return Err(format!("expected a string column, found {other}")),
    })
}

fn regions(array: &dyn Array) -> std::result::Result<Vec<Region>, String> {
    per_row(array, Region::UNKNOWN, &|a| {
        strings(a, Region::UNKNOWN, region::normalize)
    })
}

fn consents(array: &dyn Array, m: &ConsentMatcher) -> std::result::Result<Vec<u8>, String> {
    let unknown = ConsentState::Unknown as u8;
    per_row(array, unknown, &|a| match m {
        ConsentMatcher::Str(map) => strings(a, unknown, |s| {
            map.get(&fold_consent_str(s))
                .map(|s| *s as u8)
                .unwrap_or(unknown)
        }),
        ConsentMatcher::Bool(map) => {
            let b = a
                .as_boolean_opt()
                .ok_or_else(|| format!("expected a boolean column, found {}", a.data_type()))?;
            Ok(b.iter()
                .map(|v| {
                    v.and_then(|v| map.get(&v))
                        .map(|s| *s as u8)
                        .unwrap_or(unknown)
                })
                .collect())
        }
        ConsentMatcher::Int(map) => {
            let look = |v: Option<i128>| {
                v.and_then(|v| map.get(&v))
                    .map(|s| *s as u8)
                    .unwrap_or(unknown)
            };
            macro_rules! ints {
                ($t:ty) => {
                    a.as_primitive::<$t>()
                        .iter()
                        .map(|v| look(v.map(|v| v as i128)))
                        .collect()
                };
            }
            Ok(match a.data_type() {
                DataType::Int8 => ints!(Int8Type),
                DataType::Int16 => ints!(Int16Type),
                DataType::Int32 => ints!(Int32Type),
                DataType::Int64 => ints!(Int64Type),
                DataType::UInt8 => ints!(UInt8Type),
                DataType::UInt16 => ints!(UInt16Type),
                DataType::UInt32 => ints!(UInt32Type),
                DataType::UInt64 => ints!(UInt64Type),
                other => return Err(format!("expected an integer column, found {other}")),
            })
        }
    })
}

/// True where the comparison holds; a null (or any row where it can't be decided) is false.
fn true_bits(r: &BooleanArray) -> BooleanBuffer {
    match r.nulls() {
        Some(n) => r.values() & n.inner(),
        None => r.values().clone(),
    }
}

fn predicate_mask(
    array: &dyn Array,
    kind: &PredKind,
) -> std::result::Result<BooleanBuffer, String> {
    use arrow_ord::cmp;
    let n = array.len();
    let cmp_one = |op: CompareOp, lit: &Arc<dyn Array>| {
        let rhs = arrow_array::Scalar::new(lit.clone());
        let r = match op {
            CompareOp::Eq => cmp::eq(&array, &rhs),
            CompareOp::Ne => cmp::neq(&array, &rhs),
            CompareOp::Lt => cmp::lt(&array, &rhs),
            CompareOp::Le => cmp::lt_eq(&array, &rhs),
            CompareOp::Gt => cmp::gt(&array, &rhs),
            CompareOp::Ge => cmp::gt_eq(&array, &rhs),
        }
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(true_bits(&r))
    };
    match kind {
        PredKind::Compare(op, lit) => cmp_one(*op, lit),
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
