#!/usr/bin/env python3
"""Startup configuration: exit 78 with one line on stderr for bad config,
flags over env, -n, --version, --help, SIGTERM/SIGINT -> exit 0.
Addresses: 127.0.0.19, 127.0.0.20, 127.0.0.21."""

import re
import signal
import socket
import time

from kvstest import (Replica, run_kvsd, request, ok, is_, done, diag, wait_until,
                     pid_alive, EX_CONFIG)

A19, A20, A21 = "127.0.0.19:8090", "127.0.0.20:8090", "127.0.0.21:8090"


def config_error(args, env, name):
    t0 = time.monotonic()
    p = run_kvsd(args, env=env, timeout=5)
    el = time.monotonic() - t0
    lines = p.stderr.splitlines()
    good = p.returncode == EX_CONFIG and len(lines) == 1 and lines[0].strip() != "" \
        and p.stderr.endswith("\n")
    ok(good, "%s -> exit 78, one line on stderr" % name,
       "exit status %r after %.2f s\nstderr: %r\nstdout: %r" % (
           p.returncode, el, p.stderr[:500], p.stdout[:300]))
    if good:
        diag("  %s" % lines[0][:200])


config_error([], None, "no address, no view")
config_error(["--view", A19], None, "--view but no --address")
config_error([], {"VIEW": A19}, "VIEW env but no SOCKET_ADDRESS")
config_error(["--address", A19], None, "--address but no --view")
config_error([], {"SOCKET_ADDRESS": A19}, "SOCKET_ADDRESS env but no VIEW")
for bad in ("abc", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:70000", "", "1.2.3:8090",
            "127.0.0.19:80x", "127.0.0.19:-1", ":8090"):
    config_error(["--address", bad, "--view", A19], None, "--address %r" % bad)
    config_error([], {"SOCKET_ADDRESS": bad, "VIEW": A19}, "SOCKET_ADDRESS=%r" % bad)
for bad in ("127.0.0.19:8090,bogus", "127.0.0.19:8090,1.2.3.4:70000",
            "127.0.0.19:8090,1.2.3.4", "abc", "127.0.0.19:8090,,127.0.0.20:8090"):
    config_error(["--address", A19, "--view", bad], None, "--view %r" % bad)
    config_error([], {"SOCKET_ADDRESS": A19, "VIEW": bad}, "VIEW=%r" % bad)
base = ["--address", A19, "--view", A19]
config_error(base + ["--bogus-flag"], None, "unknown flag")
config_error(base + ["--workers", "0"], None, "--workers 0")
config_error(base + ["--workers", "abc"], None, "--workers abc")
config_error(base + ["--workers", "-2"], None, "--workers -2")
config_error(base + ["--memory", "1"], None, "--memory 1 (too small)")
config_error(base + ["--memory", "lots"], None, "--memory lots")
config_error(base + ["--max-body", "abc"], None, "--max-body abc")
config_error(base + ["--log-level", "loud"], None, "--log-level loud")
config_error(base + ["--workers"], None, "--workers without a value")
config_error(base, {"KVSD_WORKERS": "0"}, "KVSD_WORKERS=0")
config_error(["-n", "--address", "abc", "--view", A19], None, "-n with a bad address")

# -n: a valid configuration is checked, exit 0, nothing listens
t0 = time.monotonic()
p = run_kvsd(["-n", "--address", A21, "--view", A21], timeout=5)
ok(p.returncode == 0 and time.monotonic() - t0 < 5, "-n with a valid config -> exit 0",
   "status %r stderr %r" % (p.returncode, p.stderr[:300]))
try:
    socket.create_connection(("127.0.0.21", 8090), timeout=1).close()
    listening = True
except OSError:
    listening = False
ok(not listening, "-n left nothing listening on 127.0.0.21:8090")
p = run_kvsd(["--check"], env={"SOCKET_ADDRESS": A21, "VIEW": A21}, timeout=5)
is_(p.returncode, 0, "--check with env config -> exit 0")

# --version, --help
p = run_kvsd(["--version"], timeout=5)
ok(p.returncode == 0 and re.match(r"^kvsd \S*[0-9]", p.stdout),
   "--version prints 'kvsd <version>', exit 0", "status %r stdout %r stderr %r"
   % (p.returncode, p.stdout, p.stderr))
p = run_kvsd(["--help"], timeout=5)
is_(p.returncode, 0, "--help exits 0")
for word in ("--address", "--view", "--listen", "--workers", "--memory", "--max-body",
             "--log-level", "--version", "-n", "SOCKET_ADDRESS", "VIEW"):
    ok(re.search(r"(^|[\s,(])" + re.escape(word) + r"\b", p.stdout),
       "--help mentions %s" % word)

# flags override env
r = Replica("127.0.0.19", flags=False,
            extra_args=["--address", A19, "--view", A19, "--workers", "1"],
            env={"SOCKET_ADDRESS": A20, "VIEW": A20, "KVSD_WORKERS": "3"})
r.wait_ready(10)
is_(request(r, "GET", "/view").raw, b'{"view": ["127.0.0.19:8090"]}',
    "--address/--view override SOCKET_ADDRESS/VIEW")
try:
    request(A20, "GET", "/health", timeout=1)
    env_listen = True
except OSError:
    env_listen = False
ok(not env_listen, "nothing listens on the env's address")
is_(len(r.workers_list()), 1, "--workers 1 overrides KVSD_WORKERS=3")
is_(r.stop(), 0, "flag-configured replica: SIGTERM -> exit 0")

# env alone
r = Replica("127.0.0.20", flags=False,
            env={"SOCKET_ADDRESS": A20, "VIEW": A20 + "," + A21, "KVSD_WORKERS": "2"})
r.wait_ready(10)
g = request(r, "GET", "/view")
ok(g.status == 200 and isinstance(g.json, dict) and sorted(g.json.get("view", [])) == [A20, A21],
   "SOCKET_ADDRESS + VIEW env alone: serves, view from VIEW", g.describe())
is_(len(r.workers_list()), 2, "KVSD_WORKERS=2 from env")
p = request(r, "PUT", "/kvs/x", body={"value": 1})
is_(p.status, 201, "env-configured replica accepts writes")

# SIGTERM: exit 0 within 5 s, every child gone
kids = r.children()
is_(len(kids), 3, "2 workers + replicator before SIGTERM")
t0 = time.monotonic()
r.signal_master(signal.SIGTERM)
rc = r.wait(5)
el = time.monotonic() - t0
ok(rc == 0, "SIGTERM -> exit status 0 within 5 s", "status %r after %.2f s" % (rc, el))
ok(wait_until(lambda: not any(pid_alive(p) for p, _ in kids), 2),
   "all children gone after SIGTERM", repr([(p, c) for p, c in kids if pid_alive(p)]))
r.stop()

r = Replica("127.0.0.21", workers=2).wait_ready(10)
kids = r.children()
r.signal_master(signal.SIGINT)
rc = r.wait(5)
is_(rc, 0, "SIGINT -> exit status 0 within 5 s")
ok(wait_until(lambda: not any(pid_alive(p) for p, _ in kids), 2),
   "all children gone after SIGINT")
r.stop()

# a second kvsd on an address that is already served must not start: with
# SO_REUSEPORT it would otherwise silently take half of the connections
# (not in api.md; a robustness expectation)
r = Replica("127.0.0.21", workers=2).wait_ready(10)
t0 = time.monotonic()
p = run_kvsd(["--address", A21, "--view", A21, "--workers", "1"], timeout=5)
ok(p.returncode not in (None, 0), "second kvsd on an address in use exits with an error",
   "status %r after %.1f s (None: still running after 5 s, killed)\nstderr: %r"
   % (p.returncode, time.monotonic() - t0, p.stderr[-500:]))
r.stop()

# SIGTERM while a client holds an idle keep-alive connection: still exits in time
r = Replica("127.0.0.21", workers=2).wait_ready(10)
s = socket.create_connection(("127.0.0.21", 8090), timeout=5,
                             source_address=("127.0.0.100", 0))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
s.recv(4096)
t0 = time.monotonic()
r.signal_master(signal.SIGTERM)
rc = r.wait(5)
ok(rc == 0, "SIGTERM with an idle keep-alive client -> exit 0 within 5 s",
   "status %r after %.2f s" % (rc, time.monotonic() - t0))
s.close()
r.stop()
done()
