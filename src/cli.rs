//! The command line as the user typed it (clap), before any validation beyond syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::progress::ProgressMode;

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
    /// Validate a policy and print it normalised (groups expanded, rules in order).
    Check(CheckArgs),
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

    /// Consent snapshot (Parquet file or directory) the policy's consent_table joins by user id.
    #[arg(long, value_name = "SNAPSHOT")]
    pub consent_table: Option<PathBuf>,

    /// A user list the policy names (user_in): text, one id per line, or one-column Parquet.
    #[arg(long = "user-list", value_name = "NAME=PATH")]
    pub user_lists: Vec<String>,

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
    #[arg(value_name = "POLICY.yaml")]
    pub policy: PathBuf,
}
