#!/usr/bin/env bash
# Read every Parquet output corpusgate wrote with exit 0 back in full with pyarrow and DuckDB:
# what other readers make of our files, not only the parquet crate.
#   scripts/crosscheck.sh DIR   (DIR holds outputs, e.g. the ones the integration tests keep when
#                                run with CORPUSGATE_CROSSCHECK_DIR=DIR)
# Also filters the sample data with every example policy into DIR first.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: scripts/crosscheck.sh DIR}"
mkdir -p "$dir"
venv=target/crosscheck-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyarrow, duckdb" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow==26.0.1 duckdb==2.0.1
fi
cargo build --quiet --release
cg=target/release/corpusgate
for policy in configs/*.yaml; do
  name=$(basename "$policy" .yaml)
  extra=()
  if grep -q '^consent_table:' "$policy"; then
    extra=(--consent-table sample-data/members.parquet --user-list erasure=sample-data/erasure-requests.txt)
  fi
  rm -rf "$dir/sample-$name"
  "$cg" filter --policy "$policy" --progress never "${extra[@]}" -o "$dir/sample-$name" sample-data/corpus 2>/dev/null
done
"$venv/bin/python" - "$dir" <<'PY'
import pathlib, sys
import duckdb, pyarrow.parquet as pq

root = pathlib.Path(sys.argv[1])
files = sorted(p for p in root.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
failures = []
for f in files:
    try:
        t = pq.read_table(f)
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()[0][0]
        # Every value, through DuckDB's own reader.
        duckdb.sql(f"SELECT * FROM read_parquet('{f}')").fetchall()
        if n != t.num_rows:
            failures.append(f"{f}: pyarrow reads {t.num_rows} rows, DuckDB {n}")
        md = pq.read_schema(f).metadata or {}
        # _state/keys.parquet (what --reuse compares) is read in full too, but is no policy's output.
        if "_state" not in f.parts and b"corpusgate.policy_sha256" not in md:
            failures.append(f"{f}: no corpusgate.policy_sha256 in the Arrow schema metadata")
    except Exception as e:  # noqa: BLE001 - report every file that does not read
        failures.append(f"{f}: {type(e).__name__}: {e}")
print(f"crosscheck: {len(files)} output files read in full by pyarrow and DuckDB, {len(failures)} failed")
for m in failures:
    print("  " + m)
sys.exit(1 if failures or not files else 0)
PY
