//! The policy: a reviewed YAML file that says which records may be used for training.
//!
//! [`Policy::load`] reads the file, checks every key, code, group and rule, and returns a
//! validated [`Policy`]; any mistake is an [`Error::Policy`] naming the line and column. Later
//! stages (the per-file decider, `check`'s output) assume the policy is valid.

mod compile;
mod raw;
mod render;

use std::path::{Path, PathBuf};

use serde_saphyr::Location;
use sha2::{Digest, Sha256};

pub use raw::{Action, Operand, Scalar};

use crate::error::{Error, Result};
use crate::region::RegionSet;

use compile::{syntax_error, Compiler};

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
        let location = crate::io::Location::from_arg("--policy", path)?;
        let bytes = crate::io::read_to_vec(&location)
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
