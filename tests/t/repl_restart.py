#!/usr/bin/env python3
"""Crash and restart of one replica (api.md "Semantics", "Timing contract"):
kill -9 of its process group, writes and deletes elsewhere, eviction within
5 s, restart with the full VIEW, full views and every key served within 5 s,
deletes stay deleted, metadata from the old incarnation keeps being served.

Addresses: 127.0.0.56 (A), 127.0.0.57 (B), 127.0.0.58 (C), port 8090;
client 127.0.0.100.
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

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
ok(wait_until(lambda: not C.group(), 3), "C's process group is gone after kill -9", repr(C.group()))

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
