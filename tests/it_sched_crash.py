#!/usr/bin/env python3
"""it_sched_crash — kill -9 of the scheduler process at random points (at
least 20 kills over a batch of services), each followed by a restart; at the
end every run is complete and the simulator's request log shows that no
dag_run_id was ever answered 2xx twice (no agent triggered twice for the same
attempt): lost trigger answers were repeated and adopted through 409."""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sched_itlib import *  # noqa: E402,F403

SERVICES = 30
KILLS = 22
rnd = random.Random(int(os.environ.get("AP_SEED", "4")))

sim = Sim({"parse_delay_ms": 150,
           "pipelines": {"*": {"queued_ms": 50, "running_ms": 1500, "outcome": "success"},
                         "usage": {"queued_ms": 50, "running_ms": 2500, "outcome": "success"}}})
d = tempfile.mkdtemp(prefix="it_sched_crash.")
try:
    state = os.path.join(d, "state.db")
    args = ["--services", str(SERVICES), "--prefix", "k", "--quiet",
            "--sched", json.dumps({"poll_initial_ms": 40, "poll_max_ms": 300, "poll_floor_ms": 20,
                                   "max_agents_in_flight": 8, "dag_parse_deadline_s": 30})]
    kills = 0
    t_start = time.monotonic()
    while kills < KILLS:
        p = subprocess.Popen(tool_args(sim, state, []) + args, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        time.sleep(rnd.uniform(0.05, 1.0))
        if p.poll() is not None:
            p.communicate()
            break      # the batch finished before this kill
        p.send_signal(signal.SIGKILL)
        p.communicate()   # reaps it: its pid is gone, so the restart may claim at once
        kills += 1
    check(kills >= 20, "only %d kills before the batch finished; slow the runs down" % kills)
    rc, out, err, runs = run_tool(sim, state, args + ["--json"], timeout=80)
    check(rc == 0, "final run exit %d: %s %s" % (rc, out[-1000:], err[-3000:]))
    check(len(runs) == SERVICES, "%d runs" % len(runs))
    bad = [r for r in runs if r["state"] != "succeeded"]
    check(not bad, "runs not succeeded after restarts: %s" % bad[:2])
    reqs = sim.requests()
    seen = check_no_double_trigger(reqs)
    check(len(seen) == SERVICES * 4, "%d triggered dag_run_ids, expected %d" % (len(seen), SERVICES * 4))
    for r in runs:
        for a in r["agents"]:
            check(a["attempts"] == 1, "attempt %s" % a)
            check(seen.get(a["dag_run_id"]) == 1, "%s never created" % a["dag_run_id"])
    conflicts = sum(1 for t in triggers(reqs) if t[2] == 409)
    print("kills=%d adopted_by_409=%d requests=%d elapsed=%.1fs" %
          (kills, conflicts, len(reqs), time.monotonic() - t_start), flush=True)
    print("PASS")
finally:
    sim.close()
    shutil.rmtree(d, ignore_errors=True)
