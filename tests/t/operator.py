#!/usr/bin/env python3
"""Issue 14, what an operator trips over: error messages name the source
the user set (flag or variable) and show ranges as the user writes them,
-n opens the log file and checks --memory against the system, 0.0.0.0 is
refused as --address, bundled short options, POST /health -> 405, the
open-files limit is raised at startup (with a warning when it cannot be).
Logs and metrics: access-log lines with fields and latency, /internal/
left out unless --access-log=all, logfmt/JSON fields, kvsd_build_info and
process_start_time_seconds.
Addresses: 127.0.0.200 (runs), 127.0.0.201 (kvsd -n and refused starts;
nothing listens), 127.0.0.202-203 (a pair whose heartbeats feed the access
log)."""

import json
import os
import re
import resource
import time

from kvstest import (Replica, run_kvsd, request, ok, is_, done, diag, wait_until, tmpdir,
                     EX_CONFIG)

A200, A201 = "127.0.0.200:8090", "127.0.0.201:8090"
BASE = ["--address", A201, "--view", A201]


def config_error(args, env, name, must=(), must_not=()):
    p = run_kvsd(args, env=env, timeout=10)
    lines = p.stderr.splitlines()
    good = p.returncode == EX_CONFIG and len(lines) == 1 and all(m in p.stderr for m in must) \
        and not any(m in p.stderr for m in must_not)
    ok(good, "%s -> exit 78, one line naming %s" % (name, ", ".join(must) or "the problem"),
       "status %r stderr %r" % (p.returncode, p.stderr[:400]))
    return p


# -- the source the user set, ranges as the user writes them ---------------
config_error(BASE + ["--listen", "127.0.0.201"], {"KVSD_LISTEN": A201}, "--listen 127.0.0.201",
             must=("--listen",), must_not=("KVSD_LISTEN",))
config_error(BASE, {"KVSD_MEMORY": "5Q"}, "KVSD_MEMORY=5Q", must=("KVSD_MEMORY",), must_not=("--memory",))
config_error(BASE + ["--memory", "1"], None, "--memory 1", must=("8M to 1T",))
config_error(BASE + ["--heartbeat", "5"], None, "--heartbeat 5", must=("10ms to 600s",))

# -- 0.0.0.0 is not an address a peer can reach ---------------------------
config_error(["-a", "0.0.0.0:8090", "-v", "0.0.0.0:8090"], None, "-a 0.0.0.0:8090 -v 0.0.0.0:8090",
             must=("--address", "0.0.0.0"))

# -- -n checks what a start needs ------------------------------------------
config_error(BASE + ["--log-file", "/nonexistent/dir/x.log", "-n"], None, "-n with a log file in a missing dir",
             must=("/nonexistent/dir/x.log",))
config_error(BASE + ["--log-file", "/nonexistent/dir/x.log"], None, "a start with that log file",
             must=("/nonexistent/dir/x.log",))
pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
if pages * page < (512 << 30) - (64 << 30):  # RAM (+ a generous guess at swap) below 512G
    config_error(BASE + ["--memory", "512G", "-n"], None, "-n --memory 512G on a %dG host" % (pages * page >> 30),
                 must=("--memory 512G",))
    config_error(BASE + ["--memory", "512G"], None, "a start with --memory 512G", must=("--memory 512G",))
log = os.path.join(tmpdir(), "checked.log")
p = run_kvsd(BASE + ["--log-file", log, "-n"], timeout=10)
ok(p.returncode == 0 and "configuration OK" in p.stdout and os.path.exists(log),
   "-n with a writable log file: OK, and the file was opened", "status %r %r" % (p.returncode, p.stderr))

# -- bundled short options, as the synopsis [-hnV] suggests ----------------
p = run_kvsd(BASE + ["-nV"], timeout=10)
ok(p.returncode == 0 and p.stdout.startswith("kvsd "), "-nV is accepted (-V wins: prints the version)",
   "status %r stdout %r stderr %r" % (p.returncode, p.stdout, p.stderr))
p = run_kvsd(BASE + ["-nw3"], timeout=10)
ok(p.returncode == 0 and "3 workers" in p.stdout, "-nw3 is -n -w 3", "status %r stdout %r stderr %r"
   % (p.returncode, p.stdout, p.stderr))

# -- the open-files limit, raised at startup -------------------------------
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 4096 + 64
if hard != resource.RLIM_INFINITY and hard < need + 100:
    diag("hard open-files limit %d: limit tests need %d" % (hard, need + 100))
    ok(False, "the hard open-files limit is high enough for this test")
else:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        r = Replica("127.0.0.200", workers=1).wait_ready(10)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def soft_limit(pid):
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return None

    w = r.workers_list()[0][0]
    is_(soft_limit(w), need, "a soft limit of 256 is raised to --max-connections 4096 + 64 (worker %d)" % w)
    ok("open-files limit" not in r.log_text(), "no warning when it fits", r.log_tail(5))

    # /health and friends: read-only
    for path in ("/health", "/ready", "/metrics"):
        g = request(r, "POST", path, raw_body=b"x")
        ok(g.status == 405 and g.json == {"error": "Method not allowed"}, "POST %s -> 405" % path, g.describe())
    is_(request(r, "DELETE", "/health").status, 405, "DELETE /health -> 405")
    is_(request(r, "GET", "/health").status, 200, "GET /health still 200")
    is_(request(r, "HEAD", "/health").status, 200, "HEAD /health 200")
    is_(r.stop(), 0, "stopped")

    # a --max-connections beyond the hard limit: started, with a warning
    big = hard - 64 + 1000 if hard != resource.RLIM_INFINITY else None
    if big is not None and big <= 1000000:
        r = Replica("127.0.0.200", workers=1, extra_args=["--max-connections", str(big)]).wait_ready(10)
        ok(wait_until(lambda: "open-files limit is %d" % hard in r.log_text(), 5),
           "--max-connections %d over the hard limit %d: a warning naming the limit" % (big, hard),
           r.log_tail(5))
        is_(soft_limit(r.workers_list()[0][0]), hard, "the soft limit is raised to the hard limit")
        is_(r.stop(), 0, "stopped")
# -- access log: fields, latency, /internal/ only when asked ---------------
def access_lines(r):
    return [l for l in r.log_text().splitlines() if 'msg="access"' in l or '"msg":"access"' in l]


def heartbeats_seen(r, n):
    """r has answered at least n /internal/ requests (from /metrics)."""
    g = request(r, "GET", "/metrics")
    m = re.findall(r'kvsd_requests_total\{route="internal",status="200"\} (\d+)', g.raw.decode())
    return m and int(m[0]) >= n


for mode, want_internal in (("--access-log", False), ("--access-log=all", True)):
    pair = [Replica(ip, view=["127.0.0.202", "127.0.0.203"], workers=1, extra_args=[mode])
            for ip in ("127.0.0.202", "127.0.0.203")]
    for r in pair:
        r.wait_ready(15)
    A = pair[0]
    request(A, "PUT", "/kvs/logged", body={"value": 1, "causal-metadata": None})
    ok(wait_until(lambda: heartbeats_seen(A, 10), 10), "%s: A answered 10 peer requests" % mode)
    lines = access_lines(A)
    put = [l for l in lines if "path=/kvs/logged" in l]
    ok(len(put) == 1 and re.search(r" client=127\.0\.0\.100 method=PUT path=/kvs/logged status=201 bytes=\d+ "
                                   r"duration_ms=\d+\.\d{3}$", put[0]),
       "%s: the PUT is one logfmt line with client, method, path, status, bytes, duration_ms" % mode,
       "\n".join(lines[-5:]))
    internal = [l for l in lines if "path=/internal/" in l]
    if want_internal:
        ok(len(internal) >= 10, "%s: the peer's /internal/ requests are logged (%d lines)" % (mode, len(internal)))
    else:
        ok(internal == [] and len(lines) >= 1, "%s: no /internal/ line among %d access lines" % (mode, len(lines)),
           "\n".join(internal[:5]))
    if not want_internal:
        peerlines = [l for l in A.log_text().splitlines() if "127.0.0.203:8090" in l and "access" not in l]
        ok(peerlines and all(re.search(r'msg="[^"]*" .*\bpeer=127\.0\.0\.203:8090\b', l) and
                             'msg="peer=' not in l for l in peerlines),
           "A's lines about its peer carry peer=127.0.0.203:8090 as a field, not inside msg",
           "\n".join(peerlines[:5]))
    if not want_internal:
        # a peer removed from the view takes its series with it
        def series_of_b():
            return [l for l in request(A, "GET", "/metrics").raw.decode().splitlines()
                    if 'peer="127.0.0.203:8090"' in l]
        ok(len(series_of_b()) >= 3, "A's /metrics has B's peer series while B is in the view", repr(series_of_b()))
        d = request(A, "DELETE", "/view", body={"socket-address": "127.0.0.203:8090"})
        is_(d.status, 200, "DELETE /view B on A")
        ok(wait_until(lambda: series_of_b() == [], 3), "B's series leave A's /metrics with it", repr(series_of_b()))
    for r in pair:
        is_(r.stop(), 0, "%s: %s stopped" % (mode, r.ip))

# JSON: the same fields, typed
r = Replica("127.0.0.200", workers=1, extra_args=["--access-log", "--log-format", "json"]).wait_ready(10)
request(r, "GET", "/kvs/nothing-here")
ok(wait_until(lambda: any('"path":"/kvs/nothing-here"' in l for l in r.log_text().splitlines()), 3),
   "json access line written")
recs = []
for l in r.log_text().splitlines():
    try:
        recs.append(json.loads(l))
    except ValueError:
        ok(False, "every json log line parses", l)
acc = [j for j in recs if j.get("path") == "/kvs/nothing-here"]
ok(len(acc) == 1 and acc[0].get("msg") == "access" and acc[0].get("status") == 404 and
   acc[0].get("method") == "GET" and isinstance(acc[0].get("bytes"), int) and
   isinstance(acc[0].get("duration_ms"), (int, float)) and acc[0].get("client") == "127.0.0.100",
   "json: access fields are JSON fields (status, bytes, duration_ms numbers)", repr(acc))

# -- metrics: build info and start time ------------------------------------
t_before = time.time()
g = request(r, "GET", "/metrics").raw.decode()
m = re.search(r'^kvsd_build_info\{version="([^"]+)"\} 1$', g, re.M)
ok(m is not None, "kvsd_build_info{version=...} 1", g[:300])
v = run_kvsd(["--version"]).stdout.split()
ok(m is not None and v and m.group(1) == v[-1], "... the version --version prints")
st = re.search(r"^process_start_time_seconds (\d+\.\d+)$", g, re.M)
ok(st is not None and t_before - 60 < float(st.group(1)) <= t_before, "process_start_time_seconds is the start time",
   st.group(0) if st else g[:300])
is_(r.stop(), 0, "json replica stopped")
done()
