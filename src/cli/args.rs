//! The command line as the user typed it (clap), before any validation beyond syntax;
//! [`crate::plan`] turns it into what the engine runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Bytes;
use crate::io::memory::{default_max_memory, parse_size};
use crate::progress::ProgressMode;

/// A size given on the command line (`--max-memory 8GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Bytes(self.0))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        parse_size(s).map(ByteSize)
    }
}

/// Limits on what reading input may cost.
#[derive(Debug, Args, Clone)]
pub struct ReadArgs {
    /// Most memory one input file's footer or row group may need to be decoded (and what the
    /// row groups in flight may plan to use together); an input that needs more ends with an
    /// error naming it. Default: half of this machine's memory, or of its container's limit.
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize(default_max_memory()))]
    pub max_memory: ByteSize,

    /// Requests to an object store in flight at once (fetches ahead of decoding included);
    /// more hides more latency of a far region, at the cost of memory for what is in flight.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub io_concurrency: u16,
}

impl ReadArgs {
    /// The read options; also sets the process-wide bound on object-store requests, which
    /// must be in place before the first request.
    pub fn options(&self) -> crate::io::ReadOptions {
        crate::io::object::set_io_concurrency(self.io_concurrency as usize);
        crate::io::ReadOptions {
            max_memory: self.max_memory.0,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "corpusgate",
    version,
    about = "Filter Parquet training corpora by a reviewed consent and region policy",
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Filter Parquet files by a policy: write kept rows, an exclusion manifest and a summary.
    Filter(FilterArgs),
    /// Validate a policy, run its tests, and print it normalised (groups expanded, rules in order).
    Check(CheckArgs),
    /// Re-decide every row of a dataset (or a filter OUT_DIR) and report rows the policy excludes.
    Verify(VerifyArgs),
    /// Show why one row is kept or excluded: the normalised values and each rule's conditions.
    Explain(ExplainArgs),
    /// Summarise a filter run: kept/excluded by rule, region and file; optionally as HTML.
    Report(ReportArgs),
    /// What changed between two filter runs over the same inputs.
    Diff(DiffArgs),
    /// Split a filter job into N deterministic shards for a scheduler to run.
    Plan(PlanArgs),
    /// Run one shard of a plan (index from --index or the job array's environment).
    RunShard(RunShardArgs),
    /// Check that every shard of a plan is done, merge their summaries, write _SUCCESS.
    Commit(CommitArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The YAML policy (a copy is kept with the plan).
    #[arg(long, value_name = "POLICY.yaml")]
    pub policy: PathBuf,

    /// The output directory the shards write into and `commit` completes.
    #[arg(long, short = 'o', value_name = "OUT_DIR")]
    pub output: PathBuf,

    /// Number of shards.
    #[arg(long, value_name = "N")]
    pub shards: u32,

    /// Replace an existing non-empty OUT_DIR.
    #[arg(long)]
    pub overwrite: bool,

    /// Output codec, as for filter.
    #[arg(long, default_value = "preserve", value_name = "CODEC")]
    pub compression: String,

    /// abort or skip unreadable inputs, as for filter.
    #[arg(long, value_enum, default_value_t = OnError::Abort)]
    pub on_error: OnError,

    /// As for filter (the key file's path is recorded, never the key).
    #[arg(long, value_name = "KEYFILE")]
    pub pseudonymize_user_ids: Option<PathBuf>,

    /// As for filter.
    #[arg(long)]
    pub trust_input_pages: bool,

    /// As for filter: every shard takes from this previous complete output (a `filter` run's or
    /// a committed plan's) what cannot have changed. Not OUT_DIR itself.
    #[arg(long, value_name = "PREV_OUT")]
    pub reuse: Option<PathBuf>,

    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub join: JoinArgs,

    /// Parquet files and/or directories.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunShardArgs {
    /// The plan's OUT_DIR.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,

    /// 0-based shard index [default: JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, or
    /// SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN].
    #[arg(long, value_name = "I")]
    pub index: Option<usize>,

    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The plan's OUT_DIR.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
}

/// The consent snapshot and user lists, as `filter` takes them.
#[derive(Debug, Args, Default, Clone)]
pub struct JoinArgs {
    /// Consent snapshot (Parquet file or directory) the policy's consent_table joins by user id.
    #[arg(long, value_name = "SNAPSHOT")]
    pub consent_table: Option<PathBuf>,

    /// A user list the policy names (user_in): text, one id per line, or one-column Parquet.
    #[arg(long = "user-list", value_name = "NAME=PATH")]
    pub user_lists: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The YAML policy.
    #[arg(long, value_name = "POLICY.yaml")]
    pub policy: PathBuf,

    #[command(flatten)]
    pub join: JoinArgs,

    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Show user ids pseudonymized as in the filter's manifests.
    #[arg(long, value_name = "KEYFILE")]
    pub pseudonymize_user_ids: Option<PathBuf>,

    #[command(flatten)]
    pub read: ReadArgs,

    /// Parquet files or directories, or filter OUT_DIRs (their data/ is verified, and the run's
    /// integrity checked).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("row_or_values").required(true).args(["row", "values"])))]
pub struct ExplainArgs {
    /// The YAML policy.
    #[arg(long, value_name = "POLICY.yaml")]
    pub policy: PathBuf,

    #[command(flatten)]
    pub join: JoinArgs,

    /// A row of a data file: FILE:ROW (0-based).
    #[arg(long, value_name = "FILE:ROW")]
    pub row: Option<String>,

    /// Column values as a YAML flow mapping, e.g. '{country: gb, genai_consent: opt_in,
    /// author_age: 30, visibility: null}'; add user_in: [LIST] for user lists.
    #[arg(long, value_name = "MAPPING")]
    pub values: Option<String>,

    /// Show the user id pseudonymized as in the filter's manifests.
    #[arg(long, value_name = "KEYFILE")]
    pub pseudonymize_user_ids: Option<PathBuf>,

    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A filter output directory (holding summary.json).
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,

    /// Also write a self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier run's OUT_DIR.
    #[arg(value_name = "OLD_OUT")]
    pub old: PathBuf,
    /// The later run's OUT_DIR.
    #[arg(value_name = "NEW_OUT")]
    pub new: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The YAML policy.
    #[arg(long, value_name = "POLICY.yaml")]
    pub policy: PathBuf,

    /// Output directory (created; must be absent or empty unless --overwrite).
    #[arg(long, short = 'o', value_name = "OUT_DIR")]
    pub output: Option<PathBuf>,

    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Progress bar on stderr: auto shows it only on a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Decide every row and print the summary; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Replace an existing non-empty OUT_DIR.
    #[arg(long)]
    pub overwrite: bool,

    /// Output codec: preserve (each column chunk keeps its input codec), zstd[:LEVEL], snappy,
    /// lz4, gzip[:LEVEL], brotli[:LEVEL] or none.
    #[arg(long, default_value = "preserve", value_name = "CODEC")]
    pub compression: String,

    /// What to do with an unreadable input file: abort the run, or skip it (listed in
    /// summary.json, exit code 4).
    #[arg(long, value_enum, default_value_t = OnError::Abort)]
    pub on_error: OnError,

    /// Reuse the completed files of an interrupted run of the same job (verified by hash).
    #[arg(long)]
    pub resume: bool,

    /// A previous complete output of this job (e.g. last night's): files whose decisions cannot
    /// have changed (same input, policy and options, no member whose snapshot row or list
    /// membership changed) are taken from it instead of processed again. The result is what a
    /// fresh run writes. May be OUT_DIR itself, with --overwrite.
    #[arg(long, value_name = "PREV_OUT")]
    pub reuse: Option<PathBuf>,

    /// Write the manifest's user_id as hex HMAC-SHA-256 keyed with this file's bytes.
    #[arg(long, value_name = "KEYFILE")]
    pub pseudonymize_user_ids: Option<PathBuf>,

    /// Copy wholly kept row groups without decoding their pages first. By default every
    /// copied page is decompressed and decoded once, so that a damaged page is an input error
    /// instead of an output no reader can read.
    #[arg(long)]
    pub trust_input_pages: bool,

    /// Write the kept rows of all inputs, in input order, as data/part-NNNNN.parquet files of
    /// about SIZE each (e.g. 512MiB), for trainers' readers; summary.json lists which inputs'
    /// rows each part holds. Manifests stay one per input.
    #[arg(long, value_name = "SIZE")]
    pub target_file_size: Option<ByteSize>,

    /// Row groups of about ROWS rows in the data files (small filtered row groups merged)
    /// [default with --target-file-size: 131072].
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..=(1 << 31)))]
    pub row_group_size: Option<u64>,

    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub join: JoinArgs,

    /// Parquet files and/or directories (searched recursively for *.parquet).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    Abort,
    Skip,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The YAML policy to validate.
    #[arg(
        value_name = "POLICY.yaml",
        required_unless_present = "policy_flag",
        conflicts_with = "policy_flag"
    )]
    pub policy_path: Option<PathBuf>,

    /// The same, given as every other command takes it.
    #[arg(long = "policy", id = "policy_flag", value_name = "POLICY.yaml")]
    pub policy_flag: Option<PathBuf>,
}

impl CheckArgs {
    /// The policy, however it was given.
    pub fn policy(&self) -> crate::error::Result<&std::path::Path> {
        self.policy_path
            .as_deref()
            .or(self.policy_flag.as_deref())
            .ok_or_else(|| crate::error::Error::Usage("check needs a policy file".into()))
    }
}
