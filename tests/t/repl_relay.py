#!/usr/bin/env python3
"""Relay mode (doc/design.md "Relaying"): while A's packets to C are
dropped (one way; --peer-timeout long enough that nobody is evicted, so A
stays an active peer everywhere), A's writes reach C through B; B logs that
C lacks A's writes and counts the records it shipped; after the heal B
stops relaying once A delivers to C itself again.

Addresses: 127.0.0.73 (A), 127.0.0.74 (B), 127.0.0.75 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.73", "127.0.0.74", "127.0.0.75"]
VIEW = ["%s:8090" % ip for ip in IPS]

cl = Cluster(IPS, workers=2, extra_args=["--peer-timeout", "30000"])
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
fw = Firewall().open()


def shipped(r):
    """r's kvsd_records_shipped_total.  A failed /metrics fetch (or a
    missing counter) is a failure, never a None equal to another None."""
    v = metrics(r).get("kvsd_records_shipped_total")
    if v is None:
        raise RuntimeError("GET /metrics of %s failed or lacks kvsd_records_shipped_total" % r.addr)
    return v


def has(r, key, meta, want):
    g = try_kv(r, "GET", key, meta, timeout=2)
    return g is not None and g.status == 200 and g.json.get("value") == want


def all_active(r):
    """Every other replica is an active peer of r (a joining origin's
    writes are relayed at once, by design)."""
    m = metrics(r)
    return all(m.get('kvsd_peer_state{peer="%s",state="active"}' % o.addr) == 1.0
               for o in cl.replicas if o is not r)


# --- healthy: A's write reaches C directly, B relays nothing ---------------
ok(wait_until(lambda: all(all_active(r) for r in cl.replicas), 10), "every replica has every peer active",
   "\n".join("%s: %s" % (r.addr, {k: v for k, v in metrics(r).items() if k.startswith("kvsd_peer_state")})
             for r in cl.replicas))
b0 = shipped(B)
p = kv(A, "PUT", "before", value="v0", put=True)
is_(p.status, 201, "PUT before=v0 at A -> 201")
ok(wait_until(lambda: has(C, "before", meta_of(p), "v0"), 5), "C has A's first write", log_excerpt(cl))
is_(shipped(B), b0, "B shipped no records while A reached C itself")

# --- A -> C dropped: the detour through B ----------------------------------
fw.cut(A, C)
t_cut = time.monotonic()
metas = []
for i in range(20):
    p = kv(A, "PUT", "cut-%d" % i, value="w%d" % i, put=True)
    is_(p.status, 201, "PUT cut-%d at A during the one-way cut -> 201" % i)
    metas.append(meta_of(p))
last = metas[-1]
ok(wait_until(lambda: has(C, "cut-19", last, "w19"), 5),
   "C serves A's last write (and its metadata) through B while A -> C is cut",
   "GET: %r\n%s" % (try_kv(C, "GET", "cut-19", last), log_excerpt(cl)))
diag("C had A's 20 writes %.3f s after the cut" % (time.monotonic() - t_cut))
ok(all(has(C, "cut-%d" % i, metas[i], "w%d" % i) for i in range(20)), "C has every one of the 20 writes")
b1 = shipped(B)
ok(b1 - b0 >= 20, "B shipped A's records to C (kvsd_records_shipped_total %s -> %s)" % (b0, b1))
ok(wait_until(lambda: "lacks writes of %s" % A.addr in B.log_tail(500), 2),
   "B logs that C lacks A's writes and relays them", B.log_tail())
ok(A.running() and C.running(), "A and C still run")
ok(wait_views(cl, VIEW, 1) is not None, "nobody was evicted (long --peer-timeout)", views_diag(cl))

# --- healed: A delivers again; B's relay mode ends ---------------------------
fw.heal()
p = kv(A, "PUT", "after-heal", meta=last, value="h", put=True)
is_(p.status, 201, "PUT after-heal at A -> 201")
ok(wait_until(lambda: has(C, "after-heal", meta_of(p), "h"), 35), "C gets A's writes after the heal",
   log_excerpt(cl))


def quiet_relay():
    """Write at A, wait until C has it; True if B shipped nothing for it."""
    before = shipped(B)
    q = kv(A, "PUT", "quiet", value="q%d" % time.monotonic_ns(), put=True)
    if not wait_until(lambda: (lambda g: g is not None and g.status == 200)(try_kv(C, "GET", "quiet", meta_of(q))), 5):
        return False
    # B relays only after 50 ms without delivery; give it a clock report's time
    t = time.monotonic()
    while time.monotonic() - t < 0.4:
        if shipped(B) != before:
            return False
        time.sleep(0.05)
    return True


# relay mode lasts 1 s past the last evidence; poll until a write is not relayed
ok(wait_until(quiet_relay, 40, 0.1), "after the heal B stops relaying A's writes",
   "shipped by B: %s\n%s" % (shipped(B), log_excerpt(cl)))

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl.replicas:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
