#!/usr/bin/env bash
# bench/get.sh - kvsd GET of 1 KB values vs. Debian's stock h2o serving a
# 1 KB static file (same worker/thread count, same wrk load, same run).
# Folded into the suite: this runs bench/run's "get" section (GET vs h2o,
# concurrency sweep, PUT vs GET, mixed) on 127.0.0.80-99.  See bench/run.
exec "$(dirname "$0")/run" --only get "$@"
