#!/usr/bin/env python3
"""man_help.py -- the manual pages agree with the program.

* the OPTIONS block of man/kvsd.8 is exactly what tools/gen-options prints
  from config_options[] now (run tools/update-man.sh when this fails);
* every long flag in `kvsd --help` is in kvsd(8), and every --flag kvsd(8)
  mentions is one --help lists; the same for every environment variable;
* `kvsctl --help` and kvsctl(1) agree: long and short options, environment
  variables, commands and exit statuses, both ways;
* `mandoc -Tlint` is clean for every page in man/ (mandoc is required: a
  missing mandoc is a failure, not a skip).

Environment: KVSD_BIN (the kvsd binary; gen-options and kvsctl are found
next to it unless KVSD_GEN_OPTIONS / KVSCTL_BIN say otherwise) and
KVSD_SRCDIR (the source tree).  TAP output.
"""
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys

from kvstest import ok, done, failed_count  # noqa: E402 (TAP output)


srcdir = os.environ.get("KVSD_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
kvsd = os.environ.get("KVSD_BIN", "kvsd")
builddir = os.path.dirname(os.path.abspath(kvsd))
gen = os.environ.get("KVSD_GEN_OPTIONS") or os.path.join(builddir, "tools", "gen-options")
kvsctl = os.environ.get("KVSCTL_BIN") or os.path.join(builddir, "kvsctl")
mandir = os.path.join(srcdir, "man")
page_path = os.path.join(mandir, "kvsd.8")

BEGIN = '.\\" BEGIN GENERATED OPTIONS'
END = '.\\" END GENERATED OPTIONS'


def run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def section(text, name):
    """Lines of one .Sh section of an mdoc page."""
    m = re.search(r"^\.Sh %s\n(.*?)(?=^\.Sh |\Z)" % re.escape(name), text, re.S | re.M)
    return m.group(1) if m else ""


def rendered_flags(path):
    """Every --flag a reader sees in the rendered page, leaving out the
    lines of literal displays that run other programs (docker, systemctl)."""
    src, literal = [], False
    for line in open(path).read().split("\n"):
        if line.startswith(".Bd"):
            literal = True
        elif line.startswith(".Ed"):
            literal = False
        elif literal and not re.search(r"(^|\s)kvsd(\s|$)", line):
            continue
        src.append(line)
    p = subprocess.run(["mandoc", "-Tascii"], input="\n".join(src).encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    rc, out = p.returncode, p.stdout.decode()
    out = re.sub(r".\x08", "", out)  # drop overstrike (bold/underline)
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", out)), rc


try:
    page = open(page_path).read()
except OSError as e:
    page = ""
    ok(False, "read man/kvsd.8", e)

# 1. the generated block is current
lines = page.split("\n")
if ok(BEGIN in lines and END in lines and lines.index(BEGIN) < lines.index(END),
      "man/kvsd.8 has the GENERATED OPTIONS markers"):
    block = lines[lines.index(BEGIN) + 1:lines.index(END)]
    rc, out, err = run([gen])
    ok(rc == 0 and out.strip(), "tools/gen-options runs", err)
    want = out.rstrip("\n").split("\n")
    diff = "\n".join(difflib.unified_diff(block, want, "man/kvsd.8", "gen-options", lineterm=""))
    ok(block == want, "OPTIONS block of man/kvsd.8 matches config_options[] (else: tools/update-man.sh)", diff)

# 2. --help and the page agree, both ways
rc, help_text, err = run([kvsd, "--help"])
ok(rc == 0, "kvsd --help exits 0", err)
usage_flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", help_text, re.M))
ok(len(usage_flags) >= 10, "kvsd --help lists options (%d)" % len(usage_flags), help_text)
man_flags = set(re.findall(r"Fl \\-([a-z][a-z0-9-]*)", page))
missing = sorted(usage_flags - man_flags)
ok(not missing, "every long flag of --help is in kvsd(8)", "missing: %s" % missing)
seen, rc = rendered_flags(page_path)
unknown = sorted(seen - usage_flags)
ok(rc == 0 and not unknown, "every --flag kvsd(8) mentions is one --help lists", "unknown: %s" % unknown)

help_env = set(re.findall(r"\(env ([A-Z_]+)\)", help_text))
env_section = section(page, "ENVIRONMENT")
man_env = set(re.findall(r"^\.It Ev ([A-Z_]+)", env_section, re.M))
ok(help_env and not (help_env - man_env), "every environment variable of --help is in ENVIRONMENT",
   "missing: %s" % sorted(help_env - man_env))
extra = sorted(v for v in man_env - help_env if v.startswith("KVSD_"))
ok(not extra, "ENVIRONMENT lists no KVSD_ variable kvsd does not read", "extra: %s" % extra)

# 3. kvsctl --help and kvsctl(1)
if os.path.exists(kvsctl):
    rc, ctl_help, err = run([kvsctl, "--help"])
    ctl_flags = set(re.findall(r"--([a-z][a-z0-9-]*)", ctl_help))
    try:
        ctl_page = open(os.path.join(mandir, "kvsctl.1")).read()
    except OSError:
        ctl_page = ""
    ctl_man = set(re.findall(r"Fl \\-([a-z][a-z0-9-]*)", ctl_page))
    ok(rc == 0 and ctl_flags and not (ctl_flags - ctl_man), "every long option of kvsctl --help is in kvsctl(1)",
       "missing: %s" % sorted(ctl_flags - ctl_man))
    ok(not (ctl_man - ctl_flags), "every long option kvsctl(1) names is in kvsctl --help",
       "extra: %s" % sorted(ctl_man - ctl_flags))
    # short options, environment, commands and exit statuses, both ways
    ctl_short = set(re.findall(r"(?<![-\w])-([a-zA-Z]),", ctl_help))
    opts_sec = re.search(r"^The options are:$(.*?)^\.El$", ctl_page, re.M | re.S)
    man_short = set(re.findall(r"^\.It Fl ([a-zA-Z]) ,", opts_sec.group(1) if opts_sec else "", re.M))
    ok(ctl_short and ctl_short == man_short, "kvsctl --help and kvsctl(1) have the same short options",
       "help %s man %s" % (sorted(ctl_short), sorted(man_short)))
    help_env = set(re.findall(r"\$(KVSCTL_[A-Z_]+)", ctl_help))
    man_env = set(re.findall(r"^\.It Ev (KVSCTL_[A-Z_]+)", ctl_page, re.M))
    ok(help_env and help_env == man_env, "kvsctl --help and kvsctl(1) ENVIRONMENT name the same variables",
       "help %s man %s" % (sorted(help_env), sorted(man_env)))
    help_cmds = set(re.findall(r"^  (get|put|delete|view|status|cluster|session)\b", ctl_help, re.M))
    man_cmds = set(re.findall(r"^\.It Cm (\w+)", ctl_page, re.M))
    ok(help_cmds and help_cmds == man_cmds, "the same commands in kvsctl --help and kvsctl(1)",
       "help %s man %s" % (sorted(help_cmds), sorted(man_cmds)))
    exit_sec = re.search(r"^\.Sh EXIT STATUS$(.*?)^\.Sh ", ctl_page, re.M | re.S)
    man_codes = set(re.findall(r"^\.It (\d+)$", exit_sec.group(1) if exit_sec else "", re.M))
    help_codes = set(re.findall(r"(\d+) [a-z]", ctl_help.split("exit status:", 1)[-1]))
    ok(man_codes and man_codes == help_codes, "the same exit statuses in kvsctl --help and kvsctl(1)",
       "help %s man %s" % (sorted(help_codes), sorted(man_codes)))
    synopsis = re.search(r"^\.Sh SYNOPSIS$(.*?)^\.Sh ", ctl_page, re.M | re.S)
    syn_short = set("".join(re.findall(r"^\.Op Fl ([a-zA-Z]+)", synopsis.group(1) if synopsis else "", re.M)))
    ok(syn_short <= ctl_short, "every short option in the kvsctl(1) SYNOPSIS exists",
       "unknown: %s" % sorted(syn_short - ctl_short))
else:
    ok(False, "kvsctl binary at %s" % kvsctl)

# 4. mandoc -Tlint, for every page
pages = sorted(glob.glob(os.path.join(mandir, "*.[1-9]")))
ok(len(pages) >= 3, "man/ holds the pages (%s)" % ", ".join(os.path.basename(p) for p in pages))
if ok(shutil.which("mandoc") is not None, "mandoc is installed (apt-get install mandoc)"):
    # whether other manuals are installed is the machine's business, not the page's
    noise = re.compile(r"referenced manual not found|outdated mandoc\.db|lacks .* entry, run makewhatis")
    for p in pages:
        rc, out, err = run(["mandoc", "-Tlint", p])
        msgs = [l for l in (out + err).splitlines() if l.strip() and not noise.search(l)]
        ok(not msgs, "mandoc -Tlint %s is clean" % os.path.basename(p), "\n".join(msgs))

done()
