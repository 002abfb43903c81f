#!/usr/bin/env python3
"""it_sched_order — the default plan against the Airflow simulator with the
real client: metadata first, lineage and usage overlapping in time, profiler
after usage; DAGs waited for (404 while parsing) and unpaused before the
trigger; deterministic dag_run_ids; on both API generations. A re-run gets a
new run id and new dag_run_ids for the same DAGs."""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sched_itlib import *  # noqa: E402,F403

SCENARIO = {
    "parse_delay_ms": 300,
    "pipelines": {
        "metadata": {"queued_ms": 50, "running_ms": 400, "outcome": "success"},
        "lineage": {"queued_ms": 50, "running_ms": 1200, "outcome": "success"},
        "usage": {"queued_ms": 50, "running_ms": 1200, "outcome": "success"},
        "profiler": {"queued_ms": 50, "running_ms": 300, "outcome": "success"},
    },
}


def one(api):
    sim = Sim(SCENARIO, api)
    d = tempfile.mkdtemp(prefix="it_sched_order.")
    try:
        state = os.path.join(d, "state.db")
        rc, out, err, runs = run_tool(sim, state, ["--services", "1", "--prefix", "pg",
                                                   "--api", api, "--json"])
        check(rc == 0, "tool_sched exit %d: %s %s" % (rc, out[-2000:], err[-2000:]))
        check(len(runs) == 1 and runs[0]["state"] == "succeeded", "run: %s" % runs)
        ag = agents_of(runs[0])
        check([a["agent"] for a in runs[0]["agents"]] == ["metadata", "lineage", "usage", "profiler"],
              "agents %s" % runs[0]["agents"])
        for name, a in ag.items():
            check(a["state"] == "succeeded", "%s: %s" % (name, a))
            check(a["attempts"] == 1, "%s attempts %s" % (name, a))
            check(a["dag_run_id"] == "autopilot__%s__%s__1" % (runs[0]["run_id"], name),
                  "dag_run_id %s" % a["dag_run_id"])
            check(a["started_at"] and a["finished_at"], "times %s" % a)
        reqs = sim.requests()
        trig = {dag.split("_")[-2]: t for dag, rid, st, t in triggers(reqs) if 200 <= st < 300}
        check(set(trig) == {"metadata", "lineage", "usage", "profiler"}, "triggers %s" % trig)
        m_done = last_t(reqs, "GET", r"/dagRuns/", "metadata")
        l_done = last_t(reqs, "GET", r"/dagRuns/", "lineage")
        u_done = last_t(reqs, "GET", r"/dagRuns/", "usage")
        check(trig["metadata"] < trig["lineage"] and trig["metadata"] < trig["usage"], "metadata first")
        # Deployed ahead while metadata ran (scheduler.predeploy), triggered
        # only once metadata was done.
        check(deploy_t(reqs, "lineage") < m_done and deploy_t(reqs, "profiler") < m_done,
              "lineage and profiler deployed ahead, while metadata ran")
        check(trig["lineage"] >= m_done and trig["usage"] >= m_done, "triggered after metadata done")
        # lineage and usage overlap: each was triggered before the other finished.
        check(trig["lineage"] < u_done and trig["usage"] < l_done,
              "lineage/usage did not overlap: %s %s %s %s" % (trig["lineage"], u_done, trig["usage"], l_done))
        check(trig["profiler"] > u_done, "profiler before usage finished")
        # Parsing was waited for (at least one 404) by unpausing the DAG, one
        # PATCH a poll, until it answered; no separate GET of the DAG.
        dag404 = [r for r in reqs if r["method"] == "PATCH" and r["status"] == 404 and "/dagRuns" not in r["path"]
                  and "/dags/" in r["path"]]
        check(dag404, "no PATCH /dags 404 while parsing")
        check(all(r["query"] == "update_mask=is_paused" and r["body"] == {"is_paused": False} for r in dag404),
              "PATCH while parsing: %s" % dag404[:2])
        dag_gets = [r for r in reqs if r["method"] == "GET" and re.search(r"/dags/[^/]+$", r["path"])]
        check(not dag_gets, "GET of the DAG: %s" % dag_gets[:2])
        unpause = [r["t_ms"] for r in reqs if r["method"] == "PATCH" and r["status"] == 200
                   and re.search(r"/dags/[^/]+$", r["path"]) and "metadata" in r["path"]]
        check(unpause and unpause[0] < trig["metadata"], "unpause before trigger")
        check_no_double_trigger(reqs)
        prefix = "/api/%s/" % api
        api_reqs = [r for r in reqs if r["path"].startswith(prefix + "dags")]
        check(api_reqs, "no %s requests" % prefix)
        want = "bearer" if api == "v2" else "basic"
        check(all(r["auth"] == want for r in api_reqs), "auth not %s" % want)
        # Polling is bounded: a handful of GETs per run, not a flood.
        gets = [r for r in reqs if r["method"] == "GET" and RUN_RE.match(r["path"])]
        check(len(gets) < 80, "%d run polls" % len(gets))

        # Re-run of the finished service: new run id, new dag_run_ids, same DAGs.
        rc, out, err, runs2 = run_tool(sim, state, ["--rerun", "pg-0", "--api", api, "--json"])
        check(rc == 0 and runs2[0]["state"] == "succeeded", "rerun: %s %s" % (out[-1500:], err[-1500:]))
        check(runs2[0]["run_id"] != runs[0]["run_id"], "same run id")
        for name, a in agents_of(runs2[0]).items():
            check(a["dag_id"] == ag[name]["dag_id"], "dag id changed")
            check(a["dag_run_id"] != ag[name]["dag_run_id"], "dag_run_id reused")
        check_no_double_trigger(sim.requests())
        print("ok %s" % api, flush=True)
    finally:
        sim.close()
        shutil.rmtree(d, ignore_errors=True)


one("v1")
one("v2")
print("PASS")
