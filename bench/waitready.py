#!/usr/bin/env python3
"""waitready.py URL KEYS T0_NS TIMEOUT_S - poll a starting kvsd replica.

Polls GET /ready and GET /metrics on URL (http://IP:PORT) every 5 ms until
/ready answers 200 and kvsd_keys equals KEYS.  Prints
  READY ready_s=.. keys_s=.. keys=..
with times measured from T0_NS (CLOCK_REALTIME nanoseconds taken by the
caller just before it started the replica).  Exit 1 on timeout."""
import http.client, sys, time

url, want, t0, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1e9, float(sys.argv[4])
host, port = url.replace("http://", "").split(":")
ready_at = keys_at = None
keys = -1
conn = None
while time.time() - t0 < timeout:
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=1)
        if ready_at is None:
            conn.request("GET", "/ready")
            r = conn.getresponse(); r.read()
            if r.status == 200:
                ready_at = time.time() - t0
        if ready_at is not None:
            conn.request("GET", "/metrics")
            r = conn.getresponse(); body = r.read().decode()
            for line in body.splitlines():
                if line.startswith("kvsd_keys "):
                    keys = int(float(line.split()[1]))
            if keys == want:
                keys_at = time.time() - t0
                break
    except (OSError, http.client.HTTPException):
        conn = None
    time.sleep(0.005)
print("READY ready_s=%s keys_s=%s keys=%d" % (
    "%.3f" % ready_at if ready_at is not None else "nan",
    "%.3f" % keys_at if keys_at is not None else "nan", keys))
sys.exit(0 if keys_at is not None else 1)
