#!/usr/bin/env python3
"""durability.py -- --data-dir (issue 15): real processes, real files, kill -9.

* --fsync always, one replica: concurrent clients write; the replica is
  SIGKILLed (whole process group) mid-load and restarted on the same
  directory: every acknowledged write is there, /internal/check is ok.
* the data directory is locked: a second kvsd on it exits 78 naming the
  holder's pid.
* --fsync everysec: writes acknowledged more than 2 s before a SIGKILL
  survive it.
* a torn last log record (the log cut at random offsets of its tail)
  is truncated at startup, with one log line, and the store is consistent.
* a flipped byte in the middle of the log: startup exits 78, and
  `kvsd --check-data` exits 2 and says where.
* whole cluster, --fsync always: 3 replicas take concurrent writes, all
  are SIGKILLed at once and restarted: every acknowledged write is on
  every replica.
* disk full (a 2 MiB tmpfs this test mounts and unmounts): writes get 507,
  /ready 503, the alarm metric is 1, reads go on; freeing space lets writes
  resume by themselves.  Needs root for mount: otherwise that part is an
  honest skip.
* a restarted replica's persister continues its log (no new snapshot).
* SIGKILL of the persister alone, or of the whole replica, while it writes
  a snapshot, renames it, or rotates the log (a test hook pauses it at
  each point): every acknowledged write survives, /internal/check is ok,
  --check-data finds one whole generation.
Addresses: 127.0.0.190-196 (.191 only for the lock check)."""

import os
import random
import subprocess
import threading
import time

from kvstest import (Replica, Cluster, request, ok, is_, done, diag, skip, wait_until, run_kvsd, tmpdir,
                     kvsd_bin, EX_CONFIG)


def put(r, k, v, timeout=5):
    try:
        return request(r, "PUT", "/kvs/" + k, body={"value": v}, timeout=timeout).status
    except OSError:
        return None


def load(targets, seconds, prefix):
    """Concurrent clients, distinct keys: returns {key: value} acknowledged."""
    acked, lock, stop = {}, threading.Lock(), time.monotonic() + seconds

    def client(n):
        i = 0
        while time.monotonic() < stop:
            k = "%s-%d-%d" % (prefix, n, i)
            if put(targets[n % len(targets)], k, i) in (200, 201):
                with lock:
                    acked[k] = i
            i += 1

    ts = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in ts:
        t.start()
    return ts, acked


def missing(r, acked):
    bad = []
    for k, v in acked.items():
        resp = request(r, "GET", "/kvs/" + k)
        if resp.status != 200 or resp.json.get("value") != v:
            bad.append(k)
    return bad


def crash(*replicas):
    """SIGKILL every process of every replica at once; wait until all are gone."""
    for x in replicas:
        x._signal_group(9)
    for x in replicas:
        x.wait(5)
        wait_until(lambda: not x.group(), 5)


def check_ok(r):
    resp = request(r, "GET", "/internal/check", timeout=30)
    return resp.status == 200


def replica(ip, d, mode, view=None):
    return Replica(ip, view=view, extra_args=["--data-dir", d, "--fsync", mode, "--memory", "64M"])


base = tmpdir()

# --- always: kill -9 mid-load, restart ------------------------------------------------
d1 = os.path.join(base, "d190")
r = replica("127.0.0.190", d1, "always").wait_ready(10)
ts, acked = load([r], 1.5, "a")
time.sleep(1.0)
crash(r)  # the whole process group, mid-load
for t in ts:
    t.join()
diag("%d writes acknowledged before the kill" % len(acked))
ok(len(acked) > 50, "clients got writes acknowledged under --fsync always (%d)" % len(acked))
gens = sorted(f for f in os.listdir(d1) if f.startswith(("log.", "snapshot.")))
r = replica("127.0.0.190", d1, "always").wait_ready(10)
bad = missing(r, acked)
ok(not bad, "after kill -9 and restart every acknowledged write is there", "missing: %r" % bad[:10])
ok(wait_until(lambda: "continuing log." in r.log_text(), 5) and
   sorted(f for f in os.listdir(d1) if f.startswith(("log.", "snapshot."))) == gens,
   "the restarted persister continues the log: no new snapshot at startup", "%r -> %r" % (gens, os.listdir(d1)))
ok(check_ok(r), "/internal/check ok after recovery")
m = request(r, "GET", "/metrics").raw.decode()
ok("kvsd_persist_fsync_seconds_count" in m and "kvsd_persist_snapshot_bytes" in m,
   "/metrics reports fsyncs and the snapshot")

# --- the lock -------------------------------------------------------------------------
p = run_kvsd(["--address", "127.0.0.191:8090", "--view", "127.0.0.191:8090", "--data-dir", d1], timeout=10)
ok(p.returncode == EX_CONFIG and str(r.master_pid) in p.stderr,
   "a second kvsd on the directory exits 78 naming the holder's pid",
   "status %r stderr %r" % (p.returncode, p.stderr[-300:]))
is_(r.stop(10), 0, "SIGTERM: exit 0")

# --- compaction: the log outgrows the data, a new generation replaces it ----------------
d3 = os.path.join(base, "d190c")
r = replica("127.0.0.190", d3, "always").wait_ready(10)
for i in range(1200):  # 10 keys overwritten: ~12 MB of log for ~100 KB of data
    put(r, "k%d" % (i % 10), "z" * 10000 + str(i))
m = request(r, "GET", "/metrics").raw.decode()
snaps = [int(l.split()[1]) for l in m.splitlines() if l.startswith("kvsd_persist_snapshots_total")]
ok(snaps and snaps[0] >= 2, "the grown log was compacted into a new snapshot (%r snapshots)" % snaps)
ok(sorted(f for f in os.listdir(d3) if not f.endswith(".tmp")) in (["LOCK", "log.2", "snapshot.2"],
                                                                 ["LOCK", "log.3", "snapshot.3"]),
   "only the newest generation is kept", repr(os.listdir(d3)))
crash(r)
r = replica("127.0.0.190", d3, "always").wait_ready(10)
ok(all(request(r, "GET", "/kvs/k%d" % j).json.get("value", "").endswith(str(1190 + j)) for j in range(10)),
   "after compaction and kill -9 every key has its last value")
ok(check_ok(r), "/internal/check ok")
r.stop(10)

# --- everysec: acknowledged > 2 s before the kill survives -----------------------------
d2 = os.path.join(base, "d192")
r = replica("127.0.0.192", d2, "everysec").wait_ready(10)
early = {}
for i in range(300):
    if put(r, "e%d" % i, i) in (200, 201):
        early["e%d" % i] = i
time.sleep(2.2)
for i in range(100):
    put(r, "late%d" % i, i)
crash(r)
r = replica("127.0.0.192", d2, "everysec").wait_ready(10)
bad = missing(r, early)
ok(len(early) == 300 and not bad, "everysec: writes acknowledged > 2 s before kill -9 survive", "missing %r" % bad[:10])
r.stop(10)

# --- a torn last record, cut at random offsets ------------------------------------------
logs = [f for f in os.listdir(d2) if f.startswith("log.")]
is_(len(logs), 1, "one log file in the directory")
rng = random.Random(15)
for attempt in range(3):
    r = replica("127.0.0.192", d2, "everysec").wait_ready(10)
    for i in range(50):
        put(r, "t%d-%d" % (attempt, i), "x" * rng.randint(1, 300))
    r.stop(10)
    logs = sorted((f for f in os.listdir(d2) if f.startswith("log.")), key=lambda f: int(f[4:]))
    path = os.path.join(d2, logs[-1])
    size = os.path.getsize(path)
    cut = size - rng.randint(1, min(200, size - 17))
    os.truncate(path, cut)
    r = replica("127.0.0.192", d2, "everysec").wait_ready(10)
    ok("torn last record" in r.log_text() and check_ok(r) and request(r, "GET", "/kvs/e5").status == 200,
       "log cut at %d of %d bytes: truncated with a log line, store consistent, data there" % (cut, size),
       r.log_tail(5))
    r.stop(10)

# --- a flipped byte mid-file ---------------------------------------------------------------
r = replica("127.0.0.192", d2, "everysec").wait_ready(10)
for i in range(200):
    put(r, "f%d" % i, i)
r.stop(10)
logs = sorted((f for f in os.listdir(d2) if f.startswith("log.")), key=lambda f: int(f[4:]))
path = os.path.join(d2, logs[-1])
size = os.path.getsize(path)
with open(path, "r+b") as f:
    f.seek(size // 2)
    b = f.read(1)
    f.seek(size // 2)
    f.write(bytes([b[0] ^ 0x40]))
p = run_kvsd(["--address", "127.0.0.192:8090", "--view", "127.0.0.192:8090", "--data-dir", d2], timeout=20)
ok(p.returncode == EX_CONFIG and "corrupt at offset" in p.stderr,
   "a flipped byte mid-log: startup exits 78 with a clear message", "status %r stderr %r" % (p.returncode, p.stderr[-400:]))
c = subprocess.run([kvsd_bin(), "--check-data", d2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
out = c.stdout.decode()
ok(c.returncode == 2 and "corrupt at offset" in out and "CORRUPT" in out,
   "--check-data exits 2 and reports where", out)
diag(out.strip())

# --- whole cluster, always, SIGKILL all at once -------------------------------------------
ips = ["127.0.0.193", "127.0.0.194", "127.0.0.195"]
view = [ip + ":8090" for ip in ips]
dirs = [os.path.join(base, "c" + ip.rsplit(".", 1)[1]) for ip in ips]
rs = [replica(ip, d, "always", view=view) for ip, d in zip(ips, dirs)]
for x in rs:
    x.wait_ready(20)
ts, acked = load(rs, 2.0, "c")
time.sleep(1.2)
crash(*rs)
for t in ts:
    t.join()
diag("%d cluster writes acknowledged before the kill" % len(acked))
rs = [replica(ip, d, "always", view=view) for ip, d in zip(ips, dirs)]
for x in rs:
    x.wait_ready(30)
for x in rs:
    ok(wait_until(lambda: not missing(x, acked), 20), "%s has every acknowledged write after the whole-cluster kill"
       % x.addr, "missing %r" % missing(x, acked)[:10])
    ok(check_ok(x), "%s: /internal/check ok" % x.addr)
for x in rs:
    x.stop(10)

# --- SIGKILL at each step of a snapshot and its log rotation --------------------------------
# KVSD_TEST_PAUSE makes the persister stop at the point a file pause-<point> in the data
# directory names (src/persist.c, test_pause()): snapshot (snapshot.N+1.tmp written, not
# synced or renamed), rename (snapshot.N+1 in place, no log.N+1), rotate (log.N+1 started,
# generation N still there).  We kill it there -- the persister alone (the master restarts it
# and writes go on) or the whole replica (restarted on the directory) -- and check that every
# acknowledged write is there, /internal/check is ok and --check-data finds the files whole.
def gen_files(d):
    return sorted(f for f in os.listdir(d) if f.startswith(("log.", "snapshot.")))


def persister(r):
    p = [pid for pid, comm in r.children() if comm == "kvsd-persister"]
    return p[0] if p else None


def kill_at(point, whole):
    label = "%s, %s" % (point, "whole replica" if whole else "persister alone")
    d = os.path.join(base, "k-%s-%d" % (point, whole))
    r = Replica("127.0.0.190", extra_args=["--data-dir", d, "--fsync", "always", "--memory", "64M"],
                env={"KVSD_TEST_PAUSE": "1"}).wait_ready(10)
    # the persister writes generation 1 of an empty directory as it starts,
    # through the same points: ask for the pause only after that (a replica
    # may be ready first, under ASan often)
    ok(wait_until(lambda: "snapshot 1 written" in r.log_text(), 10),
       "%s: the first generation was written at startup" % label, r.log_tail(5))
    open(os.path.join(d, "pause-" + point), "w").close()
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            k, v = "%s-%d-%d" % (point, n, i), ("b" * 100000 if n == 0 else "s") + str(i)
            if put(r, k, v, timeout=3) in (200, 201):
                with lock:
                    acked[k] = v
            i += 1

    ts = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for t in ts:
        t.start()
    hit = wait_until(lambda: "persister paused at " + point in r.log_text(), 60)
    files = sorted(os.listdir(d))
    ok(hit, "%s: the persister reached the point (the log outgrew the snapshot)" % label, r.log_tail(5))
    want = {"snapshot": lambda f: any(x.endswith(".tmp") for x in f),
            "rename": lambda f: len([x for x in f if x.startswith("snapshot.")]) == 2 and
            len([x for x in f if x.startswith("log.")]) == 1,
            "rotate": lambda f: len([x for x in f if x.startswith("snapshot.")]) == 2 and
            len([x for x in f if x.startswith("log.")]) == 2}[point]
    ok(want(files), "%s: the files are mid-way at the kill: %r" % (label, files))
    if whole:
        crash(r)
        stop.set()
        for t in ts:
            t.join()
        r = replica("127.0.0.190", d, "always").wait_ready(20)
    else:
        old = persister(r)
        os.kill(old, 9)
        ok(wait_until(lambda: persister(r) not in (None, old), 10), "%s: the master restarted the persister" % label)
        ok(wait_until(lambda: put(r, "after-" + point, 1) == 201, 20), "%s: writes go on" % label, r.log_tail(5))
        stop.set()
        for t in ts:
            t.join()
    diag("%s: %d writes acknowledged" % (label, len(acked)))
    bad = missing(r, acked)
    ok(len(acked) > 20 and not bad, "%s: every acknowledged write is there" % label, "missing %r" % bad[:5])
    ok(check_ok(r), "%s: /internal/check ok" % label)
    if not whole:  # and from disk alone, after the restarted persister's work
        crash(r)
        r = replica("127.0.0.190", d, "always").wait_ready(20)
        bad = missing(r, acked)
        ok(not bad and request(r, "GET", "/kvs/after-" + point).status == 200,
           "%s: then kill -9 of the replica: every acknowledged write recovered" % label, "missing %r" % bad[:5])
        ok(check_ok(r), "%s: /internal/check ok after that" % label)
    is_(r.stop(10), 0, "%s: SIGTERM: exit 0" % label)
    c = subprocess.run([kvsd_bin(), "--check-data", d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    ok(c.returncode == 0 and not any(f.endswith(".tmp") for f in os.listdir(d)) and
       len([f for f in os.listdir(d) if f.startswith("snapshot.")]) == 1,
       "%s: --check-data OK, one generation, no leftovers" % label, c.stdout.decode() + repr(os.listdir(d)))


for point in ("snapshot", "rename", "rotate"):
    for whole in (False, True):
        kill_at(point, whole)

# --- disk full ----------------------------------------------------------------------------
mnt = os.path.join(base, "tmpfs")
os.makedirs(mnt)
mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]).returncode == 0
if not mounted:
    skip("disk full", "cannot mount a tmpfs (needs root)")
else:
    try:
        r = Replica("127.0.0.196", extra_args=["--data-dir", os.path.join(mnt, "d"), "--fsync", "always",
                                               "--memory", "64M"]).wait_ready(10)
        is_(put(r, "before", 1), 201, "a write before the disk fills")
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * (4 << 20))
            except OSError:
                pass
        statuses = [put(r, "big%d" % i, "y" * 20000) for i in range(120)]
        ok(507 in statuses, "with the disk full writes get 507", "statuses %r" % sorted(set(statuses), key=str))
        resp = request(r, "PUT", "/kvs/more", body={"value": 1})
        ok(resp.status == 507 and "error" in (resp.json or {}), "507 with a JSON error body", resp.raw[:200])
        is_(request(r, "GET", "/ready").status, 503, "/ready is 503 while the disk is full")
        ok("kvsd_persist_failed 1" in request(r, "GET", "/metrics").raw.decode(), "alarm metric kvsd_persist_failed 1")
        is_(request(r, "GET", "/kvs/before").status, 200, "reads go on")
        ok("writes are refused" in r.log_text(), "a log line says why")
        os.unlink(filler)
        ok(wait_until(lambda: put(r, "after", 2) == 201, 15), "space freed: writes resume by themselves")
        is_(request(r, "GET", "/ready").status, 200, "/ready 200 again")
        r.stop(10)
    finally:
        subprocess.run(["umount", "-l", mnt])

done()
