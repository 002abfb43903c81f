#!/usr/bin/env python3
"""it_sched_outage — Airflow trouble in the middle of runs, against the
simulator: an outage while agents run (retried with backoff, shown in status,
then everything completes), a proxy's 404 while they run (the same, no run
taken for lost), a simulator restart that forgets the runs (the
tracked runs become lost, nothing hangs), and a flaky Airflow that loses
replies after doing the work, resets connections and answers 5xx (every run
still completes, and a trigger whose reply was lost is repeated with the same
dag_run_id and adopted through 409, never run twice)."""
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sched_itlib import *  # noqa: E402,F403


def start(sim, state, extra):
    return subprocess.Popen(tool_args(sim, state, extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_line(p, needle, timeout):
    """Reads p's stdout until a line contains needle; returns lines read."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    fail("never saw %r in %s" % (needle, lines[-20:]))


def finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail("tool_sched hung: %s" % err[-3000:])
    runs = None
    for line in out.splitlines():
        if line.startswith("["):
            runs = json.loads(line)
    return p.returncode, out, err, runs


d = tempfile.mkdtemp(prefix="it_sched_outage.")
try:
    # Outage: 8 s of 503 while three services are in flight.
    sim = Sim({"parse_delay_ms": 100,
               "pipelines": {"*": {"queued_ms": 20, "running_ms": 1500, "outcome": "success"}}})
    try:
        state = os.path.join(d, "outage.db")
        p = start(sim, state, ["--services", "3", "--prefix", "o", "--json"])
        wait_line(p, "queued -> running", 30)
        t0 = time.monotonic()
        sim.call("POST", "/_sim/outage?ms=8000")
        rc, out, err, runs = finish(p, 80)
        check(rc == 0, "exit %d %s" % (rc, err[-3000:]))
        check(all(r["state"] == "succeeded" for r in runs), "runs %s" % runs)
        check(time.monotonic() - t0 >= 7, "finished during the outage?")
        check("Airflow unreachable" in err, "the outage was not surfaced: %s" % err[-2000:])
        check_no_double_trigger(sim.requests())
    finally:
        sim.close()

    # A proxy's 404 (an ingress with no Airflow behind it, 4 s) while agents
    # run: Airflow not there, as in an outage; no run is taken for lost (which
    # would start a second attempt beside the first).
    sim = Sim({"parse_delay_ms": 100,
               "pipelines": {"*": {"queued_ms": 20, "running_ms": 1500, "outcome": "success"}}})
    try:
        state = os.path.join(d, "proxy404.db")
        p = start(sim, state, ["--services", "3", "--prefix", "p", "--json"])
        wait_line(p, "queued -> running", 30)
        sim.call("POST", "/_sim/outage?ms=4000&mode=proxy404")
        rc, out, err, runs = finish(p, 80)
        check(rc == 0, "exit %d %s" % (rc, err[-3000:]))
        check(all(r["state"] == "succeeded" for r in runs), "runs %s" % runs)
        for r in runs:
            for a in r["agents"]:
                check(a["attempts"] == 1, "attempt %s" % a)
        check("without Airflow's JSON body" in err, "the proxy was not surfaced: %s"
              % err[-2000:])
        reqs = sim.requests()
        check(any(x["status"] == 404 and "/dagRuns/" in x["path"] for x in reqs),
              "no run was read during the proxy's 404s")
        check_no_double_trigger(reqs)
        # The same from the start: the deploys meet the proxy's 404s too,
        # and wait for Airflow rather than fail (the generation set: with
        # "auto" nothing goes out before Airflow answers its detection).
        state = os.path.join(d, "proxy404-deploy.db")
        sim.call("POST", "/_sim/outage?ms=3000&mode=proxy404")
        rc, out, err, runs = finish(start(sim, state, ["--services", "2", "--prefix",
                                                       "q", "--json", "--api", "v1"]), 80)
        check(rc == 0, "exit %d %s" % (rc, err[-3000:]))
        check(all(r["state"] == "succeeded" for r in runs), "runs %s" % runs)
        for r in runs:
            for a in r["agents"]:
                check(a["attempts"] == 1, "attempt %s" % a)
        check(any(x["status"] == 404 and x["path"].endswith("/openmetadata/deploy")
                  for x in sim.requests()), "no deploy met the proxy's 404")
    finally:
        sim.close()

    # Lost: the simulator restarts and forgets its runs while usage and lineage run.
    sim = Sim({"parse_delay_ms": 100,
               "pipelines": {"*": {"queued_ms": 20, "running_ms": 300, "outcome": "success"},
                             "usage": {"queued_ms": 20, "running_ms": 30000, "outcome": "success"},
                             "lineage": {"queued_ms": 20, "running_ms": 30000, "outcome": "success"}}})
    try:
        state = os.path.join(d, "lost.db")
        p = start(sim, state, ["--services", "1", "--prefix", "l", "--json"])
        wait_line(p, "usage queued -> running", 30)
        sim.call("POST", "/_sim/restart")
        rc, out, err, runs = finish(p, 60)
        check(rc == 0, "exit %d %s" % (rc, err[-3000:]))
        a = agents_of(runs[0])
        check(a["usage"]["state"] == "lost", "usage %s" % a["usage"])
        check("disappeared" in a["usage"]["error"], a["usage"]["error"])
        check(a["profiler"]["state"] == "skipped", "profiler %s" % a["profiler"])
        check(runs[0]["state"] == "failed", "run %s" % runs[0]["state"])
    finally:
        sim.close()
    # Flaky: lost replies (work done, answer lost), resets and 503s everywhere.
    sim = Sim({"parse_delay_ms": 100, "seed": 7,
               "pipelines": {"*": {"queued_ms": 20, "running_ms": 200, "outcome": "success"}},
               "faults": {"lost_reply_rate": 0.15, "reset_rate": 0.05, "error_rate": 0.1,
                          "error_status": [503, 502]}})
    try:
        state = os.path.join(d, "flaky.db")
        rc, out, err, runs = run_tool(sim, state, ["--services", "10", "--prefix", "fl",
                                                   "--json", "--quiet"])
        check(rc == 0, "exit %d %s" % (rc, err[-3000:]))
        bad = [r for r in runs if r["state"] != "succeeded"]
        check(not bad, "flaky runs: %s" % bad[:2])
        reqs = sim.requests()
        check_no_double_trigger(reqs)
        ids = {t[1] for t in triggers(reqs)}
        check(len(ids) == 40, "%d dag_run_ids triggered" % len(ids))
        adopted = [t for t in triggers(reqs) if t[2] == 409]
        check(adopted, "no trigger was ever repeated (raise lost_reply_rate?)")
        for r in runs:
            for a in r["agents"]:
                check(a["attempts"] == 1, "attempt %s" % a)
        print("flaky: %d requests, %d repeated triggers adopted" % (len(reqs), len(adopted)))
    finally:
        sim.close()
    print("PASS")
finally:
    shutil.rmtree(d, ignore_errors=True)
