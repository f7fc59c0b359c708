"""Apply a corpusgate policy inside PySpark: `DataFrame.mapInArrow` hands each task pyarrow
record batches; the policy (and its consent snapshot and lists) is loaded once per Python worker
and decides them where Spark already has them. The kept rows are written as Parquet with every
column, the exclusion manifest beside them.

    python examples/spark/filter_arrow.py --policy configs/consent-snapshot.yaml \\
        --consent-table sample-data/members.parquet --user-list erasure=sample-data/erasure-requests.txt \\
        --output /tmp/spark-out sample-data/corpus

Needs Java 17 or later (Spark 4) and `pip install pyspark corpusgate`. On a cluster, ship the
wheel to the executors like any other dependency (`--py-files`, or the cluster's environment).
Row order across partitions is Spark's; the rows kept, and each excluded row's rule and region,
are the command line's (checked by scripts/spark-ci.sh).
"""

import argparse
import os
import sys

import pyarrow as pa


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    return t


_POLICIES = {}


def policy_for(path):
    """The policy of this Python worker, loaded on its first batch: its snapshot and lists are
    then indexed once and reused by every later batch of every task the worker runs."""
    import corpusgate

    if path not in _POLICIES:
        _POLICIES[path] = corpusgate.Policy.from_file(path)
    return _POLICIES[path]


def keep_rows(policy_path, join):
    def run(batches):
        policy = policy_for(policy_path)
        for batch in batches:
            kept, _ = policy.filter(batch, **join)
            yield kept

    return run


def manifest_rows(policy_path, join, schema):
    def run(batches):
        policy = policy_for(policy_path)
        for batch in batches:
            _, manifest = policy.filter(batch, **join)
            # Spark gives no file and row numbers: those columns say null and batch-local here.
            yield pa.RecordBatch.from_arrays(
                [manifest.column(n).cast(_plain(schema.field(n).type)) for n in schema.names],
                schema=schema,
            )

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True)
    ap.add_argument("--consent-table")
    ap.add_argument("--user-list", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--output", required=True)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args(argv)

    import corpusgate
    from pyspark.sql import SparkSession
    from pyspark.sql.pandas.types import from_arrow_schema

    join = {}
    if args.consent_table:
        join["consent_table"] = os.path.abspath(args.consent_table)
    if args.user_list:
        join["user_lists"] = {
            n: os.path.abspath(p) for n, p in (s.split("=", 1) for s in args.user_list)
        }
    policy_path = os.path.abspath(args.policy)
    corpusgate.Policy.from_file(policy_path).check()  # a bad policy fails here, before any work

    # Local workers run this interpreter (with corpusgate installed), not whatever python3 is.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(args.master)
        .appName("corpusgate")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        df = spark.read.parquet(*[os.path.abspath(p) for p in args.inputs])
        out = os.path.abspath(args.output)
        df.mapInArrow(keep_rows(policy_path, join), df.schema).write.mode("overwrite").parquet(
            os.path.join(out, "data")
        )
        # The manifest's schema: that of an empty batch of the corpus.
        import pyarrow.dataset as pads

        empty = pads.dataset(os.path.abspath(args.inputs[0]), format="parquet").schema
        _, sample = corpusgate.Policy.from_file(policy_path).filter(empty.empty_table(), **join)
        schema = pa.schema([f.with_type(_plain(f.type)) for f in sample.schema])
        df.mapInArrow(
            manifest_rows(policy_path, join, schema), from_arrow_schema(schema)
        ).write.mode("overwrite").parquet(os.path.join(out, "manifest"))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
