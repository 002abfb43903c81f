#!/usr/bin/env python3
"""it_sched_failures — failures of each agent against the Airflow simulator
with the real client: a failed metadata stops everything, a failed usage
skips the profiler, a failed lineage blocks nothing, a worker that died is
timed out (and the Airflow run marked failed), an import error fails with
Airflow's message (one of the file before the deploy is waited out), an
unsupported agent is skipped as success, a failed attempt is retried with a
new dag_run_id."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sched_itlib import *  # noqa: E402,F403


def dag(fqn, agent):
    return "%s_database_%s_autopilot" % (fqn, agent)


SCENARIO = {
    "parse_delay_ms": 100,
    "pipelines": {"*": {"queued_ms": 20, "running_ms": 200, "outcome": "success"}},
    "dags": {
        dag("f-0", "metadata"): {"outcome": "failed"},
        dag("f-1", "usage"): {"outcome": "failed"},
        dag("f-2", "lineage"): {"outcome": "failed"},
        dag("f-3", "usage"): {"outcome": "worker_died"},
        dag("f-4", "metadata"): {"import_error": "Traceback (most recent call last):\n"
                                 "ModuleNotFoundError: No module named 'metadata_x'"},
        dag("r-0", "metadata"): {"outcome": ["failed", "success"]},
        dag("x-0", "metadata"): {"exists": True, "fixed_by_deploy": True, "parse_delay_ms": 600,
                                 "import_error": "Traceback (most recent call last):\n"
                                 "ImportError: the file before"},
    },
}

sim = Sim(SCENARIO, "v1")
d = tempfile.mkdtemp(prefix="it_sched_failures.")
try:
    state = os.path.join(d, "state.db")
    rc, out, err, runs = run_tool(sim, state, ["--services", "5", "--prefix", "f",
                                               "--timeout-ms", "3000", "--json", "--quiet"])
    check(rc == 0, "exit %d: %s %s" % (rc, out[-1500:], err[-3000:]))
    by = {r["service"]["fqn"]: r for r in runs}
    for r in runs:
        check(r["state"] == "failed", "%s should fail: %s" % (r["service"]["fqn"], r))
    for fqn in ("f-0", "f-1"):
        check(any(" warn " in x and "(%s): running -> failed" % fqn in x
                  for x in err.splitlines()), "%s's failure is not a warning: %s"
              % (fqn, err[-2000:]))
    reqs = sim.requests()
    deployed = {(r["body"] or {}).get("name") for r in reqs
                if r["method"] == "POST" and r["path"].endswith("/deploy") and isinstance(r["body"], dict)}
    triggered = {t[0] for t in triggers(reqs)}

    a = agents_of(by["f-0"])
    check(a["metadata"]["state"] == "failed", "f-0 metadata %s" % a["metadata"])
    for n in ("lineage", "usage", "profiler"):
        check(a[n]["state"] == "skipped", "f-0 %s %s" % (n, a[n]))
        # Deployed ahead while metadata ran (scheduler.predeploy), never triggered.
        check(dag("f-0", n) in deployed, "f-0 %s not deployed ahead" % n)
        check(dag("f-0", n) not in triggered, "f-0 %s triggered" % n)
    check("prerequisite metadata" in a["lineage"]["error"], a["lineage"]["error"])

    a = agents_of(by["f-1"])
    check(a["usage"]["state"] == "failed" and a["lineage"]["state"] == "succeeded", "f-1 %s" % a)
    check(a["profiler"]["state"] == "skipped" and "usage" in a["profiler"]["error"], "f-1 profiler %s" % a)
    check(dag("f-1", "profiler") not in triggered, "f-1 profiler triggered")

    a = agents_of(by["f-2"])
    check(a["lineage"]["state"] == "failed", "f-2 lineage %s" % a["lineage"])
    check(a["usage"]["state"] == "succeeded" and a["profiler"]["state"] == "succeeded", "f-2 %s" % a)

    a = agents_of(by["f-3"])
    check(a["usage"]["state"] == "timed_out", "f-3 usage %s" % a["usage"])
    check("timed out" in a["usage"]["error"], a["usage"]["error"])
    check(a["profiler"]["state"] == "skipped", "f-3 profiler %s" % a["profiler"])
    rid = a["usage"]["dag_run_id"]
    patched = [r for r in reqs if r["method"] == "PATCH" and r["path"].endswith("/dagRuns/" + rid)]
    check(patched and patched[0]["body"].get("state") == "failed", "timed-out run not failed in Airflow")

    a = agents_of(by["f-4"])
    check(a["metadata"]["state"] == "failed", "f-4 %s" % a["metadata"])
    check("ModuleNotFoundError: No module named 'metadata_x'" in a["metadata"]["error"], a["metadata"]["error"])
    check(not [t for t in triggers(reqs) if t[0] == dag("f-4", "metadata")], "import error triggered")
    # A DAG file that never imported has no DAG in Airflow: its error is
    # read from importErrors while the DAG answers 404, and not retried.
    f4 = "/api/v1/dags/" + dag("f-4", "metadata")
    check({r["status"] for r in reqs if r["path"] == f4} == {404}, "f-4's DAG is 404 throughout")
    check([r for r in reqs if r["path"] == "/api/v1/importErrors" and r["status"] == 200],
          "importErrors read")
    check(len([r for r in reqs if r["method"] == "POST" and r["path"].endswith("/deploy") and
               (r["body"] or {}).get("name") == dag("f-4", "metadata")]) == 1, "f-4 deployed once")

    # Retries: the first attempt fails, the second (new dag_run_id) succeeds.
    rc, out, err, runs = run_tool(sim, state, ["--services", "1", "--prefix", "r", "--retries", "1",
                                               "--retry-backoff-ms", "100", "--json", "--quiet"])
    check(rc == 0 and runs[0]["state"] == "succeeded", "retry run %s %s" % (runs, err[-2000:]))
    # A failed attempt is for the operator to see at log.level "warn" too.
    warned = [x for x in err.splitlines() if " warn " in x and "agent metadata:" in x]
    check(any("-> pending" in x for x in warned), "the failed attempt is not a warning: %s"
          % err[-2000:])
    m = agents_of(runs[0])["metadata"]
    check(m["attempts"] == 2 and m["dag_run_id"].endswith("__metadata__2"), "retry %s" % m)
    ids = [t[1] for t in triggers(sim.requests()) if t[0] == dag("r-0", "metadata")]
    check(len(ids) == 2 and ids[0] != ids[1], "retry triggers %s" % ids)

    # Unsupported usage: skipped, counts as success, profiler still runs.
    rc, out, err, runs = run_tool(sim, state, [
        "--services", "1", "--prefix", "u", "--json", "--quiet",
        "--entity", '{"connection": {"config": {"supportsUsageExtraction": false}}}'])
    check(rc == 0 and runs[0]["state"] == "succeeded", "unsupported run %s" % runs)
    a = agents_of(runs[0])
    check(a["usage"]["state"] == "skipped" and a["profiler"]["state"] == "succeeded", "unsupported %s" % a)

    # A DAG whose file had import errors before the deploy: Airflow shows
    # them until it parses the file written (stamped before the deploy), so
    # the agent waits for that parse, then runs; the DAG is paused again
    # meanwhile, and triggered once.
    rc, out, err, runs = run_tool(sim, state, ["--services", "1", "--prefix", "x", "--json",
                                               "--quiet"])
    check(rc == 0 and runs[0]["state"] == "succeeded", "x-0 %s %s" % (runs, err[-2000:]))
    reqs = sim.requests()
    x0 = "/api/v1/dags/" + dag("x-0", "metadata")
    patches = [r["body"].get("is_paused") for r in reqs if r["method"] == "PATCH" and
               r["path"] == x0]
    check(len(patches) >= 3 and patches[-1] is False and patches[-2] is True and
          patches.count(False) == patches.count(True) + 1, "x-0 pauses: %s" % patches)
    check(len([t for t in triggers(reqs) if t[0] == dag("x-0", "metadata")]) == 1,
          "x-0 triggered once")
    check_no_double_trigger(sim.requests())
    print("PASS")
finally:
    sim.close()
    shutil.rmtree(d, ignore_errors=True)
