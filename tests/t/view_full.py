#!/usr/bin/env python3
"""VIEW_MAX (shm/view.h, 64 members with this replica): PUT /view fills the
view to exactly VIEW_MAX, one more is 507 {"error": "View is full"} and
changes nothing; a member deleted and added again gets its row back.  The
largest GET /view body is byte-exact.
Addresses: 127.0.0.161 (the replica); PUT /view bodies name
127.0.0.178:9001-9099, where nothing listens (--join-grace keeps them in
the view while the test runs)."""

import json

from kvstest import Replica, request, ok, is_, done, expect

VIEW_MAX = 64
ME = "127.0.0.161:8090"
others = ["127.0.0.178:%d" % (9001 + i) for i in range(VIEW_MAX)]  # one more than fits
FULL = b'{"error": "View is full"}'

r = Replica("127.0.0.161", workers=2, extra_args=["--join-grace", "600000"]).wait_ready(10)

statuses = [request(r, "PUT", "/view", body={"socket-address": a}).status for a in others[:VIEW_MAX - 1]]
is_(statuses, [201] * (VIEW_MAX - 1), "%d PUT /view of new members -> 201 each" % (VIEW_MAX - 1))
want = [ME] + others[:VIEW_MAX - 1]
g = request(r, "GET", "/view")
expect(g, 200, ('{"view": [%s]}' % ", ".join('"%s"' % a for a in want)).encode(),
       "GET /view lists exactly VIEW_MAX members, byte-exact")

expect(request(r, "PUT", "/view", body={"socket-address": others[-1]}), 507, FULL,
       "PUT /view of member VIEW_MAX + 1 -> 507 View is full")
expect(request(r, "PUT", "/view", body={"socket-address": others[-1]}), 507, FULL,
       "... and again")
expect(request(r, "PUT", "/view", body={"socket-address": others[5]}), 200,
       b'{"result": "already present"}', "PUT /view of a member of a full view -> 200 already present")
is_(request(r, "GET", "/view").json, {"view": want}, "the refused PUTs changed nothing")

# A member removed by DELETE /view keeps its row (doc/design.md "External
# view changes": it is probed and re-admitted like an evicted peer), so a
# DELETE does not make room for a new address; the same address comes back.
expect(request(r, "DELETE", "/view", body={"socket-address": others[0]}), 200,
       b'{"result": "deleted"}', "DELETE /view of one member -> 200")
is_(request(r, "GET", "/view").json, {"view": [ME] + others[1:VIEW_MAX - 1]},
    "GET /view no longer lists it")
expect(request(r, "PUT", "/view", body={"socket-address": others[0]}), 201,
       b'{"result": "added"}', "PUT /view of the deleted member again -> 201 added")
is_(request(r, "GET", "/view").json, {"view": want}, "GET /view lists it again, in its old place")
expect(request(r, "PUT", "/view", body={"socket-address": others[-1]}), 507, FULL,
       "the view is full again -> 507")

# the replica still works with a full view of dead peers
p = request(r, "PUT", "/kvs/k", body={"value": 1})
ok(p.status == 201, "PUT /kvs/k with a full view -> 201", p.raw)
ok(r.running(), "the replica is still running", r.log_tail())

# /metrics with every row of the view used: whole, never cut short
m = request(r, "GET", "/metrics")
text = m.raw.decode("utf-8", "replace")
lines = text.split("\n")
bad = [l for l in lines[:-1] if l and not l.startswith("#") and len(l.rsplit(" ", 1)) != 2]
ok(m.status == 200 and text.endswith("\n") and not bad, "/metrics with a full view: %d bytes, every line whole" % len(m.raw),
   repr(bad[:3]))
states = [l for l in lines if l.startswith("kvsd_peer_state{")]
is_(len(states), VIEW_MAX, "one kvsd_peer_state series per member")
done()
