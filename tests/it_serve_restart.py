"""`autopilot serve` stopped with SIGTERM in the middle of runs hands them
over and exits 0; the next start resumes them to the end without a second
trigger of any attempt. Also: --log-json gives one JSON object a line and
the webhook secret never appears in the log; the drain finishes an answer
being written (listen.shutdown_grace_s) and does not wait for idle
connections."""
import base64
import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import ADMIN, SECRET, Serve, Sim, check, entity, event  # noqa: E402
from sched_itlib import check_no_double_trigger  # noqa: E402

PASSWORD = "pw-Not-In-Any-Log-7f3"


def main():
    sim = Sim({"parse_delay_ms": 200, "password": PASSWORD,
               "pipelines": {"*": {"queued_ms": 50, "running_ms": 1500}}})
    srv = Serve(sim.url, args=["--log-json"], config={"log": {"level": "debug"}},
                env={"AUTOPILOT_AIRFLOW_PASSWORD": PASSWORD})
    try:
        srv.start()
        n = 5
        for i in range(n):
            st, body = srv.post_event(event("databaseService", entity("databaseService", "pg_%d" % i)))
            check(st == 202, "event %d: %s %s" % (i, st, body))
        bad = event("databaseService", entity("databaseService", "pg_bad"), eid="ev-refused-1")
        del bad["entityType"]
        st, body = srv.post_event(bad)
        check(st == 400, "an event without entityType: %s %s" % (st, body))
        # Wait until metadata runs in Airflow, then stop in the middle.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = srv.runs()
            if all(any(a["agent"] == "metadata" and a["state"] in ("queued", "running")
                       for a in r["agents"]) for r in runs) and len(runs) == n:
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        check(srv.stop() == 0, "SIGTERM: exit 0")
        check(time.monotonic() - t0 < 5, "stopped promptly")
        lines = []
        for line in srv.log().splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    check(False, "--log-json line is not JSON: %r" % line)
        log_fields(lines, runs)
        # log.level debug: each request to Airflow with its answer, and
        # never a credential.
        asked = [ln["msg"] for ln in lines if ln["msg"].startswith("airflow: ")]
        check(any(re.match(r"airflow: POST /api/v1/dags/\S+/dagRuns: HTTP 200 in \d+ ms$", m)
                  for m in asked), "a trigger at debug: %r" % asked[:20])
        check(any(re.match(r"airflow: PATCH /api/v1/dags/\S+\?update_mask=is_paused: HTTP 404 in \d+ ms$",
                           m) for m in asked), "an unpause before the parse at debug: %r" % asked[:20])
        check(PASSWORD not in srv.log() and base64.b64encode(b"admin:" + PASSWORD.encode()).decode()
              not in srv.log(), "no credential in the debug log")
        check(SECRET not in srv.log(), "the secret is never logged")

        srv.start()
        runs = srv.wait_final(n, timeout=90)
        for r in runs:
            check(r["state"] == "succeeded", "resumed run %s: %s" % (r["service"]["fqn"], r))
        check("resum" in srv.log(), "the restart says it resumes runs")
        seen = check_no_double_trigger(sim.requests())
        check(len(seen) == 4 * n, "one trigger per agent run: %d" % len(seen))
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()
    drain(sim)
    print("ok")


def log_fields(lines, runs):
    """A run's lines carry its run_id (and fqn, and agent where it is about
    one), and an accepted event's line its event_id: a run's story can be
    picked out of JSON logs without reading the messages."""
    for ln in lines:
        m = re.match(r"run (\S+?)(?: agent (\S+?))?[ :]", ln["msg"])
        if m:
            check(ln.get("run_id") == m.group(1), "run_id field of %r" % ln)
            if m.group(2):
                check(ln.get("agent") == m.group(2), "agent field of %r" % ln)
    for r in runs:
        mine = [ln for ln in lines if ln.get("run_id") == r["run_id"]]
        check(any(ln.get("agent") == "metadata" and ln.get("fqn") == r["service"]["fqn"]
                  for ln in mine), "a metadata line of run %s: %r" % (r["run_id"], mine))
        check(any("accepted" in ln["msg"] and ln.get("event_id") and
                  ln.get("fqn") == r["service"]["fqn"] for ln in mine),
              "the accepting line of run %s: %r" % (r["run_id"], mine))
    check(any(ln.get("event_id") == "ev-refused-1" and "refused" in ln["msg"] for ln in lines),
          "the refused delivery's line carries its event_id")
    check(all(set(ln) <= {"ts", "level", "msg", "run_id", "agent", "fqn", "event_id"}
              for ln in lines), "known keys only")


def drain(sim):
    """SIGTERM while a large answer is being written and another connection
    is idle: the answer arrives whole, and serve exits at once rather than
    after the 30 s grace."""
    srv = Serve(sim.url, config={"listen": {"shutdown_grace_s": 30},
                                 "scheduler": {"max_agents_in_flight": 1}})
    try:
        srv.start()
        for k in range(10):
            evs = [event("databaseService", entity("databaseService", "drain_%03d_%d_%s" % (k, i, "x" * 60)))
                   for i in range(100)]
            st, body = srv.post_event({"data": evs})
            check(st == 202, "batch %d: %s %s" % (k, st, str(body)[:300]))
        idle = socket.create_connection(("127.0.0.1", srv.port))
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", srv.port))
        slow.sendall(("GET /api/v1/runs?limit=1000 HTTP/1.1\r\nHost: it\r\n"
                      "Authorization: Bearer %s\r\n\r\n" % ADMIN).encode())
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        data = b""
        slow.settimeout(10)
        while True:
            d = slow.recv(65536)
            if not d:
                break
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200"), "answer during the drain: %r" % head[:200])
        runs = json.loads(body)
        check(len(runs) == 1000, "the whole answer arrived: %d runs" % len(runs))
        rc = srv.proc.wait(10)
        check(rc == 0, "exit 0 after the drain: %s" % rc)
        check(time.monotonic() - t0 < 5, "an idle connection does not hold the drain: %.1f s"
              % (time.monotonic() - t0))
        idle.close()
        slow.close()
    finally:
        srv.close()


if __name__ == "__main__":
    main()
