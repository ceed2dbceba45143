#!/usr/bin/env python3
"""Convergence (api.md "Semantics"): concurrent writes (and a few deletes) to
the same 20 keys from 3 threads, one per replica, 300 operations each; after
they stop every replica holds the same map within 5 s (GET of every key on
every replica, and kvsd_keys).  Partitioned variant: one replica isolated,
both sides write the same keys, heal, re-admission, identical maps.

Addresses: 127.0.0.62 (A), 127.0.0.63 (B), 127.0.0.64 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

import random

IPS = ["127.0.0.62", "127.0.0.63", "127.0.0.64"]
VIEW = ["%s:8090" % ip for ip in IPS]
KEYS = ["ck-%02d" % i for i in range(20)]
SEED = int(time.time() * 1000) % 1000000
diag("seed %d" % SEED)

cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))


def writer(idx, r, n, tag, results, deadline):
    rnd = random.Random(SEED * 10 + idx)
    meta = None
    stats = {"ok": 0, "bad": [], "hist": []}
    for i in range(n):
        if time.monotonic() > deadline:
            stats["bad"].append("ran out of time after %d operations" % i)
            break
        key = rnd.choice(KEYS)
        rnd_del = rnd.random() < 0.1
        if rnd_del:
            r2 = try_kv(r, "DELETE", key, meta)
            good = r2 is not None and r2.status in (200, 404)
        else:
            r2 = try_kv(r, "PUT", key, meta, value={"w": tag, "i": i}, put=True)
            good = r2 is not None and r2.status in (200, 201)
        stats["hist"].append((key, "DELETE" if rnd_del else "PUT %s" % i,
                              r2.status if r2 is not None else None))
        if good:
            stats["ok"] += 1
            meta = meta_of(r2) or meta
        else:
            stats["bad"].append("%s %s -> %r" % (r.ip, key, r2))
    results[idx] = stats


def history(res, targets, keys, n=4):
    """The last n operations on each divergent key, per writer."""
    out = []
    for k in keys:
        for i, r in enumerate(targets):
            h = [(op, st) for key, op, st in res.get(i, {}).get("hist", []) if key == k]
            out.append("  %s by writer at %s: ...%s" % (k, r.ip, h[-n:]))
    return "\n".join(out)


def diverged(maps):
    if not maps or any(m is None for m in maps):
        return []
    return [k for k in sorted(maps[0]) if any(m.get(k) != maps[0].get(k) for m in maps)]


def run_writers(targets, n, tag):
    results = {}
    deadline = time.monotonic() + 25
    th = [threading.Thread(target=writer, args=(i, r, n, "%s%d" % (tag, i), results, deadline))
          for i, r in enumerate(targets)]
    t0 = time.monotonic()
    for t in th:
        t.start()
    for t in th:
        t.join(30)
    diag("%s: %d writers x %d operations in %.2f s" % (tag, len(targets), n, time.monotonic() - t0))
    return results


# --- 1. concurrent writes, all connected -----------------------------------
res = run_writers([A, B, C], 300, "w")
bad = [b for s in res.values() for b in s["bad"]]
ok(len(res) == 3 and not bad, "every concurrent write/delete answered 200/201 (404 for a delete)",
   "\n".join(bad[:10]))
dt, last = wait_converged(cl, KEYS, 5)
diag("converged %s after the writes stopped" % ("%.2f s" % dt if dt is not None else "NOT within 5 s"))
ok(dt is not None, "within 5 s of the last write all replicas hold identical maps "
   "(GET of every key, kvsd_keys)",
   "%s\nkvsd_keys=%r\n%s" % (map_diff(cl, last.get("maps")), last.get("kvsd_keys"),
                             log_excerpt(cl)))
present = sum(1 for s, _ in (last.get("maps") or [{}])[0].values() if s == 200)
diag("%d of %d keys hold a value" % (present, len(KEYS)))

# the converged state is stable: a metadata-carrying reader sees it everywhere
m0 = store_map(A, KEYS)
time.sleep(0.5)      # nothing is written now; the state must not move
ok(all(store_map(r, KEYS) == m0 for r in cl), "the converged maps stay identical",
   map_diff(cl, [store_map(r, KEYS) for r in cl]))

# --- 2. partitioned variant ---------------------------------------------------
fw = Firewall().open()
fw.isolate(C.ip)
ok(wait_views([A, B], [A, B], 3) is not None and wait_views([C], [C], 3) is not None,
   "C isolated: A/B and C evict each other", views_diag(cl))
res = run_writers([A, C], 200, "p")
bad = [b for s in res.values() for b in s["bad"]]
ok(len(res) == 2 and not bad, "both sides of the partition accept every write",
   "\n".join(bad[:10]))
side_a, side_c = store_map(A, KEYS), store_map(C, KEYS)
ok(side_a != side_c, "the two sides diverged during the partition (sanity)")
fw.heal(C.ip)
t_heal = time.monotonic()
ok(wait_views(cl, VIEW, 8) is not None, "after healing C is re-admitted (all views full)",
   views_diag(cl))
diag("re-admitted %.2f s after healing" % (time.monotonic() - t_heal))
dt, last = wait_converged(cl, KEYS, 5)
diag("converged %s after re-admission" % ("%.2f s" % dt if dt is not None else "NOT within 5 s"))
ok(dt is not None, "after re-admission all replicas hold identical maps within 5 s",
   "%s\nkvsd_keys=%r\nlast operations (status) on the divergent keys:\n%s\n%s" % (
       map_diff(cl, last.get("maps")), last.get("kvsd_keys"),
       history(res, [A, C], diverged(last.get("maps"))), log_excerpt(cl)))
final = (last.get("maps") or [None])[0] or {}
# every final value is one that was written on one side (or a deletion)
ok(all(v == side_a.get(k) or v == side_c.get(k) for k, v in final.items()),
   "each key converged to the value one of the two sides held",
   "\n".join("%s: final %r, A side %r, C side %r" % (k, final[k], side_a.get(k), side_c.get(k))
             for k in KEYS if final.get(k) not in (side_a.get(k), side_c.get(k)))[:2000])

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
