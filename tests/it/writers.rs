//! Files from the writers users run (pyarrow, DuckDB, Polars, Spark; `tests/data/writers`,
//! made by `scripts/writer-fixtures.sh`) through every command: empty shards of every shape,
//! INT96 timestamps, v2 pages, nested payloads. Decisions are checked against an evaluation of
//! the policy written here; every output is read back in full.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use parquet::basic::Type as PhysicalType;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;

use crate::util::*;

const POLICY: &str = "genai-uk-eea-ch-pause.yaml";

pub fn writers_dir() -> PathBuf {
    root().join("tests/data/writers")
}

/// The corpus files (not the snapshot and user lists).
pub fn corpus_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(writers_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".parquet") && !n.starts_with("snapshot-") && !n.starts_with("userlist-")
        })
        .collect();
    v.sort();
    assert!(v.len() >= 13, "fixtures missing: {v:?}");
    v
}

/// Whether the example policy keeps a row, read straight from its text: GB, CH and the EEA
/// paused; an unknown region excluded; then opt_out excluded; the rest kept.
fn genai_keeps(country: Option<&str>, consent: Option<&str>) -> bool {
    let region = country.map(|c| c.trim().to_uppercase());
    match region.as_deref() {
        Some("GB" | "CH" | "DE" | "FR") => false,
        Some("US" | "JP") => !matches!(consent.map(str::trim), Some("opt_out")),
        _ => false,
    }
}

fn rows(path: &Path) -> RecordBatch {
    read_all(path)
}

fn ids(b: &RecordBatch) -> Vec<i64> {
    let a = arrow_cast::cast(
        b.column_by_name("post_id").unwrap(),
        &arrow_schema::DataType::Int64,
    )
    .unwrap();
    a.as_primitive::<Int64Type>().values().to_vec()
}

fn expected_kept(input: &Path) -> BTreeSet<i64> {
    let b = rows(input);
    let (ids, country, consent) = (
        ids(&b),
        strings(&b, "country"),
        strings(&b, "genai_consent"),
    );
    (0..b.num_rows())
        .filter(|i| genai_keeps(country[*i].as_deref(), consent[*i].as_deref()))
        .map(|i| ids[i])
        .collect()
}

fn physical_type(path: &Path, column: &str) -> PhysicalType {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let d = r.metadata().file_metadata().schema_descr_ptr();
    d.columns()
        .iter()
        .find(|c| c.name() == column)
        .unwrap()
        .physical_type()
}

#[test]
fn every_writers_file_is_filtered_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    for input in corpus_files() {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let out = dir.path().join(&name);
        let (code, _, err) = run(&[
            "filter",
            "--policy",
            p(&config(POLICY)),
            "--progress",
            "never",
            "-o",
            p(&out),
            p(&input),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        keep_for_crosscheck(
            &out,
            &format!("writers-{}", name.trim_end_matches(".parquet")),
        );
        let data = out.join("data").join(&name);
        let excluded = out.join("excluded").join(&name);
        let (kept, gone) = (rows(&data), rows(&excluded));
        let input_rows = rows(&input);
        assert_eq!(
            kept.num_rows() + gone.num_rows(),
            input_rows.num_rows(),
            "{name}: kept + excluded = input"
        );
        let kept_ids: BTreeSet<i64> = ids(&kept).into_iter().collect();
        assert_eq!(kept_ids, expected_kept(&input), "{name}");
        // Same Arrow schema as the input, and the policy in its metadata for pyarrow users.
        assert_eq!(
            kept.schema().fields(),
            input_rows.schema().fields(),
            "{name}"
        );
        let md = kept.schema().metadata().clone();
        assert_eq!(
            md.get("corpusgate.policy").map(String::as_str),
            Some("genai-uk-eea-ch-pause"),
            "{name}: {md:?}"
        );
        assert!(md.contains_key("corpusgate.policy_sha256"), "{name}");
        // INT96 stays INT96, with the same values in the kept rows.
        if physical_type(&input, "created_at") == PhysicalType::INT96 {
            assert_eq!(
                physical_type(&data, "created_at"),
                PhysicalType::INT96,
                "{name}"
            );
            // Read back as the file's Arrow schema says (pyarrow records microseconds).
            let nanos = |b: &RecordBatch| -> Vec<(i64, Option<i64>)> {
                let t = b.column_by_name("created_at").unwrap();
                let t = arrow_cast::cast(t, &arrow_schema::DataType::Int64).unwrap();
                let t = t.as_primitive::<Int64Type>();
                ids(b)
                    .into_iter()
                    .enumerate()
                    .map(|(i, id)| (id, t.is_valid(i).then(|| t.value(i))))
                    .collect()
            };
            let want: Vec<_> = nanos(&input_rows)
                .into_iter()
                .filter(|(id, _)| kept_ids.contains(id))
                .collect();
            assert_eq!(nanos(&kept), want, "{name}: INT96 values");
            assert!(
                want.is_empty() || want.iter().any(|(_, v)| v.is_none()),
                "{name}: nulls covered"
            );
        }
    }
}

#[test]
fn empty_shards_of_every_shape_in_one_directory() {
    // The empty files beside non-empty ones, as a nightly export leaves them.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for f in corpus_files() {
        let n = f.file_name().unwrap().to_string_lossy().into_owned();
        if n.contains("empty") || n.contains("no-row-groups") || n.contains("between") {
            std::fs::copy(&f, corpus.join(&n)).unwrap();
        }
    }
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config(POLICY)),
        "-o",
        p(&out),
        p(&corpus),
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["totals"]["rows"], 60, "{summary}");
    for f in std::fs::read_dir(&corpus).unwrap() {
        let n = f.unwrap().file_name().to_string_lossy().into_owned();
        let data = rows(&out.join("data").join(&n));
        let input = rows(&corpus.join(&n));
        assert_eq!(data.schema().fields(), input.schema().fields(), "{n}");
        if input.num_rows() == 0 {
            assert_eq!(data.num_rows(), 0, "{n}");
            assert_eq!(rows(&out.join("excluded").join(&n)).num_rows(), 0, "{n}");
        }
    }

    // verify: the output is clean; the corpus has rows the policy excludes, and the empty row
    // group in the middle shifts no row number.
    let (code, stdout, err) = run(&["verify", "--policy", p(&config(POLICY)), p(&out)]);
    assert_eq!(code, 0, "{stdout}{err}");
    let (code, stdout, err) = run(&["verify", "--policy", p(&config(POLICY)), p(&corpus)]);
    assert_eq!(code, 3, "{stdout}{err}");
    assert!(
        stdout.contains("verify: policy genai-uk-eea-ch-pause over"),
        "{stdout}"
    );

    // explain: the first row after the empty row group.
    let between = corpus.join("pyarrow-zero-row-group-between.parquet");
    let b = rows(&between);
    let (country, consent) = (strings(&b, "country"), strings(&b, "genai_consent"));
    let (code, stdout, err) = run(&[
        "explain",
        "--policy",
        p(&config(POLICY)),
        "--row",
        &format!("{}:30", p(&between)),
    ]);
    assert_eq!(code, 0, "{err}");
    let want = if genai_keeps(country[30].as_deref(), consent[30].as_deref()) {
        "decision: INCLUDE"
    } else {
        "decision: EXCLUDE"
    };
    assert!(stdout.contains(want), "{stdout}");
    let (code, _, err) = run(&[
        "explain",
        "--policy",
        p(&config(POLICY)),
        "--row",
        &format!(
            "{}:0",
            p(&corpus.join("pyarrow-empty-one-zero-row-group.parquet"))
        ),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("row 0 is past the end (0 rows"), "{err}");

    // plan / run-shard / commit give the same files as filter.
    let sharded = dir.path().join("sharded");
    let (code, _, err) = run(&[
        "plan",
        "--policy",
        p(&config(POLICY)),
        "--shards",
        "3",
        "-o",
        p(&sharded),
        p(&corpus),
    ]);
    assert_eq!(code, 0, "{err}");
    for i in 0..3 {
        let (code, _, err) = run(&["run-shard", p(&sharded), "--index", &i.to_string()]);
        assert_eq!(code, 0, "shard {i}: {err}");
    }
    let (code, _, err) = run(&["commit", p(&sharded)]);
    assert_eq!(code, 0, "{err}");
    for kind in ["data", "excluded"] {
        assert_eq!(tree(&sharded.join(kind)), tree(&out.join(kind)), "{kind}");
    }
    keep_for_crosscheck(&out, "writers-empty-shards");
}

#[test]
fn snapshots_and_user_lists_with_empty_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let w = writers_dir();
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("consent-snapshot.yaml")),
        "--consent-table",
        p(&w.join("snapshot-empty-row-group.parquet")),
        "--user-list",
        &format!(
            "erasure={}",
            p(&w.join("userlist-zero-row-group-between.parquet"))
        ),
        "-o",
        p(&out),
        p(&root().join("sample-data/corpus")),
    ]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["consent_table"]["rows"], 59, "{s}");
    assert_eq!(s["user_lists"]["erasure"]["rows"], 7, "{s}");
    // An empty list is a list with no one on it.
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("consent-snapshot.yaml")),
        "--consent-table",
        p(&w.join("snapshot-empty-row-group.parquet")),
        "--user-list",
        &format!("erasure={}", p(&w.join("userlist-empty.parquet"))),
        "--dry-run",
        p(&root().join("sample-data/corpus")),
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Copy a run's output where the CI cross-check reads every file with pyarrow and DuckDB
/// (`scripts/crosscheck.sh`), when it asks for them.
pub fn keep_for_crosscheck(out: &Path, name: &str) {
    let Some(dir) = std::env::var_os("CORPUSGATE_CROSSCHECK_DIR") else {
        return;
    };
    let to = Path::new(&dir).join(name);
    for (rel, bytes) in tree(out) {
        if rel.ends_with(".parquet") {
            let dest = to.join(&rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(dest, bytes).unwrap();
        }
    }
}

/// pyarrow writes the min and max of each page into its header, whole: with long strings a
/// header runs to hundreds of bytes, longer than the first read of it. Such headers were
/// refused ("a string claims 232 entries but only 103 bytes follow").
#[test]
fn page_headers_holding_long_statistics_are_read() {
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let rows = 400;
    let text: Vec<String> = (0..rows)
        .map(|i| format!("{i:04} {}", "long text ".repeat(40 + i % 7)))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("post_id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| {
                if i % 3 == 0 {
                    "GB"
                } else {
                    "US"
                }
            }))),
            Arc::new(StringArray::from(text)),
        ],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_write_page_header_statistics(true)
        .set_statistics_truncate_length(None)
        .set_dictionary_enabled(false)
        .set_data_page_row_count_limit(50)
        .set_write_batch_size(50)
        .build();
    let input = dir.path().join("long-stats.parquet");
    write_batch(&input, &batch, Some(props));
    // The headers really are longer than the first 256 bytes read of them.
    let file = std::fs::read(&input).unwrap();
    let needle = b"long text long text long text long text long text long text";
    assert!(file.windows(needle.len()).filter(|w| w == needle).count() > 3 * rows);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "policy: no-gb\ncolumns: {record_id: post_id, region: country}\ndefault: include\n\
         rules:\n  - id: gb\n    if: { region: [GB] }\n    then: exclude\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--progress",
        "never",
        "--policy",
        p(&policy),
        "-o",
        p(&out),
        p(&input),
    ]);
    assert_eq!(code, 0, "{err}");
    let kept = read_all(&out.join("data/long-stats.parquet"));
    assert_eq!(kept.num_rows(), rows - rows.div_ceil(3));
    assert!(i64s(&kept, "post_id").iter().all(|id| id.unwrap() % 3 != 0));
    keep_for_crosscheck(&out, "long-page-statistics");
}

/// The test binaries are linked as the corpusgate binary is (`build.rs`): zstd's context
/// constructors and destructors wrapped, so that the contexts the parquet crate drops are handed
/// out again (`src/zstd_contexts.rs`). Linux with glibc only, where the link is wrapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn zstd_contexts_dropped_are_handed_out_again() {
    let before = corpusgate::zstd_contexts::reused();
    for _ in 0..8 {
        drop(zstd::bulk::Compressor::new(3).unwrap());
        drop(zstd::bulk::Decompressor::new().unwrap());
    }
    // Other tests make and drop contexts meanwhile, which can only add to the count.
    assert!(
        corpusgate::zstd_contexts::reused() >= before + 14,
        "the link does not wrap zstd's context constructors"
    );
}
