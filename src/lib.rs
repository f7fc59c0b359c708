//! corpusgate: makes LLM training corpora lawful to train on.
//!
//! Data flows one way: [`policy`] (the reviewed YAML, validated) → [`decide`] (the policy bound to
//! a file's schema) → [`engine`] (row groups decided and rewritten in parallel) → [`output`]
//! (the output directory committed atomically) and [`summary`]. [`cli`] holds the raw command
//! line and [`plan`] the validated one; [`run`] is the single place that maps errors to exit codes.

pub mod cli;
pub mod decide;
pub mod engine;
pub mod error;
pub mod filter;
pub mod guard;
pub mod input;
pub mod join;
pub mod journal;
pub mod output;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod region;
pub mod signals;
pub mod summary;
pub mod values;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{exit, Result};
use crate::plan::FilterPlan;
use crate::policy::Policy;

/// The binary's entry point: parse, run, report one error, return the exit code.
pub fn main() -> ExitCode {
    guard::install_quiet_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            });
        }
    };
    match guard::catch(|| run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            eprintln!("corpusgate: error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(panic) => {
            eprintln!("corpusgate: error: {panic}; please report this");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Run a parsed command line; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check(args) => {
            let policy = Policy::load(&args.policy)?;
            print!("{}", policy.to_normalized_yaml());
            Ok(exit::SUCCESS)
        }
        Command::Filter(args) => {
            let plan = FilterPlan::from_args(&args)?;
            let summary = filter::run(&plan)?;
            eprint!("{}", summary.human(&plan.policy, plan.output.as_deref()));
            if plan.dry_run {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary.to_json(&plan.policy))
                        .expect("summary serialises")
                );
            }
            Ok(if summary.skipped.is_empty() {
                exit::SUCCESS
            } else {
                exit::QUARANTINED
            })
        }
    }
}
