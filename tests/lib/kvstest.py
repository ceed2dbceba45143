"""kvstest -- integration-test harness for kvsd (Python 3 standard library only).

Every test script in tests/t/ imports this module.  It provides

  * TAP output (plan at the end): ok(), is_(), diag(), skip(), done();
    an uncaught exception, a signal, or exiting without done() is reported
    as "not ok" with a non-zero exit status -- never a silent pass;
  * Replica / Cluster: real kvsd processes started with setsid, each with a
    log file in the per-test temporary directory; all of them are killed
    (SIGKILL to the process group) at exit, whatever happens;
  * request() / RawConn: HTTP client bound to the test client's own source
    address (127.0.0.100 by default), and a raw-socket client;
  * wait_until(): bounded polling;
  * Firewall: a private iptables chain for partitions, removed at exit.

See tests/t/README.md.
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

CLIENT_IP = "127.0.0.100"
DEFAULT_PORT = 8090
EX_CONFIG = 78


def kvsd_bin():
    return os.environ.get("KVSD_BIN", "/work/build/kvsd")


# --------------------------------------------------------------------------
# TAP
# --------------------------------------------------------------------------

_tap_lock = threading.RLock()
_count = 0
_failed = 0
_done = False


def _emit(line):
    with _tap_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _clean_name(name):
    # '#' would start a TAP directive; newlines would break the stream
    return str(name).replace("#", "\\#").replace("\n", " ")


def _print_diag(msg):
    with _tap_lock:
        for line in str(msg).splitlines() or [""]:
            _emit("# " + line)


def diag(msg):
    """Print a TAP diagnostic (every line prefixed with '# ')."""
    _print_diag(msg)


def ok(cond, name, diag=None):
    """Plan-less TAP assertion; `diag` is printed on failure."""
    global _count, _failed
    with _tap_lock:
        _count += 1
        if cond:
            _emit("ok %d - %s" % (_count, _clean_name(name)))
        else:
            _failed += 1
            _emit("not ok %d - %s" % (_count, _clean_name(name)))
            if diag is not None:
                _print_diag(diag)
    return bool(cond)


def _short(v, limit=600):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def is_(got, want, name):
    """ok(got == want) with got/want diagnostics on failure."""
    return ok(got == want, name,
              "     got: %s\n    want: %s" % (_short(got), _short(want)))


def skip(name, reason):
    global _count
    with _tap_lock:
        _count += 1
        _emit("ok %d - %s # SKIP %s" % (_count, _clean_name(name), reason))


def failed_count():
    return _failed


def done():
    """Print the plan, clean up, exit non-zero if anything failed."""
    global _done
    with _tap_lock:
        if _done:
            return
        _done = True
        _cleanup()
        if _count == 0:
            _emit("not ok 1 - no test ran")
            _emit("1..1")
            _exit_now(1)
        _emit("1..%d" % _count)
        status = 1 if _failed else 0
    _finish_tmpdir(status)
    _exit_now(status)


def _exit_now(status):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _fatal(msg, tb_text=None):
    """Report a fatal problem as 'not ok', print the plan, exit 1."""
    global _count, _failed, _done
    with _tap_lock:
        if _done:
            _exit_now(1)
        _done = True
        _count += 1
        _failed += 1
        _emit("not ok %d - %s" % (_count, _clean_name(msg)))
        if tb_text:
            _print_diag(tb_text)
        try:
            _cleanup()
        except Exception:  # cleanup problems must not hide the failure
            _print_diag(traceback.format_exc())
        _emit("1..%d" % _count)
    _finish_tmpdir(1)
    _exit_now(1)


def _excepthook(etype, value, tb):
    _fatal("uncaught exception: %s: %s" % (etype.__name__, value),
           "".join(traceback.format_exception(etype, value, tb)))


def _thread_excepthook(args):
    # an exception in a helper thread is a failure, not a silent pass
    ok(False, "uncaught exception in thread %s: %s: %s" % (
        args.thread.name if args.thread else "?",
        args.exc_type.__name__, args.exc_value),
        "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                           args.exc_traceback)))


def _signal_handler(signum, frame):
    _fatal("killed by signal %d" % signum)


def _atexit():
    if not _done:
        _fatal("test script exited without calling done()")


sys.excepthook = _excepthook
threading.excepthook = _thread_excepthook
for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _signal_handler)
atexit.register(_atexit)


# --------------------------------------------------------------------------
# temp dir, cleanup registry
# --------------------------------------------------------------------------

_tmpdir = None
_replicas = []        # every Replica ever started
_firewalls = []       # every Firewall still installed
_registry_lock = threading.Lock()


def tmpdir():
    """Per-test temporary directory (kept, and its path printed, on failure)."""
    global _tmpdir
    if _tmpdir is None:
        base = os.path.splitext(os.path.basename(sys.argv[0] or "test"))[0]
        _tmpdir = tempfile.mkdtemp(prefix="kvst-%s-" % base)
    return _tmpdir


def _finish_tmpdir(status):
    if _tmpdir is None:
        return
    if status == 0 and not os.environ.get("KVST_KEEP"):
        shutil.rmtree(_tmpdir, ignore_errors=True)
    else:
        sys.stdout.write("# logs kept in %s\n" % _tmpdir)
        sys.stdout.flush()


def _cleanup():
    """Kill every started process group, remove every firewall chain."""
    with _registry_lock:
        reps = list(_replicas)
        fws = list(_firewalls)
    for r in reps:
        try:
            r._kill_group_hard()
        except Exception:
            pass
    for fw in fws:
        try:
            fw.close()
        except Exception:
            pass


def cleanup():
    """Public: kill everything started so far and remove firewall chains."""
    _cleanup()


# --------------------------------------------------------------------------
# polling
# --------------------------------------------------------------------------

def wait_until(fn, timeout, interval=0.05,
               exceptions=(OSError, http.client.HTTPException)):
    """Call fn() every `interval` s until it returns a truthy value or
    `timeout` s have passed.  Returns the last value (falsy on timeout).
    Network errors raised by fn count as a falsy None."""
    deadline = time.monotonic() + timeout
    val = None
    while True:
        try:
            val = fn()
        except exceptions:
            val = None
        if val:
            return val
        if time.monotonic() >= deadline:
            return val
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def proc_stat(pid):
    """(comm, state, ppid, pgid, starttime) of pid from /proc, or None if it
    is gone.  starttime is in clock ticks since boot."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    lp, rp = data.index("("), data.rindex(")")
    comm = data[lp + 1:rp]
    rest = data[rp + 2:].split()
    return comm, rest[0], int(rest[1]), int(rest[2]), int(rest[19])


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_ticks():
    """Now, in the unit of proc_stat()'s starttime."""
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * _CLK_TCK) + 1


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[1] != "Z"


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is not None and st[2] == ppid and st[1] != "Z":
            out.append((int(name), st[0]))
    return sorted(out)


def group_members(pgid, started_by=None):
    """[(pid, comm)] of live processes in process group pgid; with
    started_by (ticks), only those started no later than that."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is not None and st[3] == pgid and st[1] != "Z" and \
                (started_by is None or st[4] <= started_by):
            out.append((int(name), st[0]))
    return sorted(out)


# --------------------------------------------------------------------------
# replicas
# --------------------------------------------------------------------------

def _addr(a, port=DEFAULT_PORT):
    if isinstance(a, Replica):
        return a.addr
    a = str(a)
    return a if ":" in a else "%s:%d" % (a, port)


_ENV_STRIP = ("SOCKET_ADDRESS", "VIEW")


def clean_env(extra=None):
    """os.environ without SOCKET_ADDRESS, VIEW and KVSD_* (except KVSD_BIN),
    plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in _ENV_STRIP and not (k.startswith("KVSD_") and k != "KVSD_BIN")}
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


class Replica:
    """One kvsd process (master + children) in its own session.

    Replica(ip, port=8090, view=[...], workers=2, extra_args=[], env={})
    view entries are "IP:PORT" strings, bare IPs (port added) or Replicas;
    default view: just this replica.  flags=False starts kvsd with no
    --address/--view/--workers flags (configure it via env/extra_args).
    """

    _seq = 0

    def __init__(self, ip, port=DEFAULT_PORT, view=None, workers=2,
                 extra_args=None, env=None, flags=True, start=True):
        self.ip = ip
        self.port = port
        self.addr = "%s:%d" % (ip, port)
        self.view = [_addr(v, port) for v in (view if view else [self.addr])]
        self.workers = workers
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.flags = flags
        self.proc = None
        self.master_pid = None
        self.log_path = None
        self.returncode = None
        self._reaped_ticks = None
        if start:
            self.start()

    def argv(self):
        a = [kvsd_bin()]
        if self.flags:
            a += ["--address", self.addr, "--view", ",".join(self.view)]
            if self.workers is not None:
                a += ["--workers", str(self.workers)]
        return a + self.extra_args

    def start(self):
        """Start (or restart) the process; returns self."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("replica %s already running" % self.addr)
        # kvsd listens with SO_REUSEPORT: a leftover process on this address
        # would silently share the traffic with the new one
        try:
            connect_from(self.ip, self.port, CLIENT_IP, 0.5).close()
            taken = True
        except OSError:
            taken = False
        if taken:
            raise RuntimeError("%s is already served by another process (leftover "
                               "from an earlier test?)" % self.addr)
        Replica._seq += 1
        self.log_path = os.path.join(
            tmpdir(), "kvsd-%s-%d-%d.log" % (self.ip, self.port, Replica._seq))
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, env=clean_env(self.env),
                start_new_session=True, close_fds=True)
        finally:
            logf.close()
        self.master_pid = self.proc.pid
        self.returncode = None
        self._reaped_ticks = None
        with _registry_lock:
            if self not in _replicas:
                _replicas.append(self)
        return self

    # --- state ---------------------------------------------------------
    # Once the master has been reaped its pid -- the process group id -- may
    # be reused (pid_max is small) as soon as the group is empty, e.g. by
    # another test's setsid'd kvsd.  So after reaping, the group is only ever
    # signalled member by member, and only members that had started by the
    # time of reaping: never a stranger that got the recycled id.
    def _note_reaped(self):
        if self.proc is not None and self.proc.returncode is not None:
            self.returncode = self.proc.returncode
            if self._reaped_ticks is None:
                self._reaped_ticks = now_ticks()

    def poll(self):
        if self.proc is None:
            return None
        rc = self.proc.poll()
        self._note_reaped()
        return rc

    def running(self):
        return self.proc is not None and self.poll() is None

    def children(self):
        """[(pid, comm)] of the master's direct children (from /proc)."""
        if not self.running():
            return []
        return children_of(self.master_pid)

    def workers_list(self):
        return [(p, c) for p, c in self.children() if c.startswith("kvsd-worker-")]

    def replicator(self):
        r = [(p, c) for p, c in self.children() if c == "kvsd-replicator"]
        return r[0] if r else None

    def group(self):
        """[(pid, comm)] of every live process in the replica's process group."""
        if self.master_pid is None:
            return []
        self.poll()
        return group_members(self.master_pid, self._reaped_ticks)

    def _signal_group(self, sig):
        if self.proc is None:
            return
        if self.proc.returncode is None:
            # master not reaped: its pid is held, the group id is ours
            try:
                os.killpg(self.master_pid, sig)
            except ProcessLookupError:
                pass
            return
        for pid, _ in group_members(self.master_pid, self._reaped_ticks):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def log_text(self):
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=20):
        return "\n".join(self.log_text().splitlines()[-n:])

    # --- readiness -----------------------------------------------------
    def health(self, timeout=1):
        r = request(self.addr, "GET", "/health", timeout=timeout)
        return r.status == 200

    def _children_named(self):
        kids = self.children()
        return len(kids) >= 2 and all(c.startswith("kvsd-") for _, c in kids)

    def wait_ready(self, timeout=10):
        """Poll GET /health every 50 ms until 200; raises on timeout or if
        the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise RuntimeError("kvsd %s exited with status %s before it was "
                                   "ready; log:\n%s" % (self.addr, self.returncode,
                                                        self.log_tail()))
            try:
                # serving, and every child has named itself (a test that
                # records the children right away must not see a fresh
                # fork still called "kvsd")
                if self.health(timeout=1) and self._children_named():
                    return self
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError("kvsd %s not ready after %.1f s; log:\n%s"
                                   % (self.addr, timeout, self.log_tail()))
            time.sleep(0.05)

    # --- signals -------------------------------------------------------
    def kill(self, sig=signal.SIGKILL):
        """Signal the whole process group."""
        self._signal_group(sig)
        if sig == signal.SIGKILL:
            self.wait(5)

    def signal_master(self, sig):
        if self.running():
            os.kill(self.master_pid, sig)

    def wait(self, timeout):
        """Wait for the master to exit; returns its status or None."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._note_reaped()
        return self.returncode

    def stop(self, timeout=5):
        """SIGTERM the master, wait up to `timeout`, then SIGKILL the group.
        Returns the master's exit status (negative = killed by signal)."""
        if self.proc is None:
            return None
        if self.running():
            try:
                os.kill(self.master_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.wait(timeout)
        self._kill_group_hard()
        return self.returncode

    def _kill_group_hard(self):
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.wait(5)
        # children re-parented to init are still in the group: wait for them
        if self.group():
            self._signal_group(signal.SIGKILL)
            wait_until(lambda: not self.group(), 3)

    def __repr__(self):
        return "<Replica %s pid=%s>" % (self.addr, self.master_pid)


class Cluster:
    """N replicas on the given IPs, each with the full view.

    with Cluster(["127.0.0.30", "127.0.0.31"]) as c:
        c.wait_ready(); request(c[0], "GET", "/view")
    """

    def __init__(self, ips, port=DEFAULT_PORT, workers=2, extra_args=None,
                 env=None, start=True):
        self.view = ["%s:%d" % (ip, port) for ip in ips]
        self.replicas = [Replica(ip, port, view=self.view, workers=workers,
                                 extra_args=extra_args, env=env, start=False)
                         for ip in ips]
        if start:
            self.start()

    def start(self):
        for r in self.replicas:
            r.start()
        return self

    def wait_ready(self, timeout=10):
        for r in self.replicas:
            r.wait_ready(timeout)
        return self

    def stop(self):
        return [r.stop() for r in self.replicas]

    def kill(self):
        for r in self.replicas:
            r.kill(signal.SIGKILL)

    def __getitem__(self, i):
        return self.replicas[i]

    def __iter__(self):
        return iter(self.replicas)

    def __len__(self):
        return len(self.replicas)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for r in self.replicas:
            try:
                r._kill_group_hard()
            except Exception:
                pass
        return False


def run_kvsd(args, env=None, timeout=10):
    """Run kvsd to completion (config checks, --help, ...).
    Returns a CompletedProcess with .stdout/.stderr as str."""
    p = subprocess.Popen([kvsd_bin()] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=clean_env(env), start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return subprocess.CompletedProcess(p.args, None,
                                           out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))
    return subprocess.CompletedProcess(p.args, p.returncode,
                                       out.decode("utf-8", "replace"),
                                       err.decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, raw, elapsed=0.0, header_list=None):
        self.status = status
        self.reason = reason
        self.headers = headers          # dict, lower-case names
        self.header_list = header_list or list(headers.items())
        self.raw = raw                  # body bytes
        self.elapsed = elapsed
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def keys(self):
        """Top-level JSON keys in the order they appear in the body."""
        try:
            pairs = json.loads(self.raw.decode("utf-8"), object_pairs_hook=list)
        except (ValueError, UnicodeDecodeError):
            return None
        return [k for k, _ in pairs] if isinstance(pairs, list) and \
            all(isinstance(p, tuple) for p in pairs) else None

    def __repr__(self):
        return "<%s %s %s>" % (self.status, self.reason, _short(self.raw, 300))

    def describe(self):
        return "HTTP %s %s\n%s\n\n%s" % (
            self.status, self.reason,
            "\n".join("%s: %s" % kv for kv in self.header_list),
            self.raw.decode("utf-8", "replace")[:1000])


def _hostport(addr):
    addr = _addr(addr)
    host, port = addr.rsplit(":", 1)
    return host, int(port)


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def connect_from(host, port, source_ip=CLIENT_IP, timeout=5):
    """TCP connection from source_ip.  The source port is chosen at connect()
    time (IP_BIND_ADDRESS_NO_PORT), so TIME_WAIT sockets towards other
    replicas do not use up the ephemeral ports of the client address."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source_ip:
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass
            s.bind((source_ip, 0))
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


class _Conn(http.client.HTTPConnection):
    def __init__(self, host, port, timeout, source_ip):
        super().__init__(host, port, timeout=timeout)
        self._source_ip = source_ip

    def connect(self):
        self.sock = connect_from(self.host, self.port, self._source_ip, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _encode(body, raw_body, headers):
    hdrs = {}
    data = None
    if raw_body is not None:
        data = raw_body.encode("utf-8") if isinstance(raw_body, str) else raw_body
        hdrs["Content-Type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    if data is not None and "Content-Length" not in hdrs \
            and "Transfer-Encoding" not in hdrs:
        hdrs["Content-Length"] = str(len(data))
    return data, hdrs


def _exchange(conn, method, path, data, hdrs):
    t0 = time.monotonic()
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    hl = [(k.lower(), v) for k, v in resp.getheaders()]
    hd = {}
    for k, v in hl:
        hd[k] = v if k not in hd else hd[k] + ", " + v
    r = Response(resp.status, resp.reason, hd, raw, time.monotonic() - t0, hl)
    r.will_close = resp.will_close
    return r


def request(addr, method, path, body=None, raw_body=None, headers=None,
            source_ip=CLIENT_IP, timeout=5):
    """One HTTP/1.1 request over a fresh connection.  `body` is sent as JSON,
    `raw_body` (bytes/str) verbatim; GET and DELETE may carry a body."""
    host, port = _hostport(addr)
    data, hdrs = _encode(body, raw_body, headers)
    conn = _Conn(host, port, timeout, source_ip)
    try:
        return _exchange(conn, method, path, data, hdrs)
    finally:
        conn.close()


def store_check(addr, timeout=30):
    """GET /internal/check, asked again for up to `timeout` s while it
    answers 503 Busy (a snapshot pass under way -- a peer's pull, or the
    persister's compaction -- or checks spaced after a long one).  Returns
    the last response."""
    last = [None]

    def once():
        resp = last[0] = request(addr, "GET", "/internal/check", timeout=timeout)
        return None if resp.status == 503 and b"Busy" in resp.raw else resp
    return wait_until(once, timeout, 0.05) or last[0]


class Session:
    """A keep-alive connection to one replica (reconnects after an error or
    a server-side close).  Same arguments and result as request()."""

    def __init__(self, addr, source_ip=CLIENT_IP, timeout=5):
        self.host, self.port = _hostport(addr)
        self.source_ip = source_ip
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, raw_body=None, headers=None):
        data, hdrs = _encode(body, raw_body, headers)
        if self.conn is None:
            self.conn = _Conn(self.host, self.port, self.timeout, self.source_ip)
        try:
            r = _exchange(self.conn, method, path, data, hdrs)
        except BaseException:
            self.close()
            raise
        if r.will_close:
            self.close()
        return r

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Client:
    """Keeps causal metadata like a course client: every request sends the
    metadata of the last response that carried one."""

    def __init__(self, source_ip=CLIENT_IP):
        self.meta = None
        self.source_ip = source_ip

    def _do(self, addr, method, key, value=None, put=False, timeout=5):
        body = {"causal-metadata": self.meta}
        if put:
            body["value"] = value
        r = request(addr, method, "/kvs/" + key, body=body,
                    source_ip=self.source_ip, timeout=timeout)
        if isinstance(r.json, dict) and "causal-metadata" in r.json:
            self.meta = r.json["causal-metadata"]
        return r

    def put(self, addr, key, value, **kw):
        return self._do(addr, "PUT", key, value, put=True, **kw)

    def get(self, addr, key, **kw):
        return self._do(addr, "GET", key, **kw)

    def delete(self, addr, key, **kw):
        return self._do(addr, "DELETE", key, **kw)


def parse_response(buf):
    """Parse one HTTP response from bytes.  Returns (Response, rest) or None
    if buf does not yet hold a whole response (Content-Length bodies only)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("iso-8859-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    hl = []
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hl.append((k.strip().lower(), v.strip()))
    hd = {}
    for k, v in hl:
        hd[k] = v if k not in hd else hd[k] + ", " + v
    n = int(hd.get("content-length", "0"))
    if len(buf) < end + 4 + n:
        return None
    body = buf[end + 4:end + 4 + n]
    return Response(status, reason, hd, body, 0.0, hl), buf[end + 4 + n:]


class RawConn:
    """A raw TCP connection for hand-made (malformed, slow, huge) requests."""

    def __init__(self, addr, source_ip=CLIENT_IP, timeout=5):
        host, port = _hostport(addr)
        self.sock = connect_from(host, port, source_ip, timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        """Send bytes; returns False (instead of raising) if the peer has
        closed or reset the connection."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _recv(self, deadline, what):
        """One recv() into buf before deadline; EOF or a reset sets eof."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(what)
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def read_response(self, timeout=5):
        """Read one response.  Returns a Response, or None if the server
        closed the connection first (check .eof).  Raises socket.timeout."""
        deadline = time.monotonic() + timeout
        while True:
            p = parse_response(self.buf) if self.buf else None
            if p is not None:
                resp, self.buf = p
                return resp
            if self.eof:
                return None
            self._recv(deadline, "no complete response within %.1f s" % timeout)

    def read_until_closed(self, timeout=5):
        """Read until EOF; returns all bytes (raises socket.timeout)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._recv(deadline, "connection not closed within %.1f s" % timeout)
        return self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def raw_request(addr, data, source_ip=CLIENT_IP, timeout=5):
    """Send bytes on a fresh connection, return the first Response or None
    if the server closed the connection without one."""
    with RawConn(addr, source_ip, timeout) as c:
        c.send(data)
        return c.read_response(timeout)


# --------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------

def iptables(*args, check=True):
    p = subprocess.run(["iptables", "-w"] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("iptables %s failed (%d): %s" % (
            " ".join(map(str, args)), p.returncode, p.stderr.decode().strip()))
    return p


def reap_stale_chains():
    """Remove KVST<pid> chains whose process is gone (a test that was
    SIGKILLed cannot clean up after itself).  Returns the names removed."""
    out = iptables("-S", check=False).stdout.decode()
    gone = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "-N" and f[1].startswith("KVST") and f[1][4:].isdigit():
            pid = int(f[1][4:])
            if pid != os.getpid() and not os.path.exists("/proc/%d" % pid):
                gone.append(f[1])
    for chain in gone:
        for _ in range(10):
            if iptables("-D", "INPUT", "-i", "lo", "-j", chain,
                        check=False).returncode != 0:
                break
        iptables("-F", chain, check=False)
        iptables("-X", chain, check=False)
    return gone


class Firewall:
    """A private iptables chain KVST<pid> hooked into INPUT -i lo.
    Traffic from/to the test client address is always let through.

    with Firewall() as fw:
        fw.isolate("127.0.0.31"); ...; fw.heal("127.0.0.31")
    """

    def __init__(self, client_ip=CLIENT_IP, name=None):
        self.chain = name or "KVST%d" % os.getpid()
        self.client_ip = client_ip
        self.isolated = []
        self.cuts = []
        self.installed = False

    def open(self):
        reap_stale_chains()
        if iptables("-N", self.chain, check=False).returncode != 0:
            # left behind by a dead process that had our pid: take it over
            self._unhook()
            iptables("-F", self.chain)
        with _registry_lock:
            _firewalls.append(self)
        self.installed = True
        iptables("-A", self.chain, "-s", self.client_ip, "-j", "RETURN")
        iptables("-A", self.chain, "-d", self.client_ip, "-j", "RETURN")
        iptables("-I", "INPUT", "-i", "lo", "-j", self.chain)
        return self

    def isolate(self, ip):
        ip = _addr(ip).rsplit(":", 1)[0] if isinstance(ip, Replica) else ip
        if ip in self.isolated:
            return
        iptables("-A", self.chain, "-s", ip, "-j", "DROP")
        iptables("-A", self.chain, "-d", ip, "-j", "DROP")
        self.isolated.append(ip)

    def cut(self, src, dst):
        """Drop packets from src to dst only (a one-way partition);
        heal() with no argument removes it."""
        src, dst = [a.ip if isinstance(a, Replica) else a for a in (src, dst)]
        if (src, dst) not in self.cuts:
            iptables("-A", self.chain, "-s", src, "-d", dst, "-j", "DROP")
            self.cuts.append((src, dst))

    def heal(self, ip=None):
        """Remove the DROP rules of ip (all isolated addresses and one-way
        cuts if None)."""
        if isinstance(ip, Replica):
            ip = ip.ip
        for a in ([ip] if ip else list(self.isolated)):
            iptables("-D", self.chain, "-s", a, "-j", "DROP", check=False)
            iptables("-D", self.chain, "-d", a, "-j", "DROP", check=False)
            if a in self.isolated:
                self.isolated.remove(a)
        if ip is None:
            for src, dst in self.cuts:
                iptables("-D", self.chain, "-s", src, "-d", dst, "-j", "DROP", check=False)
            self.cuts = []

    def rules(self):
        """iptables -S output lines that mention the chain."""
        out = iptables("-S", check=False).stdout.decode()
        return [l for l in out.splitlines() if self.chain in l.split()]

    def _unhook(self):
        # repeat in case it got hooked twice
        for _ in range(10):
            if iptables("-D", "INPUT", "-i", "lo", "-j", self.chain,
                        check=False).returncode != 0:
                break

    def close(self):
        if not self.installed:
            return
        self._unhook()
        iptables("-F", self.chain, check=False)
        iptables("-X", self.chain, check=False)
        self.installed = False
        self.isolated = []
        self.cuts = []
        with _registry_lock:
            if self in _firewalls:
                _firewalls.remove(self)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------
# small assertion helpers shared by the API tests
# --------------------------------------------------------------------------

def check_json_headers(r, name):
    """Content-Type application/json and Content-Length == len(body)."""
    ct = r.headers.get("content-type", "")
    cl = r.headers.get("content-length")
    good = ct.split(";")[0].strip().lower() == "application/json" and \
        cl is not None and cl.isdigit() and int(cl) == len(r.raw)
    return ok(good, name + ": Content-Type json, Content-Length matches body",
              "content-type=%r content-length=%r body length=%d" % (ct, cl, len(r.raw)))


def expect(r, status, raw, name):
    """Exact status and byte-exact body."""
    good = r is not None and r.status == status and r.raw == raw
    return ok(good, name, "    got: %s\n   want: %s %s" % (
        (r.status, r.raw) if r is not None else None, status, raw))


def accept_backlog(rep):
    """Connections waiting in the accept queues of the replica's listening
    sockets (from /proc/net/tcp: rx_queue of a LISTEN socket), or None if no
    listening socket is found."""
    a, b, c, d = (int(x) for x in rep.ip.split("."))
    local = "%02X%02X%02X%02X:%04X" % (d, c, b, a, rep.port)
    total, found = 0, False
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fl = line.split()
            if fl[1] == local and fl[3] == "0A":
                found = True
                total += int(fl[4].split(":")[1], 16)
    return total if found else None
