"""`autopilot serve` stopped with SIGTERM in the middle of runs hands them
over and exits 0; the next start resumes them to the end without a second
trigger of any attempt. Also: --log-json gives one JSON object a line and
the webhook secret never appears in the log; the drain finishes an answer
being written (listen.shutdown_grace_s) and does not wait for idle
connections."""
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import ADMIN, SECRET, Serve, Sim, check, entity, event  # noqa: E402
from sched_itlib import check_no_double_trigger  # noqa: E402


def main():
    sim = Sim({"parse_delay_ms": 200, "pipelines": {"*": {"queued_ms": 50, "running_ms": 1500}}})
    srv = Serve(sim.url, args=["--log-json"])
    try:
        srv.start()
        n = 5
        for i in range(n):
            st, body = srv.post_event(event("databaseService", entity("databaseService", "pg_%d" % i)))
            check(st == 202, "event %d: %s %s" % (i, st, body))
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
        for line in srv.log().splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    check(False, "--log-json line is not JSON: %r" % line)
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
