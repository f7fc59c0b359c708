//! `filter --target-file-size` and `--row-group-size`: the kept rows of all inputs, in input
//! order, re-laid as trainer-sized files; nothing lost, nothing reordered, the same bytes for
//! any thread count, and `verify` holding the output to summary.json.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::util::*;
use crate::writers::keep_for_crosscheck;

const POLICY: &str = "genai-uk-eea-ch-pause.yaml";

/// Five inputs (one in a subdirectory) of varied row groups, most rows kept or most excluded,
/// named as the parts will be (`part-00000.parquet`...): no part may clobber an input it reads.
fn corpus(dir: &Path) -> PathBuf {
    let root = dir.join("corpus");
    for (i, (rows, rg)) in [(700, 50), (40, 7), (1500, 300), (0, 10), (900, 64)]
        .into_iter()
        .enumerate()
    {
        let name = if i == 2 {
            format!("sub/part-{i:05}.parquet")
        } else {
            format!("part-{i:05}.parquet")
        };
        let recs = random_records(40 + i as u64, rows, 1_000_000 * i as i64);
        write_parquet(
            &root.join(name),
            &recs,
            CountryType::Utf8,
            rg,
            Compression::SNAPPY,
        );
    }
    root
}

fn filter(input: &Path, out: &Path, extra: &[&str]) {
    filter_all(&[input.to_path_buf()], out, extra);
}

fn filter_all(inputs: &[PathBuf], out: &Path, extra: &[&str]) {
    let policy = config(POLICY);
    let mut args = vec![
        "filter",
        "--policy",
        p(&policy),
        "--progress",
        "never",
        "-o",
        p(out),
    ];
    args.extend_from_slice(extra);
    args.extend(inputs.iter().map(|i| p(i)));
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
}

/// The files under `dir`, relative, sorted (as input order sorts them).
fn files(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().map(|(rel, _)| rel).collect()
}

/// The rows of `rels` under `dir`, concatenated in that order.
fn concat_rows(dir: &Path, rels: &[String]) -> RecordBatch {
    let batches: Vec<RecordBatch> = rels.iter().map(|r| read_all(&dir.join(r))).collect();
    let schema = batches[0].schema();
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
        .collect();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

fn row_group_rows(path: &Path) -> Vec<i64> {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn parts_hold_every_kept_row_in_input_order_at_about_the_target_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let plain = dir.path().join("plain");
    filter(&input, &plain, &[]);
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let layout = ["--target-file-size", "12KiB", "--row-group-size", "100"];
    filter(&input, &one, &[&layout[..], &["--threads", "1"]].concat());
    filter(&input, &two, &[&layout[..], &["--threads", "2"]].concat());
    keep_for_crosscheck(&one, "layout-parts");

    // Only parts under data/, numbered from 0; the manifests are the plain run's, byte for byte.
    let parts = files(&one.join("data"));
    assert!(parts.len() >= 3, "{parts:?}");
    for (n, name) in parts.iter().enumerate() {
        assert_eq!(name, &format!("part-{n:05}.parquet"));
    }
    assert_eq!(tree(&one.join("excluded")), tree(&plain.join("excluded")));
    // The same bytes whatever the thread count.
    assert_eq!(tree(&one.join("data")), tree(&two.join("data")));
    assert!(!one.join("_state").exists(), "nothing a --reuse could take");

    // Every kept row, in input order, with the same schema and values.
    let want = concat_rows(&plain.join("data"), &files(&plain.join("data")));
    let got = concat_rows(&one.join("data"), &parts);
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got.schema().fields(), want.schema().fields());
    for c in 0..want.num_columns() {
        assert_eq!(got.column(c), want.column(c), "column {c}");
    }

    // Row groups of 100 rows but the last of each part; parts near the target.
    let s = summary(&one);
    let records = s["data_files"].as_array().unwrap();
    assert_eq!(records.len(), parts.len());
    let mut total = 0;
    for (i, (name, rec)) in parts.iter().zip(records).enumerate() {
        let path = one.join("data").join(name);
        let groups = row_group_rows(&path);
        let (last, full) = groups.split_last().unwrap();
        assert!(full.iter().all(|n| *n == 100), "{name}: {groups:?}");
        assert!((1..=100).contains(last), "{name}: {groups:?}");
        let rows: i64 = groups.iter().sum();
        assert_eq!(rec["path"], name.as_str());
        assert_eq!(rec["rows"], rows);
        assert_eq!(rec["row_groups"], groups.len());
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(rec["bytes"], size);
        let from_inputs: u64 = rec["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["rows"].as_u64().unwrap())
            .sum();
        assert_eq!(from_inputs, rows as u64);
        if i + 1 < parts.len() {
            // Cut by the input's compressed bytes; re-encoded, a part lands near the target.
            assert!(
                (6 << 10..=36 << 10).contains(&size),
                "{name}: {size} bytes for a 12KiB target"
            );
        }
        total += rows;
    }
    assert_eq!(total, want.num_rows() as i64);
    assert_eq!(s["options"]["target_file_size"], 12 << 10);
    assert_eq!(s["options"]["row_group_size"], 100);
    // The input in a subdirectory is named by its path, as in `files`.
    let named: Vec<&str> = records
        .iter()
        .flat_map(|r| r["inputs"].as_array().unwrap())
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert!(named.contains(&"sub/part-00002.parquet"), "{named:?}");

    // verify holds the output to summary.json: clean, then a part gone is an integrity failure.
    let verify = |out: &Path| run(&["verify", "--policy", p(&config(POLICY)), p(out)]);
    let (code, text, err) = verify(&one);
    assert_eq!(code, 0, "{text}{err}");
    std::fs::remove_file(one.join("data").join(&parts[1])).unwrap();
    let (code, text, err) = verify(&one);
    assert_eq!(code, 3, "{text}{err}");
    assert!(text.contains(&parts[1]), "{text}");
}

#[test]
fn a_row_group_size_alone_merges_each_inputs_small_row_groups_under_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let (plain, merged) = (dir.path().join("plain"), dir.path().join("merged"));
    filter(&input, &plain, &[]);
    filter(&input, &merged, &["--row-group-size", "1000"]);
    let names = files(&plain.join("data"));
    assert_eq!(files(&merged.join("data")), names);
    let mut merged_some = false;
    for name in &names {
        let (a, b) = (
            plain.join("data").join(name),
            merged.join("data").join(name),
        );
        let (ga, gb) = (row_group_rows(&a), row_group_rows(&b));
        assert_eq!(ga.iter().sum::<i64>(), gb.iter().sum::<i64>(), "{name}");
        assert!(gb.len() <= 2, "{name}: {gb:?}");
        merged_some |= gb.len() < ga.len();
        let (ra, rb) = (read_all(&a), read_all(&b));
        assert_eq!(post_ids(&ra), post_ids(&rb), "{name}");
    }
    assert!(merged_some, "the corpus has filtered row groups to merge");
    assert_eq!(
        tree(&merged.join("excluded")),
        tree(&plain.join("excluded"))
    );
    let (code, text, err) = run(&["verify", "--policy", p(&config(POLICY)), p(&merged)]);
    assert_eq!(code, 0, "{text}{err}");
}

#[test]
fn every_writers_files_laid_out_together_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    filter_all(
        &crate::writers::corpus_files(),
        &out,
        &["--target-file-size", "256KiB"],
    );
    keep_for_crosscheck(&out, "layout-writers");
    let s = summary(&out);
    let kept = s["totals"]["kept"].as_u64().unwrap();
    let parts = s["data_files"].as_array().unwrap();
    // Files of other schemas start their own parts.
    assert!(parts.len() > 1, "{parts:?}");
    let mut rows = 0;
    for part in parts {
        let path = out.join("data").join(part["path"].as_str().unwrap());
        rows += read_all(&path).num_rows() as u64;
    }
    assert_eq!(rows, kept);
    let (code, text, err) = run(&["verify", "--policy", p(&config(POLICY)), p(&out)]);
    assert_eq!(code, 0, "{text}{err}");
}

#[test]
fn a_layout_with_reuse_or_of_no_size_is_refused_and_a_laid_out_output_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    filter(&input, &out, &["--target-file-size", "1MiB"]);
    let again = dir.path().join("again");
    for (extra, says) in [
        (
            vec!["--target-file-size", "1MiB", "--reuse", p(&out)],
            "--target-file-size cannot be combined with --reuse",
        ),
        (vec!["--target-file-size", "0"], "'0' is not a usable size"),
    ] {
        let policy = config(POLICY);
        let mut args = vec!["filter", "--policy", p(&policy), "-o", p(&again)];
        args.extend(extra);
        args.push(p(&input));
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!again.exists());
    }
    // A plain run reusing the laid-out output processes everything, and says why.
    filter(&input, &again, &["--reuse", p(&out)]);
    let s = summary(&again);
    let why = s["reuse"]["fallback"].as_str().unwrap_or_default();
    assert!(why.contains("--target-file-size"), "{s}");
    assert_eq!(s["reuse"]["files_reused"], 0);
}
