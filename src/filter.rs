//! The `filter` command: footers checked, files bound to the policy, the engine run inside an
//! output transaction, the summary written and printed.

use std::io::Write;

use rayon::prelude::*;

use std::collections::HashMap;

use crate::engine::{self, FileJob, FileOutcome, JobOptions, RunContext};
use crate::error::{Error, Result};
use crate::input::{self, OpenedInput};
use crate::join::{self, JoinData, KeyKind};
use crate::journal::{self, Entry, Journal};
use crate::output::OutputTxn;
use crate::plan::FilterPlan;
use crate::progress::Progress;
use crate::summary::{now_rfc3339, RunSummary};
use std::sync::Arc;

/// Check everything a run would check before writing — footers, the snapshot and lists, every
/// file against the policy — without deciding a row (`plan`).
pub fn preflight(plan: &FilterPlan) -> Result<Option<Arc<JoinData>>> {
    let footers = read_footers(&plan.inputs)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let join = load_join(plan, &footers)?;
    let options = JobOptions {
        compression: plan.compression.clone(),
        pseudonymize: plan.pseudonymize.clone(),
    };
    footers
        .into_par_iter()
        .map(|f| {
            let path = f.file.path.clone();
            crate::guard::catch(|| FileJob::prepare(&plan.policy, f, &options, join.as_ref()))
                .unwrap_or_else(|panic| {
                    Err(Error::Read {
                        file: path,
                        row_group: None,
                        message: panic,
                    })
                })
                .map(|_| ())
        })
        .collect::<Result<Vec<()>>>()?;
    Ok(join)
}

/// The consent snapshot and lists of `plan`, for a caller that reads rows itself (`explain`).
pub fn join_for(plan: &FilterPlan) -> Result<Option<Arc<JoinData>>> {
    let footers = read_footers(&plan.inputs)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    load_join(plan, &footers)
}

/// Every input's footer, read in parallel (on the current rayon pool), in input order.
fn read_footers(inputs: &[input::InputFile]) -> Vec<Result<OpenedInput>> {
    inputs
        .par_iter()
        .map(|f| {
            let identity = input::identity(&f.path)?;
            Ok(OpenedInput {
                file: f.clone(),
                meta: input::read_footer(f)?,
                identity,
            })
        })
        .collect()
}

/// Load the consent snapshot and user lists the plan names, once, before the corpus is read.
fn load_join(plan: &FilterPlan, footers: &[OpenedInput]) -> Result<Option<Arc<JoinData>>> {
    let policy = plan.policy.as_ref();
    if plan.consent_table.is_none() && plan.user_lists.is_empty() {
        return Ok(None);
    }
    let table = match (&plan.consent_table, &policy.consent_table) {
        (Some(path), Some(spec)) => Some(join::load_consent_table(
            path,
            spec,
            policy.consent_values.as_ref(),
        )?),
        _ => None,
    };
    // Text lists are parsed to the kind of the join key: the snapshot's, else the corpus ids'.
    let kind = match &table {
        Some(t) => t.kind,
        None => {
            let col = policy.columns.user_id.as_deref().expect("validated policy");
            let f = &footers[0];
            let field = f
                .meta
                .schema()
                .field_with_name(col)
                .map_err(|_| Error::Schema {
                    file: f.file.path.clone(),
                    column: col.to_owned(),
                    message: "missing; the policy maps it as columns.user_id".into(),
                })?;
            KeyKind::of(field.data_type()).ok_or_else(|| Error::Schema {
                file: f.file.path.clone(),
                column: col.to_owned(),
                message: format!(
                    "has type {}; a user id must be an integer, string or binary",
                    field.data_type()
                ),
            })?
        }
    };
    let lists = plan
        .user_lists
        .par_iter()
        .map(|(name, path)| join::load_user_list(name, path, kind))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Arc::new(JoinData { table, lists })))
}

pub fn run(plan: &FilterPlan) -> Result<RunSummary> {
    run_with(plan, 0).map(|(s, _)| s)
}

/// Decide every row without writing anything (`plan.dry_run` must be set), keeping up to `cap`
/// excluded rows as manifest rows: what `verify` reports.
pub fn decide_only(
    plan: &FilterPlan,
    cap: usize,
) -> Result<(RunSummary, Vec<arrow_array::RecordBatch>)> {
    debug_assert!(plan.dry_run);
    run_with(plan, cap)
}

fn run_with(
    plan: &FilterPlan,
    collect_excluded: usize,
) -> Result<(RunSummary, Vec<arrow_array::RecordBatch>)> {
    let started_at = now_rfc3339();
    let policy = plan.policy.as_ref();
    crate::signals::install();

    // Every footer is read and checked against the policy before anything is written.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", plan.threads)))?;
    let mut skipped: Vec<(usize, std::path::PathBuf, String)> = Vec::new();
    let footers = pool.install(|| read_footers(&plan.inputs));
    let mut readable = Vec::with_capacity(footers.len());
    for (i, f) in footers.into_iter().enumerate() {
        match f {
            Ok(f) => readable.push((i, f)),
            Err(e @ Error::Read { .. }) if plan.skip_unreadable => {
                skipped.push((i, plan.inputs[i].path.clone(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let footers: Vec<OpenedInput> = readable.iter().map(|(_, f)| f.clone()).collect();
    if footers.is_empty() && !skipped.is_empty() {
        return Err(Error::Read {
            file: skipped[0].1.clone(),
            row_group: None,
            message: format!("no input file is readable: {}", skipped[0].2),
        });
    }
    let join = pool.install(|| load_join(plan, &footers))?;
    let job_options = JobOptions {
        compression: plan.compression.clone(),
        pseudonymize: plan.pseudonymize.clone(),
    };
    let prepared: Vec<Result<FileJob>> = pool.install(|| {
        readable
            .par_iter()
            .map(|(_, f)| {
                // Footer metadata a damaged file carries can make the parquet crate panic.
                crate::guard::catch(|| {
                    FileJob::prepare(policy, f.clone(), &job_options, join.as_ref())
                })
                .unwrap_or_else(|panic| {
                    Err(Error::Read {
                        file: f.file.path.clone(),
                        row_group: None,
                        message: panic,
                    })
                })
            })
            .collect()
    });
    // Report schema errors (exit 2) before read errors (exit 1), each in file order.
    if let Some(e) = prepared
        .iter()
        .position(|r| matches!(r, Err(Error::Schema { .. })))
    {
        return Err(prepared.into_iter().nth(e).unwrap().err().unwrap());
    }
    let mut jobs: Vec<FileJob> = Vec::new();
    let mut job_index: Vec<usize> = Vec::new();
    for ((i, _), r) in readable.iter().zip(prepared) {
        match r {
            Ok(j) => {
                jobs.push(j);
                job_index.push(*i);
            }
            Err(e @ Error::Read { .. }) if plan.skip_unreadable => {
                skipped.push((*i, plan.inputs[*i].path.clone(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }

    let total_bytes: u64 = jobs.iter().map(|j| j.total_bytes()).sum();
    let progress = Progress::new(plan.progress, total_bytes);

    let txn = match (&plan.output, plan.dry_run) {
        (Some(out), false) => Some(OutputTxn::begin(out, plan.resume)?),
        _ => None,
    };
    // What the outputs depend on besides each input; a resumed run must match it exactly.
    let header = journal::header(
        &policy.sha256,
        &join_hashes(join.as_deref()),
        &plan.compression.describe(),
    );
    let mut resumed: HashMap<usize, Entry> = HashMap::new();
    if let (Some(t), true) = (&txn, plan.resume) {
        let earlier = journal::load(t.dir(), &header, policy.rules.len());
        let checks: Vec<(usize, bool)> = pool.install(|| {
            jobs.par_iter()
                .enumerate()
                .filter_map(|(i, j)| {
                    let e = earlier.get(&j.input.file.rel)?;
                    Some((i, journal::still_valid(e, t.dir(), &j.input.file.path)))
                })
                .collect()
        });
        for (i, ok) in checks {
            if ok {
                resumed.insert(i, earlier[&jobs[i].input.file.rel].clone());
            }
        }
    }
    let journal = match &txn {
        Some(t) => {
            let mut keep: Vec<Entry> = resumed.values().cloned().collect();
            keep.sort_by(|a, b| a.rel.cmp(&b.rel));
            // Whatever the earlier run left that is not reused (an input since removed, a file
            // the journal does not vouch for) must not reach OUT_DIR.
            let rels: std::collections::HashSet<&str> =
                keep.iter().map(|e| e.rel.as_str()).collect();
            crate::output::prune(t.dir(), &rels)?;
            Some(Journal::create(t.dir(), &header, &keep)?)
        }
        None => None,
    };

    let outcome = engine::run(
        plan,
        &jobs,
        &RunContext {
            out: txn.as_ref().map(|t| t.dir()),
            skip_unreadable: plan.skip_unreadable,
            journal: journal.as_ref(),
            resumed: &resumed,
            progress: &progress,
            collect_excluded,
        },
    );
    progress.finish();
    let outcomes = match outcome {
        Ok(o) => o,
        Err(e @ Error::Interrupted { .. }) => {
            // Completed files stay in the temporary sibling, with the journal, for --resume.
            if let Some(t) = txn {
                t.keep();
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };

    let mut files = Vec::new();
    let mut excluded = Vec::new();
    let mut counts = crate::summary::Counts::new(policy.rules.len());
    for ((o, j), i) in outcomes.into_iter().zip(&jobs).zip(&job_index) {
        match o {
            FileOutcome::Done {
                stats,
                counts: c,
                excluded: rows,
            } => {
                excluded.extend(rows);
                if stats.kept + stats.excluded != j.input.rows() {
                    return Err(Error::Read {
                        file: j.input.file.path.clone(),
                        row_group: None,
                        message: format!(
                            "kept {} + excluded {} != {} rows in the footer",
                            stats.kept,
                            stats.excluded,
                            j.input.rows()
                        ),
                    });
                }
                counts.add(&c);
                files.push(stats);
            }
            FileOutcome::Skipped { path, error } => skipped.push((*i, path, error)),
        }
    }
    skipped.sort_by_key(|(i, _, _)| *i);

    let mut summary = RunSummary {
        join: join.clone(),
        started_at,
        finished_at: String::new(),
        options: plan.options_json(),
        files,
        counts,
        dry_run: plan.dry_run,
        skipped: skipped.into_iter().map(|(_, p, e)| (p, e)).collect(),
        resumed: resumed.len(),
    };
    summary.finished_at = now_rfc3339();
    if let Some(txn) = txn {
        if let Some(j) = journal {
            j.remove();
        }
        let path = txn.dir().join("summary.json");
        let mut text =
            serde_json::to_string_pretty(&summary.to_json(policy)).expect("summary serialises");
        text.push('\n');
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("writing", &path, e))?;
        txn.commit()?;
    }
    Ok((summary, excluded))
}

/// Content hashes of the snapshot and lists a run joined, in a stable order.
fn join_hashes(join: Option<&JoinData>) -> Vec<String> {
    let Some(j) = join else { return Vec::new() };
    j.table
        .iter()
        .map(|t| format!("consent_table:{}", t.info.sha256))
        .chain(
            j.lists
                .iter()
                .map(|l| format!("{}:{}", l.name, l.info.sha256)),
        )
        .collect()
}
