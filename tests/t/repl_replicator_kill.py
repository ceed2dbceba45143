#!/usr/bin/env python3
"""A replicator process killed (kill -9) inside a 3-replica cluster under
write load: the master restarts it, no acknowledged write is lost, and
every replica converges.  Three clients write to their own keys at all
three replicas while B's replicator is killed 5 times, then A's once.
Addresses: 127.0.0.165 (A), 127.0.0.166 (B), 127.0.0.167 (C); client
127.0.0.100."""

import os
import threading

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.165", "127.0.0.166", "127.0.0.167"]
VIEW = ["%s:8090" % ip for ip in IPS]
cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))

stop = threading.Event()
lock = threading.Lock()
acked = {}      # key -> last acknowledged value (each key has one writer)
unknown = {}    # key -> values sent whose outcome is unknown, after the last ack
counts = {"acked": 0, "unknown": 0, "503": 0}


def writer(tid):
    meta = None
    n = 0
    while not stop.is_set():
        n += 1
        r = cl[n % 3]
        key = "w%d-%d" % (tid, n % 25)
        value = "%d-%d" % (tid, n)
        p = try_kv(r, "PUT", key, meta, value=value, put=True, timeout=2)
        with lock:
            if p is None:
                counts["unknown"] += 1
                unknown.setdefault(key, []).append(value)
            elif p.status in (200, 201):
                counts["acked"] += 1
                acked[key] = value
                unknown.pop(key, None)
                meta = meta_of(p) or meta
            elif p.status == 503:
                counts["503"] += 1
        time.sleep(0.002)


threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(3)]
for t in threads:
    t.start()
time.sleep(0.5)

kills = []
for victim in (B, B, B, B, B, A):
    rep = wait_until(lambda: victim.replicator(), 5, 0.02)
    if not rep:
        ok(False, "%s has a replicator to kill" % victim.addr, repr(victim.children()))
        break
    os.kill(rep[0], signal.SIGKILL)     # a child of a master we started
    kills.append((victim.addr, rep[0]))
    ok(wait_until(lambda: (victim.replicator() or (rep[0],))[0] != rep[0], 5, 0.02),
       "%s: the master restarted its replicator (pid %d killed)" % (victim.addr, rep[0]),
       repr(victim.children()))
    time.sleep(0.4)   # writes flow while the new replicator rejoins
time.sleep(0.5)
stop.set()
for t in threads:
    t.join(10)
diag("writers: %r; killed %d replicators" % (counts, len(kills)))
ok(counts["acked"] > 300, "writes kept being acknowledged (%d)" % counts["acked"])

keys = sorted(set(acked) | set(unknown))
elapsed, last = wait_converged(cl, keys, 15)
ok(elapsed is not None, "all three replicas converge after the kills",
   map_diff(cl, last.get("maps")) + "\n" + log_excerpt(cl))
lost = []
maps = last.get("maps") or []
for r, m in zip(cl, maps):
    if m is None:
        lost.append("%s did not answer" % r.addr)
        continue
    for k in keys:
        status, text = m[k]
        allowed = ([acked[k]] if k in acked else []) + unknown.get(k, [])
        if status != 200 or text is None or text.decode().strip('"') not in allowed:
            lost.append("%s %s: %s %r; acknowledged %r, unknown after it %r" % (
                r.addr, k, status, text, acked.get(k), unknown.get(k)))
ok(not lost, "every replica holds each key's last acknowledged write (or a later unacknowledged one)",
   "\n".join(lost[:10]))
for r in cl:
    ok(r.running(), "%s still running" % r.addr, r.log_tail())
    g = request(r, "GET", "/internal/check", timeout=5)
    expect(g, 200, b'{"check": "ok"}', "%s: /internal/check ok" % r.addr)
done()
