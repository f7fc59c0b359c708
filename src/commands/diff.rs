//! `diff`: what changed between two filter runs over the same inputs. Rows are matched by
//! (source_file, row) through the two runs' manifests: rows excluded only by the new run are newly
//! excluded, rows excluded only by the old run are newly kept; both are counted per rule and region.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;
use serde_json::json;

use crate::error::{Error, Result};
use crate::io::{self, open_parquet, Location, ReadOptions};
use crate::summary::group;

/// (rule, region) of every excluded row, keyed by (source_file, row).
type Excluded = HashMap<(String, i64), (String, Option<String>)>;

fn read_manifests(out_dir: &Path) -> Result<Excluded> {
    let dir = out_dir.join("excluded");
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} has no excluded/ directory; is it a corpusgate filter output?",
            out_dir.display()
        )));
    }
    let mut out = HashMap::new();
    for f in io::discover::parquet_files_under(&Location::local(dir))? {
        let err = |m: String| Error::invalid(f.location.clone(), None, m);
        let pq = open_parquet(&f.location, ReadOptions::default())?;
        pq.read_all(None, 64 * 1024, &mut |batch| {
            let col = |n: &str| {
                batch
                    .column_by_name(n)
                    .cloned()
                    .ok_or_else(|| err(format!("manifest has no column '{n}'")))
            };
            let (src, row, rule, region) = (
                col("source_file")?,
                col("row")?,
                col("rule")?,
                col("region")?,
            );
            let (src, row, rule, region) = (
                src.as_string_opt::<i32>(),
                row.as_primitive_opt::<Int64Type>(),
                rule.as_string_opt::<i32>(),
                region.as_string_opt::<i32>(),
            );
            let (Some(src), Some(row), Some(rule), Some(region)) = (src, row, rule, region) else {
                return Err(err("manifest columns have unexpected types".into()));
            };
            for i in 0..batch.num_rows() {
                out.insert(
                    (src.value(i).to_owned(), row.value(i)),
                    (
                        rule.value(i).to_owned(),
                        region.is_valid(i).then(|| region.value(i).to_owned()),
                    ),
                );
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Counts of rows that changed side, per (rule, region).
#[derive(Default)]
pub struct DiffReport {
    pub newly_excluded: BTreeMap<(String, String), u64>,
    pub newly_kept: BTreeMap<(String, String), u64>,
    /// Rows excluded by both runs but by different rules: (old rule, new rule) -> rows.
    pub rule_changed: BTreeMap<(String, String), u64>,
}

pub fn diff(old: &Path, new: &Path) -> Result<DiffReport> {
    let a = read_manifests(old)?;
    let b = read_manifests(new)?;
    let region = |r: &Option<String>| r.clone().unwrap_or_else(|| "unknown".into());
    let mut d = DiffReport::default();
    for (k, (rule, reg)) in &b {
        match a.get(k) {
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
    for (k, (rule, reg)) in &a {
        if !b.contains_key(k) {
            *d.newly_kept.entry((rule.clone(), region(reg))).or_default() += 1;
        }
    }
    Ok(d)
}

impl DiffReport {
    pub fn text(&self) -> String {
        let total = |m: &BTreeMap<(String, String), u64>| m.values().sum::<u64>();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "newly excluded: {} rows; newly kept: {} rows; excluded by another rule: {} rows",
            group(total(&self.newly_excluded)),
            group(total(&self.newly_kept)),
            group(total(&self.rule_changed))
        );
        for (title, m, by) in [
            (
                "newly excluded (by the new run's rule)",
                &self.newly_excluded,
                "rule",
            ),
            (
                "newly kept (by the old run's rule)",
                &self.newly_kept,
                "rule",
            ),
        ] {
            if m.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}:");
            for ((rule, region), n) in m {
                let _ = writeln!(s, "  {by} {rule:<28} region {region:<8} {:>12}", group(*n));
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
        json!({
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
