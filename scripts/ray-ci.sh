#!/usr/bin/env bash
# Run the example Ray driver against ray.init(num_cpus=2) on the sample data and check the
# committed output equals a single `filter` run. Fails, saying why, when Ray can't be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ray-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import ray" 2>/dev/null; then
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q "ray>=2.9" > target/ray-install.log 2>&1; then
    echo "ray: ray cannot be installed here: $(tail -1 target/ray-install.log)"
    exit 1
  fi
fi
cargo build --release -q
cg="$(pwd)/target/release/corpusgate"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$cg" plan --policy configs/opt-in-only.yaml --shards 3 --output "$work/out" sample-data/corpus
RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 timeout 600 "$venv/bin/python" examples/ray/driver.py "$work/out" --corpusgate "$cg" --num-cpus 2
"$cg" filter --policy configs/opt-in-only.yaml --output "$work/single" --progress never sample-data/corpus 2>/dev/null
diff -r "$work/out/data" "$work/single/data"
diff -r "$work/out/excluded" "$work/single/excluded"
echo "ray: the driver's committed output matches a single filter run"
