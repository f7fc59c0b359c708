//! The engine's own decision time for rows in memory: the policy's columns of Parquet files
//! read into one batch, then `BatchFilter::decide_batch` timed on it (the best of `ROUNDS`).
//! The reference `scripts/bench/python_decide.py` compares the Python module's `decide` with.
//!
//!     cargo run --release --example decide_time -- POLICY FILE...

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (policy_path, files) = args
        .split_first()
        .expect("usage: decide_time POLICY FILE...");
    let policy = Arc::new(corpusgate::policy::Policy::load(policy_path.as_ref()).unwrap());
    let columns = corpusgate::batch::BatchFilter::columns(&policy);
    let mut batches: Vec<RecordBatch> = Vec::new();
    for f in files {
        let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap();
        let leaves: Vec<usize> = columns
            .iter()
            .map(|c| {
                b.parquet_schema()
                    .columns()
                    .iter()
                    .position(|l| l.name() == c)
                    .unwrap()
            })
            .collect();
        let mask = ProjectionMask::leaves(b.parquet_schema(), leaves);
        let r = b
            .with_projection(mask)
            .with_batch_size(1 << 20)
            .build()
            .unwrap();
        batches.extend(r.map(Result::unwrap));
    }
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let filter =
        corpusgate::batch::BatchFilter::new(policy, policy_path.as_ref(), None, Vec::new())
            .unwrap();
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let d = filter.decide_batch(&batch).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(d.num_rows(), batch.num_rows());
    }
    println!("{} {best:.6}", batch.num_rows());
}
