/*
 * http_health.c - /health, /ready and /metrics for operators.
 *
 * /health answers 200 while the process serves; /ready only once the
 * replica has joined and installed its snapshot; /metrics exposes the
 * store's gauges in Prometheus text format.  All lock-free.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "http.h"
#include "lock.h"
#include "rcu.h"
#include "rlog.h"
#include "stats.h"
#include "table.h"
#include "view.h"

struct out {
    char *p;
    size_t n, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->n = o->n + (size_t)n < o->cap ? o->n + (size_t)n : o->cap - 1;
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define SCALAR(o, name, type, help, fmt, v)                                                                            \
    do {                                                                                                               \
        head(o, name, type, help);                                                                                     \
        put(o, name " " fmt "\n", v);                                                                                  \
    } while (0)

static void requests(struct out *o, const struct proc_stats *sum)
{
    int r, st, b;
    uint64_t cumulative = 0, total = 0;

    head(o, "kvsd_requests_total", "counter", "Requests answered, by route and status.");
    for (r = 0; r < ROUTE_N; ++r)
        for (st = 0; st < ST_N; ++st)
            if (sum->requests[r][st] != 0) {
                if (stat_status_codes[st] != 0)
                    put(o,
                        "kvsd_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                        stat_route_names[r],
                        stat_status_codes[st],
                        sum->requests[r][st]);
                else
                    put(o,
                        "kvsd_requests_total{route=\"%s\",status=\"other\"} %" PRIu64 "\n",
                        stat_route_names[r],
                        sum->requests[r][st]);
            }
    head(o, "kvsd_request_duration_seconds", "histogram", "Time from request to response.");
    for (b = 0; b < STATS_LAT_BUCKETS; ++b) {
        cumulative += sum->latency[b];
        if (b == STATS_LAT_BUCKETS - 1)
            put(o, "kvsd_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cumulative);
        else
            put(o, "kvsd_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", stat_latency_bounds[b], cumulative);
    }
    total = cumulative;
    put(o, "kvsd_request_duration_seconds_sum %.6f\n", (double)sum->latency_sum_us / 1e6);
    put(o, "kvsd_request_duration_seconds_count %" PRIu64 "\n", total);
    {
        uint64_t unsatisfied = 0;
        for (r = 0; r < ROUTE_N; ++r)
            unsatisfied += sum->requests[r][ST_503];
        SCALAR(o,
               "kvsd_unavailable_total",
               "counter",
               "503 answers (dependencies not applied, or not ready).",
               "%" PRIu64,
               unsatisfied);
    }
}

static void peers(struct out *o, shm_t *shm, const struct proc_stats *sum)
{
    uint32_t i, n = __atomic_load_n(&shm->view->n, __ATOMIC_ACQUIRE);

    head(o, "kvsd_peer_state", "gauge", "Peer state (1 for the current state).");
    for (i = 0; i < n && i < VIEW_MAX; ++i) {
        const struct view_member *m = &shm->view->m[i];
        if (m->used)
            put(o,
                "kvsd_peer_state{peer=\"%s\",state=\"%s\"} 1\n",
                m->addr,
                peer_state_name((int)__atomic_load_n(&m->state, __ATOMIC_RELAXED)));
    }
    head(o, "kvsd_peer_queued_bytes", "gauge", "Replication log bytes not yet acknowledged by the peer.");
    for (i = 0; i < n && i < VIEW_MAX; ++i)
        if (shm->view->m[i].used && shm->view->m[i].state != PEER_SELF)
            put(
              o, "kvsd_peer_queued_bytes{peer=\"%s\"} %" PRIu64 "\n", shm->view->m[i].addr, sum->peer_queued_bytes[i]);
    head(o, "kvsd_peer_lag_seconds", "gauge", "Age of the oldest write the peer has not acknowledged.");
    for (i = 0; i < n && i < VIEW_MAX; ++i)
        if (shm->view->m[i].used && shm->view->m[i].state != PEER_SELF)
            put(
              o, "kvsd_peer_lag_seconds{peer=\"%s\"} %.3f\n", shm->view->m[i].addr, (double)sum->peer_lag_ms[i] / 1000);
}

static uint64_t writes_lost(shm_t *shm)
{
    uint32_t id, ninc = __atomic_load_n(&shm->clock->ninc, __ATOMIC_ACQUIRE);
    uint64_t lost = 0;

    for (id = 0; id < ninc; ++id) {
        const struct incarnation *inc = &shm->clock->inc[id];
        uint64_t upto = __atomic_load_n(&inc->lost_upto, __ATOMIC_RELAXED);
        if (upto > inc->final_seq)
            lost += upto - inc->final_seq;
    }
    return lost;
}

static int metrics(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    struct out o = { NULL, 0, 16384 + VIEW_MAX * 400 };
    struct proc_stats sums, *sum = &sums; /* cache-line aligned type: not in pool memory */

    o.p = h2o_mem_alloc_pool(&req->pool, o.cap);
    stats_sum(shm->stats, sum);
    SCALAR(
      &o, "kvsd_ready", "gauge", "1 once joined and caught up.", "%u", __atomic_load_n(&shm->ready, __ATOMIC_ACQUIRE));
    SCALAR(&o, "kvsd_keys", "gauge", "Keys holding a value.", "%" PRIu64, shm->table->nlive);
    SCALAR(&o, "kvsd_tombstones", "gauge", "Deleted keys kept as tombstones.", "%" PRIu64, shm->table->ntomb);
    SCALAR(&o, "kvsd_shm_used_bytes", "gauge", "Arena bytes in use.", "%" PRIu64, shm->arena->used);
    SCALAR(
      &o, "kvsd_shm_free_bytes", "gauge", "Arena bytes still allocatable.", "%" PRIu64, arena_free_bytes(shm->arena));
    SCALAR(
      &o, "kvsd_rcu_pending", "gauge", "Retired objects waiting for a grace period.", "%" PRIu64, shm->rcu->pending);
    SCALAR(&o,
           "kvsd_rlog_records_total",
           "counter",
           "Records appended to the replication log.",
           "%" PRIu64,
           shm->rlog->records);
    SCALAR(&o,
           "kvsd_lock_recoveries_total",
           "counter",
           "Writer-lock owner deaths recovered.",
           "%" PRIu64,
           shm->lock->recoveries);
    SCALAR(&o,
           "kvsd_child_restarts_total",
           "counter",
           "Workers and replicators restarted by the master.",
           "%" PRIu64,
           shm->stats->child_restarts);
    SCALAR(&o, "kvsd_evictions_total", "counter", "Peers evicted from the view.", "%" PRIu64, sum->evictions);
    SCALAR(&o, "kvsd_readmissions_total", "counter", "Evicted peers re-admitted.", "%" PRIu64, sum->readmissions);
    SCALAR(&o, "kvsd_batches_total", "counter", "Replication batches and heartbeats sent.", "%" PRIu64, sum->batches);
    SCALAR(
      &o, "kvsd_records_shipped_total", "counter", "Log records shipped to peers.", "%" PRIu64, sum->records_shipped);
    SCALAR(
      &o, "kvsd_shipped_bytes_total", "counter", "Bytes of replication batches sent.", "%" PRIu64, sum->bytes_shipped);
    SCALAR(&o,
           "kvsd_ship_after_answer_total",
           "counter",
           "Batches of records sent the moment the batch before them to that peer was answered.",
           "%" PRIu64,
           sum->ship_after_answer);
    SCALAR(&o,
           "kvsd_snapshots_installed_total",
           "counter",
           "State transfers installed.",
           "%" PRIu64,
           sum->snapshots_installed);
    {
        uint32_t folded, used = clock_count(shm->clock, &folded);
        SCALAR(&o,
               "kvsd_incarnations",
               "gauge",
               "Rows of the incarnation table in use (live, retired and folded).",
               "%u",
               used);
        SCALAR(&o,
               "kvsd_incarnations_folded",
               "gauge",
               "Folded incarnations still holding a row (floors and rows not yet freed).",
               "%u",
               folded);
    }
    SCALAR(&o,
           "kvsd_incarnations_folded_total",
           "counter",
           "Retired incarnations folded away.",
           "%" PRIu64,
           sum->incarnations_folded);
    SCALAR(&o,
           "kvsd_incarnations_freed_total",
           "counter",
           "Incarnation rows freed for reuse.",
           "%" PRIu64,
           sum->incarnations_freed);
    SCALAR(&o,
           "kvsd_writes_lost_total",
           "counter",
           "Writes clients saw that crashed with their replica before any other got them.",
           "%" PRIu64,
           writes_lost(shm) + sum->writes_lost_freed);
    requests(&o, sum);
    peers(&o, shm, sum);
    http_send_type(req, 200, "text/plain; version=0.0.4", o.p, o.n);
    return 0;
}

int http_health(struct http_env *env, h2o_req_t *req, const char *path, size_t len)
{
    if (len == 7 && memcmp(path, "/health", 7) == 0) {
        http_send_lit(req, 200, "{\"status\": \"ok\"}");
        return 0;
    }
    if (len == 6 && memcmp(path, "/ready", 6) == 0) {
        if (__atomic_load_n(&env->shm->ready, __ATOMIC_ACQUIRE))
            http_send_lit(req, 200, "{\"status\": \"ready\"}");
        else
            http_send_lit(req, 503, "{\"status\": \"not ready\"}");
        return 0;
    }
    if (len == 8 && memcmp(path, "/metrics", 8) == 0)
        return metrics(env, req);
    return -1;
}
