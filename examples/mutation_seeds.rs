//! Writes seeds for the `parquet_read` fuzz target: a small Parquet file, and that file with
//! every integer field of its footer and of its page headers set in turn to 0, -1, 2^31-1 and
//! 2^63-1 (offsets and sizes kept consistent, see `corpusgate::io::anatomy`).
//!
//!   cargo run --example mutation_seeds -- OUT_DIR

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use corpusgate::io::anatomy::{Anatomy, MUTATION_VALUES};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

fn base() -> Vec<u8> {
    let n = 48;
    let countries = ["GB", "US", "DE", "JP", "ZZ"];
    let consents = ["opt_in", "opt_out", "maybe"];
    let schema = Arc::new(Schema::new(vec![
        Field::new("post_id", DataType::Int64, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("genai_consent", DataType::Utf8, true),
        Field::new("author_age", DataType::Int32, true),
        Field::new("text", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..n as i64)),
        Arc::new(StringArray::from_iter(
            (0..n).map(|i| (i % 7 != 0).then(|| countries[i % 5])),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| consents[i % 3]),
        )),
        Arc::new(Int32Array::from_iter(
            (0..n).map(|i| (i % 5 != 0).then_some(i as i32)),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("post number {i} with some words")),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(n / 2))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: mutation_seeds OUT_DIR"),
    );
    std::fs::create_dir_all(&out).unwrap();
    let a = Anatomy::parse(&base()).unwrap();
    std::fs::write(out.join("base.parquet"), a.build(None)).unwrap();
    let sites = a.sites();
    for (i, site) in sites.iter().enumerate() {
        for v in MUTATION_VALUES {
            std::fs::write(
                out.join(format!("mut-{i:04}-{v}.parquet")),
                a.build(Some((site, v))),
            )
            .unwrap();
        }
    }
    println!(
        "{} seeds ({} integer fields x {} values) in {}",
        sites.len() * MUTATION_VALUES.len() + 1,
        sites.len(),
        MUTATION_VALUES.len(),
        out.display()
    );
}
