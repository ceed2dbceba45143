#!/usr/bin/env python3
"""Hostile peers (issue 12, items 4 and 5): batches on /internal/replicate
that a well-behaved peer never sends -- a record declaring 3,000
dependencies on its own origin, duplicate or unknown dependency ids, key
and value lengths past the end, huge counts, a truncated body, values that
are not JSON -- each get 400 {"error": "Malformed batch"} and change
nothing: /internal/check stays ok, the clock (/internal/ping), the key
gauges and the keys are as before, and replication between the replicas
still works afterwards.  Every hostile record carries the next sequence
number of its origin, so without validation it would be applied.

Also: a replica listening on a loopback address does not log the warning
about an exposed /internal/ (the warning itself, for a non-loopback
address, is unit-tested in test_config.c: tests may not listen outside
127.0.0.0/8).

Addresses: 127.0.0.140 (A), 127.0.0.141 (B), port 8090; 127.0.0.149 is
only named as the sender and origin of the batches (nothing listens);
client 127.0.0.100.
"""
import struct

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.140", "127.0.0.141"]
VIEW = ["%s:8090" % ip for ip in IPS]
MALFORMED = b'{"error": "Malformed batch"}'
ORIGIN = b"127.0.0.149:8090"
STAMP = 7
OCTETS = {"Content-Type": "application/octet-stream"}
EXPOSED = "without --cluster-key"   # a fragment of the startup warning


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


def record(origin=0, seq=2, lamport=2, flags=0, key=b"evil", value=b'"x"', deps=(),
           klen=None, vlen=None, ndeps=None):
    """One KVB1 record (layout in src/wire.c)."""
    return (p32(origin) + p64(seq) + p64(lamport) + p8(flags) +
            p8(len(key) if klen is None else klen) +
            p32(len(value) if vlen is None else vlen) +
            p16(len(deps) if ndeps is None else ndeps) +
            b"".join(p32(d) + p64(n) for d, n in deps) + key + value)


def batch(recs=None, incs=None, counts=(), ninc=None, nrec=None, ncount=None, tail=b""):
    incs = [(ORIGIN, STAMP)] if incs is None else incs
    recs = [record()] if recs is None else recs
    return (b"KVB1" + inc(ORIGIN, STAMP) + p32(0) +
            p32(len(incs) if ninc is None else ninc) + b"".join(inc(a, s) for a, s in incs) +
            p32(len(recs) if nrec is None else nrec) + b"".join(recs) +
            p32(len(counts) if ncount is None else ncount) +
            b"".join(p32(i) + p64(n) + p32(f) + p64(fs) for i, n, f, fs in counts) + tail)


def post(rep, body):
    try:
        return request(rep, "POST", "/internal/replicate", raw_body=body, headers=OCTETS, timeout=10)
    except NET_ERRORS as e:
        diag("POST /internal/replicate: %r" % (e,))
        return None


def check_ok(rep):
    try:
        r = request(rep, "GET", "/internal/check", timeout=10)
    except NET_ERRORS:
        return False
    return r.status == 200 and r.json == {"check": "ok"}


KEYS = ["ctl", "evil", "a0", "b0"]


def state(rep):
    """What a hostile batch must not change: the applied clock (the KVC1
    answer to a ping), the key and tombstone gauges, and the keys."""
    m = metrics(rep)
    return (request(rep, "GET", "/internal/ping").raw,
            m.get("kvsd_keys"), m.get("kvsd_tombstones"), store_map(rep, KEYS))


cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B = cl.replicas
ok(wait_all_ready(cl, 5), "both replicas /ready", log_excerpt(cl))
for i, r in enumerate(cl):
    p = kv_retry(r, "PUT", "%s0" % "ab"[i], None, value=i, put=True)
    ok(p is not None and p.status == 201, "PUT %s0 at %s -> 201" % ("ab"[i], r.ip), repr(p))
ok(wait_converged(cl, ["a0", "b0"], 5)[0] is not None, "a0 and b0 on both replicas", log_excerpt(cl))

# --- a well-formed batch is applied: the hostile ones below differ from it
# in one field each --------------------------------------------------------
resp = post(A, batch(recs=[record(seq=1, lamport=1, key=b"ctl", value=b'"ok"')]))
ok(resp is not None and resp.status == 200 and resp.raw[:4] == b"KVC1",
   "a well-formed batch from 127.0.0.149 (seq 1) -> 200 and a clock", repr(resp))
g = try_kv(A, "GET", "ctl")
ok(g is not None and g.status == 200 and g.json.get("value") == "ok", "... and its write is applied",
   repr(g))
ok(check_ok(A), "/internal/check ok after the well-formed batch")
base = batch()  # seq 2 of the same origin: applicable as it stands

own3000 = [(0, 1)] * 3000
cases = [
    ("a record with 3,000 dependencies, all on its own origin", batch(recs=[record(deps=own3000)])),
    ("a record with 257 dependencies (CLOCK_MAX + 1)", batch(recs=[record(deps=[(0, 1)] * 257)])),
    ("two dependencies on the same id", batch(recs=[record(deps=[(0, 1), (0, 1)])])),
    ("the same incarnation twice in the table, a dependency on each",
     batch(incs=[(ORIGIN, STAMP), (ORIGIN, STAMP)], recs=[record(deps=[(0, 1), (1, 1)])])),
    ("a dependency id outside the incarnation table", batch(recs=[record(deps=[(1, 1)])])),
    ("a dependency id 2^32-1", batch(recs=[record(deps=[(0xFFFFFFFF, 1)])])),
    ("an origin outside the incarnation table", batch(recs=[record(origin=1)])),
    ("ndeps 3,000 with no dependencies present", batch(recs=[record(ndeps=3000)])),
    ("klen past the end", batch(recs=[record(klen=200)])),
    ("vlen past the end", batch(recs=[record(vlen=1 << 20)])),
    ("vlen 2^32-1", batch(recs=[record(vlen=0xFFFFFFFF)])),
    ("ninc 2^32-1", batch(ninc=0xFFFFFFFF)),
    ("ninc 257", batch(ninc=257)),
    ("nrec 2^32-1", batch(nrec=0xFFFFFFFF)),
    ("nrec 1000 with one record", batch(nrec=1000)),
    ("ncount 2^32-1", batch(ncount=0xFFFFFFFF)),
    ("two counts for the same incarnation", batch(counts=[(0, 1, 0, 0), (0, 1, 0, 0)])),
    ("a count with an undefined flag bit", batch(counts=[(0, 1, 0x80, 0)])),
    ("a record with an undefined flag bit", batch(recs=[record(flags=0x80)])),
    ("lamport 2^64-1", batch(recs=[record(lamport=(1 << 64) - 1)])),
    ("a trailing byte", base + b"\x00"),
    # item 5: values are spliced into GET answers, so they must be JSON
    ("a value that is not JSON", batch(recs=[record(value=b"not json")])),
    ("a value breaking out of the GET answer", batch(recs=[record(value=b'1, "result": "x"')])),
    ("an unterminated string value", batch(recs=[record(value=b'"abc')])),
    ("an unterminated object value", batch(recs=[record(value=b'{"a": 1')])),
    ("a value with a raw control byte", batch(recs=[record(value=b'"a\x01b"')])),
    ("a value that is invalid UTF-8", batch(recs=[record(value=b'"\xff"')])),
    ("a null value (null means no value)", batch(recs=[record(value=b"null")])),
    # a life of A's own address newer than A's would retire A everywhere
    ("a newer life of the receiver's own address, named by a count",
     batch(incs=[(ORIGIN, STAMP), (b"127.0.0.140:8090", (1 << 62) - 1)], counts=[(1, 1, 0, 0)])),
    ("a newer life of the receiver's own address as a dependency",
     batch(incs=[(ORIGIN, STAMP), (b"127.0.0.140:8090", (1 << 62) - 1)], recs=[record(deps=[(1, 1)])])),
]
cases += [("the well-formed seq-2 batch cut to %d of %d bytes" % (n, len(base)), base[:n])
          for n in range(1, len(base))]

before = {r.addr: state(r) for r in cl}
diag("clock before: %r" % before[A.addr][0])
wrong, changed = [], []
for name, body in cases:
    resp = post(A, body)
    if resp is None or resp.status != 400 or resp.raw != MALFORMED:
        wrong.append((name, resp.status if resp else None, resp.raw[:80] if resp else None))
    if not check_ok(A) or state(A) != before[A.addr]:
        changed.append(name)
        before[A.addr] = state(A)  # name each case that changes it, not only the first
ok(not wrong, "%d hostile batches -> 400 %s" % (len(cases), MALFORMED.decode()), repr(wrong[:8]))
ok(not changed, "none of them changes A: /internal/check ok, clock, gauges and keys as before",
   repr(changed[:8]))
ok(check_ok(A) and check_ok(B), "/internal/check ok on A and B after the hostile batches")
g = try_kv(A, "GET", "evil")
ok(g is not None and g.status == 404, "the hostile key was never written", repr(g))
ok(A.running() and all(pid for pid, _ in A.children()), "A still running", A.log_tail())

# --- the store still works: the well-formed seq-2 batch applies, and writes
# replicate both ways -------------------------------------------------------
resp = post(A, base)
ok(resp is not None and resp.status == 200, "the well-formed seq-2 batch -> 200 after all that",
   repr(resp))
g = try_kv(A, "GET", "evil")
ok(g is not None and g.status == 200 and g.json.get("value") == "x", "... and is applied", repr(g))
meta = None
for i, r in enumerate(cl):
    p = kv_retry(r, "PUT", "after%d" % i, meta, value=i, put=True)
    ok(p is not None and p.status == 201, "PUT after%d at %s -> 201" % (i, r.ip), repr(p))
    meta = meta_of(p) or meta
AFTER = ["after0", "after1"]
ok(wait_until(lambda: all(store_map(r, AFTER) == {k: (200, str(i).encode()) for i, k in enumerate(AFTER)} for r in cl), 5),
   "writes at A and B still replicate both ways", log_excerpt(cl))
ok(check_ok(A) and check_ok(B), "/internal/check ok on A and B at the end")

# --- no exposure warning on a loopback address ---------------------------------
for r in cl:
    ok(EXPOSED not in r.log_text(), "%s (loopback, no cluster key): no warning about /internal/" % r.ip)
    ok("serving %s" % r.addr in r.log_text(), "%s: its startup log is there to read" % r.ip)

cl.stop()
done()
