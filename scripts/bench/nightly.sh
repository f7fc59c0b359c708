#!/usr/bin/env bash
# Nightly mode of the benchmark (`NIGHTLY=1 scripts/bench.sh`, or this script): a job with a
# consent snapshot run fresh, then run again with `--reuse` of that output after a night's
# change, each against a fresh run of the same night in the same invocation. Every `--reuse`
# output is compared with the fresh run's (scripts/bench/same_output.py: byte for byte, but data
# files and manifests spliced from PREV_OUT's pages, compared row by row): a difference exits 1.
# The report (markdown) goes to stdout and target/bench-results-nightly.md.
#
#   NIGHTLY=1 scripts/bench.sh                    # 4M rows in 100 files, 1M members
#   ROWS=400000 NIGHTLY_MEMBERS=100000 NIGHTLY=1 scripts/bench.sh     # quick
#
# Nights measured (targets from issue 13):
#   unchanged   nothing changed: <= 3% of the fresh wall
#   churn-10    10 members per million flip their consent: <= 10%
#   churn-1000  1,000 per million: <= 1.05x
#   new-file    one input file added to the NIGHTLY_FILES unchanged ones: <= its share + 5%
#   rewritten   every input file rewritten (new mtime), snapshot unchanged: <= 1.05x (nothing
#               can be reused; finding that out, and loading the snapshot, must stay cheap)
#   state       keys.parquet bytes per member (<= 16); with BASELINE_CG (a corpusgate that
#               writes no _state/), the fresh run's wall against it (<= 1.05x)
#
# Env (defaults): ROWS (4000000) NIGHTLY_FILES (100) NIGHTLY_MEMBERS (1000000) ROW_GROUP TEXT_BYTES
#   SEED BUILD QUIET_WAIT CG GEN as scripts/bench.sh; REPEAT (1: rounds, the fastest run of each
#   kept); BASELINE_CG (unset)
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${NIGHTLY_FILES:-100}
# shellcheck source=scripts/bench.sh
source scripts/bench.sh # its settings and helpers (log, die, gen, wait_quiet, bytes)
MEMBERS=${NIGHTLY_MEMBERS:-1000000}
RESULTS=target/bench-results-nightly.md
O=$OUT/nightly
FAILURES=()
fail() {
  FAILURES+=("$*")
  printf '\nbench: FAILED: %s\n\n' "$*" >&2
}

setup() {
  if ! "$PY" -c 'import pyarrow' 2>/dev/null; then
    log "installing pyarrow into $VENV (PyPI)"
    [[ -x $PY ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow
  fi
  if [[ $BUILD == 1 ]]; then
    log "building corpusgate and gen_corpus (release)"
    cargo build --release --quiet || die "cargo build --release failed"
    cargo build --release --quiet --example gen_corpus || die "cargo build --release --example gen_corpus failed"
  fi
  [[ -x $CG && -x $GEN ]] || die "$CG or $GEN missing (CG=... GEN=... name others)"
  rm -rf "$O"
  mkdir -p "$O" "$DATA"
}

declare -A W
# timed KEY CG OUT ARGS...: one `filter` of the join policy into OUT (removed and `sync`ed first,
# untimed); the fastest wall of each KEY is kept in W. The wall is read from the clock in
# nanoseconds around the run, not from /usr/bin/time's %e: its 10 ms steps are 7 % of a 0.14 s
# night, enough to move a ratio across its target.
timed() {
  local key=$1 cg=$2 out=$3 w m t0 t1
  shift 3
  rm -rf "$out"
  sync
  wait_quiet
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%e %M' -o "$O/$key.time" "$cg" filter --policy "$JOIN_POLICY" \
    --progress never -o "$out" "$@" >"$O/$key.log" 2>&1; then
    tail -n 20 "$O/$key.log" >&2
    die "corpusgate failed ($key): see $O/$key.log"
  fi
  t1=$(date +%s%N)
  read -r _ m <"$O/$key.time"
  w=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  if [[ -z ${W[$key]:-} ]] || awk -v a="$w" -v b="${W[$key]}" 'BEGIN { exit !(a < b) }'; then
    W[$key]=$w
  fi
  log "  $key: ${w}s wall, $((m / 1024)) MiB RSS"
}

# same NIGHT REUSED FRESH: the reuse run wrote what the fresh run wrote: byte for byte, but for
# data files and manifests spliced from PREV_OUT's pages, which hold the same rows (same_output.py).
same() {
  local said
  if said=$("$PY" "$BENCH_PY/same_output.py" "$2" "$3" 2>&1); then
    log "  $1: --reuse output as the fresh run's: $said"
  else
    fail "$1: the --reuse output differs from the fresh run's ($2 vs $3): $said"
  fi
}

reuse_of() { "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["reuse"]; print("%s, %s (%s, %s), %s, %s" % (r["files_reused"], r["row_groups_reused"], r["row_groups_recomputed"], r["row_groups_spliced"], r["pages_reused"], r["changed_keys"]))' "$1/summary.json"; }

main() {
  setup
  local name=nightly-$ROWS-f$FILES-m$MEMBERS
  gen "$name" mixed "$ROWS" --members "$MEMBERS"
  local in=$DATA/$name/corpus members=$DATA/$name/members.parquet
  log "nights: churn snapshots"
  local k10 k1000
  k10=$("$PY" "$BENCH_PY/churn.py" "$members" "$O/members-10.parquet" 10 1)
  k1000=$("$PY" "$BENCH_PY/churn.py" "$members" "$O/members-1000.parquet" 1000 2)
  # One more file, as a night's export adds it (same generator, another seed).
  local per=$(((ROWS + FILES - 1) / FILES))
  "$GEN" --out "$O/extra" --files 1 --rows-per-file "$per" --row-group "$ROW_GROUP" \
    --text-bytes "$TEXT_BYTES" --layout mixed --compression zstd --seed $((SEED + 1)) \
    --members "$MEMBERS" --no-members 2>"$O/extra.log" || die "gen_corpus (extra file) failed"
  local round
  for ((round = 1; round <= REPEAT; round++)); do
    log "round $round of $REPEAT"
    timed fresh "$CG" "$O/prev" --consent-table "$members" "$in"
    if [[ -n ${BASELINE_CG:-} ]]; then
      timed baseline "$BASELINE_CG" "$O/baseline" --consent-table "$members" "$in"
    fi
    timed unchanged "$CG" "$O/unchanged" --consent-table "$members" --reuse "$O/prev" "$in"
    same unchanged "$O/unchanged" "$O/prev"
    local n
    for n in 10 1000; do
      timed "fresh-$n" "$CG" "$O/fresh-$n" --consent-table "$O/members-$n.parquet" "$in"
      timed "churn-$n" "$CG" "$O/churn-$n" --consent-table "$O/members-$n.parquet" --reuse "$O/prev" "$in"
      same "churn-$n" "$O/churn-$n" "$O/fresh-$n"
    done
    cp "$O/extra/corpus/part-00000.parquet" "$in/part-new.parquet"
    timed fresh-new "$CG" "$O/fresh-new" --consent-table "$members" "$in"
    timed new-file "$CG" "$O/new-file" --consent-table "$members" --reuse "$O/prev" "$in"
    rm -f "$in/part-new.parquet"
    same new-file "$O/new-file" "$O/fresh-new"
    # Every file rewritten as it was (a re-export): a new identity, the same rows.
    touch "$in"/*.parquet
    timed fresh-rewritten "$CG" "$O/fresh-rewritten" --consent-table "$members" "$in"
    timed rewritten "$CG" "$O/rewritten" --consent-table "$members" --reuse "$O/prev" "$in"
    same rewritten "$O/rewritten" "$O/fresh-rewritten"
  done

  local ratio verdict per_member keys_bytes
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
  verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t ? "PASS" : "**FAIL**") }'; }
  keys_bytes=$(bytes "$O/prev/_state/keys.parquet")
  per_member=$(awk -v b="$keys_bytes" -v m="$MEMBERS" 'BEGIN { printf "%.1f", b / m }')
  local share
  share=$(awk -v f="$FILES" 'BEGIN { printf "%.3f", 1 / (f + 1) + 0.05 }')
  local report
  report=$(
    cat <<EOF
## corpusgate --reuse (bench nightly mode): $(date -u '+%Y-%m-%d %H:%M UTC')

- Machine: nproc $(nproc), $(uname -sr); corpusgate: $("$CG" --version) (bench tree $(git rev-parse --short HEAD 2>/dev/null || echo '?'))
- Job: \`$JOIN_POLICY\` with \`--consent-table\`; $ROWS rows in $FILES files (row groups of $ROW_GROUP rows, zstd, text ~$TEXT_BYTES B/row), $MEMBERS members scattered through the corpus (gen_corpus, seed $SEED); $REPEAT round(s), fastest run of each kept; every --reuse output the same as the fresh run of the same night, byte for byte but for data files and manifests spliced from PREV_OUT's pages, compared row by row (else FAILED below).

| night | fresh s | --reuse s | ratio | target | result | reused: files, row groups (recomputed, spliced), pages, changed members |
| --- | ---: | ---: | ---: | --- | --- | --- |
| nothing changed | ${W[fresh]} | ${W[unchanged]} | $(ratio "${W[unchanged]}" "${W[fresh]}") | <= 0.03 | $(verdict "$(ratio "${W[unchanged]}" "${W[fresh]}")" 0.03) | $(reuse_of "$O/unchanged") |
| $k10 members flip consent (10 per million) | ${W[fresh-10]} | ${W[churn-10]} | $(ratio "${W[churn-10]}" "${W[fresh-10]}") | <= 0.10 | $(verdict "$(ratio "${W[churn-10]}" "${W[fresh-10]}")" 0.10) | $(reuse_of "$O/churn-10") |
| $k1000 members flip consent (1,000 per million) | ${W[fresh-1000]} | ${W[churn-1000]} | $(ratio "${W[churn-1000]}" "${W[fresh-1000]}") | <= 1.05 | $(verdict "$(ratio "${W[churn-1000]}" "${W[fresh-1000]}")" 1.05) | $(reuse_of "$O/churn-1000") |
| one new file beside $FILES | ${W[fresh-new]} | ${W[new-file]} | $(ratio "${W[new-file]}" "${W[fresh-new]}") | <= $share | $(verdict "$(ratio "${W[new-file]}" "${W[fresh-new]}")" "$share") | $(reuse_of "$O/new-file") |
| every file rewritten, snapshot unchanged | ${W[fresh-rewritten]} | ${W[rewritten]} | $(ratio "${W[rewritten]}" "${W[fresh-rewritten]}") | <= 1.05 | $(verdict "$(ratio "${W[rewritten]}" "${W[fresh-rewritten]}")" 1.05) | $(reuse_of "$O/rewritten") |
EOF
    echo
    echo "State: \`_state/keys.parquet\` $keys_bytes bytes for $MEMBERS members, $per_member bytes per member (target <= 16: $(verdict "$per_member" 16))."
    if [[ -n ${W[baseline]:-} ]]; then
      echo "Fresh run with the state recorded vs \`$BASELINE_CG\` (no state): ${W[fresh]} s vs ${W[baseline]} s, $(ratio "${W[fresh]}" "${W[baseline]}")x (target <= 1.05: $(verdict "$(ratio "${W[fresh]}" "${W[baseline]}")" 1.05))."
    fi
    if ((${#FAILURES[@]})); then
      printf '\n'
      printf -- '- **FAILED: %s**\n' "${FAILURES[@]}"
    fi
  )
  printf '%s\n' "$report" >"$RESULTS"
  printf '%s\n' "$report"
  log "report written to $RESULTS"
  if [[ $KEEP_OUTPUT != 1 ]]; then rm -rf "$O"; fi
  if ((${#FAILURES[@]})); then exit 1; fi
}

main "$@"
