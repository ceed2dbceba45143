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
p = kv(A, "PUT", "k", value="old", put=True)
is_(p.status, 201, "(a) PUT k=old at A -> 201")
M1 = meta_of(p)
ok(wait_until(lambda: (lambda g: g is not None and g.status == 200 and
                       g.json.get("value") == "old")(try_kv(B, "GET", "k", M1)), 5),
   "(a) B has k=old", log_excerpt(cl))

fw.isolate(B.ip)
t_cut = time.monotonic()
dt = wait_views([A, C], [A, C], 3, interval=0.02)
diag("(a) A and C dropped B from their views %s after the cut"
     % ("%.3f s" % dt if dt is not None else "NOT within 3 s"))
ok(dt is not None and dt <= 1.0, "(a) A's and C's views drop B within 1 s of the cut",
   "elapsed %s\n%s\n%s" % (dt, views_diag(cl), log_excerpt(cl)))

# the course's test waits 1 s after cutting, writes, reconnects at once
time.sleep(max(0.0, t_cut + 1.0 - time.monotonic()))
p = kv(A, "PUT", "k", meta=M1, value="new", put=True)
is_(p.status, 200, "(a) PUT k=new at A with the old metadata -> 200 replaced")
M2 = meta_of(p)
fw.heal(B.ip)
t_heal = time.monotonic()

# for 1.5 s after healing B is not re-admitted, so it still has only k=old
bad = []
n = 0
while time.monotonic() - t_heal < 1.5 and n < 200:
    n += 1
    g2 = try_kv(B, "GET", "k", M2, timeout=1)
    pu = try_kv(B, "PUT", "probe", M2, value="x", put=True, timeout=1)
    g1 = try_kv(B, "GET", "k", M1, timeout=1)
    t = time.monotonic() - t_heal
    if t >= 1.5:
        break                    # answered after the window: not judged
    if g2 is None or g2.status != 503 or g2.raw != ERR503:
        bad.append("%.3f s: GET k with M2 -> %r" % (t, g2))
    if pu is None or pu.status != 503 or pu.raw != ERR503:
        bad.append("%.3f s: PUT probe with M2 -> %r" % (t, pu))
    if g1 is None or g1.status != 200 or g1.json.get("value") != "old":
        bad.append("%.3f s: GET k with M1 -> %r" % (t, g1))
    time.sleep(0.05)
diag("(a) %d probe rounds at B during the 1.5 s after healing" % n)
ok(n >= 5 and not bad, "(a) for 1.5 s after healing B answers 503 (exact body) to GET/PUT "
   "with M2 and 200 'old' to GET with the old metadata",
   "\n".join(bad[:10]) + "\n" + log_excerpt(cl))

# then B is re-admitted and catches up
def b_has_new():
    g = try_kv(B, "GET", "k", M2, timeout=1)
    return g is not None and g.status == 200 and g.json.get("value") == "new"
got = wait_until(b_has_new, max(0.0, t_heal + 6.0 - time.monotonic()))
diag("(a) B served k=new to M2 %.3f s after healing" % (time.monotonic() - t_heal))
ok(got, "(a) within 6 s of healing B answers 200 'new' to M2",
   "%r\n%s" % (try_kv(B, "GET", "k", M2), log_excerpt(cl)))
dt = wait_views(cl, VIEW, max(0.5, t_heal + 6.0 - time.monotonic()))
ok(dt is not None, "(a) within 6 s of healing every view is full again", views_diag(cl))
diag("(a) views full %.3f s after healing" % (time.monotonic() - t_heal))
expect(try_kv(A, "GET", "probe", M2), 404, NOT_FOUND,
       "(a) the PUTs refused with 503 at B created nothing (404 at A)")
expect(try_kv(B, "GET", "probe", M2), 404, NOT_FOUND,
       "(a) the PUTs refused with 503 at B created nothing (404 at B)")

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
