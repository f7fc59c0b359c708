//! Memory per snapshot member: `cargo run --release --example join_memory -- [MEMBERS]`.
//!
//! Writes a snapshot of MEMBERS (default 1,000,000) members with integer keys and with 16-byte
//! string keys, loads each as `filter --consent-table` does, and prints the bytes the loaded
//! table holds per member and the process's peak RSS growth while loading.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use corpusgate::io::{Location, ReadOptions};
use corpusgate::join::load_consent_table;
use corpusgate::policy::Policy;
use parquet::arrow::ArrowWriter;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("corpusgate-join-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = Policy::from_text(
        Path::new("bench.yaml"),
        "policy: bench\ncolumns: {user_id: id}\nconsent_table: {key: id, region: country, consent: consent}\n\
         consent_values: {granted: [opt_in], denied: [opt_out]}\nrules: []\n",
        String::new(),
    )
    .unwrap();
    let spec = policy.consent_table.as_ref().unwrap();
    let countries = ["US", "GB", "DE", "FR", "JP", "BR", "IN", "CA"];
    for (label, keys) in [
        (
            "integer",
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| i * 7919 % (n as i64 * 13)),
            )) as ArrayRef,
        ),
        (
            "16-byte string",
            Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }))) as ArrayRef,
        ),
    ] {
        let path = dir.join("snapshot.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", keys.data_type().clone(), false),
            Field::new("country", DataType::Utf8, false),
            Field::new("consent", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                keys,
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| countries[i % 8]),
                )),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                    if i % 3 == 0 {
                        "opt_out"
                    } else {
                        "opt_in"
                    }
                }))),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        drop(batch);
        let before = rss_kib("VmRSS:");
        let t = std::time::Instant::now();
        let table = load_consent_table(
            &Location::local(&path),
            spec,
            policy.consent_values.as_ref(),
            ReadOptions::default(),
            None,
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let after = rss_kib("VmRSS:");
        println!(
            "{label} keys: {} members, {:.1} bytes/member held, RSS +{:.1} bytes/member after load, peak RSS {} MiB, load {:.2} s",
            table.keys.len(),
            table.bytes_per_member(),
            (after.saturating_sub(before) * 1024) as f64 / n as f64,
            rss_kib("VmHWM:") / 1024,
            secs
        );
        drop(table);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
