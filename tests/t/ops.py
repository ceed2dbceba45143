#!/usr/bin/env python3
"""Operator interface: /health, /ready during a join, /metrics (every line
valid Prometheus text exposition 0.0.4, counters that move exactly with the
requests made), SIGTERM and SIGINT drain (in-flight requests complete, exit
0, no child left), SIGHUP log reopen, -n.
Addresses: 127.0.0.30 (standalone: health, metrics, SIGTERM drain),
127.0.0.31 (B, the peer a joiner pulls its snapshot from), 127.0.0.32 (A,
the joiner), 127.0.0.33 (--log-file, SIGHUP, SIGINT drain), 127.0.0.34
(kvsd -n only; nothing listens)."""

import math
import os
import re
import signal
import socket
import threading
import time

from kvstest import (Replica, accept_backlog, RawConn, Session, request, ok, is_, done, diag, expect,
                     check_json_headers, connect_from, run_kvsd, tmpdir, wait_until, pid_alive,
                     CLIENT_IP)

UNSAT = b'{"error": "Causal dependencies not satisfied; try again later"}'


# --------------------------------------------------------------------------
# a strict parser of the Prometheus text exposition format 0.0.4
# --------------------------------------------------------------------------

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_float(s):
    """A sample value as Go's strconv.ParseFloat takes it (what Prometheus
    uses), or raise ValueError."""
    if s in ("+Inf", "Inf", "+inf", "inf"):
        return math.inf
    if s in ("-Inf", "-inf"):
        return -math.inf
    if s in ("NaN", "nan"):
        return math.nan
    if not re.match(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z", s):
        raise ValueError("not a float: %r" % s)
    return float(s)


def parse_labels(s, pos):
    """Parse '{a="x",b="y"}' starting at s[pos] == '{'.  Returns (labels
    dict, position after '}').  Raises ValueError."""
    assert s[pos] == "{"
    pos += 1
    labels = {}
    while True:
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME_RE.match(s, pos)
        if not m:
            raise ValueError("bad label name at %d" % pos)
        name = m.group(0)
        pos = m.end()
        if s[pos:pos + 2] != '="':
            raise ValueError("label %s: expected =\" at %d" % (name, pos))
        pos += 2
        val = []
        while True:
            if pos >= len(s):
                raise ValueError("unterminated label value")
            c = s[pos]
            if c == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt == "\\":
                    val.append("\\")
                elif nxt == '"':
                    val.append('"')
                elif nxt == "n":
                    val.append("\n")
                else:
                    raise ValueError("bad escape \\%s in label value" % nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise ValueError("raw newline in label value")
            else:
                val.append(c)
                pos += 1
        if name in labels:
            raise ValueError("label %s repeated" % name)
        labels[name] = "".join(val)
        if s[pos:pos + 1] == ",":
            pos += 1
        elif s[pos:pos + 1] != "}":
            raise ValueError("expected , or } at %d" % pos)


def family_of(name, types):
    """The metric family a sample name belongs to (histogram and summary
    samples carry suffixes)."""
    for suf, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                       ("_count", ("histogram", "summary"))):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in kinds:
            return name[:-len(suf)]
    return name


def parse_exposition(text):
    """Validate text; returns (errors, types, samples) where samples is a
    list of (name, labels dict, value) in order."""
    errors, types, helps, samples = [], {}, {}, []
    seen_series = set()
    closed_families = set()      # families whose samples have ended
    current = None
    if text and not text.endswith("\n"):
        errors.append("the last line does not end with a newline")
    for no, line in enumerate(text.split("\n")[:-1] if text.endswith("\n")
                              else text.split("\n"), 1):
        where = "line %d %r: " % (no, line[:120])
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME_RE.match(parts[2]):
                    errors.append(where + "HELP/TYPE without a valid metric name")
                    continue
                name = parts[2]
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        errors.append(where + "bad TYPE")
                        continue
                    if name in types:
                        errors.append(where + "second TYPE line for " + name)
                    if any(family_of(s[0], types) == name or s[0] == name for s in samples):
                        errors.append(where + "TYPE after samples of " + name)
                    types[name] = parts[3]
                else:
                    if name in helps:
                        errors.append(where + "second HELP line for " + name)
                    rest = parts[3] if len(parts) == 4 else ""
                    if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                        errors.append(where + "bad escape in HELP text")
                    helps[name] = rest
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            errors.append(where + "no valid metric name")
            continue
        name, pos = m.group(0), m.end()
        labels = {}
        if line[pos:pos + 1] == "{":
            try:
                labels, pos = parse_labels(line, pos)
            except ValueError as e:
                errors.append(where + str(e))
                continue
        rest = line[pos:]
        if not rest.startswith(" "):
            errors.append(where + "no space before the value")
            continue
        fields = rest.split()
        if len(fields) not in (1, 2) or rest != " " + " ".join(fields):
            errors.append(where + "expected 'value [timestamp]' after the name")
            continue
        try:
            value = parse_float(fields[0])
        except ValueError as e:
            errors.append(where + str(e))
            continue
        if len(fields) == 2 and not re.match(r"-?\d+\Z", fields[1]):
            errors.append(where + "bad timestamp")
        fam = family_of(name, types)
        if fam not in types:
            errors.append(where + "sample of %s has no TYPE line before it" % fam)
        if fam != current:
            if fam in closed_families:
                errors.append(where + "samples of %s are not grouped together" % fam)
            if current is not None:
                closed_families.add(current)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            errors.append(where + "duplicate series")
        seen_series.add(key)
        if types.get(fam) == "counter" and not (value >= 0):
            errors.append(where + "negative or NaN counter")
        if types.get(fam) == "histogram" and name == fam:
            errors.append(where + "histogram sample without _bucket/_sum/_count")
        if name.endswith("_bucket") and types.get(fam) == "histogram" and "le" not in labels:
            errors.append(where + "bucket without le label")
        samples.append((name, labels, value))
    # histograms: per label set, buckets cumulative, last +Inf == _count
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if family_of(name, types) != fam:
                continue
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                try:
                    s["buckets"].append((parse_float(labels.get("le", "")), labels.get("le"), value))
                except ValueError:
                    errors.append("%s: bad le %r" % (fam, labels.get("le")))
            elif name == fam + "_sum":
                s["sum"] = value
            elif name == fam + "_count":
                s["count"] = value
        for rest, s in series.items():
            b = s["buckets"]
            tag = "%s%s" % (fam, dict(rest) if rest else "")
            if not b:
                errors.append(tag + ": no buckets")
                continue
            les = [x[0] for x in b]
            if les != sorted(les) or len(set(les)) != len(les):
                errors.append(tag + ": le values not strictly increasing: %r" % [x[1] for x in b])
            counts = [x[2] for x in b]
            if any(counts[i] > counts[i + 1] for i in range(len(counts) - 1)):
                errors.append(tag + ": bucket counts not cumulative: %r" % counts)
            if b[-1][1] != "+Inf":
                errors.append(tag + ": last bucket is le=%r, not +Inf" % b[-1][1])
            if s["count"] is None:
                errors.append(tag + ": no _count")
            elif b[-1][2] != s["count"]:
                errors.append(tag + ": +Inf bucket %r != _count %r" % (b[-1][2], s["count"]))
            if s["sum"] is None:
                errors.append(tag + ": no _sum")
    return errors, types, samples


def metrics(rep):
    """(response, errors, types, {(name, frozenset(labels)): value})."""
    resp = request(rep, "GET", "/metrics")
    text = resp.raw.decode("utf-8", "replace")
    errors, types, samples = parse_exposition(text)
    vals = {(n, frozenset(l.items())): v for n, l, v in samples}
    return resp, errors, types, vals


def mval(vals, name, **labels):
    return vals.get((name, frozenset(labels.items())), 0)


def requests_sum(vals):
    return sum(v for (n, _), v in vals.items() if n == "kvsd_requests_total")


# --------------------------------------------------------------------------
# helpers: slow in-flight PUTs across a signal
# --------------------------------------------------------------------------

def refuses_connections(rep):
    """True once nothing accepts connections on the replica's address (every
    worker has closed its listener)."""
    try:
        s = connect_from(rep.ip, rep.port, CLIENT_IP, 0.5)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def drain_test(rep, sig, signame, nconn=6, size=300000):
    """Open nconn connections, send each a PUT's headers and half its body,
    signal the master, wait until it stops accepting, send the rest: every
    PUT must be answered 201, the master must exit 0 within 5 s and leave no
    process behind."""
    conns = []
    for i in range(nconn):
        c = RawConn(rep.addr, timeout=10)
        body = b'{"value": "' + b"d" * (size - 13) + b'"}'
        assert len(body) == size
        c.send(b"PUT /kvs/drain-%s-%d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % (signame.encode(), i, size))
        c.send(body[:size // 2])
        conns.append((c, body))
    # in flight: every connection accepted by a worker (none left in the
    # kernel's accept queue), its headers and half its body sent
    ok(wait_until(lambda: accept_backlog(rep) == 0, 3, interval=0.01),
       "%s: all %d connections accepted by the workers" % (signame, nconn),
       repr(accept_backlog(rep)))
    is_(request(rep, "GET", "/health").status, 200, "%s: replica serving before the signal" % signame)
    kids = rep.children()
    t_sig = time.monotonic()
    rep.signal_master(sig)
    draining = wait_until(lambda: refuses_connections(rep), 3, interval=0.02)
    ok(draining, "%s: the replica stops accepting new connections (within 3 s)" % signame)
    diag("%s: listeners closed %.3f s after the signal" % (signame, time.monotonic() - t_sig))
    results = [None] * nconn

    def finish(i):
        c, body = conns[i]
        if not c.send(body[size // 2:]):
            results[i] = "connection closed while sending the rest of the body"
            return
        try:
            resp = c.read_response(5)
        except socket.timeout:
            resp = "no answer within 5 s"
        except (ValueError, IndexError) as e:
            resp = "unparsable answer: %s" % e
        results[i] = resp if resp is not None else "closed without an answer"
        c.close()

    threads = [threading.Thread(target=finish, args=(i,), daemon=True) for i in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(8)
    statuses = [r.status if hasattr(r, "status") else r for r in results]
    is_(statuses, [201] * nconn,
        "%s: all %d in-flight PUTs (half the body sent before the signal) answered 201"
        % (signame, nconn))
    rc = rep.wait(5)
    elapsed = time.monotonic() - t_sig
    is_(rc, 0, "%s: master exits 0 within 5 s" % signame)
    diag("%s: master exited %.3f s after the signal" % (signame, elapsed))
    gone = wait_until(lambda: not rep.group() and not any(pid_alive(p) for p, _ in kids), 3)
    ok(gone, "%s: no process of the replica is left" % signame,
       "group %r; children before the signal %r" % (rep.group(), kids))
    log = rep.log_text()
    ok("level=error" not in log and "killing them" not in log,
       "%s: no error in the log while draining" % signame,
       "\n".join(l for l in log.splitlines() if "error" in l or "killing" in l)[:2000])
    return statuses


# the validator itself: it must reject what it is meant to reject
GOOD = ('# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n'
        '# TYPE h histogram\nh_bucket{le="0.1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.5\nh_count 2\n'
        '# TYPE g gauge\ng 1.5e-05\ng{a="b"} -Inf\n')
BAD = [("no TYPE", "x 1\n"), ("bad name", "# TYPE 1x gauge\n1x 1\n"),
       ("bad value", "# TYPE x gauge\nx one\n"), ("bad escape", '# TYPE x gauge\nx{a="\\q"} 1\n'),
       ("unquoted label", "# TYPE x gauge\nx{a=b} 1\n"), ("no newline at end", "# TYPE x gauge\nx 1"),
       ("family not grouped", "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a=\"1\"} 2\n"),
       ("duplicate", "# TYPE x gauge\nx 1\nx 2\n"),
       ("non-cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n"
                          "h_sum 1\nh_count 2\n"),
       ("no +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n"),
       ("+Inf != count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n")]
is_(parse_exposition(GOOD)[0], [], "exposition validator accepts a valid sample text")
for bname, btext in BAD:
    ok(parse_exposition(btext)[0], "exposition validator rejects: %s" % bname)

# ==========================================================================
# /health and /ready on a standalone replica
# ==========================================================================

main = Replica("127.0.0.30", workers=2).wait_ready(10)
h = request(main, "GET", "/health")
expect(h, 200, b'{"status": "ok"}', "GET /health -> 200 {\"status\": \"ok\"}")
check_json_headers(h, "GET /health")
r = wait_until(lambda: request(main, "GET", "/ready").status == 200 and request(main, "GET", "/ready"), 5)
expect(r or None, 200, b'{"status": "ready"}',
       "GET /ready on a replica alone in its view -> 200 {\"status\": \"ready\"}")
if r:
    check_json_headers(r, "GET /ready")

# ==========================================================================
# /ready during a join
# B (127.0.0.31) serves a store; it is SIGSTOPped while A (127.0.0.32) starts
# with VIEW=B,A and a long --peer-timeout, so A's join ping to B hangs until
# the test resumes B: A must answer 503 "not ready" (and 503 to kvs requests)
# until it has pulled B's snapshot, then 200, with all of B's keys.
# ==========================================================================

VIEW_AB = ["127.0.0.31:8090", "127.0.0.32:8090"]
B = Replica("127.0.0.31", view=VIEW_AB, workers=1).wait_ready(10)
ok(wait_until(lambda: request(B, "GET", "/ready").status == 200, 5),
   "B (its peer A never up) is ready on its own")
NB = 300
bval = "b" * 2000
with Session(B.addr) as s:
    bstat = [s.request("PUT", "/kvs/b%d" % i, body={"value": bval + str(i)}).status
             for i in range(NB)]
is_(set(bstat), {201}, "B: %d PUTs created" % NB)
B.kill(signal.SIGSTOP)
A = Replica("127.0.0.32", view=VIEW_AB, workers=2,
            extra_args=["--peer-timeout", "8000"]).wait_ready(5)
t_a = time.monotonic()
rd = request(A, "GET", "/ready")
expect(rd, 503, b'{"status": "not ready"}',
       "A joining (its peer B does not answer yet): /ready -> 503 {\"status\": \"not ready\"}")
check_json_headers(rd, "GET /ready while joining")
expect(request(A, "GET", "/health"), 200, b'{"status": "ok"}', "A joining: /health -> 200")
expect(request(A, "GET", "/kvs/b0"), 503, UNSAT, "A joining: GET /kvs/b0 -> 503")
expect(request(A, "PUT", "/kvs/early", body={"value": 1}), 503, UNSAT,
       "A joining: PUT /kvs/early -> 503")
expect(request(A, "DELETE", "/kvs/b1"), 503, UNSAT, "A joining: DELETE /kvs/b1 -> 503")
_, errs, _, va = metrics(A)
is_(mval(va, "kvsd_ready"), 0, "A joining: kvsd_ready 0 in /metrics")
is_(mval(va, "kvsd_requests_total", route="kvs_put", status="503"), 1,
    "A joining: the 503 PUT is counted")
expect(request(A, "GET", "/ready"), 503, b'{"status": "not ready"}',
       "A still not ready %.2f s after it started (B still stopped)" % (time.monotonic() - t_a))
B.kill(signal.SIGCONT)
t_cont, wall_cont = time.monotonic(), time.time()
polls = []


def a_ready():
    resp = request(A, "GET", "/ready")
    polls.append(resp.status)
    if resp.status == 200:
        return resp
    # while not ready, kvs requests still get 503, never a partial store
    g = request(A, "GET", "/kvs/b%d" % (NB - 1))
    if g.status != 503 and request(A, "GET", "/ready").status != 200:
        polls.append(("kvs answered while not ready", g.status))
    return None


ra = wait_until(a_ready, 8, interval=0.02)
expect(ra or None, 200, b'{"status": "ready"}',
       "A ready within 8 s of B resuming: /ready -> 200 {\"status\": \"ready\"}")
diag("A ready %.3f s after B resumed (SIGCONT at %s.%03dZ); /ready polls: %d"
     % (time.monotonic() - t_cont, time.strftime("%H:%M:%S", time.gmtime(wall_cont)),
        int(wall_cont * 1000) % 1000, len(polls)))
ok(not [p for p in polls if isinstance(p, tuple)],
   "no kvs request was served while A reported not ready", repr(polls[-10:]))
with Session(A.addr) as s:
    bad = []
    for i in range(NB):
        g = s.request("GET", "/kvs/b%d" % i)
        if g.status != 200 or g.json.get("value") != bval + str(i):
            bad.append((i, g.status))
ok(not bad, "A, once ready, serves all %d keys of B's store (snapshot)" % NB, repr(bad[:10]))
is_(request(A, "PUT", "/kvs/late", body={"value": 1}).status, 201,
    "A ready: PUT -> 201")
_, errs, _, va = metrics(A)
is_(errs, [], "A: /metrics valid after the join")
is_(mval(va, "kvsd_ready"), 1, "A ready: kvsd_ready 1")
ok(mval(va, "kvsd_snapshots_installed_total") >= 1, "A: kvsd_snapshots_installed_total >= 1",
   repr(mval(va, "kvsd_snapshots_installed_total")))
is_(mval(va, "kvsd_keys"), NB + 1, "A: kvsd_keys == B's keys + 1")
# peers: a valid label with a peer address
ok(any(n == "kvsd_peer_state" and dict(l).get("peer") == "127.0.0.31:8090" for n, l in va),
   "A: kvsd_peer_state has a series for peer 127.0.0.31:8090")
# Idle keep-alive connections (clients between requests, and peers'
# replicators between heartbeats) must not hold the drain: they used to,
# for its whole 2 s limit.  Two clients each keep one open, one per worker
# with luck; a third is idle on B, which keeps replicating to A.
idle = [Session(A.addr), Session(A.addr), Session(B.addr)]
is_([x.request("GET", "/kvs/idle").status for x in idle], [404, 404, 404],
    "three keep-alive clients made a request and stay connected, idle")
t_stop = time.monotonic()
is_(A.stop(), 0, "%s: SIGTERM -> exit 0" % A.addr)
stop_s = time.monotonic() - t_stop
ok(stop_s < 1.0, "A: exited %.3f s after SIGTERM, not held by idle connections" % stop_s)
for x in idle:
    x.close()
is_(B.stop(), 0, "%s: SIGTERM -> exit 0" % B.addr)

# ==========================================================================
# /metrics: format and counters that move
# ==========================================================================

resp, errs, types, v0 = metrics(main)
is_(resp.status, 200, "GET /metrics -> 200")
is_(resp.headers.get("content-type"), "text/plain; version=0.0.4",
    "/metrics Content-Type text/plain; version=0.0.4")
ok(resp.headers.get("content-length", "").isdigit() and
   int(resp.headers["content-length"]) == len(resp.raw), "/metrics Content-Length matches the body")
is_(errs, [], "/metrics: every line is valid text exposition format")
ok(resp.raw.endswith(b"\n") and b"\r" not in resp.raw, "/metrics: LF line ends, final newline")
for name, t in [("kvsd_requests_total", "counter"),
                ("kvsd_request_duration_seconds", "histogram"),
                ("kvsd_keys", "gauge"), ("kvsd_tombstones", "gauge"), ("kvsd_tombstones_reaped_total", "counter"),
                ("kvsd_rlog_bytes", "gauge"), ("kvsd_rlog_size_bytes", "gauge"),
                ("kvsd_rlog_moved_bytes_total", "counter"),
                ("kvsd_shm_used_bytes", "gauge"), ("kvsd_shm_free_bytes", "gauge"),
                ("kvsd_ready", "gauge"), ("kvsd_evictions_total", "counter"),
                ("kvsd_readmissions_total", "counter"), ("kvsd_unavailable_total", "counter"),
                ("kvsd_child_restarts_total", "counter"), ("kvsd_rcu_pending", "gauge"),
                ("kvsd_peer_state", "gauge")]:
    is_(types.get(name), t, "/metrics: %s has TYPE %s" % (name, t))
is_(mval(v0, "kvsd_keys"), 0, "kvsd_keys 0 on an empty store")

NPUT, NGET, NMISS, NDEL, NREPL = 7, 5, 3, 2, 4
with Session(main.addr) as s:
    st = [s.request("PUT", "/kvs/m%d" % i, body={"value": i}).status for i in range(NPUT)]
is_(st, [201] * NPUT, "%d PUTs of new keys -> 201" % NPUT)
# fresh connections too, so both workers' counters are summed
st = [request(main, "PUT", "/kvs/m%d" % i, body={"value": -i}).status for i in range(NREPL)]
is_(st, [200] * NREPL, "%d PUTs replacing keys -> 200" % NREPL)
st = [request(main, "GET", "/kvs/m%d" % (i % NPUT)).status for i in range(NGET)]
is_(st, [200] * NGET, "%d GETs -> 200" % NGET)
st = [request(main, "GET", "/kvs/none%d" % i).status for i in range(NMISS)]
is_(st, [404] * NMISS, "%d GETs of missing keys -> 404" % NMISS)
st = [request(main, "DELETE", "/kvs/m%d" % i).status for i in range(NDEL)]
is_(st, [200] * NDEL, "%d DELETEs -> 200" % NDEL)
u = request(main, "GET", "/kvs/m6", body={"causal-metadata": {"127.0.0.39:8090/1": 3}})
is_(u.status, 503, "GET with metadata naming an unknown write -> 503")
made = NPUT + NREPL + NGET + NMISS + NDEL + 1
resp, errs, types, v1 = metrics(main)
is_(errs, [], "/metrics still valid after the requests")


def delta(name, **labels):
    return mval(v1, name, **labels) - mval(v0, name, **labels)


is_(delta("kvsd_requests_total", route="kvs_put", status="201"), NPUT,
    "kvsd_requests_total{route=kvs_put,status=201} grew by exactly %d" % NPUT)
is_(delta("kvsd_requests_total", route="kvs_put", status="200"), NREPL,
    "kvsd_requests_total{route=kvs_put,status=200} grew by exactly %d" % NREPL)
is_(delta("kvsd_requests_total", route="kvs_get", status="200"), NGET,
    "kvsd_requests_total{route=kvs_get,status=200} grew by exactly %d" % NGET)
is_(delta("kvsd_requests_total", route="kvs_get", status="404"), NMISS,
    "kvsd_requests_total{route=kvs_get,status=404} grew by exactly %d" % NMISS)
is_(delta("kvsd_requests_total", route="kvs_delete", status="200"), NDEL,
    "kvsd_requests_total{route=kvs_delete,status=200} grew by exactly %d" % NDEL)
is_(delta("kvsd_requests_total", route="kvs_get", status="503"), 1,
    "kvsd_requests_total{route=kvs_get,status=503} grew by exactly 1")
is_(delta("kvsd_unavailable_total"), 1, "kvsd_unavailable_total grew by exactly 1")
# the first /metrics request is counted after its own body was built
is_(requests_sum(v1) - requests_sum(v0), made + 1,
    "sum of kvsd_requests_total grew by the requests made (+ the first /metrics)")
def route_sum(vals, name):
    return sum(v for (n, _), v in vals.items() if n == name)


is_(route_sum(v1, "kvsd_request_duration_seconds_count") - route_sum(v0, "kvsd_request_duration_seconds_count"),
    made + 1, "kvsd_request_duration_seconds_count (all routes) grew by the same number")
for route, n in (("kvs_put", NPUT + NREPL), ("kvs_get", NGET + NMISS + 1), ("kvs_delete", NDEL)):
    is_(delta("kvsd_request_duration_seconds_count", route=route), n,
        "kvsd_request_duration_seconds_count{route=%s} grew by %d" % (route, n))
ok(delta("kvsd_request_duration_seconds_sum", route="kvs_put") > 0,
   "kvsd_request_duration_seconds_sum{route=kvs_put} grew")
is_(mval(v1, "kvsd_keys"), NPUT - NDEL, "kvsd_keys == keys holding a value (%d)" % (NPUT - NDEL))
# a replica with no peer reaps tombstones within 2 s: those it reaped count
ok(mval(v1, "kvsd_tombstones") <= NDEL, "kvsd_tombstones <= deleted keys (%d)" % NDEL)
def tomb_sum():
    v = metrics(main)[3]
    return mval(v, "kvsd_tombstones") + mval(v, "kvsd_tombstones_reaped_total") - \
        mval(v0, "kvsd_tombstones_reaped_total") == NDEL


tomb = wait_until(tomb_sum, 5)
ok(tomb, "kvsd_tombstones + what kvsd_tombstones_reaped_total grew by == deleted keys (%d)" % NDEL)
ok(mval(v1, "kvsd_shm_used_bytes") > mval(v0, "kvsd_shm_used_bytes"),
   "kvsd_shm_used_bytes grew with the writes")
# HEAD, other methods, unknown paths: a /metrics scrape with labels that are
# awkward to escape must still be valid
request(main, "GET", '/kvs/we"ird\\key')
request(main, "POST", "/metrics")
request(main, "GET", "/nope")
_, errs, _, v2 = metrics(main)
is_(errs, [], "/metrics still valid after odd requests")

# ==========================================================================
# SIGTERM: drain in-flight requests, exit 0
# ==========================================================================

drain_test(main, signal.SIGTERM, "SIGTERM")

# ==========================================================================
# SIGHUP: reopen --log-file (logrotate: mv, HUP, a new file appears)
# ==========================================================================

logdir = tmpdir()
logfile = os.path.join(logdir, "ops-hup.log")
rotated = logfile + ".1"
L = Replica("127.0.0.33", workers=2,
            extra_args=["--log-file", logfile, "--access-log"]).wait_ready(10)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


request(L, "GET", "/kvs/before-hup")
ok(wait_until(lambda: "/kvs/before-hup" in (read(logfile) or ""), 3),
   "--log-file receives access-log lines", (read(logfile) or "")[-1500:])
ok("level=" in (read(logfile) or "") and "role=master" in (read(logfile) or ""),
   "--log-file holds the master's logfmt lines")
os.rename(logfile, rotated)
ok(not os.path.exists(logfile), "log file renamed away")


def holders(path):
    """(pid, comm) of the replica's processes that hold path open."""
    out = []
    for pid, comm in L.group():
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                        out.append((pid, comm))
                except OSError:
                    pass
        except OSError:
            pass
    return out


ok(holders(rotated), "before SIGHUP the processes still write the renamed file",
   repr(L.group()))
L.signal_master(signal.SIGHUP)
ok(wait_until(lambda: os.path.exists(logfile), 3), "after SIGHUP a new log file appears")
# logrotate deletes the renamed file later: a process still writing there
# loses its log lines (for the replicator: every peer event)
ok(wait_until(lambda: not holders(rotated), 3),
   "within 3 s no process (master, workers, replicator) holds the renamed file open",
   "still open in: %r" % holders(rotated))
probe = ["/kvs/after-hup-%d" % i for i in range(6)]
for p in probe:
    request(L, "GET", p)
new = wait_until(lambda: all(p in (read(logfile) or "") for p in probe) and read(logfile), 3)
ok(new, "the new file receives the access-log lines of requests after SIGHUP",
   (read(logfile) or "")[-1500:])
old = read(rotated) or ""
ok("/kvs/before-hup" in old and not any(p in old for p in probe),
   "the renamed file keeps the old lines and gets none of the new ones")
ok("SIGHUP" in (read(logfile) or ""), "the master logs the reopen into the new file")
is_(request(L, "GET", "/health").status, 200, "still serving after SIGHUP")
is_(len(L.workers_list()), 2, "both workers still running after SIGHUP")

# ==========================================================================
# SIGINT behaves like SIGTERM
# ==========================================================================

drain_test(L, signal.SIGINT, "SIGINT", nconn=4)
ok("SIGINT" in (read(logfile) or ""), "the master logs the SIGINT drain in --log-file")

# ==========================================================================
# -n: check the configuration, print one line, exit 0, serve nothing
# ==========================================================================

p = run_kvsd(["-n", "--address", "127.0.0.34:8090", "--view", "127.0.0.34:8090,127.0.0.35:8090"])
is_(p.returncode, 0, "kvsd -n with a valid configuration exits 0")
lines = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
is_(len(lines), 1, "kvsd -n prints one line")
diag("kvsd -n: %r" % (p.stdout + p.stderr))
p = run_kvsd(["--check"], env={"SOCKET_ADDRESS": "127.0.0.34:8090", "VIEW": "127.0.0.34:8090"})
is_(p.returncode, 0, "kvsd --check with SOCKET_ADDRESS/VIEW in the environment exits 0")
p = run_kvsd(["-n", "--address", "127.0.0.34:8090", "--view", "127.0.0.34:nope"])
is_(p.returncode, 78, "kvsd -n with a malformed VIEW exits 78")
is_(len([l for l in (p.stdout + p.stderr).splitlines() if l.strip()]), 1,
    "kvsd -n with a bad configuration prints one line")
try:
    connect_from("127.0.0.34", 8090, CLIENT_IP, 0.5).close()
    listening = True
except OSError:
    listening = False
ok(not listening, "kvsd -n leaves nothing listening on 127.0.0.34:8090")

done()
