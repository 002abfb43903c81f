#!/bin/bash
# make bench-filters: 1,000,000 realistic schema names through Postgres' built-in
# defaults plus 20 user patterns, in `autopilot filter test --json` (release
# build) and in OpenMetadata's Python algorithm on the same input.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${AP_BIN:-$SRC/build/autopilot}
N=${BENCH_NAMES:-1000000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
REF="$SRC/tests/bench/bench_filters_ref.py"

INCLUDES=('^sales' '^finance' '^hr_' '^marketing' '^ops_' '^crm' '^erp' '^analytics'
	'^(dw|mart)_' '^(fct|dim)_\w+' 'orders' 'customers' '^web_(events|sessions)'
	'^app_[a-z]+_v2$')
EXCLUDES=('.*_tmp$' '.*_(bak|old)$' '^pg_' '.*_archive$' '^stg_' '.*\d{4}$')

python3 "$REF" gen "$N" "$TMP/names"
args=(--connector Postgres --kind schema --json)
for p in "${INCLUDES[@]}"; do args+=(--include "$p"); done
for p in "${EXCLUDES[@]}"; do args+=(--exclude "$p"); done
# The reference gets the same effective patterns: Postgres' schema default first.
python3 - "$TMP/pats.json" "${#INCLUDES[@]}" "${INCLUDES[@]}" "${EXCLUDES[@]}" <<'PY'
import json, sys
out, ni = sys.argv[1], int(sys.argv[2])
pats = sys.argv[3:]
json.dump({"includes": pats[:ni], "excludes": ["^information_schema$"] + pats[ni:]}, open(out, "w"))
PY

t0=$(date +%s.%N)
"$BIN" filter test "${args[@]}" < "$TMP/names" > "$TMP/ap.out"
t1=$(date +%s.%N)
python3 "$REF" run "$TMP/pats.json" "$TMP/names" > "$TMP/py.out" 2> "$TMP/py.time"
read -r pyn pykept pysec < "$TMP/py.time"
apsec=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
apkept=$(grep -c '"kept":true' "$TMP/ap.out" || true)
if [ "$apkept" != "$pykept" ]; then
	echo "MISMATCH: autopilot kept $apkept, Python kept $pykept" >&2
	exit 1
fi
awk -v n="$N" -v a="$apsec" -v p="$pysec" -v k="$apkept" 'BEGIN {
	printf "names: %d (kept %d by both)\n", n, k
	printf "autopilot filter test --json: %.2f s  %12.0f names/s\n", a, n / a
	printf "Python (OpenMetadata algorithm): %.2f s  %12.0f names/s\n", p, n / p
	printf "ratio: %.1fx (target >= 30x)\n", p / a
}'
