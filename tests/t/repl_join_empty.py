#!/usr/bin/env python3
"""PUT /view of a live, empty replica (api.md "View operations": a replica
told about one it never knew starts replicating to it at once, including
everything it missed).  A and B hold data (puts, replaces, deletes); C was
started with a view of only itself.  After PUT /view C at A and B, C must
serve every key as A and B do, deleted keys absent; once C is told about A
and B too, its own writes reach them.
Addresses: 127.0.0.168 (A), 127.0.0.169 (B), 127.0.0.170 (C); client
127.0.0.100."""

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.168", "127.0.0.169"]
VIEW = ["%s:8090" % ip for ip in IPS]
cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B = cl.replicas
C = Replica("127.0.0.170", view=["127.0.0.170:8090"], workers=2).wait_ready(10)
ok(wait_all_ready([A, B, C], 5), "all replicas /ready", log_excerpt([A, B, C]))
ok(wait_views(cl, VIEW, 5) is not None, "A and B see each other", views_diag(cl))
is_(view_of(C), (C.addr,), "C's view is only itself")

meta = None
keys = ["k-%d" % i for i in range(40)]
want = {}
for i, k in enumerate(keys):
    p = kv_retry((A, B)[i % 2], "PUT", k, meta, value={"i": i}, put=True)
    ok(p is not None and p.status == 201, "PUT %s -> 201" % k, repr(p))
    meta = meta_of(p) or meta
    want[k] = (200, b'{"i":%d}' % i)
for i in range(0, 40, 4):           # replace some
    p = kv_retry(B, "PUT", keys[i], meta, value="r%d" % i, put=True)
    ok(p is not None and p.status == 200, "replace %s at B -> 200" % keys[i], repr(p))
    meta = meta_of(p) or meta
    want[keys[i]] = (200, b'"r%d"' % i)
for i in range(1, 40, 5):           # delete some
    d = kv_retry(A, "DELETE", keys[i], meta)
    ok(d is not None and d.status == 200, "delete %s at A -> 200" % keys[i], repr(d))
    meta = meta_of(d) or meta
    want[keys[i]] = (404, None)
ok(wait_until(lambda: all(store_map(r, keys) == want for r in cl), 5), "A and B agree",
   map_diff(cl, [store_map(r, keys) for r in cl]))
is_(store_map(C, keys), {k: (404, None) for k in keys}, "C is empty")

for r in (A, B):
    expect(request(r, "PUT", "/view", body={"socket-address": C.addr}), 201,
           b'{"result": "added"}', "PUT /view C at %s -> 201" % r.ip)
t0 = time.monotonic()
ok(wait_until(lambda: store_map(C, keys) == want, 10, 0.1),
   "C receives everything it missed (puts, replaces, deletes)",
   map_diff([A, C], [store_map(A, keys), store_map(C, keys)]) + "\n" + log_excerpt([A, B, C]))
diag("C had everything %.2f s after the PUT /view" % (time.monotonic() - t0))
g = try_kv(C, "GET", keys[0], meta)
ok(g is not None and g.status == 200, "C satisfies the metadata of the last write at A/B", repr(g))

# C's view is still only itself (a view is per replica, api.md); once the
# operator tells C about A and B too, C's own writes reach them
is_(view_of(C), (C.addr,), "C's view is still only itself")
for r in (A, B):
    expect(request(C, "PUT", "/view", body={"socket-address": r.addr}), 201,
           b'{"result": "added"}', "PUT /view %s at C -> 201" % r.ip)
ok(wait_views([A, B, C], VIEW + [C.addr], 5) is not None, "all three views full", views_diag([A, B, C]))
p = kv_retry(C, "PUT", "from-c", meta, value="c", put=True)
ok(p is not None and p.status == 201, "PUT from-c at C -> 201", repr(p))
ok(wait_until(lambda: all((lambda g: g is not None and g.status == 200)(try_kv(r, "GET", "from-c", meta_of(p)))
                          for r in cl), 5),
   "C's write reaches A and B", log_excerpt([A, B, C]))
for r in (A, B, C):
    ok(r.running(), "%s still running" % r.addr, r.log_tail())
done()
