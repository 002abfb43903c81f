"""/readyz really looks at Airflow, without blocking the server: with no
Airflow listening, or one that accepts and never answers, it answers 503
("airflow": "unreachable") within a few seconds from the first request
(saying the connection was refused when it was),
and `serve` logs a warning at start but keeps serving; a client that hangs
up while its /readyz waits for the probe harms nothing; a drain answers a
waiting /readyz at once and exits promptly. Against the Airflow simulator it
answers 200, a storm of /readyz costs Airflow one health request per 5 s,
and an Airflow outage turns it 503. With a password Airflow turns down it
answers 503 ("airflow": "rejected") and `serve` warns at start, naming
the user and the settings to fix."""
import os
import socket
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import FixedAnswers, Serve, Sim, check, fail  # noqa: E402

HEALTH = "/openmetadata/health-auth"


class Silent:
    """A TCP server that accepts connections and never answers (a hung Airflow)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def dead_url():
    """A loopback port nobody listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


def readyz(srv, bound):
    t = time.monotonic()
    st, body = srv.request("GET", "/readyz", timeout=bound + 30)
    took = time.monotonic() - t
    check(took < bound, "/readyz took %.1f s (bound %g s): %s %s" % (took, bound, st, body))
    return st, body


def wait_log(srv, needle, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in srv.log():
            return
        time.sleep(0.1)
    fail("no %r in the log after %d s:\n%s" % (needle, timeout, srv.log()[-3000:]))


def hang_up_readyz(srv, n):
    """n /readyz requests whose clients hang up before any answer."""
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.close()


def no_airflow():
    srv = Serve(dead_url())
    try:
        srv.start()
        # Answered as soon as an attempt of the probe is refused, not after
        # the whole wait for it (2 s), which the client's retries outlive.
        st, body = readyz(srv, 1.5)
        check(st == 503 and body.get("ready") is False and body.get("airflow") == "unreachable"
              and body.get("store") == "writable" and body.get("airflow_error"),
              "readyz without Airflow: %s %s" % (st, body))
        # A refused connection is said as such, not as a slow Airflow
        # (the client retries it, so the probe outlives the wait).
        check("connect" in body["airflow_error"].lower(),
              "readyz without Airflow says why: %s" % body)
        wait_log(srv, "does not answer", 30)
        check("serving anyway" in srv.log(), "the warning says serve goes on")
        st, body = readyz(srv, 8)
        check(st == 503 and body["airflow"] == "unreachable", "still 503: %s %s" % (st, body))
        st, _ = srv.request("GET", "/healthz")
        check(st == 200, "healthz while Airflow is down: %s" % st)
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()


def hung_airflow():
    silent = Silent()
    # The health check gives up after 3 s, so a new probe starts after that
    # plus the 5 s the outcome stands.
    srv = Serve(silent.url, config={"airflow": {"request_timeout_ms": 3000, "max_retries": 0}})
    try:
        srv.start()
        hang_up_readyz(srv, 5)
        st, body = readyz(srv, 8)
        check(st == 503 and body["airflow"] == "unreachable" and "no answer to the health check sent" in body["airflow_error"]
              and "failed:" not in body["airflow_error"],
              "readyz with a hung Airflow: %s %s" % (st, body))
        st, _ = srv.request("GET", "/healthz")
        check(st == 200, "serving after hung-up /readyz clients: %s" % st)
        wait_log(srv, "does not answer", 30)
        time.sleep(5.5)   # the failed probe's outcome has expired: the next one probes
        box = []
        t = threading.Thread(target=lambda: box.append(srv.request("GET", "/readyz", timeout=30)))
        t0 = time.monotonic()
        t.start()
        time.sleep(1.0)
        check(not box, "the /readyz waits for the probe: %s" % box)
        rc = srv.stop(timeout=15)
        took = time.monotonic() - t0
        t.join(10)
        check(rc == 0 and took < 6, "drain with a waiting /readyz: rc %s after %.1f s" % (rc, took))
        check(box and box[0][0] == 503 and box[0][1].get("draining") is True,
              "the waiting /readyz answered by the drain: %s" % box)
    finally:
        srv.close()
        silent.close()


def hung_airflow_defaults():
    # With the client's defaults (30 s an attempt, 5 retries) the check at start
    # still ends within its own 15 s: the warning does not wait minutes.
    silent = Silent()
    srv = Serve(silent.url)
    try:
        t0 = time.monotonic()
        srv.start()
        wait_log(srv, "does not answer", 25)
        took = time.monotonic() - t0
        line = [l for l in srv.log().splitlines() if "does not answer" in l][0]
        check(12 < took < 25 and "Out of time" in line,
              "the start check of a hung Airflow: %.1f s: %s" % (took, line))
        check(srv.stop(timeout=15) == 0, "clean stop")
    finally:
        srv.close()
        silent.close()


def with_sim():
    sim = Sim({"parse_delay_ms": 50})
    srv = Serve(sim.url)
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 200 and body == {"ready": True, "store": "writable", "airflow": "reachable"},
              "readyz with Airflow: %s %s" % (st, body))
        # Another autopilot migrates the database meanwhile: 503 saying so,
        # said in the log too, and the version is not written back.
        db = sqlite3.connect(srv.state)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute("PRAGMA user_version = %d" % (version + 1))
        db.commit()
        time.sleep(1.1)
        st, body = srv.request("GET", "/readyz")
        check(st == 503 and "another autopilot migrated it since" in body.get("store", ""),
              "readyz on a database migrated meanwhile: %s %s" % (st, body))
        check(db.execute("PRAGMA user_version").fetchone()[0] == version + 1,
              "the version was written back")
        check("readyz: the state store is not writable" in srv.log() and
              "migrated it since" in srv.log(), "the store's state is logged")
        db.execute("PRAGMA user_version = %d" % version)
        db.commit()
        db.close()
        time.sleep(1.1)
        st, body = srv.request("GET", "/readyz")
        check(st == 200, "readyz once the version is back: %s %s" % (st, body))
        check("the state store is writable again" in srv.log(), "the way back is logged")
        sim.call("DELETE", "/_sim/requests")
        for _ in range(40):
            st, body = srv.request("GET", "/readyz")
            check(st == 200, "readyz in a storm: %s %s" % (st, body))
        probes = [r for r in sim.requests() if r["path"].endswith(HEALTH)]
        check(len(probes) <= 2, "a storm of /readyz: %d health requests" % len(probes))
        sim.call("POST", "/_sim/outage?ms=60000&mode=reset")
        deadline = time.monotonic() + 20
        while True:
            st, body = readyz(srv, 8)
            if st == 503:
                break
            check(time.monotonic() < deadline, "readyz still 200 during an outage: %s" % body)
            time.sleep(0.3)
        check(body["airflow"] == "unreachable", "outage: %s" % body)
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


def idle_recovery():
    # An outage that opens the breaker (every health check fails), then Airflow
    # back: a server with no work sees it by itself, and /readyz turns 200 again
    # without a webhook to make requests wait for the breaker's probe.
    sim = Sim({"parse_delay_ms": 50})
    srv = Serve(sim.url, config={"airflow": {"retry_base_ms": 50, "retry_max_ms": 500}})
    try:
        srv.start()
        sim.call("POST", "/_sim/outage?ms=6000")
        deadline = time.monotonic() + 20
        while True:
            st, body = readyz(srv, 8)
            if "circuit breaker open" in body.get("airflow_error", ""):
                break
            check(time.monotonic() < deadline, "no breaker open in an outage: %s" % body)
            time.sleep(0.5)
        deadline = time.monotonic() + 40
        while True:
            time.sleep(1)
            st, _, text = srv.exchange("GET", "/metrics")
            if st == 200 and "autopilot_airflow_up 1" in text:
                break
            check(time.monotonic() < deadline, "Airflow back, still down in /metrics")
        st, body = readyz(srv, 8)
        check(st == 200 and body["airflow"] == "reachable",
              "readyz after the outage, with no work: %s %s" % (st, body))
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


def wrong_password():
    sim = Sim({"parse_delay_ms": 50})
    srv = Serve(sim.url, env={"AUTOPILOT_AIRFLOW_PASSWORD": "wrong"})
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 503 and body.get("airflow") == "rejected" and "401" in body["airflow_error"],
              "readyz with a wrong password: %s %s" % (st, body))
        wait_log(srv, "refuses the credentials of user 'admin'", 10)
        check("AUTOPILOT_AIRFLOW_PASSWORD" in srv.log() and "wrong" not in srv.log(),
              "the warning names the setting, not the secret")
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


def login_refused():
    """Airflow 3 whose login (POST /auth/token) refuses, its plugin's Basic
    auth taking the same credentials (a proxy in front of the login):
    /readyz says rejected, naming the login and the settings, and so does
    an agent's error, rather than an HTTP 401 of its own request."""
    from serve_itlib import event, entity
    sim = Sim({"parse_delay_ms": 50, "proxy_401": ["/auth/token"]}, api="v2")
    srv = Serve(sim.url, config={"airflow": {"api": "v2"}})
    want = "Airflow 3's login (POST /auth/token) refused the credentials of user 'admin'"
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 503 and body.get("airflow") == "rejected" and want in body["airflow_error"]
              and "AUTOPILOT_AIRFLOW_PASSWORD" in body["airflow_error"],
              "readyz with Airflow 3's login refused: %s %s" % (st, body))
        st, body = srv.post_event(event("databaseService", entity("databaseService", "lr")))
        check(st == 202, "a delivery: %s %s" % (st, body))
        runs = srv.wait_final(1, timeout=30)
        errors = [a.get("error") or "" for a in runs[0]["agents"]]
        check(any(want in e for e in errors), "the agent says the login refused: %s" % runs)
        for _ in range(3):
            st, body = readyz(srv, 8)
            check(st == 503 and want in body.get("airflow_error", ""), "readyz: %s" % body)
            time.sleep(2)
        # A refused login is not tried again for 30 s, by probes or agents.
        logins = [r for r in sim.requests() if r["path"] == "/auth/token"]
        check(1 <= len(logins) <= 2, "logins tried: %d" % len(logins))
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


def no_plugin():
    """An Airflow that answers, with no plugin route where it is looked for
    (a path that is not Airflow's): said as that, not as an Airflow down."""
    sim = Sim({"parse_delay_ms": 50})
    srv = Serve(sim.url + "/nothere")
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 503 and body.get("airflow") == "rejected" and "404" in body["airflow_error"],
              "readyz with no plugin route: %s %s" % (st, body))
        wait_log(srv, "has no OpenMetadata plugin route there", 10)
        check("does not answer" not in srv.log(), "not said to be down: %s" % srv.log()[-2000:])
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        sim.close()


def proxy_404():
    """/readyz says what the attempts got (a proxy's 404s), not that nothing answered."""
    proxy = FixedAnswers(404, b"<html>404 Not Found</html>", {"Content-Type": "text/html"})
    srv = Serve(proxy.url)
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 503 and body.get("airflow") == "unreachable"
              and "HTTP 404 without Airflow's JSON body" in body.get("airflow_error", ""),
              "readyz behind a proxy's 404s: %s %s" % (st, body))
        wait_log(srv, "GET /api/v1/version HTTP 404", 10)
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()
        proxy.close()


def store_locked():
    """A lock on the state database held long by another process (an
    `sqlite3` shell with a transaction open) does not stop the server: it
    answers /healthz all along (each request within a second, where every
    statement used to wait 5 s), /readyz and a delivery 503 (OpenMetadata
    delivers again), and all is served again once the lock goes."""
    from serve_itlib import event, entity
    sim = Sim({"parse_delay_ms": 50})
    srv = Serve(sim.url)
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 200, "readyz before the lock: %s %s" % (st, body))
        db = sqlite3.connect(srv.state, isolation_level=None, timeout=10)
        db.execute("BEGIN EXCLUSIVE")
        try:
            slowest = 0.0
            end = time.monotonic() + 6
            while time.monotonic() < end:
                t = time.monotonic()
                st, _ = srv.request("GET", "/healthz", timeout=30)
                slowest = max(slowest, time.monotonic() - t)
                check(st == 200, "healthz while the store is locked: %s" % st)
                time.sleep(0.05)
            check(slowest < 1.0, "/healthz took %.2f s while the store was locked" % slowest)
            st, body = readyz(srv, 3)
            check(st == 503 and "database is locked" in body.get("store", ""),
                  "readyz locked: %s %s" % (st, body))
            st, body = srv.post_event(event("databaseService", entity("databaseService", "lk")))
            check(st == 503, "a delivery while the store is locked: %s %s" % (st, body))
        finally:
            db.execute("COMMIT")
            db.close()
        deadline = time.monotonic() + 10
        while True:
            st, body = srv.post_event(event("databaseService", entity("databaseService", "lk")))
            if st == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        check(st == 202, "a delivery once the lock is gone: %s %s" % (st, body))
        runs = srv.wait_final(1, timeout=30)
        check(runs[0]["state"] == "succeeded", "its run: %s" % runs)
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()


def redirected():
    """A redirect is never Airflow's answer: Airflow is not reached, /readyz
    says so, and a delivery's run waits for it (noting why) instead of
    failing at once; `run` exits 3."""
    from serve_itlib import cli, event, entity
    # An ingress that sends every request to an SSO login (airflow.url wrong).
    proxy = FixedAnswers(302, headers={"Location": "https://sso.example/login"})
    srv = Serve(proxy.url, config={"airflow": {"api": "v1", "max_retries": 1, "retry_base_ms": 50}})
    try:
        srv.start()
        st, body = readyz(srv, 8)
        check(st == 503 and body.get("airflow") == "unreachable", "readyz redirected: %s %s"
              % (st, body))
        st, body = srv.post_event(event("databaseService", entity("databaseService", "rd")))
        check(st == 202, "a delivery: %s %s" % (st, body))
        deadline = time.monotonic() + 20
        agent = {}
        while time.monotonic() < deadline:
            runs = srv.runs()
            agents = runs[0]["agents"] if runs else []
            agent = agents[0] if agents else {}
            if "Redirect, not followed" in (agent.get("error") or ""):
                break
            time.sleep(0.2)
        check(runs[0]["state"] == "running" and agent.get("state") == "deploying" and
              (agent.get("error") or "").startswith("Airflow unreachable during deploy")
              and "check airflow.url" in agent["error"],
              "the run waits for Airflow, saying why: %s" % runs)
        check(srv.stop() == 0, "clean stop")
        rc, out, err = cli(["run", "-c", srv.conf, "rd", "--type", "databaseService"],
                           env=srv.env, timeout=120)
        check(rc == 3 and "Redirect, not followed" in err, "run against a redirect: %d %s"
              % (rc, err))
    finally:
        srv.close()
        proxy.close()


def main():
    login_refused()
    redirected()
    store_locked()
    proxy_404()
    wrong_password()
    no_plugin()
    no_airflow()
    hung_airflow()
    hung_airflow_defaults()
    with_sim()
    idle_recovery()
    print("ok")


if __name__ == "__main__":
    main()
