#!/usr/bin/env python3
"""The course's causal scenario with --causal-wait 50 (issue 13, item 3):
scenario (a) of repl_partition.py, unchanged but for the flag and the
addresses -- cut B for 1 s, write at A, reconnect; B still answers 503 to
the new metadata (now after waiting 50 ms) for 1.5 s after the
reconnection, until it is re-admitted, then serves it.  A parked request
must not make B answer what it has not applied, nor hide the 503.

Addresses: 127.0.0.226 (A), 127.0.0.227 (B), 127.0.0.228 (C), port 8090;
client 127.0.0.100 (exempt from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

IPS = ["127.0.0.226", "127.0.0.227", "127.0.0.228"]
VIEW = ["%s:8090" % ip for ip in IPS]
FULL = tuple(sorted(VIEW))

cl = Cluster(IPS, workers=2, extra_args=["--causal-wait", "50"])  # default timings otherwise
cl.wait_ready(10)
A, B, C = cl.replicas
ok(wait_all_ready(cl, 5), "all replicas /ready", log_excerpt(cl))
ok(wait_views(cl, VIEW, 5) is not None, "all views full at start", views_diag(cl))
fw = Firewall().open()
NOT_FOUND = b'{"error": "Key does not exist"}'

# ---------------------------------------------------------------------------
# (a) the course's causal scenario
# ---------------------------------------------------------------------------
M2 = course_partition(cl, fw, VIEW)

m = request(B, "GET", "/metrics").raw.decode()
timeouts = [l for l in m.splitlines() if l.startswith('kvsd_causal_park_ended_total{how="timeout"}')]
ok(timeouts and float(timeouts[0].split()[-1]) >= 5,
   "(a) B's 503s came from parked requests whose wait ran out", "\n".join(timeouts))
fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in cl:
    ok(r.running(), "%s still running at the end" % r.addr, r.log_tail())
done()
