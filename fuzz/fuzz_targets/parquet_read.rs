//! Arbitrary bytes as an input file through the whole `filter --dry-run` read path: footer checks,
//! schema binding, both decoding passes. Any outcome but a panic escaping the engine (or an
//! allocation past libFuzzer's limits) is fine: panics inside the parquet crate are caught per
//! row group and reported as errors by design.
#![no_main]

use std::sync::Once;

use clap::Parser;
use libfuzzer_sys::fuzz_target;

static INIT: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    INIT.call_once(|| {
        // Panics the engine catches are not crashes; escaping ones still abort via libFuzzer.
        corpusgate::guard::install_quiet_hook();
    });
    let dir = std::env::temp_dir().join(format!("corpusgate-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("x.parquet");
    std::fs::write(&input, data).unwrap();
    let policy = dir.join("p.yaml");
    if !policy.exists() {
        std::fs::write(
            &policy,
            "policy: fuzz\ncolumns: {record_id: post_id, region: country, consent: genai_consent}\n\
             consent_values: {granted: [opt_in], denied: [opt_out]}\n\
             rules:\n  - id: adult\n    if: {where: [{column: author_age, ge: 18}]}\n    then: include\n",
        )
        .unwrap();
    }
    let cli = corpusgate::cli::Cli::try_parse_from([
        "corpusgate",
        "filter",
        "--policy",
        policy.to_str().unwrap(),
        "--dry-run",
        "--threads",
        "1",
        "--progress",
        "never",
        input.to_str().unwrap(),
    ])
    .unwrap();
    let _ = corpusgate::run(cli);
});
