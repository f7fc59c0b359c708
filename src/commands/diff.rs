//! `diff`: what changed between two filter runs. Runs are matched by input file (its output
//! name): an input only one run read is listed as such, with its rows, never counted as kept or
//! excluded; an input whose identity (size and footer SHA-256) differs between the runs is
//! flagged, not row-matched. Rows of the inputs both runs read unchanged are matched by row
//! number through the two manifests: excluded only by the new run is newly excluded, only by the
//! old run newly kept; both are counted per rule and region. The header names both runs'
//! policies and the snapshots and lists they joined.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;
use serde_json::json;

use crate::error::{Error, Result};
use crate::io::{open_parquet, Location, ReadOptions};
use crate::summary::{group, FileRecord, SummaryFile};

/// (rule, region) of every excluded row of one input, by row number.
type Excluded = HashMap<i64, (String, Option<String>)>;

fn read_manifest(location: &Location) -> Result<Excluded> {
    let err = |m: String| Error::invalid(location.clone(), None, m);
    let pq = open_parquet(location, ReadOptions::default())?;
    let mut out = HashMap::new();
    pq.read_all(Some(&["row", "rule", "region"]), 64 * 1024, &mut |batch| {
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .cloned()
                .ok_or_else(|| err(format!("manifest has no column '{n}'")))
        };
        let (row, rule, region) = (col("row")?, col("rule")?, col("region")?);
        let (Some(row), Some(rule), Some(region)) = (
            row.as_primitive_opt::<Int64Type>(),
            rule.as_string_opt::<i32>(),
            region.as_string_opt::<i32>(),
        ) else {
            return Err(err("manifest columns have unexpected types".into()));
        };
        for i in 0..batch.num_rows() {
            out.insert(
                row.value(i),
                (
                    rule.value(i).to_owned(),
                    region.is_valid(i).then(|| region.value(i).to_owned()),
                ),
            );
        }
        Ok(())
    })?;
    Ok(out)
}

/// What a run was: its policy and the snapshot and lists it joined, by content hash.
#[derive(Debug, Default)]
pub struct RunInfo {
    pub policy_id: String,
    pub policy_sha256: String,
    pub consent_table_sha256: Option<String>,
    /// (name, SHA-256) of each user list.
    pub user_lists: Vec<(String, String)>,
}

impl RunInfo {
    fn of(s: &SummaryFile) -> RunInfo {
        RunInfo {
            policy_id: s.policy.id.clone(),
            policy_sha256: s.policy.sha256.clone(),
            consent_table_sha256: s.consent_table.as_ref().map(|t| t.sha256.clone()),
            user_lists: s
                .user_lists
                .iter()
                .flatten()
                .map(|(n, l)| (n.clone(), l.sha256.clone()))
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
        let mut s = format!("policy {} ({})", self.policy_id, short(&self.policy_sha256));
        if let Some(t) = &self.consent_table_sha256 {
            let _ = write!(s, ", consent snapshot {}", short(t));
        }
        for (n, h) in &self.user_lists {
            let _ = write!(s, ", user list {n} {}", short(h));
        }
        s
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "policy": {"id": self.policy_id, "sha256": self.policy_sha256},
            "consent_table_sha256": self.consent_table_sha256,
            "user_lists": self.user_lists.iter().map(|(n, h)| json!({"name": n, "sha256": h})).collect::<Vec<_>>(),
        })
    }
}

/// An input both runs read, but not the same file.
#[derive(Debug)]
pub struct Changed {
    pub path: String,
    pub old_bytes: u64,
    pub new_bytes: u64,
}

#[derive(Debug, Default)]
pub struct DiffReport {
    pub old: RunInfo,
    pub new: RunInfo,
    /// Inputs both runs read unchanged (their rows are matched).
    pub compared: Vec<String>,
    /// Inputs compared by size and row count only: a summary without footer hashes.
    pub unverified: usize,
    /// (path, rows) of inputs only one run read.
    pub only_old: Vec<(String, u64)>,
    pub only_new: Vec<(String, u64)>,
    pub changed: Vec<Changed>,
    pub newly_excluded: BTreeMap<(String, String), u64>,
    pub newly_kept: BTreeMap<(String, String), u64>,
    /// Rows excluded by both runs but by different rules: (old rule, new rule) -> rows.
    pub rule_changed: BTreeMap<(String, String), u64>,
}

/// Whether two runs read the same input: same size and footer; without footer hashes (a
/// summary of corpusgate 0.1), same size and rows (`Some(false)`: unverified).
fn same_input(a: &FileRecord, b: &FileRecord) -> Option<bool> {
    if a.bytes != b.bytes {
        return None;
    }
    match (&a.footer_sha256, &b.footer_sha256) {
        (Some(x), Some(y)) => (x == y).then_some(true),
        _ => (a.rows == b.rows).then_some(false),
    }
}

fn region(r: &Option<String>) -> String {
    r.clone().unwrap_or_else(|| "unknown".into())
}

/// Match the rows of one input through both runs' manifests.
fn compare_rows(d: &mut DiffReport, a: &Excluded, b: &Excluded) {
    for (row, (rule, reg)) in b {
        match a.get(row) {
            None => {
                *d.newly_excluded
                    .entry((rule.clone(), region(reg)))
                    .or_default() += 1
            }
            Some((old_rule, _)) if old_rule != rule => {
                *d.rule_changed
                    .entry((old_rule.clone(), rule.clone()))
                    .or_default() += 1
            }
            Some(_) => {}
        }
    }
    for (row, (rule, reg)) in a {
        if !b.contains_key(row) {
            *d.newly_kept.entry((rule.clone(), region(reg))).or_default() += 1;
        }
    }
}

pub fn diff(old: &Path, new: &Path) -> Result<DiffReport> {
    let (old, new) = (
        Location::from_arg("diff OLD", old)?,
        Location::from_arg("diff NEW", new)?,
    );
    let (a, b) = (SummaryFile::load(&old)?, SummaryFile::load(&new)?);
    let mut d = DiffReport {
        old: RunInfo::of(&a),
        new: RunInfo::of(&b),
        ..Default::default()
    };
    let old_files: BTreeMap<&str, &FileRecord> =
        a.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let new_files: BTreeMap<&str, &FileRecord> =
        b.files.iter().map(|f| (f.path.as_str(), f)).collect();
    for (path, fa) in &old_files {
        let Some(fb) = new_files.get(path) else {
            d.only_old.push((path.to_string(), fa.rows));
            continue;
        };
        match same_input(fa, fb) {
            None => d.changed.push(Changed {
                path: path.to_string(),
                old_bytes: fa.bytes,
                new_bytes: fb.bytes,
            }),
            Some(verified) => {
                d.unverified += usize::from(!verified);
                let ma = read_manifest(&old.join("excluded").join(path))?;
                let mb = read_manifest(&new.join("excluded").join(path))?;
                compare_rows(&mut d, &ma, &mb);
                d.compared.push(path.to_string());
            }
        }
    }
    for (path, fb) in &new_files {
        if !old_files.contains_key(path) {
            d.only_new.push((path.to_string(), fb.rows));
        }
    }
    Ok(d)
}

impl DiffReport {
    pub fn text(&self) -> String {
        let total = |m: &BTreeMap<(String, String), u64>| m.values().sum::<u64>();
        let mut s = String::new();
        let _ = writeln!(s, "old: {}", self.old.describe());
        let _ = writeln!(s, "new: {}", self.new.describe());
        let _ = writeln!(
            s,
            "inputs compared row by row: {}{}",
            self.compared.len(),
            if self.unverified > 0 {
                format!(
                    " ({} by size and row count only: a run recorded no footer hashes)",
                    self.unverified
                )
            } else {
                String::new()
            }
        );
        for (title, list) in [
            ("only in the old run (not compared)", &self.only_old),
            ("only in the new run (not compared)", &self.only_new),
        ] {
            if !list.is_empty() {
                let _ = writeln!(s, "{title}: {} inputs", list.len());
                for (p, rows) in list {
                    let _ = writeln!(s, "  {p} ({} rows)", group(*rows));
                }
            }
        }
        if !self.changed.is_empty() {
            let _ = writeln!(
                s,
                "changed between the runs (another file under the same name; not compared): {} inputs",
                self.changed.len()
            );
            for c in &self.changed {
                let _ = writeln!(
                    s,
                    "  {} ({} bytes, now {})",
                    c.path,
                    group(c.old_bytes),
                    group(c.new_bytes)
                );
            }
        }
        let _ = writeln!(
            s,
            "\nin the inputs compared: newly excluded {} rows; newly kept {} rows; excluded by another rule {} rows",
            group(total(&self.newly_excluded)),
            group(total(&self.newly_kept)),
            group(total(&self.rule_changed))
        );
        for (title, m) in [
            (
                "newly excluded (by the new run's rule)",
                &self.newly_excluded,
            ),
            ("newly kept (by the old run's rule)", &self.newly_kept),
        ] {
            if m.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}:");
            for ((rule, region), n) in m {
                let _ = writeln!(s, "  rule {rule:<28} region {region:<8} {:>12}", group(*n));
            }
        }
        if !self.rule_changed.is_empty() {
            let _ = writeln!(s, "\nexcluded by both, by another rule:");
            for ((a, b), n) in &self.rule_changed {
                let _ = writeln!(s, "  {a} -> {b}: {}", group(*n));
            }
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        let list = |m: &BTreeMap<(String, String), u64>| {
            m.iter()
                .map(|((rule, region), n)| json!({"rule": rule, "region": region, "rows": n}))
                .collect::<Vec<_>>()
        };
        let inputs = |l: &[(String, u64)]| {
            l.iter()
                .map(|(p, rows)| json!({"path": p, "rows": rows}))
                .collect::<Vec<_>>()
        };
        json!({
            "old": self.old.json(),
            "new": self.new.json(),
            "inputs": {
                "compared": self.compared,
                "compared_by_size_and_rows_only": self.unverified,
                "only_in_old": inputs(&self.only_old),
                "only_in_new": inputs(&self.only_new),
                "changed": self.changed.iter().map(|c| json!({"path": c.path, "old_bytes": c.old_bytes, "new_bytes": c.new_bytes})).collect::<Vec<_>>(),
            },
            "newly_excluded": list(&self.newly_excluded),
            "newly_kept": list(&self.newly_kept),
            "rule_changed": self.rule_changed.iter().map(|((a, b), n)| json!({"old_rule": a, "new_rule": b, "rows": n})).collect::<Vec<_>>(),
        })
    }
}

/// `corpusgate diff`.
pub fn command(args: &crate::cli::DiffArgs) -> Result<crate::error::ExitStatus> {
    let d = diff(&args.old, &args.new)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d.json()).expect("serialises")
        );
    } else {
        print!("{}", d.text());
    }
    Ok(crate::error::ExitStatus::Success)
}
