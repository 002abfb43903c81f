"""sched_itlib — helpers for the scheduler's integration tests (it_sched_*.py):
start the Airflow simulator, run build*/tool_sched against it, read the
simulator's request log and check what Airflow received."""
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

SRC = os.environ.get("AP_SRC", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("AP_BUILD", os.path.join(SRC, "build"))
SIM = os.path.join(BUILD, "sim_airflow")
TOOL = os.path.join(BUILD, "tool_sched")

TRIGGER_RE = re.compile(r"^/api/v[12]/dags/([^/]+)/dagRuns$")
RUN_RE = re.compile(r"^/api/v[12]/dags/([^/]+)/dagRuns/([^/]+)$")


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


_LIVE = []


@atexit.register
def _close_all():
    """A test that fails (sys.exit) leaves no simulator behind."""
    for sim in _LIVE:
        sim.close()


class Sim:
    def __init__(self, scenario, api="v1"):
        _LIVE.append(self)
        self.dir = tempfile.mkdtemp(prefix="it_sched.")
        path = os.path.join(self.dir, "scenario.json")
        with open(path, "w") as f:
            json.dump(scenario, f)
        self.proc = subprocess.Popen(
            [SIM, "--listen", "127.0.0.1:0", "--scenario", path, "--api", api, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.close()
            fail("simulator did not start: %r" % line)
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def requests(self):
        return self.call("GET", "/_sim/requests")

    def close(self):
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)


def tool_args(sim, state, extra):
    return [TOOL, "--state", state, "--airflow-url", sim.url, "--lease-ms", "2000",
            "--sched", json.dumps({"poll_initial_ms": 50, "poll_max_ms": 400,
                                   "poll_floor_ms": 20, "dag_parse_deadline_s": 20,
                                   "unreachable_retry_max_ms": 500})] + extra


def run_tool(sim, state, extra, timeout=80):
    p = subprocess.run(tool_args(sim, state, extra), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    runs = None
    for line in p.stdout.splitlines():
        if line.startswith("["):
            runs = json.loads(line)
    return p.returncode, p.stdout, p.stderr, runs


def agents_of(run):
    return {a["agent"]: a for a in run["agents"]}


def triggers(reqs):
    """POST dagRuns requests: (dag_id, dag_run_id, status, t_ms)."""
    out = []
    for r in reqs:
        m = TRIGGER_RE.match(r["path"])
        if r["method"] == "POST" and m:
            body = r["body"] if isinstance(r["body"], dict) else {}
            out.append((m.group(1), body.get("dag_run_id"), r["status"], r["t_ms"]))
    return out


def check_no_double_trigger(reqs):
    """Each dag_run_id got at most one 2xx answer to POST dagRuns."""
    seen = {}
    for dag, rid, status, _ in triggers(reqs):
        if 200 <= status < 300:
            seen[rid] = seen.get(rid, 0) + 1
    dup = {k: v for k, v in seen.items() if v > 1}
    check(not dup, "dag_run_ids triggered more than once: %s" % dup)
    return seen


def first_t(reqs, method, pattern, agent):
    for r in reqs:
        if r["method"] == method and re.search(pattern, r["path"]) and agent in r["path"]:
            return r["t_ms"]
    return None


def last_t(reqs, method, pattern, agent):
    t = None
    for r in reqs:
        if r["method"] == method and re.search(pattern, r["path"]) and agent in r["path"]:
            t = r["t_ms"]
    return t


def deploy_t(reqs, agent, which=0):
    """t_ms of a deploy (POST .../openmetadata/deploy) whose pipeline name has agent."""
    ts = [r["t_ms"] for r in reqs if r["method"] == "POST" and r["path"].endswith("/deploy")
          and isinstance(r["body"], dict) and agent in (r["body"].get("name") or "")]
    return ts[which] if ts else None
