#!/usr/bin/env python3
"""HTTP edges on raw sockets (issue 12 item 6): ambiguous request framing
(request smuggling), JSON strings whose escapes change their meaning, and
oversized /view bodies.
Addresses: 127.0.0.160 (the replica, defaults: --max-body 1M); PUT /view
bodies name 127.0.0.179:8090, where nothing listens."""

import json

from kvstest import Replica, RawConn, request, ok, is_, done, expect

ME = "127.0.0.160:8090"
NOBODY = "127.0.0.179:8090"
BAD = b'{"error": "Bad request"}'
NO_ADDR = b'{"error": "Request does not specify a socket-address"}'
BADMETA = b'{"error": "Invalid causal-metadata"}'
TOOLARGE = b'{"error": "Request body too large"}'
NOKEY = b'{"error": "Key does not exist"}'

r = Replica("127.0.0.160", workers=2).wait_ready(10)


def raw_exchange(data):
    """Send data on a fresh connection; return (first response, closed
    right after it?)."""
    with RawConn(r, timeout=5) as c:
        c.send(data)
        resp = c.read_response(5)
        try:
            closed = resp is not None and c.read_response(2) is None and c.eof
        except OSError:
            closed = False  # still open, nothing more sent
        return resp, closed


def head(key, *lines):
    return ("PUT /kvs/%s HTTP/1.1\r\nHost: kvsd\r\nContent-Type: application/json\r\n" % key
            + "".join(l + "\r\n" for l in lines) + "\r\n").encode()


VALUE = b'{"value": 1}'                       # 12 bytes
SMUGGLED = head("smuggled", "Content-Length: 12") + VALUE


def chunked(body):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# --- ambiguous framing: 400, connection closed, nothing stored -----------------------
cases = [
    # a proxy that reads the second Content-Length sends SMUGGLED as part of the body
    ("two Content-Length, the first shorter",
     "cl1", ["Content-Length: 12", "Content-Length: %d" % (12 + len(SMUGGLED))], VALUE + SMUGGLED),
    ("two Content-Length, the first longer",
     "cl2", ["Content-Length: %d" % (12 + len(SMUGGLED)), "Content-Length: 12"], VALUE + SMUGGLED),
    ("two identical Content-Length", "cl3", ["Content-Length: 12", "Content-Length: 12"], VALUE),
    ("Content-Length then Transfer-Encoding: chunked",
     "te1", ["Content-Length: 12", "Transfer-Encoding: chunked"], chunked(VALUE)),
    ("Transfer-Encoding: chunked then Content-Length",
     "te2", ["Transfer-Encoding: chunked", "Content-Length: 12"], chunked(VALUE)),
    ("Content-Length with Transfer-Encoding, header names in odd case",
     "te3", ["cOnTeNt-LeNgTh: 12", "TRANSFER-ENCODING: chunked"], chunked(VALUE)),
    ("two Transfer-Encoding: chunked", "te4",
     ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], chunked(VALUE)),
]
for name, key, lines, body in cases:
    resp, closed = raw_exchange(head(key, *lines) + body)
    expect(resp, 400, BAD, name + " -> 400")
    ok(closed, name + ": the connection is closed after the 400")
    expect(request(r, "GET", "/kvs/" + key), 404, NOKEY, name + ": nothing stored")
expect(request(r, "GET", "/kvs/smuggled"), 404, NOKEY, "no smuggled request was executed")

# the same framing, stated once, is fine: keep-alive and pipelining still work
with RawConn(r, timeout=5) as c:
    c.send(head("pipe1", "Content-Length: 12") + VALUE + head("pipe2", "Content-Length: 12") + VALUE
           + head("pipe3", "Transfer-Encoding: chunked") + chunked(VALUE))
    got = [c.read_response(5) for _ in range(3)]
is_([g.status if g else None for g in got], [201, 201, 201],
    "three pipelined PUTs (two Content-Length, one chunked) on one connection -> 201 each")
ok(request(r, "GET", "/kvs/pipe3").status == 200, "the pipelined chunked PUT stored its value")

# --- socket-address strings whose escapes change their meaning -------------------------
def view_raw(method, addr_json):
    return request(r, method, "/view", raw_body=b'{"socket-address": ' + addr_json + b'}')


for name, s in [("trailing \\u0000", b'"127.0.0.179:8090\\u0000"'),
                ("\\u0000 then more", b'"127.0.0.179:8090\\u0000junk"'),
                ("\\u0000 inside", b'"127.0.0.179\\u0000:8090"'),
                ("the replica's own address + \\u0000", b'"127.0.0.160:8090\\u0000"'),
                ("a lone surrogate", b'"127.0.0.179:8090\\ud800"'),
                ("an escaped newline", b'"127.0.0.179:8090\\n"'),
                ("an escaped tab first", b'"\\t127.0.0.179:8090"')]:
    expect(view_raw("PUT", s), 400, NO_ADDR, "PUT /view socket-address with %s -> 400" % name)
    expect(view_raw("DELETE", s), 400, NO_ADDR, "DELETE /view socket-address with %s -> 400" % name)
expect(request(r, "GET", "/view"), 200, ('{"view": ["%s"]}' % ME).encode(),
       "none of them changed the view")

# an escape that spells the same characters means the same address
expect(view_raw("PUT", b'"127.0.0.17\\u0039:8090"'), 201, b'{"result": "added"}',
       "PUT /view \"127.0.0.17\\u0039:8090\" (plain characters escaped) -> 201")
expect(request(r, "GET", "/view"), 200, ('{"view": ["%s", "%s"]}' % (ME, NOBODY)).encode(),
       "the view lists it decoded")
expect(request(r, "DELETE", "/view", body={"socket-address": NOBODY}), 200,
       b'{"result": "deleted"}', "DELETE /view of it -> 200")

# causal-metadata keys are taken literally, as kvsd issued them: no escapes
w = request(r, "PUT", "/kvs/meta", body={"value": 1})
ok(w.status == 201, "PUT /kvs/meta -> 201", w.raw)
(mkey, mval), = w.json["causal-metadata"].items()
for name, k in [("a \\u0000 after the address", mkey.replace("/", "\\u0000/")),
                ("an escaped digit", mkey.replace("160", "16\\u0030")),
                ("an escaped slash", mkey.replace("/", "\\/"))]:
    body = ('{"causal-metadata": {"%s": %d}}' % (k, mval)).encode()
    expect(request(r, "GET", "/kvs/meta", raw_body=body), 400, BADMETA,
           "GET causal-metadata key with %s -> 400" % name)
ok(request(r, "GET", "/kvs/meta", body={"causal-metadata": {mkey: mval}}).status == 200,
   "the same key, unescaped, is accepted")

# a key is bytes: a percent-encoded NUL does not end it
ok(request(r, "PUT", "/kvs/nul%00key", body={"value": 1}).status == 201, "PUT /kvs/nul%00key -> 201")
expect(request(r, "GET", "/kvs/nul"), 404, NOKEY, "GET /kvs/nul -> 404 (the NUL did not cut the key)")
ok(request(r, "GET", "/kvs/nul%00key").status == 200, "GET /kvs/nul%00key -> 200")

# --- /view bodies over --max-body: 413 like /kvs ------------------------------------
for size in (2 * 1000 * 1000, 2 * 1024 * 1024):
    pad = "x" * (size - 60)
    body = json.dumps({"socket-address": NOBODY, "pad": pad}).encode()
    for method in ("PUT", "DELETE"):
        expect(request(r, method, "/view", raw_body=body, timeout=15), 413, TOOLARGE,
               "%s /view with a valid address in a %d-byte body -> 413" % (method, len(body)))
expect(request(r, "GET", "/view"), 200, ('{"view": ["%s"]}' % ME).encode(),
       "the oversized PUT /view changed nothing")

ok(r.running() and r.health(), "the replica is still up")
done()
