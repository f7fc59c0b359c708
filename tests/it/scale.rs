//! plan / run-shard / commit on one machine: concurrent shards, a SIGKILLed one rerun, one index
//! started twice at once; the committed output is byte-identical to a single `filter` run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use parquet::basic::Compression;

use crate::util::*;

fn corpus(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("in");
    for f in 0..8 {
        let mut recs = random_records(f as u64 + 500, 2500, (f * 2500) as i64);
        for r in &mut recs {
            r.text = r.text.repeat(6);
        }
        let rel = if f % 3 == 0 {
            format!("sub/part-{f}.parquet")
        } else {
            format!("part-{f}.parquet")
        };
        write_parquet(
            &input.join(rel),
            &recs,
            CountryType::Utf8,
            700,
            Compression::ZSTD(Default::default()),
        );
    }
    input
}

fn shard(out: &Path, index: usize) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "run-shard",
        p(out),
        "--index",
        &index.to_string(),
        "--threads",
        "1",
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with("data/") || n.starts_with("excluded/"))
        .collect()
}

#[test]
fn sharded_run_equals_a_single_filter_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let policy = config("meta-uk-2024.yaml");
    let single = dir.path().join("single");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&policy),
        "-o",
        p(&single),
        p(&input),
    ]);
    assert_eq!(code, 0, "{err}");

    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "plan",
        "--policy",
        p(&policy),
        "--shards",
        "4",
        "-o",
        p(&out),
        p(&input),
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_plan.json")).unwrap()).unwrap();
    assert_eq!(plan["shards"].as_array().unwrap().len(), 4);
    assert_eq!(plan["inputs"].as_array().unwrap().len(), 8);

    // Commit before anything ran: retryable, naming the missing shards.
    let (code, _, err) = run(&["commit", p(&out)]);
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("4 of 4 shards are not done: 0, 1, 2, 3"),
        "{err}"
    );

    // Shards 0 and 1 together; shard 2 killed mid-run; shard 3 started twice at once.
    let a = shard(&out, 0).spawn().unwrap();
    let b = shard(&out, 1).spawn().unwrap();
    let mut killed = shard(&out, 2).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    let _ = killed.kill();
    let _ = killed.wait();
    for mut c in [a, b] {
        let o = c.wait().unwrap();
        assert!(o.success());
    }
    let twice: Vec<_> = (0..2).map(|_| shard(&out, 3).spawn().unwrap()).collect();
    let codes: Vec<Option<i32>> = twice
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code())
        .collect();
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(75)),
        "{codes:?}"
    );

    // Shard 2 may or may not have finished before the kill; a rerun completes it either way.
    let r = shard(&out, 2).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (code, _, err) = run(&["commit", p(&out)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("_SUCCESS").exists());
    assert_eq!(
        outputs(&out),
        outputs(&single),
        "sharded output differs from a single filter run"
    );
    let s1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let s2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(single.join("summary.json")).unwrap())
            .unwrap();
    for k in ["files", "by_rule", "by_region", "totals"] {
        assert_eq!(s1[k], s2[k], "summary.json {k}");
    }
    // verify agrees the committed output is clean.
    let (code, stdout, _) = run(&["verify", "--policy", p(&policy), p(&out)]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn shard_index_from_the_environment_and_changed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for f in 0..3 {
        write_parquet(
            &input.join(format!("p{f}.parquet")),
            &random_records(f, 200, 0),
            CountryType::Utf8,
            50,
            Compression::SNAPPY,
        );
    }
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "plan",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--shards",
        "3",
        "-o",
        p(&out),
        p(&input),
    ]);
    assert_eq!(code, 0, "{err}");
    let env_run = |vars: &[(&str, &str)]| {
        let mut c = Command::new(bin());
        c.args(["run-shard", p(&out)]);
        c.env_remove("JOB_COMPLETION_INDEX")
            .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_MIN");
        for (k, v) in vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = env_run(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "1")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.join("_shards/shard-00000.json").exists());
    let (code, err) = env_run(&[
        ("JOB_COMPLETION_INDEX", "1"),
        ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("different shard indices"), "{err}");
    let (code, err) = env_run(&[]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = env_run(&[("JOB_COMPLETION_INDEX", "7")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("out of range"), "{err}");
    // An input changed after planning: permanent, never a silent mix.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_plan.json")).unwrap()).unwrap();
    let i = plan["shards"][1]["files"][0].as_u64().unwrap() as usize;
    let path = plan["inputs"][i]["path"].as_str().unwrap().to_owned();
    write_parquet(
        Path::new(&path),
        &random_records(99, 150, 0),
        CountryType::Utf8,
        50,
        Compression::SNAPPY,
    );
    let (code, err) = env_run(&[("AWS_BATCH_JOB_ARRAY_INDEX", "1")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("changed since the plan"), "{err}");

    // A plan whose shard names an input it does not list: exit 2 naming the plan file (this
    // was a panic reported as a decoding error).
    let mut plan = plan;
    plan["shards"][2]["files"] = serde_json::json!([0, 17]);
    std::fs::write(out.join("_plan.json"), plan.to_string()).unwrap();
    let (code, err) = env_run(&[("JOB_COMPLETION_INDEX", "2")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("_plan.json: shard 2 lists input 17, but the plan has 3 inputs"),
        "{err}"
    );
    // A field missing is named.
    plan.as_object_mut().unwrap().remove("options");
    std::fs::write(out.join("_plan.json"), plan.to_string()).unwrap();
    let (code, err) = env_run(&[("JOB_COMPLETION_INDEX", "2")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing field `options`"), "{err}");
}

#[test]
fn a_snapshot_or_list_changed_after_the_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sample = root().join("sample-data");
    let members = dir.path().join("members.parquet");
    let list = dir.path().join("erasure.txt");
    std::fs::copy(sample.join("members.parquet"), &members).unwrap();
    std::fs::copy(sample.join("erasure-requests.txt"), &list).unwrap();
    let out = dir.path().join("out");
    let list_arg = format!("erasure={}", p(&list));
    let (code, _, err) = run(&[
        "plan",
        "--policy",
        p(&config("consent-snapshot.yaml")),
        "--consent-table",
        p(&members),
        "--user-list",
        &list_arg,
        "--shards",
        "2",
        "-o",
        p(&out),
        p(&sample.join("corpus")),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = shard(&out, 0).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::write(&list, "1000001\n").unwrap();
    let r = shard(&out, 1).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("user list 'erasure'") && err.contains("changed since the plan"),
        "{err}"
    );
}
