"""Apply a corpusgate policy inside DuckDB: Arrow-vectorised UDFs, so that

    SELECT * FROM read_parquet('corpus/*.parquet') WHERE corpusgate_keep(country, ...)

keeps exactly the rows `corpusgate filter` keeps. The policy (and its consent snapshot and user
lists) is loaded once; DuckDB hands the UDF Arrow arrays a vector at a time.

    python examples/duckdb/policy_udf.py --policy configs/opt-in-only.yaml 'sample-data/corpus/*.parquet'
"""

import argparse
import sys

import duckdb
import pyarrow as pa

import corpusgate


def register(con, policy, source, **join):
    """Register corpusgate_keep, corpusgate_rule and corpusgate_region on `con`, taking the
    policy's columns (``policy.columns``, in that order) with the types they have in
    `source` (a DuckDB table expression). Returns the SQL argument list to call them with."""
    names = policy.columns
    described = dict(
        (row[0], row[1]) for row in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    )
    missing = [n for n in names if n not in described]
    if missing:
        raise corpusgate.SchemaError(f"{source} has no column {', '.join(missing)}")
    types = [duckdb.sqltype(described[n]) for n in names]

    def decided(*arrays):
        return policy.decide(pa.table(list(arrays), names=names), **join)

    # DuckDB reads a UDF's arity from its signature: one named parameter per column.
    params = ", ".join(f"c{i}" for i in range(len(names)))
    for fn, column, returns in [
        ("corpusgate_keep", "keep", "BOOLEAN"),
        ("corpusgate_rule", "rule", "VARCHAR"),
        ("corpusgate_region", "region", "VARCHAR"),
    ]:
        scope = {"decided": decided, "column": column}
        exec(f"def udf({params}):\n    return decided({params}).column(column)", scope)
        con.create_function(
            fn,
            scope["udf"],
            types,
            duckdb.sqltype(returns),
            type="arrow",
            null_handling="special",
        )
    return ", ".join(f'"{n}"' for n in names)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True)
    ap.add_argument("--consent-table")
    ap.add_argument("--user-list", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("glob", help="Parquet files, as read_parquet takes them")
    args = ap.parse_args(argv)
    join = {}
    if args.consent_table:
        join["consent_table"] = args.consent_table
    if args.user_list:
        join["user_lists"] = dict(s.split("=", 1) for s in args.user_list)
    con = duckdb.connect()
    policy = corpusgate.Policy.from_file(args.policy)
    source = f"read_parquet('{args.glob}')"
    cols = register(con, policy, source, **join)
    [(kept, total)] = con.sql(
        f"SELECT count(*) FILTER (WHERE corpusgate_keep({cols})), count(*) FROM {source}"
    ).fetchall()
    print(f"{kept} of {total} rows kept")
    for rule, region, n in con.sql(
        f"SELECT corpusgate_rule({cols}) AS rule, corpusgate_region({cols}) AS region, count(*) "
        f"FROM {source} WHERE NOT corpusgate_keep({cols}) GROUP BY ALL ORDER BY 3 DESC, 1, 2"
    ).fetchall():
        print(f"  excluded by {rule} ({region or 'unknown'}): {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
