//! `report`: a filter run's summary.json as a terminal table, or as one self-contained HTML page
//! (inline SVG charts, the policy text and hash, the run's times and versions; no network).

use std::fmt::Write;

use crate::error::Result;
use crate::io::Location;
use crate::summary::{group, SummaryFile};

/// A region key of summary.json with its name: `GP Guadeloupe`, `unknown`.
fn region_name(code: &str) -> String {
    if code == "unknown" {
        return code.to_owned();
    }
    let r = crate::region::normalize(code);
    if r.is_unknown() {
        code.to_owned()
    } else {
        format!("{code} {}", r.name())
    }
}

/// Rows of the rule × region table: (rule, action, region with name, rows).
fn rule_region_rows(s: &SummaryFile) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    for (rule, regions) in s.by_rule_and_region.iter().flatten() {
        let action = s.by_rule.get(rule).map_or("?", |r| r.action.as_str());
        for (region, n) in regions {
            rows.push([
                rule.clone(),
                action.to_owned(),
                region_name(region),
                group(*n),
            ]);
        }
    }
    rows
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

/// Rows of (name, a, b, c) as an aligned text table.
fn table(head: [&str; 4], rows: &[[String; 4]]) -> String {
    let mut w = head.map(|h| h.chars().count());
    for r in rows {
        for i in 0..4 {
            w[i] = w[i].max(r[i].chars().count());
        }
    }
    // Numbers (counts, shares) right-aligned, words left-aligned.
    let numeric = |i: usize| {
        rows.iter().all(|r| {
            r[i].chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '%' | '-'))
        })
    };
    let right: Vec<bool> = (0..4).map(|i| i > 0 && numeric(i)).collect();
    let line = |cells: [&str; 4]| {
        let mut out = String::from(" ");
        for i in 0..4 {
            let pad = w[i] - cells[i].chars().count();
            out.push(' ');
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cells[i]);
            } else {
                out.push_str(cells[i]);
                if i < 3 {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if i < 3 {
                out.push(' ');
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut s = line(head);
    for r in rows {
        s.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    s
}

/// The terminal report.
pub fn text(s: &SummaryFile) -> String {
    let t = &s.totals;
    let (rows, kept, excluded) = (t.rows, t.kept, t.excluded);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy {} (version {}, sha256 {})",
        s.policy.id,
        s.policy.version.as_deref().unwrap_or("-"),
        s.policy.sha256
    );
    let _ = writeln!(
        out,
        "run {} .. {}, corpusgate {}",
        s.started_at, s.finished_at, s.corpusgate_version
    );
    let _ = writeln!(
        out,
        "{} files, {} rows: kept {} ({}), excluded {} ({})\n",
        t.files,
        group(rows),
        group(kept),
        pct(kept, rows),
        group(excluded),
        pct(excluded, rows)
    );
    let by_rule: Vec<[String; 4]> = s
        .by_rule
        .iter()
        .map(|(rule, v)| {
            [
                rule.clone(),
                v.action.clone(),
                group(v.rows),
                pct(v.rows, rows),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "By rule\n{}",
        table(["rule", "action", "rows", "share"], &by_rule)
    );
    let by_region: Vec<[String; 4]> = s
        .by_region
        .iter()
        .map(|(region, v)| {
            [
                region_name(region),
                group(v.rows),
                group(v.kept),
                group(v.excluded),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "By region\n{}",
        table(["region", "rows", "kept", "excluded"], &by_region)
    );
    if s.by_rule_and_region.is_some() {
        let _ = writeln!(
            out,
            "By rule and region\n{}",
            table(["rule", "action", "region", "rows"], &rule_region_rows(s))
        );
    }
    let files: Vec<[String; 4]> = s
        .files
        .iter()
        .map(|f| {
            [
                f.path.clone(),
                group(f.rows),
                group(f.kept),
                group(f.excluded),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "By file\n{}",
        table(["file", "rows", "kept", "excluded"], &files)
    );
    if !s.skipped.is_empty() {
        let _ = writeln!(out, "Skipped (unreadable) inputs");
        for k in &s.skipped {
            let _ = writeln!(out, "  {}: {}", k.path, k.error);
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one bar per (label, value), optionally split kept/excluded.
fn bars(id: &str, title: &str, items: &[(String, u64, u64)]) -> String {
    let row_h = 22;
    let label_w = 290;
    let bar_w = 500;
    let h = 8 + row_h * items.len().max(1);
    let max = items
        .iter()
        .map(|(_, k, e)| k + e)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut s = format!(
        r#"<svg id="{id}" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">
"#,
        t = esc(title),
        w = label_w + bar_w + 120
    );
    for (i, (label, kept, excluded)) in items.iter().enumerate() {
        let y = 4 + i * row_h;
        let kw = (*kept as f64 / max as f64 * bar_w as f64).round();
        let ew = (*excluded as f64 / max as f64 * bar_w as f64).round();
        let _ = write!(
            s,
            r#"<g class="row" data-label="{l}" data-kept="{kept}" data-excluded="{excluded}">
<text x="{lx}" y="{ty}" text-anchor="end">{l}</text>
<rect x="{x}" y="{y}" width="{kw}" height="16" class="kept"><title>{l}: {kg} kept</title></rect>
<rect x="{x2}" y="{y}" width="{ew}" height="16" class="excluded"><title>{l}: {eg} excluded</title></rect>
<text x="{nx}" y="{ty}">{n}</text>
</g>
"#,
            l = esc(label),
            lx = label_w - 8,
            ty = y + 13,
            x = label_w,
            x2 = label_w as f64 + kw,
            nx = label_w as f64 + kw + ew + 6.0,
            n = group(kept + excluded),
            kg = group(*kept),
            eg = group(*excluded),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The bars of the HTML report: (label, kept, excluded) by rule, by region, by file.
fn chart_items(s: &SummaryFile) -> [Vec<(String, u64, u64)>; 3] {
    let rules = s
        .by_rule
        .iter()
        .map(|(rule, v)| {
            let inc = v.action == "include";
            (
                format!("{rule} ({})", v.action),
                if inc { v.rows } else { 0 },
                if inc { 0 } else { v.rows },
            )
        })
        .collect();
    let mut regions: Vec<(String, u64, u64)> = s
        .by_region
        .iter()
        .map(|(k, v)| (region_name(k), v.kept, v.excluded))
        .collect();
    regions.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
    let files = s
        .files
        .iter()
        .map(|f| (f.path.clone(), f.kept, f.excluded))
        .collect();
    [rules, regions, files]
}

const STYLE: &str = r#"body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #1d2430; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table.kv td { padding: 2px 12px 2px 0; vertical-align: top; } table.kv td:first-child { white-space: nowrap; } code, pre { font: 12px ui-monospace, monospace; } table.kv code { word-break: break-all; }
pre { background: #f4f6f8; padding: 12px; overflow-x: auto; border-radius: 6px; }
.totals span { display: inline-block; margin-right: 2em; font-size: 1.1em; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2430; } svg text.t { font-weight: 600; }
rect.kept { fill: #2e8b57; } rect.excluded { fill: #c0392b; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: -1px; }
table.grid { border-collapse: collapse; margin: .6em 0; } table.grid th, table.grid td { padding: 2px 12px; border-bottom: 1px solid #e3e7eb; text-align: left; }
table.grid td.n { text-align: right; font-variant-numeric: tabular-nums; }"#;

/// An HTML table; counts are right-aligned (except in the options' table of settings).
fn html_table<const N: usize>(id: &str, head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut t = format!("<table class=\"grid\" id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr>\n");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let numeric = id != "options"
                && !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_digit() || ch == ',');
            let class = if numeric { " class=\"n\"" } else { "" };
            let _ = write!(t, "<td{class}>{}</td>", esc(c));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    t
}

/// The run's options as a table of names and values (numbers with separators).
fn options_table(options: &serde_json::Value) -> String {
    let rows: Vec<[String; 2]> = options
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let shown = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "-".into(),
                        serde_json::Value::Number(n) => match n.as_u64() {
                            Some(u) if k == "max_memory" => crate::error::Bytes(u).to_string(),
                            Some(u) => group(u),
                            None => n.to_string(),
                        },
                        other => other.to_string(),
                    };
                    [k.replace('_', " "), shown]
                })
                .collect()
        })
        .unwrap_or_default();
    html_table("options", &["option", "value"], &rows)
}

/// The HTML report: one page, everything inline.
pub fn html(s: &SummaryFile) -> String {
    let t = &s.totals;
    let [rule_items, region_items, file_items] = chart_items(s);
    let policy = &s.policy;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>corpusgate report: {id}</title>
<style>
{STYLE}
</style></head><body>
<h1>Training-data filter report</h1>
<p>Policy <b id="policy-id">{id}</b> version <b>{version}</b>, run by corpusgate {cgv}.</p>
<table class="kv">
<tr><td>Policy SHA-256</td><td><code id="policy-sha256">{sha}</code></td></tr>
<tr><td>Started</td><td id="started-at">{start}</td></tr>
<tr><td>Finished</td><td id="finished-at">{end}</td></tr>
</table>
<h2>Options</h2>
{opts}
<p class="totals"><span>Files: <b id="total-files">{files}</b></span><span>Rows: <b id="total-rows">{rows}</b></span>
<span>Kept: <b id="total-kept">{kept}</b> ({kp})</span><span>Excluded: <b id="total-excluded">{excluded}</b> ({ep})</span></p>
<p class="legend"><span style="background:#2e8b57"></span>kept<span style="background:#c0392b"></span>excluded</p>
<h2>Rows decided by each rule</h2>
{rule_svg}
<h2>Rows by region</h2>
{region_svg}
{region_table}
<h2>Rows each rule decided, by region</h2>
{rule_region_table}
<h2>Rows by file</h2>
{file_svg}
"#,
        id = esc(&policy.id),
        version = esc(policy.version.as_deref().unwrap_or("-")),
        cgv = esc(&s.corpusgate_version),
        sha = esc(&policy.sha256),
        start = esc(&s.started_at),
        end = esc(&s.finished_at),
        opts = options_table(&s.options),
        files = group(t.files),
        rows = group(t.rows),
        kept = group(t.kept),
        excluded = group(t.excluded),
        region_table = html_table(
            "by-region-table",
            &["region", "rows", "kept", "excluded"],
            &s.by_region
                .iter()
                .map(|(r, v)| [
                    region_name(r),
                    group(v.rows),
                    group(v.kept),
                    group(v.excluded)
                ])
                .collect::<Vec<_>>(),
        ),
        rule_region_table = html_table(
            "by-rule-region",
            &["rule", "action", "region", "rows"],
            &rule_region_rows(s),
        ),
        kp = pct(t.kept, t.rows),
        ep = pct(t.excluded, t.rows),
        rule_svg = bars("by-rule", "Rows decided by each rule", &rule_items),
        region_svg = bars("by-region", "Rows by region", &region_items),
        file_svg = bars("by-file", "Rows by file", &file_items),
    );
    if !s.skipped.is_empty() {
        out.push_str("<h2>Skipped (unreadable) inputs</h2><ul>");
        for k in &s.skipped {
            let _ = write!(
                out,
                "<li><code>{}</code>: {}</li>",
                esc(&k.path),
                esc(&k.error)
            );
        }
        out.push_str("</ul>");
    }
    if let Some(t) = &s.consent_table {
        let _ = write!(
            out,
            "<h2>Consent snapshot</h2><p><code>{}</code>: {} rows, {} distinct keys, {} corpus rows unmatched; SHA-256 <code>{}</code></p>",
            esc(&t.path),
            group(t.rows),
            group(t.distinct_keys),
            group(t.unmatched_rows),
            esc(&t.sha256)
        );
    }
    let _ = write!(
        out,
        "<h2>Policy</h2><p>The policy file as it was used (SHA-256 <code>{}</code>):</p><pre id=\"policy-text\">{}</pre>\n</body></html>\n",
        esc(&policy.sha256),
        esc(&policy.text)
    );
    out
}

/// `corpusgate report`.
pub fn command(args: &crate::cli::ReportArgs) -> Result<crate::error::ExitStatus> {
    let s = SummaryFile::load(&Location::from_arg("report OUT_DIR", &args.out_dir)?)?;
    print!("{}", text(&s));
    if let Some(path) = &args.html {
        let page = html(&s);
        crate::io::write_file(
            &crate::io::Location::from_arg("--html", path)?,
            page.as_bytes(),
        )?;
        eprintln!("corpusgate: wrote {}", path.display());
    }
    Ok(crate::error::ExitStatus::Success)
}
