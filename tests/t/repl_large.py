#!/usr/bin/env python3
"""Large values and large state transfers (issue 12, item 1 and the
snapshot bullet of item 5).

1. Values around the replicator's buffer boundaries (its log-record
   buffer starts at 64 KiB) and up to --max-body replicate byte-exact to
   every replica: 64 KiB - 1, 64 KiB + 1, 200 KiB and the largest value
   whose PUT body fits --max-body (one byte more is 413).
2. A backlog mixing a max-size value with many small writes (A isolated
   while it takes them, then healed) replicates: its first catch-up batch
   carries small writes and the big one together.
3. With a small --max-body (64 KiB) a backlog larger than what a peer's
   libh2o accepts (2 x --max-body + 64 KiB) is split into batches that fit;
   nothing is answered 413 and nobody is evicted.
4. A joining replica whose state transfer fails (here: the snapshot is
   larger than its --memory, so the response limit, sized from --memory,
   refuses it) keeps answering 503 and pulls again, logging why; it never
   reports /ready with a partial or empty store.  Once the snapshot fits
   (most keys deleted at the source) it joins with exactly the source's
   state.

Addresses: 127.0.0.130-132 (sections 1, 2), 127.0.0.133-135 (section 3),
127.0.0.136-137 (section 4), port 8090; client 127.0.0.100 (exempt from
the firewall).
"""
import random

from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)
from kvstest import Session

MAX_BODY = 1 << 20
FAST = ["--readmit-delay", "300", "--probe-interval", "50"]


def pattern(n, seed):
    """A JSON string value of exactly n bytes (quotes included)."""
    rnd = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ "
    return b'"' + bytes(rnd.choice(alphabet) for _ in range(n - 2)) + b'"'


def put_raw(addr, key, value, session=None):
    body = b'{"value":' + value + b'}'
    if session is not None:
        return session.request("PUT", "/kvs/" + key, raw_body=body)
    return request(addr, "PUT", "/kvs/" + key, raw_body=body, timeout=10)


def get_text(r, key):
    try:
        return value_text(request(r, "GET", "/kvs/" + key, timeout=5))
    except NET_ERRORS:
        return None


def replicated(reps, want, timeout):
    """Wait until every replica holds every key of want with the exact
    bytes; returns the list of (replica, key) still missing."""
    def missing():
        return [(r.addr, k) for r in reps for k, v in want.items() if get_text(r, k) != v]
    wait_until(lambda: not missing(), timeout, interval=0.2)
    return missing()


def log_marks(reps):
    return {r.addr: len(r.log_text()) for r in reps}


def log_hits(reps, text, since=None):
    """Replicas whose log (from the mark since, if given) contains text."""
    return [r.addr for r in reps if text in r.log_text()[(since or {}).get(r.addr, 0):]]


def no_rejections(reps, what):
    ok(not log_hits(reps, "rejected a malformed replication batch"),
       "%s: no replica rejected a batch as malformed" % what, log_excerpt(reps))
    ok(not log_hits(reps, "to a replication batch"),
       "%s: no replica answered a batch with an error (no eviction)" % what, log_excerpt(reps))


fw = Firewall().open()

# --- 1. sizes around the boundaries, up to --max-body ------------------------
IPS = ["127.0.0.130", "127.0.0.131", "127.0.0.132"]
cl = Cluster(IPS, workers=2, extra_args=["--memory", "64M", "--max-body", str(MAX_BODY)] + FAST)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 10), "cluster 1 ready", log_excerpt(cl))
ok(wait_views(cl, cl.replicas, 5) is not None, "cluster 1 views full", views_diag(cl))

want = {}
for n, name in [(65535, "64k-1"), (65536, "64k"), (65537, "64k+1"), (204800, "200k"),
                (MAX_BODY - 10, "max")]:
    v = pattern(n, name)
    p = put_raw(A, name, v)
    is_(p.status, 201, "PUT %s (%d-byte value, %d-byte body) at A -> 201" % (name, n, n + 10))
    want[name] = v
p = put_raw(A, "over", pattern(MAX_BODY - 9, "over"))
expect(p, 413, b'{"error": "Request body too large"}', "a body of --max-body + 1 bytes -> 413")
miss = replicated(cl.replicas, want, 10)
ok(not miss, "every value is byte-identical on every replica", "missing: %r\n%s" % (miss, log_excerpt(cl)))
no_rejections(cl.replicas, "sizes")

# --- 2. a backlog mixing a max-size value with small writes ------------------
mark = log_marks(cl.replicas)
fw.isolate(A.ip)
s = Session(A)
for i in range(400):
    if i == 200:
        v = pattern(MAX_BODY - 10, "mixed-big")
        p = put_raw(A, "mixed-big", v, s)
        want["mixed-big"] = v
    else:
        v = b'"small-%d"' % i
        p = put_raw(A, "s%d" % i, v, s)
        want["s%d" % i] = v
    if p.status not in (200, 201):
        break
s.close()
is_(p.status, 201, "400 writes at isolated A, one of them --max-body-sized -> 201")
fw.heal(A.ip)
miss = replicated(cl.replicas, want, 15)
ok(not miss, "after the heal, the backlog (big value among small writes) is everywhere, byte-identical",
   "missing %d, first: %r\n%s" % (len(miss), miss[:5], log_excerpt(cl)))
ok(not log_hits(cl.replicas, "rejected a malformed replication batch", mark),
   "backlog: no replica rejected a batch as malformed", log_excerpt(cl))
ok(not log_hits(cl.replicas, "answered 4", mark), "backlog: no batch was answered 4xx", log_excerpt(cl))
cl.stop()

# --- 3. a backlog larger than a peer accepts in one request ------------------
SMALL_BODY = 65536
IPS3 = ["127.0.0.133", "127.0.0.134", "127.0.0.135"]
cl3 = Cluster(IPS3, workers=2, extra_args=["--memory", "64M", "--max-body", str(SMALL_BODY)] + FAST)
cl3.wait_ready(10)
A3 = cl3.replicas[0]
ok(wait_all_ready(cl3, 10), "cluster 3 (--max-body 64 KiB) ready", log_excerpt(cl3))
ok(wait_views(cl3, cl3.replicas, 5) is not None, "cluster 3 views full", views_diag(cl3))
fw.isolate(A3.ip)
want3 = {}
s = Session(A3)
for i in range(1500):
    if i % 500 == 250:
        k, v = "big-%d" % i, pattern(SMALL_BODY - 10, i)
    else:
        k, v = "k%d" % i, b'"%s"' % (b"%d-" % i * 30)[:100]
    p = put_raw(A3, k, v, s)
    want3[k] = v
    if p.status not in (200, 201):
        break
s.close()
is_(p.status, 201, "1500 writes (%d KiB, 3 of --max-body size) at isolated A -> 201"
    % (sum(len(v) for v in want3.values()) // 1024))
fw.heal(A3.ip)
miss = replicated(cl3.replicas, want3, 20)
ok(not miss, "the backlog reaches every replica in batches a peer accepts",
   "missing %d, first: %r\n%s" % (len(miss), miss[:5], log_excerpt(cl3)))
ok(not log_hits(cl3.replicas, "answered 413"), "no batch was answered 413", log_excerpt(cl3))
cl3.stop()

# --- 4. a state transfer that fails never makes a replica ready --------------
SRC, NEW = "127.0.0.136:8090", "127.0.0.137:8090"
S = Replica("127.0.0.136", view=[SRC, NEW], extra_args=["--memory", "64M", "--log-size", "2200000",
                                                         "--join-grace", "0"] + FAST)
S.wait_ready(10)
ok(wait_until(lambda: is_ready(S), 10), "source replica ready alone", S.log_tail())
want4 = {}
s = Session(S)
for i in range(24):
    v = pattern(MAX_BODY - 10, "snap-%d" % i)
    try:
        p = put_raw(S, "snap%d" % i, v, s)
    except OSError as e:  # the keep-alive connection went away: once more, afresh
        diag("PUT snap%d: %r; again on a new connection" % (i, e))
        s.close()
        s = Session(S)
        p = put_raw(S, "snap%d" % i, v, s)
    want4["snap%d" % i] = v
s.close()
is_(p.status, 201, "24 MiB written at the source (64 MiB store)")
N = Replica("127.0.0.137", view=[SRC, NEW], extra_args=["--memory", "16M"] + FAST)
N.wait_ready(10)
# for at least 3 s and until it has failed twice (at most 10 s), poll
# /ready every 100 ms: it must never say ready
ready_seen, t0 = False, time.monotonic()
for _ in range(100):
    if is_ready(N):
        ready_seen = True
        break
    if time.monotonic() - t0 >= 3 and N.log_text().count("not ready, pulling again") >= 2:
        break
    time.sleep(0.1)
ok(not ready_seen, "a replica whose snapshot exceeds its store is never /ready", N.log_tail())
g = try_kv(N, "GET", "snap0")
ok(g is not None and g.status == 503, "... and answers kvs requests 503", "got %r" % g)
ok("snapshot failed: response too large" in N.log_text(), "it logs why the transfer failed", N.log_tail())
ok(N.log_text().count("not ready, pulling again") >= 2, "it pulls again (at least twice)", N.log_tail())

# make the snapshot fit: delete all but two keys at the source
for i in range(2, 24):
    d = kv(S, "DELETE", "snap%d" % i)
    if d.status != 200:
        break
    del want4["snap%d" % i]
is_(d.status, 200, "22 keys deleted at the source")
ok(wait_until(lambda: is_ready(N), 25), "the next pull fits: the new replica is /ready", N.log_tail())
miss = replicated([N], want4, 5)
ok(not miss, "it holds the source's values byte-identical", "missing %r\n%s" % (miss, N.log_tail()))
gone = [i for i in range(2, 24) if getattr(try_kv(N, "GET", "snap%d" % i), "status", None) != 404]
ok(not gone, "and none of the deleted keys", "present: %r" % gone)

done()
