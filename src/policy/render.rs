//! `check`'s output: the policy normalised — groups expanded, rules in order — as YAML that is
//! itself a valid policy deciding exactly as the original.

use std::fmt::Write;

use super::{Condition, Operand, Policy, PredicateOp, Scalar};
use crate::region::{self, RegionSet};

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

fn scalar(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        // Debug keeps a decimal point, so the value reads back as a number, not an integer.
        Scalar::Float(f) => format!("{f:?}"),
        Scalar::Str(s) => q(s),
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

fn codes(set: &RegionSet) -> String {
    list(set.iter().map(|r| q(r.code().unwrap_or("unknown"))))
}

fn conditions(out: &mut String, key: &str, conds: &[Condition], user_lists: &[String]) {
    let _ = writeln!(out, "    {key}:");
    for c in conds {
        match c {
            Condition::Region { set, written } => {
                let _ = writeln!(out, "      # region as written: {}", written.join(", "));
                let _ = writeln!(out, "      region: {}", codes(set));
            }
            Condition::Consent(set) => {
                let states = ["unknown", "granted", "denied"]
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| set.0[*i])
                    .map(|(_, s)| (*s).to_owned());
                let _ = writeln!(out, "      consent: {}", list(states));
            }
            Condition::UserIn(lists) => {
                let _ = writeln!(
                    out,
                    "      user_in: {}",
                    list(lists.iter().map(|i| q(&user_lists[*i])))
                );
            }
            Condition::Where(preds) => {
                let _ = writeln!(out, "      where:");
                for p in preds {
                    let op = match &p.op {
                        PredicateOp::Compare(op, Operand::Literal(v)) => {
                            format!("{}: {}", op.as_str(), scalar(v))
                        }
                        PredicateOp::Compare(op, Operand::Column(c)) => {
                            format!("{}: {{column: {}}}", op.as_str(), q(c))
                        }
                        PredicateOp::In(vs) => format!("in: {}", list(vs.iter().map(scalar))),
                        PredicateOp::NotIn(vs) => {
                            format!("not_in: {}", list(vs.iter().map(scalar)))
                        }
                        PredicateOp::IsNull(b) => format!("is_null: {b}"),
                    };
                    let _ = writeln!(out, "        - {{column: {}, {op}}}", q(&p.column));
                }
            }
        }
    }
}

pub(super) fn render(p: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# normalised by corpusgate {}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "# sha256 of {}: {}", p.path.display(), p.sha256);
    let _ = writeln!(out, "policy: {}", q(&p.id));
    if let Some(v) = &p.version {
        let _ = writeln!(out, "version: {}", q(v));
    }
    if let Some(d) = &p.description {
        let _ = writeln!(out, "description: {}", q(d));
    }
    let _ = writeln!(out, "columns:");
    let c = &p.columns;
    for (k, v) in [
        ("record_id", &c.record_id),
        ("user_id", &c.user_id),
        ("region", &c.region),
        ("consent", &c.consent),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "  {k}: {}", q(v));
        }
    }
    if let Some(cv) = &p.consent_values {
        let _ = writeln!(out, "consent_values:");
        let _ = writeln!(out, "  granted: {}", list(cv.granted.iter().map(scalar)));
        let _ = writeln!(out, "  denied: {}", list(cv.denied.iter().map(scalar)));
    }
    if let Some(t) = &p.consent_table {
        let _ = writeln!(out, "consent_table:");
        let _ = writeln!(out, "  key: {}", q(&t.key));
        for (k, v) in [
            ("region", &t.region),
            ("consent", &t.consent),
            ("updated_at", &t.updated_at),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "  {k}: {}", q(v));
            }
        }
        if !t.extra.is_empty() {
            let _ = writeln!(out, "  extra: {}", list(t.extra.iter().map(|e| q(e))));
        }
    }
    if !p.user_lists.is_empty() {
        let _ = writeln!(
            out,
            "user_lists: {}",
            list(p.user_lists.iter().map(|l| q(l)))
        );
    }
    let _ = writeln!(out, "# built-in EU: {}", codes(&region::eu()));
    let _ = writeln!(out, "# built-in EEA: {}", codes(&region::eea()));
    if !p.groups.is_empty() {
        let _ = writeln!(out, "region_groups:");
        for g in &p.groups {
            let _ = writeln!(out, "  {}: {}", q(&g.name), codes(&g.members));
        }
    }
    let _ = writeln!(out, "default: {}", p.default.as_str());
    if p.rules.is_empty() {
        let _ = writeln!(out, "rules: []");
    } else {
        let _ = writeln!(out, "rules:");
    }
    for r in &p.rules {
        let _ = writeln!(out, "  - id: {}", q(&r.id));
        if let Some(d) = &r.description {
            let _ = writeln!(out, "    description: {}", q(d));
        }
        if !r.when.is_empty() {
            conditions(&mut out, "if", &r.when, &p.user_lists);
        }
        if !r.unless.is_empty() {
            conditions(&mut out, "unless", &r.unless, &p.user_lists);
        }
        let _ = writeln!(out, "    then: {}", r.action.as_str());
    }
    out
}
