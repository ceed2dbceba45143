#!/usr/bin/env python3
"""kvsctl.py -- the kvsctl client against real kvsd replicas.

Starts `kvsd --address 127.0.0.40:8090 --view 127.0.0.40:8090 --workers 1` (and a two-replica
cluster on 127.0.0.42/43 for metadata carried across replicas), each in its
own session, all killed in a finally.  Checks put/get/delete round trips,
--json values, every exit status (0, 1, 2, 3, 4), the session file being
written and sent, view add/delete, and status.

Environment: KVSD_BIN; kvsctl is found next to it unless KVSCTL_BIN is set.
Addresses used: 127.0.0.40-43 (servers), 127.0.0.49 (nothing listens).
TAP output.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from kvstest import ok, done, failed_count  # noqa: E402 (TAP output)


kvsd = os.environ.get("KVSD_BIN", "kvsd")
kvsctl = os.environ.get("KVSCTL_BIN") or os.path.join(os.path.dirname(os.path.abspath(kvsd)), "kvsctl")
tmp = tempfile.mkdtemp(prefix="kvsctl-test-")
session = os.path.join(tmp, "session")
procs = []

A = "127.0.0.40:8090"
VIEW2 = "127.0.0.42:8090,127.0.0.43:8090"
DEAD = "127.0.0.49:8090"


def start(address, view=None):
    argv = [kvsd, "--address", address, "--workers", "1", "--view", view or address]
    log = open(os.path.join(tmp, address.replace(":", "_") + ".log"), "w")
    env = {k: v for k, v in os.environ.items() if k not in ("SOCKET_ADDRESS", "VIEW") and not k.startswith("KVSD_")}
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    procs.append(p)
    return p


def http_status(address, path):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split()[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_ready(address, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if http_status(address, "/ready") == 200:
            return True
        time.sleep(0.1)
    return False


def ctl(*args, sess=session, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVSCTL_")}
    env["KVSCTL_SESSION"] = sess
    p = subprocess.run([kvsctl] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def show(r):
    return "exit %d\nstdout: %s\nstderr: %s" % r


def read_session(path=session):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


try:
    start(A)
    if not ok(wait_ready(A), "kvsd on %s is ready" % A):
        raise SystemExit

    # usage errors: exit 2
    for args, what in [((), "no command"), (("get",), "get without KEY"), (("put", "k"), "put without VALUE"),
                       (("frobnicate",), "unknown command"), (("--bogus", "get", "k"), "unknown option"),
                       (("-s", A, "--json", "put", "k", "{not json"), "--json with invalid JSON"),
                       (("-s", A, "get", "k" * 51), "key longer than 50 bytes"),
                       (("-s", A, "view", "frob", A), "view with an unknown operation")]:
        r = ctl(*args)
        ok(r[0] == 2, "usage error (%s) exits 2" % what, show(r))

    # put / get / delete round trip, session written
    r = ctl("-s", A, "put", "greeting", "hello world")
    ok(r == (0, "created\n", ""), "put of a new key prints created, exits 0", show(r))
    m = read_session()
    ok(isinstance(m, dict) and any(k.startswith(A + "/") and v >= 1 for k, v in m.items()),
       "session file holds the returned causal-metadata", repr(m))
    r = ctl("-s", A, "put", "greeting", "hi")
    ok(r[:2] == (0, "replaced\n"), "put of an existing key prints replaced", show(r))
    m2 = read_session()
    ok(m2 and max(m2.values()) > max(m.values()), "session file advances with every write", "%r -> %r" % (m, m2))
    r = ctl("-s", A, "get", "greeting")
    ok(r[:2] == (0, "hi\n"), "get prints a string value raw", show(r))
    r = ctl("-s", A, "--json", "get", "greeting")
    try:
        gj = json.loads(r[1])
    except ValueError:
        gj = {}
    ok(r[0] == 0 and gj.get("result") == "found" and gj.get("value") == "hi" and
       isinstance(gj.get("causal-metadata"), dict), "get --json prints the server's whole answer", show(r))

    def jvalue(key):
        """The value of key as the server stores it (from get --json)."""
        try:
            return json.loads(ctl("-s", A, "--json", "get", key)[1]).get("value")
        except (ValueError, AttributeError):
            return None

    # --json values
    r = ctl("-s", A, "--json", "put", "doc", '{"a": [1, 2.5, true, null], "b": "x"}')
    ok(r[0] == 0, "put --json of an object", show(r))
    r = ctl("-s", A, "get", "doc")
    ok(r[0] == 0 and json.loads(r[1]) == {"a": [1, 2.5, True, None], "b": "x"}, "get returns the object", show(r))
    r = ctl("-s", A, "put", "num", "42")
    r2 = ctl("-s", A, "get", "num")
    ok(r[0] == 0 and r2[:2] == (0, '42\n') and jvalue("num") == "42",
       "without --json, 42 is stored as the string \"42\"", show(r2))
    r = ctl("-s", A, "--json", "put", "num", "--", "-7")
    r2 = ctl("-s", A, "get", "num")
    ok(r[0] == 0 and r2[:2] == (0, "-7\n") and jvalue("num") == -7, "--json value -7 after --, stored as a number",
       show(r) + show(r2))
    r = ctl("-s", A, "put", "path/with space?", "v")
    r2 = ctl("-s", A, "get", "path/with space?")
    ok(r[0] == 0 and r2[:2] == (0, "v\n"), "keys are percent-encoded in the URL", show(r2))

    # delete, not found: exit 1
    r = ctl("-s", A, "delete", "greeting")
    ok(r[:2] == (0, "deleted\n"), "delete prints deleted", show(r))
    r = ctl("-s", A, "get", "greeting")
    ok(r[0] == 1 and "Key does not exist" in r[2], "get of a deleted key exits 1", show(r))
    r = ctl("-s", A, "delete", "greeting")
    ok(r[0] == 1, "delete of a missing key exits 1", show(r))

    # metadata is sent: a session naming a write this server has not seen -> 503, exit 4
    stale = os.path.join(tmp, "unknown-session")
    with open(stale, "w") as f:
        json.dump({"127.0.0.99:8090/1": 5}, f)
    r = ctl("-s", A, "get", "doc", sess=stale)
    ok(r[0] == 4 and "Causal dependencies not satisfied" in r[2], "get with unseen dependencies exits 4", show(r))
    r = ctl("-s", A, "put", "doc", "x", sess=stale)
    ok(r[0] == 4, "put with unseen dependencies exits 4", show(r))
    ok(read_session(stale) == {"127.0.0.99:8090/1": 5}, "a 503 leaves the session file as it was", read_session(stale))
    r = ctl("-s", A, "get", "doc", sess=os.path.join(tmp, "fresh-session"))
    ok(r[0] == 0, "the same get with an empty session succeeds", show(r))

    r = ctl("session")
    ok(r[0] == 0 and json.loads(r[1]) == read_session(), "kvsctl session prints the carried metadata", show(r))

    # unreachable: exit 3
    r = ctl("-s", DEAD, "-t", "2", "get", "doc")
    ok(r[0] == 3, "an unreachable server exits 3", show(r))
    r = ctl("-s", DEAD, "status")
    ok(r[0] == 3, "status of an unreachable server exits 3", show(r))

    # view
    r = ctl("-s", A, "view")
    ok(r[:2] == (0, A + "\n"), "view lists the replica", show(r))
    r = ctl("-s", A, "view", "add", "127.0.0.41:8090")
    ok(r[:2] == (0, "added\n"), "view add of a new replica prints added", show(r))
    r = ctl("-s", A, "view", "add", "127.0.0.41:8090")
    ok(r[:2] == (0, "already present\n"), "view add again prints already present", show(r))
    r = ctl("-s", A, "--json", "view")
    ok(r[0] == 0 and json.loads(r[1]) == {"view": [A, "127.0.0.41:8090"]}, "view --json shows both", show(r))
    r = ctl("-s", A, "view", "delete", "127.0.0.41:8090")
    ok(r[:2] == (0, "deleted\n"), "view delete prints deleted", show(r))
    r = ctl("-s", A, "view", "delete", "127.0.0.41:8090")
    ok(r[0] == 1 and "View has no such replica" in r[2], "view delete of a non-member exits 1", show(r))

    # status
    r = ctl("-s", A, "status")
    lines = dict(l.split(None, 1) for l in r[1].splitlines() if l.strip())
    ok(r[0] == 0 and lines.get("health") == "ok" and lines.get("ready") == "yes" and lines.get("view") == A,
       "status reports health, ready and view", show(r))
    ok(lines.get("keys") == "3", "status reports the key count from /metrics (doc, num, path)", show(r))
    r = ctl("-s", A, "--json", "status")
    try:
        st = json.loads(r[1])
    except ValueError:
        st = {}
    ok(r[0] == 0 and st.get("health") is True and st.get("ready") is True and st.get("keys") == 3
       and st.get("view") == [A], "status --json", show(r))

    # metadata carried across replicas: a replica that has not applied the
    # session's write answers 503 (exit 4), never "not found"
    start("127.0.0.42:8090", VIEW2)
    start("127.0.0.43:8090", VIEW2)
    ok(wait_ready("127.0.0.42:8090") and wait_ready("127.0.0.43:8090"), "two-replica cluster on 127.0.0.42/43 ready")
    cross = os.path.join(tmp, "cross-session")
    results = []
    for i in range(20):
        r = ctl("-s", "127.0.0.42:8090", "put", "x%d" % i, "v%d" % i, sess=cross)
        r2 = ctl("-s", "127.0.0.43:8090", "get", "x%d" % i, sess=cross)
        results.append((r[0], r2[0]))
    ok(all(p == 0 and g in (0, 4) for p, g in results),
       "a get on the other replica right after a put is the value or 503, never not-found", results)
    deadline = time.time() + 5
    while time.time() < deadline:
        r = ctl("-s", "127.0.0.43:8090", "get", "x19", sess=cross)
        if r[0] == 0:
            break
        time.sleep(0.1)
    ok(r[:2] == (0, "v19\n"), "the write reaches the other replica, read there with the carried session", show(r))
finally:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()

if failed_count():
    for name in sorted(os.listdir(tmp)):
        if name.endswith(".log"):
            print("# --- %s (tail)" % name)
            for line in open(os.path.join(tmp, name)).read().splitlines()[-10:]:
                print("#   " + line)
else:
    shutil.rmtree(tmp, ignore_errors=True)
done()
