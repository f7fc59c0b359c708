//! The consent snapshot join and user lists, against an independent evaluation.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_schema::{Field, Schema};
use proptest::prelude::*;

use crate::util::*;

/// How ids are stored, in the corpus or in the snapshot.
#[derive(Debug, Clone, Copy)]
enum IdType {
    I64,
    /// Int64, each id times 2^40: too sparse for the snapshot's slots, so its newest rows
    /// are found by sorting (dense ids take the slots).
    I64Sparse,
    I32,
    U64,
    I16,
    Utf8,
    Large,
    Dict,
    View,
    Bin,
    Fixed16,
}

fn id_bytes(id: i64) -> Vec<u8> {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&id.to_be_bytes());
    b[0] = 0xab;
    b.to_vec()
}

fn ids(t: IdType, v: &[Option<i64>]) -> ArrayRef {
    let s = |i: &i64| format!("member-{i}");
    match t {
        IdType::I64 => Arc::new(Int64Array::from(v.to_vec())),
        IdType::I64Sparse => Arc::new(Int64Array::from_iter(v.iter().map(|x| x.map(|i| i << 40)))),
        IdType::I32 => Arc::new(Int32Array::from_iter(v.iter().map(|x| x.map(|i| i as i32)))),
        IdType::U64 => Arc::new(UInt64Array::from_iter(
            v.iter().map(|x| x.map(|i| i as u64)),
        )),
        IdType::I16 => Arc::new(Int16Array::from_iter(v.iter().map(|x| x.map(|i| i as i16)))),
        IdType::Utf8 => Arc::new(StringArray::from_iter(v.iter().map(|x| x.as_ref().map(s)))),
        IdType::Large => Arc::new(LargeStringArray::from_iter(
            v.iter().map(|x| x.as_ref().map(s)),
        )),
        IdType::View => Arc::new(StringViewArray::from_iter(
            v.iter().map(|x| x.as_ref().map(s)),
        )),
        IdType::Dict => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for x in v {
                b.append_option(x.as_ref().map(s));
            }
            Arc::new(b.finish())
        }
        IdType::Bin => Arc::new(BinaryArray::from_iter(v.iter().map(|x| x.map(id_bytes)))),
        IdType::Fixed16 => {
            let mut b = FixedSizeBinaryBuilder::new(16);
            for x in v {
                match x {
                    Some(i) => b.append_value(id_bytes(*i)).unwrap(),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

fn write(path: &Path, batch: &RecordBatch) {
    write_batch(path, batch, None);
}

fn batch_of(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// One snapshot row: (member, country spelling index, consent, updated_at, objected_at).
type Snap = (
    Option<i64>,
    usize,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
);

/// (post_id, member, created_at, inline country spelling index, inline consent)
type CorpusRow = (i64, Option<i64>, i64, usize, Option<&'static str>);

struct Case {
    dir: tempfile::TempDir,
    corpus: Vec<CorpusRow>,
    snap: Vec<Snap>,
}

fn make_case(seed: u64, rows: usize, corpus_t: IdType, snap_t: IdType, unique_times: bool) -> Case {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let corpus: Vec<_> = (0..rows)
        .map(|i| {
            let m = (rng.below(25) != 0).then(|| 100 + rng.below(60) as i64);
            let c = rng.below(SPELLINGS.len());
            let consent = (rng.below(8) != 0).then(|| CONSENTS[rng.below(CONSENTS.len())]);
            (i as i64, m, 1_000 + rng.below(1_000) as i64, c, consent)
        })
        .collect();
    let mut snap: Vec<Snap> = Vec::new();
    let mut t = 0i64;
    for m in 100..150i64 {
        // Members 150..160 are missing from the snapshot.
        for _ in 0..1 + rng.below(3) {
            t += 1;
            let updated = if unique_times {
                if rng.below(10) == 0 {
                    None
                } else {
                    Some(t * 7 % 1000 + m * 1000)
                }
            } else {
                None
            };
            let consent = (rng.below(8) != 0).then(|| CONSENTS[rng.below(CONSENTS.len())]);
            let objected = (rng.below(4) == 0).then(|| 1_000 + rng.below(1_000) as i64);
            snap.push((
                Some(m),
                rng.below(SPELLINGS.len()),
                consent,
                updated,
                objected,
            ));
        }
    }
    snap.push((None, 0, Some("opt_in"), Some(5), None));
    // Make sure at most one null updated_at per key and no equal timestamps (a tie would be an error).
    if unique_times {
        let mut seen = std::collections::HashSet::new();
        for s in &mut snap {
            if s.3.is_none() && !seen.insert(s.0) {
                s.3 = Some(-(s.0.unwrap_or(0)) - 1_000_000 - rng.below(1000) as i64);
            }
        }
    }
    let c = Case { dir, corpus, snap };
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    write(
        &c.dir.path().join("in/corpus.parquet"),
        &batch_of(vec![
            (
                "post_id",
                Arc::new(Int64Array::from_iter_values(c.corpus.iter().map(|r| r.0))),
            ),
            (
                "member_id",
                ids(corpus_t, &c.corpus.iter().map(|r| r.1).collect::<Vec<_>>()),
            ),
            ("created_at", ts(c.corpus.iter().map(|r| r.2).collect())),
            (
                "country",
                Arc::new(StringArray::from_iter(
                    c.corpus.iter().map(|r| Some(SPELLINGS[r.3].0)),
                )),
            ),
            (
                "genai_consent",
                Arc::new(StringArray::from_iter(c.corpus.iter().map(|r| r.4))),
            ),
        ]),
    );
    // The snapshot's region and consent, which corpusgate reads as dictionaries: utf8 or
    // large_utf8, in dictionary-encoded or plain pages, by seed.
    let text = |v: Vec<Option<&str>>| -> ArrayRef {
        if seed.is_multiple_of(2) {
            Arc::new(LargeStringArray::from(v))
        } else {
            Arc::new(StringArray::from(v))
        }
    };
    let plain_pages = (seed / 2) % 2 == 1;
    write_batch(
        &c.dir.path().join("snap/part-0.parquet"),
        &batch_of(vec![
            (
                "key",
                ids(snap_t, &c.snap.iter().map(|r| r.0).collect::<Vec<_>>()),
            ),
            (
                "country",
                text(c.snap.iter().map(|r| Some(SPELLINGS[r.1].0)).collect()),
            ),
            ("consent", text(c.snap.iter().map(|r| r.2).collect())),
            (
                "updated_at",
                Arc::new(
                    TimestampMicrosecondArray::from(c.snap.iter().map(|r| r.3).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
            ),
            (
                "objected_at",
                Arc::new(
                    TimestampMicrosecondArray::from(c.snap.iter().map(|r| r.4).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
            ),
        ]),
        plain_pages.then(|| {
            parquet::file::properties::WriterProperties::builder()
                .set_dictionary_enabled(false)
                .build()
        }),
    );
    c
}

const POLICY: &str = "policy: join-test
columns: {record_id: post_id, user_id: member_id}
consent_table: {key: key, region: country, consent: consent, updated_at: updated_at, extra: [objected_at]}
consent_values: {granted: [opt_in, \"yes\"], denied: [opt_out, \"no\"]}
user_lists: [erasure]
rules:
  - id: erased
    if: {user_in: erasure}
    then: exclude
  - id: after-objection
    if: {where: [{column: created_at, ge: {column: objected_at}}]}
    then: exclude
  - id: paused
    if: {region: [GB, EEA, CH]}
    then: exclude
  - id: unknown-region
    if: {region: unknown}
    then: exclude
  - id: opted-out
    if: {consent: denied}
    then: exclude
  - id: allowed
    then: include
";

const ERASED: [i64; 3] = [101, 120, 155];

/// The snapshot row that speaks for member `m`: the newest, a null updated_at oldest.
fn newest(c: &Case, m: Option<i64>) -> Option<Snap> {
    let m = m?;
    c.snap
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 == Some(m))
        .max_by_key(|(i, s)| (s.3.is_some(), s.3, std::cmp::Reverse(*i)))
        .map(|(_, s)| *s)
}

/// The rule a reader of POLICY would apply, computed from the case's own rows.
fn expected(c: &Case) -> Vec<(&'static str, Option<&'static str>)> {
    c.corpus
        .iter()
        .map(|r| {
            let newest = newest(c, r.1);
            let region = newest.and_then(|s| SPELLINGS[s.1].1);
            let consent = newest.and_then(|s| s.2);
            let objected = newest.and_then(|s| s.4);
            let rule = if r.1.is_some_and(|m| ERASED.contains(&m)) {
                "erased"
            } else if objected.is_some_and(|o| r.2 >= o) {
                "after-objection"
            } else if region.is_some_and(|g| g == "GB" || g == "CH" || EEA.contains(&g)) {
                "paused"
            } else if region.is_none() {
                "unknown-region"
            } else if is_denied(consent) {
                "opted-out"
            } else {
                "allowed"
            };
            (rule, region)
        })
        .collect()
}

fn run_case(c: &Case, list_t: IdType) -> (i32, String) {
    let policy = c.dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let list = match list_t {
        IdType::Utf8 | IdType::Large | IdType::Dict | IdType::View => {
            let l = c.dir.path().join("erasure.txt");
            std::fs::write(
                &l,
                ERASED
                    .iter()
                    .map(|i| format!("  member-{i}\r\n"))
                    .collect::<String>(),
            )
            .unwrap();
            l
        }
        IdType::Bin | IdType::Fixed16 => {
            let l = c.dir.path().join("erasure.txt");
            let hex = |i: i64| {
                id_bytes(i)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            // Hyphens as UUIDs are written.
            let uuid = |h: String| {
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            };
            std::fs::write(
                &l,
                ERASED
                    .iter()
                    .map(|i| format!("{}\n", uuid(hex(*i))))
                    .collect::<String>(),
            )
            .unwrap();
            l
        }
        _ => {
            let l = c.dir.path().join("erasure.parquet");
            write(
                &l,
                &batch_of(vec![(
                    "id",
                    ids(
                        match list_t {
                            IdType::I64Sparse => IdType::I64Sparse,
                            _ => IdType::U64,
                        },
                        &ERASED.iter().map(|i| Some(*i)).collect::<Vec<_>>(),
                    ),
                )]),
            );
            l
        }
    };
    let out = c.dir.path().join("out");
    let _ = std::fs::remove_dir_all(&out);
    let list_arg = format!("erasure={}", list.display());
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&policy),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--user-list",
        &list_arg,
        "-o",
        p(&out),
        p(&c.dir.path().join("in")),
    ]);
    (code, err)
}

fn check(c: &Case) {
    let out = c.dir.path().join("out");
    let want = expected(c);
    let kept = post_ids(&read_all(&out.join("data/corpus.parquet")));
    let want_kept: Vec<i64> = c
        .corpus
        .iter()
        .zip(&want)
        .filter(|(_, w)| w.0 == "allowed")
        .map(|(r, _)| r.0)
        .collect();
    assert_eq!(kept, want_kept);
    let m = read_all(&out.join("excluded/corpus.parquet"));
    let want_ex: Vec<_> = c
        .corpus
        .iter()
        .zip(&want)
        .filter(|(_, w)| w.0 != "allowed")
        .collect();
    assert_eq!(
        i64s(&m, "record_id"),
        want_ex.iter().map(|(r, _)| Some(r.0)).collect::<Vec<_>>()
    );
    assert_eq!(
        strings(&m, "rule"),
        want_ex
            .iter()
            .map(|(_, w)| Some(w.0.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        strings(&m, "region"),
        want_ex
            .iter()
            .map(|(_, w)| w.1.map(str::to_string))
            .collect::<Vec<_>>()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let unmatched = c
        .corpus
        .iter()
        .filter(|r| r.1.is_none_or(|m| m >= 150))
        .count();
    assert_eq!(summary["consent_table"]["unmatched_rows"], unmatched);
    assert_eq!(summary["files"][0]["unmatched_rows"], unmatched);
    assert_eq!(summary["consent_table"]["distinct_keys"], 50);
    assert_eq!(summary["consent_table"]["rows"], c.snap.len());
    assert_eq!(summary["user_lists"]["erasure"]["distinct"], 3);
}

#[test]
fn join_matches_an_independent_evaluation_for_every_key_type() {
    for (i, (corpus_t, snap_t)) in [
        (IdType::I64, IdType::I64),
        (IdType::I64Sparse, IdType::I64Sparse),
        (IdType::I64, IdType::I32),
        (IdType::I32, IdType::U64),
        (IdType::I16, IdType::I64),
        (IdType::Utf8, IdType::Large),
        (IdType::Dict, IdType::View),
        (IdType::View, IdType::Utf8),
        (IdType::Fixed16, IdType::Bin),
        (IdType::Bin, IdType::Fixed16),
    ]
    .into_iter()
    .enumerate()
    {
        let c = make_case(i as u64 + 1, 600, corpus_t, snap_t, true);
        let (code, err) = run_case(&c, corpus_t);
        assert_eq!(code, 0, "{corpus_t:?}/{snap_t:?}: {err}");
        check(&c);
    }
}

#[test]
fn join_errors() {
    // Kinds differ: integer ids against string keys.
    let c = make_case(1, 50, IdType::I64, IdType::Utf8, true);
    let (code, err) = run_case(&c, IdType::Utf8);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("holds integer ids, but the consent snapshot and user lists hold string keys"),
        "{err}"
    );

    // Conflicting duplicates without updated_at: an error naming the key, never a pick.
    let c = make_case(2, 50, IdType::I64, IdType::I64, false);
    let policy = POLICY.replace(", updated_at: updated_at", "");
    std::fs::write(c.dir.path().join("p2.yaml"), &policy).unwrap();
    std::fs::write(c.dir.path().join("e.txt"), "101\n").unwrap();
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&c.dir.path().join("p2.yaml")),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--user-list",
        &format!("erasure={}", p(&c.dir.path().join("e.txt"))),
        "-o",
        p(&c.dir.path().join("o")),
        p(&c.dir.path().join("in")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("column 'key': key 1") && err.contains("appears in rows with different values and the policy maps no consent_table.updated_at"), "{err}");
    assert!(!c.dir.path().join("o").exists());

    // Equal newest timestamps with different values are an error too.
    let (code, err) = run_case(&c, IdType::I64);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key 100 appears in rows with different values and their newest updated_at values are equal"), "{err}");

    // Flags and policy disagree.
    let c = make_case(3, 50, IdType::I64, IdType::I64, true);
    std::fs::write(c.dir.path().join("e.txt"), "101\n").unwrap();
    let pol = c.dir.path().join("p.yaml");
    std::fs::write(&pol, POLICY).unwrap();
    let input = c.dir.path().join("in");
    let list = format!("erasure={}", p(&c.dir.path().join("e.txt")));
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&pol),
        "--user-list",
        &list,
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --consent-table SNAPSHOT"), "{err}");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&pol),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --user-list erasure=PATH"), "{err}");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&pol),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--user-list",
        &list,
        "--user-list",
        "extra=x.txt",
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--user-list extra: the policy declares no user list 'extra'"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the policy has no consent_table section"),
        "{err}"
    );

    // A bad line in a text list names the file and line.
    std::fs::write(c.dir.path().join("bad.txt"), "# ids\n101\nabc\n").unwrap();
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&pol),
        "--consent-table",
        p(&c.dir.path().join("snap")),
        "--user-list",
        &format!("erasure={}", p(&c.dir.path().join("bad.txt"))),
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.txt:3: 'abc' is not a decimal integer"),
        "{err}"
    );

    // A snapshot column the policy maps is missing.
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&pol),
        "--consent-table",
        p(&input),
        "--user-list",
        &list,
        "--dry-run",
        p(&input),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("column 'key': missing from the consent snapshot"),
        "{err}"
    );
}

#[test]
fn sample_data_join_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    sample_join_run(&root().join("sample-data/corpus"), &out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["totals"]["rows"], 6000);
    assert_eq!(summary["consent_table"]["distinct_keys"], 1500);
    assert!(
        summary["consent_table"]["rows"].as_u64().unwrap() > 1500,
        "the sample snapshot has history rows"
    );
    for rule in [
        "erasure-requested",
        "written-after-objection",
        "region-paused",
        "unknown-region",
        "opted-out",
        "allowed",
    ] {
        assert!(
            summary["by_rule"][rule]["rows"].as_u64().unwrap() > 0,
            "{rule} decided no row"
        );
    }
}

/// A user-id column read as a dictionary whose rows are all null may hold no values at all
/// (pyarrow writes such a column for a file without member ids): its rows join no member, so
/// they are decided as rows without a snapshot row. Before, arrow's `normalized_keys` asserted
/// on the empty dictionary and the run failed, exit 1, "internal error while decoding".
#[test]
fn a_dictionary_user_id_column_of_no_values_joins_no_member() {
    let dir = tempfile::tempdir().unwrap();
    let part = read_all(&root().join("sample-data/corpus/part-00000.parquet"));
    let rows = part.num_rows();
    let no_ids: ArrayRef = Arc::new(
        DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![None::<i32>; rows]),
            Arc::new(Int64Array::from(Vec::<i64>::new())),
        )
        .unwrap(),
    );
    let schema = part.schema();
    let at = schema.index_of("member_id").unwrap();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new("member_id", no_ids.data_type().clone(), true);
    let mut columns = part.columns().to_vec();
    columns[at] = no_ids;
    let corpus = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let input = dir.path().join("in/part.parquet");
    write(&input, &corpus);
    let out = dir.path().join("out");
    sample_join_run(input.parent().unwrap(), &out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["totals"]["rows"], rows as u64);
    assert_eq!(
        summary["totals"]["kept"], 0,
        "no member, no consent: nothing kept"
    );
    assert_eq!(summary["by_rule"]["unknown-region"]["rows"], rows as u64);
    assert_eq!(
        read_all(&out.join("excluded/part.parquet")).num_rows(),
        rows
    );
}

/// The manifest's user ids take a dictionary only when the input's user ids had one (and
/// repeat), as the data file's do: a snapshot's million members overflow a dictionary, whose
/// fallback is larger than plain pages alone.
#[test]
fn manifest_user_ids_are_dictionary_encoded_as_the_inputs_were() {
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let sample = root().join("sample-data");
    // Six times the sample's rows: its 1,500 members repeat, so their ids are worth a
    // dictionary (ids about as many as the rows are not, whatever the input did).
    let part = read_all(&sample.join("corpus/part-00000.parquet"));
    let corpus =
        arrow_select::concat::concat_batches(&part.schema(), &vec![part.clone(); 6]).unwrap();
    for dictionary in [true, false] {
        let input = dir.path().join(format!("in-{dictionary}/part.parquet"));
        let props = WriterProperties::builder()
            .set_dictionary_enabled(dictionary)
            .build();
        write_batch(&input, &corpus, Some(props));
        let out = dir.path().join(format!("out-{dictionary}"));
        sample_join_run(input.parent().unwrap(), &out);
        let has_dictionary = |path: &Path, column: &str| {
            let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
            let rg = r.metadata().row_group(0);
            let c = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == column)
                .unwrap();
            c.dictionary_page_offset().is_some()
        };
        assert_eq!(has_dictionary(&input, "member_id"), dictionary);
        assert_eq!(
            has_dictionary(&out.join("excluded/part.parquet"), "user_id"),
            dictionary,
            "input dictionary-encoded: {dictionary}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]
    /// The join decides exactly as the inline policy does when the snapshot's values are put
    /// into the corpus columns.
    #[test]
    fn join_equals_inline(seed in any::<u64>(), rows in 1usize..400) {
        let c = make_case(seed, rows, IdType::I64, IdType::I64, true);
        let (code, err) = run_case(&c, IdType::I64);
        prop_assert_eq!(code, 0, "{}", err);
        // The same decision, inline: resolve each row's snapshot values into the corpus.
        let want = expected(&c);
        let dir = c.dir.path();
        let newest = |m: Option<i64>| newest(&c, m);
        let inline = batch_of(vec![
            ("post_id", Arc::new(Int64Array::from_iter_values(c.corpus.iter().map(|r| r.0))) as ArrayRef),
            ("member_id", Arc::new(Int64Array::from(c.corpus.iter().map(|r| r.1).collect::<Vec<_>>()))),
            ("created_at", Arc::new(TimestampMicrosecondArray::from_iter_values(c.corpus.iter().map(|r| r.2)).with_timezone("UTC"))),
            ("country", Arc::new(StringArray::from_iter(c.corpus.iter().map(|r| newest(r.1).map(|s| SPELLINGS[s.1].0))))),
            ("consent", Arc::new(StringArray::from_iter(c.corpus.iter().map(|r| newest(r.1).and_then(|s| s.2))))),
            ("objected_at", Arc::new(TimestampMicrosecondArray::from(c.corpus.iter().map(|r| newest(r.1).and_then(|s| s.4)).collect::<Vec<_>>()).with_timezone("UTC"))),
            ("erased", Arc::new(BooleanArray::from(c.corpus.iter().map(|r| r.1.is_some_and(|m| ERASED.contains(&m))).collect::<Vec<_>>()))),
        ]);
        write(&dir.join("inline/corpus.parquet"), &inline);
        // The same rules, reading the corpus columns instead of the snapshot and the list.
        let rules = &POLICY[POLICY.find("rules:").unwrap()..];
        let inline_policy = format!(
            "policy: inline\ncolumns: {{record_id: post_id, user_id: member_id, region: country, consent: consent}}\n\
             consent_values: {{granted: [opt_in, \"yes\"], denied: [opt_out, \"no\"]}}\n{}",
            rules.replace("{user_in: erasure}", "{where: [{column: erased, eq: true}]}")
        );
        prop_assert!(!inline_policy.contains("user_in"));
        std::fs::write(dir.join("inline.yaml"), inline_policy).unwrap();
        let (code, _, err) = run(&["filter", "--policy", p(&dir.join("inline.yaml")), "-o", p(&dir.join("inline-out")), p(&dir.join("inline"))]);
        prop_assert_eq!(code, 0, "{}", err);
        let a = read_all(&dir.join("out/excluded/corpus.parquet"));
        let b = read_all(&dir.join("inline-out/excluded/corpus.parquet"));
        prop_assert_eq!(strings(&a, "rule"), strings(&b, "rule"));
        prop_assert_eq!(strings(&a, "region"), strings(&b, "region"));
        prop_assert_eq!(i64s(&a, "row"), i64s(&b, "row"));
        prop_assert_eq!(post_ids(&read_all(&dir.join("out/data/corpus.parquet"))), post_ids(&read_all(&dir.join("inline-out/data/corpus.parquet"))));
        prop_assert_eq!(a.num_rows(), want.iter().filter(|w| w.0 != "allowed").count());
    }
}
