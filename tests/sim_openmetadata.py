#!/usr/bin/env python3
"""sim_openmetadata.py — the one OpenMetadata route `autopilot run` uses, for
tests and the demo:

    GET /api/v1/services/{kind}s/name/{fqn}   the service entity, or 404

Entities come from --entities DIR: one JSON file a service, each a service
entity whose "href" names its kind (".../services/databaseServices/<id>") or
whose file sits in a sub-folder named after the kind (databaseServices/x.json).
With --token, requests must carry "Authorization: Bearer <token>" (else 401,
as OpenMetadata answers). GET /_sim/requests lists what was asked.

Usage: sim_openmetadata.py --entities DIR [--token T]
Prints "listening 127.0.0.1:<port>" once ready; binds 127.0.0.1 only.
"""
import argparse
import json
import os
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTE = re.compile(r"^/api/v1/services/([A-Za-z]+)s/name/([^/?]+)$")


def load(root):
    entities = {}
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(dirpath, name)) as f:
                ent = json.load(f)
            m = re.search(r"/services/([A-Za-z]+)s/", ent.get("href", ""))
            kind = m.group(1) if m else os.path.basename(dirpath).rstrip("s")
            entities[(kind, ent["fullyQualifiedName"])] = ent
    return entities


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", required=True)
    ap.add_argument("--token")
    args = ap.parse_args()
    entities = load(args.entities)
    log = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/_sim/requests":
                with lock:
                    return self.answer(200, list(log))
            with lock:
                log.append({"method": "GET", "path": path,
                            "auth": self.headers.get("Authorization", "")[:7].strip()})
            if args.token and self.headers.get("Authorization") != "Bearer " + args.token:
                return self.answer(401, {"code": 401, "message": "Not Authorized! Token not present"})
            m = ROUTE.match(path)
            if not m:
                return self.answer(404, {"code": 404, "message": "Unable to find resource"})
            ent = entities.get((m.group(1), urllib.parse.unquote(m.group(2))))
            if ent is None:
                return self.answer(404, {"code": 404, "message": "%s instance for %s not found"
                                         % (m.group(1), urllib.parse.unquote(m.group(2)))})
            return self.answer(200, ent)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening 127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
