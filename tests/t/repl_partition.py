#!/usr/bin/env python3
"""Partitions with iptables (api.md "Semantics", "Timing contract"), DEFAULT
timings: (a) the course's causal scenario -- cut B for 1 s, write, reconnect,
B answers 503 to the new metadata until re-admitted, then serves it; (b) a
replica cut off from all others stays available and its writes reach the
others after healing.

Addresses: 127.0.0.53 (A), 127.0.0.54 (B), 127.0.0.55 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.53", "127.0.0.54", "127.0.0.55"]
VIEW = ["%s:8090" % ip for ip in IPS]
FULL = tuple(sorted(VIEW))

cl = Cluster(IPS, workers=2)       # DEFAULT timings: the contract is about them
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
fw = Firewall().open()
NOT_FOUND = b'{"error": "Key does not exist"}'

# ---------------------------------------------------------------------------
# (a) the course's causal scenario
# ---------------------------------------------------------------------------
course_partition(cl, fw, VIEW)

# ---------------------------------------------------------------------------
# (b) availability of a replica cut off from both others
# ---------------------------------------------------------------------------
fw.isolate(B.ip)
t_cut = time.monotonic()
dt_ac = wait_views([A, C], [A, C], 3, interval=0.02)
dt_b = wait_views([B], [B], 3, interval=0.02)
ok(dt_ac is not None and dt_b is not None,
   "(b) after the cut A and C drop B and B drops both (A/C %s s, B %s s)"
   % ("%.2f" % dt_ac if dt_ac is not None else "-", "%.2f" % (time.monotonic() - t_cut)),
   views_diag(cl))
bm = None
part_bad = []
for i in range(10):
    p = try_kv(B, "PUT", "avail-%d" % i, bm, value={"n": i, "side": "B"}, put=True)
    if p is None or p.status != 201:
        part_bad.append("PUT avail-%d -> %r" % (i, p))
        continue
    bm = meta_of(p)
    g = try_kv(B, "GET", "avail-%d" % i, bm)
    if g is None or g.status != 200 or g.json.get("value") != {"n": i, "side": "B"}:
        part_bad.append("GET avail-%d -> %r" % (i, g))
ok(not part_bad, "(b) partitioned B answers PUT 201 and GET 200 for its own writes",
   "\n".join(part_bad) + "\n" + log_excerpt([B]))
# the others do not have them while the partition lasts
g = try_kv(A, "GET", "avail-0", None)
expect(g, 404, NOT_FOUND, "(b) A does not have B's write during the partition")
fw.heal(B.ip)
t_heal = time.monotonic()


def everywhere():
    for r in (A, C):
        for i in range(10):
            g = try_kv(r, "GET", "avail-%d" % i, bm, timeout=1)
            if g is None or g.status != 200 or g.json.get("value") != {"n": i, "side": "B"}:
                return False
    return True
got = wait_until(everywhere, 10, 0.1)
diag("(b) B's writes reached A and C %.3f s after healing" % (time.monotonic() - t_heal))
ok(got, "(b) after healing B's partition-time writes reach A and C (with B's metadata)",
   "A: %r\nC: %r\n%s" % (try_kv(A, "GET", "avail-9", bm), try_kv(C, "GET", "avail-9", bm),
                        log_excerpt(cl)))
ok(wait_views(cl, VIEW, 6) is not None, "(b) every view full again", views_diag(cl))

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
