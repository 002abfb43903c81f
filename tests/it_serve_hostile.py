"""`autopilot serve` against clients that bend HTTP: HEAD gets the answer GET
would get without a body (a body there is read by the client as the start of
the next answer on the connection); OPTIONS and TRACE get a JSON 405 with
Allow, not libevent's HTML 501, and CONNECT one with its connection closed
after it; a request with two Content-Length headers is
refused and its connection closed, so the bytes past the first length are
never read as a request of their own; a re-run path with an empty service
name says so. Out of descriptors (clients holding connections open up to
the process's limit), the server neither spins on the listening socket nor
floods its log, and accepts again once connections close."""
import json
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import ADMIN, check, entity, event, serving  # noqa: E402


def exchange(port, data, wait=2.0):
    """Sends data on one connection and reads until it closes or is quiet
    for wait seconds; returns (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    s.sendall(data)
    out, closed = b"", False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                closed = True
                break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out, closed


def answer(data, head=False):
    """The first answer in data, framed by its Content-Length (none after
    HEAD): (status, headers with lower-case names, body, the bytes after)."""
    top, sep, rest = data.partition(b"\r\n\r\n")
    check(sep and top.startswith(b"HTTP/1.1 "), "not an answer: %r" % data[:300])
    lines = top.decode().split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = 0 if head else int(hdrs.get("content-length", len(rest)))
    return int(lines[0].split()[1]), hdrs, rest[:n], rest[n:]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    scenario = {"parse_delay_ms": 50, "pipelines": {"*": {"queued_ms": 10, "running_ms": 50}}}
    with serving(scenario) as (sim, srv):
        port = srv.port
        auth = b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"

        # HEAD: GET's status and headers, Content-Length included, and no
        # body; the next answer on the connection starts right after.
        for path, extra, status in ((b"/healthz", b"", 200), (b"/metrics", b"", 200),
                                    (b"/readyz", b"", None), (b"/api/v1/runs", auth, 200),
                                    (b"/api/v1/webhooks/openmetadata", b"", 405),
                                    (b"/nope", b"", 404)):
            get, _ = exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n",
                              wait=1.0)
            data, _ = exchange(port, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra +
                               b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=1.0)
            st, hdrs, body, rest = answer(data, head=True)
            gst, _, gbody, _ = answer(get)
            check(body == b"" and st == gst, "HEAD %s: %s, GET: %s" % (path, st, gst))
            if status is not None:
                check(st == status, "HEAD %s: %s" % (path, st))
                check(hdrs.get("content-length") == str(len(gbody)),
                      "HEAD %s: Content-Length %s, GET's body %d bytes" % (
                          path, hdrs.get("content-length"), len(gbody)))
            check(rest.startswith(b"HTTP/1.1 "), "HEAD %s: a body: %r" % (path, rest[:200]))
            st2, _, body2, extra_bytes = answer(rest)
            check(st2 == 200 and json.loads(body2) == {"status": "ok"} and not extra_bytes,
                  "the answer after HEAD %s: %s %r" % (path, st2, rest[:300]))
        st, hdrs, _ = srv.exchange("POST", "/healthz", b"{}", {"Content-Type": "application/json"})
        check(st == 405 and hdrs.get("allow") == "GET, HEAD", "POST /healthz: %s %s" % (st, hdrs))

        # OPTIONS and TRACE: JSON 405 with Allow.
        for method, path, allow in (("OPTIONS", "/api/v1/webhooks/openmetadata", "POST"),
                                    ("TRACE", "/healthz", "GET, HEAD"),
                                    ("OPTIONS", "/api/v1/runs", "GET, HEAD")):
            st, hdrs, body = srv.exchange(method, path, headers={"Authorization": "Bearer " + ADMIN})
            check(st == 405 and hdrs.get("allow") == allow and isinstance(body, dict)
                  and body.get("error") == "method not allowed",
                  "%s %s: %s %s %r" % (method, path, st, hdrs, body))

        # Two Content-Length headers: 400, closed; "GET /healthz" hidden past
        # the first length is not answered.
        data, closed = exchange(port, b"POST /api/v1/webhooks/openmetadata HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                                b"Content-Length: 40\r\n\r\n{}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, body, rest = answer(data)
        check(closed and st == 400 and not rest and "Content-Length" in json.loads(body)["detail"],
              "two Content-Length headers: %r (closed: %s)" % (data, closed))

        # CONNECT: a JSON 405, and the connection closed after it (the
        # answer has no length to frame it), so the pipelined GET behind
        # it is never answered on that connection; also with a body.
        for extra in (b"", b"Content-Length: 3\r\n\r\nabc"):
            data, closed = exchange(port, b"CONNECT x:80 HTTP/1.1\r\nHost: x\r\n" +
                                    (extra or b"\r\n") +
                                    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            st, hdrs, body, rest = answer(data)
            check(closed and st == 405 and hdrs.get("connection") == "close" and
                  b"not a proxy" in body and b"HTTP/1.1 200" not in data,
                  "CONNECT %r: %r (closed: %s)" % (extra, data, closed))
        st, _, _ = srv.exchange("GET", "/healthz")
        check(st == 200, "after CONNECT: %s" % st)

        # A re-run of a service without a name.
        st, body = srv.admin("POST", "/api/v1/services/databaseService//rerun")
        check(st == 400 and "empty" in body["detail"], "empty service name: %s %s" % (st, body))

        # Out of descriptors: clients hold connections open past the limit.
        soft, hard = resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (64, hard))
        held = []
        for _ in range(100):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        before, log_before = cpu_seconds(srv.proc.pid), len(srv.log())
        time.sleep(2)
        used, logged = cpu_seconds(srv.proc.pid) - before, srv.log()[log_before:]
        check(used < 0.5, "out of descriptors: %.2f s of CPU in 2 s (spinning on accept)" % used)
        check(len(logged) < 2000 and "Error from accept" not in logged,
              "out of descriptors: %d bytes logged in 2 s: %r" % (len(logged), logged[:300]))
        check("cannot accept connections: Too many open files" in srv.log(),
              "the failure is logged: %r" % srv.log()[-2000:])
        for s in held:
            s.close()
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        time.sleep(0.5)
        st, _ = srv.request("GET", "/healthz")
        check(st == 200, "accepting again: %s" % st)
        st, body = srv.post_event(event("databaseService", entity("databaseService", "after_emfile")))
        check(st == 202, "a delivery after the descriptors came back: %s %s" % (st, body))
        srv.wait_final(1, timeout=60)
    print("ok")


if __name__ == "__main__":
    main()
