#!/usr/bin/env python3
"""The replication log costs memory only for what some replica still lacks
(issue 13, item 2): the replicator drops the records every replica it knows
has acknowledged and gives their ring pages back to the kernel, so the Pss
of all kvsd processes grows about as much as the store itself.  (a) a
replica alone drops everything; (b) in a cluster, records an evicted peer
lacks are kept -- Pss grows by the store plus the log -- and reach it from
the log, without a snapshot, once it is back; then they are dropped too.
Pss is that of the store's shared mapping, summed over the processes.

Values of 60,000 bytes: an entry fills its 64 KiB arena block, so the
store grows by about what was written and the log by as much again.

Addresses: 127.0.0.240 (A), 127.0.0.241 (B), 127.0.0.242 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)
from kvstest import Session

NKEYS, VLEN = 300, 60000
WRITTEN = NKEYS * VLEN  # 18 MB
# the log must hold every write, or an evicted peer would need a snapshot
ARGS = ["--memory", "128M", "--log-size", "48M", "--readmit-delay", "300", "--probe-interval", "50"]


def pss(rep):
    """Pss of the store's shared mapping (MAP_SHARED | MAP_ANONYMOUS: named
    "/dev/zero (deleted)" in smaps) summed over the master and its
    children, in bytes: each of its pages counted once.  bench/run sums
    the whole processes; here their heaps would only add noise (and, in a
    sanitizer build, allocator quarantine)."""
    total = 0
    for pid in [rep.master_pid] + [p for p, _ in rep.children()]:
        try:
            with open("/proc/%d/smaps" % pid) as f:
                store = False
                for line in f:
                    if not line[0].isupper():  # a mapping's header line
                        store = line.rstrip().endswith("/dev/zero (deleted)")
                    elif store and line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def value(i):
    return ('"%s"' % (("%05d-" % i) * (VLEN // 6 + 1))[:VLEN - 2]).encode()


def write_all(rep, prefix):
    s = Session(rep)
    bad = [k for k in ("%s%d" % (prefix, i) for i in range(NKEYS))
           if s.request("PUT", "/kvs/" + k, raw_body=b'{"value": ' + value(int(k[len(prefix):])) + b'}',
                        headers={"Content-Type": "application/json"}).status != 201]
    s.close()
    return bad


def growth_ratio(rep, base):
    return (pss(rep) - base) / WRITTEN


# ---------------------------------------------------------------------------
# (a) a replica alone: the log keeps nothing
# ---------------------------------------------------------------------------
A = Replica("127.0.0.240", view=["127.0.0.240:8090"], extra_args=ARGS)
A.wait_ready(10)
ok(wait_until(lambda: is_ready(A), 5), "(a) A alone is /ready", A.log_tail())
base = pss(A)
is_(write_all(A, "a"), [], "(a) %d values of %d bytes written at A" % (NKEYS, VLEN))
ok(wait_until(lambda: growth_ratio(A, base) < 1.1, 5),
   "(a) A's Pss grows by what was written, not twice that: %.2fx" % growth_ratio(A, base),
   "Pss %d -> %d for %d bytes written" % (base, pss(A), WRITTEN))
g = kv(A, "GET", "a%d" % (NKEYS - 1))
ok(g.status == 200 and g.raw.find(value(NKEYS - 1)) >= 0, "(a) the last value reads back whole")
A.stop()

# ---------------------------------------------------------------------------
# (b) a cluster: kept for an evicted peer, shipped from the log, then dropped
# ---------------------------------------------------------------------------
cl = Cluster(["127.0.0.241", "127.0.0.242"], extra_args=ARGS)
cl.wait_ready(10)
B, C = cl.replicas
ok(wait_all_ready(cl, 5), "(b) B and C /ready", log_excerpt(cl))
ok(wait_views(cl, [B, C], 5) is not None, "(b) views full", views_diag(cl))
is_(kv(B, "PUT", "warm", value="up", put=True).status, 201, "(b) PUT warm at B")
ok(wait_until(lambda: (lambda g: g is not None and g.status == 200)(try_kv(C, "GET", "warm")), 10),
   "(b) B ships to C", log_excerpt(cl))
snaps = metrics(C).get("kvsd_snapshots_installed_total")
fw = Firewall().open()
fw.isolate(C.ip)
ok(wait_views([B], [B], 5) is not None, "(b) B evicts the isolated C", views_diag([B]))
base = pss(B)
is_(write_all(B, "b"), [], "(b) %d values of %d bytes written at B while C is cut off" % (NKEYS, VLEN))
time.sleep(0.5)  # several replicator ticks: nothing C lacks may be dropped
r = growth_ratio(B, base)
ok(r > 1.7, "(b) B keeps the log C lacks: Pss grew %.2fx what was written" % r)
fw.heal(C.ip)
keys = ["b%d" % i for i in range(NKEYS)]
ok(wait_until(lambda: metrics(C).get("kvsd_keys") == NKEYS + 1, 20), "(b) C gets every write after the heal",
   "C has %s keys\n%s" % (metrics(C).get("kvsd_keys"), log_excerpt(cl)))
m = store_map(C, keys[-3:])
ok(m is not None and all(s == 200 for s, _ in m.values()), "(b) C serves the last writes", repr(m)[:300])
is_(metrics(C).get("kvsd_snapshots_installed_total"), snaps, "(b) ... from B's log, with no snapshot")
ok(wait_until(lambda: growth_ratio(B, base) < 1.1, 5),
   "(b) once C has acknowledged them B drops them: Pss %.2fx what was written" % growth_ratio(B, base),
   log_excerpt(cl))
fw.close()
cl.stop()
done()
