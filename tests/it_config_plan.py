#!/usr/bin/python3
"""it_config_plan — `autopilot config check` validates the "agents" and
"airflow" sections and prints the effective plan and Airflow settings:
unknown agents, bad `after` entries, cycles, bad Airflow keys and bad types
are exit 2 with the file and key path on stderr, and so are an
openmetadata.url (or AUTOPILOT_OPENMETADATA_URL) that is not an http(s) URL
and an airflow.ca_file that cannot be read; a valid file (and the
shipped conf/autopilot.example.json) prints the plan, secrets only as
set/unset, and a warning when openmetadata.url is unset."""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("AP_BIN", "build/autopilot")
SRC = os.environ.get("AP_SRC", ".")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: %s" % what, file=sys.stderr)


def config_check(conf, env=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(conf, f)
        path = f.name
    try:
        e = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
        e.update(env or {})
        p = subprocess.run([BIN, "config", "check", "-c", path], capture_output=True,
                           text=True, timeout=30, env=e)
        return p.returncode, p.stdout, p.stderr.replace(path, "FILE")
    finally:
        os.unlink(path)


BAD = [
    ({"agents": {"usagee": {}}}, "FILE: agents.usagee: unknown agent"),
    ({"agents": {"profiler": {"after": ["usagee"]}}},
     "FILE: agents.profiler.after[0]: unknown agent 'usagee'"),
    ({"agents": {"metadata": {"after": ["usage"]}}},
     "FILE: agents: cycle metadata -> usage -> metadata"),
    ({"agents": {"lineage": {"after": ["lineage"]}}}, "FILE: agents: cycle lineage -> lineage"),
    ({"agents": {"usage": {"retries": "3"}}}, "FILE: agents.usage.retries: must be an integer"),
    ({"agents": {"usage": {"timeout_s": -1}}}, "FILE: agents.usage.timeout_s: must be > 0"),
    ({"agents": {"usage": {"schedule": "weekly"}}}, "FILE: agents.usage.schedule: must be"),
    ({"agents": {"usage": {"enable": False}}}, "FILE: agents.usage.enable: unknown key"),
    ({"openmetadata": {"url": "nope"}},
     "FILE: openmetadata.url: must be an http:// or https:// URL"),
    ({"airflow": {"ca_file": "/nonexistent/ca.pem"}},
     "FILE: airflow.ca_file: /nonexistent/ca.pem: No such file or directory"),
]
for conf, want in BAD:
    rc, out, err = config_check(conf)
    check(rc == 2, "%s: exit %d, want 2" % (conf, rc))
    check(want in err, "%s: stderr %r lacks %r" % (conf, err, want))
    check(out == "", "%s: printed a plan on error" % conf)

rc, out, err = config_check({
    "openmetadata": {"url": "http://om:8585"},
    "agents": {"usage": {"enabled": False}, "profiler": {"run": False, "timeout_s": 90},
               "autoClassification": {"enabled": True}}},
    {"AUTOPILOT_OPENMETADATA_TOKEN": "very-secret-jwt"})
check(rc == 0, "valid config: exit %d: %s" % (rc, err))
if rc == 0:
    plan = json.loads(out)["plan"]
    check(plan["order"] == ["metadata", "lineage", "profiler", "autoClassification"],
          "order %s" % plan["order"])
    prof = [a for a in plan["agents"] if a["agent"] == "profiler"][0]
    check(prof["effective_after"] == ["metadata"] and prof["run"] is False and
          prof["timeout_s"] == 90, "profiler %s" % prof)
    check(plan["openmetadata"] == {"url": "http://om:8585", "token": "set"},
          "openmetadata %s" % plan["openmetadata"])
    check(plan["service_types"]["databaseService"]["agents"]["autoClassification"] ==
          "AutoClassification", "service types %s" % plan["service_types"]["databaseService"])
    check("securityService" not in plan["service_types"], "securityService is ignored")
check("very-secret-jwt" not in out + err, "the token is never printed")

with open(os.path.join(SRC, "conf", "autopilot.example.json")) as f:
    example = json.load(f)
rc, out, err = config_check(example)
check(rc == 0, "conf/autopilot.example.json: exit %d: %s" % (rc, err))
if rc == 0:
    check(json.loads(out)["plan"]["order"] == ["metadata", "lineage", "usage", "profiler"],
          "example plan order")
    # Every value it shows is the default: leaving any key out changes nothing
    # (but the filters' defaults, which are examples, as its comment says).
    def without(doc, path):
        doc = json.loads(json.dumps(doc))
        d = doc
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
        return doc
    keys = [(sec, k) for sec, body in example.items() if not sec.startswith("$")
            for k in body if not k.startswith("$") and sec != "agents"
            and (sec, k) != ("filters", "defaults")]
    keys += [("agents", a, k) for a, body in example["agents"].items() if not a.startswith("$")
             for k in body]
    check(len(keys) > 40, "the example's keys: %d" % len(keys))
    def settings(text):
        doc = json.loads(text)
        doc.pop("file")
        return doc
    for path in keys:
        rc2, out2, err2 = config_check(without(example, path))
        check(rc2 == 0 and settings(out2) == settings(out),
              "the example's %s is not the default: %d %s" % (".".join(path), rc2, err2))

# The "airflow" section is checked as serve checks it (the Airflow client's
# parser): exit 2, the file and the key path, nothing on stdout.
AIRFLOW_BAD = [
    ({"airflow": {"bogus": 1}}, "FILE: airflow.bogus: unknown key"),
    ({"airflow": {"api": "v3"}}, "FILE: airflow.api: must be"),
    ({"airflow": {"max_retries": "x"}}, "FILE: airflow.max_retries: must be an integer"),
    ({"airflow": {"url": "ftp://x"}}, "FILE: airflow.url: must"),
    ({"airflow": {"connect_timeout_ms": -5}}, "FILE: airflow.connect_timeout_ms: must be"),
    ({"airflow": {"password": "pw"}}, "FILE: airflow.password: not allowed"),
]
for conf, want in AIRFLOW_BAD:
    rc, out, err = config_check(conf)
    check(rc == 2, "%s: exit %d, want 2" % (conf, rc))
    check(want in err, "%s: stderr %r lacks %r" % (conf, err, want))
    check(out == "", "%s: printed settings on error" % conf)
rc, out, err = config_check({}, {"AUTOPILOT_AIRFLOW_URL": "notaurl"})
check(rc == 2 and "AUTOPILOT_AIRFLOW_URL: airflow.url" in err and "notaurl" in err,
      "AUTOPILOT_AIRFLOW_URL=notaurl: exit %d %r" % (rc, err))
# No webhook secret: OK for the file, with a warning that serve will refuse to start.
rc, out, err = config_check({})
check(rc == 0 and "warning: no webhook secret" in err and "refuses to start" in err,
      "no webhook secret: %d %r" % (rc, err))
rc, out, err = config_check({}, {"AUTOPILOT_WEBHOOK_SECRET": "s"})
check(rc == 0 and "webhook secret" not in err, "a webhook secret: %d %r" % (rc, err))
# No host, or a colon with no port after it (or one out of range): said which.
for url, why in (("http://:80", "has no host"),
                 ("http://127.0.0.1:", "its port must be a number from 1 to 65535"),
                 ("https://[::1]:/", "its port must be a number from 1 to 65535"),
                 ("http://a:0", "its port must be a number from 1 to 65535"),
                 ("http://a:8080?x=1", "must have no query, fragment or white space")):
    rc, out, err = config_check({}, {"AUTOPILOT_AIRFLOW_URL": url})
    check(rc == 2 and "AUTOPILOT_AIRFLOW_URL: airflow.url: %s" % why
          in err and "(got '%s')" % url in err and out == "",
          "AUTOPILOT_AIRFLOW_URL=%s: exit %d %r" % (url, rc, err))
    rc, out, err = config_check({"openmetadata": {"url": url}})
    check(rc == 2 and "FILE: openmetadata.url: %s" % why in err
          and "(got '%s')" % url in err, "openmetadata.url %s: exit %d %r" % (url, rc, err))
rc, out, err = config_check({}, {"AUTOPILOT_OPENMETADATA_URL": "nope"})
check(rc == 2 and "AUTOPILOT_OPENMETADATA_URL: must be an http:// or https:// URL" in err
      and "'nope'" in err and out == "",
      "AUTOPILOT_OPENMETADATA_URL=nope: exit %d %r" % (rc, err))

# Each secret variable overrides its *_file key: the file is not read, so
# one that is not there is no error; without the variable it is.
SECRET_FILES = [
    ("AUTOPILOT_WEBHOOK_SECRET", {"webhook": {"secret_file": "/nonexistent/w"}},
     "webhook.secret_file: /nonexistent/w"),
    ("AUTOPILOT_ADMIN_TOKEN", {"admin": {"token_file": "/nonexistent/a"}},
     "admin.token_file: /nonexistent/a"),
    ("AUTOPILOT_AIRFLOW_PASSWORD", {"airflow": {"password_file": "/nonexistent/p"}},
     "airflow.password_file: /nonexistent/p"),
    ("AUTOPILOT_OPENMETADATA_TOKEN", {"openmetadata": {"token_file": "/nonexistent/o"}},
     "openmetadata.token_file: /nonexistent/o"),
]
for var, conf, want in SECRET_FILES:
    rc, out, err = config_check(conf, {var: "abc"})
    check(rc == 0 and "abc" not in out + err, "%s over a missing file: %d %r" % (var, rc, err))
    rc, out, err = config_check(conf)
    check(rc == 2 and want in err, "%s unset, the file missing: %d %r" % (var, rc, err))

# A *_file secret is the file's first line; an empty one names the file.
with tempfile.TemporaryDirectory() as d:
    two = os.path.join(d, "two")
    with open(two, "w") as f:
        f.write("first\r\nsecond\n")
    blank = os.path.join(d, "blank")
    with open(blank, "w") as f:
        f.write("\nsecond\n")
    rc, out, err = config_check({"webhook": {"secret_file": two}})
    check(rc == 0 and json.loads(out)["webhook"]["secret"] == "set" and "first" not in out,
          "a two-line secret file: %d %r" % (rc, err))
    rc, out, err = config_check({"airflow": {"password_file": blank}})
    check(rc == 2 and "airflow.password_file: %s: no secret: its first line is empty" % blank
          in err and out == "", "a secret file with an empty first line: %d %r" % (rc, err))

# A FIFO (or any file that is not a regular one) named as the configuration
# or as a secret file is refused at once, naming it, not waited on.
with tempfile.TemporaryDirectory() as d:
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    for args, env in ((["config", "check", "-c", fifo], clean),
                      (["config", "check"], dict(clean, AUTOPILOT_CONFIG=fifo)),
                      (["config", "check", "-c", "/dev/null"], clean)):
        try:
            p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=10,
                               env=env)
            what = args[-1] if args[-1] != "check" else fifo
            check(p.returncode == 2 and "%s: not a regular file" % what in p.stderr,
                  "%s: exit %d %r" % (args, p.returncode, p.stderr))
        except subprocess.TimeoutExpired:
            check(False, "%s: waited on the FIFO" % args)
    for conf, key in (({"webhook": {"secret_file": fifo}}, "webhook.secret_file"),
                      ({"admin": {"token_file": fifo}}, "admin.token_file"),
                      ({"airflow": {"password_file": fifo}}, "airflow.password_file"),
                      ({"openmetadata": {"token_file": fifo}}, "openmetadata.token_file")):
        try:
            rc, out, err = config_check(conf)
            check(rc == 2 and "%s: %s: not a regular file" % (key, fifo) in err,
                  "%s a FIFO: %d %r" % (key, rc, err))
        except subprocess.TimeoutExpired:
            check(False, "%s: waited on the FIFO" % key)

# A byConnector name with no built-in defaults: a warning suggesting the
# built-in name, exit still 0.
rc, out, err = config_check({"filters": {"defaults": {"byConnector": {
    "Postgress": {"tableFilterPattern": {"excludes": ["^x"]}}}}}})
check(rc == 0 and "autopilot: warning: " in err and " warn " not in err
      and "FILE: filters.defaults.byConnector.Postgress: no built-in"
      " default filters for connector 'Postgress'; did you mean 'Postgres'?" in err,
      "byConnector typo warns: %d %r" % (rc, err))
rc, out, err = config_check({"filters": {"defaults": {"byConnector": {"postgres": {}}}}},
                            {"AUTOPILOT_OPENMETADATA_URL": "http://om:8585",
                             "AUTOPILOT_OPENMETADATA_TOKEN": "t",
                             "AUTOPILOT_WEBHOOK_SECRET": "s"})
check(rc == 0 and "warn" not in err, "no warning for a built-in connector: %d %r" % (rc, err))

# The effective Airflow client settings; the password only as set/unset.
rc, out, err = config_check({"airflow": {"api": "v1", "request_timeout_ms": 9000,
                                         "max_in_flight": 8, "max_retries": 2}},
                            {"AUTOPILOT_AIRFLOW_PASSWORD": "af-very-secret"})
check(rc == 0, "airflow settings: exit %d %s" % (rc, err))
if rc == 0:
    af = json.loads(out)["airflow"]
    want = {"api": "v1", "request_timeout_ms": 9000, "connect_timeout_ms": 5000,
            "max_in_flight": 8, "max_retries": 2, "retry_base_ms": 250,
            "retry_max_ms": 30000, "ca_file": None, "password": "set"}
    check(all(af.get(k) == v for k, v in want.items()), "effective airflow settings %s" % af)
check("af-very-secret" not in out + err, "the Airflow password is never printed")

# Without openmetadata.url, deployed agents have no openMetadataServerConnection:
# a warning, exit 0.
rc, out, err = config_check({})
check(rc == 0 and "warning" in err and "openmetadata.url" in err and
      "AUTOPILOT_OPENMETADATA_URL" in err and "no openMetadataServerConnection" in err,
      "openmetadata.url unset warns: %d %r" % (rc, err))
check("warning" not in out, "the warning is on stderr only")
rc, out, err = config_check({}, {"AUTOPILOT_OPENMETADATA_URL": "http://om:8585",
                                 "AUTOPILOT_OPENMETADATA_TOKEN": "t\n",
                                 "AUTOPILOT_WEBHOOK_SECRET": "s\r\n"})
check(rc == 0 and "warning" not in err, "no warning with the URL and token set (a line end"
      " at a variable's end is not part of it): %d %r" % (rc, err))
# A listen host that is no address of this host: serve would not start here.
rc, out, err = config_check({"listen": {"host": "not a host!"}})
check(rc == 0 and "autopilot: warning: listen: cannot listen on not a host!:8686: not an"
      " address of this host" in err, "a listen host serve cannot bind warns: %d %r" % (rc, err))
# ... nor one that names an address, but not one of this host's.
rc, out, err = config_check({"listen": {"host": "192.0.2.1"}})
check(rc == 0 and "autopilot: warning: listen: cannot listen on 192.0.2.1:8686: Cannot assign"
      " requested address" in err, "an address not of this host warns: %d %r" % (rc, err))
# A secret variable holding only a line end is no secret: an error, as an
# empty *_file is, not a secret left unset.
rc, out, err = config_check({}, {"AUTOPILOT_WEBHOOK_SECRET": "\n"})
check(rc == 2 and "AUTOPILOT_WEBHOOK_SECRET: no secret: the variable holds only a line end"
      in err, "a secret of a line end: %d %r" % (rc, err))
# The URL without a token: deployed agents cannot authenticate to OpenMetadata.
rc, out, err = config_check({}, {"AUTOPILOT_OPENMETADATA_URL": "http://om:8585",
                                 "AUTOPILOT_WEBHOOK_SECRET": "s"})
check(rc == 0 and "warning: openmetadata.url is set but no OpenMetadata token" in err
      and "AUTOPILOT_OPENMETADATA_TOKEN" in err and "securityConfig" in err,
      "openmetadata.url without a token warns: %d %r" % (rc, err))
# A secret with white space around it (beyond one line end at its end) is
# used as it is, with a warning that never shows it.
with tempfile.TemporaryDirectory() as d:
    tokfile = os.path.join(d, "om-token")
    with open(tokfile, "w") as f:
        f.write("tok-secret \n")
    rc, out, err = config_check({"openmetadata": {"url": "http://om:8585", "token_file": tokfile}},
                                {"AUTOPILOT_WEBHOOK_SECRET": "s",
                                 "AUTOPILOT_ADMIN_TOKEN": " adm-secret"})
check(rc == 0 and "the admin token (AUTOPILOT_ADMIN_TOKEN or admin.token_file) begins with"
      " white space" in err and "the OpenMetadata token (AUTOPILOT_OPENMETADATA_TOKEN or"
      " openmetadata.token_file) ends with white space" in err and "webhook secret" not in err,
      "secrets with white space warn: %d %r" % (rc, err))
check("tok-secret" not in out + err and "adm-secret" not in out + err, "secrets never shown")

# Usage errors name the whole command: a subcommand that is none of the
# group's, and an option getopt does not know.
for args, want in ((["config", "bogus"], "autopilot: unknown subcommand 'config bogus'; one of:"),
                   (["config"], "autopilot: 'config' needs a subcommand:"),
                   (["config", "check", "--bogus"],
                    "autopilot config check: unrecognized option '--bogus'"),
                   (["filter", "test", "--kind"],
                    "autopilot filter test: option '--kind' requires an argument")):
    p = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and p.stderr.startswith(want),
          "%s: exit %d, stderr %r" % (args, p.returncode, p.stderr))

if failures:
    sys.exit(1)
print("PASS")
