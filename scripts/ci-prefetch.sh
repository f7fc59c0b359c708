#!/usr/bin/env bash
# What the CI steps install, installed at once in the background while clippy compiles (network
# and disk, little CPU): Chromium (the HTML report's browser test), Slurm and munge, and the
# virtualenvs of the crosscheck, the wheel build, Ray and Spark; the Python tests' packages are
# downloaded into pip's cache for their fresh virtualenv. Each step still installs whatever is
# missing itself and says why when it cannot, so a failure here only costs time. Used by .ci/run,
# which waits for it before the tests start (they use Chromium).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
pip_quiet=(-q --disable-pip-version-check)
venv() {
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/pip" "${pip_quiet[@]}" install "$@" || echo "prefetch: $dir failed"
}
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm munge)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
    echo "prefetch: apt-get install ${missing[*]} failed"
fi
venv target/crosscheck-venv pyarrow==26.0.1 duckdb==2.0.1
venv target/py-build-venv maturin==1.16.0
venv target/moto-venv "moto[server]==5.2.1"
venv target/ray-venv "ray>=2.9" "boto3>=1.28" pandas pyarrow==26.0.1
venv target/spark-venv pyspark==4.3.0 pyarrow==26.0.1 pandas==2.3.3
python3 -m pip "${pip_quiet[@]}" download -d target/pip-prefetch pyarrow==26.0.1 pytest==9.2.0 \
  duckdb==2.0.1 numpy==2.4.6 polars==2.1.0 datasets==5.2.0 >/dev/null || echo "prefetch: pip download failed"
echo "prefetch: done"
