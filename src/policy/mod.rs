//! The policy: a reviewed YAML file that says which records may be used for training.
//!
//! [`Policy::load`] reads the file, checks every key, code, group and rule, and returns a
//! validated [`Policy`]; any mistake is an [`Error::Policy`] naming the line and column. Later
//! stages (the per-file decider, `check`'s output) assume the policy is valid.

mod raw;
mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

pub use raw::{Action, Operand, Scalar};

use crate::error::{Error, Result};
use crate::region::{self, Region, RegionSet};

/// A 1-based position in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Location> for Pos {
    fn from(l: Location) -> Self {
        Pos {
            line: l.line() as usize,
            column: l.column() as usize,
        }
    }
}

/// Dataset columns the rules read.
#[derive(Debug, Clone)]
pub struct Columns {
    pub record_id: Option<String>,
    pub user_id: Option<String>,
    /// `None` only when the consent table provides the region.
    pub region: Option<String>,
    pub consent: Option<String>,
}

/// `consent_table:`: the snapshot's key column and the fields it provides. A field mapped here
/// comes from the snapshot; the corpus column of the same field is ignored.
#[derive(Debug, Clone)]
pub struct ConsentTableSpec {
    pub key: String,
    pub region: Option<String>,
    pub consent: Option<String>,
    pub updated_at: Option<String>,
    pub extra: Vec<String>,
}

impl ConsentTableSpec {
    /// Every snapshot column read, key first.
    pub fn columns(&self) -> Vec<&str> {
        let mut v = vec![self.key.as_str()];
        v.extend(self.region.as_deref());
        v.extend(self.consent.as_deref());
        v.extend(self.updated_at.as_deref());
        v.extend(self.extra.iter().map(String::as_str));
        v
    }
}

/// Consent values as listed; matched by type against the consent column.
#[derive(Debug, Clone)]
pub struct ConsentValues {
    pub granted: Vec<Scalar>,
    pub denied: Vec<Scalar>,
    pub pos: Pos,
}

/// A consent state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConsentState {
    Unknown = 0,
    Granted = 1,
    Denied = 2,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Unknown => "unknown",
            ConsentState::Granted => "granted",
            ConsentState::Denied => "denied",
        }
    }
}

/// A set of consent states, indexed by `ConsentState as u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsentSet(pub [bool; 3]);

impl ConsentSet {
    pub fn contains(&self, s: ConsentState) -> bool {
        self.0[s as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
        }
    }
}

/// What a `where` predicate tests.
#[derive(Debug, Clone, PartialEq)]
pub enum PredicateOp {
    Compare(CompareOp, Operand),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    /// `is_null: true` (or `false`: is not null).
    IsNull(bool),
}

#[derive(Debug, Clone)]
pub struct Predicate {
    pub column: String,
    pub op: PredicateOp,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum Condition {
    /// Region in the set; `written` keeps the codes and groups as the policy names them.
    Region {
        set: RegionSet,
        written: Vec<String>,
    },
    Consent(ConsentSet),
    Where(Vec<Predicate>),
    /// The user id is in any of these lists (indexes into `Policy::user_lists`).
    UserIn(Vec<usize>),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    /// All must hold (empty: always).
    pub when: Vec<Condition>,
    /// If non-empty, the rule does not match when all of these hold.
    pub unless: Vec<Condition>,
    pub action: Action,
    pub pos: Pos,
}

/// What a policy test expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Rule(RuleId),
    Action(Action),
}

/// A policy's own test case: typed column values and the expected decision.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    pub name: String,
    /// Column name to value; `user_in` lists the user lists the row's user is in.
    pub values: Vec<(String, Scalar)>,
    pub user_in: Vec<String>,
    pub expect: Expect,
    pub pos: Pos,
}

/// A user-defined region group, fully expanded.
#[derive(Debug, Clone)]
pub struct RegionGroup {
    pub name: String,
    pub members: RegionSet,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub path: PathBuf,
    /// Hex SHA-256 of the policy file's bytes.
    pub sha256: String,
    pub columns: Columns,
    pub consent_values: Option<ConsentValues>,
    pub consent_table: Option<ConsentTableSpec>,
    pub user_lists: Vec<String>,
    pub groups: Vec<RegionGroup>,
    pub default: Action,
    pub rules: Vec<Rule>,
    pub tests: Vec<PolicyTest>,
    /// The policy file's text, as read.
    pub text: String,
}

/// Rule index into `Policy::rules`; `RuleId::DEFAULT` means no rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u16);

impl RuleId {
    pub const DEFAULT: RuleId = RuleId(u16::MAX);
}

/// Most rules a policy may hold (rule ids are `u16`, one value reserved for `default`).
pub const MAX_RULES: usize = u16::MAX as usize - 1;

impl Policy {
    /// Read and validate a policy file.
    pub fn load(path: &Path) -> Result<Policy> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Usage(format!("cannot read policy {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| Error::PolicySyntax {
            path: path.to_owned(),
            message: "not UTF-8 text".into(),
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        Self::from_text(path, &text, sha256)
    }

    /// Validate policy text; `path` is only used in messages.
    pub fn from_text(path: &Path, text: &str, sha256: String) -> Result<Policy> {
        let raw = raw::parse(text).map_err(|e| syntax_error(path, &e))?;
        let mut p = Compiler { path }.compile(raw, sha256)?;
        p.text = text.to_owned();
        Ok(p)
    }

    /// The action of a rule id (the default action for `RuleId::DEFAULT`).
    pub fn action_of(&self, rule: RuleId) -> Action {
        if rule == RuleId::DEFAULT {
            self.default
        } else {
            self.rules[rule.0 as usize].action
        }
    }

    /// The name of a rule id in outputs: its id, or `default`.
    pub fn rule_name(&self, rule: RuleId) -> &str {
        if rule == RuleId::DEFAULT {
            "default"
        } else {
            &self.rules[rule.0 as usize].id
        }
    }

    /// Whether a field comes from the consent table rather than the corpus.
    pub fn from_snapshot(&self, column: &str) -> bool {
        self.consent_table
            .as_ref()
            .is_some_and(|t| t.extra.iter().any(|e| e == column))
    }

    /// The region column read from the corpus, unless the snapshot provides the region.
    pub fn corpus_region(&self) -> Option<&str> {
        match &self.consent_table {
            Some(t) if t.region.is_some() => None,
            _ => self.columns.region.as_deref(),
        }
    }

    /// The consent column read from the corpus, unless the snapshot provides consent.
    pub fn corpus_consent(&self) -> Option<&str> {
        match &self.consent_table {
            Some(t) if t.consent.is_some() => None,
            _ => self.columns.consent.as_deref(),
        }
    }

    /// Whether rows must be looked up by user id (a consent table or user lists).
    pub fn needs_user_id(&self) -> bool {
        self.consent_table.is_some() || !self.user_lists.is_empty()
    }

    /// Every corpus column the decision reads, deduplicated, in a stable order.
    pub fn decision_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |c: &str| {
            if !out.iter().any(|o| o == c) {
                out.push(c.to_owned());
            }
        };
        if let Some(c) = self.corpus_region() {
            push(c);
        }
        if let Some(c) = self.corpus_consent() {
            push(c);
        }
        if self.needs_user_id() {
            if let Some(c) = &self.columns.user_id {
                push(c);
            }
        }
        for rule in &self.rules {
            for cond in rule.when.iter().chain(&rule.unless) {
                if let Condition::Where(preds) = cond {
                    for p in preds {
                        if !self.from_snapshot(&p.column) {
                            push(&p.column);
                        }
                        if let PredicateOp::Compare(_, Operand::Column(c)) = &p.op {
                            if !self.from_snapshot(c) {
                                push(c);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The normalised policy as YAML, as `check` prints it.
    pub fn to_normalized_yaml(&self) -> String {
        render::render(self)
    }
}

/// Typed column values, and the user lists the row's user is in.
pub type ColumnValues = (Vec<(String, Scalar)>, Vec<String>);

/// Parse a YAML flow mapping of column values (`explain --values`): typed scalars, and
/// `user_in: [lists]`.
pub fn parse_values(text: &str) -> std::result::Result<ColumnValues, String> {
    let map = raw::parse_values(text).map_err(|e| {
        let m = e.to_string();
        m.lines().next().unwrap_or("invalid YAML").to_owned()
    })?;
    let mut values = Vec::new();
    let mut user_in = Vec::new();
    for (k, v) in map.0 {
        match (k.as_str(), v) {
            ("user_in", raw::ScalarOrSeq::One(Scalar::Str(l))) => user_in.push(l),
            ("user_in", raw::ScalarOrSeq::Many(ls)) => {
                for l in ls {
                    match l.value {
                        Scalar::Str(l) => user_in.push(l),
                        other => return Err(format!("user_in lists user list names, not {other}")),
                    }
                }
            }
            (_, raw::ScalarOrSeq::One(s)) => values.push((k, s)),
            (_, raw::ScalarOrSeq::Many(_)) => {
                return Err(format!("the value of '{k}' must be a single value"))
            }
        }
    }
    Ok((values, user_in))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn syntax_error(path: &Path, e: &serde_saphyr::Error) -> Error {
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
            message: strip_location_suffix(&first),
        },
        _ => Error::PolicySyntax {
            path: path.to_owned(),
            message: first,
        },
    }
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

struct Compiler<'a> {
    path: &'a Path,
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

    fn compile(&self, raw: raw::RawPolicy, sha256: String) -> Result<Policy> {
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

/// How consent values are compared: strings trimmed and case-folded, others as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsentKey {
    Str(String),
    Bool(bool),
    Int(i128),
}

pub fn consent_key(s: &Scalar) -> Option<ConsentKey> {
    match s {
        Scalar::Str(v) => Some(ConsentKey::Str(fold_consent_str(v))),
        Scalar::Bool(b) => Some(ConsentKey::Bool(*b)),
        Scalar::Int(i) => Some(ConsentKey::Int(*i)),
        _ => None,
    }
}

pub fn fold_consent_str(s: &str) -> String {
    s.trim().to_lowercase()
}

#[cfg(test)]
mod tests;
