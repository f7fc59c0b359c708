//! Scale-out without a scheduler of our own: `plan` splits a job into deterministic shards,
//! `run-shard` runs one (under Slurm, Kubernetes, AWS Batch, Ray …), `commit` checks that every
//! shard is done and writes `summary.json` and `_SUCCESS` last.
//!
//! Layout under OUT: `_plan.json` (inputs with size, mtime and SHA-256, the policy's and
//! snapshot's hashes, the filter options, the shards), `_plan/policy.yaml` (the policy copy every
//! shard uses), `_shards/shard-NNNNN.json` (a done shard: the sizes and checksums of what it wrote,
//! its counts), `_attempts/` (attempt-unique work directories), and the usual `data/` and
//! `excluded/`. Data and manifest files are byte-identical to a single `filter` run's.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::cli::{FilterArgs, JoinArgs, PlanArgs};
use crate::error::{exit, Error, Result};
use crate::filter;
use crate::input::{file_sha256, InputFile};
use crate::journal;
use crate::plan::{CompressionChoice, FilterPlan};
use crate::policy::Policy;
use crate::progress::ProgressMode;
use crate::summary::now_rfc3339;

const PLAN: &str = "_plan.json";
const FORMAT: u64 = 1;

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    fs::write(&tmp, bytes)
        .and_then(|_| fs::File::open(&tmp).and_then(|f| f.sync_all()))
        .map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("writing", path, e))
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `corpusgate plan`: list and hash the inputs, pack them into shards, write `_plan.json`.
pub fn plan(args: &PlanArgs) -> Result<Value> {
    if args.shards == 0 {
        return Err(Error::Usage("--shards must be at least 1".into()));
    }
    // Validate everything a shard would need, before anything is written.
    let fargs = FilterArgs {
        output: Some(args.output.clone()),
        overwrite: args.overwrite,
        ..FilterArgs::decide_only(
            args.policy.clone(),
            args.join.clone(),
            None,
            args.pseudonymize_user_ids.clone(),
            args.inputs.clone(),
        )
    };
    let mut fargs = fargs;
    fargs.dry_run = false;
    fargs.compression = args.compression.clone();
    fargs.on_error = args.on_error;
    let plan = FilterPlan::from_args(&fargs)?;
    let join = filter::preflight(&plan)?;

    let policy = plan.policy.as_ref();
    let hashed: Vec<Result<Value>> = plan
        .inputs
        .par_iter()
        .map(|f| {
            Ok(json!({
                "path": std::path::absolute(&f.path).unwrap_or_else(|_| f.path.clone()).display().to_string(),
                "rel": f.rel,
                "size": f.bytes,
                "mtime": mtime(&f.path),
                "sha256": file_sha256(&f.path)?,
            }))
        })
        .collect();
    let inputs: Vec<Value> = hashed.into_iter().collect::<Result<_>>()?;

    // Greedy by size, largest first: deterministic for the same inputs.
    let mut order: Vec<usize> = (0..plan.inputs.len()).collect();
    order.sort_by(|a, b| {
        plan.inputs[*b]
            .bytes
            .cmp(&plan.inputs[*a].bytes)
            .then(plan.inputs[*a].rel.cmp(&plan.inputs[*b].rel))
    });
    let n = args.shards as usize;
    let mut load = vec![0u64; n];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in order {
        let s = (0..n)
            .min_by_key(|s| (load[*s], *s))
            .expect("at least one shard");
        load[s] += plan.inputs[i].bytes.max(1);
        members[s].push(i);
    }
    for m in &mut members {
        m.sort_unstable();
    }

    let out = &args.output;
    fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    if args.overwrite {
        for sub in ["data", "excluded", "_shards", "_attempts", "_plan"] {
            let _ = fs::remove_dir_all(out.join(sub));
        }
        for f in ["summary.json", "_SUCCESS", PLAN] {
            let _ = fs::remove_file(out.join(f));
        }
    }
    let copy = out.join("_plan/policy.yaml");
    write_atomic(&copy, policy.text.as_bytes())?;
    let join_json = |j: &crate::join::JoinData| {
        json!({
            "consent_table": j.table.as_ref().map(|t| json!({
                "path": std::path::absolute(&t.info.path).unwrap_or_else(|_| t.info.path.clone()).display().to_string(),
                "sha256": t.info.sha256,
            })),
            "user_lists": j.lists.iter().map(|l| json!({
                "name": l.name,
                "path": std::path::absolute(&l.info.path).unwrap_or_else(|_| l.info.path.clone()).display().to_string(),
                "sha256": l.info.sha256,
            })).collect::<Vec<_>>(),
        })
    };
    let doc = json!({
        "format": FORMAT,
        "corpusgate_version": env!("CARGO_PKG_VERSION"),
        "created_at": now_rfc3339(),
        "policy": {"id": policy.id, "sha256": policy.sha256, "path": policy.path.display().to_string(), "copy": "_plan/policy.yaml"},
        "join": join.as_deref().map(join_json).unwrap_or(json!({"consent_table": null, "user_lists": []})),
        "options": {
            "compression": plan.compression.describe_arg(),
            "on_error": if plan.skip_unreadable { "skip" } else { "abort" },
            "pseudonymize_user_ids": args.pseudonymize_user_ids.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string()),
        },
        "inputs": inputs,
        "shards": members.iter().enumerate().map(|(i, m)| json!({
            "index": i,
            "files": m,
            "bytes": m.iter().map(|f| plan.inputs[*f].bytes).sum::<u64>(),
        })).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("serialises");
    text.push('\n');
    write_atomic(&out.join(PLAN), text.as_bytes())?;
    Ok(doc)
}

fn load_plan(out: &Path) -> Result<Value> {
    let path = out.join(PLAN);
    let text = fs::read_to_string(&path).map_err(|e| {
        Error::Usage(format!(
            "{}: {e}; run `corpusgate plan ... --output {}` first",
            path.display(),
            out.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: not a valid plan: {e}", path.display())))?;
    if v["format"].as_u64() != Some(FORMAT) {
        return Err(Error::Usage(format!(
            "{}: plan format {} is not {FORMAT}; re-plan with this corpusgate",
            path.display(),
            v["format"]
        )));
    }
    Ok(v)
}

/// The shard index: `--index`, else the scheduler's array index from the environment.
pub fn resolve_index(flag: Option<usize>) -> Result<usize> {
    if let Some(i) = flag {
        return Ok(i);
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let parse = |k: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| Error::Usage(format!("{k}={v} is not an index")))
    };
    let mut found: Vec<(String, i64)> = Vec::new();
    for k in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        if let Some(v) = var(k) {
            found.push((k.into(), parse(k, &v)?));
        }
    }
    if let Some(v) = var("SLURM_ARRAY_TASK_ID") {
        let min = match var("SLURM_ARRAY_TASK_MIN") {
            Some(m) => parse("SLURM_ARRAY_TASK_MIN", &m)?,
            None => 0,
        };
        found.push((
            "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN".into(),
            parse("SLURM_ARRAY_TASK_ID", &v)? - min,
        ));
    }
    match found.as_slice() {
        [] => Err(Error::Usage(
            "no shard index: pass --index I, or run under a job array (JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, SLURM_ARRAY_TASK_ID)".into(),
        )),
        [(_, i), rest @ ..] if rest.iter().all(|(_, j)| j == i) => usize::try_from(*i)
            .map_err(|_| Error::Usage(format!("shard index {i} is negative"))),
        _ => Err(Error::Usage(format!(
            "the environment names different shard indices: {}",
            found.iter().map(|(k, i)| format!("{k}={i}")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn marker_path(out: &Path, index: usize) -> PathBuf {
    out.join("_shards").join(format!("shard-{index:05}.json"))
}

/// Whether a shard marker is present and everything it lists is still as written.
fn marker_valid(out: &Path, marker: &Value) -> bool {
    marker["files"].as_array().is_some_and(|files| {
        files.par_iter().all(|f| {
            let rel = f["rel"].as_str().unwrap_or("");
            ["data", "excluded"].iter().all(|kind| {
                journal::describe(&out.join(kind).join(rel)).is_ok_and(|(size, sha)| {
                    Some(size) == f[format!("{kind}_size")].as_u64()
                        && Some(sha.as_str()) == f[format!("{kind}_sha256")].as_str()
                })
            })
        })
    })
}

fn read_marker(out: &Path, index: usize) -> Option<Value> {
    let text = fs::read_to_string(marker_path(out, index)).ok()?;
    serde_json::from_str(&text).ok()
}

/// `corpusgate run-shard`: run shard `index` of the plan in `out`. Returns the exit code.
pub fn run_shard(out: &Path, index: usize, threads: Option<u16>) -> Result<u8> {
    let p = load_plan(out)?;
    let shards = p["shards"].as_array().cloned().unwrap_or_default();
    let shard = shards.get(index).ok_or_else(|| {
        Error::Usage(format!(
            "shard index {index} is out of range: the plan has {} shards (0..{})",
            shards.len(),
            shards.len().saturating_sub(1)
        ))
    })?;

    // One attempt per index at a time; a concurrent one is told to retry.
    let lock_path = out.join("_shards").join(format!("shard-{index:05}.lock"));
    fs::create_dir_all(out.join("_shards")).map_err(|e| Error::io("creating", out, e))?;
    let _lock = crate::output::lock_exclusive(&lock_path)?
        .ok_or_else(|| Error::Busy(format!("shard {index} is being run by another attempt")))?;
    if let Some(m) = read_marker(out, index) {
        if marker_valid(out, &m) {
            eprintln!("corpusgate: shard {index} is already done");
            return Ok(exit::SUCCESS);
        }
    }

    // The plan's policy copy, exactly as planned.
    let policy_copy = out.join(p["policy"]["copy"].as_str().unwrap_or("_plan/policy.yaml"));
    let policy = Policy::load(&policy_copy)?;
    if Some(policy.sha256.as_str()) != p["policy"]["sha256"].as_str() {
        return Err(Error::Usage(format!(
            "{}: the policy copy no longer matches the plan's hash; re-plan",
            policy_copy.display()
        )));
    }

    // This shard's inputs, re-checked against the plan's hashes.
    let inputs = p["inputs"].as_array().cloned().unwrap_or_default();
    let files: Vec<usize> = shard["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64().map(|v| v as usize))
        .collect();
    let mine: Vec<(InputFile, String)> = files
        .iter()
        .map(|i| {
            let f = &inputs[*i];
            (
                InputFile {
                    path: PathBuf::from(f["path"].as_str().unwrap_or("")),
                    rel: f["rel"].as_str().unwrap_or("").to_owned(),
                    bytes: f["size"].as_u64().unwrap_or(0),
                },
                f["sha256"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let changed: Vec<String> = mine
        .par_iter()
        .filter_map(|(f, sha)| match file_sha256(&f.path) {
            Ok(h) if &h == sha => None,
            Ok(_) => Some(format!("{} changed since the plan", f.path.display())),
            Err(e) => Some(e.to_string()),
        })
        .collect();
    if !changed.is_empty() {
        return Err(Error::Usage(format!(
            "shard {index}: {}; re-plan to include the new content",
            changed.join("; ")
        )));
    }

    // Run it like `filter`, into an attempt-unique directory.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let attempt = out
        .join("_attempts")
        .join(format!("shard-{index:05}-{}-{nanos}", std::process::id()));
    let join = &p["join"];
    let mut join_args = JoinArgs::default();
    if let Some(t) = join["consent_table"]["path"].as_str() {
        join_args.consent_table = Some(PathBuf::from(t));
    }
    for l in join["user_lists"].as_array().into_iter().flatten() {
        join_args.user_lists.push(format!(
            "{}={}",
            l["name"].as_str().unwrap_or(""),
            l["path"].as_str().unwrap_or("")
        ));
    }
    let opts = &p["options"];
    let compression = CompressionChoice::parse(opts["compression"].as_str().unwrap_or("preserve"))?;
    let plan = FilterPlan {
        policy: Arc::new(policy),
        inputs: mine.iter().map(|(f, _)| f.clone()).collect(),
        output: Some(attempt.clone()),
        overwrite: false,
        dry_run: false,
        threads: threads.map(|t| t as usize).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        progress: ProgressMode::Never,
        compression,
        consent_table: join_args.consent_table.clone(),
        user_lists: join_args
            .user_lists
            .iter()
            .filter_map(|s| {
                s.split_once('=')
                    .map(|(n, p)| (n.to_owned(), PathBuf::from(p)))
            })
            .collect(),
        skip_unreadable: opts["on_error"] == "skip",
        resume: false,
        pseudonymize: crate::plan::read_key(opts["pseudonymize_user_ids"].as_str().map(Path::new))?,
    };
    if plan.inputs.is_empty() {
        // An empty shard (more shards than files) is done at once.
        let marker = json!({"index": index, "files": [], "summary": Value::Null, "finished_at": now_rfc3339()});
        write_atomic(&marker_path(out, index), marker.to_string().as_bytes())?;
        return Ok(exit::SUCCESS);
    }
    // The snapshot and lists must be the ones planned: a changed one is permanent until re-planned.
    let sources = join["consent_table"]
        .as_object()
        .map(|t| ("the consent snapshot".to_owned(), t))
        .into_iter()
        .chain(
            join["user_lists"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| {
                    l.as_object().map(|o| {
                        (
                            format!("user list '{}'", l["name"].as_str().unwrap_or("?")),
                            o,
                        )
                    })
                }),
        );
    for (what, src) in sources {
        let path = Path::new(src["path"].as_str().unwrap_or(""));
        let now = crate::join::path_sha256(path)?;
        if Some(now.as_str()) != src["sha256"].as_str() {
            return Err(Error::Usage(format!(
                "shard {index}: {what} ({}) changed since the plan; re-plan",
                path.display()
            )));
        }
    }
    let summary = filter::run(&plan)?;
    let summary_json = summary.to_json(&plan.policy);

    // Promote each file, then record the shard as done.
    let mut listed = Vec::new();
    for f in summary.files.iter() {
        let mut entry = Map::new();
        entry.insert("rel".into(), json!(f.rel));
        for kind in ["data", "excluded"] {
            let from = attempt.join(kind).join(&f.rel);
            let to = out.join(kind).join(&f.rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
            }
            let (size, sha) = journal::describe(&from)?;
            fs::rename(&from, &to).map_err(|e| Error::io("promoting", &to, e))?;
            entry.insert(format!("{kind}_size"), json!(size));
            entry.insert(format!("{kind}_sha256"), json!(sha));
        }
        listed.push(Value::Object(entry));
    }
    let marker = json!({
        "index": index,
        "files": listed,
        "summary": summary_json,
        "finished_at": now_rfc3339(),
    });
    write_atomic(
        &marker_path(out, index),
        serde_json::to_string_pretty(&marker)
            .expect("serialises")
            .as_bytes(),
    )?;
    let _ = fs::remove_dir_all(&attempt);
    eprint!("{}", summary.human(&plan.policy, Some(out)));
    Ok(if summary.skipped.is_empty() {
        exit::SUCCESS
    } else {
        exit::QUARANTINED
    })
}

/// `corpusgate commit`: check every shard against the plan, merge the summaries, `_SUCCESS` last.
pub fn commit(out: &Path) -> Result<u8> {
    let p = load_plan(out)?;
    let shards = p["shards"].as_array().cloned().unwrap_or_default();
    let markers: Vec<Option<Value>> = (0..shards.len())
        .into_par_iter()
        .map(|i| read_marker(out, i).filter(|m| marker_valid(out, m)))
        .collect();
    let missing: Vec<usize> = markers
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_none())
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        return Err(Error::Busy(format!(
            "{} of {} shards are not done: {}; run them (corpusgate run-shard {} --index I) and commit again",
            missing.len(),
            shards.len(),
            missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
            out.display()
        )));
    }
    // Every planned file must be accounted for, once.
    let planned: BTreeMap<String, ()> = p["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["rel"].as_str().map(|r| (r.to_owned(), ())))
        .collect();

    let summaries: Vec<&Value> = markers
        .iter()
        .flatten()
        .map(|m| &m["summary"])
        .filter(|s| s.is_object())
        .collect();
    let mut files: Vec<Value> = summaries
        .iter()
        .flat_map(|s| s["files"].as_array().cloned().unwrap_or_default())
        .collect();
    files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let mut skipped: Vec<Value> = summaries
        .iter()
        .flat_map(|s| s["skipped"].as_array().cloned().unwrap_or_default())
        .collect();
    skipped.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let done = files.len() + skipped.len();
    if done != planned.len() {
        return Err(Error::Usage(format!(
            "the shards account for {done} files but the plan lists {}",
            planned.len()
        )));
    }
    let mut by_rule = Map::new();
    let mut by_region: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for s in &summaries {
        for (k, v) in s["by_rule"].as_object().into_iter().flatten() {
            let e = by_rule
                .entry(k.clone())
                .or_insert_with(|| json!({"action": v["action"], "rows": 0}));
            e["rows"] = json!(e["rows"].as_u64().unwrap_or(0) + v["rows"].as_u64().unwrap_or(0));
        }
        for (k, v) in s["by_region"].as_object().into_iter().flatten() {
            let e = by_region.entry(k.clone()).or_default();
            e[0] += v["rows"].as_u64().unwrap_or(0);
            e[1] += v["kept"].as_u64().unwrap_or(0);
            e[2] += v["excluded"].as_u64().unwrap_or(0);
        }
    }
    // Region order as `filter` writes it: codes, then unknown.
    let mut regions = Map::new();
    for (k, v) in by_region
        .iter()
        .filter(|(k, _)| k.as_str() != "unknown")
        .chain(by_region.get_key_value("unknown"))
    {
        regions.insert(
            k.clone(),
            json!({"rows": v[0], "kept": v[1], "excluded": v[2]}),
        );
    }
    let sum = |k: &str| {
        files
            .iter()
            .map(|f| f[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let first = summaries.first().copied().cloned().unwrap_or(Value::Null);
    let mut summary = json!({
        "corpusgate_version": env!("CARGO_PKG_VERSION"),
        "policy": first["policy"],
        "started_at": summaries.iter().filter_map(|s| s["started_at"].as_str()).min().unwrap_or(""),
        "finished_at": now_rfc3339(),
        "dry_run": false,
        "options": p["options"],
        "files": files,
        "by_rule": by_rule,
        "by_region": regions,
        "totals": {"files": files.len(), "rows": sum("rows"), "kept": sum("kept"), "excluded": sum("excluded")},
        "skipped": skipped,
        "shards": shards.len(),
        "plan_created_at": p["created_at"],
    });
    if let Some(t) = first.get("consent_table").filter(|t| t.is_object()) {
        let mut t = t.clone();
        t["unmatched_rows"] = json!(summaries
            .iter()
            .map(|s| s["consent_table"]["unmatched_rows"].as_u64().unwrap_or(0))
            .sum::<u64>());
        summary["consent_table"] = t;
    }
    if let Some(l) = first.get("user_lists") {
        summary["user_lists"] = l.clone();
    }
    let mut text = serde_json::to_string_pretty(&summary).expect("serialises");
    text.push('\n');
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    let _ = fs::remove_dir_all(out.join("_attempts"));
    write_atomic(&out.join("_SUCCESS"), b"")?;
    eprintln!(
        "corpusgate: committed {} shards, {} files, {} rows: kept {}, excluded {}",
        shards.len(),
        summary["totals"]["files"],
        summary["totals"]["rows"],
        summary["totals"]["kept"],
        summary["totals"]["excluded"]
    );
    Ok(if skipped.is_empty() {
        exit::SUCCESS
    } else {
        exit::QUARANTINED
    })
}
