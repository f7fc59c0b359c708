#!/usr/bin/env bash
# Regenerate tests/data/writers/: small Parquet files written by pyarrow, DuckDB, Polars and
# (when it installs and Java is there) Spark, plus tests/data/writers/README.md describing them.
#
#   bash scripts/writer-fixtures.sh            # WRITER_FIXTURES_SPARK=0 to leave Spark out
#
# The writers are pinned: a new version may write different bytes, which is the point of the
# fixtures, so bump them on purpose and review the README diff.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/fixture-venv
PYARROW=26.0.1
DUCKDB=2.0.1
POLARS=2.1.0
PYSPARK=4.3.0

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
"${PIP[@]}" "pyarrow==$PYARROW" "duckdb==$DUCKDB" "polars==$POLARS" "polars-runtime-32==$POLARS"

if [ "${WRITER_FIXTURES_SPARK:-1}" != 0 ]; then
  if ! command -v java >/dev/null; then
    echo "writer-fixtures: no java on PATH; Spark fixtures are not regenerated" >&2
    export WRITER_FIXTURES_SPARK=0
  elif ! "${PIP[@]}" "pyspark==$PYSPARK"; then
    echo "writer-fixtures: pyspark==$PYSPARK did not install; Spark fixtures are not regenerated" >&2
    export WRITER_FIXTURES_SPARK=0
  fi
fi

"$VENV/bin/python" scripts/writer-fixtures.py tests/data/writers
ls -l tests/data/writers
du -cb tests/data/writers/*.parquet | tail -1
