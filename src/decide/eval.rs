//! Evaluating compiled conditions over a batch: each predicate to a row mask, each condition as
//! the policy's two-valued logic says (a null or unknown never satisfies a condition).

use std::sync::Arc;

use arrow_array::*;
use arrow_buffer::BooleanBuffer;

use super::*;

pub(super) struct BatchCtx<'a> {
    pub(super) n: usize,
    pub(super) batch: &'a RecordBatch,
    pub(super) region: Vec<Region>,
    pub(super) consent: Vec<u8>,
    pub(super) member: Option<Vec<u32>>,
    pub(super) unmatched: u64,
    pub(super) extras: Vec<(&'a str, ArrayRef)>,
    pub(super) lists: Vec<BooleanBuffer>,
}

impl BatchCtx<'_> {
    /// The rows with no snapshot member, when a snapshot is joined (only then may a row have
    /// none).
    pub(super) fn unmatched_rows(&self) -> Option<BooleanBuffer> {
        let m = self.member.as_ref()?;
        Some(BooleanBuffer::collect_bool(self.n, |i| m[i] == u32::MAX))
    }

    pub(super) fn value(&self, name: &str) -> std::result::Result<ArrayRef, String> {
        if let Some((_, a)) = self.extras.iter().find(|(e, _)| *e == name) {
            return Ok(a.clone());
        }
        self.batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| format!("column '{name}' missing from the decision batch"))
    }

    pub(super) fn predicate(
        &self,
        p: &CompiledPredicate,
    ) -> std::result::Result<BooleanBuffer, String> {
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

    pub(super) fn condition(
        &self,
        c: &CompiledCondition,
    ) -> std::result::Result<BooleanBuffer, String> {
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
    pub(super) fn all(
        &self,
        conds: &[CompiledCondition],
    ) -> std::result::Result<BooleanBuffer, String> {
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
