"""Run a corpusgate plan on Ray: one task per shard calling the binary, then commit.

    python examples/ray/driver.py OUT [--corpusgate PATH] [--address auto]

`corpusgate plan ... --output OUT` must have run first. OUT is a shared directory or a bucket
prefix (s3://, gs://, az://): with a bucket, workers need no shared volume, only the usual
credentials in their environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*). Exit 75 from a shard means "retry"
(I/O error, a concurrent attempt): Ray retries those tasks; exit 2 is permanent and fails the run.
"""
import argparse
import json
import subprocess
import sys

import ray


class Retryable(Exception):
    """A shard exited 75: Ray retries the task (retry_exceptions below)."""


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=[Retryable])
def run_shard(corpusgate: str, out: str, index: int) -> int:
    proc = subprocess.run([corpusgate, "run-shard", out, "--index", str(index), "--threads", "1"],
                          capture_output=True, text=True)
    if proc.returncode == 75:
        raise Retryable(proc.stderr.strip())
    if proc.returncode not in (0, 4):
        raise RuntimeError(f"shard {index} failed with exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.returncode


def read_plan(out: str) -> dict:
    """OUT/_plan.json, from a directory or a bucket."""
    if out.startswith("s3://"):
        import boto3  # honours AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE

        bucket, _, prefix = out[len("s3://"):].partition("/")
        key = f"{prefix.rstrip('/')}/_plan.json" if prefix.strip("/") else "_plan.json"
        return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    if "://" in out:
        import fsspec  # gs:// and az:// through gcsfs / adlfs

        with fsspec.open(f"{out.rstrip('/')}/_plan.json") as f:
            return json.load(f)
    with open(f"{out}/_plan.json") as f:
        return json.load(f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--corpusgate", default="corpusgate")
    ap.add_argument("--address", default=None, help="a Ray cluster address; default: start one here")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    shards = len(read_plan(args.out)["shards"])
    ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus,
             include_dashboard=False, log_to_driver=False)
    codes = ray.get([run_shard.remote(args.corpusgate, args.out, i) for i in range(shards)])
    commit = subprocess.run([args.corpusgate, "commit", args.out])
    print(f"ray: {shards} shards ran (exit codes {codes}); commit exited {commit.returncode}")
    return commit.returncode


if __name__ == "__main__":
    sys.exit(main())
