#!/usr/bin/env bash
# Fuzz the policy parser and the Parquet read path with cargo-fuzz (libFuzzer + ASan).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; CI runs a short smoke run)
# The stable toolchain needs RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo-fuzz passes.
# Leak detection is off: each run starts rayon pools whose threads are still exiting when
# LeakSanitizer looks, which it reports as 64 bytes of thread-exit bookkeeping. Unbounded memory is
# caught by the RSS and malloc limits instead.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Seeds for the Parquet reader: every integer field of a footer and its page headers set to
# 0, -1, 2^31-1 and 2^63-1 (examples/mutation_seeds.rs).
mkdir -p target/fuzz-corpus/parquet_read
# --release: the build `cargo test --release` made (the dev profile would compile every
# dependency once more, at opt-level 2: minutes on a fresh machine).
cargo run --release --quiet --example mutation_seeds -- target/fuzz-corpus/parquet_read
for target in policy_parser parquet_read; do
  mkdir -p "target/fuzz-corpus/$target"
  cp -n fuzz/corpus/$target/* "target/fuzz-corpus/$target/" 2>/dev/null || true
  log="target/fuzz-$target.log"
  echo "fuzzing $target for ${secs}s (log: $log)"
  if ! (cd fuzz && cargo fuzz run "$target" "../target/fuzz-corpus/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=1024 -max_len=65536 -detect_leaks=0 \
      -print_final_stats=1) >"$log" 2>&1; then
    echo "fuzz: $target failed:"; tail -40 "$log"
    ls fuzz/artifacts/$target/ 2>/dev/null || true
    exit 1
  fi
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" | tail -2 || true
done
echo "fuzz: no crash"
