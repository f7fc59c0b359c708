//! The in-order scheduler: row groups of every input run as tasks on a rayon pool, and the one
//! writer (the calling thread) appends their results to each output file strictly in input order,
//! so the bytes written do not depend on the thread count. A completed file goes to the placer
//! (a thread of its own), which syncs its outputs, moves them to their names and only then
//! journals it, while the writer goes on with the next file; the run returns once every file is
//! placed, or with the first error either met.
//!
//! Memory stays bounded whatever the corpus size: at most `2 × threads + 1` tasks are in flight
//! or waiting to be written with output they encoded, and together they may not plan to use more
//! than `--max-memory` (a task is admitted alone when it is the only one). A finished task whose
//! result holds nothing but row groups to copy (PREV_OUT's under `--reuse`, a local input's
//! passed through) frees its plan and its place, so a worker does not wait behind one slow row
//! group while the next ones are quick; at most [`AHEAD`] windows of tasks are ever ahead of the
//! writer. (From an object store what a task fetched stays until it is written: there every
//! task keeps its place.)

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

use arrow_array::RecordBatch;

use super::job::{FileJob, Input};
use super::row_group::{process_row_group, RowGroupResult};
use super::sink::{FileSink, FileWritten, ToPlace};
use crate::error::{Error, Result};
use crate::io::{Identity, Location};
use crate::journal::{Entry, Journal};
use crate::plan::FilterPlan;
use crate::policy::Policy;
use crate::progress::Progress;
use crate::summary::{Counts, FileStats};

/// How one input file ended.
pub enum FileOutcome {
    Done {
        stats: FileStats,
        counts: Counts,
        /// Manifest rows kept for the caller (see `RunContext::collect_excluded`).
        excluded: Vec<RecordBatch>,
    },
    /// Unreadable and quarantined under `--on-error skip`: nothing of it is written.
    Skipped { path: Location, error: String },
}

/// What the engine needs beyond the jobs.
pub struct RunContext<'a> {
    /// The temporary output directory; `None` in a dry run.
    pub out: Option<&'a Location>,
    pub skip_unreadable: bool,
    pub journal: Option<&'a Journal>,
    /// Files whose outputs an earlier run completed, by index into `jobs`.
    pub resumed: &'a HashMap<usize, Entry>,
    pub progress: &'a Progress,
    /// Keep up to this many excluded rows (unencoded manifest rows) in the outcomes (`verify`).
    pub collect_excluded: usize,
}

type TaskResult = (usize, Result<RowGroupResult>);

/// How far ahead of the writer tasks may run, in windows, where results hold no encoded output:
/// what waits is then a row group's counts and decision record, not its data.
const AHEAD: usize = 8;

/// The writer's view of the tasks: which are submitted, in flight, finished but not yet written.
struct Tasks<'a> {
    jobs: &'a [FileJob],
    /// (file, row group) of every task, in file order.
    list: Vec<(usize, usize)>,
    /// What each task may hold in memory, from its footer (see `FileJob::footer_estimate`).
    estimate: Vec<u64>,
    next: usize,
    in_flight: usize,
    /// Memory planned by tasks submitted and not yet written.
    held: u64,
    cap: u64,
    /// Tasks in flight or waiting with encoded output, at most.
    window: usize,
    /// Results of tasks below this index belong to an abandoned file and are dropped.
    discard_below: usize,
    pending: BTreeMap<usize, Result<RowGroupResult>>,
    /// Per task: finished, it holds nothing it encoded nor anything fetched (see `submit`).
    small: Vec<bool>,
    rx: mpsc::Receiver<TaskResult>,
    /// Tasks submitted and not finished (see [`super::spare`]).
    busy: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<'a> Tasks<'a> {
    /// Submit tasks while the window has room (the writer waits for task `writing`) and the
    /// memory they plan fits the cap.
    fn submit<'s>(
        &mut self,
        scope: &rayon::Scope<'s>,
        tx: &mpsc::Sender<TaskResult>,
        policy: &'s Policy,
        writing: usize,
        write: bool,
        collect: bool,
    ) where
        'a: 's,
    {
        let upto = writing.saturating_add(self.window.saturating_mul(AHEAD));
        let encoded = self.pending.keys().filter(|i| !self.small[**i]).count();
        let mut busy = self.in_flight + encoded;
        while self.next < self.list.len() && self.next < upto && busy < self.window {
            let t = self.next;
            let est = self.estimate[t];
            if self.in_flight + self.pending.len() > 0 && self.held.saturating_add(est) > self.cap {
                break;
            }
            let (f, rg) = self.list[t];
            let job: &'s FileJob = &self.jobs[f];
            let tx = tx.clone();
            // Counted from now, not from when it starts: while tasks wait for a thread, no
            // thread is idle for long.
            let counted = super::spare::Counted::start(&self.busy);
            scope.spawn(move |_| {
                let r = match crate::signals::requested() {
                    Some(signal) => Err(Error::Interrupted { signal, kept: true }),
                    None => {
                        crate::guard::catch(|| process_row_group(job, rg, policy, write, collect))
                            .unwrap_or_else(|panic| {
                                Err(Error::read(
                                    job.input.location().clone(),
                                    Some(rg),
                                    crate::error::ReadError::Panic(panic),
                                ))
                            })
                    }
                };
                drop(counted);
                let _ = tx.send((t, r));
            });
            self.held = self.held.saturating_add(est);
            self.next += 1;
            self.in_flight += 1;
            busy += 1;
        }
    }

    /// Wait for task `t`'s result, keeping the pool fed.
    fn take<'s>(
        &mut self,
        t: usize,
        scope: &rayon::Scope<'s>,
        tx: &mpsc::Sender<TaskResult>,
        policy: &'s Policy,
        write: bool,
        collect: bool,
    ) -> Result<RowGroupResult>
    where
        'a: 's,
    {
        loop {
            if let Some(signal) = crate::signals::requested() {
                return Err(Error::Interrupted { signal, kept: true });
            }
            self.submit(scope, tx, policy, t, write, collect);
            if let Some(r) = self.pending.remove(&t) {
                self.held = self.held.saturating_sub(self.estimate[t]);
                return r;
            }
            match self.rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok((i, r)) => {
                    self.in_flight -= 1;
                    if i >= self.discard_below {
                        let (f, _) = self.list[i];
                        let local = !self.jobs[f].input.location().is_object();
                        // From an object, what was fetched for it stays until it is written.
                        if local && !holds_output(&r) {
                            // What it planned to hold it does not: its decision record, counts.
                            self.small[i] = true;
                            let holds = record_bytes(&r);
                            self.held = self
                                .held
                                .saturating_sub(self.estimate[i])
                                .saturating_add(holds);
                            self.estimate[i] = holds;
                        }
                        self.pending.insert(i, r);
                    } else {
                        self.held = self.held.saturating_sub(self.estimate[i]);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the writer holds a sender")
                }
            }
        }
    }

    /// Drop every task of a file whose tasks end before `next`.
    fn abandon_before(&mut self, next: usize) {
        self.discard_below = next;
        let dropped: Vec<usize> = self.pending.range(..next).map(|(i, _)| *i).collect();
        for i in dropped {
            self.pending.remove(&i);
            self.held = self.held.saturating_sub(self.estimate[i]);
        }
        while self.next < next {
            self.next += 1;
        }
    }

    /// Let in-flight work finish before the scope ends; late results are dropped.
    fn drain(&mut self) {
        while self.in_flight > 0 {
            let _ = self.rx.recv();
            self.in_flight -= 1;
        }
    }
}

/// Whether a task's result holds output it encoded (or an error: counted as if it did), as
/// opposed to row groups to copy (PREV_OUT's, or a local input's passed through) or nothing.
fn holds_output(r: &Result<RowGroupResult>) -> bool {
    use super::row_group::{DataOut, ManifestOut};
    match r {
        Ok(r) => {
            matches!(r.data, DataOut::Encoded(_))
                || matches!(r.manifest, Some(ManifestOut::Encoded(_)))
                || r.excluded_rows.is_some()
        }
        Err(_) => true,
    }
}

/// What a result without encoded output holds: its decision record.
fn record_bytes(r: &Result<RowGroupResult>) -> u64 {
    let Ok(Some(record)) = r.as_ref().map(|r| r.record.as_ref()) else {
        return 0;
    };
    let codes = std::mem::size_of_val(record.codes.as_slice());
    (codes + record.members.as_ref().map_or(0, Vec::len)) as u64
}

/// One file's row groups appended in order; returns its outcome, or the error that ends it.
#[allow(clippy::too_many_arguments)]
fn write_file<'a, 's>(
    f: usize,
    first: usize,
    tasks: &mut Tasks<'a>,
    scope: &rayon::Scope<'s>,
    tx: &mpsc::Sender<TaskResult>,
    policy: &'s Policy,
    ctx: &RunContext,
    room: &mut usize,
) -> std::result::Result<(FileStats, Counts, Vec<RecordBatch>, Option<ToPlace>), Error>
where
    'a: 's,
{
    let job = &tasks.jobs[f];
    let write = ctx.out.is_some();
    let collect = ctx.collect_excluded > 0;
    let mut sink = FileSink::open(job, ctx.out)?;
    let mut counts = Counts::new(policy.rules.len());
    let mut excluded_rows: Vec<RecordBatch> = Vec::new();
    for rg in 0..job.num_row_groups() {
        let t = first + rg;
        debug_assert_eq!(tasks.list[t], (f, rg));
        let mut r = tasks.take(t, scope, tx, policy, write, collect)?;
        if let Some(b) = r.excluded_rows.take() {
            if *room > 0 {
                let b = b.slice(0, b.num_rows().min(*room));
                *room -= b.num_rows();
                excluded_rows.push(b);
            }
        }
        counts.add(&r.counts);
        ctx.progress.advance(r.rows, r.bytes);
        sink.append(r)?;
    }
    let (stats, written) = sink.close()?;
    Ok((stats, counts, excluded_rows, written))
}

/// Decide every row group of `jobs` and, unless `ctx.out` is `None`, write the outputs there.
/// Returns one outcome per job, in job order.
pub fn run(plan: &FilterPlan, jobs: &[FileJob], ctx: &RunContext) -> Result<Vec<FileOutcome>> {
    let policy = plan.policy.as_ref();
    let list: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .filter(|(f, _)| !ctx.resumed.contains_key(f))
        .flat_map(|(f, j)| (0..j.num_row_groups()).map(move |rg| (f, rg)))
        .collect();
    let first_task_of: HashMap<usize, usize> = list
        .iter()
        .enumerate()
        .rev()
        .map(|(t, (f, _))| (*f, t))
        .collect();
    let (busy, see_busy) = super::spare::busy_counter();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .thread_name(|i| format!("corpusgate-{i}"))
        .start_handler(see_busy)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", plan.threads)))?;
    let (tx, rx) = mpsc::channel::<TaskResult>();
    let mut tasks = Tasks {
        jobs,
        small: vec![false; list.len()],
        estimate: list
            .iter()
            .map(|(f, rg)| jobs[*f].footer_estimate(*rg))
            .collect(),
        list,
        next: 0,
        in_flight: 0,
        held: 0,
        cap: plan.read.max_memory,
        window: plan.threads * 2 + 1,
        discard_below: 0,
        pending: BTreeMap::new(),
        rx,
        busy,
    };
    let mut room = ctx.collect_excluded;

    // Each file's outputs are synced, moved to their names and journaled on a thread of their
    // own, in the order the files complete: the writer goes on to the next file meanwhile, and
    // the syncs of files completed together find most of their work done by the first.
    std::thread::scope(|threads| {
        let (ptx, prx) = mpsc::sync_channel::<Placing>(PLACING_AHEAD);
        let placer = std::thread::Builder::new()
            .name("corpusgate-place".into())
            .spawn_scoped(threads, move || place_all(prx, ctx.journal))
            .map_err(|e| Error::Usage(format!("cannot start a thread: {e}")))?;
        let written = pool.in_place_scope(|scope| -> Result<Vec<FileOutcome>> {
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut result: Result<()> = Ok(());
            for (f, job) in jobs.iter().enumerate() {
                if let Some(e) = ctx.resumed.get(&f) {
                    ctx.progress.advance(e.stats.rows, job.total_bytes());
                    outcomes.push(FileOutcome::Done {
                        stats: e.stats.clone(),
                        counts: e.counts.clone(),
                        excluded: Vec::new(),
                    });
                    continue;
                }
                let first = first_task_of.get(&f).copied().unwrap_or(0);
                let done = write_file(f, first, &mut tasks, scope, &tx, policy, ctx, &mut room);
                job.release_index();
                match done {
                    Ok((stats, counts, excluded, to_place)) => {
                        if let Some(to_place) = to_place {
                            let placing = Placing {
                                input: &job.input,
                                to_place,
                                stats: stats.clone(),
                                counts: counts.clone(),
                            };
                            // The placer stopped at an error: it says which when joined.
                            if ptx.send(placing).is_err() {
                                break;
                            }
                        }
                        outcomes.push(FileOutcome::Done {
                            stats,
                            counts,
                            excluded,
                        });
                    }
                    Err(e) if ctx.skip_unreadable && e.is_input_error() => {
                        // Quarantine this file: drop its remaining row groups, go on.
                        tasks.abandon_before(first + job.num_row_groups());
                        outcomes.push(FileOutcome::Skipped {
                            path: job.input.location().clone(),
                            error: e.to_string(),
                        });
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            tasks.drain();
            result.map(|_| outcomes)
        });
        drop(ptx);
        let placed = placer.join().unwrap_or_else(|_| {
            Err(Error::Usage(
                "the thread that syncs the outputs stopped unexpectedly".into(),
            ))
        });
        // The writer's own error first: the placer's may only follow from it.
        let outcomes = written?;
        placed?;
        // A stop asked for while the last files were placed is honoured too, though no work is
        // left: whether a run commits must not depend on how far the writer had got.
        if let Some(signal) = crate::signals::requested() {
            return Err(Error::Interrupted { signal, kept: true });
        }
        Ok(outcomes)
    })
}

/// Files completed and not yet synced, at most: each holds its outputs open.
const PLACING_AHEAD: usize = 16;

/// A completed file on its way to the placer.
struct Placing<'a> {
    input: &'a Input,
    to_place: ToPlace,
    stats: FileStats,
    counts: Counts,
}

/// Sync each completed file's outputs and move them to their names, then journal the files,
/// as many at once as have completed meanwhile (one sync of the journal for them all). Stops at
/// the first error, which it returns (dropping what is still queued: its temporaries go).
fn place_all(rx: mpsc::Receiver<Placing<'_>>, journal: Option<&Journal>) -> Result<()> {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut entries = Vec::with_capacity(batch.len());
        for p in batch {
            crate::failpoint::hit("placing");
            let written = p.to_place.place()?;
            if journal.is_some() {
                entries.push(journal_entry(p.input, written, p.stats, p.counts)?);
            }
        }
        if let Some(journal) = journal {
            journal.append_all(&entries)?;
        }
    }
    Ok(())
}

/// The journal entry of a completed file: its input's identity (checked unchanged since it was
/// opened), its outputs as written, and its counts.
fn journal_entry(
    input: &Input,
    written: FileWritten,
    stats: FileStats,
    counts: Counts,
) -> Result<Entry> {
    // An object was pinned at open: every read carried If-Match, so one that changed while it
    // was read failed that read. Asking the store again would only cost a round trip.
    if input.location().is_object() {
        return Ok(Entry {
            rel: input.file.rel.clone(),
            input: input.parquet.identity.clone(),
            data: written.data,
            excluded: written.excluded,
            decisions: written.decisions,
            stats,
            counts,
        });
    }
    let now = Identity::of(input.location())?;
    if now != input.parquet.identity {
        return Err(Error::invalid(
            input.location().clone(),
            None,
            "the file changed while it was being read; run again once it is stable",
        ));
    }
    Ok(Entry {
        rel: input.file.rel.clone(),
        input: now,
        data: written.data,
        excluded: written.excluded,
        decisions: written.decisions,
        stats,
        counts,
    })
}
