#!/usr/bin/env python3
"""/kvs API of a single replica: every row of api.md "Key-value operations",
value round-trips, key decoding and length, causal metadata, 405/404.
Address: 127.0.0.13 (127.0.0.14-15 reserved for this file)."""

import json
import re
import threading
import time

from kvstest import Replica, Session, request, ok, is_, done, diag, expect

ADDR = "127.0.0.13:8090"
NOKEY = b'{"error": "Key does not exist"}'
TOOLONG = b'{"error": "Key is too long"}'
NOVALUE = b'{"error": "PUT request does not specify a value"}'
UNSAT = b'{"error": "Causal dependencies not satisfied; try again later"}'
NOTALLOWED = b'{"error": "Method not allowed"}'
NOTFOUND = b'{"error": "Not found"}'
META_KEY = re.compile(r"^127\.0\.0\.13:8090/[0-9]+$")

r = Replica("127.0.0.13", workers=2).wait_ready(10)
start_workers = sorted(r.workers_list())

bad_headers = []       # responses without JSON Content-Type / right Content-Length
incarnations = set()   # metadata keys seen


def req(method, path, **kw):
    resp = request(r, method, path, **kw)
    ct = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    cl = resp.headers.get("content-length")
    if ct != "application/json" or cl is None or not cl.isdigit() or int(cl) != len(resp.raw):
        bad_headers.append("%s %s -> %s content-type=%r content-length=%r len=%d" % (
            method, path, resp.status, resp.headers.get("content-type"), cl, len(resp.raw)))
    if isinstance(resp.json, dict) and isinstance(resp.json.get("causal-metadata"), dict):
        incarnations.update(resp.json["causal-metadata"].keys())
    return resp


def meta_ok(m):
    return isinstance(m, dict) and len(m) >= 1 and all(
        isinstance(k, str) and META_KEY.match(k) and type(v) is int and v >= 0
        for k, v in m.items())


def covers(a, b):
    """a >= b component-wise (missing entries count as 0)."""
    return all(a.get(k, 0) >= v for k, v in b.items())


def check_write(resp, status, result, name, dep=None):
    """201/200 write answer: exact status, keys [result, causal-metadata],
    envelope formatted like api.md, metadata well formed and covering dep."""
    j = resp.json if isinstance(resp.json, dict) else {}
    m = j.get("causal-metadata")
    good = (resp.status == status and resp.keys() == ["result", "causal-metadata"]
            and j.get("result") == result and meta_ok(m)
            and (dep is None or covers(m, dep)))
    ok(good, name, "got: %s\nwant status %d result %r, metadata covering %r"
       % (resp.describe(), status, result, dep))
    return m if good else None


def check_found(resp, value, name, dep=None):
    j = resp.json if isinstance(resp.json, dict) else {}
    m = j.get("causal-metadata")
    good = (resp.status == 200 and resp.keys() == ["result", "value", "causal-metadata"]
            and j.get("result") == "found" and "value" in j and j["value"] == value
            and type(j["value"]) is type(value) and meta_ok(m)
            and (dep is None or covers(m, dep)))
    ok(good, name, "got: %s\nwant 200 found value %r, metadata covering %r"
       % (resp.describe(), value, dep))
    return m if good else None


def own(m):
    """The count of this replica's own entry in metadata m."""
    vals = [v for k, v in (m or {}).items() if k.startswith(ADDR + "/")]
    return max(vals) if vals else None


# --- basic lifecycle ---------------------------------------------------------------
resp = req("GET", "/kvs/k1")
expect(resp, 404, NOKEY, "GET missing key -> 404")
resp = req("DELETE", "/kvs/k1")
expect(resp, 404, NOKEY, "DELETE missing key -> 404")

resp = req("PUT", "/kvs/k1", body={"value": "v1"})
m1 = check_write(resp, 201, "created", "PUT new key -> 201 created")
ok(m1 is not None and resp.raw == json.dumps(resp.json).encode(),
   "PUT response formatted like api.md (\", \" and \": \" separators)", resp.raw)

resp = req("PUT", "/kvs/k1", body={"value": "v2", "causal-metadata": m1})
m2 = check_write(resp, 200, "replaced", "PUT existing key -> 200 replaced", dep=m1)
ok(m1 and m2 and own(m2) > own(m1), "own count grows with a write", "%r -> %r" % (m1, m2))

resp = req("GET", "/kvs/k1", body={"causal-metadata": m2})
m3 = check_found(resp, "v2", "GET -> 200 found with the new value", dep=m2)
expect_raw = b'{"result": "found", "value": "v2", "causal-metadata": ' + \
    json.dumps(m3).encode() + b"}"
is_(resp.raw, expect_raw, "GET response formatted like api.md")

resp = req("DELETE", "/kvs/k1", body={"causal-metadata": m3})
m4 = check_write(resp, 200, "deleted", "DELETE existing key -> 200 deleted", dep=m3)
ok(m3 and m4 and own(m4) > own(m3), "own count grows with a delete", "%r -> %r" % (m3, m4))
is_(resp.raw, json.dumps(resp.json).encode(), "DELETE response formatted like api.md")

expect(req("GET", "/kvs/k1", body={"causal-metadata": m4}), 404, NOKEY,
       "GET after DELETE -> 404")
expect(req("GET", "/kvs/k1"), 404, NOKEY, "GET after DELETE, no metadata -> 404")
expect(req("DELETE", "/kvs/k1", body={"causal-metadata": m4}), 404, NOKEY,
       "DELETE after DELETE -> 404")
resp = req("PUT", "/kvs/k1", body={"value": "v3", "causal-metadata": m4})
m5 = check_write(resp, 201, "created", "PUT after DELETE -> 201 created", dep=m4)
check_found(req("GET", "/kvs/k1"), "v3", "GET after re-create")

# all workers see the writes: 20 fresh connections
seen = set()
for i in range(20):
    g = req("GET", "/kvs/k1")
    seen.add((g.status, json.dumps(g.json.get("value") if isinstance(g.json, dict) else None)))
is_(seen, {(200, '"v3"')}, "20 GETs over fresh connections all find the value")


# --- values of every JSON type ---------------------------------------------------
def strip_ws(text):
    """JSON text without insignificant whitespace."""
    out, in_str, esc = [], False, False
    for ch in text:
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


def value_text(raw):
    """The value's JSON text inside a found response."""
    pre = b'{"result": "found", "value": '
    i = raw.rfind(b', "causal-metadata": ')
    if not raw.startswith(pre) or i < 0:
        return None
    return raw[len(pre):i].decode("utf-8", "replace")


values = [
    ("string", '"hello"'),
    ("int", "42"),
    ("zero", "0"),
    ("negative", "-17"),
    ("float", "3.25"),
    ("negative float with exponent", "-1.5e-3"),
    ("big integer", "123456789012345678901234567890"),
    ("true", "true"),
    ("false", "false"),
    ("object with nested array", '{"a": [1, 2, {"b": null}], "c": "d"}'),
    ("array", '[1, "two", 3.5, false, null]'),
    ("empty string", '""'),
    ("empty object", "{}"),
    ("empty array", "[]"),
    ("unicode (escaped)", json.dumps("h\u00e9llo \u2603")),
    ("unicode (raw UTF-8)", json.dumps("h\u00e9llo \u2603", ensure_ascii=False)),
    ("string with escapes", r'"a\"b\\n"'),
    ("string with control escapes", r'"tab\there\nnl \/ \u0041"'),
    ("string with NUL escape", r'"a\u0000b"'),
    ("string with spaces", '"  a  b  "'),
    ("whitespace around tokens", ' { "x" :  [ 1 ,\n 2 ] ,"y":{ } } '),
]
for i, (name, text) in enumerate(values):
    key = "val%d" % i
    want = json.loads(text)
    body = ('{"value": %s}' % text).encode("utf-8")
    resp = req("PUT", "/kvs/" + key, raw_body=body)
    check_write(resp, 201, "created", "PUT %s value -> 201" % name)
    g = req("GET", "/kvs/" + key)
    check_found(g, want, "%s value round-trips" % name)
    is_(value_text(g.raw), strip_ws(text),
        "%s value returned as the text sent, whitespace removed" % name)
    # replacing with a falsy value is still a value
    resp = req("PUT", "/kvs/" + key, raw_body=body)
    check_write(resp, 200, "replaced", "PUT %s value again -> 200" % name)

resp = req("PUT", "/kvs/big", raw_body=b'{"value": 123456789012345678901234567890}')
g = req("GET", "/kvs/big")
ok(b'"value": 123456789012345678901234567890,' in g.raw,
   "big integer comes back with the same digits", g.raw)

expect(req("PUT", "/kvs/nullv", body={"value": None}), 400, NOVALUE,
       "PUT value null -> 400")
expect(req("GET", "/kvs/nullv"), 404, NOKEY, "null value did not create the key")
expect(req("PUT", "/kvs/val0", body={"value": None}), 400, NOVALUE,
       "PUT value null on an existing key -> 400")
check_found(req("GET", "/kvs/val0"), "hello", "null PUT did not change the value")

# --- key decoding and length -------------------------------------------------------
check_write(req("PUT", "/kvs/a%20b", body={"value": "space"}), 201, "created",
            "PUT /kvs/a%20b -> 201")
check_found(req("GET", "/kvs/%61%20%62"), "space", "GET /kvs/%61%20%62 is the same key")
check_write(req("PUT", "/kvs/%61%20b", body={"value": "space2"}), 200, "replaced",
            "PUT /kvs/%61%20b replaces the same key")
check_found(req("GET", "/kvs/a%20b"), "space2", "GET /kvs/a%20b sees the replacement")
check_write(req("PUT", "/kvs/%41", body={"value": "A"}), 201, "created", "PUT /kvs/%41 -> 201")
check_found(req("GET", "/kvs/A"), "A", "/kvs/%41 == /kvs/A")
check_write(req("PUT", "/kvs/%4a%4B", body={"value": "JK"}), 201, "created",
            "PUT /kvs/%4a%4B (hex digits of both cases) -> 201")
check_found(req("GET", "/kvs/JK"), "JK", "/kvs/%4a%4B == /kvs/JK")
expect(req("GET", "/kvs/a%2520b"), 404, NOKEY, "%25 decodes once: /kvs/a%2520b is another key")

k50, k51 = "k" * 50, "k" * 51
check_write(req("PUT", "/kvs/" + k50, body={"value": 50}), 201, "created", "50-byte key PUT -> 201")
check_found(req("GET", "/kvs/" + k50), 50, "50-byte key GET -> 200")
check_write(req("DELETE", "/kvs/" + k50), 200, "deleted", "50-byte key DELETE -> 200")
expect(req("PUT", "/kvs/" + k51, body={"value": 51}), 400, TOOLONG, "51-byte key PUT -> 400")
expect(req("GET", "/kvs/" + k51), 400, TOOLONG, "51-byte key GET -> 400")
expect(req("DELETE", "/kvs/" + k51), 400, TOOLONG, "51-byte key DELETE -> 400")
expect(req("PUT", "/kvs/" + "x" * 300, body={"value": 1}), 400, TOOLONG, "300-byte key PUT -> 400")
check_write(req("PUT", "/kvs/" + "%41" * 50, body={"value": "A50"}), 201, "created",
            "50 x %41 (150 characters, 50 bytes decoded) PUT -> 201")
check_found(req("GET", "/kvs/" + "A" * 50), "A50", "50 x %41 is the key A*50")
expect(req("PUT", "/kvs/" + "%41" * 51, body={"value": 1}), 400, TOOLONG,
       "51 x %41 PUT -> 400")
expect(req("GET", "/kvs/" + "%41" * 51), 400, TOOLONG, "51 x %41 GET -> 400")
check_write(req("PUT", "/kvs/" + "%C3%A9" * 25, body={"value": "e25"}), 201, "created",
            "25 x e-acute (50 UTF-8 bytes) PUT -> 201")
expect(req("PUT", "/kvs/" + "%C3%A9" * 26, body={"value": 1}), 400, TOOLONG,
       "26 x e-acute (52 UTF-8 bytes) PUT -> 400")
expect(req("PUT", "/kvs/" + k51, body={"value": None}), 400, TOOLONG,
       "51-byte key with null value -> Key is too long (checked first)")

# --- causal metadata ---------------------------------------------------------------
c = req("PUT", "/kvs/c1", body={"value": 1})
mc = check_write(c, 201, "created", "PUT c1 without metadata -> 201")
for name, kw in [("causal-metadata null", dict(body={"causal-metadata": None})),
                 ("empty object body", dict(body={})),
                 ("no body", dict()),
                 ("empty body", dict(raw_body=b""))]:
    check_found(req("GET", "/kvs/c1", **kw), 1, "GET with %s -> no dependencies" % name)
check_write(req("PUT", "/kvs/c1", body={"value": 2, "causal-metadata": None}), 200, "replaced",
            "PUT with causal-metadata null -> 200")

# sending back M' works, and every answer covers it
cur = mc
for i in range(5):
    resp = req("PUT", "/kvs/c2", body={"value": i, "causal-metadata": cur})
    nxt = check_write(resp, 201 if i == 0 else 200, "created" if i == 0 else "replaced",
                      "PUT #%d with the previous M' -> %s" % (i, 201 if i == 0 else 200),
                      dep=cur)
    ok(nxt and own(nxt) > own(cur), "PUT #%d: own count grows" % i, "%r -> %r" % (cur, nxt))
    cur = nxt or cur
g = req("GET", "/kvs/c2", body={"causal-metadata": mc})
mg = check_found(g, 4, "GET with an older M -> found", dep=mc)
ok(mg and covers(mg, cur), "M' of a GET covers everything applied (the latest write)",
   "%r vs %r" % (mg, cur))
g = req("GET", "/kvs/c2", body={"causal-metadata": cur})
check_found(g, 4, "GET with the newest M -> found, M' covers M", dep=cur)

# dependencies not yet applied -> 503 at once, nothing changes
future = dict(cur)
k = next(iter(future))
future[k] += 1000
unknown = {"127.0.0.99:8090/1": 5}
both = dict(cur, **unknown)
for mname, meta in [("own count + 1000", future), ("unknown incarnation", unknown),
                    ("current plus unknown incarnation", both)]:
    for method, path, kw in [("GET", "/kvs/c2", {}),
                             ("PUT", "/kvs/c2", {"value": "nope"}),
                             ("PUT", "/kvs/c3new", {"value": "nope"}),
                             ("DELETE", "/kvs/c2", {}),
                             ("GET", "/kvs/missing-c", {}),
                             ("DELETE", "/kvs/missing-c", {})]:
        body = dict(kw, **{"causal-metadata": meta})
        t0 = time.monotonic()
        resp = req(method, path, body=body)
        el = time.monotonic() - t0
        expect(resp, 503, UNSAT, "%s %s with %s -> 503" % (method, path, mname))
        ok(el < 0.2, "%s %s with %s answered at once" % (method, path, mname),
           "took %.3f s" % el)
check_found(req("GET", "/kvs/c2"), 4, "503 PUT/DELETE changed nothing")
expect(req("GET", "/kvs/c3new"), 404, NOKEY, "503 PUT did not create the key")
g = req("GET", "/kvs/c2")
ok(isinstance(g.json, dict) and own(g.json.get("causal-metadata")) == own(cur),
   "503 requests did not advance the clock", "%r vs %r" % (g.raw, cur))

# order of checks: key length, value, dependencies
expect(req("GET", "/kvs/" + k51, body={"causal-metadata": future}), 400, TOOLONG,
       "GET 51-byte key with unsatisfied metadata -> Key is too long")
expect(req("PUT", "/kvs/" + k51, body={"value": 1, "causal-metadata": future}), 400, TOOLONG,
       "PUT 51-byte key with unsatisfied metadata -> Key is too long")
expect(req("DELETE", "/kvs/" + k51, body={"causal-metadata": future}), 400, TOOLONG,
       "DELETE 51-byte key with unsatisfied metadata -> Key is too long")
expect(req("PUT", "/kvs/c2", body={"causal-metadata": future}), 400, NOVALUE,
       "PUT without value with unsatisfied metadata -> no value")
expect(req("PUT", "/kvs/c2", body={"value": None, "causal-metadata": future}), 400, NOVALUE,
       "PUT null value with unsatisfied metadata -> no value")

ok(len(incarnations) == 1 and all(META_KEY.match(k) for k in incarnations),
   "every metadata key is this replica's single incarnation IP:PORT/<digits>",
   repr(sorted(incarnations)))

# --- bigger and more --------------------------------------------------------------------
bigval = "".join(chr(0x41 + (i * 7) % 26) for i in range(500 * 1024))
check_write(req("PUT", "/kvs/bigval", body={"value": bigval}), 201, "created",
            "PUT a 500 KiB string value -> 201")
g = req("GET", "/kvs/bigval")
ok(g.status == 200 and isinstance(g.json, dict) and g.json.get("value") == bigval,
   "500 KiB value round-trips intact", g.describe()[:300])
check_write(req("PUT", "/kvs/a%2Fb", body={"value": "slash"}), 201, "created",
            "PUT /kvs/a%2Fb (key with a slash) -> 201")
check_found(req("GET", "/kvs/a%2fb"), "slash", "GET /kvs/a%2fb finds it")

with Session(r.addr) as sess:
    bad = []
    for i in range(2000):
        st = sess.request("PUT", "/kvs/many%d" % i, body={"value": i}).status
        if st != 201:
            bad.append((i, st))
    ok(not bad, "2000 new keys over one keep-alive connection -> 201 each", repr(bad[:10]))
    bad = []
    for i in range(2000):
        g = sess.request("GET", "/kvs/many%d" % i)
        if g.status != 200 or g.json.get("value") != i:
            bad.append((i, g.status, g.raw[:100]))
    ok(not bad, "all 2000 keys read back", repr(bad[:10]))


def race(method, key, nthreads, body):
    """nthreads concurrent requests on one key (fresh connections, so several
    workers take part); returns the sorted statuses."""
    barrier = threading.Barrier(nthreads)
    out = []
    lock = threading.Lock()

    def one():
        try:
            barrier.wait(5)
        except threading.BrokenBarrierError:
            pass
        try:
            st = request(r, method, "/kvs/" + key, body=body).status
        except OSError as e:
            st = str(e)
        with lock:
            out.append(st)

    ts = [threading.Thread(target=one) for i in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    return sorted(out, key=str)


bad = []
for i in range(20):
    sts = race("PUT", "race%d" % i, 8, {"value": i})
    if sts != [200] * 7 + [201]:
        bad.append(("PUT", i, sts))
    sts = race("DELETE", "race%d" % i, 8, None)
    if sts != [200] + [404] * 7:
        bad.append(("DELETE", i, sts))
ok(not bad, "8 racing PUTs of a new key: exactly one 201; 8 racing DELETEs: exactly one 200",
   repr(bad[:5]))

# --- methods and paths ---------------------------------------------------------------
for method in ("POST", "PATCH"):
    resp = req(method, "/kvs/k1", body={"value": 1})
    expect(resp, 405, NOTALLOWED, "%s /kvs/k1 -> 405" % method)
check_found(req("GET", "/kvs/k1"), "v3", "POST/PATCH did not change the key")
for method in ("GET", "PUT", "DELETE"):
    for path in ("/foo", "/kvs", "/kvs/", "/", "/kvsx/a"):
        kw = {"body": {"value": 1}} if method == "PUT" else {}
        resp = req(method, path, **kw)
        expect(resp, 404, NOTFOUND, "%s %s -> 404 Not found" % (method, path))

ok(not bad_headers, "every response had Content-Type application/json and a right "
   "Content-Length", "\n".join(bad_headers[:20]))

# no crash
is_(sorted(r.workers_list()), start_workers, "workers are the original processes")
is_(r.stop(), 0, "SIGTERM -> exit 0")
done()
