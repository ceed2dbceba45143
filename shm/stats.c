/*
 * stats.c - per-process counters summed on read (see stats.h).
 */
#include <string.h>

#include "stats.h"

const char *const stat_route_names[ROUTE_N] = {
    "kvs_get", "kvs_put", "kvs_delete", "view", "internal", "ops", "other"
};
const int stat_status_codes[ST_N] = { 200, 201, 400, 401, 404, 405, 413, 503, 507, 0 };
const double stat_latency_bounds[STATS_LAT_BUCKETS] = { 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                        0.0025,   0.005,   0.01,   0.025,   0.1,    0 };

size_t stats_size(void)
{
    return sizeof(struct stats_sh);
}

void stats_init(struct stats_sh *stats)
{
    memset(stats, 0, sizeof(*stats));
}

static int status_index(int status)
{
    int i;
    for (i = 0; i < ST_OTHER; ++i)
        if (stat_status_codes[i] == status)
            return i;
    return ST_OTHER;
}

void stats_request(struct stats_sh *stats, int slot, int route, int status, uint64_t latency_us)
{
    struct proc_stats *p = &stats->proc[slot];
    int b;

    stats_add(&p->requests[route][status_index(status)], 1);
    for (b = 0; b < STATS_LAT_BUCKETS - 1; ++b)
        if ((double)latency_us <= stat_latency_bounds[b] * 1e6)
            break;
    stats_add(&p->latency[route][b], 1);
    stats_add(&p->latency_sum_us[route], latency_us);
}

void stats_sum(const struct stats_sh *stats, struct proc_stats *out)
{
    const uint64_t *src;
    uint64_t *dst = (uint64_t *)out;
    size_t i, j, n = sizeof(*out) / sizeof(uint64_t);

    memset(out, 0, sizeof(*out));
    for (i = 0; i < SHM_MAX_PROCS; ++i) {
        src = (const uint64_t *)&stats->proc[i];
        for (j = 0; j < n; ++j)
            dst[j] += __atomic_load_n(&src[j], __ATOMIC_RELAXED);
    }
}
