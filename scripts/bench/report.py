#!/usr/bin/env python3
"""Render bench.sh's measurements (a TSV) as markdown.

    report.py RESULTS.tsv HEADER.md

RESULTS.tsv columns: section, layout, tool, settings, match, wall_s, cpu_s, rss_kb, out_bytes
(du -sb of the whole output), note, data_bytes (du -sb of the kept-row data only), other_cpu_s
(CPU seconds other processes used during the run: noise). `match` pairs a corpusgate row with the DuckDB row of the same section and layout that
did the job at the same settings; ratios are corpusgate / DuckDB (below 1: corpusgate is faster,
smaller, leaner).
"""

import csv
import sys

COLS = (
    "section", "layout", "tool", "settings", "match", "wall_s", "cpu_s", "rss_kb", "out_bytes",
    "note", "data_bytes", "other_cpu_s",
)


def f(x, fmt):
    return "" if x in ("", None) else format(float(x), fmt)


def mib(b):
    return "" if b in ("", None) else f"{int(b) / 2**20:,.1f}"


def ratio(a, b):
    try:
        return f"{float(a) / float(b):.2f}"
    except (ValueError, ZeroDivisionError, TypeError):
        return ""


def main():
    rows = [dict(zip(COLS, r + [""] * len(COLS))) for r in csv.reader(open(sys.argv[1]), delimiter="\t")]
    header = open(sys.argv[2]).read().strip("\n") if len(sys.argv) > 2 else ""
    out = [header, ""] if header else []

    main_rows = [r for r in rows if r["section"] in ("main", "floor")]
    if main_rows:
        out += [
            "| layout | tool | settings | wall s | CPU s | peak RSS MiB | output MiB | of it data MiB "
            "| wall ×DuckDB | RSS ×DuckDB | bytes ×DuckDB | data bytes ×DuckDB | others' CPU s |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in main_rows:
            rw = rr = rb = rd = ""
            if r["tool"] == "corpusgate" and r["match"]:
                d = [x for x in rows if x["section"] == r["section"] and x["layout"] == r["layout"]
                     and x["tool"] == "duckdb" and x["match"] == r["match"]]
                if d:
                    d = d[0]
                    rw = ratio(r["wall_s"], d["wall_s"])
                    rr = ratio(r["rss_kb"], d["rss_kb"])
                    rb = ratio(r["out_bytes"], d["out_bytes"])
                    rd = ratio(r["data_bytes"], d["data_bytes"])
            settings = r["settings"] + (f" ({r['note']})" if r["note"] else "")
            out.append(
                f"| {r['layout']} | {r['tool']} | {settings} | {f(r['wall_s'], '.2f')} "
                f"| {f(r['cpu_s'], '.2f')} | {mib(int(r['rss_kb']) * 1024) if r['rss_kb'] else ''} "
                f"| {mib(r['out_bytes'])} | {mib(r['data_bytes'])} | {rw} | {rr} | {rb} | {rd} | {f(r['other_cpu_s'], '.2f')} |"
            )
        out.append("")
        out.append(
            "Ratios are corpusgate / DuckDB at matching settings (`zstd:3` vs DuckDB "
            "`COMPRESSION_LEVEL 3`; `preserve` vs DuckDB's default zstd level); below 1 is better "
            "for corpusgate. Output MiB is `du -sb` of the whole output directory (kept data + "
            "exclusion manifests + summary.json); data MiB only the kept rows (corpusgate's "
            "`data/`, DuckDB's `data.parquet`). Others' CPU s: CPU time that other processes on the machine used "
            "during the run (from /proc/stat); well above 0, the row was slowed by them."
        )
        out.append("")

    thr = [r for r in rows if r["section"] == "threads"]
    if thr:
        out += [
            "| layout | tool | threads | wall s | CPU s | peak RSS MiB | others' CPU s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in thr:
            out.append(
                f"| {r['layout']} | {r['tool']} | {r['settings']} | {f(r['wall_s'], '.2f')} "
                f"| {f(r['cpu_s'], '.2f')} | {mib(int(r['rss_kb']) * 1024)} | {f(r['other_cpu_s'], '.2f')} |"
            )
        by = {r["settings"]: r for r in thr}
        if "1" in by and "2" in by:
            out.append("")
            out.append(
                f"Speed-up `--threads 2` over `--threads 1`: "
                f"{float(by['1']['wall_s']) / float(by['2']['wall_s']):.2f}×"
            )
        out.append("")

    sc = [r for r in rows if r["section"] == "scaling"]
    if sc:
        out += [
            "Scaling (mixed layout):",
            "",
            "| rows | tool | settings | wall s | CPU s | peak RSS MiB | output MiB | rows/s | others' CPU s |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in sc:
            n = int(r["layout"])
            out.append(
                f"| {n:,} | {r['tool']} | {r['settings']} | {f(r['wall_s'], '.2f')} "
                f"| {f(r['cpu_s'], '.2f')} | {mib(int(r['rss_kb']) * 1024)} | {mib(r['out_bytes'])} "
                f"| {n / float(r['wall_s']):,.0f} | {f(r['other_cpu_s'], '.2f')} |"
            )
        out.append("")

    notes = [r for r in rows if r["section"] == "note"]
    for r in notes:
        out.append(f"- {r['note']}")
    print("\n".join(out).rstrip("\n"))


if __name__ == "__main__":
    main()
