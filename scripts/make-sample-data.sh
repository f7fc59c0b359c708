#!/usr/bin/env bash
# Regenerate the committed sample data (deterministic: the same bytes every time).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf sample-data/corpus sample-data/members.parquet
cargo run --release --example gen_corpus -- --out sample-data --files 6 --rows-per-file 1000 \
  --row-group 256 --text-bytes 160 --members 1500 --seed 42 --vary-types
ls -l sample-data sample-data/corpus
