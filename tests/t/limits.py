#!/usr/bin/env python3
"""Limits that hold under abuse: connections per worker, header size,
request timeouts against slow clients, a flood of 503-bound requests, a
full arena, garbage and oversized batches on /internal/replicate.
Addresses: 127.0.0.35 (--workers 1 --max-connections 8), 127.0.0.36
(--request-timeout 1000: header size, slow clients, 503 flood), 127.0.0.37
(--memory 8M), 127.0.0.38 (/internal/ garbage); 127.0.0.39 is only named in
causal-metadata and batches (nothing listens)."""

import multiprocessing
import random
import socket
import struct
import threading
import time

from kvstest import (Replica, accept_backlog, RawConn, Session, request, ok, is_, done, diag, expect,
                     wait_until)

UNSAT = b'{"error": "Causal dependencies not satisfied; try again later"}'
FULL = b'{"error": "Store is full"}'


def answered_or_closed(conn, timeout=5):
    """(good, what, response): an HTTP error status or a closed connection is
    good."""
    try:
        resp = conn.read_response(timeout)
    except socket.timeout:
        return False, "neither answered nor closed within %.1f s" % timeout, None
    except (ValueError, IndexError) as e:
        return False, "unparsable answer (%s): %r" % (e, conn.buf[:200]), None
    if resp is None:
        return True, "closed without an answer", None
    return 400 <= resp.status < 600, "answered %d %r" % (resp.status, resp.raw[:200]), resp


def prompt(rep, n=10, limit=0.5):
    """n fresh-connection /health requests, each answered 200 within limit."""
    worst = 0.0
    for i in range(n):
        t0 = time.monotonic()
        try:
            st = request(rep, "GET", "/health", timeout=limit + 2).status
        except OSError as e:
            return False, "request %d: %s" % (i, e)
        worst = max(worst, time.monotonic() - t0)
        if st != 200:
            return False, "request %d: status %r" % (i, st)
    return worst < limit, "slowest of %d: %.3f s" % (n, worst)


# ==========================================================================
# --max-connections 8, one worker
# ==========================================================================

mc = Replica("127.0.0.35", workers=1, extra_args=["--max-connections", "8"]).wait_ready(10)
mc_kids = sorted(mc.children())
# wait_ready's own connections are closed; start from zero open connections
idle = [RawConn(mc.addr, timeout=5) for _ in range(8)]
ok(wait_until(lambda: accept_backlog(mc) == 0, 3, interval=0.02),
   "8 idle connections accepted by the worker", repr(accept_backlog(mc)))
ninth = RawConn(mc.addr, timeout=5)          # the kernel completes the handshake
ninth.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    early = ninth.read_response(1.5)
    early_what = "answered %d" % early.status if early else "closed"
except socket.timeout:
    early, early_what = None, "not answered"
ok(early_what == "not answered",
   "9th connection's request not answered within 1.5 s while 8 stay open", early_what)
is_(accept_backlog(mc), 1, "the 9th connection waits in the kernel's accept queue")
ok("connections open" in mc.log_text(), "the worker logs that it stopped accepting",
   mc.log_tail(5))
t0 = time.monotonic()
idle.pop().close()
try:
    late = ninth.read_response(3)
except socket.timeout:
    late = None
waited = time.monotonic() - t0
expect(late, 200, b'{"status": "ok"}',
       "after one of the 8 closes, the 9th connection's request is answered")
ok(waited < 1.0, "... within 1 s (%.3f s)" % waited)
# still at the limit (7 idle + the 9th): one more waits, and closing two lets it in
tenth = RawConn(mc.addr, timeout=5)
tenth.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    r10 = tenth.read_response(0.7)
except socket.timeout:
    r10 = None
ok(r10 is None, "at the limit again, a 10th connection waits", r10)
ninth.close()
try:
    r10 = tenth.read_response(3)
except socket.timeout:
    r10 = None
ok(r10 is not None and r10.status == 200, "... and is answered once the 9th closes", r10)
tenth.close()
for c in idle:
    c.close()
# churn: 200 connections, at most ~16 open at a time, none lost
errors = []
for rnd in range(20):
    batch = [RawConn(mc.addr, timeout=5) for _ in range(10)]
    for c in batch:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for c in batch:
        try:
            rr = c.read_response(5)
            if rr is None or rr.status != 200:
                errors.append(rr)
        except socket.timeout:
            errors.append("timeout")
        c.close()
ok(not errors, "200 connections in batches of 10 (over the limit of 8) all answered 200",
   repr(errors[:5]))
ok(wait_until(lambda: prompt(mc, 5)[0], 5), "127.0.0.35 prompt again after the churn")

# ==========================================================================
# header size, slow clients (--request-timeout 1000)
# ==========================================================================

rt = Replica("127.0.0.36", workers=2, extra_args=["--request-timeout", "1000"]).wait_ready(10)
rt_kids = sorted(rt.children())

for name, data in [
        # /health answers 200 to any normal request: only a rejection of the
        # header itself counts
        ("100 KB header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"),
        ("2000 headers of 50 bytes", b"GET /health HTTP/1.1\r\nHost: x\r\n" +
         b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2000)) + b"\r\n"),
        ("100 KB URL", b"GET /kvs/" + b"u" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("100 KB header on a PUT with a body",
         b"PUT /kvs/h HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nX-Big: " + b"a" * 100000 +
         b"\r\n\r\n{\"value\": 1}")]:
    with RawConn(rt.addr, timeout=5) as hc:
        sent = hc.send(data)
        good, what, resp = answered_or_closed(hc) if sent else (True, "closed while sending", None)
    ok(good, "%s: an error status or a closed connection" % name, what)
    diag("%s: %s" % (name, what))
    # A head libh2o's parser cannot take at all (here: more than its 100
    # headers) is answered by libh2o with a plain-text 400 written straight
    # to the socket before any request exists; kvsd never sees it (see
    # doc/design.md "HTTP and JSON").  Every error kvsd itself answers is JSON.
    if resp is not None and resp.status >= 400 and name != "2000 headers of 50 bytes":
        # api.md: every error is JSON, every response has Content-Length
        ok(resp.headers.get("content-type", "").split(";")[0] == "application/json" and
           isinstance(resp.json, dict) and "error" in resp.json,
           "%s: the %d error is a JSON {\"error\": ...} body" % (name, resp.status),
           resp.describe())
    is_(request(rt, "GET", "/health").status, 200, "%s: still serving" % name)
expect(request(rt, "GET", "/kvs/h"), 404, b'{"error": "Key does not exist"}',
       "the oversized-header PUT stored nothing")
# a normal-sized header (4 KB) is fine
resp = request(rt, "GET", "/health", headers={"X-Normal": "n" * 4000})
is_(resp.status, 200, "a 4 KB header is accepted")


def stalled(name, data, lo=0.5, hi=2.5):
    """Send data, stall: the server must close the connection (or answer an
    error) between lo and hi seconds later."""
    with RawConn(rt.addr, timeout=5) as sc:
        t0 = time.monotonic()
        sc.send(data)
        try:
            sc.read_until_closed(hi + 1.0)
            took, what = time.monotonic() - t0, "closed"
        except socket.timeout:
            took, what = None, "still open after %.1f s" % (hi + 1.0)
        got = sc.buf[:200]
    ok(took is not None and lo <= took <= hi,
       "%s: disconnected %.1f-%.1f s after it stalled (--request-timeout 1000)" % (name, lo, hi),
       "%s; took %s; received %r" % (what, took, got))
    diag("%s: %s after %s s, received %r" % (name, what, took and round(took, 3), got))
    return took


stall_results = {}


def stall_thread(name, data):
    stall_results[name] = stalled(name, data)


cases = [("half a request line", b"GET /kvs/sl"),
         ("request line, half the headers", b"GET /kvs/sl HTTP/1.1\r\nHost: x\r\nX-A"),
         ("headers, half the body",
          b"PUT /kvs/sl HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"value\": ")]
threads = [threading.Thread(target=stall_thread, args=c, daemon=True) for c in cases]
for t in threads:
    t.start()
# others are served while the stalled clients hold their connections
time.sleep(0.2)   # the point is to measure while they stall, not before
good, why = prompt(rt, n=10, limit=0.5)
ok(good, "others served promptly while 3 clients stall", why)
for t in threads:
    t.join(6)
ok(not any(t.is_alive() for t in threads), "stalled-client threads finished")


# slowloris proper: one header byte every 150 ms keeps the connection busy
# but the whole request is never sent within the timeout
def trickle():
    data = b"GET /kvs/sl HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    with RawConn(rt.addr, timeout=5) as tc:
        t0 = time.monotonic()
        i = 0
        while i < len(data) and time.monotonic() - t0 < 4.0:
            if not tc.send(data[i:i + 1]):
                break
            i += 1
            try:
                tc.sock.settimeout(0.15)
                if tc.sock.recv(4096) == b"":
                    break
            except socket.timeout:
                pass
            except OSError:
                break
        return time.monotonic() - t0, i


took, nbytes = trickle()
ok(took <= 2.5 and nbytes < 200,
   "a client trickling a header byte every 150 ms is disconnected within 2.5 s",
   "ran %.2f s, sent %d bytes before the server closed (or the 4 s cap)" % (took, nbytes))
diag("trickler: disconnected after %.2f s, %d bytes sent" % (took, nbytes))

# 40 stalled connections at once do not keep others out
many = []
for i in range(40):
    c = RawConn(rt.addr, timeout=5)
    c.send(b"GET /kvs/many HTTP/1.1\r\nHo")
    many.append(c)
good, why = prompt(rt, n=10, limit=0.5)
ok(good, "others served promptly with 40 stalled connections open", why)


def all_closed():
    for c in many:
        if c.eof:
            continue
        c.sock.settimeout(0.01)
        try:
            if c.sock.recv(4096) == b"":
                c.eof = True
        except socket.timeout:
            pass
        except OSError:
            c.eof = True
    return all(c.eof for c in many)


ok(wait_until(all_closed, 3), "all 40 stalled connections closed by the server within 3 s",
   "%d still open" % sum(1 for c in many if not c.eof))
for c in many:
    c.close()

# idle keep-alive after a complete request is not a stalled request: the
# connection still works within the timeout
with Session(rt.addr) as s:
    is_(s.request("PUT", "/kvs/ka", body={"value": 1}).status, 201, "keep-alive PUT")
    is_(s.request("GET", "/kvs/ka").status, 200, "keep-alive GET right after")

# ==========================================================================
# a flood of 503-bound requests does not starve others
# ==========================================================================

pm = request(rt, "PUT", "/kvs/flood-base", body={"value": 0})
is_(pm.status, 201, "PUT for the metadata the flood builds on")
meta_ahead = dict(pm.json["causal-metadata"])
for k in meta_ahead:
    meta_ahead[k] += 1000000           # writes of this replica it never made
FLOOD_METAS = [meta_ahead, {"127.0.0.39:8090/1": 5}]
for m in FLOOD_METAS:
    expect(request(rt, "GET", "/kvs/flood-base", body={"causal-metadata": m}), 503, UNSAT,
           "flood request with metadata %r -> 503" % m)

FLOOD_SECONDS, FLOOD_PROCS = 3.0, 8


def flood(idx, q):
    """A separate process (no GIL shared with the measuring client): keep-alive
    requests with unsatisfiable metadata for FLOOD_SECONDS."""
    counts = {}
    end = time.monotonic() + FLOOD_SECONDS
    s = Session(rt.addr, timeout=3)
    i = 0
    while time.monotonic() < end and i < 200000:
        m = FLOOD_METAS[i % 2]
        method = ("GET", "PUT", "DELETE")[i % 3]
        body = {"causal-metadata": m}
        if method == "PUT":
            body["value"] = i
        try:
            st = s.request(method, "/kvs/flood%d" % (i % 50), body=body).status
        except OSError:
            st = "error"
        counts[st] = counts.get(st, 0) + 1
        i += 1
    s.close()
    q.put(counts)


ctx = multiprocessing.get_context("fork")
q = ctx.Queue()
procs = [ctx.Process(target=flood, args=(i, q), daemon=True) for i in range(FLOOD_PROCS)]
for p in procs:
    p.start()
lat, bad = [], []
t_end = time.monotonic() + FLOOD_SECONDS - 0.3
time.sleep(0.3)   # measure while the flood is running, not before it starts
n = 0
with Session(rt.addr, timeout=3) as s:
    while time.monotonic() < t_end and n < 5000:
        key = "norm%d" % ((n // 2) % 20)      # PUT then GET of the same key
        t0 = time.monotonic()
        try:
            if n % 2 == 0:
                rr = s.request("PUT", "/kvs/" + key, body={"value": n})
                good = rr.status in (200, 201)
            else:
                rr = s.request("GET", "/kvs/" + key)
                good = rr.status == 200
            st = rr.status
        except OSError as e:
            good, st = False, str(e)
        lat.append(time.monotonic() - t0)
        if not good:
            bad.append((n, st))
        n += 1
floods = []
for p in procs:
    try:
        floods.append(q.get(timeout=FLOOD_SECONDS + 5))
    except Exception:
        pass
for p in procs:
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join(2)
total = {}
for c in floods:
    for k, v in c.items():
        total[k] = total.get(k, 0) + v
lat.sort()
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None
diag("flood: %r from %d processes; normal client: %d requests, p50 %.2f ms, p99 %.2f ms, max %.2f ms"
     % (total, len(floods), len(lat), 1000 * lat[len(lat) // 2] if lat else -1,
        1000 * p99 if p99 is not None else -1, 1000 * lat[-1] if lat else -1))
is_(len(floods), FLOOD_PROCS, "every flood process reported")
ok(set(total) == {503} and total.get(503, 0) > 200,
   "the flood got only 503s (and many of them)", repr(total))
ok(len(lat) >= 50 and not bad, "every normal GET/PUT during the flood succeeded",
   "%d requests, failures: %r" % (len(lat), bad[:10]))
ok(p99 is not None and p99 < 0.2, "normal requests' p99 latency under 200 ms during the flood",
   "p99 %r" % p99)
good, why = prompt(rt, n=5)
ok(good, "127.0.0.36 prompt after the flood", why)
for rep, kids in [(mc, mc_kids), (rt, rt_kids)]:
    is_(sorted(rep.children()), kids, "%s: no worker or replicator died" % rep.addr)

# ==========================================================================
# full arena: 507, reads keep working, deleting frees space
# ==========================================================================

fa = Replica("127.0.0.37", workers=2, extra_args=["--memory", "8M"]).wait_ready(10)
fa_kids = sorted(fa.children())
VAL = "v" * 10000
stored, first_full, statuses = [], None, {}
with Session(fa.addr) as s:
    for i in range(3000):                     # 8 MiB / 10 kB: full long before
        rr = s.request("PUT", "/kvs/fill%d" % i, body={"value": VAL + str(i)})
        statuses[rr.status] = statuses.get(rr.status, 0) + 1
        if rr.status == 201:
            stored.append(i)
        else:
            first_full = rr
            break
diag("store full after %d PUTs: %r" % (len(stored), statuses))
expect(first_full, 507, FULL, "filling an 8 MiB store with 10 kB values ends in 507 "
       "{\"error\": \"Store is full\"}")
if first_full is not None:
    ok(first_full.headers.get("content-type", "").startswith("application/json"),
       "the 507 is JSON")
ok(len(stored) > 100, "more than 100 values stored before the store was full", len(stored))
expect(request(fa, "PUT", "/kvs/one-more", body={"value": VAL}), 507, FULL,
       "another 10 kB PUT while full -> 507")
expect(request(fa, "GET", "/kvs/one-more"), 404, b'{"error": "Key does not exist"}',
       "the 507 PUT stored nothing")
with Session(fa.addr) as s:
    wrong = [i for i in stored[::7] + stored[-3:]
             if (lambda g: g.status != 200 or g.json.get("value") != VAL + str(i))(
                 s.request("GET", "/kvs/fill%d" % i))]
ok(not wrong, "earlier keys still readable with their values while full", repr(wrong[:10]))
expect(request(fa, "GET", "/internal/check"), 200, b'{"check": "ok"}',
       "/internal/check ok while full")
is_(request(fa, "GET", "/health").status, 200, "/health 200 while full")
mtxt = request(fa, "GET", "/metrics")
is_(mtxt.status, 200, "/metrics answers while full")
ndel = 60
dels = [request(fa, "DELETE", "/kvs/fill%d" % i).status for i in stored[:ndel]]
is_(dels, [200] * ndel, "%d DELETEs while full -> 200" % ndel)
first_ok = wait_until(lambda: request(fa, "PUT", "/kvs/after-del0",
                                      body={"value": VAL}).status == 201, 5, interval=0.1)
ok(first_ok, "after deleting %d values a 10 kB PUT succeeds again (within 5 s)" % ndel)
again = [request(fa, "PUT", "/kvs/after-del%d" % i, body={"value": VAL}).status
         for i in range(1, 20)]
is_(again, [201] * 19, "19 more 10 kB PUTs succeed (the space of 60 deleted values)")
expect(request(fa, "GET", "/kvs/fill%d" % stored[0]), 404, b'{"error": "Key does not exist"}',
       "a deleted key stays deleted")
g = request(fa, "GET", "/kvs/fill%d" % stored[-1])
ok(g.status == 200 and g.json.get("value") == VAL + str(stored[-1]),
   "the last stored key is intact", g.describe()[:200])
expect(request(fa, "GET", "/internal/check"), 200, b'{"check": "ok"}',
       "/internal/check ok after delete and refill")
is_(sorted(fa.children()), fa_kids, "127.0.0.37: no worker or replicator died")

# ==========================================================================
# /internal/replicate: garbage and oversized batches are rejected, no effect
# ==========================================================================

ir = Replica("127.0.0.38", workers=2).wait_ready(10)
ir_kids = sorted(ir.children())
with Session(ir.addr) as s:
    for i in range(10):
        s.request("PUT", "/kvs/ir%d" % i, body={"value": {"i": i}})
    s.request("DELETE", "/kvs/ir9")


def state():
    """(keys gauge, clock, values, view) of 127.0.0.38.  (Not the tombstone
    gauge: a standalone replica may reap the tombstone at any time.)"""
    text = request(ir, "GET", "/metrics").raw.decode()
    gauges = {}
    for line in text.splitlines():
        if line.startswith("kvsd_keys "):
            k, v = line.split()
            gauges[k] = v
    g = request(ir, "GET", "/kvs/ir0")
    vals = [request(ir, "GET", "/kvs/ir%d" % i).raw for i in range(10)]
    return (gauges, g.json.get("causal-metadata") if g.json else None, vals,
            request(ir, "GET", "/view").raw)


before = state()
diag("before: %r" % (before[:2],))
is_(before[0], {"kvsd_keys": "9"}, "127.0.0.38: 9 keys")


def p8(v):
    return struct.pack("<B", v)


def p16(v):
    return struct.pack("<H", v)


def p32(v):
    return struct.pack("<I", v)


def p64(v):
    return struct.pack("<Q", v)


def inc(addr, stamp):
    return p8(len(addr)) + addr + p64(stamp)


def record(origin=0, seq=1, lamport=1, tomb=0, key=b"garbage", value=b'"x"', deps=(),
           klen=None, vlen=None):
    return (p32(origin) + p64(seq) + p64(lamport) + p8(tomb) +
            p8(len(key) if klen is None else klen) +
            p32(len(value) if vlen is None else vlen) + p16(len(deps)) +
            b"".join(p32(d) + p64(n) for d, n in deps) + key + value)


def batch(magic=b"KVB1", sender=b"127.0.0.39:8090", incs=None, recs=None, counts=(),
          ninc=None, nrec=None, ncount=None, flags=0):
    incs = [(b"127.0.0.39:8090", 7)] if incs is None else incs
    recs = [record()] if recs is None else recs
    return (magic + inc(sender, 7) + p32(flags) +
            p32(len(incs) if ninc is None else ninc) + b"".join(inc(a, s) for a, s in incs) +
            p32(len(recs) if nrec is None else nrec) + b"".join(recs) +
            p32(len(counts) if ncount is None else ncount) +
            b"".join(p32(i) + p64(n) + p32(f) + p64(fs) for i, n, f, fs in counts))


# the well-formed batch itself is never sent (it would apply a write); only
# broken variants of it
base = batch(recs=[record(key=b"ir0", value=b'"overwritten"'),
                   record(seq=2, lamport=2, key=b"garbage2", value=b"2", deps=[(0, 1)])],
             counts=[(0, 2, 0, 0)])
rng = random.Random(7)
cases = [("empty body", b""), ("'KVB1' alone", b"KVB1"),
         ("KVB1 + half an address", b"KVB1\x0f127.0.0"),
         ("KVB1 + a non-address sender", b"KVB1" + inc(b"not-an-address!", 1) + p32(0) + p32(0) +
          p32(0) + p32(0)),
         ("ninc 2^32-1", batch(ninc=0xFFFFFFFF)),
         ("ninc 257 (over CLOCK_MAX)", batch(incs=[(b"127.0.0.39:%d" % (1000 + i), 1)
                                                  for i in range(257)], recs=[])),
         ("nrec 2^32-1", batch(nrec=0xFFFFFFFF)),
         ("nrec 1000 with one record", batch(nrec=1000)),
         ("ncount 2^32-1", batch(ncount=0xFFFFFFFF)),
         ("record origin out of range", batch(recs=[record(origin=5)])),
         ("dep id out of range", batch(recs=[record(deps=[(9, 1)])])),
         ("count inc out of range", batch(counts=[(3, 1, 0, 0)])),
         ("record seq 0", batch(recs=[record(seq=0)])),
         ("record with an empty key", batch(recs=[record(key=b"")])),
         ("record with a 51-byte key", batch(recs=[record(key=b"k" * 51)])),
         ("record with an empty value", batch(recs=[record(value=b"")])),
         ("tombstone with a value", batch(recs=[record(tomb=1)])),
         ("vlen past the end", batch(recs=[record(vlen=1 << 30)])),
         ("klen past the end", batch(recs=[record(klen=255)])),
         ("ndeps 65535 with none", batch(recs=[record()[:26] + p16(65535) + b'garbage"x"'])),
         ("trailing byte", base + b"\x00"),
         ("magic KVC1", b"KVC1" + base[4:]), ("magic KVS1", b"KVS1" + base[4:]),
         ("magic kvb1", b"kvb1" + base[4:]),
         ("HTTP-looking text", b"PUT /kvs/x HTTP/1.1\r\n\r\n")]
cases += [("prefix of %d bytes" % n, base[:n]) for n in range(1, len(base))]
cases += [("random %d bytes #%d" % (n, j), bytes(rng.getrandbits(8) for _ in range(n)))
          for j, n in enumerate([1, 3, 16, 64, 200, 1000, 5000, 65536])]
cases += [("KVB1 + random %d bytes" % n, b"KVB1" + bytes(rng.getrandbits(8) for _ in range(n)))
          for n in (10, 100, 1000)]
# one byte flipped in a length, count, index or magic field: the decoder
# must reject it (a flipped key, value, stamp, seq or lamport byte could
# still make a well-formed batch, which would be applied; never sent)
assert len(base) == 185, len(base)
STRUCTURAL = (list(range(0, 5)) + list(range(32, 37)) + list(range(60, 68)) + [84, 85] +
              list(range(86, 92)) + list(range(108, 112)) + [128, 129] +
              list(range(130, 140)) + list(range(157, 165)))
cases += [("base with byte %d flipped" % i, base[:i] + bytes([base[i] ^ 0xFF]) + base[i + 1:])
          for i in STRUCTURAL]

results, wrong = {}, []
with Session(ir.addr, timeout=10) as s:
    for name, data in cases:
        try:
            rr = s.request("POST", "/internal/replicate", raw_body=data,
                           headers={"Content-Type": "application/octet-stream"})
            st = rr.status
        except OSError as e:
            st = "error %s" % e
        results[st] = results.get(st, 0) + 1
        if st not in (400, 413):
            wrong.append((name, st, getattr(rr, "raw", b"")[:100]))
diag("%d malformed batches: %r" % (len(cases), results))
ok(not wrong, "%d malformed batches on /internal/replicate -> 400 or 413" % len(cases),
   repr(wrong[:10]))

def post_big(rep, data):
    """POST a large batch, reading the answer while sending (the server may
    answer 413 before the body is complete).  Returns (status, body) or
    (None, why)."""
    c = RawConn(rep.addr, timeout=15)
    c.send(b"POST /internal/replicate HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(data))

    def sender():
        try:
            c.sock.sendall(data)
        except OSError:
            pass

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        rr = c.read_response(15)
        res = (rr.status, rr.raw[:100]) if rr is not None else (None, "closed without an answer")
    except socket.timeout:
        res = (None, "no answer within 15 s")
    c.close()
    th.join(5)
    return res


# 2 MB: over what any client may send (--max-body 1M), under the transport
# limit that leaves room for peers' batches
for name, data in [("2 MB of random bytes", bytes(rng.getrandbits(8) for _ in range(2 << 20))),
                   ("2 MB: valid header, one record with a 2 MB value",
                    batch(recs=[record(key=b"big", value=b'"' + b"z" * ((2 << 20) - 2) + b'"')])[:-1]),
                   ("2 MB of zeros after KVB1", b"KVB1" + b"\x00" * (2 << 20)),
                   ("10 MB of zeros", b"\x00" * (10 << 20))]:
    st, what = post_big(ir, data)
    ok(st in (400, 413), "%s -> 400 or 413" % name, "got %r %r" % (st, what))
    diag("%s: %r %r" % (name, st, what))

# a chunked batch that never ends and a truncated Content-Length
with RawConn(ir.addr, timeout=5) as tc:
    tc.send(b"POST /internal/replicate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" +
            base[:100])
is_(request(ir, "GET", "/health").status, 200, "still serving after a truncated batch upload")

after = state()
is_(after, before, "store, clock and view unchanged by every rejected batch")
expect(request(ir, "GET", "/internal/check"), 200, b'{"check": "ok"}',
       "/internal/check -> 200 {\"check\": \"ok\"} after the garbage")
expect(request(ir, "GET", "/kvs/garbage"), 404, b'{"error": "Key does not exist"}',
       "no key from a rejected batch exists")
is_(sorted(ir.children()), ir_kids, "127.0.0.38: no worker or replicator died")
log = ir.log_text()
ok("malformed replication batch" in log, "rejections are logged")
ok("level=error" not in log, "no error in 127.0.0.38's log",
   "\n".join(l for l in log.splitlines() if "level=error" in l)[:1500])

for rep in (mc, rt, fa, ir):
    is_(rep.stop(), 0, "%s: SIGTERM -> exit 0" % rep.addr)
done()
