//! The command line: [`args`] as typed, and [`main`], the one place where a command's outcome
//! becomes the process exit code and where errors are reported.

mod args;

pub use args::*;

use std::process::ExitCode;

use clap::Parser;

use crate::error::ExitStatus;

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

/// The binary's entry point: parse, run, report one error, return the exit code.
pub fn main() -> ExitCode {
    crate::guard::install_quiet_hook();
    tune_allocator();
    let status = match Cli::try_parse() {
        Ok(cli) => match crate::guard::catch(|| crate::commands::run(cli)) {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                eprintln!("corpusgate: error: {e}");
                e.exit_status()
            }
            Err(panic) => {
                eprintln!("corpusgate: error: internal error ({panic}); please report this");
                ExitStatus::Failure
            }
        },
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            ExitStatus::Success
        }
        Err(e) => {
            eprint!("{}", one_voice(&e));
            ExitStatus::Usage
        }
    };
    ExitCode::from(status.code())
}

/// A command-line error as every other error reads: one `corpusgate: error:` line, and clap's
/// suggestion, if it has one, as one hint line.
fn one_voice(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "corpusgate: error: a command is needed (filter, check, verify, explain, report, diff, plan, run-shard or commit)\n  tip: corpusgate --help\n".into();
    }
    let text = e.render().to_string();
    // clap's first paragraph is the error (required arguments listed one per line under it).
    let message = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let mut out = format!("corpusgate: error: {message}\n");
    if let Some(tip) = text.lines().map(str::trim).find(|l| l.starts_with("tip:")) {
        out.push_str(&format!("  {tip}\n"));
    }
    out
}
