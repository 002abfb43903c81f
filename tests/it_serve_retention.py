"""state.retention_days: `autopilot serve` deletes, soon after start, the
runs that ended that many days ago (with their agent runs) and the events
received as long ago; it keeps the last run, every service's entity, and
counts what it deleted in /metrics. A delivery repeated after its event was
deleted starts a new run. Without the key nothing is deleted."""
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import Serve, Sim, check, cli, entity, event, parse_prometheus  # noqa: E402

DAY_MS = 86400 * 1000


def rows(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def age(path, days):
    """Makes every run, agent run and event as old as days."""
    then = int(time.time() * 1000) - days * DAY_MS
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET created_at = ?1, started_at = ?1, finished_at = ?1 + 1000", (then,))
    db.execute("UPDATE agent_runs SET started_at = ?1, finished_at = ?1 + 1000", (then,))
    db.execute("UPDATE inbox SET received_at = ?1", (then,))
    db.commit()
    db.close()


def metric(srv, name):
    st, text = srv.request("GET", "/metrics")
    check(st == 200, "/metrics: %s" % st)
    return parse_prometheus(text).get((name, frozenset()))


def wait_log(srv, needle, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in srv.log():
            return
        time.sleep(0.1)
    check(False, "no %r in the log:\n%s" % (needle, srv.log()[-3000:]))


def main():
    n = 6
    sim = Sim({"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 20, "running_ms": 50}}})
    srv = Serve(sim.url)
    events = [event("databaseService", entity("databaseService", "ret_%d" % i)) for i in range(n)]
    try:
        srv.start()
        for ev in events:
            st, body = srv.post_event(ev)
            check(st == 202, "event: %s %s" % (st, body))
        srv.wait_final(n)
        check(srv.stop() == 0, "clean stop")
        age(srv.state, 3)

        # Without retention_days: nothing deleted, however old.
        srv.start()
        time.sleep(3)
        check(rows(srv.state, "SELECT count(*) FROM runs") == n, "kept without retention_days")
        check(metric(srv, "autopilot_retention_runs_deleted_total") == 0, "none counted")
        check(srv.stop() == 0, "clean stop")

        # A day: every run but the last, and every event.
        srv2 = Serve(sim.url, config={"state": {"retention_days": 1}}, workdir=srv.dir)
        srv2.start()
        wait_log(srv2, "retention: deleted %d runs and %d events" % (n - 1, n))
        check(rows(srv.state, "SELECT count(*) FROM runs") == 1, "the last run kept")
        check(rows(srv.state, "SELECT count(*) FROM agent_runs WHERE run_id NOT IN"
                   " (SELECT run_id FROM runs)") == 0, "no agent run left without its run")
        check(rows(srv.state, "SELECT count(*) FROM inbox") == 0, "old events deleted")
        check(rows(srv.state, "SELECT count(*) FROM services WHERE entity <> '' OR entity_run IN"
                   " (SELECT run_id FROM runs)") == n, "every service keeps its entity")
        check(metric(srv2, "autopilot_retention_runs_deleted_total") == n - 1, "runs counted")
        check(metric(srv2, "autopilot_retention_events_deleted_total") == n, "events counted")
        st, text = srv2.request("GET", "/metrics")
        check('autopilot_runs{state="succeeded"} 1\n' in text, "the store's counts follow: %s"
              % [ln for ln in text.splitlines() if ln.startswith("autopilot_runs{")])

        # A delivery repeated now is a new event: a new run.
        st, body = srv2.post_event(events[0])
        check(st == 202 and not body.get("repeated"), "repeated after deletion: %s %s" % (st, body))
        srv2.wait_final(2)
        check(srv2.stop() == 0, "clean stop")

        # The entity of a service whose runs are all gone re-runs it.
        rc, out, err = cli(["run", "-c", srv2.conf, "ret_1", "--no-wait", "--json"])
        check(rc == 0, "run on a pruned service: %s %s %s" % (rc, out, err))

        # config check shows the key.
        rc, out, err = cli(["config", "check", "-c", srv2.conf])
        check(rc == 0 and '"retention_days": 1' in out, "config check: %s %s" % (rc, out[:2000]))
    finally:
        srv.close()
        sim.close()
    print("ok")


if __name__ == "__main__":
    main()
