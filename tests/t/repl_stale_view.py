#!/usr/bin/env python3
"""No stale view changes after a partition heals (doc/design.md "Resets on
eviction"): a replica D cut off from everyone evicts its peers and tells
the others; what it was telling a peer it has since evicted must never be
delivered after the partition heals, or healthy replicas drop each other
from their views for --readmit-delay.

D's connections for view messages are used (kept alive) first, so a
message queued or in flight during the cut would go out on a warm
connection and TCP would retransmit it as soon as the cut heals.

Addresses: 127.0.0.76 (A), .77 (B), .78 (C), .79 (D), port 8090; client
127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.76", "127.0.0.77", "127.0.0.78", "127.0.0.79"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C, D = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
fw = Firewall().open()

# --- warm D's view-message connections to A, B and C -------------------------
# DELETE /view A at D makes D tell B and C; DELETE /view B makes it tell A
# and C.  Everyone probes A and B and re-admits them after --readmit-delay.
for victim in (A, B):
    r = request(D, "DELETE", "/view", body={"socket-address": victim.addr})
    is_(r.status, 200, "DELETE /view %s at D -> 200" % victim.addr)
ok(wait_views(cl, VIEW, 10) is not None, "A and B are back in every view", views_diag(cl))

# --- cut D off until it has evicted everyone, then heal at once --------------
fw.isolate(D)
t_cut = time.monotonic()
alone = wait_views([D], [D], 5, interval=0.01)
fw.heal(D)
diag("D evicted A, B and C %s after the cut; healed at once" % (
    "%.3f s" % alone if alone is not None else "NOT within 5 s"))
ok(alone is not None, "D, cut off, evicts every peer", views_diag(cl) + "\n" + log_excerpt(cl))

# --- A, B and C never drop one another ------------------------------------
# D's messages, if any were delivered late, land within TCP's first
# retransmissions (0.2-1.4 s); watch for 2.5 s.
ABC = {A.addr, B.addr, C.addr}
dropped = []
t0 = time.monotonic()
n = 0
while time.monotonic() - t0 < 2.5 and n < 400:
    n += 1
    for r in (A, B, C):
        v = view_of(r)
        if v is not None and not ABC <= set(v):
            dropped.append("%.2f s after the heal: %s view=%s" % (time.monotonic() - t0, r.addr, v))
    time.sleep(0.02)
ok(not dropped, "A, B and C kept one another in their views after D's partition healed",
   "\n".join(dropped[:10]) + "\n" + log_excerpt(cl, 30))
ok(wait_views(cl, VIEW, 10) is not None, "D is back in every view", views_diag(cl))

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl.replicas:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
