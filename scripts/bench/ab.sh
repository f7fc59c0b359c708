#!/usr/bin/env bash
# A/B: two corpusgate binaries (or one binary with two option sets) on the bench corpora that
# scripts/bench.sh generated (target/bench-data), runs alternating, ROUNDS rounds, the fastest of
# each kept. For "did this change make it slower" — same machine, same minutes, same data.
#
#   scripts/bench/ab.sh A_BIN B_BIN                      # both with each option set below
#   B_ARGS="--trust-input-pages" scripts/bench/ab.sh BIN BIN
#
# Env: ROUNDS (3), LAYOUTS ("mixed clustered join"), SETS ("zstd:3 preserve"), A_ARGS, B_ARGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1 B=$2
ROUNDS=${ROUNDS:-3}
LAYOUTS=${LAYOUTS:-mixed clustered join}
SETS=${SETS:-zstd:3 preserve}
out=target/bench-out/ab
mkdir -p "$out"
best() { sort -n | head -1; }
run() { # BIN OUT INPUT ARGS... -> "wall cpu rss_kb"
  local bin=$1 o=$2 in=$3
  shift 3
  rm -rf "$o"
  sync
  /usr/bin/time -f '%e %U %S %M' -o "$o.time" "$bin" filter --progress never --overwrite -o "$o" "$@" "$in" \
    >/dev/null 2>"$o.err" || { cat "$o.err" >&2; exit 1; }
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$o.time"
}
printf '| layout | settings | A wall s | B wall s | B/A wall | A CPU s | B CPU s | B/A CPU | A RSS MiB | B RSS MiB |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for layout in $LAYOUTS; do
  dir=$(ls -d target/bench-data/"$layout"-"${ROWS:-4000000}"* 2>/dev/null | head -1)
  [[ -n $dir ]] || { echo "no target/bench-data/$layout-*: run scripts/bench.sh first" >&2; exit 1; }
  in=$dir/corpus
  policy=configs/genai-uk-eea-ch-pause.yaml
  extra=()
  if [[ $layout == join ]]; then
    policy=scripts/bench/genai-uk-eea-ch-pause-join.yaml
    extra=(--consent-table "$dir/members.parquet")
  fi
  cat "$in"/*.parquet >/dev/null
  for set in $SETS; do
    : >"$out/a.txt"
    : >"$out/b.txt"
    for ((r = 1; r <= ROUNDS; r++)); do
      # shellcheck disable=SC2086
      run "$A" "$out/a" "$in" --policy "$policy" --compression "$set" "${extra[@]}" ${A_ARGS:-} >>"$out/a.txt"
      # shellcheck disable=SC2086
      run "$B" "$out/b" "$in" --policy "$policy" --compression "$set" "${extra[@]}" ${B_ARGS:-} >>"$out/b.txt"
    done
    read -r aw ac am < <(sort -n "$out/a.txt" | head -1)
    read -r bw bc bm < <(sort -n "$out/b.txt" | head -1)
    awk -v l="$layout" -v s="$set" -v aw="$aw" -v bw="$bw" -v ac="$ac" -v bc="$bc" -v am="$am" -v bm="$bm" \
      'BEGIN { printf "| %s | %s | %.2f | %.2f | %.3f | %.2f | %.2f | %.3f | %.0f | %.0f |\n", l, s, aw, bw, bw / aw, ac, bc, bc / ac, am / 1024, bm / 1024 }'
  done
done
rm -rf "$out"
