//! Scale-out without a scheduler of our own: `plan` splits a job into deterministic shards,
//! `run-shard` runs one (under Slurm, Kubernetes, AWS Batch, Ray …), `commit` checks that every
//! shard is done and writes `summary.json` and `_SUCCESS` last.
//!
//! Layout under OUT: `_plan.json` ([`PlanFile`]: inputs with size, mtime and SHA-256, the
//! policy's and snapshot's hashes, the filter options, the shards), `_plan/policy.yaml` (the
//! policy copy every shard uses), `_shards/shard-NNNNN.json` ([`Marker`]: a done shard, the sizes
//! and checksums of what it wrote, its summary), `_attempts/` (attempt-unique work directories),
//! and the usual `data/` and `excluded/`. Data and manifest files are byte-identical to a single
//! `filter` run's. Each marker also carries its shard's `--reuse` record, and the shards leave
//! their member digests (the same for all) in `_shards/keys.parquet`; `commit` merges them into
//! `_state/` as `filter` writes it, so a later `filter --reuse` or `plan --reuse` can take from
//! a committed plan. `plan --reuse PREV_OUT` is recorded in the plan; each shard then reuses
//! from PREV_OUT what `filter --reuse` would.
//!
//! OUT and the inputs may be in an object store. There an input is known by what the store says
//! of its version (ETag, version id, last-modified) instead of being hashed at plan time, a
//! shard's lock is an object (`_shards/shard-NNNNN/_corpusgate.lock`, see `output`), a finished
//! attempt's files are promoted by server-side copies, and `commit` deletes what no marker
//! vouches for, then writes `_SUCCESS` listing every object with its size and SHA-256, as
//! `filter` does. Both JSON files are read back strictly: a missing or malformed field, or a
//! shard naming an input the plan does not have, is an error naming the file (exit 2).

use std::collections::BTreeMap;
use std::fs;

use indexmap::IndexMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cli::{CommitArgs, PlanArgs, RunShardArgs};
use crate::commands::filter;
use crate::error::{Error, ExitStatus, Result};
use crate::io::object;
use crate::io::{self, sha256_of, Identity, InputFile, Location, ReadOptions, Written};
use crate::journal::DECISIONS_DIR;
use crate::plan::{read_key, CompressionChoice, FilterPlan, JoinSources};
use crate::policy::Policy;
use crate::reuse::StateFile;
use crate::summary::{
    now_rfc3339, FileRecord, RegionRecord, RuleRecord, SkippedRecord, SummaryFile, Totals,
};

const PLAN: &str = "_plan.json";
/// The member digests the shards record, until `commit` moves them to `_state/`.
const SHARD_KEYS: &str = "_shards/keys.parquet";
const FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPolicy {
    pub id: String,
    pub sha256: String,
    pub path: String,
    /// The policy copy, relative to OUT.
    pub copy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSource {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanList {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanJoin {
    pub consent_table: Option<PlanSource>,
    pub user_lists: Vec<PlanList>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOptions {
    pub compression: String,
    pub on_error: String,
    /// The key file's path (never the key).
    pub pseudonymize_user_ids: Option<String>,
    pub trust_input_pages: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub path: String,
    pub rel: String,
    pub size: u64,
    pub mtime: u64,
    /// Of the whole file; empty for an object, which `object` identifies instead.
    pub sha256: String,
    /// An object input: its version as the store tells it (ETag, version id, last-modified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanShard {
    pub index: usize,
    /// Indexes into `inputs`.
    pub files: Vec<usize>,
    pub bytes: u64,
}

/// `_plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub format: u32,
    pub corpusgate_version: String,
    pub created_at: String,
    pub policy: PlanPolicy,
    pub join: PlanJoin,
    pub options: PlanOptions,
    pub inputs: Vec<PlanInput>,
    pub shards: Vec<PlanShard>,
    /// `plan --reuse PREV_OUT`: what every shard may take outputs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<String>,
}

/// One file a shard wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerFile {
    pub rel: String,
    pub data: Written,
    pub excluded: Written,
    /// Its rows' decisions, when the job joins anything (see `engine::decisions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Written>,
}

impl MarkerFile {
    /// Each output, by the folder under OUT it is in.
    fn outputs(&self) -> Vec<(&'static str, &Written)> {
        crate::journal::outputs_of(&self.data, &self.excluded, self.decisions.as_ref())
    }
}

/// `_shards/shard-NNNNN.json`: a done shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub format: u32,
    pub index: usize,
    pub files: Vec<MarkerFile>,
    /// The shard's summary.json (none for a shard without files).
    pub summary: Option<SummaryFile>,
    /// What the shard's run recorded for a later `--reuse` (its `_state/files.json`, with
    /// the promoted outputs); `commit` merges them into `OUT/_state/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateFile>,
    pub finished_at: String,
}

fn state_err(path: &Location, message: impl Into<String>) -> Error {
    Error::State {
        path: path.clone(),
        message: message.into(),
    }
}

fn write_json<T: Serialize>(location: &Location, v: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v).expect("plan records serialise");
    text.push('\n');
    io::write_file(location, text.as_bytes()).map(|_| ())
}

fn read_json<T: for<'de> Deserialize<'de>>(location: &Location) -> Result<T> {
    let text = io::read_to_vec(location).map_err(|e| Error::io("reading", location.clone(), e))?;
    serde_json::from_slice(&text).map_err(|e| state_err(location, e.to_string()))
}

/// Whether a file or object is there.
fn exists(location: &Location) -> Result<bool> {
    match location {
        Location::Local(p) => Ok(p.exists()),
        Location::Object(o) => match object::head(o) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("reading", location.clone(), e)),
        },
    }
}

fn mtime(location: &Location) -> u64 {
    let Location::Local(path) = location else {
        return 0;
    };
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// How the plan records a location: an absolute path, or the URL.
fn absolute(loc: &Location) -> String {
    match loc {
        Location::Local(p) => std::path::absolute(p)
            .unwrap_or_else(|_| p.to_owned())
            .display()
            .to_string(),
        Location::Object(_) => loc.to_string(),
    }
}

/// A location the plan recorded.
fn recorded(what: &str, path: &str) -> Result<Location> {
    Location::from_arg(what, path)
}

/// Greedy by size, largest first: deterministic for the same inputs.
fn pack(inputs: &[InputFile], shards: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|a, b| {
        inputs[*b]
            .bytes
            .cmp(&inputs[*a].bytes)
            .then(inputs[*a].rel.cmp(&inputs[*b].rel))
    });
    let mut load = vec![0u64; shards];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); shards];
    for i in order {
        let s = (0..shards)
            .min_by_key(|s| (load[*s], *s))
            .expect("at least one shard");
        load[s] += inputs[i].bytes.max(1);
        members[s].push(i);
    }
    for m in &mut members {
        m.sort_unstable();
    }
    members
}

/// `corpusgate plan`: list and hash the inputs, pack them into shards, write `_plan.json`.
pub fn plan(args: &PlanArgs) -> Result<PlanFile> {
    // Validate everything a shard would need, before anything is written.
    let plan = FilterPlan::for_plan(args)?;
    let join = filter::preflight(&plan)?;
    let policy = plan.policy.as_ref();
    let inputs = plan
        .inputs
        .par_iter()
        .map(|f| {
            let (sha256, object) = match &f.location {
                Location::Local(_) => (sha256_of(&f.location)?.1, None),
                // Hashing would download the corpus once more; the store names the version.
                Location::Object(_) => (String::new(), Some(Identity::of(&f.location)?.id)),
            };
            Ok(PlanInput {
                path: absolute(&f.location),
                rel: f.rel.clone(),
                size: f.bytes,
                mtime: mtime(&f.location),
                sha256,
                object,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let members = pack(&plan.inputs, args.shards as usize);

    let out = Location::from_arg("plan OUT", &args.output)?;
    match &out {
        Location::Local(dir) => {
            fs::create_dir_all(dir).map_err(|e| Error::io("creating", out.clone(), e))?;
            if args.overwrite {
                for sub in [
                    "data",
                    "excluded",
                    "_shards",
                    "_attempts",
                    "_plan",
                    "_state",
                ] {
                    let _ = fs::remove_dir_all(dir.join(sub));
                }
                for f in ["summary.json", "_SUCCESS", PLAN] {
                    let _ = fs::remove_file(dir.join(f));
                }
            }
        }
        Location::Object(o) if args.overwrite => {
            // `_SUCCESS` first: no reader may take what follows for the old output.
            object::delete(&o.join("_SUCCESS"))
                .map_err(|e| Error::io("removing", out.join("_SUCCESS"), e))?;
            object::delete_prefix(o).map_err(|e| Error::io("removing", out.clone(), e))?;
        }
        Location::Object(_) => {}
    }
    io::write_file(&out.join("_plan/policy.yaml"), policy.text.as_bytes())?;
    let join = join.as_deref();
    let doc = PlanFile {
        format: FORMAT,
        corpusgate_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now_rfc3339(),
        policy: PlanPolicy {
            id: policy.id.clone(),
            sha256: policy.sha256.clone(),
            path: policy.path.display().to_string(),
            copy: "_plan/policy.yaml".into(),
        },
        join: PlanJoin {
            consent_table: join.and_then(|j| j.table.as_ref()).map(|t| PlanSource {
                path: absolute(&t.info.path),
                sha256: t.info.sha256.clone(),
            }),
            user_lists: join
                .map(|j| {
                    j.lists
                        .iter()
                        .map(|l| PlanList {
                            name: l.name.clone(),
                            path: absolute(&l.info.path),
                            sha256: l.info.sha256.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        options: PlanOptions {
            compression: plan.compression.describe_arg(),
            on_error: if plan.skip_unreadable {
                "skip"
            } else {
                "abort"
            }
            .into(),
            pseudonymize_user_ids: args
                .pseudonymize_user_ids
                .as_ref()
                .map(|p| Location::from_arg("--pseudonymize-user-ids", p).map(|l| absolute(&l)))
                .transpose()?,
            trust_input_pages: plan.trust_input_pages,
        },
        shards: members
            .iter()
            .enumerate()
            .map(|(i, m)| PlanShard {
                index: i,
                files: m.clone(),
                bytes: m.iter().map(|f| plan.inputs[*f].bytes).sum(),
            })
            .collect(),
        inputs,
        reuse: plan.reuse.as_ref().map(absolute),
    };
    write_json(&out.join(PLAN), &doc)?;
    Ok(doc)
}

impl PlanFile {
    /// Read `OUT/_plan.json` and check that it is whole and consistent.
    pub fn load(out: &Location) -> Result<PlanFile> {
        let location = out.join(PLAN);
        if !exists(&location)? {
            return Err(Error::Usage(format!(
                "{location}: no plan; run `corpusgate plan ... --output {out}` first"
            )));
        }
        let p: PlanFile = read_json(&location)?;
        if p.format != FORMAT {
            return Err(state_err(
                &location,
                format!(
                    "plan format {} is not {FORMAT}; re-plan with this corpusgate",
                    p.format
                ),
            ));
        }
        p.check().map_err(|m| state_err(&location, m))?;
        Ok(p)
    }

    /// Every shard names inputs the plan has, each input in exactly one shard.
    fn check(&self) -> std::result::Result<(), String> {
        let mut seen = vec![false; self.inputs.len()];
        for (i, s) in self.shards.iter().enumerate() {
            if s.index != i {
                return Err(format!("shards[{i}] has index {}", s.index));
            }
            for f in &s.files {
                let slot = seen.get_mut(*f).ok_or_else(|| {
                    format!(
                        "shard {i} lists input {f}, but the plan has {} inputs",
                        self.inputs.len()
                    )
                })?;
                if std::mem::replace(slot, true) {
                    return Err(format!("input {f} is in more than one shard"));
                }
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(format!("input {i} is in no shard"));
        }
        if !matches!(self.options.on_error.as_str(), "abort" | "skip") {
            return Err(format!(
                "options.on_error is '{}', not abort or skip",
                self.options.on_error
            ));
        }
        CompressionChoice::parse(&self.options.compression)
            .map_err(|e| format!("options.compression: {e}"))?;
        Ok(())
    }
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

fn marker_location(out: &Location, index: usize) -> Location {
    out.join(&format!("_shards/shard-{index:05}.json"))
}

/// Whether everything a marker lists is still as written: an object by its size and the ETag
/// the store gave it, a file by its size and checksum.
fn marker_valid(out: &Location, marker: &Marker) -> bool {
    marker.files.par_iter().all(|f| {
        f.outputs()
            .iter()
            .all(|(kind, w)| match (out.join(kind).join(&f.rel), &w.etag) {
                (Location::Object(o), Some(etag)) => object::head(&o)
                    .is_ok_and(|i| i.size == w.size && i.e_tag.as_ref() == Some(etag)),
                (at, _) => w.holds(&at),
            })
    })
}

/// The marker of shard `index`, if present. A marker that exists but does not parse is an error.
fn read_marker(out: &Location, index: usize) -> Result<Option<Marker>> {
    let location = marker_location(out, index);
    if !exists(&location)? {
        return Ok(None);
    }
    let m: Marker = read_json(&location)?;
    if m.index != index || m.format != FORMAT {
        return Err(state_err(
            &location,
            format!(
                "marker of shard {} (format {}), expected shard {index} (format {FORMAT}); re-plan",
                m.index, m.format
            ),
        ));
    }
    Ok(Some(m))
}

/// The plan of shard `index`: its inputs (checked unchanged since the plan), the planned
/// snapshot and lists (checked the same), written into `attempt`.
fn shard_plan(
    out: &Location,
    p: &PlanFile,
    index: usize,
    attempt: Location,
    threads: Option<u16>,
    read: ReadOptions,
) -> Result<FilterPlan> {
    let shard = &p.shards[index];
    // The plan's policy copy, exactly as planned.
    let policy_copy = out.join(&p.policy.copy);
    let policy = Policy::load(std::path::Path::new(&absolute(&policy_copy)))?;
    if policy.sha256 != p.policy.sha256 {
        return Err(Error::Usage(format!(
            "{policy_copy}: the policy copy no longer matches the plan's hash; re-plan"
        )));
    }
    let mine: Vec<(InputFile, &PlanInput)> = shard
        .files
        .iter()
        .map(|i| {
            let f = &p.inputs[*i];
            Ok((
                InputFile {
                    location: recorded("input", &f.path)?,
                    rel: f.rel.clone(),
                    bytes: f.size,
                },
                f,
            ))
        })
        .collect::<Result<_>>()?;
    let changed: Vec<String> = mine
        .par_iter()
        .filter_map(|(f, planned)| {
            let now = match &planned.object {
                Some(_) => Identity::of(&f.location).map(|i| Some(i.id)),
                None => sha256_of(&f.location).map(|(_, h)| Some(h)),
            };
            let then = planned.object.as_ref().unwrap_or(&planned.sha256);
            match now {
                Ok(now) if now.as_ref() == Some(then) => None,
                Ok(_) => Some(format!("{} changed since the plan", f.location)),
                Err(e) => Some(e.to_string()),
            }
        })
        .collect();
    if !changed.is_empty() {
        return Err(Error::Usage(format!(
            "shard {index}: {}; re-plan to include the new content",
            changed.join("; ")
        )));
    }
    // The snapshot and lists must be the ones planned: a changed one is permanent until re-planned.
    let sources = p
        .join
        .consent_table
        .iter()
        .map(|t| ("the consent snapshot".to_owned(), &t.path, &t.sha256))
        .chain(
            p.join
                .user_lists
                .iter()
                .map(|l| (format!("user list '{}'", l.name), &l.path, &l.sha256)),
        );
    for (what, path, sha) in sources {
        let now = crate::join::path_sha256(&recorded(&what, path)?)?;
        if now != *sha {
            return Err(Error::Usage(format!(
                "shard {index}: {what} ({path}) changed since the plan; re-plan"
            )));
        }
    }
    let join = JoinSources::match_lists(
        &policy,
        p.join
            .consent_table
            .as_ref()
            .map(|t| recorded("--consent-table", &t.path))
            .transpose()?,
        p.join
            .user_lists
            .iter()
            .map(|l| Ok((l.name.clone(), recorded("--user-list", &l.path)?)))
            .collect::<Result<_>>()?,
    )?;
    let o = &p.options;
    Ok(FilterPlan::for_shard(
        policy,
        mine.into_iter().map(|(f, _)| f).collect(),
        attempt,
        join,
        CompressionChoice::parse(&o.compression)?,
        o.on_error == "skip",
        read_key(o.pseudonymize_user_ids.as_deref().map(std::path::Path::new))?,
        threads,
        read,
        o.trust_input_pages,
        p.reuse
            .as_deref()
            .map(|r| recorded("--reuse", r))
            .transpose()?,
    ))
}

/// `corpusgate run-shard`: run shard `index` of the plan in `out`.
pub fn run_shard(
    out: &Location,
    index: usize,
    threads: Option<u16>,
    read: ReadOptions,
) -> Result<ExitStatus> {
    let p = PlanFile::load(out)?;
    if index >= p.shards.len() {
        return Err(Error::Usage(format!(
            "shard index {index} is out of range: the plan has {} shards (0..{})",
            p.shards.len(),
            p.shards.len().saturating_sub(1)
        )));
    }

    // One attempt per index at a time; a concurrent one is told to retry.
    let lock_at = match out {
        Location::Local(dir) => {
            let shards_dir = dir.join("_shards");
            fs::create_dir_all(&shards_dir).map_err(|e| Error::io("creating", &*shards_dir, e))?;
            out.join(&format!("_shards/shard-{index:05}.lock"))
        }
        // A lease: a SIGKILLed attempt's lock holds until it ends (then a rerun takes it over).
        Location::Object(_) => out.join(&format!("_shards/shard-{index:05}")),
    };
    let _lock = crate::output::try_lock(&lock_at)?
        .ok_or_else(|| Error::Busy(format!("shard {index} is being run by another attempt")))?;
    if let Some(m) = read_marker(out, index)? {
        if marker_valid(out, &m) {
            eprintln!("corpusgate: shard {index} is already done");
            return Ok(ExitStatus::Success);
        }
    }
    if p.shards[index].files.is_empty() {
        // An empty shard (more shards than files) is done at once.
        let marker = Marker {
            format: FORMAT,
            index,
            files: Vec::new(),
            summary: None,
            state: None,
            finished_at: now_rfc3339(),
        };
        write_json(&marker_location(out, index), &marker)?;
        return Ok(ExitStatus::Success);
    }

    // Run it like `filter`, into an attempt-unique directory.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let attempt = out.join(&format!(
        "_attempts/shard-{index:05}-{}-{nanos}",
        std::process::id()
    ));
    let plan = shard_plan(out, &p, index, attempt.clone(), threads, read)?;
    let summary = filter::run(&plan)?;
    let summary_file = summary.to_file(&plan.policy);

    // The shard's record for a later --reuse; its member digests are every shard's, so they
    // go to one place all shards share (the same bytes, so a race between two is harmless).
    let mut state = StateFile::read(&attempt)?;
    // Promote each file, then record the shard as done.
    let mut listed = Vec::new();
    for f in summary.files.iter() {
        let moved = |kind: &str| {
            promote(
                &attempt.join(kind).join(&f.rel),
                &out.join(kind).join(&f.rel),
            )
        };
        listed.push(MarkerFile {
            rel: f.rel.clone(),
            data: moved("data")?,
            excluded: moved("excluded")?,
            decisions: match state.records_decisions(&f.rel) {
                true => Some(moved(DECISIONS_DIR)?),
                false => None,
            },
        });
    }
    for f in &listed {
        state.promoted(&f.rel, &f.data, &f.excluded, f.decisions.as_ref());
    }
    if let Some(keys) = state.keys_at(&attempt) {
        promote(&keys, &out.join(SHARD_KEYS))?;
    }
    let marker = Marker {
        format: FORMAT,
        index,
        files: listed,
        summary: Some(summary_file),
        state: Some(state),
        finished_at: now_rfc3339(),
    };
    write_json(&marker_location(out, index), &marker)?;
    match &attempt {
        Location::Local(dir) => {
            let _ = fs::remove_dir_all(dir);
        }
        Location::Object(o) => {
            let _ = object::delete_prefix(o);
        }
    }
    eprint!("{}", summary.human(&plan.policy, Some(out)));
    Ok(if summary.skipped.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Quarantined
    })
}

/// Move a finished attempt's file to its place in OUT: a rename, or a server-side copy (the
/// attempt's objects go with the attempt).
fn promote(from: &Location, to: &Location) -> Result<Written> {
    match (from, to) {
        (Location::Local(f), Location::Local(t)) => {
            if let Some(parent) = t.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
            }
            let kind = io::Checksum::for_location(from);
            let (size, hex) = io::checksum::checksum_of(from, kind)?;
            fs::rename(f, t).map_err(|e| Error::io("promoting", to.clone(), e))?;
            Ok(Written::with(size, kind, hex))
        }
        (Location::Object(f), Location::Object(t)) => {
            // The attempt's run recorded what it wrote; no need to read it back.
            let base = f.with_key("");
            let written = io::written_objects(&base)
                .remove(f.key())
                .ok_or_else(|| state_err(from, "not written by this attempt"))?;
            let info = object::copy(f, t).map_err(|e| Error::io("promoting", to.clone(), e))?;
            if info.size != written.size {
                return Err(state_err(
                    to,
                    format!(
                        "{} bytes after the copy, {} written",
                        info.size, written.size
                    ),
                ));
            }
            Ok(Written {
                etag: info.e_tag,
                ..written
            })
        }
        _ => unreachable!("an attempt lives under its OUT"),
    }
}

/// `corpusgate commit`: check every shard against the plan, merge the summaries, `_SUCCESS` last.
pub fn commit(out: &Location) -> Result<ExitStatus> {
    let p = PlanFile::load(out)?;
    let markers: Vec<Option<Marker>> = (0..p.shards.len())
        .into_par_iter()
        .map(|i| Ok(read_marker(out, i)?.filter(|m| marker_valid(out, m))))
        .collect::<Result<_>>()?;
    let missing: Vec<usize> = markers
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_none())
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        return Err(Error::Busy(format!(
            "{} of {} shards are not done: {}; run them (corpusgate run-shard {out} --index I) and commit again",
            missing.len(),
            p.shards.len(),
            missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        )));
    }
    let summaries: Vec<&SummaryFile> = markers
        .iter()
        .flatten()
        .filter_map(|m| m.summary.as_ref())
        .collect();
    let summary = merge_summaries(&p, &summaries)?;
    // `_state/` only when every shard that ran recorded one (a marker of an older corpusgate
    // did not): a later --reuse must never take what this output cannot vouch for.
    let states: Option<Vec<&StateFile>> = markers
        .iter()
        .flatten()
        .filter(|m| m.summary.is_some())
        .map(|m| m.state.as_ref())
        .collect();
    let state_written = match states {
        Some(s) => crate::reuse::commit_shards(out, &s, &out.join(SHARD_KEYS))?,
        None => None,
    };
    let summary_written = io::write_file(&out.join("summary.json"), summary.to_text().as_bytes())?;
    match out {
        Location::Local(dir) => {
            let _ = fs::remove_dir_all(dir.join("_attempts"));
            let _ = fs::remove_file(dir.join(SHARD_KEYS));
            io::write_file(&out.join("_SUCCESS"), b"")?;
        }
        Location::Object(o) => {
            let mut written = state_written.unwrap_or_default();
            written.push(("summary.json".into(), summary_written));
            commit_object(out, o, &p, &markers, written)?;
        }
    }
    eprintln!(
        "corpusgate: committed {} shards, {} files, {} rows: kept {}, excluded {}",
        p.shards.len(),
        summary.totals.files,
        summary.totals.rows,
        summary.totals.kept,
        summary.totals.excluded
    );
    Ok(if summary.skipped.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Quarantined
    })
}

/// An object-store OUT: delete what no marker or plan file vouches for (attempts, objects of an
/// older plan), then write `_SUCCESS` listing every object with its size and SHA-256, last.
fn commit_object(
    out: &Location,
    o: &object::ObjectLocation,
    p: &PlanFile,
    markers: &[Option<Marker>],
    written: Vec<(String, Written)>,
) -> Result<()> {
    let mut listed: BTreeMap<String, Written> = BTreeMap::new();
    for m in markers.iter().flatten() {
        for f in &m.files {
            for (kind, w) in f.outputs() {
                listed.insert(format!("{kind}/{}", f.rel), w.clone());
            }
        }
    }
    listed.extend(written);
    // The plan's own small files, hashed as they are now.
    let mut small = vec![PLAN.to_owned(), p.policy.copy.clone()];
    small.extend((0..p.shards.len()).map(|i| format!("_shards/shard-{i:05}.json")));
    for rel in small {
        let (size, sha256) = sha256_of(&out.join(&rel))?;
        listed.insert(rel, Written::with(size, io::Checksum::Sha256, sha256));
    }
    let present = object::list(o).map_err(|e| Error::io("listing output", out.clone(), e))?;
    // Attempts that died mid-upload left them open; completed ones left no record. (The
    // records are among what the sweep below deletes again: deleting nothing is no error.)
    object::abort_recorded_uploads(o, &present)
        .map_err(|e| Error::io("aborting the unfinished uploads under", out.clone(), e))?;
    for (rel, _) in &present {
        let lock = rel == crate::output::OBJECT_LOCK
            || rel.ends_with(&format!("/{}", crate::output::OBJECT_LOCK));
        if !lock && !listed.contains_key(rel) {
            object::delete(&o.join(rel))
                .map_err(|e| Error::io("removing stale", out.join(rel), e))?;
        }
    }
    let objects: Vec<serde_json::Value> = listed
        .iter()
        .map(|(rel, w)| serde_json::json!({"key": rel, "size": w.size, "sha256": w.sha256}))
        .collect();
    let body = serde_json::to_string_pretty(&serde_json::json!({"format": 1, "objects": objects}))
        .expect("JSON of strings and numbers")
        + "\n";
    object::put(
        &o.join("_SUCCESS"),
        body.into_bytes().into(),
        object::Mode::Overwrite,
    )
    .map_err(|e| Error::io("writing", out.join("_SUCCESS"), e))?;
    Ok(())
}

/// One summary for the whole plan from the shards' summaries: files and quarantined inputs in
/// name order, counts added up, regions in the order `filter` writes them.
fn merge_summaries(p: &PlanFile, summaries: &[&SummaryFile]) -> Result<SummaryFile> {
    let mut files: Vec<FileRecord> = summaries.iter().flat_map(|s| s.files.clone()).collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut skipped: Vec<SkippedRecord> =
        summaries.iter().flat_map(|s| s.skipped.clone()).collect();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let done = files.len() + skipped.len();
    if done != p.inputs.len() {
        return Err(Error::Usage(format!(
            "the shards account for {done} files but the plan lists {}",
            p.inputs.len()
        )));
    }
    let Some(first) = summaries.first() else {
        return Err(Error::Usage(
            "no shard processed a file; nothing to commit".into(),
        ));
    };
    let mut by_rule = first.by_rule.clone();
    by_rule.values_mut().for_each(|r| r.rows = 0);
    let mut by_region: BTreeMap<String, RegionRecord> = BTreeMap::new();
    for s in summaries {
        for (k, v) in &s.by_rule {
            by_rule
                .entry(k.clone())
                .or_insert_with(|| RuleRecord {
                    action: v.action.clone(),
                    rows: 0,
                })
                .rows += v.rows;
        }
        for (k, v) in &s.by_region {
            let e = by_region.entry(k.clone()).or_default();
            e.rows += v.rows;
            e.kept += v.kept;
            e.excluded += v.excluded;
        }
    }
    // Region order as `filter` writes it: codes, then unknown.
    let unknown = by_region.remove("unknown");
    let mut regions: IndexMap<String, RegionRecord> = by_region.into_iter().collect();
    if let Some(u) = unknown {
        regions.insert("unknown".into(), u);
    }
    let mut by_rule_and_region: IndexMap<String, IndexMap<String, u64>> = IndexMap::new();
    for s in summaries {
        for (rule, regions) in s.by_rule_and_region.iter().flatten() {
            let e = by_rule_and_region.entry(rule.clone()).or_default();
            for (region, n) in regions {
                *e.entry(region.clone()).or_default() += n;
            }
        }
    }
    crate::summary::order_rule_regions(&mut by_rule_and_region, &by_rule);
    let sum = |f: fn(&FileRecord) -> u64| files.iter().map(f).sum::<u64>();
    let totals = Totals {
        files: files.len() as u64,
        rows: sum(|f| f.rows),
        kept: sum(|f| f.kept),
        excluded: sum(|f| f.excluded),
    };
    let consent_table = first.consent_table.clone().map(|mut t| {
        t.unmatched_rows = summaries
            .iter()
            .filter_map(|s| s.consent_table.as_ref())
            .map(|t| t.unmatched_rows)
            .sum();
        t
    });
    Ok(SummaryFile {
        format: crate::summary::SUMMARY_FORMAT,
        corpusgate_version: env!("CARGO_PKG_VERSION").into(),
        policy: first.policy.clone(),
        started_at: summaries
            .iter()
            .map(|s| s.started_at.clone())
            .min()
            .unwrap_or_default(),
        finished_at: now_rfc3339(),
        dry_run: false,
        options: serde_json::to_value(&p.options).expect("serialises"),
        files,
        by_rule,
        by_region: regions,
        by_rule_and_region: Some(by_rule_and_region),
        totals,
        skipped,
        resumed_files: None,
        reuse: merge_reuse(summaries),
        consent_table,
        user_lists: first.user_lists.clone(),
        shards: Some(p.shards.len() as u64),
        plan_created_at: Some(p.created_at.clone()),
        bytes_fetched: None,
        data_files: None,
    })
}

/// `plan --reuse`: what all shards took from PREV_OUT (each compared the same snapshots, so
/// their changed-member counts agree; a shard that could not use it says why).
fn merge_reuse(summaries: &[&SummaryFile]) -> Option<crate::summary::ReuseRecord> {
    let records: Vec<&crate::summary::ReuseRecord> =
        summaries.iter().filter_map(|s| s.reuse.as_ref()).collect();
    let first = (*records.first()?).clone();
    let sum = |f: fn(&crate::summary::ReuseRecord) -> u64| records.iter().map(|r| f(r)).sum();
    Some(crate::summary::ReuseRecord {
        files_reused: sum(|r| r.files_reused),
        row_groups_reused: sum(|r| r.row_groups_reused),
        row_groups_recomputed: sum(|r| r.row_groups_recomputed),
        bytes_reused: sum(|r| r.bytes_reused),
        row_groups_spliced: sum(|r| r.row_groups_spliced),
        pages_reused: sum(|r| r.pages_reused),
        manifest_pages_reused: sum(|r| r.manifest_pages_reused),
        decisions_reused: sum(|r| r.decisions_reused),
        row_groups_searched: sum(|r| r.row_groups_searched),
        changed_keys: records.iter().filter_map(|r| r.changed_keys).max(),
        fallback: records.iter().find_map(|r| r.fallback.clone()),
        ..first
    })
}

/// Scale-out commands tell schedulers to retry what a rerun can fix: I/O failures.
fn retryable(e: Error) -> Error {
    match e {
        Error::Io { .. } | Error::Write { .. } => Error::Busy(e.to_string()),
        other => other,
    }
}

/// `corpusgate plan`.
pub fn plan_command(args: &PlanArgs) -> Result<ExitStatus> {
    let p = plan(args)?;
    eprintln!(
        "corpusgate: planned {} inputs into {} shards in {}",
        p.inputs.len(),
        p.shards.len(),
        args.output.display()
    );
    Ok(ExitStatus::Success)
}

/// `corpusgate run-shard`.
pub fn run_shard_command(args: &RunShardArgs) -> Result<ExitStatus> {
    let index = resolve_index(args.index)?;
    let read = args.read.options();
    let out = Location::from_arg("run-shard OUT", &args.out_dir)?;
    run_shard(&out, index, args.threads, read).map_err(retryable)
}

/// `corpusgate commit`.
pub fn commit_command(args: &CommitArgs) -> Result<ExitStatus> {
    let out = Location::from_arg("commit OUT", &args.out_dir)?;
    commit(&out).map_err(retryable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_file(files: Vec<Vec<usize>>, inputs: usize) -> PlanFile {
        PlanFile {
            format: FORMAT,
            corpusgate_version: "0".into(),
            created_at: "t".into(),
            policy: PlanPolicy {
                id: "p".into(),
                sha256: "0".into(),
                path: "p.yaml".into(),
                copy: "_plan/policy.yaml".into(),
            },
            join: PlanJoin {
                consent_table: None,
                user_lists: vec![],
            },
            options: PlanOptions {
                compression: "preserve".into(),
                on_error: "abort".into(),
                pseudonymize_user_ids: None,
                trust_input_pages: false,
            },
            inputs: (0..inputs)
                .map(|i| PlanInput {
                    path: format!("/in/{i}.parquet"),
                    rel: format!("{i}.parquet"),
                    size: 1,
                    mtime: 0,
                    sha256: "x".into(),
                    object: None,
                })
                .collect(),
            shards: files
                .into_iter()
                .enumerate()
                .map(|(index, files)| PlanShard {
                    index,
                    files,
                    bytes: 0,
                })
                .collect(),
            reuse: None,
        }
    }

    #[test]
    fn packing_is_balanced_and_covers_every_input_once() {
        let inputs: Vec<InputFile> = [50u64, 10, 40, 30, 20]
            .iter()
            .enumerate()
            .map(|(i, b)| InputFile {
                location: Location::local(format!("{i}.parquet")),
                rel: format!("{i}.parquet"),
                bytes: *b,
            })
            .collect();
        let shards = pack(&inputs, 2);
        assert_eq!(shards, vec![vec![0, 1, 4], vec![2, 3]]);
        let mut all: Vec<usize> = shards.concat();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert_eq!(pack(&inputs, 7).iter().filter(|s| s.is_empty()).count(), 2);
    }

    #[test]
    fn a_plan_naming_inputs_it_does_not_have_is_refused() {
        assert!(plan_file(vec![vec![0, 1], vec![2]], 3).check().is_ok());
        let e = plan_file(vec![vec![0, 7], vec![2]], 3).check().unwrap_err();
        assert_eq!(e, "shard 0 lists input 7, but the plan has 3 inputs");
        let e = plan_file(vec![vec![0, 1], vec![1, 2]], 3)
            .check()
            .unwrap_err();
        assert_eq!(e, "input 1 is in more than one shard");
        let e = plan_file(vec![vec![0], vec![2]], 3).check().unwrap_err();
        assert_eq!(e, "input 1 is in no shard");
    }

    #[test]
    fn a_plan_file_with_a_field_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = Location::local(dir.path());
        let mut v = serde_json::to_value(plan_file(vec![vec![0]], 1)).unwrap();
        v.as_object_mut().unwrap().remove("shards");
        std::fs::write(dir.path().join(PLAN), v.to_string()).unwrap();
        let e = PlanFile::load(&out).unwrap_err();
        assert!(matches!(e, Error::State { .. }));
        assert!(e.to_string().contains("missing field `shards`"), "{e}");
        assert_eq!(e.exit_status(), ExitStatus::Usage);
    }
}
