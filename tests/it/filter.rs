use std::path::Path;

use parquet::basic::Compression;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;

use crate::util::*;

struct Corpus {
    _dir: tempfile::TempDir,
    input: std::path::PathBuf,
    files: Vec<(String, Vec<Rec>)>,
}

/// Four files, one per country column type, several row groups each.
fn corpus(seed: u64) -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let types = [
        CountryType::Utf8,
        CountryType::Large,
        CountryType::Dict,
        CountryType::View,
    ];
    let codecs = [
        Compression::ZSTD(Default::default()),
        Compression::SNAPPY,
        Compression::BROTLI(Default::default()),
        Compression::UNCOMPRESSED,
    ];
    let mut files = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let recs = random_records(seed + i as u64, 700 + 50 * i, 1_000_000 * (i as i64 + 1));
        let rel = if i == 3 {
            format!("nested/deeper/part-{i}.parquet")
        } else {
            format!("part-{i}.parquet")
        };
        write_parquet(&input.join(&rel), &recs, *t, 128 + 64 * i, codecs[i]);
        files.push((rel, recs));
    }
    Corpus {
        _dir: dir,
        input,
        files,
    }
}

fn check_output(out: &Path, policy: &str, c: &Corpus) {
    assert!(out.join("_SUCCESS").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let sha = summary["policy"]["sha256"].as_str().unwrap().to_owned();
    let mut total_rows = 0;
    let mut total_kept = 0;
    let mut by_rule = std::collections::BTreeMap::<String, u64>::new();
    for (rel, recs) in &c.files {
        let data = read_all(&out.join("data").join(rel));
        let manifest = read_all(&out.join("excluded").join(rel));
        let want_kept: Vec<i64> = recs
            .iter()
            .filter(|r| expected_keep(policy, r))
            .map(|r| r.post_id)
            .collect();
        assert_eq!(post_ids(&data), want_kept, "{rel}: kept rows");
        // Every original column, same schema and metadata.
        let input = read_all(&c.input.join(rel));
        assert_eq!(data.schema().fields(), input.schema().fields(), "{rel}");
        for (k, v) in input.schema().metadata() {
            assert_eq!(
                data.schema().metadata().get(k),
                Some(v),
                "{rel}: schema metadata {k}"
            );
        }
        // Kept rows are the input rows, untouched.
        let kept_idx: Vec<u32> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| expected_keep(policy, r))
            .map(|(i, _)| i as u32)
            .collect();
        let want = arrow_select::take::take_record_batch(
            &input,
            &arrow_array::UInt32Array::from(kept_idx),
        )
        .unwrap();
        assert_eq!(
            data.columns(),
            want.columns(),
            "{rel}: kept rows differ from input rows"
        );

        // The manifest: one row per excluded record, input order, rule and region.
        let excluded: Vec<(usize, &Rec)> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| !expected_keep(policy, r))
            .collect();
        let mschema = manifest.schema();
        let cols: Vec<&str> = mschema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            cols,
            [
                "source_file",
                "row",
                "record_id",
                "user_id",
                "rule",
                "region"
            ]
        );
        assert_eq!(manifest.num_rows(), excluded.len(), "{rel}");
        assert_eq!(
            strings(&manifest, "source_file"),
            vec![Some(rel.clone()); excluded.len()]
        );
        assert_eq!(
            i64s(&manifest, "row"),
            excluded
                .iter()
                .map(|(i, _)| Some(*i as i64))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            i64s(&manifest, "record_id"),
            excluded
                .iter()
                .map(|(_, r)| Some(r.post_id))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            i64s(&manifest, "user_id"),
            excluded
                .iter()
                .map(|(_, r)| r.member_id)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            strings(&manifest, "rule"),
            excluded
                .iter()
                .map(|(_, r)| Some(expected_rule(policy, r).to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            strings(&manifest, "region"),
            excluded
                .iter()
                .map(|(_, r)| r.region.map(str::to_string))
                .collect::<Vec<_>>()
        );
        for r in recs {
            *by_rule
                .entry(expected_rule(policy, r).to_string())
                .or_default() += 1;
        }

        // Footer key-values: the policy, its hash, and the input's own entries.
        let reader =
            SerializedFileReader::new(std::fs::File::open(out.join("data").join(rel)).unwrap())
                .unwrap();
        let kv: Vec<(String, Option<String>)> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone()))
            .collect();
        assert!(kv.contains(&("corpusgate.policy_sha256".into(), Some(sha.clone()))));
        assert!(kv.contains(&("writer.note".into(), Some("kept by corpusgate".into()))));
        assert!(kv.iter().any(|(k, _)| k == "corpusgate.policy"));

        let f = summary["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == rel.as_str())
            .unwrap();
        assert_eq!(f["rows"], recs.len());
        assert_eq!(f["kept"], want_kept.len());
        assert_eq!(f["excluded"], excluded.len());
        total_rows += recs.len();
        total_kept += want_kept.len();
    }
    assert_eq!(summary["totals"]["rows"], total_rows);
    assert_eq!(summary["totals"]["kept"], total_kept);
    assert_eq!(summary["totals"]["files"], c.files.len());
    for (rule, n) in &by_rule {
        assert_eq!(summary["by_rule"][rule]["rows"], *n, "by_rule {rule}");
    }
    let region_rows: u64 = summary["by_region"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(region_rows as usize, total_rows);
}

#[test]
fn example_policies_decide_as_a_reader_would() {
    let c = corpus(7);
    for policy in [
        "genai-uk-eea-ch-pause.yaml",
        "meta-uk-2024.yaml",
        "opt-in-only.yaml",
    ] {
        let out = c._dir.path().join(format!("out-{policy}"));
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&config(policy)),
            "--output",
            p(&out),
            p(&c.input),
        ]);
        assert_eq!(code, 0, "{policy}: {err}");
        assert!(err.contains("corpusgate: policy"), "{err}");
        check_output(&out, policy, &c);
    }
}

#[test]
fn same_bytes_for_any_thread_count() {
    let c = corpus(11);
    let mut trees = Vec::new();
    for threads in ["1", "4", "3"] {
        let out = c._dir.path().join(format!("out-{threads}"));
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&config("meta-uk-2024.yaml")),
            "--threads",
            threads,
            "--output",
            p(&out),
            p(&c.input),
        ]);
        assert_eq!(code, 0, "{err}");
        let t: Vec<_> = tree(&out)
            .into_iter()
            .filter(|(n, _)| n.starts_with("data") || n.starts_with("excluded"))
            .collect();
        assert_eq!(t.len(), 8);
        trees.push(t);
    }
    assert!(
        trees[0] == trees[1] && trees[1] == trees[2],
        "outputs differ between thread counts"
    );
}

#[test]
fn compression_is_preserved_or_chosen() {
    let c = corpus(3);
    let codec = |path: &Path| {
        let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        r.metadata().row_group(0).column(6).compression()
    };
    let out = c._dir.path().join("preserve");
    assert_eq!(
        run(&[
            "filter",
            "--policy",
            p(&config("opt-in-only.yaml")),
            "-o",
            p(&out),
            p(&c.input)
        ])
        .0,
        0
    );
    assert!(matches!(
        codec(&out.join("data/part-0.parquet")),
        Compression::ZSTD(_)
    ));
    assert_eq!(codec(&out.join("data/part-1.parquet")), Compression::SNAPPY);
    assert!(matches!(
        codec(&out.join("data/part-2.parquet")),
        Compression::BROTLI(_)
    ));
    assert_eq!(
        codec(&out.join("data/nested/deeper/part-3.parquet")),
        Compression::UNCOMPRESSED
    );
    let out = c._dir.path().join("zstd");
    assert_eq!(
        run(&[
            "filter",
            "--policy",
            p(&config("opt-in-only.yaml")),
            "--compression",
            "zstd:3",
            "-o",
            p(&out),
            p(&c.input)
        ])
        .0,
        0
    );
    for rel in [
        "part-1.parquet",
        "part-2.parquet",
        "nested/deeper/part-3.parquet",
    ] {
        assert!(
            matches!(codec(&out.join("data").join(rel)), Compression::ZSTD(_)),
            "{rel}"
        );
    }
    check_output(&out, "opt-in-only.yaml", &c);
}

#[test]
fn nothing_kept_gives_a_valid_empty_file_and_nothing_excluded_an_empty_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_out: Vec<Rec> = random_records(1, 300, 1);
    for r in &mut all_out {
        r.country = Some("EU");
        r.region = None;
    }
    let mut all_in: Vec<Rec> = random_records(2, 300, 1000);
    for r in &mut all_in {
        r.country = Some("US");
        r.region = Some("US");
        r.consent = Some("opt_in");
    }
    write_parquet(
        &dir.path().join("in/none.parquet"),
        &all_out,
        CountryType::Utf8,
        100,
        Compression::SNAPPY,
    );
    write_parquet(
        &dir.path().join("in/all.parquet"),
        &all_in,
        CountryType::Dict,
        100,
        Compression::SNAPPY,
    );
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("genai-uk-eea-ch-pause.yaml")),
        "-o",
        p(&out),
        p(&dir.path().join("in")),
    ]);
    assert_eq!(code, 0, "{err}");
    let none = read_all(&out.join("data/none.parquet"));
    assert_eq!(none.num_rows(), 0);
    assert_eq!(none.schema().fields(), schema(CountryType::Utf8).fields());
    assert_eq!(read_all(&out.join("excluded/none.parquet")).num_rows(), 300);
    // Wholly kept row groups are copied byte for byte: same values, same column chunk bytes.
    let kept = read_all(&out.join("data/all.parquet"));
    assert_eq!(
        kept.columns(),
        read_all(&dir.path().join("in/all.parquet")).columns()
    );
    let chunk_bytes = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut out = Vec::new();
        for rg in r.metadata().row_groups() {
            for c in rg.columns() {
                let (start, len) = c.byte_range();
                out.push(bytes[start as usize..(start + len) as usize].to_vec());
            }
        }
        out
    };
    assert_eq!(
        chunk_bytes(&out.join("data/all.parquet")),
        chunk_bytes(&dir.path().join("in/all.parquet"))
    );
    // Re-encoding instead (an explicit codec) keeps the values.
    let out2 = dir.path().join("out2");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("genai-uk-eea-ch-pause.yaml")),
        "--compression",
        "zstd",
        "-o",
        p(&out2),
        p(&dir.path().join("in")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        read_all(&out2.join("data/all.parquet")).columns(),
        kept.columns()
    );
    let m = read_all(&out.join("excluded/all.parquet"));
    assert_eq!(m.num_rows(), 0);
    assert_eq!(m.num_columns(), 6);
}

#[test]
fn discovery_skips_hidden_and_underscored_and_enters_spark_directories() {
    let dir = tempfile::tempdir().unwrap();
    let recs = random_records(5, 50, 1);
    let root = dir.path().join("in");
    for rel in [
        "a.parquet",
        "table.parquet/part-0.parquet",
        "table.parquet/_SUCCESS",
        "table.parquet/.part-0.parquet.crc",
        "_temporary/0/part-9.parquet",
        ".hidden/part-8.parquet",
        "sub/_part-7.parquet",
        "sub/notes.txt",
    ] {
        let path = root.join(rel);
        if rel.ends_with(".parquet") {
            write_parquet(&path, &recs, CountryType::Utf8, 20, Compression::SNAPPY);
        } else {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
    }
    let (code, stdout, err) = run(&[
        "filter",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--dry-run",
        p(&root),
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let paths: Vec<&str> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.parquet", "table.parquet/part-0.parquet"]);
    assert_eq!(summary["totals"]["rows"], 100);
    assert!(err.contains("dry run: nothing written"));
}

#[test]
fn dry_run_writes_nothing() {
    let c = corpus(9);
    let out = c._dir.path().join("never");
    let (code, stdout, err) = run(&[
        "filter",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        "--dry-run",
        "-o",
        p(&out),
        p(&c.input),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.exists());
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let kept: usize = c
        .files
        .iter()
        .map(|(_, r)| {
            r.iter()
                .filter(|r| expected_keep("meta-uk-2024.yaml", r))
                .count()
        })
        .sum();
    assert_eq!(summary["totals"]["kept"], kept);
    assert_eq!(summary["dry_run"], true);
    // Nothing beside the input either.
    let siblings: Vec<_> = std::fs::read_dir(c._dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("in")]);
}

#[test]
fn overwrite_replaces_an_existing_output() {
    let c = corpus(13);
    let out = c._dir.path().join("out");
    std::fs::create_dir_all(out.join("data")).unwrap();
    std::fs::write(out.join("data/stale.parquet"), b"old").unwrap();
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--overwrite",
        "-o",
        p(&out),
        p(&c.input),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.join("data/stale.parquet").exists());
    check_output(&out, "opt-in-only.yaml", &c);
    // No temporary siblings are left behind.
    let names: Vec<String> = std::fs::read_dir(c._dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("corpusgate")), "{names:?}");
}

#[test]
fn check_prints_the_normalised_policy() {
    let (code, stdout, err) = run(&["check", p(&config("genai-uk-eea-ch-pause.yaml"))]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("policy: \"genai-uk-eea-ch-pause\""));
    assert!(stdout.contains("\"PAUSED\": [\"AT\", \"AX\", \"BE\""));
    assert!(stdout.contains("\"CH\""));
}

#[test]
fn sample_data_runs_with_every_example_config() {
    for policy in [
        "genai-uk-eea-ch-pause.yaml",
        "meta-uk-2024.yaml",
        "opt-in-only.yaml",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&config(policy)),
            "-o",
            p(&out),
            p(&root().join("sample-data/corpus")),
        ]);
        assert_eq!(code, 0, "{policy}: {err}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["totals"]["rows"], 6000);
        let kept = summary["totals"]["kept"].as_u64().unwrap();
        assert!(kept > 0 && kept < 6000, "{policy}: kept {kept}");
    }
}

/// A file whose every column is one the policy reads: pass 2 has nothing left to decode and
/// builds the kept rows from what pass 1 read (region strings cast back from dictionaries).
#[test]
fn a_file_of_policy_columns_only_keeps_its_rows_intact() {
    let dir = tempfile::tempdir().unwrap();
    let recs = random_records(11, 900, 5_000);
    let full = batch(&recs, CountryType::Large);
    let only = full.project(&[0, 1, 2, 3]).unwrap();
    let input = dir.path().join("in/policy-only.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(200))
        .build();
    write_batch(&input, &only, Some(props));
    let policy = config("genai-uk-eea-ch-pause.yaml");
    for compression in ["preserve", "zstd:3"] {
        let out = dir.path().join(format!("out-{compression}"));
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&policy),
            "--output",
            p(&out),
            "--compression",
            compression,
            p(&dir.path().join("in")),
        ]);
        assert_eq!(code, 0, "{err}");
        let data = read_all(&out.join("data/policy-only.parquet"));
        let kept: Vec<u32> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| expected_keep("genai-uk-eea-ch-pause.yaml", r))
            .map(|(i, _)| i as u32)
            .collect();
        assert!(!kept.is_empty() && kept.len() < recs.len());
        let want = arrow_select::take::take_record_batch(
            &only,
            &arrow_array::UInt32Array::from(kept.clone()),
        )
        .unwrap();
        assert_eq!(data.schema().fields(), only.schema().fields());
        assert_eq!(data.columns(), want.columns(), "{compression}");
        let manifest = read_all(&out.join("excluded/policy-only.parquet"));
        assert_eq!(manifest.num_rows() + data.num_rows(), recs.len());
    }
}

/// Payload strings and binaries of every width, with nulls, come out as they went in (pass 2
/// reads them as views and copies the kept values back into the column's own type).
#[test]
fn payload_strings_and_binaries_of_every_type_are_kept_intact() {
    use arrow_array::{ArrayRef, BinaryArray, LargeBinaryArray, LargeStringArray};
    let dir = tempfile::tempdir().unwrap();
    let recs = random_records(23, 1000, 9_000);
    let base = batch(&recs, CountryType::Utf8);
    let text = |i: usize| (i % 7 != 3).then(|| recs[i].text.as_str());
    let extra: Vec<(&str, ArrayRef)> = vec![
        (
            "large_text",
            std::sync::Arc::new(LargeStringArray::from_iter((0..recs.len()).map(text))),
        ),
        (
            "blob",
            std::sync::Arc::new(BinaryArray::from_iter(
                (0..recs.len()).map(|i| text(i).map(str::as_bytes)),
            )),
        ),
        (
            "large_blob",
            std::sync::Arc::new(LargeBinaryArray::from_iter(
                (0..recs.len()).map(|i| text(i).map(str::as_bytes)),
            )),
        ),
    ];
    let mut fields: Vec<arrow_schema::FieldRef> = base.schema().fields().iter().cloned().collect();
    let mut cols = base.columns().to_vec();
    for (name, col) in extra {
        fields.push(std::sync::Arc::new(arrow_schema::Field::new(
            name,
            col.data_type().clone(),
            true,
        )));
        cols.push(col);
    }
    let wide = arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        cols,
    )
    .unwrap();
    let input = dir.path().join("in/wide.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(300))
        .build();
    write_batch(&input, &wide, Some(props));
    let kept: Vec<u32> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| expected_keep("genai-uk-eea-ch-pause.yaml", r))
        .map(|(i, _)| i as u32)
        .collect();
    let want = arrow_select::take::take_record_batch(&wide, &arrow_array::UInt32Array::from(kept))
        .unwrap();
    for compression in ["preserve", "zstd:3"] {
        let out = dir.path().join(format!("out-{compression}"));
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&config("genai-uk-eea-ch-pause.yaml")),
            "--output",
            p(&out),
            "--compression",
            compression,
            p(&dir.path().join("in")),
        ]);
        assert_eq!(code, 0, "{err}");
        let data = read_all(&out.join("data/wide.parquet"));
        assert_eq!(data.schema().fields(), wide.schema().fields());
        assert_eq!(data.columns(), want.columns(), "{compression}");
    }
}

/// A wholly kept row group copied byte for byte keeps its page index (column and offset index),
/// although footers are read without it and each file's index is loaded only while it is
/// processed.
#[test]
fn pass_through_keeps_the_page_index() {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use parquet::file::metadata::PageIndexPolicy;
    let dir = tempfile::tempdir().unwrap();
    // Row group 0: everyone allowed (kept whole); row group 1: mixed; row group 2: all paused.
    let mut recs = random_records(31, 600, 70_000);
    for (i, r) in recs.iter_mut().enumerate() {
        if i < 200 {
            r.country = Some("US");
            r.consent = Some("opt_in");
        } else if i >= 400 {
            r.country = Some("GB");
        }
    }
    let input = dir.path().join("in/part.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(200))
        .set_data_page_row_count_limit(50)
        .set_write_batch_size(50)
        .build();
    let b = batch(&recs, CountryType::Utf8);
    write_batch(&input, &b, Some(props));
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("genai-uk-eea-ch-pause.yaml")),
        "--output",
        p(&out),
        p(&dir.path().join("in")),
    ]);
    assert_eq!(code, 0, "{err}");
    let load = |path: &std::path::Path| {
        ArrowReaderMetadata::load(
            &std::fs::File::open(path).unwrap(),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
        )
        .unwrap()
    };
    let inp = load(&input);
    let outp = load(&out.join("data/part.parquet"));
    let (ipq, opq) = (inp.metadata(), outp.metadata());
    assert_eq!(
        opq.num_row_groups(),
        2,
        "the all-paused row group is dropped"
    );
    assert_eq!(opq.row_group(0).num_rows(), 200);
    let (ii, oi) = (ipq.page_index().unwrap(), opq.page_index().unwrap());
    for col in 0..ipq.row_group(0).num_columns() {
        assert_eq!(
            oi.column_index(0, col),
            ii.column_index(0, col),
            "column {col}"
        );
        let pages = |o: &parquet::file::page_index::offset_index::OffsetIndexMetaData| {
            o.page_locations()
                .iter()
                .map(|l| (l.compressed_page_size, l.first_row_index))
                .collect::<Vec<_>>()
        };
        let ip = pages(ii.offset_index(0, col).unwrap());
        let op = pages(oi.offset_index(0, col).unwrap());
        assert!(ip.len() > 1, "column {col}: several pages");
        assert_eq!(op, ip, "column {col}");
    }
}
