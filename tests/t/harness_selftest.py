#!/usr/bin/env python3
"""Self-test of tests/lib/kvstest.py: TAP accounting, fatal paths,
wait_until bounds, Firewall chain lifecycle, process cleanup.
Uses 127.0.0.25 (and 127.0.0.26 as a firewall target) only."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from kvstest import (Firewall, Replica, iptables, is_, ok, done, diag,
                     wait_until, group_members, kvsd_bin, request, tmpdir,
                     reap_stale_chains)

LIB = os.path.dirname(os.path.abspath(sys.modules["kvstest"].__file__))


def run_child(code, timeout=30, sig_after=None):
    """Run a Python snippet that imports kvstest; returns (rc, stdout, pid)."""
    # children fail on purpose: keep their temp dirs inside ours
    env = dict(os.environ, PYTHONPATH=LIB, TMPDIR=tmpdir())
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if sig_after is not None:
        # wait for the child to say it is ready, then signal it
        line = p.stdout.readline().decode()
        time.sleep(sig_after)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=timeout)
        out = line.encode() + out
    else:
        out, err = p.communicate(timeout=timeout)
    return p.returncode, out.decode(), err.decode(), p.pid


def chain_present(name):
    out = iptables("-S", check=False).stdout.decode()
    return any(name in l.split() for l in out.splitlines())


# --- TAP accounting ----------------------------------------------------------
rc, out, err, _ = run_child("""
    from kvstest import ok, is_, done
    ok(True, "a"); is_(1, 1, "b"); done()
""")
is_(rc, 0, "all-pass script exits 0")
is_(out.splitlines(), ["ok 1 - a", "ok 2 - b", "1..2"], "all-pass TAP stream")

rc, out, err, _ = run_child("""
    from kvstest import ok, is_, done
    ok(True, "a"); is_({"x": 1}, {"x": 2}, "b"); ok(False, "c # not a directive", diag="why")
    done()
""")
is_(rc, 1, "failing script exits 1")
lines = out.splitlines()
ok("not ok 2 - b" in lines and "not ok 3 - c \\# not a directive" in lines
   and lines[-1] == "1..3", "failures counted, '#' escaped, plan 1..3", out)
ok(any(l.startswith("#") and "got" in l for l in lines) and
   any(l.startswith("#") and "want" in l for l in lines) and "# why" in lines,
   "is_ prints got/want, ok prints diag", out)

rc, out, err, _ = run_child("""
    from kvstest import ok, done
    ok(True, "a")
    raise ValueError("boom")
""")
lines = out.splitlines()
ok(rc != 0 and "not ok 2 - uncaught exception: ValueError: boom" in lines
   and lines[-1] == "1..2", "uncaught exception -> not ok + plan + non-zero exit",
   "rc=%r\n%s" % (rc, out))

rc, out, err, _ = run_child("""
    from kvstest import ok
    ok(True, "a")
""")
ok(rc != 0 and any(l.startswith("not ok 2") for l in out.splitlines()),
   "exit without done() -> not ok, non-zero", "rc=%r\n%s" % (rc, out))

rc, out, err, _ = run_child("""
    import threading
    from kvstest import ok, done
    t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()
    done()
""")
ok(rc != 0 and "not ok 1 - uncaught exception in thread" in out,
   "exception in a thread is a failure", "rc=%r\n%s" % (rc, out))

rc, out, err, _ = run_child("""
    from kvstest import done
    done()
""")
ok(rc != 0 and "not ok 1 - no test ran" in out, "no assertions -> failure", out)

# --- wait_until ----------------------------------------------------------------
t0 = time.monotonic()
v = wait_until(lambda: False, 0.3)
el = time.monotonic() - t0
ok(v is False and 0.25 <= el < 1.0, "wait_until(false, 0.3) returns falsy after ~0.3 s",
   "value=%r elapsed=%.3f" % (v, el))
calls = []
v = wait_until(lambda: calls.append(1) or (len(calls) >= 3 and "yes"), 5, interval=0.01)
is_((v, len(calls)), ("yes", 3), "wait_until returns the first truthy value")


def raiser():
    raise ConnectionRefusedError()


t0 = time.monotonic()
v = wait_until(raiser, 0.2)
ok(v is None and time.monotonic() - t0 < 1.0, "wait_until treats network errors as falsy")

# --- Firewall --------------------------------------------------------------------
with Firewall() as fw:
    name = fw.chain
    is_(name, "KVST%d" % os.getpid(), "chain named KVST<pid>")
    out = iptables("-S", check=False).stdout.decode().splitlines()
    ok("-N %s" % name in out, "chain created", "\n".join(out))
    ok("-A INPUT -i lo -j %s" % name in out, "chain hooked into INPUT -i lo", "\n".join(out))
    ok("-A %s -s 127.0.0.100/32 -j RETURN" % name in out and
       "-A %s -d 127.0.0.100/32 -j RETURN" % name in out, "client address exempted",
       "\n".join(out))
    fw.isolate("127.0.0.26")
    r = fw.rules()
    ok("-A %s -s 127.0.0.26/32 -j DROP" % name in r and
       "-A %s -d 127.0.0.26/32 -j DROP" % name in r, "isolate adds DROP rules", "\n".join(r))
    # RETURN rules come first
    idx = [i for i, l in enumerate(r) if l.startswith("-A %s " % name)]
    ok("RETURN" in r[idx[0]] and "RETURN" in r[idx[1]], "RETURN rules precede DROP rules",
       "\n".join(r))
    fw.heal("127.0.0.26")
    r = fw.rules()
    ok(not any("DROP" in l for l in r), "heal removes DROP rules", "\n".join(r))
ok(not chain_present(name), "chain removed on context exit",
   iptables("-S", check=False).stdout.decode())

# a chain left by a SIGKILLed test is reaped by the next Firewall
rc, out, err, cpid = run_child("""
    import os, signal
    from kvstest import Firewall
    fw = Firewall().open(); fw.isolate("127.0.0.26")
    os.kill(os.getpid(), signal.SIGKILL)
""")
ok(chain_present("KVST%d" % cpid), "SIGKILLed test leaves its chain behind")
ok("KVST%d" % cpid in reap_stale_chains() and not chain_present("KVST%d" % cpid),
   "reap_stale_chains() removes the chain of a dead test")

# a script that dies with an exception (and one killed by SIGTERM) leaves no chain
rc, out, err, cpid = run_child("""
    from kvstest import Firewall
    fw = Firewall().open(); fw.isolate("127.0.0.26")
    raise RuntimeError("die with a firewall up")
""")
ok(rc != 0 and not chain_present("KVST%d" % cpid), "chain removed after uncaught exception",
   out + err)
rc, out, err, cpid = run_child("""
    import sys, time
    from kvstest import Firewall
    fw = Firewall().open(); fw.isolate("127.0.0.26")
    print("ready"); sys.stdout.flush()
    time.sleep(20)
""", sig_after=0.1)
ok(rc != 0 and "killed by signal 15" in out and not chain_present("KVST%d" % cpid),
   "chain removed after SIGTERM", out + err)

# --- processes ---------------------------------------------------------------------
if os.access(kvsd_bin(), os.X_OK):
    rc, out, err, cpid = run_child("""
        import sys, time
        from kvstest import Replica
        r = Replica("127.0.0.25"); r.wait_ready(10)
        print("ready %d" % r.master_pid); sys.stdout.flush()
        time.sleep(20)
    """, sig_after=0.1)
    pid = int(out.split()[1]) if out.startswith("ready") else None
    ok(pid is not None and wait_until(lambda: not group_members(pid), 5),
       "replica process group gone after the test script is SIGTERMed", out + err)

    r = Replica("127.0.0.25", workers=2).wait_ready(10)
    kids = r.children()
    names = sorted(c for _, c in kids)
    is_(names, ["kvsd-replicator", "kvsd-worker-0", "kvsd-worker-1"], "children() names")
    is_(request(r, "GET", "/health").raw, b'{"status": "ok"}', "/health body")
    # the partition really cuts traffic between replica addresses, not the client's
    with Firewall() as fw:
        fw.isolate("127.0.0.25")
        try:
            request(r, "GET", "/health", source_ip="127.0.0.26", timeout=0.5)
            cut = False
        except OSError:
            cut = True
        ok(cut, "isolated replica unreachable from another replica address")
        try:
            st = request(r, "GET", "/health", timeout=2).status
        except OSError as e:
            st = e
        is_(st, 200, "isolated replica still reachable from the client address")
        fw.heal("127.0.0.25")
        is_(request(r, "GET", "/health", source_ip="127.0.0.26", timeout=2).status, 200,
            "reachable again after heal")
    pg = r.master_pid
    rc = r.stop()
    is_(rc, 0, "stop(): SIGTERM -> exit 0")
    ok(not r.group(), "stop(): process group empty")
else:
    diag("no kvsd binary at %s: process checks skipped" % kvsd_bin())

done()
