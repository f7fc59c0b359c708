use std::path::{Path, PathBuf};

use super::*;
use crate::region::{self, Region};

fn load(text: &str) -> Result<Policy> {
    Policy::from_text(Path::new("p.yaml"), text, "0".repeat(64))
}

/// The error message of an invalid policy, as the user sees it.
fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("policy unexpectedly valid:\n{text}"),
        Err(e) => {
            assert_eq!(e.exit_status().code(), 2, "{e}");
            e.to_string()
        }
    }
}

const HEAD: &str = "policy: p\ncolumns: {region: country, consent: c}\nconsent_values: {granted: [opt_in], denied: [opt_out]}\n";

fn with_rules(rules: &str) -> String {
    format!("{HEAD}rules:\n{rules}")
}

#[test]
fn example_configs_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.rules.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn issue_example_reads_as_written() {
    let p = Policy::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/genai-uk-eea-ch-pause.yaml"),
    )
    .unwrap();
    assert_eq!(p.id, "genai-uk-eea-ch-pause");
    assert_eq!(p.version.as_deref(), Some("2024-09-20"));
    assert_eq!(p.default, Action::Exclude);
    assert_eq!(p.columns.region.as_deref(), Some("country"));
    assert_eq!(p.columns.record_id.as_deref(), Some("post_id"));
    let cv = p.consent_values.as_ref().unwrap();
    assert_eq!(
        cv.granted,
        vec![Scalar::Str("opt_in".into()), Scalar::Str("yes".into())]
    );
    assert_eq!(
        cv.denied,
        vec![Scalar::Str("opt_out".into()), Scalar::Str("no".into())]
    );
    let paused = &p.groups[0];
    assert_eq!(paused.name, "PAUSED");
    // GB + 37 EEA + CH
    assert_eq!(paused.members.len(), 39);
    for c in ["GB", "CH", "NO", "IS", "LI", "DE", "RE"] {
        assert!(paused.members.contains(region::normalize(c)), "{c}");
    }
    assert!(!paused.members.contains(region::normalize("US")));
    let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["region-paused", "unknown-region", "opted-out", "allowed"]
    );
    assert!(p.rules[3].when.is_empty());
    assert_eq!(p.rules[3].action, Action::Include);
}

#[test]
fn yaml_1_2_scalars_stay_strings() {
    let p = load(
        "policy: p\ncolumns: {region: country, consent: c}\n\
         consent_values: {granted: [yes, on, Y], denied: [no, off, N, false]}\n\
         rules:\n  - id: norway\n    if: {region: NO}\n    then: exclude\n",
    )
    .unwrap();
    let cv = p.consent_values.unwrap();
    assert_eq!(
        cv.granted,
        vec![
            Scalar::Str("yes".into()),
            Scalar::Str("on".into()),
            Scalar::Str("Y".into())
        ]
    );
    assert_eq!(cv.denied[3], Scalar::Bool(false));
    match &p.rules[0].when[0] {
        Condition::Region { set, .. } => {
            assert_eq!(set.len(), 1);
            assert!(set.contains(region::normalize("NO")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn codes_are_normalised_and_groups_nest() {
    let p = load(
        "policy: p\ncolumns: {region: country}\n\
         region_groups:\n  ISLES: [uk, IRL]\n  BIG: [ISLES, EU, unknown]\n\
         rules:\n  - id: a\n    if: {region: [BIG, CHE]}\n    then: exclude\n",
    )
    .unwrap();
    let Condition::Region { set, written } = &p.rules[0].when[0] else {
        panic!()
    };
    assert_eq!(written, &["BIG", "CHE"]);
    // IE is in both ISLES and EU.
    assert_eq!(set.len(), 2 + 34 + 1 + 1 - 1);
    for c in ["GB", "IE", "CH", "DE", "RE"] {
        assert!(set.contains(region::normalize(c)), "{c}");
    }
    assert!(set.contains(Region::UNKNOWN));
}

#[test]
fn errors_name_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    iff: {region: GB}\n    then: exclude\n",
            "p.yaml:5:5: unknown field `iff`, expected one of id, description, if, unless, then (did you mean `if`?)",
        ),
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    if: {region: [GB, XX]}\n    then: exclude\n",
            "p.yaml:5:23: 'XX' is neither a region code nor a region group; use an ISO 3166-1 code, a group from region_groups, EU, EEA or unknown",
        ),
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    then: exclude\n  - id: a\n    then: include\n",
            "p.yaml:6:9: duplicate rule id 'a' (first used on line 4)",
        ),
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: default\n    then: exclude\n",
            "p.yaml:4:9: rule id 'default' is reserved; choose another id",
        ),
        (
            "policy: p\npolicy: q\ncolumns: {region: country}\nrules: []\n",
            "p.yaml:2:1: duplicate mapping key: policy",
        ),
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    then: maybe\n",
            "p.yaml:5:11: unknown variant `maybe`, expected one of include, exclude",
        ),
        (
            "policy: p\ncolumns: {regoin: country}\nrules: []\n",
            "p.yaml:2:11: unknown field `regoin`, expected one of record_id, user_id, region, consent (did you mean `region`?)",
        ),
        (
            "policy: p\ncolumns: {record_id: id}\nrules: []\n",
            "p.yaml:2:10: columns.region is required: the column holding each record's region (or consent_table.region when a consent snapshot provides it)",
        ),
        (
            "policy: p\ncolumns: {region: country}\nregion_groups:\n  DE: [FR]\nrules: []\n",
            "p.yaml:4:3: group name 'DE' is the region code DE (Germany); choose a name that is not an ISO code",
        ),
        (
            "policy: p\ncolumns: {region: country}\nregion_groups:\n  EU: [FR]\nrules: []\n",
            "p.yaml:4:3: group 'EU' is built in and cannot be redefined",
        ),
        (
            "policy: p\ncolumns: {region: country}\nregion_groups:\n  A: [B]\n  B: [A]\nrules: []\n",
            "p.yaml:4:3: region group 'A' includes itself (A -> B -> A)",
        ),
        (
            "policy: p\ncolumns: {region: country}\nregion_groups:\n  Paused: [GB]\nrules:\n  - id: a\n    if: {region: PAUSED}\n    then: exclude\n",
            "p.yaml:7:18: 'PAUSED' is neither a region code nor a region group (did you mean the group 'Paused'? group names are case-sensitive); use an ISO 3166-1 code, a group from region_groups, EU, EEA or unknown",
        ),
        (
            "policy: p\ncolumns: {region: country}\nrules:\n  - id: a\n    if: {consent: denied}\n    then: exclude\n",
            "p.yaml:5:19: a `consent` condition needs columns.consent (and consent_values)",
        ),
        (
            "policy: p\ncolumns: {region: country, consent: c}\nrules: []\n",
            "p.yaml:1:1: consent_values is required when columns.consent is set (which values mean granted and which denied)",
        ),
        (
            "policy: p\ncolumns: {region: country, consent: c}\nconsent_values: {granted: [yes, true], denied: [no, \" YES\"]}\nrules: []\n",
            "p.yaml:3:53: consent value \" YES\" is listed as both granted (\"yes\") and denied",
        ),
        (
            &with_rules("  - id: a\n    if: {where: [{column: x, eq: null}]}\n    then: exclude\n"),
            "p.yaml:6:34: `eq: null` never holds (a null compares false); use `is_null: true`",
        ),
        (
            &with_rules("  - id: a\n    if: {where: [{column: x, ge: 1, le: 3}]}\n    then: exclude\n"),
            "p.yaml:6:41: predicate on 'x' has more than one operator; write one predicate per operator",
        ),
        (
            &with_rules("  - id: a\n    if: {where: [{column: x}]}\n    then: exclude\n"),
            "p.yaml:6:18: predicate on 'x' has no operator: use one of eq ne in not_in lt le gt ge is_null",
        ),
        (
            &with_rules("  - id: a\n    if: {where: [{column: x, like: 1}]}\n    then: exclude\n"),
            "p.yaml:6:30: unknown field `like`, expected one of column, eq, ne, lt, le, gt, ge, in, not_in, is_null",
        ),
        (
            &with_rules("  - id: a\n    if: {consent: maybe}\n    then: exclude\n"),
            "p.yaml:6:19: consent condition 'maybe' must be granted, denied or unknown",
        ),
        (
            &with_rules("  - id: a\n    if: {}\n    then: exclude\n"),
            "p.yaml:6:9: `if` has no conditions: give region, consent and/or where",
        ),
        (
            &with_rules("  - id: a\n    if: {where: [{column: x, gt: true}]}\n    then: exclude\n"),
            "p.yaml:6:34: `gt` cannot order booleans; use eq or ne",
        ),
        (
            "policy: p\ncolumns: {region: c}\nrules:\n  - id: a\n    if: {user_in: objections}\n    then: exclude\n",
            "p.yaml:5:19: user list 'objections' is not declared in user_lists",
        ),
        (
            "policy: p\ncolumns: {region: c}\nuser_lists: [objections]\nrules: []\n",
            "p.yaml:2:10: columns.user_id is required with consent_table or user_lists: it is the join key in the corpus",
        ),
        (
            "policy: p\ncolumns: {user_id: m}\nconsent_table: {key: k, consent: c}\nconsent_values: {granted: [y]}\nrules: []\n",
            "p.yaml:2:10: columns.region is required: the column holding each record's region (or consent_table.region when a consent snapshot provides it)",
        ),
        (
            "policy: p\ncolumns: {user_id: m}\nconsent_table: {key: k, region: r, extra: [k]}\nrules: []\n",
            "p.yaml:3:44: snapshot column 'k' is mapped twice (also on line 3)",
        ),
        (
            "policy: p\ncolumns: {user_id: m}\nconsent_table: {key: k, region: r}\nrules:\n  - id: a\n    if: {where: [{column: t, ge: {col: x}}]}\n    then: exclude\n",
            "p.yaml:6:34: unknown field `col` in a column operand; write {column: NAME}",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "policy:\n{text}");
    }
}

#[test]
fn check_output_is_a_policy_that_decides_the_same() {
    for name in [
        "genai-uk-eea-ch-pause",
        "meta-uk-2024",
        "opt-in-only",
        "consent-snapshot",
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{name}.yaml"));
        let p = Policy::load(&path).unwrap();
        let text = p.to_normalized_yaml();
        let again = load(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(again.id, p.id);
        assert_eq!(again.default, p.default);
        assert_eq!(again.rules.len(), p.rules.len());
        for (a, b) in p.rules.iter().zip(&again.rules) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.action, b.action);
            assert_eq!(
                format!("{:?}", strip(&a.when)),
                format!("{:?}", strip(&b.when))
            );
            assert_eq!(
                format!("{:?}", strip(&a.unless)),
                format!("{:?}", strip(&b.unless))
            );
        }
        // Normalising twice changes nothing but the recorded hash and path.
        assert_eq!(
            drop_comments(&again.to_normalized_yaml()),
            drop_comments(&text)
        );
    }
}

fn strip(conds: &[Condition]) -> Vec<String> {
    conds
        .iter()
        .map(|c| match c {
            Condition::Region { set, .. } => format!("region {set:?}"),
            Condition::Consent(s) => format!("consent {s:?}"),
            Condition::UserIn(l) => format!("user_in {l:?}"),
            Condition::Where(p) => format!(
                "where {:?}",
                p.iter().map(|p| (&p.column, &p.op)).collect::<Vec<_>>()
            ),
        })
        .collect()
}

fn drop_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_output_snapshot() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/meta-uk-2024.yaml");
    let mut p = Policy::load(&path).unwrap();
    p.path = PathBuf::from("configs/meta-uk-2024.yaml");
    p.sha256 = "<sha256>".into();
    insta::assert_snapshot!(p.to_normalized_yaml());
}
