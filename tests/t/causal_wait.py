#!/usr/bin/env python3
"""--causal-wait (issue 13, item 3): a kvs request whose causal dependencies
are not applied yet is parked for at most that long, answered as soon as
they are applied, or 503 when the time is up; never blocking its worker.

The dependency is held back by SIGSTOPping the origin's replicator (its
workers still answer, so nobody is evicted) and released with SIGCONT.

  (a) --causal-wait 0: 503 at once, nothing parked;
  (b) --causal-wait 500: a GET and a PUT at B that arrive before A's write
      are answered 200/201 after SIGCONT (the GET reads the write, the PUT
      writes then), before the wait ran out; a request whose dependency
      never arrives gets 503 after the wait; the worker (B has one) serves
      other requests meanwhile;
  (c) --causal-wait 3000 --causal-wait-max 4, one worker: the 5th and 6th
      parked requests get 503 at once; a client that hangs up while parked
      is counted and the worker stays healthy; the parked ones are served
      when the dependency arrives; on SIGTERM a parked request is answered
      503 at once.

Addresses: 127.0.0.220-221 (a), .222-.223 (b), .224-.225 (c), port 8090.
"""
import json
import os
import signal
import socket
import threading
import time

from repltest import *  # noqa: F401,F403
from kvstest import connect_from

WAIT0 = ["127.0.0.220", "127.0.0.221"]
WAIT500 = ["127.0.0.222", "127.0.0.223"]
WAITMAX = ["127.0.0.224", "127.0.0.225"]


def metrics(r):
    out = {}
    for line in request(r, "GET", "/metrics", timeout=3).raw.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            out[name] = float(v)
    return out


def park_counts(r):
    m = metrics(r)
    return {k: int(m.get(n, 0)) for k, n in (
        ("parked", "kvsd_causal_parked_total"),
        ("served", 'kvsd_causal_park_ended_total{how="served"}'),
        ("timeout", 'kvsd_causal_park_ended_total{how="timeout"}'),
        ("disconnect", 'kvsd_causal_park_ended_total{how="disconnect"}'),
        ("overflow", "kvsd_causal_park_overflow_total"))}


def delta(after, before):
    return {k: after[k] - before[k] for k in after}


class Held:
    """A's replicator stopped: A's writes do not leave A until release()."""

    def __init__(self, a):
        self.pid = a.replicator()[0]
        os.kill(self.pid, signal.SIGSTOP)
        self.t_release = None

    def release(self):
        if self.t_release is None:
            self.t_release = time.monotonic()
            os.kill(self.pid, signal.SIGCONT)


def in_thread(fn):
    """Run fn() in a thread; returns (thread, result dict with 'r', 't_end')."""
    res = {}

    def run():
        try:
            res["r"] = fn()
        except NET_ERRORS as e:
            res["r"] = e
        res["t_end"] = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, res


def raw_kvs(addr, key, meta):
    """Send a GET /kvs/key with meta on a socket of our own; returns it."""
    body = json.dumps({"causal-metadata": meta}).encode()
    s = connect_from(addr, 8090)
    s.sendall(b"GET /kvs/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body))
    return s


def read_status(s, timeout):
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
    except OSError:
        return None
    return int(buf.split(b" ", 2)[1])


# ---------------------------------------------------------------------------
# (a) --causal-wait 0: the course behaviour, 503 at once
# ---------------------------------------------------------------------------
cl0 = Cluster(WAIT0, workers=2, extra_args=["--causal-wait", "0"])
cl0.wait_ready(10)
A, B = cl0.replicas
ok(wait_all_ready(cl0, 10), "(a) both replicas ready")
held = Held(A)
try:
    p = kv(A, "PUT", "x", value="one", put=True)
    is_(p.status, 201, "(a) PUT x at A -> 201")
    before = park_counts(B)
    t0 = time.monotonic()
    g = try_kv(B, "GET", "x", meta_of(p), timeout=5)
    dt = time.monotonic() - t0
    expect(g, 503, ERR503, "(a) GET x at B before A's write arrives -> 503")
    diag("(a) 503 after %.1f ms" % (dt * 1000))
    is_(delta(park_counts(B), before)["parked"], 0, "(a) nothing parked with --causal-wait 0")
finally:
    held.release()
ok(wait_until(lambda: (lambda g: g is not None and g.status == 200)(try_kv(B, "GET", "x", meta_of(p))), 5),
   "(a) after SIGCONT B serves x")
cl0.stop()

# ---------------------------------------------------------------------------
# (b) --causal-wait 500
# ---------------------------------------------------------------------------
cl = Cluster(WAIT500, workers=1, extra_args=["--causal-wait", "500"])
cl.wait_ready(10)
A, B = cl.replicas
ok(wait_all_ready(cl, 10), "(b) both replicas ready")
before = park_counts(B)

held = Held(A)
try:
    p = kv(A, "PUT", "x", value="one", put=True)
    is_(p.status, 201, "(b) PUT x=one at A -> 201")
    m = meta_of(p)
    t0 = time.monotonic()
    tg, rg = in_thread(lambda: kv(B, "GET", "x", m, timeout=5))
    tp, rp = in_thread(lambda: kv(B, "PUT", "y", m, value="two", put=True, timeout=5))
    ok(wait_until(lambda: delta(park_counts(B), before)["parked"] == 2, 0.4, 0.01),
       "(b) B parks the GET and the PUT", repr(delta(park_counts(B), before)))
    # B's only worker is not blocked: it answers other requests meanwhile
    t1 = time.monotonic()
    h = request(B, "GET", "/health", timeout=2)
    q = kv(B, "GET", "x", None, timeout=2)
    dt_other = time.monotonic() - t1
    ok(h.status == 200 and q.status == 404 and "r" not in rg and "r" not in rp,
       "(b) while both are parked, B's one worker answers /health and a GET without metadata (%.1f ms)"
       % (dt_other * 1000), "%r %r %r %r" % (h.status, q.status, rg, rp))
    time.sleep(max(0.0, t0 + 0.15 - time.monotonic()))   # the dependency arrives ~150 ms late
finally:
    held.release()
tg.join(6)
tp.join(6)
g, pu = rg.get("r"), rp.get("r")
is_(getattr(g, "status", g), 200, "(b) the parked GET is answered 200 once A's write is applied")
is_(getattr(g, "json", {}).get("value") if hasattr(g, "json") else None, "one",
    "(b) ... and reads the store then (x=one)")
is_(getattr(pu, "status", pu), 201, "(b) the parked PUT is answered 201 (y created)")
for name, r in (("GET", rg), ("PUT", rp)):
    ok("t_end" in r and held.t_release <= r["t_end"] < t0 + 0.5,
       "(b) the %s is answered after the dependency arrived and before the wait ran out" % name,
       "answered %.3f s after it was sent, released at %.3f s" %
       (r.get("t_end", 0) - t0, held.t_release - t0))
g2 = kv(B, "GET", "y", meta_of(pu) if hasattr(pu, "json") else None)
ok(g2.status == 200 and g2.json.get("value") == "two", "(b) the parked PUT wrote y=two", g2.describe())
d = delta(park_counts(B), before)
ok(d["parked"] == 2 and d["served"] == 2 and d["timeout"] == 0,
   "(b) /metrics: 2 parked, 2 served", repr(d))

# a dependency that never arrives within the wait: 503 after the wait
before = park_counts(B)
held = Held(A)
try:
    p = kv(A, "PUT", "x", meta_of(g), value="three", put=True)
    is_(p.status, 200, "(b) PUT x=three at A -> 200")
    t0 = time.monotonic()
    g = try_kv(B, "GET", "x", meta_of(p), timeout=5)
    dt = time.monotonic() - t0
    expect(g, 503, ERR503, "(b) GET x at B whose dependency does not arrive -> 503")
    ok(0.45 <= dt < 2.0, "(b) ... after the wait (%.3f s)" % dt)
    d = delta(park_counts(B), before)
    ok(d["parked"] == 1 and d["timeout"] == 1 and d["served"] == 0, "(b) /metrics: 1 parked, 1 timed out", repr(d))
finally:
    held.release()
g = kv_retry(B, "GET", "x", meta_of(p))
ok(g is not None and g.status == 200 and g.json.get("value") == "three", "(b) after SIGCONT B serves x=three")
cl.stop()

# ---------------------------------------------------------------------------
# (c) the bound, and clients that hang up while parked
# ---------------------------------------------------------------------------
cl = Cluster(WAITMAX, workers=1, extra_args=["--causal-wait", "3000", "--causal-wait-max", "4"])
cl.wait_ready(10)
A, B = cl.replicas
ok(wait_all_ready(cl, 10), "(c) both replicas ready")
worker_before = B.workers_list()
before = park_counts(B)
socks = []
held = Held(A)
try:
    p = kv(A, "PUT", "z", value="zed", put=True)
    m = meta_of(p)
    for i in range(4):
        socks.append(raw_kvs(B.ip, "z", m))
    ok(wait_until(lambda: delta(park_counts(B), before)["parked"] == 4, 1, 0.01),
       "(c) 4 requests parked", repr(delta(park_counts(B), before)))
    t0 = time.monotonic()
    extra = [try_kv(B, "GET", "z", m, timeout=5) for _ in range(2)]
    dt = time.monotonic() - t0
    ok(all(e is not None and e.status == 503 and e.raw == ERR503 for e in extra) and dt < 1.0,
       "(c) the 5th and 6th get 503 at once (%.1f ms for both)" % (dt * 1000), repr(extra))
    d = delta(park_counts(B), before)
    ok(d["overflow"] == 2 and d["parked"] == 4, "(c) /metrics: 2 overflows, still 4 parked", repr(d))

    # one client hangs up (FIN), another resets (RST)
    socks[0].close()
    rst = socks[1]
    rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    rst.close()
    ok(wait_until(lambda: delta(park_counts(B), before)["disconnect"] == 2, 1.5, 0.01),
       "(c) the two clients that hung up are counted as disconnects well before the wait ends",
       repr(delta(park_counts(B), before)))
    # their places are free again: two more can park
    socks.append(raw_kvs(B.ip, "z", m))
    ok(wait_until(lambda: delta(park_counts(B), before)["parked"] == 5, 1, 0.01),
       "(c) a freed place parks a new request", repr(delta(park_counts(B), before)))
    h = request(B, "GET", "/health", timeout=2)
    is_(h.status, 200, "(c) the worker answers /health while requests are parked")
finally:
    held.release()
statuses = [read_status(s, 3) for s in socks[2:]]
is_(statuses, [200, 200, 200], "(c) the parked ones are answered 200 once the dependency arrives")
for s in socks[2:]:
    s.close()
d = delta(park_counts(B), before)
ok(d == {"parked": 5, "served": 3, "timeout": 0, "disconnect": 2, "overflow": 2},
   "(c) /metrics: 5 parked = 3 served + 2 disconnects; 2 overflows", repr(d))
is_(B.workers_list(), worker_before, "(c) B's worker is the same process (nothing crashed)")
for r in cl:
    ok(r.running(), "%s still running" % r.addr, r.log_tail())

# SIGTERM with a request parked: it is answered (503) at once, not dropped
# when the drain (2 s) gives up.  Its dependency is a write A never made
# (A's replicator runs: a stopped peer holds B's drain up by itself).
before = park_counts(B)
never = {k: 10 ** 9 for k in meta_of(kv(A, "PUT", "z", m, value="later", put=True))}
s = raw_kvs(B.ip, "z", never)
ok(wait_until(lambda: delta(park_counts(B), before)["parked"] == 1, 1, 0.01), "(c) one more parked")
t0 = time.monotonic()
B.signal_master(signal.SIGTERM)
st = read_status(s, 3)
dt = time.monotonic() - t0
s.close()
# the answer comes at once, not when the drain gives up (2 s); the exit
# itself may wait that long for idle keep-alive connections (A's
# replicator keeps one open to B)
status = B.wait(5)
ok(status == 0 and st == 503 and dt < 1.0,
   "(c) SIGTERM: B answers the parked request 503 at once (%.3f s) and exits 0" % dt,
   "exit %r, answer %r\n%s" % (status, st, B.log_tail()))
cl.stop()
done()
