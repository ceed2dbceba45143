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
