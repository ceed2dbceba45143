-- stats.lua: done() hook shared by every bench script (loaded with dofile).
-- Prints one machine-readable line; bench/run parses it.
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "STATS rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%d non2xx=%d errors=%d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, summary.requests, e.status,
        e.connect + e.read + e.write + e.timeout))
end
