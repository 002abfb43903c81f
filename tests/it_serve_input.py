"""Bad and hostile webhook input against the real `autopilot serve`: each
case gets its documented answer with a JSON error body, nothing bad becomes
a run, and the server keeps serving. Also: no secret -> refuses to start
unless --allow-unsigned."""
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import (SECRET, Serve, Sim, check, check_change_event, cli,  # noqa: E402
                         entity, event, example_event, sign)


def expect(srv, what, res, status, error_has=None):
    st, body = res
    check(st == status, "%s: status %s, expected %s: %s" % (what, st, status, body))
    if status >= 400 and status != 413 or isinstance(body, dict):
        check(isinstance(body, dict) and "error" in body and "detail" in body,
              "%s: JSON error body: %r" % (what, body))
        if error_has:
            check(error_has in body["detail"], "%s: detail %r lacks %r" % (what, body["detail"], error_has))


def main():
    sim = Sim({"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10, "running_ms": 50}}})
    srv = Serve(sim.url, config={"listen": {"max_body_bytes": 65536, "max_json_depth": 16}})
    try:
        srv.start()
        good = json.dumps(example_event()).encode()
        J = {"Content-Type": "application/json"}
        post = lambda body, h: srv.request("POST", "/api/v1/webhooks/openmetadata", body, h)  # noqa

        expect(srv, "unsigned", post(good, J), 401, "missing")
        expect(srv, "wrong secret", post(good, dict(J, **{"X-OM-Signature": sign(good, "nope")})), 401)
        hexsig = "sha256=" + hmac.new(SECRET.encode(), good, hashlib.sha256).hexdigest()
        expect(srv, "hex signature", post(good, dict(J, **{"X-OM-Signature": hexsig})), 401, "hex")
        expect(srv, "no sha256= prefix", post(good, dict(J, **{"X-OM-Signature": "abc"})), 401)
        expect(srv, "signature of another body",
               post(good, dict(J, **{"X-OM-Signature": sign(good[:-1])})), 401)
        # Refusals are for the operator to see (log.level warn), with the
        # client's address, at most one line a second.
        refused = [x for x in srv.log().splitlines() if "webhook refused from 127.0.0.1:" in x]
        check(refused and " warn " in refused[0] and "missing" in refused[0],
              "the first refusal was not logged: %s" % srv.log()[-2000:])
        check(len(refused) < 5, "every refusal logged: %s" % refused)
        # Those not logged are counted, and the count logged a second on
        # with the last of them, without waiting for another refusal.
        time.sleep(2.1)
        more = [x for x in srv.log().splitlines()
                if re.search(r" warn  webhook: \d+ more refused within a second of the last such"
                             r" line, the last from 127\.0\.0\.1:\d+: ", x)]
        check(more and len(refused) + sum(int(x.split("webhook: ")[1].split()[0]) for x in more)
              == 5, "the refusals not logged are counted: %s %s" % (refused, more))
        expect(srv, "wrong secret, later", post(good, dict(J, **{
            "X-OM-Signature": sign(good, "nope")})), 401)
        refused = [x for x in srv.log().splitlines() if "webhook refused from" in x]
        check("wrong secret" in refused[-1], refused[-1])
        # Admin refusals are counted apart.
        for _ in range(5):
            code, _ = srv.admin("POST", "/api/v1/services/databaseService/x/rerun", token="bad")
            check(code == 401, "a wrong admin token: %d" % code)
        time.sleep(2.1)
        log = srv.log().splitlines()
        check(len([x for x in log if "admin request refused from" in x]) == 1 and
              [x for x in log if "admin request: 4 more refused within a second" in x and
               "the token does not match" in x] and
              len([x for x in log if " webhook: " in x and " more refused" in x]) == 1,
              "admin refusals counted apart: %s" % [x for x in log if "refused" in x])
        trunc = good[: len(good) // 2]
        expect(srv, "truncated", srv.post_event(trunc), 400)
        expect(srv, "not JSON", srv.post_event(b"hello, autopilot"), 400)
        expect(srv, "empty body", srv.post_event(b""), 400)
        deep = ("[" * 5000 + "]" * 5000).encode()
        expect(srv, "deeply nested", srv.post_event(deep), 400)
        deep_ent = example_event()
        deep_ent["entity"]["connection"]["config"]["x"] = json.loads("[" * 30 + "]" * 30)
        expect(srv, "deeply nested entity", srv.post_event(deep_ent), 400)
        big = json.dumps(dict(example_event(), pad="x" * 100000)).encode()
        expect(srv, "oversized", srv.post_event(big), 413, "limit")
        # Far past the limit: refused with libevent's 413, which a sender still
        # writing its body gets too (the rest is read and dropped, not kept).
        huge = b"{" + b" " * (4 * 1024 * 1024) + b"}"
        st, _ = srv.post_event(huge)
        check(st == 413, "huge body: %s" % st)
        expect(srv, "text/plain", srv.request("POST", "/api/v1/webhooks/openmetadata", good,
                                             {"Content-Type": "text/plain",
                                              "X-OM-Signature": sign(good)}), 415)
        expect(srv, "no content type", srv.request("POST", "/api/v1/webhooks/openmetadata", good,
                                                  {"X-OM-Signature": sign(good)}), 415)
        expect(srv, "GET", srv.request("GET", "/api/v1/webhooks/openmetadata"), 405)
        many = dict(J, **{"X-OM-Signature": sign(good)})
        many.update({"X-Pad-%d" % i: "1" for i in range(100)})
        expect(srv, "too many headers", post(good, many), 431)
        pad = {"X-Pad-%d" % i: "1" for i in range(100)}
        for path in ("/healthz", "/metrics", "/api/v1/runs"):
            expect(srv, "too many headers on %s" % path, srv.request("GET", path, None, pad),
                   431, "more than 64 request headers")
        ev = example_event()
        del ev["entity"]["fullyQualifiedName"]
        del ev["entityFullyQualifiedName"]
        expect(srv, "entity without its name", srv.post_event(ev), 400, "fullyQualifiedName")
        ev = example_event()
        ev["entity"] = "{not json"
        expect(srv, "entity string not JSON", srv.post_event(ev), 400)
        ev = example_event()
        del ev["eventType"]
        check_change_event(ev, valid=False)
        expect(srv, "no eventType", srv.post_event(ev), 400, "eventType")
        expect(srv, "a list", srv.post_event(b"[1,2]"), 400)
        # An event refused as it is is lost for good: at log.level warn, with
        # the sender and the event id (at most a line a second, the others
        # counted, as refusals for credentials are).
        time.sleep(1.1)
        expect(srv, "no eventType, again", srv.post_event(ev), 400, "eventType")
        time.sleep(1.1)
        log = srv.log()
        check(re.search(r" warn  webhook delivery: \d+ more refused within a second of the"
                        r" last such line, the last from 127\.0\.0\.1:\d+: 400", log),
              "refused deliveries counted: %s" % "\n".join(
                  x for x in log.splitlines() if "delivery" in x))
        check(re.search(r" warn  webhook delivery refused from 127\.0\.0\.1:\d+: 400 \(event %s\):"
                        r" invalid event: eventType: " % re.escape(ev["id"]), log),
              "a refused delivery at warn, with its event id: %s" % "\n".join(
                  x for x in log.splitlines() if "delivery" in x))

        st, body = srv.post_event(dict(example_event(), eventType="entityDeleted"))
        check(st == 200 and "ignored" in body, "entityDeleted ignored: %s %s" % (st, body))
        st, body = srv.post_event(dict(example_event(), entityType="securityService"))
        check(st == 200 and "ignored" in body, "securityService ignored: %s %s" % (st, body))
        st, body = srv.post_event(dict(example_event(), entityType="glossaryTerm"))
        check(st == 200 and "ignored" in body, "glossaryTerm ignored: %s %s" % (st, body))
        st, body = srv.request("GET", "/nope")
        check(st == 404 and body.get("error"), "unknown route: %s %s" % (st, body))

        check(srv.runs() == [], "no run from bad input: %s" % srv.runs())

        # A batched delivery: one acted on, one ignored.
        a = event("databaseService", entity("databaseService", "batch_pg"))
        b = event("databaseService", entity("databaseService", "batch_x"), etype="entityUpdated")
        st, body = srv.post_event({"data": [a, b]})
        check(st == 202 and len(body["results"]) == 2 and "run_id" in body["results"][0]
              and "ignored" in body["results"][1], "batch: %s %s" % (st, body))
        # A batch with events that cannot be read: 400 naming them, but the
        # others are served all the same (refused whole, they would be
        # refused again each time it came back).
        c = event("databaseService", entity("databaseService", "batch_ok"))
        bad = event("databaseService", entity("databaseService", "batch_bad"))
        del bad["timestamp"]
        st, body = srv.post_event({"data": [bad, c, [1]]})
        check(st == 400 and body["error"] == "invalid event"
              and body["detail"] == "data[0].timestamp: missing (and 1 more events that cannot"
              " be read; the others were served, see results)"
              and len(body["results"]) == 3
              and body["results"][0] == {"id": bad["id"], "error": "data[0].timestamp: missing"}
              and "run_id" in body["results"][1]
              and body["results"][2] == {"error": "data[2]: a ChangeEvent must be a JSON object"},
              "batch with unreadable events: %s %s" % (st, body))
        st3, again = srv.post_event({"data": [bad, c, [1]]})
        check(st3 == 400 and again["results"][1] == dict(body["results"][1], repeated=True),
              "the same batch again: the served event is a repeat: %s %s" % (st3, again))
        # A new event for a service whose run is still active joins it, and
        # says so; it brings another entity (a service created again), so a
        # run with it follows once the active one ends.
        # The run's own entity again, its keys in another order, asks for
        # nothing more.
        same = json.loads(json.dumps(c["entity"], sort_keys=True))
        st4, body4 = srv.post_event(event("databaseService", same))
        check(st4 == 202 and body4 == {"run_id": body["results"][1]["run_id"], "joined": True},
              "the same entity joining: %s %s" % (st4, body4))
        recreated = entity("databaseService", "batch_ok")
        st2, body2 = srv.post_event(event("databaseService", recreated))
        check(st2 == 202 and body2 == {"run_id": body["results"][1]["run_id"], "joined": True,
                                       "follows": True},
              "an event joining the active run: %s %s" % (st2, body2))
        joined_run = body2["run_id"]
        st, body = srv.post_event({"data": [bad, bad]})
        check(st == 400 and "timestamp: missing" in body.get("detail", "")
              and "no event of the 2" in body.get("detail", "")
              and body.get("results") == [{"id": bad["id"], "error": "data[0].timestamp: missing"},
                                          {"id": bad["id"], "error": "data[1].timestamp: missing"}],
              "batch with nothing to read: %s %s" % (st, body))
        st, body = srv.post_event({"data": [bad]})
        check(st == 400 and body.get("detail") == "data[0].timestamp: missing"
              and body.get("results") == [{"id": bad["id"], "error": "data[0].timestamp: missing"}],
              "batch of one that cannot be read: %s %s" % (st, body))
        st, metrics = srv.request("GET", "/metrics")
        check('autopilot_webhooks_total{outcome="invalid"} 7' in metrics,
              "metrics count the unreadable events")
        st, body = srv.post_event(good)
        check(st == 202, "a good event after all that: %s %s" % (st, body))
        runs = srv.wait_final(4)
        ok_runs = [r for r in runs if r["service"]["fqn"] == "batch_ok"]
        check(len(ok_runs) == 2 and all(r["state"] == "succeeded" for r in ok_runs)
              and ok_runs[1]["run_id"] == joined_run,
              "the joined event's own run followed the one it joined: %s" % ok_runs)
        follow = ok_runs[0]["run_id"]
        check("run %s follows" % follow in srv.log(), "the follow-up is logged")
        deployed = [r["body"] for r in sim.requests() if r["method"] == "POST"
                    and r["path"].endswith("/openmetadata/deploy") and isinstance(r["body"], dict)
                    and (r["body"].get("service") or {}).get("id") == recreated["id"]]
        check(deployed, "the follow-up deployed the re-created service's entity")

        # A re-run's body is held to the same limit (refused before it is
        # parsed), and an agent named twice is refused, not run once.
        rerun = "/api/v1/services/databaseService/batch_pg/rerun"
        expect(srv, "oversized re-run", srv.admin("POST", rerun, {"agents": ["metadata"] * 20000}),
               413, "listen.max_body_bytes")
        expect(srv, "agent named twice", srv.admin("POST", rerun, {"agents": ["metadata", "usage",
                                                                              "metadata"]}),
               400, "agents[2]: 'metadata' is listed twice")
        expect(srv, "no agents", srv.admin("POST", rerun, {"agents": []}),
               400, "agents: must be a non-empty list of agent names (of metadata, ")
        expect(srv, "more agents than a run has", srv.admin("POST", rerun, {"agents": ["usage"] * 6}),
               400, "agents: 6 names, more than there are agents (metadata, ")
        check(len(srv.runs()) == 4, "no run from a refused re-run: %s" % srv.runs())

        # Deliveries whose sender hangs up right after sending (large ones,
        # half of them after a shutdown of its side only): the answers go
        # nowhere, the server goes on and takes the next delivery.
        for i in range(60):
            ent = entity("databaseService", "gone_%d" % i, extra={"description": "d" * 50000})
            body = json.dumps(event("databaseService", ent)).encode()
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"POST /api/v1/webhooks/openmetadata HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nX-OM-Signature: " + sign(body).encode() +
                      b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            if i % 2:
                s.shutdown(socket.SHUT_WR)
            s.close()
        st, body = srv.post_event(event("databaseService", entity("databaseService", "after_gone")))
        check(st == 202, "a delivery after 60 abandoned ones: %s %s" % (st, body))
        st, _ = srv.request("GET", "/healthz")
        check(st == 200, "still serving")
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()

    # A batch whose second event the store refuses: 503, the first event's
    # run is committed all the same, and driven once committed (not left to
    # a rescan, here none), and only then logged as accepted; delivered
    # again, that event is a repeat.
    srv = Serve(sim.url, config={"scheduler": {"rescan_ms": 0}})
    try:
        srv.start()
        db = sqlite3.connect(srv.state)
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.event_id LIKE"
                   " 'refused-%' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        db.commit()
        first = event("databaseService", entity("databaseService", "half_1"))
        second = event("databaseService", entity("databaseService", "half_2"),
                       eid="refused-1")
        st, body = srv.post_event({"data": [first, second]})
        check(st == 503, "a batch the store half refuses: %s %s" % (st, body))
        runs = srv.wait_final(1, timeout=30)
        check([(r["service"]["fqn"], r["state"]) for r in runs] == [("half_1", "succeeded")],
              "the stored event's run driven: %s" % runs)
        log = srv.log()
        check(re.search(r"event %s \(databaseService half_1\) accepted: run \S+ \(stored, though"
                        r" its delivery was answered 503" % first["id"], log) and
              "refused-1 (" not in log, "accepted said of the stored event only: %s" % log[-3000:])
        db.execute("DROP TRIGGER refuse")
        db.commit()
        db.close()
        st, body = srv.post_event({"data": [first, second]})
        check(st == 202 and [r.get("repeated", False) for r in body["results"]] == [True, False],
              "delivered again: %s %s" % (st, body))
        runs = srv.wait_final(2, timeout=30)
        check(all(r["state"] == "succeeded" for r in runs),
              "both runs driven: %s" % [(r["service"]["fqn"], r["state"]) for r in runs])
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()

    # An event that joins a run still waiting for admission (not started:
    # 16 runs wait for the one agent slot ahead of it): the run takes its
    # entity, and no second run follows.
    srv = Serve(sim.url, config={"scheduler": {"max_agents_in_flight": 1}})
    try:
        srv.start()
        for i in range(18):
            code, _ = srv.post_event(event("dashboardService", entity("dashboardService",
                                                                       "ahead%d" % i)))
            check(code == 202, "a run ahead: %d" % code)
        first, second = entity("databaseService", "queued"), entity("databaseService", "queued")
        code, b1 = srv.post_event(event("databaseService", first))
        code2, b2 = srv.post_event(event("databaseService", second))
        check(code == 202 and code2 == 202 and b2 == {"run_id": b1["run_id"], "joined": True},
              "an event joining a run not started: %s %s" % (b1, b2))
        runs = srv.wait_final(19)
        mine = [r for r in runs if r["service"]["fqn"] == "queued"]
        ids = {(r["body"].get("service") or {}).get("id") for r in sim.requests()
               if r["method"] == "POST" and r["path"].endswith("/openmetadata/deploy")
               and isinstance(r["body"], dict) and "queued" in r["body"].get("name", "")}
        check(len(mine) == 1 and mine[0]["state"] == "succeeded" and ids == {second["id"]},
              "one run, with the joining event's entity: %s %s" % (mine, ids))
        check(srv.stop() == 0, "clean stop")
    finally:
        srv.close()

    # A secret from a variable set with `echo` (a Kubernetes Secret made so)
    # ends with a line end, which is not part of it, as in a *_file.
    srv = Serve(sim.url, env={"AUTOPILOT_WEBHOOK_SECRET": SECRET + "\n"})
    try:
        srv.start()
        code, body = srv.post_event(event("databaseService", entity("databaseService", "nl")))
        check(code == 202, "a secret with a line end from the environment: %d %s" % (code, body))
        check(srv.stop() == 0, "clean stop")
        check("white space" not in srv.log(), "no warning for the line end: %s" % srv.log()[-500:])
    finally:
        srv.close()

    # No secret: refused (exit 2, says how to fix); --allow-unsigned: starts and warns.
    env = {"AUTOPILOT_WEBHOOK_SECRET": ""}
    nosecret = Serve(sim.url, env=env)
    try:
        rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", "127.0.0.1:0"],
                           env=env, timeout=20)
        check(rc == 2 and "AUTOPILOT_WEBHOOK_SECRET" in err, "no secret: %d %s" % (rc, err))
        # An Airflow URL that cannot work: refused before the store is created.
        rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", "127.0.0.1:0",
                            "--allow-unsigned"], env=dict(env, AUTOPILOT_AIRFLOW_URL="notaurl"),
                           timeout=20)
        check(rc == 2 and "AUTOPILOT_AIRFLOW_URL" in err and not os.path.exists(nosecret.state),
              "a bad AUTOPILOT_AIRFLOW_URL: %d %s" % (rc, err))
        # A listen address that is not one of this host: said so, exit 2.
        rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", "256.0.0.1:0",
                            "--allow-unsigned"], env=env, timeout=20)
        check(rc == 2 and "256.0.0.1" in err and "not an address of this host" in err
              and "No such file" not in err, "a bad --listen: %d %s" % (rc, err))
        # A listen host that names nothing: refused before the store is created.
        rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", "a b:0",
                            "--allow-unsigned"], env=env, timeout=20)
        check(rc == 2 and "cannot listen on a b:0: not an address of this host" in err
              and not os.path.exists(nosecret.state),
              "a --listen host that names nothing: %d %s" % (rc, err))
        # A port in use: refused before the store is created (or migrated).
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            addr = "127.0.0.1:%d" % taken.getsockname()[1]
            rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", addr,
                                "--allow-unsigned"], env=env, timeout=20)
        finally:
            taken.close()
        check(rc == 2 and ("cannot listen on %s: Address already in use" % addr) in err
              and not os.path.exists(nosecret.state), "a port in use: %d %s" % (rc, err))
        # With --log-json, why serve cannot start is a JSON log line too.
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            addr = "127.0.0.1:%d" % taken.getsockname()[1]
            rc, out, err = cli(["serve", "-c", nosecret.conf, "--listen", addr, "--log-json",
                                "--allow-unsigned"], env=env, timeout=20)
        finally:
            taken.close()
        lines = [json.loads(line) for line in err.splitlines() if line.strip()]
        check(rc == 2 and lines and lines[-1]["level"] == "error" and
              "Address already in use" in lines[-1]["msg"], "--log-json, a port in use: %d %s" % (rc, err))
        nosecret.args = ["--allow-unsigned"]
        nosecret.start()
        check("UNSIGNED" in nosecret.log() and "127.0.0.1:%d" % nosecret.port in nosecret.log(),
              "warning at start, naming the address bound: %s" % nosecret.log())
        st, body = nosecret.post_event(example_event(), secret=None)
        check(st == 202, "unsigned accepted with --allow-unsigned: %s %s" % (st, body))
        check(nosecret.stop() == 0, "clean stop")
    finally:
        nosecret.close()
        sim.close()
    print("ok")


if __name__ == "__main__":
    main()
