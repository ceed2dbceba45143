#!/usr/bin/env python3
"""checker.py -- judge a chaos history (tests/chaos/chaos.py, JSON lines).

    python3 tests/chaos/checker.py HISTORY.jsonl [--min-availability F] [--json OUT]

Prints the rules, a summary and every violation (the first few of each
kind with the history records involved); exits 1 on any violation.
See RULES below and doc/reliability.md; tests/chaos/test_checker.py feeds
it synthetic histories.

Ghosts and losses are judged in real time against kvsd's replication
bounds, never excused by mere existence or by a kill at any later time:

* A ghost (PUT/DELETE whose outcome the client never learned) may have
  been applied by apply_by(g) at the latest (2 s after the client gave up,
  or after a pause of its replica; never after that replica's kill).  It
  can be the state of an observation only if it may win last-writer-wins
  against every later write of its client that the observation cannot
  skip: a later write w surely outranks g when w's replica had g before
  applying w, i.e. g reached it (shipped_by, below) by w's start, or a
  replica that had g returned w's value, or w depends on g causally.
  Once a later acknowledged write outranks g and is not losable, g
  explains nothing any more, including the converged state.
* A write is losable only if every replica seen holding it was killed
  before it could have shipped it: within SHIP_WINDOW of the evidence, or
  of the end (+ READMIT_TAIL) of an isolation of that replica that covers
  it.  Every holder seen counts, not only the first.
"""

import argparse
import bisect
import json
import sys

ERR503 = '{"error": "Causal dependencies not satisfied; try again later"}'
DEFAULT_MIN_AVAIL = 0.4
INF = float("inf")
ALLOWED = {"PUT": (200, 201, 503), "GET": (200, 404, 503), "DELETE": (200, 404, 503)}

# Time bounds of replication, from kvsd's defaults (man/kvsd.8), which
# chaos.py runs with.  A replica that holds a write and is connected to its
# peers has shipped it within SHIP_WINDOW: a batch in flight is answered or
# evicts its peer within --peer-timeout, the next batch carries the write at
# once (or after --heartbeat when the last one stalled), and a loaded 2-core
# host adds scheduling delays.  A replica that was isolated (killed, paused,
# or named in a partition) ships again at most READMIT_TAIL after the fault
# ends: an evicted peer is probed every --probe-interval and re-admitted
# after --readmit-delay of answers (a probe may take --peer-timeout).
PEER_TIMEOUT = 0.5           # --peer-timeout
HEARTBEAT = 0.2              # --heartbeat
PROBE_INTERVAL = 0.5         # --probe-interval
READMIT_DELAY = 3.0          # --readmit-delay
SCHED_SLACK = 0.8
SHIP_WINDOW = PEER_TIMEOUT + HEARTBEAT + SCHED_SLACK            # 1.5 s
READMIT_TAIL = PROBE_INTERVAL + READMIT_DELAY + PEER_TIMEOUT    # 4.0 s
# A request whose client gave up (chaos.py: 2 s) may still be applied: at
# most this long after the client gave up, or after the replica's pause
# ended if it was SIGSTOPped meanwhile; never after the replica was killed.
GHOST_APPLY_SLACK = 2.0
ISOLATING = ("kill", "kill_all", "pause", "partition_full", "partition_oneway", "partition_bridge")

RULES = """\
checker rules (clocks compare component-wise, a missing entry is 0):
 protocol   every answer is one api.md allows (PUT 200/201/503, GET and DELETE
            200/404/503), a 503 has the exact causal error body, a 2xx carries
            causal-metadata.  Network errors are not violations: a PUT/DELETE
            that timed out or was reset is a "ghost" (outcome unknown); one
            refused at connect never ran.
 causal     (a) every 2xx answer's metadata >= the request's metadata, except
                components of a retired life (the metadata names a newer life
                of its address, or the life had been SIGKILLed when the request
                started): kvsd folds those away once every replica has all of
                them;
            (b) a GET 200 returns a value some client wrote to that key, whose
                request had started before the GET ended (values are unique);
            (c) a GET 200 returning write w answers metadata >= the metadata w
                was written with (its dependencies) and > w's origin counter
                in it (w itself) -- except components of an incarnation that
                had been SIGKILLed by then (lost writes settle, api.md);
            (d) read-your-writes + monotonic reads on keys only one client
                writes: each read (GET value/404, PUT 200/201, DELETE 200/404
                tell the state they found) must show the client's last write to
                the key, or an earlier state if every write in between is
                skippable at the time of the read: a ghost the client has never
                seen, or a LOSABLE write (below); or the state of a ghost that
                may still win (GHOSTS below).  It is "monotonic_reads" when the
                write blocking the read had already been seen by the client in
                a read, else "read_your_writes".
            (e) on keys every client writes: once a client wrote or read write
                f, it never reads a write that causally precedes f (f's request
                metadata covers its counter) unless f is losable by then.
 timing     (kvsd's defaults) a replica holding a write ships it within
            SHIP_WINDOW = 1.5 s (--peer-timeout 0.5 + --heartbeat 0.2 + 0.8 s
            of scheduling slack), except while it is ISOLATED: from the start
            of a kill, pause or partition naming it to READMIT_TAIL = 4.0 s
            after its end (--probe-interval 0.5 + --readmit-delay 3 +
            --peer-timeout 0.5).  shipped_by(R, t) = the first moment outside
            R's isolation at or after t, plus SHIP_WINDOW.  A write applied at
            R by time a has reached replica X by shipped_by over the
            isolations of both R and X (or, if R was killed at k before that,
            by shipped_by(X, k): passed on before the kill, or lost).
 ghosts     a ghost g (outcome unknown) sent to R at t0 is applied there by
            apply_by(g) = 2 s after the client gave up (chaos.py's timeout
            again) or after a pause of R that began by then, and never after
            R's next kill -- or never.  Last-writer-wins (Lamport stamp) puts
            a write w surely above g ("w outranks g") when w's replica had g
            before applying w (g reached it by w's start), or a replica that
            had g by then returned w's value, or w's request metadata covers
            g's counter.  g explains an observation only if no write that
            outranks g is (by then) known to have been applied: every write of
            the client after g (in client order) must be skippable at the
            observation or not outrank g.  So a ghost DELETE explains "absent"
            only until a later acknowledged PUT of the key that it could not
            have beaten; it never excuses the final state by merely existing.
 losable    a write w acknowledged by replica R (a ghost: applied by
            apply_by) is losable at time T only if, for EVERY piece of
            evidence that a replica held it -- R from the request; every
            replica that returned w's value to a GET, from that GET; every
            replica that answered 2xx to metadata covering w's counter before
            R's first kill after w (it had applied w) -- that replica was
            SIGKILLed (whole replica, not a worker) after the evidence, no
            later than T, and no later than shipped_by(that replica, the
            evidence): i.e. before it could have passed w on.  A holder
            killed later had shipped w; its loss is a violation.
 lost       after healing, the converged state of every key must reflect every
            acknowledged write that is not losable: on a single-writer key the
            client's last write (or an earlier state, all writes above it
            skippable, or a ghost's state that may still win); on a shared
            key no acknowledged write that outranks the final value's write
            may be missing, and an absent key needs one DELETE (acknowledged
            or ghost) that no surviving acknowledged PUT outranks, or no
            surviving PUT at all.  Excused losses are counted as "lost
            writes".  With --fsync always (chaos.py --data-dirs: meta
            fsync "always") no acknowledged write is losable: a kill, or
            kill_all of every replica at once, excuses nothing.
 converge   after healing, all replicas report the full view and hold identical
            maps (GET of every key on every replica, kvsd_keys equal); every
            client then reads each of its keys on every replica with its final
            metadata and gets 200/404 (never 503 for ever), and
            GET /internal/check is 200 {"check": "ok"} everywhere.
 available  per replica, among requests that started and ended while it was
            reachable (not killed->ready again, paused, or named in a
            partition), the fraction answered 2xx or 404 (not 503, not a
            network error) must be >= the threshold."""


def covers(a, b, skip=None):
    """Entries of clock b that clock a does not cover (empty: a >= b)."""
    a = a or {}
    out = []
    for k, v in (b or {}).items():
        if a.get(k, 0) < v and not (skip and skip(k)):
            out.append((k, v, a.get(k, 0)))
    return out


def retired_in(inc, op):
    """Does op's metadata (in or out) name a newer life of inc's address?
    Such a life is retired, and kvsd folds a retired life away -- drops it
    from the metadata it returns -- once every replica has all of it
    (doc/design.md, "Incarnation garbage collection"), so its component
    may be missing from meta_out."""
    addr, stamp = inc_addr(inc), inc_stamp(inc)
    if stamp is None:
        return False
    for m in (op.get("meta_in") or {}, op.get("meta_out") or {}):
        for k in m:
            if inc_addr(k) == addr and (inc_stamp(k) or 0) > stamp:
                return True
    return False


def inc_addr(inc):
    return inc.rsplit("/", 1)[0]


def inc_stamp(inc):
    try:
        return int(inc.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


class Write:
    __slots__ = ("op", "kind", "ghost", "replica", "t_ack", "t0", "key", "value", "client",
                 "inc", "ub", "lb", "holders", "lost_time", "first_seen", "pos", "idx", "t_end",
                 "apply_by")

    def __init__(self, op, idx):
        self.op = op
        self.idx = idx
        self.kind = op["op"]
        self.ghost = op.get("status") is None
        self.replica = op["replica"]
        self.t0 = op["t0"]
        self.t_ack = op["t0"] if self.ghost else op["t1"]
        self.t_end = op.get("t1", self.t0)     # answered, or the client gave up
        self.apply_by = self.t_end              # ghosts: see Checker.ghost_apply_by
        self.key = op["key"]
        self.value = op.get("value")
        self.client = op["client"]
        self.inc = self.ub = self.lb = None
        # evidence that a replica held the write: (replica, held after, held at)
        self.holders = [(self.replica, self.t0, self.t_end)]
        self.lost_time = None
        self.first_seen = INF      # first GET of its value (any client), t0
        self.pos = None
        if not self.ghost:
            mo = op.get("meta_out") or {}
            mine = [k for k in mo if inc_addr(k) == self.replica]
            if mine:
                self.inc = max(mine, key=lambda k: inc_stamp(k) or 0)
                self.ub = mo[self.inc]
                self.lb = (op.get("meta_in") or {}).get(self.inc, 0) + 1


class Checker:
    def __init__(self, records, min_avail=DEFAULT_MIN_AVAIL):
        self.recs = records
        self.min_avail = min_avail
        self.meta = next((r for r in records if r["type"] == "meta"), {})
        self.ops = [r for r in records if r["type"] == "op"]
        self.faults = {}
        for r in records:
            if r["type"] == "fault":
                self.faults[r["id"]] = dict(r, t_end=None)
            elif r["type"] == "heal" and r["id"] in self.faults:
                self.faults[r["id"]]["t_end"] = r["t"]
        self.end_t = max([r.get("t", 0) for r in records if "t" in r] +
                         [r.get("t1", 0) for r in self.ops] + [0])
        self.kills = {}
        for f in self.faults.values():
            if f["kind"] == "kill":
                self.kills.setdefault(f["replicas"][0], []).append(f["t"])
            elif f["kind"] == "kill_all":  # --data-dirs: every replica at once
                for rep in f["replicas"]:
                    self.kills.setdefault(rep, []).append(f["t"])
        # --data-dirs runs --fsync always: an acknowledged write is on its
        # origin's disk before the answer, so no kill excuses its loss
        self.durable = self.meta.get("fsync") == "always"
        for v in self.kills.values():
            v.sort()
        # per replica: merged intervals in which it may not have shipped
        # (the fault, then READMIT_TAIL), and its pauses
        self.isolated = {}
        self.pauses = {}
        for f in self.faults.values():
            if f["kind"] not in ISOLATING:
                continue
            end = f["t_end"] if f["t_end"] is not None else self.end_t
            for rep in f["replicas"]:
                self.isolated.setdefault(rep, []).append((f["t"], end + READMIT_TAIL))
                if f["kind"] == "pause":
                    self.pauses.setdefault(rep, []).append((f["t"], end))
        for rep, iv in self.isolated.items():
            iv.sort()
            merged = []
            for s0, e0 in iv:
                if merged and s0 <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], e0))
                else:
                    merged.append((s0, e0))
            self.isolated[rep] = merged
        self.wall0 = self.meta.get("wall")
        self.violations = {}
        self.n_own_obs = self.n_reads = 0
        self.lost = {}            # write idx -> reason (excused losses)

    # ------------------------------------------------------------ helpers
    def violate(self, kind, msg, recs=()):
        self.violations.setdefault(kind, []).append(
            {"msg": msg, "records": [json.dumps({k: v for k, v in r.items() if not k.startswith("_")},
                                                sort_keys=True)[:1500] for r in recs]})

    def kill_after(self, replica, t, t_max=INF):
        ks = self.kills.get(replica, [])
        i = bisect.bisect_right(ks, t)
        if i < len(ks) and ks[i] <= t_max:
            return ks[i]
        return None

    def rate_503_fault_free(self, run_ops):
        """(503 share, requests) among the requests that started and ended
        while no replica was isolated (a fault and its READMIT_TAIL)."""
        spans = sorted(iv for ivs in self.isolated.values() for iv in ivs)
        n = n503 = 0
        for o in run_ops:
            t0, t1 = o.get("t0"), o.get("t1")
            if t0 is None or t1 is None or o.get("status") is None:
                continue
            if any(a <= t1 and t0 <= b for a, b in spans):
                continue
            n += 1
            n503 += o.get("status") == 503
        return (n503 / n if n else 0.0, n)

    def dead_by(self, inc, t):
        """Had incarnation inc been SIGKILLed by time t?"""
        addr = inc_addr(inc)
        ks = [k for k in self.kills.get(addr, []) if k <= t]
        if not ks:
            return False
        st = inc_stamp(inc)
        if st is None or self.wall0 is None:
            return True
        born = st / 1000.0 - self.wall0
        if abs(born) > 1e6:            # not a wall-clock stamp: be lenient
            return True
        return any(born < k + 0.5 for k in ks)

    def shipped_by(self, reps, t):
        """Time by which a write held at time t by replica reps[0] has been
        shipped -- to reps[1] if given: the first moment SHIP_WINDOW after t
        outside every isolation (fault + READMIT_TAIL) of those replicas."""
        changed = True
        while changed:
            changed = False
            for rep in reps:
                iv = self.isolated.get(rep, ())
                i = bisect.bisect_right(iv, (t, INF)) - 1
                if i >= 0 and iv[i][0] <= t < iv[i][1]:
                    t = iv[i][1]
                    changed = True
        return t + SHIP_WINDOW

    def ghost_apply_by(self, w):
        """Latest time at which ghost w may have been applied at its replica:
        GHOST_APPLY_SLACK after the client gave up or after a pause of the
        replica that began by then, and never after the replica's next kill."""
        t = w.t_end + GHOST_APPLY_SLACK
        for s0, e0 in self.pauses.get(w.replica, ()):
            if s0 <= t and e0 + GHOST_APPLY_SLACK > t and e0 >= w.t0:
                t = e0 + GHOST_APPLY_SLACK
        k = self.kill_after(w.replica, w.t0)
        return min(t, k) if k is not None else t

    def reached_by(self, w, rep):
        """Time by which write w, if it was applied at all and not lost, is
        applied at replica rep."""
        a = w.apply_by
        if rep == w.replica:
            return a
        t = self.shipped_by([w.replica, rep], a)
        k = self.kill_after(w.replica, w.t0)
        if k is not None and k < t:      # passed on before the kill (or lost), then relayed
            t = min(t, self.shipped_by([rep], k))
        return t

    def outranks(self, w, g):
        """Is w surely last-writer-wins-greater than g (a write to the same
        key)?  Yes if w's replica had g when it applied w (g reached it by
        w's start), or a replica that had g returned w's value (w was its
        winner), or w's request metadata covers g's counter (w depends on g)."""
        if g.inc is not None and (w.op.get("meta_in") or {}).get(g.inc, 0) >= g.ub:
            return True
        if self.reached_by(g, w.replica) <= w.t0:
            return True
        if w.kind == "PUT":
            for rep, t_from, _ in w.holders[1:]:
                if self.reached_by(g, rep) <= t_from:
                    return True
        return False

    def lost_time(self, w):
        """Earliest time at which w is losable (INF: never): every piece of
        evidence that a replica held w (origin from the request, a GET that
        returned it, a 2xx answer to metadata covering it) is followed by a
        kill of that replica before it could have shipped w (shipped_by)."""
        if w.lost_time is not None:
            return w.lost_time
        w.lost_time = INF
        if self.durable and not w.ghost and 200 <= (w.op.get("status") or 0) < 300:
            return INF      # acknowledged under --fsync always: never losable
        first_kill = self.kill_after(w.replica, w.t0)
        if first_kill is None or first_kill > self.shipped_by([w.replica], w.apply_by):
            return INF      # the origin outlived its chance to ship it
        evidence = [(w.replica, w.t0, w.apply_by)] + w.holders[1:]
        if w.inc is not None:
            ops = self.inc_ops.get(w.inc, ())
            for t0, t1, cnt, rep in ops[bisect.bisect_left(ops, (w.t0,)):]:
                if t0 > first_kill:
                    break
                if rep != w.replica and cnt >= w.ub and t1 < first_kill:
                    evidence.append((rep, t0, t1))
        lt = 0.0
        for rep, t_from, t_at in evidence:
            k = self.kill_after(rep, t_from)
            if k is None or k > self.shipped_by([rep], t_at):
                return INF
            lt = max(lt, k)
        w.lost_time = lt
        return lt

    # ------------------------------------------------------------ main
    def run(self):
        ops = self.ops
        self.writes = []
        self.by_value = {}
        for i, op in enumerate(ops):
            op["_i"] = i
            st = op.get("status")
            if op["op"] in ("PUT", "DELETE"):
                acked = (op["op"] == "PUT" and st in (200, 201)) or (op["op"] == "DELETE" and st == 200)
                ghost = st is None and op.get("error") != "refused"
                if acked or ghost:
                    w = Write(op, len(self.writes))
                    self.writes.append(w)
                    op["_w"] = w
                    if w.kind == "PUT":
                        if w.value in self.by_value:
                            self.violate("harness_duplicate_value", "value %r written twice" % w.value, [op])
                        self.by_value[w.value] = w
        # every PUT value, acked or not (a 503/refused PUT must never be read)
        self.all_put_values = {op["value"]: op for op in ops if op["op"] == "PUT"}
        # evidence: GETs returning a write's value; 2xx answers to metadata
        self.inc_ops = {}
        for op in ops:
            st = op.get("status")
            if op["op"] == "GET" and st == 200 and op.get("read") in self.by_value:
                w = self.by_value[op["read"]]
                w.holders.append((op["replica"], op["t0"], op["t1"]))
                w.first_seen = min(w.first_seen, op["t0"])
            if st in (200, 201, 404):   # the replica had applied meta_in
                for inc, cnt in (op.get("meta_in") or {}).items():
                    self.inc_ops.setdefault(inc, []).append((op["t0"], op["t1"], cnt, op["replica"]))
        for v in self.inc_ops.values():
            v.sort()
        for w in self.writes:
            if w.ghost:
                w.apply_by = self.ghost_apply_by(w)
        self.check_protocol()
        self.check_causal_abc()
        self.check_single_writer()
        self.check_shared_sessions()
        self.check_final()
        self.check_availability()
        return self.result()

    def check_protocol(self):
        for op in self.ops:
            st = op.get("status")
            if st is None:
                continue
            if st not in ALLOWED[op["op"]]:
                self.violate("bad_status", "%s %s at %s -> %s" % (op["op"], op["key"], op["replica"], st), [op])
            elif st == 503 and op.get("body") != ERR503:
                self.violate("bad_status", "503 with a wrong body", [op])
            elif st in (200, 201) and not isinstance(op.get("meta_out"), dict):
                self.violate("bad_status", "2xx without causal-metadata", [op])

    def check_causal_abc(self):
        for op in self.ops:
            st = op.get("status")
            if st in (200, 201) and isinstance(op.get("meta_out"), dict):
                miss = covers(op["meta_out"], op.get("meta_in"),
                              skip=lambda k: retired_in(k, op) or self.dead_by(k, op["t0"]))
                if miss:
                    self.violate("metadata_regressed", "%s %s at %s answered metadata not covering the "
                                 "request's: %s" % (op["op"], op["key"], op["replica"], miss[:3]), [op])
            if op["op"] != "GET" or st != 200:
                continue
            self.n_reads += 1
            v = op.get("read")
            w = self.by_value.get(v)
            if w is None:
                src = self.all_put_values.get(v)
                why = "never written" if src is None else "written only by a PUT answered %s" % src.get("status")
                self.violate("read_unwritten", "GET %s at %s returned %r: %s" % (
                    op["key"], op["replica"], v, why), [op] + ([src] if src else []))
                continue
            if w.key != op["key"]:
                self.violate("read_unwritten", "GET %s returned %r, written to key %s" % (
                    op["key"], v, w.key), [op, w.op])
                continue
            if w.t0 > op["t1"]:
                self.violate("read_from_future", "GET returned a value whose PUT started later", [op, w.op])
            mo = op.get("meta_out") or {}
            t = op["t0"]
            miss = covers(mo, w.op.get("meta_in"), skip=lambda k: self.dead_by(k, t))
            if miss:
                self.violate("read_without_dependencies",
                             "GET %s at %s returned %r (written at %s) but its metadata lacks the write's "
                             "dependencies %s" % (op["key"], op["replica"], v, w.replica, miss[:3]),
                             [op, w.op])
            if w.inc is not None and mo.get(w.inc, 0) < w.lb and not self.dead_by(w.inc, t):
                self.violate("read_without_dependencies",
                             "GET %s at %s returned %r but its metadata %s=%d does not cover the write "
                             "itself (>= %d)" % (op["key"], op["replica"], v, w.inc, mo.get(w.inc, 0), w.lb),
                             [op, w.op])

    # ------------------------------------------------------------ single-writer keys
    def own_key(self, key):
        return key.startswith("c") and "-k" in key

    def candidates(self, op, wl):
        """State positions (0 = initial absent, i = after wl[i-1]) that op's
        answer is consistent with; None if op tells nothing."""
        st, kind = op.get("status"), op["op"]
        if kind == "GET" and st == 200:
            w = self.by_value.get(op.get("read"))
            return [w.pos] if w is not None and w.pos is not None and w.key == op["key"] and \
                w.client == op["client"] else []
        absent = (kind == "GET" and st == 404) or (kind == "PUT" and st == 201) or \
            (kind == "DELETE" and st == 404)
        present = (kind == "PUT" and st == 200) or (kind == "DELETE" and st == 200)
        if absent:
            return [0] + [i + 1 for i, w in enumerate(wl) if w.kind == "DELETE"]
        if present:
            return [i + 1 for i, w in enumerate(wl) if w.kind == "PUT"]
        return None

    def skippable(self, w, t0, t1):
        if w.ghost and w.first_seen >= t0:
            return True
        lt = self.lost_time(w)
        return lt != INF and lt <= t1

    def ghost_explains(self, wl, c, t0, t1):
        """Can ghost wl[c-1] be the state observed over [t0, t1]?  Only if
        every later write of the client is skippable then or may have lost
        to it under last-writer-wins (does not surely outrank it)."""
        g = wl[c - 1]
        return all(self.skippable(w, t0, t1) or not self.outranks(w, g) for w in wl[c:])

    def judge(self, wl, cands, t0, t1, note_lost=True):
        """(ok, blocking write) for a state observed over [t0, t1] after the
        writes wl (in client order)."""
        for c in cands:
            if c > 0 and wl[c - 1].ghost and self.ghost_explains(wl, c, t0, t1):
                if note_lost:     # the writes g could not have beaten: lost
                    self.note_lost([w for w in wl[c:] if self.outranks(w, wl[c - 1])], t0, t1)
                return True, None
        plain = [c for c in cands if c == 0 or not wl[c - 1].ghost]
        if not plain:
            return False, next((w for w in reversed(wl) if not self.skippable(w, t0, t1)), None)
        best = max(plain)
        i = len(wl)
        while i > best:
            w = wl[i - 1]
            if not self.skippable(w, t0, t1):
                return False, w
            i -= 1
        if note_lost:
            self.note_lost(wl[best:], t0, t1)
        return True, None

    def note_lost(self, ws, t0, t1):
        """Acknowledged writes an accepted observation skipped as losable."""
        for w in ws:
            if not w.ghost and self.skippable(w, t0, t1):
                self.lost[w.idx] = "acknowledged by %s at %.3f; every holder SIGKILLed by %.3f" % (
                    w.replica, w.t_ack, self.lost_time(w))

    def check_shared_sessions(self):
        """Keys every client writes: a client that wrote or read write f of
        a key must not later read a write u that causally precedes f (f's
        request metadata covers u's counter), unless f is losable by then."""
        seen = {}          # (client, key) -> [(write, "wrote"/"read")], newest last
        for op in sorted(self.ops, key=lambda o: (o["client"], o["t0"])):
            if self.own_key(op["key"]):
                continue
            ck = (op["client"], op["key"])
            st = op.get("status")
            if op["op"] == "GET" and st == 200:
                u = self.by_value.get(op.get("read"))
                if u is None or u.key != op["key"]:
                    continue
                if u.inc is not None:
                    for f, how in seen.get(ck, ()):
                        if f is u or (f.op.get("meta_in") or {}).get(u.inc, 0) < u.ub:
                            continue
                        lt = self.lost_time(f)
                        if lt != INF and lt <= op["t1"]:
                            continue
                        kind = "read_your_writes" if how == "wrote" else "monotonic_reads"
                        self.violate(kind, "client %d GET %s at %s [%.3f-%.3f] returned %r, which causally "
                                     "precedes the write %s it had %s (not losable)" % (
                                         op["client"], op["key"], op["replica"], op["t0"], op["t1"],
                                         u.value, f.value or "DELETE", how), [op, u.op, f.op])
                        break
                lst = seen.setdefault(ck, [])
                if not u.ghost:
                    lst.append((u, "read"))
                    del lst[:-8]
            elif op.get("_w") is not None and not op["_w"].ghost:
                lst = seen.setdefault(ck, [])
                lst.append((op["_w"], "wrote"))
                del lst[:-8]

    def check_single_writer(self):
        per = {}
        for op in self.ops:
            if self.own_key(op["key"]):
                per.setdefault((op["client"], op["key"]), []).append(op)
        self.own_writes = {}
        for (cid, key), lst in per.items():
            lst.sort(key=lambda o: o["t0"])
            wl = []
            for op in lst:
                if op["client"] != cid:
                    continue
                cands = self.candidates(op, wl)
                if cands is not None:
                    if cands == [] and op["op"] == "GET":
                        pass    # reported as read_unwritten / read_from_future
                    else:
                        self.n_own_obs += 1
                        ok, blk = self.judge(wl, cands, op["t0"], op["t1"])
                        if not ok and blk is None:
                            self.violate("read_your_writes", "client %d %s %s at %s [%.3f-%.3f] found a "
                                         "state none of its writes explains" % (
                                             cid, op["op"], key, op["replica"], op["t0"], op["t1"]), [op])
                        elif not ok:
                            kind = "monotonic_reads" if blk.first_seen < op["t0"] else "read_your_writes"
                            self.violate(kind, "client %d %s %s at %s [%.3f-%.3f] found a state from before "
                                         "its write %s (%s, %s at %s, not losable)" % (
                                             cid, op["op"], key, op["replica"], op["t0"], op["t1"],
                                             blk.value if blk.kind == "PUT" else "DELETE",
                                             "ghost" if blk.ghost else "acknowledged",
                                             "%.3f" % blk.t_ack, blk.replica), [op, blk.op])
                w = op.get("_w")
                if w is not None:
                    wl.append(w)
                    w.pos = len(wl)
            self.own_writes[(cid, key)] = wl

    # ------------------------------------------------------------ final state
    def check_final(self):
        maps = [r for r in self.recs if r["type"] == "final_map"]
        conv = next((r for r in self.recs if r["type"] == "converged"), None)
        self.conv = conv
        if conv is None or not conv.get("ok"):
            self.violate("not_converged", "replicas did not converge after healing: %s" % (
                json.dumps(conv)[:800] if conv else "no convergence record"), [])
        final = None
        if maps and all(m.get("map") is not None for m in maps):
            ref = maps[0]["map"]
            for m in maps[1:]:
                if m["map"] != ref:
                    diff = [k for k in ref if m["map"].get(k) != ref.get(k)]
                    self.violate("not_converged", "%s and %s differ on %s" % (
                        maps[0]["replica"], m["replica"], diff[:5]), [])
            final = ref
        elif maps:
            self.violate("not_converged", "a replica did not answer the final reads", [])
        for r in self.recs:
            if r["type"] == "store_check" and not (r.get("status") == 200 and
                                                   r.get("body") == '{"check": "ok"}'):
                self.violate("store_check_failed", "%s: %s %s" % (r["replica"], r.get("status"),
                                                                  r.get("body")), [r])
        finals = {}
        for op in self.ops:
            if op.get("phase") == "final":
                finals[(op["client"], op["key"], op["replica"])] = op
        for k, op in finals.items():     # the last try of each final read
            if op.get("status") not in (200, 404):
                self.violate("final_read_unavailable", "client %d GET %s at %s with its final metadata "
                             "still %s after healing" % (op["client"], op["key"], op["replica"],
                                                         op.get("status") or op.get("error")), [op])
        if final is None:
            return
        end = self.end_t + 1.0
        for key, (state, val) in final.items():
            if self.own_key(key):
                cid = int(key[1:key.index("-k")])
                wl = self.own_writes.get((cid, key), [])
                if state == "found":
                    w = self.by_value.get(val)
                    cands = [w.pos] if w is not None and w.key == key and w.pos else []
                else:
                    cands = [0] + [i + 1 for i, w in enumerate(wl) if w.kind == "DELETE"]
                if state == "found" and not cands:
                    self.violate("lost_write", "final %s = %r, which no PUT to it wrote" % (key, val), [])
                    continue
                ok, blk = self.judge(wl, cands, INF, end)
                if not ok and blk is None:
                    self.violate("lost_write", "final %s is %s, which none of the client's writes explains" % (
                        key, repr(val) if state == "found" else "absent"), [])
                elif not ok:
                    self.violate("lost_write", "final %s is %s, but the client's %s (%s by %s at %.3f) is "
                                 "missing and not losable (a replica seen holding it, of %s, was not killed "
                                 "before it could ship it)" % (
                                     key, repr(val) if state == "found" else "absent",
                                     blk.value if blk.kind == "PUT" else "DELETE",
                                     "ghost" if blk.ghost else "acknowledged", blk.replica, blk.t_ack,
                                     sorted(set(h[0] for h in blk.holders))), [blk.op])
            else:
                self.check_final_shared(key, state, val)

    def check_final_shared(self, key, state, val):
        """The final state must be the last-writer-wins winner among the
        surviving writes: no acknowledged write that surely outranks it
        (Checker.outranks) may be missing unless it is losable."""
        ws = [w for w in self.writes if w.key == key]
        puts = [w for w in ws if not w.ghost and w.kind == "PUT"]

        if state == "found":
            u = self.by_value.get(val)
            if u is None or u.key != key:
                self.violate("lost_write", "final %s = %r, which no PUT to it wrote" % (key, val), [])
                return
            for w in ws:
                if w is u or w.ghost or not self.outranks(w, u):
                    continue
                if self.lost_time(w) == INF:
                    self.violate("lost_write", "final %s = %r (%s by %s at %.3f), but %s %s (acknowledged by "
                                 "%s at %.3f) outranks it and is missing" % (
                                     key, val, "ghost" if u.ghost else "acknowledged", u.replica, u.t_ack,
                                     w.kind, w.value or "", w.replica, w.t_ack), [u.op, w.op])
                else:
                    self.lost[w.idx] = "superseded in the final state; every holder killed"
            return
        # absent: the initial state or some DELETE d (acknowledged or ghost)
        # won, so no surviving PUT may outrank d (or exist at all)
        live = [w for w in puts if self.lost_time(w) == INF]
        if not live:
            for w in puts:
                self.lost[w.idx] = "absent in the final state; every holder killed"
            return
        blocked = None
        for d in sorted((w for w in ws if w.kind == "DELETE"), key=lambda w: -w.t0):
            above = [w for w in puts if self.outranks(w, d)]
            alive = [w for w in above if self.lost_time(w) == INF]
            if not alive:
                for w in above:
                    self.lost[w.idx] = "absent in the final state; every holder killed"
                return
            if blocked is None:
                blocked = (d, alive[-1])
        if blocked is None:
            self.violate("lost_write", "final %s is absent, but no DELETE of it was ever sent and PUT %r "
                         "(acknowledged by %s at %.3f) survives" % (key, live[-1].value, live[-1].replica,
                                                                    live[-1].t_ack), [live[-1].op])
        else:
            d, w = blocked
            self.violate("lost_write", "final %s is absent, but every DELETE of it is outranked by a PUT "
                         "that is missing, e.g. the last DELETE (%s by %s at %.3f) by PUT %r (acknowledged by "
                         "%s at %.3f)" % (key, "ghost" if d.ghost else "acknowledged", d.replica, d.t_ack,
                                          w.value, w.replica, w.t_ack), [d.op, w.op])

    # ------------------------------------------------------------ availability
    def check_availability(self):
        down = {}
        for f in self.faults.values():
            if f["kind"] == "worker_kill":
                continue
            end = f["t_end"] if f["t_end"] is not None else self.end_t
            for rep in f["replicas"]:
                down.setdefault(rep, []).append((f["t"], end))
        self.avail = {}
        for rep in self.meta.get("replicas", []):
            iv = down.get(rep, [])
            tot = good = 0
            for op in self.ops:
                if op["replica"] != rep or op.get("phase") != "run":
                    continue
                if any(op["t0"] < e and op["t1"] > s for s, e in iv):
                    continue
                tot += 1
                if op.get("status") in (200, 201, 404):
                    good += 1
            self.avail[rep] = (good, tot)
            frac = good / tot if tot else 0.0
            if not tot or frac < self.min_avail:
                self.violate("availability", "%s answered %d of %d requests while reachable (%.1f%% < %.0f%%)"
                             % (rep, good, tot, 100 * frac, 100 * self.min_avail), [])

    # ------------------------------------------------------------ result
    def result(self):
        run_ops = [o for o in self.ops if o.get("phase") == "run"]
        by = {}
        for o in run_ops:
            s = o.get("status") or o.get("error")
            by.setdefault(o["op"], {}).setdefault(str(s), 0)
            by[o["op"]][str(s)] += 1
        n503 = sum(1 for o in run_ops if o.get("status") == 503)
        faults = {}
        for f in self.faults.values():
            faults[f["kind"]] = faults.get(f["kind"], 0) + 1
        props = {
            "protocol": ["bad_status", "harness_duplicate_value"],
            "causal": ["metadata_regressed", "read_unwritten", "read_from_future",
                       "read_without_dependencies", "read_your_writes", "monotonic_reads"],
            "no_lost_writes": ["lost_write"],
            "convergence": ["not_converged", "final_read_unavailable"],
            "store_check": ["store_check_failed"],
            "availability": ["availability"],
        }
        summary = {
            "seed": self.meta.get("seed"),
            "duration": self.meta.get("duration"),
            "replicas": self.meta.get("replicas"),
            "clients": self.meta.get("clients"),
            "operations": len(run_ops),
            "final_reads": sum(1 for o in self.ops if o.get("phase") == "final"),
            "by_op_status": by,
            "acked_writes": sum(1 for w in self.writes if not w.ghost and w.op.get("phase") == "run"),
            "ghost_writes": sum(1 for w in self.writes if w.ghost),
            "faults": faults,
            "checked": {"reads_with_value": self.n_reads, "single_writer_observations": self.n_own_obs},
            "violations": {k: len(v) for k, v in self.violations.items()},
            "lost_writes": len(self.lost),
            "rate_503": n503 / len(run_ops) if run_ops else 0.0,
            "rate_503_fault_free": self.rate_503_fault_free(run_ops),
            "network_errors": sum(1 for o in run_ops if o.get("status") is None),
            "availability": {r: {"answered": g, "requests": t, "fraction": (g / t if t else None)}
                             for r, (g, t) in self.avail.items()},
            "converged_after": self.conv.get("elapsed") if self.conv else None,
            "properties": {p: not any(self.violations.get(k) for k in ks) for p, ks in props.items()},
        }
        return {"ok": not self.violations, "summary": summary, "violations": self.violations,
                "lost": {"%s (#%d)" % (self.writes[i].value or "DELETE %s" % self.writes[i].key, i): why
                         for i, why in sorted(self.lost.items())}}


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass      # a truncated last line of a crashed run
    return recs


def check_file(path, min_avail=DEFAULT_MIN_AVAIL):
    return Checker(load(path), min_avail).run()


def format_summary(res, per_kind=5):
    s = res["summary"]
    out = [RULES, "", "=== chaos summary ==="]
    out.append("seed %s, %s s, replicas %s, %s clients" % (s["seed"], s["duration"],
                                                          ", ".join(s["replicas"] or []), s["clients"]))
    out.append("operations: %d (+%d final reads); acknowledged writes %d, ghost writes %d, "
               "network errors %d" % (s["operations"], s["final_reads"], s["acked_writes"],
                                      s["ghost_writes"], s["network_errors"]))
    for op in sorted(s["by_op_status"]):
        out.append("  %-6s %s" % (op, ", ".join("%s:%d" % kv for kv in sorted(s["by_op_status"][op].items()))))
    out.append("checked: %d GETs that returned a value, %d single-writer-key observations" % (
        s["checked"]["reads_with_value"], s["checked"]["single_writer_observations"]))
    out.append("faults: %s (total %d)" % (", ".join("%s:%d" % kv for kv in sorted(s["faults"].items())),
                                         sum(s["faults"].values())))
    out.append("503 rate: %.2f%%" % (100 * s["rate_503"]))
    ff = s.get("rate_503_fault_free")
    if ff is not None:
        out.append("503 rate outside faults: %.3f%% of %d requests made while no replica was isolated"
                   % (100 * ff[0], ff[1]))
    out.append("availability while reachable (2xx/404 answers / requests):")
    for r, a in sorted(s["availability"].items()):
        out.append("  %s %d/%d = %s" % (r, a["answered"], a["requests"],
                                        "%.1f%%" % (100 * a["fraction"]) if a["fraction"] is not None else "-"))
    out.append("converged %s s after healing" % s["converged_after"])
    out.append("lost writes (excused: every holder SIGKILLed): %d" % s["lost_writes"])
    for v, why in list(res["lost"].items())[:10]:
        out.append("  %s: %s" % (v, why))
    out.append("violations: %s" % (", ".join("%s:%d" % kv for kv in sorted(s["violations"].items()))
                                   or "none"))
    for kind, lst in sorted(res["violations"].items()):
        for v in lst[:per_kind]:
            out.append("  [%s] %s" % (kind, v["msg"]))
            for r in v["records"]:
                out.append("      %s" % r)
        if len(lst) > per_kind:
            out.append("  [%s] ... %d more" % (kind, len(lst) - per_kind))
    out.append("properties: %s" % ", ".join("%s=%s" % (p, "ok" if ok else "VIOLATED")
                                           for p, ok in sorted(s["properties"].items())))
    out.append("RESULT: %s" % ("PASS" if res["ok"] else "FAIL"))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description="check a kvsd chaos history")
    p.add_argument("history")
    p.add_argument("--min-availability", type=float, default=DEFAULT_MIN_AVAIL)
    p.add_argument("--json", help="write the summary and violations as JSON here")
    a = p.parse_args(argv)
    res = check_file(a.history, a.min_availability)
    print(format_summary(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
