#!/usr/bin/env python3
"""Randomized causal-consistency check (seeded; KVST_SEED=<n> replays a run).
5 replicas; 4 client threads, each with its own metadata, do mixed
PUT/GET/DELETE on random replicas for ~25 s while a seeded nemesis
partitions one replica for 1-3 s, SIGSTOPs one for 1-2 s, and kill -9s and
restarts one.  Every operation is recorded and checked afterwards:

  * read-your-writes and monotonic reads on each client's OWN keys (disjoint
    key sets): a GET/DELETE/PUT sees the client's last write, except for
    writes acknowledged by a replica that was killed soon after (may be lost,
    api.md) and writes whose outcome the client never learned (timeouts);
  * every 200/201 returns metadata >= the metadata sent, component-wise;
  * shared keys only ever hold values somebody wrote;
  * after healing everything and stopping writes, all replicas converge to
    identical maps within 10 s.

Addresses: 127.0.0.65 - 127.0.0.69, port 8090; client 127.0.0.100 (exempt
from the firewall).
"""
from repltest import *  # noqa: F401,F403 (shared helpers of the repl_*.py tests)

import os
import random

IPS = ["127.0.0.65", "127.0.0.66", "127.0.0.67", "127.0.0.68", "127.0.0.69"]
VIEW = ["%s:8090" % ip for ip in IPS]
SEED = int(os.environ.get("KVST_SEED") or (int(time.time() * 1000) % 1000000007))
diag("seed %d (replay with KVST_SEED=%d)" % (SEED, SEED))
RUN = 25.0                 # seconds of client traffic
NCLIENTS = 4
OWN = 4                    # own keys per client
SHARED = ["sh-%d" % i for i in range(6)]
LOSS_WINDOW = 2.0          # a write acked this long before its replica's kill may be lost
DELETED = None

cl = Cluster(IPS, workers=1)
cl.wait_ready(10)
REPS = cl.replicas
ok(wait_all_ready(REPS, 5), "all replicas /ready", log_excerpt(REPS))
ok(wait_views(REPS, VIEW, 5) is not None, "all views full at start", views_diag(REPS))
fw = Firewall().open()

T0 = time.monotonic()
stop = threading.Event()
events = []                # (t, kind, ip) -- nemesis actions
kills = []                 # (t_kill, ip): noted once the replica is dead
events_lock = threading.Lock()


def note(kind, r, t=None):
    t = time.monotonic() if t is None else t
    with events_lock:
        events.append((t - T0, kind, r.ip))
        if kind == "kill":
            kills.append((t, r.ip))


# ---------------------------------------------------------------------------
# nemesis: bounded and seeded; one fault at a time, then recovery
# ---------------------------------------------------------------------------
stopped = set()


def nemesis():
    rnd = random.Random(SEED ^ 0x5eed)
    plan = ["partition", "pause", "kill"]
    rnd.shuffle(plan)
    plan += [rnd.choice(["partition", "pause", "kill"]) for _ in range(2)]
    for kind in plan:
        if stop.wait(rnd.uniform(1.0, 2.0)) or time.monotonic() - T0 > RUN - 6:
            break
        r = rnd.choice(REPS)
        if kind == "partition":
            fw.isolate(r.ip)
            note("partition", r)
            time.sleep(rnd.uniform(1.0, 3.0))
            fw.heal(r.ip)
            note("heal", r)
        elif kind == "pause":
            r.kill(signal.SIGSTOP)
            stopped.add(r)
            note("sigstop", r)
            time.sleep(rnd.uniform(1.0, 2.0))
            r.kill(signal.SIGCONT)
            stopped.discard(r)
            note("sigcont", r)
        else:
            # noted after the kill has taken effect (kill() waits for the
            # master): a write sent before then may have been acknowledged
            # and lost; one sent after cannot have been acknowledged
            r.kill(signal.SIGKILL)
            note("kill", r)
            time.sleep(rnd.uniform(0.5, 1.5))
            r.start()
            note("restart", r)
        # let the cluster settle before the next fault (bounded)
        wait_views(REPS, VIEW, 8, interval=0.2)
        note("settled", r)


# ---------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------
class ClientState:
    def __init__(self, cid):
        self.cid = cid
        self.rnd = random.Random(SEED * 31 + cid)
        self.meta = None
        self.keys = ["c%d-k%d" % (cid, j) for j in range(OWN)]
        self.hist = {k: [] for k in self.keys}      # [(value, ip, t_send, t_ack)]
        self.ghosts = {k: [] for k in self.keys}    # [(value, t_sent)] outcome unknown
        self.obs = []       # (key, kind, t_send, t_recv, observed, hist_len, ip)
        self.meta_bad = []
        self.status_bad = []
        self.shared_vals = []
        self.shared_reads = []
        self.n = 0
        self.counts = {}


def covers_live(m, sent, t):
    """m >= sent, except components of a dead life: one whose address has a
    newer life in either clock, or whose replica had been SIGKILLed before
    the request was sent.  kvsd folds such a life away -- and stops naming
    it -- once every replica has all of it (doc/design.md)."""
    for k, v in (sent or {}).items():
        if m.get(k, 0) >= v:
            continue
        addr, _, stamp = k.rpartition("/")
        newer = any(o.rpartition("/")[0] == addr and int(o.rpartition("/")[2]) > int(stamp)
                    for o in list(m) + list(sent))
        killed = any(tk <= t and addr.startswith(ip + ":") for tk, ip in list(kills))
        if not (newer or killed):
            return False
    return True


all_shared_written = set()
shared_lock = threading.Lock()


def client(st):
    seq = 0
    while not stop.is_set() and time.monotonic() - T0 < RUN:
        seq += 1
        time.sleep(0.005)      # pacing: 5 replicas share 2 CPUs with the clients
        r = st.rnd.choice(REPS)
        x = st.rnd.random()
        if x < 0.75:
            key = st.rnd.choice(st.keys)
            op = "PUT" if x < 0.40 else "GET" if x < 0.65 else "DELETE"
        else:
            key = st.rnd.choice(SHARED)
            op = "PUT" if x < 0.88 else "DELETE" if x < 0.92 else "GET"
        value = {"c": st.cid, "n": seq} if op == "PUT" else None
        if op == "PUT" and key in SHARED:
            with shared_lock:
                all_shared_written.add(json.dumps(value, sort_keys=True))
        sent = st.meta
        t_send = time.monotonic()
        err = None
        try:
            resp = kv(r, op, key, sent, value=value, put=(op == "PUT"), timeout=4)
        except ConnectionRefusedError:
            resp, err = None, "refused"             # never reached the replica
        except NET_ERRORS as e:
            resp, err = None, type(e).__name__       # outcome unknown
        t_recv = time.monotonic()
        st.n += 1
        code = resp.status if resp is not None else err
        st.counts[code] = st.counts.get(code, 0) + 1
        if resp is None:
            if err != "refused" and op in ("PUT", "DELETE") and key in st.hist:
                st.ghosts[key].append((value, t_send))
            continue
        if resp.status == 503:
            if resp.raw != ERR503:
                st.status_bad.append((r.ip, op, key, resp.status, resp.raw))
            continue
        allowed = {"PUT": (200, 201), "GET": (200, 404), "DELETE": (200, 404)}[op]
        if resp.status not in allowed:
            st.status_bad.append((r.ip, op, key, resp.status, resp.raw))
            continue
        if resp.status in (200, 201):
            m = meta_of(resp)
            if not isinstance(m, dict) or not covers_live(m, sent, t_send):
                st.meta_bad.append((r.ip, op, key, sent, m))
            if isinstance(m, dict):
                st.meta = m
        if key in SHARED:
            if op == "GET" and resp.status == 200:  # noqa
                st.shared_reads.append(json.dumps(resp.json.get("value"), sort_keys=True))
            continue
        hl = len(st.hist[key])
        # what the operation tells about the state it found
        if op == "GET":
            seen = resp.json.get("value") if resp.status == 200 else DELETED
        elif op == "DELETE":
            seen = "<some value>" if resp.status == 200 else DELETED
        else:
            seen = "<some value>" if resp.status == 200 else DELETED
        st.obs.append((key, op, t_send, t_recv, seen, hl, r.ip))
        if op == "PUT":
            st.hist[key].append((value, r.ip, t_send, t_recv))
        elif op == "DELETE" and resp.status == 200:
            st.hist[key].append((DELETED, r.ip, t_send, t_recv))


states = [ClientState(c) for c in range(NCLIENTS)]
threads = [threading.Thread(target=client, args=(s,), name="client-%d" % s.cid) for s in states]
nem = threading.Thread(target=nemesis, name="nemesis")
for t in threads:
    t.start()
nem.start()
for t in threads:
    t.join(RUN + 15)
stop.set()
nem.join(30)
ok(not nem.is_alive() and not any(t.is_alive() for t in threads),
   "clients and nemesis finished")
# heal everything; a replica the nemesis did not leave dead must be running
for r in REPS:
    ok(r.running(), "%s is running after the nemesis (it always restarts what it kills)" % r.addr,
       "exit status %s; log tail:\n%s" % (r.returncode, r.log_tail(8)))
fw.heal()
for r in REPS:
    if r.running():
        r.kill(signal.SIGCONT)
    else:
        r.start()
t_quiet = time.monotonic()
diag("nemesis: " + ", ".join("%.1fs %s %s" % e for e in events))
for s in states:
    diag("client %d: %d operations %s" % (s.cid, s.n, sorted(s.counts.items(), key=str)))


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------
def lossable(ip, t_send, t_ack):
    """Acknowledged by ip, which died after the write was sent and at most
    LOSS_WINDOW after the acknowledgment reached the client (the answer can
    arrive after the death: it was sent before)."""
    return any(kip == ip and t_send <= tk <= t_ack + LOSS_WINDOW for tk, kip in kills)


def acceptable(st, key, hl, t_recv):
    """Values a read may see after the client's first hl writes of key."""
    h = st.hist[key][:hl]
    acc = set()
    vals = [DELETED] + [v for v, _, _, _ in h]       # state before any write: absent
    i = len(vals) - 1
    acc.add(json.dumps(vals[i], sort_keys=True))
    while i > 0 and lossable(*h[i - 1][1:]):
        i -= 1
        acc.add(json.dumps(vals[i], sort_keys=True))
    for v, ts in st.ghosts[key]:
        if ts <= t_recv:
            acc.add(json.dumps(v, sort_keys=True))
    return acc


def matches(seen, acc):
    if seen == "<some value>":
        return any(a != "null" for a in acc)
    return json.dumps(seen, sort_keys=True) in acc


ryw_bad = []
mono_bad = []
nobs = 0
for st in states:
    last = {}
    for key, op, ts, tr, seen, hl, ip in st.obs:
        nobs += 1
        acc = acceptable(st, key, hl, tr)
        if not matches(seen, acc):
            ryw_bad.append("client %d %s %s at %s (t=%.2f s, after %d own writes): saw %r, "
                           "acceptable %s; last writes %s" % (
                               st.cid, op, key, ip, ts - T0, hl, seen, sorted(acc),
                               [(v, wip, "%.2f" % (t - T0)) for v, wip, _, t in st.hist[key][max(0, hl - 3):hl]]))
        if op == "GET":
            p = last.get(key)
            if p is not None and p[0] == hl and p[1] != seen:
                ghost_vals = [v for v, t in st.ghosts[key] if t <= tr]
                killed_between = any(p[2] <= tk <= tr for tk, _ in kills)
                if seen not in ghost_vals and not killed_between:
                    mono_bad.append("client %d GET %s at %s (t=%.2f s): saw %r after seeing %r "
                                    "with no write in between" % (st.cid, key, ip, ts - T0, seen, p[1]))
            last[key] = (hl, seen, tr)
diag("checked %d observations of own keys" % nobs)
ok(nobs > 200, "enough own-key observations to mean something (%d)" % nobs)
ok(not ryw_bad, "read-your-writes: every operation on a client's own key saw its last write",
   "\n".join(ryw_bad[:8]) + "\nnemesis: " + ", ".join("%.1fs %s %s" % e for e in events))
ok(not mono_bad, "monotonic reads on each client's own keys", "\n".join(mono_bad[:8]))
mb = [m for s in states for m in s.meta_bad]
ok(not mb, "every 200/201 returned metadata >= the metadata sent",
   "\n".join(map(repr, mb[:5])))
sb = [m for s in states for m in s.status_bad]
ok(not sb, "every response was an allowed status (503 with the exact body)",
   "\n".join(map(repr, sb[:8])))
junk = [v for s in states for v in s.shared_reads if v not in all_shared_written]
ok(not junk, "shared keys only ever returned values somebody wrote", "\n".join(junk[:5]))

# convergence after healing everything and stopping writes
ALL_KEYS = SHARED + [k for s in states for k in s.keys]
dt, last = wait_converged(REPS, ALL_KEYS, max(0.5, t_quiet + 10.0 - time.monotonic()))
diag("converged %s after healing and stopping writes" %
     ("%.2f s" % (time.monotonic() - t_quiet) if dt is not None else "NOT within 10 s"))
ok(dt is not None, "within 10 s of healing and stopping writes all replicas hold identical maps",
   "%s\nkvsd_keys=%r\n%s\n%s" % (map_diff(REPS, last.get("maps")), last.get("kvsd_keys"),
                                 views_diag(REPS), log_excerpt(REPS, 8)))

# every client's own keys end at its last write (or a lossable/ghost predecessor),
# read with the client's final metadata on every replica
final_bad = []
final_deadline = time.monotonic() + 15
for st in states:
    for key in st.keys:
        if time.monotonic() > final_deadline:
            final_bad.append("final reads took over 15 s; stopped at client %d %s" % (st.cid, key))
            break
        acc = acceptable(st, key, len(st.hist[key]), time.monotonic())
        for r in REPS:
            g = kv_retry(r, "GET", key, st.meta)
            if g is None or g.status not in (200, 404):
                final_bad.append("client %d GET %s at %s with its metadata -> %r" % (st.cid, key, r.ip, g))
                continue
            seen = g.json.get("value") if g.status == 200 else DELETED
            if not matches(seen, acc):
                final_bad.append("client %d GET %s at %s -> %r, acceptable %s" % (
                    st.cid, key, r.ip, seen, sorted(acc)))
ok(not final_bad, "after convergence every replica serves each client's final metadata "
   "with the client's last writes", "\n".join(final_bad[:10]) + "\n" + log_excerpt(REPS, 8))

fw.close()
ok(not fw.rules(), "firewall chain removed")
for r in REPS:
    ok(r.running(), "%s running at the end" % r.addr, r.log_tail())
done()
