#!/usr/bin/env bash
# Run the example Ray driver against ray.init(num_cpus=2) on the sample data and check the
# committed output equals a single `filter` run: once with OUT on local disk, once with the
# inputs and OUT in a bucket of a real S3 server (moto_server on 127.0.0.1, as the tests use), so
# the workers share no volume. Then the Ray Data example (examples/ray/data_filter.py) with the
# Python wheel, against the command line. Fails, saying why, when Ray can't be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ray-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import ray" 2>/dev/null; then
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q "ray>=2.9" "boto3>=1.28" > target/ray-install.log 2>&1; then
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

# The same with everything in a bucket.
"$venv/bin/python" -c "import boto3" 2>/dev/null || "$venv/bin/pip" install -q "boto3>=1.28"
moto=target/moto-venv
if [ ! -x "$moto/bin/moto_server" ]; then
  python3 -m venv "$moto"
  "$moto/bin/pip" install -q --disable-pip-version-check "moto[server]==5.2.1"
fi
port=$("$moto/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
for _ in $(seq 100); do
  "$moto/bin/python" -c "import boto3; boto3.client('s3').list_buckets()" 2>/dev/null && break
  sleep 0.2
done
"$moto/bin/python" - <<'PY'
import pathlib, boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="ray-ci")
for f in sorted(pathlib.Path("sample-data/corpus").glob("*.parquet")):
    s3.upload_file(str(f), "ray-ci", f"corpus/{f.name}")
PY
"$cg" plan --policy configs/opt-in-only.yaml --shards 3 --output s3://ray-ci/out s3://ray-ci/corpus
RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 timeout 600 "$venv/bin/python" examples/ray/driver.py s3://ray-ci/out --corpusgate "$cg" --num-cpus 2
"$cg" verify --policy configs/opt-in-only.yaml s3://ray-ci/out >/dev/null
WORK="$work" "$moto/bin/python" - <<'PY'
import os, pathlib, boto3
s3, work = boto3.client("s3"), pathlib.Path(os.environ["WORK"])
for kind in ("data", "excluded"):
    local = sorted(p.name for p in (work / "single" / kind).glob("*.parquet"))
    keys = sorted(o["Key"].split("/")[-1] for o in s3.list_objects_v2(Bucket="ray-ci", Prefix=f"out/{kind}/")["Contents"])
    assert keys == local, (kind, keys, local)
    for name in local:
        body = s3.get_object(Bucket="ray-ci", Key=f"out/{kind}/{name}")["Body"].read()
        assert body == (work / "single" / kind / name).read_bytes(), f"{kind}/{name} differs"
PY
echo "ray: with inputs and OUT in a bucket, the committed output matches a single filter run too"

# Ray Data with the Python wheel (built by scripts/python-ci.sh): the policy inside
# map_batches keeps the rows `filter` keeps, and excludes the others by the same rule and region.
wheel=$(ls target/wheels/corpusgate-*.whl 2>/dev/null || true)
if [ -z "$wheel" ]; then
  echo "ray: no wheel in target/wheels; run scripts/python-ci.sh first" >&2
  exit 1
fi
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$venv/bin/python" -c "import pandas, pyarrow" 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check pandas pyarrow==26.0.1
join=(--consent-table sample-data/members.parquet --user-list erasure=sample-data/erasure-requests.txt)
# The sample corpus and a generated one (every region and consent spelling, odd ones too).
"$venv/bin/python" python/tests/corpus_gen.py "$work/generated"
corpora=(sample-data/corpus "$work/generated")
RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 timeout 600 "$venv/bin/python" examples/ray/data_filter.py \
  --policy configs/consent-snapshot.yaml "${join[@]}" --output "$work/ray-data" "${corpora[@]}" >"$work/ray-data.log" 2>&1 ||
  { tail -n 30 "$work/ray-data.log"; exit 1; }
"$cg" filter --policy configs/consent-snapshot.yaml "${join[@]}" --output "$work/ray-data-cli" --progress never "${corpora[@]}" 2>/dev/null
WORK="$work" "$venv/bin/python" - <<'PY'
import os, pathlib
import pyarrow.parquet as pq
work = pathlib.Path(os.environ["WORK"])
def rows(d, cols):
    return sorted(tuple(r.values()) for f in sorted(d.glob("*.parquet")) for r in pq.read_table(f, columns=cols).to_pylist())
kept = rows(work / "ray-data" / "data", ["post_id"])
assert kept == rows(work / "ray-data-cli" / "data", ["post_id"]), "kept rows differ"
got = rows(work / "ray-data" / "manifest", ["record_id", "rule", "region"])
assert got == rows(work / "ray-data-cli" / "excluded", ["record_id", "rule", "region"]), "exclusions differ"
print(f"ray: Ray Data kept the {len(kept)} rows filter kept and excluded {len(got)} by the same rules and regions")
PY
