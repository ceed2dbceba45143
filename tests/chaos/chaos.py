#!/usr/bin/env python3
"""chaos.py -- seeded chaos run against a loopback kvsd cluster.

    python3 tests/chaos/chaos.py [--seed N] [--duration S] [--replicas 3..5]
                                 [--clients N] [--out DIR] [--data-dirs]

Starts 3-5 replicas on 127.0.0.110.. (port 8090, --workers 2, full view),
runs several client threads -- each with its own causal metadata -- doing
mixed PUT/GET/DELETE on random replicas, and a nemesis that on a seeded
random schedule SIGKILLs and restarts replicas, SIGKILLs single workers,
SIGSTOPs/SIGCONTs replicas and makes and heals partitions (full isolation,
one-way, bridge) with iptables rules in a dedicated chain.  Every request,
response and fault is written with timestamps to DIR/history.jsonl.  At the
end everything is healed, the cluster must converge, every client reads its
own keys everywhere with its final metadata, /internal/check runs on every
replica, and tests/chaos/checker.py judges the history.

With --data-dirs every replica runs with --data-dir (under DIR) and
--fsync always, the nemesis also SIGKILLs the whole cluster at once
(kill_all) and restarts it on its directories, and the checker excuses no
loss of an acknowledged write at all.

Exit status: 0 if the checker found no violation, 1 otherwise, 2 on a
harness failure.  Addresses: replicas 127.0.0.110-127.0.0.114 (never
outside 127.0.0.110-127.0.0.119; --base-ip 190 moves them to .190-.194,
the durability tests' block), clients 127.0.0.100.  Processes are
started with setsid and killed by pid (process group) only; the iptables
chain KVST<pid> is removed whatever happens.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import kvstest  # noqa: E402
from kvstest import Replica, Firewall, request, wait_until  # noqa: E402
import checker  # noqa: E402

NET_ERRORS = (OSError, http.client.HTTPException)
BASE_IP = 110          # replicas on 127.0.0.110 ... (at most .119)
PORT = 8090
CLIENT_TIMEOUT = 2.0   # s; a SIGSTOPped replica never answers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the nemesis schedule and the clients (default: time)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic and faults")
    p.add_argument("--replicas", type=int, default=5, help="3 to 5")
    p.add_argument("--clients", type=int, default=4, help="client threads")
    p.add_argument("--own-keys", type=int, default=4, help="keys only one client writes, per client")
    p.add_argument("--shared-keys", type=int, default=6, help="keys every client writes")
    p.add_argument("--pace", type=float, default=0.01, help="pause between a client's requests (s)")
    p.add_argument("--out", default=None, help="directory for history.jsonl, replica logs, summary")
    p.add_argument("--min-availability", type=float, default=checker.DEFAULT_MIN_AVAIL,
                   help="availability property threshold, per replica, while reachable")
    p.add_argument("--kvsd", default=None, help="kvsd binary (default $KVSD_BIN or /work/build/kvsd)")
    p.add_argument("--base-ip", type=int, default=BASE_IP, choices=(BASE_IP, 190),
                   help="last byte of the first replica's address: 110 (default) or 190")
    p.add_argument("--kvsd-args", default="",
                   help="extra kvsd flags for every replica, e.g. '--causal-wait 50'")
    p.add_argument("--data-dirs", action="store_true",
                   help="replicas with --data-dir and --fsync always; adds the kill_all fault; no loss excused")
    a = p.parse_args(argv)
    if not 3 <= a.replicas <= 5:
        p.error("--replicas must be 3 to 5")
    if a.seed is None:
        a.seed = int(time.time() * 1000) % 1000000007
    return a


class History:
    """JSON-lines history; every line is flushed at once (a crashed run
    still leaves a usable prefix)."""

    def __init__(self, path, t0):
        self.f = open(path, "w")
        self.lock = threading.Lock()
        self.t0 = t0
        self.n = 0

    def now(self):
        return round(time.monotonic() - self.t0, 6)

    def write(self, rec):
        line = json.dumps(rec, sort_keys=True)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()
            self.n += 1

    def close(self):
        with self.lock:
            self.f.close()


class Run:
    def __init__(self, args):
        self.a = args
        self.ips = ["127.0.0.%d" % (args.base_ip + i) for i in range(args.replicas)]
        assert all(args.base_ip <= int(ip.rsplit(".", 1)[1]) <= args.base_ip + 9 for ip in self.ips)
        self.view = ["%s:%d" % (ip, PORT) for ip in self.ips]
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.hist = History(os.path.join(args.out, "history.jsonl"), self.t0)
        self.reps = []
        self.fw = None
        self.rules = []            # (src, dst) DROP rules in our chain; dst/src may be None
        self.rules_lock = threading.Lock()
        self.fault_id = 0
        self.fault_counts = {}
        self.clients = []

    # ---------------------------------------------------------------- cluster
    def start_cluster(self):
        for ip in self.ips:
            args = ["--memory", "64M"] + (self.a.kvsd_args.split() if self.a.kvsd_args else [])
            if self.a.data_dirs:
                args += ["--data-dir", os.path.join(self.a.out, "data-" + ip), "--fsync", "always"]
            r = Replica(ip, PORT, view=self.view, workers=2, extra_args=args, start=False)
            self.reps.append(r)
        for r in self.reps:
            r.start()
            self.hist.write({"type": "start", "replica": r.addr, "pid": r.master_pid, "t": self.hist.now()})
        for r in self.reps:
            r.wait_ready(15)
        ok = wait_until(lambda: all(self.ready(r) for r in self.reps), 15)
        if not ok:
            raise RuntimeError("cluster not ready within 15 s")
        if not wait_until(lambda: all(self.view_of(r) == sorted(self.view) for r in self.reps), 15):
            raise RuntimeError("views not full within 15 s")
        self.fw = Firewall().open()

    def ready(self, r):
        try:
            return request(r.addr, "GET", "/ready", timeout=1).status == 200
        except NET_ERRORS:
            return False

    def view_of(self, r):
        try:
            g = request(r.addr, "GET", "/view", timeout=1)
        except NET_ERRORS:
            return None
        if g.status != 200 or not isinstance(g.json, dict):
            return None
        return sorted(g.json.get("view") or [])

    # ---------------------------------------------------------------- history
    def fault(self, kind, replicas, **extra):
        self.fault_id += 1
        rec = {"type": "fault", "id": self.fault_id, "kind": kind, "replicas": replicas,
               "t": self.hist.now()}
        rec.update(extra)
        self.hist.write(rec)
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
        return self.fault_id

    def end_fault(self, fid, kind, replicas, **extra):
        rec = {"type": "heal", "id": fid, "kind": kind, "replicas": replicas, "t": self.hist.now()}
        rec.update(extra)
        self.hist.write(rec)

    # ---------------------------------------------------------------- iptables
    def drop(self, src, dst):
        spec = []
        if src:
            spec += ["-s", src]
        if dst:
            spec += ["-d", dst]
        with self.rules_lock:
            kvstest.iptables("-A", self.fw.chain, *(spec + ["-j", "DROP"]))
            self.rules.append((src, dst))

    def undrop_all(self):
        with self.rules_lock:
            for src, dst in self.rules:
                spec = (["-s", src] if src else []) + (["-d", dst] if dst else [])
                kvstest.iptables("-D", self.fw.chain, *(spec + ["-j", "DROP"]), check=False)
            self.rules = []

    # ---------------------------------------------------------------- nemesis
    def nemesis(self):
        rnd = random.Random(self.a.seed ^ 0x5eed5eed)
        kinds = [("kill", 20), ("worker_kill", 20), ("pause", 15),
                 ("partition_full", 15), ("partition_oneway", 15), ("partition_bridge", 15)]
        if self.a.data_dirs:
            kinds.append(("kill_all", 8))
        total = sum(w for _, w in kinds)
        while not self.stop.is_set():
            if self.stop.wait(rnd.uniform(0.5, 2.5)):
                break
            x = rnd.uniform(0, total)
            for kind, w in kinds:
                if x < w:
                    break
                x -= w
            # draw every random number of this fault before acting, so the
            # schedule depends only on the seed
            order = list(range(len(self.reps)))
            rnd.shuffle(order)
            dur = rnd.uniform(0.5, 4.0)
            wsel = rnd.random()
            victim = self.reps[order[0]]
            try:
                getattr(self, "do_" + kind)(victim, [self.reps[i] for i in order], dur, wsel)
            except Exception as e:  # a failed fault is reported, the run goes on
                self.hist.write({"type": "nemesis_error", "kind": kind, "error": repr(e),
                                 "t": self.hist.now()})

    def do_kill(self, r, order, dur, _w):
        fid = self.fault("kill", [r.addr], pid=r.master_pid)
        r.kill(signal.SIGKILL)
        self.stop.wait(dur)
        self.restart(r, fid)

    def restart(self, r, fid):
        wait_until(lambda: not r.group(), 5)
        r.start()
        self.hist.write({"type": "start", "replica": r.addr, "pid": r.master_pid, "t": self.hist.now()})
        ok = wait_until(lambda: self.ready(r), 20, 0.05)
        self.end_fault(fid, "kill", [r.addr], ready=bool(ok))

    def do_kill_all(self, r, order, dur, _w):
        """--data-dirs: SIGKILL every replica at once (a power cut), then
        restart them all on their data directories."""
        fid = self.fault("kill_all", [x.addr for x in self.reps], pids=[x.master_pid for x in self.reps])
        for x in self.reps:
            x._signal_group(signal.SIGKILL)
        for x in self.reps:
            x.wait(5)
        self.stop.wait(min(dur, 1.5))
        for x in self.reps:
            wait_until(lambda: not x.group(), 5)
            x.start()
            self.hist.write({"type": "start", "replica": x.addr, "pid": x.master_pid, "t": self.hist.now()})
        ok = wait_until(lambda: all(self.ready(x) for x in self.reps), 30, 0.05)
        self.end_fault(fid, "kill_all", [x.addr for x in self.reps], ready=bool(ok))

    def do_worker_kill(self, r, order, dur, wsel):
        ws = r.workers_list()
        if not ws:
            return
        pid, name = ws[int(wsel * len(ws)) % len(ws)]
        fid = self.fault("worker_kill", [r.addr], pid=pid, worker=name)
        try:
            os.kill(pid, signal.SIGKILL)   # a child of a master we started
        except ProcessLookupError:
            pass
        self.end_fault(fid, "worker_kill", [r.addr])

    def do_pause(self, r, order, dur, _w):
        fid = self.fault("pause", [r.addr])
        r.kill(signal.SIGSTOP)
        try:
            self.stop.wait(dur)
        finally:
            r.kill(signal.SIGCONT)
            self.end_fault(fid, "pause", [r.addr])

    def _partition(self, kind, replicas, rules, dur):
        fid = self.fault(kind, [x.addr for x in replicas],
                         rules=[[s, d] for s, d in rules])
        try:
            for s, d in rules:
                self.drop(s, d)
            self.stop.wait(dur)
        finally:
            self.undrop_all()
            self.end_fault(fid, kind, [x.addr for x in replicas])

    def do_partition_full(self, r, order, dur, _w):
        self._partition("partition_full", [r], [(r.ip, None), (None, r.ip)], dur)

    def do_partition_oneway(self, r, order, dur, _w):
        # only traffic FROM r is dropped (the client's address is exempt)
        self._partition("partition_oneway", [r], [(r.ip, None)], dur)

    def do_partition_bridge(self, r, order, dur, _w):
        # a and c cannot talk to each other; both still talk to order[1]
        # (and to every other replica)
        a, c = order[0], order[2]
        self._partition("partition_bridge", [a, c], [(a.ip, c.ip), (c.ip, a.ip)], dur)

    # ---------------------------------------------------------------- clients
    def client(self, cid):
        a = self.a
        rnd = random.Random(a.seed * 1000003 + cid)
        own = ["c%d-k%d" % (cid, j) for j in range(a.own_keys)]
        shared = ["sh-%d" % j for j in range(a.shared_keys)]
        meta = None
        seq = 0
        while not self.stop.is_set():
            seq += 1
            r = rnd.choice(self.reps)
            x = rnd.random()
            if x < 0.6:
                key = rnd.choice(own)
                y = rnd.random()
                op = "PUT" if y < 0.45 else "GET" if y < 0.80 else "DELETE"
            else:
                key = rnd.choice(shared)
                y = rnd.random()
                op = "PUT" if y < 0.40 else "GET" if y < 0.85 else "DELETE"
            value = "c%d-%d" % (cid, seq) if op == "PUT" else None
            meta, _ = self.do_op(cid, r.addr, op, key, value, meta, "run")
            if a.pace:
                time.sleep(a.pace)
        self.clients[cid]["meta"] = meta
        self.clients[cid]["own"] = own

    def do_op(self, cid, addr, op, key, value, meta, phase, timeout=CLIENT_TIMEOUT):
        body = {"causal-metadata": meta}
        if op == "PUT":
            body["value"] = value
        rec = {"type": "op", "client": cid, "op": op, "key": key, "value": value,
               "replica": addr, "meta_in": meta, "phase": phase, "t0": self.hist.now()}
        try:
            resp = request(addr, op, "/kvs/" + key, body=body, timeout=timeout)
        except ConnectionRefusedError:
            rec.update(status=None, error="refused")     # never reached a replica
            resp = None
        except NET_ERRORS as e:
            rec.update(status=None, error=type(e).__name__)   # outcome unknown
            resp = None
        rec["t1"] = self.hist.now()
        if resp is not None:
            rec["status"] = resp.status
            j = resp.json if isinstance(resp.json, dict) else None
            if j is None:
                rec["body"] = resp.raw.decode("utf-8", "replace")[:300]
            else:
                if "causal-metadata" in j:
                    rec["meta_out"] = j["causal-metadata"]
                    if isinstance(j["causal-metadata"], dict):
                        meta = j["causal-metadata"]
                if op == "GET" and resp.status == 200:
                    rec["read"] = j.get("value")
                if resp.status == 503:
                    rec["body"] = resp.raw.decode("utf-8", "replace")
                elif "result" not in j:
                    rec["body"] = resp.raw.decode("utf-8", "replace")[:300]
        self.hist.write(rec)
        return meta, rec

    # ---------------------------------------------------------------- finale
    def heal_all(self):
        self.undrop_all()
        for r in self.reps:
            if r.running():
                r.kill(signal.SIGCONT)
        for r in self.reps:
            if not r.running():
                fid = self.fault("kill", [r.addr], note="found dead at the end")
                self.restart(r, fid)
        self.hist.write({"type": "heal_all", "t": self.hist.now()})

    def store_map(self, r, keys):
        out = {}
        for k in keys:
            try:
                g = request(r.addr, "GET", "/kvs/" + k, timeout=2)
            except NET_ERRORS:
                return None
            if g.status == 200 and isinstance(g.json, dict):
                out[k] = ["found", g.json.get("value")]
            elif g.status == 404:
                out[k] = ["absent", None]
            else:
                return None
        return out

    def kvsd_keys(self, r):
        try:
            m = request(r.addr, "GET", "/metrics", timeout=2).raw.decode()
        except NET_ERRORS:
            return None
        for line in m.splitlines():
            if line.startswith("kvsd_keys "):
                return int(float(line.split()[1]))
        return None

    def converge(self, keys, timeout=30.0):
        t_heal = time.monotonic()
        wait_until(lambda: all(self.ready(r) for r in self.reps), 20)
        wait_until(lambda: all(self.view_of(r) == sorted(self.view) for r in self.reps), 20, 0.1)
        last = {}

        def same():
            maps = [self.store_map(r, keys) for r in self.reps]
            last["maps"] = maps
            if any(m is None for m in maps) or not all(m == maps[0] for m in maps):
                return False
            nk = [self.kvsd_keys(r) for r in self.reps]
            last["kvsd_keys"] = nk
            return len(set(nk)) == 1 and nk[0] == sum(1 for s, _ in maps[0].values() if s == "found")

        ok = bool(wait_until(same, timeout, 0.25))
        elapsed = time.monotonic() - t_heal
        maps = last.get("maps") or []
        for r, m in zip(self.reps, maps):
            self.hist.write({"type": "final_map", "replica": r.addr, "map": m, "t": self.hist.now()})
        self.hist.write({"type": "converged", "ok": ok, "elapsed": round(elapsed, 3),
                         "kvsd_keys": last.get("kvsd_keys"),
                         "views": {r.addr: self.view_of(r) for r in self.reps},
                         "t": self.hist.now()})
        return ok

    def final_reads(self):
        """Every client reads each of its own keys on every replica with its
        final metadata (503 retried for up to 10 s per read)."""
        for c in self.clients:
            meta = c.get("meta")
            for key in c.get("own", []):
                for r in self.reps:
                    deadline = time.monotonic() + 10
                    while True:
                        meta, rec = self.do_op(c["cid"], r.addr, "GET", key, None, meta, "final")
                        if rec.get("status") not in (503, None) or time.monotonic() > deadline:
                            break
                        time.sleep(0.1)

    def internal_checks(self):
        for r in self.reps:
            try:
                g = request(r.addr, "GET", "/internal/check", timeout=5)
                st, body = g.status, g.raw.decode("utf-8", "replace")
            except NET_ERRORS as e:
                st, body = None, repr(e)
            self.hist.write({"type": "store_check", "replica": r.addr, "status": st,
                             "body": body, "t": self.hist.now()})


def main(argv=None):
    args = parse_args(argv)
    if args.kvsd:
        os.environ["KVSD_BIN"] = os.path.abspath(args.kvsd)
    if not os.path.exists(kvstest.kvsd_bin()):
        print("kvsd binary %s not found (set KVSD_BIN or --kvsd)" % kvstest.kvsd_bin())
        return 2
    if args.out is None:
        args.out = kvstest.tmpdir()
    os.makedirs(args.out, exist_ok=True)
    kvstest._tmpdir = args.out         # replica logs go next to the history
    print("# chaos: seed %d, %d replicas, %d clients, %.0f s; output in %s"
          % (args.seed, args.replicas, args.clients, args.duration, args.out), flush=True)
    run = Run(args)
    run.hist.write({"type": "meta", "seed": args.seed, "duration": args.duration,
                    "replicas": run.view, "clients": args.clients, "wall": time.time(),
                    "kvsd": kvstest.kvsd_bin(), "argv": sys.argv[1:],
                    "min_availability": args.min_availability,
                    "fsync": "always" if args.data_dirs else None})
    status = 2
    try:
        run.start_cluster()
        run.hist.write({"type": "phase", "phase": "run", "t": run.hist.now()})
        run.clients = [{"cid": c} for c in range(args.clients)]
        threads = [threading.Thread(target=run.client, args=(c,), name="client-%d" % c, daemon=True)
                   for c in range(args.clients)]
        nem = threading.Thread(target=run.nemesis, name="nemesis", daemon=True)
        for t in threads:
            t.start()
        nem.start()
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        run.stop.set()
        for t in threads:
            t.join(30)
        nem.join(60)
        if nem.is_alive() or any(t.is_alive() for t in threads):
            raise RuntimeError("clients or nemesis did not stop")
        run.hist.write({"type": "phase", "phase": "heal", "t": run.hist.now()})
        run.heal_all()
        keys = sorted({"sh-%d" % j for j in range(args.shared_keys)} |
                      {"c%d-k%d" % (c, j) for c in range(args.clients) for j in range(args.own_keys)})
        run.converge(keys)
        run.hist.write({"type": "phase", "phase": "final", "t": run.hist.now()})
        run.final_reads()
        run.internal_checks()
        run.hist.write({"type": "end", "t": run.hist.now(), "faults": run.fault_counts})
        run.hist.close()
        res = checker.check_file(os.path.join(args.out, "history.jsonl"),
                                 min_avail=args.min_availability)
        text = checker.format_summary(res)
        print(text, flush=True)
        with open(os.path.join(args.out, "summary.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(res["summary"], f, indent=1, sort_keys=True)
        status = 0 if res["ok"] else 1
    finally:
        kvstest.cleanup()          # SIGKILL every replica we started, remove the chain
        left = kvstest.iptables("-S", check=False).stdout.decode()
        if run.fw is not None and run.fw.chain in left.split():
            print("# WARNING: chain %s still present" % run.fw.chain)
            status = 2
    return status


if __name__ == "__main__":
    try:
        rc = main()
    except Exception:
        import traceback
        traceback.print_exc()
        kvstest.cleanup()
        rc = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)      # bypass kvstest's "exited without done()" TAP line
