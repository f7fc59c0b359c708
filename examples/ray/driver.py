"""Run a corpusgate plan on Ray: one task per shard calling the binary, then commit.

    python examples/ray/driver.py OUT_DIR [--corpusgate PATH] [--address auto]

`corpusgate plan ... --output OUT_DIR` must have run first. Exit 75 from a shard means "retry"
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--corpusgate", default="corpusgate")
    ap.add_argument("--address", default=None, help="a Ray cluster address; default: start one here")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    shards = len(json.load(open(f"{args.out}/_plan.json"))["shards"])
    ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus,
             include_dashboard=False, log_to_driver=False)
    codes = ray.get([run_shard.remote(args.corpusgate, args.out, i) for i in range(shards)])
    commit = subprocess.run([args.corpusgate, "commit", args.out])
    print(f"ray: {shards} shards ran (exit codes {codes}); commit exited {commit.returncode}")
    return commit.returncode


if __name__ == "__main__":
    sys.exit(main())
