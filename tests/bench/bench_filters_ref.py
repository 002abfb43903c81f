#!/usr/bin/python3
"""OpenMetadata's filter algorithm in Python (ingestion/src/metadata/utils/filters.py,
_filter), as the reference for `make bench-filters`; also generates the names.

  bench_filters_ref.py gen N FILE        write N realistic schema/table names
  bench_filters_ref.py run PATTERNS FILE filter FILE's names; print names/s on stderr
"""
import json
import random
import re
import sys
import time


def gen(n, path):
    r = random.Random(7)
    domains = ["sales", "finance", "hr", "marketing", "ops", "crm", "erp", "web", "app", "ml",
               "analytics", "staging", "raw", "dw", "mart", "audit", "billing", "inventory"]
    kinds = ["orders", "customers", "events", "sessions", "payments", "invoices", "users",
             "products", "clicks", "refunds", "shipments", "accounts", "ledger", "budget"]
    suffixes = ["", "", "", "_v2", "_tmp", "_bak", "_old", "_2023", "_2024", "_daily",
                "_hourly", "_snapshot", "_staging", "_archive"]
    specials = ["information_schema", "pg_catalog", "pg_toast", "public", "sys", "template1",
                "Information_Schema", "db_owner", "guest", "\u00e9t\u00e9_ventes", "stra\u00dfe"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            k = r.random()
            if k < 0.03:
                name = r.choice(specials)
            elif k < 0.5:
                name = "%s_%s%s" % (r.choice(domains), r.choice(kinds), r.choice(suffixes))
            elif k < 0.8:
                name = "%s%s_%d" % (r.choice(kinds), r.choice(suffixes), r.randint(0, 999))
            else:
                name = "%s_%s_%s" % (r.choice(["stg", "fct", "dim", "tmp", "int"]),
                                     r.choice(domains), r.choice(kinds))
            if r.random() < 0.1:
                name = name.upper()
            f.write(name + "\n")


def filtered_out(includes, excludes, name):
    if not name:
        return True
    inc_hit = any(re.match(p, name, re.IGNORECASE) for p in includes)
    exc_hit = any(re.match(p, name, re.IGNORECASE) for p in excludes)
    if includes and excludes:
        return (not inc_hit) or exc_hit
    if includes:
        return not inc_hit
    if excludes:
        return exc_hit
    return False


def run(patterns_path, names_path):
    with open(patterns_path, encoding="utf-8") as f:
        pats = json.load(f)
    inc, exc = pats["includes"], pats["excludes"]
    for p in inc + exc:
        re.compile(p, re.IGNORECASE)
    t0 = time.perf_counter()
    n = kept = 0
    out = sys.stdout
    with open(names_path, encoding="utf-8") as f:
        for line in f:
            name = line[:-1] if line.endswith("\n") else line
            k = not filtered_out(inc, exc, name)
            kept += k
            n += 1
            out.write('{"name": %s, "kept": %s}\n' % (json.dumps(name), "true" if k else "false"))
    dt = time.perf_counter() - t0
    sys.stderr.write("%d %d %.6f\n" % (n, kept, dt))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    else:
        run(sys.argv[2], sys.argv[3])
