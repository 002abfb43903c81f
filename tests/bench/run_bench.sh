#!/bin/bash
# make bench: every benchmark in one go, then a summary table.
#
#   1. filters   tests/bench/bench_filters.sh (1,000,000 names vs OpenMetadata's Python algorithm)
#   2. sched     build/bench_sched --services N (10,000 services through the Airflow simulator)
#   3. ingest    wrk against POST /api/v1/webhooks/openmetadata of `autopilot serve` (signed
#                events, unique ids, SQLite store), once per BENCH_SYNC mode, then the same
#                load against build/bench_ceiling (libevent answering 200); every 2xx run_id
#                is then looked up in the store.
#
# Knobs (environment): BENCH_NAMES (1000000), BENCH_SERVICES (10000), BENCH_SECONDS (wrk
# duration, 10), BENCH_CONNECTIONS (wrk -c, 32), BENCH_THREADS (wrk -t, 1),
# BENCH_ONLY="filters sched ingest" (a subset), BENCH_SYNC="full normal" (the store's
# "state": {"synchronous": ...} for the ingest runs: full, normal or both), AP_BUILD (build/).
# Installs wrk (Debian package) if it is missing.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${AP_BUILD:-$SRC/build}
BIN=$BUILD/autopilot
ONLY=${BENCH_ONLY:-filters sched ingest}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
SYNCS=${BENCH_SYNC:-full normal}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
declare -A R	# results for the summary
status=0
want() { case " $ONLY " in *" $1 "*) return 0;; esac; return 1; }

# Waits for "listening HOST:PORT" (or a log line naming the port) in $1; prints the port.
wait_port() {
	local f=$1 i port
	for i in $(seq 1 100); do
		port=$(grep -a -o -m1 -E '(listening|listen)[^0-9]*127\.0\.0\.1:[0-9]+' "$f" 2>/dev/null |
			grep -o -E '[0-9]+$')
		[ -n "$port" ] && { echo "$port"; return 0; }
		sleep 0.1
	done
	return 1
}

if want filters; then
	echo "== filters: tests/bench/bench_filters.sh" >&2
	if AP_BIN=$BIN "$SRC/tests/bench/bench_filters.sh" | tee "$TMP/filters.out"; then
		R[filters_ap]=$(awk '/^autopilot/ {print $(NF-1)}' "$TMP/filters.out")
		R[filters_py]=$(awk '/^Python/ {print $(NF-1)}' "$TMP/filters.out")
		R[filters_ratio]=$(awk '/^ratio/ {print $2}' "$TMP/filters.out")
	else
		status=1
		R[filters_ratio]=FAILED
	fi
fi

if want sched; then
	n=${BENCH_SERVICES:-10000}
	echo "== sched: build/bench_sched --services $n" >&2
	if "$BUILD/bench_sched" --services "$n" | tee "$TMP/sched.out"; then
		R[sched_makespan]=$(awk '/^makespan/ {print $2}' "$TMP/sched.out")
		R[sched_bound]=$(awk '/^lower bound/ {print $3}' "$TMP/sched.out")
		R[sched_ratio]=$(grep -o 'ratio [0-9.]*' "$TMP/sched.out" | awk '{print $2}')
		R[sched_req]=$(grep -o '([0-9.]* per agent run)' "$TMP/sched.out" | tr -d '(' | awk '{print $1}')
		R[sched_rss]=$(awk '/^peak RSS/ {print $3}' "$TMP/sched.out")
		R[sched_cpu]=$(awk '/^scheduler CPU/ {printf "%.1f", $3 + $7}' "$TMP/sched.out")
		# target: within 5 % of the bound plus two poll intervals (bench_sched polls at most every 1 s)
		R[sched_limit]=$(awk -v b="${R[sched_bound]}" 'BEGIN { printf "%.1f", b * 1.05 + 2 * 1.0 }')
		R[sched_failed]=$(grep -o '[0-9]* failed' "$TMP/sched.out" | head -1 | awk '{print $1}')
	else
		status=1
		R[sched_makespan]=FAILED
	fi
fi

# wrk with tests/bench/webhook.lua against port $1; results in $TMP/wrk-$2.out
run_wrk() {
	BENCH_SECRET=$SECRET BENCH_NONCE=$(printf '%08x' $((RANDOM * 32768 + RANDOM))) \
	BENCH_IDS_OUT=$TMP/ids-$2.txt \
		wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$SRC/tests/bench/webhook.lua" \
		"http://127.0.0.1:$1/" > "$TMP/wrk-$2.out" 2>&1
	grep -a '^BENCH ' "$TMP/wrk-$2.out" | sed 's/^BENCH //'
}
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }

if want ingest; then
	command -v wrk >/dev/null || AP_EXTRA_PKGS=wrk "$SRC/.ci/install-deps" || true
	SECRET=bench-$RANDOM-secret
	if ! command -v wrk >/dev/null; then
		echo "ingest: wrk is not installed and could not be installed" >&2
		R[ingest]="not run: no wrk"; status=1
	elif ! "$BIN" serve --help >/dev/null 2>&1; then
		echo "ingest: $BIN has no 'serve' subcommand in this build" >&2
		R[ingest]="not run: no autopilot serve"; status=1
	else
		"$BUILD/sim_airflow" --quiet --scenario "$SRC/tests/data/scenarios/bench.json" \
			> "$TMP/sim.out" 2>&1 &
		PIDS+=($!)
		simport=$(wait_port "$TMP/sim.out") || { echo "ingest: simulator did not start" >&2; exit 1; }
		for sync in $SYNCS; do
		case $sync in full|normal) ;; *) echo "ingest: BENCH_SYNC: '$sync' is not full or normal" >&2; exit 2;; esac
		rm -f "$TMP/state.db" "$TMP/state.db-wal" "$TMP/state.db-shm"
		cat > "$TMP/serve.json" <<JSON
{"state": {"path": "$TMP/state.db", "synchronous": "$sync"}, "log": {"level": "warn"},
 "airflow": {"url": "http://127.0.0.1:$simport"}}
JSON
		echo "== ingest: wrk -t$THREADS -c$CONNS -d${SECS}s against autopilot serve (synchronous=$sync)" >&2
		AUTOPILOT_WEBHOOK_SECRET=$SECRET AUTOPILOT_AIRFLOW_USERNAME=admin \
		AUTOPILOT_AIRFLOW_PASSWORD=admin \
			"$BIN" serve -c "$TMP/serve.json" --listen 127.0.0.1:0 > "$TMP/serve.out" 2>&1 &
		SERVE=$!
		PIDS+=($SERVE)
		port=$(wait_port "$TMP/serve.out") || { echo "ingest: serve did not start:" >&2; cat "$TMP/serve.out" >&2; exit 1; }
		ap=$(run_wrk "$port" serve)
		echo "autopilot serve (synchronous=$sync): $ap" >&2
		kill -TERM "$SERVE"; wait "$SERVE" 2>/dev/null
		# Every 2xx answer named a run that must be in the store (and its event in the inbox).
		R[ingest_check_$sync]=$(python3 - "$TMP/state.db" "$TMP/ids-serve.txt" "$(field "$ap" ok2xx)" <<'PY'
import sqlite3, sys
db, ids, ok = sys.argv[1], sys.argv[2], int(sys.argv[3] or 0)
want = [l.strip() for l in open(ids) if l.strip()]
c = sqlite3.connect(db)
runs = {r[0] for r in c.execute("SELECT run_id FROM runs")}
inbox = {r[0] for r in c.execute("SELECT run_id FROM inbox")}
missing = [w for w in want if w not in runs or w not in inbox]
print("%d/%d 2xx answers carried a run_id; %d missing from the store; %d runs in the store"
      % (len(want), ok, len(missing), len(runs)))
sys.exit(1 if missing or len(want) != ok else 0)
PY
) || status=1
		echo "store check (synchronous=$sync): ${R[ingest_check_$sync]}" >&2
		R[ingest_rps_$sync]=$(field "$ap" rps); R[ingest_p50_$sync]=$(field "$ap" p50_ms)
		R[ingest_p99_$sync]=$(field "$ap" p99_ms); R[ingest_non2xx_$sync]=$(field "$ap" non2xx)
		R[ingest_err_$sync]=$(field "$ap" errors)
		done
		"$BUILD/bench_ceiling" > "$TMP/ceiling.out" 2>&1 &
		CEIL=$!
		PIDS+=($CEIL)
		cport=$(wait_port "$TMP/ceiling.out")
		echo "== ingest: the same load against bench_ceiling" >&2
		ce=$(run_wrk "$cport" ceiling)
		echo "ceiling: $ce" >&2
		R[ceil_rps]=$(field "$ce" rps); R[ceil_p50]=$(field "$ce" p50_ms)
		R[ceil_p99]=$(field "$ce" p99_ms)
		for sync in $SYNCS; do
			R[ingest_ratio_$sync]=$(awk -v a="${R[ingest_rps_$sync]:-0}" -v c="${R[ceil_rps]:-0}" \
				'BEGIN { if (c > 0) printf "%.2f", a / c; else print "?" }')
		done
	fi
fi

echo
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
printf '%-34s %-44s %s\n' benchmark figure target
if want filters; then
	printf '%-34s %-44s %s\n' "filters (${BENCH_NAMES:-1000000} names)" "${R[filters_ap]:-?} names/s, ${R[filters_ratio]:-?} vs Python" ">= 30x"
fi
if want sched; then
	printf '%-34s %-44s %s\n' "sched: makespan / lower bound" "${R[sched_makespan]:-?} s / ${R[sched_bound]:-?} s (ratio ${R[sched_ratio]:-?})" "<= ${R[sched_limit]:-?} s (bound x 1.05 + 2 x 1 s poll)"
	printf '%-34s %-44s %s\n' "sched: Airflow requests/agent run" "${R[sched_req]:-?}" "< OpenMetadata's 30 s poll"
	printf '%-34s %-44s %s\n' "sched: peak RSS" "${R[sched_rss]:-?} MB" "< 200 MB"
	printf '%-34s %-44s %s\n' "sched: CPU (user+sys)" "${R[sched_cpu]:-?} s" ""
	printf '%-34s %-44s %s\n' "sched: failed runs" "${R[sched_failed]:-?}" "0"
fi
if want ingest; then
	if [ -n "${R[ceil_rps]:-}" ]; then
		for sync in $SYNCS; do
			printf '%-34s %-44s %s\n' "ingest: serve, synchronous=$sync" "${R[ingest_rps_$sync]:-?} ev/s, p50 ${R[ingest_p50_$sync]:-?} ms, p99 ${R[ingest_p99_$sync]:-?} ms" ">= 20000 ev/s"
			printf '%-34s %-44s %s\n' "ingest: $sync / ceiling" "${R[ingest_ratio_$sync]:-?}" ">= 0.50"
			printf '%-34s %-44s %s\n' "ingest: $sync non-2xx / sock errors" "${R[ingest_non2xx_$sync]:-?} / ${R[ingest_err_$sync]:-?}" "0 / 0"
			printf '%-34s %-44s %s\n' "ingest: $sync store check" "${R[ingest_check_$sync]:-?}" "0 missing"
		done
		printf '%-34s %-44s %s\n' "ingest: ceiling (libevent 200)" "${R[ceil_rps]} req/s, p50 ${R[ceil_p50]} ms, p99 ${R[ceil_p99]} ms" ""
	else
		printf '%-34s %-44s %s\n' "ingest" "${R[ingest]:-not run}" ""
	fi
fi
exit $status
