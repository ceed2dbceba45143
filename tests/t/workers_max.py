#!/usr/bin/env python3
"""--workers at its bound: every worker, the replicator and the persister
(with --data-dir) own one of the 128 process slots (the master's child
table, the RCU reader table, the stats table), so 126 workers is the
maximum.  kvsd with 126 workers serves,
counts every worker's requests and respawns the child in the last slot;
--workers 127 (flag or KVSD_WORKERS) is a one-line config error, exit 78,
naming its source and the range.
Addresses: 127.0.0.150 (127.0.0.151 only for `kvsd -n`)."""

import os
import signal

from kvstest import (Replica, run_kvsd, request, ok, is_, done, diag, wait_until,
                     EX_CONFIG)

MAX = 126
A150, A151 = "127.0.0.150:8090", "127.0.0.151:8090"


def refused(args, env, source, name):
    p = run_kvsd(args, env=env, timeout=10)
    lines = p.stderr.splitlines()
    ok(p.returncode == EX_CONFIG and len(lines) == 1 and source in lines[0]
       and "from 1 to %d" % MAX in lines[0],
       "%s -> exit 78, one line naming %s and the range 1..%d" % (name, source, MAX),
       "exit status %r\nstderr: %r" % (p.returncode, p.stderr[:500]))


base = ["--address", A150, "--view", A150, "--memory", "32M"]
refused(base + ["--workers", str(MAX + 1)], None, "--workers", "--workers %d" % (MAX + 1))
refused(base, {"KVSD_WORKERS": str(MAX + 1)}, "KVSD_WORKERS", "KVSD_WORKERS=%d" % (MAX + 1))
p = run_kvsd(["-n", "--address", A151, "--view", A151, "--workers", str(MAX)], timeout=10)
ok(p.returncode == 0 and ("%d workers" % MAX) in p.stdout, "kvsd -n --workers %d: configuration OK" % MAX,
   "status %r stdout %r stderr %r" % (p.returncode, p.stdout, p.stderr))

# --- the maximum really runs -----------------------------------------------------------
r = Replica("127.0.0.150", workers=MAX, extra_args=["--memory", "32M"]).wait_ready(90)
# the master forks them one after the other (slowly under sanitizers)
wait_until(lambda: len(r.workers_list()) == MAX and r.replicator() is not None
           and all(c.startswith("kvsd-") for _, c in r.children()), 90)
names = sorted(c for _, c in r.workers_list())
is_(len(names), MAX, "%d workers running" % MAX)
ok(names == sorted("kvsd-worker-%d" % i for i in range(MAX)), "named kvsd-worker-0..%d" % (MAX - 1))
ok(r.replicator() is not None, "and the replicator (process slot %d)" % MAX)

# fresh connections spread over the SO_REUSEPORT group: many workers serve
N = 600
acked, other = 0, {}
for i in range(N):
    resp = request(r, "PUT", "/kvs/k%d" % i, body={"value": i}, timeout=30)
    acked += resp.status == 201
    if resp.status != 201:
        other[resp.status] = other.get(resp.status, 0) + 1
ok(acked == N, "%d PUTs over fresh connections all answered 201" % N, "other answers: %r" % other)
text = request(r, "GET", "/metrics").raw.decode("utf-8", "replace")
served = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("kvsd_requests_total"))
ok(served >= N, "/metrics counts every worker's requests (%d >= %d)" % (served, N))

# the children in the last slots die and come back
old_repl = r.replicator()
old_last = [(p, c) for p, c in r.workers_list() if c == "kvsd-worker-%d" % (MAX - 1)]
for pid, _ in [old_repl] + old_last:
    os.kill(pid, signal.SIGKILL)
ok(wait_until(lambda: r.replicator() is not None and r.replicator()[0] != old_repl[0], 10),
   "the replicator (slot %d) SIGKILLed is respawned" % MAX)
ok(wait_until(lambda: any(c == "kvsd-worker-%d" % (MAX - 1) and p != old_last[0][0]
                          for p, c in r.workers_list()), 10),
   "worker %d (slot %d) SIGKILLed is respawned" % (MAX - 1, MAX - 1))
ok(wait_until(lambda: request(r, "GET", "/ready").status == 200, 10), "ready again")
got = sum(request(r, "GET", "/kvs/k%d" % i).json.get("value") == i for i in range(0, N, 7))
is_(got, len(range(0, N, 7)), "the written keys read back")
resp = request(r, "GET", "/internal/check")
is_(resp.status, 200, "GET /internal/check: store consistent")
is_(r.stop(15), 0, "SIGTERM: exit 0")
diag("log tail:\n" + r.log_tail(3))

done()
