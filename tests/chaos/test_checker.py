#!/usr/bin/env python3
"""Tests of the chaos history checker (tests/chaos/checker.py) on small
synthetic histories, in make check (TAP; no kvsd process, no address).

Each history is built by hand, record by record, in the format chaos.py
writes, and judged by the checker.  The first group must be reported:
losses that the checker once excused (a ghost DELETE explaining every later
"absent", a holder killed any time later, only the first non-origin holder
credited).  The second group is behaviour kvsd is allowed and must pass.

CHECKER_PY=path judges with another checker.py (e.g. an older one, to see
these tests fail on it)."""

import importlib.util
import os

from kvstest import ok, diag, done

HERE = os.path.dirname(os.path.abspath(__file__))
_path = os.environ.get("CHECKER_PY") or os.path.join(HERE, "checker.py")
_spec = importlib.util.spec_from_file_location("checker_under_test", _path)
checker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checker)

A, B, C = "127.0.0.110:8090", "127.0.0.111:8090", "127.0.0.112:8090"
INC = {A: A + "/1000", B: B + "/1001", C: C + "/1002"}
ERR404 = '{"error": "Key does not exist"}'


class History:
    """A history as chaos.py writes it.  Every acknowledged write gets the
    next sequence number of its replica; a client's metadata grows with
    every answer, as a course client's does."""

    def __init__(self):
        self.recs = [{"type": "meta", "replicas": [A, B, C], "clients": 3, "seed": 0,
                      "duration": 60.0, "wall": None}]
        self.seq = {A: 0, B: 0, C: 0}
        self.meta = {}           # client -> causal metadata
        self.fid = 0
        self.present = set()     # keys whose last acknowledged write is a PUT

    def _op(self, client, op, key, rep, t0, t1, status, value=None, read=None, error=None,
            meta_out=None):
        m_in = dict(self.meta.get(client, {})) or None
        rec = {"type": "op", "phase": "run", "client": client, "op": op, "key": key, "replica": rep,
               "t0": t0, "t1": t1, "status": status, "value": value, "meta_in": m_in}
        if error:
            rec["error"] = error
        if read is not None:
            rec["read"] = read
        if status == 404:
            rec["body"] = ERR404
        if status in (200, 201):
            mo = dict(m_in or {})
            mo.update(meta_out or {})
            rec["meta_out"] = mo
            self.meta[client] = mo
        self.recs.append(rec)
        return rec

    def write(self, client, op, key, rep, t0, t1=None, status=None, value=None, error=None):
        """An acknowledged PUT/DELETE, or a ghost when error is given."""
        if error:
            return self._op(client, op, key, rep, t0, t1 if t1 is not None else t0 + 2.0, None,
                            value=value, error=error)
        self.seq[rep] += 1
        if status is None:     # what the key was before: present unless a DELETE came last
            status = 200 if op == "DELETE" or key in self.present else 201
        if op == "PUT":
            self.present.add(key)
        else:
            self.present.discard(key)
        return self._op(client, op, key, rep, t0, t1 if t1 is not None else t0 + 0.01, status,
                        value=value, meta_out={INC[rep]: self.seq[rep]})

    def get(self, client, key, rep, t0, read=None, dep=None):
        """A GET answered 200 with `read` (its writer's metadata must be in
        dep, the write record) or 404."""
        mo = dict(dep["meta_out"]) if dep else {}
        if read is None:
            return self._op(client, "GET", key, rep, t0, t0 + 0.01, 404, meta_out=mo)
        return self._op(client, "GET", key, rep, t0, t0 + 0.01, 200, read=read, meta_out=mo)

    def fault(self, kind, reps, t, t_end):
        self.fid += 1
        self.recs.append({"type": "fault", "id": self.fid, "kind": kind, "replicas": reps, "t": t})
        self.recs.append({"type": "heal", "id": self.fid, "kind": kind, "replicas": reps, "t": t_end})

    def final(self, state):
        """Converged final maps: key -> value, or None for absent."""
        m = {k: (["found", v] if v is not None else ["absent", None]) for k, v in state.items()}
        for r in (A, B, C):
            self.recs.append({"type": "final_map", "replica": r, "map": m, "t": 60.5})
        self.recs.append({"type": "converged", "ok": True, "elapsed": 0.1, "t": 60.5})
        for r in (A, B, C):
            self.recs.append({"type": "store_check", "replica": r, "status": 200,
                              "body": '{"check": "ok"}', "t": 60.6})
        return self.recs


def judge(recs):
    res = checker.Checker(recs, 0.0).run()
    res["violations"].pop("availability", None)     # synthetic histories are tiny
    return res


def reported(name, recs, kind):
    res = judge(recs)
    got = res["violations"].get(kind)
    ok(bool(got), "%s: reported as %s" % (name, kind),
       "violations: %s; lost writes: %s" % ({k: [v["msg"] for v in vs] for k, vs in res["violations"].items()},
                                            res["lost"]))
    if got:
        diag("  %s" % got[0]["msg"])
    return res


def passes(name, recs, lost=0):
    res = judge(recs)
    ok(not res["violations"] and len(res["lost"]) == lost,
       "%s: no violation, %d excused loss(es)" % (name, lost),
       "violations: %s; lost writes: %s" % ({k: [v["msg"] for v in vs] for k, vs in res["violations"].items()},
                                            res["lost"]))
    return res


# --------------------------------------------------------------------------
# must be reported
# --------------------------------------------------------------------------

def ghost_delete_then_lost_put():
    """A DELETE of c0-k0 times out at B (B is healthy: it applies the DELETE
    within the client's timeout or not at all), then the client's PUT at A
    is acknowledged 8 s later and read back at C.  The DELETE was at A long
    before the PUT, so the PUT outranks it: the key can never be absent
    again unless the PUT is lost, and A, its holder, is never killed."""
    h = History()
    h.write(0, "PUT", "c0-k0", A, 1.0, value="c0-1")
    h.write(0, "DELETE", "c0-k0", B, 2.0, error="TimeoutError")
    p = h.write(0, "PUT", "c0-k0", A, 10.0, value="c0-3")
    h.get(0, "c0-k0", C, 11.0, read="c0-3", dep=p)
    return h


h = ghost_delete_then_lost_put()
reported("own key: the converged state lacks a PUT acknowledged 8 s after a ghost DELETE",
         h.final({"c0-k0": None}), "lost_write")

h = ghost_delete_then_lost_put()
h.get(0, "c0-k0", C, 12.0)                        # 404: the PUT vanished
res = judge(h.final({"c0-k0": "c0-3"}))
ok(res["violations"].get("monotonic_reads") or res["violations"].get("read_your_writes"),
   "own key: a 404 after the client read its PUT back is reported although an older DELETE is a ghost",
   str(res["violations"]))

h = History()
h.write(1, "PUT", "sh-0", C, 0.5, value="c1-1")
h.write(1, "DELETE", "sh-0", B, 2.0, error="TimeoutError")
h.write(2, "PUT", "sh-0", A, 10.0, value="c2-5")
reported("shared key: final absent with only an old ghost DELETE under a later acknowledged PUT",
         h.final({"sh-0": None}), "lost_write")

h = History()
h.write(1, "DELETE", "sh-1", B, 2.0)              # d1
h.write(2, "DELETE", "sh-1", C, 2.1)              # d2, concurrent with d1
h.write(1, "PUT", "sh-1", A, 2.3, value="c1-3")   # follows d1 only
h.write(2, "PUT", "sh-1", A, 2.4, value="c2-4")   # follows d2 only
reported("shared key: final absent although a surviving PUT outranks every DELETE",
         h.final({"sh-1": None}), "lost_write")

h = History()
h.write(0, "PUT", "c0-k1", A, 1.0, value="c0-1")  # nobody else is ever seen holding it
h.fault("kill", [A], 30.0, 31.0)                  # 29 s later: A had shipped it long before
reported("a write whose only holder was killed 29 s after acknowledging it is not excused",
         h.final({"c0-k1": None}), "lost_write")

h = History()
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.get(1, "sh-9", B, 1.2)                          # not yet: client 1 has no metadata
h.meta[1] = dict(h.meta[0])
h.get(1, "sh-9", B, 1.3)                          # B answers metadata covering c0-1: B has it
h.get(1, "sh-9", C, 1.4)                          # and so has C
h.fault("kill", [A], 1.5, 2.0)
h.fault("kill", [B], 2.2, 2.8)                    # C, a holder, is never killed
reported("every holder is credited, not only the first non-origin one",
         h.final({"c0-k2": None}), "lost_write")

# --------------------------------------------------------------------------
# must pass
# --------------------------------------------------------------------------

h = History()
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.meta[1] = dict(h.meta[0])
h.get(1, "sh-9", B, 1.3)
h.get(1, "sh-9", C, 1.4)
h.fault("kill", [A], 1.5, 2.0)
h.fault("kill", [B], 2.2, 2.8)
h.fault("kill", [C], 2.85, 3.5)                   # every holder, each within its window
passes("a write is an excused loss when every holder is killed before it could ship it",
       h.final({"c0-k2": None}), lost=1)

h = History()
h.write(0, "PUT", "c0-k0", A, 1.0, value="c0-1")
h.fault("pause", [B], 4.5, 9.0)
h.write(0, "PUT", "c0-k0", B, 5.0, error="TimeoutError", value="c0-2")  # applied after SIGCONT
p = h.write(0, "PUT", "c0-k0", C, 7.5, value="c0-3")                    # B lacked it then
h.get(0, "c0-k0", A, 8.0, read="c0-3", dep=p)
h.get(0, "c0-k0", C, 16.0, read="c0-2", dep=p)    # the ghost won last-writer-wins
passes("a ghost PUT applied after its replica's pause outranks a later acknowledged PUT",
       h.final({"c0-k0": "c0-2"}))

h = History()
h.write(0, "PUT", "c0-k3", A, 1.0, value="c0-1")
h.write(0, "DELETE", "c0-k3", B, 2.0, error="TimeoutError")     # client gives up at 4.0
h.write(0, "PUT", "c0-k3", B, 4.1, value="c0-3")  # B may still apply the DELETE after this
h.get(0, "c0-k3", C, 9.0)
passes("a ghost DELETE concurrent with the next PUT may win", h.final({"c0-k3": None}))

h = History()
h.write(0, "PUT", "c0-k0", A, 1.0, value="c0-1")
h.write(0, "DELETE", "c0-k0", B, 50.0, error="TimeoutError")
passes("a ghost DELETE with nothing after it explains the final absence", h.final({"c0-k0": None}))

h = History()
h.write(0, "PUT", "sh-2", A, 1.0, value="c0-1")
h.write(1, "DELETE", "sh-2", B, 20.0, error="TimeoutError")
passes("shared key: a ghost DELETE after every PUT explains the final absence", h.final({"sh-2": None}))

h = History()
p = h.write(0, "PUT", "c0-k1", A, 1.0, value="c0-1")
h.get(0, "c0-k1", B, 2.0, read="c0-1", dep=p)
h.fault("partition_oneway", [A], 10.0, 12.0)      # A ships to nobody ...
h.write(0, "PUT", "c0-k1", A, 11.0, value="c0-2")  # ... acknowledges this ...
h.write(0, "PUT", "c0-k1", A, 14.0, value="c0-3")  # ... and this, before re-admission
h.fault("kill", [A], 15.0, 16.0)                  # and dies: both are lost, as api.md allows
passes("writes of a cut-off replica killed before re-admission are excused losses",
       h.final({"c0-k1": "c0-1"}), lost=2)

h = History()
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.write(0, "PUT", "c0-k2", A, 5.0, value="c0-2")
h.fault("kill", [A], 5.5, 6.0)                    # 0.5 s after: it may not have been shipped
passes("a write whose only holder was killed 0.5 s later is an excused loss",
       h.final({"c0-k2": "c0-1"}), lost=1)

# --------------------------------------------------------------------------
# --data-dirs (--fsync always): no loss of an acknowledged write is excused
# --------------------------------------------------------------------------

def durable(h):
    h.recs[0]["fsync"] = "always"
    return h


h = durable(History())
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.write(0, "PUT", "c0-k2", A, 5.0, value="c0-2")
h.fault("kill", [A], 5.5, 6.0)
reported("fsync always: the write a kill 0.5 s later took is a loss", h.final({"c0-k2": "c0-1"}), "lost_write")

h = durable(History())
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.write(1, "PUT", "c1-k0", B, 1.1, value="c1-1")
h.fault("kill_all", [A, B, C], 1.2, 3.0)
reported("fsync always: writes a kill_all took are losses", h.final({"c0-k2": None, "c1-k0": "c1-1"}),
         "lost_write")

h = durable(History())
h.write(0, "PUT", "c0-k2", A, 1.0, value="c0-1")
h.write(0, "PUT", "c0-k2", A, 5.0, value="c0-3", error="TimeoutError")   # never acknowledged
h.fault("kill_all", [A, B, C], 5.1, 7.0)
passes("fsync always: an unacknowledged write a kill_all took may be lost; the acknowledged one is there",
       h.final({"c0-k2": "c0-1"}))

done()
