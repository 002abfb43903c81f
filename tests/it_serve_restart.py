"""`autopilot serve` stopped with SIGTERM in the middle of runs hands them
over and exits 0; the next start resumes them to the end without a second
trigger of any attempt. Also: --log-json gives one JSON object a line and
the webhook secret never appears in the log."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import SECRET, Serve, Sim, check, entity, event  # noqa: E402
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
    print("ok")


if __name__ == "__main__":
    main()
