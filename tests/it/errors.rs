//! Bad input: each case exits with its code and one clear message, and leaves OUT_DIR as it was.

use parquet::basic::Compression;

use crate::util::*;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let recs = random_records(1, 400, 1);
        write_parquet(
            &dir.path().join("in/a.parquet"),
            &recs,
            CountryType::Utf8,
            100,
            Compression::SNAPPY,
        );
        write_parquet(
            &dir.path().join("in/b.parquet"),
            &recs,
            CountryType::Dict,
            100,
            Compression::ZSTD(Default::default()),
        );
        Case { dir }
    }
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
    /// Run filter with the example policy into `out`; assert the code, that stderr is one line
    /// with no panic or backtrace, and that `out` is unchanged.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.path("out");
        let before = tree(&out);
        let mut all = vec!["filter", "--policy"];
        let policy = config("genai-uk-eea-ch-pause.yaml");
        if !args.contains(&"--policy") {
            all.push(p(&policy));
        } else {
            all.pop();
        }
        all.extend_from_slice(&["--output", p(&out)]);
        all.extend_from_slice(args);
        let (got, _, err) = run(&all);
        assert_eq!(got, code, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        assert!(err.starts_with("corpusgate: error: "), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
        assert_eq!(tree(&out), before, "OUT_DIR changed");
        let leftovers: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("corpusgate"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary directories left: {leftovers:?}"
        );
        err
    }
}

#[test]
fn truncated_file() {
    let c = Case::new();
    let bytes = std::fs::read(c.path("in/a.parquet")).unwrap();
    std::fs::write(c.path("in/a.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let err = c.fails(&[p(&c.path("in"))], 1);
    assert!(
        err.contains("in/a.parquet") && err.contains("not a Parquet file"),
        "{err}"
    );
}

#[test]
fn random_bytes_file() {
    let c = Case::new();
    let mut rng = Rng(99);
    let junk: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
    std::fs::write(c.path("in/c.parquet"), junk).unwrap();
    let err = c.fails(&[p(&c.path("in"))], 1);
    assert!(err.contains("in/c.parquet"), "{err}");
}

#[test]
fn corrupt_page_data_fails_cleanly_and_keeps_the_previous_output() {
    let c = Case::new();
    // A previous complete output that a failed --overwrite run must leave alone.
    std::fs::create_dir_all(c.path("out")).unwrap();
    std::fs::write(c.path("out/_SUCCESS"), b"").unwrap();
    let mut bytes = std::fs::read(c.path("in/b.parquet")).unwrap();
    let n = bytes.len();
    // Damage the middle of the column data, keeping the footer intact.
    for b in &mut bytes[n / 3..n / 3 + 400] {
        *b ^= 0x5A;
    }
    std::fs::write(c.path("in/b.parquet"), bytes).unwrap();
    let out = c.path("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("genai-uk-eea-ch-pause.yaml")),
        "--overwrite",
        "-o",
        p(&out),
        p(&c.path("in")),
    ]);
    assert!(code == 1, "{code}: {err}");
    assert!(err.contains("in/b.parquet (row group"), "{err}");
    assert_eq!(tree(&out), vec![("_SUCCESS".to_string(), vec![])]);
}

#[test]
fn missing_column() {
    let c = Case::new();
    let err = c.fails(
        &[
            "--policy",
            p(&write_policy(
                &c,
                "policy: p\ncolumns: {region: nation}\nrules: []\n",
            )),
            p(&c.path("in")),
        ],
        2,
    );
    assert!(
        err.contains(
            "in/a.parquet: column 'nation': missing; the policy maps it as columns.region"
        ),
        "{err}"
    );
}

fn write_policy(c: &Case, text: &str) -> std::path::PathBuf {
    let path = c.path("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn wrong_column_type() {
    let c = Case::new();
    let err = c.fails(
        &[
            "--policy",
            p(&write_policy(
                &c,
                "policy: p\ncolumns: {region: author_age}\nrules: []\n",
            )),
            p(&c.path("in")),
        ],
        2,
    );
    assert!(
        err.contains("column 'author_age': has type Int32; a region column must hold strings"),
        "{err}"
    );
    let err = c.fails(&["--policy", p(&write_policy(&c, "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    if: {where: [{column: visibility, gt: 3}]}\n    then: include\n")), p(&c.path("in"))], 2);
    assert!(err.contains("column 'visibility': cannot compare integer 3 with a column of type Utf8 (policy line 5"), "{err}");
}

#[test]
fn unknown_policy_key() {
    let c = Case::new();
    let err = c.fails(
        &[
            "--policy",
            p(&write_policy(
                &c,
                "policy: p\ncolumns: {region: country}\ndefualt: include\nrules: []\n",
            )),
            p(&c.path("in")),
        ],
        2,
    );
    assert!(
        err.contains("policy.yaml:3:1: unknown field `defualt`"),
        "{err}"
    );
}

#[test]
fn empty_and_missing_inputs() {
    let c = Case::new();
    std::fs::create_dir_all(c.path("empty/_temporary")).unwrap();
    let err = c.fails(&[p(&c.path("empty"))], 2);
    assert!(err.contains("no input files"), "{err}");
    let err = c.fails(&[p(&c.path("nope"))], 2);
    assert!(err.contains("nope: no such file or directory"), "{err}");
    let err = c.fails(&[p(&c.path("in/a.parquet")), p(&c.path("in"))], 2);
    assert!(err.contains("is reached twice"), "{err}");
    std::fs::create_dir_all(c.path("other")).unwrap();
    std::fs::copy(c.path("in/a.parquet"), c.path("other/a.parquet")).unwrap();
    let err = c.fails(&[p(&c.path("in")), p(&c.path("other"))], 2);
    assert!(
        err.contains("would both be written as data/a.parquet"),
        "{err}"
    );
}

#[test]
fn existing_output_is_left_untouched() {
    let c = Case::new();
    std::fs::create_dir_all(c.path("out/data")).unwrap();
    std::fs::write(c.path("out/data/keep.txt"), b"precious").unwrap();
    let err = c.fails(&[p(&c.path("in"))], 2);
    assert!(
        err.contains("exists and is not empty; pass --overwrite"),
        "{err}"
    );
}

#[test]
fn usage_errors() {
    let c = Case::new();
    let err = c.fails(&["--compression", "zip", p(&c.path("in"))], 2);
    assert!(err.contains("--compression zip"), "{err}");
    let err = c.fails(
        &["--policy", p(&c.path("missing.yaml")), p(&c.path("in"))],
        2,
    );
    assert!(err.contains("cannot read policy"), "{err}");
    let (code, _, err) = run(&["filter", "--policy", "x.yaml"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(&["--help"]);
    assert_eq!(code, 0);
    let (code, _, err) = run(&["check", p(&write_policy(&c, "policy: p\ncolumns: {region: country}\nrules: [{id: a, if: {region: Narnia}, then: exclude}]\n"))]);
    assert_eq!(code, 2);
    assert!(err.contains("policy.yaml:3:"), "{err}");
}

/// Every command-line mistake reads like every other error: one `corpusgate: error:` line, and
/// at most one hint line (clap's suggestion), exit 2.
#[test]
fn command_line_errors_speak_with_one_voice() {
    let cases: &[(&[&str], &str, Option<&str>)] = &[
        (&["filer"], "unrecognized subcommand 'filer'", Some("tip: a similar subcommand exists: 'filter'")),
        (&["filter", "--threads", "0", "--policy", "p", "x"], "invalid value '0' for '--threads <N>': 0 is not in 1..=1024", None),
        (&["filter", "--polcy", "p", "x"], "unexpected argument '--polcy' found", Some("tip: a similar argument exists: '--policy'")),
        (&["explain", "--policy", "p.yaml"], "the following required arguments were not provided: <--row <FILE:ROW>|--values <MAPPING>>", None),
        (&[], "a command is needed (filter, check, verify, explain, report, diff, plan, run-shard or commit)", Some("tip: corpusgate --help")),
    ];
    for (args, says, hint) in cases {
        let (code, stdout, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], format!("corpusgate: error: {says}"), "{args:?}");
        match hint {
            Some(h) => assert_eq!(lines.get(1).map(|l| l.trim()), Some(*h), "{args:?}"),
            None => assert_eq!(lines.len(), 1, "{args:?}: {err}"),
        }
        assert!(lines.len() <= 2, "{args:?}: {err}");
    }
    let c = Case::new();
    let err = c.fails(&["--compression", "zstd:99", p(&c.path("in"))], 2);
    assert!(
        err.contains("--compression zstd:99: zstd takes a level from 1 (fastest) to 22"),
        "{err}"
    );
    assert!(!err.contains("Parquet error"), "{err}");
}

/// Mistakes that are cheap to name: a policy key one letter off, a run's output given as its
/// input, a CSV, a directory given as `--row`, a value of the wrong type in `--values`.
#[test]
fn helpful_where_it_is_cheap() {
    let c = Case::new();
    let typo = write_policy(
        &c,
        "policy: p\ncolumns: {region: country, consent: genai_consent}\nconsent_value: {granted: [opt_in]}\nrules: []\n",
    );
    let (code, _, err) = run(&["check", p(&typo)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `consent_value`"), "{err}");
    assert!(
        err.trim_end().ends_with("(did you mean `consent_values`?)"),
        "{err}"
    );

    let policy = config("opt-in-only.yaml");
    let out = c.path("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&policy),
        "-o",
        p(&out),
        p(&c.path("in")),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["filter", "--policy", p(&policy), "--dry-run", p(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the output of a corpusgate run"), "{err}");
    assert!(
        err.contains(&format!("pass its data/ ({})", p(&out.join("data")))),
        "{err}"
    );

    let csv = c.path("posts.csv");
    std::fs::write(&csv, "post_id,country\n1,GB\n").unwrap();
    let (code, _, err) = run(&["filter", "--policy", p(&policy), "--dry-run", p(&csv)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("posts.csv is not a Parquet file") && err.contains("a CSV"),
        "{err}"
    );

    let (code, _, err) = run(&[
        "explain",
        "--policy",
        p(&policy),
        "--row",
        &format!("{}:3", p(&c.path("in"))),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a directory, not a file"), "{err}");

    let (code, _, err) = run(&[
        "explain",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        "--values",
        "{country: gb, author_age: \"30\"}",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the value given for author_age is a string (\"30\"), but the policy compares author_age with an integer (18, line 30); give it without quotes: author_age: 30"),
        "{err}"
    );
}

/// Found by the parquet_read fuzz target: a footer claiming a negative column chunk length made
/// the parquet crate panic while the footer was being checked.
#[test]
fn fuzz_regression_negative_chunk_length() {
    let c = Case::new();
    let policy = write_policy(
        &c,
        "policy: fuzz\ncolumns: {record_id: post_id, region: country, consent: genai_consent}\n\
         consent_values: {granted: [opt_in], denied: [opt_out]}\n\
         rules:\n  - id: adult\n    if: {where: [{column: author_age, ge: 18}]}\n    then: include\n",
    );
    std::fs::create_dir_all(c.path("fz")).unwrap();
    std::fs::copy(
        root().join("tests/data/fuzz-negative-chunk-length.parquet"),
        c.path("fz/x.parquet"),
    )
    .unwrap();
    let err = c.fails(&["--policy", p(&policy), p(&c.path("fz"))], 1);
    assert!(
        err.contains("corrupt footer: column 'visibility' of row group 0 claims offset"),
        "{err}"
    );
}
