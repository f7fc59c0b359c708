#!/usr/bin/env bash
# The PySpark example (examples/spark/filter_arrow.py) on a local Spark (local[2]) with the
# Python wheel (built by scripts/python-ci.sh): the policy inside mapInArrow keeps the rows
# `filter` keeps, and excludes the others by the same rule and region. Java comes from the
# distribution's packages (Spark 4 needs 17 or later); where it cannot be installed, this says so
# and fails, never passes silently. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null 2>&1; then
  if ! { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q openjdk-17-jre-headless >/dev/null; }; then
    echo "spark: Java cannot be installed here (apt-get install openjdk-17-jre-headless failed)" >&2
    exit 1
  fi
fi
wheel=$(ls target/wheels/corpusgate-*.whl 2>/dev/null || true)
if [ -z "$wheel" ]; then
  echo "spark: no wheel in target/wheels; run scripts/python-ci.sh first" >&2
  exit 1
fi
venv=target/spark-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyspark, pyarrow, pandas" 2>/dev/null; then
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check pyspark==4.3.0 pyarrow==26.0.1 pandas==2.3.3 \
      > target/spark-install.log 2>&1; then
    echo "spark: pyspark cannot be installed here: $(tail -1 target/spark-install.log)" >&2
    exit 1
  fi
fi
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
cargo build --release -q
cg="$(pwd)/target/release/corpusgate"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
join=(--consent-table sample-data/members.parquet --user-list erasure=sample-data/erasure-requests.txt)
# The sample corpus and a generated one (every region and consent spelling, odd ones too).
"$venv/bin/python" python/tests/corpus_gen.py "$work/generated"
corpora=(sample-data/corpus "$work/generated")
timeout 600 "$venv/bin/python" examples/spark/filter_arrow.py --policy configs/consent-snapshot.yaml \
  "${join[@]}" --output "$work/spark" "${corpora[@]}" >"$work/spark.log" 2>&1 ||
  { tail -n 40 "$work/spark.log"; exit 1; }
"$cg" filter --policy configs/consent-snapshot.yaml "${join[@]}" --output "$work/cli" \
  --progress never "${corpora[@]}" 2>/dev/null
WORK="$work" "$venv/bin/python" - <<'PY'
import os, pathlib
import pyarrow.parquet as pq
work = pathlib.Path(os.environ["WORK"])
def rows(d, cols):
    files = sorted(p for p in d.glob("*.parquet"))
    return sorted(tuple(r.values()) for f in files for r in pq.read_table(f, columns=cols).to_pylist())
kept = rows(work / "spark" / "data", ["post_id"])
assert kept == rows(work / "cli" / "data", ["post_id"]), "kept rows differ"
got = rows(work / "spark" / "manifest", ["record_id", "rule", "region"])
assert got == rows(work / "cli" / "excluded", ["record_id", "rule", "region"]), "exclusions differ"
# Every column of a kept row crosses Spark and the policy unchanged (timestamps compared as
# instants: Spark writes them as INT96, which pyarrow reads without the time zone).
import pyarrow as pa
def by_id(d):
    out = {}
    for f in sorted(d.glob("*.parquet")):
        t = pq.read_table(f)
        ts = t.column("created_at")
        t = t.set_column(t.schema.get_field_index("created_at"), "created_at",
                         ts.cast(pa.timestamp("us", tz=ts.type.tz)).cast(pa.int64()))
        for r in t.to_pylist():
            out[r["post_id"]] = {k: v for k, v in r.items()}
    return out
spark, cli = by_id(work / "spark" / "data"), by_id(work / "cli" / "data")
assert spark.keys() == cli.keys()
for k, row in cli.items():
    assert spark[k] == row, (k, spark[k], row)
print(f"spark: mapInArrow kept the {len(kept)} rows filter kept and excluded {len(got)} by the same rules and regions")
PY
