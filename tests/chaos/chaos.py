#!/usr/bin/env python3
"""chaos.py — make chaos: autopilot under crashes, Airflow faults and a failing disk.

Scenarios (each bounded in time; a table at the end; exit 1 if any fails):

  kill9       `autopilot serve` is killed with SIGKILL at random moments (>= CHAOS_KILLS, default
              50) and restarted each time, while CHAOS_SERVICES (default 500) signed
              ChangeEvents are delivered the way OpenMetadata delivers them (retried until 2xx)
              and their runs go through the Airflow simulator. Then: every acknowledged event is
              exactly one run (inbox -> run_id, the run_id every 2xx answer named), every run is
              final, every agent ran exactly once, and the simulator's request log shows no
              dag_run_id answered 2xx twice to a trigger (no agent triggered twice for one attempt).
  5xx         20 % of Airflow answers are 502/503/504: every run succeeds (retries).
  429         every 4th Airflow answer is 429 with Retry-After: 1: every run succeeds.
  outage      Airflow answers 503 for 60 s (CHAOS_OUTAGE_S) mid-run: every run succeeds after it.
  proxy404    for 15 s mid-run a proxy in front of Airflow answers every path with its own HTML
              404 (an ingress during a rollout): no run is taken for lost, every run succeeds.
  latency     latency spikes (0-1.5 s on every answer): every run succeeds.
  worker-died the profiler's worker dies (the run stays "running" in Airflow): the profiler
              ends timed_out after its timeout, the run failed with that reason, and autopilot
              marked the Airflow run failed (PATCH state=failed).
  forget      Airflow restarts mid-run and forgets its runs: those agents end lost, runs final.
  parse-delay DAGs take longer to parse than dag_parse_deadline_s: metadata fails with the
              deadline as reason, its dependents do not run, runs final.
  mixed       5xx + 429 + latency + lost replies + a short outage together: every run succeeds,
              no double trigger.
  disk        the state directory is a small ext4 image (loop device): filled up (ENOSPC), then
              turned read-only by a filesystem error; meanwhile the webhook answers 503 (never
              a 2xx it cannot keep), and after the disk is back (space freed; for read-only,
              e2fsck, mount and restart) the same events are accepted; nothing acknowledged is
              lost (checked after a restart). Needs root, a loop device and e2fsprogs;
              reported as skipped otherwise.

For every scenario the peak RSS of the autopilot process is sampled (target < 200 MB).

Environment: AP_BUILD (build dir, default build/), CHAOS_ONLY="kill9 5xx ..." (subset),
CHAOS_SERVICES, CHAOS_KILLS, CHAOS_FAULT_SERVICES (default 40), CHAOS_OUTAGE_S (60),
CHAOS_SEED, CHAOS_DRIVER=serve|tool (tool: build/tool_sched drives the scheduler and store
directly, no webhook; used when `autopilot serve` is not built).
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("AP_BUILD", os.path.join(SRC, "build"))
BIN = os.path.join(BUILD, "autopilot")
SIM = os.path.join(BUILD, "sim_airflow")
TOOL = os.path.join(BUILD, "tool_sched")
SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
rnd = random.Random(SEED)
SECRET = "chaos-secret-%d" % SEED
ADMIN = "chaos-admin-%d" % SEED
FINAL_RUN = ("succeeded", "failed")
FINAL_AGENT = ("succeeded", "failed", "timed_out", "skipped", "lost")
TRIGGER_RE = re.compile(r"^/api/v[12]/dags/([^/]+)/dagRuns$")
RUN_RE = re.compile(r"^/api/v[12]/dags/([^/]+)/dagRuns/([^/]+)$")
RSS_LIMIT_MB = 200


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def log(msg):
    print("chaos: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class Sim:
    def __init__(self, scenario, workdir):
        path = os.path.join(workdir, "scenario.json")
        with open(path, "w") as f:
            json.dump(scenario, f)
        self.proc = subprocess.Popen([SIM, "--listen", "127.0.0.1:0", "--scenario", path, "--quiet"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.close()
            raise Failure("simulator did not start: %r" % line)
        self.url = "http://127.0.0.1:%s" % m.group(1)

    def call(self, method, path, timeout=60):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=b"" if method in ("POST", "PUT") else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def requests(self):
        return self.call("GET", "/_sim/requests", timeout=300)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RssSampler(threading.Thread):
    """Samples the RSS of whatever process get_pid() names, every 0.2 s."""

    def __init__(self, get_pid):
        super().__init__(daemon=True)
        self.get_pid = get_pid
        self.peak = 0.0
        self.samples = []
        self.stop_ev = threading.Event()
        self.start()

    def run(self):
        while not self.stop_ev.wait(0.2):
            pid = self.get_pid()
            if pid:
                r = rss_mb(pid)
                if r > 0:
                    self.samples.append(r)
                    self.peak = max(self.peak, r)

    def stop(self):
        self.stop_ev.set()
        self.join()


class Serve:
    """autopilot serve on 127.0.0.1, port 0; restartable."""

    def __init__(self, workdir, state, airflow_url, config):
        self.workdir = workdir
        self.state = state
        self.conf = os.path.join(workdir, "autopilot.json")
        cfg = {"state": {"path": state}, "airflow": {"url": airflow_url}, "log": {"level": "info"}}
        cfg.update(config)
        with open(self.conf, "w") as f:
            json.dump(cfg, f)
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self, timeout=30):
        env = dict(os.environ, AUTOPILOT_WEBHOOK_SECRET=SECRET, AUTOPILOT_AIRFLOW_USERNAME="admin",
                   AUTOPILOT_AIRFLOW_PASSWORD="admin", AUTOPILOT_ADMIN_TOKEN=ADMIN)
        logf = open(os.path.join(self.workdir, "serve.log"), "a")
        self.starts += 1
        logf.write("---- start %d\n" % self.starts)
        logf.flush()
        self.proc = subprocess.Popen([BIN, "serve", "-c", self.conf, "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=logf, env=env, text=True)
        logf.close()
        self.port = None
        # The port is read back from the first line naming 127.0.0.1:<port> (stdout or log).
        deadline = time.monotonic() + timeout
        out_lines = []

        def reader(p=self.proc):
            for line in p.stdout:
                out_lines.append(line)

        threading.Thread(target=reader, daemon=True).start()
        while time.monotonic() < deadline:
            for text in out_lines + [open(os.path.join(self.workdir, "serve.log")).read()
                                     .rsplit("---- start %d\n" % self.starts, 1)[-1]]:
                m = re.search(r"127\.0\.0\.1:(\d+)", text)
                if m and m.group(1) != "0":
                    self.port = int(m.group(1))
                    break
            if self.port:
                break
            if self.proc.poll() is not None:
                raise Failure("autopilot serve exited %d at start: %s" %
                              (self.proc.returncode, self.tail()))
            time.sleep(0.05)
        check(self.port, "autopilot serve did not report its port: %s" % self.tail())
        return self.port

    def tail(self, n=2000):
        try:
            return open(os.path.join(self.workdir, "serve.log")).read()[-n:]
        except OSError:
            return ""

    def pid(self):
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.port = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.port = None


# ---------------------------------------------------------------- events

def entity(fqn, i):
    return {"id": "ent-%s" % fqn, "name": fqn, "fullyQualifiedName": fqn, "serviceType": "Postgres",
            "connection": {"config": {"type": "Postgres", "hostPort": "pg%d.internal:5432" % i,
                                      "supportsMetadataExtraction": True,
                                      "supportsUsageExtraction": True,
                                      "supportsLineageExtraction": True,
                                      "supportsProfiler": True}},
            "version": 0.1, "deleted": False}


def change_event(event_id, fqn, i):
    return {"id": event_id, "eventType": "entityCreated", "entityType": "databaseService",
            "entityId": "ent-%s" % fqn, "entityFullyQualifiedName": fqn, "userName": "admin",
            "timestamp": 1764000000000 + i, "previousVersion": 0.1, "currentVersion": 0.1,
            "entity": entity(fqn, i)}


def sign(body):
    return "sha256=" + base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def readyz_store(port, timeout=15):
    """The "store" field of GET /readyz (None if it did not answer)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/readyz")
        r = c.getresponse()
        data = r.read()
        c.close()
        return json.loads(data).get("store")
    except (OSError, http.client.HTTPException, ValueError):
        return None


def post(port, body, timeout=10):
    """(status, parsed body or None); status 0 on a connection error."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/api/v1/webhooks/openmetadata", body=body,
                  headers={"Content-Type": "application/json", "X-OM-Signature": sign(body)})
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    except (OSError, http.client.HTTPException):
        return 0, None


class Feeder(threading.Thread):
    """Delivers events like OpenMetadata: each one retried until it gets a 2xx.
    Records every 2xx answer's run_id per event id (a repeat must name the same run)."""

    def __init__(self, get_port, events, gap_s=0.0):
        super().__init__(daemon=True)
        self.get_port = get_port
        self.events = events            # [(event_id, body bytes)]
        self.gap_s = gap_s
        self.acked = {}                 # event_id -> run_id
        self.answers = {}               # status -> count
        self.inconsistent = []
        self.error = None
        self.start()

    def deliver(self, eid, body):
        for _ in range(100000):
            port = self.get_port()
            if not port:
                time.sleep(0.02)
                continue
            st, js = post(port, body)
            self.answers[st] = self.answers.get(st, 0) + 1
            if 200 <= st < 300:
                rid = (js or {}).get("run_id")
                if rid is None:
                    self.error = "2xx without run_id for %s: %r" % (eid, js)
                    return
                if eid in self.acked and self.acked[eid] != rid:
                    self.inconsistent.append((eid, self.acked[eid], rid))
                self.acked[eid] = rid
                return
            time.sleep(0.05)
        self.error = "event %s never acknowledged" % eid

    def run(self):
        for eid, body in self.events:
            self.deliver(eid, body)
            if self.error:
                return
            if self.gap_s:
                time.sleep(self.gap_s)


# ---------------------------------------------------------------- the store

def store_runs(state):
    """{run_id: (fqn, state, error, {agent: (state, attempt, dag_run_id, error)})}"""
    c = sqlite3.connect("file:%s?mode=ro" % state, uri=True, timeout=30)
    try:
        runs = {}
        for rid, fqn, st, err in c.execute("SELECT run_id, fqn, state, error FROM runs"):
            runs[rid] = [fqn, st, err, {}]
        for rid, agent, st, att, drid, err in c.execute(
                "SELECT run_id, agent, state, attempt, dag_run_id, error FROM agent_runs"):
            if rid in runs:
                runs[rid][3][agent] = (st, att, drid, err)
        inbox = dict(c.execute("SELECT event_id, run_id FROM inbox"))
        return runs, inbox
    finally:
        c.close()


def wait_final(state, expect_runs, deadline_s, alive=None):
    """Waits until expect_runs runs exist and all are final (agents too)."""
    t_end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < t_end:
        if alive is not None and not alive():
            raise Failure("autopilot exited while runs were unfinished")
        try:
            runs, inbox = store_runs(state)
        except sqlite3.Error as e:
            last = str(e)
            time.sleep(0.5)
            continue
        open_runs = [r for r in runs.values() if r[1] not in FINAL_RUN or
                     any(a[0] not in FINAL_AGENT for a in r[3].values())]
        last = "%d runs, %d unfinished" % (len(runs), len(open_runs))
        if len(runs) >= expect_runs and not open_runs:
            return runs, inbox
        time.sleep(0.5)
    raise Failure("runs not final within %d s (%s)" % (deadline_s, last))


def triggers(reqs):
    out = []
    for r in reqs:
        m = TRIGGER_RE.match(r["path"])
        if r["method"] == "POST" and m:
            body = r["body"] if isinstance(r["body"], dict) else {}
            out.append((m.group(1), body.get("dag_run_id"), r["status"]))
    return out


def double_triggers(reqs):
    seen = {}
    for _, rid, st in triggers(reqs):
        if 200 <= st < 300:
            seen[rid] = seen.get(rid, 0) + 1
    return seen, {k: v for k, v in seen.items() if v > 1}


# ---------------------------------------------------------------- drivers

SCHED_FAST = {"poll_initial_ms": 100, "poll_max_ms": 1000, "poll_floor_ms": 50,
              "unreachable_retry_max_ms": 2000, "lease_ms": 2000, "rescan_ms": 500}


class ServeDriver:
    """Runs a batch through `autopilot serve` and signed webhook deliveries."""
    name = "serve"

    def __init__(self, workdir, sim, sched=None, agents=None, nservices=40, prefix="svc"):
        self.state = os.path.join(workdir, "state", "autopilot.db")
        os.makedirs(os.path.dirname(self.state), exist_ok=True)
        cfg = {"scheduler": dict(SCHED_FAST, **(sched or {}))}
        if agents:
            cfg["agents"] = agents
        self.serve = Serve(workdir, self.state, sim.url, cfg)
        self.events = []
        for i in range(nservices):
            fqn = "%s_%d" % (prefix, i)
            eid = "ev-%s-%d" % (prefix, i)
            self.events.append((eid, json.dumps(change_event(eid, fqn, i)).encode()))
        self.feeder = None

    def start(self):
        self.serve.start()

    def feed(self, gap_s=0.0):
        self.feeder = Feeder(lambda: self.serve.port, self.events, gap_s)

    def pid(self):
        return self.serve.pid()

    def alive(self):
        return self.serve.pid() is not None

    def wait_fed(self, timeout):
        self.feeder.join(timeout)
        check(not self.feeder.is_alive(), "events not all acknowledged within %d s" % timeout)
        check(self.feeder.error is None, str(self.feeder.error))
        check(not self.feeder.inconsistent, "a repeated event named another run: %s" %
              self.feeder.inconsistent[:3])

    def stop(self):
        self.serve.stop()


class ToolDriver:
    """The same batch through build/tool_sched (scheduler + store + Airflow client in one
    process, services accepted through the store's inbox): no webhook."""
    name = "tool"

    def __init__(self, workdir, sim, sched=None, agents=None, nservices=40, prefix="svc"):
        self.state = os.path.join(workdir, "state", "autopilot.db")
        os.makedirs(os.path.dirname(self.state), exist_ok=True)
        self.workdir = workdir
        a = (agents or {})
        timeout_s = min([v.get("timeout_s", 3600) for v in a.values()] or [3600])
        retries = min([v.get("retries", 0) for v in a.values()] or [0])
        self.args = [TOOL, "--state", self.state, "--airflow-url", sim.url, "--lease-ms", "2000",
                     "--services", str(nservices), "--prefix", prefix, "--quiet",
                     "--timeout-ms", str(timeout_s * 1000), "--retries", str(retries),
                     "--deadline-s", "900",
                     "--sched", json.dumps(dict(SCHED_FAST, **(sched or {})))]
        self.proc = None
        self.feeder = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.workdir, "tool.log"), "a"))

    def feed(self, gap_s=0.0):
        pass

    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def alive(self):
        return True     # tool_sched exits by itself once the batch is final

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wait_fed(self, timeout):
        pass

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


DRIVER = None


def make_driver(*a, **kw):
    return (ServeDriver if DRIVER == "serve" else ToolDriver)(*a, **kw)


# ---------------------------------------------------------------- scenarios

FAST_RUNS = {"parse_delay_ms": 200, "seed": SEED,
             "pipelines": {"*": {"queued_ms": 50, "running_ms": 800, "outcome": "success"}}}


def fault_batch(workdir, scenario, nservices, deadline_s, sched=None, agents=None, during=None):
    """Runs nservices through a simulator with scenario; returns (runs, inbox, reqs, driver, rss)."""
    sim = Sim(scenario, workdir)
    drv = make_driver(workdir, sim, sched=sched, agents=agents, nservices=nservices)
    sampler = RssSampler(drv.pid)
    try:
        drv.start()
        drv.feed()
        if during:
            during(sim)
        drv.wait_fed(120)
        runs, inbox = wait_final(drv.state, nservices, deadline_s, drv.alive)
        reqs = sim.requests()
        return runs, inbox, reqs, drv, sampler
    finally:
        sampler.stop()
        drv.stop()
        sim.close()


def summarize(runs):
    st = {}
    for r in runs.values():
        st[r[1]] = st.get(r[1], 0) + 1
    ag = {}
    for r in runs.values():
        for a in r[3].values():
            ag[a[0]] = ag.get(a[0], 0) + 1
    return st, ag


def all_succeeded(runs, n):
    check(len(runs) == n, "%d runs, expected %d" % (len(runs), n))
    bad = [(rid, r[1], r[2]) for rid, r in runs.items() if r[1] != "succeeded"]
    check(not bad, "%d runs did not succeed, e.g. %s" % (len(bad), bad[:2]))


def sc_kill9(workdir):
    n = int(os.environ.get("CHAOS_SERVICES", "500"))
    kills_wanted = int(os.environ.get("CHAOS_KILLS", "50"))
    scenario = {"parse_delay_ms": 300, "seed": SEED,
                "pipelines": {"*": {"queued_ms": 100, "running_ms": 3000, "outcome": "success"},
                              "usage": {"queued_ms": 100, "running_ms": 4000, "outcome": "success"}}}
    sim = Sim(scenario, workdir)
    drv = make_driver(workdir, sim, sched={"max_agents_in_flight": 200}, nservices=n, prefix="k9")
    sampler = RssSampler(drv.pid)
    kills = 0
    t0 = time.monotonic()
    try:
        drv.start()
        drv.feed(gap_s=0.01)
        while kills < kills_wanted:
            time.sleep(rnd.uniform(0.1, 1.5))
            if drv.pid() is None:
                break           # tool driver: the batch finished
            if DRIVER == "serve":
                drv.serve.kill9()
            else:
                drv.kill9()
            kills += 1
            drv.start()
        drv.wait_fed(300)
        runs, inbox = wait_final(drv.state, n, 600, drv.alive)
        reqs = sim.requests()
    finally:
        sampler.stop()
        drv.stop()
        sim.close()
    check(kills >= kills_wanted, "only %d kills before the batch ended (want %d)" % (kills, kills_wanted))
    check(len(runs) == n, "%d runs for %d services" % (len(runs), n))
    fqns = {}
    for rid, r in runs.items():
        fqns.setdefault(r[0], []).append(rid)
    dup = {k: v for k, v in fqns.items() if len(v) > 1}
    check(not dup, "services with more than one run: %s" % list(dup.items())[:3])
    if DRIVER == "serve":
        acked = drv.feeder.acked
        check(len(acked) == n, "%d of %d events acknowledged" % (len(acked), n))
        for eid, rid in acked.items():
            check(inbox.get(eid) == rid, "acknowledged event %s (run %s) is %s in the store" %
                  (eid, rid, inbox.get(eid)))
            check(rid in runs, "acknowledged run %s missing" % rid)
    all_succeeded(runs, n)
    seen, dup = double_triggers(reqs)
    check(not dup, "dag_run_ids triggered twice: %s" % list(dup.items())[:3])
    for rid, r in runs.items():
        for agent, a in r[3].items():
            check(a[1] == 1, "%s %s took %d attempts" % (rid, agent, a[1]))
            check(seen.get(a[2]) == 1, "%s %s: dag_run_id %s never created" % (rid, agent, a[2]))
    conflicts = sum(1 for t in triggers(reqs) if t[2] == 409)
    note = "%d kills, %d triggers adopted via 409, %.0f s" % (kills, conflicts, time.monotonic() - t0)
    if DRIVER == "serve":
        note += ", answers %s" % dict(sorted(drv.feeder.answers.items()))
    return n, runs, sampler, note


def simple_success(name, faults, n_default=None, deadline=300, during=None):
    def sc(workdir):
        n = n_default or int(os.environ.get("CHAOS_FAULT_SERVICES", "40"))
        scen = dict(FAST_RUNS, faults=faults)
        runs, inbox, reqs, drv, sampler = fault_batch(workdir, scen, n, deadline, during=during)
        all_succeeded(runs, n)
        seen, dup = double_triggers(reqs)
        check(not dup, "dag_run_ids triggered twice: %s" % list(dup.items())[:3])
        codes = {}
        for r in reqs:
            codes[r["status"]] = codes.get(r["status"], 0) + 1
        return n, runs, sampler, "%d Airflow requests, answers %s" % (len(reqs), dict(sorted(codes.items())))
    sc.__name__ = name
    return sc


def sc_outage(workdir):
    secs = int(os.environ.get("CHAOS_OUTAGE_S", "60"))
    return simple_success("outage", {"outage": {"start_ms": 1500, "duration_ms": secs * 1000, "mode": "503"}},
                          deadline=secs + 300)(workdir)


def sc_worker_died(workdir):
    n = int(os.environ.get("CHAOS_FAULT_SERVICES", "40"))
    scen = dict(FAST_RUNS)
    scen["pipelines"] = dict(FAST_RUNS["pipelines"], profiler={"queued_ms": 50, "running_ms": 500,
                                                               "outcome": "worker_died"})
    agents = {"profiler": {"timeout_s": 5, "retries": 0}}
    runs, inbox, reqs, drv, sampler = fault_batch(workdir, scen, n, 300, agents=agents)
    check(len(runs) == n, "%d runs" % len(runs))
    patched = {RUN_RE.match(r["path"]).group(2) for r in reqs
               if r["method"] == "PATCH" and RUN_RE.match(r["path"]) and isinstance(r["body"], dict)
               and r["body"].get("state") == "failed"}
    for rid, r in runs.items():
        prof = r[3].get("profiler")
        check(prof is not None and prof[0] == "timed_out", "%s profiler %s" % (rid, prof))
        check(prof[3] and "time" in prof[3].lower(), "%s profiler reason %r" % (rid, prof[3]))
        check(prof[2] in patched, "%s: Airflow run %s not failed by PATCH" % (rid, prof[2]))
        check(r[1] == "failed", "%s is %s" % (rid, r[1]))
        for a in ("metadata", "lineage", "usage"):
            check(r[3][a][0] == "succeeded", "%s %s %s" % (rid, a, r[3][a]))
    return n, runs, sampler, "profiler timed_out (reason e.g. %r), PATCHed failed: %d" % (
        next(iter(runs.values()))[3]["profiler"][3], len(patched))


def sc_forget(workdir):
    n = int(os.environ.get("CHAOS_FAULT_SERVICES", "40"))
    scen = dict(FAST_RUNS, pipelines={"*": {"queued_ms": 50, "running_ms": 3000, "outcome": "success"}})

    def during(sim):
        # Wait until some runs are in flight in Airflow, then restart it.
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            if any(200 <= t[2] < 300 for t in triggers(sim.requests())):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        sim.call("POST", "/_sim/restart")

    runs, inbox, reqs, drv, sampler = fault_batch(workdir, scen, n, 300, during=during,
                                                  agents={a: {"retries": 0} for a in
                                                          ("metadata", "lineage", "usage", "profiler")})
    check(len(runs) == n, "%d runs" % len(runs))
    st, ag = summarize(runs)
    check(ag.get("lost", 0) > 0, "no agent ended lost after Airflow forgot its runs: %s" % ag)
    for rid, r in runs.items():
        for agent, a in r[3].items():
            if a[0] == "lost":
                check(a[3], "%s %s lost without a reason" % (rid, agent))
                check(r[1] == "failed", "%s has a lost agent but is %s" % (rid, r[1]))
    return n, runs, sampler, "runs %s, agents %s" % (st, ag)


def sc_parse_delay(workdir):
    n = int(os.environ.get("CHAOS_FAULT_SERVICES", "40"))
    scen = dict(FAST_RUNS, parse_delay_ms=600000)
    runs, inbox, reqs, drv, sampler = fault_batch(workdir, scen, n, 300,
                                                  sched={"dag_parse_deadline_s": 3})
    check(len(runs) == n, "%d runs" % len(runs))
    for rid, r in runs.items():
        check(r[1] == "failed", "%s is %s" % (rid, r[1]))
        md = r[3]["metadata"]
        check(md[0] == "failed" and md[3] and ("pars" in md[3].lower() or "deadline" in md[3].lower()),
              "%s metadata %s" % (rid, md))
        for a in ("lineage", "usage", "profiler"):
            check(r[3][a][0] in ("skipped", "failed", "pending") and r[3][a][0] in FINAL_AGENT,
                  "%s %s ran after metadata failed: %s" % (rid, a, r[3][a]))
    trig = triggers(reqs)
    check(not trig, "%d triggers although no DAG was ever parsed" % len(trig))
    return n, runs, sampler, "metadata failed: %r" % next(iter(runs.values()))[3]["metadata"][3]


def sc_disk(workdir):
    """The store on a small ext4 image (loop device, errors=remount-ro): filled up (ENOSPC),
    then turned read-only under the running process by a filesystem error (what a failing disk
    does; a plain `mount -o remount,ro` is refused while the store is open for writing). Once the
    filesystem is repaired (e2fsck) and mounted again, autopilot is restarted, like an operator
    would after a filesystem error."""
    if DRIVER != "serve":
        return None, None, None, "skipped: needs autopilot serve (webhook answers)"
    if os.geteuid() != 0:
        return None, None, None, "skipped: needs root (loop device, mount)"
    if not shutil.which("mkfs.ext4") or not shutil.which("e2fsck"):
        return None, None, None, "skipped: e2fsprogs (mkfs.ext4, e2fsck) not installed"
    img = os.path.join(workdir, "store.img")
    mnt = os.path.join(workdir, "state")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    mount_cmd = ["mount", "-t", "ext4", "-o", "loop,errors=remount-ro", img, mnt]
    if (subprocess.run(["mkfs.ext4", "-q", "-m", "0", img], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL).returncode != 0 or
            subprocess.run(mount_cmd, stderr=subprocess.DEVNULL).returncode != 0):
        return None, None, None, "skipped: cannot mount an ext4 image on a loop device here"
    sim = Sim(FAST_RUNS, workdir)
    drv = ServeDriver(workdir, sim, nservices=0)
    sampler = RssSampler(drv.pid)
    acked = {}
    notes = []
    try:
        drv.start()

        def deliver(prefix, k):
            statuses = []
            for i in range(k):
                eid = "ev-%s-%d" % (prefix, i)
                body = json.dumps(change_event(eid, "%s_%d" % (prefix, i), i)).encode()
                st, js = post(drv.serve.port, body)
                statuses.append(st)
                if 200 <= st < 300:
                    check(acked.get(eid, js["run_id"]) == js["run_id"],
                          "%s acknowledged again with another run" % eid)
                    acked[eid] = js["run_id"]
            return statuses

        st = deliver("before", 20)
        check(all(s == 202 for s in st), "before: %s" % st)
        # Disk full: fill the filesystem.
        fill = os.path.join(mnt, "fill")
        subprocess.run(["dd", "if=/dev/zero", "of=" + fill, "bs=64k"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st = deliver("full", 40)
        ok = sum(1 for s in st if 200 <= s < 300)
        check(all(s in (503,) or 200 <= s < 300 for s in st), "disk full answers: %s" % st)
        check(st.count(503) > 0, "disk full: no 503 among %s" % st)
        check(drv.alive(), "autopilot exited when the disk was full: %s" % drv.serve.tail())
        # What was answered 503 is not logged as accepted either.
        log = drv.serve.tail(1 << 24)
        said = [i for i, c in enumerate(st) if c == 503 and
                re.search(r"event ev-full-%d \(\S+ \S+\) accepted" % i, log)]
        check(not said, "503 answers logged as accepted: ev-full-%s" % said)
        notes.append("disk full: %d x 503, %d x 2xx (room left in the WAL)" % (st.count(503), ok))
        os.unlink(fill)
        time.sleep(1)
        st = deliver("full", 40)
        check(all(200 <= s < 300 for s in st), "after the disk is back: %s" % st)
        # Read-only: a filesystem error under the running process.
        dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", mnt], capture_output=True,
                             text=True).stdout.strip()
        with open("/sys/fs/ext4/%s/trigger_fs_error" % os.path.basename(dev), "w") as f:
            f.write("chaos: read-only store")
        st = deliver("ro", 20)
        check(all(s == 503 or 200 <= s < 300 for s in st), "read-only answers: %s" % st)
        check(st.count(503) > 0, "read-only: no 503 among %s" % st)
        check(drv.alive(), "autopilot exited when the store turned read-only: %s" % drv.serve.tail())
        notes.append("read-only: %d x 503, %d x 2xx" % (st.count(503), sum(1 for s in st if 200 <= s < 300)))
        # Readiness sees it too (its check writes; it runs at most once a second).
        time.sleep(1.1)
        rs = readyz_store(drv.serve.port)
        check(rs is not None and rs != "writable", "/readyz on the read-only store: store %r" % rs)
        notes.append("/readyz store: %s" % rs)
        # The disk is back: stop, repair, mount, start again.
        t0 = time.monotonic()
        drv.serve.stop()
        notes.append("stopped on the read-only store in %.1f s" % (time.monotonic() - t0))
        check(subprocess.run(["umount", mnt]).returncode == 0, "umount failed")
        subprocess.run(["e2fsck", "-fy", img], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check(subprocess.run(mount_cmd).returncode == 0, "mounting the repaired image failed")
        drv.start()
        st = deliver("ro", 20)
        check(all(200 <= s < 300 for s in st), "after the disk is back: %s" % st)
        rs = readyz_store(drv.serve.port)
        check(rs == "writable", "/readyz after the disk is back: store %r" % rs)
        # Nothing acknowledged is lost, across a restart.
        drv.serve.stop()
        drv.start()
        runs, inbox = wait_final(drv.state, len(set(acked.values())), 300, drv.alive)
        for eid, rid in acked.items():
            check(inbox.get(eid) == rid and rid in runs, "acknowledged %s (%s) lost" % (eid, rid))
        notes.append("%d acknowledged events, all in the store after restarts" % len(acked))
        return len(acked), runs, sampler, "; ".join(notes)
    finally:
        sampler.stop()
        drv.stop()
        sim.close()
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def sc_halts(workdir):
    """Replaced runs whose Airflow runs are running, while Airflow is down, then kill -9 of
    serve before it could mark them failed: after the restart serve marks every one failed
    (the store kept them); the replacement runs succeed."""
    if DRIVER != "serve":
        return None, None, None, "needs autopilot serve (the admin re-run)"
    n = int(os.environ.get("CHAOS_FAULT_SERVICES", "40")) // 2
    long_runs = {"parse_delay_ms": 100, "seed": SEED,
                 "pipelines": {"*": {"queued_ms": 50, "running_ms": 300000, "outcome": "success"}}}
    sim = Sim(long_runs, workdir)
    only_metadata = {a: {"enabled": False} for a in ("lineage", "usage", "profiler")}
    drv = ServeDriver(workdir, sim, agents=only_metadata, nservices=n, prefix="ha")
    sampler = RssSampler(drv.pid)
    t0 = time.monotonic()
    try:
        drv.start()
        drv.feed()
        drv.wait_fed(120)
        old = {}
        deadline = time.monotonic() + 120
        while len(old) < n and time.monotonic() < deadline:
            runs, _ = store_runs(drv.state)
            old = {r[0]: (rid, r[3]["metadata"][2]) for rid, r in runs.items()
                   if r[3].get("metadata", ("",))[0] == "running"}
            time.sleep(0.2)
        check(len(old) == n, "%d of %d metadata agents running in Airflow" % (len(old), n))
        # The replacements run briefly; Airflow is down for 15 s from now.
        req = urllib.request.Request(sim.url + "/_sim/scenario", method="PUT",
                                     data=json.dumps(dict(long_runs, pipelines={"*": {
                                         "queued_ms": 50, "running_ms": 800,
                                         "outcome": "success"}})).encode())
        urllib.request.urlopen(req, timeout=10).read()
        sim.call("POST", "/_sim/outage?ms=15000")
        for fqn in old:
            req = urllib.request.Request(
                "http://127.0.0.1:%d/api/v1/services/databaseService/%s/rerun" %
                (drv.serve.port, fqn), data=b'{"replace": true}', method="POST",
                headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                check(r.status == 202, "re-run of %s: %d" % (fqn, r.status))
        time.sleep(1.0)
        drv.serve.kill9()
        c = sqlite3.connect("file:%s?mode=ro" % drv.state, uri=True, timeout=30)
        kept = c.execute("SELECT count(*) FROM halts").fetchone()[0]
        c.close()
        check(kept == n, "%d of %d Airflow runs to mark failed kept in the store at the kill"
              % (kept, n))
        drv.serve.start()
        # Each old Airflow run is PATCHed failed (2xx) once Airflow is back.
        want = {drid for _, drid in old.values()}
        deadline = time.monotonic() + 150
        patched = set()
        while patched != want and time.monotonic() < deadline:
            patched = {RUN_RE.match(r["path"]).group(2) for r in sim.requests()
                       if r["method"] == "PATCH" and RUN_RE.match(r["path"]) and
                       200 <= r["status"] < 300} & want
            time.sleep(1.0)
        check(patched == want, "%d of %d replaced Airflow runs marked failed: missing %s" %
              (len(patched), n, sorted(want - patched)[:3]))
        # Once each: the run that took it sent it, no other.
        times = {}
        for r in sim.requests():
            m = RUN_RE.match(r["path"])
            if r["method"] == "PATCH" and m and 200 <= r["status"] < 300:
                times[m.group(2)] = times.get(m.group(2), 0) + 1
        twice = {k: v for k, v in times.items() if v > 1}
        check(not twice, "Airflow runs marked failed more than once: %s" % list(twice.items())[:3])
        runs, _ = wait_final(drv.state, 2 * n, 120, drv.alive)
        reqs = sim.requests()
        c = sqlite3.connect("file:%s?mode=ro" % drv.state, uri=True, timeout=30)
        left = c.execute("SELECT count(*) FROM halts").fetchone()[0]
        c.close()
    finally:
        sampler.stop()
        drv.stop()
        sim.close()
    check(left == 0, "%d Airflow runs still to mark failed at the end" % left)
    for fqn, (rid, _) in old.items():
        check(runs[rid][1] == "failed" and "replaced by" in (runs[rid][2] or ""),
              "replaced run %s: %s %s" % (rid, runs[rid][1], runs[rid][2]))
    new = [r for rid, r in runs.items() if rid not in {v[0] for v in old.values()}]
    check(len(new) == n and all(r[1] == "succeeded" for r in new),
          "replacement runs: %s" % summarize({i: r for i, r in enumerate(new)})[0])
    seen, dup = double_triggers(reqs)
    check(not dup, "dag_run_ids triggered twice: %s" % list(dup.items())[:3])
    return n, runs, sampler, ("%d replaced during an outage, kill -9 1 s later: %d kept in the"
                              " store, all %d PATCHed failed once after the restart (%.0f s)" %
                              (n, kept, n, time.monotonic() - t0))


def sc_retention(workdir):
    """state.retention_days deleting a large backlog of old runs while serve is killed
    with SIGKILL again and again: each batch is all or nothing, so at the end every old run
    is gone with its agent runs and events, the last run and every service's entity are
    kept (the entity the service had), and SQLite finds the database intact."""
    if DRIVER != "serve":
        return None, None, None, "needs autopilot serve (retention)"
    n = int(os.environ.get("CHAOS_RETENTION_RUNS", "30000"))
    nsvc, kills = 1000, 8
    sim = Sim({"seed": SEED}, workdir)
    state = os.path.join(workdir, "autopilot.db")
    srv = Serve(workdir, state, sim.url, {"state": {"path": state, "retention_days": 1}})
    sampler = RssSampler(srv.pid)
    t0 = time.monotonic()
    try:
        # The schema, from a serve with nothing to delete yet.
        srv.start()
        srv.stop()
        old = int(time.time() * 1000) - 40 * 86400 * 1000
        c = sqlite3.connect(state, timeout=30)
        c.execute("BEGIN")
        want = {}
        for i in range(n):
            rid, fqn = "old-%06d" % i, "svc_%d" % (i % nsvc)
            ent = json.dumps(dict(entity(fqn, i), description="x" * 200))
            c.execute("INSERT INTO runs (run_id, service_type, fqn, state, entity, created_at,"
                      " started_at, finished_at) VALUES (?, 'databaseService', ?, 'succeeded',"
                      " ?, ?, ?, ?)", (rid, fqn, ent, old + i, old + i, old + i + 500))
            for a in ("metadata", "lineage", "usage", "profiler"):
                c.execute("INSERT INTO agent_runs (run_id, agent, state, attempt) VALUES"
                          " (?, ?, 'succeeded', 1)", (rid, a))
            c.execute("INSERT INTO inbox (event_id, run_id, service_type, fqn, received_at)"
                      " VALUES (?, ?, 'databaseService', ?, ?)", ("ev-%d" % i, rid, fqn, old + i))
            c.execute("INSERT INTO services (service_type, fqn, entity, updated_at, entity_run)"
                      " VALUES ('databaseService', ?, '', ?, ?) ON CONFLICT (service_type, fqn)"
                      " DO UPDATE SET entity_run = excluded.entity_run", (fqn, old + i, rid))
            want[fqn] = ent
        now = int(time.time() * 1000)
        c.execute("INSERT INTO runs (run_id, service_type, fqn, state, entity, created_at,"
                  " started_at, finished_at) VALUES ('last', 'databaseService', 'svc_last',"
                  " 'succeeded', '{}', ?, ?, ?)", (now, now, now))
        c.execute("COMMIT")
        c.close()
        left = [n + 1]
        for k in range(kills):
            srv.start()
            time.sleep(2.0 + rnd.random() * 1.5)   # the first pass starts 2 s after start
            srv.kill9()
            c = sqlite3.connect("file:%s?mode=ro" % state, uri=True, timeout=30)
            left.append(c.execute("SELECT count(*) FROM runs").fetchone()[0])
            c.close()
        srv.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            c = sqlite3.connect("file:%s?mode=ro" % state, uri=True, timeout=30)
            done = c.execute("SELECT (SELECT count(*) FROM runs) = 1 AND"
                             " (SELECT count(*) FROM inbox) = 0").fetchone()[0]
            c.close()
            if done:
                break
            time.sleep(0.5)
        srv.stop()
        c = sqlite3.connect("file:%s?mode=ro" % state, uri=True, timeout=30)
        q = lambda sql: c.execute(sql).fetchone()[0]  # noqa: E731
        integrity = q("PRAGMA integrity_check")
        runs_left = q("SELECT count(*) FROM runs")
        orphans = q("SELECT count(*) FROM agent_runs WHERE run_id NOT IN (SELECT run_id FROM runs)")
        events = q("SELECT count(*) FROM inbox")
        got = dict(c.execute("SELECT fqn, CASE WHEN entity <> '' THEN entity ELSE (SELECT entity"
                             " FROM runs WHERE run_id = s.entity_run) END FROM services s"))
        c.close()
        runs, _ = store_runs(state)
    finally:
        sampler.stop()
        srv.stop()
        sim.close()
    check(integrity == "ok", "integrity_check: %s" % integrity)
    check(all(a >= b for a, b in zip(left, left[1:])) and left[-1] < left[0],
          "runs left after each kill never grow, and fall: %s" % left)
    check(runs_left == 1 and "last" in runs, "%d runs left (the last kept: %s)" %
          (runs_left, "last" in runs))
    check(orphans == 0 and events == 0, "%d agent runs without their run, %d events left" %
          (orphans, events))
    lost = [f for f, e in want.items() if got.get(f) != e]
    check(not lost, "%d of %d services lost their entity, e.g. %s" % (len(lost), nsvc, lost[:3]))
    return 1, runs, sampler, ("%d old runs, %d kill -9 during the passes (runs left after each:"
                              " %s), then all deleted; %d entities kept, integrity ok (%.0f s)" %
                              (n, kills, ", ".join(str(x) for x in left[1:]), nsvc,
                               time.monotonic() - t0))


SCENARIOS = [
    ("kill9", sc_kill9),
    ("5xx", simple_success("5xx", {"error_rate": 0.2, "error_status": [502, 503, 504]})),
    ("429", simple_success("429", {"rate_limit_every": 4, "rate_limit_burst": 1, "retry_after_s": 1})),
    ("outage", sc_outage),
    # An ingress with no Airflow behind it (a rollout): HTML 404s to every path.
    ("proxy404", simple_success("proxy404", {"outage": {"start_ms": 1500, "duration_ms": 15000,
                                                        "mode": "proxy404"}})),
    ("latency", simple_success("latency", {"latency_ms": 0, "latency_jitter_ms": 1500})),
    ("worker-died", sc_worker_died),
    ("forget", sc_forget),
    ("parse-delay", sc_parse_delay),
    ("mixed", simple_success("mixed", {"error_rate": 0.1, "error_status": [502, 503],
                                       "rate_limit_every": 10, "retry_after_s": 1,
                                       "latency_ms": 20, "latency_jitter_ms": 400,
                                       "lost_reply_rate": 0.05,
                                       "outage": {"start_ms": 3000, "duration_ms": 10000,
                                                  "mode": "reset"}})),
    ("disk", sc_disk),
    ("halts", sc_halts),
    ("retention", sc_retention),
]


def main():
    global DRIVER
    for p in (SIM,):
        if not os.access(p, os.X_OK):
            print("chaos: %s not built (make build)" % p, file=sys.stderr)
            return 2
    have_serve = os.access(BIN, os.X_OK) and subprocess.run(
        [BIN, "serve", "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    DRIVER = os.environ.get("CHAOS_DRIVER") or ("serve" if have_serve else "tool")
    if DRIVER == "serve" and not have_serve:
        print("chaos: %s has no 'serve' subcommand" % BIN, file=sys.stderr)
        return 2
    if DRIVER == "tool":
        log("autopilot serve is not built: scenarios run through build/tool_sched (no webhook)")
    only = os.environ.get("CHAOS_ONLY", "").split()
    results = []
    t_all = time.monotonic()
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        workdir = tempfile.mkdtemp(prefix="chaos-%s." % name)
        log("scenario %s (driver %s, seed %d) in %s" % (name, DRIVER, SEED, workdir))
        t0 = time.monotonic()
        try:
            n, runs, sampler, note = fn(workdir)
            if n is None:
                results.append((name, "SKIP", "-", "-", "-", note))
            else:
                st, _ = summarize(runs)
                peak = sampler.peak if sampler else 0
                ok = peak < RSS_LIMIT_MB
                if not ok:
                    note = "peak RSS %.0f MB above %d MB; " % (peak, RSS_LIMIT_MB) + note
                results.append((name, "PASS" if ok else "FAIL", str(n),
                                ",".join("%s=%d" % kv for kv in sorted(st.items())),
                                "%.0f" % peak, note))
            shutil.rmtree(workdir, ignore_errors=True)
        except Failure as e:
            results.append((name, "FAIL", "-", "-", "-", str(e)[:400]))
            log("scenario %s FAILED: %s (kept %s)" % (name, e, workdir))
        except Exception as e:  # noqa: BLE001 — report and go on with the next scenario
            results.append((name, "FAIL", "-", "-", "-", "%s: %s" % (type(e).__name__, str(e)[:300])))
            log("scenario %s crashed: %r (kept %s)" % (name, e, workdir))
        log("scenario %s: %s in %.0f s" % (name, results[-1][1], time.monotonic() - t0))
    print()
    print("driver: %s   seed: %d   total: %.0f s" % (DRIVER, SEED, time.monotonic() - t_all))
    print("%-12s %-5s %-9s %-24s %-9s %s" % ("scenario", "", "services", "runs", "peakRSS", "notes"))
    for r in results:
        print("%-12s %-5s %-9s %-24s %-9s %s" % r)
    return 1 if any(r[1] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
