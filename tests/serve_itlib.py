"""serve_itlib — helpers for the end-to-end tests of `autopilot serve` and the
CLI (it_serve*.py, it_cli_*.py): start the real binary and the simulators,
sign and send OpenMetadata ChangeEvents, read runs back."""
import atexit
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sched_itlib import Sim, check, fail  # noqa: E402,F401

SRC = os.environ.get("AP_SRC", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("AP_BUILD", os.path.join(SRC, "build"))
BIN = os.environ.get("AP_BIN", os.path.join(BUILD, "autopilot"))
REFERENCE = os.environ.get("AP_REFERENCE", os.path.join(SRC, "..", "shared", "reference"))
SECRET = "it-webhook-secret"
ADMIN = "it-admin-token"
FAST = {"poll_initial_ms": 50, "poll_max_ms": 300, "poll_floor_ms": 20,
        "dag_parse_deadline_s": 20, "unreachable_retry_max_ms": 500, "lease_ms": 3000}


def sign(body, secret=SECRET):
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


_EVENT_VALIDATOR = []


def check_change_event(ev, valid=True):
    """Checks ev against OpenMetadata's changeEvent.json (the reference)."""
    import jsonschema
    if not _EVENT_VALIDATOR:
        with open(os.path.join(REFERENCE, "openmetadata", "schema", "type", "changeEvent.json")) as f:
            schema = json.load(f)
        _EVENT_VALIDATOR.append(jsonschema.validators.validator_for(schema)(schema))
    errors = [e.message for e in _EVENT_VALIDATOR[0].iter_errors(ev)]
    if valid:
        check(not errors, "event does not follow changeEvent.json: %s" % errors[:3])
    else:
        check(errors, "event unexpectedly follows changeEvent.json")


def example_event():
    with open(os.path.join(SRC, "tests", "data", "databaseService-entityCreated.json")) as f:
        return json.load(f)


KIND_CONNECTOR = {
    "databaseService": ("Postgres", {"supportsMetadataExtraction": True, "supportsUsageExtraction": True,
                                     "supportsLineageExtraction": True, "supportsProfiler": True,
                                     "hostPort": "db:5432", "username": "om"}),
    "dashboardService": ("Looker", {"supportsMetadataExtraction": True, "hostPort": "https://looker"}),
    "messagingService": ("Kafka", {"supportsMetadataExtraction": True, "bootstrapServers": "kafka:9092"}),
    "pipelineService": ("Airflow", {"supportsMetadataExtraction": True, "hostPort": "http://af:8080"}),
}


def entity(kind, name, connector=None, extra=None):
    conn, cfg = KIND_CONNECTOR[kind]
    conn = connector or conn
    cfg = dict(cfg, type=conn)
    cfg.update(extra or {})
    sid = str(uuid.uuid4())
    return {"id": sid, "name": name, "fullyQualifiedName": name, "serviceType": conn,
            "connection": {"config": cfg}, "version": 0.1, "deleted": False,
            "href": "http://openmetadata:8585/api/v1/services/%ss/%s" % (kind, sid)}


def event(kind, ent, etype="entityCreated", as_string=False, eid=None):
    return {"id": eid or str(uuid.uuid4()), "eventType": etype, "entityType": kind,
            "entityId": ent["id"], "entityFullyQualifiedName": ent["fullyQualifiedName"],
            "userName": "admin", "timestamp": int(time.time() * 1000), "currentVersion": 0.1,
            "previousVersion": 0.1, "entity": json.dumps(ent) if as_string else ent}


_LIVE = []


@atexit.register
def _kill_all():
    """A test that fails (sys.exit) leaves no `autopilot serve` behind."""
    for srv in _LIVE:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


class Serve:
    """autopilot serve on 127.0.0.1:0 with a config file in a temp dir."""

    def __init__(self, airflow_url, config=None, env=None, args=None, workdir=None):
        _LIVE.append(self)
        self.proc = None
        self.dir = workdir or tempfile.mkdtemp(prefix="it_serve.")
        self.state = os.path.join(self.dir, "state.db")
        cfg = {"state": {"path": self.state}, "airflow": {"url": airflow_url},
               "scheduler": dict(FAST)}
        for k, v in (config or {}).items():
            cfg[k] = dict(cfg.get(k, {}), **v) if isinstance(v, dict) else v
        self.conf = os.path.join(self.dir, "autopilot.json")
        with open(self.conf, "w") as f:
            json.dump(cfg, f)
        self.env = dict(os.environ, AUTOPILOT_WEBHOOK_SECRET=SECRET, AUTOPILOT_ADMIN_TOKEN=ADMIN,
                        AUTOPILOT_AIRFLOW_USERNAME="admin", AUTOPILOT_AIRFLOW_PASSWORD="admin")
        self.env.update(env or {})
        self.args = args or []
        self.proc = None
        self.port = None
        self.logpath = os.path.join(self.dir, "serve.log")

    def start(self, timeout=20):
        logf = open(self.logpath, "a")
        self.proc = subprocess.Popen([BIN, "serve", "-c", self.conf, "--listen", "127.0.0.1:0"]
                                     + self.args, stdout=subprocess.PIPE, stderr=logf,
                                     env=self.env, text=True)
        logf.close()
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", box[0] if box else "")
        if not m:
            self.proc.kill()
            fail("autopilot serve did not start: %r; log:\n%s" % (box, self.log()))
        self.port = int(m.group(1))
        return self

    def log(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        ctype = r.getheader("Content-Type", "")
        if ctype.startswith("application/json") and data:
            return r.status, json.loads(data)
        return r.status, data.decode(errors="replace")

    def exchange(self, method, path, body=None, headers=None, timeout=30):
        """Like request, but returns (status, headers as a dict with lower-case
        names, body as JSON if it is JSON, else text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        if hdrs.get("content-type", "").startswith("application/json") and data:
            return r.status, hdrs, json.loads(data)
        return r.status, hdrs, data.decode(errors="replace")

    def post_event(self, ev, secret=SECRET, headers=None):
        body = ev if isinstance(ev, bytes) else json.dumps(ev).encode()
        h = {"Content-Type": "application/json"}
        if secret is not None:
            h["X-OM-Signature"] = sign(body, secret)
        h.update(headers or {})
        return self.request("POST", "/api/v1/webhooks/openmetadata", body, h)

    def admin(self, method, path, body=None, token=ADMIN):
        h = {"Authorization": "Bearer " + token} if token else {}
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        return self.request(method, path, body, h)

    def runs(self):
        st, runs = self.admin("GET", "/api/v1/runs?limit=1000")
        check(st == 200, "GET /api/v1/runs: %s %s" % (st, runs))
        return runs

    def wait_final(self, n, timeout=60):
        """Waits until at least n runs exist and all are final; returns them."""
        deadline = time.monotonic() + timeout
        runs = []
        while time.monotonic() < deadline:
            runs = self.runs()
            if len(runs) >= n and all(r["state"] in ("succeeded", "failed") for r in runs):
                return runs
            time.sleep(0.1)
        fail("runs not final after %ds: %s\nlog:\n%s" % (timeout, json.dumps(runs)[:3000],
                                                          self.log()[-4000:]))

    def stop(self, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("autopilot serve did not stop within %ds of SIGTERM" % timeout)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def serving(scenario, **serve_args):
    """The Airflow simulator with scenario and `autopilot serve` against it,
    started: yields (sim, srv); at the end of the block serve must stop
    cleanly on SIGTERM; both are closed whatever happens."""
    sim = Sim(scenario)
    srv = Serve(sim.url, **serve_args)
    try:
        srv.start()
        yield sim, srv
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


class FixedAnswers:
    """An HTTP server on 127.0.0.1 that answers every request alike (status,
    headers, body): what stands where Airflow or OpenMetadata is looked for
    (a proxy's page, a redirect, another service's JSON)."""

    def __init__(self, status, body=b"", headers=None):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def cli(args, env=None, timeout=120, stdin=None):
    e = dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin", AUTOPILOT_AIRFLOW_PASSWORD="admin")
    e.update(env or {})
    p = subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=e, timeout=timeout, input=stdin)
    return p.returncode, p.stdout, p.stderr


_PROM_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_PROM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
_PROM_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


def parse_prometheus(text):
    """Checks text against the Prometheus text exposition format (0.0.4):
    every family has one # HELP and one # TYPE line before its samples, its
    samples are contiguous, each series appears once, the samples of one
    name share one set of label names, values are numbers. Returns
    {(name, frozenset of (label, value)): value}."""
    check(text.endswith("\n"), "metrics end with a newline")
    helps, types, done, samples = {}, {}, set(), {}
    labelsets = {}
    current = None

    def family_of(name):
        if name in types:
            return name
        for fam, kind in types.items():
            for suf in _PROM_SUFFIXES.get(kind, ()):
                if suf and name == fam + suf:
                    return fam
        return None

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "metrics line %d %r" % (n, line)
        check(line.strip() != "", "%s: empty line" % where)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(_PROM_NAME.match(name), "%s: bad metric name" % where)
                check(name not in done, "%s: family %s appears again after others" % (where, name))
                if current != name and current is not None:
                    done.add(current)
                current = name
                if parts[1] == "HELP":
                    check(name not in helps, "%s: second HELP for %s" % (where, name))
                    check(name not in types, "%s: HELP after TYPE for %s" % (where, name))
                    check(len(parts) == 4 and parts[3].strip(), "%s: HELP without text" % where)
                    helps[name] = parts[3]
                else:
                    check(name not in types, "%s: second TYPE for %s" % (where, name))
                    check(len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram",
                                                           "summary", "untyped"),
                          "%s: bad TYPE" % where)
                    types[name] = parts[3]
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)( -?\d+)?$", line)
        check(m, "%s: not a sample line" % where)
        name, labeltext, value = m.group(1), m.group(3) or "", m.group(4)
        fam = family_of(name)
        check(fam is not None, "%s: sample of %s without # TYPE" % (where, name))
        check(fam in helps, "%s: sample of %s without # HELP" % (where, fam))
        check(fam == current, "%s: %s is not contiguous (in family %s)" % (where, name, current))
        labels, pos = [], 0
        while pos < len(labeltext):
            lm = _PROM_LABEL.match(labeltext, pos)
            check(lm, "%s: bad labels at %r" % (where, labeltext[pos:]))
            labels.append((lm.group(1), lm.group(2)))
            pos = lm.end()
        names = [k for k, _ in labels]
        check(len(set(names)) == len(names), "%s: repeated label" % where)
        if types[fam] == "histogram" and name == fam + "_bucket":
            check("le" in names, "%s: bucket without le" % where)
        key = (name, frozenset(labels))
        check(key not in samples, "%s: series repeated" % where)
        prev = labelsets.setdefault(name, frozenset(names))
        check(prev == frozenset(names), "%s: labels %s differ from %s's others %s"
              % (where, sorted(names), name, sorted(prev)))
        try:
            samples[key] = float(value)
        except ValueError:
            fail("%s: value is not a number" % where)
    for fam in types:
        check(fam in helps, "family %s has # TYPE but no # HELP" % fam)
    for fam in helps:
        check(fam in types, "family %s has # HELP but no # TYPE" % fam)
    return samples
