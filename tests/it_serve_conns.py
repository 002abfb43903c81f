"""`autopilot serve` against clients that hold connections: one trickling a
request a byte at a time (which libevent's silence timeout never cuts) is
closed once listen.request_timeout_s has passed since its accept (also
right after a burst of CONNECTs, each closed after its answer), and so is
one that sends nothing; a keep-alive connection that keeps delivering whole
requests is not. At listen.max_connections the server stops accepting: a
further client waits (in the kernel's queue) and is answered as soon as the
held connections are cut. /metrics counts the connections open and cut.
Started with a low descriptor limit, serve raises it to the connection
limit plus its reserve. Clients holding request bodies unfinished cannot
make serve hold more than listen.max_buffered_bytes: past it, the
connection waiting longest for a whole request is closed (not the one
holding most), and a delivery still gets through; header lines count for
more than their bytes."""
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_itlib import Serve, check, entity, event, parse_prometheus, serving  # noqa: E402

TIMEOUT_S = 2
MAX_CONNS = 6


def metric(srv, name):
    st, text = srv.request("GET", "/metrics")
    check(st == 200, "GET /metrics: %s" % st)
    for (k, _labels), v in parse_prometheus(text).items():
        if k == name:
            return v
    check(False, "no %s in /metrics" % name)


class Trickler(threading.Thread):
    """Sends a request that never ends, one byte every 0.2 s, until the
    server closes the connection; records when."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.started = time.monotonic()
        self.closed_after = None

    def run(self):
        head = b"POST /api/v1/webhooks/openmetadata HTTP/1.1\r\nHost: x\r\nX-Slow: "
        i = 0
        try:
            while time.monotonic() - self.started < 20:
                self.sock.sendall(head[i:i + 1] if i < len(head) else b"a")
                i += 1
                time.sleep(0.2)
        except OSError:
            pass
        self.closed_after = time.monotonic() - self.started
        self.sock.close()


def wait_closed(sock, limit):
    """Seconds until the server closes sock (it sends nothing), or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


def held_open(port, length, sent):
    """A connection holding a webhook request whose body, of length bytes,
    is sent only up to sent bytes."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"POST /api/v1/webhooks/openmetadata HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length
              + b" " * sent)
    return c


def is_open(c):
    c.setblocking(False)
    try:
        return c.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        c.setblocking(True)


def buffered_check():
    """listen.max_buffered_bytes: 300,000 (one request may hold 132,096:
    a body up to 66,560 bytes, libevent's limit for max_body_bytes 1,024,
    and 64 KiB of headers)."""
    scenario = {"pipelines": {"*": {"queued_ms": 10, "running_ms": 20}}}
    limits = {"listen": {"max_body_bytes": 1024, "max_buffered_bytes": 300000}}
    with serving(scenario, config=limits) as (_sim, srv):
        port = srv.port
        # Five hold about 265,000 bytes, the first (oldest) the least: under
        # the limit, all stay.
        held = [held_open(srv.port, 60000, 45000)]
        time.sleep(0.1)
        held += [held_open(srv.port, 60000, 55000) for _ in range(4)]
        time.sleep(0.5)
        check(all(is_open(c) for c in held), "a connection under the limit was closed")
        check(metric(srv, "autopilot_http_connections_shed_total") == 0, "shed under the limit")
        b = metric(srv, "autopilot_http_buffered_bytes")
        check(265000 <= b <= 271000, "bytes held: %s" % b)  # and 5 lines each
        # A sixth with 40,000 takes them past 300,000: the one waiting
        # longest is closed, though it holds least of the five, and not the
        # sixth.
        sixth = held_open(port, 60000, 40000)
        time.sleep(0.5)
        check(is_open(sixth), "the connection that came last was closed")
        closed = [i for i, c in enumerate(held) if not is_open(c)]
        check(closed == [0], "closed: %s, not the first" % closed)
        check(metric(srv, "autopilot_http_connections_shed_total") == 1, "shed count")
        b = metric(srv, "autopilot_http_buffered_bytes")
        check(b <= 300000, "bytes held past the limit: %s" % b)
        # A delivery still gets through, and its bytes go with its answer.
        st, body = srv.post_event(event("databaseService", entity("databaseService", "held")))
        check(st == 202, "a delivery beside held connections: %s %s" % (st, body))
        check("(listen.max_buffered_bytes)" in srv.log(), "the shedding is logged: %r"
              % srv.log()[-2000:])
        for c in held + [sixth]:
            c.close()
        time.sleep(0.3)
        b = metric(srv, "autopilot_http_buffered_bytes")
        check(b < 1000, "bytes held once the clients left: %s" % b)
        # Header lines count for what libevent keeps of each, not their bytes.
        lines = socket.create_connection(("127.0.0.1", port), timeout=5)
        lines.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 500)
        time.sleep(0.3)
        b = metric(srv, "autopilot_http_buffered_bytes")
        check(500 * 128 < b < 132096, "500 header lines held as %s bytes" % b)
        lines.close()
        srv.wait_final(1, timeout=60)


def main():
    scenario = {"parse_delay_ms": 20, "pipelines": {"*": {"queued_ms": 10, "running_ms": 20}}}
    limits = {"listen": {"request_timeout_s": TIMEOUT_S, "max_connections": MAX_CONNS}}
    with serving(scenario, config=limits) as (sim, srv):
        port = srv.port

        # A keep-alive client delivering a request every 0.5 s outlives the
        # deadline: it counts from each answer, not from the accept.
        keep = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < TIMEOUT_S * 2:
            keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b'"ok"' not in data:
                d = keep.recv(4096)
                check(d, "the keep-alive connection closed after %d requests (%.1f s)" % (
                    n, time.monotonic() - t0))
                data += d
            n += 1
            time.sleep(0.5)
        keep.close()

        # Tricklers and a silent client: cut near the deadline.
        cut_before = metric(srv, "autopilot_http_connections_cut_total")
        # A burst of CONNECTs, each answered and its connection closed,
        # leaves the deadline check on its one-second beat.
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"CONNECT x:80 HTTP/1.1\r\nHost: x\r\n\r\n")
            while c.recv(4096):
                pass
            c.close()
        tricklers = [Trickler(port) for _ in range(MAX_CONNS - 2)]
        for t in tricklers:
            t.start()
        silent = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.5)
        open_now = metric(srv, "autopilot_http_connections")
        check(open_now >= MAX_CONNS - 1, "connections open: %s" % open_now)

        # The last slot is taken by this one; the next client waits.
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        waiter = {}

        def deliver():
            t = time.monotonic()
            waiter["answer"] = srv.post_event(event("databaseService",
                                                    entity("databaseService", "after_cap")))
            waiter["after"] = time.monotonic() - t

        w = threading.Thread(target=deliver, daemon=True)
        w.start()
        time.sleep(0.3)
        check("answer" not in waiter,
              "a client past listen.max_connections was answered at once: %s" % waiter)

        silent_after = wait_closed(silent, TIMEOUT_S + 5)
        extra_after = wait_closed(extra, TIMEOUT_S + 5)
        for t in tricklers:
            t.join(TIMEOUT_S + 10)
        w.join(TIMEOUT_S + 15)
        check(silent_after is not None, "a silent connection was not closed")
        check(extra_after is not None, "the connection at the limit was not closed")
        for t in tricklers:
            check(t.closed_after is not None and t.closed_after < TIMEOUT_S + 3,
                  "a trickling client was not cut near %d s: %s" % (TIMEOUT_S, t.closed_after))
        check(waiter.get("answer", (None,))[0] == 202,
              "the waiting delivery: %s" % waiter)
        check("after" in waiter and waiter["after"] >= 0.5,
              "the waiting delivery was answered before a slot freed: %s" % waiter)
        cut = metric(srv, "autopilot_http_connections_cut_total") - cut_before
        # (the silent ones may go first by libevent's own silence timeout)
        check(cut >= len(tricklers), "connections cut: %s" % cut)
        check("delivered no whole request within %d s" % TIMEOUT_S in srv.log(),
              "the cut is logged: %r" % srv.log()[-2000:])
        check("connections open (listen.max_connections)" in srv.log(),
              "the limit is logged: %r" % srv.log()[-2000:])
        open_now = metric(srv, "autopilot_http_connections")
        check(open_now <= 2, "connections open afterwards: %s" % open_now)
        srv.wait_final(1, timeout=60)

        # Descriptors: the soft limit rises to max_connections (1024) + 128.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard >= 1152:
            low = Serve(sim.url)
            resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
            try:
                low.start()
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            try:
                with open("/proc/%d/limits" % low.proc.pid) as f:
                    line = [x for x in f if x.startswith("Max open files")][0]
                check(int(line.split()[3]) == 1152, "descriptor limit: %r" % line)
                check(low.stop() == 0, "clean stop")
            finally:
                low.close()
    buffered_check()
    print("ok")


if __name__ == "__main__":
    main()
