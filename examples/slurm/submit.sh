#!/usr/bin/env bash
# Plan a corpusgate job, run its shards as a Slurm job array, and commit once they all succeed.
#   examples/slurm/submit.sh POLICY.yaml OUT_DIR SHARDS PARALLEL INPUT...
# Prints the array and commit job ids. CORPUSGATE may point at the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
policy="$1" out="$2" shards="$3" parallel="$4"; shift 4
cg="${CORPUSGATE:-corpusgate}"
"$cg" plan --policy "$policy" --shards "$shards" --output "$out" --overwrite "$@"
out_abs="$(cd "$out" && pwd)"
array=$(sbatch --parsable --array="0-$((shards - 1))%${parallel}" \
  --export=ALL,OUT="$out_abs",CORPUSGATE="$cg" --chdir="$out_abs" "$here/shard.sbatch")
commit=$(sbatch --parsable --dependency="afterok:${array}" \
  --export=ALL,OUT="$out_abs",CORPUSGATE="$cg" --chdir="$out_abs" "$here/commit.sbatch")
echo "array=${array} commit=${commit}"
