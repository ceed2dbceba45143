# Sourced by scripts/cluster and scripts/test: install what kvsd needs to
# build and test, from Debian packages only.  Idempotent: installs nothing
# when everything is present.
KVSD_PACKAGES="build-essential autoconf automake libtool pkg-config \
libh2o-evloop-dev libssl-dev libjansson-dev liburcu-dev \
python3 iptables iproute2 procps curl mandoc"

install_deps() {
    local missing="" p
    for p in $KVSD_PACKAGES $*; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
}

# build DIR [configure flags...]: configure (once) and build kvsd in DIR
build_kvsd() {
    local dir="$1"; shift
    local top; top="$(pwd)"
    [ -x "$top/configure" ] || autoreconf -fi "$top" >/dev/null
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ] || [ "$top/configure" -nt "$dir/Makefile" ]; then
        (cd "$dir" && "$top/configure" -q "$@") || return 1
    fi
    make -C "$dir" -s -j"$(nproc)"
}
