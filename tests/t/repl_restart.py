#!/usr/bin/env python3
"""Crash and restart of one replica (api.md "Semantics", "Timing contract"):
kill -9 of its process group, writes and deletes elsewhere, eviction within
5 s, restart with the full VIEW, full views and every key served within 5 s,
deletes stay deleted, metadata from the old incarnation keeps being served.

Addresses: 127.0.0.56 (A), 127.0.0.57 (B), 127.0.0.58 (C), port 8090;
client 127.0.0.100.
"""
# ---- helpers shared by the repl_*.py tests (copied into each file so every
# ---- file stays standalone)
import json
import signal
import threading
import time

from kvstest import (Replica, Cluster, Firewall, request, ok, is_, diag, done,
                     expect, wait_until)

ERR503 = b'{"error": "Causal dependencies not satisfied; try again later"}'
NET_ERRORS = (OSError, __import__("http.client").client.HTTPException)


def kv(addr, method, key, meta=None, value=None, put=False, timeout=3):
    """One kvs request carrying `meta` (and `value` for PUT)."""
    body = {"causal-metadata": meta}
    if put:
        body["value"] = value
    return request(addr, method, "/kvs/" + key, body=body, timeout=timeout)


def try_kv(*a, **kw):
    """kv() that returns None instead of raising on network errors."""
    try:
        return kv(*a, **kw)
    except NET_ERRORS:
        return None


def kv_retry(*a, **kw):
    """kv() retried every 50 ms for at most 3 s (at most 60 tries) while the
    answer is 503 or a network error; returns the last response (or None)."""
    r = None
    deadline = time.monotonic() + 3.0
    kw.setdefault("timeout", 1)
    for _ in range(60):
        r = try_kv(*a, **kw)
        if r is not None and r.status != 503:
            return r
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return r


def meta_of(r):
    if r is not None and isinstance(r.json, dict):
        return r.json.get("causal-metadata")
    return None


def covers(a, b):
    """Clock a >= clock b component-wise (missing entries are 0)."""
    a = a or {}
    b = b or {}
    return all(a.get(k, 0) >= v for k, v in b.items())


def value_text(r):
    """The raw JSON text of "value" in a 200 GET body (byte-exact)."""
    pre = b'{"result": "found", "value": '
    post = b', "causal-metadata": '
    if r is None or r.status != 200 or not r.raw.startswith(pre):
        return None
    end = r.raw.rfind(post)
    return r.raw[len(pre):end] if end > 0 else None


def view_of(r):
    try:
        g = request(r, "GET", "/view", timeout=2)
    except NET_ERRORS:
        return None
    if g.status != 200 or not isinstance(g.json, dict):
        return None
    return tuple(sorted(g.json.get("view") or []))


def is_ready(r):
    try:
        return request(r, "GET", "/ready", timeout=2).status == 200
    except NET_ERRORS:
        return False


def wait_all_ready(reps, timeout=10):
    return wait_until(lambda: all(is_ready(r) for r in reps), timeout)


def wait_views(reps, want, timeout, interval=0.05):
    """Poll until every replica in reps reports exactly the set `want`.
    Returns the elapsed time, or None on timeout."""
    want = tuple(sorted(x.addr if isinstance(x, Replica) else x for x in want))
    t0 = time.monotonic()
    if wait_until(lambda: all(view_of(r) == want for r in reps), timeout, interval):
        return time.monotonic() - t0
    return None


def views_diag(reps):
    return "\n".join("%s view=%s" % (r.addr, view_of(r)) for r in reps)


def metrics(r):
    try:
        m = request(r, "GET", "/metrics", timeout=2)
    except NET_ERRORS:
        return {}
    out = {}
    for line in m.raw.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


def store_map(r, keys):
    """{key: (status, raw value text)} read without metadata; None on a
    network error."""
    out = {}
    for k in keys:
        g = try_kv(r, "GET", k, timeout=2)
        if g is None:
            return None
        out[k] = (g.status, value_text(g))
    return out


def wait_converged(reps, keys, timeout):
    """Poll until every replica returns the same map for keys (and the
    same kvsd_keys).  Returns (elapsed or None, last maps)."""
    t0 = time.monotonic()
    last = {}

    def same():
        maps = [store_map(r, keys) for r in reps]
        last["maps"] = maps
        if any(m is None for m in maps):
            return False
        if any(s not in (200, 404) for m in maps for s, _ in m.values()):
            return False
        if not all(m == maps[0] for m in maps):
            return False
        nk = [metrics(r).get("kvsd_keys") for r in reps]
        last["kvsd_keys"] = nk
        return len(set(nk)) == 1 and nk[0] == sum(1 for s, _ in maps[0].values() if s == 200)

    if wait_until(same, timeout, 0.2):
        return time.monotonic() - t0, last
    return None, last


def map_diff(reps, maps, limit=10):
    lines = []
    if not maps or any(m is None for m in maps):
        return "some replica did not answer"
    for k in sorted(maps[0]):
        vals = [m.get(k) for m in maps]
        if any(v != vals[0] for v in vals):
            lines.append("%s: %s" % (k, ", ".join("%s=%s" % (r.ip, v) for r, v in zip(reps, vals))))
            if len(lines) >= limit:
                break
    return "\n".join(lines)


def log_excerpt(reps, n=15):
    return "\n".join("--- %s log tail:\n%s" % (r.addr, r.log_tail(n)) for r in reps)
# ---- end of shared helpers

IPS = ["127.0.0.56", "127.0.0.57", "127.0.0.58"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
NOT_FOUND = b'{"error": "Key does not exist"}'


def has(r, key, meta, value):
    g = try_kv(r, "GET", key, meta, timeout=1)
    return g is not None and g.status == 200 and g.json.get("value") == value


# writes at C (old incarnation) that DO replicate, and writes at A
meta = None
expected = {}
for i in range(5):
    p = kv(C, "PUT", "c-old-%d" % i, meta, value="c%d" % i, put=True)
    is_(p.status, 201, "PUT c-old-%d at C -> 201" % i)
    meta = meta_of(p)
    expected["c-old-%d" % i] = "c%d" % i
for i in range(5):
    # A may not have applied C's writes yet: 503 is retried
    p = kv_retry(A, "PUT", "a-%d" % i, meta, value={"a": i}, put=True)
    ok(p is not None and p.status == 201, "PUT a-%d at A -> 201" % i, repr(p))
    meta = meta_of(p) or meta
    expected["a-%d" % i] = {"a": i}
M_OLD = meta
old_c_entries = [k for k in M_OLD if k.startswith(C.addr + "/")]
is_(len(old_c_entries), 1, "metadata names one incarnation of C")
ok(wait_until(lambda: all(has(r, k, M_OLD, v) for r in (A, B) for k, v in expected.items()), 5),
   "C's and A's writes replicated to A and B before the crash", log_excerpt(cl))

# kill -9 C's whole process group
C.kill(signal.SIGKILL)
t_kill = time.monotonic()
ok(not C.group(), "C's process group is gone after kill -9", repr(C.group()))

# writes and deletes elsewhere while C is down
for i in range(10):
    r = (A, B)[i % 2]
    p = kv_retry(r, "PUT", "n-%d" % i, meta, value=[i, "n"], put=True)
    ok(p.status in (200, 201), "PUT n-%d at %s while C is down -> 201" % (i, r.ip), repr(p))
    meta = meta_of(p) or meta
    expected["n-%d" % i] = [i, "n"]
p = kv_retry(B, "PUT", "a-0", meta, value="replaced", put=True)
ok(p is not None and p.status == 200, "replace a-0 at B -> 200", repr(p))
meta = meta_of(p) or meta
expected["a-0"] = "replaced"
for key, r in (("a-1", A), ("c-old-2", B), ("n-3", A)):
    d = kv_retry(r, "DELETE", key, meta)
    ok(d is not None and d.status == 200, "DELETE %s at %s -> 200" % (key, r.ip), repr(d))
    meta = meta_of(d) or meta
    expected[key] = None
M_LATEST = meta

dt = wait_views([A, B], [A, B], max(0.1, t_kill + 5.0 - time.monotonic()))
diag("views of A and B dropped C %.3f s after the kill" %
     (time.monotonic() - t_kill) if dt is not None else "views never dropped C")
ok(dt is not None, "every remaining view drops the killed replica within 5 s", views_diag(cl))

# restart C with the full VIEW
C.start()
t_restart = time.monotonic()
dt = wait_views(cl, VIEW, 5)
diag("views full %.3f s after the restart" % (time.monotonic() - t_restart)
     if dt is not None else "views not full 5 s after the restart")
ok(dt is not None, "within 5 s of the restart every view is full again",
   views_diag(cl) + "\n" + log_excerpt(cl))


def c_serves_all():
    for k, v in expected.items():
        g = try_kv(C, "GET", k, M_LATEST, timeout=1)
        if g is None:
            return False
        if v is None and g.status != 404:
            return False
        if v is not None and not (g.status == 200 and g.json.get("value") == v):
            return False
    return True


got = wait_until(c_serves_all, max(0.1, t_restart + 5.0 - time.monotonic()))
diag("restarted C served every key %.3f s after the restart" % (time.monotonic() - t_restart))
ok(got, "within 5 s of the restart C serves every key with the latest metadata",
   "\n".join("%s: %r" % (k, try_kv(C, "GET", k, M_LATEST)) for k in sorted(expected)) +
   "\n" + log_excerpt(cl))
for k, v in sorted(expected.items()):
    g = try_kv(C, "GET", k, M_LATEST)
    if v is None:
        expect(g, 404, NOT_FOUND, "restarted C: deleted key %s stays deleted (404)" % k)
    else:
        ok(g is not None and g.status == 200 and g.json.get("value") == v and
           covers(meta_of(g), M_LATEST),
           "restarted C: GET %s with the latest metadata -> 200 %r" % (k, v), repr(g))

# a client still holding metadata from C's OLD incarnation (writes that did
# replicate) is served everywhere -- no permanent 503
for r in (A, B, C):
    got = wait_until(lambda: has(r, "c-old-0", M_OLD, "c0"), 5)
    ok(got, "GET c-old-0 with metadata from C's old incarnation at %s -> 200" % r.ip,
       "%r\n%s" % (try_kv(r, "GET", "c-old-0", M_OLD), log_excerpt([r])))
    p = try_kv(r, "PUT", "old-meta-put-%s" % r.ip, M_OLD, value=1, put=True)
    ok(p is not None and p.status == 201,
       "PUT with metadata from C's old incarnation at %s -> 201" % r.ip, repr(p))

# the new incarnation writes under a new clock entry, and it replicates
p = kv(C, "PUT", "c-new", M_LATEST, value="fresh", put=True)
is_(p.status, 201, "PUT c-new at the restarted C -> 201")
m = meta_of(p) or {}
new_c = [k for k in m if k.startswith(C.addr + "/") and k not in old_c_entries]
is_(len(new_c), 1, "the restarted C writes under one new incarnation entry")
ok(m.get(new_c[0] if new_c else "", 0) >= 1 and
   all(m[k] == M_OLD[k] for k in old_c_entries),
   "the old incarnation's entry is unchanged, the new one counts", repr(m))
ok(covers(m, M_LATEST), "its metadata covers the latest metadata sent", repr(m))
for r in (A, B):
    ok(wait_until(lambda: has(r, "c-new", m, "fresh"), 5),
       "the new incarnation's write reaches %s" % r.ip, log_excerpt(cl))

for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
