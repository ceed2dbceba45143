#!/usr/bin/env python3
"""Origin crash (api.md "Semantics"): (a) a write that reached only one other
replica survives its origin's SIGKILL -- the partitioned third replica gets
it relayed after healing and serves the write's metadata; (b) a write
acknowledged by a replica that crashed before anyone received it is lost,
and once the replica has restarted, metadata naming it no longer causes 503
anywhere (counted in kvsd_writes_lost_total).

Addresses: 127.0.0.59 (A), 127.0.0.60 (B), 127.0.0.61 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.59", "127.0.0.60", "127.0.0.61"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
fw = Firewall().open()


def status_of(r, key, meta):
    g = try_kv(r, "GET", key, meta, timeout=1)
    return (g.status, g.json.get("value") if g.status == 200 else None) if g else None


# some writes everyone has
p = kv(A, "PUT", "base", value="everyone", put=True)
is_(p.status, 201, "PUT base at A -> 201")
M0 = meta_of(p)
ok(wait_until(lambda: all(status_of(r, "base", M0) == (200, "everyone") for r in cl), 5),
   "base reached every replica", log_excerpt(cl))

# ---------------------------------------------------------------------------
# (a) partition C, write at A (reaches B only), kill A, heal C
# ---------------------------------------------------------------------------
fw.isolate(C.ip)
ok(wait_views([A, B], [A, B], 3) is not None, "(a) A and B evict the partitioned C",
   views_diag(cl))
p = kv(A, "PUT", "orphan", M0, value={"from": "A"}, put=True)
is_(p.status, 201, "(a) PUT orphan at A -> 201")
M1 = meta_of(p)
ok(wait_until(lambda: status_of(B, "orphan", M1) == (200, {"from": "A"}), 5),
   "(a) B has A's write", log_excerpt(cl))
is_(status_of(C, "orphan", M1), (503, None), "(a) partitioned C answers 503 to the write's metadata")
A.kill(signal.SIGKILL)
ok(wait_until(lambda: not A.group(), 3), "(a) A's process group is gone after kill -9", repr(A.group()))
fw.heal(C.ip)
t_heal = time.monotonic()
got = wait_until(lambda: status_of(C, "orphan", M1) == (200, {"from": "A"}), 5)
diag("(a) C served the dead origin's write %.3f s after healing" % (time.monotonic() - t_heal))
ok(got, "(a) within 5 s of healing C has A's write (relayed by B) and answers 200 to its metadata",
   "GET orphan at C with M1: %r\n%s" % (try_kv(C, "GET", "orphan", M1), log_excerpt(cl)))
ok(wait_views([B, C], [B, C], 5) is not None, "(a) B and C see each other, A is out",
   views_diag([B, C]))

# ---------------------------------------------------------------------------
# (b) a write only C ever had: C acknowledges it while cut off, then dies
# ---------------------------------------------------------------------------
A.start()
t = time.monotonic()
ok(wait_views(cl, VIEW, 5) is not None, "(b) restarted A is back in every view within 5 s",
   views_diag(cl))
ok(wait_until(lambda: status_of(A, "orphan", M1) == (200, {"from": "A"}), 5),
   "(b) restarted A serves its previous incarnation's write (copied from a peer)",
   log_excerpt([A]))
fw.isolate(C.ip)
ok(wait_views([A, B], [A, B], 3) is not None, "(b) A and B evict the partitioned C",
   views_diag(cl))
p = kv_retry(C, "PUT", "lost", M1, value="only-C", put=True)
ok(p is not None and p.status == 201, "(b) PUT lost at the partitioned C -> 201", repr(p))
M_LOST = meta_of(p) or M1
c_inc = [k for k in M_LOST if k.startswith(C.addr + "/")]
C.kill(signal.SIGKILL)
fw.heal(C.ip)
is_(status_of(A, "base", M_LOST), (503, None),
    "(b) before C restarts, A answers 503 to metadata naming C's unreplicated write")
C.start()
t_restart = time.monotonic()
ok(wait_views(cl, VIEW, 5) is not None, "(b) restarted C is back in every view within 5 s",
   views_diag(cl))
for r in cl:
    got = wait_until(lambda: (status_of(r, "base", M_LOST) or (0,))[0] == 200, 8)
    ok(got, "(b) %s: metadata naming the lost write no longer causes 503 (GET base -> 200)"
       % r.ip, "%r\n%s" % (try_kv(r, "GET", "base", M_LOST), log_excerpt(cl)))
    g = try_kv(r, "GET", "lost", M_LOST)
    ok(g is not None and g.status in (200, 404),
       "(b) %s: GET of the lost key with its metadata -> 404 (lost) or 200, not 503" % r.ip,
       repr(g))
diag("(b) lost write settled %.3f s after C's restart" % (time.monotonic() - t_restart))
lost = [metrics(r).get("kvsd_writes_lost_total", 0) for r in cl]
ok(any(x >= 1 for x in lost), "(b) the loss is counted in kvsd_writes_lost_total",
   "per replica: %r" % lost)

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
