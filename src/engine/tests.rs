//! The engine on real files, one row group at a time: what each row group produces.

use std::path::PathBuf;

use super::job::{FileJob, Input, JobOptions};
use super::row_group::{process_row_group, DataOut};
use crate::io::{discover, open_parquet, Location, ReadOptions};
use crate::plan::CompressionChoice;
use crate::policy::Policy;

fn fixture(name: &str) -> Location {
    Location::local(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/writers")
            .join(name),
    )
}

fn policy(name: &str) -> Policy {
    Policy::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .unwrap()
}

fn job(policy: &Policy, file: &Location, compression: CompressionChoice) -> FileJob {
    let input = discover(std::slice::from_ref(file)).unwrap().remove(0);
    let parquet = open_parquet(file, ReadOptions::default()).unwrap();
    let options = JobOptions {
        compression,
        pseudonymize: None,
        trust_input_pages: false,
        write: true,
    };
    FileJob::prepare(
        policy,
        Input {
            file: input,
            parquet,
        },
        &options,
        None,
    )
    .unwrap()
}

#[test]
fn an_empty_row_group_between_others_produces_nothing_and_decodes_nothing() {
    let p = policy("genai-uk-eea-ch-pause.yaml");
    let j = job(
        &p,
        &fixture("pyarrow-zero-row-group-between.parquet"),
        CompressionChoice::Preserve,
    );
    assert_eq!(j.num_row_groups(), 3);
    let r = process_row_group(&j, 1, &p, true, true).unwrap();
    assert_eq!((r.rows, r.kept), (0, 0));
    assert!(matches!(r.data, DataOut::Nothing));
    assert!(r.manifest.is_none() && r.excluded_rows.is_none());
    let r = process_row_group(&j, 2, &p, true, true).unwrap();
    assert_eq!(r.rows, 30);
    assert_eq!(r.excluded_rows.unwrap().num_rows() as u64, r.rows - r.kept);
}

#[test]
fn a_wholly_kept_row_group_is_copied_only_with_codecs_preserved() {
    let p = Policy::from_text(
        std::path::Path::new("keep.yaml"),
        "policy: keep\ncolumns: {record_id: post_id, region: country}\ndefault: include\nrules: []\n",
        String::new(),
    )
    .unwrap();
    let file = fixture("pyarrow-dict-and-plain.parquet");
    let r = process_row_group(
        &job(&p, &file, CompressionChoice::Preserve),
        0,
        &p,
        true,
        false,
    )
    .unwrap();
    assert_eq!(r.kept, r.rows);
    assert!(matches!(r.data, DataOut::PassThrough(_)));
    let zstd = CompressionChoice::parse("zstd:3").unwrap();
    let r = process_row_group(&job(&p, &file, zstd), 0, &p, true, false).unwrap();
    assert!(matches!(r.data, DataOut::Encoded(_)));
    // A dry run decides and writes nothing.
    let r = process_row_group(
        &job(&p, &file, CompressionChoice::Preserve),
        0,
        &p,
        false,
        false,
    )
    .unwrap();
    assert!(matches!(r.data, DataOut::Nothing));
}

#[test]
fn int96_leaves_are_encoded_by_the_raw_path() {
    let p = policy("genai-uk-eea-ch-pause.yaml");
    let j = job(
        &p,
        &fixture("spark-int96.parquet"),
        CompressionChoice::Preserve,
    );
    assert_eq!(j.raw_leaves.len(), 1);
    let r = process_row_group(&j, 0, &p, true, false).unwrap();
    assert!(r.kept > 0 && r.kept < r.rows);
    let DataOut::Encoded(chunks) = r.data else {
        panic!("a mixed row group is encoded")
    };
    let raw = chunks
        .iter()
        .filter(|c| matches!(c, super::row_group::OutChunk::Raw(_)))
        .count();
    assert_eq!(raw, 1);
}
