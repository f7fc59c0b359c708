#!/usr/bin/env bash
# Build the Python wheel (maturin, reusing the release build `cargo test --release` made),
# install it into a fresh virtualenv and run the Python tests against it (python/tests): the
# API, typed errors, the DuckDB example, and the law that every decision equals the command
# line's on the same files. Fails, saying why, when a package cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_quiet=(--quiet --disable-pip-version-check)
build=target/py-build-venv
if [ ! -x "$build/bin/maturin" ]; then
  python3 -m venv "$build"
  "$build/bin/pip" "${pip_quiet[@]}" install "maturin==1.16.0"
fi
rm -rf target/wheels
"$build/bin/maturin" build --release --quiet -m python/Cargo.toml -o target/wheels 2>&1 | grep -v '^ *Compiling' || true
wheel=$(ls target/wheels/corpusgate-*.whl)
echo "python: built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
# A fresh environment: only the wheel, its dependency (pyarrow) and the test tools.
venv=target/py-test-venv
rm -rf "$venv"
python3 -m venv "$venv"
# Packages scripts/ci-prefetch.sh downloaded are taken from there, the rest from PyPI.
links=()
[ -d target/pip-prefetch ] && links=(--find-links target/pip-prefetch)
"$venv/bin/pip" "${pip_quiet[@]}" install "${links[@]}" "$wheel" pyarrow==26.0.1 pytest==9.2.0 \
  duckdb==2.0.1 numpy==2.4.6 polars==2.1.0 datasets==5.2.0
# From outside the repository, so that `import corpusgate` is the installed wheel.
repo=$PWD
(cd "$venv" && PATH="$repo/$venv/bin:$PATH" CORPUSGATE_REPO="$repo" \
  bin/python -m pytest -q -p no:cacheprovider "$repo/python/tests")
