#!/usr/bin/env python3
"""Shipping is driven by answers, not by the heartbeat (issue 13, item 1).

Every replica runs with --heartbeat 5000 (and --peer-timeout 30000, so a
stopped or cut peer is not evicted), so "before the next heartbeat" means
within seconds, not milliseconds: no assertion here is a fine timing one.

1. A record appended while a batch to a peer is in flight is shipped the
   moment that batch is answered: B's workers are stopped (SIGSTOP), so
   A's batch with k1 stays in flight; k2 is written at A meanwhile and goes
   to C at once but not to B; B's workers resume, answer, and B has k2
   within half a heartbeat, sent by the answer (kvsd_ship_after_answer_total
   of A grows by exactly one, kvsd_records_shipped_total by exactly k2).
2. A batch whose records all wait for a dependency the peer lacks is sent
   again soon, not a heartbeat later: B's packets to C are dropped, B's
   write x reaches A, A's write y (which depends on x) is shipped to C and
   waits there; A sends it again at once with x relayed (the answer showed
   that C lacks x) and C serves y within half a heartbeat.  Before the fix
   A waited a whole heartbeat (5 s) after the waiting answer.

Addresses: 127.0.0.230 (A), 127.0.0.231 (B), 127.0.0.232 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
import os
import signal
import time

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

HEARTBEAT_S = 5.0
IPS = ["127.0.0.230", "127.0.0.231", "127.0.0.232"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=2, extra_args=["--heartbeat", str(int(HEARTBEAT_S * 1000)), "--peer-timeout", "30000"])
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))


def counter(r, name):
    """A counter of r's /metrics; a failed fetch or a missing counter is a
    failure, never a None equal to another None."""
    v = metrics(r).get(name)
    if v is None:
        raise RuntimeError("GET /metrics of %s failed or lacks %s" % (r.addr, name))
    return v


def has(r, key, meta, want):
    g = try_kv(r, "GET", key, meta, timeout=2)
    return g is not None and g.status == 200 and g.json.get("value") == want


def all_active(r):
    m = metrics(r)
    return all(m.get('kvsd_peer_state{peer="%s",state="active"}' % o.addr) == 1.0
               for o in cl.replicas if o is not r)


ok(wait_until(lambda: all(all_active(r) for r in cl.replicas), 10), "every replica has every peer active",
   "\n".join("%s: %s" % (r.addr, {k: v for k, v in metrics(r).items() if k.startswith("kvsd_peer_state")})
             for r in cl.replicas))

# --- 1. appended while in flight -> shipped when answered --------------------
SHIPPED, AFTER = "kvsd_records_shipped_total", "kvsd_ship_after_answer_total"
workers_b = [pid for pid, _ in B.workers_list()]
ok(len(workers_b) == 2, "B has its 2 workers (%r)" % workers_b)
s0 = counter(A, SHIPPED)
stopped = []
try:
    for pid in workers_b:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
    p1 = kv(A, "PUT", "k1", value="v1", put=True)
    is_(p1.status, 201, "PUT k1 at A (B's workers stopped) -> 201")
    ok(wait_until(lambda: counter(A, SHIPPED) >= s0 + 2, 5),
       "A shipped k1 to B and C (B's batch stays in flight)", "shipped %s -> %s" % (s0, counter(A, SHIPPED)))
    ok(wait_until(lambda: has(C, "k1", meta_of(p1), "v1"), 5), "C has k1")
    p2 = kv(A, "PUT", "k2", meta=meta_of(p1), value="v2", put=True)
    is_(p2.status, 201, "PUT k2 at A while A's batch to B is in flight -> 201")
    ok(wait_until(lambda: has(C, "k2", meta_of(p2), "v2"), 5), "C has k2 (A's batch to C was answered)")
    s1, c1 = counter(A, SHIPPED), counter(A, AFTER)
    is_(s1, s0 + 3, "k2 went to C only: the batch to B is still in flight")
finally:
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
t_cont = time.monotonic()
ok(wait_until(lambda: has(B, "k2", meta_of(p2), "v2"), HEARTBEAT_S / 2, 0.02),
   "B has k2 within half a heartbeat of answering the batch in flight",
   "%s\n%s" % (try_kv(B, "GET", "k2", meta_of(p2)), log_excerpt(cl)))
diag("B had k2 %.3f s after its workers resumed" % (time.monotonic() - t_cont))
is_(counter(A, AFTER), c1 + 1, "A counted one batch shipped the moment B answered (%s)" % AFTER)
is_(counter(A, SHIPPED), s0 + 4, "A shipped k2 to B once, and nothing else")
ok(has(B, "k1", meta_of(p1), "v1"), "B has k1")

# --- 2. a batch whose records wait is sent again soon --------------------------
fw = Firewall().open()
fw.cut(B, C)
px = kv(B, "PUT", "x", value="vx", put=True)
is_(px.status, 201, "PUT x at B (B -> C dropped) -> 201")
ok(wait_until(lambda: has(A, "x", meta_of(px), "vx"), 5), "A has x", log_excerpt(cl))
ok(not has(C, "x", meta_of(px), "vx"), "C lacks x (B's packets to C are dropped)")
py = kv(A, "PUT", "y", meta=meta_of(px), value="vy", put=True)
is_(py.status, 201, "PUT y at A after reading x's metadata (y depends on x) -> 201")
t_y = time.monotonic()
ok(wait_until(lambda: has(C, "y", meta_of(py), "vy"), HEARTBEAT_S / 2, 0.02),
   "C has y within half a heartbeat (A sent the waiting batch again, not a heartbeat later)",
   "%s\n%s" % (try_kv(C, "GET", "y", meta_of(py)), log_excerpt(cl)))
diag("C had y %.3f s after it was written" % (time.monotonic() - t_y))
ok(has(C, "x", meta_of(px), "vx"), "C has x too (relayed by A: B cannot reach C)")
fw.heal()
fw.close()
ok(not fw.rules(), "firewall chain removed")
ok(wait_views(cl, VIEW, 1) is not None, "nobody was evicted (long --peer-timeout)", views_diag(cl))
for r in cl.replicas:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
