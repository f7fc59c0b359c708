//! Binding a policy to one file's schema ([`FileDecider::new`]): every column the policy reads
//! present and usable, every `where` literal typed as its column, the user id joinable with the
//! snapshot and lists. A file that does not fit is an [`Error::Schema`] naming the column.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use super::literal::{common_type, literal};
use super::*;
use crate::io::Location;

/// What binding reads: the policy, the file's schema, and the snapshot it is joined with.
struct Binder<'a> {
    policy: &'a Policy,
    schema: &'a Schema,
    file: &'a Location,
    table: Option<&'a crate::join::ConsentTable>,
    /// Snapshot extras the predicates read, in the order first read.
    extras_used: Vec<String>,
}

impl<'a> Binder<'a> {
    fn err(&self, column: &str, message: String) -> Error {
        Error::Schema {
            file: self.file.clone(),
            column: column.to_owned(),
            message,
        }
    }

    /// The column the policy maps as `columns.<role>`.
    fn field(&self, name: &str, role: &str) -> Result<&'a Field> {
        self.schema.field_with_name(name).map_err(|_| {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            self.err(
                name,
                format!(
                    "missing; the policy maps it as columns.{role} (columns present: {})",
                    names.join(", ")
                ),
            )
        })
    }

    fn region(&self) -> Result<Source> {
        Ok(match self.policy.corpus_region() {
            Some(col) => {
                let f = self.field(col, "region")?;
                if !is_string_type(value_type(f.data_type())) {
                    return Err(self.err(
                        col,
                        format!(
                            "has type {}; a region column must hold strings",
                            f.data_type()
                        ),
                    ));
                }
                Source::Corpus(col.to_owned())
            }
            None if self.table.is_some() => Source::Snapshot,
            None => Source::Absent,
        })
    }

    /// Record and user ids are scalars.
    fn check_ids(&self) -> Result<()> {
        let columns = &self.policy.columns;
        for (col, role) in [
            (&columns.record_id, "record_id"),
            (&columns.user_id, "user_id"),
        ] {
            if let Some(c) = col {
                let f = self.field(c, role)?;
                if f.data_type().is_nested() {
                    return Err(self.err(
                        c,
                        format!("has nested type {}; ids must be scalars", f.data_type()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The user id column, when rows are joined: of a kind the snapshot and lists hold.
    fn user_column(&self, join: Option<&Arc<JoinData>>) -> Result<Option<String>> {
        if !self.policy.needs_user_id() {
            return Ok(None);
        }
        let c = self
            .policy
            .columns
            .user_id
            .as_deref()
            .expect("validated policy");
        let f = self.field(c, "user_id")?;
        match (KeyKind::of(f.data_type()), join.and_then(|j| j.kind())) {
            (None, _) => Err(self.err(
                c,
                format!(
                    "has type {}; a user id must be an integer, string or binary",
                    f.data_type()
                ),
            )),
            (Some(k), Some(w)) if k != w => Err(self.err(
                c,
                format!(
                    "holds {} ids, but the consent snapshot and user lists hold {} keys",
                    k.as_str(),
                    w.as_str()
                ),
            )),
            _ => Ok(Some(c.to_owned())),
        }
    }

    fn consent(&self) -> Result<(Source, Option<ConsentMatcher>)> {
        Ok(
            match (self.policy.corpus_consent(), &self.policy.consent_values) {
                (Some(col), Some(values)) => {
                    let f = self.field(col, "consent")?;
                    let m = ConsentMatcher::for_type(values, f.data_type())
                        .map_err(|m| self.err(col, m))?;
                    (Source::Corpus(col.to_owned()), Some(m))
                }
                _ if self.table.is_some_and(|t| t.consent.is_some()) => (Source::Snapshot, None),
                _ => (Source::Absent, None),
            },
        )
    }

    /// The type of a column a predicate reads: the snapshot's extra, else the corpus column.
    fn column_type(&mut self, name: &str, pos_line: usize) -> Result<DataType> {
        if self.policy.from_snapshot(name) {
            if !self.extras_used.iter().any(|e| e == name) {
                self.extras_used.push(name.to_owned());
            }
            if let Some(a) = self.table.and_then(|t| t.extra(name)) {
                return Ok(a.data_type().clone());
            }
        }
        let f = self.schema.field_with_name(name).map_err(|_| {
            self.err(
                name,
                format!("missing; the policy's where predicate on line {pos_line} reads it"),
            )
        })?;
        if f.data_type().is_nested() {
            return Err(self.err(
                name,
                format!(
                    "has nested type {}; where predicates read scalar columns",
                    f.data_type()
                ),
            ));
        }
        Ok(f.data_type().clone())
    }

    fn predicate(&mut self, p: &crate::policy::Predicate) -> Result<CompiledPredicate> {
        let dt = self.column_type(&p.column, p.pos.line)?;
        let at = |m: String| {
            self.err(
                &p.column,
                format!("{m} (policy line {}, column {})", p.pos.line, p.pos.column),
            )
        };
        let lit = |v: &Scalar| literal(v, &dt).map_err(at);
        let mut cast = None;
        let kind = match &p.op {
            PredicateOp::Compare(op, Operand::Literal(v)) => {
                let ordered = matches!(
                    op,
                    CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge
                );
                if ordered && value_type(&dt) == &DataType::Boolean {
                    return Err(self.err(
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
                let rt = self.column_type(other, p.pos.line)?;
                cast = common_type(&dt, &rt).map_err(|m| {
                    self.err(
                        &p.column,
                        format!("{m} (policy line {}, column {})", p.pos.line, p.pos.column),
                    )
                })?;
                PredKind::CompareColumn(*op, other.clone(), cast.clone())
            }
            PredicateOp::In(vs) => PredKind::In(vs.iter().map(lit).collect::<Result<_>>()?),
            PredicateOp::NotIn(vs) => PredKind::NotIn(vs.iter().map(lit).collect::<Result<_>>()?),
            PredicateOp::IsNull(b) => PredKind::IsNull(*b),
        };
        Ok(CompiledPredicate {
            column: p.column.clone(),
            cast,
            kind,
        })
    }

    fn conditions(&mut self, conds: &[Condition]) -> Result<Vec<CompiledCondition>> {
        conds
            .iter()
            .map(|c| {
                Ok(match c {
                    Condition::Region { set, .. } => CompiledCondition::Region(*set),
                    Condition::Consent(set) => CompiledCondition::Consent(set.0),
                    Condition::UserIn(lists) => CompiledCondition::UserIn(lists.clone()),
                    Condition::Where(preds) => CompiledCondition::Where(
                        preds
                            .iter()
                            .map(|p| self.predicate(p))
                            .collect::<Result<_>>()?,
                    ),
                })
            })
            .collect()
    }
}

/// When every row of a member is decided by that member's snapshot row alone — every condition
/// is on region or consent, and neither is read from the corpus — the rule deciding each
/// (region, consent) pair, indexed `region.index() * 3 + consent`: a row is then decided by
/// this table at its member's region and consent (both unknown for a row with no member), as
/// [`FileDecider::decide`] decides it, in any file. `None` for any other policy.
///
/// `--reuse` digests a member by what this gives it (its region and rule) instead of its values:
/// a consent that flips where the region excludes the member anyway changes no row's decision,
/// manifest row or count, so it changes no digest either.
pub fn member_rule_table(policy: &Policy) -> Option<Vec<RuleId>> {
    let consent_from_corpus = policy.corpus_consent().is_some() && policy.consent_values.is_some();
    if policy.corpus_region().is_some() || consent_from_corpus {
        return None;
    }
    let simple = |c: &Condition| match c {
        Condition::Region { set, .. } => Some(CompiledCondition::Region(*set)),
        Condition::Consent(set) => Some(CompiledCondition::Consent(set.0)),
        Condition::Where(_) | Condition::UserIn(_) => None,
    };
    let rules = policy
        .rules
        .iter()
        .map(|r| {
            Some(CompiledRule {
                when: r.when.iter().map(simple).collect::<Option<_>>()?,
                unless: r.unless.iter().map(simple).collect::<Option<_>>()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    decision_table(&rules)
}

/// When every condition is on region or consent: the rule deciding each (region, consent) pair,
/// so that deciding a row is a lookup.
fn decision_table(rules: &[CompiledRule]) -> Option<Vec<RuleId>> {
    let simple = rules.iter().all(|r| {
        r.when.iter().chain(&r.unless).all(|c| {
            matches!(
                c,
                CompiledCondition::Region(_) | CompiledCondition::Consent(_)
            )
        })
    });
    simple.then(|| {
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
                    r.when.iter().all(holds) && (r.unless.is_empty() || !r.unless.iter().all(holds))
                });
                t[ri * 3 + cs as usize] = hit.map(|i| RuleId(i as u16)).unwrap_or(RuleId::DEFAULT);
            }
        }
        t
    })
}

impl FileDecider {
    /// Bind `policy` to a file with `schema`; `file` only names the file in errors.
    pub fn new(
        policy: &Policy,
        schema: &Schema,
        file: &Location,
        join: Option<&Arc<JoinData>>,
    ) -> Result<FileDecider> {
        let mut b = Binder {
            policy,
            schema,
            file,
            table: join.and_then(|j| j.table.as_ref()),
            extras_used: Vec::new(),
        };
        let region = b.region()?;
        b.check_ids()?;
        let user_column = b.user_column(join)?;
        let (consent, consent_matcher) = b.consent()?;
        let mut rules = Vec::with_capacity(policy.rules.len());
        for r in &policy.rules {
            rules.push(CompiledRule {
                when: b.conditions(&r.when)?,
                unless: b.conditions(&r.unless)?,
            });
        }
        Ok(FileDecider {
            region,
            consent,
            consent_matcher,
            user_column,
            join: join.cloned(),
            extras_used: b.extras_used,
            table: decision_table(&rules),
            rules,
        })
    }
}
