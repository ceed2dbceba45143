# kvsd container image.  Works unchanged with the course's command line:
#   docker network create --subnet=10.10.0.0/16 asg3net
#   docker build -t kvsd .
#   docker run --net=asg3net --ip=10.10.0.2 -e SOCKET_ADDRESS=10.10.0.2:8090 \
#       -e VIEW=10.10.0.2:8090,10.10.0.3:8090,10.10.0.4:8090 kvsd
# The entrypoint makes kvsd listen on 0.0.0.0:<port of SOCKET_ADDRESS>;
# peers reach it at SOCKET_ADDRESS.  See kvsd(8) and compose.yaml.

# --- build: autotools, the same steps CI runs without Docker ---
FROM debian:12 AS build
COPY docker/build-steps.sh /usr/local/bin/kvsd-build-steps
COPY . /src
RUN kvsd-build-steps /src /out /build

# --- run: slim image, non-root ---
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libh2o-evloop0.13 libssl3 libjansson4 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 8090 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kvsd \
 && install -d -o kvsd -g kvsd -m 0750 /var/lib/kvsd
COPY --from=build /out/ /
USER kvsd:kvsd
EXPOSE 8090
STOPSIGNAL SIGTERM
# /health answers 200 while the process serves.  The entrypoint writes the
# address kvsd listens on (flags, environment and its own KVSD_LISTEN
# default applied) to /tmp/kvsd.listen; without that file, the same
# derivation from the environment.  0.0.0.0 is reached at 127.0.0.1.
HEALTHCHECK --interval=5s --timeout=2s --start-period=5s --retries=3 \
    CMD a=$(cat "${KVSD_LISTEN_FILE:-/tmp/kvsd.listen}" 2>/dev/null) || a=; \
        [ -n "$a" ] || a="${KVSD_LISTEN:-0.0.0.0:${SOCKET_ADDRESS##*:}}"; \
        h="${a%:*}"; [ "$h" = 0.0.0.0 ] && h=127.0.0.1; \
        curl -fsS --max-time 2 -o /dev/null "http://$h:${a##*:}/health" || exit 1
ENTRYPOINT ["/usr/bin/kvsd-entrypoint"]
CMD []
