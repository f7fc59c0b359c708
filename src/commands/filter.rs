//! The `filter` run: inputs opened and checked, files bound to the policy, the engine run inside
//! an output transaction, the summary written.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::engine::{self, FileJob, FileOutcome, Input, JobOptions, PreviousRowGroups, RunContext};
use crate::error::{Error, Result};
use crate::io::{open_parquet, Location};
use crate::join::{self, JoinData, JoinRecord};
use crate::journal::{self, Earlier, Entry, Header, Journal};
use crate::output::OutputTxn;
use crate::plan::FilterPlan;
use crate::progress::Progress;
use crate::reuse::Reusable;
use crate::summary::{now_rfc3339, RunSummary};

/// Open every input (footers read and checked), in parallel on the current pool, in input order.
fn open_inputs(plan: &FilterPlan) -> Vec<Result<Input>> {
    plan.inputs
        .par_iter()
        .map(|f| {
            Ok(Input {
                file: f.clone(),
                parquet: open_parquet(&f.location, plan.read)?,
            })
        })
        .collect()
}

fn job_options(plan: &FilterPlan) -> JobOptions {
    JobOptions {
        compression: plan.compression.clone(),
        pseudonymize: plan.pseudonymize.clone(),
        trust_input_pages: plan.trust_input_pages,
        write: !plan.dry_run,
    }
}

/// Bind a file to the policy; a panic of the parquet crate on its footer is a read error.
fn prepare(
    plan: &FilterPlan,
    input: Input,
    options: &JobOptions,
    join: Option<&Arc<JoinData>>,
) -> Result<FileJob> {
    let location = input.location().clone();
    crate::guard::catch(|| FileJob::prepare(&plan.policy, input, options, join)).unwrap_or_else(
        |panic| {
            Err(Error::read(
                location,
                None,
                crate::error::ReadError::Panic(panic),
            ))
        },
    )
}

/// Check everything a run would check before writing — footers, the snapshot and lists, every
/// file against the policy — without deciding a row (`plan`).
pub fn preflight(plan: &FilterPlan) -> Result<Option<Arc<JoinData>>> {
    let inputs = open_inputs(plan).into_iter().collect::<Result<Vec<_>>>()?;
    let join = load_join(plan, &inputs, None)?;
    let options = job_options(plan);
    inputs
        .into_par_iter()
        .map(|f| prepare(plan, f, &options, join.as_ref()).map(|_| ()))
        .collect::<Result<Vec<()>>>()?;
    Ok(join)
}

/// The consent snapshot and lists of `plan`, for a caller that reads rows itself (`explain`).
pub fn join_for(plan: &FilterPlan) -> Result<Option<Arc<JoinData>>> {
    let inputs = open_inputs(plan).into_iter().collect::<Result<Vec<_>>>()?;
    load_join(plan, &inputs, None)
}

/// Load the consent snapshot and user lists the plan names, once, before the corpus is read.
/// `only`: the only members the run will look up (then the snapshot is known
/// to be of content a run has loaded whole before, see `reuse_unchanged`).
fn load_join(
    plan: &FilterPlan,
    inputs: &[Input],
    only: Option<&join::KeySet>,
) -> Result<Option<Arc<JoinData>>> {
    let sources = &plan.join;
    join::load(
        &plan.policy,
        sources.consent_table.as_ref(),
        &sources.user_lists,
        plan.read,
        only,
        || {
            join::user_id_kind(
                &plan.policy,
                inputs[0].parquet.schema(),
                inputs[0].location(),
            )
        },
    )
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

/// An input quarantined under `--on-error skip`: (input index, where, why).
type Skipped = (usize, Location, String);

/// The inputs of a run, bound to the policy.
struct Prepared {
    jobs: Vec<FileJob>,
    /// The input index of each job (inputs quarantined before are missing).
    job_index: Vec<usize>,
    join: Option<Arc<JoinData>>,
}

/// Every input opened and bound to the policy, in input order, before anything is written:
/// schema errors (exit 2) are reported before read errors (exit 1), each in file order.
fn prepare_all(
    plan: &FilterPlan,
    pool: &rayon::ThreadPool,
    opened: Vec<Result<Input>>,
    skipped: &mut Vec<Skipped>,
    only: Option<&join::KeySet>,
) -> Result<Prepared> {
    let mut readable = Vec::with_capacity(plan.inputs.len());
    for (i, f) in opened.into_iter().enumerate() {
        match f {
            Ok(f) => readable.push((i, f)),
            Err(e) if plan.skip_unreadable && e.is_input_error() => {
                skipped.push((i, plan.inputs[i].location.clone(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    if readable.is_empty() && !skipped.is_empty() {
        return Err(Error::invalid(
            skipped[0].1.clone(),
            None,
            format!("no input file is readable: {}", skipped[0].2),
        ));
    }
    let opened: Vec<Input> = readable.iter().map(|(_, f)| f.clone()).collect();
    let join = pool.install(|| load_join(plan, &opened, only))?;
    let options = job_options(plan);
    let prepared: Vec<Result<FileJob>> = pool.install(|| {
        readable
            .par_iter()
            .map(|(_, f)| prepare(plan, f.clone(), &options, join.as_ref()))
            .collect()
    });
    if let Some(e) = prepared
        .iter()
        .position(|r| matches!(r, Err(Error::Schema { .. })))
    {
        return Err(prepared.into_iter().nth(e).unwrap().err().unwrap());
    }
    let mut jobs = Vec::new();
    let mut job_index = Vec::new();
    for ((i, _), r) in readable.iter().zip(prepared) {
        match r {
            Ok(j) => {
                jobs.push(j);
                job_index.push(*i);
            }
            Err(e) if plan.skip_unreadable && e.is_input_error() => {
                skipped.push((*i, plan.inputs[*i].location.clone(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Prepared {
        jobs,
        job_index,
        join,
    })
}

/// With `--resume`: the files an interrupted run of the same job completed, still as it left
/// them; the journal of this run starts with them, and anything else it left is removed.
fn resume_state(
    plan: &FilterPlan,
    pool: &rayon::ThreadPool,
    txn: &OutputTxn,
    header: &Header,
    jobs: &[FileJob],
) -> Result<(HashMap<usize, Entry>, Journal)> {
    let mut resumed: HashMap<usize, Entry> = HashMap::new();
    if plan.resume {
        match journal::load(txn.dir(), header, plan.policy.rules.len())? {
            Earlier::Entries(earlier) => {
                let checks: Vec<(usize, bool)> = pool.install(|| {
                    jobs.par_iter()
                        .enumerate()
                        .filter_map(|(i, j)| {
                            let e = earlier.get(&j.input.file.rel)?;
                            Some((i, journal::still_valid(e, txn.dir(), j.input.location())))
                        })
                        .collect()
                });
                for (i, ok) in checks {
                    if ok {
                        resumed.insert(i, earlier[&jobs[i].input.file.rel].clone());
                    }
                }
            }
            Earlier::OtherJob => eprintln!(
                "corpusgate: --resume: the interrupted run was of another policy, snapshot or options; starting afresh"
            ),
            Earlier::None => {}
        }
    }
    let mut keep: Vec<Entry> = resumed.values().cloned().collect();
    keep.sort_by(|a, b| a.rel.cmp(&b.rel));
    if let Location::Object(o) = txn.dir() {
        // Reused outputs are this run's: listed in _SUCCESS, spared by the sweep at commit.
        for e in &keep {
            for (sub, w) in e.outputs() {
                crate::io::written_object_reused(&o.join(sub).join(&e.rel), w.clone());
            }
        }
    }
    // Whatever the earlier run left that is not reused (an input since removed, a file the
    // journal does not vouch for) must not reach OUT_DIR.
    let rels: std::collections::HashSet<&str> = keep.iter().map(|e| e.rel.as_str()).collect();
    crate::output::prune(txn.dir(), &rels)?;
    let journal = Journal::create(txn.dir(), header, &keep)?;
    Ok((resumed, journal))
}

/// The per-file outcomes of a run, checked (kept + excluded = rows of each file) and added up;
/// quarantined files join `skipped`.
type Collected = (
    Vec<crate::summary::FileStats>,
    crate::summary::Counts,
    Vec<arrow_array::RecordBatch>,
);

fn collect_outcomes(
    policy: &crate::policy::Policy,
    outcomes: Vec<FileOutcome>,
    jobs: &[FileJob],
    job_index: &[usize],
    skipped: &mut Vec<Skipped>,
) -> Result<Collected> {
    let mut files = Vec::new();
    let mut excluded = Vec::new();
    let mut counts = crate::summary::Counts::new(policy.rules.len());
    for ((o, j), i) in outcomes.into_iter().zip(jobs).zip(job_index) {
        match o {
            FileOutcome::Done {
                stats,
                counts: c,
                excluded: rows,
            } => {
                excluded.extend(rows);
                if stats.kept + stats.excluded != j.input.rows() {
                    return Err(Error::invalid(
                        j.input.location().clone(),
                        None,
                        format!(
                            "kept {} + excluded {} != {} rows in the footer",
                            stats.kept,
                            stats.excluded,
                            j.input.rows()
                        ),
                    ));
                }
                counts.add(&c);
                files.push(stats);
            }
            FileOutcome::Skipped { path, error } => skipped.push((*i, path, error)),
        }
    }
    Ok((files, counts, excluded))
}

fn run_with(
    plan: &FilterPlan,
    collect_excluded: usize,
) -> Result<(RunSummary, Vec<arrow_array::RecordBatch>)> {
    let started_at = now_rfc3339();
    let policy = plan.policy.as_ref();
    crate::signals::install();
    // PREV_OUT's record first (a read error is reported where `--reuse` looks at it): the
    // sources whose files it holds as they were hashed are not hashed again.
    let mut state = match (&plan.reuse, &plan.output) {
        (Some(prev), Some(_)) if !plan.dry_run && !plan.resume => {
            Some(crate::reuse::read_state(prev))
        }
        _ => None,
    };
    let named = joined_sources(plan);
    let trusted = match &state {
        Some(Ok(Ok(state))) => crate::reuse::trust_recorded_sources(state, &named),
        _ => Vec::new(),
    };
    // Every run that loads the snapshot or lists records their hashes (and `--reuse` compares
    // them first): hashed from now on, beside what follows (see `join::hash_ahead`).
    join::hash_ahead(
        named
            .iter()
            .map(|(_, l)| *l)
            .filter(|l| !trusted.contains(l))
            .cloned()
            .collect(),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", plan.threads)))?;
    // Footers once, for what --reuse settles first and for the run.
    let opened = pool.install(|| open_inputs(plan));
    let narrow = match reuse_unchanged(plan, &pool, &opened, &mut state, &started_at)? {
        SameSources::AllReused(summary) => return Ok((*summary, Vec::new())),
        SameSources::Narrow(n) => Some(*n),
        SameSources::No => None,
    };
    let mut skipped: Vec<Skipped> = Vec::new();
    let Prepared {
        mut jobs,
        job_index,
        join,
    } = prepare_all(
        plan,
        &pool,
        opened,
        &mut skipped,
        narrow.as_ref().map(|n| &n.keys),
    )?;
    crate::failpoint::hit("snapshot-loaded");
    // The snapshot's load and index, and the footers' parsing, freed much on the preparing
    // pool's threads, whose arenas the engine's threads do not allocate from: handed back on a
    // thread of its own while the digests and the engine go on. Not on a `--reuse` night (nor
    // after keys.parquet is written, below): its digests, search and few row groups allocate
    // from that memory instead of faulting in fresh pages. A 10-per-million night: CPU 441 ms
    // against 466, wall 279 against 291 (medians of sixteen alternating runs), peak RSS
    // 111-121 MiB against 86-94; a 1,000-per-million night, which recomputes every file:
    // 147-167 MiB against 139. A fresh run, whose engine holds far more for far longer, still
    // hands the memory back.
    let keep_freed = plan.reuse.is_some();
    if !keep_freed {
        crate::allocator::release_free_later();
    }
    let total_bytes: u64 = jobs.iter().map(|j| j.total_bytes()).sum();
    let progress = Progress::new(plan.progress, total_bytes);
    // PREV_OUT as the messages of a run that stops while reusing it name it.
    let reuse_from = plan
        .reuse
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    // A snapshot loaded for some members only is described by PREV_OUT's record of it.
    let narrowed = narrow.is_some();
    let narrowed_to = narrow.as_ref().map(|n| n.inputs.clone());
    let joined = match narrow {
        Some(n) => {
            let loaded = join.as_deref().map(JoinRecord::of).unwrap_or_default();
            if loaded.hashes() != n.joined.hashes() {
                return Err(Error::Busy(format!(
                    "{}: the consent snapshot or a list changed while this run read it; run again",
                    reuse_from
                )));
            }
            Some(n.joined)
        }
        None => join.as_deref().map(JoinRecord::of),
    };
    let header = header_of(plan, joined.as_ref().map(JoinRecord::hashes));
    let writes = plan.output.is_some() && !plan.dry_run;
    // A policy that decides a member's rows by its region and consent alone has its members
    // digested by their region and rule (see `join::digest::member_digests`).
    let member_rules = crate::decide::member_rule_table(policy);
    // What the join says of each member, recorded for the next run's --reuse (and compared
    // with PREV_OUT's record by this one's): computed at most once, and held only when the
    // comparison asked for it first.
    let digest_now = || -> Result<Vec<(u64, u64)>> {
        if narrowed {
            // Never digests of a snapshot loaded for some members only: PREV_OUT's record
            // (of the same content) is copied instead, and it was not as recorded.
            return Err(Error::Usage(format!(
                "{}: {}/keys.parquet changed while it was being reused; run again",
                reuse_from,
                crate::reuse::STATE_DIR
            )));
        }
        let j = join
            .as_deref()
            .expect("digests are asked for only when joining");
        pool.install(|| crate::join::digest::member_digests(j, member_rules.as_deref()))
            .map_err(|m| Error::Usage(format!("--consent-table: {m}")))
    };
    let computed: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();
    let compute = || -> Result<&[(u64, u64)]> {
        if let Some(d) = computed.get() {
            return Ok(d);
        }
        let d = digest_now()?;
        Ok(computed.get_or_init(|| d))
    };
    let digests: Option<crate::reuse::Digests> = (writes && join.is_some()).then_some(&compute);
    // Before the transaction begins: with --overwrite of an object-store OUT that is PREV_OUT
    // too, beginning removes its _SUCCESS.
    let mut previous = match (&plan.reuse, writes) {
        (Some(prev), true) => {
            // As read when the run began (read again, it cost a millisecond or two of a night).
            let state = match state {
                Some(Ok(read)) => read,
                _ => crate::reuse::read_state(prev)?,
            };
            Some(match state {
                Ok(state) => crate::reuse::load_state(
                    prev,
                    state,
                    &header,
                    policy.rules.len(),
                    digests,
                    plan.read,
                    Some(&pool),
                )?,
                Err(m) => crate::reuse::Loaded::Unusable(m),
            })
        }
        _ => None,
    };
    let keys_copy = match previous.as_mut() {
        Some(crate::reuse::Loaded::Usable(p)) => p.keys_copy.take(),
        _ => None,
    };
    let txn = match (&plan.output, plan.dry_run) {
        (Some(out), false) => Some(OutputTxn::begin(out, plan.resume, plan.overwrite)?),
        _ => None,
    };
    let (resumed, journal) = match &txn {
        Some(t) => {
            let (r, j) = resume_state(plan, &pool, t, &header, &jobs)?;
            (r, Some(j))
        }
        None => (HashMap::new(), None),
    };
    let (done_before, reuse) = match (previous, &txn, &journal) {
        (Some(p), Some(t), Some(j)) => reuse_previous(p, plan, &pool, t, j, &mut jobs, &resumed)?,
        _ => (resumed.clone(), None),
    };
    // The snapshot was indexed for the members of some inputs only: an input that turned out
    // not reusable after all (PREV_OUT's outputs changed since they were looked at) would be
    // decided without its members' snapshot rows. Never: the run stops, retryable.
    if let Some(allowed) = &narrowed_to {
        if let Some(j) = jobs
            .iter()
            .enumerate()
            .find(|(i, j)| !done_before.contains_key(i) && !allowed.contains(&j.input.file.rel))
        {
            return Err(Error::Busy(format!(
                "{}: its outputs of {} changed while this run read them; run again",
                reuse_from, j.1.input.file.rel
            )));
        }
    }
    // Each row's decision, for a later --reuse to decide again only changed members' rows: a
    // run that joins nothing has none, and a laid-out output keeps no per-input state.
    let record = writes && join.is_some() && plan.layout.is_none();
    for j in jobs.iter_mut() {
        j.record_decisions = record;
    }
    // The member digests and keys.parquet need only the join: they are made while the engine
    // runs (on the preparing pool, idle by then), not after the last input.
    let early = digests.is_some() && keys_copy.is_none() && !narrowed;
    let (outcome, early_keys) = std::thread::scope(|s| {
        let background = match (&txn, early) {
            (Some(t), true) => {
                Some(s.spawn(|| {
                    // Kept only if comparing with PREV_OUT's record needed them already;
                    // otherwise made, written and freed here (16 bytes a member).
                    let written = match computed.get() {
                        Some(d) => crate::reuse::write_keys_early(t.dir(), d),
                        None => {
                            digest_now().and_then(|d| crate::reuse::write_keys_early(t.dir(), &d))
                        }
                    };
                    if !keep_freed {
                        crate::allocator::release_free();
                    }
                    written
                }))
            }
            _ => None,
        };
        let outcome = engine::run(
            plan,
            &jobs,
            &RunContext {
                out: txn.as_ref().map(|t| t.dir()),
                skip_unreadable: plan.skip_unreadable,
                journal: journal.as_ref(),
                resumed: &done_before,
                progress: &progress,
                collect_excluded,
            },
        );
        let keys = background.map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(Error::Usage(
                    "recording the member digests failed unexpectedly".into(),
                ))
            })
        });
        (outcome, keys)
    });
    progress.finish();
    let outcomes = match outcome {
        Ok(o) => o,
        Err(Error::Interrupted { signal, .. }) => {
            // Completed files stay, with the journal, for --resume: in the temporary sibling,
            // or in an object-store OUT (which has no _SUCCESS, so no reader takes them).
            let kept = match txn {
                Some(t) => {
                    if early_keys.is_some() {
                        // Not what a resumed run takes over (it records its own): an output
                        // kept for --resume holds only finished files and the journal.
                        crate::reuse::discard_keys(t.dir());
                    }
                    t.keep();
                    true
                }
                None => false,
            };
            return Err(Error::Interrupted { signal, kept });
        }
        Err(e) => return Err(e),
    };

    let early_keys = early_keys.transpose()?;
    let mut reuse = reuse;
    if let Some(r) = reuse.as_mut() {
        // Row groups of the files processed now whose data came from PREV_OUT, whole or
        // spliced.
        let now = || {
            outcomes
                .iter()
                .enumerate()
                .filter(|(i, _)| !done_before.contains_key(i))
                .filter_map(|(_, o)| match o {
                    FileOutcome::Done { stats, .. } => Some(stats),
                    FileOutcome::Skipped { .. } => None,
                })
        };
        let copied: u64 = now().map(|s| s.row_groups_from_previous).sum();
        r.row_groups_reused += copied;
        r.row_groups_recomputed -= copied;
        r.row_groups_spliced += now().map(|s| s.row_groups_spliced).sum::<u64>();
        r.pages_reused += now().map(|s| s.pages_from_previous).sum::<u64>();
        r.manifest_pages_reused += now().map(|s| s.manifest_pages_from_previous).sum::<u64>();
        r.decisions_reused += now().map(|s| s.decisions_reused).sum::<u64>();
    }
    let (files, counts, excluded) =
        collect_outcomes(policy, outcomes, &jobs, &job_index, &mut skipped)?;
    skipped.sort_by_key(|(i, _, _)| *i);

    let mut summary = RunSummary {
        join: joined.clone(),
        started_at,
        finished_at: String::new(),
        options: plan.options_json(),
        files,
        counts,
        dry_run: plan.dry_run,
        skipped: skipped.into_iter().map(|(_, p, e)| (p, e)).collect(),
        resumed: resumed.len(),
        reuse,
        parts: None,
    };
    if let (Some(layout), Some(t)) = (plan.layout, &txn) {
        summary.parts = Some(crate::layout::lay_out(
            t.dir(),
            &summary.files,
            layout,
            plan.read,
        )?);
    }
    summary.finished_at = now_rfc3339();
    if let Some(txn) = txn {
        let entries = match journal {
            Some(j) => {
                let entries = j.entries();
                j.remove()?;
                Some(entries)
            }
            None => None,
        };
        // A laid-out output keeps no per-input data files: nothing a later --reuse could take.
        let entries = entries.filter(|_| plan.layout.is_none());
        if plan.layout.is_some() && early_keys.is_some() {
            crate::reuse::discard_keys(txn.dir());
        }
        let state = entries.map(|entries| State {
            header: &header,
            entries,
            join: joined.as_ref(),
            digests,
            written: early_keys,
            keys_copy: keys_copy.as_ref(),
        });
        commit(txn, state, &summary, policy)?;
    }
    // Freeing the inputs' footers, the snapshot's index and the digests took a nightly run
    // ~3 % of its time, which no caller needs to wait for.
    crate::allocator::free_later((jobs, job_index, join, computed, pool));
    Ok((summary, excluded))
}

/// What `OUT/_state/` records (see [`crate::reuse::write_state`]).
struct State<'a> {
    header: &'a Header,
    entries: Vec<Entry>,
    join: Option<&'a JoinRecord>,
    digests: Option<crate::reuse::Digests<'a>>,
    /// keys.parquet, written while the engine ran.
    written: Option<crate::reuse::KeysRecord>,
    keys_copy: Option<&'a crate::reuse::KeysCopy>,
}

/// `_state/`, then summary.json, then the commit (`_SUCCESS` last).
fn commit(
    txn: OutputTxn,
    state: Option<State>,
    summary: &RunSummary,
    policy: &crate::policy::Policy,
) -> Result<()> {
    if let Some(s) = state {
        crate::reuse::write_state(
            txn.dir(),
            s.header,
            s.entries,
            s.join,
            s.digests,
            s.written,
            s.keys_copy,
        )?;
    }
    let text = summary.to_file(policy).to_text();
    crate::io::write_file(&txn.dir().join("summary.json"), text.as_bytes())?;
    txn.commit()
}

/// What the outputs depend on besides each input (`join`: the snapshot's and lists' hashes); a
/// resumed or reused run must match it.
fn header_of(plan: &FilterPlan, join: Option<Vec<String>>) -> Header {
    Header::new(
        &plan.policy.sha256,
        join.unwrap_or_default(),
        format!(
            "{} trust_input_pages={} pseudonymize={}",
            plan.compression.describe(),
            plan.trust_input_pages,
            pseudonym_tag(plan.pseudonymize.as_deref()),
        ),
    )
}

/// `input`'s user ids; `None` when they cannot be read (the run then reports it as it processes
/// the file).
fn member_keys(input: &Input, column: &str) -> Option<join::KeySet> {
    let pq = input.parquet.parquet_meta().clone();
    let mut keys = join::KeySet::default();
    let mut ok = true;
    for rg in 0..input.parquet.num_row_groups() {
        let r = input
            .parquet
            .read_row_group(&pq, rg, Some(&[column]), 1 << 16, None, &mut |b| {
                ok &= b.num_columns() == 1 && keys.add_column(b.column(0).as_ref()).is_ok();
                Ok(())
            });
        if r.is_err() || !ok {
            return None;
        }
    }
    Some(keys)
}

/// What `--reuse` can settle before the snapshot is loaded, when its content and the lists'
/// are PREV_OUT's (then no member changed).
enum SameSources {
    /// Every input as recorded too: PREV_OUT's outputs are this run's, and neither the
    /// snapshot nor a list was loaded (the dearest part of such a night).
    AllReused(Box<RunSummary>),
    /// Some inputs are new or changed: only their members need loading from the snapshot.
    Narrow(Box<Narrow>),
    /// Anything else: the usual way, which also says why what it cannot reuse is processed.
    No,
}

struct Narrow {
    /// The members the inputs to process hold.
    keys: join::KeySet,
    /// Those inputs (`rel`): the only ones the snapshot loaded for `keys` may decide.
    inputs: std::collections::HashSet<String>,
    /// What summary.json says of the snapshot and lists (PREV_OUT's record, today's paths).
    joined: JoinRecord,
}

/// A night loads the snapshot for the members of the inputs it processes only when those hold
/// at most 1/NARROW_SHARE of the rows (at a few rows per member, a sixteenth of the rows is
/// already about a fifth of the members).
const NARROW_SHARE: u64 = 16;

/// PREV_OUT's record, read when a `--reuse` run begins: the error reading it, or why it cannot
/// be used, or it (see `reuse::read_state`).
type PreviousState = Result<std::result::Result<crate::reuse::StateFile, String>>;

/// The snapshot and lists `plan` joins, by the names PREV_OUT's record gives them.
fn joined_sources(plan: &FilterPlan) -> Vec<(&str, &Location)> {
    let sources = &plan.join;
    sources
        .consent_table
        .iter()
        .filter(|_| plan.policy.consent_table.is_some())
        .map(|l| ("consent_table", l))
        .chain(sources.user_lists.iter().map(|(n, l)| (n.as_str(), l)))
        .collect()
}

/// What `--reuse` settles before anything is loaded (see [`SameSources`]); `opened`: every
/// input, opened; `state`: PREV_OUT's record as read (`None`: this run cannot reuse; an error
/// reading it is taken from there and returned).
fn reuse_unchanged(
    plan: &FilterPlan,
    pool: &rayon::ThreadPool,
    opened: &[Result<Input>],
    state: &mut Option<PreviousState>,
    started_at: &str,
) -> Result<SameSources> {
    let no = Ok(SameSources::No);
    let (Some(prev), Some(out)) = (&plan.reuse, &plan.output) else {
        return no;
    };
    let policy = plan.policy.as_ref();
    let Some(inputs) = opened
        .iter()
        .map(|f| f.as_ref().ok())
        .collect::<Option<Vec<&Input>>>()
    else {
        return no;
    };
    // The sources `load_join` would load, hashed as it hashes them.
    let named = joined_sources(plan);
    if let Some(Err(e)) = state.take_if(|s| s.is_err()) {
        return Err(e);
    }
    let Some(Ok(Ok(state))) = state.as_ref() else {
        return no;
    };
    let state = state.clone();
    // A source whose size is not the one PREV_OUT recorded changed: waiting here for its hash
    // (being taken ahead, see `join::hash_ahead`) would only say so, before anything else could
    // start; its load takes the hash when it needs it. That is most nights.
    if crate::reuse::sources_resized(&state, &named) {
        return no;
    }
    let hashes = pool.install(|| {
        named
            .par_iter()
            .map(|(n, l)| join::path_sha256(l).map(|h| (*n, h)))
            .collect::<Result<Vec<_>>>()
    });
    let Ok(hashes) = hashes else { return no };
    let header = header_of(
        plan,
        Some(hashes.iter().map(|(n, h)| format!("{n}:{h}")).collect()),
    );
    let loaded = crate::reuse::load_state(
        prev,
        state,
        &header,
        policy.rules.len(),
        None,
        plan.read,
        None,
    );
    let mut previous = match loaded? {
        crate::reuse::Loaded::Usable(p) => p,
        crate::reuse::Loaded::Unusable(_) => return no,
    };
    let joined = if named.is_empty() {
        None
    } else {
        match previous.recorded_join(&named, &hashes) {
            Some(j) => Some(j),
            None => return no,
        }
    };
    let keys_copy = previous.keys_copy.take();
    if joined.is_some() && keys_copy.is_none() {
        return no;
    }
    let column = policy.columns.user_id.as_deref();
    let mut recorded = Vec::with_capacity(inputs.len());
    let mut fresh = Vec::new();
    for f in &inputs {
        match previous.candidate(&f.file.rel, &f.parquet, column) {
            Reusable::Whole(e) => recorded.push(e),
            _ => fresh.push(f),
        }
    }
    if !fresh.is_empty() {
        let (Some(joined), Some(column)) = (joined, column) else {
            return no;
        };
        // Loading the snapshot for some members pays only when they are few: a night that
        // must process much of the corpus again (its files rewritten) loads it whole, faster.
        let fresh_rows: u64 = fresh.iter().map(|f| f.rows()).sum();
        let all_rows: u64 = inputs.iter().map(|f| f.rows()).sum();
        if fresh_rows.saturating_mul(NARROW_SHARE) > all_rows {
            return no;
        }
        if plan.join.consent_table.is_none() || policy.consent_table.is_none() {
            return no;
        }
        // The members of the inputs to process: all the snapshot must answer for.
        let keys = pool.install(|| {
            fresh
                .par_iter()
                .map(|f| member_keys(f, column))
                .collect::<Option<Vec<_>>>()
        });
        let Some(keys) = keys else { return no };
        // The snapshot will answer for those members only: every other input must be taken
        // whole, so its outputs must still be as recorded (else the usual way, which decides
        // it with the whole snapshot).
        if !pool.install(|| recorded.par_iter().all(|e| previous.outputs_in_place(e))) {
            return no;
        }
        let mut all = join::KeySet::default();
        for k in keys {
            all.extend(k);
        }
        let inputs = fresh.iter().map(|f| f.file.rel.clone()).collect();
        return Ok(SameSources::Narrow(Box::new(Narrow {
            keys: all,
            inputs,
            joined,
        })));
    }

    let txn = OutputTxn::begin(out, false, plan.overwrite)?;
    let adopted = pool.install(|| {
        recorded
            .par_iter()
            .map(|e| previous.adopt(e, txn.dir()))
            .collect::<Result<Vec<_>>>()
    })?;
    // A previous output not as recorded: the usual way processes it afresh.
    let Some(entries) = adopted.into_iter().collect::<Option<Vec<Entry>>>() else {
        return no;
    };
    let mut counts = crate::summary::Counts::new(policy.rules.len());
    for e in &entries {
        counts.add(&e.counts);
    }
    let summary = RunSummary {
        join: joined.clone(),
        started_at: started_at.to_owned(),
        finished_at: now_rfc3339(),
        options: plan.options_json(),
        files: entries.iter().map(|e| e.stats.clone()).collect(),
        counts,
        dry_run: false,
        skipped: Vec::new(),
        resumed: 0,
        parts: None,
        reuse: Some(crate::summary::ReuseRecord {
            from: prev.to_string(),
            files_reused: entries.len() as u64,
            row_groups_reused: inputs
                .iter()
                .map(|f| f.parquet.num_row_groups() as u64)
                .sum(),
            row_groups_recomputed: 0,
            bytes_reused: entries.iter().map(|e| e.data.size + e.excluded.size).sum(),
            changed_keys: Some(0),
            fallback: None,
            row_groups_spliced: 0,
            pages_reused: 0,
            manifest_pages_reused: 0,
            decisions_reused: 0,
            row_groups_searched: 0,
        }),
    };
    // The copy of PREV_OUT's digests is checked as it is taken; these are never computed.
    let none = || -> Result<&[(u64, u64)]> {
        Err(Error::Usage(format!(
            "{prev}: {}/keys.parquet changed while it was being reused; run again",
            crate::reuse::STATE_DIR
        )))
    };
    let state = State {
        header: &header,
        entries,
        join: joined.as_ref(),
        digests: joined.is_some().then_some(&none),
        written: None,
        keys_copy: keys_copy.as_ref(),
    };
    commit(txn, Some(state), &summary, policy)?;
    Ok(SameSources::AllReused(Box::new(summary)))
}

/// `--reuse`: take from PREV_OUT the outputs of the files it vouches for (see [`crate::reuse`]).
/// Returns every file done before the engine starts (resumed or reused) and the summary's record.
#[allow(clippy::type_complexity)]
fn reuse_previous(
    previous: crate::reuse::Loaded,
    plan: &FilterPlan,
    pool: &rayon::ThreadPool,
    txn: &OutputTxn,
    journal: &Journal,
    jobs: &mut [FileJob],
    resumed: &HashMap<usize, Entry>,
) -> Result<(HashMap<usize, Entry>, Option<crate::summary::ReuseRecord>)> {
    let from = plan
        .reuse
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let row_groups = |files: &mut dyn Iterator<Item = &FileJob>| -> u64 {
        files.map(|j| j.num_row_groups() as u64).sum()
    };
    let previous = match previous {
        crate::reuse::Loaded::Usable(p) => p,
        crate::reuse::Loaded::Unusable(why) => {
            eprintln!("corpusgate: --reuse: {why}; processing every file afresh");
            let record = crate::summary::ReuseRecord {
                from,
                files_reused: 0,
                row_groups_reused: 0,
                row_groups_recomputed: row_groups(
                    &mut jobs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !resumed.contains_key(i))
                        .map(|(_, j)| j),
                ),
                bytes_reused: 0,
                changed_keys: None,
                fallback: Some(why),
                row_groups_spliced: 0,
                pages_reused: 0,
                manifest_pages_reused: 0,
                decisions_reused: 0,
                row_groups_searched: 0,
            };
            return Ok((resumed.clone(), Some(record)));
        }
    };
    let column = plan.policy.columns.user_id.as_deref();
    let adopted: Vec<(usize, Result<Option<Entry>>, Option<Arc<PreviousRowGroups>>)> = pool
        .install(|| {
            jobs.par_iter()
                .enumerate()
                .filter(|(i, _)| !resumed.contains_key(i))
                .filter_map(|(i, j)| {
                    match previous.candidate(&j.input.file.rel, &j.input.parquet, column) {
                        Reusable::Nothing => None,
                        Reusable::Whole(e) => Some((i, previous.adopt(e, txn.dir()), None)),
                        Reusable::RowGroups(p) => Some((i, Ok(None), Some(p))),
                    }
                })
                .collect()
        });
    let mut done = resumed.clone();
    let mut bytes_reused = 0;
    let mut taken = Vec::new();
    for (i, r, partly) in adopted {
        if let Some(e) = r? {
            bytes_reused += e.data.size + e.excluded.size;
            taken.push(e.clone());
            done.insert(i, e);
        } else {
            jobs[i].previous = partly;
        }
    }
    // Journaled together: one sync, not one per file.
    journal.append_all(&taken)?;
    let reused: Vec<usize> = (0..jobs.len())
        .filter(|i| done.contains_key(i) && !resumed.contains_key(i))
        .collect();
    let record = crate::summary::ReuseRecord {
        from,
        files_reused: reused.len() as u64,
        row_groups_reused: row_groups(&mut reused.iter().map(|&i| &jobs[i])),
        row_groups_recomputed: row_groups(
            &mut jobs
                .iter()
                .enumerate()
                .filter(|(i, _)| !done.contains_key(i))
                .map(|(_, j)| j),
        ),
        bytes_reused,
        changed_keys: Some(previous.changed_keys() as u64),
        fallback: None,
        row_groups_spliced: 0,
        pages_reused: 0,
        manifest_pages_reused: 0,
        decisions_reused: 0,
        row_groups_searched: previous.row_groups_searched(),
    };
    Ok((done, Some(record)))
}

/// A tag of the `--pseudonymize-user-ids` key for comparing runs (outputs made under another
/// key differ): HMAC-SHA-256 of a fixed text under the key, 64 bits, never the key itself.
fn pseudonym_tag(key: Option<&Vec<u8>>) -> String {
    use hmac::{Hmac, Mac};
    let Some(key) = key else {
        return "-".into();
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"corpusgate: which --pseudonymize-user-ids key");
    crate::policy::hex(&mac.finalize().into_bytes())[..16].to_owned()
}

/// `corpusgate filter`.
pub fn command(args: &crate::cli::FilterArgs) -> Result<crate::error::ExitStatus> {
    let plan = FilterPlan::for_filter(args)?;
    if plan.dry_run && args.reuse.is_some() {
        // A dry run writes nothing, so it has nothing to take from PREV_OUT; its decisions are
        // the ones --reuse would lead to anyway.
        eprintln!("corpusgate: --reuse is not used by a dry run (it writes no output)");
    }
    let summary = run(&plan)?;
    eprint!("{}", summary.human(&plan.policy, plan.output.as_ref()));
    if plan.dry_run {
        print!("{}", summary.to_file(&plan.policy).to_text());
    }
    Ok(if summary.skipped.is_empty() {
        crate::error::ExitStatus::Success
    } else {
        crate::error::ExitStatus::Quarantined
    })
}
