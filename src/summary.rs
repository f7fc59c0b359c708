//! Run accounting: per-file and per-rule/per-region counts, `summary.json`, and the short human
//! summary printed to stderr.

use serde_json::{json, Map, Value};

use crate::policy::{Policy, RuleId};
use crate::region::{Region, REGION_COUNT};

/// Rows decided per rule and per region; added up from row groups in any order. Stored (in the
/// resume journal) with regions as sparse `[region index, kept, excluded]` triples.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "CountsRecord", try_from = "CountsRecord")]
pub struct Counts {
    /// Index `i < rules.len()` is rule `i`; the last entry is `default`.
    pub by_rule: Vec<u64>,
    /// Per region index: (kept, excluded).
    pub by_region: Vec<[u64; 2]>,
}

impl Counts {
    pub fn new(rules: usize) -> Counts {
        Counts {
            by_rule: vec![0; rules + 1],
            by_region: vec![[0; 2]; REGION_COUNT],
        }
    }

    pub fn rule_slot(&self, rule: RuleId) -> usize {
        if rule == RuleId::DEFAULT {
            self.by_rule.len() - 1
        } else {
            rule.0 as usize
        }
    }

    /// Whether these counts can be counts of a policy of `rules` rules.
    pub fn check(&self, rules: usize) -> Result<(), String> {
        if self.by_rule.len() != rules + 1 {
            return Err(format!(
                "{} rule counts for a policy of {rules} rules and a default",
                self.by_rule.len()
            ));
        }
        Ok(())
    }

    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.by_rule.iter_mut().zip(&other.by_rule) {
            *a += b;
        }
        for (a, b) in self.by_region.iter_mut().zip(&other.by_region) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsRecord {
    by_rule: Vec<u64>,
    by_region: Vec<[u64; 3]>,
}

impl From<Counts> for CountsRecord {
    fn from(c: Counts) -> CountsRecord {
        CountsRecord {
            by_rule: c.by_rule,
            by_region: c
                .by_region
                .iter()
                .enumerate()
                .filter(|(_, c)| c[0] + c[1] > 0)
                .map(|(i, c)| [i as u64, c[0], c[1]])
                .collect(),
        }
    }
}

impl TryFrom<CountsRecord> for Counts {
    type Error = String;
    fn try_from(r: CountsRecord) -> Result<Counts, String> {
        let mut by_region = vec![[0; 2]; REGION_COUNT];
        for [i, kept, excluded] in r.by_region {
            let slot = by_region
                .get_mut(i as usize)
                .ok_or_else(|| format!("region index {i} is not a region"))?;
            *slot = [kept, excluded];
        }
        Ok(Counts {
            by_rule: r.by_rule,
            by_region,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStats {
    pub rel: String,
    pub bytes: u64,
    pub rows: u64,
    pub kept: u64,
    pub excluded: u64,
    pub row_groups: u64,
    /// Rows whose user id is null or absent from the consent snapshot.
    pub unmatched: u64,
}

#[derive(Clone)]
pub struct RunSummary {
    /// The consent snapshot and user lists, when the run joined them.
    pub join: Option<std::sync::Arc<crate::join::JoinData>>,
    pub started_at: String,
    pub finished_at: String,
    pub options: Value,
    pub files: Vec<FileStats>,
    pub counts: Counts,
    pub dry_run: bool,
    /// Inputs quarantined under `--on-error skip`: (path, error).
    pub skipped: Vec<(crate::io::Location, String)>,
    /// Files whose outputs were reused from an interrupted run.
    pub resumed: usize,
}

impl RunSummary {
    pub fn totals(&self) -> (u64, u64, u64) {
        self.files.iter().fold((0, 0, 0), |(r, k, e), f| {
            (r + f.rows, k + f.kept, e + f.excluded)
        })
    }

    pub fn to_json(&self, policy: &Policy) -> Value {
        let mut by_rule = Map::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            by_rule.insert(
                rule.id.clone(),
                json!({"action": rule.action.as_str(), "rows": self.counts.by_rule[i]}),
            );
        }
        by_rule.insert(
            "default".into(),
            json!({"action": policy.default.as_str(), "rows": self.counts.by_rule[policy.rules.len()]}),
        );
        let mut by_region = Map::new();
        let order = Region::all_known().chain(std::iter::once(Region::UNKNOWN));
        for r in order {
            let [kept, excluded] = self.counts.by_region[r.index()];
            if kept + excluded > 0 {
                by_region.insert(
                    r.label().into(),
                    json!({"rows": kept + excluded, "kept": kept, "excluded": excluded}),
                );
            }
        }
        let (rows, kept, excluded) = self.totals();
        let table = self.join.as_ref().and_then(|j| j.table.as_ref());
        let mut out = json!({
            "corpusgate_version": env!("CARGO_PKG_VERSION"),
            "policy": {
                "id": policy.id,
                "version": policy.version,
                "sha256": policy.sha256,
                "path": policy.path.display().to_string(),
                "text": policy.text,
            },
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "options": self.options,
            "files": self.files.iter().map(|f| {
                let mut v = json!({
                    "path": f.rel, "bytes": f.bytes, "rows": f.rows, "kept": f.kept,
                    "excluded": f.excluded, "row_groups": f.row_groups,
                });
                if table.is_some() {
                    v["unmatched_rows"] = json!(f.unmatched);
                }
                v
            }).collect::<Vec<_>>(),
            "by_rule": by_rule,
            "by_region": by_region,
            "totals": {"files": self.files.len(), "rows": rows, "kept": kept, "excluded": excluded},
        });
        out["skipped"] = Value::Array(
            self.skipped
                .iter()
                .map(|(p, e)| json!({"path": p.to_string(), "error": e}))
                .collect(),
        );
        if self.resumed > 0 {
            out["resumed_files"] = json!(self.resumed);
        }
        if let Some(t) = table {
            out["consent_table"] = json!({
                "path": t.info.path.to_string(),
                "files": t.info.files,
                "rows": t.info.rows,
                "distinct_keys": t.info.distinct,
                "sha256": t.info.sha256,
                "unmatched_rows": self.files.iter().map(|f| f.unmatched).sum::<u64>(),
            });
        }
        if let Some(j) = &self.join {
            if !j.lists.is_empty() {
                let mut lists = Map::new();
                for l in &j.lists {
                    lists.insert(
                        l.name.clone(),
                        json!({
                            "path": l.info.path.to_string(),
                            "rows": l.info.rows,
                            "distinct": l.info.distinct,
                            "sha256": l.info.sha256,
                        }),
                    );
                }
                out["user_lists"] = Value::Object(lists);
            }
        }
        out
    }

    /// A few lines for a person reading the job log.
    pub fn human(&self, policy: &Policy, output: Option<&crate::io::Location>) -> String {
        let (rows, kept, excluded) = self.totals();
        let pct = |n: u64| {
            if rows == 0 {
                0.0
            } else {
                n as f64 * 100.0 / rows as f64
            }
        };
        let mut s = format!(
            "corpusgate: policy {} ({}) over {} file{}, {} rows: kept {} ({:.1}%), excluded {} ({:.1}%)\n",
            policy.id,
            policy.sha256.get(..12).unwrap_or(&policy.sha256),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            group(rows),
            group(kept),
            pct(kept),
            group(excluded),
            pct(excluded),
        );
        let mut parts = Vec::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            parts.push(format!(
                "{} {} {}d",
                rule.id,
                group(self.counts.by_rule[i]),
                rule.action.as_str()
            ));
        }
        parts.push(format!(
            "default {} {}d",
            group(self.counts.by_rule[policy.rules.len()]),
            policy.default.as_str()
        ));
        s.push_str(&format!("  by rule: {}\n", parts.join(", ")));
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "  skipped {} unreadable input{} (see summary.json): {}\n",
                self.skipped.len(),
                if self.skipped.len() == 1 { "" } else { "s" },
                self.skipped
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.resumed > 0 {
            s.push_str(&format!(
                "  resumed: reused the outputs of {} file{} completed by the interrupted run\n",
                self.resumed,
                if self.resumed == 1 { "" } else { "s" }
            ));
        }
        match output {
            Some(o) if !self.dry_run => {
                s.push_str(&format!("  output: {o} (data/, excluded/, summary.json)\n"))
            }
            _ => s.push_str("  dry run: nothing written\n"),
        }
        s
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Now as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
