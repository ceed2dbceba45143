#!/usr/bin/env python3
"""entrypoint.py -- docker/entrypoint.sh, without a Docker engine.

The entrypoint runs with a fake kvsd first on PATH (a script that prints
its environment and arguments, and mimics kvsd's exit 78 when no address
is configured), then with the real binary and -n:

* SOCKET_ADDRESS=IP:PORT gives KVSD_LISTEN=0.0.0.0:PORT;
* an explicit KVSD_LISTEN passes through unchanged;
* arguments pass through, and kvsd is exec'd (same pid, so docker's
  SIGTERM reaches it);
* SOCKET_ADDRESS missing or malformed: nothing derived, exit 78 with
  kvsd's one-line message.

Environment: KVSD_BIN, KVSD_SRCDIR.  TAP output.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from kvstest import ok, done, failed_count  # noqa: E402 (TAP output)


srcdir = os.environ.get("KVSD_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
entrypoint = os.path.join(srcdir, "docker", "entrypoint.sh")
kvsd = os.path.abspath(os.environ.get("KVSD_BIN", "kvsd"))
tmp = tempfile.mkdtemp(prefix="entrypoint-test-")

FAKE = r"""#!/bin/sh
# fake kvsd: report what the entrypoint handed over
case " $* " in *" --address "* | *" -a "*) have_addr=1 ;; *) have_addr= ;; esac
if [ -z "${SOCKET_ADDRESS:-}" ] && [ -z "$have_addr" ]; then
    echo "kvsd: no replica address: set SOCKET_ADDRESS or --address IP:PORT" >&2
    exit 78
fi
echo "PID=$$"
echo "KVSD_LISTEN=${KVSD_LISTEN-<unset>}"
echo "SOCKET_ADDRESS=${SOCKET_ADDRESS-<unset>}"
echo "ARGS=$*"
"""


def bindir(name, kvsd_path=None):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    target = os.path.join(d, "kvsd")
    if kvsd_path:
        os.symlink(kvsd_path, target)
    else:
        with open(target, "w") as f:
            f.write(FAKE)
        os.chmod(target, 0o755)
    return d


def run(path_dir, env, *args):
    e = {"PATH": path_dir + ":/usr/bin:/bin", "HOME": tmp}
    e.update(env)
    p = subprocess.Popen(["/bin/sh", entrypoint] + list(args), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=30)
    fields = dict(l.split("=", 1) for l in out.decode().splitlines() if "=" in l)
    return p.returncode, fields, err.decode(), p.pid


def show(r):
    return "exit %s\nvars: %s\nstderr: %s" % r[:3]


try:
    ok(os.access(entrypoint, os.X_OK), "docker/entrypoint.sh exists and is executable")
    fake = bindir("fake")

    r = run(fake, {"SOCKET_ADDRESS": "10.10.0.2:8090",
                   "VIEW": "10.10.0.2:8090,10.10.0.3:8090,10.10.0.4:8090"})
    ok(r[0] == 0 and r[1].get("KVSD_LISTEN") == "0.0.0.0:8090", "SOCKET_ADDRESS 10.10.0.2:8090 -> KVSD_LISTEN 0.0.0.0:8090", show(r))
    ok(r[1].get("SOCKET_ADDRESS") == "10.10.0.2:8090", "SOCKET_ADDRESS is passed on unchanged", show(r))
    ok(r[1].get("PID") == str(r[3]), "kvsd is exec'd (same pid as the entrypoint)", show(r))

    r = run(fake, {"SOCKET_ADDRESS": "10.10.0.3:9123"})
    ok(r[1].get("KVSD_LISTEN") == "0.0.0.0:9123", "the port is taken from SOCKET_ADDRESS", show(r))

    r = run(fake, {"SOCKET_ADDRESS": "10.10.0.2:8090", "KVSD_LISTEN": "10.10.0.2:8091"})
    ok(r[0] == 0 and r[1].get("KVSD_LISTEN") == "10.10.0.2:8091", "an explicit KVSD_LISTEN passes through", show(r))

    r = run(fake, {"SOCKET_ADDRESS": "10.10.0.2:8090"}, "--workers", "2", "--log-format", "json")
    ok(r[1].get("ARGS") == "--workers 2 --log-format json", "arguments pass through", show(r))

    r = run(fake, {})
    ok(r[0] == 78 and "SOCKET_ADDRESS" in r[2], "no SOCKET_ADDRESS: kvsd's exit 78 and message", show(r))
    ok("KVSD_LISTEN" not in r[1], "no SOCKET_ADDRESS: nothing printed, nothing derived", show(r))

    for bad in ("10.10.0.2", "10.10.0.2:", "10.10.0.2:http"):
        r = run(fake, {"SOCKET_ADDRESS": bad})
        ok(r[1].get("KVSD_LISTEN") == "<unset>", "malformed SOCKET_ADDRESS %r: no KVSD_LISTEN derived" % bad, show(r))

    # the real binary behind the entrypoint, configuration check only
    real = bindir("real", kvsd)
    r = run(real, {"SOCKET_ADDRESS": "127.0.0.40:8090", "VIEW": "127.0.0.40:8090"}, "-n")
    ok(r[0] == 0, "real kvsd -n through the entrypoint accepts SOCKET_ADDRESS + derived KVSD_LISTEN", show(r))
    r = run(real, {}, "-n")
    ok(r[0] == 78 and r[2].count("\n") == 1, "real kvsd -n without SOCKET_ADDRESS: exit 78, one line", show(r))
    r = run(real, {"SOCKET_ADDRESS": "10.10.0.2:http"}, "-n")
    ok(r[0] == 78, "real kvsd -n with a malformed SOCKET_ADDRESS: exit 78", show(r))

    # issue 14: a configuration error can end the container with another
    # status (compose's restart: on-failure cannot exclude 78)
    r = run(real, {"KVSD_CONFIG_ERROR_STATUS": "0"})
    ok(r[0] == 0 and r[2].count("\n") == 1 and "SOCKET_ADDRESS" in r[2],
       "KVSD_CONFIG_ERROR_STATUS=0: a configuration error exits 0 with kvsd's one line", show(r))
    r = run(real, {"KVSD_CONFIG_ERROR_STATUS": "0", "SOCKET_ADDRESS": "127.0.0.201:8090",
                   "VIEW": "127.0.0.201:8090", "KVSD_MEMORY": "5Q"})
    ok(r[0] == 0 and "KVSD_MEMORY" in r[2], "... also for a bad KVSD_MEMORY", show(r))

    # the listen address for the HEALTHCHECK, however it was given
    lf = os.path.join(tmp, "listen")
    r = run(real, {"SOCKET_ADDRESS": "127.0.0.201:8091", "VIEW": "127.0.0.201:8091", "KVSD_LISTEN_FILE": lf}, "-n")
    ok(r[0] == 0 and open(lf).read() == "0.0.0.0:8091\n", "derived KVSD_LISTEN 0.0.0.0:8091 is written for the health check",
       show(r))
    os.unlink(lf)
    r = run(real, {"KVSD_LISTEN_FILE": lf}, "-n", "--address", "127.0.0.201:8092", "--view", "127.0.0.201:8092")
    ok(r[0] == 0 and open(lf).read() == "127.0.0.201:8092\n", "--address given as an argument: its address is written",
       show(r))
    os.unlink(lf)

    # the Dockerfile's HEALTHCHECK command, run by sh with a fake curl
    text = open(os.path.join(srcdir, "Dockerfile")).read().replace("\\\n", " ")
    cmd = [l for l in text.splitlines() if l.startswith("HEALTHCHECK")][0].split(" CMD ", 1)[1]
    fakecurl = os.path.join(tmp, "curlbin")
    os.makedirs(fakecurl)
    with open(os.path.join(fakecurl, "curl"), "w") as f:
        f.write('#!/bin/sh\nfor a; do last=$a; done\necho "$last"\n')
    os.chmod(os.path.join(fakecurl, "curl"), 0o755)

    def health_url(env, listen=None):
        if listen is not None:
            with open(lf, "w") as f:
                f.write(listen + "\n")
        elif os.path.exists(lf):
            os.unlink(lf)
        e = {"PATH": fakecurl + ":/usr/bin:/bin", "KVSD_LISTEN_FILE": lf}
        e.update(env)
        return subprocess.run(["/bin/sh", "-c", cmd], env=e, capture_output=True, text=True).stdout.strip()

    for env, listen, want in (({}, "10.10.0.2:9000", "http://10.10.0.2:9000/health"),
                              ({"SOCKET_ADDRESS": "10.10.0.2:8090"}, "0.0.0.0:8093", "http://127.0.0.1:8093/health"),
                              ({"SOCKET_ADDRESS": "10.10.0.2:8094"}, None, "http://127.0.0.1:8094/health")):
        got = health_url(env, listen)
        ok(got == want, "HEALTHCHECK with %s, listen file %s: curls %s" % (env, listen, want), "got %r" % got)

    # compose.yaml and kvsd(8) agree on the network: created by hand, external
    try:
        import yaml
        compose = yaml.safe_load(open(os.path.join(srcdir, "compose.yaml")))
        net = compose["networks"]["asg3net"]
        ok(net.get("external") is True and net.get("name") == "asg3net",
           "compose.yaml declares asg3net external (kvsd(8) has it created by docker network create)", repr(net))
        ok(all(s.get("restart") == "on-failure" and s["environment"].get("KVSD_CONFIG_ERROR_STATUS") == "0"
               for s in compose["services"].values()),
           "every compose replica: restart on-failure, a configuration error exits 0")
    except ImportError:
        ok(False, "python3-yaml is needed to read compose.yaml")
    man = open(os.path.join(srcdir, "man", "kvsd.8")).read()
    ok("docker network create --subnet=10.10.0.0/16 asg3net" in man, "kvsd(8) has the network created by hand")

    # the systemd unit: a configuration error must reach RestartPreventExitStatus
    unit = open(os.path.join(srcdir, "systemd", "kvsd@.service.in")).read()
    lines = [l.strip() for l in unit.splitlines() if l.strip() and not l.startswith("#")]
    ok("RestartPreventExitStatus=78" in lines and not any(l.startswith("ExecStartPre=") for l in lines),
       "kvsd@.service: 78 comes from the main process (no ExecStartPre check)")
    ok(any(l.startswith("LimitNOFILE=") for l in lines), "kvsd@.service sets LimitNOFILE")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

done()
