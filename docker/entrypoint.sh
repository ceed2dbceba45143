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
#
# It first runs `kvsd --check` with the same arguments and environment:
#   - a configuration error (78) ends the container with the status in
#     KVSD_CONFIG_ERROR_STATUS (default 78).  compose.yaml sets it to 0:
#     docker's `restart: on-failure` cannot exclude one exit code, and
#     restarting a bad configuration for ever helps nobody.  The one-line
#     message stays in `docker logs`.
#   - otherwise the address kvsd will listen on (flags, environment and the
#     derivation above all applied) goes to KVSD_LISTEN_FILE (default
#     /tmp/kvsd.listen), where the image's HEALTHCHECK finds its port.
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

status=0
checked=$(kvsd --check "$@") || status=$?
if [ "$status" -eq 78 ]; then
    exit "${KVSD_CONFIG_ERROR_STATUS:-78}"
fi
# "kvsd: configuration OK: ADDR, listen IP:PORT, ..." (not after --help/-V)
listen=$(printf '%s\n' "$checked" | sed -n 's/^kvsd: configuration OK: .*, listen \([0-9.]*:[0-9]*\),.*/\1/p')
if [ -n "$listen" ]; then
    printf '%s\n' "$listen" >"${KVSD_LISTEN_FILE:-/tmp/kvsd.listen}" 2>/dev/null || true
fi
exec kvsd "$@"
