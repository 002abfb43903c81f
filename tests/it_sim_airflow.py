#!/usr/bin/env python3
"""it_sim_airflow — the Airflow simulator against its own contract.

Starts $AP_BUILD/sim_airflow on 127.0.0.1 port 0 and exercises every route on
both API generations, both auth schemes, the run lifecycle, 409, pausing, each
fault, restart and the request log. Response bodies are validated against the
reference OpenAPI specs ($AP_REFERENCE/airflow/v1.yaml and v2.yaml), turned
into JSON Schema here ($ref resolved, nullable mapped, unknown properties
forbidden so the simulator cannot drift from the spec).
"""
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import jsonschema
import yaml

SRC = os.environ.get("AP_SRC", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("AP_BUILD", os.path.join(SRC, "build"))

def find_reference():
    """$AP_REFERENCE, else ../shared/reference from the source dir or its parent
    (a git worktree sits one level deeper than the main checkout)."""
    for cand in (os.environ.get("AP_REFERENCE"),
                 os.path.join(SRC, "..", "shared", "reference"),
                 os.path.join(SRC, "..", "..", "shared", "reference")):
        if cand and os.path.exists(os.path.join(cand, "airflow", "v1.yaml")):
            return cand
    return None


REF = find_reference()
SIM = os.path.join(BUILD, "sim_airflow")
DEADLINE = time.monotonic() + 240


# ------------------------------------------------------------------ schemas

def to_jsonschema(node, comps, strict, close=True):
    """OpenAPI 3.0 schema -> JSON Schema (draft 7 subset).

    strict closes objects (additionalProperties: false) except the direct
    members of an allOf, which only see part of the properties."""
    if isinstance(node, list):
        return [to_jsonschema(x, comps, strict) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        out = to_jsonschema(comps[node["$ref"].split("/")[-1]], comps, strict, close)
        if node.get("nullable"):
            out = {"anyOf": [out, {"type": "null"}]}
        return out
    out = {}
    for k, v in node.items():
        if k in ("nullable", "discriminator", "readOnly", "writeOnly", "example",
                 "deprecated", "title", "description", "format", "default"):
            continue
        if k == "properties":
            out[k] = {p: to_jsonschema(s, comps, strict) for p, s in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = to_jsonschema(v, comps, strict)
        elif k == "allOf":
            out[k] = [to_jsonschema(x, comps, strict, False) for x in v]
        elif k in ("anyOf", "oneOf"):
            out[k] = [to_jsonschema(x, comps, strict) for x in v]
        else:
            out[k] = v
    if strict and close and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    def __init__(self, path):
        self.comps = None
        if path is None:
            return
        with open(path) as f:
            self.comps = yaml.safe_load(f)["components"]["schemas"]

    def check(self, name, doc, strict=True):
        if self.comps is None:
            return
        schema = to_jsonschema(self.comps[name], self.comps, strict)
        try:
            jsonschema.validate(doc, schema)
        except jsonschema.ValidationError as e:
            raise AssertionError(f"{name}: {e.message} at {list(e.absolute_path)}\n"
                                 f"{json.dumps(doc)[:2000]}")


if REF is None:
    print("WARNING: reference OpenAPI specs not found; response schemas are NOT checked",
          file=sys.stderr)
V1 = Spec(REF and os.path.join(REF, "airflow", "v1.yaml"))
V2 = Spec(REF and os.path.join(REF, "airflow", "v2.yaml"))


# ------------------------------------------------------------------ the simulator

class Sim:
    def __init__(self, scenario=None, args=()):
        self.tmp = None
        cmd = [SIM, "--listen", "127.0.0.1:0", "--quiet", *args]
        if scenario is not None:
            self.tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump(scenario, self.tmp)
            self.tmp.close()
            cmd += ["--scenario", self.tmp.name]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening 127.0.0.1:"), (line, self.proc.stderr.read())
        self.port = int(line.strip().rsplit(":", 1)[1])

    def req(self, method, path, body=None, auth=None, raw=None, headers=None, timeout=10):
        """Returns (status, headers, parsed body); status 0 when the connection dropped."""
        h = dict(headers or {})
        if auth == "basic" or isinstance(auth, tuple):
            user, pw = auth if isinstance(auth, tuple) else ("admin", "admin")
            h["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        elif isinstance(auth, str) and auth:
            h["Authorization"] = "Bearer " + auth
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            return 0, {}, None
        finally:
            c.close()
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = text
        return r.status, dict(r.getheaders()), doc

    def log(self, since=0, path=None):
        q = f"since={since}" + (f"&path={path}" if path else "")
        st, _, doc = self.req("GET", f"/_sim/requests?{q}")
        assert st == 200
        return doc

    def scenario(self, sc):
        st, _, doc = self.req("PUT", "/_sim/scenario", sc)
        assert st == 200, doc
        return doc

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("sim_airflow did not exit on SIGTERM")
        err = self.proc.stderr.read()
        if self.tmp:
            os.unlink(self.tmp.name)
        assert rc == 0, f"exit {rc}: {err}"


def wait_for(fn, what, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def pipeline(name, ptype="metadata", schedule=None):
    p = {"name": name, "displayName": name, "pipelineType": ptype,
         "service": {"id": "00000000-0000-0000-0000-000000000001", "type": "databaseService",
                     "name": "svc"},
         "sourceConfig": {"config": {"type": "DatabaseMetadata"}},
         "airflowConfig": {}, "loggerLevel": "INFO", "provider": "automation"}
    if schedule:
        p["airflowConfig"]["scheduleInterval"] = schedule
    return p


def run_state(sim, dag, run, auth="basic", gen="v1"):
    st, _, doc = sim.req("GET", f"/api/{gen}/dags/{dag}/dagRuns/{run}", auth=auth)
    assert st == 200, (st, doc)
    return doc["state"]


V1_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
V2_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def check_times(doc, pattern, keys):
    """Airflow 2 writes times with Python's isoformat (+00:00), Airflow 3 with
    pydantic (Z), both with microseconds."""
    for k in keys:
        assert doc[k] is None or pattern.match(doc[k]), (k, doc[k])
    assert any(doc[k] is not None for k in keys), doc


def check_v1_error(doc, status):
    V1.check("Error", doc)
    assert doc["status"] == status, doc


# ------------------------------------------------------------------ tests

def test_v1_flow():
    sim = Sim({"api": "v1", "parse_delay_ms": 150,
               "pipelines": {"metadata": {"queued_ms": 50, "running_ms": 200},
                             "usage": {"queued_ms": 0, "running_ms": 100,
                                       "outcome": "failed"}}})
    try:
        # Auth and generation detection.
        st, hd, doc = sim.req("GET", "/api/v1/dags/x")
        assert st == 401 and hd.get("WWW-Authenticate") == "Basic", (st, hd)
        check_v1_error(doc, 401)
        st, _, doc = sim.req("GET", "/api/v1/dags/x", auth=("admin", "wrong"))
        assert st == 401
        st, _, _ = sim.req("GET", "/api/v2/version")
        assert st == 404
        st, _, doc = sim.req("GET", "/api/v1/version")
        assert st == 200 and doc["version"].startswith("2."), doc
        st, _, _ = sim.req("POST", "/auth/token", {"username": "admin", "password": "admin"})
        assert st == 404
        st, _, _ = sim.req("POST", "/pluginsv2/api/v2/openmetadata/deploy",
                           pipeline("a"), auth="basic")
        assert st == 404

        # Deploy: validation, DAG id, parse delay.
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy", raw="not json",
                             auth="basic")
        assert st == 400 and "error" in doc, doc
        bad = pipeline("a")
        del bad["sourceConfig"]
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy", bad, auth="basic")
        assert st == 400 and "sourceConfig" in doc["error"], doc
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("x"))
        assert st == 401
        name = "svc.db/metadata  agent"
        dag = "svc_db_metadata_agent"
        t0 = time.monotonic()
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy",
                             pipeline(name, schedule="0 0 * * 0"), auth="basic")
        assert st == 200 and doc == {"message": f"Workflow [{dag}] has been created"}, doc
        st, _, doc = sim.req("GET", f"/api/v1/dags/{dag}", auth="basic")
        assert st == 404, st
        check_v1_error(doc, 404)
        st, _, doc = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns", {"dag_run_id": "r1"},
                             auth="basic")
        assert st == 404, "trigger before parse must be 404"
        doc = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(
            sim.req("GET", f"/api/v1/dags/{dag}", auth="basic")), "DAG parsed")
        assert time.monotonic() - t0 >= 0.14
        V1.check("DAG", doc)
        assert doc["dag_id"] == dag and doc["is_paused"] is True
        assert doc["has_import_errors"] is False
        assert doc["schedule_interval"] == {"__type": "CronExpression", "value": "0 0 * * 0"}

        # Trigger on a paused DAG: queued, stays queued; 409 on the same id.
        st, _, run = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns",
                             {"dag_run_id": "r1", "conf": {"k": 1}}, auth="basic")
        assert st == 200, (st, run)
        V1.check("DAGRun", run)
        assert run["state"] == "queued" and run["dag_run_id"] == "r1"
        assert run["conf"] == {"k": 1} and run["start_date"] is None
        check_times(run, V1_TIME, ("logical_date", "execution_date", "start_date", "end_date"))
        assert run["logical_date"] == run["execution_date"]
        st, _, doc = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns", {"dag_run_id": "r1"},
                             auth="basic")
        assert st == 409, st
        check_v1_error(doc, 409)
        st, _, doc = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns",
                             {"dag_run_id": "r2", "bogus": 1}, auth="basic")
        assert st == 400
        check_v1_error(doc, 400)
        st, _, doc = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns",
                             {"dag_run_id": "bad id!"}, auth="basic")
        assert st == 400
        time.sleep(0.2)
        assert run_state(sim, dag, "r1") == "queued"

        # Unpause: queued -> running -> success.
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}?update_mask=is_paused",
                             {"is_paused": False}, auth="basic")
        assert st == 200 and doc["is_paused"] is False, doc
        V1.check("DAG", doc)
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}?update_mask=description",
                             {"is_paused": False}, auth="basic")
        assert st == 400
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}?update_mask=is_paused",
                             {"is_paused": "no"}, auth="basic")
        assert st == 400
        # The DAG's other fields are read-only: marshmallow refuses them as unknown.
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}?update_mask=is_paused",
                             {"is_paused": False, "dag_id": dag}, auth="basic")
        assert st == 400 and "dag_id" in doc["detail"], (st, doc)
        wait_for(lambda: run_state(sim, dag, "r1") == "running", "running")
        wait_for(lambda: run_state(sim, dag, "r1") == "success", "success")
        st, _, run = sim.req("GET", f"/api/v1/dags/{dag}/dagRuns/r1", auth="basic")
        V1.check("DAGRun", run)
        assert run["start_date"] and run["end_date"] and run["end_date"] > run["start_date"]
        st, _, doc = sim.req("GET", f"/api/v1/dags/{dag}/dagRuns", auth="basic")
        assert st == 200 and doc["total_entries"] == 1
        V1.check("DAGRunCollection", doc)

        # A run triggered on an unpaused DAG; failing it by PATCH.
        st, _, run = sim.req("POST", f"/api/v1/dags/{dag}/dagRuns", {"dag_run_id": "r2"},
                             auth="basic")
        assert st == 200
        st, _, run = sim.req("PATCH", f"/api/v1/dags/{dag}/dagRuns/r2", {"state": "failed"},
                             auth="basic")
        assert st == 200 and run["state"] == "failed" and run["end_date"], run
        V1.check("DAGRun", run)
        time.sleep(0.3)
        assert run_state(sim, dag, "r2") == "failed"
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}/dagRuns/r2", {"state": "running"},
                             auth="basic")
        assert st == 400
        st, _, doc = sim.req("GET", f"/api/v1/dags/{dag}/dagRuns/nope", auth="basic")
        assert st == 404
        check_v1_error(doc, 404)
        st, _, doc = sim.req("PATCH", f"/api/v1/dags/{dag}/dagRuns/nope", {"state": "failed"},
                             auth="basic")
        assert st == 404

        # Pausing again: a fresh run waits, queued.
        sim.req("PATCH", f"/api/v1/dags/{dag}?update_mask=is_paused", {"is_paused": True},
                auth="basic")
        sim.req("POST", f"/api/v1/dags/{dag}/dagRuns", {"dag_run_id": "r3"}, auth="basic")
        time.sleep(0.3)
        assert run_state(sim, dag, "r3") == "queued"

        # Usage pipeline fails per the scenario.
        sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("svc.usage", "usage"),
                auth="basic")
        wait_for(lambda: sim.req("GET", "/api/v1/dags/svc_usage", auth="basic")[0] == 200,
                 "usage parsed")
        sim.req("PATCH", "/api/v1/dags/svc_usage?update_mask=is_paused", {"is_paused": False},
                auth="basic")
        sim.req("POST", "/api/v1/dags/svc_usage/dagRuns", {"dag_run_id": "u1"}, auth="basic")
        wait_for(lambda: run_state(sim, "svc_usage", "u1") == "failed", "usage failed")

        # Redeploy keeps runs and visibility.
        st, _, _ = sim.req("POST", "/api/v1/openmetadata/deploy", pipeline(name), auth="basic")
        assert st == 200
        assert sim.req("GET", f"/api/v1/dags/{dag}", auth="basic")[0] == 200
        assert run_state(sim, dag, "r1") == "success"

        # Plugin routes.
        st, _, doc = sim.req("GET", "/api/v1/openmetadata/health")
        assert st == 200 and doc["status"] == "healthy", doc
        st, _, doc = sim.req("GET", "/api/v1/openmetadata/health-auth")
        assert st == 401
        st, _, doc = sim.req("GET", f"/api/v1/openmetadata/status?dag_id={dag}", auth="basic")
        assert st == 200 and [r["runId"] for r in doc] == ["r3", "r2", "r1"], doc
        assert doc[2]["pipelineState"] == "success" and isinstance(doc[2]["endDate"], int)
        st, _, doc = sim.req("GET", "/api/v1/openmetadata/status?dag_id=nope", auth="basic")
        assert st == 404 and "error" in doc
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/trigger", {"dag_id": dag},
                             auth="basic")
        assert st == 200 and "has been triggered" in doc["message"], doc
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/trigger?run_id=p1",
                             {"dag_id": dag}, auth="basic")
        assert st == 200 and run_state(sim, dag, "p1") == "queued"
        st, _, doc = sim.req("GET", f"/api/v1/openmetadata/last_dag_logs?dag_id={dag}",
                             auth="basic")
        assert st == 200 and "ingestion_task" in doc, doc
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/kill", {"dag_id": dag},
                             auth="basic")
        assert st == 200, doc
        assert run_state(sim, dag, "r3") == "failed" and run_state(sim, dag, "p1") == "failed"
        assert run_state(sim, dag, "r1") == "success"
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/kill", {"dag_id": dag},
                             auth="basic")
        assert st == 404
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/enable", {"dag_id": dag},
                             auth="basic")
        assert st == 200
        assert sim.req("GET", f"/api/v1/dags/{dag}", auth="basic")[2]["is_paused"] is False
        st, _, doc = sim.req("DELETE", f"/api/v1/openmetadata/delete?dag_id={dag}",
                             auth="basic")
        assert st == 200, doc
        assert sim.req("GET", f"/api/v1/dags/{dag}", auth="basic")[0] == 404
        assert sim.req("GET", f"/api/v1/dags/{dag}/dagRuns/r1", auth="basic")[0] == 404
        st, _, doc = sim.req("GET", "/api/v1/openmetadata/deploy", auth="basic")
        assert st == 405
        st, _, doc = sim.req("GET", "/api/v1/importErrors", auth="basic")
        assert st == 200 and doc["total_entries"] == 0
        V1.check("ImportErrorCollection", doc)
        # Airflow 2's connexion validates strictly: an undeclared query parameter is a 400
        # (3.x's filter for import errors does not exist on 2.x), declared ones pass.
        st, _, doc = sim.req("GET", "/api/v1/importErrors?filename_pattern=x&limit=5",
                             auth="basic")
        assert st == 400 and doc["detail"] == \
            "Extra query parameter(s) filename_pattern not in spec", (st, doc)
        check_v1_error(doc, 400)
        st, _, doc = sim.req("GET", "/api/v1/importErrors?limit=100&order_by=-timestamp",
                             auth="basic")
        assert st == 200, (st, doc)
        st, _, doc = sim.req("PATCH", "/api/v1/dags/svc_usage?update_mask=is_paused&x=1",
                             {"is_paused": True}, auth="basic")
        assert st == 400 and "x not in spec" in doc["detail"], (st, doc)
        st, _, doc = sim.req("GET", "/api/v1/dags/svc_usage/dagRuns/u1?fields=state",
                             auth="basic")
        assert st == 200, (st, doc)

        # Keep-alive: many requests on one connection.
        c = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
        hdr = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
        for _ in range(200):
            c.request("GET", "/api/v1/dags/svc_usage/dagRuns/u1", headers=hdr)
            r = c.getresponse()
            assert r.status == 200
            r.read()
        c.close()

        # The request log: order, fields, no control requests.
        log = sim.log()
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        assert all(not e["path"].startswith("/_sim") for e in log)
        first = log[0]
        assert (first["method"], first["path"], first["auth"], first["status"],
                first["body"], first["query"]) == ("GET", "/api/v1/dags/x", "none", 401,
                                                   None, None), first
        deploys = [e for e in log if e["path"] == "/api/v1/openmetadata/deploy"
                   and e["status"] == 200]
        assert deploys[0]["body"]["name"] == name and deploys[0]["auth"] == "basic"
        raw = [e for e in log if e["body"] == "not json"]
        assert raw and raw[0]["status"] == 400
        patches = [e for e in log if e["method"] == "PATCH" and e["query"]]
        assert patches[0]["query"] == "update_mask=is_paused"
        assert all(isinstance(e["t_ms"], int) for e in log)
        assert all(a["t_ms"] <= b["t_ms"] for a, b in zip(log, log[1:]))
        only = sim.log(path="/api/v1/openmetadata/")
        assert only and only == [e for e in log if e["path"].startswith("/api/v1/openmetadata/")]
        tail = sim.log(since=log[-3]["seq"])
        assert [e["seq"] for e in tail] == [log[-2]["seq"], log[-1]["seq"]]
        st, _, doc = sim.req("DELETE", "/_sim/requests")
        assert st == 200 and doc["cleared"] == len(log)
        assert sim.log() == []
        sim.req("GET", "/api/v1/version")
        after = sim.log()
        assert len(after) == 1 and after[0]["seq"] == len(log) + 1

        # State view.
        st, _, state = sim.req("GET", "/_sim/state")
        assert st == 200 and state["api"] == "v1"
        assert [d["dag_id"] for d in state["dags"]] == ["svc_usage"]
        assert state["dags"][0]["runs"][0]["state"] == "failed"
    finally:
        sim.stop()


def test_v2_flow():
    sim = Sim({"parse_delay_ms": 50,
               "pipelines": {"*": {"queued_ms": 20, "running_ms": 100}}},
              args=["--api", "v2"])
    try:
        st, _, doc = sim.req("GET", "/api/v2/version")
        assert st == 200 and doc == {"version": "3.0.2", "git_version": None}, doc
        V2.check("VersionInfo", doc)
        # What nothing serves answers as Airflow 3's catch-all routes (GET only) do.
        st, _, doc = sim.req("GET", "/api/v1/dags/x", auth="basic")
        assert st == 404 and doc["error"].startswith("/api/v1 has been removed"), doc
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("x"),
                             auth="basic")
        assert st == 405 and doc == {"detail": "Method Not Allowed"}, (st, doc)
        st, _, doc = sim.req("GET", "/api/v2/nothing", auth="basic")
        assert st == 404 and doc == {"error": "API route not found"}, (st, doc)
        st, hd, doc = sim.req("GET", "/dags/x/grid")
        assert st == 200 and hd["Content-Type"].startswith("text/html"), (st, hd)
        assert isinstance(doc, str) and doc.startswith("<!doctype html>"), doc
        st, _, doc = sim.req("DELETE", "/anything")
        assert st == 405, st

        # Tokens.
        st, _, doc = sim.req("POST", "/auth/token", {"username": "admin", "password": "x"})
        assert st == 401 and "detail" in doc
        V2.check("HTTPExceptionResponse", doc)
        st, _, doc = sim.req("POST", "/auth/token", {"username": "admin"})
        assert st == 422, (st, doc)
        V2.check("HTTPValidationError", doc)
        st, _, doc = sim.req("POST", "/auth/token", {"username": "admin", "password": "admin"})
        assert st == 201 and isinstance(doc["access_token"], str), doc
        tok = doc["access_token"]
        assert tok.count(".") == 2
        st, _, doc = sim.req("GET", "/api/v2/dags/x")
        assert st == 401 and doc == {"detail": "Not authenticated"}, doc
        st, _, doc = sim.req("GET", "/api/v2/dags/x", auth="basic")
        assert st == 401
        st, _, doc = sim.req("GET", "/api/v2/dags/x", auth=tok + "x")
        assert st == 403 and "token" in doc["detail"].lower(), doc
        st, _, doc = sim.req("GET", "/api/v2/dags/x", auth=tok)
        assert st == 404
        V2.check("HTTPExceptionResponse", doc)

        # Deploy on both 3.x plugin paths, Basic auth.
        st, _, doc = sim.req("POST", "/pluginsv2/api/v2/openmetadata/deploy",
                             pipeline("svc.metadata"), auth=tok)
        assert st == 401, "plugin routes take Basic auth"
        st, _, doc = sim.req("POST", "/pluginsv2/api/v2/openmetadata/deploy",
                             pipeline("svc.metadata"), auth="basic")
        assert st == 200 and "svc_metadata" in doc["message"], doc
        st, _, doc = sim.req("POST", "/api/v2/openmetadata/deploy",
                             pipeline("svc.lineage", "lineage"), auth="basic")
        assert st == 200, doc
        dag = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(
            sim.req("GET", "/api/v2/dags/svc_metadata", auth=tok)), "DAG parsed")
        V2.check("DAGResponse", dag)
        assert dag["is_paused"] is True

        # PATCH DAG: body validation as FastAPI does it.
        st, _, doc = sim.req("PATCH", "/api/v2/dags/svc_metadata?update_mask=is_paused",
                             {"is_paused": False, "x": 1}, auth=tok)
        assert st == 422
        V2.check("HTTPValidationError", doc)
        st, _, doc = sim.req("PATCH", "/api/v2/dags/svc_metadata?update_mask=is_paused",
                             {"is_paused": False}, auth=tok)
        assert st == 200 and doc["is_paused"] is False
        V2.check("DAGResponse", doc)

        # Trigger: logical_date key required, unknown keys rejected.
        st, _, doc = sim.req("POST", "/api/v2/dags/svc_metadata/dagRuns",
                             {"dag_run_id": "a1"}, auth=tok)
        assert st == 422 and doc["detail"][0]["loc"] == ["body", "logical_date"], doc
        V2.check("HTTPValidationError", doc)
        st, _, doc = sim.req("POST", "/api/v2/dags/svc_metadata/dagRuns",
                             {"dag_run_id": "a1", "logical_date": None, "execution_date": None},
                             auth=tok)
        assert st == 422 and doc["detail"][0]["type"] == "extra_forbidden", doc
        st, _, doc = sim.req("POST", "/api/v2/dags/nope/dagRuns",
                             {"dag_run_id": "a1", "logical_date": None}, auth=tok)
        assert st == 404
        st, _, run = sim.req("POST", "/api/v2/dags/svc_metadata/dagRuns",
                             {"dag_run_id": "a1", "logical_date": None, "conf": {}}, auth=tok)
        assert st == 200 and run["state"] == "queued" and run["logical_date"] is None, run
        V2.check("DAGRunResponse", run)
        check_times(run, V2_TIME, ("queued_at", "run_after", "start_date", "end_date"))
        assert sim.req("GET", "/api/v2/dags/svc_metadata?bogus=1", auth=tok)[0] == 200
        st, _, doc = sim.req("POST", "/api/v2/dags/svc_metadata/dagRuns",
                             {"dag_run_id": "a1", "logical_date": None}, auth=tok)
        assert st == 409, st
        V2.check("HTTPExceptionResponse", doc)
        wait_for(lambda: run_state(sim, "svc_metadata", "a1", tok, "v2") == "success",
                 "v2 success")
        st, _, run = sim.req("GET", "/api/v2/dags/svc_metadata/dagRuns/a1", auth=tok)
        V2.check("DAGRunResponse", run)
        assert run["duration"] is not None and run["start_date"] and run["end_date"]
        check_times(run, V2_TIME, ("queued_at", "start_date", "end_date"))
        st, _, doc = sim.req("GET", "/api/v2/dags/svc_metadata/dagRuns", auth=tok)
        V2.check("DAGRunCollectionResponse", doc)
        st, _, doc = sim.req("PATCH", "/api/v2/dags/svc_metadata/dagRuns/a1",
                             {"state": "bogus"}, auth=tok)
        assert st == 422
        V2.check("HTTPValidationError", doc)
        st, _, run = sim.req("PATCH", "/api/v2/dags/svc_metadata/dagRuns/a1",
                             {"state": "failed"}, auth=tok)
        assert st == 200 and run["state"] == "failed"
        V2.check("DAGRunResponse", run)
        st, _, doc = sim.req("GET", "/api/v2/dags/svc_metadata/dagRuns/zz", auth=tok)
        assert st == 404
        V2.check("HTTPExceptionResponse", doc)
        st, _, doc = sim.req("GET", "/api/v2/importErrors", auth=tok)
        assert st == 200
        V2.check("ImportErrorCollectionResponse", doc)

        # A DAG with import errors: 3.x lists its file relative to the bundle (the DAG's
        # relative_fileloc, which filename_pattern matches), and refuses to trigger it.
        sc = sim.req("GET", "/_sim/scenario")[2]
        sim.scenario(dict(sc, dags={"broken": {"exists": True, "import_error": "Trace"}}))
        st, _, bdag = sim.req("GET", "/api/v2/dags/broken", auth=tok)
        assert st == 200 and bdag["has_import_errors"] is True, bdag
        st, _, doc = sim.req("GET", "/api/v2/importErrors?filename_pattern=broken", auth=tok)
        V2.check("ImportErrorCollectionResponse", doc)
        assert [(e["filename"], e["stack_trace"]) for e in doc["import_errors"]] == \
            [(bdag["relative_fileloc"], "Trace")], doc
        assert bdag["fileloc"].endswith("/" + bdag["relative_fileloc"]), bdag
        check_times(doc["import_errors"][0], V2_TIME, ("timestamp",))
        st, _, doc = sim.req("GET", "/api/v2/importErrors?filename_pattern=nope", auth=tok)
        assert doc["total_entries"] == 0, doc
        st, _, doc = sim.req("POST", "/api/v2/dags/broken/dagRuns",
                             {"dag_run_id": "b1", "logical_date": None}, auth=tok)
        assert st == 400 and "import errors" in doc["detail"], (st, doc)
        V2.check("HTTPExceptionResponse", doc)
        assert sim.req("GET", "/api/v2/dags/broken/dagRuns/b1", auth=tok)[0] == 404
        sim.scenario(sc)
        st, _, doc = sim.req("GET", "/pluginsv2/api/v2/openmetadata/status?dag_id=svc_metadata",
                             auth="basic")
        assert st == 200 and doc[0]["pipelineState"] == "failed"

        # Log shows bearer vs basic.
        log = sim.log()
        kinds = {(e["path"], e["auth"]) for e in log}
        assert ("/api/v2/dags/svc_metadata", "bearer") in kinds
        assert ("/pluginsv2/api/v2/openmetadata/deploy", "basic") in kinds

        # Plugin route switches: a prefix without the plugin is a path nothing serves.
        sim.scenario({"api": "v2", "faults": {"plugin_v2_fallback_404": True}})
        assert sim.req("POST", "/api/v2/openmetadata/deploy", pipeline("q"),
                       auth="basic")[0] == 405
        st, _, doc = sim.req("GET", "/api/v2/openmetadata/health-auth", auth="basic")
        assert st == 404 and doc == {"error": "API route not found"}, (st, doc)
        assert sim.req("POST", "/pluginsv2/api/v2/openmetadata/deploy", pipeline("q"),
                       auth="basic")[0] == 200
        sim.scenario({"api": "v2", "faults": {"plugin_pluginsv2_404": True}})
        assert sim.req("POST", "/pluginsv2/api/v2/openmetadata/deploy", pipeline("q"),
                       auth="basic")[0] == 405
        st, hd, doc = sim.req("GET", "/pluginsv2/api/v2/openmetadata/health-auth",
                              auth="basic")
        assert st == 200 and hd["Content-Type"].startswith("text/html"), (st, hd)
        assert sim.req("POST", "/api/v2/openmetadata/deploy", pipeline("q"),
                       auth="basic")[0] == 200

        # Token expiry (the lifetime is the scenario's when the token is issued).
        sim.scenario({"api": "v2", "token_ttl_ms": 300})
        tok = sim.req("POST", "/auth/token", {"username": "admin", "password": "admin"})[2][
            "access_token"]
        time.sleep(0.4)
        st, _, doc = sim.req("GET", "/api/v2/dags/svc_metadata", auth=tok)
        assert st == 401 and doc == {"detail": "Token Expired"}, (st, doc)
        sim.scenario({"api": "v2"})
        # Restart with tokens=1 invalidates fresh tokens too.
        tok = sim.req("POST", "/auth/token", {"username": "admin", "password": "admin"})[2][
            "access_token"]
        assert sim.req("GET", "/api/v2/dags/svc_metadata", auth=tok)[0] == 200
        sim.req("POST", "/_sim/restart?tokens=1")
        assert sim.req("GET", "/api/v2/dags/svc_metadata", auth=tok)[0] == 403

        # Switching generation at runtime.
        sim.scenario({"api": "v1"})
        assert sim.req("GET", "/api/v2/version")[0] == 404
        assert sim.req("GET", "/api/v1/dags/svc_metadata", auth="basic")[0] == 200
    finally:
        sim.stop()


def statuses(sim, n, path="/api/v1/version"):
    return [sim.req("GET", path, auth="basic")[0] for _ in range(n)]


def test_faults():
    sim = Sim({"api": "v1"})
    try:
        # Error rate with statuses, deterministic given the seed.
        sc = {"api": "v1", "seed": 7, "faults": {"error_rate": 0.4,
                                                  "error_status": [502, 503, 500]}}
        sim.scenario(sc)
        a = statuses(sim, 40)
        sim.scenario(sc)
        b = statuses(sim, 40)
        assert a == b, (a, b)
        assert {502, 503, 500} <= set(a) and 200 in a, a
        st, _, doc = sim.req("GET", "/api/v1/dags/x", auth="basic")
        sim.scenario({"api": "v1", "faults": {"error_rate": 1.0, "error_status": 503}})
        st, _, doc = sim.req("GET", "/api/v1/dags/x", auth="basic")
        assert st == 503
        check_v1_error(doc, 503)
        st, _, doc = sim.req("GET", "/api/v1/openmetadata/health")
        assert st == 503 and doc == {"error": "An unexpected problem occurred"}, doc

        # 429 every third request, with Retry-After.
        sim.scenario({"api": "v1", "faults": {"rate_limit_every": 3, "retry_after_s": 7}})
        got = []
        for _ in range(6):
            st, hd, _ = sim.req("GET", "/api/v1/version")
            got.append(st)
            if st == 429:
                assert hd.get("Retry-After") == "7", hd
        assert got == [200, 200, 429, 200, 200, 429], got

        # A burst of 503s.
        sim.scenario({"api": "v1", "faults": {"error_burst": {"after": 2, "count": 3,
                                                              "status": 503}}})
        assert statuses(sim, 7) == [200, 200, 503, 503, 503, 200, 200]

        # Connection resets.
        sim.scenario({"api": "v1", "faults": {"reset_rate": 1.0}})
        st, _, _ = sim.req("GET", "/api/v1/version")
        assert st == 0
        log = sim.log()
        assert log[-1]["status"] == 0

        # Faults limited to some paths.
        sim.scenario({"api": "v1", "faults": {"error_rate": 1.0, "paths": ["/api/v1/dags"]}})
        assert sim.req("GET", "/api/v1/version")[0] == 200
        assert sim.req("GET", "/api/v1/dags/x", auth="basic")[0] == 503

        # Latency with timers: answers are late, but the loop keeps serving others.
        sim.scenario({"api": "v1", "faults": {"latency_ms": 1000, "paths": ["/api/v1/dags"]}})
        results = []
        th = threading.Thread(target=lambda: results.append(
            sim.req("GET", "/api/v1/dags/x", auth="basic")[0]))
        t0 = time.monotonic()
        th.start()
        time.sleep(0.05)
        assert sim.req("GET", "/api/v1/version")[0] == 200
        assert time.monotonic() - t0 < 0.95, "latency blocked other requests"
        th.join()
        # libevent's timers run on the coarse monotonic clock (a few ms of
        # granularity): "late by 1 s" is checked with that much slack.
        assert results == [404], results
        assert time.monotonic() - t0 >= 0.95, time.monotonic() - t0
        sim.scenario({"api": "v1", "faults": {"latency_ms": 50, "latency_jitter_ms": 100}})
        t0 = time.monotonic()
        sim.req("GET", "/api/v1/version")
        assert 0.05 <= time.monotonic() - t0 < 2

        # Outage window from the scenario, relative to its load.
        sim.scenario({"api": "v1", "faults": {"outage": {"start_ms": 0, "duration_ms": 800}}})
        st, _, doc = sim.req("GET", "/api/v1/version")
        assert st == 503
        time.sleep(0.85)
        assert sim.req("GET", "/api/v1/version")[0] == 200
        # Outage on demand, as resets.
        sim.scenario({"api": "v1"})
        st, _, _ = sim.req("POST", "/_sim/outage?ms=800&mode=reset")
        assert st == 200
        assert sim.req("GET", "/api/v1/version")[0] == 0
        assert sim.req("GET", "/api/v1/openmetadata/health")[0] == 0
        time.sleep(0.85)
        assert sim.req("GET", "/api/v1/version")[0] == 200
        assert sim.req("POST", "/_sim/outage")[0] == 400

        # Worker died, outcome lists, import errors, parse delays, pre-existing DAGs.
        sim.scenario({"api": "v1", "parse_delay_ms": 0,
                      "pipelines": {"$comment": "ignored", "*": {"queued_ms": 0,
                                                                 "running_ms": 50}},
                      "dags": {"dead": {"outcome": "worker_died", "exists": True,
                                        "is_paused": False},
                               "flaky": {"outcome": ["failed", "success"], "exists": True,
                                         "is_paused": False},
                               "broken": {"import_error": "Traceback: ModuleNotFoundError",
                                          "exists": True},
                               "slow": {"parse_delay_ms": 1500}}})
        sim.req("POST", "/api/v1/dags/dead/dagRuns", {"dag_run_id": "d1"}, auth="basic")
        time.sleep(0.3)
        assert run_state(sim, "dead", "d1") == "running"
        sim.req("POST", "/api/v1/openmetadata/kill", {"dag_id": "dead"}, auth="basic")
        assert run_state(sim, "dead", "d1") == "failed"
        sim.req("POST", "/api/v1/dags/flaky/dagRuns", {"dag_run_id": "f1"}, auth="basic")
        sim.req("POST", "/api/v1/dags/flaky/dagRuns", {"dag_run_id": "f2"}, auth="basic")
        sim.req("POST", "/api/v1/dags/flaky/dagRuns", {"dag_run_id": "f3"}, auth="basic")
        time.sleep(0.15)
        assert [run_state(sim, "flaky", r) for r in ("f1", "f2", "f3")] == \
            ["failed", "success", "success"]
        st, _, doc = sim.req("GET", "/api/v1/dags/broken", auth="basic")
        assert st == 200 and doc["has_import_errors"] is True, doc
        st, _, doc = sim.req("GET", "/api/v1/importErrors", auth="basic")
        V1.check("ImportErrorCollection", doc)
        assert doc["total_entries"] == 1
        ie = doc["import_errors"][0]
        assert ie["stack_trace"] == "Traceback: ModuleNotFoundError"
        st, _, dagdoc = sim.req("GET", "/api/v1/dags/broken", auth="basic")
        assert ie["filename"] == dagdoc["fileloc"]
        check_times(ie, V1_TIME, ("timestamp",))
        st, _, doc = sim.req("POST", "/api/v1/dags/broken/dagRuns", {"dag_run_id": "b1"},
                             auth="basic")
        assert st == 400 and doc["title"] == "DAG cannot be triggered", (st, doc)
        check_v1_error(doc, 400)
        assert sim.req("GET", "/api/v1/dags/broken/dagRuns/b1", auth="basic")[0] == 404
        sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("slow"), auth="basic")
        sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("fast"), auth="basic")
        time.sleep(0.2)
        assert sim.req("GET", "/api/v1/dags/fast", auth="basic")[0] == 200
        assert sim.req("GET", "/api/v1/dags/slow", auth="basic")[0] == 404
        wait_for(lambda: sim.req("GET", "/api/v1/dags/slow", auth="basic")[0] == 200,
                 "slow parse")

        # A lost reply: the trigger takes effect, the answer never comes; a retry gets 409.
        sc = sim.req("GET", "/_sim/scenario")[2]
        lost = dict(sc, faults={"lost_reply_rate": 1.0, "paths": ["/api/v1/dags/flaky"]})
        sim.scenario(lost)
        st, _, _ = sim.req("POST", "/api/v1/dags/flaky/dagRuns", {"dag_run_id": "L1"},
                           auth="basic")
        assert st == 0
        assert sim.log()[-1]["status"] == 0
        sim.scenario(dict(sc, dags=dict(sc["dags"], nodeploy={"deploy_status": 500})))
        st, _, _ = sim.req("POST", "/api/v1/dags/flaky/dagRuns", {"dag_run_id": "L1"},
                           auth="basic")
        assert st == 409
        assert sim.req("GET", "/api/v1/dags/flaky/dagRuns/L1", auth="basic")[0] == 200

        # A deploy the plugin fails.
        st, _, doc = sim.req("POST", "/api/v1/openmetadata/deploy", pipeline("nodeploy"),
                             auth="basic")
        assert st == 500 and doc == {"error": "An unexpected problem occurred"}, doc
        time.sleep(0.05)
        assert sim.req("GET", "/api/v1/dags/nodeploy", auth="basic")[0] == 404

        # Restart forgets runs (404), keeps DAGs; dags=1 forgets those too.
        assert sim.req("POST", "/_sim/restart")[0] == 200
        assert sim.req("GET", "/api/v1/dags/flaky/dagRuns/f1", auth="basic")[0] == 404
        assert sim.req("GET", "/api/v1/dags/slow", auth="basic")[0] == 200
        sim.req("POST", "/_sim/restart?dags=1")
        assert sim.req("GET", "/api/v1/dags/slow", auth="basic")[0] == 404
        assert sim.req("GET", "/api/v1/dags/flaky", auth="basic")[0] == 200  # exists: true

        # Bad scenarios are refused with the key path; the old one stays.
        st, _, doc = sim.req("PUT", "/_sim/scenario", {"faults": {"eror_rate": 1}})
        assert st == 400 and "faults.eror_rate" in doc["error"], doc
        st, _, doc = sim.req("PUT", "/_sim/scenario", {"dags": {"a": {"outcome": "maybe"}}})
        assert st == 400 and "dags.a.outcome" in doc["error"], doc
        assert sim.req("GET", "/api/v1/dags/flaky", auth="basic")[0] == 200
        st, _, doc = sim.req("PUT", "/_sim/scenario", {"proxy_401": "/api/"})
        assert st == 400 and "proxy_401" in doc["error"], doc

        # A protected /version (the generation's credentials), and a proxy in
        # front that refuses whatever comes, before any fault.
        sim.scenario({"version_auth": True, "proxy_401": ["/api/v2/"],
                      "faults": {"error_rate": 1}})
        st, hd, doc = sim.req("GET", "/api/v2/version", auth="basic")
        assert st == 401 and hd.get("WWW-Authenticate") == 'Basic realm="proxy"', hd
        assert "401 Authorization Required" in doc, doc
        assert sim.req("GET", "/api/v1/version")[0] == 503   # the fault, not the proxy
        sim.scenario({"version_auth": True})
        st, _, doc = sim.req("GET", "/api/v1/version")
        assert st == 401 and doc["detail"] == "No credentials provided", doc
        st, _, doc = sim.req("GET", "/api/v1/version", auth="basic")
        assert st == 200 and doc["version"].startswith("2."), doc
        sim.scenario({"api": "v2", "version_auth": True})
        st, _, doc = sim.req("GET", "/api/v2/version")
        assert st == 401 and doc == {"detail": "Not authenticated"}, doc
        st, _, tok = sim.req("POST", "/auth/token", {"username": "admin",
                                                     "password": "admin"})
        st, _, doc = sim.req("GET", "/api/v2/version", auth=tok["access_token"])
        assert st == 200 and doc["version"].startswith("3."), doc
        assert sim.req("GET", "/api/v1/version", auth="basic")[0] == 404
        sim.scenario({"api": "v1"})

        # Hard body limit.
        st, _, _ = sim.req("POST", "/api/v1/openmetadata/deploy", raw="x" * (5 << 20),
                           auth="basic")
        assert st in (0, 413), st
    finally:
        sim.stop()


def test_cli_and_signals():
    r = subprocess.run([SIM, "--listen", "0.0.0.0:0"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "127.0.0.1" in r.stderr
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write('{"api": "v3"}')
        f.flush()
        r = subprocess.run([SIM, "--scenario", f.name], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2 and "scenario.api" in r.stderr, r.stderr
    # The sample scenarios load.
    sdir = os.path.join(SRC, "tests", "data", "scenarios")
    for name in sorted(os.listdir(sdir)):
        sim = Sim(args=["--scenario", os.path.join(sdir, name)])
        sim.stop()
    # SIGTERM with an answer still waiting for its latency: prompt exit 0.
    sim = Sim({"faults": {"latency_ms": 5000}})
    th = threading.Thread(target=lambda: sim.req("GET", "/api/v1/version", timeout=10))
    th.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    sim.stop()
    assert time.monotonic() - t0 < 3
    th.join()
    sim = Sim()
    sim.proc.send_signal(signal.SIGINT)
    assert sim.proc.wait(timeout=10) == 0


def main():
    if not os.path.exists(SIM):
        print(f"missing {SIM}", file=sys.stderr)
        return 1
    tests = [test_v1_flow, test_v2_flow, test_faults, test_cli_and_signals]
    for t in tests:
        t0 = time.monotonic()
        t()
        print(f"ok {t.__name__} ({time.monotonic() - t0:.1f}s)")
        assert time.monotonic() < DEADLINE, "suite too slow"
    return 0


if __name__ == "__main__":
    sys.exit(main())
