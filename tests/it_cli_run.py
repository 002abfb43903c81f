"""`autopilot run`, `status`, `config check`, `--help` and `--version` as an
operator uses them, against the Airflow and OpenMetadata simulators, with
output captured (not a terminal): plain progress lines, --json, exit codes."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import (BIN, FAST, FixedAnswers, Serve, Sim, check, cli,  # noqa: E402
                         entity, event, example_event)
from sched_itlib import check_no_double_trigger  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class OM:
    def __init__(self, entities_dir, token):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "sim_openmetadata.py"),
                                      "--entities", entities_dir, "--token", token],
                                     stdout=subprocess.PIPE, text=True)
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", self.proc.stdout.readline())
        check(m, "OpenMetadata simulator started")
        self.url = "http://127.0.0.1:%s" % m.group(1)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def run_tty(args, cols=None):
    """Runs the CLI with its standard output on a pseudo-terminal (of cols
    columns when given)."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    if cols:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    env = dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin", AUTOPILOT_AIRFLOW_PASSWORD="admin")
    p = subprocess.Popen([BIN] + args, stdout=slave,
                         stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(60), out.decode(errors="replace")


def set_scenario(sim, running_ms):
    urllib.request.urlopen(urllib.request.Request(
        sim.url + "/_sim/scenario", data=json.dumps(
            {"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10,
                                                       "running_ms": running_ms}}}).encode(),
        method="PUT"), timeout=10).read()


def start_blocked(sim, pg_file, state, srv=None, stderr=subprocess.DEVNULL, shared=False):
    """`autopilot run` on state with its standard output (and its standard
    error too if shared) a pipe nobody reads: (the process, the pipe's read
    end) once it is under way and stuck writing its progress."""
    import fcntl
    # A pipe of one page with room left for the header and a few
    # progress lines: the run blocks once under way.
    rfd, wfd = os.pipe()
    fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 4096)
    os.write(wfd, b"x" * (fcntl.fcntl(wfd, fcntl.F_GETPIPE_SZ) - 1024))
    env = dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin", AUTOPILOT_AIRFLOW_PASSWORD="admin")
    p = subprocess.Popen([BIN, "run", "sales_postgres", "--service-json", pg_file,
                          "--state", state, "--airflow-url", sim.url],
                         stdout=wfd, stderr=wfd if shared else stderr, env=env)
    os.close(wfd)
    # The run is under way, its progress stuck in the pipe.
    deadline = time.monotonic() + 30
    wchan = ""
    while time.monotonic() < deadline and p.poll() is None and "pipe" not in wchan:
        time.sleep(0.1)
        with open("/proc/%d/wchan" % p.pid) as f:
            wchan = f.read()
    time.sleep(0.5)
    check(p.poll() is None and "pipe" in wchan and (srv is None or any(
          a["state"] != "pending" for r in srv.runs() for a in r["agents"])),
          "the run is under way and stuck writing its progress (%s)" % wchan)
    return p, rfd


def blocked_output(sim, pg_file):
    """A run whose standard output blocks (a pager not read, a terminal
    paused, a full pipe) holds no lock on the state database meanwhile:
    `autopilot serve` on the same database takes a webhook at once. Once
    its output is read, the run ends as usual. SIGTERM stops such a run at
    once, its output left as it is."""
    import threading
    srv = Serve(sim.url)
    rfd = None
    try:
        srv.start()
        p, rfd = start_blocked(sim, pg_file, srv.state, srv)
        # Another serve started on the database meanwhile says that a run is
        # held by another process, which it did not resume.
        srv2 = Serve(sim.url, config={"state": {"path": srv.state}})
        try:
            srv2.start()
            deadline = time.monotonic() + 10
            while (time.monotonic() < deadline and
                   "1 unfinished run is held by another process" not in srv2.log()):
                time.sleep(0.05)
            check("1 unfinished run is held by another process" in srv2.log(),
                  "a second serve says a run is held elsewhere: %s" % srv2.log()[-2000:])
            check(srv2.stop() == 0, "second serve: clean stop")
        finally:
            srv2.close()
        t0 = time.monotonic()
        st, body = srv.post_event(event("databaseService", entity("databaseService", "meanwhile")))
        took = time.monotonic() - t0
        check(st == 202 and took < 2, "a webhook while a run's output is blocked: %s %s in %.1f s"
              % (st, body, took))
        out = []
        t = threading.Thread(target=lambda: out.append(b"".join(iter(lambda: os.read(rfd, 65536), b""))))
        t.start()
        rc = p.wait(timeout=60)
        t.join(10)
        text = out[0].decode(errors="replace") if out else ""
        check(rc == 0 and re.search(r"^run \S+: succeeded", text, re.M),
              "the blocked run, once read: %d %s" % (rc, text[-300:]))
        check(srv.stop() == 0, "serve: clean stop")
        os.close(rfd)
        rfd = None
        # Stuck again, then SIGTERM (a timeout, systemd, a CI cancel).
        state = os.path.join(os.path.dirname(srv.state), "blocked_term.db")
        p, rfd = start_blocked(sim, pg_file, state, stderr=subprocess.PIPE)
        p.send_signal(signal.SIGTERM)
        try:
            err = p.communicate(timeout=10)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            p.kill()
            err = p.communicate()[1].decode(errors="replace")
            check(False, "SIGTERM while the output blocks: still running 10 s later")
        check(p.returncode == 1 and "interrupted; run" in err and "unfinished" in err,
              "SIGTERM while the output blocks: %d %s" % (p.returncode, err[-500:]))
        os.close(rfd)
        rfd = None
        # Standard error on the same blocked pipe (2>&1): what is said after
        # the signal blocks too, and is cut as well.
        state = os.path.join(os.path.dirname(srv.state), "blocked_term2.db")
        p, rfd = start_blocked(sim, pg_file, state, shared=True)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        check(p.returncode == 1 and time.monotonic() - t0 < 15,
              "SIGTERM while stdout and stderr block: exit %d after %.1f s"
              % (p.returncode, time.monotonic() - t0))
    finally:
        if rfd is not None:
            os.close(rfd)
        srv.close()


def store_locked(sim, tmp):
    """Another connection holds the state database's write lock for 12 s
    while `run` drives a run (an sqlite3 shell, a long maintenance job):
    the run is dropped at the failed commit and taken back once the lock is
    gone, and ends as usual (exit 0), not as an agent failure."""
    state = os.path.join(tmp, "locked.db")
    conf = os.path.join(tmp, "locked.json")
    with open(conf, "w") as f:
        json.dump({"airflow": {"url": sim.url}, "scheduler": FAST, "state": {"path": state}}, f)
    svc = os.path.join(tmp, "locked_pg.json")
    with open(svc, "w") as f:
        json.dump(entity("databaseService", "locked_pg"), f)
    set_scenario(sim, 1500)
    p = run_bg(["-c", conf, "locked_pg", "--service-json", svc])
    db = None
    try:
        deadline = time.monotonic() + 30
        under_way = False
        while time.monotonic() < deadline and not under_way and p.poll() is None:
            rc, out, _ = cli(["status", "-c", conf, "--json", "locked_pg"])
            runs = json.loads(out) if rc == 0 and out.strip() else []
            under_way = bool(runs) and any(a["state"] in ("queued", "running")
                                           for a in runs[0]["agents"])
            time.sleep(0.05)
        check(under_way, "the run is under way")
        db = sqlite3.connect(state, timeout=10, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        time.sleep(12)
        db.execute("ROLLBACK")
        db.close()
        db = None
        out, err = p.communicate(timeout=90)
    finally:
        if db is not None:
            db.close()
        p.kill()
        p.wait()
    check(p.returncode == 0 and re.search(r"^run \S+: succeeded$", out, re.M) and
          "taken back in 5 s" in err,
          "a run whose store was locked for 12 s: %d %s %s" % (p.returncode, out[-300:], err[-1500:]))
    rc, out, _ = cli(["status", "-c", conf, "--json", "locked_pg"])
    runs = json.loads(out)
    check(len(runs) == 1 and runs[0]["state"] == "succeeded" and runs[0]["driven_by"] is None,
          "one run, succeeded: %s" % out[:400])
    set_scenario(sim, 80)


def run_bg(args, quiet=False):
    """`autopilot run ARGS` in the background."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen([BIN, "run"] + args, stdout=out, stderr=out, text=True,
                            env=dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin",
                                     AUTOPILOT_AIRFLOW_PASSWORD="admin"))


def main():
    tmp = tempfile.mkdtemp(prefix="it_cli_run.")
    sim = Sim({"parse_delay_ms": 100, "pipelines": {"*": {"queued_ms": 20, "running_ms": 150}}})
    om = None
    try:
        state = os.path.join(tmp, "state.db")
        conf = os.path.join(tmp, "autopilot.json")
        with open(conf, "w") as f:
            json.dump({"airflow": {"url": sim.url}, "scheduler": FAST, "state": {"path": state}}, f)
        pg = example_event()["entity"]
        pg_file = os.path.join(tmp, "pg.json")
        with open(pg_file, "w") as f:
            json.dump(pg, f)

        for sub in (["serve"], ["run"], ["status"], ["filter", "test"], ["config", "check"]):
            rc, out, _ = cli(sub + ["--help"])
            check(rc == 0 and out.startswith("usage: autopilot " + " ".join(sub)),
                  "%s --help: %d %s" % (sub, rc, out[:200]))
        # A group's --help lists its subcommands; `help` is the main help.
        for group, sub in (("config", "check"), ("filter", "test")):
            rc, out, err = cli([group, "--help"])
            check(rc == 0 and out.startswith("usage: autopilot %s" % group) and
                  "autopilot %s %s" % (group, sub) in out and err == "",
                  "%s --help: %d %r %r" % (group, rc, out, err))
            rc, out, err = cli([group])
            check(rc == 2 and "autopilot %s %s" % (group, sub) in err, "%s alone: %d %r" % (group, rc, err))
        rc, out, _ = cli(["help"])
        check(rc == 0 and out.startswith("usage: autopilot") and "config check" in out, "help: %d %s" % (rc, out))
        rc, out, err = cli(["-c", conf, "config", "check"])
        check(rc == 2 and "options go after the command: autopilot config check -c %s" % conf in err,
              "options before the command: %d %r" % (rc, err))
        rc, out, _ = cli(["--version"])
        check(rc == 0 and out.startswith("autopilot "), "--version: %s" % out)
        rc, _, err = cli(["--verison"])
        check(rc == 2 and err.startswith("autopilot: '--verison' is not an option of autopilot's"
                                         " own (--help, --version); a command's options go"
                                         " after it\n"), "--verison: %d %r" % (rc, err))
        rc, _, err = cli(["-c", conf])
        check(rc == 2 and err.startswith("autopilot: '-c' is not an option of autopilot's own"),
              "-c without a command: %d %r" % (rc, err))
        rc, _, err = cli(["stauts"])
        check(rc == 2 and err.startswith("autopilot: unknown command 'stauts'\n"),
              "stauts: %d %r" % (rc, err))

        # Plain progress lines when stdout is not a terminal; type from the entity's href.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", pg_file])
        check(rc == 0, "run: exit %d\n%s\n%s" % (rc, out, err))
        check("\033[" not in out, "no terminal escapes when not on a terminal")
        check(re.search(r"^run \S+: databaseService sales_postgres", out, re.M), "header: %s" % out)
        for agent in ("metadata", "lineage", "usage"):
            check(re.search(r"%s: \S+ -> succeeded" % agent, out), "%s line: %s" % (agent, out))
        check(out.rstrip().endswith("succeeded"), "final line says succeeded: %s" % out)

        # On a terminal: one line per agent, redrawn in place (cursor up, erase line).
        rc, out = run_tty(["run", "-c", conf, "sales_postgres"])
        check(rc == 0, "run on a terminal: %d %s" % (rc, out))
        check("\033[K" in out and re.search(r"\033\[\d+A", out), "redrawn in place: %r" % out[-500:])
        check(re.search(r"metadata\s+succeeded\s+\d+\.\ds", out), "agent line with elapsed time")
        # A run over before its first line is out (a service with no
        # connection: every agent skipped at once): its lines come after
        # that first line, on a terminal (where a redraw would otherwise
        # overwrite it) and not.
        bare = entity("databaseService", "bare_pg")
        del bare["connection"]
        bare_file = os.path.join(tmp, "bare.json")
        with open(bare_file, "w") as f:
            json.dump(bare, f)
        rc, out = run_tty(["run", "-c", conf, "bare_pg", "--service-json", bare_file])
        head = out.find("run ")
        up = re.search(r"\033\[(\d+)A", out)
        check(rc == 0 and 0 <= head < out.find("metadata") and up and
              out[out.index("\n", head) + 1:up.start()].count("\n") == int(up.group(1)),
              "an instant run on a terminal: its first line, then its agents: %r" % out)
        rc, out, err = cli(["run", "-c", conf, "bare_pg", "--service-json", bare_file])
        check(rc == 0 and out.startswith("run ") and "metadata: pending -> skipped" in out,
              "an instant run, plain lines: first line first: %d %r %s" % (rc, out, err))
        # Nothing ran: said at log.level "warn" too, with why.
        check(re.search(r" warn  run \S+ \(bare_pg\): nothing ran, every agent was skipped"
                        r" \(metadata: the service has no connection configuration", err),
              "a run where nothing ran warns: %s" % err[-1500:])

        # --json: one document; the entity now comes from the store.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--json"])
        check(rc == 0, "run --json: %d %s" % (rc, err))
        doc = json.loads(out)
        check(doc["state"] == "succeeded" and doc["service"] == {"type": "databaseService",
              "fqn": "sales_postgres"}, "run --json document: %s" % doc)
        check(all(a["dag_run_id"] for a in doc["agents"] if a["state"] == "succeeded"),
              "dag run ids in the document")

        # --agents restricts the run; an unknown agent is a usage error.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "metadata", "--json"])
        check(rc == 0, "--agents metadata: %d %s" % (rc, err))
        ran = [a["agent"] for a in json.loads(out)["agents"] if a["state"] == "succeeded"]
        check(ran == ["metadata"], "only metadata ran: %s" % ran)
        rc, out, err = cli(["status", "-c", conf, "--limit", "1", "sales_postgres"])
        check(rc == 0 and "\n  only: metadata\n" in out, "status shows the agents asked for: %s" % out)
        # More runs than shown: said on stderr, the output as asked.
        newest = json.loads(cli(["status", "-c", conf, "--json", "--limit", "1",
                                 "sales_postgres"])[1])[0]["run_id"]
        check(err == "autopilot: status: the newest run of sales_postgres shown; there are"
              " more: --limit N shows the N newest, up to 100000; --before %s shows older"
              " ones\n" % newest, "more runs said: %r" % err)
        rc, out, err = cli(["status", "-c", conf, "--json", "--limit", "2"])
        check(rc == 0 and len(json.loads(out)) == 2 and "there are more" in err,
              "--json --limit 2: %d %s %r" % (rc, out, err))
        # The next page: the runs made before the last one shown.
        page = json.loads(out)
        rc, out, err = cli(["status", "-c", conf, "--json", "--limit", "2", "--before",
                            page[1]["run_id"]])
        older = json.loads(out)
        rc2, out2, _ = cli(["status", "-c", conf, "--json", "--limit", "4"])
        check(rc == 0 and [r["run_id"] for r in page + older] ==
              [r["run_id"] for r in json.loads(out2)], "--before: %s %s" % (page, older))
        rc, out, err = cli(["status", "-c", conf, "--before", "nope"])
        check(rc == 2 and err == "autopilot: status: --before: no run nope\n",
              "--before an unknown run: %d %r" % (rc, err))
        rc, out, err = cli(["status", "-c", conf, "--json", "--limit", "100000"])
        check(rc == 0 and len(json.loads(out)) > 2 and err == "", "all runs: %d %r" % (rc, err))
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "metadata,bogus"])
        check(rc == 2 and "bogus" in err, "--agents bogus: %d %s" % (rc, err))
        # An empty name in the list is refused, not skipped.
        for lst in ("metadata,,profiler", "metadata,", ",metadata"):
            rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--agents", lst])
            check(rc == 2 and "of the list is empty" in err, "--agents %r: %d %s" % (lst, rc, err))
        # --agents twice adds up (an agent named in both is refused as in one
        # list); --type or --service-json twice with two values is refused.
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "metadata",
                          "--agents", "bogus"])
        check(rc == 2 and "bogus" in err, "--agents twice adds up: %d %s" % (rc, err))
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "metadata",
                          "--agents", "metadata"])
        check(rc == 2 and "metadata" in err and "twice" in err,
              "--agents twice, one agent in both: %d %s" % (rc, err))
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--type", "databaseService",
                          "--type", "dashboardService"])
        check(rc == 2 and "--type given twice (databaseService, dashboardService)" in err,
              "--type twice: %d %s" % (rc, err))
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", "a.json",
                          "--service-json", "b.json"])
        check(rc == 2 and "--service-json given twice (a.json, b.json)" in err,
              "--service-json twice: %d %s" % (rc, err))

        def nruns():
            _, out, _ = cli(["status", "-c", conf, "--json", "--limit", "100000"])
            return len(json.loads(out))

        # Refused before any run exists: an agent outside the service's plan
        # (autoClassification is disabled by default), with or without --no-wait.
        before = nruns()
        for extra in ([], ["--no-wait"]):
            rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "autoClassification"] + extra)
            check(rc == 2 and "autoClassification" in err and "not in the plan" in err,
                  "--agents autoClassification %s: %d %s" % (extra, rc, err))
        # A --service-json entity that is another service than SERVICE_FQN.
        dead_pg = dict(pg, name="dead_pg", fullyQualifiedName="dead_pg")
        dead_pg_file = os.path.join(tmp, "dead_pg.json")
        with open(dead_pg_file, "w") as f:
            json.dump(dead_pg, f)
        rc, _, err = cli(["run", "-c", conf, "other_name", "--service-json", dead_pg_file])
        check(rc == 2 and "'dead_pg'" in err and "'other_name'" in err and "fullyQualifiedName" in err,
              "--service-json of another service: %d %s" % (rc, err))
        no_fqn = {k: v for k, v in dead_pg.items() if k != "fullyQualifiedName"}
        with open(dead_pg_file, "w") as f:
            json.dump(no_fqn, f)
        rc, _, err = cli(["run", "-c", conf, "other_name", "--service-json", dead_pg_file])
        check(rc == 2 and "name is 'dead_pg'" in err and "'other_name'" in err,
              "--service-json without an FQN, another name: %d %s" % (rc, err))
        # --type that contradicts the entity: refused, no run, nothing deployed.
        # The href's collection says what the entity is ...
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", pg_file,
                          "--type", "dashboardService"])
        check(rc == 2 and "--type is dashboardService, but the entity is a databaseService" in err
              and "/databaseServices/" in err and pg_file in err,
              "--type dashboardService of a database service: %d %s" % (rc, err))
        # ... else its connector's built-in defaults or its own filter keys.
        typed = os.path.join(tmp, "typed.json")
        with open(typed, "w") as f:
            json.dump({k: v for k, v in pg.items() if k != "href"}, f)
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", typed,
                          "--type", "messagingService"])
        check(rc == 2 and "--type is messagingService" in err and "connector Postgres is a database"
              " connector" in err, "--type messagingService of a Postgres entity: %d %s" % (rc, err))
        bq = dict(pg, serviceType="BigQuery", connection={"config": {
            "type": "BigQuery", "schemaFilterPattern": {"includes": ["^x"]}}})
        del bq["href"]
        with open(typed, "w") as f:
            json.dump(bq, f)
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", typed,
                          "--type", "dashboardService"])
        check(rc == 2 and "connection.config has schemaFilterPattern, a filter of database"
              " services" in err, "--type dashboardService of an entity with a schema filter: %d %s"
              % (rc, err))
        check(nruns() == before, "no run for a --type the entity contradicts")
        # A --type that agrees with the entity is taken.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", pg_file,
                            "--type", "databaseService", "--no-wait", "--json",
                            "--state", os.path.join(tmp, "typed.db")])
        check(rc == 0, "--type databaseService of a database service: %d %s" % (rc, err))
        # A ChangeEvent (as the webhook gets it) stands for its entity, of its entityType.
        event_file = os.path.join(tmp, "event.json")
        with open(event_file, "w") as f:
            json.dump({"id": "e1", "eventType": "entityCreated", "entityType": "databaseService",
                       "entity": {k: v for k, v in pg.items() if k != "href"}}, f)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", event_file,
                            "--no-wait", "--json", "--state", os.path.join(tmp, "event.db")])
        check(rc == 0, "--service-json of a ChangeEvent: %d %s" % (rc, err))
        _, out, _ = cli(["status", "--state", os.path.join(tmp, "event.db"), "--json"])
        check([r["service"] for r in json.loads(out)] == [{"type": "databaseService",
                                                         "fqn": "sales_postgres"}],
              "the run of a ChangeEvent: %s" % out[:300])
        # It says who made it.
        check(re.match(r"autopilot run --no-wait, process [^/]+/\d+/[0-9a-f]{14}$",
                       json.loads(out)[0]["origin"] or ""), "the run's origin: %s" % out[:600])
        _, text, _ = cli(["status", "--state", os.path.join(tmp, "event.db")])
        check("  origin: autopilot run --no-wait, process " in text, "status shows it: %s" % text)
        # Its entity may be a JSON string, as the webhook takes it; an entityType the
        # entity (or --type) contradicts is refused.
        with open(event_file, "w") as f:
            json.dump({"eventType": "entityCreated", "entityType": "databaseService",
                       "entity": json.dumps({k: v for k, v in pg.items() if k != "href"})}, f)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", event_file,
                            "--no-wait", "--state", os.path.join(tmp, "event2.db")])
        check(rc == 0, "--service-json of a ChangeEvent, entity as a string: %d %s" % (rc, err))
        with open(event_file, "w") as f:
            json.dump({"eventType": "entityCreated", "entityType": "messagingService",
                       "entity": pg}, f)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", event_file,
                            "--no-wait", "--state", os.path.join(tmp, "event3.db")])
        check(rc == 2 and "the ChangeEvent's entityType is messagingService, but the entity is a"
              " databaseService" in err, "an entityType its entity contradicts: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", event_file,
                            "--type", "databaseService", "--no-wait",
                            "--state", os.path.join(tmp, "event3.db")])
        check(rc == 2 and "--type is databaseService, but the ChangeEvent's entityType is"
              " messagingService" in err, "--type against entityType: %d %s" % (rc, err))
        # A name no service has: refused before anything is asked of anyone.
        for name, want in (("", "SERVICE_FQN is empty"), ("x" * 1025, "longer than 1024")):
            rc, _, err = cli(["run", "-c", conf, name])
            check(rc == 2 and want in err and "x" * 100 not in err,
                  "run %r: %d %s" % (name[:10], rc, err))
        # Wrong or missing Airflow credentials: a configuration error, found by
        # the pre-flight check's authenticated request.
        rc, _, err = cli(["run", "-c", conf, "sales_postgres"], env={"AUTOPILOT_AIRFLOW_PASSWORD": "wrong"})
        check(rc == 2 and "AUTOPILOT_AIRFLOW_USERNAME" in err and "AUTOPILOT_AIRFLOW_PASSWORD" in err
              and "401" in err, "a wrong Airflow password: %d %s" % (rc, err))
        rc, _, err = cli(["run", "-c", conf, "sales_postgres"], env={"AUTOPILOT_AIRFLOW_PASSWORD": ""})
        check(rc == 2 and "AUTOPILOT_AIRFLOW_PASSWORD" in err and "no password is set" in err,
              "no Airflow password: %d %s" % (rc, err))
        # Airflow 3's API set for an Airflow 2 (the simulator's default): its
        # login route is not there, which is said at once, not waited on as
        # a DAG not parsed yet.
        v2conf = os.path.join(tmp, "v2.json")
        with open(v2conf, "w") as f:
            json.dump({"airflow": {"url": sim.url, "api": "v2"}, "scheduler": FAST,
                       "state": {"path": state}}, f)
        rc, _, err = cli(["run", "-c", v2conf, "sales_postgres", "--service-json", pg_file])
        check(rc == 2 and "POST /auth/token is not there" in err and 'an Airflow 2 is "v1"' in err,
              "airflow.api v2 for an Airflow 2: %d %s" % (rc, err))
        # No plugin where it is looked for (a path that is not Airflow's): a
        # setup to fix, not an Airflow down.
        with open(v2conf, "w") as f:
            json.dump({"airflow": {"url": sim.url + "/nothere"}, "scheduler": FAST,
                       "state": {"path": state}}, f)
        rc, _, err = cli(["run", "-c", v2conf, "sales_postgres", "--service-json", pg_file])
        check(rc == 2 and "health check of the OpenMetadata plugin failed" in err and
              "installed" in err and "airflow.api right" in err and err.count("installed") == 1,
              "no plugin route: %d %s" % (rc, err))
        # An Airflow URL serve would refuse: exit 2 before the store is touched.
        fresh = os.path.join(tmp, "fresh.db")
        rc, _, err = cli(["run", "-c", conf, "sales_postgres", "--state", fresh],
                         env={"AUTOPILOT_AIRFLOW_URL": "notaurl"})
        check(rc == 2 and "AUTOPILOT_AIRFLOW_URL: airflow.url" in err and not os.path.exists(fresh),
              "AUTOPILOT_AIRFLOW_URL=notaurl: %d %s" % (rc, err))
        check(nruns() == before, "no run created by a refused `run`")

        # --no-wait records a pending run; a second --no-wait, or a run for
        # other agents, is refused; the same run resumes it; --replace wins.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--no-wait", "--json",
                            "--airflow-url", sim.url])
        check(rc == 0 and "--airflow-url is not used with --no-wait" in err,
              "--no-wait: %d %s" % (rc, err))
        pending_id = json.loads(out)["run_id"]
        rc, out, _ = cli(["status", "-c", conf, "--json", "--limit", "1", "sales_postgres"])
        check(rc == 0 and json.loads(out)[0]["run_id"] == pending_id
              and json.loads(out)[0]["driven_by"] is None and json.loads(out)[0]["state"] == "pending"
              and json.loads(out)[0]["started_at"] is None,
              "a --no-wait run nobody drives: pending, driven_by null: %s" % out)
        rc, out, _ = cli(["status", "-c", conf, "--limit", "1", "sales_postgres"])
        check(rc == 0 and "waiting: no process has taken this run up yet" in out,
              "... and the table says so: %s" % out)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--no-wait"])
        check(rc == 2 and pending_id in err and "--replace" in err, "active run refused: %d %s" % (rc, err))
        check(err.count(pending_id) == 1 and err.count("no process is driving now") == 1,
              "the refusal says it once, and that serve takes it up: %r" % err)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--agents", "metadata"])
        check(rc == 2 and pending_id in err and "for other agents or another entity" in err,
              "a run for other agents beside it refused: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--json"])
        check(rc == 0 and "resuming run %s" % pending_id in err and
              json.loads(out)["run_id"] == pending_id and json.loads(out)["state"] == "succeeded",
              "the same run resumes the pending one: %d %s %s" % (rc, out[-200:], err))
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--no-wait", "--json"])
        check(rc == 0, "--no-wait again: %d %s" % (rc, err))
        pending_id = json.loads(out)["run_id"]
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--json"])
        check(rc == 0, "--replace: %d %s" % (rc, err))
        rc, out, _ = cli(["status", "-c", conf, "--json", "sales_postgres"])
        old = [r for r in json.loads(out) if r["run_id"] == pending_id]
        check(old and old[0]["state"] == "failed" and "replaced" in (old[0]["error"] or ""),
              "the replaced run ended failed: %s" % old)

        # Replacing a run whose metadata runs in Airflow (driven by another
        # `run`) marks that Airflow run failed, even with --no-wait.
        def metadata_running(but=None):
            """(run_id, dag_run_id) of sales_postgres's metadata once it runs in
            Airflow, in a run other than but."""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rc, out, _ = cli(["status", "-c", conf, "--json", "sales_postgres"])
                for r in json.loads(out) if rc == 0 and out.strip() else []:
                    for a in r["agents"]:
                        if a["agent"] == "metadata" and a["state"] == "running" and \
                                r["state"] == "running" and r["run_id"] != but:
                            return r["run_id"], a["dag_run_id"]
                time.sleep(0.1)
            check(False, "metadata running in Airflow before the replace")

        set_scenario(sim, 60000)
        driver = run_bg(["-c", conf, "sales_postgres", "--replace"], quiet=True)
        try:
            active, running = metadata_running()
            rc, _, err = cli(["run", "-c", conf, "sales_postgres"])
            check(rc == 2 and "already has an active run %s (driven by " % active in err
                  and "/%d/" % driver.pid in err, "a run driven elsewhere: refused, naming its driver: %d %s" % (rc, err))
            rc, out, _ = cli(["status", "-c", conf, "--json", "--limit", "1", "sales_postgres"])
            check(rc == 0 and "/%d/" % driver.pid in (json.loads(out)[0]["driven_by"] or ""),
                  "a driven run names its driver: %s" % out[:300])
            rc, out, _ = cli(["status", "-c", conf, "--limit", "1", "sales_postgres"])
            check(rc == 0 and "not driven now" not in out, "... and the table does not say it is not: %s" % out)
            rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--no-wait", "--json"])
            check(rc == 0, "--replace --no-wait: %d %s" % (rc, err))
            patched = [r for r in sim.requests() if r["method"] == "PATCH" and running in r["path"]]
            check(patched and 200 <= patched[-1]["status"] < 300,
                  "the replaced run's Airflow run %s marked failed: %s" % (running, patched))
        finally:
            driver.kill()
            driver.wait()
        set_scenario(sim, 80)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--json"])
        check(rc == 0, "--replace after --no-wait: %d %s" % (rc, err))
        check(json.loads(out)["followed_by"] is None, "no run follows: null: %s" % out[:300])

        # ... and when that PATCH cannot be sent, --no-wait says so, naming
        # the replaced run, and exits 3: the old Airflow run goes on.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nowhere = "http://127.0.0.1:%d" % closed.getsockname()[1]
        set_scenario(sim, 60000)
        driver = run_bg(["-c", conf, "sales_postgres"], quiet=True)
        try:
            replaced, running = metadata_running()
            rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--no-wait",
                                "--airflow-url", nowhere])
            new_id = out.split()[1].rstrip(":") if out.startswith("run ") else None
            check(rc == 3 and new_id and "run %s: replaced by %s, but its Airflow run %s" %
                  (replaced, new_id, running) in err and "could not all be marked failed" in err
                  and "is not used" not in err,
                  "--replace --no-wait, Airflow not reached: %d %s %s" % (rc, out, err))
        finally:
            driver.kill()
            driver.wait()
        # status shows what is still to be marked failed, and why it is not yet.
        rc, out, _ = cli(["status", "-c", conf, "--json", "sales_postgres"])
        old = [r for r in json.loads(out) if r["run_id"] == replaced]
        halts = old[0].get("airflow_runs_to_fail") if old else None
        check(halts and halts[0]["dag_run_id"] == running and halts[0]["tries"] >= 1 and
              halts[0]["error"], "status --json: the replaced run's Airflow run to fail: %s" % old)
        rc, out, _ = cli(["status", "-c", conf, "sales_postgres"])
        check("still to be marked failed in Airflow: %s" % running in out,
              "status: the Airflow run to fail: %s" % out)
        # That PATCH is kept in the store: serve on the database sends it.
        srv = Serve(sim.url, config={"state": {"path": state},
                                     "scheduler": dict(FAST, rescan_ms=200)}).start()
        try:
            deadline = time.monotonic() + 20
            patched = []
            while not patched and time.monotonic() < deadline:
                patched = [r for r in sim.requests() if r["method"] == "PATCH" and
                           running in r["path"] and 200 <= r["status"] < 300]
                time.sleep(0.1)
            check(patched, "serve marks the replaced run's Airflow run %s failed" % running)
        finally:
            srv.stop()
        rc, out, _ = cli(["status", "-c", conf, "--json", "sales_postgres"])
        old = [r for r in json.loads(out) if r["run_id"] == replaced]
        check(old and old[0]["airflow_runs_to_fail"] == [],
              "status --json: nothing left to mark failed: %s" % old)
        # A run whose driver is gone (killed) while it runs: "not driven now".
        driver = run_bg(["-c", conf, "sales_postgres", "--replace"], quiet=True)
        try:
            orphan, _ = metadata_running(but=new_id)  # not the run serve drove
        finally:
            driver.kill()
            driver.wait()
        rc, out, _ = cli(["status", "-c", conf, "--limit", "1", "sales_postgres"])
        check(rc == 0 and orphan in out and "not driven now: no process holds this run" in out,
              "a run whose driver died: not driven now: %s" % out)
        set_scenario(sim, 80)
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace"])
        check(rc == 0, "--replace after it: %d %s" % (rc, err))

        # An event joins the run `run` drives with another entity (as serve's
        # inbox does: the service's entity replaced and marked as joined to
        # the run, no run of its own yet):
        # when the run ends, a run with that entity follows, left to a serve,
        # and `run` says so.
        set_scenario(sim, 1500)
        joined_file = os.path.join(tmp, "joined.json")
        with open(joined_file, "w") as f:
            json.dump(entity("databaseService", "joined_pg"), f)
        driver = run_bg(["-c", conf, "joined_pg", "--service-json", joined_file, "--json"])
        try:
            first = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and first is None:
                rc, out, _ = cli(["status", "-c", conf, "--json", "--limit", "1", "joined_pg"])
                runs = json.loads(out) if rc == 0 and out.strip() else []
                if runs and runs[0]["state"] == "running":
                    first = runs[0]["run_id"]
                time.sleep(0.05)
            check(first, "the run to join is running")
            db = sqlite3.connect(state, timeout=10)
            db.execute("UPDATE services SET entity = ?, entity_run = 'joined:' || ? WHERE fqn = 'joined_pg'",
                       (json.dumps(entity("databaseService", "joined_pg")), first))
            db.commit()
            db.close()
            out, err = driver.communicate(timeout=60)
        finally:
            driver.kill()
            driver.wait()
        check(driver.returncode == 0, "the joined run: %d %s" % (driver.returncode, err))
        doc = json.loads(out)
        rc, out, _ = cli(["status", "-c", conf, "--json", "--limit", "2", "joined_pg"])
        runs = json.loads(out)
        check(len(runs) == 2 and runs[1]["run_id"] == first and runs[0]["state"] == "pending"
              and runs[0]["only_agents"] is None and runs[0]["driven_by"] is None,
              "a follow-up run is pending: %s" % out[:400])
        check("asks for a run of its own: run %s follows" % runs[0]["run_id"] in err,
              "run says a run follows: %s" % err)
        check(doc["run_id"] == first and doc["followed_by"] == runs[0]["run_id"],
              "--json names the run that follows: %s" % out[:400])
        rc, out, _ = cli(["status", "-c", conf, "--limit", "1", "joined_pg"])
        check("waiting: no process has taken this run up yet" in out, "status: waiting: %s" % out)
        set_scenario(sim, 80)

        # An Airflow import error (a multi-line traceback with an escape
        # sequence) is shown on one line, its control characters escaped: in
        # the plain lines, the status table, and on an 80-column terminal,
        # where the redrawn lines must not wrap.
        _, out, _ = cli(["status", "-c", conf, "--json", "--limit", "1", "sales_postgres"])
        dag = [a["dag_id"] for a in json.loads(out)[0]["agents"] if a["agent"] == "metadata"][0]
        trace = "Traceback (most recent call last):\n  File \"/opt/dag.py\"\nImportError: x\x1b[31mRED\x1b]0;t\x07"
        urllib.request.urlopen(urllib.request.Request(
            sim.url + "/_sim/scenario", data=json.dumps(
                {"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10, "running_ms": 80}},
                 "dags": {dag: {"import_error": trace}}}).encode(), method="PUT"), timeout=10).read()
        rc, out, err = cli(["run", "-c", conf, "sales_postgres"])
        check(rc == 1 and "\x1b" not in out, "import error, plain lines: %d %r" % (rc, out))
        fail_line = [ln for ln in out.splitlines() if "-> failed" in ln]
        check(len(fail_line) == 1 and "call last):\\n  File" in fail_line[0] and
              "ImportError: x\\x1b[31mRED\\x1b]0;t\\x07" in fail_line[0],
              "the traceback on one line, escaped: %r" % out)
        rc, out, _ = cli(["status", "-c", conf, "--limit", "1", "sales_postgres"])
        check(rc == 0 and "\x1b" not in out and re.search(r"^  metadata +failed .*call last\):\\n  File", out, re.M),
              "status table: the error on the agent's line, escaped: %r" % out)
        rc, out = run_tty(["run", "-c", conf, "sales_postgres"], cols=80)
        check(rc == 1, "import error on a terminal: %d" % rc)
        stray = re.sub(r"\x1b\[(\d+A|K)", "", out)
        check("\x1b" not in stray, "no escape sequences but the redraw's: %r" % out[-600:])
        wide = [ln for ln in stray.replace("\r", "\n").split("\n")
                if ln.startswith("  ") and len(ln) > 79]
        check(not wide, "redrawn lines fit 80 columns: %r" % wide[:3])

        def start_running(*extra, config=conf, states=("running",), running_ms=60000):
            """A run of sales_postgres in a process of its own, once its
            metadata agent is in one of states (it runs in Airflow for
            running_ms)."""
            set_scenario(sim, running_ms)
            p = subprocess.Popen([BIN, "run", "-c", config, "sales_postgres"] + list(extra),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin",
                                          AUTOPILOT_AIRFLOW_PASSWORD="admin"))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rcs, st, errs = cli(["status", "-c", conf, "--json", "--limit", "1",
                                     "sales_postgres"])
                check(rcs == 0 and json.loads(st), "status beside a live run: %d %r %s"
                      % (rcs, st, errs))
                # A run just accepted lists its agents once it is planned.
                agents = json.loads(st)[0]["agents"]
                if agents and agents[0]["state"] in states:
                    break
                time.sleep(0.1)
            set_scenario(sim, 80)
            return p

        # Interrupted with --json: still one JSON document, the unfinished run.
        # (SIGHUP, as when its terminal goes away, as SIGINT and SIGTERM.)
        p = start_running("--json", running_ms=6000)
        rc2, _, err2 = cli(["run", "-c", conf, "sales_postgres"])
        check(rc2 == 2 and "wait for it to end" in err2 and "no process" not in err2,
              "a run beside one a live process drives: %d %s" % (rc2, err2))
        p.send_signal(signal.SIGHUP)
        out, err = p.communicate(timeout=30)
        check(p.returncode == 1 and "interrupted" in err, "interrupted: %d %s" % (p.returncode, err))
        doc = json.loads(out)
        check(doc["state"] == "running" and doc["agents"][0]["state"] == "running" and
              doc["driven_by"] is None, "interrupted --json: the unfinished run: %s" % out)
        set_scenario(sim, 80)
        # Nobody drives the interrupted run: run again, it goes on where it
        # was, its Airflow run adopted rather than triggered twice.
        rc, out, err = cli(["run", "-c", conf, "sales_postgres"])
        check(rc == 0 and "resuming run %s" % doc["run_id"] in err and
              re.search(r"^run %s: succeeded" % doc["run_id"], out, re.M),
              "the interrupted run resumed: %d %s %s" % (rc, out[-300:], err))
        rc, out, err = cli(["status", "-c", conf, "--json", "--limit", "1", "sales_postgres"])
        check(json.loads(out)[0]["agents"][0]["attempts"] == 1,
              "the resumed run's metadata agent: one attempt: %s" % out[:400])

        # A run replaced by another process while it runs says by which.
        p = start_running()
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--no-wait", "--json"])
        new_id = json.loads(out)["run_id"] if rc == 0 else "?"
        out, err = p.communicate(timeout=30)
        check(p.returncode == 1 and "no longer driven here: failed: replaced by %s" % new_id in out,
              "a run replaced elsewhere says by which: %d %s %s" % (p.returncode, out[-300:], err))
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace"])
        check(rc == 0, "the run left by --no-wait replaced: %d %s" % (rc, err))
        # Interrupted once replaced, before it looked (it polls Airflow every
        # 30 s and renews its lease every 100 s): said as ended, not as
        # unfinished; the document names no process holding it.
        slow = os.path.join(tmp, "slow.json")
        with open(slow, "w") as f:
            json.dump({"airflow": {"url": sim.url}, "state": {"path": state}, "scheduler": dict(
                FAST, poll_initial_ms=30000, poll_max_ms=30000, poll_floor_ms=30000,
                poll_learn=False, lease_ms=300000)}, f)
        p = start_running("--json", config=slow, states=("waiting_for_dag", "queued", "running"))
        time.sleep(0.5)     # what it sent is answered: it waits for its next look
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace", "--no-wait", "--json"])
        new_id = json.loads(out)["run_id"] if rc == 0 else "?"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        doc = json.loads(out)
        check(p.returncode == 1 and doc["state"] == "failed" and doc["driven_by"] is None and
              "replaced by %s" % new_id in doc["error"] and
              "interrupted; run %s had ended meanwhile: failed: replaced by %s" % (
                  doc["run_id"], new_id) in err,
              "interrupted once replaced: %d %s %s" % (p.returncode, out[-400:], err))
        rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--replace"])
        check(rc == 0, "the run left by --no-wait replaced: %d %s" % (rc, err))

        # An agent that fails: exit 1, and the failure is in the output.
        sim_scn = {"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10, "running_ms": 80},
                                                       "lineage": {"outcome": "failed"}}}
        req = urllib.request.Request(sim.url + "/_sim/scenario", data=json.dumps(sim_scn).encode(),
                                     method="PUT")
        urllib.request.urlopen(req, timeout=10).read()
        rc, out, err = cli(["run", "-c", conf, "sales_postgres"])
        check(rc == 1, "a failed agent: exit %d\n%s\n%s" % (rc, out, err))
        check(re.search(r"lineage: \S+ -> failed", out), "lineage failure shown: %s" % out)
        check_no_double_trigger(sim.requests())

        # Entity from OpenMetadata's API (type found by trying the kinds), token sent.
        ents = os.path.join(tmp, "om")
        os.makedirs(ents)
        looker = entity("dashboardService", "om_looker")
        with open(os.path.join(ents, "looker.json"), "w") as f:
            json.dump(looker, f)
        # Names are unique within a service type only.
        for kind in ("databaseService", "messagingService"):
            with open(os.path.join(ents, "twin_%s.json" % kind), "w") as f:
                json.dump(entity(kind, "om_twin"), f)
        om = OM(ents, "om-token")
        env = {"AUTOPILOT_OPENMETADATA_URL": om.url, "AUTOPILOT_OPENMETADATA_TOKEN": "om-token"}
        urllib.request.urlopen(urllib.request.Request(
            sim.url + "/_sim/scenario", data=json.dumps({"parse_delay_ms": 50}).encode(),
            method="PUT"), timeout=10).read()
        rc, out, err = cli(["run", "-c", conf, "om_looker", "--json"], env=env)
        check(rc == 0, "run from OpenMetadata: %d %s %s" % (rc, out, err))
        check(json.loads(out)["service"]["type"] == "dashboardService", "type found")
        # The URL as OpenMetadata's own hostPort settings give it, with /api.
        rc, out, err = cli(["run", "-c", conf, "om_looker", "--json"],
                           env=dict(env, AUTOPILOT_OPENMETADATA_URL=om.url + "/api/"))
        check(rc == 0, "run from OpenMetadata's URL with /api: %d %s %s" % (rc, out, err))
        rc, out, err = cli(["run", "-c", conf, "om_twin"], env=env)
        check(rc == 2 and out == "" and "more than one service named 'om_twin'" in err
              and "databaseService" in err and "messagingService" in err and "--type" in err,
              "a name under two types in OpenMetadata is not guessed: %d %s" % (rc, err))
        # The same in the state store: om_looker is now stored as a dashboard
        # service; a database service of that name joins it.
        twin = os.path.join(tmp, "looker_db.json")
        with open(twin, "w") as f:
            json.dump(entity("databaseService", "om_looker"), f)
        rc, out, err = cli(["run", "-c", conf, "om_looker", "--service-json", twin])
        check(rc == 0, "a database service named as a dashboard one: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "om_looker"])
        check(rc == 2 and out == "" and "stored under more than one type" in err
              and "dashboardService" in err and "databaseService" in err and "--type" in err,
              "a name under two types in the store is not guessed: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "om_nosuch"], env=env)
        check(rc == 2 and "om_nosuch" in err and "did not exist" not in err,
              "unknown in OpenMetadata: %d %s" % (rc, err))
        # Another server's 404 (here Airflow's) says nothing of the service.
        rc, out, err = cli(["run", "-c", conf, "om_nosuch", "--type", "databaseService"],
                           env=dict(env, AUTOPILOT_OPENMETADATA_URL=sim.url))
        check(rc == 3 and "HTTP 404 without OpenMetadata's JSON body: is %s OpenMetadata's"
              " address?" % sim.url in err, "a 404 not from OpenMetadata: %d %s" % (rc, err))
        # Nor is any JSON object answered 200 taken for the service.
        junk = FixedAnswers(200, b'{"status": "ok", "name": "something else"}',
                            {"Content-Type": "application/json"})
        try:
            rc, out, err = cli(["run", "-c", conf, "om_nosuch"],
                               env=dict(env, AUTOPILOT_OPENMETADATA_URL=junk.url))
        finally:
            junk.close()
        check(rc == 3 and "the answer is not the service asked for" in err
              and "more than one" not in err, "a JSON object of another name: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "om_other", "--type", "dashboardService"],
                           env=dict(env, AUTOPILOT_OPENMETADATA_TOKEN="wrong"))
        check(rc == 2 and "401" in err and "turned the token down" in err
              and "AUTOPILOT_OPENMETADATA_TOKEN" in err,
              "a wrong OpenMetadata token: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "om_other", "--type", "dashboardService"],
                           env=dict(env, AUTOPILOT_OPENMETADATA_TOKEN=""))
        check(rc == 2 and "401" in err and "no OpenMetadata token is set" in err,
              "no OpenMetadata token: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", conf, "nowhere"])
        check(rc == 2 and "--service-json" in err, "no source for the entity: %d %s" % (rc, err))
        rc, out, err = cli(["run", "-c", "-", "nowhere", "--service-json", "-"], stdin="{}")
        check(rc == 2 and "-c - and --service-json - both read standard input" in err,
              "standard input asked for twice: %d %s" % (rc, err))

        # Airflow unreachable: exit 3 without creating a run.
        dead = os.path.join(tmp, "dead.json")
        with open(dead, "w") as f:
            json.dump({"airflow": {"url": "http://127.0.0.1:9", "max_retries": 1,
                                   "retry_base_ms": 50, "retry_max_ms": 100},
                       "scheduler": FAST, "state": {"path": state}}, f)
        _, before, _ = cli(["status", "-c", conf, "--json"])
        rc, out, err = cli(["run", "-c", dead, "sales_postgres"], timeout=60)
        check(rc == 3 and "Airflow" in err, "Airflow down: %d %s" % (rc, err))
        _, after, _ = cli(["status", "-c", conf, "--json"])
        check(len(json.loads(after)) == len(json.loads(before)), "no run created")
        # Interrupted while checking an Airflow that does not answer: exit 1, as
        # any interrupted run, and no run recorded.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            p = subprocess.Popen([BIN, "run", "-c", conf, "sales_postgres", "--airflow-url",
                                  "http://127.0.0.1:%d" % silent.getsockname()[1]],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin",
                                          AUTOPILOT_AIRFLOW_PASSWORD="admin"),
                                 preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
            time.sleep(6)
            # Started with SIGHUP ignored (nohup): a hangup leaves it be.
            p.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            check(p.poll() is None, "a SIGHUP ignored at start (nohup) interrupted run")
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=20)
        finally:
            silent.close()
        check(p.returncode == 1 and "interrupted while checking Airflow: no run was recorded"
              in err, "SIGINT during the pre-flight check: %d %s" % (p.returncode, err))
        check("no answer that ends the check after 5 s; still trying (for at most 60 s)" in err,
              "a check with no answer says it still waits: %s" % err)
        _, after, _ = cli(["status", "-c", conf, "--json"])
        check(len(json.loads(after)) == len(json.loads(before)), "no run created (SIGINT)")

        # --no-wait only records the run: Airflow being down does not matter.
        nowait = os.path.join(tmp, "nowait.db")
        rc, out, err = cli(["run", "-c", dead, "sales_postgres", "--service-json", pg_file,
                            "--no-wait", "--json", "--state", nowait], timeout=60)
        check(rc == 0, "--no-wait with Airflow down: %d %s" % (rc, err))
        # A database created by `run` sees no run of a serve elsewhere: said.
        check("note: state database %s did not exist and was created" % nowait in err,
              "a new state database is noted: %s" % err)
        rid = json.loads(out)["run_id"]
        rc, out, _ = cli(["status", "--state", nowait, "--json"])
        runs = json.loads(out)
        check([r["run_id"] for r in runs] == [rid] and runs[0]["state"] in ("pending", "running")
              and all(a["state"] == "pending" for a in runs[0]["agents"]),
              "--no-wait recorded an unfinished run, its agents pending: %s" % out)

        # Usage and configuration errors: exit 2 naming what and where.
        rc, _, err = cli(["run", "-c", conf])
        check(rc == 2, "run without a service: %d" % rc)
        rc, _, err = cli(["run", "-c", conf, "x", "--type", "tableService"])
        check(rc == 2 and "tableService" in err, "bad --type: %d %s" % (rc, err))
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"scheduler": {"poll_max_ms": "fast"}}, f)
        rc, _, err = cli(["config", "check", "-c", bad])
        check(rc == 2 and "bad.json" in err and "scheduler.poll_max_ms" in err,
              "config check error: %d %s" % (rc, err))
        rc, out, err = cli(["config", "check", "-c", conf])
        check(rc == 0 and json.loads(out), "config check ok: %d %s" % (rc, err))
        # serve prints the address it listens on as --listen takes it: an
        # IPv6 one in brackets.
        v6 = subprocess.Popen([BIN, "serve", "-c", conf, "--listen", "[::1]:0", "--allow-unsigned",
                               "--state", os.path.join(tmp, "v6.db")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = v6.stdout.readline()
        finally:
            v6.terminate()
            v6.wait(30)
        check(re.match(r"listening \[::1\]:[1-9]\d*$", line) or line == "",
              "serve on [::1]: %r" % line)
        check(line != "" or v6.returncode == 2, "serve on [::1]: no IPv6 here, exit %d" % v6.returncode)
        # A state path that is not UTF-8 (from the environment) is shown, not fatal.
        rc, out, err = cli(["config", "check", "-c", conf], env={"AUTOPILOT_STATE": "/tmp/st\udcff.db"})
        check(rc == 0 and json.loads(out)["state"]["path"] == "/tmp/st?.db",
              "config check of a non-UTF-8 state path: %d %r %s" % (rc, out[:200], err))
        rc, out, err = cli(["status", "--state", os.path.join(tmp, "none.db"), "--json"])
        check(rc == 0 and json.loads(out) == [] and "no state database" in err,
              "status --json without a database: %d %s %s" % (rc, out, err))
        rc, out, err = cli(["status", "--state", os.path.join(tmp, "none.db")])
        check(rc == 0 and out == "" and "no runs: no state database at" in err,
              "status without a database: %d %r %r" % (rc, out, err))
        check(not os.path.exists(os.path.join(tmp, "none.db")), "status creates no database")
        # Output that cannot be written (a full disk) is an error, not exit 0.
        for args in (["status", "-c", conf, "--json"], ["filter", "test", "x"], ["--version"],
                     ["--help"], ["run", "--help"], ["config", "--help"]):
            with open("/dev/full", "w") as full:
                p = subprocess.run([BIN] + args, stdout=full, stderr=subprocess.PIPE, text=True,
                                   timeout=60)
            check(p.returncode == 1 and "writing standard output failed" in p.stderr,
                  "%s to a full disk: %d %s" % (" ".join(args), p.returncode, p.stderr))
        # Bad input to run is refused before the state database is opened:
        # nothing is created, and a missing directory does not hide the error.
        for sj, typ in ((tmp, None), (os.path.join(tmp, "missing.json"), None),
                        (pg_file, "userService")):
            args = ["run", "-c", conf, "sales_postgres", "--service-json", sj, "--state",
                    os.path.join(tmp, "nodir", "new.db")]
            rc, _, err = cli(args + (["--type", typ] if typ else []))
            check(rc == 2 and ("--service-json" in err or "userService" in err),
                  "bad input before the store: %d %s" % (rc, err))
            rc, _, err = cli(args[:-1] + [os.path.join(tmp, "new.db")] + (["--type", typ] if typ else []))
            check(rc == 2 and not os.path.exists(os.path.join(tmp, "new.db")),
                  "bad input creates no database: %d %s %s" % (rc, err, os.listdir(tmp)))
        # A state file that is not a database: exit 3, the file named once.
        junk = os.path.join(tmp, "junk.db")
        with open(junk, "wb") as f:
            f.write(b"not a database" * 512)
        for args in (["status", "--state", junk], ["run", "-c", conf, "--state", junk, "sales_postgres"]):
            rc, _, err = cli(args)
            check(rc == 3 and err.count(junk) == 1 and "not a database" in err,
                  "%s on a file that is not a database: %d %r" % (args[0], rc, err))
        # An empty file: no runs, and it stays empty (status only reads).
        empty = os.path.join(tmp, "empty.db")
        open(empty, "wb").close()
        rc, out, err = cli(["status", "--state", empty, "--json"])
        check(rc == 0 and json.loads(out) == [] and "no runs: empty state database at" in err and os.path.getsize(empty) == 0
              and not os.path.exists(empty + "-wal"), "status on an empty file: %d %r %r" % (rc, out, err))
        # Another program's database: refused, neither backed up nor extended.
        other = os.path.join(tmp, "other.db")
        c = sqlite3.connect(other)
        c.execute("CREATE TABLE runs (x)")
        c.commit()
        c.close()
        for args in (["status", "--state", other], ["run", "-c", conf, "--state", other, "sales_postgres"]):
            rc, _, err = cli(args)
            check(rc == 3 and "not an autopilot state database" in err,
                  "%s on another program's database: %d %r" % (args[0], rc, err))
        check(not [f for f in os.listdir(tmp) if f.startswith("other.db.")],
              "a backup of another program's database: %s" % os.listdir(tmp))
        # A database this user may only read, in a directory it may not write:
        # status reads it; run refuses to start on it (exit 3) instead of failing later.
        rodir = os.path.join(tmp, "ro")
        os.mkdir(rodir)
        rodb = os.path.join(rodir, "state.db")
        src, dst = sqlite3.connect(nowait), sqlite3.connect(rodb)
        src.backup(dst)
        src.close()
        dst.close()
        os.chmod(rodb, 0o444)
        os.chmod(rodir, 0o555)
        os.chmod(tmp, 0o755)
        demote = None
        if os.geteuid() == 0:
            def demote():
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
        def as_reader(args):
            e = dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin", AUTOPILOT_AIRFLOW_PASSWORD="admin")
            p = subprocess.run([BIN] + args, capture_output=True, text=True, env=e, timeout=60,
                               preexec_fn=demote)
            return p.returncode, p.stdout, p.stderr
        rc, out, err = as_reader(["status", "--state", rodb, "--json"])
        check(rc == 0 and len(json.loads(out or "[]")) >= 1 and sorted(os.listdir(rodir)) == ["state.db"],
              "status on a read-only database: %d %r %r %s" % (rc, out[:200], err, os.listdir(rodir)))
        rc, out, err = as_reader(["run", "--state", rodb, "--service-json", pg_file,
                                  "--type", "databaseService", "--no-wait", "sales_postgres"])
        check(rc == 3 and "cannot be written" in err, "run on a read-only database: %d %r" % (rc, err))
        # A database that cannot be created says why: a directory this user may not
        # write, one that does not exist (named in full when the path is relative),
        # a directory given as the path.
        run_new = ["run", "--service-json", pg_file, "--type", "databaseService", "--no-wait",
                   "sales_postgres", "--state"]
        if demote is not None:
            rc, out, err = as_reader(run_new + [os.path.join(rodir, "new.db")])
            check(rc == 3 and "this user may not create files in %s" % rodir in err,
                  "run in a read-only directory: %d %r" % (rc, err))
            # A directory on the way this user may not search is the one named.
            locked = os.path.join(tmp, "locked")
            os.makedirs(os.path.join(locked, "inner"))
            os.chmod(locked, 0o700)
            rc, out, err = as_reader(run_new + [os.path.join(locked, "inner", "new.db")])
            check(rc == 3 and err.rstrip().endswith("this user may not look into %s" % locked),
                  "run under a directory this user may not search: %d %r" % (rc, err))
        rc, out, err = cli(run_new + [os.path.join(tmp, "nodir", "new.db")])
        check(rc == 3 and "directory %s does not exist" % os.path.join(tmp, "nodir") in err,
              "run in a missing directory: %d %r" % (rc, err))
        p = subprocess.run([BIN] + run_new + ["nodir/new.db"], capture_output=True, text=True,
                           timeout=60, cwd=tmp, env=dict(os.environ, AUTOPILOT_AIRFLOW_USERNAME="admin",
                                                         AUTOPILOT_AIRFLOW_PASSWORD="admin"))
        check(p.returncode == 3 and "directory %s does not exist" % os.path.join(tmp, "nodir")
              in p.stderr, "a relative path in a missing directory: %d %r" % (p.returncode, p.stderr))
        rc, out, err = cli(run_new + [tmp])
        check(rc == 3 and "it is a directory" in err, "a directory as the state: %d %r" % (rc, err))
        os.chmod(rodir, 0o755)
        # --limit: digits only, 1 to 100000; anything else is a usage error
        # naming the flag and the value.
        for lim in ("-18446744073709551615", " 5", "+5", "5 ", "0", "100001", "", "0x10",
                    "18446744073709551617"):
            rc, out, err = cli(["status", "--state", os.path.join(tmp, "none.db"),
                                "--limit", lim])
            check(rc == 2 and out == "" and "--limit: '%s': must be an integer from 1 to 100000"
                  % lim in err, "status --limit %r: %d %r" % (lim, rc, err))
        rc, out, err = cli(["status", "--state", os.path.join(tmp, "none.db"), "--limit", "100000"])
        check(rc == 0, "status --limit 100000: %d %r" % (rc, err))
        # A --service-json that is a FIFO is refused, not waited on.
        fifo = os.path.join(tmp, "entity.fifo")
        os.mkfifo(fifo)
        try:
            rc, out, err = cli(["run", "-c", conf, "sales_postgres", "--service-json", fifo],
                               timeout=20)
            check(rc == 2 and "--service-json: %s: not a regular file" % fifo in err,
                  "--service-json a FIFO: %d %r" % (rc, err))
        except subprocess.TimeoutExpired:
            check(False, "--service-json a FIFO: waited on it")
        # An empty --state is refused as an empty state.path is.
        for args in (["status", "--state", ""], ["run", "-c", conf, "--state", "", "sales_postgres"]):
            rc, out, err = cli(args)
            check(rc == 2 and "--state: must be a non-empty path" in err,
                  "%s --state '': %d %r" % (args[0], rc, err))
        rc, out, _ = cli(["status", "--help"])
        check(rc == 0 and "also for a missing state database" in out,
              "status --help says a missing database is exit 0: %s" % out)
        # The secret files only serve reads (webhook, admin) are not read by
        # status and run, nor the others by status: mounted on serve's host
        # only, they must not stop an operator elsewhere. config check reads
        # them all.
        shared = os.path.join(tmp, "shared.json")
        with open(shared, "w") as f:
            json.dump({"airflow": {"url": sim.url}, "scheduler": FAST, "state": {"path": state},
                       "webhook": {"secret_file": "/nonexistent/webhook"},
                       "admin": {"token_file": "/nonexistent/admin"}}, f)
        rc, out, err = cli(["status", "-c", shared, "sales_postgres"])
        check(rc == 0 and "nonexistent" not in err, "status, serve's secrets missing: %d %r" % (rc, err))
        rc, out, err = cli(["run", "-c", shared, "sales_postgres", "--no-wait", "--replace"])
        check(rc == 0 and "submitted" in out, "run, serve's secrets missing: %d %r" % (rc, err))
        rc, out, err = cli(["run", "-c", shared, "sales_postgres", "--replace"])
        check(rc == 0, "run (driven here), serve's secrets missing: %d %r" % (rc, err))
        # The entity stored (the webhook keeps entityCreated's only): said when.
        check(re.search(r"the entity of databaseService sales_postgres is the one stored at "
                        r"\d{4}-\d\d-\d\dT[0-9:.]+Z .*--service-json FILE gives the service", err),
              "run says when the entity it uses was stored: %r" % err)
        rc, out, err = cli(["config", "check", "-c", shared])
        check(rc == 2 and "webhook.secret_file: /nonexistent/webhook" in err,
              "config check reads them: %d %r" % (rc, err))
        with open(shared, "w") as f:
            json.dump({"state": {"path": state}, "airflow": {"password_file": "/nonexistent/pw"},
                       "openmetadata": {"token_file": "/nonexistent/om"}}, f)
        rc, out, err = cli(["status", "-c", shared])
        check(rc == 0, "status, no secret file there: %d %r" % (rc, err))
        store_locked(sim, tmp)
        blocked_output(sim, pg_file)
    finally:
        if om:
            om.close()
        sim.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
