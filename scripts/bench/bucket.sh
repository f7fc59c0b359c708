#!/usr/bin/env bash
# Bucket mode of the benchmark (`BUCKET=1 scripts/bench.sh`, or this script): corpusgate reading
# its input from and writing OUT to S3, on a real S3-compatible server that this script starts on
# 127.0.0.1, against the same jobs on local files. The report (markdown) goes to stdout and
# target/bench-results-bucket.md; progress goes to stderr.
#
#   BUCKET=1 scripts/bench.sh                               # default size: 4M rows
#   ROWS=200000 BUCKET=1 scripts/bench.sh                   # quick
#   BUILD=0 CG=/path/to/corpusgate GEN=/path/to/gen_corpus scripts/bench/bucket.sh
#
# Measured, each with its target (PASS/FAIL in the report; the script exits 0 either way):
#   1. the mixed corpus (ROWS rows, FILES objects), bucket to bucket vs local files to a local
#      OUT: wall <= 1.2x, peak RSS <= 2x
#   2. the same through scripts/bench/latency_proxy.py adding LATENCY_MS to every request: wall
#      <= 1.5x the direct bucket run (a run through the proxy at 0 ms shows the proxy's own cost)
#   3. the clustered corpus (row groups of CLUSTER_ROW_GROUP rows): bytes_fetched in summary.json
#      <= 1.1x the bytes the job must read (scripts/bench/bucket.py required)
#   4. SMALL_OBJECTS objects of SMALL_ROWS rows vs the same rows in LARGE_OBJECTS objects, both in
#      the bucket: wall <= 2x
# Every bucket OUT is downloaded and its data/ and excluded/ compared byte for byte with the
# local run of the same input: a difference, or a failed run, exits 1.
#
# Env (defaults): ROWS FILES ROW_GROUP TEXT_BYTES SEED BUILD QUIET_WAIT CG GEN as scripts/bench.sh;
#   REPEAT (3: rounds, each running every job once; the fastest run of each is kept)
#   SERVER (s3s: s3s-fs S3S_VERSION (0.14.1), cargo-installed into target/s3s-fs; moto:
#   moto_server MOTO_VERSION (5.2.1, as the tests), pip-installed into the venv). s3s-fs is the
#   default because moto is the bottleneck (2026-12-03, 4M rows, 2 cores: clustered run 21 s with
#   21 s of moto CPU vs 4.0 s with 2.5 s of s3s-fs CPU; 2,000 small objects 24.6 s vs 9.8 s; 1 GiB
#   through boto3 up/down 14.2/12.5 s vs 8.8/4.3 s). s3s-fs 0.15+ needs Rust 1.96.
#   LATENCY_MS (50) CLUSTER_ROW_GROUP (16384) SMALL_OBJECTS (2000) SMALL_ROWS (500)
#   LARGE_OBJECTS (8) KEEP_OUTPUT (0: delete the outputs and the server's objects at the end)
#   NODELAY (1: the server's connections get TCP_NODELAY through scripts/bench/nodelay.c, an
#   LD_PRELOAD shim built with cc: s3s-fs 0.14.1 lacks it, and every small response then waits
#   40 ms for a delayed ACK; 0: the server as it is)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEAT=${REPEAT:-3}
# shellcheck source=scripts/bench.sh
source scripts/bench.sh # its settings and helpers (log, die, gen, busy_ticks, wait_quiet, bytes)

SERVER=${SERVER:-s3s}
S3S_VERSION=${S3S_VERSION:-0.14.1}
MOTO_VERSION=${MOTO_VERSION:-5.2.1}
LATENCY_MS=${LATENCY_MS:-50}
CLUSTER_ROW_GROUP=${CLUSTER_ROW_GROUP:-16384}
SMALL_OBJECTS=${SMALL_OBJECTS:-2000}
SMALL_ROWS=${SMALL_ROWS:-500}
LARGE_OBJECTS=${LARGE_OBJECTS:-8}
NODELAY=${NODELAY:-1}

RESULTS=target/bench-results-bucket.md
O=$OUT/bucket
ROOT=target/bench-s3
S3S=target/s3s-fs/bin/s3s-fs
SHIM=target/bench-nodelay.so
BUCKET_NAME=corpusgate-bench
B=s3://$BUCKET_NAME
FAILURES=()
fail() {
  FAILURES+=("$*")
  printf '\nbench: FAILED: %s\n\n' "$*" >&2
}

setup() {
  if ! "$PY" -c 'import pyarrow, boto3' 2>/dev/null; then
    log "installing pyarrow and boto3 into $VENV (PyPI)"
    [[ -x $PY ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow boto3
  fi
  case $SERVER in
    s3s)
      if [[ "$("$S3S" --version 2>/dev/null)" != "s3s-fs $S3S_VERSION" ]]; then
        log "installing s3s-fs $S3S_VERSION into target/s3s-fs (cargo install: a few minutes)"
        cargo install --quiet --locked s3s-fs --version "$S3S_VERSION" --features binary \
          --root target/s3s-fs || die "cargo install s3s-fs failed"
      fi
      ;;
    moto)
      if [[ "$("$PY" -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]]; then
        log "installing moto[server]==$MOTO_VERSION into $VENV (PyPI)"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
      fi
      ;;
    *) die "SERVER=$SERVER: s3s or moto" ;;
  esac
  if [[ $BUILD == 1 ]]; then
    log "building corpusgate and gen_corpus (release)"
    cargo build --release --quiet || die "cargo build --release failed (BUILD=0 uses the binaries already there)"
    cargo build --release --quiet --example gen_corpus || die "cargo build --release --example gen_corpus failed"
  fi
  [[ -x $CG && -x $GEN ]] || die "$CG or $GEN missing (CG=... GEN=... name others)"
  if [[ $NODELAY == 1 && ! ($SHIM -nt $BENCH_PY/nodelay.c) ]]; then
    "${CC:-cc}" -shared -fPIC -O2 -o "$SHIM" "$BENCH_PY/nodelay.c" -ldl || die "building $SHIM failed (NODELAY=0 goes without)"
  fi
  rm -rf "$O" "$ROOT"
  mkdir -p "$O" "$ROOT/root" "$DATA"
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PORT PID NAME: until something listens on 127.0.0.1:PORT (60 s at most).
wait_port() {
  local i
  for ((i = 0; i < 600; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || die "$3 exited: see $O/$3.log"
    sleep 0.1
  done
  die "$3 did not listen on port $1 within 60 s"
}

SERVICE_PIDS=()
stop_services() {
  local pid
  for pid in "${SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $KEEP_OUTPUT != 1 ]]; then rm -rf "$ROOT"; fi
}

# The server, and two proxies in front of it (0 ms and LATENCY_MS); exports the AWS_* variables.
start_services() {
  local port p0 pl preload=""
  port=$(free_port)
  if [[ $NODELAY == 1 ]]; then preload=$PWD/$SHIM; fi
  case $SERVER in
    s3s)
      LD_PRELOAD=$preload "$S3S" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret-key \
        "$ROOT/root" >"$O/server.log" 2>&1 &
      SERVER_DESC="s3s-fs $S3S_VERSION (crates.io, \`cargo install s3s-fs --features binary\`; objects are files under $ROOT, written without fsync; requests signed and checked)"
      ;;
    moto)
      LD_PRELOAD=$preload "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$O/server.log" 2>&1 &
      SERVER_DESC="moto_server $MOTO_VERSION (PyPI moto[server], as the tests; objects in its memory)"
      ;;
  esac
  SERVICE_PIDS+=($!)
  trap stop_services EXIT
  wait_port "$port" "$!" server
  p0=$(free_port)
  "$PY" "$BENCH_PY/latency_proxy.py" "$p0" "$port" 0 >"$O/proxy0.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_port "$p0" "$!" proxy0
  pl=$(free_port)
  "$PY" "$BENCH_PY/latency_proxy.py" "$pl" "$port" "$LATENCY_MS" >"$O/proxy.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_port "$pl" "$!" proxy
  ENDPOINT=http://127.0.0.1:$port
  ENDPOINT_P0=http://127.0.0.1:$p0
  ENDPOINT_LAT=http://127.0.0.1:$pl
  export AWS_ENDPOINT_URL=$ENDPOINT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench \
    AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
  if [[ $NODELAY == 1 ]]; then SERVER_DESC+="; TCP_NODELAY set on its connections by \`scripts/bench/nodelay.c\` (LD_PRELOAD)"; fi
  log "server: $SERVER on $ENDPOINT (pid ${SERVICE_PIDS[0]}); proxies: 0 ms $ENDPOINT_P0, $LATENCY_MS ms $ENDPOINT_LAT"
  "$PY" "$BENCH_PY/bucket.py" mkbucket "$BUCKET_NAME"
}

# CPU ticks the server and the proxies used so far.
service_ticks() {
  local pid t=0 v
  for pid in "${SERVICE_PIDS[@]}"; do
    v=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}

# upload NAME DIR: DIR's files to $B/in/NAME; adds to the upload totals.
UP_BYTES=0 UP_SECS=0 UP_OBJECTS=0
upload() {
  local n s k
  log "uploading $2 to $B/in/$1"
  read -r n s k < <("$PY" "$BENCH_PY/bucket.py" put "$2" "$B/in/$1")
  UP_BYTES=$((UP_BYTES + n)) UP_OBJECTS=$((UP_OBJECTS + k))
  UP_SECS=$(awk -v a="$UP_SECS" -v b="$s" 'BEGIN { print a + b }')
}

clear_out() {
  if [[ $1 == s3://* ]]; then "$PY" "$BENCH_PY/bucket.py" rm "$1"; else rm -rf "$1"; fi
}

declare -A W C R S X RLO RHI
# measure KEY OUT INPUT [ENDPOINT]: one corpusgate run (OUT cleared and `sync` first, untimed;
# again, up to 3 times, while other processes used over 10% of its wall time); the fastest run
# of each KEY is kept: W wall s, C CPU s, R peak RSS KB, S server+proxy CPU s, X others' CPU s;
# RLO and RHI: the least and the most peak RSS of all its runs (it varies with timing).
measure() {
  local key=$1 out=$2 in=$3 endpoint=${4:-$ENDPOINT} logf=$O/$1.log
  local i e u s m b0 b1 s0 s1 hz cpu svc other
  hz=$(getconf CLK_TCK)
  for ((i = 0; i < 4; i++)); do
    clear_out "$out"
    sync
    wait_quiet
    b0=$(busy_ticks) s0=$(service_ticks)
    if ! AWS_ENDPOINT_URL=$endpoint /usr/bin/time -f '%e %U %S %M' -o "$logf.time" \
      "$CG" filter --policy "$POLICY" --output "$out" --overwrite --progress never "$in" >"$logf" 2>&1; then
      tail -n 30 "$logf" >&2
      die "corpusgate failed ($key, $in -> $out): see $logf"
    fi
    b1=$(busy_ticks) s1=$(service_ticks)
    read -r e u s m < <(tail -n 1 "$logf.time")
    cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    svc=$(awk -v d=$((s1 - s0)) -v hz="$hz" 'BEGIN { printf "%.2f", d / hz }')
    other=$(awk -v d=$((b1 - b0)) -v hz="$hz" -v c="$cpu" -v v="$svc" \
      'BEGIN { o = d / hz - c - v; printf "%.2f", o < 0 ? 0 : o }')
    if [[ -z ${W[$key]:-} ]] || awk -v a="$e" -v b="${W[$key]}" 'BEGIN { exit !(a < b) }'; then
      W[$key]=$e C[$key]=$cpu R[$key]=$m S[$key]=$svc X[$key]=$other
    fi
    if ((m < ${RLO[$key]:-m + 1})); then RLO[$key]=$m; fi
    if ((m > ${RHI[$key]:-0})); then RHI[$key]=$m; fi
    log "  $key: ${e}s wall, ${cpu}s CPU, $((m / 1024)) MiB RSS, server+proxy ${svc}s CPU, others ${other}s CPU"
    if awk -v o="$other" -v w="$e" 'BEGIN { exit !(o <= 0.1 * w) }'; then break; fi
  done
}

# same_output KEY LOCAL_OUT BUCKET_OUT: download BUCKET_OUT; data/ and excluded/ must be LOCAL_OUT's.
DOWN_BYTES=0 DOWN_SECS=0
COMPARED=()
same_output() {
  local key=$1 dl=$O/dl/$1 n s k
  rm -rf "$dl"
  read -r n s k < <("$PY" "$BENCH_PY/bucket.py" get "$3" "$dl")
  DOWN_BYTES=$((DOWN_BYTES + n))
  DOWN_SECS=$(awk -v a="$DOWN_SECS" -v b="$s" 'BEGIN { print a + b }')
  if [[ ! -f $dl/_SUCCESS ]]; then
    fail "$key: $3 has no _SUCCESS"
  elif ! diff -rq "$2/data" "$dl/data" >&2 || ! diff -rq "$2/excluded" "$dl/excluded" >&2; then
    fail "$key: the bucket output $3 differs from the local run's $2 (data/ or excluded/)"
  else
    COMPARED+=("$key")
    log "  $key: data/ and excluded/ identical to $2 ($(find "$dl/data" "$dl/excluded" -type f | wc -l) files)"
  fi
}

json() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t ? "PASS" : "**FAIL**") }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

main() {
  setup
  local mixed=mixed-$ROWS clustered=clustered-$ROWS-rg$CLUSTER_ROW_GROUP
  local nsmall=$((SMALL_OBJECTS * SMALL_ROWS))
  local small=small-${SMALL_OBJECTS}x$SMALL_ROWS large=large-${LARGE_OBJECTS}x$((nsmall / LARGE_OBJECTS))
  ((nsmall % LARGE_OBJECTS == 0)) || die "SMALL_OBJECTS x SMALL_ROWS must divide by LARGE_OBJECTS (the same rows)"
  if ((CLUSTER_ROW_GROUP == ROW_GROUP)); then clustered=clustered-$ROWS; fi # bench.sh's corpus
  gen "$mixed" mixed "$ROWS" --no-members
  ROW_GROUP=$CLUSTER_ROW_GROUP gen "$clustered" clustered "$ROWS" --no-members
  # The mixed layout draws rows in one sequence across files: any split holds the same rows.
  FILES=$SMALL_OBJECTS gen "$small" mixed "$nsmall" --no-members
  FILES=$LARGE_OBJECTS gen "$large" mixed "$nsmall" --no-members

  start_services
  local d
  for d in mixed clustered small large; do upload "$d" "$DATA/${!d}/corpus"; done

  log "$REPEAT round(s) of every run"
  local round
  for ((round = 1; round <= REPEAT; round++)); do
    log "round $round"
    measure local-mixed "$O/local-mixed" "$DATA/$mixed/corpus"
    measure s3-mixed "$B/out/mixed" "$B/in/mixed"
    measure s3-mixed-proxy0 "$B/out/mixed-proxy0" "$B/in/mixed" "$ENDPOINT_P0"
    measure s3-mixed-latency "$B/out/mixed-latency" "$B/in/mixed" "$ENDPOINT_LAT"
    measure local-clustered "$O/local-clustered" "$DATA/$clustered/corpus"
    measure s3-clustered "$B/out/clustered" "$B/in/clustered"
    measure local-small "$O/local-small" "$DATA/$small/corpus"
    measure s3-small "$B/out/small" "$B/in/small"
    measure local-large "$O/local-large" "$DATA/$large/corpus"
    measure s3-large "$B/out/large" "$B/in/large"
  done

  log "comparing every bucket output with the local run's"
  same_output s3-mixed "$O/local-mixed" "$B/out/mixed"
  same_output s3-mixed-proxy0 "$O/local-mixed" "$B/out/mixed-proxy0"
  same_output s3-mixed-latency "$O/local-mixed" "$B/out/mixed-latency"
  same_output s3-clustered "$O/local-clustered" "$B/out/clustered"
  same_output s3-small "$O/local-small" "$B/out/small"
  same_output s3-large "$O/local-large" "$B/out/large"
  if [[ "$(json "$O/local-small/summary.json" 'd["by_rule"]')" != "$(json "$O/local-large/summary.json" 'd["by_rule"]')" ]]; then
    fail "the $small and $large corpora do not hold the same rows (summary.json by_rule differs)"
  fi

  local req policy_only file_bytes groups kept_groups fetched=""
  read -r req policy_only file_bytes groups kept_groups < <("$PY" "$BENCH_PY/bucket.py" required "$DATA/$clustered/corpus")
  if [[ -f $O/dl/s3-clustered/summary.json ]]; then
    fetched=$(json "$O/dl/s3-clustered/summary.json" 'd.get("bytes_fetched", 0)')
  fi

  local report
  report=$(
    local cpu mem rev
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
    cat <<EOF
## corpusgate on S3 (bench bucket mode): $(date -u '+%Y-%m-%d %H:%M UTC')

- Machine: nproc $(nproc), CPU ${cpu:-unknown}, RAM $mem, $(uname -sr)
- corpusgate: $("$CG" --version) (\`$CG\`, built $(date -u -r "$CG" '+%Y-%m-%d %H:%M UTC'); bench tree $rev)
- Server: $SERVER_DESC, on 127.0.0.1, the same machine (its CPU and the proxy's are in the runs table). Latency: \`scripts/bench/latency_proxy.py\` holds the first bytes of every request $LATENCY_MS ms.
- Job: \`$POLICY\`, corpusgate's defaults (\`--compression preserve\`, threads = cores), \`--overwrite\`. Inputs (gen_corpus, zstd, text ~$TEXT_BYTES B/row, seed $SEED): *mixed* $ROWS rows in $FILES objects, row groups of $ROW_GROUP ($(mib "$(bytes "$DATA/$mixed/corpus")") MiB); *clustered* $ROWS rows in $FILES objects sorted by (country, consent), row groups of $CLUSTER_ROW_GROUP ($(mib "$file_bytes") MiB, $kept_groups of $groups row groups keep a row); *small* $SMALL_OBJECTS objects of $SMALL_ROWS rows and *large* the same $nsmall rows in $LARGE_OBJECTS objects ($(mib "$(bytes "$DATA/$small/corpus")") and $(mib "$(bytes "$DATA/$large/corpus")") MiB).
- Method: \`/usr/bin/time\` around corpusgate (wall, CPU, peak RSS: corpusgate's own); local inputs warm in the page cache, bucket inputs uploaded first; OUT removed and \`sync\` before each run; $REPEAT round(s), each running every job once, the fastest run of each kept; a run during which other processes (not the server or proxies) used over 10% of its wall time is repeated, up to 3 times. Server throughput (boto3, 16 requests in flight): upload $(mib "$UP_BYTES") MiB in $UP_OBJECTS objects, ${UP_SECS} s; download of the outputs $(mib "$DOWN_BYTES") MiB, ${DOWN_SECS} s.

| # | measurement | figure | target | result |
| --- | --- | --- | --- | --- |
EOF
    local r
    r=$(ratio "${W[s3-mixed]}" "${W[local-mixed]}")
    echo "| 1 | mixed, bucket to bucket vs local: wall | ${r}x (${W[s3-mixed]} s vs ${W[local-mixed]} s) | <= 1.2x | $(verdict "$r" 1.2) |"
    # The server shares the cores: the bucket run needs at least the local run's CPU plus the
    # server's, spread over every core. Against this floor the ratio says what corpusgate adds.
    local floor
    floor=$(awk -v c="${C[local-mixed]}" -v s="${S[s3-mixed]}" -v n="$(nproc)" 'BEGIN { printf "%.2f", (c + s) / n }')
    echo "| 1 | mixed, bucket wall vs this machine's floor, (local run's CPU + server's CPU) / $(nproc) cores | $(ratio "${W[s3-mixed]}" "$floor")x (${W[s3-mixed]} s vs $floor s = ($(ratio "$floor" "${W[local-mixed]}")x local wall); corpusgate's CPU $(ratio "${C[s3-mixed]}" "${C[local-mixed]}")x local's) | - | - |"
    r=$(ratio "${R[s3-mixed]}" "${R[local-mixed]}")
    echo "| 1 | mixed, bucket to bucket vs local: peak RSS | ${r}x ($((${R[s3-mixed]} / 1024)) MiB vs $((${R[local-mixed]} / 1024)) MiB, fastest runs; all runs $((${RLO[s3-mixed]} / 1024))-$((${RHI[s3-mixed]} / 1024)) vs $((${RLO[local-mixed]} / 1024))-$((${RHI[local-mixed]} / 1024)) MiB) | <= 2x | $(verdict "$r" 2) |"
    r=$(ratio "${W[s3-mixed-latency]}" "${W[s3-mixed]}")
    echo "| 2 | mixed, +$LATENCY_MS ms per request vs direct bucket: wall | ${r}x (${W[s3-mixed-latency]} s vs ${W[s3-mixed]} s; through the proxy at 0 ms: ${W[s3-mixed-proxy0]} s) | <= 1.5x | $(verdict "$r" 1.5) |"
    if [[ -n $fetched && $fetched != 0 ]]; then
      r=$(ratio "$fetched" "$req")
      echo "| 3 | clustered: bytes_fetched vs bytes to read | ${r}x ($(mib "$fetched") MiB vs $(mib "$req") MiB; the objects: $(mib "$file_bytes") MiB) | <= 1.1x | $(verdict "$r" 1.1) |"
    else
      echo "| 3 | clustered: bytes_fetched vs bytes to read | no bytes_fetched in summary.json | <= 1.1x | **FAIL** |"
    fi
    r=$(ratio "${W[s3-small]}" "${W[s3-large]}")
    echo "| 4 | $SMALL_OBJECTS objects x $SMALL_ROWS rows vs $LARGE_OBJECTS objects, bucket: wall | ${r}x (${W[s3-small]} s vs ${W[s3-large]} s; local files: $(ratio "${W[local-small]}" "${W[local-large]}")x) | <= 2x | $(verdict "$r" 2) |"
    echo "| - | bucket outputs identical to the local runs' (data/, excluded/) | ${#COMPARED[@]} of 6 | 6 of 6 | $( ((${#COMPARED[@]} == 6)) && echo PASS || echo '**FAIL**') |"
    cat <<EOF

Bytes to read (3): each object's footer; every column chunk of the $kept_groups row groups with a kept row (rows decided by \`scripts/bench/policy.py\`); of the other $((groups - kept_groups)), the policy's region and consent columns and the record_id and user_id columns its manifest copies ($(mib "$policy_only") MiB with region and consent alone).

| run | wall s | CPU s | peak RSS MiB | peak RSS, all runs | server + proxy CPU s | others' CPU s |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
    local k
    for k in local-mixed s3-mixed s3-mixed-proxy0 s3-mixed-latency local-clustered s3-clustered local-small s3-small local-large s3-large; do
      echo "| $k | ${W[$k]} | ${C[$k]} | $((${R[$k]} / 1024)) | $((${RLO[$k]} / 1024))-$((${RHI[$k]} / 1024)) | ${S[$k]} | ${X[$k]} |"
    done
    if ((${#FAILURES[@]})); then
      printf '\n'
      printf -- '- **FAILED: %s**\n' "${FAILURES[@]}"
    fi
  )
  printf '%s\n' "$report" >"$RESULTS"
  printf '%s\n' "$report"
  log "report written to $RESULTS"
  if [[ $KEEP_OUTPUT != 1 ]]; then rm -rf "$O"/local-* "$O/dl"; fi
  if ((${#FAILURES[@]})); then
    printf '\nbench: FAILED (%d):\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
  fi
}

main "$@"
