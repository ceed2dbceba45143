#!/usr/bin/env python3
"""A split view is said, not silent (issue 14): B restarts with VIEW naming
only itself while A's view still has B.  A re-admits B and replicates to it,
but B's view lacks A, so B's writes never reach A.  B must log one warning
naming both addresses and count the batches in
kvsd_batches_from_outside_total; PUT /view at B then heals the split.

Addresses: 127.0.0.187 (A), 127.0.0.188 (B), port 8090; client 127.0.0.100.
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.187", "127.0.0.188"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=1)
cl.wait_ready(10)
A, B = cl.replicas
ok(wait_views(cl, VIEW, 5) is not None, "both views full at start", views_diag(cl))

B.kill(signal.SIGKILL)
ok(wait_until(lambda: not B.group(), 5), "B's group gone after kill -9")
B.view = [B.addr]
B.start()
B.wait_ready(10)
is_(list(view_of(B) or []), [B.addr], "restarted B's view names only itself")
# A re-admits B after --readmit-delay (3 s) of answers and ships to it
p = kv_retry(A, "PUT", "from-a", None, value="a", put=True)
ok(p is not None and p.status == 201, "PUT at A", repr(p))
ok(wait_until(lambda: (try_kv(B, "GET", "from-a", meta_of(p)) or p).status == 200, 10),
   "A replicates to B (A's view has B)", log_excerpt(cl))
ok(wait_until(lambda: metrics(B).get("kvsd_batches_from_outside_total", 0) >= 1, 5),
   "B counts batches from a peer outside its view", repr(metrics(B)))
warn = [l for l in B.log_text().splitlines() if "replicates to us but is not in our view" in l]
is_(len(warn), 1, "B warned once")
ok(warn and A.addr in warn[0] and B.addr in warn[0], "the warning names both addresses", repr(warn))
is_(list(view_of(B) or []), [B.addr], "B did not add A by itself (views change through PUT /view)")

# the operator heals it
r = request(B, "PUT", "/view", body={"socket-address": A.addr})
ok(r.status in (200, 201), "PUT /view A at B", repr(r.raw))
p = kv_retry(B, "PUT", "from-b", None, value="b", put=True)
ok(wait_until(lambda: (try_kv(A, "GET", "from-b", meta_of(p)) or p).status == 200, 5),
   "after PUT /view, B's writes reach A", log_excerpt(cl))
n = metrics(B).get("kvsd_batches_from_outside_total", 0)
p = kv_retry(A, "PUT", "again", None, value=1, put=True)
ok(wait_until(lambda: (try_kv(B, "GET", "again", meta_of(p)) or p).status == 200, 5), "A still reaches B")
is_(metrics(B).get("kvsd_batches_from_outside_total", 0), n, "no more outside batches once A is in B's view")
# idle and caught up: nothing queued, no lag, and the two gauges agree
def idle_gauges(r, peer):
    m = metrics(r)
    return (m.get('kvsd_peer_queued_bytes{peer="%s"}' % peer), m.get('kvsd_peer_lag_seconds{peer="%s"}' % peer))


ok(wait_until(lambda: idle_gauges(A, B.addr) == (0, 0) and idle_gauges(B, A.addr) == (0, 0), 5),
   "caught up: kvsd_peer_queued_bytes and kvsd_peer_lag_seconds both 0 on A and B",
   repr((idle_gauges(A, B.addr), idle_gauges(B, A.addr))))
for r in cl:
    r.stop()
done()
