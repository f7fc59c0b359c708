#!/usr/bin/env python3
"""Check that corpusgate and the DuckDB job did the same job.

    compare.py CG_OUT DUCK_OUT [--input IN_GLOB] [--members MEMBERS.parquet] [--examples N]

CG_OUT is a corpusgate output directory (data/**, excluded/**, summary.json), DUCK_OUT one of
duckdb_job.py (data.parquet, excluded.parquet). Checked, each as a full multiset comparison:

  1. kept rows: the multiset of post_id (count, sum, hash aggregate, and EXCEPT ALL both ways);
  2. kept rows, whole: the multiset of a hash of every column of every kept row (the columns must
     have the same names in the same order), so no tool mangled a value on the way;
  3. excluded rows: per-rule counts, and the multiset of (record_id, user_id, rule, region);
  4. corpusgate's summary.json totals agree with its files.

On any difference it prints concrete rows (with --input, the input row and what an independent
Python reading of the policy, policy.py, decides for it) and exits 1. The last line of stdout is
`compare: OK ...` or `compare: MISMATCH ...`.
"""

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import policy  # noqa: E402
from duckdb_job import members_sql  # noqa: E402

import duckdb  # noqa: E402


def q(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cg_out")
    ap.add_argument("duck_out")
    ap.add_argument("--input", help="input glob, to show the input rows behind a mismatch")
    ap.add_argument("--members", help="members snapshot of a join job, for the same purpose")
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    con = duckdb.connect()
    cg_data = q(os.path.join(a.cg_out, "data", "**", "*.parquet"))
    cg_excl = q(os.path.join(a.cg_out, "excluded", "**", "*.parquet"))
    dk_data = q(os.path.join(a.duck_out, "data.parquet"))
    dk_excl = q(os.path.join(a.duck_out, "excluded.parquet"))
    con.execute(f"CREATE VIEW cg_data AS SELECT * FROM read_parquet({cg_data})")
    con.execute(f"CREATE VIEW dk_data AS SELECT * FROM read_parquet({dk_data})")
    con.execute(
        f"CREATE VIEW cg_excl AS SELECT record_id AS post_id, user_id AS member_id, rule, region "
        f"FROM read_parquet({cg_excl})"
    )
    con.execute(f"CREATE VIEW dk_excl AS SELECT post_id, member_id, rule, region FROM read_parquet({dk_excl})")

    problems = []
    label = f"[{a.label}] " if a.label else ""

    # 1. kept post_id multiset.
    agg = "count(*), sum(post_id), bit_xor(hash(post_id)), sum(hash(post_id) % 1000000007)"
    cg = con.execute(f"SELECT {agg} FROM cg_data").fetchone()
    dk = con.execute(f"SELECT {agg} FROM dk_data").fetchone()
    print(f"{label}kept rows: corpusgate {cg[0]:,}, duckdb {dk[0]:,}")
    only_cg = con.execute(
        f"SELECT post_id FROM (SELECT post_id FROM cg_data EXCEPT ALL SELECT post_id FROM dk_data) "
        f"ORDER BY post_id"
    ).fetchall()
    only_dk = con.execute(
        f"SELECT post_id FROM (SELECT post_id FROM dk_data EXCEPT ALL SELECT post_id FROM cg_data) "
        f"ORDER BY post_id"
    ).fetchall()
    if cg != dk or only_cg or only_dk:
        problems.append(
            f"kept post_id multisets differ: corpusgate (count, sum, xor, hashsum) {cg}, duckdb {dk}; "
            f"{len(only_cg)} kept only by corpusgate, {len(only_dk)} kept only by duckdb"
        )

    # 2. whole kept rows.
    cg_cols = [r[0] for r in con.execute("DESCRIBE cg_data").fetchall()]
    dk_cols = [r[0] for r in con.execute("DESCRIBE dk_data").fetchall()]
    if cg_cols != dk_cols:
        problems.append(f"kept columns differ: corpusgate {cg_cols}, duckdb {dk_cols}")
    else:
        cols = ", ".join(f'"{c}"' for c in cg_cols)
        row_hash = f"SELECT hash({cols}) AS h FROM"
        n_diff = con.execute(
            f"SELECT (SELECT count(*) FROM ({row_hash} cg_data EXCEPT ALL {row_hash} dk_data)),"
            f"       (SELECT count(*) FROM ({row_hash} dk_data EXCEPT ALL {row_hash} cg_data))"
        ).fetchone()
        if n_diff != (0, 0):
            problems.append(f"kept rows differ in content: {n_diff[0]} / {n_diff[1]} row hashes")
        else:
            print(f"{label}kept rows identical in all {len(cg_cols)} columns (row-hash multiset)")

    # 3. exclusions.
    by_rule = {}
    for who, view in (("corpusgate", "cg_excl"), ("duckdb", "dk_excl")):
        for rule, n in con.execute(f"SELECT rule, count(*) FROM {view} GROUP BY rule").fetchall():
            by_rule.setdefault(rule, {})[who] = n
    for rule in sorted(by_rule):
        c, d = by_rule[rule].get("corpusgate", 0), by_rule[rule].get("duckdb", 0)
        mark = "" if c == d else "   <-- differs"
        print(f"{label}excluded by {rule:15} corpusgate {c:>12,}  duckdb {d:>12,}{mark}")
        if c != d:
            problems.append(f"excluded count for rule {rule}: corpusgate {c}, duckdb {d}")
    cols = "post_id, member_id, rule, region"
    ex_only_cg = con.execute(
        f"SELECT * FROM (SELECT {cols} FROM cg_excl EXCEPT ALL SELECT {cols} FROM dk_excl) "
        f"ORDER BY post_id LIMIT {a.examples}"
    ).fetchall()
    ex_only_dk = con.execute(
        f"SELECT * FROM (SELECT {cols} FROM dk_excl EXCEPT ALL SELECT {cols} FROM cg_excl) "
        f"ORDER BY post_id LIMIT {a.examples}"
    ).fetchall()
    if ex_only_cg or ex_only_dk:
        problems.append("excluded (post_id, member_id, rule, region) multisets differ")

    # 4. summary.json.
    try:
        summary = json.load(open(os.path.join(a.cg_out, "summary.json")))
        totals = summary.get("totals", {})
        n_excl = con.execute("SELECT count(*) FROM cg_excl").fetchone()[0]
        if totals.get("kept") != cg[0] or totals.get("excluded") != n_excl:
            problems.append(
                f"summary.json totals {totals} disagree with the files (kept {cg[0]}, excluded {n_excl})"
            )
    except (OSError, ValueError) as e:
        problems.append(f"cannot read corpusgate summary.json: {e}")

    if not problems:
        n_excl = sum(v.get("duckdb", 0) for v in by_rule.values())
        print(f"compare: OK {label}kept {cg[0]:,} excluded {n_excl:,} identical")
        return 0

    print(f"\n{label}MISMATCH between corpusgate and DuckDB:")
    for p in problems:
        print(f"  - {p}")
    explain(con, a, only_cg[: a.examples], "kept only by corpusgate")
    explain(con, a, only_dk[: a.examples], "kept only by duckdb")
    if ex_only_cg:
        print("  manifest rows only in corpusgate's (post_id, member_id, rule, region):")
        for r in ex_only_cg:
            print(f"    {r}")
        explain(con, a, [(r[0],) for r in ex_only_cg], "excluded differently (corpusgate's view)")
    if ex_only_dk:
        print("  manifest rows only in duckdb's (post_id, member_id, rule, region):")
        for r in ex_only_dk:
            print(f"    {r}")
    print(f"compare: MISMATCH {label}" + "; ".join(problems))
    return 1


def explain(con, a, ids, what):
    if not ids:
        return
    print(f"  {what}: post_id {[i[0] for i in ids]}")
    if not a.input:
        print("    (pass --input IN_GLOB to see the input rows)")
        return
    id_list = ", ".join(str(i[0]) for i in ids)
    if a.members:
        member_cols = [r[0] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({q(a.members)})").fetchall()]
        rows = con.execute(
            f"SELECT s.filename, s.post_id, s.member_id, m.country, m.genai_consent "
            f"FROM read_parquet({q(a.input)}, filename=true) s "
            f"LEFT JOIN {members_sql(a.members, member_cols)} m ON m.member_id = s.member_id "
            f"WHERE s.post_id IN ({id_list}) ORDER BY s.post_id"
        ).fetchall()
    else:
        rows = con.execute(
            f"SELECT filename, post_id, member_id, country, genai_consent "
            f"FROM read_parquet({q(a.input)}, filename=true) WHERE post_id IN ({id_list}) "
            f"ORDER BY post_id"
        ).fetchall()
    for f, pid, mid, country, consent in rows:
        rule, region = policy.decide(country, consent)
        print(
            f"    {os.path.basename(f)} post_id={pid} member_id={mid} country={country!r} "
            f"consent={consent!r} -> policy.py says {rule} (region {region or 'unknown'})"
        )


if __name__ == "__main__":
    sys.exit(main())
