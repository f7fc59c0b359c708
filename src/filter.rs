//! The `filter` command: footers checked, files bound to the policy, the engine run inside an
//! output transaction, the summary written and printed.

use std::io::Write;

use rayon::prelude::*;

use crate::engine::{self, FileJob};
use crate::error::{Error, Result};
use crate::input::{self, OpenedInput};
use crate::join::{self, JoinData, KeyKind};
use crate::output::OutputTxn;
use crate::plan::FilterPlan;
use crate::progress::Progress;
use crate::summary::{now_rfc3339, RunSummary};
use std::sync::Arc;

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
    let started_at = now_rfc3339();
    let policy = plan.policy.as_ref();

    // Every footer is read and checked against the policy before anything is written.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", plan.threads)))?;
    let footers: Vec<Result<OpenedInput>> = pool.install(|| {
        plan.inputs
            .par_iter()
            .map(|f| {
                Ok(OpenedInput {
                    file: f.clone(),
                    meta: input::read_footer(f)?,
                })
            })
            .collect()
    });
    let footers: Vec<OpenedInput> = footers.into_iter().collect::<Result<_>>()?;
    let join = pool.install(|| load_join(plan, &footers))?;
    let opened: Vec<Result<FileJob>> = pool.install(|| {
        footers
            .into_par_iter()
            .map(|f| FileJob::prepare(policy, f, &plan.compression, join.as_ref()))
            .collect()
    });
    // Report schema errors (exit 2) before read errors (exit 1), each in file order.
    if let Some(e) = opened
        .iter()
        .position(|r| matches!(r, Err(Error::Schema { .. })))
    {
        return Err(opened.into_iter().nth(e).unwrap().err().unwrap());
    }
    let jobs: Vec<FileJob> = opened.into_iter().collect::<Result<_>>()?;

    let total_bytes: u64 = jobs
        .iter()
        .map(|j| {
            j.input
                .parquet_meta()
                .row_groups()
                .iter()
                .map(|g| g.compressed_size().max(0) as u64)
                .sum::<u64>()
        })
        .sum();
    let progress = Progress::new(plan.progress, total_bytes);

    let txn = match (&plan.output, plan.dry_run) {
        (Some(out), false) => Some(OutputTxn::begin(out)?),
        _ => None,
    };
    let (files, counts) = engine::run(plan, &jobs, txn.as_ref().map(|t| t.dir()), &progress)?;
    progress.finish();

    for (f, j) in files.iter().zip(&jobs) {
        if f.kept + f.excluded != j.input.rows() {
            return Err(Error::Read {
                file: j.input.file.path.clone(),
                row_group: None,
                message: format!(
                    "kept {} + excluded {} != {} rows in the footer",
                    f.kept,
                    f.excluded,
                    j.input.rows()
                ),
            });
        }
    }

    let mut summary = RunSummary {
        join: join.clone(),
        started_at,
        finished_at: String::new(),
        options: plan.options_json(),
        files,
        counts,
        dry_run: plan.dry_run,
    };
    summary.finished_at = now_rfc3339();
    if let Some(txn) = txn {
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
    Ok(summary)
}
