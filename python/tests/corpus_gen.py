"""A generated corpus for the engine checks: rows drawn from the sample corpus with their
region and consent replaced by every spelling the example policies name and odd ones (empty,
unknown, mixed case, null), member ids from the snapshot, unknown or null, and fresh post ids;
several files of several row groups.

    python python/tests/corpus_gen.py OUT_DIR [ROWS]

Used by python/tests (DuckDB), scripts/ray-ci.sh and scripts/spark-ci.sh beside the sample."""

import pathlib
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample-data"
REGIONS = ["GB", "gb", "FR", "DE", "CH", "US", "BR", "JP", "XX", "", None, "Europe", "uk", " us "]
CONSENTS = ["opt_in", "opt_out", "OPT_IN", "yes", "unknown", None, "maybe"]


def plain(table):
    """Strings of any layout as plain strings: the sample stores `country` four ways."""
    columns = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_dictionary(field.type):
            col = col.cast(field.type.value_type)
        if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            col = col.cast(pa.string())
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def generate(out, rows=5000, files=4, seed=7):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sample = pa.concat_tables(
        plain(pq.read_table(f)) for f in sorted((SAMPLE / "corpus").glob("*.parquet"))
    )
    members = pq.read_table(SAMPLE / "members.parquet", columns=["member_id"]).column(0)
    members = members.to_pylist() + [-1, 123456789, None]
    table = sample.take(pa.array([rng.randrange(sample.num_rows) for _ in range(rows)]))
    replace = {
        "post_id": pa.array(range(10_000_000_000, 10_000_000_000 + rows), pa.int64()),
        "country": pa.array([rng.choice(REGIONS) for _ in range(rows)], pa.string()),
        "genai_consent": pa.array([rng.choice(CONSENTS) for _ in range(rows)], pa.string()),
        "member_id": pa.array([rng.choice(members) for _ in range(rows)], pa.int64()),
    }
    for name, values in replace.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i).with_type(values.type), values)
    per = -(-rows // files)
    for n in range(files):
        pq.write_table(table.slice(n * per, per), out / f"gen-{n}.parquet", row_group_size=700)
    return out


if __name__ == "__main__":
    generate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
