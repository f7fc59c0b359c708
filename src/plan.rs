//! The validated plan: a command line turned into a compiled policy, resolved inputs, the
//! snapshot and lists to join, and writer settings. The engine sees only this. Each command that
//! runs the engine has its constructor ([`FilterPlan::for_filter`], [`FilterPlan::decide_only`],
//! [`FilterPlan::for_plan`], [`FilterPlan::for_shard`]); every error they return is found before
//! any output is written.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use serde_json::{json, Value};

use crate::cli::{FilterArgs, JoinArgs, OnError, PlanArgs};
use crate::error::{Error, Result};
use crate::io::{self, InputFile, Location, ReadOptions};
use crate::output;
use crate::policy::Policy;
use crate::progress::ProgressMode;

/// `--compression`.
#[derive(Debug, Clone, PartialEq)]
pub enum CompressionChoice {
    /// Each output column chunk uses its input column chunk's codec.
    Preserve,
    Codec(Compression),
}

impl CompressionChoice {
    pub fn parse(s: &str) -> Result<CompressionChoice> {
        let bad = |m: String| Error::Usage(format!("--compression {s}: {m}"));
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (
                n,
                Some(
                    l.parse::<i32>()
                        .map_err(|_| bad(format!("level '{l}' is not an integer")))?,
                ),
            ),
            None => (s, None),
        };
        let no_level = |c: Compression| match level {
            None => Ok(CompressionChoice::Codec(c)),
            Some(_) => Err(bad(format!("{name} takes no level"))),
        };
        match name {
            "preserve" if level.is_none() => Ok(CompressionChoice::Preserve),
            "none" | "uncompressed" => no_level(Compression::UNCOMPRESSED),
            "snappy" => no_level(Compression::SNAPPY),
            "lz4" | "lz4_raw" => no_level(Compression::LZ4_RAW),
            "zstd" => Ok(CompressionChoice::Codec(Compression::ZSTD(match level {
                None => ZstdLevel::default(),
                Some(l) => ZstdLevel::try_new(l).map_err(|_| {
                    bad("zstd takes a level from 1 (fastest) to 22 (smallest), or a negative one down to -131072 for faster still".into())
                })?,
            }))),
            "gzip" => Ok(CompressionChoice::Codec(Compression::GZIP(match level {
                None => GzipLevel::default(),
                Some(l) => u32::try_from(l)
                    .ok()
                    .and_then(|l| GzipLevel::try_new(l).ok())
                    .ok_or_else(|| bad("gzip takes a level from 0 (no compression) to 9 (smallest)".into()))?,
            }))),
            "brotli" => Ok(CompressionChoice::Codec(Compression::BROTLI(match level {
                None => BrotliLevel::default(),
                Some(l) => u32::try_from(l)
                    .ok()
                    .and_then(|l| BrotliLevel::try_new(l).ok())
                    .ok_or_else(|| bad("brotli takes a level from 0 (fastest) to 11 (smallest)".into()))?,
            }))),
            _ => Err(bad(
                "expected preserve, zstd[:LEVEL], snappy, lz4, gzip[:LEVEL], brotli[:LEVEL] or none"
                    .into(),
            )),
        }
    }

    /// The `--compression` argument that gives this choice back.
    pub fn describe_arg(&self) -> String {
        match self {
            CompressionChoice::Preserve => "preserve".into(),
            CompressionChoice::Codec(c) => match c {
                Compression::UNCOMPRESSED => "none".into(),
                Compression::SNAPPY => "snappy".into(),
                Compression::LZ4_RAW => "lz4".into(),
                Compression::ZSTD(l) => format!("zstd:{}", l.compression_level()),
                Compression::GZIP(l) => format!("gzip:{}", l.compression_level()),
                Compression::BROTLI(l) => format!("brotli:{}", l.compression_level()),
                other => other.to_string().to_lowercase(),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CompressionChoice::Preserve => "preserve".into(),
            CompressionChoice::Codec(c) => c.to_string().to_lowercase(),
        }
    }
}

/// The HMAC key of `--pseudonymize-user-ids`: the key file's raw bytes (never recorded).
pub fn read_key(path: Option<&Path>) -> Result<Option<Arc<Vec<u8>>>> {
    let Some(path) = path else { return Ok(None) };
    let key = io::read_to_vec(&Location::from_arg("--pseudonymize-user-ids", path)?)
        .map_err(|e| Error::Usage(format!("--pseudonymize-user-ids {}: {e}", path.display())))?;
    if key.len() < 16 {
        return Err(Error::Usage(format!(
            "--pseudonymize-user-ids {}: the key is {} bytes; use at least 16 random bytes (e.g. head -c 32 /dev/urandom > KEYFILE)",
            path.display(),
            key.len()
        )));
    }
    Ok(Some(Arc::new(key)))
}

/// The consent snapshot and user lists a policy joins, resolved against what it declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinSources {
    /// `--consent-table`, required exactly when the policy has `consent_table`.
    pub consent_table: Option<Location>,
    /// `--user-list NAME=PATH`, in the policy's `user_lists` order.
    pub user_lists: Vec<(String, Location)>,
}

impl JoinSources {
    /// Match the command line's snapshot and lists against the policy's declarations.
    pub fn resolve(policy: &Policy, policy_path: &Path, join: &JoinArgs) -> Result<JoinSources> {
        let consent_table = match (&policy.consent_table, &join.consent_table) {
            (Some(_), Some(p)) => Some(Location::from_arg("--consent-table", p)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Usage(format!(
                    "the policy {} joins a consent snapshot (consent_table); pass --consent-table SNAPSHOT",
                    policy_path.display()
                )))
            }
            (None, Some(p)) => {
                return Err(Error::Usage(format!(
                    "--consent-table {} given, but the policy has no consent_table section saying how to join it",
                    p.display()
                )))
            }
        };
        let mut given: Vec<(String, Location)> = Vec::new();
        for spec in &join.user_lists {
            let (name, path) = spec
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--user-list {spec}: expected NAME=PATH")))?;
            given.push((
                name.to_owned(),
                Location::from_arg(&format!("--user-list {name}"), path)?,
            ));
        }
        Self::match_lists(policy, consent_table, given)
    }

    /// Check named lists against the policy: each declared list given once, no other.
    pub fn match_lists(
        policy: &Policy,
        consent_table: Option<Location>,
        given: Vec<(String, Location)>,
    ) -> Result<JoinSources> {
        for (i, (name, _)) in given.iter().enumerate() {
            if given[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::Usage(format!("--user-list {name} is given twice")));
            }
            if !policy.user_lists.iter().any(|l| l == name) {
                return Err(Error::Usage(format!(
                    "--user-list {name}: the policy declares no user list '{name}' (user_lists: [{}])",
                    policy.user_lists.join(", ")
                )));
            }
        }
        let mut user_lists = Vec::new();
        for name in &policy.user_lists {
            match given.iter().find(|(n, _)| n == name) {
                Some(g) => user_lists.push(g.clone()),
                None => {
                    return Err(Error::Usage(format!(
                        "the policy names user list '{name}'; pass --user-list {name}=PATH"
                    )))
                }
            }
        }
        Ok(JoinSources {
            consent_table,
            user_lists,
        })
    }
}

/// Everything `filter` needs, validated.
pub struct FilterPlan {
    pub policy: Arc<Policy>,
    pub inputs: Vec<InputFile>,
    /// `None` only in a dry run.
    pub output: Option<Location>,
    pub overwrite: bool,
    pub dry_run: bool,
    pub threads: usize,
    pub progress: ProgressMode,
    pub compression: CompressionChoice,
    pub join: JoinSources,
    /// `--on-error skip`: quarantine unreadable inputs instead of aborting.
    pub skip_unreadable: bool,
    /// `--resume`: reuse what an interrupted run of the same job completed.
    pub resume: bool,
    /// `--reuse PREV_OUT`: a previous complete output of this job.
    pub reuse: Option<Location>,
    /// `--pseudonymize-user-ids KEYFILE`: the key's bytes.
    pub pseudonymize: Option<Arc<Vec<u8>>>,
    /// `--max-memory` and the other limits every read is held to.
    pub read: ReadOptions,
    /// `--trust-input-pages`.
    pub trust_input_pages: bool,
    /// `--target-file-size`, `--row-group-size`: the kept rows laid out after filtering.
    pub layout: Option<crate::layout::Layout>,
}

/// `--threads`, or every core.
pub fn threads_or_all(threads: Option<u16>) -> usize {
    match threads {
        Some(n) => n as usize,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }
}

/// Refuse inputs inside the output directory: a run would read what it writes.
fn check_inputs_outside(inputs: &[InputFile], join: &JoinSources, out: &Location) -> Result<()> {
    let inside = |input: &Location| match (input, out) {
        (Location::Local(p), Location::Local(o)) => {
            let o = std::path::absolute(o).unwrap_or_else(|_| o.to_owned());
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_owned())
                .starts_with(o)
        }
        (Location::Object(_), Location::Object(_)) => {
            let (i, o) = (input.to_string(), out.to_string());
            i == o || i.starts_with(&format!("{o}/"))
        }
        _ => false,
    };
    for f in inputs {
        if inside(&f.location) {
            return Err(Error::Usage(format!(
                "input {} is inside the output directory {out}",
                f.location
            )));
        }
    }
    // Replacing OUT deletes what is in it: a snapshot or list there would be gone after the run.
    let joined = join
        .consent_table
        .iter()
        .map(|t| ("--consent-table", t))
        .chain(join.user_lists.iter().map(|(_, l)| ("--user-list", l)));
    for (what, l) in joined {
        if inside(l) {
            return Err(Error::Usage(format!(
                "{what} {l} is inside the output directory {out}"
            )));
        }
    }
    Ok(())
}

/// `--target-file-size` and `--row-group-size`, checked against the options they cannot go with.
fn layout_of(args: &FilterArgs) -> Result<Option<crate::layout::Layout>> {
    use crate::layout::{Layout, DEFAULT_ROW_GROUP_ROWS};
    if args.target_file_size.is_none() && args.row_group_size.is_none() {
        return Ok(None);
    }
    let flag = if args.target_file_size.is_some() {
        "--target-file-size"
    } else {
        "--row-group-size"
    };
    if args.reuse.is_some() {
        // --reuse copies each input's output from PREV_OUT by its name and row groups.
        return Err(Error::Usage(format!(
            "{flag} cannot be combined with --reuse: a laid-out output keeps no per-input files to reuse"
        )));
    }
    if args.target_file_size.is_some_and(|s| s.0 == 0) {
        return Err(Error::Usage(
            "--target-file-size must be more than 0 bytes".into(),
        ));
    }
    Ok(Some(Layout {
        target_bytes: args.target_file_size.map(|s| s.0),
        row_group_rows: args
            .row_group_size
            .map_or(DEFAULT_ROW_GROUP_ROWS, |n| n as usize),
    }))
}

fn locations(paths: &[std::path::PathBuf]) -> Result<Vec<Location>> {
    paths
        .iter()
        .map(|p| Location::from_arg("input", p))
        .collect()
}

impl FilterPlan {
    /// `filter`.
    pub fn for_filter(args: &FilterArgs) -> Result<FilterPlan> {
        let compression = CompressionChoice::parse(&args.compression)?;
        let policy = Policy::load(&args.policy)?;
        let output = match (&args.output, args.dry_run) {
            (Some(o), false) => {
                let o = Location::from_arg("--output", o)?;
                output::check_target(&o, args.overwrite)?;
                Some(o)
            }
            (_, true) => None,
            (None, false) => {
                return Err(Error::Usage(
                    "--output OUT_DIR is required (or use --dry-run)".into(),
                ))
            }
        };
        let join = JoinSources::resolve(&policy, &args.policy, &args.join)?;
        let inputs = io::discover(&locations(&args.inputs)?)?;
        if let Some(out) = &output {
            check_inputs_outside(&inputs, &join, out)?;
        }
        let layout = layout_of(args)?;
        Ok(FilterPlan {
            policy: Arc::new(policy),
            inputs,
            output,
            overwrite: args.overwrite,
            dry_run: args.dry_run,
            threads: threads_or_all(args.threads),
            progress: args.progress,
            compression,
            join,
            skip_unreadable: args.on_error == OnError::Skip,
            resume: args.resume,
            reuse: match (&args.reuse, args.dry_run) {
                (Some(p), false) => Some(Location::from_arg("--reuse", p)?),
                _ => None,
            },
            pseudonymize: read_key(args.pseudonymize_user_ids.as_deref())?,
            read: args.read.options(),
            trust_input_pages: args.trust_input_pages,
            layout,
        })
    }

    /// A dry run over `inputs` that decides every row and writes nothing (`verify`, `explain`).
    pub fn decide_only(
        policy_path: &Path,
        join: &JoinArgs,
        threads: Option<u16>,
        pseudonymize_user_ids: Option<&Path>,
        inputs: &[Location],
        read: ReadOptions,
    ) -> Result<FilterPlan> {
        let policy = Policy::load(policy_path)?;
        let join = JoinSources::resolve(&policy, policy_path, join)?;
        Ok(FilterPlan {
            policy: Arc::new(policy),
            inputs: io::discover(inputs)?,
            output: None,
            overwrite: false,
            dry_run: true,
            threads: threads_or_all(threads),
            progress: ProgressMode::Never,
            compression: CompressionChoice::Preserve,
            join,
            skip_unreadable: false,
            resume: false,
            reuse: None,
            pseudonymize: read_key(pseudonymize_user_ids)?,
            read,
            trust_input_pages: false,
            layout: None,
        })
    }

    /// `plan`: the job every shard will run, checked as `filter` would check it.
    pub fn for_plan(args: &PlanArgs) -> Result<FilterPlan> {
        if args.shards == 0 {
            return Err(Error::Usage("--shards must be at least 1".into()));
        }
        let compression = CompressionChoice::parse(&args.compression)?;
        let policy = Policy::load(&args.policy)?;
        let out = Location::from_arg("plan OUT", &args.output)?;
        output::check_target(&out, args.overwrite)?;
        let join = JoinSources::resolve(&policy, &args.policy, &args.join)?;
        let inputs = io::discover(&locations(&args.inputs)?)?;
        check_inputs_outside(&inputs, &join, &out)?;
        let reuse = args
            .reuse
            .as_ref()
            .map(|p| Location::from_arg("--reuse", p))
            .transpose()?;
        if let Some(prev) = &reuse {
            // The shards write into OUT while they read PREV_OUT (and --overwrite empties OUT
            // before any of them runs).
            let same = match (prev, &out) {
                (Location::Local(a), Location::Local(b)) => {
                    std::path::absolute(a).ok() == std::path::absolute(b).ok()
                }
                _ => {
                    prev.to_string().trim_end_matches('/') == out.to_string().trim_end_matches('/')
                }
            };
            if same {
                return Err(Error::Usage(format!(
                    "--reuse {prev} is the plan's OUT_DIR; plan into another directory (e.g. one per night) and reuse this one"
                )));
            }
        }
        Ok(FilterPlan {
            policy: Arc::new(policy),
            inputs,
            output: Some(out),
            overwrite: args.overwrite,
            dry_run: false,
            threads: threads_or_all(None),
            progress: ProgressMode::Never,
            compression,
            join,
            skip_unreadable: args.on_error == OnError::Skip,
            resume: false,
            reuse,
            pseudonymize: read_key(args.pseudonymize_user_ids.as_deref())?,
            read: args.read.options(),
            trust_input_pages: args.trust_input_pages,
            layout: None,
        })
    }

    /// One shard of a plan: its files, written into an attempt directory.
    #[allow(clippy::too_many_arguments)]
    pub fn for_shard(
        policy: Policy,
        inputs: Vec<InputFile>,
        attempt: Location,
        join: JoinSources,
        compression: CompressionChoice,
        skip_unreadable: bool,
        pseudonymize: Option<Arc<Vec<u8>>>,
        threads: Option<u16>,
        read: ReadOptions,
        trust_input_pages: bool,
        reuse: Option<Location>,
    ) -> FilterPlan {
        FilterPlan {
            policy: Arc::new(policy),
            inputs,
            output: Some(attempt),
            overwrite: false,
            dry_run: false,
            threads: threads_or_all(threads),
            progress: ProgressMode::Never,
            compression,
            join,
            skip_unreadable,
            resume: false,
            reuse,
            pseudonymize,
            read,
            trust_input_pages,
            layout: None,
        }
    }

    /// The options recorded in summary.json.
    pub fn options_json(&self) -> Value {
        let mut options = json!({
            "threads": self.threads,
            "compression": self.compression.describe(),
            "dry_run": self.dry_run,
            "overwrite": self.overwrite,
            "on_error": if self.skip_unreadable { "skip" } else { "abort" },
            "resume": self.resume,
            "pseudonymized_user_ids": self.pseudonymize.is_some(),
            "max_memory": self.read.max_memory,
            "trust_input_pages": self.trust_input_pages,
            "output": self.output.as_ref().map(|p| p.to_string()),
        });
        if let (Some(l), Some(o)) = (self.layout, options.as_object_mut()) {
            o.insert("target_file_size".into(), json!(l.target_bytes));
            o.insert("row_group_size".into(), json!(l.row_group_rows));
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_levels_out_of_range_say_which_levels_a_codec_takes() {
        for (arg, says) in [
            ("zstd:99", "zstd takes a level from 1 (fastest) to 22"),
            ("zstd:-200000", "zstd takes a level from 1 (fastest) to 22"),
            ("gzip:10", "gzip takes a level from 0 (no compression) to 9"),
            ("gzip:-1", "gzip takes a level from 0 (no compression) to 9"),
            ("brotli:12", "brotli takes a level from 0 (fastest) to 11"),
            ("snappy:3", "snappy takes no level"),
        ] {
            let e = CompressionChoice::parse(arg).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--compression {arg}: {says}")),
                "{e}"
            );
            assert!(!e.contains("Parquet error"), "{e}");
        }
        for ok in [
            "zstd:1",
            "zstd:22",
            "zstd:-5",
            "gzip:0",
            "gzip:9",
            "brotli:0",
            "brotli:11",
        ] {
            assert!(CompressionChoice::parse(ok).is_ok(), "{ok}");
        }
    }
}
