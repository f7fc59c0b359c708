use std::path::{Path, PathBuf};

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int8Type;
use arrow_schema::{Field, Schema};
use chrono::NaiveDate;

use super::*;

fn policy_file(name: &str) -> Policy {
    Policy::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .unwrap()
}

fn policy(text: &str) -> Policy {
    Policy::from_text(Path::new("p.yaml"), text, "0".repeat(64)).unwrap()
}

/// The rule names chosen for each row of `batch`.
fn decide(p: &Policy, batch: &RecordBatch) -> Vec<String> {
    // The ids are only copied into the manifest; these batches carry just what decides.
    let mut p = p.clone();
    p.columns.record_id = None;
    p.columns.user_id = None;
    let p = &p;
    let d = FileDecider::new(
        p,
        &batch.schema(),
        &crate::io::Location::local("f.parquet"),
        None,
    )
    .unwrap();
    let out = d.decide(batch).unwrap();
    out.rule
        .iter()
        .map(|r| p.rule_name(*r).to_owned())
        .collect()
}

/// (country, consent, author_age, visibility)
type SocialRow<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<i32>,
    Option<&'a str>,
);

fn social_batch(rows: &[SocialRow]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("country", DataType::Utf8, true),
        Field::new("genai_consent", DataType::Utf8, true),
        Field::new("author_age", DataType::Int32, true),
        Field::new("visibility", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap()
}

#[test]
fn issue_example_decides_as_written() {
    let p = policy_file("genai-uk-eea-ch-pause.yaml");
    let cases = [
        ((Some("gb"), Some("opt_in")), "region-paused"),
        ((Some("UK"), None), "region-paused"),
        ((Some("CHE"), Some("opt_in")), "region-paused"),
        ((Some("NO"), Some("opt_in")), "region-paused"),
        ((Some("RE"), Some("opt_in")), "region-paused"),
        ((Some("de"), Some("opt_in")), "region-paused"),
        ((Some("EU"), Some("opt_in")), "unknown-region"),
        ((None, Some("opt_in")), "unknown-region"),
        ((Some(""), Some("opt_in")), "unknown-region"),
        ((Some("US"), Some(" OPT_OUT ")), "opted-out"),
        ((Some("US"), Some("No")), "opted-out"),
        ((Some("usa"), Some("opt_in")), "allowed"),
        ((Some("US"), None), "allowed"),
        ((Some("JP"), Some("pending")), "allowed"),
        ((Some("TR"), Some("yes")), "allowed"),
    ];
    let rows: Vec<_> = cases
        .iter()
        .map(|((c, s), _)| (*c, *s, None, None))
        .collect();
    let got = decide(&p, &social_batch(&rows));
    let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
}

#[test]
fn meta_uk_decides_as_written() {
    let p = policy_file("meta-uk-2024.yaml");
    let cases = [
        (
            (Some("GB"), Some("opt_in"), Some(30), Some("public")),
            "uk-adult-public",
        ),
        (
            (Some("GB"), None, Some(18), Some("public")),
            "uk-adult-public",
        ),
        (
            (Some("GB"), Some("opt_in"), Some(17), Some("public")),
            "uk-minor-or-unknown-age",
        ),
        (
            (Some("GB"), Some("opt_in"), None, Some("public")),
            "uk-minor-or-unknown-age",
        ),
        (
            (Some("GB"), Some("opt_in"), Some(40), Some("connections")),
            "uk-not-public",
        ),
        (
            (Some("GB"), Some("opt_in"), Some(40), None),
            "uk-not-public",
        ),
        (
            (Some("GB"), Some("opt_out"), Some(40), Some("public")),
            "uk-objected",
        ),
        (
            (Some("FR"), Some("opt_in"), Some(40), Some("public")),
            "eu-eea-paused",
        ),
        (
            (Some("IS"), Some("opt_in"), Some(40), Some("public")),
            "eu-eea-paused",
        ),
        (
            (Some("CH"), Some("opt_in"), Some(40), Some("public")),
            "allowed",
        ),
        (
            (Some("US"), Some("no"), Some(40), Some("public")),
            "opted-out",
        ),
        ((Some("US"), None, Some(12), Some("private")), "allowed"),
        (
            (Some("nowhere"), Some("opt_in"), Some(40), Some("public")),
            "unknown-region",
        ),
    ];
    let rows: Vec<_> = cases.iter().map(|(r, _)| *r).collect();
    let got = decide(&p, &social_batch(&rows));
    let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
}

#[test]
fn opt_in_only_keeps_only_granted() {
    let p = policy_file("opt-in-only.yaml");
    let rows = [
        (Some("US"), Some("opt_in"), None, None),
        (Some("GB"), Some("YES"), None, None),
        (Some("US"), Some("opt_out"), None, None),
        (Some("US"), None, None, None),
        (None, Some("opt_in"), None, None),
        (Some("US"), Some("maybe"), None, None),
    ];
    let got = decide(&p, &social_batch(&rows));
    assert_eq!(
        got,
        [
            "consent-granted",
            "consent-granted",
            "default",
            "default",
            "consent-granted",
            "default"
        ]
    );
    for (r, want) in got.iter().zip([true, true, false, false, true, false]) {
        let id = p
            .rules
            .iter()
            .position(|x| &x.id == r)
            .map(|i| RuleId(i as u16));
        assert_eq!(
            p.action_of(id.unwrap_or(RuleId::DEFAULT)) == crate::policy::Action::Include,
            want
        );
    }
}

#[test]
fn dictionary_and_view_columns_decide_like_plain_strings() {
    let p = policy_file("genai-uk-eea-ch-pause.yaml");
    let values = [
        Some("gb"),
        Some("US"),
        None,
        Some("us"),
        Some("FRA"),
        Some("junk"),
        Some("US"),
    ];
    let consent = [
        Some("opt_in"),
        Some("opt_out"),
        Some("opt_in"),
        None,
        Some("yes"),
        Some("yes"),
        Some("no"),
    ];
    let plain = decide(
        &p,
        &social_batch(
            &values
                .iter()
                .zip(consent)
                .map(|(c, s)| (*c, s, None, None))
                .collect::<Vec<_>>(),
        ),
    );
    let mut b = StringDictionaryBuilder::<Int8Type>::new();
    for v in values {
        b.append_option(v);
    }
    let dict: ArrayRef = Arc::new(b.finish());
    let view: ArrayRef = Arc::new(StringViewArray::from(values.to_vec()));
    let large: ArrayRef = Arc::new(LargeStringArray::from(values.to_vec()));
    for country in [dict, view, large] {
        let schema = Arc::new(Schema::new(vec![
            Field::new("country", country.data_type().clone(), true),
            Field::new("genai_consent", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                country.clone(),
                Arc::new(StringArray::from(consent.to_vec())),
            ],
        )
        .unwrap();
        assert_eq!(decide(&p, &batch), plain, "{}", country.data_type());
    }
}

#[test]
fn boolean_and_integer_consent_columns() {
    let p = policy(
        "policy: p\ncolumns: {region: country, consent: c}\n\
         consent_values: {granted: [true, 1, opt_in], denied: [false, 0]}\n\
         rules:\n  - id: ok\n    if: {consent: granted}\n    then: include\n  - id: no\n    if: {consent: denied}\n    then: exclude\n",
    );
    let country: ArrayRef = Arc::new(StringArray::from(vec!["US"; 4]));
    let bools: ArrayRef = Arc::new(BooleanArray::from(vec![
        Some(true),
        Some(false),
        None,
        Some(true),
    ]));
    let ints: ArrayRef = Arc::new(UInt8Array::from(vec![Some(1), Some(0), None, Some(7)]));
    for (c, want) in [
        (bools, ["ok", "no", "default", "ok"]),
        (ints, ["ok", "no", "default", "default"]),
    ] {
        let schema = Arc::new(Schema::new(vec![
            Field::new("country", DataType::Utf8, true),
            Field::new("c", c.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema, vec![country.clone(), c]).unwrap();
        assert_eq!(decide(&p, &batch), want);
    }
}

fn schema_error(p: &Policy, fields: Vec<Field>) -> String {
    let schema = Schema::new(fields);
    match FileDecider::new(p, &schema, &crate::io::Location::local("f.parquet"), None) {
        Ok(_) => panic!("schema unexpectedly fits"),
        Err(e) => {
            assert_eq!(e.exit_status().code(), 2);
            e.to_string()
        }
    }
}

#[test]
fn files_that_do_not_fit_the_policy() {
    let p = policy_file("meta-uk-2024.yaml");
    let base = || {
        vec![
            Field::new("post_id", DataType::Int64, false),
            Field::new("member_id", DataType::Int64, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("genai_consent", DataType::Utf8, true),
            Field::new("author_age", DataType::Int32, true),
            Field::new("visibility", DataType::Utf8, true),
        ]
    };
    let mut missing = base();
    missing.remove(2);
    assert_eq!(
        schema_error(&p, missing),
        "f.parquet: column 'country': missing; the policy maps it as columns.region (columns present: post_id, member_id, genai_consent, author_age, visibility)"
    );
    let mut wrong = base();
    wrong[2] = Field::new("country", DataType::Int32, true);
    assert_eq!(
        schema_error(&p, wrong),
        "f.parquet: column 'country': has type Int32; a region column must hold strings"
    );
    let mut consent = base();
    consent[3] = Field::new("genai_consent", DataType::Boolean, true);
    let e = schema_error(&p, consent);
    assert!(e.starts_with(
        "f.parquet: column 'genai_consent': has type Boolean, but no value under consent_values (policy line 17) has that type"
    ), "{e}");
    let mut age = base();
    age[4] = Field::new("author_age", DataType::Utf8, true);
    assert_eq!(
        schema_error(&p, age),
        "f.parquet: column 'author_age': cannot compare integer 18 with a column of type Utf8 (policy line 30, column 49)"
    );
    let mut no_age = base();
    no_age.remove(4);
    assert_eq!(
        schema_error(&p, no_age),
        "f.parquet: column 'author_age': missing; the policy's where predicate on line 30 reads it"
    );
    let mut small = base();
    small[4] = Field::new("author_age", DataType::Int8, true);
    assert!(FileDecider::new(
        &p,
        &Schema::new(small),
        &crate::io::Location::local("f"),
        None
    )
    .is_ok());
    let tiny = policy(
        "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    if: {where: [{column: n, ge: 300}]}\n    then: include\n",
    );
    assert_eq!(
        schema_error(&tiny, vec![Field::new("country", DataType::Utf8, true), Field::new("n", DataType::UInt8, true)]),
        "f.parquet: column 'n': value 300 is out of range for a column of type UInt8 (policy line 5, column 34)"
    );
}

fn where_rule(pred: &str) -> Policy {
    policy(&format!(
        "policy: p\ncolumns: {{region: country}}\nrules:\n  - id: hit\n    if: {{where: [{pred}]}}\n    then: include\n"
    ))
}

fn hits(p: &Policy, col: ArrayRef) -> Vec<bool> {
    let n = col.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("country", DataType::Utf8, true),
        Field::new("x", col.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec!["US"; n])), col],
    )
    .unwrap();
    decide(p, &batch).iter().map(|r| r == "hit").collect()
}

#[test]
fn where_is_two_valued_and_nulls_fail() {
    let col: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
    for (pred, want) in [
        ("{column: x, eq: 1}", [true, false, false]),
        ("{column: x, ne: 1}", [false, false, true]),
        ("{column: x, lt: 3}", [true, false, false]),
        ("{column: x, le: 3}", [true, false, true]),
        ("{column: x, gt: 1}", [false, false, true]),
        ("{column: x, ge: 1}", [true, false, true]),
        ("{column: x, in: [1, 2]}", [true, false, false]),
        ("{column: x, not_in: [1, 2]}", [false, false, true]),
        ("{column: x, is_null: true}", [false, true, false]),
        ("{column: x, is_null: false}", [true, false, true]),
    ] {
        assert_eq!(hits(&where_rule(pred), col.clone()), want, "{pred}");
    }
    // Strings compare exactly: case-sensitive, not trimmed.
    let s: ArrayRef = Arc::new(StringArray::from(vec![
        Some("public"),
        Some("Public"),
        Some(" public"),
        None,
    ]));
    assert_eq!(
        hits(&where_rule("{column: x, eq: public}"), s.clone()),
        [true, false, false, false]
    );
    assert_eq!(
        hits(&where_rule("{column: x, ne: public}"), s),
        [false, true, true, false]
    );
}

#[test]
fn unless_excludes_rows_whose_value_is_unknown() {
    let p = policy(
        "policy: p\ncolumns: {region: country}\ndefault: include\nrules:\n  - id: uk-minor\n    if: {region: [GB]}\n    unless: {where: [{column: x, ge: 18}]}\n    then: exclude\n",
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("country", DataType::Utf8, true),
        Field::new("x", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["GB", "GB", "GB", "US"])),
            Arc::new(Int32Array::from(vec![Some(30), Some(16), None, None])),
        ],
    )
    .unwrap();
    assert_eq!(
        decide(&p, &batch),
        ["default", "uk-minor", "uk-minor", "default"]
    );
}

#[test]
fn dates_and_timestamps() {
    let day = |s: &str| {
        (NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
            - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as i32
    };
    let dates: ArrayRef = Arc::new(Date32Array::from(vec![
        day("2024-06-25"),
        day("2024-06-26"),
        day("2024-06-27"),
    ]));
    assert_eq!(
        hits(&where_rule("{column: x, ge: 2024-06-26}"), dates),
        [false, true, true]
    );

    // 2024-06-26T00:00:00Z and one second before, in microseconds.
    let t = 1_719_360_000_000_000i64;
    let utc: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![t - 1_000_000, t, t + 3_600_000_000])
            .with_timezone("UTC"),
    );
    assert_eq!(
        hits(&where_rule("{column: x, ge: 2024-06-26}"), utc.clone()),
        [false, true, true]
    );
    assert_eq!(
        hits(
            &where_rule("{column: x, ge: \"2024-06-26T00:00:00\"}"),
            utc.clone()
        ),
        [false, true, true]
    );
    assert_eq!(
        hits(
            &where_rule("{column: x, ge: \"2024-06-26T02:00:00+02:00\"}"),
            utc.clone()
        ),
        [false, true, true]
    );
    assert_eq!(
        hits(
            &where_rule("{column: x, lt: \"2024-06-26T00:30:00Z\"}"),
            utc
        ),
        [true, true, false]
    );
    // A zone other than UTC compares as the same instants.
    let paris: ArrayRef =
        Arc::new(TimestampMicrosecondArray::from(vec![t - 1_000_000, t]).with_timezone("+02:00"));
    assert_eq!(
        hits(&where_rule("{column: x, ge: 2024-06-26}"), paris),
        [false, true]
    );
    // Naive columns compare as written; an offset there is ambiguous and rejected.
    let naive: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
        t / 1000 - 1,
        t / 1000,
    ]));
    assert_eq!(
        hits(
            &where_rule("{column: x, ge: \"2024-06-26 00:00:00\"}"),
            naive.clone()
        ),
        [false, true]
    );
    let p = where_rule("{column: x, ge: \"2024-06-26T00:00:00+02:00\"}");
    let schema = Schema::new(vec![
        Field::new("country", DataType::Utf8, true),
        Field::new("x", naive.data_type().clone(), true),
    ]);
    let e = FileDecider::new(&p, &schema, &crate::io::Location::local("f"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has a UTC offset, but the column has no time zone"),
        "{e}"
    );
    let p = where_rule("{column: x, ge: yesterday}");
    let e = FileDecider::new(&p, &schema, &crate::io::Location::local("f"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'yesterday' is not a date"), "{e}");
}

/// Comparing two columns casts both to a common type. A value that does not fit it is an
/// error, not a null that would leave the rule unmatched and let a later rule include the row.
#[test]
fn column_comparisons_never_turn_unconvertible_values_into_nulls() {
    let p = policy(
        "policy: p\ncolumns: {region: country}\ndefault: include\nrules:\n  - id: old\n    if: {where: [{column: a, lt: {column: b}}]}\n    then: exclude\n",
    );
    let batch = |a: u64| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("country", DataType::Utf8, true),
                Field::new("a", DataType::UInt64, true),
                Field::new("b", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("FR")])),
                Arc::new(arrow_array::UInt64Array::from(vec![a])),
                Arc::new(arrow_array::Int64Array::from(vec![10])),
            ],
        )
        .unwrap()
    };
    assert_eq!(decide(&p, &batch(3)), ["old"]);
    let d = FileDecider::new(
        &p,
        &batch(3).schema(),
        &crate::io::Location::local("f.parquet"),
        None,
    )
    .unwrap();
    let err = d.decide(&batch(u64::MAX)).unwrap_err();
    assert!(err.contains("Int64"), "{err}");
}

#[test]
fn a_member_rule_table_exists_only_where_the_snapshot_alone_decides() {
    let values = "consent_values: {granted: [opt_in], denied: [opt_out]}\n";
    let snapshot = "consent_table: {key: id, region: country, consent: consent}\n";
    let rules = "rules:\n  - id: paused\n    if: {region: [GB]}\n    then: exclude\n  \
        - id: opted-out\n    if: {consent: denied}\n    then: exclude\n  \
        - id: allowed\n    then: include\n";
    let text = |columns: &str, snapshot: &str, rules: &str| {
        format!("policy: p\ncolumns: {columns}\n{snapshot}{values}{rules}")
    };
    let t = member_rule_table(&policy(&text("{user_id: id}", snapshot, rules)))
        .expect("region and consent from the snapshot");
    let at =
        |code: &str, c: ConsentState| t[crate::region::normalize(code).index() * 3 + c as usize];
    assert_eq!(at("GB", ConsentState::Granted), RuleId(0));
    assert_eq!(at("GB", ConsentState::Denied), RuleId(0));
    assert_eq!(at("US", ConsentState::Denied), RuleId(1));
    assert_eq!(at("US", ConsentState::Unknown), RuleId(2));
    // A rule on a corpus column, or the region read from the corpus: a row is not decided by
    // its member alone.
    let on_column = rules.replace("{region: [GB]}", "{where: [{column: age, lt: 18}]}");
    assert!(member_rule_table(&policy(&text("{user_id: id}", snapshot, &on_column))).is_none());
    let inline_region = text(
        "{user_id: id, region: country}",
        "consent_table: {key: id, consent: consent}\n",
        rules,
    );
    assert!(member_rule_table(&policy(&inline_region)).is_none());
}
