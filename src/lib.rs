//! corpusgate: makes LLM training corpora lawful to train on.
//!
//! Data flows one way: [`policy`] (the reviewed YAML, validated) → [`decide`] (the policy bound to
//! a file's schema) → [`engine`] (row groups decided and rewritten in parallel) → [`output`]
//! (the output directory committed atomically) and [`summary`]. [`cli`] holds the raw command
//! line and [`plan`] the validated one; [`run`] is the single place that maps errors to exit codes.

pub mod cli;
pub mod decide;
pub mod diff;
pub mod engine;
pub mod error;
pub mod explain;
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
pub mod report;
pub mod shard;
pub mod signals;
pub mod summary;
pub mod values;
pub mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, FilterArgs};
use crate::error::{exit, Result};
use crate::plan::FilterPlan;
use crate::policy::Policy;

/// The binary's entry point: parse, run, report one error, return the exit code.
/// glibc's malloc adapts its mmap threshold to the largest block freed so far and returns
/// memory above 128 KiB at the top of each heap to the kernel. With multi-megabyte decode and
/// page buffers freed on other threads, that makes the heap fragment a little more with every
/// row group (peak RSS crept up with corpus size) and re-fault the same pages over and over.
/// Fixed thresholds keep blocks up to 32 MiB in the heap and let each heap keep up to 64 MiB
/// free for reuse: measured on the benchmark, peak RSS ~25 % lower and flat from 4 to 8 M
/// rows, a third of the page faults.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

pub fn main() -> ExitCode {
    guard::install_quiet_hook();
    tune_allocator();
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

/// Scale-out commands tell schedulers to retry what a rerun can fix: I/O failures.
fn retryable(e: error::Error) -> error::Error {
    match e {
        error::Error::Io { .. } | error::Error::Write { .. } => error::Error::Busy(e.to_string()),
        other => other,
    }
}

/// Run a parsed command line; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check(args) => {
            let policy = Policy::load(&args.policy)?;
            let n = explain::run_tests(&policy)?;
            print!("{}", policy.to_normalized_yaml());
            eprintln!(
                "corpusgate: policy {} is valid; {n} policy test{} passed",
                policy.id,
                if n == 1 { "" } else { "s" }
            );
            Ok(exit::SUCCESS)
        }
        Command::Verify(args) => {
            // An OUT_DIR is verified through its data/; its integrity is checked separately.
            let inputs = args
                .paths
                .iter()
                .map(|p| {
                    if p.is_dir() && p.join("summary.json").exists() {
                        p.join("data")
                    } else {
                        p.clone()
                    }
                })
                .collect();
            let plan = FilterPlan::from_args(&FilterArgs::decide_only(
                args.policy.clone(),
                args.join,
                args.threads,
                args.pseudonymize_user_ids.clone(),
                inputs,
            ))?;
            let report = verify::run(&plan, &args.paths)?;
            print!("{}", report.text);
            Ok(if report.clean() {
                exit::SUCCESS
            } else {
                exit::VIOLATIONS
            })
        }
        Command::Explain(args) => {
            let policy = Policy::load(&args.policy)?;
            let key = plan::read_key(args.pseudonymize_user_ids.as_deref())?;
            let e = match (&args.values, &args.row) {
                (Some(v), _) => {
                    let (values, user_in) = explain::parse_values(v)?;
                    explain::explain_values(
                        &policy,
                        &values,
                        &user_in,
                        key.as_deref().map(|k| k.as_slice()),
                    )?
                }
                (None, Some(spec)) => {
                    let (file, row) = spec
                        .rsplit_once(':')
                        .and_then(|(f, r)| {
                            Some((std::path::PathBuf::from(f), r.parse::<u64>().ok()?))
                        })
                        .ok_or_else(|| {
                            error::Error::Usage(format!(
                                "--row {spec}: expected FILE:ROW, ROW a number from 0"
                            ))
                        })?;
                    let join = if policy.needs_user_id() {
                        let plan = FilterPlan::from_args(&FilterArgs::decide_only(
                            args.policy.clone(),
                            args.join,
                            Some(1),
                            None,
                            vec![file.clone()],
                        ))?;
                        filter::join_for(&plan)?
                    } else {
                        None
                    };
                    explain::explain_row(
                        &policy,
                        &file,
                        row,
                        join.as_ref(),
                        key.as_deref().map(|k| k.as_slice()),
                    )?
                }
                (None, None) => unreachable!("clap requires --row or --values"),
            };
            print!("{}", explain::render(&policy, &e));
            Ok(exit::SUCCESS)
        }
        Command::Report(args) => {
            let s = report::load_summary(&args.out_dir)?;
            print!("{}", report::text(&s));
            if let Some(path) = &args.html {
                let html = report::html(&s, s["policy"]["text"].as_str());
                std::fs::write(path, html).map_err(|e| error::Error::io("writing", path, e))?;
                eprintln!("corpusgate: wrote {}", path.display());
            }
            Ok(exit::SUCCESS)
        }
        Command::Plan(args) => {
            let p = shard::plan(&args)?;
            eprintln!(
                "corpusgate: planned {} inputs into {} shards in {}",
                p["inputs"].as_array().map_or(0, |a| a.len()),
                p["shards"].as_array().map_or(0, |a| a.len()),
                args.output.display()
            );
            Ok(exit::SUCCESS)
        }
        Command::RunShard(args) => {
            let index = shard::resolve_index(args.index)?;
            shard::run_shard(&args.out_dir, index, args.threads).map_err(retryable)
        }
        Command::Commit(args) => shard::commit(&args.out_dir).map_err(retryable),
        Command::Diff(args) => {
            let d = diff::diff(&args.old, &args.new)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&d.json()).expect("serialises")
                );
            } else {
                print!("{}", d.text());
            }
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
