//! `verify`: re-decide every row of a Parquet dataset under a policy and report each row the policy
//! would exclude. Given a filter OUT_DIR, also check the run's own integrity: `_SUCCESS` present,
//! every data file stamped with this policy's hash, and per input file kept + excluded = rows.

use std::fmt::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;

use crate::commands::filter;
use crate::engine::POLICY_SHA_KEY;
use crate::error::Result;
use crate::io::{open_parquet, Location, ReadOptions};
use crate::plan::FilterPlan;
use crate::summary::group;

/// Most violating rows listed one by one; all are counted.
pub const MAX_LISTED: usize = 50;

pub struct VerifyReport {
    pub text: String,
    pub violations: u64,
    pub integrity_failures: Vec<String>,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.violations == 0 && self.integrity_failures.is_empty()
    }
}

/// The rows of a Parquet file per its footer, and the policy hash it is stamped with.
fn footer_rows(
    path: &Location,
    read: ReadOptions,
) -> std::result::Result<(u64, Option<String>), String> {
    let pq = open_parquet(path, read).map_err(|e| e.to_string())?;
    let sha = pq
        .parquet_meta()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|k| k.key == POLICY_SHA_KEY)
                .and_then(|k| k.value.clone())
        });
    Ok((pq.rows(), sha))
}

/// Integrity of a filter output directory against `policy_sha256`.
fn check_out_dir(dir: &Location, policy_sha256: &str, read: ReadOptions) -> Vec<String> {
    let mut problems = Vec::new();
    match dir {
        Location::Local(p) => {
            if !p.join("_SUCCESS").exists() {
                problems.push(format!("{dir}: no _SUCCESS: the run did not complete"));
            }
        }
        Location::Object(o) => problems.extend(check_object_listing(dir, o)),
    }
    let summary = match crate::summary::SummaryFile::load(dir) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            return problems;
        }
    };
    if let Some(parts) = &summary.data_files {
        problems.extend(check_parts(dir, &summary, parts, policy_sha256, read));
        return problems;
    }
    for f in &summary.files {
        let rel = f.path.as_str();
        let (rows, kept, excluded) = (f.rows, f.kept, f.excluded);
        let data = dir.join("data").join(rel);
        let manifest = dir.join("excluded").join(rel);
        match (footer_rows(&data, read), footer_rows(&manifest, read)) {
            (Ok((d, sha)), Ok((m, _))) => {
                if sha.as_deref() != Some(policy_sha256) {
                    problems.push(format!(
                        "data/{rel}: {POLICY_SHA_KEY} is {}, not this policy's {policy_sha256}",
                        sha.as_deref().unwrap_or("absent")
                    ));
                }
                if d != kept || m != excluded || d + m != rows {
                    problems.push(format!(
                        "{rel}: data holds {d} rows and the manifest {m}, but summary.json says kept {kept} + excluded {excluded} = {rows}"
                    ));
                }
            }
            (a, b) => {
                for e in [a.err(), b.err()].into_iter().flatten() {
                    problems.push(e);
                }
            }
        }
    }
    problems
}

/// A laid-out OUT (`--target-file-size`, `--row-group-size`): each data file holds the rows
/// summary.json says and is stamped with this policy; the rows it attributes to each input add
/// up to what that input kept; each input's manifest holds what it excluded.
fn check_parts(
    dir: &Location,
    summary: &crate::summary::SummaryFile,
    parts: &[crate::layout::PartRecord],
    policy_sha256: &str,
    read: ReadOptions,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut kept_in_parts: std::collections::HashMap<&str, u64> = Default::default();
    for p in parts {
        match footer_rows(&dir.join("data").join(&p.path), read) {
            Ok((rows, sha)) => {
                if sha.as_deref() != Some(policy_sha256) {
                    problems.push(format!(
                        "data/{}: {POLICY_SHA_KEY} is {}, not this policy's {policy_sha256}",
                        p.path,
                        sha.as_deref().unwrap_or("absent")
                    ));
                }
                let attributed: u64 = p.inputs.iter().map(|i| i.rows).sum();
                if rows != p.rows || attributed != p.rows {
                    problems.push(format!(
                        "data/{}: holds {rows} rows, but summary.json says {} (from its inputs: {attributed})",
                        p.path, p.rows
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
        for i in &p.inputs {
            *kept_in_parts.entry(i.path.as_str()).or_default() += i.rows;
        }
    }
    for f in &summary.files {
        let rel = f.path.as_str();
        let in_parts = kept_in_parts.remove(rel).unwrap_or(0);
        match footer_rows(&dir.join("excluded").join(rel), read) {
            Ok((m, _)) => {
                if in_parts != f.kept || m != f.excluded || in_parts + m != f.rows {
                    problems.push(format!(
                        "{rel}: the data files hold {in_parts} of its rows and the manifest {m}, but summary.json says kept {} + excluded {} = {}",
                        f.kept, f.excluded, f.rows
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    for (rel, n) in kept_in_parts {
        problems.push(format!(
            "data files hold {n} rows of {rel}, which summary.json does not list as an input"
        ));
    }
    problems
}

/// An object-store OUT: `_SUCCESS` lists exactly the objects there (lock and `_SUCCESS` aside),
/// each with the size and SHA-256 it has now.
fn check_object_listing(dir: &Location, o: &crate::io::object::ObjectLocation) -> Vec<String> {
    use crate::io::object;
    let mut problems = Vec::new();
    let listing = match object::get_all(&o.join("_SUCCESS")) {
        Ok((_, b)) => b,
        Err(_) => return vec![format!("{dir}: no _SUCCESS: the run did not complete")],
    };
    let Some(listed) = serde_json::from_slice::<serde_json::Value>(&listing)
        .ok()
        .and_then(|v| v.get("objects").and_then(|o| o.as_array()).cloned())
    else {
        return vec![format!("{dir}/_SUCCESS: not the listing corpusgate writes")];
    };
    let present: std::collections::BTreeMap<String, u64> = match object::list(o) {
        Ok(l) => l.into_iter().map(|(k, i)| (k, i.size)).collect(),
        Err(e) => return vec![format!("{dir}: listing failed: {e}")],
    };
    let mut named = std::collections::BTreeSet::new();
    for entry in &listed {
        let (Some(key), Some(size), Some(sha)) = (
            entry.get("key").and_then(|v| v.as_str()),
            entry.get("size").and_then(|v| v.as_u64()),
            entry.get("sha256").and_then(|v| v.as_str()),
        ) else {
            problems.push(format!(
                "{dir}/_SUCCESS: an entry without key, size and sha256"
            ));
            continue;
        };
        named.insert(key.to_owned());
        match present.get(key) {
            None => problems.push(format!("{dir}/{key}: listed in _SUCCESS but missing")),
            Some(&n) if n != size => {
                problems.push(format!("{dir}/{key}: {n} bytes, but _SUCCESS lists {size}"))
            }
            Some(_) => match crate::io::sha256_of(&dir.join(key)) {
                Ok((_, now)) if now == sha => {}
                Ok(_) => problems.push(format!(
                    "{dir}/{key}: its SHA-256 differs from the one _SUCCESS lists"
                )),
                Err(e) => problems.push(e.to_string()),
            },
        }
    }
    for key in present.keys() {
        // Lock objects come and go with runs (a shard's lock sits under `_shards/`).
        let lock = key == crate::output::OBJECT_LOCK
            || key.ends_with(&format!("/{}", crate::output::OBJECT_LOCK));
        if key != "_SUCCESS" && !lock && !named.contains(key) {
            problems.push(format!(
                "{dir}/{key}: not listed in _SUCCESS (left by another run?)"
            ));
        }
    }
    problems
}

/// Is `p` the output of a filter run (its summary.json there)?
fn is_out_dir(p: &Location) -> bool {
    match p {
        Location::Local(p) => p.is_dir() && p.join("summary.json").exists(),
        Location::Object(o) => crate::io::object::head(&o.join("summary.json")).is_ok(),
    }
}

/// Verify `plan.inputs` (already resolved from PATH...) against the plan's policy.
pub fn run(plan: &FilterPlan, paths: &[Location]) -> Result<VerifyReport> {
    let mut integrity_failures = Vec::new();
    for p in paths {
        if is_out_dir(p) {
            integrity_failures.extend(check_out_dir(p, &plan.policy.sha256, plan.read));
        }
    }
    let (result, excluded) = filter::decide_only(plan, MAX_LISTED)?;
    let mut text = String::new();
    let violations: u64 = result.files.iter().map(|f| f.excluded).sum();
    let rows: u64 = result.files.iter().map(|f| f.rows).sum();
    let _ = writeln!(
        text,
        "verify: policy {} over {} files, {} rows: {} violate the policy",
        plan.policy.id,
        result.files.len(),
        group(rows),
        group(violations)
    );
    if violations > 0 {
        let _ = writeln!(text, "  by rule:");
        for (i, n) in result.counts.by_rule.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let rule = if i < plan.policy.rules.len() {
                &plan.policy.rules[i]
            } else {
                // `default`
                let _ = writeln!(
                    text,
                    "    default ({}): {}",
                    plan.policy.default.as_str(),
                    group(*n)
                );
                continue;
            };
            if rule.action == crate::policy::Action::Exclude {
                let _ = writeln!(text, "    {}: {}", rule.id, group(*n));
            }
        }
        let _ = writeln!(
            text,
            "  rows (file, row, rule, region){}:",
            if violations as usize > MAX_LISTED {
                format!(", first {MAX_LISTED}")
            } else {
                String::new()
            }
        );
        for b in &excluded {
            let src = b
                .column_by_name("source_file")
                .map(|c| c.as_string::<i32>().clone());
            let row = b
                .column_by_name("row")
                .map(|c| c.as_primitive::<Int64Type>().clone());
            let rule = b
                .column_by_name("rule")
                .map(|c| c.as_string::<i32>().clone());
            let region = b
                .column_by_name("region")
                .map(|c| c.as_string::<i32>().clone());
            if let (Some(src), Some(row), Some(rule), Some(region)) = (src, row, rule, region) {
                for i in 0..b.num_rows() {
                    let _ = writeln!(
                        text,
                        "    {}  {}  {}  {}",
                        src.value(i),
                        row.value(i),
                        rule.value(i),
                        if region.is_valid(i) {
                            region.value(i)
                        } else {
                            "unknown"
                        }
                    );
                }
            }
        }
    }
    for p in &integrity_failures {
        let _ = writeln!(text, "  integrity: {p}");
    }
    let _ = writeln!(
        text,
        "{}",
        if violations == 0 && integrity_failures.is_empty() {
            "verify: clean"
        } else {
            "verify: FAILED"
        }
    );
    Ok(VerifyReport {
        text,
        violations,
        integrity_failures,
    })
}

/// `corpusgate verify`.
pub fn command(args: &crate::cli::VerifyArgs) -> Result<crate::error::ExitStatus> {
    // An OUT_DIR is verified through its data/; its integrity is checked separately.
    let paths: Vec<Location> = args
        .paths
        .iter()
        .map(|p| Location::from_arg("verify PATH", p))
        .collect::<Result<_>>()?;
    let inputs: Vec<Location> = paths
        .iter()
        .map(|p| {
            if is_out_dir(p) {
                p.join("data")
            } else {
                p.clone()
            }
        })
        .collect();
    let read = args.read.options();
    let plan = FilterPlan::decide_only(
        &args.policy,
        &args.join,
        args.threads,
        args.pseudonymize_user_ids.as_deref(),
        &inputs,
        read,
    )?;
    let report = run(&plan, &paths)?;
    print!("{}", report.text);
    Ok(if report.clean() {
        crate::error::ExitStatus::Success
    } else {
        crate::error::ExitStatus::Violations
    })
}
