#!/usr/bin/env bash
# Benchmark for "Speed and memory: beat DuckDB": corpusgate and DuckDB doing the same job
# (configs/genai-uk-eea-ch-pause.yaml over generated corpora), with floors, a --threads 1 vs 2 run
# and an optional size-scaling run. The report (markdown) goes to stdout and
# target/bench-results.md; progress goes to stderr.
#
#   scripts/bench.sh                         # default size: 4M rows per layout
#   ROWS=200000 scripts/bench.sh             # quick
#   SCALING=1 [SCALING_DUCKDB=1] scripts/bench.sh
#   BUCKET=1 scripts/bench.sh                # instead: corpusgate on S3 (scripts/bench/bucket.sh)
#   NIGHTLY=1 scripts/bench.sh               # instead: --reuse after a night's change (scripts/bench/nightly.sh)
#
# Env (defaults): ROWS (4000000, per layout) FILES (8) ROW_GROUP (131072) TEXT_BYTES (400)
#   SEED (42) REPEAT (1: runs per measurement, the fastest is kept; the corpusgate/DuckDB runs
#   of a layout alternate, one round of each at a time) LAYOUTS ("mixed clustered write-heavy")
#   FLOORS (1) THREADS_RUN (1) SCALING (0) SCALING_SIZES ("1000000 2000000 4000000 8000000")
#   SCALING_DUCKDB (0) JOIN (1: the join job) JOIN_LAYOUTS ("mixed write-heavy": the corpora the
#   join job runs on) JOIN_DUCKDB (0: run DuckDB's join job even while corpusgate lacks
#   --consent-table) JOIN_MEMBERS (1000000)
#   KEEP_OUTPUT (0: delete each run's output after use; 1: keep it under target/bench-out/)
#   BUILD (1: cargo build --release first; 0: use the binaries already in target/release)
#   CG (target/release/corpusgate) GEN (target/release/examples/gen_corpus): the binaries used
#   QUIET_WAIT (120: before each run, wait up to this many seconds for other processes to leave
#   the CPUs alone; a run that was still disturbed is repeated, up to 3 extra times)
#   INSTRUCTIONS (1: on the write-heavy corpora, also count the job's and the zstd floor's
#   instructions under valgrind's cachegrind, about 3 minutes a corpus; 0: not)
#   CPU_SHARE (1: on the write-heavy corpora, also split the job's CPU samples under perf into
#   libzstd and the rest, CPU_SHARE_RUNS (3) runs; 0: not)
#
# Every corpusgate/DuckDB pair is checked by scripts/bench/compare.py (same kept rows, same
# exclusions per rule and region); the script fails loudly (exit 1) when they differ.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BUCKET=1: the object-store benchmark instead; it sources this file for its helpers.
if [[ ${BUCKET:-0} == 1 && ${BASH_SOURCE[0]} == "$0" ]]; then exec scripts/bench/bucket.sh "$@"; fi
# NIGHTLY=1: the --reuse benchmark instead (scripts/bench/nightly.sh).
if [[ ${NIGHTLY:-0} == 1 && ${BASH_SOURCE[0]} == "$0" ]]; then exec scripts/bench/nightly.sh "$@"; fi
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in scripts/bench/

ROWS=${ROWS:-4000000}
FILES=${FILES:-8}
ROW_GROUP=${ROW_GROUP:-131072}
TEXT_BYTES=${TEXT_BYTES:-400}
SEED=${SEED:-42}
REPEAT=${REPEAT:-1}
LAYOUTS=${LAYOUTS-mixed clustered write-heavy}
FLOORS=${FLOORS:-1}
THREADS_RUN=${THREADS_RUN:-1}
SCALING=${SCALING:-0}
SCALING_SIZES=${SCALING_SIZES:-1000000 2000000 4000000 8000000}
SCALING_DUCKDB=${SCALING_DUCKDB:-0}
JOIN=${JOIN:-1}
JOIN_LAYOUTS=${JOIN_LAYOUTS-mixed write-heavy}
JOIN_DUCKDB=${JOIN_DUCKDB:-0}
JOIN_MEMBERS=${JOIN_MEMBERS:-1000000}
KEEP_OUTPUT=${KEEP_OUTPUT:-0}
BUILD=${BUILD:-1}
QUIET_WAIT=${QUIET_WAIT:-120}
INSTRUCTIONS=${INSTRUCTIONS:-1}
CPU_SHARE=${CPU_SHARE:-1}
CPU_SHARE_RUNS=${CPU_SHARE_RUNS:-3}

POLICY=configs/genai-uk-eea-ch-pause.yaml
JOIN_POLICY=scripts/bench/genai-uk-eea-ch-pause-join.yaml
CG=${CG:-target/release/corpusgate}
GEN=${GEN:-target/release/examples/gen_corpus}
ZFLOOR=${ZFLOOR:-target/release/examples/zstd_floor}
DATA=target/bench-data
OUT=target/bench-out
RESULTS=target/bench-results.md
TSV=$OUT/results.tsv
VENV=target/bench-venv
PY=$VENV/bin/python
BENCH_PY=scripts/bench

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '\nbench: FAILED: %s\n' "$*" >&2
  exit 1
}
FAILURES=()
# fail MSG: a failed check; the bench goes on, reports it, and exits 1 at the end.
fail() {
  FAILURES+=("$*")
  printf '\nbench: FAILED: %s\n\n' "$*" >&2
  printf 'note\t\t\t\t\t\t\t\t\t**FAILED: %s**\t\t\n' "$*" >>"$TSV"
}

setup() {
  if ! "$PY" -c 'import duckdb, pyarrow, zstandard' 2>/dev/null; then
    log "creating $VENV with duckdb, pyarrow and zstandard from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check duckdb pyarrow zstandard
  fi
  if [[ $BUILD == 1 ]]; then
    log "building corpusgate and gen_corpus (release)"
    cargo build --release --quiet || die "cargo build --release failed (BUILD=0 uses the binaries already in target/release)"
    cargo build --release --quiet --example gen_corpus --example zstd_floor || die "cargo build --release --example gen_corpus --example zstd_floor failed"
  fi
  [[ -x $CG && -x $GEN && -x $ZFLOOR ]] || die "$CG, $GEN or $ZFLOOR missing"
  "$PY" "$BENCH_PY/policy.py" >/dev/null || die "policy.py self-test failed"
  mkdir -p "$DATA" "$OUT"
  : >"$TSV"
  rm -f "$OUT"/sizes-*.md
}

# gen NAME LAYOUT ROWS [gen_corpus args...]: generate $DATA/NAME (corpus/ and maybe members.parquet)
# unless it is there with the same parameters and the same generator source.
gen() {
  local name=$1 layout=$2 rows=$3
  shift 3
  local per=$(((rows + FILES - 1) / FILES))
  local args=(--files "$FILES" --rows-per-file "$per" --row-group "$ROW_GROUP"
    --text-bytes "$TEXT_BYTES" --layout "$layout" --compression zstd --seed "$SEED" "$@")
  local dir=$DATA/$name
  local stamp
  stamp="gen_corpus ${args[*]} src=$(sha256sum examples/gen_corpus.rs | cut -c1-16)"
  if [[ -f $dir/.params && "$(cat "$dir/.params")" == "$stamp" ]]; then
    log "data $dir: present, same parameters"
  else
    log "data $dir: generating ($FILES x $per rows, $layout)"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$GEN" --out "$dir" "${args[@]}" 2>"$dir/.gen.log" || { cat "$dir/.gen.log" >&2; die "gen_corpus failed"; }
    echo "$stamp" >"$dir/.params"
  fi
  # Warm the page cache: every tool then reads from memory.
  cat "$dir"/corpus/*.parquet >/dev/null
}

# Busy CPU time of the whole machine so far, in clock ticks (/proc/stat).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# Steal time of the whole machine so far, in clock ticks (/proc/stat): time the hypervisor ran
# something else while one of our vCPUs had work. It is not in a run's CPU; it shows how
# contended the host was while a run ran (a two-thread job meets more of it than the one-thread
# zstd floor: 0.55-0.82 s against 0.01-0.02 s in three pairs on 2026-12-07).
steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }

# wait_quiet: wait (up to QUIET_WAIT s) until other processes use under 10% of one core over 0.5 s.
wait_quiet() {
  local hz waited=0 b0 b1
  if ((QUIET_WAIT <= 0)); then return 0; fi
  hz=$(getconf CLK_TCK)
  while ((waited < QUIET_WAIT * 2)); do
    b0=$(busy_ticks)
    sleep 0.5
    b1=$(busy_ticks)
    if (((b1 - b0) * 10 < hz / 2)); then return 0; fi
    if ((waited % 20 == 0)); then log "  waiting for a quiet machine (others are using the CPUs)"; fi
    waited=$((waited + 1))
  done
  log "  machine still busy after ${QUIET_WAIT}s; measuring anyway"
}

# run_timed LOG CLEAN_DIR CMD...: run CMD REPEAT times (CLEAN_DIR removed and `sync` before each
# run, untimed), keep the fastest; sets T_WALL T_CPU T_RSS_KB, and T_OTHER: CPU seconds that other
# processes used meanwhile (a busy machine makes the run slower: the report shows it), and
# T_STEAL: the machine's steal time meanwhile, in seconds (see `steal_ticks`). When the
# fastest run was disturbed (others used over 10% of its wall time), up to 3 more runs are made. A
# failing CMD ends the bench, or with ALLOW_FAIL=1 makes run_timed return 1.
run_timed() {
  local logf=$1 clean=$2
  shift 2
  local i e u s m b0 b1 s0 s1 hz
  hz=$(getconf CLK_TCK)
  T_WALL=
  for ((i = 1; i <= REPEAT + 3; i++)); do
    if ((i > REPEAT)) && awk -v o="$T_OTHER" -v w="$T_WALL" 'BEGIN { exit !(o <= 0.1 * w) }'; then
      break
    fi
    if [[ -n $clean ]]; then rm -rf "$clean"; fi
    sync
    wait_quiet
    b0=$(busy_ticks)
    s0=$(steal_ticks)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$logf.time" "$@" >"$logf" 2>&1; then
      tail -n 30 "$logf" >&2
      if [[ ${ALLOW_FAIL:-0} == 1 ]]; then return 1; fi
      die "command failed: $*"
    fi
    b1=$(busy_ticks)
    s1=$(steal_ticks)
    read -r e u s m < <(tail -n 1 "$logf.time")
    if [[ -z $T_WALL ]] || awk -v a="$e" -v b="$T_WALL" 'BEGIN { exit !(a < b) }'; then
      T_WALL=$e
      T_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
      T_RSS_KB=$m
      T_OTHER=$(awk -v d=$((b1 - b0)) -v hz="$hz" -v c="$T_CPU" \
        'BEGIN { o = d / hz - c; printf "%.2f", o < 0 ? 0 : o }')
      T_STEAL=$(awk -v d=$((s1 - s0)) -v hz="$hz" 'BEGIN { printf "%.2f", d / hz }')
    fi
  done
}

# The corpusgate/DuckDB comparisons run in rounds — each command once per round, REPEAT rounds,
# the fastest run of each kept — so that a machine that slows down or speeds up over the minutes
# a layout takes affects both tools alike (these machines are shared; back-to-back repeats of one
# command then the other let a drift decide the ratio).
declare -A BEST_WALL BEST_CPU BEST_RSS BEST_OTHER
# run_once KEY LOG CLEAN_DIR CMD...: one run of CMD (run_timed with REPEAT=1: more only when it
# was disturbed); remembers the fastest run per KEY.
run_once() {
  local key=$1 repeat=$REPEAT
  shift
  REPEAT=1
  run_timed "$@" || { REPEAT=$repeat; return 1; }
  REPEAT=$repeat
  if [[ -z ${BEST_WALL[$key]:-} ]] || awk -v a="$T_WALL" -v b="${BEST_WALL[$key]}" 'BEGIN { exit !(a < b) }'; then
    BEST_WALL[$key]=$T_WALL BEST_CPU[$key]=$T_CPU BEST_RSS[$key]=$T_RSS_KB BEST_OTHER[$key]=$T_OTHER
  fi
}
# best KEY: set T_* to the fastest run_once of KEY, then forget it.
best() {
  T_WALL=${BEST_WALL[$1]} T_CPU=${BEST_CPU[$1]} T_RSS_KB=${BEST_RSS[$1]} T_OTHER=${BEST_OTHER[$1]}
  unset "BEST_WALL[$1]" "BEST_CPU[$1]" "BEST_RSS[$1]" "BEST_OTHER[$1]"
}

# record SECTION LAYOUT TOOL SETTINGS MATCH [OUT_PATH [DATA_PATH]] (uses T_*): one TSV line with
# du -sb of the whole output and of its kept-row data (columns: see scripts/bench/report.py).
record() {
  local out_b="" data_b=""
  if [[ -n ${6:-} ]]; then out_b=$(bytes "$6"); fi
  if [[ -n ${7:-} ]]; then data_b=$(bytes "$7"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" \
    "$T_WALL" "$T_CPU" "$T_RSS_KB" "$out_b" "" "$data_b" "$T_OTHER" >>"$TSV"
  log "  $3 $4: ${T_WALL}s wall, ${T_CPU}s CPU, $((T_RSS_KB / 1024)) MiB RSS, $((${out_b:-0} / 1048576)) MiB out, others ${T_OTHER}s CPU"
}

note() {
  printf 'note\t\t\t\t\t\t\t\t\t%s\t\t\n' "$*" >>"$TSV"
  log "$*"
}

bytes() { du -sb "$1" | cut -f1; }

# run_cg OUT_DIR INPUT_DIR [filter options...]
run_cg() {
  local out=$1 in=$2
  shift 2
  ${TIMER:-run_timed} "$out.log" "$out" "$CG" filter --policy "${CG_POLICY:-$POLICY}" --output "$out" --overwrite \
    --progress never "$@" "$in"
}

# run_duck OUT_DIR IN_GLOB [duckdb_job.py options...]
run_duck() {
  local out=$1 glob=$2
  shift 2
  ${TIMER:-run_timed} "$out.log" "$out" "$PY" "$BENCH_PY/duckdb_job.py" "$glob" "$out" "$@"
}

# check CG_OUT DUCK_OUT IN_GLOB LABEL [compare.py options]: fail loudly on any difference (the
# comparison is kept in DUCK_OUT.compare).
check() {
  local cg=$1 dk=$2 glob=$3 label=$4
  shift 4
  if ! "$PY" "$BENCH_PY/compare.py" "$cg" "$dk" --input "$glob" --label "$label" "$@" \
    >"$dk.compare" 2>&1; then
    cat "$dk.compare" >&2
    fail "corpusgate and DuckDB disagree ($label): see $dk.compare"
    return 0
  fi
  log "  $(tail -n 1 "$dk.compare")"
}

# same_bytes A B: corpusgate's data/ and excluded/ byte-identical (README: any --threads).
same_bytes() {
  if ! diff -rq "$1/data" "$2/data" >&2 || ! diff -rq "$1/excluded" "$2/excluded" >&2; then
    fail "corpusgate output differs between $1 and $2 (README: it does not depend on --threads)"
  fi
}

cleanup() { [[ $KEEP_OUTPUT == 1 ]] || rm -rf "$@"; }

floors() {
  local layout=$1 in=$2 o=$3
  local files=("$in"/*.parquet)
  log "floors ($layout)"
  run_timed "$o/floor-cat.log" "" bash -c 'exec cat -- "$@" >/dev/null' cat "${files[@]}"
  record floor "$layout" floor "read input: cat > /dev/null" ""
  run_timed "$o/floor-cp.log" "$o/floor-cp" cp -r "$in" "$o/floor-cp"
  record floor "$layout" floor "copy input: cp -r" "" "$o/floor-cp"
  rm -rf "$o/floor-cp"
  run_timed "$o/floor-decode.log" "" "$PY" "$BENCH_PY/floors.py" decode "$in/*.parquet"
  record floor "$layout" floor "decode every column: pyarrow dataset scan, threads" ""
  note "$layout: $(grep '^floors:' "$o/floor-decode.log")"
  run_timed "$o/floor-dc.log" "" "$PY" "$BENCH_PY/floors.py" decode-compress "$in/*.parquet" --level 3
  record floor "$layout" floor "decode every column + zstd-3 kept text (pyarrow + zstandard)" ""
  note "$layout: $(grep '^floors:' "$o/floor-dc.log")"
  # The same at zstd level 1, the level `preserve` writes this corpus at.
  run_timed "$o/floor-dc1.log" "" "$PY" "$BENCH_PY/floors.py" decode-compress "$in/*.parquet" --level 1
  record floor "$layout" floor "decode every column + zstd-1 kept text (pyarrow + zstandard)" ""
  note "$layout: $(grep '^floors:' "$o/floor-dc1.log")"
}

# run_zfloor LOG IN_DIR CG_DATA_DIR [INPUT_FILE...]: the zstd floor of a zstd:3 job
# (examples/zstd_floor.rs: the same libzstd decompressing every input page, a join's snapshot's
# too, and compressing the job's output pages at level 3, one thread); the codec's CPU in it
# ("total T s of CPU", appended to LOG.totals) is what the job cannot go below. Not the
# process's CPU: it also decompresses the output's pages to have the bytes to compress (about
# 1 s on the write-heavy corpus), which no job does.
run_zfloor() {
  ${TIMER:-run_timed} "$1" "" "$ZFLOOR" --level 3 "$2" "$3" "${@:4}" || return 1
  grep -o 'total [0-9.]* s of CPU' "$1" | awk '{ print $2 }' >>"$1.totals"
}

# zfloor_cpu LOG: the least codec CPU of the floor's runs since LOG.totals was removed.
zfloor_cpu() {
  sort -g "$1.totals" | head -n 1
}

# zfloor_pair PAIRS LOG: after a round's corpusgate zstd:3 run (T_CPU, JOB_STEAL) and the zstd
# floor's run (the last line of LOG.totals; T_STEAL, as run_timed left it), append
# "JOB_CPU FLOOR_CPU JOB_STEAL FLOOR_STEAL" to PAIRS.
zfloor_pair() {
  echo "$T_CPU $(tail -n 1 "$2.totals") ${JOB_STEAL:-0} ${T_STEAL:-0}" >>"$1"
}

# pairs_list PAIRS [A B]: PAIRS' lines as "a/b, a/b, ..." of fields A and B (1 and 2 unless given).
pairs_list() {
  awk -v a="${2:-1}" -v b="${3:-2}" '{ printf "%s%.2f/%.2f", (NR > 1 ? ", " : ""), $a, $b }' "$1"
}

# median_ratio PAIRS: the median over PAIRS' lines of the first field over the second.
median_ratio() {
  awk '$2 > 0 { print $1 / $2 }' "$1" | sort -g |
    awk '{ r[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }'
}

# zfloor_note LABEL CG_CPU FLOOR_CPU PAIRS: corpusgate's zstd:3 CPU against the zstd floor, same
# invocation, two ways: the CPU of corpusgate's fastest run against the floor's least CPU, and the
# median over rounds of each round's ratio (the job's run against the floor's run just after it).
# The paired median is the figure the target is judged by: the floor is one 15-s thread, the job
# two, and a shared machine's speed drifts between rounds, so the least of three floor runs can
# come from a quicker minute than any of the job's (one invocation's floor runs: 13.06, 13.41 and
# 11.47 s), where a round's two runs, a few seconds apart, see the same machine. The target
# (issue 15) is for the write-heavy corpora: where most rows go, the floor decompresses pages
# corpusgate never needs.
zfloor_note() {
  local label=$1 cg_cpu=$2 floor_cpu=$3 pairs=$4 target paired
  if [[ $label == *write-heavy* ]]; then
    target="target <= 1.15"
  else
    target="no target: the floor decompresses every page, corpusgate only those it needs"
  fi
  paired=$(median_ratio "$pairs")
  note "$label: corpusgate --compression zstd:3 against the zstd floor: ${paired}x, the median of each round's ratio ($(pairs_list "$pairs") s; the machine's steal time in those runs $(pairs_list "$pairs" 3 4) s); fastest run against least floor ${cg_cpu} s / ${floor_cpu} s = $(awk -v a="$cg_cpu" -v b="$floor_cpu" 'BEGIN { printf "%.2f", a / b }')x ($target)"
}

# cachegrind OUT_FILE CMD...: CMD under valgrind's cachegrind, counting instructions only.
cachegrind() {
  local out=$1
  shift
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" "$@" >"$out.log" 2>&1
}

# [FLOOR_INPUT=FILE] instructions_note LABEL IN_DIR O JOB_ARGS...: corpusgate's zstd:3 job
# against the zstd floor (which also decompresses FLOOR_INPUT, a join's snapshot) in
# instructions, which, unlike CPU seconds, do not change from run to run. Both under cachegrind,
# on the corpus's first file and on its first two: the job (--threads 1, JOB_ARGS), and the
# floor's codec (examples/zstd_floor, functions of libzstd only: instructions.py) decompressing
# the input and compressing the job's output. The floor process also decompresses the output to
# have its bytes; a run that only does that is subtracted. The second file's instructions are
# what each further file costs; what the first file costs beyond them is the job's once-only
# work (start, policy, a snapshot's load and hash), which over a corpus of FILES files weighs
# 1/FILES as much. Instructions are not seconds: memory stalls cost time without instructions,
# so the CPU ratio runs a few points above this one.
instructions_note() {
  local label=$1 in=$2 o=$3/ir
  shift 3
  if [[ $INSTRUCTIONS == 0 ]]; then return 0; fi
  if ! command -v valgrind >/dev/null; then
    note "$label: instructions against the zstd floor: skipped (no valgrind; INSTRUCTIONS=0 skips this silently)"
    return 0
  fi
  log "layout $label: instructions under cachegrind (job and floor, one file, then two)"
  rm -rf "$o"
  mkdir -p "$o/empty"
  local files n f i
  mapfile -t files < <(find "$in" -maxdepth 1 -name '*.parquet' | sort | head -n 2)
  if ((${#files[@]} < 2)); then
    note "$label: instructions against the zstd floor: skipped (fewer than two input files)"
    return 0
  fi
  local -A job codec jobcodec sha
  for n in 1 2; do
    mkdir -p "$o/in$n"
    for ((i = 0; i < n; i++)); do ln -s "$(realpath "${files[$i]}")" "$o/in$n/"; done
    cachegrind "$o/job$n.cg" "$CG" filter --policy "${CG_POLICY:-$POLICY}" --output "$o/out$n" \
      --progress never --compression zstd:3 --threads 1 "$@" "$o/in$n" ||
      { fail "$label: corpusgate under cachegrind failed: $(tail -n 3 "$o/job$n.cg.log")"; return 0; }
    read -r "job[$n]" "jobcodec[$n]" "sha[$n]" < <("$PY" "$BENCH_PY/instructions.py" summary "$o/job$n.cg")
    cachegrind "$o/in$n.cg" "$ZFLOOR" --level 3 "$o/in$n" "$o/empty" ${FLOOR_INPUT:+"$FLOOR_INPUT"} &&
      cachegrind "$o/out$n.cg" "$ZFLOOR" --level 3 "$o/empty" "$o/out$n/data" &&
      cachegrind "$o/dec$n.cg" "$ZFLOOR" --level 3 "$o/out$n/data" "$o/empty" ||
      { fail "$label: zstd_floor under cachegrind failed"; return 0; }
    codec[$n]=$(for f in in out dec; do "$PY" "$BENCH_PY/instructions.py" summary "$o/$f$n.cg"; done |
      awk '{ c[NR] = $2 } END { print c[1] + c[2] - c[3] }')
  done
  # Per file: the second file's instructions (the job's and the floor's); once: what the first
  # file's run holds beyond them. A job of $FILES files: once + $FILES per-file shares, each side.
  note "$(awk -v label="$label" -v files="$FILES" -v j1="${job[1]}" -v j2="${job[2]}" \
    -v c1="${codec[1]}" -v c2="${codec[2]}" -v jc2="${jobcodec[2]}" -v sha="${sha[1]}" 'BEGIN {
      dj = j2 - j1; dc = c2 - c1; once = j1 - dj; fonce = c1 - dc
      whole = (once + files * dj) / (fonce + files * dc)
      nosha = (once - sha + files * dj) / (fonce + files * dc)
      printf "%s: instructions (cachegrind, --threads 1) against the zstd floor'"'"'s codec: %.3fx per file (the second file: %.0f M against %.0f M); what the first file'"'"'s runs hold beyond the second'"'"'s, the job'"'"'s once-only work: %.0f M against %.0f M; a job of %d files: **%.3fx**", label, dj / dc, dj / 1e6, dc / 1e6, once / 1e6, fonce / 1e6, files, whole
      if (sha > 1e7) printf " (%.3fx without the job'"'"'s SHA-256, %.0f M: valgrind hides the CPU'"'"'s SHA extensions and runs it in software, at ~40 times the instructions)", nosha, sha / 1e6
      printf ". The job'"'"'s own codec calls: %.3fx the floor'"'"'s (two files: %.0f M against %.0f M; the job also compresses its manifest and `_state/`)", jc2 / c2, jc2 / 1e6, c2 / 1e6 }')"
  note "$label: the job's largest items outside the codec (instructions of the second file): $("$PY" "$BENCH_PY/instructions.py" top "$o/job2.cg" 6 "$o/job1.cg")"
  if [[ $KEEP_OUTPUT != 1 ]]; then rm -rf "$o"; fi
}

# [CG_POLICY=..] cpu_share_note LABEL IN_DIR O JOB_ARGS...: corpusgate's zstd:3 job (as the timed
# rounds run it: every core, JOB_ARGS) under `perf record -e cpu-clock`, CPU_SHARE_RUNS times; each
# run's samples over its samples in libzstd (scripts/bench/cpu_share.py) is its CPU over its own
# codec's CPU. Unlike the job's CPU over the floor's, a run or two apart, both sides of this ratio
# come from the same seconds of the same machine, so the host's drift cancels; it stands for the
# ratio against the floor because the job's codec calls do the floor's work (instructions_note:
# 1.003x and 1.010x the floor's codec instructions, the extra being the manifest and `_state/`).
cpu_share_note() {
  local label=$1 in=$2 o=$3/perf
  shift 3
  if [[ $CPU_SHARE == 0 ]]; then return 0; fi
  if ! command -v perf >/dev/null || ! perf record -q -e cpu-clock -o /dev/null true 2>/dev/null; then
    note "$label: CPU against the job's own codec: skipped (perf cannot record here; CPU_SHARE=0 skips this silently)"
    return 0
  fi
  log "layout $label: CPU samples under perf ($CPU_SHARE_RUNS runs)"
  rm -rf "$o"
  mkdir -p "$o"
  local i ratios=() kernels=() total codec kernel
  for ((i = 1; i <= CPU_SHARE_RUNS; i++)); do
    rm -rf "$o/out"
    perf record -q -e cpu-clock -F 1999 -o "$o/perf.data" -- "$CG" filter --policy "${CG_POLICY:-$POLICY}" \
      --output "$o/out" --progress never --compression zstd:3 "$@" "$in" >"$o/run.log" 2>&1 ||
      { fail "$label: corpusgate under perf failed: $(tail -n 3 "$o/run.log")"; return 0; }
    read -r total codec kernel < <("$PY" "$BENCH_PY/cpu_share.py" "$o/perf.data" "$CG") ||
      { fail "$label: cpu_share.py failed on $o/perf.data"; return 0; }
    ratios+=("$(awk -v t="$total" -v c="$codec" 'BEGIN { printf "%.3f", t / c }')")
    kernels+=("$(awk -v t="$total" -v k="$kernel" 'BEGIN { printf "%.1f", 100 * k / t }')")
  done
  local median
  median=$(printf '%s\n' "${ratios[@]}" | sort -g |
    awk '{ r[NR] = $1 } END { printf "%.3f", NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }')
  note "$label: CPU against the job's own codec CPU, within each run (perf cpu-clock samples, every core): **${median}x**, the median of $CPU_SHARE_RUNS runs (${ratios[*]}; of each run's CPU, ${kernels[*]} % in the kernel, which the floor counts only for its reads) (target <= 1.15)"
  if [[ $KEEP_OUTPUT != 1 ]]; then rm -rf "$o"; fi
}

run_layout() {
  local layout=$1
  local name=$layout-$ROWS
  gen "$name" "$layout" "$ROWS" --no-members
  local in=$DATA/$name/corpus glob="$DATA/$name/corpus/*.parquet" o=$OUT/$layout
  mkdir -p "$o"
  log "layout $layout: $(bytes "$in" | awk '{ printf "%.0f MiB", $1 / 1048576 }') input"
  if [[ $FLOORS == 1 ]]; then floors "$layout" "$in" "$o"; fi

  log "layout $layout: corpusgate and DuckDB, $REPEAT round(s)"
  local round
  rm -f "$o/zfloor.log.totals" "$o/zfloor.pairs"
  for ((round = 1; round <= REPEAT; round++)); do
    TIMER="run_once cg-zstd3" run_cg "$o/cg-zstd3" "$in" --compression zstd:3
    local job_cpu=$T_CPU job_steal=$T_STEAL
    TIMER="run_once zfloor" run_zfloor "$o/zfloor.log" "$in" "$o/cg-zstd3/data"
    T_CPU=$job_cpu JOB_STEAL=$job_steal zfloor_pair "$o/zfloor.pairs" "$o/zfloor.log"
    TIMER="run_once cg-preserve" run_cg "$o/cg-preserve" "$in"
    TIMER="run_once duck-default" run_duck "$o/duckdb-default" "$glob"
    TIMER="run_once duck-l3" run_duck "$o/duckdb-l3" "$glob" --level 3
  done
  best zfloor
  record floor "$layout" floor "zstd floor: the same libzstd, one thread (last run: $(grep -o 'decompress.*' "$o/zfloor.log"); the process's CPU also counts decompressing the output to recompress it)" ""
  local floor_cpu
  floor_cpu=$(zfloor_cpu "$o/zfloor.log")
  best cg-zstd3
  record main "$layout" corpusgate "--compression zstd:3" l3 "$o/cg-zstd3" "$o/cg-zstd3/data"
  zfloor_note "$layout" "$T_CPU" "$floor_cpu" "$o/zfloor.pairs"
  if [[ $layout == write-heavy ]]; then
    instructions_note "$layout" "$in" "$o"
    cpu_share_note "$layout" "$in" "$o"
  fi
  best cg-preserve
  record main "$layout" corpusgate "defaults (--compression preserve: zstd, level 1)" default \
    "$o/cg-preserve" "$o/cg-preserve/data"
  best duck-default
  record main "$layout" duckdb "defaults (COMPRESSION zstd)" default "$o/duckdb-default" "$o/duckdb-default/data.parquet"
  best duck-l3
  record main "$layout" duckdb "COMPRESSION zstd, COMPRESSION_LEVEL 3" l3 "$o/duckdb-l3" "$o/duckdb-l3/data.parquet"

  check "$o/cg-zstd3" "$o/duckdb-l3" "$glob" "$layout zstd:3"
  check "$o/cg-preserve" "$o/duckdb-default" "$glob" "$layout defaults"
  grep -h '^\[' "$o/duckdb-l3.compare" | sed 's/^/    /' >&2 || true
  "$PY" "$BENCH_PY/sizes.py" "$o/cg-zstd3" "$o/duckdb-l3" --title "$layout, zstd:3 vs COMPRESSION_LEVEL 3," \
    >"$OUT/sizes-$layout.md"

  if [[ $THREADS_RUN == 1 && $layout == mixed ]]; then
    # In rounds, like the comparisons above: one run of each per round, the fastest of each
    # kept, so that the machine's drift over the minute falls on both thread counts alike.
    # Each round's two walls are also kept as a pair: the speed-up of the fastest runs can
    # pair a lucky one-thread run with none as lucky at two threads (these machines vary by
    # more than the target's margin between two runs of one command), where a round's two
    # runs, seconds apart, see the same machine.
    log "layout $layout: corpusgate --threads 1 vs 2, $REPEAT round(s)"
    local t pair
    rm -f "$o/threads.pairs"
    for ((round = 1; round <= REPEAT; round++)); do
      pair=
      for t in 1 2; do
        TIMER="run_once threads$t" run_cg "$o/cg-threads$t" "$in" --threads "$t"
        pair="$pair $T_WALL"
        same_bytes "$o/cg-preserve" "$o/cg-threads$t"
      done
      echo "$pair" >>"$o/threads.pairs"
    done
    for t in 1 2; do
      best "threads$t"
      record threads "$layout" corpusgate "$t" "" "$o/cg-threads$t" "$o/cg-threads$t/data"
    done
    note "$layout: --threads 2 over --threads 1, the median of each round's speed-up: $(median_ratio "$o/threads.pairs")x (rounds $(pairs_list "$o/threads.pairs") s, one thread/two; target >= 1.8)"
    cleanup "$o/cg-threads1" "$o/cg-threads2"
  fi
  cleanup "$o/cg-zstd3" "$o/cg-preserve" "$o/duckdb-default" "$o/duckdb-l3"
}

# The name a join job's corpus and results go by: `join` on the mixed layout, else join-LAYOUT.
join_label() { if [[ $1 == mixed ]]; then echo join; else echo "join-$1"; fi; }

# run_join LAYOUT: the "join" job: region and consent come from the members snapshot, joined on
# member_id (the newest row per member; a null or unknown member_id -> unknown region), with
# scripts/bench/genai-uk-eea-ch-pause-join.yaml and `--consent-table SNAPSHOT` on corpusgate's side.
run_join() {
  local layout=$1 label
  label=$(join_label "$layout")
  local help supported=0
  help=$("$CG" filter --help)
  if grep -q -- --consent-table <<<"$help"; then supported=1; fi
  if [[ $supported == 0 ]]; then
    note "join: skipped (corpusgate has no --consent-table yet)"
    if [[ $JOIN_DUCKDB != 1 ]]; then return 0; fi
  fi
  local name=$label-$ROWS-m$JOIN_MEMBERS
  gen "$name" "$layout" "$ROWS" --members "$JOIN_MEMBERS"
  local in=$DATA/$name/corpus glob="$DATA/$name/corpus/*.parquet" members=$DATA/$name/members.parquet
  local o=$OUT/$label cg_ok=0
  mkdir -p "$o"
  log "layout $label: $JOIN_MEMBERS members, snapshot $(bytes "$members" | awk '{ printf "%.1f MiB", $1 / 1048576 }')"
  cg_ok=$supported
  local round
  rm -f "$o/zfloor.log.totals" "$o/zfloor.pairs"
  local job_cpu job_steal
  for ((round = 1; round <= REPEAT; round++)); do
    if [[ $cg_ok == 1 ]]; then
      if ! { CG_POLICY=$JOIN_POLICY ALLOW_FAIL=1 TIMER="run_once cg-zstd3" run_cg "$o/cg-zstd3" "$in" \
        --compression zstd:3 --consent-table "$members" &&
        job_cpu=$T_CPU && job_steal=$T_STEAL &&
        TIMER="run_once zfloor" run_zfloor "$o/zfloor.log" "$in" "$o/cg-zstd3/data" "$members" &&
        T_CPU=$job_cpu JOB_STEAL=$job_steal zfloor_pair "$o/zfloor.pairs" "$o/zfloor.log" &&
        CG_POLICY=$JOIN_POLICY ALLOW_FAIL=1 TIMER="run_once cg-preserve" run_cg "$o/cg-preserve" "$in" \
          --consent-table "$members"; }; then
        cg_ok=0
        fail "$label: corpusgate --consent-table failed: $(grep -m1 'error' "$o"/cg-*.log | cut -c1-300)"
      fi
    fi
    TIMER="run_once duck-default" run_duck "$o/duckdb-default" "$glob" --members "$members"
    TIMER="run_once duck-l3" run_duck "$o/duckdb-l3" "$glob" --members "$members" --level 3
  done
  if [[ $cg_ok == 1 ]]; then
    best zfloor
    record floor "$label" floor "zstd floor: the same libzstd, one thread (last run: $(grep -o 'decompress.*' "$o/zfloor.log"); the process's CPU also counts decompressing the output to recompress it)" ""
    local floor_cpu
    floor_cpu=$(zfloor_cpu "$o/zfloor.log")
    best cg-zstd3
    record main "$label" corpusgate "--compression zstd:3 --consent-table" l3 "$o/cg-zstd3" "$o/cg-zstd3/data"
    zfloor_note "$label" "$T_CPU" "$floor_cpu" "$o/zfloor.pairs"
    if [[ $layout == write-heavy ]]; then
      CG_POLICY=$JOIN_POLICY FLOOR_INPUT=$members instructions_note "$label" "$in" "$o" --consent-table "$members"
      CG_POLICY=$JOIN_POLICY cpu_share_note "$label" "$in" "$o" --consent-table "$members"
    fi
    best cg-preserve
    record main "$label" corpusgate "defaults --consent-table" default "$o/cg-preserve" "$o/cg-preserve/data"
  fi
  best duck-default
  record main "$label" duckdb "defaults (COMPRESSION zstd), join members" default \
    "$o/duckdb-default" "$o/duckdb-default/data.parquet"
  best duck-l3
  record main "$label" duckdb "COMPRESSION_LEVEL 3, join members" l3 "$o/duckdb-l3" "$o/duckdb-l3/data.parquet"
  if [[ $cg_ok == 1 ]]; then
    check "$o/cg-zstd3" "$o/duckdb-l3" "$glob" "$label zstd:3" --members "$members"
    check "$o/cg-preserve" "$o/duckdb-default" "$glob" "$label defaults" --members "$members"
    "$PY" "$BENCH_PY/sizes.py" "$o/cg-zstd3" "$o/duckdb-l3" --title "$label, zstd:3 vs COMPRESSION_LEVEL 3," \
      >"$OUT/sizes-$label.md"
  else
    note "$label: DuckDB only ($(grep -h '^duckdb_job' "$o/duckdb-l3.log"))"
  fi
  cleanup "$o"/cg-* "$o"/duckdb-*
}

run_scaling() {
  local n o=$OUT/scaling
  mkdir -p "$o"
  for n in $SCALING_SIZES; do
    log "scaling: $n rows"
    gen "mixed-$n" mixed "$n" --no-members
    local in=$DATA/mixed-$n/corpus
    run_cg "$o/cg-$n" "$in"
    record scaling "$n" corpusgate "defaults" "" "$o/cg-$n" "$o/cg-$n/data"
    if [[ $SCALING_DUCKDB == 1 ]]; then
      run_duck "$o/duckdb-$n" "$in/*.parquet"
      record scaling "$n" duckdb "defaults" "" "$o/duckdb-$n" "$o/duckdb-$n/data.parquet"
      check "$o/cg-$n" "$o/duckdb-$n" "$in/*.parquet" "scaling $n"
    fi
    cleanup "$o/cg-$n" "$o/duckdb-$n"
  done
}

header() {
  local cpu mem rev
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
  if [[ -n $(git status --porcelain -- src Cargo.toml 2>/dev/null) ]]; then rev="$rev + uncommitted changes"; fi
  cat <<EOF
## corpusgate vs DuckDB: $(date -u '+%Y-%m-%d %H:%M UTC')

- Machine: nproc $(nproc), CPU ${cpu:-unknown}, RAM $mem, $(uname -sr)
- corpusgate: $("$CG" --version) (tree $rev; binary built $(date -u -r "$CG" '+%H:%M UTC')); DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)'), pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)')
- Job: \`$POLICY\` over each layout: $ROWS rows in $FILES files, row groups of $ROW_GROUP rows, text ~$TEXT_BYTES B/row, zstd (parquet-rs default, level 1), seed $SEED. *mixed*: rows in generation order; *clustered*: each file sorted by (country, consent).
- *write-heavy*: the mixed layout with most members in allowed regions and few opt-outs (about two thirds of the rows kept, as a policy that removes a few regions and the opt-outs keeps most of a corpus; the other layouts keep 18 %).
- *join*: the mixed layout generated with $JOIN_MEMBERS members (*join-write-heavy*: the write-heavy one); region and consent come from \`members.parquet\` (newest row per member) joined on member_id: corpusgate \`--consent-table\` with \`$JOIN_POLICY\`, DuckDB a LEFT JOIN.
- DuckDB job: \`scripts/bench/duckdb_job.py\` (one view: LEFT JOIN of trim(country) to a table of every ASCII case variant of every alpha-2/alias/alpha-3 code, CASE in rule order; two COPYs: kept rows, manifest), default DuckDB settings (threads = all cores). Every corpusgate/DuckDB pair is checked by \`scripts/bench/compare.py\` (same kept rows, whole-row hashes, same exclusions by rule and region).
- Method: \`/usr/bin/time\` around the whole process (DuckDB's figures include the Python interpreter and \`import duckdb\`); inputs warm in the page cache; \`sync\` and a wait for an idle machine before each run; corpusgate and DuckDB run in turn, $REPEAT round(s) of every command of a layout, and the fastest run of each is kept (the same for \`--threads 1\` against \`--threads 2\`, whose notes also give the median of each round's speed-up; floors and scaling: fastest of $REPEAT consecutive runs); a run that other processes disturbed is repeated up to 3 times. corpusgate fsyncs its output before renaming it into place; DuckDB's COPY does not.
EOF
  local l
  local joins=""
  if [[ $JOIN == 1 ]]; then
    for l in $JOIN_LAYOUTS; do joins="$joins join:$l"; done
  fi
  for l in $LAYOUTS $joins; do
    if [[ $l == join:* ]]; then l=$(join_label "${l#join:}")-$ROWS-m$JOIN_MEMBERS; else l=$l-$ROWS; fi
    if [[ -d $DATA/$l/corpus ]]; then echo "- Input $l: $(bytes "$DATA/$l/corpus" | awk '{ printf "%.1f MiB", $1 / 1048576 }')"; fi
  done
  echo
}

main() {
  setup
  local l
  for l in $LAYOUTS; do run_layout "$l"; done
  if [[ $JOIN == 1 ]]; then
    for l in $JOIN_LAYOUTS; do run_join "$l"; done
  fi
  if [[ $SCALING == 1 ]]; then run_scaling; fi
  local report
  report=$(
    header
    "$PY" "$BENCH_PY/report.py" "$TSV"
    for l in $LAYOUTS $(for j in $JOIN_LAYOUTS; do join_label "$j"; done); do
      if [[ -f $OUT/sizes-$l.md ]]; then printf '\n'; cat "$OUT/sizes-$l.md"; fi
    done
  )
  printf '%s\n' "$report" >"$RESULTS"
  printf '%s\n' "$report"
  log "report written to $RESULTS"
  if ((${#FAILURES[@]})); then
    printf '\nbench: FAILED (%d):\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
  fi
}

# Sourced (scripts/bench/bucket.sh), only the definitions above are wanted.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
