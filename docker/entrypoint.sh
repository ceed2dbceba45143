#!/bin/sh
# entrypoint.sh - the container's entrypoint: run kvsd so that it listens on
# every interface of the container at the port of SOCKET_ADDRESS, while
# peers and clients keep reaching it at SOCKET_ADDRESS (the address the
# course's `docker run --ip=... -e SOCKET_ADDRESS=...` gives it).
#
#   KVSD_LISTEN already set      -> left alone
#   SOCKET_ADDRESS=IP:PORT       -> KVSD_LISTEN=0.0.0.0:PORT
#   SOCKET_ADDRESS missing/bad   -> nothing derived; kvsd itself reports the
#                                   configuration error and exits 78
# Then it execs kvsd (found on PATH) with the container's arguments, so kvsd
# is PID 1's replacement and receives docker's SIGTERM directly.
set -eu

if [ -z "${KVSD_LISTEN:-}" ] && [ -n "${SOCKET_ADDRESS:-}" ]; then
    port=${SOCKET_ADDRESS##*:}
    case "$port" in
    "$SOCKET_ADDRESS" | "" | *[!0-9]*) ;; # no IP:PORT: let kvsd say what is wrong
    *) export KVSD_LISTEN="0.0.0.0:$port" ;;
    esac
fi
exec kvsd "$@"
