//! One module per subcommand; [`run`] dispatches a parsed command line to it.

pub mod check;
pub mod diff;
pub mod explain;
pub mod filter;
pub mod report;
pub mod shard;
pub mod verify;

use crate::cli::{Cli, Command};
use crate::error::{ExitStatus, Result};

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus> {
    match cli.command {
        Command::Filter(args) => filter::command(&args),
        Command::Check(args) => check::run(&args),
        Command::Verify(args) => verify::command(&args),
        Command::Explain(args) => explain::command(&args),
        Command::Report(args) => report::command(&args),
        Command::Diff(args) => diff::command(&args),
        Command::Plan(args) => shard::plan_command(&args),
        Command::RunShard(args) => shard::run_shard_command(&args),
        Command::Commit(args) => shard::commit_command(&args),
    }
}
