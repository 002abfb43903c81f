"""Every service kind through the real `autopilot serve`: one signed
entityCreated event per sample service in tests/data/services (names with
spaces, quotes and dots included), each run to the end with the agents its
kind and supports* flags call for, distinct DAGs, and an admin re-run of a
service whose name needs percent-encoding."""
import glob
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import SRC, check, check_change_event, event, serving  # noqa: E402
from sched_itlib import check_no_double_trigger  # noqa: E402


def main():
    scenario = {"parse_delay_ms": 100, "pipelines": {"*": {"queued_ms": 20, "running_ms": 150}}}
    with serving(scenario) as (sim, srv):
        services = {}
        for i, path in enumerate(sorted(glob.glob(os.path.join(SRC, "tests", "data", "services",
                                                               "*.json")))):
            kind = os.path.basename(path).split(".")[0]
            with open(path) as f:
                ent = json.load(f)
            ev = event(kind, ent, as_string=(i % 2 == 1))
            check_change_event(ev)
            st, body = srv.post_event(ev)
            check(st == 202, "%s %s: %s %s" % (kind, ent["fullyQualifiedName"], st, body))
            services[ent["fullyQualifiedName"]] = (kind, ent, body["run_id"])
        check(len(services) >= 12, "sample services: %d" % len(services))
        # A misspelt filter key filters nothing: the run goes on, with a warning.
        with open(os.path.join(SRC, "tests", "data", "services", "databaseService.Postgres.json")) as f:
            ent = json.load(f)
        ent.update(id="5e1f0c7a-0000-4000-8000-00000000f17e", name="typo",
                   fullyQualifiedName="typo")
        ent["connection"]["config"]["tabelFilterPattern"] = {"excludes": ["^x"]}
        st, body = srv.post_event(event("databaseService", ent))
        check(st == 202, "misspelt filter key: %s %s" % (st, body))
        services["typo"] = ("databaseService", ent, body["run_id"])
        runs = srv.wait_final(len(services), timeout=120)
        dags = set()
        for r in runs:
            kind, ent, run_id = services[r["service"]["fqn"]]
            check(r["run_id"] == run_id and r["service"]["type"] == kind, "run of %s" % ent["name"])
            check(r["state"] == "succeeded", "%s: %s" % (r["service"]["fqn"], json.dumps(r)))
            states = {a["agent"]: a["state"] for a in r["agents"]}
            flags = ent["connection"]["config"]
            if kind != "databaseService":
                check(states == {"metadata": "succeeded"}, "%s: metadata only: %s" % (kind, states))
            else:
                want_usage = "succeeded" if flags.get("supportsUsageExtraction") else "skipped"
                check(states.get("usage") == want_usage, "%s usage: %s" % (ent["name"], states))
                check(states.get("metadata") == "succeeded" and states.get("lineage") == "succeeded"
                      and states.get("profiler") == "succeeded", "%s: %s" % (ent["name"], states))
            for a in r["agents"]:
                if a["dag_id"]:
                    check(a["dag_id"] not in dags, "DAG %s shared between services" % a["dag_id"])
                    dags.add(a["dag_id"])
        warning = ("run %s (typo): connection.config.tabelFilterPattern: not a filter key, so it"
                   " filters nothing (did you mean tableFilterPattern?)" % services["typo"][2])
        check(srv.log().count(warning) == 1, "the misspelt key's warning, once:\n%s"
              % srv.log()[-3000:])
        reqs = sim.requests()
        check_no_double_trigger(reqs)
        for rq in reqs:
            if rq["path"].endswith("/openmetadata/deploy") and isinstance(rq["body"], dict):
                p = rq["body"]
                check(p["sourceConfig"]["config"]["type"].endswith(
                    {"metadata": "Metadata", "lineage": "Lineage", "usage": "Usage",
                     "profiler": "Profiler"}[p["pipelineType"]]),
                    "%s: %s %s" % (p["name"], p["pipelineType"], p["sourceConfig"]["config"]["type"]))

        # Admin re-run of names that need percent-encoding in the path.
        for fqn in ("analytics bq", '"finance.snowflake"'):
            path = "/api/v1/services/databaseService/%s/rerun" % urllib.parse.quote(fqn, safe="")
            st, body = srv.admin("POST", path)
            check(st == 202, "re-run of %r: %s %s" % (fqn, st, body))
        srv.wait_final(len(services) + 2, timeout=120)
    print("ok")


if __name__ == "__main__":
    main()
