#!/usr/bin/env python3
"""Cluster key (api.md; design.md "internal endpoints"): with --cluster-key on
every replica, replication works; /internal/ requests without the
X-Kvsd-Cluster-Key header or with a wrong one get 401 {"error":
"Unauthorized"} and change nothing; the key never appears in a log (even at
debug level with the access log on); a garbage batch with the right key gets
400 and the replica keeps serving.

Addresses: 127.0.0.70 (A), 127.0.0.71 (B), 127.0.0.72 (C), port 8090;
client 127.0.0.100.
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.70", "127.0.0.71", "127.0.0.72"]
VIEW = ["%s:8090" % ip for ip in IPS]
KEY = "kvst-Secr3t-4711-q"       # distinctive, so a grep of the logs is meaningful
HDR = "X-Kvsd-Cluster-Key"
UNAUTH = b'{"error": "Unauthorized"}'

cl = Cluster(IPS, workers=2, extra_args=["--cluster-key", KEY], start=False)
# A logs everything it can
cl[0].extra_args += ["--log-level", "debug", "--access-log=all"]
cl.start()
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))


def has(r, key, meta, value):
    g = try_kv(r, "GET", key, meta, timeout=1)
    return g is not None and g.status == 200 and g.json.get("value") == value


# --- replication works with the key ------------------------------------------
meta = None
for i, r in enumerate(cl):
    p = kv_retry(r, "PUT", "sec-%d" % i, meta, value="v%d" % i, put=True)
    ok(p is not None and p.status == 201, "PUT sec-%d at %s -> 201" % (i, r.ip), repr(p))
    meta = meta_of(p) or meta
ok(wait_until(lambda: all(has(r, "sec-%d" % i, meta, "v%d" % i)
                          for r in cl for i in range(3)), 5),
   "writes at every replica replicate to all (cluster key set everywhere)", log_excerpt(cl))
KEYS = ["sec-0", "sec-1", "sec-2"]
before = {r.addr: store_map(r, KEYS) for r in cl}
before_keys = {r.addr: metrics(r).get("kvsd_keys") for r in cl}

# --- /internal/ without the key, or with a wrong one -> 401, nothing changes ---
GARBAGE = b"KVB1\x00\x01\x02garbage\xff\xfe" * 4
bad_keys = [None, "", "wrong", KEY[:-1], KEY + "x", KEY.upper(), KEY + "," + KEY]
endpoints = [("POST", "/internal/replicate", GARBAGE),
             ("POST", "/internal/replicate", b""),
             ("GET", "/internal/snapshot", None),
             ("GET", "/internal/ping", None),
             ("GET", "/internal/check", None)]
for method, path, body in endpoints:
    for bk in bad_keys:
        hdrs = {"Content-Type": "application/octet-stream"}
        if bk is not None:
            hdrs[HDR] = bk
        what = "no key header" if bk is None else "key %r" % bk
        for r in (A, B):
            try:
                resp = request(r, method, path, raw_body=body, headers=hdrs)
            except NET_ERRORS as e:
                resp = None
                diag("%s %s at %s: %r" % (method, path, r.ip, e))
            ok(resp is not None and resp.status == 401 and resp.raw == UNAUTH,
               "%s %s%s with %s at %s -> 401 Unauthorized" % (
                   method, path, " (%d-byte body)" % len(body) if body is not None else "",
                   what, r.ip),
               "got %r" % (resp,))
# the key in another header is not accepted either
resp = request(A, "GET", "/internal/ping", headers={"X-Cluster-Key": KEY, "Authorization": KEY})
expect(resp, 401, UNAUTH, "the key in another header -> 401")

for r in cl:
    is_(store_map(r, KEYS), before[r.addr], "%s: store unchanged by the refused requests" % r.ip)
    is_(metrics(r).get("kvsd_keys"), before_keys[r.addr], "%s: kvsd_keys unchanged" % r.ip)
ok(wait_views(cl, VIEW, 1) is not None, "views unchanged by the refused requests", views_diag(cl))

# --- with the right key -------------------------------------------------------
resp = request(A, "GET", "/internal/ping", headers={HDR: KEY})
is_(resp.status, 200, "GET /internal/ping with the right key -> 200")
resp = request(A, "GET", "/internal/snapshot", headers={HDR: KEY})
is_(resp.status, 200, "GET /internal/snapshot with the right key -> 200")
for body in (GARBAGE, b"\x00" * 3, b"KVB1", b"{\"value\": 1}"):
    try:
        resp = request(B, "POST", "/internal/replicate", raw_body=body,
                       headers={HDR: KEY, "Content-Type": "application/octet-stream"})
    except NET_ERRORS as e:
        resp = None
    ok(resp is not None and resp.status == 400,
       "POST /internal/replicate with the right key and a garbage %d-byte body -> 400" % len(body),
       "got %r" % (resp,))
ok(B.running(), "B still running after garbage batches", B.log_tail())
is_(store_map(B, KEYS), before[B.addr], "B's store unchanged by the garbage batches")
ok(wait_views(cl, VIEW, 1) is not None, "views still full after the garbage batches",
   views_diag(cl))

# B keeps serving and replicating
p = kv_retry(B, "PUT", "after", meta, value="still-works", put=True)
ok(p is not None and p.status == 201, "B accepts a write after the garbage batches", repr(p))
meta = meta_of(p) or meta
ok(wait_until(lambda: all(has(r, "after", meta, "still-works") for r in cl), 5),
   "and it replicates to every replica", log_excerpt(cl))

# --- the key never appears in a log -------------------------------------------
for r in cl:
    text = r.log_text()
    ok(text.strip() != "", "%s wrote a log" % r.ip)
    ok(KEY not in text and KEY[:-2] not in text, "the cluster key does not appear in %s's log" % r.ip,
       "\n".join(l for l in text.splitlines() if KEY[:-2] in l)[:2000])
ok("/internal/" in A.log_text() or "internal" in A.log_text(),
   "A's access log does record the /internal/ requests (so the grep above means something)",
   A.log_tail(5))

for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
