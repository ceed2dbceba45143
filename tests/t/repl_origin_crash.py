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
# ---- helpers shared by the repl_*.py tests (copied into each file so every
# ---- file stays standalone)
import json
import signal
import threading
import time

from kvstest import (Replica, Cluster, Firewall, request, ok, is_, diag, done,
                     expect, wait_until)

ERR503 = b'{"error": "Causal dependencies not satisfied; try again later"}'
NET_ERRORS = (OSError, __import__("http.client").client.HTTPException)


def kv(addr, method, key, meta=None, value=None, put=False, timeout=3):
    """One kvs request carrying `meta` (and `value` for PUT)."""
    body = {"causal-metadata": meta}
    if put:
        body["value"] = value
    return request(addr, method, "/kvs/" + key, body=body, timeout=timeout)


def try_kv(*a, **kw):
    """kv() that returns None instead of raising on network errors."""
    try:
        return kv(*a, **kw)
    except NET_ERRORS:
        return None


def kv_retry(*a, **kw):
    """kv() retried every 50 ms for at most 3 s (at most 60 tries) while the
    answer is 503 or a network error; returns the last response (or None)."""
    r = None
    deadline = time.monotonic() + 3.0
    kw.setdefault("timeout", 1)
    for _ in range(60):
        r = try_kv(*a, **kw)
        if r is not None and r.status != 503:
            return r
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return r


def meta_of(r):
    if r is not None and isinstance(r.json, dict):
        return r.json.get("causal-metadata")
    return None


def covers(a, b):
    """Clock a >= clock b component-wise (missing entries are 0)."""
    a = a or {}
    b = b or {}
    return all(a.get(k, 0) >= v for k, v in b.items())


def value_text(r):
    """The raw JSON text of "value" in a 200 GET body (byte-exact)."""
    pre = b'{"result": "found", "value": '
    post = b', "causal-metadata": '
    if r is None or r.status != 200 or not r.raw.startswith(pre):
        return None
    end = r.raw.rfind(post)
    return r.raw[len(pre):end] if end > 0 else None


def view_of(r):
    try:
        g = request(r, "GET", "/view", timeout=2)
    except NET_ERRORS:
        return None
    if g.status != 200 or not isinstance(g.json, dict):
        return None
    return tuple(sorted(g.json.get("view") or []))


def is_ready(r):
    try:
        return request(r, "GET", "/ready", timeout=2).status == 200
    except NET_ERRORS:
        return False


def wait_all_ready(reps, timeout=10):
    return wait_until(lambda: all(is_ready(r) for r in reps), timeout)


def wait_views(reps, want, timeout, interval=0.05):
    """Poll until every replica in reps reports exactly the set `want`.
    Returns the elapsed time, or None on timeout."""
    want = tuple(sorted(x.addr if isinstance(x, Replica) else x for x in want))
    t0 = time.monotonic()
    if wait_until(lambda: all(view_of(r) == want for r in reps), timeout, interval):
        return time.monotonic() - t0
    return None


def views_diag(reps):
    return "\n".join("%s view=%s" % (r.addr, view_of(r)) for r in reps)


def metrics(r):
    try:
        m = request(r, "GET", "/metrics", timeout=2)
    except NET_ERRORS:
        return {}
    out = {}
    for line in m.raw.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


def store_map(r, keys):
    """{key: (status, raw value text)} read without metadata; None on a
    network error."""
    out = {}
    for k in keys:
        g = try_kv(r, "GET", k, timeout=2)
        if g is None:
            return None
        out[k] = (g.status, value_text(g))
    return out


def wait_converged(reps, keys, timeout):
    """Poll until every replica returns the same map for keys (and the
    same kvsd_keys).  Returns (elapsed or None, last maps)."""
    t0 = time.monotonic()
    last = {}

    def same():
        maps = [store_map(r, keys) for r in reps]
        last["maps"] = maps
        if any(m is None for m in maps):
            return False
        if any(s not in (200, 404) for m in maps for s, _ in m.values()):
            return False
        if not all(m == maps[0] for m in maps):
            return False
        nk = [metrics(r).get("kvsd_keys") for r in reps]
        last["kvsd_keys"] = nk
        return len(set(nk)) == 1 and nk[0] == sum(1 for s, _ in maps[0].values() if s == 200)

    if wait_until(same, timeout, 0.2):
        return time.monotonic() - t0, last
    return None, last


def map_diff(reps, maps, limit=10):
    lines = []
    if not maps or any(m is None for m in maps):
        return "some replica did not answer"
    for k in sorted(maps[0]):
        vals = [m.get(k) for m in maps]
        if any(v != vals[0] for v in vals):
            lines.append("%s: %s" % (k, ", ".join("%s=%s" % (r.ip, v) for r, v in zip(reps, vals))))
            if len(lines) >= limit:
                break
    return "\n".join(lines)


def log_excerpt(reps, n=15):
    return "\n".join("--- %s log tail:\n%s" % (r.addr, r.log_tail(n)) for r in reps)
# ---- end of shared helpers

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
ok(not A.group(), "(a) A's process group is gone after kill -9", repr(A.group()))
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
