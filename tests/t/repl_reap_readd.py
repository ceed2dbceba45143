#!/usr/bin/env python3
"""A replica removed with DELETE /view while the others delete keys, then
added back with PUT /view, and the tombstones reaped (every 2 s in the
replicator): the deleted keys must not come back on any replica, neither
those written at the removed replica nor those written elsewhere.  While
it is out, the others keep the tombstones (doc/design.md).
Addresses: 127.0.0.162 (A), 127.0.0.163 (B), 127.0.0.164 (C); client
127.0.0.100.  --readmit-delay is long so that C comes back only through
the PUT /view."""

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.162", "127.0.0.163", "127.0.0.164"]
VIEW = ["%s:8090" % ip for ip in IPS]
cl = Cluster(IPS, workers=2, extra_args=["--readmit-delay", "600000"])
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))

# keys written at C (C's own writes) and at A, plus keys that stay
meta = None
keys = ["c-%d" % i for i in range(5)] + ["a-%d" % i for i in range(5)]
stay = ["stay-%d" % i for i in range(3)]
for k in keys + stay:
    p = kv_retry(C if k.startswith("c-") else A, "PUT", k, meta, value="v-" + k, put=True)
    ok(p is not None and p.status == 201, "PUT %s -> 201" % k, repr(p))
    meta = meta_of(p) or meta
want = {k: (200, b'"v-%s"' % k.encode()) for k in keys + stay}
ok(wait_until(lambda: all(store_map(r, keys + stay) == want for r in cl), 5),
   "every replica has all %d keys" % len(want), log_excerpt(cl))

def tombstones(r):
    return metrics(r).get("kvsd_tombstones")


# remove C from A's and B's views
for r in (A, B):
    expect(request(r, "DELETE", "/view", body={"socket-address": C.addr}), 200,
           b'{"result": "deleted"}', "DELETE /view C at %s -> 200" % r.ip)
ok(wait_views((A, B), VIEW[:2], 3) is not None, "A and B no longer list C", views_diag(cl))

# delete the keys at A while C is out; B gets the deletes
for k in keys:
    d = kv_retry(A, "DELETE", k, meta)
    ok(d is not None and d.status == 200, "DELETE %s at A -> 200" % k, repr(d))
    meta = meta_of(d) or meta
gone = {k: (404, None) for k in keys}
ok(wait_until(lambda: store_map(B, keys) == gone, 5), "B has every delete", log_excerpt(cl))


# doc/design.md "Tombstone reaping": a replica removed from the view still
# holds back reaping (it may come back with concurrent writes), so A and B
# keep the tombstones through two reaping rounds (2 s each)
held = []
t0 = time.monotonic()
while time.monotonic() - t0 < 4.5:
    held.append((tombstones(A), tombstones(B)))
    time.sleep(0.25)
is_(set(held), {(len(keys), len(keys))}, "A and B keep all %d tombstones while C is out" % len(keys))
ok(store_map(C, keys) == {k: want[k] for k in keys}, "C, out of the view, still has the deleted keys")

# add C back
for r in (A, B):
    expect(request(r, "PUT", "/view", body={"socket-address": C.addr}), 201,
           b'{"result": "added"}', "PUT /view C at %s -> 201" % r.ip)
ok(wait_views(cl, VIEW, 5) is not None, "all views full again", views_diag(cl))

final = dict(gone, **{k: want[k] for k in stay})
ok(wait_until(lambda: all(store_map(r, keys + stay) == final for r in cl), 10, 0.1),
   "every replica: the deleted keys are gone, the others stay",
   "\n".join("%s: %s" % (r.addr, store_map(r, keys + stay)) for r in cl) + "\n" + log_excerpt(cl))
ok(wait_until(lambda: all(tombstones(r) == 0 for r in cl), 10, 0.2),
   "once C has the deletes, every replica reaps the tombstones",
   "tombstones: %s" % [tombstones(r) for r in cl])
# and the keys stay gone: watch past two more reaping rounds and heartbeats
resurrected = []
t0 = time.monotonic()
while time.monotonic() - t0 < 5 and not resurrected:
    for r in cl:
        m = store_map(r, keys)
        if m is not None and m != gone:
            resurrected.append("%s after %.1f s: %s" % (r.addr, time.monotonic() - t0, m))
    time.sleep(0.2)
ok(not resurrected, "no deleted key came back on any replica within 5 s", "\n".join(resurrected))
# metadata from before the removal is still satisfied everywhere
for r in cl:
    g = try_kv(r, "GET", "stay-0", meta)
    ok(g is not None and g.status == 200, "%s serves stay-0 with the final metadata" % r.addr, repr(g))
for r in cl:
    ok(r.running(), "%s still running" % r.addr, r.log_tail())
done()
