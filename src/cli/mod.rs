//! The command line: [`args`] as typed, and [`main`], the one place where a command's outcome
//! becomes the process exit code and where errors are reported.

mod args;

pub use args::*;

use std::process::ExitCode;

use clap::Parser;

pub use crate::error::ExitStatus;

/// The binary's entry point: parse, run, report one error, return the exit code.
pub fn main() -> ExitCode {
    crate::guard::install_quiet_hook();
    crate::allocator::tune();
    ExitCode::from(run_command_line(std::env::args_os()).code())
}

/// Run one command line (`args[0]` is the program name), reporting its one error on stderr:
/// the binary's `main`, and the Python module's `corpusgate` command.
pub fn run_command_line<I, T>(args: I) -> ExitStatus
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match run_args(args) {
        Ok(status) => status,
        Err((status, message)) => {
            eprint!("{message}");
            status
        }
    }
}

/// [`run_args`] inside a host process (the Python module): SIGINT and SIGTERM stop the run
/// cleanly (exit 130/143) but never end the host, and no earlier signal carries over.
pub fn run_args_embedded<I, T>(args: I) -> std::result::Result<ExitStatus, (ExitStatus, String)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::signals::embed();
    run_args(args)
}

/// [`run_command_line`] with the error kept: its exit status and the lines it would print
/// (`corpusgate: error: ...`, newline-terminated). `--help` and `--version` print and succeed.
pub fn run_args<I, T>(args: I) -> std::result::Result<ExitStatus, (ExitStatus, String)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => match crate::guard::catch(|| crate::commands::run(cli)) {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err((e.exit_status(), format!("corpusgate: error: {e}\n"))),
            Err(panic) => Err((
                ExitStatus::Failure,
                format!("corpusgate: error: internal error ({panic}); please report this\n"),
            )),
        },
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            Ok(ExitStatus::Success)
        }
        Err(e) => Err((ExitStatus::Usage, one_voice(&e))),
    }
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
