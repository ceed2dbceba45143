#!/usr/bin/env python3
"""kvsctl for a shell user (issue 14): values from stdin and files (larger
than an argument can be), several endpoints (-s a,b / KVSCTL_SERVERS, an
http:// prefix, the next one on a refused connection or a 503), --retry
on 503, a session file that cannot be written is an error, usage errors
that say what was wrong (exit 2), KVSCTL_TIMEOUT validated, --version,
503 hints, `kvsctl cluster` (a table, or JSON with -j).
Addresses: 127.0.0.204, 127.0.0.205 (replicas), 127.0.0.206 and .208 (never
listens: a refused connection; also named in a fake session), 127.0.0.207
(a stub HTTP server that answers every request 503)."""

import json
import os
import http.server
import subprocess
import threading
import time

from kvstest import Replica, ok, is_, done, diag, tmpdir, kvsd_bin

A, B, DEAD = "127.0.0.204:8090", "127.0.0.205:8090", "127.0.0.206:8090"
kvsctl = os.environ.get("KVSCTL_BIN") or os.path.join(os.path.dirname(os.path.abspath(kvsd_bin())), "kvsctl")
sess = os.path.join(tmpdir(), "session")


def ctl(*args, env=None, stdin=None, session=sess):
    e = {k: v for k, v in os.environ.items() if not k.startswith("KVSCTL_")}
    if session is not None:
        e["KVSCTL_SESSION"] = session
    e.update(env or {})
    p = subprocess.run([kvsctl] + list(args), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                       timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def show(r):
    return "exit %d\nstdout: %s\nstderr: %s" % (r[0], r[1][:300], r[2][:600])


# -- no server needed ------------------------------------------------------
r = ctl("--version")
ok(r[0] == 0 and r[1].startswith("kvsctl ") and r[1].split()[-1][0].isdigit(), "--version", show(r))
for args, env, what, needle in (
        (("put", "k"), None, "put with one argument", "put: missing arguments"),
        (("get",), None, "get without KEY", "get: missing arguments"),
        (("get", "a", "b"), None, "get with two keys", "get: too many arguments"),
        (("put", "", "v"), None, "put '' v", "KEY is empty"),
        (("get", ""), None, "get ''", "KEY is empty"),
        (("view", "frob", "x"), None, "view frob", "unknown subcommand 'frob'"),
        (("get", "k"), {"KVSCTL_TIMEOUT": "abc"}, "KVSCTL_TIMEOUT=abc", "KVSCTL_TIMEOUT"),
        (("-t", "0", "get", "k"), None, "-t 0", "-t"),
        (("-r", "-1", "get", "k"), None, "-r -1", "-r"),
        (("-s", "a,b", "get", "k"), None, "-s a,b (no ports)", "bad server 'a'"),
        ((), None, "no command", "no command")):
    r = ctl(*args, env=env)
    ok(r[0] == 2 and needle in r[2] and len(r[2].splitlines()) <= 2 or (not args and r[0] == 2 and needle in r[2]),
       "%s: exit 2, says %r" % (what, needle), show(r))

pair = [Replica(ip, view=["127.0.0.204", "127.0.0.205"], workers=1) for ip in ("127.0.0.204", "127.0.0.205")]
for rep in pair:
    rep.wait_ready(15)

# -- values from stdin and files -------------------------------------------
r = ctl("-s", A, "put", "fromstdin", "-", stdin=b"line one\nline two\n")
is_(r[0], 0, "put k - reads stdin")
r = ctl("-s", A, "get", "fromstdin")
ok(r[:2] == (0, "line one\nline two\n\n"), "the value is stdin as it was (puts adds one newline)", show(r))
big = os.path.join(tmpdir(), "big")
with open(big, "w") as f:
    f.write("x" * (600 << 10))  # over what one argument may carry (128K)
r = ctl("-s", A, "put", "big", "@" + big)
is_(r[0], 0, "put k @FILE with a 600 KiB file")
r = ctl("-s", A, "get", "big")
ok(r[0] == 0 and r[1] == "x" * (600 << 10) + "\n", "the 600 KiB value comes back whole", show(r))
r = ctl("-s", A, "-j", "put", "jdoc", "-", stdin=b'{"a": [1, 2]}')
r2 = ctl("-s", A, "-j", "get", "jdoc")
ok(r[0] == 0 and r2[0] == 0 and json.loads(r2[1]).get("value") == {"a": [1, 2]}, "-j put k - parses stdin as JSON",
   show(r2))
r = ctl("-s", A, "put", "k", "@/nonexistent/file")
ok(r[0] == 2 and "/nonexistent/file" in r[2], "put k @missing: exit 2 naming the file", show(r))

# -- several endpoints -------------------------------------------------------
r = ctl("-s", "%s,%s" % (DEAD, A), "put", "multi", "1")
ok(r[0] == 0 and r[1] == "created\n", "-s DEAD,A: the refused DEAD is skipped", show(r))
# B may not have A's write yet: -r retries its 503 (a loaded machine)
r = ctl("-r", "3", "get", "multi", env={"KVSCTL_SERVERS": "http://%s/, http://%s" % (DEAD, B)})
ok(r[0] == 0 and r[1] == "1\n", "KVSCTL_SERVERS with http:// prefixes and spaces", show(r))
r = ctl("-s", "%s,%s" % (DEAD, "127.0.0.208:8090"), "get", "multi")
ok(r[0] == 3, "every server refused: exit 3", show(r))



class Busy(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b'{"error": "Causal dependencies not satisfied; try again later"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_PUT = do_DELETE = answer

    def log_message(self, *a):
        pass


stub = http.server.ThreadingHTTPServer(("127.0.0.207", 8090), Busy)
threading.Thread(target=stub.serve_forever, daemon=True).start()
r = ctl("-s", "127.0.0.207:8090,%s" % A, "put", "after503", "v")
ok(r[0] == 0 and r[1] == "created\n", "-s BUSY,A: the 503 of the first is passed over, A takes the write", show(r))
r = ctl("-s", "127.0.0.207:8090", "put", "after503", "v")
ok(r[0] == 4, "-s BUSY alone: exit 4", show(r))
stub.shutdown()
stub.server_close()

# a session naming a write no replica has seen: every replica answers 503
fake = os.path.join(tmpdir(), "ahead")
with open(fake, "w") as f:
    json.dump({"%s/1" % DEAD: 5}, f)
r = ctl("-s", B, "get", "multi", session=fake)
ok(r[0] == 4 and "kvsctl session clear" in r[2], "a 503 for causal dependencies hints at `kvsctl session clear`",
   show(r))
t0 = time.monotonic()
r = ctl("-s", B, "-r", "1", "get", "multi", session=fake)
el = time.monotonic() - t0
ok(r[0] == 4 and 0.9 <= el < 5, "-r 1: retries the 503 for about a second, then exit 4 (%.2f s)" % el, show(r))

# -- the session file --------------------------------------------------------
r = ctl("-s", A, "put", "sess", "v", session="/nonexistent/dir/session")
ok(r[0] == 5 and "cannot write session file" in r[2] and r[1] == "created\n",
   "an unwritable session file: the result, then an error and exit 5", show(r))
r = ctl("-s", A, "put", "sess", "v", env={"HOME": "/nonexistent"}, session=None)
ok(r[0] == 5 and "session" in r[2], "HOME=/nonexistent (the image's): exit 5, not a silent 0", show(r))
r = ctl("-s", A, "--no-session", "put", "sess", "w")
is_(r[0], 0, "--no-session: no file, exit 0")

# -- cluster-wide status ------------------------------------------------------
r = ctl("-s", A, "cluster")
rows = {l.split()[0]: l.split() for l in r[1].splitlines() if l.startswith("127.")}
ok(r[0] == 0 and rows.get(A, [None] * 4)[1:4] == ["ok", "yes", "self"] and
   rows.get(B, [None] * 4)[1:4] == ["ok", "yes", "active"],
   "cluster: a table with both replicas, healthy, ready, A self and B active", show(r))
r = ctl("-s", B, "-j", "cluster")
try:
    cj = json.loads(r[1])
except ValueError:
    cj = {}
byaddr = {x.get("replica"): x for x in cj.get("replicas", [])}
ok(r[0] == 0 and cj.get("observer") == B and set(byaddr) == {A, B} and byaddr[A]["state"] == "active" and
   byaddr[B]["state"] == "self" and isinstance(byaddr[A]["lag_seconds"], float) and
   isinstance(byaddr[A]["queued_bytes"], int) and isinstance(byaddr[A]["keys"], int) and
   byaddr[A]["keys"] >= 5 and isinstance(byaddr[A]["started"], float),
   "cluster -j: JSON rows with state, lag, queued bytes, keys, start time", show(r))
is_(pair[1].stop(), 0, "B stopped")
r = ctl("-s", "%s,%s" % (B, A), "-t", "1", "cluster")
rows = {l.split()[0]: l.split() for l in r[1].splitlines() if l.startswith("127.")}
ok(r[0] == 3 and rows.get(B, [None] * 3)[1:3] == ["down", "no"] and rows.get(A, [None] * 2)[1] == "ok",
   "cluster with B down: asked A instead, B's row says down, exit 3", show(r))

is_(pair[0].stop(), 0, "A stopped")
done()
