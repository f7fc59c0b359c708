//! `--reuse PREV_OUT`: over chains of nights with random changes (opt-outs, opt-ins, region
//! moves, erasure requests added and withdrawn, members added and removed, input files added,
//! removed and rewritten, a policy edit), a run that reuses the previous night's output writes
//! the same bytes and counts as a fresh run; a previous output that cannot vouch for itself is
//! not used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::file::properties::WriterProperties;
use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest, ProptestConfig};
use serde_json::Value;

use crate::util::*;

const POLICY: &str = "policy: reuse-test
columns: {record_id: post_id, user_id: member_id}
consent_table: {key: key, region: country, consent: consent, updated_at: updated_at, extra: [objected_at]}
consent_values: {granted: [opt_in], denied: [opt_out]}
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

/// The policy without its rule on a corpus column: it decides by the user id alone (what the
/// snapshot and the list say of the user), so `--reuse` decides changed members' rows from the
/// ids its search read.
fn policy_by_user_id() -> String {
    let p = POLICY.replace(
        "  - id: after-objection\n    if: {where: [{column: created_at, ge: {column: objected_at}}]}\n    then: exclude\n",
        "",
    );
    assert!(
        !p.contains("created_at"),
        "the rule on a corpus column is still there"
    );
    p
}

/// The policy with only region and consent rules: every row of a member is decided by the
/// member's snapshot row alone, so `--reuse` digests members by their region and rule, and a
/// change that moves neither (a consent flip in a paused region) is no change at all. The
/// erasure list is still joined (and digested) though no rule reads it.
fn policy_by_region_and_consent() -> String {
    let p = policy_by_user_id().replace(
        "  - id: erased\n    if: {user_in: erasure}\n    then: exclude\n",
        "",
    );
    assert!(
        !p.contains("user_in"),
        "the rule on the list is still there"
    );
    p
}

/// What a member's rows are decided by under [`policy_by_region_and_consent`] (`policy`, one
/// region more paused after an edit): its region as normalised and its rule; `None` for a key
/// the snapshot does not hold.
fn region_and_rule(m: &Option<Member>, policy: &str) -> Option<(Option<String>, &'static str)> {
    let (country, consent, _) = m.as_ref()?;
    let region = country.map(|c| c.to_uppercase());
    let mut paused = vec!["GB", "DE", "FR", "CH"];
    if policy.contains("[GB, EEA, CH, BR]") {
        paused.push("BR");
    }
    let rule = match (&region, consent) {
        (Some(r), _) if paused.contains(&r.as_str()) => "paused",
        (None, _) => "unknown-region",
        (_, Some("opt_out")) => "opted-out",
        _ => "allowed",
    };
    Some((region, rule))
}

const COUNTRIES: &[Option<&str>] = &[
    Some("US"),
    Some("DE"),
    Some("GB"),
    Some("BR"),
    Some("fr"),
    None,
];
const CONSENT: &[Option<&str>] = &[Some("opt_in"), Some("opt_in"), Some("opt_out"), None];

/// One member's snapshot row: (country, consent, objected_at).
type Member = (Option<&'static str>, Option<&'static str>, Option<i64>);

/// The world of one night: corpus files (name -> rows), the snapshot, the erasure list.
#[derive(Clone)]
struct World {
    /// (file name, seed of its rows, rows)
    files: Vec<(String, u64, usize)>,
    members: Vec<Option<Member>>,
    erased: Vec<i64>,
    policy: String,
}

/// Rows of a big corpus file: one row group, whose kept rows fill two pages of each payload
/// column or more (the writer cuts a page at 20,000 rows or 1 MiB).
const BIG_FILE_ROWS: usize = 60_000;

fn member(rng: &mut Rng) -> Member {
    (
        COUNTRIES[rng.below(COUNTRIES.len())],
        CONSENT[rng.below(CONSENT.len())],
        (rng.below(5) == 0).then(|| 1_000 + rng.below(1_000) as i64),
    )
}

impl World {
    fn new(rng: &mut Rng, members: usize) -> World {
        let big = rng.below(2) == 0;
        World {
            files: (0..2 + rng.below(4))
                .map(|i| {
                    (
                        format!("part-{i:03}.parquet"),
                        rng.next(),
                        if big && i == 0 {
                            BIG_FILE_ROWS
                        } else {
                            20 + rng.below(300)
                        },
                    )
                })
                .collect(),
            members: (0..members)
                .map(|_| (rng.below(10) != 0).then(|| member(rng)))
                .collect(),
            erased: (0..members as i64).filter(|_| rng.below(20) == 0).collect(),
            policy: match rng.below(3) {
                0 => POLICY.to_string(),
                1 => policy_by_user_id(),
                _ => policy_by_region_and_consent(),
            },
        }
    }

    /// A night's changes: a few of each kind, each kind not every night.
    fn next_night(&self, rng: &mut Rng) -> World {
        let mut w = self.clone();
        let n = w.members.len();
        if rng.below(3) == 0 {
            // Nothing changes at all.
            return w;
        }
        for _ in 0..rng.below(4) {
            let m = rng.below(n);
            match rng.below(5) {
                0 => w.members[m] = None,
                1 => w.members[m] = Some(member(rng)),
                2 => {
                    if let Some(x) = &mut w.members[m] {
                        x.1 = Some(if x.1 == Some("opt_out") {
                            "opt_in"
                        } else {
                            "opt_out"
                        });
                    }
                }
                3 => {
                    if !w.erased.contains(&(m as i64)) {
                        w.erased.push(m as i64);
                    }
                }
                _ => {
                    if !w.erased.is_empty() {
                        let i = rng.below(w.erased.len());
                        w.erased.remove(i);
                    }
                }
            }
        }
        match rng.below(8) {
            0 => {
                // A name no current file has (a removed file's name may come back, other rows).
                let i = 1 + w
                    .files
                    .iter()
                    .filter_map(|(n, _, _)| n[5..8].parse::<usize>().ok())
                    .max()
                    .unwrap_or(0);
                w.files.push((
                    format!("part-{i:03}.parquet"),
                    rng.next(),
                    20 + rng.below(200),
                ))
            }
            1 if w.files.len() > 1 => {
                let i = rng.below(w.files.len());
                w.files.remove(i);
            }
            2 => {
                let i = rng.below(w.files.len());
                w.files[i].1 = rng.next();
            }
            3 => {
                // A policy edit: one more region paused.
                w.policy = if w.policy.contains("[GB, EEA, CH]") {
                    w.policy.replace("[GB, EEA, CH]", "[GB, EEA, CH, BR]")
                } else {
                    w.policy.replace("[GB, EEA, CH, BR]", "[GB, EEA, CH]")
                };
            }
            _ => {}
        }
        w
    }

    /// Write the world under `dir` (the corpus in `dir/in`, rewritten only where it changed, as
    /// a nightly export leaves unchanged files alone).
    fn write(&self, dir: &Path) {
        let input = dir.join("in");
        std::fs::create_dir_all(&input).unwrap();
        for e in std::fs::read_dir(&input).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = name.starts_with('.');
            if !stamp && !self.files.iter().any(|(n, _, _)| *n == name) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        for (name, seed, rows) in &self.files {
            let path = input.join(name);
            let stamp = input.join(format!(".{name}.seed"));
            let want = format!("{seed} {rows}");
            if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
                continue;
            }
            write_corpus_file(&path, *seed, *rows, self.members.len());
            std::fs::write(&stamp, want).unwrap();
        }
        let mut keys = Vec::new();
        let mut countries = Vec::new();
        let mut consents = Vec::new();
        let mut objected = Vec::new();
        let mut updated = Vec::new();
        for (m, x) in self.members.iter().enumerate() {
            if let Some((c, s, o)) = x {
                keys.push(m as i64);
                countries.push(*c);
                consents.push(*s);
                objected.push(*o);
                updated.push(Some(m as i64));
            }
        }
        let snap = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("key", DataType::Int64, false),
                Field::new("country", DataType::Utf8, true),
                Field::new("consent", DataType::Utf8, true),
                Field::new("updated_at", DataType::Int64, true),
                Field::new("objected_at", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(keys)) as ArrayRef,
                Arc::new(StringArray::from(countries)),
                Arc::new(StringArray::from(consents)),
                Arc::new(Int64Array::from(updated)),
                Arc::new(Int64Array::from(objected)),
            ],
        )
        .unwrap();
        // Row groups of 16 members: a load narrowed to a new file's members reads several,
        // on the pool's threads.
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(16))
            .build();
        write_batch(&dir.join("snapshot.parquet"), &snap, Some(props));
        let list: String = self.erased.iter().map(|m| format!("{m}\n")).collect();
        std::fs::write(dir.join("erasure.txt"), list).unwrap();
        std::fs::write(dir.join("policy.yaml"), &self.policy).unwrap();
    }
}

fn write_corpus_file(path: &Path, seed: u64, rows: usize, members: usize) {
    let mut rng = Rng(seed);
    let post: Vec<i64> = (0..rows as i64)
        .map(|i| (seed as i64 & 0xffff) * 100_000 + i)
        .collect();
    let member: Vec<Option<i64>> = (0..rows)
        .map(|_| (rng.below(30) != 0).then(|| rng.below(members + 3) as i64))
        .collect();
    let created: Vec<i64> = (0..rows).map(|_| 1_000 + rng.below(1_200) as i64).collect();
    // A big file is one row group whose kept text and topics fill several pages, which
    // --reuse splices when a decision in it flips.
    let big = rows >= BIG_FILE_ROWS;
    let text: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                "post {i} of {seed}: {}",
                "lorem ipsum ".repeat(rng.below(if big { 40 } else { 20 }))
            )
        })
        .collect();
    let topic: Vec<Option<&str>> = (0..rows)
        .map(|_| {
            ["news", "sport", "music", "film", "food"]
                .get(rng.below(6))
                .copied()
        })
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("post_id", DataType::Int64, false),
            Field::new("member_id", DataType::Int64, true),
            Field::new("created_at", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(post)) as ArrayRef,
            Arc::new(Int64Array::from(member)),
            Arc::new(Int64Array::from(created)),
            Arc::new(StringArray::from(text)),
            Arc::new(StringArray::from(topic)),
        ],
    )
    .unwrap();
    // Small row groups are often wholly kept, and then passed through as they are; --reuse
    // must copy those back as a fresh run writes them too.
    let row_group = if big {
        rows
    } else {
        [4, 16, 64][(seed % 3) as usize]
    };
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    write_batch(path, &batch, Some(props));
}

/// The arguments of `command` (`filter` or `plan`) of the test job over the world in `dir`,
/// into `out` (a directory or a URL).
fn job_args(command: &str, dir: &Path, out: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        command,
        "--policy",
        p(&dir.join("policy.yaml")),
        "--consent-table",
        p(&dir.join("snapshot.parquet")),
        "--user-list",
        &format!("erasure={}", dir.join("erasure.txt").display()),
        "--output",
        out,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(p(&dir.join("in")).to_string());
    args
}

/// `command` (`filter` or `plan`) of the test job over the world in `dir`, into `out`.
fn job(command: &str, dir: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let args = job_args(command, dir, p(out), extra);
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (code, err)
}

fn filter(dir: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--progress", "never"];
    args.extend_from_slice(extra);
    job("filter", dir, out, &args)
}

/// The same job as [`filter`] run as `plan` (with `shards` shards), every `run-shard`, `commit`.
fn sharded_run(dir: &Path, out: &Path, shards: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--shards", shards];
    args.extend_from_slice(extra);
    let (code, mut said) = job("plan", dir, out, &args);
    if code != 0 {
        return (code, said);
    }
    for i in 0..shards.parse::<usize>().unwrap() {
        let (code, _, err) = run(&["run-shard", p(out), "--index", &i.to_string()]);
        said.push_str(&err);
        if code != 0 {
            return (code, said);
        }
    }
    let (code, _, err) = run(&["commit", p(out)]);
    said.push_str(&err);
    (code, said)
}

fn summary(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// The summary as a fresh run would write it: times, the options as given and `reuse` aside.
fn comparable(out: &Path) -> Value {
    let mut s = summary(out);
    let o = s.as_object_mut().unwrap();
    for k in [
        "started_at",
        "finished_at",
        "options",
        "reuse",
        "resumed_files",
    ] {
        o.remove(k);
    }
    s
}

/// Every file of `data/` and of `excluded/`, with its bytes.
type Outputs = (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>);

fn outputs(out: &Path) -> Outputs {
    (tree(&out.join("data")), tree(&out.join("excluded")))
}

/// `reused`'s outputs are `fresh`'s: the same files, each byte for byte or — those spliced from
/// PREV_OUT's pages (data files and manifests), whose pages are cut elsewhere — with the same
/// rows, values, order, schema, metadata and row groups. The names of the files that differ in
/// their bytes (in `data/`, `excluded/` or both), or why the outputs are not the same.
fn same_outputs(reused: &Path, fresh: &Path) -> Result<Vec<String>, String> {
    let (data, excluded) = outputs(reused);
    let (fresh_data, fresh_excluded) = outputs(fresh);
    let decisions = |o: &Path| {
        let d = o.join("_state/decisions");
        if d.exists() {
            tree(&d)
        } else {
            Vec::new()
        }
    };
    if decisions(reused) != decisions(fresh) {
        return Err("_state/decisions/ differs from a fresh run".into());
    }
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let mut spliced = Vec::new();
    for (sub, ours, theirs) in [
        ("data", &data, &fresh_data),
        ("excluded", &excluded, &fresh_excluded),
    ] {
        if names(ours) != names(theirs) {
            return Err(format!(
                "{sub}/ holds {:?}, a fresh run {:?}",
                names(ours),
                names(theirs)
            ));
        }
        for ((name, a), (_, b)) in ours.iter().zip(theirs.iter()) {
            if a == b {
                continue;
            }
            if !spliced.contains(name) {
                spliced.push(name.clone());
            }
            let file = |o: &Path| {
                let at = o.join(sub).join(name);
                let f = std::fs::File::open(&at).unwrap();
                let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap();
                let meta = b.metadata().clone();
                let rows: Vec<i64> = meta.row_groups().iter().map(|r| r.num_rows()).collect();
                let kv = meta.file_metadata().key_value_metadata().cloned();
                (read_all(&at), rows, kv)
            };
            let (x, y) = (file(reused), file(fresh));
            if x.0.schema() != y.0.schema() || x.0 != y.0 {
                return Err(format!("{sub}/{name}: rows, values or schema differ"));
            }
            if x.1 != y.1 || x.2 != y.2 {
                return Err(format!("{sub}/{name}: row groups or metadata differ"));
            }
        }
    }
    spliced.sort();
    Ok(spliced)
}

fn assert_same_as_fresh(reused: &Path, fresh: &Path) {
    if let Err(m) = same_outputs(reused, fresh) {
        panic!("{m}");
    }
    assert_eq!(comparable(reused), comparable(fresh));
    // The member digests it records for the next night too (copied or computed).
    let keys = |o: &Path| std::fs::read(o.join("_state/keys.parquet")).ok();
    assert!(
        keys(reused) == keys(fresh),
        "_state/keys.parquet differs from a fresh run's"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]
    /// The law: a chain of nights, each reusing the night before, gives what fresh runs give.
    #[test]
    fn reuse_writes_what_a_fresh_run_writes(seed in any::<u64>(), members in 5usize..80) {
        night_chain(seed, members)?;
    }
}

fn night_chain(seed: u64, members: usize) -> Result<(), proptest::test_runner::TestCaseError> {
    chain(seed, members, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]
    /// The law for sharded nights: `plan --reuse` (shards, then commit) and `filter --reuse`,
    /// each reusing whichever ran the night before, write what a fresh run writes, and a
    /// committed plan records the state a fresh `filter` records.
    #[test]
    fn sharded_nights_reuse_like_filter(seed in any::<u64>(), members in 5usize..60) {
        chain(seed, members, true)?;
    }
}

/// Four nights of a random world, each run reusing the night before and compared with a fresh
/// run: `filter --reuse` with 1 to 3 threads, or (`sharded`) on even nights and at random
/// `plan --reuse` with 1 to 3 shards.
fn chain(
    seed: u64,
    members: usize,
    sharded: bool,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(&mut rng, members);
    let mut prev: Option<PathBuf> = None;
    let mut yesterday: Option<World> = None;
    // The files (data, manifest or both) whose bytes differed from the fresh run's the night
    // before.
    let mut differed: Vec<String> = Vec::new();
    for night in 0..4 {
        world.write(dir.path());
        let fresh = dir.path().join(format!("fresh-{night}"));
        let (code, err) = filter(dir.path(), &fresh, &["--threads", "1"]);
        prop_assert_eq!(code, 0, "{}", err);
        let out = dir.path().join(format!("out-{night}"));
        let prev_arg = prev.as_ref().map(|p| p.to_str().unwrap().to_owned());
        let mut extra = Vec::new();
        if let Some(p) = &prev_arg {
            extra.extend_from_slice(&["--reuse", p.as_str()]);
        }
        let plan = sharded && (night % 2 == 0 || rng.below(2) == 0);
        let n = (1 + rng.below(3)).to_string();
        let (code, err) = if plan {
            sharded_run(dir.path(), &out, &n, &extra)
        } else {
            extra.extend_from_slice(&["--threads", n.as_str()]);
            filter(dir.path(), &out, &extra)
        };
        prop_assert_eq!(code, 0, "{}", err);
        let differ = same_outputs(&out, &fresh);
        prop_assert!(differ.is_ok(), "night {}: {:?}", night, differ);
        let differ = differ.unwrap_or_default();
        // Only the files spliced from PREV_OUT's pages differ in their bytes: tonight, or on
        // an earlier night and taken since, each of its data and manifest files PREV_OUT's
        // (which differed then) or the fresh run's (a night whose manifest splice gave way to
        // encoding it whole, beside PREV_OUT's data row group).
        let r = &summary(&out)["reuse"];
        if !plan {
            let spliced = r["row_groups_spliced"].as_u64().unwrap_or(0);
            let taken_whole = |name: &String| {
                let bytes = |o: &Path, sub: &str| std::fs::read(o.join(sub).join(name)).ok();
                let same = |p: &Path| {
                    ["data", "excluded"].iter().all(|sub| {
                        bytes(p, sub) == bytes(&out, sub) || bytes(&fresh, sub) == bytes(&out, sub)
                    })
                };
                differed.contains(name) && prev.as_ref().is_some_and(|p| same(p))
            };
            let new = differ.iter().filter(|n| !taken_whole(n)).count();
            prop_assert!(
                new as u64 <= spliced,
                "night {}: {:?} differ, {}",
                night,
                differ,
                r
            );
        }
        if !plan {
            // A committed plan's summary names its shards; the counts are checked by scale.rs.
            prop_assert_eq!(comparable(&out), comparable(&fresh));
        }
        // What it records for the next night: the member digests (copied or computed) and
        // every file's entry, as a fresh run records them.
        let file = |o: &Path, f: &str| std::fs::read(o.join("_state").join(f)).unwrap();
        prop_assert!(
            file(&out, "keys.parquet") == file(&fresh, "keys.parquet"),
            "night {}: _state/keys.parquet differs",
            night
        );
        let state = |o: &Path| -> Value {
            let mut v: Value = serde_json::from_slice(&file(o, "files.json")).unwrap();
            let entries = v["entries"].as_array_mut().unwrap();
            entries.sort_by_key(|e| e["rel"].as_str().unwrap().to_owned());
            // How a file's row groups were made (copied from PREV_OUT or encoded) aside.
            for e in entries {
                let stats = e["stats"].as_object_mut().unwrap();
                for k in [
                    "row_groups_from_previous",
                    "row_groups_spliced",
                    "pages_from_previous",
                    "manifest_pages_from_previous",
                    "decisions_reused",
                ] {
                    stats.remove(k);
                }
                // A spliced data file or manifest has other bytes (and its own hash).
                let rel = e["rel"].as_str().unwrap().to_owned();
                if differ.contains(&rel) {
                    e.as_object_mut().unwrap().remove("data");
                    e.as_object_mut().unwrap().remove("excluded");
                }
            }
            v
        };
        prop_assert_eq!(
            state(&out),
            state(&fresh),
            "night {}: _state/files.json",
            night
        );
        if let Some(before) = &yesterday {
            // Exactly the files that are unchanged and hold no changed member are reused.
            let r = &summary(&out)["reuse"];
            let want = expected_reused(before, &world, dir.path());
            prop_assert_eq!(r["files_reused"].as_u64().unwrap(), want, "{}", r);
        }
        prev = Some(out);
        differed = differ;
        yesterday = Some(world.clone());
        world = world.next_night(&mut rng);
    }
    Ok(())
}

#[test]
fn a_plan_cannot_reuse_its_own_output_directory() {
    let (dir, _) = first_night(17);
    let out = dir.path().join("out-0");
    let (code, err) = sharded_run(dir.path(), &out, "2", &["--reuse", p(&out), "--overwrite"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the plan's OUT_DIR"), "{err}");
    // Refused before anything was touched: the output is still complete.
    assert!(out.join("_SUCCESS").is_file() && out.join("_state/files.json").is_file());
}

/// How many of today's files a run reusing yesterday's output must take from it: those with
/// the same rows as yesterday, under the same policy, holding no member whose snapshot row or
/// erasure request changed.
fn expected_reused(before: &World, now: &World, dir: &Path) -> u64 {
    if before.policy != now.policy {
        return 0;
    }
    let n = before.members.len();
    // Under a policy of region and consent rules alone, a member whose region and rule stay
    // is no change, whatever else of its row changed.
    let by_rule = !now.policy.contains("user_in") && !now.policy.contains("where");
    let changed: Vec<i64> = (0..n as i64)
        .filter(|&m| {
            let (was, is) = (&before.members[m as usize], &now.members[m as usize]);
            let member_changed = if by_rule {
                region_and_rule(was, &before.policy) != region_and_rule(is, &now.policy)
            } else {
                was != is
            };
            member_changed || before.erased.contains(&m) != now.erased.contains(&m)
        })
        .collect();
    now.files
        .iter()
        .filter(|f| before.files.contains(f))
        .filter(|(name, _, _)| {
            let ids = i64s(&read_all(&dir.join("in").join(name)), "member_id");
            !ids.iter().flatten().any(|m| changed.contains(m))
        })
        .count() as u64
}

/// Tonight's run reusing `prev` (`out-1`) and a fresh one (`fresh`), checked to be the same.
fn reused_and_fresh(dir: &Path, prev: &Path) -> (PathBuf, PathBuf) {
    let out = dir.join("out-1");
    let (code, err) = filter(dir, &out, &["--reuse", p(prev)]);
    assert_eq!(code, 0, "{err}");
    let fresh = dir.join("fresh");
    assert_eq!(filter(dir, &fresh, &[]).0, 0);
    assert_same_as_fresh(&out, &fresh);
    (out, fresh)
}

/// A world written once, with a complete first output (`out-0`) to reuse.
fn first_night(seed: u64) -> (tempfile::TempDir, World) {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(&mut rng, 60);
    world.write(dir.path());
    let (code, err) = filter(dir.path(), &dir.path().join("out-0"), &[]);
    assert_eq!(code, 0, "{err}");
    (dir, world)
}

#[test]
fn an_unchanged_night_reuses_every_file_and_says_so() {
    let (dir, world) = first_night(7);
    let prev = dir.path().join("out-0");
    let out = dir.path().join("out-1");
    let (code, err) = filter(dir.path(), &out, &["--reuse", p(&prev)]);
    assert_eq!(code, 0, "{err}");
    let files = world.files.len() as u64;
    assert!(
        err.contains(&format!(
            "reuse: took the outputs of {files} of {files} files from"
        )),
        "{err}"
    );
    let r = &summary(&out)["reuse"];
    assert_eq!(r["files_reused"], files);
    assert_eq!(r["row_groups_recomputed"], 0);
    assert_eq!(r["changed_keys"], 0);
    assert!(r["row_groups_reused"].as_u64().unwrap() >= files);
    assert!(r["bytes_reused"].as_u64().unwrap() > 0);
    assert_same_as_fresh(&out, &prev);
    // The state is recorded again, so the night after can reuse this output in turn.
    assert!(out.join("_state/files.json").is_file());
    assert!(out.join("_state/keys.parquet").is_file());
    // And it passes verify like any output.
    let (code, said) = verify(dir.path(), &out);
    assert_eq!(code, 0, "{said}");
}

#[test]
fn a_new_file_beside_an_unchanged_snapshot_is_processed_like_a_fresh_run() {
    // The snapshot and list are yesterday's, so the run loads from the snapshot only the
    // members of the new file; everything it writes is still what a fresh run writes,
    // summary.json's description of the whole snapshot and _state/keys.parquet included.
    let (dir, mut world) = first_night(19);
    let prev = dir.path().join("out-0");
    let before = world.files.len() as u64;
    world.files.push(("part-new.parquet".into(), 4242, 150));
    world.write(dir.path());
    let (out, fresh) = reused_and_fresh(dir.path(), &prev);
    let r = &summary(&out)["reuse"];
    assert_eq!(r["files_reused"], before, "{r}");
    assert_eq!(r["changed_keys"], 0, "{r}");
    // And the night after reuses this output in turn, every file of it.
    let next = dir.path().join("out-2");
    let (code, err) = filter(dir.path(), &next, &["--reuse", p(&out)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&next)["reuse"]["files_reused"], before + 1);
    assert_same_as_fresh(&next, &fresh);
}

/// A night whose snapshot is untouched takes its hash from PREV_OUT's record (the identities its
/// file had when hashed); one rewritten in place to the very same size, one member's consent
/// flipped, has another identity, is hashed again, and that member is decided again.
#[test]
fn a_snapshot_rewritten_to_the_same_size_is_hashed_again() {
    let (dir, mut world) = first_night(23);
    let prev = dir.path().join("out-0");
    let snapshot = dir.path().join("snapshot.parquet");
    let state: Value =
        serde_json::from_slice(&std::fs::read(prev.join("_state/files.json")).expect("files.json"))
            .unwrap();
    let table = state["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "consent_table")
        .expect("the snapshot recorded");
    let ids = table["identities"]
        .as_array()
        .expect("its identities recorded");
    assert_eq!(ids.len(), 1, "{table}");
    assert_eq!(ids[0]["file"], p(&snapshot), "{table}");
    let size = std::fs::metadata(&snapshot).unwrap().len();
    assert_eq!(ids[0]["identity"]["size"], size, "{table}");
    // One opt-in flipped to opt-out, chosen so that the file keeps its size to the byte (the
    // value is in its row group's dictionary already): only its identity can tell.
    let scratch = tempfile::tempdir().unwrap();
    let flipped = (0..world.members.len()).find(|&m| {
        let Some((Some("US"), Some("opt_in"), _)) = world.members[m] else {
            return false;
        };
        let mut w = world.clone();
        if let Some(x) = w.members[m].as_mut() {
            x.1 = Some("opt_out");
        }
        w.write(scratch.path());
        std::fs::metadata(scratch.path().join("snapshot.parquet"))
            .unwrap()
            .len()
            == size
    });
    let m = flipped.expect("a flip that keeps the snapshot's size");
    if let Some(x) = world.members[m].as_mut() {
        x.1 = Some("opt_out");
    }
    let bytes = std::fs::read(scratch.path().join("snapshot.parquet")).unwrap();
    assert_ne!(bytes, std::fs::read(&snapshot).unwrap());
    // In place: the same file, truncated and written again.
    std::fs::write(&snapshot, &bytes).unwrap();
    assert_eq!(std::fs::metadata(&snapshot).unwrap().len(), size);
    let (out, _) = reused_and_fresh(dir.path(), &prev);
    let r = &summary(&out)["reuse"];
    assert!(r["changed_keys"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["row_groups_recomputed"].as_u64().unwrap() >= 1, "{r}");
}

/// A new file beside an unchanged snapshot, and one of yesterday's outputs no longer as
/// recorded: the run may not load the snapshot for the new file's members only, for the file
/// whose outputs changed must be decided again with every member it holds.
#[test]
fn an_altered_previous_output_beside_a_new_file_is_decided_with_the_whole_snapshot() {
    let (dir, mut world) = first_night(29);
    let prev = dir.path().join("out-0");
    world.files.push(("part-new.parquet".into(), 4444, 150));
    world.write(dir.path());
    let (name, _, _) = &world.files[0];
    let data = prev.join("data").join(name);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(b"appended");
    std::fs::write(&data, bytes).unwrap();
    let (out, _) = reused_and_fresh(dir.path(), &prev);
    assert_eq!(
        summary(&out)["reuse"]["files_reused"],
        world.files.len() as u64 - 2
    );
}

/// A snapshot replaced while a run reads it: the hash the run would record (which a later
/// `--reuse` trusts instead of reading the rows again) might not be of the rows it decided
/// with. The run stops, retryable (75), and commits nothing.
#[test]
fn a_snapshot_replaced_while_it_is_read_stops_the_run() {
    let (dir, world) = first_night(31);
    let out = dir.path().join("out-1");
    let pause = dir.path().join("pause");
    let args = job_args("filter", dir.path(), p(&out), &["--progress", "never"]);
    let mut cmd = std::process::Command::new(bin());
    cmd.args(&args);
    let child = spawn_held(cmd, "join-read", &pause);
    // Tonight's export lands: one member's consent flipped (the inputs are as they were).
    let mut tonight = world.clone();
    let flipped = tonight
        .members
        .iter_mut()
        .flatten()
        .find(|m| m.1.is_some())
        .expect("a member with a consent");
    flipped.1 = Some(if flipped.1 == Some("opt_in") {
        "opt_out"
    } else {
        "opt_in"
    });
    tonight.write(dir.path());
    std::fs::remove_file(&pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("changed while this run read it"), "{err}");
    assert!(!out.join("_SUCCESS").exists());
    // Run again with --reuse of last night's output: what a fresh run writes.
    reused_and_fresh(dir.path(), &dir.path().join("out-0"));
}

/// A night that loads the snapshot for a new file's members only, whose other files then turn
/// out not reusable after all (PREV_OUT's outputs changed while it loaded): those files would
/// be decided without their members' snapshot rows. The run stops instead, retryable (75),
/// and commits nothing; run again, it processes them with the whole snapshot.
#[test]
fn previous_outputs_that_change_during_a_narrowed_load_stop_the_run() {
    let (dir, mut world) = first_night(23);
    let prev = dir.path().join("out-0");
    world.files.push(("part-new.parquet".into(), 4343, 150));
    world.write(dir.path());
    let out = dir.path().join("out-1");
    let pause = dir.path().join("pause");
    let args = job_args(
        "filter",
        dir.path(),
        p(&out),
        &["--progress", "never", "--reuse", p(&prev)],
    );
    let mut cmd = std::process::Command::new(bin());
    cmd.args(&args);
    let child = spawn_held(cmd, "snapshot-loaded", &pause);
    // One of yesterday's data files is no longer what PREV_OUT recorded.
    let (name, _, _) = &world.files[0];
    let data = prev.join("data").join(name);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(b"appended");
    std::fs::write(&data, bytes).unwrap();
    std::fs::remove_file(&pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(
        err.contains(name.as_str()) && err.contains("run again"),
        "{err}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // Run again: the file is processed afresh, with the whole snapshot.
    let (out, _) = reused_and_fresh(dir.path(), &prev);
    assert_eq!(
        summary(&out)["reuse"]["files_reused"],
        world.files.len() as u64 - 2
    );
}

#[test]
fn one_opt_out_recomputes_only_the_files_holding_that_member() {
    let (dir, mut world) = first_night(11);
    let prev = dir.path().join("out-0");
    // Member 3 opts out; which files hold them is read from the corpus itself.
    world.members[3] = Some((Some("US"), Some("opt_out"), None));
    world.write(dir.path());
    let (out, _) = reused_and_fresh(dir.path(), &prev);
    let holding: u64 = world
        .files
        .iter()
        .filter(|(name, _, _)| {
            i64s(&read_all(&dir.path().join("in").join(name)), "member_id").contains(&Some(3))
        })
        .count() as u64;
    let r = &summary(&out)["reuse"];
    assert_eq!(r["changed_keys"], 1, "{r}");
    assert_eq!(r["files_reused"], world.files.len() as u64 - holding, "{r}");
    // Inside the files holding the member, the row groups without them are copied from
    // PREV_OUT rather than encoded again.
    let rgs = |only_holding: bool| -> u64 {
        world
            .files
            .iter()
            .map(|(name, _, _)| dir.path().join("in").join(name))
            .filter(|path| i64s(&read_all(path), "member_id").contains(&Some(3)) == only_holding)
            .map(|path| {
                use parquet::file::reader::FileReader;
                let file = std::fs::File::open(path).unwrap();
                let reader = parquet::file::serialized_reader::SerializedFileReader::new(file);
                reader.unwrap().metadata().num_row_groups() as u64
            })
            .sum()
    };
    let (reused, recomputed) = (
        r["row_groups_reused"].as_u64().unwrap(),
        r["row_groups_recomputed"].as_u64().unwrap(),
    );
    assert_eq!(reused + recomputed, rgs(true) + rgs(false), "{r}");
    assert!(
        reused > rgs(false),
        "no row group copied inside a file: {r}"
    );
    // PREV_OUT's member filters rule out most row groups: only those holding the member (and
    // a rare false "maybe") have their user ids read.
    let holding_row_groups: u64 = world
        .files
        .iter()
        .map(|(name, _, _)| {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let path = dir.path().join("in").join(name);
            let groups =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
                    .metadata()
                    .num_row_groups();
            (0..groups)
                .filter(|g| {
                    let file = std::fs::File::open(&path).unwrap();
                    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap()
                        .with_row_groups(vec![*g])
                        .build()
                        .unwrap()
                        .map(|b| b.unwrap())
                        .collect();
                    batches
                        .iter()
                        .any(|b| i64s(b, "member_id").contains(&Some(3)))
                })
                .count() as u64
        })
        .sum();
    let searched = r["row_groups_searched"].as_u64().unwrap();
    assert!(holding_row_groups > 0);
    assert!(
        searched >= holding_row_groups && searched < rgs(true) + rgs(false),
        "{holding_row_groups} row groups hold the member: {r}"
    );
}

#[test]
fn a_previous_output_that_cannot_vouch_for_itself_is_not_used() {
    let (dir, mut world) = first_night(5);
    let prev = dir.path().join("out-0");
    // The snapshot changes, so the member digests are needed.
    world.members[1] = Some((Some("BR"), Some("opt_in"), None));
    world.write(dir.path());
    let fresh = dir.path().join("fresh");
    assert_eq!(filter(dir.path(), &fresh, &[]).0, 0);
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::process::Command::new("cp")
            .args(["-a", p(&prev), p(&to)])
            .status()
            .unwrap();
        to
    };
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "truncated",
            Box::new(|p: &Path| {
                let k = p.join("_state/keys.parquet");
                let b = std::fs::read(&k).unwrap();
                std::fs::write(&k, &b[..b.len() / 2]).unwrap();
            }),
            "not as recorded",
        ),
        (
            "garbled",
            Box::new(|p: &Path| {
                std::fs::write(p.join("_state/files.json"), "{not json").unwrap();
            }),
            "does not parse",
        ),
        (
            "unfinished",
            Box::new(|p: &Path| {
                std::fs::remove_file(p.join("_SUCCESS")).unwrap();
            }),
            "no _SUCCESS",
        ),
        (
            "stateless",
            Box::new(|p: &Path| {
                std::fs::remove_dir_all(p.join("_state")).unwrap();
            }),
            "has no _state/files.json",
        ),
        (
            "other-policy",
            Box::new(|p: &Path| {
                let f = p.join("_state/files.json");
                let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
                v["header"]["policy_sha256"] = Value::from("0".repeat(64));
                std::fs::write(&f, v.to_string()).unwrap();
            }),
            "another policy",
        ),
    ];
    for (name, spoil, says) in cases {
        let spoiled = copy(name);
        spoil(&spoiled);
        let out = dir.path().join(format!("out-{name}"));
        let (code, err) = filter(dir.path(), &out, &["--reuse", p(&spoiled)]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(
            err.contains("--reuse: ") && err.contains(says),
            "{name}: {err}"
        );
        assert!(
            err.contains("processing every file afresh"),
            "{name}: {err}"
        );
        let r = &summary(&out)["reuse"];
        assert_eq!(r["files_reused"], 0, "{name}");
        assert!(
            r["fallback"].as_str().unwrap().contains(says),
            "{name}: {r}"
        );
        assert_same_as_fresh(&out, &fresh);
    }
    // A data file of PREV_OUT cut short is not taken either (that file is processed afresh).
    let spoiled = copy("short-data");
    let (name, _, _) = &world.files[0];
    let f = spoiled.join("data").join(name);
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 1]).unwrap();
    world.write(dir.path()); // unchanged
    let out = dir.path().join("out-short-data");
    assert_eq!(filter(dir.path(), &out, &["--reuse", p(&spoiled)]).0, 0);
    assert_same_as_fresh(&out, &fresh);
}

/// `_state/` records written before local outputs got XXH3-128 name a SHA-256: they are checked
/// by it, so such a PREV_OUT is reused as before and one altered under them is caught; a record
/// with no checksum at all vouches for nothing.
#[test]
fn records_that_name_a_sha256_are_checked_by_it() {
    use sha2::{Digest, Sha256};
    let (dir, mut world) = first_night(11);
    let prev = dir.path().join("out-0");
    let files_json = prev.join("_state/files.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&files_json).unwrap()).unwrap();
    let as_sha256 = |record: &mut Value, file: PathBuf| {
        let hex: String = Sha256::digest(std::fs::read(&file).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let fields = record.as_object_mut().unwrap();
        assert!(fields.remove("xxh3").is_some(), "{file:?}: {fields:?}");
        fields.insert("sha256".into(), Value::from(hex));
    };
    as_sha256(&mut state["keys"], prev.join("_state/keys.parquet"));
    for e in state["entries"].as_array_mut().unwrap() {
        let rel = e["rel"].as_str().unwrap().to_owned();
        as_sha256(&mut e["data"], prev.join("data").join(&rel));
        as_sha256(&mut e["excluded"], prev.join("excluded").join(&rel));
        if !e["decisions"].is_null() {
            as_sha256(
                &mut e["decisions"],
                prev.join("_state/decisions").join(&rel),
            );
        }
    }
    std::fs::write(&files_json, state.to_string()).unwrap();

    // The snapshot changes, so the night checks keys.parquet against its record.
    world.members[1] = Some((Some("BR"), Some("opt_in"), None));
    world.write(dir.path());
    let fresh = dir.path().join("fresh");
    assert_eq!(filter(dir.path(), &fresh, &[]).0, 0);
    let spoiled = |name: &str, spoil: &dyn Fn(&Path)| -> (Value, String) {
        let copy = dir.path().join(name);
        let status = std::process::Command::new("cp")
            .args(["-a", p(&prev), p(&copy)])
            .status()
            .unwrap();
        assert!(status.success());
        spoil(&copy);
        let out = dir.path().join(format!("out-{name}"));
        let (code, err) = filter(dir.path(), &out, &["--reuse", p(&copy)]);
        assert_eq!(code, 0, "{name}: {err}");
        assert_same_as_fresh(&out, &fresh);
        (summary(&out)["reuse"].clone(), err)
    };

    let (r, err) = spoiled("as-recorded", &|_| {});
    assert!(r["fallback"].is_null(), "{r} {err}");
    assert_eq!(r["changed_keys"], 1, "{r}");
    // The member is in every file; the rest of each comes from PREV_OUT, decisions included
    // (their records checked by SHA-256 too).
    assert!(r["row_groups_reused"].as_u64().unwrap() > 0, "{r}");
    assert!(r["decisions_reused"].as_u64().unwrap() > 0, "{r}");

    // Same size, one byte changed: SHA-256 tells.
    let (r, err) = spoiled("altered", &|copy| {
        let k = copy.join("_state/keys.parquet");
        let mut b = std::fs::read(&k).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        std::fs::write(&k, b).unwrap();
    });
    assert!(err.contains("not as recorded"), "{err}");
    assert_eq!(r["row_groups_reused"], 0, "{r}");

    let (r, err) = spoiled("unchecked", &|copy| {
        let f = copy.join("_state/files.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        v["keys"].as_object_mut().unwrap().remove("sha256");
        std::fs::write(&f, v.to_string()).unwrap();
    });
    assert!(err.contains("no checksum recorded"), "{err}");
    assert_eq!(r["row_groups_reused"], 0, "{r}");
}

#[test]
fn reuse_replaces_its_own_previous_output_with_overwrite() {
    let (dir, world) = first_night(3);
    let out = dir.path().join("out-0");
    let before = outputs(&out);
    let (code, err) = filter(dir.path(), &out, &["--reuse", p(&out), "--overwrite"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        summary(&out)["reuse"]["files_reused"],
        world.files.len() as u64
    );
    assert!(outputs(&out) == before);
    // Without --overwrite the output is refused before anything is read.
    let (code, err) = filter(dir.path(), &out, &["--reuse", p(&out)]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_dry_run_says_it_does_not_reuse() {
    let (dir, _) = first_night(23);
    let prev = dir.path().join("out-0");
    let (code, err) = filter(
        dir.path(),
        &dir.path().join("never-written"),
        &["--dry-run", "--reuse", p(&prev)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--reuse is not used by a dry run"), "{err}");
    assert!(!dir.path().join("never-written").exists());
}

#[test]
fn a_first_night_without_a_previous_output_runs_afresh() {
    let (dir, _) = first_night(9);
    let out = dir.path().join("out-1");
    let (code, err) = filter(
        dir.path(),
        &out,
        &["--reuse", p(&dir.path().join("nothing-here"))],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("is not a complete output (no _SUCCESS)"),
        "{err}"
    );
    assert_same_as_fresh(&out, &dir.path().join("out-0"));
}

#[test]
fn another_pseudonymization_key_is_another_job() {
    let (dir, _) = first_night(13);
    let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
    std::fs::write(&k1, [1u8; 32]).unwrap();
    std::fs::write(&k2, [2u8; 32]).unwrap();
    let a = dir.path().join("a");
    assert_eq!(
        filter(dir.path(), &a, &["--pseudonymize-user-ids", p(&k1)]).0,
        0
    );
    let b = dir.path().join("b");
    let (code, err) = filter(
        dir.path(),
        &b,
        &["--pseudonymize-user-ids", p(&k2), "--reuse", p(&a)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("other output options"), "{err}");
    let fresh = dir.path().join("fresh");
    assert_eq!(
        filter(dir.path(), &fresh, &["--pseudonymize-user-ids", p(&k2)]).0,
        0
    );
    assert_same_as_fresh(&b, &fresh);
    // The key itself is never recorded.
    let state = std::fs::read_to_string(a.join("_state/files.json")).unwrap();
    assert!(!state.contains("0101010101"), "{state}");
}

/// `verify` of `out` against the world in `dir`: its exit code and what it said.
fn verify(dir: &Path, out: &Path) -> (i32, String) {
    let list = format!("erasure={}", dir.join("erasure.txt").display());
    let (policy, snapshot) = (dir.join("policy.yaml"), dir.join("snapshot.parquet"));
    let (code, stdout, err) = run(&[
        "verify",
        "--policy",
        p(&policy),
        "--consent-table",
        p(&snapshot),
        "--user-list",
        &list,
        p(out),
    ]);
    (code, stdout + &err)
}

/// A world of one big file (one row group) and 20,000 members in `region`, all opted in:
/// members post a few times each, as on a real platform, so a member's rows are in few pages.
fn big_world(seed: u64, region: &'static str) -> (tempfile::TempDir, World) {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(&mut rng, 20_000);
    world.files = vec![("big.parquet".into(), seed + 70, BIG_FILE_ROWS)];
    world.erased.clear();
    for m in world.members.iter_mut() {
        *m = Some((Some(region), Some("opt_in"), None));
    }
    world.write(dir.path());
    (dir, world)
}

/// The snapshot members the big file holds, in the order of their first row.
fn members_in_big_file(dir: &Path, world: &World) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    i64s(&read_all(&dir.join("in/big.parquet")), "member_id")
        .into_iter()
        .flatten()
        .map(|m| m as usize)
        .filter(|m| *m < world.members.len() && seen.insert(*m))
        .collect()
}

/// The rows of the big file whose member is one of `members`.
fn rows_of(dir: &Path, members: &[usize]) -> usize {
    i64s(&read_all(&dir.join("in/big.parquet")), "member_id")
        .into_iter()
        .filter(|m| m.is_some_and(|m| members.contains(&(m as usize))))
        .count()
}

/// The next night of `world` in `dir`: `out-1` reusing `prev`, `fresh-1` a fresh run, and the
/// reuse record.
fn next_night(dir: &Path, world: &World, prev: &Path) -> (PathBuf, PathBuf, Value) {
    world.write(dir);
    let out = dir.join("out-1");
    let fresh = dir.join("fresh-1");
    let (code, err) = filter(dir, &out, &["--reuse", p(prev)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(filter(dir, &fresh, &[]).0, 0);
    let r = summary(&out)["reuse"].clone();
    (out, fresh, r)
}

/// A night's reuse record `r` says one member changed, member `m` of the big file: the file is
/// not taken whole, and every row's decision but `m`'s is PREV_OUT's.
fn assert_one_member_decided_again(r: &Value, dir: &Path, m: usize) {
    assert_eq!(r["changed_keys"], 1, "{r}");
    assert_eq!(r["files_reused"], 0, "the file holds a changed member: {r}");
    assert_eq!(
        r["decisions_reused"].as_u64().unwrap(),
        (BIG_FILE_ROWS - rows_of(dir, &[m])) as u64,
        "{r}"
    );
}

/// A member whose snapshot row changed in a way that changes none of its rows' decisions: its
/// rows alone are decided again, and the file's three outputs are PREV_OUT's own files (hard
/// links), as a fresh run's bytes.
#[test]
fn a_change_that_flips_no_decision_takes_the_previous_files_whole() {
    use std::os::unix::fs::MetadataExt;
    let (dir, mut world) = big_world(31, "US");
    let prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    let m = members_in_big_file(dir.path(), &world)[0];
    // An objection dated after every post: the digest changes, no decision does.
    world.members[m] = Some((Some("US"), Some("opt_in"), Some(i64::MAX / 4)));
    let (out, fresh, r) = next_night(dir.path(), &world, &prev);
    assert_one_member_decided_again(&r, dir.path(), m);
    assert_eq!(same_outputs(&out, &fresh).unwrap(), Vec::<String>::new());
    assert_eq!(comparable(&out), comparable(&fresh));
    for sub in ["data", "excluded", "_state/decisions"] {
        let ino = |o: &Path| {
            std::fs::metadata(o.join(sub).join("big.parquet"))
                .unwrap()
                .ino()
        };
        assert_eq!(
            ino(&out),
            ino(&prev),
            "{sub}/big.parquet is not PREV_OUT's file"
        );
    }
}

/// Under a policy of region and consent rules alone, a member whose consent flips where its
/// region excludes it anyway is no changed key: nothing is searched and every file is taken
/// whole. One that moves to another paused region (the same rule, another region in its
/// manifest rows) is one, and so is one that moves where its consent decides; their rows alone
/// are decided again. Every night writes what a fresh run writes.
#[test]
fn a_flip_that_moves_no_rule_is_no_changed_key_under_a_region_and_consent_policy() {
    let (dir, mut world) = big_world(41, "GB");
    world.policy = policy_by_region_and_consent();
    world.write(dir.path());
    let prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    let members = members_in_big_file(dir.path(), &world);
    let (a, b) = (members[0], members[1]);
    world.members[a] = Some((Some("GB"), Some("opt_out"), Some(1_500)));
    let (out, fresh, r) = next_night(dir.path(), &world, &prev);
    assert_eq!(r["changed_keys"], 0, "{r}");
    assert_eq!(r["row_groups_searched"], 0, "{r}");
    assert_eq!(r["files_reused"], 1, "{r}");
    assert_eq!(same_outputs(&out, &fresh).unwrap(), Vec::<String>::new());
    assert_eq!(comparable(&out), comparable(&fresh));
    drop((out, fresh));
    // The next nights: a member moves to another paused region (the same rule, but its rows'
    // manifest rows name the new region), then one moves where opting in lets its rows
    // through. Each is a changed key, whose rows alone are decided again.
    for (night, (m, region)) in [(b, "ch"), (members[2], "US")].into_iter().enumerate() {
        // Last night's output is tonight's PREV_OUT.
        let prev = dir.path().join(format!("out-{}", night + 2));
        std::fs::rename(out_of(dir.path()), &prev).unwrap();
        std::fs::remove_dir_all(dir.path().join("fresh-1")).unwrap();
        world.members[m] = Some((Some(region), Some("opt_in"), None));
        let (out, fresh, r) = next_night(dir.path(), &world, &prev);
        assert_one_member_decided_again(&r, dir.path(), m);
        assert!(same_outputs(&out, &fresh).is_ok(), "{region}");
        assert_eq!(comparable(&out), comparable(&fresh), "{region}");
    }
}

/// Where [`next_night`] writes the reusing run.
fn out_of(dir: &Path) -> PathBuf {
    dir.join("out-1")
}

/// PREV_OUT's record of a file's decisions that is not as `_state/` says: every row of the
/// file is decided again, and the output is still a fresh run's.
#[test]
fn an_altered_decisions_record_is_not_used() {
    let (dir, mut world) = big_world(37, "US");
    let prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    let record = prev.join("_state/decisions/big.parquet");
    let mut bytes = std::fs::read(&record).unwrap();
    // Same size, one byte of the first page changed.
    bytes[8] ^= 0x55;
    std::fs::write(&record, bytes).unwrap();
    let m = members_in_big_file(dir.path(), &world)[0];
    world.members[m] = Some((Some("US"), Some("opt_out"), None));
    let (out, fresh, r) = next_night(dir.path(), &world, &prev);
    assert_eq!(r["decisions_reused"], 0, "{r}");
    same_outputs(&out, &fresh).unwrap();
    assert_eq!(comparable(&out), comparable(&fresh));
}

/// Night `night` in `dir`: `out-N` reusing `prev` with two threads, checked byte for byte
/// against the same run with one (the same PREV_OUT gives the same bytes whatever the thread
/// count), and `fresh-N`, a fresh run.
fn night_with_both_thread_counts(dir: &Path, prev: &Path, night: usize) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("out-{night}"));
    let fresh = dir.join(format!("fresh-{night}"));
    let (code, err) = filter(dir, &out, &["--reuse", p(prev), "--threads", "2"]);
    assert_eq!(code, 0, "{err}");
    let one = dir.join(format!("one-thread-{night}"));
    let (code, err) = filter(dir, &one, &["--reuse", p(prev), "--threads", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        outputs(&one) == outputs(&out),
        "night {night}: --threads 1 and 2 differ"
    );
    assert_eq!(filter(dir, &fresh, &[]).0, 0);
    (out, fresh)
}

/// A member whose decision flips inside a big row group: the pages of its text and topic
/// columns away from their rows are copied from PREV_OUT, the output holds what a fresh run's
/// holds, and the next night splices the spliced output again.
#[test]
fn a_flipped_decision_splices_the_pages_around_it() {
    let (dir, mut world) = big_world(23, "US");
    let mut prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    // Night 1: member a opts out (rows leave); night 2: member a opts in again and member b
    // is erased (rows come back, others leave), each reusing the night before.
    let (a, b) = match members_in_big_file(dir.path(), &world)[..] {
        [a, b, ..] => (a, b),
        _ => panic!("the big file holds fewer than two members"),
    };
    for night in 1..=2 {
        if night == 1 {
            world.members[a] = Some((Some("US"), Some("opt_out"), None));
        } else {
            world.members[a] = Some((Some("US"), Some("opt_in"), None));
            world.erased.push(b as i64);
        }
        world.write(dir.path());
        let (out, fresh) = night_with_both_thread_counts(dir.path(), &prev, night);
        let r = &summary(&out)["reuse"];
        assert_eq!(r["row_groups_spliced"], 1, "night {night}: {r}");
        // Only the changed members' rows were decided again; the others' decisions are
        // PREV_OUT's record.
        let changed: &[usize] = if night == 1 { &[a] } else { &[a, b] };
        assert_eq!(
            r["decisions_reused"].as_u64().unwrap(),
            (BIG_FILE_ROWS - rows_of(dir.path(), changed)) as u64,
            "night {night}: {r}"
        );
        // Text's pages away from the flipped rows (about 14 pages, a member's rows in 2 or 3).
        assert!(
            r["pages_reused"].as_u64().unwrap() >= 5,
            "night {night}: {r}"
        );
        let differ = same_outputs(&out, &fresh).unwrap();
        assert_eq!(differ, vec!["big.parquet".to_string()], "night {night}");
        assert_eq!(comparable(&out), comparable(&fresh));
        let (code, said) = verify(dir.path(), &out);
        assert_eq!(code, 0, "night {night}: verify: {said}");
        crate::writers::keep_for_crosscheck(&out, &format!("reuse-spliced-{night}"));
        prev = out;
    }
}

/// A big world (seed 43, members in the US) whose even members opted out: half the big file's
/// rows are excluded, its manifest row group ~30,000 rows in pages of 4,096.
fn half_opted_out_world() -> (tempfile::TempDir, World) {
    let (dir, mut world) = big_world(43, "US");
    for (i, m) in world.members.iter_mut().enumerate() {
        if i % 2 == 0 {
            *m = Some((Some("US"), Some("opt_out"), None));
        }
    }
    world.write(dir.path());
    (dir, world)
}

/// A big file half of whose rows are excluded (half its members opted out): its manifest row
/// group holds ~30,000 rows, in pages of 4,096. One night a member opts in (rows leave the
/// manifest), another opts out (rows come) and a third, opted out, moves to a paused region
/// (excluded both nights, under another rule): only the manifest pages around their rows are
/// encoded again, the others are PREV_OUT's, and the manifest holds what a fresh run's holds.
/// The next night splices the spliced manifest again.
#[test]
fn a_flipped_decision_splices_the_manifest_pages_around_it() {
    let (dir, mut world) = half_opted_out_world();
    let mut prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    let members = members_in_big_file(dir.path(), &world);
    let opted_in: Vec<usize> = members.iter().copied().filter(|m| m % 2 == 1).collect();
    let opted_out: Vec<usize> = members.iter().copied().filter(|m| m % 2 == 0).collect();
    for night in 1..=2 {
        let (a, b, c) = (opted_in[night], opted_out[night], opted_out[night + 10]);
        world.members[a] = Some((Some("US"), Some("opt_out"), None));
        world.members[b] = Some((Some("US"), Some("opt_in"), None));
        world.members[c] = Some((Some("DE"), Some("opt_out"), None));
        world.write(dir.path());
        let (out, fresh) = night_with_both_thread_counts(dir.path(), &prev, night);
        let r = &summary(&out)["reuse"];
        let excluded = i64s(&read_all(&out.join("excluded/big.parquet")), "row").len();
        assert!(
            excluded > 6 * 4096,
            "night {night}: {excluded} rows excluded"
        );
        // Three members' rows are in a few of the ~8 pages of each of the 6 columns.
        let copied = r["manifest_pages_reused"].as_u64().unwrap();
        assert!(copied >= 6 * 3, "night {night}: {r}");
        assert_eq!(
            same_outputs(&out, &fresh).unwrap(),
            vec!["big.parquet".to_string()],
            "night {night}"
        );
        assert_ne!(
            std::fs::read(out.join("excluded/big.parquet")).unwrap(),
            std::fs::read(fresh.join("excluded/big.parquet")).unwrap(),
            "night {night}: the manifest was not spliced"
        );
        assert_eq!(comparable(&out), comparable(&fresh));
        let (code, said) = verify(dir.path(), &out);
        assert_eq!(code, 0, "night {night}: verify: {said}");
        crate::writers::keep_for_crosscheck(&out, &format!("reuse-manifest-spliced-{night}"));
        prev = out;
    }
}

/// The pages of `column` in `file`, by its offset index.
fn pages_of(file: &Path, column: &str) -> usize {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
        std::fs::File::open(file).unwrap(),
        parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build(),
    )
    .unwrap();
    let meta = reader.metadata();
    let index = meta.page_index().expect("a page index");
    let mut pages = 0;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let c = (rg.columns().iter())
            .position(|c| c.column_path().string() == column)
            .unwrap();
        pages += index.offset_index(g, c).unwrap().page_locations().len();
    }
    pages
}

/// Night after night, the rows that come into a spliced manifest make pages of their own beside
/// the copied ones, and the pages of its chunks multiply (~35 bytes each a column): a chunk that
/// would hold more than twice the pages of a fresh run's is encoded whole. Six nights of three
/// members opting out each, every night reusing the one before: without the bound, the pages of
/// the big file's manifest columns pass twice a fresh run's by the fourth night (18 against 8).
#[test]
fn a_manifest_spliced_night_after_night_keeps_at_most_twice_a_fresh_runs_pages() {
    let (dir, mut world) = half_opted_out_world();
    let mut prev = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &prev, &[]).0, 0);
    let members = members_in_big_file(dir.path(), &world);
    let opted_in: Vec<usize> = members.iter().copied().filter(|m| m % 2 == 1).collect();
    let mut spliced = 0;
    for night in 1..=6 {
        for m in &opted_in[night * 3..night * 3 + 3] {
            world.members[*m] = Some((Some("US"), Some("opt_out"), None));
        }
        world.write(dir.path());
        let out = dir.path().join(format!("out-{night}"));
        let fresh = dir.path().join(format!("fresh-{night}"));
        let (code, err) = filter(dir.path(), &out, &["--reuse", p(&prev)]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(filter(dir.path(), &fresh, &[]).0, 0);
        same_outputs(&out, &fresh).unwrap();
        let manifest = |o: &Path| o.join("excluded/big.parquet");
        for column in ["row", "rule", "user_id"] {
            let (now, a_fresh) = (
                pages_of(&manifest(&out), column),
                pages_of(&manifest(&fresh), column),
            );
            assert!(
                now <= 2 * a_fresh,
                "night {night}: {column} in {now} pages, a fresh run's in {a_fresh}"
            );
        }
        if summary(&out)["reuse"]["manifest_pages_reused"]
            .as_u64()
            .unwrap()
            > 0
        {
            spliced += 1;
        }
        crate::writers::keep_for_crosscheck(&out, &format!("reuse-manifest-pages-{night}"));
        prev = out;
    }
    assert!(
        spliced >= 3,
        "the manifest was spliced {spliced} nights of 6"
    );
}

/// At a codec level other than the parquet crate's default (`zstd:3`, `gzip:9`) the text is
/// spliced as at the default: a file does not record the level its pages were written at, so
/// PREV_OUT's chunk reads back as zstd 1 (gzip 6), and a comparison of the levels made every
/// night at `zstd:3` encode its changed row groups' text whole (no page copied).
#[test]
fn a_level_the_file_does_not_record_is_spliced_as_the_default() {
    for compression in ["zstd:3", "gzip:9"] {
        let (dir, mut world) = big_world(23, "US");
        let out0 = dir.path().join("out-0");
        assert_eq!(
            filter(dir.path(), &out0, &["--compression", compression]).0,
            0
        );
        let a = members_in_big_file(dir.path(), &world)[0];
        world.members[a] = Some((Some("US"), Some("opt_out"), None));
        world.write(dir.path());
        let out = dir.path().join("out-1");
        let args = ["--reuse", p(&out0), "--compression", compression];
        let (code, err) = filter(dir.path(), &out, &args);
        assert_eq!(code, 0, "{compression}: {err}");
        let fresh = dir.path().join("fresh-1");
        assert_eq!(
            filter(dir.path(), &fresh, &["--compression", compression]).0,
            0
        );
        let r = &summary(&out)["reuse"];
        assert_eq!(r["row_groups_spliced"], 1, "{compression}: {r}");
        assert!(
            r["pages_reused"].as_u64().unwrap() >= 2,
            "{compression}: the text was not spliced: {r}"
        );
        assert_eq!(
            same_outputs(&out, &fresh).unwrap(),
            vec!["big.parquet".to_string()],
            "{compression}"
        );
        let (code, said) = verify(dir.path(), &out);
        assert_eq!(code, 0, "{compression}: verify: {said}");
        let tag = compression.replace(':', "-");
        crate::writers::keep_for_crosscheck(&out, &format!("reuse-spliced-{tag}"));
    }
}

/// The integer columns' chunk statistics of every row group of `file`, against the values: each
/// min and max the least and greatest value the chunk holds (what a reader that answers `min()`
/// from statistics, as DuckDB does, then answers). The names of the columns checked.
fn integer_bounds_are_the_values(file: &Path) -> Vec<String> {
    use parquet::file::reader::FileReader;
    use parquet::file::statistics::Statistics;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap();
    let batch = read_all(file);
    let meta = reader.metadata();
    let mut checked = Vec::new();
    let mut first = 0usize;
    for rg in meta.row_groups() {
        let rows = rg.num_rows() as usize;
        for c in rg.columns() {
            let name = c.column_path().string();
            let bounds = match c.statistics() {
                Some(Statistics::Int64(s)) => (s.min_opt().copied(), s.max_opt().copied()),
                Some(Statistics::Int32(s)) => (
                    s.min_opt().map(|v| i64::from(*v)),
                    s.max_opt().map(|v| i64::from(*v)),
                ),
                _ => continue,
            };
            let values: Vec<i64> = match batch.column_by_name(&name).unwrap().data_type() {
                DataType::Int64 => i64s(&batch, &name),
                _ => continue,
            }
            .into_iter()
            .skip(first)
            .take(rows)
            .flatten()
            .collect();
            let actual = (values.iter().min().copied(), values.iter().max().copied());
            assert_eq!(bounds, actual, "{}: column {name}", file.display());
            checked.push(name);
        }
        first += rows;
    }
    checked
}

/// The data pages of `file`'s chunks that have a dictionary page: how many are dictionary ids,
/// and the others (`column: encoding`).
fn pages_beside_a_dictionary(file: &Path) -> (usize, Vec<String>) {
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap();
    let (mut ids, mut others) = (0, Vec::new());
    for i in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(i).unwrap();
        for c in 0..rg.num_columns() {
            let meta = rg.metadata().column(c);
            if meta.dictionary_page_offset().is_none() {
                continue;
            }
            let name = meta.column_path().string();
            let mut pages = rg.get_column_page_reader(c).unwrap();
            while let Some(page) = pages.get_next_page().unwrap() {
                let encoding = match page {
                    Page::DictionaryPage { .. } => continue,
                    Page::DataPage { encoding, .. } | Page::DataPageV2 { encoding, .. } => encoding,
                };
                match encoding {
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => ids += 1,
                    other => others.push(format!("{name}: {other}")),
                }
            }
        }
    }
    (ids, others)
}

/// Spliced manifests chained over nights keep their integer columns' chunk bounds the values'
/// own. Night 1 the member of the manifest's first (or last) row opts in, so the least (or
/// greatest) `row` leaves; night 2 only another member, all of whose rows lie between, opts
/// out. A bound night 1 kept from the row that left, read back night 2 as exact, made DuckDB
/// answer `min(row)` with a row no longer excluded (found in review).
/// And the new pages of a chunk with a dictionary page (rule, region, source file, the integer
/// user ids) are ids into it, extended with the user ids that come (night 2), as a fresh run's
/// pages are: written plain, they grew the manifest night after night.
#[test]
fn chained_spliced_manifests_keep_their_integer_bounds_and_dictionaries() {
    let (dir, mut world) = half_opted_out_world();
    let out0 = dir.path().join("out-0");
    assert_eq!(filter(dir.path(), &out0, &[]).0, 0);
    let rows0: Vec<i64> = i64s(&read_all(&out0.join("excluded/big.parquet")), "row")
        .into_iter()
        .flatten()
        .collect();
    let (first, last) = (
        *rows0.iter().min().unwrap() as usize,
        *rows0.iter().max().unwrap() as usize,
    );
    let members = i64s(&read_all(&dir.path().join("in/big.parquet")), "member_id");
    let n = world.members.len();
    let member_of = |r: usize| members[r].map(|m| m as usize).filter(|m| *m < n);
    let a = member_of(first)
        .or_else(|| member_of(last))
        .expect("a member's row is first or last");
    world.members[a] = Some((Some("US"), Some("opt_in"), None));
    let rows_of = |m: usize| -> Vec<usize> {
        let of = |(r, x): (usize, &Option<i64>)| (*x == Some(m as i64)).then_some(r);
        members.iter().enumerate().filter_map(of).collect()
    };
    let b = (0..n)
        .filter(|m| m % 2 == 1)
        .find(|m| {
            let r = rows_of(*m);
            !r.is_empty() && r.iter().all(|r| *r > first && *r < last)
        })
        .expect("an opted-in member inside");
    let mut prev = out0;
    for night in 1..=2 {
        if night == 2 {
            world.members[b] = Some((Some("US"), Some("opt_out"), None));
        }
        world.write(dir.path());
        let (out, fresh) = night_with_both_thread_counts(dir.path(), &prev, night);
        let r = &summary(&out)["reuse"];
        assert!(
            r["manifest_pages_reused"].as_u64().unwrap() > 0,
            "night {night}: the manifest was not spliced: {r}"
        );
        assert_eq!(
            same_outputs(&out, &fresh).unwrap(),
            vec!["big.parquet".to_string()],
            "night {night}"
        );
        let manifest = out.join("excluded/big.parquet");
        let checked = integer_bounds_are_the_values(&manifest);
        assert!(checked.contains(&"row".to_string()), "{checked:?}");
        let (ids, others) = pages_beside_a_dictionary(&manifest);
        assert!(
            ids > 0 && others.is_empty(),
            "night {night}: {ids} {others:?}"
        );
        crate::writers::keep_for_crosscheck(&out, &format!("reuse-manifest-bounds-{night}"));
        prev = out;
    }
}

/// Two nights of a big world whose input is in a bucket of a real S3 server (the outputs are
/// local): night 1 makes `change` to the first member the big file holds, with `--reuse` of night
/// 0, and a fresh run beside it. Gives night 1's summary, its output and the fresh one's, the
/// input's size and the bytes of its text chunks.
struct BucketNight {
    summary: Value,
    out: PathBuf,
    fresh: PathBuf,
    size: u64,
    text: u64,
    _dir: tempfile::TempDir,
}

fn bucket_night(
    seed: u64,
    region: &'static str,
    bucket: &str,
    change: impl FnOnce(&mut World, usize),
) -> BucketNight {
    let s3 = crate::s3::server();
    let bucket = s3.bucket(bucket);
    let (dir, mut world) = big_world(seed, region);
    let file = dir.path().join("in/big.parquet");
    crate::s3::put(
        &format!("{bucket}/in/big.parquet"),
        &std::fs::read(&file).unwrap(),
    );
    let in_bucket = |out: &Path, extra: &[&str]| {
        let extra = [&["--progress", "never"], extra].concat();
        let mut args = job_args("filter", dir.path(), p(out), &extra);
        *args.last_mut().unwrap() = format!("{bucket}/in");
        let (code, _, err) = s3.run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        assert_eq!(code, 0, "{err}");
    };
    let prev = dir.path().join("night-0");
    in_bucket(&prev, &[]);
    let m = members_in_big_file(dir.path(), &world)[0];
    change(&mut world, m);
    world.write(dir.path());
    let out = dir.path().join("night-1");
    in_bucket(&out, &["--reuse", p(&prev)]);
    let fresh = dir.path().join("fresh-1");
    in_bucket(&fresh, &[]);
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let meta = parquet::file::reader::FileReader::metadata(&reader);
    let text: u64 = meta
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .filter(|c| c.column_path().string() == "text")
        .map(|c| c.compressed_size() as u64)
        .sum();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        text > size / 2,
        "the text is most of the file: {text} of {size}"
    );
    BucketNight {
        summary: summary(&out),
        out,
        fresh,
        size,
        text,
        _dir: dir,
    }
}

/// An input in a bucket (a real S3 server), one of whose members changes without any decision
/// flipping: finding the member's rows reads the row group's user ids, and only those (and the
/// other columns the policy reads) are fetched, never the text. Before, reading one column
/// checked, and so fetched, every chunk of the row group.
#[test]
fn finding_a_changed_members_rows_in_a_bucket_fetches_no_text() {
    // A member the file holds moves between two regions the policy allows.
    let n = bucket_night(31, "BR", "search", |world, m| {
        world.members[m] = Some((Some("US"), Some("opt_in"), None));
    });
    let r = &n.summary["reuse"];
    assert_eq!(r["changed_keys"], 1, "{r}");
    assert_eq!(r["row_groups_searched"], 1, "{r}");
    assert_eq!(r["row_groups_spliced"], 0, "{r}");
    assert_eq!(
        same_outputs(&n.out, &n.fresh).unwrap(),
        Vec::<String>::new()
    );
    let fetched = n.summary["bytes_fetched"].as_u64().unwrap();
    assert!(
        fetched < n.size - n.text / 2,
        "fetched {fetched} bytes of {}, of which the text is {}",
        n.size,
        n.text
    );
}

/// An input in a bucket one of whose members opts out: the row group holding the member's rows
/// is spliced, its text taken from PREV_OUT's pages, and the input's text chunk is not fetched
/// (today keeps no row PREV_OUT did not). Before, the spliced row group was checked, and so
/// fetched, whole.
#[test]
fn a_spliced_row_group_in_a_bucket_fetches_none_of_the_inputs_text() {
    let n = bucket_night(41, "BR", "splice-fetch", |world, m| {
        world.members[m] = Some((Some("BR"), Some("opt_out"), None));
    });
    let r = &n.summary["reuse"];
    assert_eq!(r["row_groups_spliced"], 1, "{r}");
    assert!(r["pages_reused"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(
        same_outputs(&n.out, &n.fresh).unwrap(),
        vec!["big.parquet".to_string()]
    );
    let fetched = n.summary["bytes_fetched"].as_u64().unwrap();
    assert!(
        fetched < n.size - n.text * 9 / 10,
        "fetched {fetched} bytes of {}, of which the text is {}",
        n.size,
        n.text
    );
}

/// The same splice with PREV_OUT in a bucket (a real S3 server): PREV_OUT's manifest and the
/// pages copied are read from its objects.
#[test]
fn a_previous_output_in_a_bucket_is_spliced_from_its_objects() {
    let s3 = crate::s3::server();
    let bucket = s3.bucket("splice");
    let (dir, mut world) = big_world(29, "BR");
    let in_bucket = |out: &str, extra: &[&str]| {
        let extra = [&["--progress", "never"], extra].concat();
        let args = job_args("filter", dir.path(), out, &extra);
        s3.run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let prev = format!("{bucket}/night-0");
    let (code, _, err) = in_bucket(&prev, &[]);
    assert_eq!(code, 0, "{err}");
    // A member the file holds opts out.
    let m = members_in_big_file(dir.path(), &world)[0];
    world.members[m] = Some((Some("BR"), Some("opt_out"), None));
    world.write(dir.path());
    let out = dir.path().join("out-1");
    let (code, _, err) = in_bucket(p(&out), &["--reuse", &prev]);
    assert_eq!(code, 0, "{err}");
    let fresh = dir.path().join("fresh-1");
    assert_eq!(filter(dir.path(), &fresh, &[]).0, 0);
    let r = &summary(&out)["reuse"];
    assert_eq!(r["row_groups_spliced"], 1, "{r}");
    // The text's pages but the two or three holding the member's rows, and topic's.
    assert!(r["pages_reused"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(
        same_outputs(&out, &fresh).unwrap(),
        vec!["big.parquet".to_string()]
    );
    // What it fetched from the bucket aside, the summary a fresh run writes.
    let mut s = comparable(&out);
    s.as_object_mut().unwrap().remove("bytes_fetched");
    assert_eq!(s, comparable(&fresh));
}
