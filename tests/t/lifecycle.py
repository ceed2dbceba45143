#!/usr/bin/env python3
"""A replica's long life (issue 12, item 2): one replica of three is
killed with SIGKILL and restarted LIVES times (env KVST_LIVES, default 600;
`make lifecycle` runs 10,000), and takes one write in every life, which
must reach the others.  Every 50th time it stays down until the others
have evicted it, so eviction and re-admission loop too.  Each restart adds an incarnation at every peer;
without garbage collection the table (CLOCK_MAX = 256 rows) fills after
about 255 lives and replication stops for good (507 "Too many
incarnations", then eviction, then 503 for ever).  Asserts that

  * every life's write reaches A and C (GET with its metadata -> 200);
  * kvsd_incarnations at A and C, and the number of components in the
    metadata clients get back, stay within 4 x the view size all along;
  * incarnations are folded and freed (the counters move);
  * after the last life, writes flow both ways within 1 s;
  * every replica's /internal/check is ok.

Addresses: 127.0.0.180 (A), 127.0.0.181 (B, restarted), 127.0.0.182 (C),
port 8090; client 127.0.0.100.
"""
import os

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)
from kvstest import request

IPS = ["127.0.0.180", "127.0.0.181", "127.0.0.182"]
VIEW = ["%s:8090" % ip for ip in IPS]
LIVES = int(os.environ.get("KVST_LIVES", "600"))
BOUND = 4 * len(IPS)
KEYS = 97  # the lives' writes cycle over this many keys
EVICT_EVERY = 50  # every 50th life, B stays down until it is evicted

cl = Cluster(IPS, workers=1)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))


def has(r, key, meta, value):
    g = try_kv(r, "GET", key, meta, timeout=1)
    return g is not None and g.status == 200 and g.json.get("value") == value


def incarnations(r):
    return metrics(r).get("kvsd_incarnations")


failures = []      # lives whose write did not reach A (or C)
evictions = 0
max_inc = {A.addr: 0, C.addr: 0}
max_meta = 0
t0 = time.monotonic()
for life in range(1, LIVES + 1):
    B.kill(signal.SIGKILL)
    if not wait_until(lambda: not B.group(), 5):
        failures.append((life, "B's process group outlived kill -9: %r" % (B.group(),)))
        break
    if life % EVICT_EVERY == 0:
        # stay down until A and C evict B, so the loop also runs
        # eviction and re-admission, not only restarts
        if not wait_until(lambda: B.addr not in (view_of(A) or [B.addr]) and
                          B.addr not in (view_of(C) or [B.addr]), 5):
            failures.append((life, "B not evicted within 5 s: %r" % [view_of(A), view_of(C)]))
        evictions += 1
    B.start()
    key, value = "life-%d" % (life % KEYS), "v%d" % life
    p = None
    for _ in range(3):  # bounded: a fresh life may need a moment to be ready
        p = kv_retry(B, "PUT", key, None, value=value, put=True)
        if p is not None and p.status in (200, 201):
            break
    if p is None or p.status not in (200, 201):
        failures.append((life, "PUT at B: %r" % (p,)))
        if len(failures) > 3:
            break
        continue
    meta = meta_of(p)
    max_meta = max(max_meta, len(meta or {}))
    targets = (A, C) if life % 10 == 0 else (A,)
    if not wait_until(lambda: all(has(r, key, meta, value) for r in targets), 5):
        failures.append((life, "write not at %s: %r" % (
            [r.ip for r in targets], [try_kv(r, "GET", key, meta) for r in targets])))
        if len(failures) > 3:
            break
    if life % 25 == 0 or life == LIVES:
        for r in (A, C):
            n = incarnations(r)
            if n is not None:
                max_inc[r.addr] = max(max_inc[r.addr], n)
            if n is None or n > BOUND:
                failures.append((life, "%s: kvsd_incarnations %r > %d" % (r.ip, n, BOUND)))
    if life % 500 == 0:
        diag("%d lives in %.0f s; max incarnations %r, max metadata %d"
             % (life, time.monotonic() - t0, max_inc, max_meta))
    if len(failures) > 3:
        break

diag("%d lives in %.1f s (%d with an eviction)" % (life, time.monotonic() - t0, evictions))
ok(not failures, "every one of %d lives: its write reached the others, incarnations <= %d"
   % (LIVES, BOUND), "%r\n%s" % (failures[:4], log_excerpt(cl)))
ok(life == LIVES, "all %d lives ran" % LIVES, "stopped at life %d" % life)
ok(max_meta <= BOUND, "metadata returned by B names at most %d incarnations (max %d)" % (BOUND, max_meta))
ok(all(0 < v <= BOUND for v in max_inc.values()),
   "kvsd_incarnations stayed within %d at A and C (max %r)" % (BOUND, max_inc))
mA = metrics(A)
diag("A: folded %r, freed %r" % (mA.get("kvsd_incarnations_folded_total"),
                                 mA.get("kvsd_incarnations_freed_total")))
if LIVES >= 50:
    ok(mA.get("kvsd_incarnations_folded_total", 0) >= LIVES - BOUND,
       "A folded the retired lives (%r of %d)" % (mA.get("kvsd_incarnations_folded_total"), LIVES))
    ok(mA.get("kvsd_incarnations_freed_total", 0) >= LIVES - 2 * BOUND,
       "A freed their rows for reuse (%r)" % mA.get("kvsd_incarnations_freed_total"))

# both ways, within 1 s, after the last life
ok(wait_views(cl, VIEW, 5) is not None, "all views full after the last life", views_diag(cl))
for src, dsts in ((A, (B, C)), (B, (A, C)), (C, (A, B))):
    p = kv_retry(src, "PUT", "final-" + src.ip, None, value=src.ip, put=True)
    ok(p is not None and p.status in (200, 201), "final PUT at %s" % src.ip, repr(p))
    meta = meta_of(p)
    t = time.monotonic()
    got = wait_until(lambda: all(has(d, "final-" + src.ip, meta, src.ip) for d in dsts), 1.0)
    ok(got, "a write at %s reaches the others within 1 s (%.3f s)" % (src.ip, time.monotonic() - t),
       log_excerpt(cl))

for r in cl:
    g = request(r, "GET", "/internal/check", timeout=10)
    is_(g.status, 200, "%s: /internal/check ok" % r.ip)

for r in cl:
    r.stop()
done()
