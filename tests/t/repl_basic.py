#!/usr/bin/env python3
"""Replication basics on a 3-replica cluster (api.md "Semantics", "Timing
contract"): startup views, 1 s propagation of create/replace/delete, JSON
values byte-exact, read-your-writes and monotonic reads across replicas.

Addresses: 127.0.0.50, 127.0.0.51, 127.0.0.52 (port 8090); client 127.0.0.100.
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.50", "127.0.0.51", "127.0.0.52"]
VIEW = ["%s:8090" % ip for ip in IPS]
FULL = tuple(sorted(VIEW))

# --- startup: one after the other, each with the full VIEW ---------------
reps = []
t_last = None
for ip in IPS:
    t_last = time.monotonic()
    r = Replica(ip, view=VIEW, workers=2)
    reps.append(r)
    r.wait_ready(10)          # listening (GET /health)
A, B, C = reps
ok(wait_all_ready(reps, 3), "every replica reports /ready", log_excerpt(reps))
# the contract is about time: "3 s after the last one started"
time.sleep(max(0.0, t_last + 3.0 - time.monotonic()))
for r in reps:
    is_(view_of(r), FULL, "3 s after the last start, %s reports the full view" % r.addr)


def propagate(key, want_status, want_text, targets, limit=5.0):
    """Poll GET key (no metadata) on targets every 10 ms until it shows
    (want_status, want_text); returns {addr: seconds or None}."""
    t0 = time.monotonic()
    res = {}
    pending = list(targets)
    while pending and time.monotonic() - t0 < limit:
        for r in list(pending):
            g = try_kv(r, "GET", key, timeout=2)
            if g is not None and g.status == want_status and \
                    (want_text is None or value_text(g) == want_text):
                res[r.addr] = time.monotonic() - t0
                pending.remove(r)
        time.sleep(0.01)
    for r in pending:
        res[r.addr] = None
    return res


def check_propagation(what, key, want_status, want_text, meta):
    times = propagate(key, want_status, want_text, [B, C])
    diag("%s: visible at %s" % (what, ", ".join(
        "%s after %s" % (a, "%.3f s" % t if t is not None else "NEVER (5 s)")
        for a, t in sorted(times.items()))))
    for r in (B, C):
        t = times[r.addr]
        ok(t is not None and t <= 1.0,
           "%s at A is visible at %s within 1 s" % (what, r.addr),
           "took %s; GET now: %r\n%s" % (t, try_kv(r, "GET", key, meta), log_excerpt(reps)))
        g = try_kv(r, "GET", key, meta)
        if want_status == 200:
            ok(g is not None and g.status == 200 and value_text(g) == want_text,
               "%s: GET with the write's metadata at %s -> 200 and the value" % (what, r.addr),
               "got %r" % g)
            ok(g is not None and covers(meta_of(g), meta),
               "%s: metadata returned by %s covers the metadata sent" % (what, r.addr),
               "sent %r got %r" % (meta, g))
        else:
            expect(g, 404, b'{"error": "Key does not exist"}',
                   "%s: GET with the delete's metadata at %s -> 404" % (what, r.addr))


# --- create, replace, delete -----------------------------------------------
p = kv(A, "PUT", "color", value="red", put=True)
is_(p.status, 201, "PUT color=red at A -> 201")
m = meta_of(p)
check_propagation("create color=red", "color", 200, b'"red"', m)

p = kv(A, "PUT", "color", meta=m, value="blue", put=True)
is_(p.status, 200, "PUT color=blue at A -> 200 replaced")
m = meta_of(p)
check_propagation("replace color=blue", "color", 200, b'"blue"', m)

d = kv(A, "DELETE", "color", meta=m)
is_(d.status, 200, "DELETE color at A -> 200")
m = meta_of(d) or m
check_propagation("delete color", "color", 404, None, m)

# --- JSON types, byte-exact (values sent compact, as raw bodies) -------------
VALUES = [
    ("string", '"h\\u00e9llo \\"w\\u00f6rld\\" \\n tab\\t /"'),
    ("utf8-string", '"caf\u00e9 \u2603 \U0001F600"'),
    ("empty-string", '""'),
    ("int", '42'),
    ("bigint", '123456789012345678901234567890'),
    ("negative-float", '-1.50e+3'),
    ("decimal", '0.1000'),
    ("true", 'true'),
    ("false", 'false'),
    ("object", '{"b":[1,2,{"c":null}],"a":"x","b":3}'),
    ("array", '[1,"two",3.0,false,[],{}]'),
    ("empty-object", '{}'),
]
for name, text in VALUES:
    r = request(A, "PUT", "/kvs/type-" + name,
                raw_body='{"value":%s,"causal-metadata":%s}' % (text, json.dumps(m)))
    if not is_(r.status, 201, "PUT %s value at A -> 201" % name):
        diag(r.describe())
        continue
    m = meta_of(r)
    want = text.encode("utf-8")
    ga = kv(A, "GET", "type-" + name, meta=m)
    is_(value_text(ga), want, "%s value reads back byte-exact at A" % name)
    for rr in (B, C):
        got = wait_until(lambda: value_text(try_kv(rr, "GET", "type-" + name, meta=m)), 5)
        is_(got, want, "%s value replicates byte-exact to %s" % (name, rr.addr))

# --- read-your-writes and monotonic reads, one client alternating replicas ---
meta = m
last = {}
bad_status = []
ryw_bad = []
meta_bad = []
retries = 0
t0 = time.monotonic()
for i in range(50):
    target = reps[i % 3]
    key = "ryw-%d" % ((i // 2) % 3)
    put = (i % 2 == 0)
    for attempt in range(40):              # a 503 is retried, bounded
        r = kv(target, "PUT" if put else "GET", key, meta=meta,
               value="v%d" % i, put=put)
        if r.status != 503:
            break
        if r.raw != ERR503:
            bad_status.append((i, target.addr, r.status, r.raw))
        retries += 1
        time.sleep(0.05)
    if r.status not in (200, 201):
        bad_status.append((i, target.addr, r.status, r.raw))
        continue
    nm = meta_of(r)
    if not covers(nm, meta):
        meta_bad.append((i, target.addr, meta, nm))
    meta = nm
    if put:
        last[key] = "v%d" % i
    elif r.json.get("value") != last.get(key):
        ryw_bad.append((i, target.addr, key, last.get(key), r.json.get("value")))
diag("50 alternating operations in %.2f s, %d retries after 503"
     % (time.monotonic() - t0, retries))
ok(not bad_status, "every alternating operation got 200/201 (503 retried)",
   "\n".join(map(repr, bad_status[:10])))
ok(not ryw_bad, "read-your-writes / monotonic reads across replicas",
   "\n".join("op %d at %s key %s: wrote %r, read %r" % x for x in ryw_bad[:10]))
ok(not meta_bad, "returned metadata always covers the metadata sent",
   "\n".join(map(repr, meta_bad[:5])))


def shipped(r):
    """r's kvsd_records_shipped_total.  A failed /metrics fetch (or a
    missing counter) is a failure, never a None equal to another None."""
    v = metrics(r).get("kvsd_records_shipped_total")
    if v is None:
        raise RuntimeError("GET /metrics of %s failed or lacks kvsd_records_shipped_total" % r.addr)
    return v


# --- no relays while every origin is reachable --------------------------------
# B and C relay A's writes only if the other still lacks them when it
# reports its clock 50 ms (RELAY_DELAY_MS) or more after they arrived:
# never, while A delivers to both within milliseconds.
shipped0 = {r.addr: shipped(r) for r in (B, C)}
keys = ["relay-%d" % i for i in range(300)]
t0 = time.monotonic()
for k in keys:
    kv(A, "PUT", k, value="x" * 200, put=True)
want = {k: (200, b'"%s"' % (b"x" * 200)) for k in keys}
ok(wait_until(lambda: all(store_map(r, keys) == want for r in (B, C)), 10, 0.1),
   "300 writes at A reach B and C", log_excerpt(reps))
diag("300 PUTs at A written and replicated in %.2f s" % (time.monotonic() - t0))
# Observe past a 300 ms delay plus two heartbeats: a relay would show by then.
t1 = time.monotonic()
now = {}
while time.monotonic() - t1 < 0.3 + 2 * 0.2 + 0.2:
    now = {r.addr: shipped(r) for r in (B, C)}
    if now != shipped0:
        break
    time.sleep(0.05)
for r in (B, C):
    is_(now.get(r.addr), shipped0[r.addr],
        "%s relayed none of A's writes (A reached every replica itself)" % r.addr)

for r in reps:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
