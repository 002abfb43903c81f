#!/usr/bin/python3
"""it_pipeline_schema — every IngestionPipeline autopilot deploys is valid
against OpenMetadata's schemas: for each sample service in tests/data/services/
(one or more per service kind) and each agent that applies to it, the document
printed by build*/tool_pipeline is validated against
$AP_REFERENCE/openmetadata/schema/entity/services/ingestionPipelines/ingestionPipeline.json,
and its sourceConfig.config against the source-config schema its "type" names
($AP_REFERENCE's database ones, tests/data/om-schemas/ for the other kinds),
$refs resolved locally. Also: every *FilterPattern key is declared by that
schema, the DAG id is the plugin's mapping of the name, names are
deterministic and unique, the usage agent has no filters, and the validator
rejects broken documents (so this test can fail).
"""
import copy
import glob
import json
import os
import re
import subprocess
import sys
import warnings

import jsonschema

SRC = os.environ.get("AP_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("AP_BUILD", os.path.join(SRC, "build"))
REF = os.environ.get("AP_REFERENCE")
TOOL = os.path.join(BUILD, "tool_pipeline")
SCHEMA_BASE = "https://open-metadata.org/schema/"

# PRODUCT.md: filter keys by service kind, and the agents each kind gets.
KIND_KEYS = {
    "database": {"databaseFilterPattern", "schemaFilterPattern", "tableFilterPattern"},
    "metadata": {"databaseFilterPattern", "schemaFilterPattern", "tableFilterPattern"},
    "messaging": {"topicFilterPattern"},
    "dashboard": {"dashboardFilterPattern", "chartFilterPattern", "dataModelFilterPattern",
                  "projectFilterPattern"},
    "pipeline": {"pipelineFilterPattern"},
    "mlmodel": {"mlModelFilterPattern"},
    "storage": {"containerFilterPattern"},
    "search": {"searchIndexFilterPattern"},
    "api": {"apiCollectionFilterPattern"},
}
DB_AGENTS = ["metadata", "lineage", "usage", "profiler", "autoClassification"]
DB_TYPES = {"metadata": "DatabaseMetadata", "lineage": "DatabaseLineage",
            "usage": "DatabaseUsage", "profiler": "Profiler",
            "autoClassification": "AutoClassification"}
OTHER_TYPES = {"dashboard": "DashboardMetadata", "messaging": "MessagingMetadata",
               "pipeline": "PipelineMetadata", "mlmodel": "MlModelMetadata",
               "metadata": "DatabaseMetadata", "storage": "StorageMetadata",
               "search": "SearchMetadata", "api": "ApiMetadata"}
DISPLAY = {"metadata": "Metadata Agent", "lineage": "Lineage Agent", "usage": "Usage Agent",
           "profiler": "Profiler Agent", "autoClassification": "AutoClassification Agent"}
CONFIG = {"agents": {"autoClassification": {"enabled": True}},
          "filters": {"defaults": {
              "byServiceKind": {"database": {"tableFilterPattern": {"excludes": ["^tmp_"]}},
                                "messaging": {"topicFilterPattern": {"excludes": ["^dlq\\."]}}},
              "byConnector": {"Looker": {"dashboardFilterPattern": {"includes": ["^Prod"]}}}}}}
NOW_MS = "1795591800000"

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: %s" % what, file=sys.stderr)


def load_store():
    """Every schema under the reference and the restated ones, by URL and $id."""
    store = {}
    roots = [os.path.join(REF, "openmetadata", "schema"),
             os.path.join(SRC, "tests", "data", "om-schemas")]
    for root in roots:
        for path in glob.glob(os.path.join(root, "**", "*.json"), recursive=True):
            with open(path) as f:
                schema = json.load(f)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            store[SCHEMA_BASE + rel] = schema
            if isinstance(schema.get("$id"), str):
                store.setdefault(schema["$id"], schema)
    return store


def resolver_for(url, store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return jsonschema.RefResolver(base_uri=url, referrer=store[url], store=store)


def errors(url, store, doc):
    schema = store[url]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        v = cls(schema, resolver=resolver_for(url, store))
        return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path), e.message)
                for e in v.iter_errors(doc)]


def source_schemas(store):
    """sourceConfig type -> schema URL, from each schema's properties.type."""
    out = {}
    for url, s in store.items():
        if not url.startswith(SCHEMA_BASE + "metadataIngestion/"):
            continue
        t = s.get("properties", {}).get("type", {})
        if "$ref" in t:
            t = s.get("definitions", {}).get(t["$ref"].split("/")[-1], {})
        for name in t.get("enum", []):
            out[name] = url
    return out


def run_tool(etype, path, extra=(), om_url="http://openmetadata:8585"):
    conf = os.path.join(BUILD, "it_pipeline_schema.conf.json")
    with open(conf, "w") as f:
        json.dump(CONFIG, f)
    cmd = [TOOL, "-c", conf, "--om-url", om_url, "--om-token",
           "eyJ-test-token", "--now-ms", NOW_MS] + list(extra) + [etype, path]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise SystemExit("tool_pipeline %s %s: exit %d: %s" % (etype, path, p.returncode,
                                                               p.stderr))
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def check_server_ssl(path):
    """The ingestion's OpenMetadata client (ssl_registry.py in OpenMetadata's
    ingestion) takes verifySSL no-ssl, ignore or validate, and refuses
    validate without an sslConfig: the DAG would then fail to import."""
    etype = os.path.basename(path).split(".")[0]
    for url in ("http://openmetadata:8585", "https://openmetadata.example:8585"):
        for ln in run_tool(etype, path, om_url=url):
            conn = ln["pipeline"]["openMetadataServerConnection"]
            v = conn.get("verifySSL", "no-ssl")
            check(v in ("no-ssl", "ignore", "validate"), "%s: verifySSL %r" % (url, v))
            check(v != "validate" or "sslConfig" in conn,
                  "%s %s: verifySSL validate without an sslConfig" % (url, ln["agent"]))
            check(v != "ignore", "%s: verifySSL ignore turns certificate checks off" % url)


def main():
    if not REF or not os.path.isdir(os.path.join(REF, "openmetadata")):
        raise SystemExit("AP_REFERENCE is not set to the reference directory (%r)" % REF)
    store = load_store()
    ip_url = SCHEMA_BASE + "entity/services/ingestionPipelines/ingestionPipeline.json"
    fp_url = SCHEMA_BASE + "type/filterPattern.json"
    check(ip_url in store and fp_url in store, "reference schemas present")
    sources = source_schemas(store)
    for t in list(DB_TYPES.values()) + list(OTHER_TYPES.values()):
        check(t in sources, "a source-config schema for %s" % t)

    files = sorted(glob.glob(os.path.join(SRC, "tests", "data", "services", "*.json")))
    kinds_seen = set()
    names = {}
    ndocs = 0
    check(files, "sample services in tests/data/services")
    check_server_ssl(files[0])
    for path in files:
        etype = os.path.basename(path).split(".")[0]
        kind = etype[:-len("Service")]
        kinds_seen.add(kind)
        lines = run_tool(etype, path)
        agents = [ln["agent"] for ln in lines]
        want = DB_AGENTS if kind == "database" else ["metadata"]
        check(agents == want, "%s: agents %s, want %s" % (path, agents, want))
        with open(path) as f:
            ent = json.load(f)
        flags = ent["connection"]["config"]
        for ln in lines:
            agent, doc, where = ln["agent"], ln["pipeline"], "%s %s" % (path, ln["agent"])
            ndocs += 1
            for e in errors(ip_url, store, doc):
                check(False, "%s: ingestionPipeline.json: %s" % (where, e))
            cfg = doc["sourceConfig"]["config"]
            want_type = DB_TYPES[agent] if kind == "database" else OTHER_TYPES[kind]
            check(cfg.get("type") == want_type, "%s: type %s, want %s" % (where, cfg.get("type"),
                                                                         want_type))
            url = sources.get(cfg.get("type"))
            check(url is not None, "%s: no schema for %s" % (where, cfg.get("type")))
            if url:
                for e in errors(url, store, cfg):
                    check(False, "%s: %s: %s" % (where, url.rsplit("/", 1)[-1], e))
                declared = set(store[url].get("properties", {}))
                for k in cfg:
                    if k.endswith("FilterPattern"):
                        check(k in declared, "%s: %s not declared by the schema" % (where, k))
                        if k != "classificationFilterPattern":
                            check(k in KIND_KEYS[kind], "%s: %s is not a %s filter key" %
                                  (where, k, kind))
            if agent == "usage":
                check(not any(k.endswith("FilterPattern") for k in cfg),
                      "%s: usage must have no filters" % where)
            if agent == "profiler":
                check(cfg.get("classificationFilterPattern", {}).get("includes") ==
                      ["Tier1", "Tier2"], "%s: profiler classification filter" % where)
            # What the deploy needs, as OpenMetadata builds it.
            check(doc["pipelineType"] == agent, "%s: pipelineType" % where)
            check(doc["displayName"] == DISPLAY[agent], "%s: displayName" % where)
            check(doc["provider"] == "automation", "%s: provider" % where)
            check(doc["service"]["id"] == ent["id"] and doc["service"]["type"] == etype,
                  "%s: service reference %s" % (where, doc["service"]))
            check(doc["openMetadataServerConnection"]["hostPort"] ==
                  "http://openmetadata:8585/api", "%s: hostPort" % where)
            check(doc["openMetadataServerConnection"]["securityConfig"]["jwtToken"] ==
                  "eyJ-test-token", "%s: jwtToken" % where)
            check(doc["airflowConfig"]["startDate"] == "2026-11-24T00:00:00.000Z",
                  "%s: startDate %s" % (where, doc["airflowConfig"]["startDate"]))
            check(re.sub(r"[^0-9a-zA-Z\-_]+", "_", doc["name"]) == ln["dag_id"],
                  "%s: dag_id %s is not the plugin's mapping of %s" % (where, ln["dag_id"],
                                                                     doc["name"]))
            check(len(ln["dag_id"]) <= 250, "%s: dag_id longer than Airflow allows" % where)
            check(ln["dag_id"] not in names, "%s: dag_id %s also used by %s" %
                  (where, ln["dag_id"], names.get(ln["dag_id"])))
            names[ln["dag_id"]] = where
            supported = flags.get({"metadata": "supportsMetadataExtraction",
                                   "lineage": "supportsLineageExtraction",
                                   "usage": "supportsUsageExtraction",
                                   "profiler": "supportsProfiler",
                                   "autoClassification": "supportsProfiler"}[agent]) is True
            check(ln["supported"] == supported, "%s: supported %s" % (where, ln["supported"]))
        # Same input, same names.
        again = run_tool(etype, path)
        check([a["dag_id"] for a in again] == [a["dag_id"] for a in lines],
              "%s: names are not deterministic" % path)
    check(kinds_seen == set(KIND_KEYS), "sample services for every kind: missing %s" %
          (set(KIND_KEYS) - kinds_seen))

    # The effective filters reach the documents: built-in, configuration, service.
    pg = run_tool("databaseService", os.path.join(SRC, "tests", "data", "services",
                                                  "databaseService.Postgres.json"),
                  ["--agent", "metadata"])[0]["pipeline"]["sourceConfig"]["config"]
    check(pg["tableFilterPattern"] == {"includes": ["^fact_", "^dim_"], "excludes": ["^tmp_"]},
          "postgres table filter %s" % pg.get("tableFilterPattern"))
    check("^information_schema$" in pg["schemaFilterPattern"]["excludes"] and
          "^staging_.*" in pg["schemaFilterPattern"]["excludes"],
          "postgres schema filter %s" % pg.get("schemaFilterPattern"))
    lk = run_tool("dashboardService", os.path.join(SRC, "tests", "data", "services",
                                                   "dashboardService.Looker.json"))[0]
    lkc = lk["pipeline"]["sourceConfig"]["config"]
    check(lkc["dashboardFilterPattern"] == {"includes": ["^Prod"], "excludes": ["^Test ", "^tmp"]},
          "looker dashboard filter %s" % lkc.get("dashboardFilterPattern"))

    # The validator can fail: broken documents are rejected.
    bad = copy.deepcopy(lk["pipeline"])
    bad["pipelineType"] = "metadataa"
    check(errors(ip_url, store, bad), "a bad pipelineType is rejected")
    bad = copy.deepcopy(lk["pipeline"])
    bad["airflowConfig"]["scheduleIntervall"] = "x"
    check(errors(ip_url, store, bad), "an unknown airflowConfig key is rejected")
    badc = copy.deepcopy(lkc)
    badc["topicFilterPattern"] = {"includes": []}
    check(errors(sources["DashboardMetadata"], store, badc),
          "a filter key of another kind is rejected")
    badc = copy.deepcopy(pg)
    badc["tableFilterPattern"] = {"include": ["x"]}
    check(errors(sources["DatabaseMetadata"], store, badc), "a misspelt FilterPattern is rejected")

    if failures:
        print("FAILED: %d problem(s) in %d documents" % (len(failures), ndocs))
        sys.exit(1)
    print("PASS: %d IngestionPipeline documents from %d services valid" % (ndocs, len(files)))


if __name__ == "__main__":
    main()
