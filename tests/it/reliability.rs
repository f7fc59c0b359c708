//! Hostile inputs and crashes: quarantine, signals, SIGKILL at random moments, resume, disk full,
//! a second run on the same output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parquet::basic::Compression;
use proptest::prelude::*;

use crate::util::*;

/// A corpus big enough that a run takes a noticeable time with one thread.
fn corpus(dir: &Path, files: usize, rows: usize) -> PathBuf {
    let input = dir.join("in");
    for f in 0..files {
        let mut recs = random_records(f as u64 + 100, rows, (f * rows) as i64);
        for r in &mut recs {
            r.text = r.text.repeat(8);
        }
        write_parquet(
            &input.join(format!("part-{f:02}.parquet")),
            &recs,
            CountryType::Utf8,
            2000,
            Compression::ZSTD(Default::default()),
        );
    }
    input
}

fn filter_cmd(policy: &str, out: &Path, input: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "filter",
        "--policy",
        p(&config(policy)),
        "--threads",
        "1",
        "--progress",
        "never",
        "-o",
        p(out),
    ]);
    c.args(extra);
    c.arg(input);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn data_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with("data/") || n.starts_with("excluded/"))
        .collect()
}

#[test]
fn unreadable_inputs_are_quarantined_with_skip() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let recs = random_records(3, 500, 0);
    for name in ["a", "b", "c", "d"] {
        write_parquet(
            &input.join(format!("{name}.parquet")),
            &recs,
            CountryType::Utf8,
            100,
            Compression::SNAPPY,
        );
    }
    // b: truncated; c: its column data damaged (found only while decoding a row group).
    let b = std::fs::read(input.join("b.parquet")).unwrap();
    std::fs::write(input.join("b.parquet"), &b[..b.len() / 2]).unwrap();
    let mut c = std::fs::read(input.join("c.parquet")).unwrap();
    let n = c.len();
    for x in &mut c[n / 2..n / 2 + 300] {
        *x ^= 0x77;
    }
    std::fs::write(input.join("c.parquet"), c).unwrap();
    let out = dir.path().join("out");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--on-error",
        "skip",
        "-o",
        p(&out),
        p(&input),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("skipped 2 unreadable inputs"), "{err}");
    assert!(out.join("_SUCCESS").exists());
    let names: Vec<String> = tree(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "_SUCCESS",
            "_state/files.json",
            "data/a.parquet",
            "data/d.parquet",
            "excluded/a.parquet",
            "excluded/d.parquet",
            "summary.json"
        ]
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let skipped: Vec<&str> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert!(
        skipped[0].ends_with("b.parquet") && skipped[1].ends_with("c.parquet"),
        "{skipped:?}"
    );
    assert!(
        s["skipped"][1]["error"]
            .as_str()
            .unwrap()
            .contains("(row group"),
        "{}",
        s["skipped"][1]
    );
    assert_eq!(s["totals"]["files"], 2);
    assert_eq!(s["totals"]["rows"], 1000);
    // Without --on-error skip the same run aborts and writes nothing.
    let out2 = dir.path().join("out2");
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "-o",
        p(&out2),
        p(&input),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!out2.exists());
}

#[test]
fn sigterm_stops_cleanly_and_resume_equals_a_fresh_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 6, 6000);
    let fresh = dir.path().join("fresh");
    assert!(filter_cmd("meta-uk-2024.yaml", &fresh, &input, &[])
        .status()
        .unwrap()
        .success());
    let want = data_tree(&fresh);

    let out = dir.path().join("out");
    let tmp = dir.path().join(".out.corpusgate-tmp");
    let mut interrupted = false;
    for delay_ms in [60u64, 120, 200, 30, 300] {
        let mut child = filter_cmd("meta-uk-2024.yaml", &out, &input, &[])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let t0 = Instant::now();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "stopping took {:?}",
            t0.elapsed()
        );
        if status.code() == Some(0) {
            // Finished before the signal; start over with a shorter delay.
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        assert_eq!(status.code(), Some(143));
        assert!(!out.exists(), "an interrupted run must not leave OUT_DIR");
        assert!(tmp.join(".journal.jsonl").exists());
        // Only complete files are kept: every one of them is readable.
        for (name, _) in data_tree(&tmp) {
            read_all(&tmp.join(name));
        }
        interrupted = true;
        break;
    }
    assert!(
        interrupted,
        "no run was interrupted; the corpus is too small for this machine"
    );
    let resumed = filter_cmd("meta-uk-2024.yaml", &out, &input, &["--resume"])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        data_tree(&out),
        want,
        "resumed output differs from a fresh run"
    );
    assert!(!tmp.exists());

    // A changed input is redone, not reused.
    let mut child = filter_cmd("meta-uk-2024.yaml", &out, &input, &["--overwrite"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let recs = random_records(999, 3000, 0);
    write_parquet(
        &input.join("part-00.parquet"),
        &recs,
        CountryType::Utf8,
        500,
        Compression::SNAPPY,
    );
    let fresh2 = dir.path().join("fresh2");
    assert!(filter_cmd("meta-uk-2024.yaml", &fresh2, &input, &[])
        .status()
        .unwrap()
        .success());
    let r = filter_cmd(
        "meta-uk-2024.yaml",
        &out,
        &input,
        &["--overwrite", "--resume"],
    )
    .output()
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(data_tree(&out), data_tree(&fresh2));
}

#[test]
fn resume_drops_outputs_of_inputs_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 6, 6000);
    let out = dir.path().join("out");
    let tmp = dir.path().join(".out.corpusgate-tmp");
    // Hold the run when its first file is journaled, then stop it there.
    stop_at("journaled", &dir.path().join("pause"), &out, &input);
    assert!(tmp.join("data/part-00.parquet").exists());
    // The completed first input is removed before resuming: its outputs must not be committed.
    std::fs::remove_file(input.join("part-00.parquet")).unwrap();
    resume_equals_fresh(dir.path(), &out, &input);
    assert!(!out.join("data/part-00.parquet").exists());
}

/// Run opt-in-only.yaml over `input` into `out`, send it SIGTERM when it reaches failpoint
/// `point`, and check that it stopped with 143 and committed nothing.
fn stop_at(point: &str, pause: &Path, out: &Path, input: &Path) {
    let cmd = filter_cmd("opt-in-only.yaml", out, input, &[]);
    let child = spawn_held(cmd, point, pause);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::fs::remove_file(pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(!out.exists(), "{:?}", tree(out));
}

/// `--resume` of opt-in-only.yaml over `input` into `out` succeeds and commits the data a fresh
/// run (into `dir/fresh`) writes.
fn resume_equals_fresh(dir: &Path, out: &Path, input: &Path) {
    let r = filter_cmd("opt-in-only.yaml", out, input, &["--resume"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let fresh = dir.join("fresh");
    assert!(filter_cmd("opt-in-only.yaml", &fresh, input, &[])
        .status()
        .unwrap()
        .success());
    assert_eq!(data_tree(out), data_tree(&fresh));
}

/// A stop asked for after the writer's last row group, while its file is still being placed,
/// stops the run all the same: exit 143, nothing committed, the file kept for `--resume` (which
/// then commits what a fresh run would). Whether a run commits must not depend on how far the
/// writer had got when the signal came.
#[test]
fn a_stop_after_the_last_row_group_still_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 1, 3000);
    let out = dir.path().join("out");
    let tmp = dir.path().join(".out.corpusgate-tmp");
    // One file: when its outputs reach the placer, the writer has nothing left to do.
    stop_at("placing", &dir.path().join("pause"), &out, &input);
    assert!(
        tmp.join("data/part-00.parquet").exists(),
        "{:?}",
        tree(&tmp)
    );
    resume_equals_fresh(dir.path(), &out, &input);
    assert!(!tmp.exists());
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 4, 2500);
    let out = dir.path().join("out");
    // The previous complete output (another policy), which --overwrite replaces.
    assert!(filter_cmd("opt-in-only.yaml", &out, &input, &[])
        .status()
        .unwrap()
        .success());
    let mut old = tree(&out);
    let fresh = dir.path().join("fresh");
    let t0 = Instant::now();
    assert!(
        filter_cmd("genai-uk-eea-ch-pause.yaml", &fresh, &input, &[])
            .status()
            .unwrap()
            .success()
    );
    let full_ms = t0.elapsed().as_millis() as u64;
    let new = data_tree(&fresh);

    let mut rng = Rng(7);
    let mut saw_new = 0;
    for i in 0..50 {
        let resume: &[&str] = if i % 2 == 0 {
            &["--overwrite", "--resume"]
        } else {
            &["--overwrite"]
        };
        let mut child = filter_cmd("genai-uk-eea-ch-pause.yaml", &out, &input, resume)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(
            rng.below(full_ms as usize + 10) as u64
        ));
        let _ = child.kill();
        let _ = child.wait();
        let now = tree(&out);
        if now == old {
            continue;
        }
        // Otherwise it must be the new, complete output.
        assert!(
            out.join("_SUCCESS").exists(),
            "kill {i}: OUT_DIR is neither the old nor a complete new output"
        );
        let got = data_tree(&out);
        if got != new {
            let names = |t: &[(String, Vec<u8>)]| {
                t.iter()
                    .map(|(n, b)| format!("{n}:{}", b.len()))
                    .collect::<Vec<_>>()
            };
            panic!(
                "kill {i}: committed output differs from a fresh run:\n got {:?}\nwant {:?}",
                names(&got),
                names(&new)
            );
        }
        saw_new += 1;
        // Back to the old output for the next round.
        std::fs::remove_dir_all(&out).unwrap();
        assert!(filter_cmd("opt-in-only.yaml", &out, &input, &[])
            .status()
            .unwrap()
            .success());
        old = tree(&out);
    }
    // Whatever the kills left, a resumed run completes to exactly the fresh output.
    let r = filter_cmd(
        "genai-uk-eea-ch-pause.yaml",
        &out,
        &input,
        &["--overwrite", "--resume"],
    )
    .output()
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(data_tree(&out), new);
    eprintln!("50 kills: {saw_new} landed after the commit");
}

/// Run A is held still (`CORPUSGATE_PAUSE_AT`) at each moment it holds the output — just after
/// taking the lock, before and after moving its directory into place — and run B is started
/// then: B must be told to retry (75) and A must finish. Before the lock moved out of the
/// temporary directory, B could lock a fresh file after A deleted its own, and both "won".
#[test]
fn a_second_run_on_the_same_output_is_told_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 3, 3000);
    let out = dir.path().join("out");
    for point in ["lock-taken", "before-commit-rename", "after-commit-rename"] {
        let _ = std::fs::remove_dir_all(&out);
        let pause = dir.path().join(format!("pause-{point}"));
        let a = filter_cmd("opt-in-only.yaml", &out, &input, &["--overwrite"])
            .env(
                "CORPUSGATE_PAUSE_AT",
                format!("{point}:{}", pause.display()),
            )
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !pause.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "run A never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let b = filter_cmd("opt-in-only.yaml", &out, &input, &["--overwrite"])
            .output()
            .unwrap();
        std::fs::remove_file(&pause).unwrap();
        let a = a.wait_with_output().unwrap();
        let a_err = String::from_utf8_lossy(&a.stderr);
        let b_err = String::from_utf8_lossy(&b.stderr);
        assert!(
            a.status.success(),
            "{point}: run A: {:?}: {a_err}",
            a.status
        );
        assert_eq!(b.status.code(), Some(75), "{point}: run B: {b_err}");
        assert!(
            b_err.contains("another corpusgate run is writing"),
            "{b_err}"
        );
        assert!(out.join("_SUCCESS").exists(), "{point}");
    }
}

/// Many pairs of runs on one output at once, however they interleave: each ends with 0 or 75
/// (never 1), and the output is always one run's complete output.
#[test]
fn concurrent_runs_on_one_output_never_fail_or_mix() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 2, 300);
    let out = dir.path().join("out");
    for round in 0..15 {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                filter_cmd("opt-in-only.yaml", &out, &input, &["--overwrite"])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for r in runs {
            let o = r.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                matches!(o.status.code(), Some(0) | Some(75)),
                "round {round}: {:?}: {err}",
                o.status
            );
        }
        assert!(out.join("_SUCCESS").exists(), "round {round}");
        assert!(out.join("summary.json").exists(), "round {round}");
    }
}

#[test]
fn disk_full_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48k", "tmpfs", p(&mnt)])
        .status();
    if !matches!(ok, Ok(s) if s.success()) {
        // Not root: a file size limit makes writes fail the same way mid-run.
        file_too_large_ends_cleanly(dir.path());
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let input = corpus(dir.path(), 2, 3000);
    let out = mnt.join("out");
    let r = filter_cmd("opt-in-only.yaml", &out, &input, &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains(p(&mnt)),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Writes failing in the middle of a run (a file size limit: with SIGXFSZ ignored, writes past
/// 4 KiB fail with EFBIG) end with one error line and nothing left behind.
#[test]
fn writes_failing_mid_run_end_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    file_too_large_ends_cleanly(dir.path());
}

/// `disk_full_ends_cleanly` where a tmpfs cannot be mounted: the same failure by a size limit.
fn file_too_large_ends_cleanly(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let input = corpus(dir, 2, 3000);
    let out = dir.join("out");
    let mut cmd = filter_cmd("opt-in-only.yaml", &out, &input, &[]);
    // SAFETY: setrlimit and signal are async-signal-safe; they change only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 4 << 10,
                rlim_max: 4 << 10,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let r = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists());
    assert!(!dir.join(".out.corpusgate-tmp").exists());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    /// Mutated real files never make the run panic; when it succeeds, the partition law holds.
    #[test]
    fn mutated_files_fail_cleanly(seed in any::<u64>(), kind in 0u8..4, at in 0.0f64..1.0, n in 1usize..64) {
        let dir = tempfile::tempdir().unwrap();
        let recs = random_records(seed, 300, 0);
        let path = dir.path().join("in/x.parquet");
        write_parquet(&path, &recs, CountryType::Dict, 64, Compression::SNAPPY);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        let pos = ((len as f64) * at) as usize % len;
        match kind {
            0 => { let mut r = Rng(seed); for _ in 0..n { let i = r.below(len); bytes[i] ^= 1 << r.below(8); } }
            1 => bytes.truncate(pos.max(1)),
            2 => { let footer = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
                   let start = len.saturating_sub(8 + footer);
                   for b in &mut bytes[start..len - 8] { *b = 0; } }
            _ => { for b in &mut bytes[pos..(pos + n * 16).min(len)] { *b = 0xff; } }
        }
        std::fs::write(&path, &bytes).unwrap();
        let out = dir.path().join("out");
        let (code, _, err) = run(&["filter", "--policy", p(&config("genai-uk-eea-ch-pause.yaml")), "-o", p(&out), p(&dir.path().join("in"))]);
        prop_assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{}", err);
        prop_assert!(code == 0 || code == 1 || code == 2, "exit {}: {}", code, err);
        // No crafted file makes a run allocate without bound (peak of any child so far, KiB).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
        prop_assert!(usage.ru_maxrss < 1024 * 1024, "a run peaked at {} KiB", usage.ru_maxrss);
        if code == 0 {
            let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
            let kept = read_all(&out.join("data/x.parquet")).num_rows();
            let excluded = read_all(&out.join("excluded/x.parquet")).num_rows();
            prop_assert_eq!(kept as u64, s["totals"]["kept"].as_u64().unwrap());
            prop_assert_eq!((kept + excluded) as u64, s["totals"]["rows"].as_u64().unwrap());
        } else {
            prop_assert!(!out.exists());
            // One error line; a repaired footer may add a note before it.
            prop_assert_eq!(err.lines().filter(|l| l.starts_with("corpusgate: error:")).count(), 1, "{}", err);
            prop_assert!(err.lines().all(|l| l.starts_with("corpusgate: error:") || l.starts_with("corpusgate: note:")), "{}", err);
        }
    }
}

/// `--progress always` in a job log: a line 2 s after the start whether or not anything has
/// finished (the run is held still here), each with an ETA, and a last line with the totals.
#[test]
fn progress_lines_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 2, 2000);
    let out = dir.path().join("out");
    let pause = dir.path().join("pause");
    let cmd = filter_cmd("opt-in-only.yaml", &out, &input, &[]);
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| if a == "never" { "always".into() } else { a })
        .collect();
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .env(
            "CORPUSGATE_PAUSE_AT",
            format!("journaled:{}", pause.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    while !pause.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no file was journaled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_file(&pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("progress:")).collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(
        lines[0].contains(" MiB (") && lines[0].contains("ETA "),
        "{err}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("corpusgate: progress: done: 4,000 rows"),
        "{err}"
    );
}

/// A completed file's outputs are synced and moved to their names on a thread of their own
/// while the writer goes on: one that cannot reach its name there fails the run (exit 1, the
/// file named) and nothing is committed, as when the writer itself failed.
#[test]
fn an_output_that_cannot_reach_its_name_fails_the_run_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 2, 2000);
    let out = dir.path().join("out");
    let pause = dir.path().join("pause");
    let cmd = filter_cmd("opt-in-only.yaml", &out, &input, &[]);
    let child = spawn_held(cmd, "placing", &pause);
    // The first file's outputs are complete under their temporary names, held before their
    // sync: take them away (and any the writer has begun since).
    let parts: Vec<String> = tree(dir.path())
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.ends_with(".part"))
        .collect();
    assert!(
        parts.iter().any(|r| r.ends_with(".part-00.parquet.part")),
        "{parts:?}"
    );
    for rel in &parts {
        std::fs::remove_file(dir.path().join(rel)).unwrap();
    }
    std::fs::remove_file(&pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("renaming into place") && err.contains("part-00.parquet"),
        "{err}"
    );
    assert!(!out.exists(), "{:?}", tree(&out));
    let left: Vec<String> = tree(dir.path())
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| !rel.starts_with("in/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
