"""End to end: the real `autopilot serve` against the Airflow simulator.
Signed ChangeEvents for several service kinds become runs whose agents are
deployed (with their filters), triggered once each in dependency order and
tracked to success; repeats, admin re-runs, metrics, readiness, `status
--json` and a clean SIGTERM."""
import json
import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import (ADMIN, Serve, Sim, check, check_change_event, cli,  # noqa: E402
                         entity, event, example_event, parse_prometheus)
from sched_itlib import TRIGGER_RE, check_no_double_trigger  # noqa: E402

SCENARIO = {"parse_delay_ms": 150, "pipelines": {"*": {"queued_ms": 30, "running_ms": 250}}}


def deploys(reqs):
    return [r for r in reqs if r["method"] == "POST" and r["path"].endswith("/openmetadata/deploy")
            and isinstance(r["body"], dict)]


def service_of(pipeline):
    svc = pipeline.get("service") or {}
    return svc.get("fullyQualifiedName") or svc.get("name")


def at_once(srv, paths):
    """GETs paths together, after a GET of the first whose client goes away
    before the answer, and /healthz meanwhile: (its status, the answers)."""
    gone = socket.create_connection(("127.0.0.1", srv.port))
    gone.sendall(b"GET " + paths[0].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    gone.close()
    answers = []
    threads = [threading.Thread(target=lambda p=p: answers.append(srv.request("GET", p)))
               for p in paths]
    for t in threads:
        t.start()
    st, _ = srv.request("GET", "/healthz")
    for t in threads:
        t.join()
    return st, answers


def main():
    sim = Sim(SCENARIO)
    srv = Serve(sim.url)
    try:
        srv.start()
        st, body = srv.request("GET", "/healthz")
        check(st == 200 and body == {"status": "ok"}, "healthz: %s %s" % (st, body))

        # Several service kinds, the entity as an object and as a string.
        pg = example_event()
        looker = entity("dashboardService", "looker_prod")
        kafka = entity("messagingService", "kafka_events")
        evs = [pg, event("dashboardService", looker),
               event("messagingService", kafka, as_string=True)]
        run_ids = {}
        for ev in evs:
            check_change_event(ev)
            st, body = srv.post_event(ev)
            check(st == 202 and "run_id" in body, "event %s: %s %s" % (ev["entityType"], st, body))
            fqn = ev["entityFullyQualifiedName"]
            run_ids[fqn] = body["run_id"]

        # The same event again: its original answer, no second run.
        st, body = srv.post_event(pg)
        check(st == 202 and body.get("run_id") == run_ids["sales_postgres"] and body.get("repeated"),
              "repeated event: %s %s" % (st, body))

        # Events autopilot does not act on: 200 with the reason.
        st, body = srv.post_event(event("databaseService", entity("databaseService", "x"),
                                        etype="entityUpdated"))
        check(st == 200 and "ignored" in body, "entityUpdated: %s %s" % (st, body))
        st, body = srv.post_event(dict(event("databaseService", entity("databaseService", "y")),
                                       entityType="table"))
        check(st == 200 and "ignored" in body, "table event: %s %s" % (st, body))

        runs = srv.wait_final(3)
        check(len(runs) == 3, "3 runs, got %d" % len(runs))
        for r in runs:
            check(r["state"] == "succeeded", "run %s: %s" % (r["service"]["fqn"], json.dumps(r)))
            check(r["run_id"] == run_ids[r["service"]["fqn"]], "run ids match the 202 answers")
            for a in r["agents"]:
                check(a["state"] in ("succeeded", "skipped"), "agent %s of %s: %s"
                      % (a["agent"], r["service"]["fqn"], a))
        by_fqn = {r["service"]["fqn"]: r for r in runs}
        check(by_fqn["looker_prod"]["service"]["type"] == "dashboardService", "service type kept")
        pg_agents = {a["agent"]: a for a in by_fqn["sales_postgres"]["agents"]}
        for name in ("metadata", "lineage", "usage", "profiler"):
            check(name in pg_agents, "postgres run has %s: %s" % (name, list(pg_agents)))
        for fqn in ("looker_prod", "kafka_events"):
            ran = [a["agent"] for a in by_fqn[fqn]["agents"] if a["state"] == "succeeded"]
            check(ran == ["metadata"], "%s runs only metadata: %s" % (fqn, by_fqn[fqn]["agents"]))

        # What Airflow saw.
        reqs = sim.requests()
        check_no_double_trigger(reqs)
        deployed = deploys(reqs)
        pgm = [d["body"] for d in deployed if service_of(d["body"]) == "sales_postgres"
               and d["body"].get("pipelineType") == "metadata"]
        check(pgm, "metadata pipeline of sales_postgres deployed")
        cfg = pgm[0]["sourceConfig"]["config"]
        check(cfg.get("type") == "DatabaseMetadata", "sourceConfig type: %s" % cfg.get("type"))
        check("^template1$" in cfg["databaseFilterPattern"]["excludes"], "built-in default exclude")
        check("^staging_.*" in cfg["schemaFilterPattern"]["excludes"], "the service's own exclude")
        check("^fact_" in cfg["tableFilterPattern"]["includes"], "the service's own include")
        dash = [d["body"] for d in deployed if service_of(d["body"]) == "looker_prod"]
        check(len(dash) == 1 and dash[0]["sourceConfig"]["config"]["type"] == "DashboardMetadata",
              "dashboard: one DashboardMetadata pipeline: %s" % [d.get("pipelineType") for d in dash])

        # Order for Postgres: lineage and usage triggered only after metadata
        # succeeded; the profiler (if it runs) only after usage succeeded.
        def dag(agent):
            return pg_agents[agent]["dag_id"]

        def trig_t(agent):
            ts = [r["t_ms"] for r in reqs if r["method"] == "POST" and TRIGGER_RE.match(r["path"])
                  and TRIGGER_RE.match(r["path"]).group(1) == dag(agent) and 200 <= r["status"] < 300]
            check(len(ts) == 1, "%s triggered once: %s" % (agent, ts))
            return ts[0]

        def success_t(agent):
            pat = re.compile(r"^/api/v[12]/dags/%s/dagRuns/" % re.escape(dag(agent)))
            ts = [r["t_ms"] for r in reqs if r["method"] == "GET" and pat.match(r["path"])
                  and r["status"] == 200]
            check(ts, "%s polled" % agent)
            return ts[-1]

        t_meta_ok = success_t("metadata")
        check(trig_t("lineage") >= t_meta_ok and trig_t("usage") >= t_meta_ok,
              "lineage and usage start after metadata succeeded")
        if pg_agents["profiler"]["dag_run_id"]:
            check(trig_t("profiler") >= success_t("usage"), "profiler after usage")

        # Runs are read without a token (admin.protect_runs is off); a
        # token sent along, even a wrong one, changes nothing. A run by id;
        # a re-run; a refused re-run.
        st, open_runs = srv.admin("GET", "/api/v1/runs", token=None)
        check(st == 200 and len(open_runs) == 3, "runs without token: %s %s" % (st, open_runs))
        st, _ = srv.admin("GET", "/api/v1/runs/" + run_ids["kafka_events"], token="wrong")
        check(st == 200, "a run with a wrong token: %s" % st)
        st, one = srv.admin("GET", "/api/v1/runs/" + run_ids["kafka_events"])
        check(st == 200 and one["run_id"] == run_ids["kafka_events"], "GET run: %s" % st)
        st, _ = srv.admin("GET", "/api/v1/runs/nope")
        check(st == 404, "unknown run: %s" % st)
        st, some = srv.admin("GET", "/api/v1/runs?limit=2")
        check(st == 200 and len(some) == 2, "limit=2: %s %s" % (st, some))
        # A list cut at its limit says where it goes on (Link: rel="next"),
        # and the last page says nothing.
        st, hdrs, some = srv.exchange("GET", "/api/v1/runs?limit=2")
        want = '</api/v1/runs?limit=2&before=%s>; rel="next"' % some[1]["run_id"]
        check(st == 200 and hdrs.get("link") == want, "a page's link: %s %s" % (hdrs, want))
        st, hdrs, rest = srv.exchange("GET", hdrs["link"][1:hdrs["link"].index(">")])
        check(st == 200 and len(rest) == 1 and "link" not in hdrs and
              rest[0]["run_id"] not in {r["run_id"] for r in some} and
              {r["run_id"] for r in some + rest} == {r["run_id"] for r in open_runs},
              "the next page: %s %s" % (hdrs, rest))
        st, hdrs, one = srv.exchange("GET", "/api/v1/runs?service=kafka_events&limit=1")
        check(st == 200 and len(one) == 1 and "link" not in hdrs, "one run, one page: %s" % hdrs)
        st, err = srv.admin("GET", "/api/v1/runs?before=nope")
        check(st == 404 and err["detail"] == "before: no run nope", "before an unknown run: %s %s"
              % (st, err))
        st, err = srv.admin("GET", "/api/v1/runs?before=")
        check(st == 400 and err["detail"] == "before: must name a run (a run_id)",
              "before nothing: %s %s" % (st, err))
        # A limit is digits only, given once; a query that means nothing
        # for sure is refused rather than guessed at.
        for q in ("limit=-18446744073709551615", "limit=%2B5", "limit=%205", "limit=1%00",
                  "limit", "limit=5&limit=abc", "limit=0", "limit=1001", "limit=00005x",
                  "service=a&service=b", "service=%zz", "service=a%", "service=%FF",
                  "&=1&limit=1", "limit=1&&=2"):
            st, err = srv.admin("GET", "/api/v1/runs?" + q)
            check(st == 400 and err["error"] == "bad query", "runs?%s: %s %s" % (q, st, err))
        # Empty parameters are passed over, wherever they are.
        for q in ("&limit=1", "limit=1&", "&&limit=1&&", "&"):
            st, some = srv.admin("GET", "/api/v1/runs?" + q)
            check(st == 200 and (len(some) == 1 if "limit" in q else len(some) > 1),
                  "runs?%s: %s %s" % (q, st, some))
        # A misspelt parameter is refused, not ignored (which would list every run).
        st, err = srv.admin("GET", "/api/v1/runs?servce=kafka_events")
        check(st == 400 and err["detail"] == "query: unknown parameter 'servce' (known: service,"
              " limit, before)", "runs?servce=: %s %s" % (st, err))
        # One run takes no parameter: one given is refused as well.
        one = run_ids["looker_prod"]
        st, err = srv.admin("GET", "/api/v1/runs/%s?limit=1" % one)
        check(st == 400 and err["detail"] == "query: unknown parameter 'limit' (known: none)",
              "runs/ID?limit=: %s %s" % (st, err))
        st, body = srv.admin("GET", "/api/v1/runs/%s?" % one)
        check(st == 200 and body["run_id"] == one, "runs/ID? (an empty query): %s %s" % (st, body))
        st, body = srv.admin("POST", "/api/v1/services/dashboardService/looker_prod/rerun")
        check(st == 202 and body["run_id"] != run_ids["looker_prod"], "rerun: %s %s" % (st, body))
        st2, body2 = srv.admin("POST", "/api/v1/services/dashboardService/looker_prod/rerun")
        check(st2 == 409 and body2.get("run_id") == body["run_id"], "rerun while active: %s %s"
              % (st2, body2))
        st, err = srv.admin("POST", "/api/v1/services/databaseService/nosuch/rerun")
        check(st == 404 and "`autopilot run --type databaseService --service-json FILE nosuch`"
              in err["detail"],
              "rerun of an unknown service: %s %s" % (st, err))
        # The command it suggests is one a shell takes as it is.
        st, err = srv.admin("POST", "/api/v1/services/databaseService/"
                            "it%27s%20a%20name/rerun")
        check(st == 404 and "FILE 'it'\\''s a name'`" in err["detail"],
              "rerun of an unknown service, quoted: %s %s" % (st, err))
        st, err = srv.admin("POST", "/api/v1/services/databaseService/-x/rerun")
        check(st == 404 and "FILE -- -x`" in err["detail"],
              "rerun of an unknown service named -x: %s %s" % (st, err))
        runs = srv.wait_final(4)
        check(len(runs) == 4, "4 runs after the re-run: %d" % len(runs))
        # Each run says why it exists.
        origins = {r["run_id"]: r["origin"] for r in runs}
        check(re.match(r"admin re-run from 127\.0\.0\.1:\d+$", origins[body["run_id"]]),
              "the re-run's origin: %s" % origins)
        check(origins[run_ids["looker_prod"]].startswith("webhook event "), "a webhook run's origin: %s"
              % origins)
        # Each re-run asked for is logged with who asked, refused or not.
        log = srv.log()
        check(re.search(r"admin: re-run of dashboardService looker_prod from 127\.0\.0\.1:\d+:"
                        r" run %s, every agent\n" % body["run_id"], log), "re-run logged: %s" % log[-3000:])
        check(re.search(r"admin: re-run of dashboardService looker_prod refused from"
                        r" 127\.0\.0\.1:\d+: 409 active run", log), "409 logged")
        check(re.search(r"admin: re-run of databaseService nosuch refused from 127\.0\.0\.1:\d+: 404 unknown"
                        r" service: no entity received", log), "404 logged")

        st, ready = srv.request("GET", "/readyz")
        check(st == 200 and ready["ready"], "readyz: %s %s" % (st, ready))
        st, metrics = srv.request("GET", "/metrics")
        check(st == 200 and 'autopilot_webhooks_total{outcome="accepted"} 3' in metrics,
              "metrics count 3 accepted: %s" % metrics[:800])
        samples = parse_prometheus(metrics)
        check('autopilot_webhooks_total{outcome="repeated"} 1' in metrics, "metrics: repeated")
        # Each attempt that ended here, by agent and how: as many succeeded
        # as the runs' agents say, none failed.
        ended = {}
        for (name, labels), v in samples.items():
            if name == "autopilot_agent_attempts_total":
                lab = dict(labels)
                ended[(lab["agent"], lab["outcome"])] = v
        want = {}
        for r in runs:
            for a in r["agents"]:
                if a["state"] == "succeeded":
                    want[a["agent"]] = want.get(a["agent"], 0) + 1
        check({k[0]: v for k, v in ended.items() if k[1] == "succeeded" and v} == want and
              not any(v for k, v in ended.items() if k[1] != "succeeded"),
              "metrics: attempts ended %s, runs' agents say %s" % (ended, want))
        check('autopilot_runs{state="succeeded"} 4' in metrics, "metrics: runs by state")
        check("autopilot_agent_runs{" in metrics, "metrics: agents by state")
        # Every state of an agent seen, those never reached as 0.
        check('autopilot_agent_runs{agent="metadata",state="lost"} 0' in metrics and
              'autopilot_agent_runs{agent="metadata",state="succeeded"} 4' in metrics,
              "metrics: agent states not reached: %s" % metrics[:3000])
        check('autopilot_airflow_requests_total{status="2xx"}' in metrics and
              "autopilot_airflow_request_duration_seconds_bucket{le=" in metrics and
              "autopilot_airflow_retries_total" in metrics, "metrics: Airflow client")
        # The store's counts are read off the loop: scrapes that come
        # together are each answered, one whose client goes away too, and
        # the loop answers meanwhile.
        st, answers = at_once(srv, ["/metrics"] * 8)
        check(st == 200 and len(answers) == 8 and all(
              a[0] == 200 and 'autopilot_runs{state="succeeded"} 4' in a[1] for a in answers),
              "8 scrapes at once: %s" % [a[0] for a in answers])

        # The runs are read on a thread of their own too: reads that come
        # together are each answered, one whose client goes away too.
        st, answers = at_once(srv, ["/api/v1/runs?limit=1000", "/api/v1/runs/" +
                                    run_ids["kafka_events"]] * 4)
        check(st == 200 and len(answers) == 8 and all(a[0] == 200 for a in answers) and
              sorted(len(a[1]) if isinstance(a[1], list) else -1 for a in answers) ==
              [-1] * 4 + [4] * 4, "8 runs reads at once: %s" % [a[0] for a in answers])

        rc = srv.stop()
        check(rc == 0, "serve exits 0 on SIGTERM: %s" % rc)
        check("stopped" in srv.log(), "a stop line in the log")
        check("it-webhook-secret" not in srv.log() and ADMIN not in srv.log(),
              "secrets never logged")

        # status --json reads the same store, with the pinned keys.
        rc, out, err = cli(["status", "--state", srv.state, "--json"])
        check(rc == 0, "status --json: %d %s" % (rc, err))
        doc = json.loads(out)
        check(len(doc) == 4, "status lists 4 runs")
        for r in doc:
            check({"run_id", "service", "state", "agents"} <= set(r), "run keys: %s" % list(r))
            check(set(r["service"]) >= {"type", "fqn"}, "service keys")
            for a in r["agents"]:
                check({"agent", "state", "dag_id", "dag_run_id", "attempts", "started_at",
                       "finished_at", "error"} <= set(a), "agent keys: %s" % list(a))
        rc, out, err = cli(["status", "--state", srv.state, "sales_postgres"])
        check(rc == 0 and "sales_postgres" in out and "looker_prod" not in out,
              "status SERVICE table: %d %s %s" % (rc, out, err))
    finally:
        srv.close()
        sim.close()
    print("ok")


if __name__ == "__main__":
    main()
