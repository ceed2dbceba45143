"""repltest - helpers shared by the replication tests (tests/t/repl_*.py):
kvs requests carrying causal metadata, retries bounded in count and time,
view and map comparisons.  `from repltest import *` also brings the
kvstest names they use."""
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


NOT_FOUND = b'{"error": "Key does not exist"}'


def course_partition(cl, fw, VIEW):
    """Scenario (a) of tests/t/repl_partition.py, the course's causal test,
    shared with tests/t/causal_wait_course.py: cut B for 1 s, write at A,
    reconnect; for 1.5 s B answers 503 to the new metadata and 200 'old' to
    the old one, then it is re-admitted within 6 s and serves 'new'.
    cl holds A, B, C; fw is an open Firewall.  Returns M2."""
    A, B, C = cl.replicas
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
    return M2
