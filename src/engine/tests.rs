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
    // By leaf; the file is snappy, so its strings are ours (Raw) too, and only the INT96 leaf
    // is Raw of its type.
    let leaf = j.raw_leaves[0];
    let int96: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(c, super::row_group::OutChunk::Raw(r)
                if r.close.metadata.column_type() == parquet::basic::Type::INT96)
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(int96, vec![leaf]);
}

#[test]
fn the_manifest_as_encoded_holds_the_rows_it_was_made_of() {
    // Its label columns (source_file, rule, region) reach the label writer as dictionaries, the
    // others the Arrow writer; read back, the file holds what the rows collected as strings hold,
    // null regions and every rule included.
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::arrow::ArrowWriter;

    use super::row_group::{ManifestOut, OutChunk};

    let p = policy("genai-uk-eea-ch-pause.yaml");
    let (mut rules, mut null_regions, mut labelled) = (std::collections::BTreeSet::new(), 0, 0);
    for name in [
        "pyarrow-dict-and-plain.parquet",
        "pyarrow-v2-pages.parquet",
        "duckdb-basic.parquet",
        "polars-basic.parquet",
    ] {
        let j = job(
            &p,
            &fixture(name),
            CompressionChoice::parse("zstd:3").unwrap(),
        );
        let input: Vec<Option<String>> = {
            let f = std::fs::File::open(fixture(name).to_string()).unwrap();
            let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
            let country = b.schema().index_of("country").unwrap();
            let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), [country]);
            b.with_projection(mask)
                .build()
                .unwrap()
                .flat_map(|b| {
                    let b = b.unwrap();
                    let c = arrow_cast::cast(b.column(0), &arrow_schema::DataType::Utf8).unwrap();
                    let c = c.as_string::<i32>();
                    c.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
                })
                .collect()
        };
        for rg in 0..j.num_row_groups() {
            let r = process_row_group(&j, rg, &p, true, true).unwrap();
            let (Some(rows), Some(ManifestOut::Encoded(chunks))) = (r.excluded_rows, r.manifest)
            else {
                continue;
            };
            let mut file = Vec::new();
            let options = ArrowWriterOptions::new().with_properties(j.manifest_props.clone());
            let (mut w, _) =
                ArrowWriter::try_new_with_options(&mut file, j.manifest_schema.clone(), options)
                    .and_then(|w| w.into_serialized_writer())
                    .unwrap();
            let mut group = w.next_row_group().unwrap();
            for c in chunks {
                match c {
                    OutChunk::Arrow(c) => c.append_to_row_group(&mut group).unwrap(),
                    OutChunk::Raw(raw) => {
                        labelled += 1;
                        group.append_column(&raw.bytes, raw.close).unwrap()
                    }
                }
            }
            group.close().unwrap();
            w.close().unwrap();
            let back: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let back = arrow_select::concat::concat_batches(&back[0].schema(), &back).unwrap();
            assert_eq!(back.columns(), rows.columns(), "{name} row group {rg}");
            assert_eq!(rows.schema().fields(), j.manifest_schema.fields());
            // Each row's region and rule, as its input row says (countries as the fixtures
            // spell them: alpha-2 codes, some in lower case or padded; ZZ and null unknown).
            let at = rows
                .column_by_name("row")
                .unwrap()
                .as_primitive::<Int64Type>();
            let rule = rows.column_by_name("rule").unwrap().as_string::<i32>();
            let region = rows.column_by_name("region").unwrap().as_string::<i32>();
            for i in 0..rows.num_rows() {
                let country = input[at.value(i) as usize]
                    .as_deref()
                    .map(|c| c.trim().to_uppercase())
                    .filter(|c| c != "ZZ");
                assert_eq!(
                    region.is_valid(i).then(|| region.value(i)),
                    country.as_deref()
                );
                match rule.value(i) {
                    "unknown-region" => assert!(region.is_null(i)),
                    "region-paused" => {
                        assert!(["GB", "CH", "DE", "FR"].contains(&region.value(i)))
                    }
                    other => assert_eq!(other, "opted-out"),
                }
                rules.insert(rule.value(i).to_owned());
            }
            null_regions += region.null_count();
        }
    }
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert!(null_regions > 0 && labelled > 0);
}
