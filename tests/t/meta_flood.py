#!/usr/bin/env python3
"""Client metadata never grows server state (issue 12, item 3).

Requests can name any incarnation "IP:PORT/stamp".  A stamp we have no row
for is either met without a row (an older life of an address whose newer
life every view member has reported since, or one below a folded floor) or
answered 503 -- never interned.  Before, three GETs naming 255 older stamps
of a known replica made 255 rows, and a replica joining afterwards got
507 "Too many incarnations" and replication with it stopped.

Addresses: 127.0.0.183 (A), .184 (B), .185 (C), .186 (D, joins late),
port 8090; client 127.0.0.100.
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)
from kvstest import request

IPS = ["127.0.0.183", "127.0.0.184", "127.0.0.185"]
VIEW = ["%s:8090" % ip for ip in IPS]
D_ADDR = "127.0.0.186:8090"

cl = Cluster(IPS, workers=2)
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))


def inc_count(r):
    return metrics(r).get("kvsd_incarnations")


def stamp_of(meta, addr):
    return [int(k.split("/")[1]) for k in meta if k.startswith(addr + "/")]


# two restarts of B, each with a write, so A knows (and folds) older lives
for life in range(2):
    B.kill(signal.SIGKILL)
    ok(wait_until(lambda: not B.group(), 5), "B's group gone after kill -9 (%d)" % life)
    B.start()
    p = kv_retry(B, "PUT", "b-%d" % life, None, value=life, put=True)
    ok(p is not None and p.status == 201, "PUT at restarted B (%d)" % life, repr(p))
    meta = meta_of(p)
    ok(wait_until(lambda: (try_kv(A, "GET", "b-%d" % life, meta) or p).status == 200, 5),
       "A has B's write of life %d" % life, log_excerpt(cl))
cur = stamp_of(meta, B.addr)
ok(1 <= len(cur) <= 2, "B's metadata names its life (and the one before, not folded yet)", repr(meta))
cur = max(cur)
# B's first life may die before A ever hears from it; the second one's
# write reached A, so A knew it and must fold it
ok(wait_until(lambda: metrics(A).get("kvsd_incarnations_folded_total", 0) >= 1, 5),
   "A folded B's earlier lives", repr(metrics(A)))
ok(wait_until(lambda: inc_count(A) == 4, 5), "A's table holds A, B, C and B's floor (4 rows)",
   repr(inc_count(A)))
before = inc_count(A)

# 255 older stamps of B, in three requests of 85: met, no row
older = [cur - 1 - i for i in range(255)]
for chunk in range(3):
    m = {"%s/%d" % (B.addr, s): 1 for s in older[chunk * 85:(chunk + 1) * 85]}
    g = kv(A, "GET", "absent", m)
    is_(g.status, 404, "GET naming 85 older lives of B (%d): met without a row -> 404" % chunk)
is_(inc_count(A), before, "no incarnation row was made for them")
ok("tracking it as retired" not in A.log_text(), "A interned none of them")

# newer stamps (lives we never heard of) and unknown addresses: 503, no row
m = {"%s/%d" % (B.addr, cur + 1 + i): 1 for i in range(200)}
expect(kv(A, "GET", "absent", m), 503, ERR503, "GET naming 200 newer lives of B -> 503")
m = {"127.0.0.%d:%d/7" % (200 + i % 50, 9000 + i): 1 for i in range(250)}
expect(kv(A, "PUT", "k", m, value=1, put=True), 503, ERR503, "PUT naming 250 unknown replicas -> 503")
is_(inc_count(A), before, "still no new row")

# a replica joining afterwards is admitted and replicates both ways
D = Replica("127.0.0.186", view=VIEW + [D_ADDR], workers=2)
D.wait_ready(10)
ok(wait_views([A, B, C, D], VIEW + [D_ADDR], 10) is not None, "D joined every view",
   views_diag([A, B, C, D]))
p = kv_retry(D, "PUT", "from-d", None, value="d", put=True)
ok(p is not None and p.status == 201, "PUT at D", repr(p))
md = meta_of(p)
ok(wait_until(lambda: all((try_kv(r, "GET", "from-d", md) or p).status == 200 for r in cl), 5),
   "D's write reached A, B and C", log_excerpt([A, D]))
p = kv_retry(A, "PUT", "from-a", None, value="a", put=True)
ma = meta_of(p)
ok(wait_until(lambda: (try_kv(D, "GET", "from-a", ma) or p).status == 200, 5),
   "A's write reached D", log_excerpt([A, D]))
ok("Too many incarnations" not in A.log_text() + D.log_text(), "no 507 between A and D")

for r in list(cl) + [D]:
    is_(request(r, "GET", "/internal/check", timeout=10).status, 200, "%s: /internal/check ok" % r.ip)
for r in list(cl) + [D]:
    r.stop()
done()
