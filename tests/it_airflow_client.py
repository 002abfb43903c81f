#!/usr/bin/env python3
"""it_airflow_client — the product's Airflow client (agents/airflow.c, through
build*/tool_airflow) against the Airflow simulator on both API generations:
every operation, version detection, auth (Basic, JWT and its renewal), the
plugin's route fallback, retries of 5xx/429 (Retry-After)/resets, the circuit
breaker during an outage (one probe at a time, visible in the request log),
dead workers, lost runs after a restart, import errors, 409 adoption, and the
reply size cap. Everything on 127.0.0.1, port 0, each case a few seconds.
"""
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from it_sim_airflow import BUILD, Sim  # noqa: E402

TOOL = os.path.join(BUILD, "tool_airflow")
DEADLINE = time.monotonic() + 240


def pipeline(name, ptype="metadata"):
    return {"name": name, "displayName": name, "pipelineType": ptype,
            "service": {"id": "00000000-0000-0000-0000-000000000001",
                        "type": "databaseService", "name": "svc"},
            "sourceConfig": {"config": {"type": "DatabaseMetadata"}},
            "airflowConfig": {}, "loggerLevel": "INFO", "provider": "automation"}


def run_logged(url, script, *args, timeout=40):
    """Runs tool_airflow with script (a list of dicts); returns its JSON lines and
    the client's log (stderr)."""
    text = "".join(json.dumps(line) + "\n" for line in script)
    p = subprocess.run([TOOL, "--url", url, *args], input=text, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, (p.returncode, p.stderr[-3000:])
    return [json.loads(x) for x in p.stdout.splitlines() if x.strip()], p.stderr


def run(url, script, *args, timeout=40):
    """Runs tool_airflow with script (a list of dicts); returns its JSON lines."""
    return run_logged(url, script, *args, timeout=timeout)[0]


def url(sim):
    return f"http://127.0.0.1:{sim.port}"


def only(results, op):
    out = [r for r in results if r["op"] == op]
    assert out, (op, results)
    return out


def api_requests(sim, prefix=""):
    return [r for r in sim.log() if r["path"].startswith(prefix)]


# ------------------------------------------------------------------ cases

def case_flow(gen):
    """Every operation in order, on one generation, with detection."""
    sim = Sim({"api": gen, "parse_delay_ms": 150,
               "pipelines": {"metadata": {"queued_ms": 50, "running_ms": 150}}})
    try:
        dag = "svc_db_metadata_agent"
        res = run(url(sim), [
            {"op": "health"},
            {"op": "deploy", "pipeline": pipeline("svc.db/metadata  agent")},
            {"op": "get_dag", "dag_id": dag},
            {"op": "wait_dag", "dag_id": dag, "timeout_ms": 5000},
            {"op": "unpause", "dag_id": dag},
            {"op": "trigger", "dag_id": dag, "run_id": "autopilot__r1.metadata.1",
             "conf": {"k": "v"}},
            {"op": "trigger", "dag_id": dag, "run_id": "autopilot__r1.metadata.1"},
            {"op": "wait_run", "dag_id": dag, "run_id": "autopilot__r1.metadata.1",
             "timeout_ms": 5000},
            {"op": "get_run", "dag_id": dag, "run_id": "nope"},
            {"op": "trigger", "dag_id": dag, "run_id": "bad id!"},
            {"op": "unpause", "dag_id": "missing"},
            {"op": "trigger", "dag_id": dag, "run_id": "autopilot__r1.metadata.2"},
            {"op": "kill", "dag_id": dag},
            {"op": "fail_run", "dag_id": dag, "run_id": "autopilot__r1.metadata.1"},
            {"op": "delete", "dag_id": dag},
            {"op": "get_dag", "dag_id": dag},
            {"op": "stats"},
        ])
        ops = [r["op"] for r in res]
        assert ops == ["health", "deploy", "get_dag", "wait_dag", "unpause", "trigger",
                       "trigger", "wait_run", "get_run", "trigger", "unpause", "trigger",
                       "kill", "fail_run", "delete", "get_dag", "stats"], ops
        h, dep, gd404, gd, unp, trg, adopt, done, lost, bad, unp404, trg2, kill, failr, \
            dele, gone, stats = res
        assert h["status"] == "ok" and h["body"]["status"] == "healthy", h
        assert h["api"] == gen
        assert dep["status"] == "ok" and dag in dep["body"]["message"], dep
        assert gd404["status"] == "not_found" and gd404["http_status"] == 404, gd404
        assert gd404["detail"] and dag in gd404["detail"], gd404
        assert gd["status"] == "ok" and gd["dag"]["is_paused"] is True, gd
        assert not gd["dag"]["has_import_errors"]
        assert unp["status"] == "ok" and unp["dag"]["is_paused"] is False, unp
        assert trg["status"] == "ok" and trg["run"]["state"] == "queued", trg
        assert trg["run"]["adopted"] is False and trg["attempts"] == 1
        assert adopt["status"] == "ok" and adopt["run"]["adopted"] is True, adopt
        assert adopt["attempts"] == 2, adopt
        assert done["run"]["state"] == "success", done
        assert lost["status"] == "not_found", lost
        assert bad["status"] == "rejected" and bad["http_status"] == 400, bad
        assert bad["attempts"] == 1 and "does not match" in bad["detail"], bad
        assert unp404["status"] == "not_found" and unp404["attempts"] == 1, unp404
        assert trg2["status"] == "ok", trg2
        assert kill["status"] == "ok", kill
        assert failr["status"] == "ok" and failr["run"]["state"] == "failed", failr
        assert dele["status"] == "ok", dele
        assert gone["status"] == "not_found", gone
        assert stats["requests"]["network"] == 0 and stats["retries"] == 0, stats
        assert stats["latency_count"] == sum(stats["requests"].values()), stats

        log = sim.log()
        api = f"/api/{gen}"
        # Detection once, first, without credentials.
        assert log[0]["path"] == "/api/v2/version" and log[0]["auth"] == "none", log[0]
        assert sum(1 for r in log if r["path"] == "/api/v2/version") == 1
        tokens = [r for r in log if r["path"] == "/auth/token"]
        if gen == "v2":
            assert len(tokens) == 1, tokens
            assert tokens[0]["body"] == {"username": "admin", "password": "admin"}
        else:
            assert not tokens
        for r in log:
            if "/openmetadata/" in r["path"]:
                assert r["auth"] == "basic", r
            elif r["path"].startswith(api + "/dags"):
                assert r["auth"] == ("bearer" if gen == "v2" else "basic"), r
        plugin = "/pluginsv2/api/v2/openmetadata" if gen == "v2" else "/api/v1/openmetadata"
        deploys = [r for r in log if r["path"] == plugin + "/deploy"]
        assert len(deploys) == 1 and deploys[0]["body"]["name"] == "svc.db/metadata  agent"
        patch = [r for r in log if r["method"] == "PATCH" and r["path"] == f"{api}/dags/{dag}"]
        assert patch[0]["query"] == "update_mask=is_paused" and \
            patch[0]["body"] == {"is_paused": False}, patch
        trig = [r for r in log if r["method"] == "POST" and
                r["path"] == f"{api}/dags/{dag}/dagRuns"]
        want = {"dag_run_id": "autopilot__r1.metadata.1", "conf": {"k": "v"}}
        if gen == "v2":
            want["logical_date"] = None
        assert trig[0]["body"] == want, trig[0]
        assert [r["status"] for r in trig] == [200, 409, 400, 200], trig
        fail_patch = [r for r in log if r["method"] == "PATCH" and "/dagRuns/" in r["path"]]
        assert fail_patch[0]["body"] == {"state": "failed"}, fail_patch
        dels = [r for r in log if r["path"] == plugin + "/delete"]
        assert dels[0]["method"] == "DELETE" and dels[0]["query"] == f"dag_id={dag}", dels
    finally:
        sim.stop()


def case_fixed_api_and_credentials(gen):
    """A fixed generation skips detection; wrong credentials are rejected, not retried."""
    sim = Sim({"api": gen, "dags": {"d": {"exists": True}}})
    try:
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen)
        assert res[0]["status"] == "ok", res
        assert not any(r["path"] == "/api/v2/version" for r in sim.log())
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}, {"op": "deploy",
                  "pipeline": pipeline("x")}], "--api", gen, "--password", "wrong")
        for r in res:
            assert r["status"] == "rejected" and r["http_status"] == 401, r
        if gen == "v2":
            # The login failed: the API request itself was never sent.
            assert res[0]["attempts"] == 0 and res[1]["attempts"] == 1, res
            assert [r["status"] for r in sim.log() if r["path"] == "/auth/token"][-1] == 401
        else:
            assert [r["attempts"] for r in res] == [1, 1], res
        # The wrong generation fixed: Airflow answers 404 for the whole API.
        # Airflow 3's login route missing is refused, not a DAG not found
        # (which would be waited on as a DAG not parsed yet).
        other = "v1" if gen == "v2" else "v2"
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", other)
        assert res[0]["status"] in ("not_found", "rejected"), res
        if other == "v2":
            assert res[0]["status"] == "rejected" and res[0]["http_status"] == 404, res
            assert 'an Airflow 2 is "v1"' in res[0]["detail"], res
            assert [r["status"] for r in sim.log() if r["path"] == "/auth/token"] == [404], \
                sim.log()
    finally:
        sim.stop()


def version_asks(sim):
    return [(r["path"], r["auth"], r["status"]) for r in sim.log()
            if r["path"] in ("/api/v1/version", "/api/v2/version")]


UNKNOWN = "API generation is unknown"


def case_detect_protected_v3():
    """3.x protecting GET /api/v2/version (v2.yaml's global security): the 401
    sends the client to GET /api/v1/version, whose 404 (3.x has no /api/v1) says 3.x."""
    dags = {"d": {"exists": True}}
    sim = Sim({"api": "v2", "version_auth": True, "dags": dags})
    try:
        res, log = run_logged(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 3}])
        assert [(r["status"], r["api"]) for r in res] == [("ok", "v2")] * 3, res
        assert version_asks(sim) == [("/api/v2/version", "none", 401),
                                     ("/api/v1/version", "basic", 404)], sim.log()
        assert [r["path"] for r in sim.log()][2:4] == ["/auth/token", "/api/v2/dags/d"]
        assert log.count("speaks the Airflow 3.x (/api/v2) API") == 1, log
        assert UNKNOWN not in log, log
        # /api/v1/version failing (500) decides nothing: the request fails, the
        # next one detects again.
        sim.scenario({"api": "v2", "version_auth": True, "dags": dags,
                      "faults": {"error_burst": {"after": 0, "count": 1, "status": 500},
                                 "paths": ["/api/v1/version"]}})
        sim.req("DELETE", "/_sim/requests")
        res, log = run_logged(url(sim), [{"op": "get_dag", "dag_id": "d"},
                                         {"op": "get_dag", "dag_id": "d"}])
        assert res[0]["status"] == "unavailable" and res[0]["http_status"] == 500, res
        assert res[0]["api"] == "auto", res
        assert res[1]["status"] == "ok" and res[1]["api"] == "v2", res
        assert [a[2] for a in version_asks(sim)] == [401, 500, 401, 404], sim.log()
        assert UNKNOWN not in log, log
    finally:
        sim.stop()


def case_detect_protected_v2():
    """2.x whose /api/v2/version a proxy refuses and whose own /version wants Basic
    auth (v1.yaml's global security): asked with it, 2.x, no warning."""
    sim = Sim({"api": "v1", "version_auth": True, "proxy_401": ["/api/v2/"],
               "dags": {"d": {"exists": True}}})
    try:
        res, log = run_logged(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 3}])
        assert [(r["status"], r["api"]) for r in res] == [("ok", "v1")] * 3, res
        assert version_asks(sim) == [("/api/v2/version", "none", 401),
                                     ("/api/v1/version", "basic", 200)], sim.log()
        assert log.count("speaks the Airflow 2.x (/api/v1) API") == 1, log
        assert UNKNOWN not in log, log
    finally:
        sim.stop()


def case_detect_proxy(gen):
    """A proxy refusing both /version routes: 2.x as before, with one warning that
    says what both answered and that airflow.api fixes the generation."""
    sim = Sim({"api": gen, "proxy_401": ["/api/v1/version", "/api/v2/version"],
               "dags": {"d": {"exists": True}}})
    try:
        res, log = run_logged(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 3},
                                         {"op": "get_dag", "dag_id": "d"}])
        assert all(r["api"] == "v1" for r in res), res
        # 3.x taken for 2.x answers 404 everywhere: the warning is the hint.
        want = "ok" if gen == "v1" else "not_found"
        assert all(r["status"] == want for r in res), res
        assert version_asks(sim) == [("/api/v2/version", "none", 401),
                                     ("/api/v1/version", "basic", 401)], sim.log()
        warns = [ln for ln in log.splitlines() if UNKNOWN in ln]
        assert len(warns) == 1, log
        w = warns[0]
        assert "GET /api/v2/version answered HTTP 401" in w, w
        assert "GET /api/v1/version HTTP 401" in w, w
        assert "airflow.api" in w and '"v1"' in w and '"v2"' in w, w
        assert log.count("speaks the Airflow 2.x (/api/v1) API") == 1, log
    finally:
        sim.stop()


def case_retries(gen):
    """5xx bursts and resets are retried; 429 waits for Retry-After; budgets end."""
    dags = [f"/api/{gen}/dags"]
    sim = Sim({"api": gen, "dags": {"d": {"exists": True}},
               "faults": {"error_burst": {"after": 0, "count": 3, "status": 503},
                          "paths": dags}})
    fast = ("--retry-base-ms", "20", "--retry-max-ms", "100")
    try:
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen, *fast)
        assert res[0]["status"] == "ok" and res[0]["attempts"] == 4, res
        # Budget smaller than the burst: unavailable with Airflow's words.
        sim.scenario({"api": gen, "dags": {"d": {"exists": True}},
                      "faults": {"error_burst": {"after": 0, "count": 10, "status": 502},
                                 "paths": dags}})
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}, {"op": "stats"}], "--api",
                  gen, "--max-retries", "2", *fast)
        assert res[0]["status"] == "unavailable" and res[0]["attempts"] == 3, res
        assert res[0]["http_status"] == 502, res
        assert res[1]["retries"] == 2 and res[1]["requests"]["5xx"] == 3, res[1]
        # 500 is not retried (not a gateway answer).
        sim.scenario({"api": gen, "dags": {"d": {"exists": True}},
                      "faults": {"error_burst": {"after": 0, "count": 1, "status": 500},
                                 "paths": dags}})
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen, *fast)
        assert res[0]["status"] == "unavailable" and res[0]["attempts"] == 1, res
        # 429 with Retry-After: 1 -> the retry comes at least ~1 s later.
        sim.scenario({"api": gen, "dags": {"d": {"exists": True}},
                      "faults": {"rate_limit_every": 2, "rate_limit_burst": 1,
                                 "retry_after_s": 1, "paths": [f"/api/{gen}/dags"]}})
        seq0 = max([r["seq"] for r in sim.log()] or [0])
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}] * 2, "--api", gen, *fast)
        assert [r["status"] for r in res] == ["ok", "ok"], res
        assert [r["attempts"] for r in res] == [1, 2], res
        log = [r for r in sim.log(since=seq0) if r["path"].startswith(f"/api/{gen}/dags")]
        assert [r["status"] for r in log] == [200, 429, 200], log
        gap = log[2]["t_ms"] - log[1]["t_ms"]
        assert gap >= 900, gap
        # Connection resets on half the requests: all 20 concurrent ops succeed.
        sim.scenario({"api": gen, "seed": 7, "dags": {"d": {"exists": True}},
                      "faults": {"reset_rate": 0.5, "paths": [f"/api/{gen}/dags"]}})
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 20}, {"op": "stats"}],
                  "--api", gen, "--max-retries", "15", *fast)
        oks = [r for r in res if r["op"] == "get_dag"]
        assert len(oks) == 20 and all(r["status"] == "ok" for r in oks), oks
        assert any(r["attempts"] > 1 for r in oks)
        assert res[-1]["requests"]["network"] > 0, res[-1]
        # Lost replies: the trigger happened but its answer never came; the retry
        # meets 409 and adopts the run. Each run is created once.
        sim.scenario({"api": gen, "seed": 3, "dags": {"d": {"exists": True,
                                                            "is_paused": False}},
                      "faults": {"lost_reply_rate": 0.5,
                                 "paths": [f"/api/{gen}/dags/d/dagRuns"]}})
        res = run(url(sim), [{"op": "trigger", "dag_id": "d", "run_id": "lost-{i}",
                              "count": 12}], "--api", gen, "--max-retries", "20", *fast)
        assert len(res) == 12 and all(r["status"] == "ok" for r in res), res
        assert any(r["run"]["adopted"] for r in res), res
        assert sorted(r["run"]["dag_run_id"] for r in res) == \
            sorted(f"lost-{i}" for i in range(12)), res
        st, _, state = sim.req("GET", "/_sim/state")
        assert st == 200
        ids = [r["dag_run_id"] for dg in state["dags"] if dg["dag_id"] == "d"
               for r in dg["runs"] if r["dag_run_id"].startswith("lost-")]
        assert sorted(ids) == sorted(f"lost-{i}" for i in range(12)), ids  # once each
        posts = [r for r in sim.log() if r["method"] == "POST" and
                 r["path"] == f"/api/{gen}/dags/d/dagRuns"]
        created = {r["body"]["dag_run_id"] for r in posts if r["status"] in (200, 0)}
        assert created == {f"lost-{i}" for i in range(12)}, created
        assert all(r["status"] in (200, 0, 409) for r in posts), posts
    finally:
        sim.stop()


def case_proxy_404(gen):
    """A 404 without Airflow's JSON is asked about (GET /version): with no
    Airflow answering behind the URL (an ingress during a rollout) it is
    retried as a 503 is, never "no such run", which would fail its run; with
    Airflow answering (a proxy that replaces Airflow's error pages) it is
    Airflow's. Airflow's own 404 stays final at once. On Airflow 3, the
    login route's 404 after a token was given is Airflow not there."""
    dag = {"d": {"exists": True, "is_paused": False, "queued_ms": 0,
                 "running_ms": 60000}}
    fast = ("--retry-base-ms", "20", "--retry-max-ms", "50")
    # The proxy's 404s to every path from 300 ms to 1 s after the load.
    sim = Sim({"api": gen, "dags": dag,
               "faults": {"outage": {"start_ms": 300, "duration_ms": 700,
                                     "mode": "proxy404"}}})
    try:
        res, err = run_logged(url(sim), [
            {"op": "trigger", "dag_id": "d", "run_id": "r1"},
            {"op": "sleep", "ms": 450},
            # The retry budget runs out first: unavailable, with what the 404 is.
            {"op": "get_run", "dag_id": "d", "run_id": "r1"},
        ], "--api", gen, "--max-retries", "2", *fast)
        r = only(res, "get_run")[0]
        assert r["status"] == "unavailable" and r["http_status"] == 404, r
        assert r["attempts"] == 3 and "no Airflow answering there" in r["detail"], r
        assert "no Airflow behind it for now" in err, err[-2000:]
        versions = [x for x in sim.log() if x["path"].endswith("/version")]
        assert versions and all(x["status"] == 404 for x in versions), versions
        # Airflow back within the budget: the run reads as it is.
        sim.scenario({"api": gen, "dags": dag,
                      "faults": {"outage": {"start_ms": 300, "duration_ms": 400,
                                            "mode": "proxy404"}}})
        res = run(url(sim), [
            {"op": "get_dag", "dag_id": "d"},
            {"op": "sleep", "ms": 450},
            {"op": "get_run", "dag_id": "d", "run_id": "r1"},
        ], "--api", gen, "--max-retries", "40", *fast)
        r = only(res, "get_run")[0]
        assert r["status"] == "ok" and r["run"]["state"] == "running", r
        assert r["attempts"] > 1, r
        # Many requests meet the proxy's 404s: the breaker opens, as for an
        # Airflow down, and one request at a time probes until it is back.
        sim.scenario({"api": gen, "dags": dag,
                      "faults": {"outage": {"start_ms": 300, "duration_ms": 1200,
                                            "mode": "proxy404"}}})
        n = len(sim.log())
        res = run(url(sim), [
            {"op": "get_dag", "dag_id": "d"},
            {"op": "sleep", "ms": 450},
            {"op": "get_dag", "dag_id": "d", "count": 30},
            {"op": "stats"},
        ], "--api", gen, "--max-retries", "200", *fast)
        bad = [(r["i"], r["status"], r["attempts"]) for r in only(res, "get_dag")
               if r["status"] != "ok"]
        assert not bad, bad
        assert only(res, "stats")[0]["breaker_opens"] >= 1, res[-1]
        during = [x for x in sim.log()[n:] if x["status"] == 404]
        print("  proxy404 breaker: %d answers 404 to 30 requests over 1.05 s"
              % len(during))
        # Each retrying on its own would be some 30 x 25.
        assert len(during) < 200, len(during)
        # Airflow's own 404 (JSON): final at once, nothing asked.
        n = len(sim.log())
        res = run(url(sim), [{"op": "get_run", "dag_id": "d", "run_id": "nope"}],
                  "--api", gen, *fast)
        assert res[0]["status"] == "not_found" and res[0]["attempts"] == 1, res
        assert not [x for x in sim.log()[n:] if x["path"].endswith("/version")]
    finally:
        sim.stop()
    # A proxy that puts its page in place of each of Airflow's 404s: /version
    # answers, so the 404s are Airflow's (a DAG not parsed, a run lost).
    sim = Sim({"api": gen, "dags": dag, "proxy_pages_404": True})
    try:
        res, err = run_logged(url(sim), [
            {"op": "get_run", "dag_id": "d", "run_id": "nope"},
            {"op": "get_dag", "dag_id": "missing"},
        ], "--api", gen, *fast)
        assert [r["status"] for r in res] == ["not_found", "not_found"], res
        assert all(r["attempts"] == 1 for r in res), res
        assert "replacing Airflow's error pages" in err, err[-2000:]
        assert "<html>" in res[0]["detail"], res
    finally:
        sim.stop()
    if gen != "v2":
        return
    # The login meets the proxy's 404s (a restart during Airflow's rollout):
    # Airflow not there, retried as a 503 is, not "no Airflow 3 login".
    sim = Sim({"api": gen, "dags": dag,
               "faults": {"outage": {"start_ms": 0, "duration_ms": 60000,
                                     "mode": "proxy404"}}})
    try:
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen,
                  "--max-retries", "2", *fast)
        assert res[0]["status"] == "unavailable", res
        assert "no Airflow answering there" in res[0]["detail"], res
        tokens = [x for x in sim.log() if x["path"] == "/auth/token"]
        assert len(tokens) == 3, tokens
    finally:
        sim.stop()
    # Detection ("auto") meets them: nothing decided (not "an Airflow 2",
    # which /api/v2/version's 404 says when Airflow answers), asked again.
    sim = Sim({"api": gen, "dags": dag,
               "faults": {"outage": {"start_ms": 0, "duration_ms": 500,
                                     "mode": "proxy404"}}})
    try:
        res = run(url(sim), [
            {"op": "get_dag", "dag_id": "d"},
            {"op": "sleep", "ms": 700},
            {"op": "get_dag", "dag_id": "d"},
        ], "--max-retries", "1", *fast)
        dags = only(res, "get_dag")
        assert [r["status"] for r in dags] == ["unavailable", "ok"], dags
        assert dags[1]["api"] == "v2", dags[1]
        # The first token's 404: no login route, a setup to fix.
        sim.scenario({"api": gen, "dags": dag,
                      "faults": {"error_burst": {"after": 0, "count": 1, "status": 404},
                                 "proxy_pages": True, "paths": ["/auth/token"]}})
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen, *fast)
        assert res[0]["status"] == "rejected", res
        assert res[0]["title"] == "No Airflow 3 login", res
    finally:
        sim.stop()


def case_breaker(gen):
    """During an outage the client stops hammering: one probe at a time."""
    sim = Sim({"api": gen, "dags": {"d": {"exists": True}}})
    try:
        # Detect and log in first, then break Airflow for 1.5 s.
        run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen)
        seq0 = max(r["seq"] for r in sim.log())
        st, _, _ = sim.req("POST", "/_sim/outage?ms=1500&mode=reset")
        assert st == 200
        t0 = time.monotonic()
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 30}, {"op": "stats"}],
                  "--api", gen, "--retry-base-ms", "50", "--retry-max-ms", "200",
                  "--max-retries", "40")
        took = time.monotonic() - t0
        oks = [r for r in res if r["op"] == "get_dag"]
        assert len(oks) == 30 and all(r["status"] == "ok" for r in oks), oks
        assert took >= 1.2, took
        stats = res[-1]
        assert stats["breaker_opens"] >= 1 and not stats["breaker_open"], stats
        log = sim.log(since=seq0)   # v2: the token fetch may be the one that probes
        resets = [r for r in log if r["status"] == 0]
        # Without the breaker 30 clients retrying every <= 200 ms for 1.5 s send
        # hundreds of requests; with it: the first wave, then one probe at a time.
        assert len(resets) <= 30 + 30, len(resets)
        # After the first wave: resets arrive one by one, never two at once (each
        # probe waits for the previous answer and a backoff).
        wave = sorted(resets, key=lambda r: r["seq"])[30:]
        for a, b in zip(wave, wave[1:]):
            assert b["t_ms"] >= a["t_ms"], (a, b)
        assert sum(1 for r in log if r["status"] == 200 and "/dags/" in r["path"]) == 30
    finally:
        sim.stop()


def case_breaker_retry_after(gen):
    """An open breaker paces its probes by Retry-After, and a 429 keeps it open."""
    sc = {"api": gen, "dags": {"d": {"exists": True}},
          "faults": {"retry_after_s": 1, "retry_after_503": True}}
    sim = Sim(sc)
    try:
        run(url(sim), [{"op": "get_dag", "dag_id": "d"}], "--api", gen)
        seq0 = max(r["seq"] for r in sim.log())
        st, _, _ = sim.req("POST", "/_sim/outage?ms=1200")
        assert st == 200
        # From 0.8 s every answer is 429 (Retry-After: 1) until 3.5 s: the
        # probes after the outage meet it.
        limited = dict(sc, faults=dict(sc["faults"], rate_limit_every=1, rate_limit_burst=1))
        t1 = threading.Timer(0.8, lambda: sim.scenario(limited))
        t2 = threading.Timer(3.5, lambda: sim.scenario(sc))
        t1.start()
        t2.start()
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 10}, {"op": "stats"}],
                  "--api", gen, "--retry-base-ms", "20", "--retry-max-ms", "100",
                  "--max-retries", "40")
        t1.join()
        t2.join()
        oks = [r for r in res if r["op"] == "get_dag"]
        assert len(oks) == 10 and all(r["status"] == "ok" for r in oks), oks
        assert res[-1]["breaker_opens"] >= 1, res[-1]
        log = sorted((r for r in sim.log(since=seq0) if "/dags/" in r["path"]),
                     key=lambda r: r["seq"])
        refused = [r for r in log if r["status"] in (503, 429)]
        # The first wave (10 at once) opens the breaker; every probe after it
        # waits out Retry-After (1 s), not the 20-100 ms backoff ...
        probes = refused[10:]
        assert len(probes) >= 2, refused
        for a, b in zip(refused[9:], probes):
            assert b["t_ms"] - a["t_ms"] >= 900, (a, b)
        # ... and a 429 on a probe releases nobody: no 429 comes in a crowd.
        assert any(r["status"] == 429 for r in probes), probes
        assert len(refused) <= 10 + 5, refused
    finally:
        sim.stop()


def case_breaker_gives_up(gen):
    """Airflow gone for good: every caller hears "unavailable", bounded in time."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    res = run(f"http://127.0.0.1:{port}", [{"op": "get_run", "dag_id": "d", "run_id": "r",
                                            "count": 10}, {"op": "stats"}],
              "--api", gen, "--retry-base-ms", "10", "--retry-max-ms", "50",
              "--max-retries", "3", "--request-timeout-ms", "2000")
    assert time.monotonic() - t0 < 15
    runs = only(res, "get_run")
    assert len(runs) == 10 and all(r["status"] == "unavailable" for r in runs), runs
    assert all(r["http_status"] == 0 and r["title"] for r in runs), runs
    if gen == "v1":
        assert res[-1]["breaker_opens"] >= 1 and res[-1]["breaker_open"], res[-1]
    else:
        # 3.x: the shared login fails once for everybody (4 attempts in all).
        assert res[-1]["requests"]["network"] == 4, res[-1]
    # Each request within its budget (1 + 3 attempts), the probes one at a time.
    assert res[-1]["requests"]["network"] <= 40, res[-1]
    assert all(r["attempts"] <= 4 for r in runs), runs


def case_runs_and_dags(gen):
    """Dead workers, restarts that lose runs, import errors."""
    sim = Sim({"api": gen, "dags": {
        "dead": {"exists": True, "is_paused": False, "outcome": "worker_died",
                 "queued_ms": 0, "running_ms": 50},
        "ok": {"exists": True, "is_paused": False, "queued_ms": 0, "running_ms": 50},
        "broken": {"exists": True, "import_error": "Traceback (most recent call last):\n"
                   "  File \"/opt/airflow/dags/broken.py\"\nNameError: boom"}}})
    try:
        res = run(url(sim), [
            {"op": "trigger", "dag_id": "dead", "run_id": "r1"},
            {"op": "wait_run", "dag_id": "dead", "run_id": "r1", "timeout_ms": 800},
            {"op": "fail_run", "dag_id": "dead", "run_id": "r1"},
            {"op": "trigger", "dag_id": "ok", "run_id": "r2"},
            {"op": "get_dag", "dag_id": "broken"},
            {"op": "unpause", "dag_id": "broken"},
        ], "--api", gen)
        assert res[1]["run"]["state"] == "running", res[1]   # forever
        assert res[2]["run"]["state"] == "failed", res[2]
        b = res[4]
        assert b["status"] == "ok" and b["dag"]["has_import_errors"], b
        assert "NameError: boom" in b["dag"]["import_error"], b
        ie = [r for r in sim.log() if "importErrors" in r["path"]]
        assert len(ie) == 2 and ie[0]["auth"] == ("bearer" if gen == "v2" else "basic"), ie
        # Unpausing a DAG with import errors reports them and leaves it paused.
        u = res[5]
        assert u["status"] == "ok" and u["dag"]["has_import_errors"], u
        assert "NameError: boom" in u["dag"]["import_error"] and u["dag"]["is_paused"], u
        assert u["attempts"] == 3, u
        patches = [r["body"] for r in sim.log() if r["method"] == "PATCH" and
                   r["path"].endswith("/dags/broken")]
        assert patches == [{"is_paused": False}, {"is_paused": True}], patches
        st, _, doc = sim.req("GET", "/_sim/state")
        assert [d["is_paused"] for d in doc["dags"] if d["dag_id"] == "broken"] == [True], doc
        st, _, _ = sim.req("POST", "/_sim/restart")
        assert st == 200
        res = run(url(sim), [{"op": "get_run", "dag_id": "ok", "run_id": "r2"}], "--api", gen)
        assert res[0]["status"] == "not_found" and res[0]["attempts"] == 1, res
    finally:
        sim.stop()


def case_never_imported(gen):
    """A DAG file that never imported has no DAG (404): an unpause asked to
    look (errors_since) reads importErrors and answers the file's error as a
    DAG with import errors, if stamped since then; else the 404 stands."""
    trace = "Traceback (most recent call last):\n  File \"nope.py\"\nSyntaxError: bad"
    sim = Sim({"api": gen, "parse_delay_ms": 0, "dags": {"nope": {"import_error": trace}}})
    try:
        since = int(time.time() * 1000) - 5000
        res = run(url(sim), [
            {"op": "deploy", "pipeline": pipeline("nope")},
            {"op": "get_dag", "dag_id": "nope"},
            {"op": "unpause", "dag_id": "nope"},
            {"op": "unpause", "dag_id": "nope", "errors_since": since},
            {"op": "unpause", "dag_id": "nope", "errors_since": since + 3600 * 1000},
        ], "--api", gen)
        assert res[0]["status"] == "ok", res[0]
        assert res[1]["status"] == "not_found" and res[2]["status"] == "not_found", res[1:3]
        u = res[3]
        assert u["status"] == "ok" and u["dag"]["has_import_errors"], u
        assert u["dag"]["import_error"] == trace, u
        assert res[4]["status"] == "not_found", res[4]
        ie = [r for r in sim.log() if "importErrors" in r["path"]]
        assert len(ie) == 2, ie
        patches = [r for r in sim.log() if r["method"] == "PATCH"]
        assert len(patches) == 3 and all(r["status"] == 404 for r in patches), patches
    finally:
        sim.stop()


def case_fixed_by_deploy(gen):
    """A DAG Airflow has, whose file had import errors before the deploy:
    until Airflow parses the file written, it still shows has_import_errors;
    the unpause answers that error with its stamp (from before the deploy)
    and leaves the DAG paused; once parsed, the DAG is unpaused."""
    trace = "Traceback (most recent call last):\n  File \"fixed.py\"\nImportError: old"
    sim = Sim({"api": gen, "dags": {"fixed": {"exists": True, "import_error": trace,
                                              "fixed_by_deploy": True,
                                              "parse_delay_ms": 4000}}})
    try:
        time.sleep(0.6)     # stamped by parses before the deploy
        res = run(url(sim), [{"op": "deploy", "pipeline": pipeline("fixed")}], "--api", gen)
        assert res[0]["status"] == "ok", res
        deployed = int(time.time() * 1000)
        res = run(url(sim), [
            {"op": "unpause", "dag_id": "fixed"},
            {"op": "sleep", "ms": 4100},
            {"op": "unpause", "dag_id": "fixed"},
        ], "--api", gen)
        first, last = only(res, "unpause")
        assert first["status"] == "ok" and first["dag"]["has_import_errors"], first
        assert first["dag"]["import_error"] == trace and first["dag"]["is_paused"], first
        at = first["dag"]["import_error_at"]
        assert deployed - 5000 < at <= deployed, (at, deployed)
        assert last["status"] == "ok" and not last["dag"]["has_import_errors"], last
        assert not last["dag"]["is_paused"] and "import_error_at" not in last["dag"], last
    finally:
        sim.stop()


def case_jwt_renewal():
    """Airflow 3: an expired token (401) and a revoked one (403) are renewed once."""
    sim = Sim({"api": "v2", "token_ttl_ms": 400, "dags": {"d": {"exists": True}}})
    try:
        res = run(url(sim), [
            {"op": "get_dag", "dag_id": "d"},
            {"op": "sleep", "ms": 600},
            {"op": "get_dag", "dag_id": "d"},
        ])
        assert [r["status"] for r in res if r["op"] == "get_dag"] == ["ok", "ok"], res
        assert res[-1]["attempts"] == 2, res
        log = sim.log()
        assert sum(1 for r in log if r["path"] == "/auth/token") == 2, log
        dags = [r["status"] for r in log if r["path"] == "/api/v2/dags/d"]
        assert dags == [200, 401, 200], dags
    finally:
        sim.stop()


def case_jwt_revoked_in_flight():
    """A new signing key between two requests of one client: 403 "Invalid JWT
    token" -> a new token, once."""
    sim = Sim({"api": "v2", "dags": {"d": {"exists": True}}})
    try:
        def revoke():
            time.sleep(0.4)
            sim.req("POST", "/_sim/restart?tokens=1")
        th = threading.Thread(target=revoke)
        th.start()
        res = run(url(sim), [
            {"op": "get_dag", "dag_id": "d"},
            {"op": "sleep", "ms": 900},
            {"op": "get_dag", "dag_id": "d"},
        ])
        th.join()
        dg = [r for r in res if r["op"] == "get_dag"]
        assert [r["status"] for r in dg] == ["ok", "ok"] and dg[1]["attempts"] == 2, dg
        dags = [r["status"] for r in sim.log() if r["path"] == "/api/v2/dags/d"]
        assert dags == [200, 403, 200], dags
    finally:
        sim.stop()


def case_plugin_fallback():
    """Airflow 3 without /pluginsv2: the plugin is found under /api/v2, then remembered.
    Airflow 3 answers a POST there 405 and a GET its UI's page (200, HTML)."""
    sim = Sim({"api": "v2", "faults": {"plugin_pluginsv2_404": True}})
    try:
        res = run(url(sim), [{"op": "deploy", "pipeline": pipeline("p")}, {"op": "health"},
                             {"op": "kill", "dag_id": "p"}])
        assert res[0]["status"] == "ok" and res[1]["status"] == "ok", res
        assert res[2]["status"] == "not_found", res   # the plugin's own 404: no fallback
        paths = [(r["path"], r["status"]) for r in sim.log() if "openmetadata" in r["path"]]
        assert paths == [("/pluginsv2/api/v2/openmetadata/deploy", 405),
                         ("/api/v2/openmetadata/deploy", 200),
                         ("/api/v2/openmetadata/health-auth", 200),
                         ("/api/v2/openmetadata/kill", 404)], paths
        # A health check first: the UI's page is not the plugin's answer.
        sim.req("DELETE", "/_sim/requests")
        res = run(url(sim), [{"op": "health"}])
        assert res[0]["status"] == "ok" and res[0]["body"]["status"] == "healthy", res
        paths = [(r["path"], r["status"]) for r in sim.log() if "openmetadata" in r["path"]]
        assert paths == [("/pluginsv2/api/v2/openmetadata/health-auth", 200),
                         ("/api/v2/openmetadata/health-auth", 200)], paths
        # No plugin anywhere: said so, after each prefix was tried once.
        sim.scenario({"api": "v2", "faults": {"plugin_pluginsv2_404": True,
                                              "plugin_v2_fallback_404": True}})
        sim.req("DELETE", "/_sim/requests")
        res = run(url(sim), [{"op": "deploy", "pipeline": pipeline("p")}, {"op": "health"}])
        for r in res:
            assert r["status"] != "ok" and "plugin" in r["detail"], r
            assert r["attempts"] == 3, r
    finally:
        sim.stop()


def case_latency_and_cancel(gen):
    sim = Sim({"api": gen, "dags": {"d": {"exists": True}},
               "faults": {"latency_ms": 300}})
    try:
        res = run(url(sim), [{"op": "get_dag", "dag_id": "d", "count": 5},
                             {"op": "cancel", "what": "get_dag", "dag_id": "d"},
                             {"op": "sleep", "ms": 500}, {"op": "stats"}], "--api", gen)
        dg = only(res, "get_dag")
        assert len(dg) == 5 and all(r["status"] == "ok" and r["ms"] >= 280 for r in dg), dg
        assert only(res, "cancel")[0]["status"] == "cancelled"
        st = res[-1]
        # 5 answers took >= 300 ms: they sit in the 500 ms bucket, not below 250.
        assert st["latency_le"][5] == 0 and st["latency_le"][6] >= 5, st
    finally:
        sim.stop()


class Odd(http.server.BaseHTTPRequestHandler):
    """Airflow gone strange: huge answers, non-JSON 200s."""
    def do_GET(self):
        if "huge" in self.path:
            body = b"{\"dag_id\": \"" + b"x" * (9 << 20) + b"\"}"
        elif "/dags/elsewhere" in self.path:
            # An answer about another DAG; then one with fields of other types.
            body = json.dumps({"dag_id": "zzz", "is_paused": False,
                               "has_import_errors": False}).encode()
        elif "/dags/typed" in self.path:
            body = json.dumps({"dag_id": "typed", "is_paused": "no",
                               "has_import_errors": 1}).encode()
        elif "/dagRuns/r5" in self.path:
            body = json.dumps({"dag_id": 5, "dag_run_id": "r5", "state": "running"}).encode()
        else:
            body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *a):
        pass


def case_bad_replies():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        res = run(f"http://127.0.0.1:{srv.server_address[1]}",
                  [{"op": "get_dag", "dag_id": "huge"}, {"op": "get_dag", "dag_id": "html"},
                   {"op": "get_run", "dag_id": "html", "run_id": "r"}], "--api", "v1")
        assert [r["status"] for r in res] == ["bad_reply"] * 3, res
        assert all(r["attempts"] == 1 for r in res), res
        assert "larger" in res[0]["detail"], res[0]
        res = run(f"http://127.0.0.1:{srv.server_address[1]}",
                  [{"op": "get_dag", "dag_id": "elsewhere"}, {"op": "get_dag", "dag_id": "typed"},
                   {"op": "get_run", "dag_id": "d", "run_id": "r5"}], "--api", "v1")
        assert [r["status"] for r in res] == ["bad_reply"] * 3, res
        assert res[0]["detail"] == "the answer is about DAG 'zzz', not 'elsewhere'", res[0]
        assert res[1]["detail"] == res[2]["detail"] == \
            "the answer does not have the fields the API promises", res
        # Detection: a 200 to GET /api/v2/version that is not Airflow's VersionInfo
        # (a portal's page) does not make the client speak 3.x.
        res = run(f"http://127.0.0.1:{srv.server_address[1]}",
                  [{"op": "get_dag", "dag_id": "html"}])
        assert res[0]["status"] == "bad_reply" and res[0]["api"] == "auto", res
        assert "/api/v2/version" in res[0]["detail"], res
    finally:
        srv.shutdown()
        srv.server_close()


class Dag(http.server.BaseHTTPRequestHandler):
    """A minimal 2.x DAG route, for the TLS case."""
    def do_GET(self):
        body = json.dumps({"dag_id": "d", "is_paused": False,
                           "has_import_errors": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def case_tls():
    """TLS peers are always verified: an unknown CA fails at once (no retries), the
    configured CA file is trusted."""
    if shutil.which("openssl") is None:
        print("SKIP case_tls: no openssl command", flush=True)
        return
    d = tempfile.mkdtemp(prefix="it_airflow_tls.")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
                   timeout=30)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dag)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    base = f"https://127.0.0.1:{srv.server_address[1]}"
    try:
        res = run(base, [{"op": "get_dag", "dag_id": "d"}], "--api", "v1")
        assert res[0]["status"] == "unavailable" and res[0]["attempts"] == 1, res
        assert "certificate" in res[0]["detail"].lower(), res
        res = run(base, [{"op": "get_dag", "dag_id": "d"}], "--api", "v1",
                  "--ca-file", cert)
        assert res[0]["status"] == "ok" and res[0]["dag"]["dag_id"] == "d", res
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(d)


def main():
    if not os.path.exists(TOOL):
        print(f"missing {TOOL}", file=sys.stderr)
        return 1
    cases = []
    for gen in ("v1", "v2"):
        cases += [(case_flow, gen), (case_fixed_api_and_credentials, gen),
                  (case_retries, gen), (case_proxy_404, gen), (case_breaker, gen), (case_breaker_gives_up, gen),
                  (case_runs_and_dags, gen), (case_never_imported, gen),
                  (case_fixed_by_deploy, gen),
                  (case_latency_and_cancel, gen)]
    # The breaker is the same on both (v1: no login to wait out first).
    cases += [(case_breaker_retry_after, "v1")]
    cases += [(case_tls, None), (case_jwt_renewal, None), (case_jwt_revoked_in_flight, None),
              (case_plugin_fallback, None), (case_bad_replies, None),
              (case_detect_protected_v3, None), (case_detect_protected_v2, None),
              (case_detect_proxy, "v1"), (case_detect_proxy, "v2")]
    for fn, gen in cases:
        t0 = time.monotonic()
        fn(gen) if gen else fn()
        print(f"ok {fn.__name__}{'(' + gen + ')' if gen else ''} "
              f"({time.monotonic() - t0:.1f}s)", flush=True)
        assert time.monotonic() < DEADLINE, "suite too slow"
    return 0


if __name__ == "__main__":
    sys.exit(main())
