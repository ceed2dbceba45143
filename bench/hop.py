#!/usr/bin/env python3
"""bench/hop.py - the 503 share of a client that changes replica on every
request (issue 13, item 3).

    PYTHONPATH=tests/lib KVSD_BIN=build/kvsd python3 bench/hop.py [-n 3000] [-c 1] [--waits 0,50]

For each --causal-wait value it starts a healthy 3-replica cluster on
127.0.0.226-228:8090 (2 workers each), waits until every replica is ready
with the full view, and runs CLIENTS clients, each doing N requests: it
alternates PUT and GET of its own key and moves to the next replica on
every request, carrying the causal-metadata of the last answer that had
one, as the course's client does.  A 503 is counted and not retried (the
next request goes to the next replica with the same metadata).  Each client
keeps one keep-alive connection per replica.  Prints, per wait: requests,
503s, the 503 share, and the latency p50/p99/max; stops every process it
started.  Numbers are printed, never asserted.

--tick-cost measures instead what parking costs a worker: the CPU time of
the one worker of a single replica (127.0.0.226) while 0, 1, 64 and 1024
requests are parked for good (waiting for a write that is never made).
"""
import argparse
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import kvstest  # noqa: E402
from kvstest import Cluster, Replica, Session, connect_from, request, wait_until  # noqa: E402

IPS = ["127.0.0.226", "127.0.0.227", "127.0.0.228"]
VIEW = sorted("%s:8090" % ip for ip in IPS)


def full_and_ready(cl):
    for r in cl:
        try:
            if request(r, "GET", "/ready", timeout=2).status != 200:
                return False
            v = request(r, "GET", "/view", timeout=2).json
            if sorted(v.get("view") or []) != VIEW:
                return False
        except OSError:
            return False
    return True


def client(idx, n, out):
    sessions = [Session(ip) for ip in IPS]
    meta = None
    key = "hop-%d" % idx
    lat, n503, nerr = [], 0, 0
    for i in range(n):
        s = sessions[(i + idx) % len(sessions)]
        body = {"causal-metadata": meta}
        method = "GET"
        if i % 2 == 0:
            method = "PUT"
            body["value"] = i
        t0 = time.monotonic()
        try:
            r = s.request(method, "/kvs/" + key, body=body)
        except OSError:
            nerr += 1
            continue
        lat.append(time.monotonic() - t0)
        if r.status == 503:
            n503 += 1
        elif r.status in (200, 201) and isinstance(r.json, dict):
            meta = r.json.get("causal-metadata", meta)
        else:
            nerr += 1
    for s in sessions:
        s.close()
    out[idx] = (lat, n503, nerr)


def run(wait, n, clients, workers, extra):
    cl = Cluster(IPS, workers=workers, extra_args=["--causal-wait", str(wait)] + extra)
    try:
        cl.wait_ready(10)
        if not wait_until(lambda: full_and_ready(cl), 15):
            sys.exit("bench/hop.py: the cluster did not become ready with a full view")
        out = {}
        threads = [threading.Thread(target=client, args=(c, n, out)) for c in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        metrics = request(IPS[0], "GET", "/metrics").raw.decode()
    finally:
        cl.stop()
    lat = sorted(x for v in out.values() for x in v[0])
    n503 = sum(v[1] for v in out.values())
    nerr = sum(v[2] for v in out.values())
    total = len(lat)
    pct = lambda q: lat[min(total - 1, int(q * total))] * 1000 if total else float("nan")  # noqa: E731
    parked = [l for l in metrics.splitlines() if l.startswith("kvsd_causal_park")]
    return {"wait": wait, "requests": total, "503": n503, "errors": nerr, "share": 100.0 * n503 / max(1, total),
            "p50": pct(0.50), "p99": pct(0.99), "max": lat[-1] * 1000 if lat else float("nan"),
            "rate": total / elapsed, "parked_at_first": parked}


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def tick_cost(parked_counts, seconds=5.0):
    """CPU of one worker while K requests are parked for good (their
    dependency is a write of this replica that will never be made)."""
    rows = []
    r = Replica(IPS[0], view=["%s:8090" % IPS[0]], workers=1, extra_args=["--causal-wait", "10000"])
    try:
        r.wait_ready(10)
        wait_until(lambda: request(r, "GET", "/ready", timeout=2).status == 200, 10)
        meta = request(r, "PUT", "/kvs/t", body={"value": 1}).json["causal-metadata"]
        meta = {k: 10 ** 9 for k in meta}
        body = ('{"causal-metadata": %s}' % json.dumps(meta)).encode()
        wpid = r.workers_list()[0][0]
        hz = os.sysconf("SC_CLK_TCK")
        for k in parked_counts:
            socks = []
            for _ in range(k):
                s = connect_from(IPS[0], 8090)
                s.sendall(b"GET /kvs/t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                socks.append(s)
            time.sleep(0.5)
            c0, t0 = cpu_ticks(wpid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_ticks(wpid), time.monotonic()
            rows.append((k, 100.0 * (c1 - c0) / hz / (t1 - t0)))
            for s in socks:
                s.close()
            time.sleep(0.5)
    finally:
        r.stop()
    print("| parked requests | worker CPU |")
    print("|---|---|")
    for k, pct in rows:
        print("| %d | %.1f%% |" % (k, pct))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per client (default 3000)")
    ap.add_argument("-c", "--clients", type=int, default=1, help="concurrent clients (default 1)")
    ap.add_argument("--waits", default="0,50", help="--causal-wait values to compare (default 0,50)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--extra", default="", help="more kvsd flags, space-separated (e.g. '--heartbeat 20')")
    ap.add_argument("--tick-cost", action="store_true",
                    help="instead: CPU of one worker with 0, 1, 64 and 1024 requests parked for good")
    a = ap.parse_args()
    if a.tick_cost:
        tick_cost([0, 1, 64, 1024])
        finish()
    rows = [run(int(w), a.n, a.clients, a.workers, a.extra.split()) for w in a.waits.split(",")]
    print("| --causal-wait | requests | 503 | 503 share | errors | p50 ms | p99 ms | max ms | req/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %d | %.3f%% | %d | %.2f | %.2f | %.1f | %.0f |"
              % (r["wait"], r["requests"], r["503"], r["share"], r["errors"], r["p50"], r["p99"], r["max"], r["rate"]))
    for r in rows:
        print("# wait %d, first replica: %s" % (r["wait"], "; ".join(r["parked_at_first"])))
    finish()


def finish():
    """Stop everything (kvstest's exit hook would report a TAP failure)."""
    kvstest.cleanup()
    shutil.rmtree(kvstest.tmpdir(), ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
