#!/usr/bin/env python3
"""Where the output bytes go: compressed size per column, corpusgate vs DuckDB, as markdown.

    sizes.py CG_OUT DUCK_OUT [--title TEXT]

Reads only Parquet footers (column chunk sizes, encodings, row groups) of corpusgate's data/ and
excluded/ and DuckDB's data.parquet and excluded.parquet. The manifests differ in columns:
corpusgate's has source_file, row, record_id, user_id, rule, region; the DuckDB job writes
post_id, member_id, rule, region (record_id/user_id are matched with post_id/member_id).
"""

import argparse
import collections
import glob
import os

import pyarrow.parquet as pq


def summarize(files):
    comp = collections.Counter()
    enc = collections.defaultdict(set)
    groups = rows = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        groups += md.num_row_groups
        rows += md.num_rows
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            for j in range(rg.num_columns):
                c = rg.column(j)
                comp[c.path_in_schema] += c.total_compressed_size
                enc[c.path_in_schema] |= set(c.encodings)
    return comp, enc, groups, rows


def table(title, cg_files, dk_files, alias):
    cg, cg_enc, cg_groups, cg_rows = summarize(cg_files)
    dk, dk_enc, dk_groups, dk_rows = summarize(dk_files)
    out = [
        f"{title}: corpusgate {len(cg_files)} files, {cg_groups} row groups, {cg_rows:,} rows; "
        f"DuckDB {len(dk_files)} file, {dk_groups} row groups, {dk_rows:,} rows",
        "",
        "| column | corpusgate MiB | DuckDB MiB | ×DuckDB | corpusgate encodings | DuckDB encodings |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    names = list(cg) + [c for c in dk if c not in cg and c not in alias.values()]
    for name in names + ["(total)"]:
        if name == "(total)":
            a, b = sum(cg.values()), sum(dk.values())
            ea = eb = ""
        else:
            other = alias.get(name, name)
            a, b = cg.get(name), dk.get(other)
            ea = " ".join(sorted(cg_enc.get(name, ())))
            eb = " ".join(sorted(dk_enc.get(other, ())))
        label = name if alias.get(name, name) == name else f"{name} / {alias[name]}"
        ratio = f"{a / b:.2f}" if a and b else ""
        fa = f"{a / 2**20:,.2f}" if a is not None else "—"
        fb = f"{b / 2**20:,.2f}" if b is not None else "—"
        out.append(f"| {label} | {fa} | {fb} | {ratio} | {ea} | {eb} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cg_out")
    ap.add_argument("duck_out")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    cg_data = sorted(glob.glob(os.path.join(a.cg_out, "data", "**", "*.parquet"), recursive=True))
    cg_excl = sorted(glob.glob(os.path.join(a.cg_out, "excluded", "**", "*.parquet"), recursive=True))
    t = f"{a.title} " if a.title else ""
    print(table(f"{t}kept data", cg_data, [os.path.join(a.duck_out, "data.parquet")], {}))
    print()
    alias = {"record_id": "post_id", "user_id": "member_id"}
    print(table(f"{t}exclusion manifest", cg_excl, [os.path.join(a.duck_out, "excluded.parquet")], alias))


if __name__ == "__main__":
    main()
