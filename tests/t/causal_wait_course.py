#!/usr/bin/env python3
"""The course's causal scenario with --causal-wait 50 (issue 13, item 3):
scenario (a) of repl_partition.py, unchanged but for the flag and the
addresses -- cut B for 1 s, write at A, reconnect; B still answers 503 to
the new metadata (now after waiting 50 ms) for 1.5 s after the
reconnection, until it is re-admitted, then serves it.  A parked request
must not make B answer what it has not applied, nor hide the 503.

Addresses: 127.0.0.226 (A), 127.0.0.227 (B), 127.0.0.228 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.226", "127.0.0.227", "127.0.0.228"]
VIEW = ["%s:8090" % ip for ip in IPS]
FULL = tuple(sorted(VIEW))

cl = Cluster(IPS, workers=2, extra_args=["--causal-wait", "50"])  # default timings otherwise
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

m = request(B, "GET", "/metrics").raw.decode()
timeouts = [l for l in m.splitlines() if l.startswith('kvsd_causal_park_ended_total{how="timeout"}')]
ok(timeouts and float(timeouts[0].split()[-1]) >= 5,
   "(a) B's 503s came from parked requests whose wait ran out", "\n".join(timeouts))
fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
