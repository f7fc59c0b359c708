//! The partition law over random data, row-group sizes and thread counts: kept + excluded =
//! input, disjoint, in input order; the output never holds a row the policy excludes.

use parquet::basic::Compression;
use proptest::prelude::*;

use crate::util::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]
    #[test]
    fn kept_plus_excluded_is_input(
        seed in any::<u64>(),
        rows in 0usize..900,
        row_group in 1usize..400,
        threads in 1u16..5,
        ty in 0usize..4,
        policy in 0usize..3,
        clustered in any::<bool>(),
    ) {
        let policy = ["genai-uk-eea-ch-pause.yaml", "meta-uk-2024.yaml", "opt-in-only.yaml"][policy];
        let ty = [CountryType::Utf8, CountryType::Large, CountryType::Dict, CountryType::View][ty];
        let dir = tempfile::tempdir().unwrap();
        let mut recs = random_records(seed, rows, 0);
        if clustered {
            // Long runs of one decision: the reader skips pages instead of filtering rows.
            recs.sort_by(|a, b| (a.country, a.consent).cmp(&(b.country, b.consent)));
            for (i, r) in recs.iter_mut().enumerate() {
                r.post_id = i as i64;
            }
        }
        write_parquet(&dir.path().join("in/x.parquet"), &recs, ty, row_group, Compression::SNAPPY);
        let out = dir.path().join("out");
        let t = threads.to_string();
        let (code, _, err) = run(&["filter", "--policy", p(&config(policy)), "--threads", &t, "-o", p(&out), p(&dir.path().join("in"))]);
        prop_assert_eq!(code, 0, "{}", err);
        let kept = post_ids(&read_all(&out.join("data/x.parquet")));
        let excluded: Vec<i64> = i64s(&read_all(&out.join("excluded/x.parquet")), "row").into_iter().map(|r| r.unwrap()).collect();
        // Rows are numbered 0.. and post ids equal row numbers here.
        let mut merged: Vec<i64> = kept.iter().chain(&excluded).copied().collect();
        merged.sort_unstable();
        prop_assert_eq!(merged, (0..rows as i64).collect::<Vec<_>>());
        prop_assert!(kept.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(excluded.windows(2).all(|w| w[0] < w[1]));
        for id in &kept {
            prop_assert!(expected_keep(policy, &recs[*id as usize]), "row {} kept", id);
        }
        for id in &excluded {
            prop_assert!(!expected_keep(policy, &recs[*id as usize]), "row {} excluded", id);
        }
    }
}
