//! Run accounting: per-file and per-rule/per-region counts, `summary.json`, and the short human
//! summary printed to stderr.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::io::Location;

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
    /// Rows per (rule slot, region index): which rule decided how many rows of which region.
    pub by_rule_region: BTreeMap<(u32, u16), u64>,
}

impl Counts {
    pub fn new(rules: usize) -> Counts {
        Counts {
            by_rule: vec![0; rules + 1],
            by_region: vec![[0; 2]; REGION_COUNT],
            by_rule_region: BTreeMap::new(),
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
        for (k, n) in &other.by_rule_region {
            *self.by_rule_region.entry(*k).or_default() += n;
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsRecord {
    by_rule: Vec<u64>,
    by_region: Vec<[u64; 3]>,
    by_rule_region: Vec<[u64; 3]>,
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
            by_rule_region: c
                .by_rule_region
                .iter()
                .map(|((r, g), n)| [u64::from(*r), u64::from(*g), *n])
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
        let mut by_rule_region = BTreeMap::new();
        for [rule, region, n] in r.by_rule_region {
            if region as usize >= REGION_COUNT || rule as usize >= r.by_rule.len() {
                return Err(format!("rule {rule} and region {region} are not counted"));
            }
            by_rule_region.insert((rule as u32, region as u16), n);
        }
        Ok(Counts {
            by_rule: r.by_rule,
            by_region,
            by_rule_region,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStats {
    pub rel: String,
    pub bytes: u64,
    /// SHA-256 of the input's footer.
    pub footer_sha256: String,
    pub rows: u64,
    pub kept: u64,
    pub excluded: u64,
    pub row_groups: u64,
    /// Rows whose user id is null or absent from the consent snapshot.
    pub unmatched: u64,
    /// Rows kept of each row group (what `--reuse` needs to find a row group's output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_per_row_group: Vec<u64>,
    /// Row groups copied from the input as they are (every row kept, pages and statistics
    /// unchanged). `--reuse` must know: such a row group's statistics are written back as they
    /// were read, an encoded one's as the writer writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_through_row_groups: Vec<u64>,
    /// Row groups whose output was copied from PREV_OUT (`--reuse`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub row_groups_from_previous: u64,
    /// Row groups spliced from PREV_OUT's pages and new ones (their large columns, their
    /// manifest or both), and the pages copied (`--reuse`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub row_groups_spliced: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pages_from_previous: u64,
    /// Pages of PREV_OUT's manifests copied into this file's (`--reuse`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub manifest_pages_from_previous: u64,
    /// Rows whose decision was PREV_OUT's record, not decided again (`--reuse`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decisions_reused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone)]
pub struct RunSummary {
    /// The consent snapshot and user lists, when the run joined them.
    pub join: Option<crate::join::JoinRecord>,
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
    /// `--reuse PREV_OUT`: what was taken from it.
    pub reuse: Option<ReuseRecord>,
    /// `--target-file-size`/`--row-group-size`: the data files written, when laid out.
    pub parts: Option<Vec<crate::layout::PartRecord>>,
}

/// `--reuse`: what the run took from a previous output (`summary.json`'s `reuse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReuseRecord {
    pub from: String,
    pub files_reused: u64,
    pub row_groups_reused: u64,
    pub row_groups_recomputed: u64,
    /// Bytes of the reused outputs (data and manifests).
    pub bytes_reused: u64,
    /// Of the row groups recomputed, those spliced from PREV_OUT's pages (their large columns,
    /// their manifest or both), and the pages of large columns copied so.
    #[serde(default)]
    pub row_groups_spliced: u64,
    #[serde(default)]
    pub pages_reused: u64,
    /// Pages of PREV_OUT's manifests copied into the manifests of the row groups recomputed
    /// (the rest of such a manifest row group encoded afresh).
    #[serde(default)]
    pub manifest_pages_reused: u64,
    /// Of the rows of the row groups recomputed, those whose decision was PREV_OUT's record
    /// (only the rows of changed members are decided again).
    #[serde(default)]
    pub decisions_reused: u64,
    /// Row groups whose user ids were read to find the rows of changed members: those that
    /// PREV_OUT's member filter could not rule out.
    #[serde(default)]
    pub row_groups_searched: u64,
    /// Members whose snapshot row or list membership changed since PREV_OUT (`None` when
    /// PREV_OUT could not be used).
    pub changed_keys: Option<u64>,
    /// Why nothing was reused, when PREV_OUT could not vouch for its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl RunSummary {
    pub fn totals(&self) -> (u64, u64, u64) {
        self.files.iter().fold((0, 0, 0), |(r, k, e), f| {
            (r + f.rows, k + f.kept, e + f.excluded)
        })
    }

    /// What summary.json records about this run.
    pub fn to_file(&self, policy: &Policy) -> SummaryFile {
        let mut by_rule = IndexMap::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            by_rule.insert(
                rule.id.clone(),
                RuleRecord {
                    action: rule.action.as_str().into(),
                    rows: self.counts.by_rule[i],
                },
            );
        }
        by_rule.insert(
            "default".into(),
            RuleRecord {
                action: policy.default.as_str().into(),
                rows: self.counts.by_rule[policy.rules.len()],
            },
        );
        let mut by_region = IndexMap::new();
        let order = Region::all_known().chain(std::iter::once(Region::UNKNOWN));
        for r in order {
            let [kept, excluded] = self.counts.by_region[r.index()];
            if kept + excluded > 0 {
                by_region.insert(
                    r.label().into(),
                    RegionRecord {
                        rows: kept + excluded,
                        kept,
                        excluded,
                    },
                );
            }
        }
        let (rows, kept, excluded) = self.totals();
        let table = self.join.as_ref().and_then(|j| j.table.as_ref());
        let lists = self
            .join
            .as_ref()
            .map(|j| &j.lists)
            .filter(|l| !l.is_empty());
        let mut by_rule_and_region: IndexMap<String, IndexMap<String, u64>> = IndexMap::new();
        for ((slot, region), n) in &self.counts.by_rule_region {
            let rule = match policy.rules.get(*slot as usize) {
                Some(r) => r.id.clone(),
                None => "default".to_owned(),
            };
            by_rule_and_region
                .entry(rule)
                .or_default()
                .insert(Region::from_index(*region as usize).label().into(), *n);
        }
        order_rule_regions(&mut by_rule_and_region, &by_rule);
        SummaryFile {
            format: SUMMARY_FORMAT,
            corpusgate_version: env!("CARGO_PKG_VERSION").into(),
            policy: PolicyRecord {
                id: policy.id.clone(),
                version: policy.version.clone(),
                sha256: policy.sha256.clone(),
                path: policy.path.display().to_string(),
                text: policy.text.clone(),
            },
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            dry_run: self.dry_run,
            options: self.options.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileRecord {
                    path: f.rel.clone(),
                    bytes: f.bytes,
                    footer_sha256: Some(f.footer_sha256.clone()),
                    rows: f.rows,
                    kept: f.kept,
                    excluded: f.excluded,
                    row_groups: f.row_groups,
                    unmatched_rows: table.is_some().then_some(f.unmatched),
                })
                .collect(),
            by_rule,
            by_region,
            by_rule_and_region: Some(by_rule_and_region),
            totals: Totals {
                files: self.files.len() as u64,
                rows,
                kept,
                excluded,
            },
            skipped: self
                .skipped
                .iter()
                .map(|(p, e)| SkippedRecord {
                    path: p.to_string(),
                    error: e.clone(),
                })
                .collect(),
            resumed_files: (self.resumed > 0).then_some(self.resumed as u64),
            reuse: self.reuse.clone(),
            data_files: self.parts.clone(),
            consent_table: table.map(|t| ConsentRecord {
                path: t.path.to_string(),
                files: t.files as u64,
                rows: t.rows,
                distinct_keys: t.distinct,
                sha256: t.sha256.clone(),
                unmatched_rows: self.files.iter().map(|f| f.unmatched).sum(),
            }),
            user_lists: lists.map(|lists| {
                lists
                    .iter()
                    .map(|(name, l)| {
                        (
                            name.clone(),
                            ListRecord {
                                path: l.path.to_string(),
                                rows: l.rows,
                                distinct: l.distinct,
                                sha256: l.sha256.clone(),
                            },
                        )
                    })
                    .collect()
            }),
            shards: None,
            plan_created_at: None,
            bytes_fetched: Some(crate::io::object::bytes_fetched()).filter(|&n| n > 0),
        }
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
        if let Some(r) = &self.reuse {
            s.push_str(&match &r.fallback {
                Some(why) => format!("  reuse: nothing reused from {}: {why}\n", r.from),
                None => format!(
                    "  reuse: took the outputs of {} of {} file{} from {} ({} changed member{})\n",
                    r.files_reused,
                    self.files.len(),
                    if self.files.len() == 1 { "" } else { "s" },
                    r.from,
                    r.changed_keys.unwrap_or(0),
                    if r.changed_keys == Some(1) { "" } else { "s" },
                ),
            });
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
                s.push_str(&format!("  output: {o} (data/, excluded/, summary.json)\n"));
                if let Some(parts) = &self.parts {
                    let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
                    let row_groups: u64 = parts.iter().map(|p| p.row_groups).sum();
                    s.push_str(&format!(
                        "  data laid out: {} file{} ({}), {} row group{}\n",
                        parts.len(),
                        if parts.len() == 1 { "" } else { "s" },
                        crate::error::Bytes(bytes),
                        group(row_groups),
                        if row_groups == 1 { "" } else { "s" },
                    ));
                }
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

/// Rules in the policy's order (as `by_rule`), regions by code with `unknown` last.
pub fn order_rule_regions(
    m: &mut IndexMap<String, IndexMap<String, u64>>,
    by_rule: &IndexMap<String, RuleRecord>,
) {
    m.sort_by(|a, _, b, _| by_rule.get_index_of(a).cmp(&by_rule.get_index_of(b)));
    for regions in m.values_mut() {
        regions.sort_by(|a, _, b, _| (a == "unknown", a).cmp(&(b == "unknown", b)));
    }
}

/// The format of summary.json. corpusgate 0.1 wrote no `format` key; its summaries are format 1.
pub const SUMMARY_FORMAT: u32 = 2;

fn legacy_format() -> u32 {
    1
}

/// summary.json. Keys users read keep their names; a missing or mistyped one is an error
/// naming the file and the key ([`SummaryFile::load`]). Keys a later version adds are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    #[serde(default = "legacy_format")]
    pub format: u32,
    pub corpusgate_version: String,
    pub policy: PolicyRecord,
    pub started_at: String,
    pub finished_at: String,
    pub dry_run: bool,
    /// The run's options, as given (filter's and a plan's differ; recorded, not read back).
    pub options: Value,
    pub files: Vec<FileRecord>,
    pub by_rule: IndexMap<String, RuleRecord>,
    pub by_region: IndexMap<String, RegionRecord>,
    /// Rows each rule decided, per region (absent in summaries of corpusgate 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_rule_and_region: Option<IndexMap<String, IndexMap<String, u64>>>,
    pub totals: Totals,
    pub skipped: Vec<SkippedRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_table: Option<ConsentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_lists: Option<IndexMap<String, ListRecord>>,
    /// A committed plan: how many shards ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_created_at: Option<String>,
    /// Bytes received from object stores, when the run read any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_fetched: Option<u64>,
    /// A laid-out run (`--target-file-size`, `--row-group-size`): every file under `data/`,
    /// with the inputs whose kept rows it holds. Absent: `data/` holds one file per input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_files: Option<Vec<crate::layout::PartRecord>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub id: String,
    pub version: Option<String>,
    pub sha256: String,
    pub path: String,
    /// The policy file as it was used.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The input's name relative to its argument (its outputs' name).
    pub path: String,
    pub bytes: u64,
    /// SHA-256 of the input's footer (with `bytes`, the input's identity for `diff`; absent in
    /// summaries of corpusgate 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer_sha256: Option<String>,
    pub rows: u64,
    pub kept: u64,
    pub excluded: u64,
    pub row_groups: u64,
    /// With a consent snapshot: rows whose user is not in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub action: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRecord {
    pub rows: u64,
    pub kept: u64,
    pub excluded: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub files: u64,
    pub rows: u64,
    pub kept: u64,
    pub excluded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub path: String,
    pub files: u64,
    pub rows: u64,
    pub distinct_keys: u64,
    pub sha256: String,
    pub unmatched_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRecord {
    pub path: String,
    pub rows: u64,
    pub distinct: u64,
    pub sha256: String,
}

impl SummaryFile {
    /// Read `OUT_DIR/summary.json`.
    pub fn load(out_dir: &Location) -> Result<SummaryFile> {
        let location = out_dir.join("summary.json");
        let text = crate::io::read_to_vec(&location).map_err(|e| {
            Error::Usage(format!(
                "{location}: {e}; is {out_dir} a corpusgate filter output?"
            ))
        })?;
        let s: SummaryFile = serde_json::from_slice(&text).map_err(|e| Error::State {
            path: location.clone(),
            message: e.to_string(),
        })?;
        if s.format > SUMMARY_FORMAT {
            return Err(Error::State {
                path: location,
                message: format!(
                    "summary format {} is newer than this corpusgate reads ({SUMMARY_FORMAT})",
                    s.format
                ),
            });
        }
        Ok(s)
    }

    /// The JSON text written to summary.json.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("summaries serialise");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> SummaryFile {
        SummaryFile {
            format: SUMMARY_FORMAT,
            corpusgate_version: "0".into(),
            policy: PolicyRecord {
                id: "p".into(),
                version: None,
                sha256: "ab".into(),
                path: "p.yaml".into(),
                text: "policy: p".into(),
            },
            started_at: "a".into(),
            finished_at: "b".into(),
            dry_run: false,
            options: serde_json::json!({"threads": 2}),
            files: vec![],
            by_rule: IndexMap::from([(
                "default".to_owned(),
                RuleRecord {
                    action: "exclude".into(),
                    rows: 0,
                },
            )]),
            by_region: IndexMap::new(),
            by_rule_and_region: None,
            totals: Totals::default(),
            skipped: vec![],
            resumed_files: None,
            reuse: None,
            consent_table: None,
            user_lists: None,
            shards: None,
            plan_created_at: None,
            bytes_fetched: None,
            data_files: None,
        }
    }

    #[test]
    fn a_summary_reads_back_and_a_missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let out = Location::local(dir.path());
        std::fs::write(dir.path().join("summary.json"), file().to_text()).unwrap();
        assert_eq!(SummaryFile::load(&out).unwrap(), file());
        let mut v = serde_json::to_value(file()).unwrap();
        v["totals"].as_object_mut().unwrap().remove("kept");
        std::fs::write(dir.path().join("summary.json"), v.to_string()).unwrap();
        let e = SummaryFile::load(&out).unwrap_err();
        assert_eq!(e.exit_status(), crate::error::ExitStatus::Usage);
        assert!(e.to_string().contains("missing field `kept`"), "{e}");
        // corpusgate 0.1 wrote no format key.
        v["totals"]["kept"] = serde_json::json!(0);
        v.as_object_mut().unwrap().remove("format");
        std::fs::write(dir.path().join("summary.json"), v.to_string()).unwrap();
        assert_eq!(SummaryFile::load(&out).unwrap().format, 1);
    }

    #[test]
    fn the_short_hash_of_any_policy_hash_is_safe() {
        let mut policy = crate::policy::Policy::from_text(
            std::path::Path::new("p.yaml"),
            "policy: p\ncolumns: {region: c}\nrules: []\n",
            "abc".into(),
        )
        .unwrap();
        let s = RunSummary {
            join: None,
            started_at: String::new(),
            finished_at: String::new(),
            options: Value::Null,
            files: vec![],
            counts: Counts::new(0),
            dry_run: true,
            skipped: vec![],
            resumed: 0,
            reuse: None,
            parts: None,
        };
        assert!(s.human(&policy, None).contains("(abc)"));
        policy.sha256 = format!("a{}", "é".repeat(20));
        assert!(s.human(&policy, None).contains("over 0 files"));
    }
}
