"""The HTTP side of `autopilot serve` beyond the webhook: admin re-runs are
validated before anything is created or replaced (unknown agents, agents
outside the service's plan, unknown service types: 400 naming the bad
entry, the active run untouched); health, readiness and metrics answer 405
with "Allow: GET" to other methods; /metrics follows the Prometheus text
format (one HELP and TYPE per family, one label set per name). Bytes that
are not UTF-8 in a header or a path get a JSON 4xx, never an abort; a
re-run's body with an unknown key is refused. With admin.protect_runs the
runs take the admin token too."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import (check, entity, event, example_event, parse_prometheus,  # noqa: E402
                         serving, sign)

# The metadata agent runs long enough to be active while re-runs are refused.
SCENARIO = {"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10, "running_ms": 50},
                                                "metadata": {"queued_ms": 10,
                                                             "running_ms": 4000}}}
RERUN = "/api/v1/services/%s/%s/rerun"


def expect_400(srv, path, body, *needles):
    st, resp = srv.admin("POST", path, body)
    check(st == 400 and isinstance(resp, dict) and "error" in resp,
          "%s %s: expected 400, got %s %s" % (path, body, st, resp))
    for n in needles:
        check(n in resp["detail"], "%s %s: detail %r lacks %r" % (path, body, resp["detail"], n))
    return resp


def main():
    with serving(SCENARIO) as (sim, srv):
        st, body = srv.post_event(example_event())
        check(st == 202, "event: %s %s" % (st, body))
        first = body["run_id"]
        looker = entity("dashboardService", "looker_x")
        st, body = srv.post_event(event("dashboardService", looker))
        check(st == 202, "dashboard event: %s %s" % (st, body))

        # Re-runs refused before anything is created or replaced.
        pg = RERUN % ("databaseService", "sales_postgres")
        expect_400(srv, pg, {"agents": ["metdata"], "replace": True}, "agents[0]", "'metdata'",
                   "metadata, lineage, usage, profiler, autoClassification")
        expect_400(srv, pg, {"agents": ["metadata", "Profiler"], "replace": True}, "agents[1]",
                   "'Profiler'")
        # autoClassification exists but is off by default: not in the plan.
        expect_400(srv, pg, {"agents": ["autoClassification"], "replace": True},
                   "agents[0]", "'autoClassification'", "not in the plan", "profiler")
        # A dashboard service's plan has metadata only.
        expect_400(srv, RERUN % ("dashboardService", "looker_x"), {"agents": ["profiler"]},
                   "'profiler'", "not in the plan")
        resp = expect_400(srv, RERUN % ("bogusService", "x"), None, "bogusService",
                          "databaseService", "dashboardService", "apiService")
        check(resp["error"] == "unknown service type" and "autopilot run" not in resp["detail"],
              "unknown type: %s" % resp)
        runs = srv.runs()
        check(len(runs) == 2, "no run created by refused re-runs: %s" % runs)
        mine = [r for r in runs if r["run_id"] == first]
        check(mine and mine[0]["state"] in ("pending", "running"),
              "the active run was not replaced: %s" % mine)

        # A valid restricted re-run replacing the active run is accepted.
        st, body = srv.admin("POST", pg, {"agents": ["metadata"], "replace": True})
        check(st == 202 and body["run_id"] != first, "valid re-run: %s %s" % (st, body))
        runs = srv.wait_final(3, timeout=60)
        by_id = {r["run_id"]: r for r in runs}
        check(by_id[body["run_id"]]["state"] == "succeeded",
              "restricted re-run succeeded: %s" % by_id[body["run_id"]])
        check([a["agent"] for a in by_id[body["run_id"]]["agents"]] == ["metadata"],
              "only metadata re-ran: %s" % by_id[body["run_id"]]["agents"])
        check(by_id[first]["state"] == "failed", "the replaced run ended failed")

        # Bytes that are not UTF-8 where a client chooses them: a clear answer,
        # never an abort (jansson refuses such strings in an answer).
        st, hdrs, body = srv.exchange("POST", "/api/v1/webhooks/openmetadata", b"{}",
                                      {"Content-Type": b"text/\xff\x01"})
        check(st == 415 and isinstance(body, dict) and "text/??" in body["detail"],
              "non-UTF-8 Content-Type: %s %r" % (st, body))
        st, body = srv.admin("GET", "/api/v1/runs/%FF")
        check(st == 404 and isinstance(body, dict), "run id %%FF: %s %r" % (st, body))
        for bad in ("/api/v1/runs/", "/api/v1/runs/a/b"):
            st, body = srv.admin("GET", bad)
            check(st == 404 and body.get("detail") == "no such run", "%s: %s %r" % (bad, st, body))
        expect_400(srv, RERUN % ("databaseService", "%FF"), None, "percent-encoding")
        expect_400(srv, RERUN % ("%FF", "x"), None, "percent-encoding")
        # A '%' that starts no encoded byte is refused, not taken as it is.
        expect_400(srv, RERUN % ("databaseService", "sales%zzpg"), None, "percent-encoding")
        expect_400(srv, RERUN % ("databaseService", "sales%"), None, "percent-encoding")
        # Names longer than any the webhook takes, and long types, are not echoed whole.
        expect_400(srv, RERUN % ("databaseService", "x" * 5000), None, "longer than 1024")
        for typ in ("t" * 5000, "t" * 63 + "%C3%A9" * 100):
            st, body = srv.admin("POST", RERUN % (typ, "x"))
            check(st == 400 and len(body["detail"]) < 400, "a long type: %s %r" %
                  (st, json.dumps(body)[:200]))
        # ... nor a long unknown agent, body key or replace value.
        for body, path in (({"agents": ["a" * 5000]}, pg), ({"k" * 5000: 1}, pg),
                           (None, pg + "?replace=" + "y" * 5000)):
            st, resp = srv.admin("POST", path, body)
            check(st == 400 and len(resp["detail"]) < 400 and "\u2026" in resp["detail"],
                  "a long echo: %s %r" % (st, json.dumps(resp)[:200]))
        # ... nor is a long run id.
        st, body = srv.admin("GET", "/api/v1/runs/" + "r" * 5000)
        check(st == 404 and body["detail"] == "no run " + "r" * 64 + "\u2026",
              "a long run id: %s %r" % (st, json.dumps(body)[:200]))
        # A typo in a re-run's body does not re-run every agent.
        expect_400(srv, pg, {"agent": ["metadata"]}, "unknown key 'agent'")
        # ... nor does one in its query.
        expect_400(srv, pg + "?replce=true", None,
                   "query: unknown parameter 'replce' (known: replace)")
        check(srv.exchange("GET", "/healthz")[0] == 200, "alive after the bad requests")

        # Health, readiness, metrics: GET only.
        for path in ("/healthz", "/readyz", "/metrics"):
            for method in ("POST", "PUT", "DELETE"):
                st, hdrs, body = srv.exchange(method, path, b"{}" if method != "DELETE" else None,
                                              {"Content-Type": "application/json"})
                check(st == 405 and hdrs.get("allow") == "GET, HEAD",
                      "%s %s: %s %s %s" % (method, path, st, hdrs, body))
                check(isinstance(body, dict) and body.get("error") == "method not allowed",
                      "%s %s: JSON error body: %r" % (method, path, body))
            st, _, _ = srv.exchange("GET", path)
            check(st == 200, "GET %s after the 405s: %s" % (path, st))

        # Admin requests: one family, one label set.
        srv.admin("POST", RERUN % ("dashboardService", "looker_x"), token="wrong")
        st, hdrs, text = srv.exchange("GET", "/metrics")
        check(st == 200 and hdrs.get("content-type", "").startswith("text/plain"),
              "metrics: %s %s" % (st, hdrs))
        samples = parse_prometheus(text)
        admin = {dict(k[1]).get("result"): v for k, v in samples.items()
                 if k[0] == "autopilot_admin_requests_total"}
        check(set(admin) == {"ok", "denied"}, "admin requests by result: %s" % admin)
        check(admin["denied"] == 1 and admin["ok"] >= 8, "admin counts: %s" % admin)
        names = {k[0] for k in samples}
        for n in ("autopilot_airflow_queued", "autopilot_airflow_in_flight",
                  "autopilot_webhooks_total", "autopilot_runs", "autopilot_agent_runs",
                  "autopilot_airflow_request_duration_seconds_bucket", "autopilot_airflow_up"):
            check(n in names, "metrics: %s present" % n)
        check("# TYPE autopilot_airflow_queued gauge" in text, "queued is a gauge")

        # The webhook's URL typed with a final '/' is the webhook, not a 404.
        raw = json.dumps(event("dashboardService", entity("dashboardService", "looker_y"))).encode()
        st, body = srv.request("POST", "/api/v1/webhooks/openmetadata/", raw,
                               {"Content-Type": "application/json",
                                "X-OM-Signature": sign(raw)})
        check(st == 202 and "run_id" in body, "the webhook with a final '/': %s %s" % (st, body))

    # admin.protect_runs: the runs take the admin token too; with no token
    # configured they are off, as the re-run is.
    with serving(SCENARIO, config={"admin": {"protect_runs": True}}) as (sim, srv):
        st, body = srv.post_event(example_event())
        check(st == 202, "event: %s %s" % (st, body))
        one = "/api/v1/runs/" + body["run_id"]
        for path in ("/api/v1/runs", one):
            for token in (None, "wrong"):
                st, hdrs, err = srv.exchange("GET", path, headers={
                    "Authorization": "Bearer " + token} if token else {})
                check(st == 401 and err["error"] == "unauthorized" and
                      hdrs.get("www-authenticate", "").startswith("Bearer"),
                      "protected %s, token %s: %s %s" % (path, token, st, err))
            st, body = srv.admin("GET", path)
            check(st == 200, "protected %s with the token: %s %s" % (path, st, body))
        check("protect_runs is true but" not in srv.log(), "no warning with a token")
    with serving(SCENARIO, config={"admin": {"protect_runs": True}},
                 env={"AUTOPILOT_ADMIN_TOKEN": ""}) as (sim, srv):
        st, err = srv.admin("GET", "/api/v1/runs")
        check(st == 401 and "no admin token is configured" in err["detail"],
              "protected runs, no token configured: %s %s" % (st, err))
        check("admin.protect_runs is true but no admin token is set (AUTOPILOT_ADMIN_TOKEN or"
              " admin.token_file): GET /api/v1/runs answers 401 to everyone" in srv.log(),
              "a warning at start: %s" % srv.log()[-2000:])
    print("ok")


if __name__ == "__main__":
    main()
