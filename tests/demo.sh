#!/usr/bin/env bash
# make demo: the main job end to end on loopback. Starts the Airflow
# simulator (Airflow 2.x API + the OpenMetadata plugin) and `autopilot serve`,
# sends the signed ChangeEvent OpenMetadata sends when a Postgres service is
# created, and shows the agents deployed, triggered in dependency order and
# tracked to the end; then what Airflow received, and stops both.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AP_BUILD:-$ROOT/build}
BIN=$BUILD/autopilot
SIM=$BUILD/sim_airflow
TMP=$(mktemp -d /tmp/autopilot-demo.XXXXXX)
SECRET=demo-webhook-secret
ADMIN=demo-admin-token
SIM_PID= AP_PID=

cleanup() {
	[ -n "$AP_PID" ] && kill "$AP_PID" 2>/dev/null && wait "$AP_PID" 2>/dev/null || true
	[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*" 2>/dev/null || printf '\n== %s\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }

# The port a program printed in "listening 127.0.0.1:PORT" (waits up to 10 s).
port_of() {
	local i
	for i in $(seq 100); do
		grep -o -m1 -E 'listening 127\.0\.0\.1:[0-9]+' "$1" 2>/dev/null | sed 's/.*://' && return 0
		sleep 0.1
	done
	echo "demo: $2 did not start:" >&2; cat "$1" >&2; exit 1
}

say "Airflow simulator (Airflow 2.x API, OpenMetadata plugin; DAGs parsed 1.5 s after deploy)"
cat > "$TMP/scenario.json" <<'JSON'
{"parse_delay_ms": 1500,
 "pipelines": {"metadata": {"queued_ms": 300, "running_ms": 2500},
               "lineage": {"queued_ms": 300, "running_ms": 1500},
               "usage": {"queued_ms": 300, "running_ms": 2000},
               "*": {"queued_ms": 300, "running_ms": 1500}}}
JSON
"$SIM" --listen 127.0.0.1:0 --scenario "$TMP/scenario.json" --quiet > "$TMP/sim.out" 2>&1 &
SIM_PID=$!
SIM_PORT=$(port_of "$TMP/sim.out" "the Airflow simulator")
echo "Airflow at http://127.0.0.1:$SIM_PORT"

say "autopilot serve"
cat > "$TMP/autopilot.json" <<JSON
{"airflow": {"url": "http://127.0.0.1:$SIM_PORT"},
 "state": {"path": "$TMP/autopilot.db"},
 "scheduler": {"poll_initial_ms": 250, "poll_max_ms": 1000, "poll_floor_ms": 100}}
JSON
AUTOPILOT_WEBHOOK_SECRET=$SECRET AUTOPILOT_ADMIN_TOKEN=$ADMIN \
AUTOPILOT_AIRFLOW_USERNAME=admin AUTOPILOT_AIRFLOW_PASSWORD=admin \
	"$BIN" serve -c "$TMP/autopilot.json" --listen 127.0.0.1:0 > "$TMP/serve.out" 2> "$TMP/serve.log" &
AP_PID=$!
AP_PORT=$(port_of "$TMP/serve.out" "autopilot serve")
echo "autopilot serve at http://127.0.0.1:$AP_PORT (state in $TMP/autopilot.db)"

say "OpenMetadata: service 'sales_postgres' (Postgres) created -> signed ChangeEvent"
EVENT=$ROOT/tests/data/databaseService-entityCreated.json
python3 - "$EVENT" "$SECRET" "$AP_PORT" <<'PY'
import base64, hashlib, hmac, json, sys, urllib.request
body = open(sys.argv[1], "rb").read()
sig = "sha256=" + base64.b64encode(hmac.new(sys.argv[2].encode(), body, hashlib.sha256).digest()).decode()
print("POST /api/v1/webhooks/openmetadata  X-OM-Signature: " + sig)
req = urllib.request.Request("http://127.0.0.1:%s/api/v1/webhooks/openmetadata" % sys.argv[3],
                             data=body, headers={"Content-Type": "application/json", "X-OM-Signature": sig})
with urllib.request.urlopen(req, timeout=10) as r:
    print("-> %d %s" % (r.status, r.read().decode().strip()))
PY

say "The agents, as autopilot drives them (one log line per change)"
shown=0
for i in $(seq 600); do
	total=$(wc -l < "$TMP/serve.log")
	if [ "$total" -gt "$shown" ]; then
		sed -n "$((shown + 1)),${total}p" "$TMP/serve.log" | grep -E 'run [^ ]+ (agent |\()' |
			sed -E 's/^[^ ]+ [^ ]+ //' || true
		shown=$total
	fi
	state=$("$BIN" status --state "$TMP/autopilot.db" --json sales_postgres |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[0]["state"] if d else "")')
	case $state in succeeded|failed) break ;; esac
	sleep 0.2
done
sleep 0.3
sed -n "$((shown + 1)),\$p" "$TMP/serve.log" | grep -E 'run [^ ]+ (agent |\()' |
	sed -E 's/^[^ ]+ [^ ]+ //' || true

say "autopilot status"
"$BIN" status --state "$TMP/autopilot.db"

say "What Airflow received (from the simulator's request log)"
curl -s "http://127.0.0.1:$SIM_PORT/_sim/requests" | python3 -c '
import json, sys
reqs = json.load(sys.stdin)
t0 = reqs[0]["t_ms"] if reqs else 0
polls = 0
for r in reqs:
    p = r["path"]
    if r["method"] == "GET" and "/dagRuns/" in p or r["method"] == "GET" and p.count("/") == 4 and "/dags/" in p:
        polls += 1
        continue
    extra = ""
    if p.endswith("/deploy") and isinstance(r["body"], dict):
        c = r["body"]["sourceConfig"]["config"]
        f = {k: v for k, v in c.items() if k.endswith("FilterPattern")}
        extra = "  %s %s" % (r["body"]["name"], json.dumps(f) if f else "")
    elif isinstance(r["body"], dict) and "dag_run_id" in r["body"]:
        extra = "  dag_run_id=" + r["body"]["dag_run_id"]
    print("%7.2fs  %-5s %-60s %d%s" % ((r["t_ms"] - t0) / 1000, r["method"], p, r["status"], extra))
print("(+ %d GET polls of DAGs and runs, backing off adaptively)" % polls)
'

say "Stopping (SIGTERM: autopilot hands its runs over and exits 0)"
kill -TERM "$AP_PID"; wait "$AP_PID"; echo "autopilot serve exited $?"; AP_PID=
kill -TERM "$SIM_PID"; wait "$SIM_PID" || true; SIM_PID=
