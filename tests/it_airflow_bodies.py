#!/usr/bin/env python3
"""it_airflow_bodies — every request body the Airflow client builds, checked
against the matching schema of the reference OpenAPI specs
($AP_REFERENCE/airflow/v1.yaml and v2.yaml), with unknown properties forbidden.

The bodies come from `tool_airflow --bodies`, which calls the client's own
request builder (agents/airflow_proto.c) for each step and API generation.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from it_sim_airflow import BUILD, REF, V1, V2  # noqa: E402


def main():
    if REF is None:
        print("reference specs not found (AP_REFERENCE)", file=sys.stderr)
        return 1
    out = subprocess.run([os.path.join(BUILD, "tool_airflow"), "--bodies"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    seen = set()
    for line in out.splitlines():
        doc = json.loads(line)
        spec = V1 if doc["api"] == "v1" else V2
        spec.check(doc["schema"], doc["body"])
        seen.add((doc["api"], doc["schema"]))
        # The v2 trigger must carry logical_date (null): Airflow 3.0 requires the key.
        if doc["schema"] == "TriggerDAGRunPostBody":
            assert "logical_date" in doc["body"] and doc["body"]["logical_date"] is None
        if doc["schema"] == "DAGRun":
            assert "logical_date" not in doc["body"] and "execution_date" not in doc["body"]
        print(f"ok {doc['api']} {doc['method']} {doc['path']} ~ {doc['schema']}")
    want = {("v1", "DAG"), ("v1", "DAGRun"), ("v1", "UpdateDagRunState"),
            ("v2", "DAGPatchBody"), ("v2", "TriggerDAGRunPostBody"), ("v2", "DAGRunPatchBody")}
    assert seen == want, seen
    # A body that breaks the schema must be caught (the check can fail).
    try:
        V2.check("TriggerDAGRunPostBody", {"dag_run_id": "r", "execution_date": None})
    except AssertionError:
        pass
    else:
        raise AssertionError("schema check accepted an unknown property")
    return 0


if __name__ == "__main__":
    sys.exit(main())
