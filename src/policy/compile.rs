//! Compiling a policy: the parsed YAML ([`super::raw`]) checked key by key — columns, consent
//! values, region groups and codes, rules and their conditions, tests — into a [`Policy`].
//! Every mistake is an [`Error::Policy`] naming the line and column.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::*;
use crate::error::{Error, Result};
use crate::region::{self, Region, RegionSet};

pub(super) fn syntax_error(path: &Path, e: &serde_saphyr::Error) -> Error {
    let text = e.to_string();
    // The parser's message already carries "line L column C"; keep it, but one line only and
    // in the same `file:line:column:` form as our own policy errors where we can.
    let first = text
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_owned();
    match e.location() {
        Some(loc) if loc.line() > 0 => Error::Policy {
            path: path.to_owned(),
            line: loc.line() as usize,
            column: loc.column() as usize,
            message: with_suggestion(strip_location_suffix(&first)),
        },
        _ => Error::PolicySyntax {
            path: path.to_owned(),
            message: first,
        },
    }
}

/// "unknown field `consent_value`, expected one of ..." gains "(did you mean `consent_values`?)"
/// when one expected key is a close spelling of the unknown one.
fn with_suggestion(message: String) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message;
    };
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message;
    };
    let Some(expected) = rest.strip_prefix(", expected one of ") else {
        return message;
    };
    let best = expected
        .split(", ")
        .map(|c| c.trim_matches('`'))
        .map(|c| (edit_distance(unknown, c), c))
        .min();
    match best {
        Some((d, c)) if d <= (unknown.chars().count() / 3).max(1) => {
            format!("{message} (did you mean `{c}`?)")
        }
        _ => message,
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// serde-saphyr writes "error: line L column C: message"; we print the position up front in
/// `file:line:column:` form, so keep only the message (and drop its hints about parser options).
fn strip_location_suffix(msg: &str) -> String {
    let mut m = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some(i) = rest.find(": ") {
            m = &rest[i + 2..];
        }
    }
    let m = m
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(m)
        .trim();
    m.to_owned()
}

/// Group name → (its key, its members with locations), as written.
type GroupDefs<'a> = HashMap<&'a str, (&'a Spanned<String>, Vec<(String, Location)>)>;

fn rules_for_tests(rules: &[raw::RawRule]) -> Vec<String> {
    rules.iter().map(|r| r.id.value.trim().to_owned()).collect()
}

/// What conditions are resolved against.
struct CondCtx<'a> {
    groups: &'a HashMap<String, RegionSet>,
    user_lists: &'a [String],
    has_consent: bool,
}

pub(super) struct Compiler<'a> {
    pub(super) path: &'a Path,
}

const RESERVED_RULE_IDS: [&str; 3] = ["default", "include", "exclude"];

impl Compiler<'_> {
    fn err(&self, pos: impl Into<Pos>, message: impl Into<String>) -> Error {
        let pos = pos.into();
        Error::Policy {
            path: self.path.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    pub(super) fn compile(&self, raw: raw::RawPolicy, sha256: String) -> Result<Policy> {
        let id = raw.policy.value.trim().to_owned();
        if id.is_empty() {
            return Err(self.err(raw.policy.referenced, "`policy` (the policy id) is empty"));
        }
        let version = match raw.version {
            None => None,
            Some(v) => match &v.value {
                Scalar::Str(s) => Some(s.clone()),
                Scalar::Int(i) => Some(i.to_string()),
                Scalar::Float(f) => Some(f.to_string()),
                other => {
                    return Err(self.err(
                        v.referenced,
                        format!("`version` must be a string, not {}", other.kind()),
                    ))
                }
            },
        };

        let consent_table = self.consent_table(raw.consent_table.as_ref())?;
        let columns = self.columns(&raw.columns, consent_table.as_ref())?;
        let has_consent = columns.consent.is_some()
            || consent_table.as_ref().is_some_and(|t| t.consent.is_some());
        let consent_values = self.consent_values(has_consent, raw.consent_values.as_ref())?;
        let user_lists = self.user_lists(raw.user_lists.as_ref())?;
        let needs_user = consent_table.is_some() || !user_lists.is_empty();
        if needs_user && columns.user_id.is_none() {
            return Err(self.err(
                raw.columns.referenced,
                "columns.user_id is required with consent_table or user_lists: it is the join key in the corpus",
            ));
        }
        let (groups, group_sets) = self.groups(raw.region_groups.as_ref())?;
        let default = raw.default.map(|d| d.value).unwrap_or(Action::Exclude);

        if raw.rules.value.len() > MAX_RULES {
            return Err(self.err(raw.rules.referenced, "too many rules"));
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut rules = Vec::with_capacity(raw.rules.value.len());
        for r in &raw.rules.value {
            let rid = r.id.value.trim().to_owned();
            if rid.is_empty() {
                return Err(self.err(r.id.referenced, "rule id is empty"));
            }
            if RESERVED_RULE_IDS.contains(&rid.as_str()) {
                return Err(self.err(
                    r.id.referenced,
                    format!("rule id '{rid}' is reserved; choose another id"),
                ));
            }
            if let Some(first) = seen.get(&rid) {
                return Err(self.err(
                    r.id.referenced,
                    format!(
                        "duplicate rule id '{rid}' (first used on line {})",
                        first.line
                    ),
                ));
            }
            seen.insert(rid.clone(), r.id.referenced.into());
            let ctx = CondCtx {
                groups: &group_sets,
                user_lists: &user_lists,
                has_consent,
            };
            let when = match &r.when {
                Some(c) => self.conditions(c, "if", &ctx)?,
                None => Vec::new(),
            };
            let unless = match &r.unless {
                Some(c) => self.conditions(c, "unless", &ctx)?,
                None => Vec::new(),
            };
            rules.push(Rule {
                id: rid,
                description: r.description.clone(),
                when,
                unless,
                action: r.then.value,
                pos: r.id.referenced.into(),
            });
        }

        let tests = self.tests(
            raw.tests.as_ref(),
            &rules_for_tests(&raw.rules.value),
            &user_lists,
        )?;
        Ok(Policy {
            tests,
            id,
            version,
            description: raw.description,
            path: self.path.to_owned(),
            sha256,
            columns,
            consent_values,
            consent_table,
            user_lists,
            groups,
            default,
            rules,
            text: String::new(),
        })
    }

    fn tests(
        &self,
        raw: Option<&Spanned<Vec<Spanned<raw::RawTest>>>>,
        rule_ids: &[String],
        user_lists: &[String],
    ) -> Result<Vec<PolicyTest>> {
        let mut out: Vec<PolicyTest> = Vec::new();
        for t in raw.map(|r| r.value.as_slice()).unwrap_or_default() {
            let name = t.value.name.value.trim().to_owned();
            if name.is_empty() {
                return Err(self.err(t.value.name.referenced, "test name is empty"));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(self.err(
                    t.value.name.referenced,
                    format!("duplicate test name '{name}'"),
                ));
            }
            let e = t.value.expect.value.trim();
            let expect = match e {
                "default" => Expect::Rule(RuleId::DEFAULT),
                "include" => Expect::Action(Action::Include),
                "exclude" => Expect::Action(Action::Exclude),
                id => match rule_ids.iter().position(|r| r == id) {
                    Some(i) => Expect::Rule(RuleId(i as u16)),
                    None => {
                        return Err(self.err(
                            t.value.expect.referenced,
                            format!("test '{name}' expects '{id}', which is not a rule id, default, include or exclude"),
                        ))
                    }
                },
            };
            let mut values = Vec::new();
            let mut user_in = Vec::new();
            for (k, v) in &t.value.values.value.0 {
                if k.value == "user_in" {
                    for (item, loc) in v.value.items(v.referenced) {
                        match item {
                            Scalar::Str(l) if user_lists.contains(&l) => user_in.push(l),
                            other => {
                                return Err(self.err(
                                    loc,
                                    format!(
                                        "user_in names user lists; {other} is not one of [{}]",
                                        user_lists.join(", ")
                                    ),
                                ))
                            }
                        }
                    }
                    continue;
                }
                match &v.value {
                    raw::ScalarOrSeq::One(s) => values.push((k.value.clone(), s.clone())),
                    raw::ScalarOrSeq::Many(_) => {
                        return Err(self.err(
                            v.referenced,
                            format!("test value for '{}' must be a single value", k.value),
                        ))
                    }
                }
            }
            out.push(PolicyTest {
                name,
                values,
                user_in,
                expect,
                pos: t.value.name.referenced.into(),
            });
        }
        Ok(out)
    }

    fn consent_table(
        &self,
        raw: Option<&Spanned<raw::RawConsentTable>>,
    ) -> Result<Option<ConsentTableSpec>> {
        let Some(raw) = raw else { return Ok(None) };
        let t = &raw.value;
        let mut seen: Vec<(String, Location)> = Vec::new();
        let mut name = |s: &Spanned<String>, key: &str| -> Result<String> {
            if s.value.trim().is_empty() {
                return Err(self.err(s.referenced, format!("consent_table.{key} is empty")));
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == s.value) {
                return Err(self.err(
                    s.referenced,
                    format!(
                        "snapshot column '{}' is mapped twice (also on line {})",
                        s.value,
                        first.line()
                    ),
                ));
            }
            seen.push((s.value.clone(), s.referenced));
            Ok(s.value.clone())
        };
        let key = name(&t.key, "key")?;
        let region = t.region.as_ref().map(|s| name(s, "region")).transpose()?;
        let consent = t.consent.as_ref().map(|s| name(s, "consent")).transpose()?;
        let updated_at = t
            .updated_at
            .as_ref()
            .map(|s| name(s, "updated_at"))
            .transpose()?;
        let mut extra = Vec::new();
        if let Some(e) = &t.extra {
            for s in &e.value {
                extra.push(name(s, "extra")?);
            }
        }
        Ok(Some(ConsentTableSpec {
            key,
            region,
            consent,
            updated_at,
            extra,
        }))
    }

    fn user_lists(&self, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for s in raw.map(|r| r.value.as_slice()).unwrap_or_default() {
            let n = s.value.trim();
            if n.is_empty() || n.contains('=') {
                return Err(self.err(
                    s.referenced,
                    format!("'{}' cannot be a user list name", s.value),
                ));
            }
            if out.iter().any(|o| o == n) {
                return Err(self.err(s.referenced, format!("user list '{n}' is named twice")));
            }
            out.push(n.to_owned());
        }
        Ok(out)
    }

    fn columns(
        &self,
        raw: &Spanned<raw::RawColumns>,
        table: Option<&ConsentTableSpec>,
    ) -> Result<Columns> {
        let c = &raw.value;
        let name = |s: &Option<Spanned<String>>, key: &str| -> Result<Option<String>> {
            match s {
                None => Ok(None),
                Some(s) if s.value.trim().is_empty() => {
                    Err(self.err(s.referenced, format!("columns.{key} is empty")))
                }
                Some(s) => Ok(Some(s.value.clone())),
            }
        };
        let region = name(&c.region, "region")?;
        if region.is_none() && table.is_none_or(|t| t.region.is_none()) {
            return Err(self.err(
                raw.referenced,
                "columns.region is required: the column holding each record's region \
                 (or consent_table.region when a consent snapshot provides it)",
            ));
        }
        let consent = name(&c.consent, "consent")?;
        if consent.is_some() && consent == region {
            return Err(self.err(
                c.consent.as_ref().unwrap().referenced,
                "columns.consent names the same column as columns.region",
            ));
        }
        Ok(Columns {
            record_id: name(&c.record_id, "record_id")?,
            user_id: name(&c.user_id, "user_id")?,
            region,
            consent,
        })
    }

    fn consent_values(
        &self,
        has_consent: bool,
        raw: Option<&Spanned<raw::RawConsentValues>>,
    ) -> Result<Option<ConsentValues>> {
        let Some(raw) = raw else {
            if has_consent {
                return Err(self.err(
                    Pos { line: 1, column: 1 },
                    "consent_values is required when columns.consent is set \
                     (which values mean granted and which denied)",
                ));
            }
            return Ok(None);
        };
        if !has_consent {
            return Err(self.err(
                raw.referenced,
                "consent_values is set but neither columns.consent nor consent_table.consent is",
            ));
        }
        let list = |v: &Option<Spanned<raw::ScalarOrSeq>>| -> Result<Vec<(Scalar, Pos)>> {
            let Some(v) = v else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for (s, loc) in v.value.items(v.referenced) {
                match &s {
                    Scalar::Null => {
                        return Err(self.err(
                            loc,
                            "null cannot be a consent value: a null consent is always unknown",
                        ))
                    }
                    Scalar::Float(_) => {
                        return Err(
                            self.err(loc, "consent values must be strings, booleans or integers")
                        )
                    }
                    _ => out.push((s, loc.into())),
                }
            }
            Ok(out)
        };
        let granted = list(&raw.value.granted)?;
        let denied = list(&raw.value.denied)?;
        if granted.is_empty() && denied.is_empty() {
            return Err(self.err(
                raw.referenced,
                "consent_values lists no values: give `granted` and/or `denied`",
            ));
        }
        for (d, pos) in &denied {
            if let Some((g, _)) = granted
                .iter()
                .find(|(g, _)| consent_key(g) == consent_key(d))
            {
                return Err(self.err(
                    *pos,
                    format!("consent value {d} is listed as both granted ({g}) and denied"),
                ));
            }
        }
        Ok(Some(ConsentValues {
            granted: granted.into_iter().map(|(s, _)| s).collect(),
            denied: denied.into_iter().map(|(s, _)| s).collect(),
            pos: raw.referenced.into(),
        }))
    }

    fn groups(
        &self,
        raw: Option<&Spanned<raw::OrderedMap<Spanned<String>, Spanned<raw::StrOrSeq>>>>,
    ) -> Result<(Vec<RegionGroup>, HashMap<String, RegionSet>)> {
        let mut sets: HashMap<String, RegionSet> = HashMap::new();
        sets.insert("EU".into(), region::eu());
        sets.insert("EEA".into(), region::eea());
        let Some(raw) = raw else {
            return Ok((Vec::new(), sets));
        };
        let entries = &raw.value.0;
        let mut defs: GroupDefs = HashMap::new();
        for (name, members) in entries {
            let n = name.value.as_str();
            if n == "EU" || n == "EEA" {
                return Err(self.err(
                    name.referenced,
                    format!("group '{n}' is built in and cannot be redefined"),
                ));
            }
            if n == "unknown" || n.trim().is_empty() {
                return Err(self.err(name.referenced, format!("'{n}' cannot be a group name")));
            }
            let r = region::normalize(n);
            if !r.is_unknown() {
                return Err(self.err(
                    name.referenced,
                    format!(
                        "group name '{n}' is the region code {} ({}); choose a name that is not an ISO code",
                        r.label(),
                        r.name()
                    ),
                ));
            }
            let items = members.value.items(members.referenced);
            if items.is_empty() {
                return Err(self.err(members.referenced, format!("group '{n}' is empty")));
            }
            defs.insert(n, (name, items));
        }
        fn expand(
            c: &Compiler,
            name: &str,
            defs: &GroupDefs,
            sets: &mut HashMap<String, RegionSet>,
            stack: &mut Vec<String>,
        ) -> Result<RegionSet> {
            if let Some(s) = sets.get(name) {
                return Ok(*s);
            }
            let (spanned, items) = &defs[name];
            if stack.iter().any(|s| s == name) {
                return Err(c.err(
                    spanned.referenced,
                    format!(
                        "region group '{name}' includes itself ({} -> {name})",
                        stack.join(" -> ")
                    ),
                ));
            }
            stack.push(name.to_owned());
            let mut set = RegionSet::empty();
            for (item, loc) in items {
                if defs.contains_key(item.as_str()) {
                    set.union_with(&expand(c, item, defs, sets, stack)?);
                } else {
                    set.union_with(&c.region_item(item, *loc, sets)?);
                }
            }
            stack.pop();
            sets.insert(name.to_owned(), set);
            Ok(set)
        }
        let mut groups = Vec::new();
        for (name, _) in entries {
            let set = expand(self, &name.value, &defs, &mut sets, &mut Vec::new())?;
            groups.push(RegionGroup {
                name: name.value.clone(),
                members: set,
            });
        }
        Ok((groups, sets))
    }

    /// A region code, a known group, or `unknown`.
    fn region_item(
        &self,
        item: &str,
        loc: Location,
        groups: &HashMap<String, RegionSet>,
    ) -> Result<RegionSet> {
        if let Some(set) = groups.get(item) {
            return Ok(*set);
        }
        let mut set = RegionSet::empty();
        if item == "unknown" {
            set.insert(Region::UNKNOWN);
            return Ok(set);
        }
        let r = region::normalize(item);
        if r.is_unknown() {
            let hint = groups
                .keys()
                .find(|g| g.eq_ignore_ascii_case(item))
                .map(|g| format!(" (did you mean the group '{g}'? group names are case-sensitive)"))
                .unwrap_or_default();
            return Err(self.err(
                loc,
                format!(
                    "'{item}' is neither a region code nor a region group{hint}; \
                     use an ISO 3166-1 code, a group from region_groups, EU, EEA or unknown"
                ),
            ));
        }
        set.insert(r);
        Ok(set)
    }

    fn conditions(
        &self,
        raw: &Spanned<raw::RawConditions>,
        key: &str,
        ctx: &CondCtx,
    ) -> Result<Vec<Condition>> {
        let groups = ctx.groups;
        let c = &raw.value;
        let mut out = Vec::new();
        if let Some(r) = &c.region {
            let items = r.value.items(r.referenced);
            if items.is_empty() {
                return Err(self.err(r.referenced, "region list is empty"));
            }
            let mut set = RegionSet::empty();
            let mut written = Vec::new();
            for (item, loc) in items {
                set.union_with(&self.region_item(&item, loc, groups)?);
                written.push(item);
            }
            out.push(Condition::Region { set, written });
        }
        if let Some(cs) = &c.consent {
            if !ctx.has_consent {
                return Err(self.err(
                    cs.referenced,
                    "a `consent` condition needs columns.consent (and consent_values)",
                ));
            }
            let items = cs.value.items(cs.referenced);
            if items.is_empty() {
                return Err(self.err(cs.referenced, "consent list is empty"));
            }
            let mut set = ConsentSet::default();
            for (item, loc) in items {
                let state = match item.as_str() {
                    "granted" => ConsentState::Granted,
                    "denied" => ConsentState::Denied,
                    "unknown" => ConsentState::Unknown,
                    other => {
                        return Err(self.err(
                            loc,
                            format!(
                                "consent condition '{other}' must be granted, denied or unknown"
                            ),
                        ))
                    }
                };
                set.0[state as usize] = true;
            }
            out.push(Condition::Consent(set));
        }
        if let Some(w) = &c.where_ {
            if w.value.is_empty() {
                return Err(self.err(w.referenced, "`where` list is empty"));
            }
            let mut preds = Vec::new();
            for p in &w.value {
                preds.push(self.predicate(p)?);
            }
            out.push(Condition::Where(preds));
        }
        if let Some(u) = &c.user_in {
            let items = u.value.items(u.referenced);
            if items.is_empty() {
                return Err(self.err(u.referenced, "user_in list is empty"));
            }
            let mut idx = Vec::new();
            for (name, loc) in items {
                match ctx.user_lists.iter().position(|l| *l == name) {
                    Some(i) => idx.push(i),
                    None => {
                        return Err(self.err(
                            loc,
                            format!("user list '{name}' is not declared in user_lists"),
                        ))
                    }
                }
            }
            out.push(Condition::UserIn(idx));
        }
        if out.is_empty() {
            return Err(self.err(
                raw.referenced,
                format!("`{key}` has no conditions: give region, consent and/or where"),
            ));
        }
        Ok(out)
    }

    fn predicate(&self, raw: &Spanned<raw::RawPredicate>) -> Result<Predicate> {
        let p = &raw.value;
        let column = p.column.value.clone();
        if column.trim().is_empty() {
            return Err(self.err(p.column.referenced, "`column` is empty"));
        }
        let mut ops: Vec<(PredicateOp, Location)> = Vec::new();
        let operand = |v: &Spanned<Operand>, op: &str| -> Result<Operand> {
            match &v.value {
                Operand::Literal(Scalar::Null) => Err(self.err(
                    v.referenced,
                    format!(
                        "`{op}: null` never holds (a null compares false); use `is_null: true`"
                    ),
                )),
                Operand::Column(c) if c.trim().is_empty() => {
                    Err(self.err(v.referenced, "`column` is empty"))
                }
                o => Ok(o.clone()),
            }
        };
        for (op, v) in [
            (CompareOp::Eq, &p.eq),
            (CompareOp::Ne, &p.ne),
            (CompareOp::Lt, &p.lt),
            (CompareOp::Le, &p.le),
            (CompareOp::Gt, &p.gt),
            (CompareOp::Ge, &p.ge),
        ] {
            if let Some(v) = v {
                let s = operand(v, op.as_str())?;
                if matches!(s, Operand::Literal(Scalar::Bool(_)))
                    && !matches!(op, CompareOp::Eq | CompareOp::Ne)
                {
                    return Err(self.err(
                        v.referenced,
                        format!("`{}` cannot order booleans; use eq or ne", op.as_str()),
                    ));
                }
                ops.push((PredicateOp::Compare(op, s), v.referenced));
            }
        }
        let list = |v: &Spanned<raw::ScalarOrSeq>, op: &str| -> Result<Vec<Scalar>> {
            let items = v.value.items(v.referenced);
            if items.is_empty() {
                return Err(self.err(v.referenced, format!("`{op}` list is empty")));
            }
            let mut out = Vec::new();
            for (s, loc) in items {
                if s == Scalar::Null {
                    return Err(self.err(
                        loc,
                        format!("`{op}` cannot list null (a null compares false); use `is_null`"),
                    ));
                }
                out.push(s);
            }
            Ok(out)
        };
        if let Some(v) = &p.in_ {
            ops.push((PredicateOp::In(list(v, "in")?), v.referenced));
        }
        if let Some(v) = &p.not_in {
            ops.push((PredicateOp::NotIn(list(v, "not_in")?), v.referenced));
        }
        if let Some(v) = &p.is_null {
            match v.value {
                Scalar::Bool(b) => ops.push((PredicateOp::IsNull(b), v.referenced)),
                _ => {
                    return Err(self.err(
                        v.referenced,
                        format!("`is_null` takes true or false, not {}", v.value),
                    ))
                }
            }
        }
        match ops.len() {
            0 => Err(self.err(
                raw.referenced,
                format!(
                    "predicate on '{column}' has no operator: use one of eq ne in not_in lt le gt ge is_null"
                ),
            )),
            1 => {
                let (op, loc) = ops.pop().unwrap();
                Ok(Predicate {
                    column,
                    op,
                    pos: loc.into(),
                })
            }
            _ => Err(self.err(
                ops.iter()
                    .map(|(_, l)| *l)
                    .max_by_key(|l| (l.line(), l.column()))
                    .unwrap(),
                format!(
                    "predicate on '{column}' has more than one operator; write one predicate per operator"
                ),
            )),
        }
    }
}
