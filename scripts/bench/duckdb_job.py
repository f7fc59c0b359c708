#!/usr/bin/env python3
"""The corpusgate job (configs/genai-uk-eea-ch-pause.yaml) done by DuckDB, for the benchmark.

    duckdb_job.py IN_GLOB OUT_DIR [--level N] [--threads N] [--mapping normalized|generator]
                  [--members MEMBERS.parquet]

One SQL pipeline: a view `decided` reads the corpus, normalises the country through a mapping
table (a VALUES table built in Python, see policy.py), and computes the rule with a CASE in the
policy's order. Two COPY statements read that view:

    OUT_DIR/data.parquet      kept rows, every original column in the original order
    OUT_DIR/excluded.parquet  post_id, member_id, rule, region of every excluded row

both zstd (DuckDB's default level unless --level is given). The excluded COPY only projects
post_id/member_id/country/genai_consent, so DuckDB reads the payload columns once.

--mapping normalized (default) joins trim(country) against every ASCII case variant of every
alpha-2 code, alias and alpha-3 code: exact for any input, like corpusgate. --mapping generator
joins the raw value against the spellings examples/gen_corpus.rs emits plus the alpha-3 codes:
a little less work per row, only correct for generated data.

--members M: the "join" job. Region and consent come from M (member_id, country, genai_consent,
updated_at), joined on member_id; when M has an updated_at column and several rows for a member,
the newest wins (null updated_at counts as oldest). A corpus row whose member_id is null or not
in M has an unknown region (and unknown consent).

DuckDB runs with its default settings (threads = all cores, default memory limit, insertion
order preserved) unless --threads is given. The job's own timing goes to stderr.
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import policy  # noqa: E402

import duckdb  # noqa: E402


def sql_str(s):
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"


def sql_list(values):
    return ", ".join(sql_str(v) for v in sorted(values))


def members_sql(members, columns):
    """The snapshot as a relation with one row per member_id (the newest when it keeps history)."""
    rel = f"read_parquet({sql_str(members)})"
    if "updated_at" not in columns:
        return rel
    return (
        f"(SELECT member_id, country, genai_consent FROM {rel} QUALIFY row_number() OVER "
        f"(PARTITION BY member_id ORDER BY updated_at DESC NULLS LAST) = 1)"
    )


def build_sql(in_glob, out_dir, level, mapping, members, member_columns=()):
    if mapping == "normalized":
        table = policy.normalized_spelling_table()
    else:
        table = policy.generator_spelling_table()
    values = ",\n    ".join(f"({sql_str(k)}, {sql_str(v)})" for k, v in table)
    ws = " || ".join(f"chr({ord(c)})" for c in policy.ASCII_WS)
    stmts = [
        f"CREATE TEMP TABLE region_map(spelling VARCHAR, region VARCHAR)",
        f"INSERT INTO region_map VALUES\n    {values}",
    ]
    if members is None:
        src = f"read_parquet({sql_str(in_glob)}) AS src"
        country, consent = "src.country", "src.genai_consent"
    else:
        src = (
            f"read_parquet({sql_str(in_glob)}) AS src "
            f"LEFT JOIN {members_sql(members, member_columns)} AS mem "
            f"ON mem.member_id = src.member_id"
        )
        country, consent = "mem.country", "mem.genai_consent"
    key = f"trim({country}, {ws})" if mapping == "normalized" else country
    consent_norm = f"lower(trim({consent}, {ws}))"
    stmts.append(
        f"""CREATE TEMP VIEW decided AS
SELECT src.*,
       m.region AS __region,
       CASE WHEN m.region IN ({sql_list(policy.PAUSED)}) THEN 'region-paused'
            WHEN m.region IS NULL THEN 'unknown-region'
            WHEN {consent_norm} IN ({sql_list(policy.CONSENT_DENIED)}) THEN 'opted-out'
            ELSE 'allowed' END AS __rule
FROM {src}
LEFT JOIN region_map AS m ON m.spelling = {key}"""
    )
    opts = "FORMAT parquet, COMPRESSION zstd"
    if level is not None:
        opts += f", COMPRESSION_LEVEL {level}"
    data = os.path.join(out_dir, "data.parquet")
    excl = os.path.join(out_dir, "excluded.parquet")
    stmts.append(
        f"COPY (SELECT * EXCLUDE (__region, __rule) FROM decided WHERE __rule = 'allowed') "
        f"TO {sql_str(data)} ({opts})"
    )
    stmts.append(
        f"COPY (SELECT post_id, member_id, __rule AS rule, __region AS region FROM decided "
        f"WHERE __rule <> 'allowed') TO {sql_str(excl)} ({opts})"
    )
    return stmts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("in_glob")
    ap.add_argument("out_dir")
    ap.add_argument("--level", type=int, help="zstd COMPRESSION_LEVEL (default: DuckDB's)")
    ap.add_argument("--threads", type=int, help="SET threads (default: DuckDB's, all cores)")
    ap.add_argument("--mapping", choices=("normalized", "generator"), default="normalized")
    ap.add_argument("--members", help="join job: take region and consent from this snapshot")
    ap.add_argument("--print-sql", action="store_true", help="print the SQL and exit")
    a = ap.parse_args()

    t0 = time.monotonic()
    con = duckdb.connect()
    member_columns = ()
    if a.members:
        member_columns = [r[0] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_str(a.members)})").fetchall()]
    stmts = build_sql(a.in_glob, a.out_dir, a.level, a.mapping, a.members, member_columns)
    if a.print_sql:
        for s in stmts:
            if s.startswith("INSERT INTO region_map"):
                s = s[:200] + f"\n    ... ({s.count('),') + 1} rows)"
            print(s + ";\n")
        return
    os.makedirs(a.out_dir, exist_ok=True)
    if a.threads:
        con.execute(f"SET threads = {a.threads}")
    times = []
    for s in stmts:
        t = time.monotonic()
        con.execute(s)
        times.append(time.monotonic() - t)
    con.close()
    print(
        f"duckdb_job: {time.monotonic() - t0:.2f}s in job (data COPY {times[-2]:.2f}s, "
        f"excluded COPY {times[-1]:.2f}s), duckdb {duckdb.__version__}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
