#!/usr/bin/env python3
"""Bad input never crashes a process or stalls a worker: malformed bodies,
wrong causal-metadata, order of checks, oversized and chunked bodies,
slowloris and idle connections, garbage on the socket.
Addresses: 127.0.0.16 (--max-body 4096), 127.0.0.17 (defaults),
127.0.0.18 (--memory 8M)."""

import socket
import threading
import time

from kvstest import (Replica, RawConn, Session, request, ok, is_, done, diag, expect,
                     wait_until)

NOVALUE = b'{"error": "PUT request does not specify a value"}'
NOTOBJ = b'{"error": "Request body is not a JSON object"}'
BADMETA = b'{"error": "Invalid causal-metadata"}'
TOOLONG = b'{"error": "Key is too long"}'
TOOLARGE = b'{"error": "Request body too large"}'

small = Replica("127.0.0.16", workers=2, extra_args=["--max-body", "4096"])
big = Replica("127.0.0.17", workers=2)
small.wait_ready(10)
big.wait_ready(10)
procs_small = sorted(small.children())
procs_big = sorted(big.children())
is_(len(procs_small), 3, "127.0.0.16: 2 workers + replicator at start")

r = small
k51 = "k" * 51

# --- PUT bodies without a value -------------------------------------------------------
for name, raw in [("no body", None), ("empty body", b""), ("[]", b"[]"), ("42", b"42"),
                  ('"str"', b'"str"'), ("{", b"{"), ("null", b"null"),
                  ("object without value", b'{"causal-metadata": null}'),
                  ("other key", b'{"val": 1}'), ("trailing garbage", b'{"value": 1} x'),
                  ("not UTF-8 JSON", b"\xff\xfe")]:
    resp = request(r, "PUT", "/kvs/pv", raw_body=raw) if raw is not None \
        else request(r, "PUT", "/kvs/pv")
    expect(resp, 400, NOVALUE, "PUT body %s -> 400 no value" % name)
expect(request(r, "GET", "/kvs/pv"), 404, b'{"error": "Key does not exist"}',
       "none of them created the key")

# --- GET/DELETE bodies that are not objects ---------------------------------------------
request(r, "PUT", "/kvs/gd", body={"value": 1})
for method in ("GET", "DELETE"):
    for name, raw in [("[1]", b"[1]"), ("{", b"{"), ("42", b"42"), ('"x"', b'"x"'),
                      ("garbage", b"causal-metadata=1")]:
        expect(request(r, method, "/kvs/gd", raw_body=raw), 400, NOTOBJ,
               "%s body %s -> 400 not a JSON object" % (method, name))
ok(request(r, "GET", "/kvs/gd").status == 200, "GET after bad DELETEs finds the key")

# --- invalid causal-metadata ----------------------------------------------------------
bad_metas = [("42", 42), ('"x"', "x"), ("[1]", [1]), ('{"a": 1}', {"a": 1}),
             ("negative count", {"127.0.0.16:8090/1": -1}),
             ("count a string", {"127.0.0.16:8090/1": "3"}),
             ("count a float", {"127.0.0.16:8090/1": 1.5}),
             ("count true", {"127.0.0.16:8090/1": True}),
             ("count null", {"127.0.0.16:8090/1": None}),
             ("count an object", {"127.0.0.16:8090/1": {}}),
             ("stamp not digits", {"127.0.0.16:8090/x": 1}),
             ("no stamp", {"127.0.0.16:8090": 1}),
             ("no port", {"127.0.0.16/1": 1}),
             ("true", True)]
for mname, meta in bad_metas:
    for method, kw in [("GET", {}), ("DELETE", {}), ("PUT", {"value": 1})]:
        body = dict(kw, **{"causal-metadata": meta})
        expect(request(r, method, "/kvs/gd", body=body), 400, BADMETA,
               "%s causal-metadata %s -> 400 invalid" % (method, mname))
resp = request(r, "GET", "/kvs/gd")
ok(resp.status == 200 and resp.json.get("value") == 1,
   "invalid-metadata requests changed nothing", resp.raw)

# --- order of checks ----------------------------------------------------------------
expect(request(r, "PUT", "/kvs/" + k51, raw_body=b"{"), 400, TOOLONG,
       "PUT 51-byte key + malformed body -> Key is too long")
expect(request(r, "PUT", "/kvs/" + k51, body={"causal-metadata": 42}), 400, TOOLONG,
       "PUT 51-byte key + no value + bad metadata -> Key is too long")
expect(request(r, "GET", "/kvs/" + k51, raw_body=b"[1]"), 400, TOOLONG,
       "GET 51-byte key + non-object body -> Key is too long")
expect(request(r, "DELETE", "/kvs/" + k51, body={"causal-metadata": "x"}), 400, TOOLONG,
       "DELETE 51-byte key + bad metadata -> Key is too long")
expect(request(r, "PUT", "/kvs/ord", body={"causal-metadata": 42}), 400, NOVALUE,
       "PUT no value + bad metadata -> no value")
expect(request(r, "PUT", "/kvs/ord", body={"value": None, "causal-metadata": [1]}), 400,
       NOVALUE, "PUT null value + bad metadata -> no value")
expect(request(r, "PUT", "/kvs/ord", body={"value": 1, "causal-metadata": [1]}), 400,
       BADMETA, "PUT value + bad metadata -> invalid metadata")

# --- body size limits -----------------------------------------------------------------
def put_body_of(n):
    """A PUT body of exactly n bytes."""
    head, tail = b'{"value": "', b'"}'
    return head + b"x" * (n - len(head) - len(tail)) + tail


resp = request(r, "PUT", "/kvs/size", raw_body=put_body_of(4096))
is_(resp.status, 201, "body of exactly --max-body (4096) bytes accepted")
resp = request(r, "PUT", "/kvs/size", raw_body=put_body_of(4097))
expect(resp, 413, TOOLARGE, "body of 4097 bytes with --max-body 4096 -> 413")
resp = request(r, "PUT", "/kvs/size2", raw_body=put_body_of(5000))
expect(resp, 413, TOOLARGE, "PUT body of 5000 bytes -> 413")
expect(request(r, "GET", "/kvs/size2"), 404, b'{"error": "Key does not exist"}',
       "the 413 PUT stored nothing")
resp = request(r, "GET", "/kvs/size", raw_body=b'{"causal-metadata": null, "pad": "' +
               b"p" * 5000 + b'"}')
expect(resp, 413, TOOLARGE, "GET body of 5000 bytes -> 413")


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def chunked_put(addr, key, body, size=1000):
    with RawConn(addr, timeout=5) as c:
        c.send(b"PUT /kvs/" + key.encode() + b" HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(chunked(body, size))
        return c.read_response(5)


resp = chunked_put(r.addr, "chunk1", b'{"value": "chunked"}', 5)
ok(resp is not None and resp.status == 201, "chunked PUT within the limit -> 201", resp)
resp = chunked_put(r.addr, "chunk2", put_body_of(6000), 1000)
expect(resp, 413, TOOLARGE, "chunked PUT of 6000 bytes with --max-body 4096 -> 413")
expect(request(r, "GET", "/kvs/chunk2"), 404, b'{"error": "Key does not exist"}',
       "the 413 chunked PUT stored nothing")

# 10 MB with the default limit (1 MB): headers first, read the answer while sending
TEN_MB = 10 * 1024 * 1024
c = RawConn(big.addr, timeout=15)
c.send(b"PUT /kvs/huge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\n\r\n" % TEN_MB)
sent = [0]


def sender():
    block = b'{"value": "' + b"x" * 65525
    try:
        while sent[0] < TEN_MB:
            n = min(len(block), TEN_MB - sent[0])
            c.sock.sendall(block[:n])
            sent[0] += n
    except OSError:
        pass


th = threading.Thread(target=sender, daemon=True)
th.start()
try:
    resp = c.read_response(15)
except socket.timeout:
    resp = "timeout"
expect(resp if resp != "timeout" else None, 413, TOOLARGE,
       "10 MB body with the default --max-body -> 413")
diag("server answered after %d of %d body bytes were sent" % (sent[0], TEN_MB))
c.close()
th.join(5)
ok(not th.is_alive(), "sender thread finished")
expect(request(big, "GET", "/kvs/huge"), 404, b'{"error": "Key does not exist"}',
       "the 10 MB PUT stored nothing")


# --- slow and idle clients do not block others -----------------------------------------
def prompt(replica, n=10, limit=1.0):
    worst = 0.0
    for i in range(n):
        t0 = time.monotonic()
        try:
            st = request(replica, "GET", "/health", timeout=limit + 1).status
        except OSError:
            st = None
        worst = max(worst, time.monotonic() - t0)
        if st != 200:
            return False, "request %d: status %r" % (i, st)
    return worst < limit, "slowest of %d: %.3f s" % (n, worst)


slow_done = threading.Event()
slow_result = {}


def slowloris():
    data = b"GET /kvs/gd HTTP/1.1\r\nHost: 127.0.0.16\r\n"
    try:
        with RawConn(r.addr, timeout=10) as sc:
            t0 = time.monotonic()
            i = 0
            while i < len(data) and time.monotonic() - t0 < 3.5:
                if not sc.send(data[i:i + 1]):
                    break
                i += 1
                slow_done.wait(0.3)
            slow_result["sent"] = i
            slow_result["closed_early"] = i < len(data) and time.monotonic() - t0 < 3.0
    finally:
        slow_done.set()


th = threading.Thread(target=slowloris, daemon=True)
th.start()
time.sleep(0.5)   # let it get going: the point is to measure while it trickles
good, why = prompt(r, n=10)
ok(good, "others answered promptly while a slowloris trickles headers", why)
th.join(6)
ok(not th.is_alive(), "slowloris thread finished", slow_result)
diag("slowloris sent %s header bytes" % slow_result.get("sent"))

idle = []
for i in range(50):
    try:
        idle.append(RawConn(r.addr, timeout=5))
    except OSError as e:
        diag("idle connection %d: %s" % (i, e))
is_(len(idle), 50, "50 idle connections opened")
good, why = prompt(r, n=20)
ok(good, "others answered promptly with 50 idle connections open", why)
half = [RawConn(r.addr, timeout=5) for i in range(10)]
for h in half:
    h.send(b"PUT /kvs/half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"va")
good, why = prompt(r, n=10)
ok(good, "others answered promptly with 10 half-sent bodies pending", why)
for cc in idle + half:
    cc.close()


# --- garbage on the socket ------------------------------------------------------------
def answered_or_closed(addr, data, name):
    try:
        with RawConn(addr, timeout=5) as gc:
            gc.send(data)
            try:
                resp = gc.read_response(5)
                what = "closed" if resp is None else "answered %d" % resp.status
                good = resp is None or 400 <= resp.status < 600
            except socket.timeout:
                good, what = False, "neither answered nor closed within 5 s"
            except (ValueError, IndexError) as e:
                good, what = True, "answered with something unparsable (%s)" % e
    except OSError as e:
        good, what = True, "connection error %s" % e
    ok(good, "%s: answered with an error or closed" % name, what)
    ok(request(addr, "GET", "/health").status == 200, "%s: still serving" % name)


garbage = [
    ("binary garbage", b"\x00\xff GARBAGE\r\n\r\n"),
    ("bare newlines", b"\r\n\r\n\r\n\r\nXX\r\n\r\n"),
    ("bad Content-Length", b"PUT /kvs/g HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
    ("negative Content-Length", b"PUT /kvs/g HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("bad chunk size", b"PUT /kvs/g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n"),
    ("huge header", b"GET /kvs/g HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n"),
    ("huge request line", b"GET /kvs/" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("HTTP/9.9", b"GET /health HTTP/9.9\r\n\r\n"),
]
for name, data in garbage:
    answered_or_closed(big.addr, data, name)

# odd but well-formed requests get a proper answer
for name, path in [("bad percent escape %zz", "/kvs/a%zz"), ("truncated escape", "/kvs/a%4"),
                   ("lone percent", "/kvs/%"), ("query string", "/kvs/q?x=1")]:
    try:
        resp = request(big, "GET", path)
        good = 200 <= resp.status < 500 and resp.json is not None
        what = resp.describe()
    except OSError as e:
        good, what = False, str(e)
    ok(good, "GET %s (%s): a JSON answer, no crash" % (path, name), what)

resp = request(big, "PUT", "/kvs/utf", raw_body=b'{"value": "\xff\xfe"}')
ok(resp.status in (201, 400), "PUT with invalid UTF-8 in a string: 201 or 400", resp.describe())

deep = b'{"value": ' + b"[" * 100000 + b"]" * 100000 + b"}"
resp = request(big, "PUT", "/kvs/deep", raw_body=deep, timeout=10)
ok(resp.status in (201, 400), "PUT with a value nested 100000 deep: 201 or 400, no crash",
   resp.describe())
ok(request(big, "GET", "/health").status == 200, "still serving after deep nesting")

many = {"127.0.0.17:8090/%d" % i: 0 for i in range(1, 5001)}
resp = request(big, "PUT", "/kvs/many", body={"value": 1, "causal-metadata": many}, timeout=10)
ok(resp.status in (200, 201, 400, 503), "causal-metadata with 5000 entries: an answer",
   resp.describe())
resp = request(big, "PUT", "/kvs/after-many", body={"value": 1})
is_(resp.status, 201, "a plain PUT still works after the 5000-entry metadata")

# pipelined requests come back in order
with RawConn(big.addr, timeout=5) as pc:
    pc.send(b"PUT /kvs/pipe HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"value\": 1}"
            b"GET /kvs/pipe HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /view HTTP/1.1\r\nHost: x\r\n\r\n")
    got = []
    for i in range(3):
        try:
            rr = pc.read_response(5)
        except socket.timeout:
            rr = None
        got.append(rr.status if rr else None)
    is_(got, [201, 200, 200], "three pipelined requests answered in order")

# truncated body then close: the worker does not get stuck
with RawConn(big.addr, timeout=5) as tc:
    tc.send(b"PUT /kvs/trunc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"value\": ")
ok(request(big, "GET", "/health").status == 200, "still serving after a truncated body")

# --- store full: 507, reads keep working, deletes make room ---------------------------------
full = Replica("127.0.0.18", workers=2, extra_args=["--memory", "8M"]).wait_ready(10)
procs_full = sorted(full.children())
FULL = b'{"error": "Store is full"}'
big_value = "f" * 100000
first_full, statuses = None, {}
with Session(full.addr) as fs:
    for i in range(400):          # 8 MiB / 100 kB: full long before 400
        resp = fs.request("PUT", "/kvs/full%d" % i, body={"value": big_value})
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        if resp.status not in (200, 201):
            first_full = resp
            break
expect(first_full, 507, FULL, "writing 100 kB values into an 8 MiB store ends in 507")
diag("statuses before 507: %r" % statuses)
g = request(full, "GET", "/kvs/full0")
ok(g.status == 200 and g.json.get("value") == big_value, "reads still work when full",
   g.describe()[:200])
expect(request(full, "PUT", "/kvs/full-new", body={"value": big_value}), 507, FULL,
       "another big PUT -> 507")
ok(request(full, "PUT", "/kvs/full-small", body={"value": 1}).status in (201, 507),
   "a small PUT when full: 201 or 507")
for i in range(10):
    request(full, "DELETE", "/kvs/full%d" % i)
ok(wait_until(lambda: request(full, "PUT", "/kvs/full-again",
                              body={"value": big_value}).status == 201, 5),
   "after deleting 10 big values a big PUT succeeds again (within 5 s)")
procs_big_list = [(small, procs_small), (big, procs_big), (full, procs_full)]

# --- nothing crashed -------------------------------------------------------------------
for rep, before in procs_big_list:
    ok(wait_until(lambda: request(rep, "GET", "/health").status == 200, 3),
       "%s still serving at the end" % rep.addr)
    is_(sorted(rep.children()), before, "%s: same worker and replicator pids as at start"
        % rep.addr)
    is_(rep.stop(), 0, "%s: SIGTERM -> exit 0" % rep.addr)
done()
