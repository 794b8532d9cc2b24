#!/usr/bin/env bash
# Throughput and latency of the server's hot paths against the ceiling of its HTTP stack, in one
# run: the demo (SQLite + simulated terminals) and a bare axum route (byfly-server/examples/bare.rs)
# under wrk, then the same requests on PostgreSQL with one and with two `byfly-server serve`
# processes on one database. Prints one table: req/s, p50, p99 and the ratio to bare. The reads
# choose among 200 payments at random; a row whose answers were not all 2xx is named on stderr.
#   bash bench/load.sh [seconds per run, default 10] [connections, default 32]
# Needs wrk (installed from Debian when missing) and, for the PostgreSQL rows, a PostgreSQL server
# at BYFLY_BENCH_DATABASE_URL's host (default postgres://postgres@127.0.0.1:5432, database
# byfly_bench, recreated). BYFLY_BENCH_SQLITE_ONLY=1 leaves the PostgreSQL rows out (a quick
# look while changing something).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-32}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/byfly-ci-target}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p byfly-server --bin byfly-server --example bare
BIN="$CARGO_TARGET_DIR/release/byfly-server"
BARE="$CARGO_TARGET_DIR/release/examples/bare"
WORK="$(mktemp -d)"
# The servers' logs in memory (/dev/shm where there is one), not beside the database: a log file
# growing by a line per request on the database's filesystem is written back by the kernel 30 s
# after it was dirtied, and on ext4 the database's fsync then waits for that writeback — one
# stall of about a third of a second that wrk's histogram spreads over a hundredth of the `init`
# samples (BENCHMARKS.md). A deployment logs to journald or another disk.
LOGS="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK" "$LOGS"; }
trap cleanup EXIT

TOKEN="$(head -c 4096 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 64)"
ADMIN="bench-admin-token-0123456789"
wait_up() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

# One run of wrk: prints "req/s p50_ms p99_ms". A third argument goes to the script.
run_wrk() {
  local url="$1" script="${2:-}" script_arg="${3:-}"
  local args=(-t2 "-c$CONNECTIONS" "-d${SECONDS_PER_RUN}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  args+=("$url")
  [ -n "$script_arg" ] && args+=(-- "$script_arg")
  wrk "${args[@]}" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    /Non-2xx/ { failed = $NF }
    END {
      # A row of refusals would measure the wrong thing: say so where the table is printed.
      if (failed > 0) printf "%s: %d answers were not 2xx\n", run, failed > "/dev/stderr"
      printf "%.0f %.2f %.2f\n", rps, p50, p99
    }' run="$url ${script##*/} $script_arg"
}

# wrk scripts: init without and with a fresh Idempotency-Key per request.
cat > "$WORK/init.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Token"] = "$TOKEN"
wrk.body = '{"amount": 50000, "description": "load"}'
LUA
# Each wrk thread (and each wrk process) draws its own key prefix from /dev/urandom: Lua's
# math.random starts from the same seed in every thread, so keys made from it repeat across
# threads — replays, not new payments.
cat > "$WORK/thread_nonce.lua" <<'LUA'
local function thread_nonce()
  local urandom = assert(io.open("/dev/urandom", "rb"))
  local bytes = urandom:read(6)
  urandom:close()
  local nonce = 0
  for i = 1, #bytes do nonce = nonce * 256 + bytes:byte(i) end
  return nonce
end
LUA
cat > "$WORK/init_key.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Token"] = "$TOKEN"
wrk.body = '{"amount": 50000, "description": "load"}'
$(cat "$WORK/thread_nonce.lua")
local prefix
local n = 0
function init(args)
  prefix = string.format("%.0f", thread_nonce())
end
request = function()
  n = n + 1
  wrk.headers["Idempotency-Key"] = string.format("bench-%s-%d", prefix, n)
  return wrk.format()
end
LUA

# Reads of many payments, each request one of them at random (a payment page polls its own
# payment; one id for every request would read one row over and over, and on PostgreSQL, whose
# concurrent reads share queries, one row for 32 requests). The ids are read from the file the
# script names; the argument is the path after the id ("/status", or none).
cat "$WORK/thread_nonce.lua" - > "$WORK/reads.lua" <<'LUA'
local ids = {}
local suffix = ""
function init(args)
  for line in io.lines("IDS_FILE") do ids[#ids + 1] = line end
  suffix = args[1] or ""
  math.randomseed(thread_nonce() % 2147483647)
end
function request()
  return wrk.format("GET", "/api/payment/" .. ids[math.random(#ids)] .. suffix)
end
LUA
# How many payments the reads choose from.
READ_PAYMENTS=200

ROWS=()
row() { ROWS+=("$1|$2"); }

"$BARE" 127.0.0.1:18090 >/dev/null 2>&1 & PIDS+=($!)
wait_up http://127.0.0.1:18090/bare
BARE_FIGURES="$(run_wrk http://127.0.0.1:18090/bare)"
row "bare axum route (the ceiling)" "$BARE_FIGURES"

# The requests measured on every backend: name, path under /api, wrk script (READS: the reads
# script of the backend's payments), the script's argument.
REQUESTS=(
  "GET /payment/{id}/status||READS|/status"
  "GET /payment/{id}||READS|"
  "GET /payment-methods/active|payment-methods/active||"
  "POST /payment/init|payment/init|$WORK/init.lua|"
  "POST /payment/init + Idempotency-Key|payment/init|$WORK/init_key.lua|"
)
# $READ_PAYMENTS payments of 50 000 made through `base` as `token`; writes the reads script for
# them to `script`.
new_payments() {
  local base="$1" token="$2" script="$3" ids="${3%.lua}.ids"
  for _ in $(seq 1 "$READ_PAYMENTS"); do
    curl -fs -X POST "$base/payment/init" -H "X-API-Token: $token" -H 'Content-Type: application/json' \
      -d '{"amount": 50000}' | sed -E 's/.*"transaction_id":"([0-9A-F]{12})".*/\1/'
    echo
  done | grep -E '^[0-9A-F]{12}$' >"$ids"
  sed "s|IDS_FILE|$ids|" "$WORK/reads.lua" >"$script"
}

"$BIN" demo --data-dir "$WORK/demo" --bind 127.0.0.1:18080 --token "$TOKEN" --admin-token "$ADMIN" >"$LOGS/demo.log" 2>&1 & PIDS+=($!)
wait_up http://127.0.0.1:18080/api/health
new_payments http://127.0.0.1:18080/api "$TOKEN" "$WORK/reads_sqlite.lua"
for request in "${REQUESTS[@]}"; do
  IFS='|' read -r name path script arg <<<"$request"
  row "SQLite: $name" "$(run_wrk "http://127.0.0.1:18080/api/$path" "${script/READS/$WORK/reads_sqlite.lua}" "$arg")"
done

PG_BASE="${BYFLY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
if [ "${BYFLY_BENCH_SQLITE_ONLY:-0}" = 1 ]; then
  echo "(BYFLY_BENCH_SQLITE_ONLY=1: the PostgreSQL rows are left out)" >&2
elif psql "$PG_BASE/postgres" -qAtc "SELECT 1" >/dev/null 2>&1; then
  psql "$PG_BASE/postgres" -qc "DROP DATABASE IF EXISTS byfly_bench WITH (FORCE)" >/dev/null 2>&1
  psql "$PG_BASE/postgres" -qc "CREATE DATABASE byfly_bench" >/dev/null
  export BYFLY_DATABASE_URL="$PG_BASE/byfly_bench"
  "$BIN" migrate >/dev/null 2>&1
  PG_TOKEN="$("$BIN" source create --name Bench 2>/dev/null | grep -Eo '[A-Za-z0-9]{64}' | head -n 1)"
  sed -i "s/$TOKEN/$PG_TOKEN/" "$WORK/init.lua" "$WORK/init_key.lua"
  BYFLY_BIND=127.0.0.1:18181 "$BIN" serve >"$LOGS/pg1.log" 2>&1 & PIDS+=($!)
  BYFLY_BIND=127.0.0.1:18182 "$BIN" serve >"$LOGS/pg2.log" 2>&1 & PIDS+=($!)
  wait_up http://127.0.0.1:18181/api/health; wait_up http://127.0.0.1:18182/api/health
  new_payments http://127.0.0.1:18181/api "$PG_TOKEN" "$WORK/reads_pg.lua"
  # Two processes: two wrk runs at once, one per process, their rates added, the worse percentiles kept.
  both() {
    run_wrk "http://127.0.0.1:18181/api/$1" "$2" "$3" >"$WORK/a" & local a=$!
    run_wrk "http://127.0.0.1:18182/api/$1" "$2" "$3" >"$WORK/b" & local b=$!
    wait "$a" "$b"
    paste "$WORK/a" "$WORK/b" | awk '{ printf "%.0f %.2f %.2f\n", $1 + $4, ($2 > $5 ? $2 : $5), ($3 > $6 ? $3 : $6) }'
  }
  for request in "${REQUESTS[@]}"; do
    IFS='|' read -r name path script arg <<<"$request"
    script="${script/READS/$WORK/reads_pg.lua}"
    row "PostgreSQL, 1 process: $name" "$(run_wrk "http://127.0.0.1:18181/api/$path" "$script" "$arg")"
    row "PostgreSQL, 2 processes: $name" "$(both "$path" "$script" "$arg")"
  done
else
  echo "(no PostgreSQL at $PG_BASE: its rows are left out)" >&2
fi

BARE_RPS="${BARE_FIGURES%% *}"
echo "wrk, $CONNECTIONS connections, ${SECONDS_PER_RUN} s per row, release build, $(nproc) cores"
printf '| %-62s | %9s | %8s | %8s | %6s |\n' request req/s "p50 ms" "p99 ms" "× bare"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..64})" "-----------" "----------" "----------" "--------"
for entry in "${ROWS[@]}"; do
  name="${entry%%|*}"; read -r rps p50 p99 <<<"${entry#*|}"
  printf '| %-62s | %9s | %8s | %8s | %6s |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$BARE_RPS" 'BEGIN { printf "%.2f", a / b }')"
done
