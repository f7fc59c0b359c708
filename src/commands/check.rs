//! `check`: validate a policy, run every one of its tests, print it normalised.

use crate::cli::CheckArgs;
use crate::commands::explain::run_tests;
use crate::error::{Error, ExitStatus, Result};
use crate::policy::Policy;

pub fn run(args: &CheckArgs) -> Result<ExitStatus> {
    let path = args.policy()?;
    let policy = Policy::load(path)?;
    let report = run_tests(&policy);
    let total = policy.tests.len();
    if !report.failures.is_empty() {
        // Like `cargo test`: every failure, then one verdict.
        for f in &report.failures {
            eprintln!("corpusgate: {f}");
        }
        return Err(Error::Usage(format!(
            "{}: {} of {total} policy test{} failed ({} passed)",
            policy.path.display(),
            report.failures.len(),
            if total == 1 { "" } else { "s" },
            report.passed
        )));
    }
    print!("{}", policy.to_normalized_yaml());
    eprintln!(
        "corpusgate: policy {} is valid; {total} policy test{} passed",
        policy.id,
        if total == 1 { "" } else { "s" }
    );
    Ok(ExitStatus::Success)
}
