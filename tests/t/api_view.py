#!/usr/bin/env python3
"""/view API of a single replica (api.md "View operations" and the /view
rows of the error table).  Addresses: 127.0.0.10 (the replica); PUT /view
bodies name 127.0.0.250-252:8090, where no test listens."""

from kvstest import (Replica, request, ok, is_, done, expect, check_json_headers)

ME = "127.0.0.10:8090"
OTHER = "127.0.0.250:8090"
OTHER2 = "127.0.0.251:8090"
NO_ADDR = b'{"error": "Request does not specify a socket-address"}'

r = Replica("127.0.0.10", workers=2).wait_ready(10)

g = request(r, "GET", "/view")
expect(g, 200, b'{"view": ["127.0.0.10:8090"]}', "GET /view names only itself")
check_json_headers(g, "GET /view")

p = request(r, "PUT", "/view", body={"socket-address": OTHER})
expect(p, 201, b'{"result": "added"}', "PUT /view new replica -> 201 added")
check_json_headers(p, "PUT /view")

p = request(r, "PUT", "/view", body={"socket-address": OTHER})
expect(p, 200, b'{"result": "already present"}', "PUT /view again -> 200 already present")

p = request(r, "PUT", "/view", body={"socket-address": ME})
expect(p, 200, b'{"result": "already present"}', "PUT /view of itself -> 200 already present")

g = request(r, "GET", "/view")
is_((g.status, g.json), (200, {"view": [ME, OTHER]}), "GET /view shows both, in order")
expect(g, 200, b'{"view": ["127.0.0.10:8090", "127.0.0.250:8090"]}',
       "GET /view body byte-exact")

# the change is visible to every worker: fresh connections, 20 times
views = set()
for i in range(20):
    g = request(r, "GET", "/view")
    views.add((g.status, g.raw))
is_(views, {(200, b'{"view": ["127.0.0.10:8090", "127.0.0.250:8090"]}')},
    "20 GET /view over fresh connections all see the added replica")

d = request(r, "DELETE", "/view", body={"socket-address": OTHER})
expect(d, 200, b'{"result": "deleted"}', "DELETE /view present -> 200 deleted")
check_json_headers(d, "DELETE /view")

d = request(r, "DELETE", "/view", body={"socket-address": OTHER})
expect(d, 404, b'{"error": "View has no such replica"}', "DELETE /view again -> 404")
check_json_headers(d, "DELETE /view 404")

d = request(r, "DELETE", "/view", body={"socket-address": OTHER2})
expect(d, 404, b'{"error": "View has no such replica"}', "DELETE /view never known -> 404")

views = set()
for i in range(20):
    g = request(r, "GET", "/view")
    views.add((g.status, g.raw))
is_(views, {(200, b'{"view": ["127.0.0.10:8090"]}')},
    "20 GET /view over fresh connections all see the deletion")

# add two, delete the first: order of the rest is kept
expect(request(r, "PUT", "/view", body={"socket-address": OTHER}), 201,
       b'{"result": "added"}', "re-add after delete -> 201 added")
expect(request(r, "PUT", "/view", body={"socket-address": OTHER2}), 201,
       b'{"result": "added"}', "add a second one -> 201 added")
g = request(r, "GET", "/view")
is_((g.status, g.json), (200, {"view": [ME, OTHER, OTHER2]}), "view of three in order")
expect(request(r, "DELETE", "/view", body={"socket-address": OTHER}), 200,
       b'{"result": "deleted"}', "delete the middle one")
g = request(r, "GET", "/view")
is_((g.status, g.json), (200, {"view": [ME, OTHER2]}), "remaining view in order")
expect(request(r, "DELETE", "/view", body={"socket-address": OTHER2}), 200,
       b'{"result": "deleted"}', "delete the last added one")

# malformed socket-address -> 400, for PUT and DELETE
bad_bodies = [
    ("missing socket-address", dict(body={})),
    ("other key only", dict(body={"address": OTHER})),
    ("socket-address not a string", dict(body={"socket-address": 8090})),
    ("socket-address null", dict(body={"socket-address": None})),
    ("socket-address a list", dict(body={"socket-address": [OTHER]})),
    ("socket-address \"nonsense\"", dict(body={"socket-address": "nonsense"})),
    ("socket-address without port", dict(body={"socket-address": "1.2.3.4"})),
    ("socket-address port 99999", dict(body={"socket-address": "1.2.3.4:99999"})),
    ("socket-address port 0", dict(body={"socket-address": "1.2.3.4:0"})),
    ("socket-address empty", dict(body={"socket-address": ""})),
    ("socket-address bad IP", dict(body={"socket-address": "1.2.3.256:8090"})),
    ("body not JSON", dict(raw_body=b"socket-address=1.2.3.4:8090")),
    ("body truncated JSON", dict(raw_body=b'{"socket-address": "1.2.3.4:8090"')),
    ("body a JSON string", dict(raw_body=b'"1.2.3.4:8090"')),
    ("body a JSON array", dict(raw_body=b'["1.2.3.4:8090"]')),
    ("no body", dict()),
]
for method in ("PUT", "DELETE"):
    for name, kw in bad_bodies:
        resp = request(r, method, "/view", **kw)
        expect(resp, 400, NO_ADDR, "%s /view %s -> 400" % (method, name))

g = request(r, "GET", "/view")
expect(g, 200, b'{"view": ["127.0.0.10:8090"]}', "bad requests did not change the view")

for method in ("POST", "PATCH"):
    resp = request(r, method, "/view", body={"socket-address": OTHER})
    expect(resp, 405, b'{"error": "Method not allowed"}', "%s /view -> 405" % method)
    check_json_headers(resp, "%s /view" % method)

g = request(r, "GET", "/view")
expect(g, 200, b'{"view": ["127.0.0.10:8090"]}', "POST/PATCH did not change the view")

# no crash: same workers as at start, still answers
ok(r.running() and request(r, "GET", "/health").status == 200, "replica still serving")
is_(len(r.workers_list()), 2, "two workers")
is_(r.stop(), 0, "SIGTERM -> exit 0")
done()
