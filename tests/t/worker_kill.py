#!/usr/bin/env python3
"""SIGKILL of a worker under write load loses no acknowledged write; the
master replaces dead children (workers and replicator); killing the master
alone takes the children with it.
Addresses: 127.0.0.22 (127.0.0.23-24 reserved)."""

import os
import signal
import threading
import time

from kvstest import (Replica, Session, request, ok, is_, done, diag, wait_until, pid_alive)

r = Replica("127.0.0.22", workers=2).wait_ready(10)
orig_workers = r.workers_list()
is_(sorted(c for _, c in orig_workers), ["kvsd-worker-0", "kvsd-worker-1"],
    "two workers named kvsd-worker-0/1")
orig_repl = r.replicator()
ok(orig_repl is not None, "a kvsd-replicator child", r.children())

# --- 4 writers for ~3 s, one worker SIGKILLed at ~1 s -------------------------------------
acked = {}               # key -> value of every acknowledged write
acked_lock = threading.Lock()
stats = {"sent": 0, "acked": 0, "errors": 0, "other": {}}
stop = threading.Event()
DURATION, MAX_PER_THREAD = 3.0, 5000


def writer(tid):
    # keep-alive: a killed worker drops the connection, the next PUT reconnects
    sess = Session(r.addr, timeout=3)
    n = 0
    t_end = time.monotonic() + DURATION
    while not stop.is_set() and time.monotonic() < t_end and n < MAX_PER_THREAD:
        key, val = "w%d-%d" % (tid, n), {"t": tid, "n": n, "s": "x" * (n % 50)}
        n += 1
        try:
            resp = sess.request("PUT", "/kvs/" + key, body={"value": val})
        except OSError:
            with acked_lock:
                stats["errors"] += 1
            continue
        with acked_lock:
            stats["sent"] += 1
            if resp.status in (200, 201):
                acked[key] = val
                stats["acked"] += 1
            else:
                stats["other"][resp.status] = stats["other"].get(resp.status, 0) + 1
    sess.close()


threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(4)]
t0 = time.monotonic()
for t in threads:
    t.start()
time.sleep(1.0)   # the contract is about killing *during* the load
victim_pid, victim_name = orig_workers[0]
with acked_lock:
    before_kill = stats["acked"]
os.kill(victim_pid, signal.SIGKILL)
kill_time = time.monotonic() - t0
for t in threads:
    t.join(DURATION + 5)
ok(not any(t.is_alive() for t in threads), "writer threads finished")
diag("killed %s (pid %d) at %.2f s after %d acks; totals: %r"
     % (victim_name, victim_pid, kill_time, before_kill, stats))
ok(before_kill > 0 and stats["acked"] > before_kill, "writes acknowledged before and after the kill",
   repr(stats))
is_(stats["other"], {}, "no non-2xx answers to valid PUTs")

# the master replaces the worker
ok(wait_until(lambda: not pid_alive(victim_pid), 5), "killed worker is gone")


def replaced():
    w = r.workers_list()
    return len(w) == 2 and w


w = wait_until(replaced, 5)
ok(w, "2 kvsd-worker children again within 5 s", repr(r.children()))
if w:
    pids = {p for p, _ in w}
    ok(victim_pid not in pids and orig_workers[1][0] in pids,
       "one new worker pid, the other worker untouched", "before %r after %r" % (orig_workers, w))
    is_(sorted(c for _, c in w), ["kvsd-worker-0", "kvsd-worker-1"],
        "replacement keeps the worker name")
is_(r.replicator(), orig_repl, "replicator untouched by the worker kill")
is_(request(r, "GET", "/health").status, 200, "replica answers after the kill")

# every acknowledged write is there, with the right value
missing, wrong = [], []
reader = Session(r.addr)
for key, val in sorted(acked.items()):
    g = reader.request("GET", "/kvs/" + key)
    if g.status != 200:
        missing.append((key, g.status))
    elif not isinstance(g.json, dict) or g.json.get("value") != val:
        wrong.append((key, g.raw[:200]))
reader.close()
ok(not missing and not wrong, "all %d acknowledged writes readable with the right value"
   % len(acked), "missing %d: %r\nwrong %d: %r" % (len(missing), missing[:10],
                                                    len(wrong), wrong[:10]))

# --- five kills in a row -----------------------------------------------------------------
killed = []
for i in range(5):
    w = wait_until(lambda: len(r.workers_list()) >= 1 and r.workers_list(), 5)
    if not w:
        break
    pid = w[0][0]
    try:
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    except ProcessLookupError:
        pass
    # quickly: give the master only until the victim is reaped
    wait_until(lambda: not pid_alive(pid), 2, interval=0.01)
is_(len(killed), 5, "killed a worker 5 times in a row")
ok(wait_until(lambda: request(r, "GET", "/health").status == 200, 10),
   "replica serves after 5 quick worker kills", r.log_tail())
w = wait_until(lambda: len(r.workers_list()) == 2 and r.workers_list(), 10)
ok(w and not ({p for p, _ in w} & set(killed)), "2 live workers, none of them a killed one",
   "%r killed %r" % (r.children(), killed))
sample = sorted(acked.items())[::max(1, len(acked) // 200)]
bad = [k for k, v in sample if request(r, "GET", "/kvs/" + k).json.get("value") != v]
ok(not bad, "acknowledged writes still readable after the kills", repr(bad[:10]))
p = request(r, "PUT", "/kvs/after-kills", body={"value": 1})
is_(p.status, 201, "writes work after the kills")

# --- replicator killed -------------------------------------------------------------------
rp = r.replicator()
ok(rp is not None, "the replicator runs before it is killed", repr(r.children()))
if rp:
    os.kill(rp[0], signal.SIGKILL)
    def new_replicator():
        cur = r.replicator()  # sample once: a fresh fork may not have named itself yet
        return cur if cur is not None and cur[0] != rp[0] else None
    nr = wait_until(new_replicator, 5)
    ok(nr, "master restarts a killed replicator within 5 s", repr(r.children()))
    is_(request(r, "GET", "/view").raw, b'{"view": ["127.0.0.22:8090"]}',
        "view intact after the replicator restart")
is_(request(r, "PUT", "/kvs/after-repl", body={"value": 2}).status, 201,
    "writes work after the replicator restart")

# --- master killed alone: the children follow -----------------------------------------------
kids = r.children()
os.kill(r.master_pid, signal.SIGKILL)
r.wait(5)
alive = wait_until(lambda: not any(pid_alive(p) for p, _ in kids), 5)
ok(alive, "children exit within 5 s when the master is SIGKILLed alone",
   repr([(p, c) for p, c in kids if pid_alive(p)]))
r.stop()
done()
