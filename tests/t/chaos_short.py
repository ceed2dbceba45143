#!/usr/bin/env python3
"""Short chaos profile (part of make check): tests/chaos/chaos.py for 60 s
with a fixed seed on 5 replicas (127.0.0.110-114, client 127.0.0.100), then
one TAP line per checker property (protocol, causal, no_lost_writes,
convergence, store_check, availability) and a bound on the lost writes
the checker excused: at most MAX_LOST_FRACTION of the acknowledged writes
(the profile's schedule kills no replica within its shipping window after a
partition, so it loses none; the 10-minute runs lost at most 0.05%).  The
full 10-minute run is `make chaos`; see doc/reliability.md.  CHAOS_SEED /
CHAOS_DURATION / CHAOS_MAX_LOST_FRACTION override the profile."""

import json
import os
import signal
import subprocess
import sys
import time

import kvstest
from kvstest import ok, diag, done, tmpdir

SEED = int(os.environ.get("CHAOS_SEED", "20261123"))
DURATION = float(os.environ.get("CHAOS_DURATION", "60"))
MAX_LOST_FRACTION = float(os.environ.get("CHAOS_MAX_LOST_FRACTION", "0.005"))
HERE = os.path.dirname(os.path.abspath(__file__))
CHAOS = os.environ.get("CHAOS_PY") or os.path.join(HERE, "..", "chaos", "chaos.py")
if not os.path.exists(CHAOS) and os.environ.get("KVSD_SRCDIR"):
    CHAOS = os.path.join(os.environ["KVSD_SRCDIR"], "tests", "chaos", "chaos.py")

out = os.path.join(tmpdir(), "chaos")
cmd = [sys.executable, CHAOS, "--seed", str(SEED), "--duration", str(DURATION),
       "--replicas", "5", "--out", out]
diag("running: %s" % " ".join(cmd))
child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _forward(signum, frame):
    # chaos.py cleans up its replicas and its iptables chain on SIGTERM
    try:
        child.send_signal(signal.SIGTERM)
        child.wait(15)
    except Exception:
        pass
    kvstest._fatal("killed by signal %d" % signum)


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, _forward)

t0 = time.monotonic()
try:
    output, _ = child.communicate(timeout=DURATION + 300)
except subprocess.TimeoutExpired:
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=30)
    ok(False, "chaos.py finished within %.0f s" % (DURATION + 300))
output = output.decode("utf-8", "replace")
rc = child.returncode
diag("chaos.py exit status %s after %.0f s" % (rc, time.monotonic() - t0))
# the summary without the rules block
text = output.split("=== chaos summary ===", 1)
diag(text[1] if len(text) == 2 else output[-6000:])

summary = None
try:
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
except (OSError, ValueError) as e:
    diag("no summary: %r" % e)
ok(summary is not None and rc in (0, 1), "chaos.py ran and the checker produced a summary (status %s)" % rc,
   output[-3000:])
props = (summary or {}).get("properties", {})
for p in ("protocol", "causal", "no_lost_writes", "convergence", "store_check", "availability"):
    ok(props.get(p) is True, "checker property %s" % p)
if summary:
    acked, lost = summary.get("acked_writes", 0), summary.get("lost_writes")
    ok(isinstance(lost, int) and acked > 0 and lost <= MAX_LOST_FRACTION * acked,
       "excused lost writes: %s of %d acknowledged (at most %.1f%%)" % (lost, acked, 100 * MAX_LOST_FRACTION))
    ok(summary.get("operations", 0) > 1000 and sum(summary.get("faults", {}).values()) >= 10,
       "the run did something: %d operations, %d faults" % (summary.get("operations", 0),
                                                            sum(summary.get("faults", {}).values())))
rules = kvstest.iptables("-S", check=False).stdout.decode()
ok(" KVST%d " % child.pid not in rules and "-N KVST%d" % child.pid not in rules,
   "chaos.py removed its iptables chain")
done()
