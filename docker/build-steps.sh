#!/bin/sh
# build-steps.sh - the container image's build stage as a plain script, so
# that it runs the same way in `docker build` and on a machine without a
# Docker engine (CI):
#
#   docker/build-steps.sh SRCDIR DESTDIR [BUILDDIR]
#
# installs the Debian 12 build dependencies, generates the build system if
# the tree has none (autoreconf), configures out of tree with
# --prefix=/usr --sysconfdir=/etc, builds, and installs into DESTDIR, plus
# the container entrypoint as DESTDIR/usr/bin/kvsd-entrypoint.  Needs root
# for apt-get (it installs nothing that is already there).  libsystemd-dev
# is not needed: without it kvsd speaks the sd_notify protocol itself (set
# KVSD_EXTRA_PACKAGES=libsystemd-dev to link libsystemd anyway).
set -eu

src=$(cd "${1:?usage: build-steps.sh SRCDIR DESTDIR [BUILDDIR]}" && pwd)
dest=${2:?usage: build-steps.sh SRCDIR DESTDIR [BUILDDIR]}
build=${3:-$src/build-image}

packages="build-essential autoconf automake libtool pkg-config \
libh2o-evloop-dev libssl-dev libjansson-dev liburcu-dev python3 ${KVSD_EXTRA_PACKAGES:-}"
missing=
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "build-steps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x "$src/configure" ] || (cd "$src" && autoreconf -fi)
mkdir -p "$build"
cd "$build"
"$src/configure" -q --prefix=/usr --sysconfdir=/etc --localstatedir=/var
make -j"$(nproc)"
make install DESTDIR="$dest"
install -D -m 0755 "$src/docker/entrypoint.sh" "$dest/usr/bin/kvsd-entrypoint"
echo "build-steps: installed into $dest" >&2
