//! `explain` and policy tests: the decision for one row — from a data file or from typed values —
//! with its trace: the normalised values, each rule in order with which conditions held or failed,
//! and the rule that decided. Uses the same decider as `filter`, on a one-row batch.

use std::fmt::Write;
use std::sync::Arc;

use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch,
    StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use crate::decide::{FileDecider, Trace};
use crate::error::{Error, Result};
use crate::io::{open_parquet, Location, ReadOptions};
use crate::join::{ConsentTable, JoinData, KeyKind, Keys, SourceInfo, UserList};
use crate::policy::{
    CompareOp, Condition, ConsentState, Expect, Operand, Policy, PolicyTest, PredicateOp, RuleId,
    Scalar,
};
use crate::region;
use crate::values::ConsentMatcher;

/// The decision for one row, with its trace.
pub struct Explained {
    pub rule: RuleId,
    pub trace: Trace,
    /// The values the row was decided from, as shown to the user.
    pub shown: Vec<(String, String)>,
}

/// A one-row array of a typed value. An integer keeps its exact value: beyond `i64` it is a
/// `u64` (never wrapped into a negative number); beyond that it is refused.
fn scalar_array(s: &Scalar, default: &DataType) -> Result<ArrayRef> {
    Ok(match s {
        Scalar::Str(v) => Arc::new(StringArray::from(vec![v.as_str()])),
        Scalar::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(v), _) => Arc::new(Int64Array::from(vec![v])),
            (_, Ok(v)) => Arc::new(UInt64Array::from(vec![v])),
            _ => {
                return Err(Error::Usage(format!(
                    "the value {i} is outside the range of a 64-bit integer"
                )))
            }
        },
        Scalar::Float(f) => Arc::new(Float64Array::from(vec![*f])),
        Scalar::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
        Scalar::Null => new_null_array(default, 1),
    })
}

fn scalar_type(s: &Scalar) -> DataType {
    match s {
        Scalar::Str(_) | Scalar::Null => DataType::Utf8,
        Scalar::Int(_) => DataType::Int64,
        Scalar::Float(_) => DataType::Float64,
        Scalar::Bool(_) => DataType::Boolean,
    }
}

/// The type a column is given when the values leave it out: what the policy compares it with.
fn default_type(policy: &Policy, column: &str) -> DataType {
    if Some(column) == policy.columns.consent.as_deref()
        || policy
            .consent_table
            .as_ref()
            .is_some_and(|t| t.consent.as_deref() == Some(column))
    {
        if let Some(v) = policy
            .consent_values
            .as_ref()
            .and_then(|cv| cv.granted.first().or(cv.denied.first()))
        {
            return scalar_type(v);
        }
    }
    if Some(column) == policy.columns.record_id.as_deref()
        || Some(column) == policy.columns.user_id.as_deref()
    {
        return DataType::Int64;
    }
    match compared_literal(policy, column) {
        Some((s, _)) => scalar_type(s),
        None => DataType::Utf8,
    }
}

/// The first literal a `where` predicate compares `column` with, and its line.
fn compared_literal<'p>(policy: &'p Policy, column: &str) -> Option<(&'p Scalar, usize)> {
    for r in &policy.rules {
        for c in r.when.iter().chain(&r.unless) {
            let Condition::Where(preds) = c else { continue };
            for p in preds.iter().filter(|p| p.column == column) {
                let lit = match &p.op {
                    PredicateOp::Compare(_, Operand::Literal(s)) => Some(s),
                    PredicateOp::In(v) | PredicateOp::NotIn(v) => v.first(),
                    _ => None,
                };
                if let Some(s) = lit.filter(|s| **s != Scalar::Null) {
                    return Some((s, p.pos.line));
                }
            }
        }
    }
    None
}

/// A typed value whose kind differs from what the policy compares its column with is the
/// value's mistake, said as such (not as the policy's).
fn check_value_kinds(policy: &Policy, values: &[(String, Scalar)]) -> Result<()> {
    let numeric = |s: &Scalar| matches!(s, Scalar::Int(_) | Scalar::Float(_));
    for (column, given) in values {
        let Some((lit, line)) = compared_literal(policy, column) else {
            continue;
        };
        let same = *given == Scalar::Null
            || (numeric(given) && numeric(lit))
            || std::mem::discriminant(given) == std::mem::discriminant(lit);
        if !same {
            let hint = match given {
                Scalar::Str(s) if numeric(lit) && s.trim().parse::<f64>().is_ok() => {
                    format!("; give it without quotes: {column}: {}", s.trim())
                }
                _ => String::new(),
            };
            return Err(Error::Usage(format!(
                "the value given for {column} is {} ({given}), but the policy compares {column} with {} ({lit}, line {line}){hint}",
                article(given.kind()),
                article(lit.kind()),
            )));
        }
    }
    Ok(())
}

fn article(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

fn show(s: &Scalar) -> String {
    s.to_string()
}

/// Row 0 of `a` as text; the user id pseudonymized when a key is given.
fn shown_value(policy: &Policy, column: &str, a: &dyn Array, key: Option<&[u8]>) -> String {
    if a.is_null(0) {
        return "null".into();
    }
    if let (Some(k), Some(true)) = (key, policy.columns.user_id.as_deref().map(|u| u == column)) {
        return crate::join::pseudonymize(k, a)
            .map(|p| format!("{} (pseudonymized)", p.value(0)))
            .unwrap_or_else(|e| e);
    }
    arrow_cast::display::ArrayFormatter::try_new(a, &Default::default())
        .map(|f| f.value(0).to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Decide one row given as typed values (`explain --values`, policy tests). Snapshot fields are
/// given by their snapshot column names; `user_in` names the lists the row's user is in.
pub fn explain_values(
    policy: &Policy,
    values: &[(String, Scalar)],
    user_in: &[String],
    key: Option<&[u8]>,
) -> Result<Explained> {
    check_value_kinds(policy, values)?;
    let get = |c: &str| values.iter().find(|(k, _)| k == c).map(|(_, v)| v);
    let snapshot_cols: Vec<&str> = policy
        .consent_table
        .as_ref()
        .map(|t| {
            let mut v: Vec<&str> = t
                .region
                .iter()
                .chain(&t.consent)
                .map(String::as_str)
                .collect();
            v.extend(t.extra.iter().map(String::as_str));
            v
        })
        .unwrap_or_default();
    // Corpus columns: what the decision reads, plus the ids.
    let mut cols: Vec<String> = policy.decision_columns();
    for c in [&policy.columns.record_id, &policy.columns.user_id]
        .into_iter()
        .flatten()
    {
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    let known = |k: &str| cols.iter().any(|c| c == k) || snapshot_cols.contains(&k);
    if let Some((k, _)) = values.iter().find(|(k, _)| !known(k)) {
        return Err(Error::Usage(format!(
            "'{k}' is not a column the policy reads (it reads: {})",
            cols.iter()
                .map(String::as_str)
                .chain(snapshot_cols.iter().copied())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    let mut shown = Vec::new();
    for c in &cols {
        let dt = default_type(policy, c);
        let a = match get(c) {
            Some(s) => scalar_array(s, &dt)?,
            None => new_null_array(&dt, 1),
        };
        shown.push((c.clone(), shown_value(policy, c, a.as_ref(), key)));
        fields.push(Field::new(c, a.data_type().clone(), true));
        arrays.push(a);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::Usage(e.to_string()))?;

    // A one-member snapshot and the lists, when the policy joins them.
    let join = if policy.needs_user_id() {
        Some(one_member_join(
            policy,
            values,
            user_in,
            &snapshot_cols,
            &mut shown,
        )?)
    } else {
        None
    };
    decide_one(policy, &batch, join.as_ref(), shown)
}

/// The snapshot and lists `explain --values` joins: the row's user as their only member, with
/// the snapshot values given (`snapshot.COLUMN` in the trace), in the lists named by `user_in`.
fn one_member_join(
    policy: &Policy,
    values: &[(String, Scalar)],
    user_in: &[String],
    snapshot_cols: &[&str],
    shown: &mut Vec<(String, String)>,
) -> Result<Arc<JoinData>> {
    let get = |c: &str| values.iter().find(|(k, _)| k == c).map(|(_, v)| v);

    let uid = policy.columns.user_id.as_deref().expect("validated policy");
    let id = get(uid).cloned().unwrap_or(Scalar::Int(1));
    let (kind, keys_for) = match &id {
        Scalar::Str(s) => (KeyKind::Str, Some(s.as_bytes().to_vec())),
        Scalar::Int(i) => (KeyKind::Int, Some(i.to_le_bytes().to_vec())),
        Scalar::Null => (KeyKind::Int, None),
        other => {
            return Err(Error::Usage(format!(
                "user id value {other} must be an integer or a string"
            )))
        }
    };
    let keys = |present: bool| -> Keys {
        match (&id, present) {
            (Scalar::Int(i), true) => Keys::Wide(vec![*i]),
            (Scalar::Str(s), true) => Keys::Bytes {
                offsets: vec![0, s.len() as u64],
                data: s.as_bytes().to_vec(),
            },
            _ => Keys::Wide(Vec::new()),
        }
    };
    let info = |name: &str| SourceInfo {
        path: crate::io::Location::local(name),
        files: 0,
        rows: 1,
        distinct: 1,
        sha256: String::new(),
    };
    let table = match &policy.consent_table {
        Some(t) => {
            let region = t.region.as_ref().map(|r| {
                vec![match get(r) {
                    Some(Scalar::Str(s)) => region::normalize(s),
                    _ => region::Region::UNKNOWN,
                }]
            });
            let consent = match (&t.consent, &policy.consent_values) {
                (Some(c), Some(cv)) => Some(vec![match get(c) {
                    Some(s) if *s != Scalar::Null => {
                        let a = scalar_array(s, &DataType::Utf8)?;
                        let m = ConsentMatcher::for_type(cv, a.data_type())
                            .map_err(|m| Error::Usage(format!("'{c}' {m}")))?;
                        crate::values::consents(a.as_ref(), &m).map_err(Error::Usage)?[0]
                    }
                    _ => ConsentState::Unknown as u8,
                }]),
                _ => None,
            };
            let extras = t
                .extra
                .iter()
                .map(|e| {
                    let dt = default_type(policy, e);
                    Ok((
                        e.clone(),
                        match get(e) {
                            Some(s) => scalar_array(s, &dt)?,
                            None => new_null_array(&dt, 1),
                        },
                    ))
                })
                .collect::<Result<_>>()?;
            for c in snapshot_cols {
                shown.push((
                    format!("snapshot.{c}"),
                    get(c).map(show).unwrap_or_else(|| "null".into()),
                ));
            }
            Some(ConsentTable {
                kind,
                dense: None,
                keys: keys(keys_for.is_some()),
                region,
                consent,
                extras,
                info: info("values"),
            })
        }
        None => None,
    };
    let lists = policy
        .user_lists
        .iter()
        .map(|l| UserList {
            name: l.clone(),
            kind,
            keys: keys(keys_for.is_some() && user_in.contains(l)),
            info: info(l),
        })
        .collect();
    if !user_in.is_empty() {
        shown.push(("user_in".into(), user_in.join(", ")));
    }
    Ok(Arc::new(JoinData { table, lists }))
}

fn decide_one(
    policy: &Policy,
    batch: &RecordBatch,
    join: Option<&Arc<JoinData>>,
    shown: Vec<(String, String)>,
) -> Result<Explained> {
    let decider = FileDecider::new(
        policy,
        &batch.schema(),
        &crate::io::Location::local("values"),
        join,
    )?;
    let d = decider.decide(batch).map_err(Error::Usage)?;
    let trace = decider.trace(batch).map_err(Error::Usage)?;
    Ok(Explained {
        rule: d.rule[0],
        trace,
        shown,
    })
}

/// Decide row `row` (0-based) of a data file, joined as `join` says.
pub fn explain_row(
    policy: &Policy,
    file: &Location,
    row: u64,
    join: Option<&Arc<JoinData>>,
    key: Option<&[u8]>,
    read: ReadOptions,
) -> Result<Explained> {
    let pq = open_parquet(file, read)?;
    let total = pq.rows();
    if row >= total {
        return Err(Error::Usage(format!(
            "{file}: row {row} is past the end ({total} rows, numbered from 0)"
        )));
    }
    // The row group holding the row, and the row's place in it.
    let meta = pq.parquet_meta().clone();
    let mut first = 0u64;
    let mut at = None;
    for (g, group) in meta.row_groups().iter().enumerate() {
        let n = group.num_rows().max(0) as u64;
        if row < first + n {
            at = Some((g, row - first));
            break;
        }
        first += n;
    }
    let (rg, offset) = at.expect("row < total");
    let selection = RowSelection::from(vec![
        RowSelector::skip(offset as usize),
        RowSelector::select(1),
    ]);
    let mut found = None;
    pq.read_row_group(&meta, rg, None, 1, Some(selection), &mut |b| {
        if found.is_none() && b.num_rows() == 1 {
            found = Some(b);
        }
        Ok(())
    })?;
    let batch = found.ok_or_else(|| Error::Usage(format!("{file}: row {row} not found")))?;
    let mut shown = Vec::new();
    let mut cols = policy.decision_columns();
    for c in [&policy.columns.record_id, &policy.columns.user_id]
        .into_iter()
        .flatten()
    {
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    for c in &cols {
        if let Some(a) = batch.column_by_name(c) {
            shown.push((c.clone(), shown_value(policy, c, a.as_ref(), key)));
        }
    }
    decide_one(policy, &batch, join, shown)
}

fn describe_condition(policy: &Policy, c: &Condition) -> Vec<String> {
    match c {
        Condition::Region { written, .. } => vec![format!("region in [{}]", written.join(", "))],
        Condition::Consent(set) => {
            let states: Vec<&str> = [
                ConsentState::Unknown,
                ConsentState::Granted,
                ConsentState::Denied,
            ]
            .into_iter()
            .filter(|s| set.contains(*s))
            .map(|s| s.as_str())
            .collect();
            vec![format!("consent in [{}]", states.join(", "))]
        }
        Condition::UserIn(lists) => vec![format!(
            "user in [{}]",
            lists
                .iter()
                .map(|i| policy.user_lists[*i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )],
        Condition::Where(preds) => preds
            .iter()
            .map(|p| match &p.op {
                PredicateOp::Compare(op, Operand::Literal(v)) => {
                    format!("{} {} {v}", p.column, op_sym(*op))
                }
                PredicateOp::Compare(op, Operand::Column(c)) => {
                    format!("{} {} column {c}", p.column, op_sym(*op))
                }
                PredicateOp::In(v) => format!(
                    "{} in [{}]",
                    p.column,
                    v.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                PredicateOp::NotIn(v) => format!(
                    "{} not in [{}]",
                    p.column,
                    v.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                PredicateOp::IsNull(true) => format!("{} is null", p.column),
                PredicateOp::IsNull(false) => format!("{} is not null", p.column),
            })
            .collect(),
    }
}

fn op_sym(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "!=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    }
}

/// The trace as text.
pub fn render(policy: &Policy, e: &Explained) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "values:");
    for (k, v) in &e.shown {
        let _ = writeln!(s, "  {k}: {v}");
    }
    let _ = writeln!(
        s,
        "normalised: region {}, consent {}{}",
        e.trace.region.label(),
        [
            ConsentState::Unknown,
            ConsentState::Granted,
            ConsentState::Denied
        ]
        .into_iter()
        .find(|c| *c as u8 == e.trace.consent)
        .map(|c| c.as_str())
        .unwrap_or("unknown"),
        match e.trace.matched_member {
            Some(false) => " (user not in the consent snapshot)",
            _ => "",
        }
    );
    let _ = writeln!(s, "rules:");
    let decided = e.rule;
    for (i, (r, (when, unless))) in policy.rules.iter().zip(&e.trace.rules).enumerate() {
        let holds_all = |c: &[crate::decide::CondTrace]| c.iter().all(|c| c.holds);
        let matched = holds_all(when) && (unless.is_empty() || !holds_all(unless));
        let mark = if decided == RuleId(i as u16) {
            "=> DECIDES"
        } else if matched {
            "(matches, but an earlier rule decided)"
        } else if decided != RuleId::DEFAULT && (decided.0 as usize) < i {
            "(not reached)"
        } else {
            "(no match)"
        };
        let _ = writeln!(s, "  {}. {} -> {} {mark}", i + 1, r.id, r.action.as_str());
        for (label, conds, traces) in [("if", &r.when, when), ("unless", &r.unless, unless)] {
            for (c, t) in conds.iter().zip(traces) {
                let descs = describe_condition(policy, c);
                if t.parts.is_empty() {
                    let _ = writeln!(s, "       {label} {}: {}", descs[0], t.holds);
                } else {
                    for (d, p) in descs.iter().zip(&t.parts) {
                        let _ = writeln!(s, "       {label} {d}: {p}");
                    }
                }
            }
        }
        if r.when.is_empty() && r.unless.is_empty() {
            let _ = writeln!(s, "       (no conditions: always matches)");
        }
    }
    let action = policy.action_of(decided);
    let _ = writeln!(
        s,
        "decision: {} by {}",
        action.as_str().to_uppercase(),
        if decided == RuleId::DEFAULT {
            format!(
                "default (no rule matched; default is {})",
                policy.default.as_str()
            )
        } else {
            format!("rule {}", policy.rule_name(decided))
        }
    );
    s
}

/// Run the policy's own tests; the first failing one is an error naming it (exit 2).
/// The outcome of a policy's `tests:`.
pub struct TestReport {
    pub passed: usize,
    /// One [`Error::Policy`] per failing test, naming its line, what it expected and got.
    pub failures: Vec<Error>,
}

/// Run every test of the policy (a failure does not stop the others).
pub fn run_tests(policy: &Policy) -> TestReport {
    let mut report = TestReport {
        passed: 0,
        failures: Vec::new(),
    };
    for t in &policy.tests {
        match check_test(policy, t) {
            Ok(()) => report.passed += 1,
            Err(e) => report.failures.push(e),
        }
    }
    report
}

fn check_test(policy: &Policy, t: &PolicyTest) -> Result<()> {
    let fail = |message: String| Error::Policy {
        path: policy.path.clone(),
        line: t.pos.line,
        column: t.pos.column,
        message,
    };
    let e = explain_values(policy, &t.values, &t.user_in, None)
        .map_err(|e| fail(format!("policy test '{}' cannot run: {e}", t.name)))?;
    let got_action = policy.action_of(e.rule);
    let ok = match &t.expect {
        Expect::Rule(r) => *r == e.rule,
        Expect::Action(a) => *a == got_action,
    };
    if !ok {
        let want = match &t.expect {
            Expect::Rule(r) => policy.rule_name(*r).to_owned(),
            Expect::Action(a) => a.as_str().to_owned(),
        };
        return Err(fail(format!(
            "policy test '{}' failed: expected {want}, got {} ({})",
            t.name,
            policy.rule_name(e.rule),
            got_action.as_str()
        )));
    }
    Ok(())
}

/// Parse `--values '{country: gb, author_age: 30}'` (a YAML flow mapping of typed scalars;
/// `user_in: [list]` names user lists the row's user is in).
pub fn parse_values(text: &str) -> Result<crate::policy::ColumnValues> {
    crate::policy::parse_values(text).map_err(|e| Error::Usage(format!("--values: {e}")))
}

/// `corpusgate explain`.
pub fn command(args: &crate::cli::ExplainArgs) -> Result<crate::error::ExitStatus> {
    let policy = Policy::load(&args.policy)?;
    let key = crate::plan::read_key(args.pseudonymize_user_ids.as_deref())?;
    let key = key.as_deref().map(|k| k.as_slice());
    let read = args.read.options();
    let e = match (&args.values, &args.row) {
        (Some(v), _) => {
            let (values, user_in) = parse_values(v)?;
            explain_values(&policy, &values, &user_in, key)?
        }
        (None, Some(spec)) => {
            let (file, row) = spec
                .rsplit_once(':')
                .and_then(|(f, r)| Some((f, r.parse::<u64>().ok()?)))
                .map(|(f, r)| Ok::<_, Error>((Location::from_arg("--row", f)?, r)))
                .transpose()?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--row {spec}: expected FILE:ROW, ROW a number from 0"
                    ))
                })?;
            crate::io::discover::check_named_file(&file)
                .map_err(|e| Error::Usage(format!("--row {spec}: {e}")))?;
            let join = if policy.needs_user_id() {
                let plan = crate::plan::FilterPlan::decide_only(
                    &args.policy,
                    &args.join,
                    Some(1),
                    None,
                    std::slice::from_ref(&file),
                    read,
                )?;
                crate::commands::filter::join_for(&plan)?
            } else {
                None
            };
            explain_row(&policy, &file, row, join.as_ref(), key, read)?
        }
        (None, None) => {
            return Err(Error::Usage(
                "explain needs --row FILE:ROW or --values MAPPING".into(),
            ))
        }
    };
    print!("{}", render(&policy, &e));
    Ok(crate::error::ExitStatus::Success)
}
