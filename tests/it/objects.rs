//! Corpora, snapshots, lists, policies and outputs in an object store: a real S3 server
//! ([`crate::s3`]) on 127.0.0.1, and the same bytes, commit promise and exit codes as on disk.

use crate::s3::{self, server};
use crate::util::*;

/// The committed sample data, joined with its snapshot and erasure list, run locally.
pub(crate) fn local_sample_run(out: &std::path::Path) {
    sample_join_run(&root().join("sample-data/corpus"), out);
}

/// Upload the sample data (and things discovery must skip) to `bucket`.
pub(crate) fn upload_sample(bucket: &str) {
    upload_sample_with(bucket, &s3::put);
}

/// [`upload_sample`] through `put(url, bytes)` (a store corpusgate cannot write to is filled
/// through its own API).
pub(crate) fn upload_sample_with(bucket: &str, put: &dyn Fn(&str, &[u8])) {
    let sample = root().join("sample-data");
    for (rel, bytes) in tree(&sample.join("corpus")) {
        put(&format!("{bucket}/corpus/{rel}"), &bytes);
    }
    // Skipped, as in a directory: hidden and underscored names, non-Parquet names.
    put(&format!("{bucket}/corpus/_SUCCESS"), b"");
    put(&format!("{bucket}/corpus/.part-9.parquet.crc"), b"x");
    put(
        &format!("{bucket}/corpus/_temporary/0/part-9.parquet"),
        b"junk",
    );
    put(&format!("{bucket}/corpus/README.txt"), b"not data");
    put(
        &format!("{bucket}/members.parquet"),
        &std::fs::read(sample.join("members.parquet")).unwrap(),
    );
    put(
        &format!("{bucket}/erasure.txt"),
        &std::fs::read(sample.join("erasure-requests.txt")).unwrap(),
    );
    put(
        &format!("{bucket}/policy.yaml"),
        &std::fs::read(config("consent-snapshot.yaml")).unwrap(),
    );
}

fn bucket_run(bucket: &str, out: &str, extra: &[&str]) -> (i32, String, String) {
    bucket_job("filter", bucket, out, extra)
}

/// `command` (`filter` or `plan`) of the sample job with everything in `bucket`.
fn bucket_job(command: &str, bucket: &str, out: &str, extra: &[&str]) -> (i32, String, String) {
    let list = format!("erasure={bucket}/erasure.txt");
    let policy = format!("{bucket}/policy.yaml");
    let table = format!("{bucket}/members.parquet");
    let input = format!("{bucket}/corpus");
    let mut args = vec![
        command,
        "--policy",
        &policy,
        "--consent-table",
        &table,
        "--user-list",
        &list,
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    args.push(&input);
    server().run(&args, &[])
}

/// A [`bucket_run`] that takes every one of the sample's six files from its PREV_OUT.
fn reuses_all(bucket: &str, out: &str, extra: &[&str]) {
    let (code, _, err) = bucket_run(bucket, out, extra);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("reuse: took the outputs of 6 of 6 files"),
        "{err}"
    );
}

/// `verify` of a bucket OUT of [`bucket_run`], with the same policy, snapshot and list.
fn verify_bucket(bucket: &str, out: &str) -> (i32, String, String) {
    server().run(
        &[
            "verify",
            "--policy",
            &format!("{bucket}/policy.yaml"),
            "--consent-table",
            &format!("{bucket}/members.parquet"),
            "--user-list",
            &format!("erasure={bucket}/erasure.txt"),
            out,
        ],
        &[],
    )
}

#[test]
fn a_bucket_run_writes_the_bytes_of_a_local_run() {
    let bucket = server().bucket("same-bytes");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    local_sample_run(&dir.path().join("local"));

    let out = format!("{bucket}/out");
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 0, "{err}");
    // Every data file and manifest is the local run's, byte for byte.
    let local = tree(&dir.path().join("local"));
    let mut compared = 0;
    for (rel, bytes) in &local {
        if rel.starts_with("data/") || rel.starts_with("excluded/") {
            assert_eq!(
                s3::get(&format!("{out}/{rel}")).as_deref(),
                Some(bytes.as_slice()),
                "{rel} differs from the local run's"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 12, "six inputs, a data file and a manifest each");
    // CI reads every output of an exit-0 run back with pyarrow and DuckDB: this one too.
    s3::download(&out, &dir.path().join("downloaded"));
    crate::writers::keep_for_crosscheck(&dir.path().join("downloaded"), "objects-bucket-run");
    // _SUCCESS lists exactly the objects there, with sizes and checksums.
    let keys = s3::list(&out);
    let success: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/_SUCCESS")).unwrap()).unwrap();
    let listed: Vec<String> = success["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    let mut present: Vec<String> = keys.into_iter().filter(|k| k != "_SUCCESS").collect();
    present.sort();
    assert_eq!(listed, present);
    assert!(listed.contains(&"summary.json".to_owned()));
    let summary: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["totals"]["rows"], 6000);
    assert!(summary["bytes_fetched"].as_u64().unwrap() > 0);
    // The secret never appears in what the run records or prints.
    assert!(!err.contains("s3cr3t"));
    for k in &listed {
        let body = s3::get(&format!("{out}/{k}")).unwrap();
        assert!(
            !body.windows(6).any(|w| w == b"s3cr3t"),
            "{k} holds the secret key"
        );
    }

    // report and diff read a bucket OUT as they read a directory; the local and the bucket run
    // of the same inputs differ in nothing.
    let (code, text, err) = server().run(
        &["report", &out, "--html", &format!("{out}-report.html")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("6,000"), "{text}");
    assert!(s3::get(&format!("{out}-report.html")).is_some_and(|h| h.starts_with(b"<!")));
    let local_out = dir.path().join("local");
    let (code, text, err) = server().run(&["diff", p(&local_out), &out], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("newly excluded 0 rows; newly kept 0 rows"),
        "{text}"
    );
    // verify reads the bucket output: clean, its listing checked.
    let (code, stdout, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("verify: clean"), "{stdout}");
    // An object replaced behind _SUCCESS's back (by another valid file) is found.
    let other = s3::get(&format!("{out}/data/part-00001.parquet")).unwrap();
    s3::put(&format!("{out}/data/part-00000.parquet"), &other);
    let (code, stdout, _) = verify_bucket(&bucket, &out);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("data/part-00000.parquet") && stdout.contains("_SUCCESS lists"),
        "{stdout}"
    );
}

#[test]
fn overwrite_removes_the_old_success_first_and_the_old_runs_objects_before_the_new_one() {
    let bucket = server().bucket("overwrite");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    assert_eq!(bucket_run(&bucket, &out, &[]).0, 0);
    // A complete output is not replaced without --overwrite (exit 2, nothing touched).
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--overwrite"), "{err}");
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_some());

    // A smaller corpus: the objects of the five files it lacks must go.
    for i in 1..6 {
        corpusgate::io::object::delete(
            &corpusgate::io::object::ObjectLocation::parse(&format!(
                "{bucket}/corpus/part-0000{i}.parquet"
            ))
            .unwrap(),
        )
        .unwrap();
    }
    let (code, _, err) = bucket_run(&bucket, &out, &["--overwrite"]);
    assert_eq!(code, 0, "{err}");
    let keys = s3::list(&out);
    assert_eq!(
        keys,
        vec![
            "_SUCCESS",
            "_state/decisions/part-00000.parquet",
            "_state/files.json",
            "_state/keys.parquet",
            "data/part-00000.parquet",
            "excluded/part-00000.parquet",
            "summary.json"
        ]
    );

    // An input whose footer is corrupt fails the run before any output: the old one stays.
    s3::put(
        &format!("{bucket}/corpus/part-00009.parquet"),
        b"PAR1 this is not a parquet file PAR1",
    );
    let (code, _, err) = bucket_run(&bucket, &out, &["--overwrite"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{bucket}/corpus/part-00009.parquet")),
        "{err}"
    );
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_some());

    // A run that fails while writing (a data page damaged: exit 1) leaves no _SUCCESS, no
    // lock, and removes what it wrote.
    let mut damaged = std::fs::read(root().join("sample-data/corpus/part-00001.parquet")).unwrap();
    let at = damaged.len() / 3;
    damaged[at..at + 64].fill(0xff);
    s3::put(&format!("{bucket}/corpus/part-00009.parquet"), &damaged);
    let (code, _, err) = bucket_run(&bucket, &out, &["--overwrite"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{bucket}/corpus/part-00009.parquet")),
        "{err}"
    );
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_none());
    assert!(!s3::list(&out)
        .iter()
        .any(|k| k == "_SUCCESS" || k == "_corpusgate.lock"));
}

#[test]
fn a_held_lock_is_busy_and_an_expired_one_is_taken_over() {
    let bucket = server().bucket("locks");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    let until = |secs: i64| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();
    s3::put(
        &format!("{out}/_corpusgate.lock"),
        format!("{{\"owner\":\"other:1\",\"until\":\"{}\"}}", until(600)).as_bytes(),
    );
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("another corpusgate run"), "{err}");
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_none());

    // The holder died: its lease ended a minute ago.
    s3::put(
        &format!("{out}/_corpusgate.lock"),
        format!("{{\"owner\":\"other:1\",\"until\":\"{}\"}}", until(-60)).as_bytes(),
    );
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("taken over"), "{err}");
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_some());
    assert!(
        s3::get(&format!("{out}/_corpusgate.lock")).is_none(),
        "released at the end"
    );
}

#[test]
fn object_errors_name_the_object_and_keep_secrets_out() {
    let bucket = server().bucket("errors");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    let policy = format!("{bucket}/policy.yaml");
    let inline = config("genai-uk-eea-ch-pause.yaml");
    // No such prefix or object: a usage error naming it.
    let missing = format!("{bucket}/nothing-here");
    let (code, _, err) = server().run(
        &["filter", "--policy", p(&inline), "-o", &out, &missing],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&missing), "{err}");
    // A named object that is not Parquet.
    let txt = format!("{bucket}/erasure.txt");
    let (code, _, err) = server().run(&["filter", "--policy", p(&inline), "-o", &out, &txt], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&txt) && err.contains("not a Parquet file"),
        "{err}"
    );
    // Credentials or a presigned query in a URL: refused without repeating them.
    for url in [
        format!("s3://AKIA:topsecret@{}/corpus", &bucket[5..]),
        "https://example.com/x.parquet?X-Amz-Signature=topsecret".to_string(),
    ] {
        let (code, _, err) = server().run(&["filter", "--policy", &policy, "-o", &out, &url], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }
    // An empty object: named, a usage error; found under a prefix, the input's fault (exit 1).
    s3::put(&format!("{bucket}/empty/x.parquet"), b"");
    let (code, _, err) = server().run(
        &[
            "filter",
            "--policy",
            p(&inline),
            "-o",
            &out,
            &format!("{bucket}/empty/x.parquet"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a Parquet file"), "{err}");
    let (code, _, err) = server().run(
        &[
            "filter",
            "--policy",
            p(&inline),
            "-o",
            &out,
            &format!("{bucket}/empty"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("x.parquet") && err.contains("too short"),
        "{err}"
    );
    // OUT over the snapshot: replacing OUT would delete it.
    let state = format!("{bucket}/state");
    s3::put(
        &format!("{state}/members.parquet"),
        &s3::get(&format!("{bucket}/members.parquet")).unwrap(),
    );
    let (code, _, err) = server().run(
        &[
            "filter",
            "--policy",
            &policy,
            "--consent-table",
            &format!("{state}/members.parquet"),
            "--user-list",
            &format!("erasure={bucket}/erasure.txt"),
            "--overwrite",
            "-o",
            &state,
            &format!("{bucket}/corpus"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--consent-table") && err.contains("inside the output"),
        "{err}"
    );
    // A missing policy object.
    let (code, _, err) = server().run(&["check", &format!("{bucket}/no-policy.yaml")], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-policy.yaml"), "{err}");
}

/// The data and manifests under `out` (a bucket prefix) equal the local run's files.
fn same_as_local(out: &str, local: &std::path::Path) -> bool {
    tree(local)
        .iter()
        .filter(|(rel, _)| rel.starts_with("data/") || rel.starts_with("excluded/"))
        .all(|(rel, bytes)| s3::get(&format!("{out}/{rel}")).as_deref() == Some(bytes.as_slice()))
}

#[test]
fn faults_between_corpusgate_and_the_store_never_cut_an_output_short() {
    use crate::faults::{Faults, Proxy};
    let bucket = server().bucket("faults");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);

    // Throttling in bursts and 20 ms per request: retried with backoff, same bytes.
    let proxy = Proxy::start(
        server().port,
        Faults {
            slowdown_every: 10,
            slowdown_burst: 3,
            latency_ms: 20,
            ..Default::default()
        },
    );
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let out = format!("{bucket}/slow");
    let list = format!("erasure={bucket}/erasure.txt");
    let args = |out: &str| -> Vec<String> {
        [
            "filter",
            "--policy",
            &format!("{bucket}/policy.yaml"),
            "--consent-table",
            &format!("{bucket}/members.parquet"),
            "--user-list",
            &list,
            "-o",
            out,
            &format!("{bucket}/corpus"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = args(&out);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, err) = server().run(&a, &[("AWS_ENDPOINT_URL", &endpoint)]);
    assert_eq!(code, 0, "{err}");
    assert!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst) > 10);
    assert!(same_as_local(&out, &local));

    // Connections reset and bodies cut short as well: the same bytes, or exit 1 with no
    // _SUCCESS; never a short output that looks finished. Reads, lists, deletes and overwrites
    // are retried, and so are the lock's conditional writes, so nearly every run succeeds.
    let mut succeeded = 0;
    for seed in [3usize, 5, 7] {
        let proxy = Proxy::start(
            server().port,
            Faults {
                slowdown_every: 17,
                slowdown_burst: 2,
                reset_every: 4 + seed,
                truncate_every: seed,
                latency_ms: 5,
            },
        );
        let endpoint = format!("http://127.0.0.1:{}", proxy.port);
        let out = format!("{bucket}/faulty-{seed}");
        let a = args(&out);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, _, err) = server().run(&a, &[("AWS_ENDPOINT_URL", &endpoint)]);
        assert!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst) > 0);
        eprintln!(
            "faults seed {seed}: exit {code}, {} requests, {} faults: {}",
            proxy.requests.load(std::sync::atomic::Ordering::SeqCst),
            proxy.injected.load(std::sync::atomic::Ordering::SeqCst),
            err.lines().last().unwrap_or("")
        );
        match code {
            0 => {
                assert!(same_as_local(&out, &local), "exit 0 but bytes differ");
                succeeded += 1;
            }
            1 => {
                assert!(err.contains(&bucket[5..]), "names the object: {err}");
                assert!(s3::get(&format!("{out}/_SUCCESS")).is_none(), "{err}");
            }
            other => panic!("exit {other}: {err}"),
        }
    }
    assert!(
        succeeded >= 2,
        "only {succeeded} of 3 runs got through the faults"
    );
}

/// `filter` with one of the example policies (no join) from `input` to `out`, against the server.
fn filter_inline(policy: &str, out: &str, input: &str) -> (i32, String, String) {
    server().run(
        &["filter", "--policy", p(&config(policy)), "-o", out, input],
        &[],
    )
}

/// `n` random lowercase letters: text that compresses like prose, not like a repeated string.
fn letters(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

#[test]
fn a_clustered_corpus_fetches_no_payload_of_row_groups_with_nothing_kept() {
    use parquet::file::reader::FileReader;
    let policy = "genai-uk-eea-ch-pause.yaml";
    let mut recs = random_records(42, 4000, 1);
    let mut rng = Rng(7);
    for r in &mut recs {
        r.text = letters(&mut rng, 400);
    }
    // Excluded rows first: the leading row groups keep nothing.
    recs.sort_by_key(|r| expected_keep(policy, r));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clustered.parquet");
    write_parquet(
        &file,
        &recs,
        CountryType::Utf8,
        500,
        parquet::basic::Compression::ZSTD(Default::default()),
    );
    let size = std::fs::metadata(&file).unwrap().len();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let meta = reader.metadata();
    let text = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "text")
        .unwrap();
    // The text chunks of row groups where nothing is kept: never needed.
    let mut at = 0;
    let mut unneeded = 0u64;
    for g in meta.row_groups() {
        let n = g.num_rows() as usize;
        if !recs[at..at + n].iter().any(|r| expected_keep(policy, r)) {
            unneeded += g.column(text).compressed_size() as u64;
        }
        at += n;
    }
    assert!(
        unneeded > size / 3,
        "the corpus is clustered: {unneeded} of {size}"
    );

    let bucket = server().bucket("clustered");
    s3::put(
        &format!("{bucket}/in/clustered.parquet"),
        &std::fs::read(&file).unwrap(),
    );
    let out = format!("{bucket}/out");
    let (code, _, err) = filter_inline(policy, &out, &format!("{bucket}/in"));
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/summary.json")).unwrap()).unwrap();
    s3::download(&out, &dir.path().join("downloaded"));
    crate::writers::keep_for_crosscheck(&dir.path().join("downloaded"), "objects-clustered");
    let fetched = summary["bytes_fetched"].as_u64().unwrap();
    let needed = size - unneeded;
    assert!(
        fetched as f64 <= needed as f64 * 1.1,
        "fetched {fetched} bytes; the run needs {needed} of {size}"
    );
}

#[test]
fn keys_region_and_endpoint_come_from_the_aws_profile_files() {
    let s = server();
    let bucket = s.bucket("profile");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config_file = dir.path().join("config");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = wrong\n[ci]\naws_access_key_id = testing\naws_secret_access_key = s3cr3t-never-shown\n",
    )
    .unwrap();
    std::fs::write(
        &config_file,
        format!(
            "[profile ci]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:{}\n",
            s.port
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "filter",
        "--policy",
        p(&config("genai-uk-eea-ch-pause.yaml")),
        "-o",
        p(&out),
        &format!("{bucket}/corpus"),
    ]);
    // Nothing from the variables the other tests use: only the profile names the server.
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd
        .env("AWS_PROFILE", "ci")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config_file)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(tree(&out.join("data")).len(), 6);
}

#[test]
fn a_second_run_on_a_locked_bucket_output_is_busy_and_sigterm_leaves_nothing() {
    let s = server();
    let bucket = s.bucket("sigterm");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("paused");
    let list = format!("erasure={bucket}/erasure.txt");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "filter",
        "--policy",
        &format!("{bucket}/policy.yaml"),
        "--consent-table",
        &format!("{bucket}/members.parquet"),
        "--user-list",
        &list,
        "-o",
        &out,
        &format!("{bucket}/corpus"),
    ])
    .envs(s.env());
    let first = spawn_held(cmd, "lock-taken", &pause);
    // The first run holds the lock object: a second is told to try again later.
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 75, "{err}");
    // SIGTERM, then let the first run go on: it stops before any file is done and releases
    // its lock; OUT holds nothing a reader would take for an output.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    std::fs::remove_file(&pause).unwrap();
    let o = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("kept for --resume"), "{err}");
    let left = s3::list(&out);
    assert!(
        left.iter().all(|k| k.starts_with("_corpusgate.journal/")),
        "only the journal's header: {left:?}"
    );
    // And the output can be made at once.
    let (code, _, err) = bucket_run(&bucket, &out, &[]);
    assert_eq!(code, 0, "{err}");
}

/// Start a bucket run held still after its first completed file is journaled (one thread),
/// SIGTERM it there and let it stop: 143, and no `_SUCCESS`.
fn interrupt_after_first_file(bucket: &str, out: &str, extra: &[&str]) {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("paused");
    let list = format!("erasure={bucket}/erasure.txt");
    let mut args = vec![
        "filter".to_owned(),
        "--threads".into(),
        "1".into(),
        "--policy".into(),
        format!("{bucket}/policy.yaml"),
        "--consent-table".into(),
        format!("{bucket}/members.parquet"),
        "--user-list".into(),
        list,
        "-o".into(),
        out.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(format!("{bucket}/corpus"));
    let run = std::process::Command::new(bin())
        .args(&args)
        .envs(s.env())
        .env(
            "CORPUSGATE_PAUSE_AT",
            format!("journaled:{}", pause.display()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !pause.exists() {
        assert!(t0.elapsed().as_secs() < 60, "no file was ever journaled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    std::fs::remove_file(&pause).unwrap();
    let o = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("kept for --resume"), "{err}");
    let left = s3::list(out);
    assert!(!left.contains(&"_SUCCESS".to_owned()), "{left:?}");
    assert!(!left.contains(&"_corpusgate.lock".to_owned()), "{left:?}");
}

/// The inputs whose completion the journal in `out` records.
fn journaled(out: &str) -> Vec<String> {
    s3::list(out)
        .iter()
        .filter(|k| k.starts_with("_corpusgate.journal/") && !k.ends_with("/header.json"))
        .map(|k| {
            let e: serde_json::Value =
                serde_json::from_slice(&s3::get(&format!("{out}/{k}")).unwrap()).unwrap();
            e["rel"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn summary_of(out: &str) -> serde_json::Value {
    serde_json::from_slice(&s3::get(&format!("{out}/summary.json")).unwrap()).unwrap()
}

#[test]
fn sigterm_then_resume_on_a_bucket_equals_a_fresh_run_and_reuses_what_was_done() {
    let bucket = server().bucket("resume");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);
    let out = format!("{bucket}/out");

    interrupt_after_first_file(&bucket, &out, &[]);
    // The first file's outputs and its journal entry are in OUT. The writer goes on while a
    // file is journaled, so a later file may have been completed and journaled before the run
    // stopped too: every file journaled has its outputs in OUT, and only those are reused.
    let left = s3::list(&out);
    let done = journaled(&out);
    assert!(done.contains(&"part-00000.parquet".to_owned()), "{done:?}");
    for rel in &done {
        assert!(left.contains(&format!("data/{rel}")), "{rel}: {left:?}");
        assert!(left.contains(&format!("excluded/{rel}")), "{rel}: {left:?}");
    }
    let (code, _, err) = bucket_run(&bucket, &out, &["--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "resumed: reused the outputs of {} file",
            done.len()
        )),
        "{err}"
    );
    assert_eq!(summary_of(&out)["resumed_files"], done.len());
    assert!(same_as_local(&out, &local));
    // Nothing of the journal is left, and verify holds _SUCCESS to every object.
    let left = s3::list(&out);
    assert!(
        !left.iter().any(|k| k.starts_with("_corpusgate")),
        "{left:?}"
    );
    let (code, _, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{err}");

    // A reused output that changed since is redone, not trusted.
    interrupt_after_first_file(&bucket, &out, &["--overwrite"]);
    let done = journaled(&out);
    assert!(!done.is_empty());
    for rel in &done {
        s3::put(&format!("{out}/data/{rel}"), b"tampered");
    }
    let (code, _, err) = bucket_run(&bucket, &out, &["--resume", "--overwrite"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("resumed:"), "{err}");
    assert!(same_as_local(&out, &local));

    // An interrupted run of another job is not reused: its entries go with the new journal, so
    // even a later resume of the second job never meets them.
    interrupt_after_first_file(&bucket, &out, &["--overwrite", "--compression", "zstd:3"]);
    interrupt_after_first_file(&bucket, &out, &["--overwrite"]);
    let done = journaled(&out);
    let left = s3::list(&out);
    let folders: std::collections::BTreeSet<&str> = left
        .iter()
        .filter_map(|k| k.strip_prefix("_corpusgate.journal/"))
        .filter_map(|k| k.split('/').next())
        .collect();
    assert_eq!(folders.len(), 1, "one job's journal: {left:?}");
    let (code, _, err) = bucket_run(&bucket, &out, &["--resume", "--overwrite"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "resumed: reused the outputs of {} file",
            done.len()
        )),
        "{err}"
    );
    assert!(same_as_local(&out, &local));
    let (code, _, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_output_larger_than_a_part_is_uploaded_in_parts_byte_identical() {
    let policy = "genai-uk-eea-ch-pause.yaml";
    let mut rng = Rng(11);
    let recs: Vec<Rec> = random_records(5, 250_000, 1)
        .into_iter()
        .filter(|r| expected_keep(policy, r))
        .take(50_000)
        .map(|mut r| {
            r.text = letters(&mut rng, 400);
            r
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_parquet(
        &input.join("big.parquet"),
        &recs,
        CountryType::Utf8,
        8192,
        parquet::basic::Compression::ZSTD(Default::default()),
    );
    let local = dir.path().join("local");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config(policy)),
        "-o",
        p(&local),
        p(&input),
    ]);
    assert_eq!(code, 0, "{err}");
    let data = std::fs::read(local.join("data/big.parquet")).unwrap();
    assert!(
        data.len() > corpusgate::io::object::PART,
        "{} bytes: not more than one part",
        data.len()
    );
    let bucket = server().bucket("parts");
    s3::upload_dir(&input, &format!("{bucket}/in"));
    let out = format!("{bucket}/out");
    let (code, _, err) = filter_inline(policy, &out, &format!("{bucket}/in"));
    assert_eq!(code, 0, "{err}");
    assert!(s3::get(&format!("{out}/data/big.parquet")).unwrap() == data);
    assert!(s3::open_uploads(&bucket).is_empty());

    // SIGKILL once a part is sent: the upload stays open (invisible, and billed), recorded in
    // OUT's ledger. The next run on OUT aborts it before anything else, then writes the same.
    let crashed = format!("{bucket}/crashed");
    let pause = dir.path().join("paused");
    let mut child = std::process::Command::new(bin())
        .args(["filter", "--policy", p(&config(policy)), "-o", &crashed])
        .arg(format!("{bucket}/in"))
        .envs(server().env())
        .env(
            "CORPUSGATE_PAUSE_AT",
            format!("part-sent:{}", pause.display()),
        )
        .env("CORPUSGATE_LOCK_LEASE_SECONDS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pause);
    // The part in flight lands (or not); either way the upload is open.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&pause).unwrap();
    let open = s3::open_uploads(&bucket);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].starts_with("crashed/data/"), "{open:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (code, _, err) = filter_inline(policy, &crashed, &format!("{bucket}/in"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("aborted 1 unfinished upload"), "{err}");
    assert_eq!(s3::open_uploads(&bucket), Vec::<String>::new());
    assert!(s3::get(&format!("{crashed}/data/big.parquet")).unwrap() == data);
    let left = s3::list(&crashed);
    assert!(
        !left.iter().any(|k| k.starts_with("_corpusgate")),
        "{left:?}"
    );
}

/// `run-shard` of the plan in `out` (a bucket prefix), held still once its attempt has taken
/// its output when `pause` is given.
fn bucket_shard(out: &str, index: usize, pause: Option<&std::path::Path>) -> std::process::Child {
    let mut c = std::process::Command::new(bin());
    c.args([
        "run-shard",
        out,
        "--index",
        &index.to_string(),
        "--threads",
        "1",
    ])
    .envs(server().env())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    if let Some(p) = pause {
        c.env("CORPUSGATE_PAUSE_AT", format!("lock-taken:{}", p.display()))
            .env("CORPUSGATE_LOCK_LEASE_SECONDS", "2");
    }
    c.spawn().unwrap()
}

fn wait_for(path: &std::path::Path) {
    let t0 = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "never reached {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn plan_run_shard_and_commit_on_a_bucket_equal_a_single_filter_run() {
    let bucket = server().bucket("shards");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);
    let out = format!("{bucket}/planned");
    let list = format!("erasure={bucket}/erasure.txt");
    let plan_args = |out: &str, shards: &str| -> (i32, String, String) {
        server().run(
            &[
                "plan",
                "--policy",
                &format!("{bucket}/policy.yaml"),
                "--consent-table",
                &format!("{bucket}/members.parquet"),
                "--user-list",
                &list,
                "--shards",
                shards,
                "-o",
                out,
                &format!("{bucket}/corpus"),
            ],
            &[],
        )
    };
    let (code, _, err) = plan_args(&out, "3");
    assert_eq!(code, 0, "{err}");
    // Inputs are known by the store's version, not hashed (that would download the corpus).
    let plan: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/_plan.json")).unwrap()).unwrap();
    let inputs = plan["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 6);
    assert!(inputs
        .iter()
        .all(|i| i["sha256"] == "" && i["object"].as_str().unwrap().starts_with("etag=")));
    assert!(inputs[0]["path"]
        .as_str()
        .unwrap()
        .starts_with("s3://shards/corpus/"));

    // Commit before anything ran: retryable, naming the missing shards.
    let (code, _, err) = server().run(&["commit", &out], &[]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("3 of 3 shards are not done: 0, 1, 2"), "{err}");

    // Shard 0 held still once its attempt took its output: a second start of index 0 is busy;
    // then SIGKILL it. Its lock's lease (2 s here) then lapses and a rerun takes it over.
    let pause = dir.path().join("paused");
    let mut held = bucket_shard(&out, 0, Some(&pause));
    wait_for(&pause);
    let again = bucket_shard(&out, 0, None).wait_with_output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    held.kill().unwrap();
    held.wait().unwrap();
    std::fs::remove_file(&pause).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    for i in 0..3 {
        let o = bucket_shard(&out, i, None).wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A done shard run again is a no-op.
    let o = bucket_shard(&out, 1, None).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("already done"), "{err}");

    let (code, _, err) = server().run(&["commit", &out], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        same_as_local(&out, &local),
        "sharded output differs from filter"
    );
    let left = s3::list(&out);
    assert!(
        !left
            .iter()
            .any(|k| k.starts_with("_attempts/") || k.ends_with("_corpusgate.lock")),
        "{left:?}"
    );
    let (code, _, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{err}");
    let summary = summary_of(&out);
    let single: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("summary.json")).unwrap()).unwrap();
    for k in ["by_rule", "by_region", "totals"] {
        assert_eq!(summary[k], single[k], "summary.json {k}");
    }
    // _SUCCESS lists every object; an object changed afterwards is caught by verify.
    s3::put(&format!("{out}/_plan/policy.yaml"), b"id: changed\n");
    let (code, _, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 3, "{err}");

    // An input object replaced after the plan: its shard refuses (exit 2) until re-planned.
    let again = format!("{bucket}/planned-again");
    let (code, _, err) = plan_args(&again, "1");
    assert_eq!(code, 0, "{err}");
    s3::put(
        &format!("{bucket}/corpus/part-00003.parquet"),
        &s3::get(&format!("{bucket}/corpus/part-00004.parquet")).unwrap(),
    );
    let o = bucket_shard(&again, 0, None).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("part-00003.parquet changed since the plan"),
        "{err}"
    );
}

#[test]
fn reuse_on_a_bucket_copies_in_the_store_and_replaces_its_own_output() {
    let bucket = server().bucket("reuse");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);
    let prev = format!("{bucket}/night-1");
    let (code, _, err) = bucket_run(&bucket, &prev, &[]);
    assert_eq!(code, 0, "{err}");
    let state = s3::list(&prev);
    assert!(
        state.contains(&"_state/files.json".to_string()),
        "{state:?}"
    );
    assert!(
        state.contains(&"_state/keys.parquet".to_string()),
        "{state:?}"
    );

    // Another OUT in the same store: every file is taken by a server-side copy.
    let out = format!("{bucket}/night-2");
    reuses_all(&bucket, &out, &["--reuse", &prev]);
    assert!(same_as_local(&out, &local));
    let (code, _, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{err}");
    // PREV_OUT is only read.
    assert_eq!(s3::list(&prev), state);

    // PREV_OUT replaced by its own reuse: nothing to copy, and a complete output after it.
    reuses_all(&bucket, &prev, &["--reuse", &prev, "--overwrite"]);
    assert_eq!(summary_of(&prev)["reuse"]["files_reused"], 6);
    assert!(same_as_local(&prev, &local));
    let (code, _, err) = verify_bucket(&bucket, &prev);
    assert_eq!(code, 0, "{err}");

    // A changed snapshot: the files holding a changed member are processed again, and the
    // output is what a fresh run of today's snapshot writes.
    let changed = dir.path().join("members.parquet");
    {
        use arrow_array::{Array, StringArray};
        let b = read_all(&root().join("sample-data/members.parquet"));
        let i = b.schema().index_of("genai_consent").unwrap();
        let c = b.column(i).as_any().downcast_ref::<StringArray>().unwrap();
        let flipped: StringArray = (0..c.len())
            .map(|r| match (r, c.is_valid(r).then(|| c.value(r))) {
                (0, Some("opt_out")) => Some("opt_in"),
                (0, _) => Some("opt_out"),
                (_, v) => v,
            })
            .collect();
        let mut cols = b.columns().to_vec();
        cols[i] = std::sync::Arc::new(flipped);
        let b2 = arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap();
        write_batch(&changed, &b2, None);
    }
    s3::put(
        &format!("{bucket}/members.parquet"),
        &std::fs::read(&changed).unwrap(),
    );
    let out3 = format!("{bucket}/night-3");
    let (code, _, err) = bucket_run(&bucket, &out3, &["--reuse", &prev]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(1 changed member)"), "{err}");
    let fresh = format!("{bucket}/fresh-3");
    let (code, _, err) = bucket_run(&bucket, &fresh, &[]);
    assert_eq!(code, 0, "{err}");
    for sub in ["data/", "excluded/"] {
        for k in s3::list(&fresh).iter().filter(|k| k.starts_with(sub)) {
            assert_eq!(
                s3::get(&format!("{out3}/{k}")),
                s3::get(&format!("{fresh}/{k}")),
                "{k}"
            );
        }
    }

    // The same night again as a plan on the bucket, reusing night 3: every shard takes its
    // files by server-side copies, and the commit records the state (listed in _SUCCESS) that
    // a later `filter --reuse` takes everything from.
    let out4 = format!("{bucket}/night-4");
    let (code, _, err) = bucket_job("plan", &bucket, &out4, &["--shards", "2", "--reuse", &out3]);
    assert_eq!(code, 0, "{err}");
    for i in ["0", "1"] {
        let (code, _, err) = server().run(&["run-shard", &out4, "--index", i], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("reuse: took the outputs of 3 of 3 files"),
            "{err}"
        );
    }
    let (code, _, err) = server().run(&["commit", &out4], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary_of(&out4)["reuse"]["files_reused"], 6);
    let success: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out4}/_SUCCESS")).unwrap()).unwrap();
    let listed: Vec<&str> = success["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    for k in ["_state/files.json", "_state/keys.parquet"] {
        assert!(listed.contains(&k), "{listed:?}");
    }
    assert!(!s3::list(&out4).contains(&"_shards/keys.parquet".to_string()));
    for k in s3::list(&fresh)
        .iter()
        .filter(|k| k.starts_with("data/") || k.starts_with("excluded/"))
    {
        assert_eq!(
            s3::get(&format!("{out4}/{k}")),
            s3::get(&format!("{fresh}/{k}")),
            "{k}"
        );
    }
    let out5 = format!("{bucket}/night-5");
    reuses_all(&bucket, &out5, &["--reuse", &out4]);
}

/// A laid-out run into a bucket: the per-input data objects it wrote first are gone, and the
/// `_SUCCESS` listing holds exactly the parts and manifests there (what `verify` checks).
#[test]
fn a_laid_out_bucket_run_lists_only_its_parts() {
    let bucket = server().bucket("laid-out");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    let (code, _, err) = bucket_run(&bucket, &out, &["--target-file-size", "64KiB"]);
    assert_eq!(code, 0, "{err}");
    let data = s3::list(&format!("{out}/data"));
    assert!(!data.is_empty());
    assert!(
        data.iter().all(|k| k.starts_with("part-")),
        "only parts under data/: {data:?}"
    );
    let (code, text, err) = verify_bucket(&bucket, &out);
    assert_eq!(code, 0, "{text}{err}");
    let dir = tempfile::tempdir().unwrap();
    s3::download(&out, &dir.path().join("downloaded"));
    crate::writers::keep_for_crosscheck(&dir.path().join("downloaded"), "objects-laid-out");
}
