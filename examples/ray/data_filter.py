"""Apply a corpusgate policy inside Ray Data: `map_batches` with an actor class that loads the
policy (and its consent snapshot and lists) once per actor, on pyarrow batches. The kept rows
are written as Parquet, the exclusion manifest beside them.

    python examples/ray/data_filter.py --policy configs/opt-in-only.yaml \\
        --output /tmp/ray-out sample-data/corpus

Row order across files is Ray's; the rows kept, and each excluded row's rule and region, are
the command line's (checked by scripts/ray-ci.sh).
"""

import argparse
import os
import sys

import pyarrow as pa
import ray

import corpusgate


def _plain(t: pa.DataType) -> pa.DataType:
    """Strings of any layout (large, view, dictionary-encoded) as plain strings."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    return t


def common_schema(paths):
    """One schema for files whose strings are stored in different layouts (Ray Data reads a
    dataset with one schema; the policy decides strings alike in every layout)."""
    import pyarrow.dataset as pads

    files = []
    for p in paths:
        files += pads.dataset(p, format="parquet").files
    fields = {}
    for f in files:
        for field in pads.dataset(f, format="parquet").schema:
            fields.setdefault(field.name, field.with_type(_plain(field.type)))
    return pa.schema(list(fields.values()))


class PolicyFilter:
    """One per actor: the policy and its snapshot are loaded once, then every batch is decided."""

    def __init__(self, policy, join, part):
        self.policy = corpusgate.Policy.from_file(policy)
        self.join = join
        self.part = part

    def __call__(self, batch: pa.Table) -> pa.Table:
        kept, manifest = self.policy.filter(batch, **self.join)
        if self.part == "manifest":
            return pa.Table.from_batches([manifest])
        return kept


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True)
    ap.add_argument("--consent-table")
    ap.add_argument("--user-list", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--output", required=True)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args(argv)
    join = {}
    if args.consent_table:
        join["consent_table"] = os.path.abspath(args.consent_table)
    if args.user_list:
        join["user_lists"] = {
            n: os.path.abspath(p) for n, p in (s.split("=", 1) for s in args.user_list)
        }
    policy = os.path.abspath(args.policy)
    corpusgate.Policy.from_file(policy).check()  # a bad policy fails here, before any work
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    paths = [os.path.abspath(p) for p in args.inputs]
    ds = ray.data.read_parquet(paths, schema=common_schema(paths))
    for part in ["data", "manifest"]:
        out = ds.map_batches(
            PolicyFilter,
            fn_constructor_args=(policy, join, part),
            batch_format="pyarrow",
            concurrency=args.num_cpus,
            # Half a CPU per actor: the read and write tasks keep room to run beside them.
            num_cpus=0.5,
        )
        out.write_parquet(os.path.join(os.path.abspath(args.output), part))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
