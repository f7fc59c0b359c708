//! verify, explain, policy tests, report, diff and pseudonymized manifests on the sample data.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn sample() -> PathBuf {
    root().join("sample-data/corpus")
}

fn filter_to(dir: &Path, name: &str, policy: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let policy = config(policy);
    let mut args = vec!["filter", "--policy", p(&policy), "-o", p(&out)];
    args.extend_from_slice(extra);
    let s = sample();
    args.push(p(&s));
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    out
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn verify_passes_a_filter_output_and_flags_the_raw_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let out = filter_to(dir.path(), "out", "meta-uk-2024.yaml", &[]);
    let (code, stdout, err) = run(&[
        "verify",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        p(&out),
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains("0 violate the policy") && stdout.contains("verify: clean"),
        "{stdout}"
    );

    let s = summary(&out);
    let (code, stdout, _) = run(&[
        "verify",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        p(&sample()),
    ]);
    assert_eq!(code, 3);
    let excluded = s["totals"]["excluded"].as_u64().unwrap();
    assert!(
        stdout.contains(&format!("{} violate the policy", group(excluded))),
        "{stdout}"
    );
    // The first listed violation is the first manifest row.
    let m = read_all(&out.join("excluded/part-00000.parquet"));
    let first = format!(
        "part-00000.parquet  {}  {}",
        i64s(&m, "row")[0].unwrap(),
        strings(&m, "rule")[0].as_ref().unwrap()
    );
    assert!(stdout.contains(&first), "{first} not in\n{stdout}");

    // Another policy's output violates this one.
    let other = filter_to(dir.path(), "other", "opt-in-only.yaml", &[]);
    let (code, stdout, _) = run(&[
        "verify",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        p(&other),
    ]);
    assert_eq!(code, 3);
    assert!(stdout.contains("corpusgate.policy_sha256 is"), "{stdout}");
}

#[test]
fn verify_checks_the_runs_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let out = filter_to(dir.path(), "out", "opt-in-only.yaml", &[]);
    let policy = config("opt-in-only.yaml");
    // Summary says one more row than the files hold.
    let mut s = summary(&out);
    s["files"][0]["kept"] = serde_json::json!(s["files"][0]["kept"].as_u64().unwrap() + 1);
    std::fs::write(out.join("summary.json"), s.to_string()).unwrap();
    let (code, stdout, _) = run(&["verify", "--policy", p(&policy), p(&out)]);
    assert_eq!(code, 3);
    assert!(
        stdout.contains("integrity: part-00000.parquet: data holds"),
        "{stdout}"
    );
    // No _SUCCESS.
    std::fs::remove_file(out.join("_SUCCESS")).unwrap();
    let (code, stdout, _) = run(&["verify", "--policy", p(&policy), p(&out)]);
    assert_eq!(code, 3);
    assert!(stdout.contains("no _SUCCESS"), "{stdout}");
}

#[test]
fn explain_agrees_with_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = filter_to(dir.path(), "out", "meta-uk-2024.yaml", &[]);
    let m = read_all(&out.join("excluded/part-00002.parquet"));
    let rows = i64s(&m, "row");
    let rules = strings(&m, "rule");
    for k in [0usize, 7, 19] {
        let row = rows[k].unwrap();
        let spec = format!("{}:{row}", p(&sample().join("part-00002.parquet")));
        let (code, stdout, err) = run(&[
            "explain",
            "--policy",
            p(&config("meta-uk-2024.yaml")),
            "--row",
            &spec,
        ]);
        assert_eq!(code, 0, "{err}");
        let want = format!("decision: EXCLUDE by rule {}", rules[k].as_ref().unwrap());
        assert!(stdout.contains(&want), "{want} not in\n{stdout}");
    }
    let (code, stdout, _) = run(&[
        "explain",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        "--values",
        "{country: gb, genai_consent: opt_in, author_age: 30, visibility: public}",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("normalised: region GB, consent granted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("6. uk-adult-public -> include => DECIDES"),
        "{stdout}"
    );
    assert!(stdout.contains("unless author_age >= 18: true"), "{stdout}");
    assert!(
        stdout.contains("decision: INCLUDE by rule uk-adult-public"),
        "{stdout}"
    );
    let (code, _, err) = run(&[
        "explain",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        "--values",
        "{contry: gb}",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'contry' is not a column the policy reads"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "explain",
        "--policy",
        p(&config("meta-uk-2024.yaml")),
        "--row",
        "x.parquet",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_runs_the_policys_tests() {
    for name in [
        "genai-uk-eea-ch-pause.yaml",
        "meta-uk-2024.yaml",
        "opt-in-only.yaml",
        "consent-snapshot.yaml",
    ] {
        let (code, _, err) = run(&["check", p(&config(name))]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(err.contains("policy tests passed"), "{err}");
        // Every rule is covered by at least one test.
        let text = std::fs::read_to_string(config(name)).unwrap();
        let rules: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- id: "))
            .map(|s| s.split('#').next().unwrap().trim())
            .collect();
        for r in rules {
            assert!(
                text.contains(&format!("expect: {r}")),
                "{name}: no test expects rule {r}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(config("meta-uk-2024.yaml"))
        .unwrap()
        .replace("expect: uk-not-public", "expect: uk-adult-public");
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = run(&["check", p(&bad)]);
    assert_eq!(code, 2);
    assert!(err.contains("policy test 'uk-adult-private-post' failed: expected uk-adult-public, got uk-not-public"), "{err}");

    // Every failing test is reported, each with its line, then one verdict; `check --policy`
    // works as every other command takes the policy.
    let text = std::fs::read_to_string(config("meta-uk-2024.yaml"))
        .unwrap()
        .replace("expect: uk-not-public", "expect: uk-adult-public")
        .replace("expect: eu-eea-paused", "expect: include");
    std::fs::write(&bad, &text).unwrap();
    let (code, stdout, err) = run(&["check", "--policy", p(&bad)]);
    assert_eq!(code, 2, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("' failed: expected"))
        .collect();
    assert!(failed.len() >= 2, "{err}");
    for l in &failed {
        assert!(l.starts_with(&format!("corpusgate: {}:", p(&bad))), "{l}");
    }
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("corpusgate: error: ") && last.contains(&format!("{} of ", failed.len())),
        "{last}"
    );
    assert!(last.contains("policy tests failed"), "{last}");
}

/// A u64 value above i64::MAX is shown and decided as itself, never wrapped to a negative one.
#[test]
fn explain_keeps_integers_above_i64_max_exact() {
    let (code, stdout, err) = run(&[
        "explain",
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--values",
        "{post_id: 18446744073709551615, country: us, genai_consent: opt_in}",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("18446744073709551615"), "{stdout}");
    assert!(!stdout.contains("-1"), "{stdout}");
}

#[test]
fn report_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let a = filter_to(dir.path(), "a", "meta-uk-2024.yaml", &[]);
    let b = filter_to(dir.path(), "b", "genai-uk-eea-ch-pause.yaml", &[]);
    let html = dir.path().join("r.html");
    let (code, stdout, err) = run(&["report", p(&a), "--html", p(&html)]);
    assert_eq!(code, 0, "{err}");
    let s = summary(&a);
    assert!(
        stdout.contains(&format!(
            "kept {}",
            group(s["totals"]["kept"].as_u64().unwrap())
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("uk-adult-public          include"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("http://") || page.matches("http://").all(|_| true));
    assert!(
        !page.contains("<script src") && !page.contains("<link"),
        "the page must be self-contained"
    );
    assert!(page.contains(&format!(
        "id=\"total-rows\">{}<",
        group(s["totals"]["rows"].as_u64().unwrap())
    )));
    assert!(
        page.contains("policy: meta-uk-2024"),
        "the policy text is included"
    );

    // diff, against an independent comparison of the two manifests.
    let (code, stdout, _) = run(&["diff", p(&a), p(&b), "--json"]);
    assert_eq!(code, 0);
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let manifest = |out: &Path| {
        let mut m = std::collections::HashMap::new();
        for f in std::fs::read_dir(out.join("excluded")).unwrap() {
            let b = read_all(&f.unwrap().path());
            for ((src, row), rule) in strings(&b, "source_file")
                .into_iter()
                .zip(i64s(&b, "row"))
                .zip(strings(&b, "rule"))
            {
                m.insert((src.unwrap(), row.unwrap()), rule.unwrap());
            }
        }
        m
    };
    let (ma, mb) = (manifest(&a), manifest(&b));
    let newly_excluded = mb.keys().filter(|k| !ma.contains_key(*k)).count() as u64;
    let newly_kept = ma.keys().filter(|k| !mb.contains_key(*k)).count() as u64;
    let sum = |k: &str| {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["rows"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("newly_excluded"), newly_excluded);
    assert_eq!(sum("newly_kept"), newly_kept);
    assert!(newly_excluded > 0);
}

/// `diff` between runs over different inputs: inputs only one run read are listed, never
/// counted as kept or excluded; an input that changed under the same name is flagged, not
/// row-matched; the header names both runs' policies. (Before, the five files missing from the
/// new run were counted as 4,440 "newly kept" rows.)
#[test]
fn diff_matches_runs_by_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = filter_to(dir.path(), "old", "genai-uk-eea-ch-pause.yaml", &[]);
    let one = dir.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(
        sample().join("part-00002.parquet"),
        one.join("part-00002.parquet"),
    )
    .unwrap();
    let new = dir.path().join("new");
    let policy = config("genai-uk-eea-ch-pause.yaml");
    let (code, _, err) = run(&["filter", "--policy", p(&policy), "-o", p(&new), p(&one)]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = run(&["diff", p(&old), p(&new), "--json"]);
    assert_eq!(code, 0, "{err}");
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["newly_kept"], serde_json::json!([]), "{d}");
    assert_eq!(d["newly_excluded"], serde_json::json!([]), "{d}");
    assert_eq!(
        d["inputs"]["compared"],
        serde_json::json!(["part-00002.parquet"])
    );
    let only_old = d["inputs"]["only_in_old"].as_array().unwrap();
    assert_eq!(only_old.len(), 5, "{d}");
    let s = summary(&old);
    let rows_of = |name: &str| {
        s["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == name)
            .unwrap()["rows"]
            .clone()
    };
    for f in only_old {
        assert_eq!(f["rows"], rows_of(f["path"].as_str().unwrap()));
    }
    assert_eq!(d["old"]["policy"]["id"], "genai-uk-eea-ch-pause");
    assert_eq!(d["new"]["policy"]["sha256"], s["policy"]["sha256"]);
    let (code, text, _) = run(&["diff", p(&old), p(&new)]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("old: policy genai-uk-eea-ch-pause ("),
        "{text}"
    );
    assert!(
        text.contains("only in the old run (not compared): 5 inputs"),
        "{text}"
    );
    assert!(text.contains("newly kept 0 rows"), "{text}");

    // Another file under the same name: flagged, not row-matched.
    std::fs::copy(
        sample().join("part-00003.parquet"),
        one.join("part-00002.parquet"),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&policy),
        "-o",
        p(&new),
        "--overwrite",
        p(&one),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, stdout, _) = run(&["diff", p(&old), p(&new), "--json"]);
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["inputs"]["compared"], serde_json::json!([]), "{d}");
    assert_eq!(
        d["inputs"]["changed"][0]["path"], "part-00002.parquet",
        "{d}"
    );
    assert_eq!(d["newly_kept"], serde_json::json!([]), "{d}");
}

#[test]
fn html_report_renders_in_a_real_browser() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let chromium = chromium.expect(
        "the HTML report is checked in a real browser: install Chromium (apt-get install chromium), as .ci/run does",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = filter_to(dir.path(), "out", "meta-uk-2024.yaml", &[]);
    let html = dir.path().join("report.html");
    assert_eq!(run(&["report", p(&out), "--html", p(&html)]).0, 0);
    let profile = dir.path().join("profile");
    let dom = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !log.contains("CONSOLE") && !log.contains("Uncaught"),
        "console output:\n{log}"
    );
    let s = summary(&out);
    for (id, v) in [
        ("total-rows", &s["totals"]["rows"]),
        ("total-kept", &s["totals"]["kept"]),
        ("total-excluded", &s["totals"]["excluded"]),
        ("total-files", &s["totals"]["files"]),
    ] {
        let v = group(v.as_u64().unwrap());
        assert!(
            dom_text.contains(&format!("id=\"{id}\">{v}<")),
            "{id} = {v} not rendered with thousands separators"
        );
    }
    // For the reviewer: options as a table, not JSON; region names beside codes; which rule
    // removed how many rows from which region; each heading once.
    assert!(
        dom_text.contains("<td>compression</td><td>preserve</td>"),
        "{dom_text}"
    );
    assert!(
        !dom_text.contains("{&quot;") && !dom_text.contains("{\"threads"),
        "raw JSON options"
    );
    for name in [
        "GP Guadeloupe",
        "RE Réunion",
        "XK Kosovo",
        "GB United Kingdom",
    ] {
        assert!(dom_text.contains(name), "{name}");
    }
    let rr = &s["by_rule_and_region"];
    let eu_fr = rr["eu-eea-paused"]["FR"].as_u64().unwrap();
    assert!(
        dom_text.contains(&format!(
            "<td>eu-eea-paused</td><td>exclude</td><td>FR France</td><td class=\"n\">{}</td>",
            group(eu_fr)
        )),
        "the rule x region table"
    );
    for h in [
        "Rows decided by each rule",
        "Rows by region",
        "Rows by file",
        "Options",
    ] {
        assert_eq!(
            dom_text.matches(&format!("<h2>{h}</h2>")).count(),
            1,
            "heading {h} once"
        );
    }
    assert!(
        !dom_text.contains("class=\"t\""),
        "no title repeated inside the charts"
    );
    // One bar group per rule, per region and per file, each carrying the summary's numbers.
    for (rule, v) in s["by_rule"].as_object().unwrap() {
        let n = v["rows"].as_u64().unwrap();
        let (k, e) = if v["action"] == "include" {
            (n, 0)
        } else {
            (0, n)
        };
        let want = format!("data-kept=\"{k}\" data-excluded=\"{e}\"");
        assert!(
            dom_text.contains(&want) && dom_text.contains(rule.as_str()),
            "rule {rule}: {want}"
        );
    }
    for (region, v) in s["by_region"].as_object().unwrap() {
        let want = format!(
            "\" data-kept=\"{}\" data-excluded=\"{}\"",
            v["kept"], v["excluded"]
        );
        let label = format!("data-label=\"{region}");
        assert!(
            dom_text.contains(&format!("{label}{want}"))
                || dom_text.split(&label).skip(1).any(|rest| rest
                    .split_once('"')
                    .is_some_and(|(_, after)| after.starts_with(&want[1..]))),
            "region {region}: {want}"
        );
    }
    // A screenshot, for people (kept next to the test's temp dir only while it runs).
    let shot = dir.path().join("report.png");
    let _ = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--window-size=1100,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output();
    if let Ok(keep) = std::env::var("CORPUSGATE_REPORT_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}

#[test]
fn pseudonymized_manifest_user_ids() {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, b"0123456789abcdef-test-key").unwrap();
    let out = filter_to(
        dir.path(),
        "out",
        "opt-in-only.yaml",
        &["--pseudonymize-user-ids", p(&key)],
    );
    let plain = filter_to(dir.path(), "plain", "opt-in-only.yaml", &[]);
    let m = read_all(&out.join("excluded/part-00001.parquet"));
    let raw = read_all(&plain.join("excluded/part-00001.parquet"));
    let ids = i64s(&raw, "user_id");
    let hashed = strings(&m, "user_id");
    for (id, h) in ids.iter().zip(&hashed) {
        match id {
            None => assert!(h.is_none()),
            Some(id) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef-test-key").unwrap();
                mac.update(id.to_string().as_bytes());
                let want: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(h.as_deref(), Some(want.as_str()));
            }
        }
    }
    let s = summary(&out);
    assert_eq!(s["options"]["pseudonymized_user_ids"], true);
    assert!(!std::fs::read_to_string(out.join("summary.json"))
        .unwrap()
        .contains("test-key"));
    // The data files are the same; only the manifest's user ids differ.
    assert_eq!(
        std::fs::read(out.join("data/part-00001.parquet")).unwrap(),
        std::fs::read(plain.join("data/part-00001.parquet")).unwrap()
    );
}
