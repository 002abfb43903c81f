#!/bin/bash
# make fuzz: runs every libFuzzer target built in build-fuzz/ for FUZZ_SECONDS
# each and prints a table (target, seconds, executions, crashes, coverage).
#
#   FUZZ_SECONDS=60    seconds per target for this run (default: a short smoke run)
#   FUZZ_SECONDS=600   the full run: at least 10 minutes per target
#   FUZZ_TARGETS="fuzz_config fuzz_webhook"   a subset (default: every build-fuzz/fuzz_*)
#   FUZZ_JOBS=2        targets run side by side (default 1)
#
# The working corpus of each target lives in build-fuzz/corpus/<target>/ and
# grows from run to run (seeds: tests/fuzz/corpus/<target>/); total fuzzing
# time per target is kept in build-fuzz/logs/<target>.total. Findings go to
# build-fuzz/artifacts/<target>/ (crash-*, leak-*, timeout-*, oom-*); after a
# finding the target is restarted for the rest of its time (at most 5 times).
# Exit status 1 when anything was found.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
TARGETS=${FUZZ_TARGETS:-$(cd "$BUILD" && ls fuzz_* 2>/dev/null | grep -v '\.' | tr '\n' ' ')}
[ -n "$TARGETS" ] || { echo "run_fuzz: no fuzz targets in $BUILD" >&2; exit 2; }
mkdir -p "$BUILD/logs"

run_one() {
	local t=$1 bin="$BUILD/$1" corpus="$BUILD/corpus/$1" art="$BUILD/artifacts/$1"
	local seeds="$SRC/tests/fuzz/corpus/$1" dict="$SRC/tests/fuzz/$1.dict"
	local log="$BUILD/logs/$1.log" res="$BUILD/logs/$1.result"
	local start end left rc execs=0 cov=? ft=? corp=? runs=0 n
	local args=(-timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1
		-artifact_prefix="$art/")
	mkdir -p "$corpus" "$art"
	[ -f "$dict" ] && args+=(-dict="$dict")
	local before
	before=$(ls "$art" | wc -l)
	: > "$log"
	start=$(date +%s)
	end=$((start + SECONDS_PER))
	while :; do
		left=$((end - $(date +%s)))
		[ "$left" -ge 1 ] || break
		runs=$((runs + 1))
		"$bin" "${args[@]}" -max_total_time="$left" "$corpus" \
			$( [ -d "$seeds" ] && echo "$seeds" ) >> "$log" 2>&1
		rc=$?
		n=$(grep -a 'stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
		execs=$((execs + ${n:-0}))
		# stats of each run are printed once; mark them consumed
		sed -i 's/^stat::number_of_executed_units:/stat::counted_units:/' "$log"
		[ "$rc" -eq 0 ] && break
		[ "$runs" -ge 6 ] && break
	done
	local line
	line=$(grep -a -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1)
	if [ -n "$line" ]; then
		cov=$(echo "$line" | awk '{print $2}')
		ft=$(echo "$line" | awk '{print $4}')
		corp=$(echo "$line" | awk '{print $6}')
	fi
	local took=$(( $(date +%s) - start )) total=0
	[ -f "$BUILD/logs/$t.total" ] && total=$(cat "$BUILD/logs/$t.total")
	total=$((total + took))
	echo "$total" > "$BUILD/logs/$t.total"
	local found=$(( $(ls "$art" | wc -l) - before ))
	echo "$t $took $total $execs $found $cov $ft $corp" > "$res"
}

export -f run_one
export BUILD SRC SECONDS_PER
echo "fuzz: $(echo $TARGETS | wc -w) targets x ${SECONDS_PER}s, $JOBS at a time (logs in $BUILD/logs)" >&2
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {}'

status=0
printf '\n%-26s %8s %9s %12s %9s %8s %7s %7s %7s\n' target seconds total_s executions exec/s crashes cov ft corpus
for t in $TARGETS; do
	read -r name took total execs found cov ft corp < "$BUILD/logs/$t.result"
	printf '%-26s %8s %9s %12s %9s %8s %7s %7s %7s\n' "$name" "$took" "$total" "$execs" \
		"$(( took > 0 ? execs / took : execs ))" "$found" "$cov" "$ft" "$corp"
	if [ "$execs" -eq 0 ] && [ "$found" -eq 0 ]; then
		status=1
		echo "    $name did not run: see $BUILD/logs/$t.log"
	fi
	if [ "$found" -gt 0 ]; then
		status=1
		ls "$BUILD/artifacts/$t/" | sed "s|^|    $BUILD/artifacts/$t/|" | tail -"$found"
	fi
done
exit $status
