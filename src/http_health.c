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
#include "repl.h"
#include "rlog.h"
#include "stats.h"
#include "store.h"
#include "table.h"
#include "view.h"

/* The /metrics body, in the request's pool; it grows (a copy into a
 * larger block) rather than ever cutting a line short. */
struct out {
    char *p;
    size_t n, cap;
    h2o_mem_pool_t *pool;
};

/* [tail, head) read tail first: head only grows, so it is never behind. */
static uint64_t rlog_bytes(const struct rlog_sh *rlog)
{
    uint64_t tail = rlog_tail(rlog), head = rlog_head(rlog);

    return head > tail ? head - tail : 0;
}

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= o->cap - o->n) {
        size_t cap = o->cap * 2 > o->n + (size_t)n + 1 ? o->cap * 2 : o->n + (size_t)n + 1;
        char *p = h2o_mem_alloc_pool(o->pool, cap);
        memcpy(p, o->p, o->n);
        o->p = p;
        o->cap = cap;
        va_start(ap, fmt);
        n = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
    }
    o->n += (size_t)n;
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
    uint64_t cumulative;

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
    head(o, "kvsd_request_duration_seconds", "histogram", "Time from request to response, by route.");
    for (r = 0; r < ROUTE_N; ++r) {
        const char *route = stat_route_names[r];
        for (cumulative = 0, b = 0; b < STATS_LAT_BUCKETS; ++b)
            cumulative += sum->latency[r][b];
        if (cumulative == 0)
            continue; /* a route never asked has no series */
        for (cumulative = 0, b = 0; b < STATS_LAT_BUCKETS; ++b) {
            cumulative += sum->latency[r][b];
            if (b == STATS_LAT_BUCKETS - 1)
                put(o,
                    "kvsd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                    route,
                    cumulative);
            else
                put(o,
                    "kvsd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                    route,
                    stat_latency_bounds[b],
                    cumulative);
        }
        put(o,
            "kvsd_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
            route,
            (double)sum->latency_sum_us[r] / 1e6);
        put(o, "kvsd_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n", route, cumulative);
    }
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

/* A row that left the view (in_view 0) keeps its slot for the replicator,
 * but its series leave /metrics with it. */
static int listed(const struct view_member *m)
{
    return m->used && m->in_view;
}

static void causal_wait(struct out *o, const struct proc_stats *sum)
{
    SCALAR(o,
           "kvsd_causal_parked_total",
           "counter",
           "kvs requests parked to wait for their causal dependencies (--causal-wait).",
           "%" PRIu64,
           sum->causal_parked);
    head(o, "kvsd_causal_park_ended_total", "counter", "Parked kvs requests by how their wait ended.");
    put(o, "kvsd_causal_park_ended_total{how=\"served\"} %" PRIu64 "\n", sum->causal_served);
    put(o, "kvsd_causal_park_ended_total{how=\"timeout\"} %" PRIu64 "\n", sum->causal_timed_out);
    put(o, "kvsd_causal_park_ended_total{how=\"disconnect\"} %" PRIu64 "\n", sum->causal_dropped);
    SCALAR(o,
           "kvsd_causal_park_overflow_total",
           "counter",
           "kvs requests answered 503 at once because their worker had the most requests parked it may.",
           "%" PRIu64,
           sum->causal_overflow);
}

static void peers(struct out *o, shm_t *shm, const struct proc_stats *sum)
{
    uint32_t i, n = __atomic_load_n(&shm->view->n, __ATOMIC_ACQUIRE);

    head(o, "kvsd_peer_state", "gauge", "Peer state (1 for the current state).");
    for (i = 0; i < n && i < VIEW_MAX; ++i) {
        const struct view_member *m = &shm->view->m[i];
        if (listed(m))
            put(o,
                "kvsd_peer_state{peer=\"%s\",state=\"%s\"} 1\n",
                m->addr,
                peer_state_name((int)__atomic_load_n(&shm->repl->peer[i].state, __ATOMIC_RELAXED)));
    }
    head(o, "kvsd_peer_queued_bytes", "gauge", "Replication log bytes not yet acknowledged by the peer.");
    for (i = 0; i < n && i < VIEW_MAX; ++i)
        if (listed(&shm->view->m[i]) && shm->repl->peer[i].state != PEER_SELF)
            put(
              o, "kvsd_peer_queued_bytes{peer=\"%s\"} %" PRIu64 "\n", shm->view->m[i].addr, sum->peer_queued_bytes[i]);
    head(o, "kvsd_peer_lag_seconds", "gauge", "Age of the oldest write the peer has not acknowledged.");
    for (i = 0; i < n && i < VIEW_MAX; ++i)
        if (listed(&shm->view->m[i]) && shm->repl->peer[i].state != PEER_SELF)
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

/* --data-dir: the persister's state (shm->persist, written by it alone). */
static void persist_metrics(struct out *o, shm_t *shm)
{
    static const char *const le[8] = { "0.0001", "0.001", "0.005", "0.01", "0.05", "0.1", "1", "+Inf" };
    const struct persist_stats *ps = &shm->persist;
    uint64_t cum = 0;
    int i;

    SCALAR(o, "kvsd_persist_failed", "gauge", "1 while the data directory cannot be written (writes get 507).", "%u",
           __atomic_load_n(&shm->persist_failed, __ATOMIC_ACQUIRE));
    SCALAR(o, "kvsd_persist_errors_total", "counter", "Failed writes or fsyncs to the data directory.", "%" PRIu64,
           ps->errors);
    SCALAR(o, "kvsd_persist_log_bytes", "gauge", "Size of the current log file.", "%" PRIu64, ps->log_bytes);
    SCALAR(o, "kvsd_persist_snapshot_bytes", "gauge", "Size of the last snapshot.", "%" PRIu64, ps->snapshot_bytes);
    SCALAR(o, "kvsd_persist_snapshot_time_seconds", "gauge", "When the last snapshot was finished (Unix time).",
           "%.3f", (double)ps->snapshot_wall_ms / 1000.0);
    SCALAR(o, "kvsd_persist_snapshots_total", "counter", "Snapshots written.", "%" PRIu64, ps->snapshots);
    SCALAR(o, "kvsd_persist_written_bytes_total", "counter", "Bytes written to the data directory.", "%" PRIu64,
           ps->bytes_written);
    SCALAR(o, "kvsd_persist_lag_bytes", "gauge", "Replication log bytes not yet written to disk.", "%" PRIu64,
           rlog_head(shm->rlog) - __atomic_load_n(&shm->persist_written, __ATOMIC_ACQUIRE));
    head(o, "kvsd_persist_fsync_seconds", "histogram", "fsync latency of the data directory's files.");
    for (i = 0; i < 8; ++i) {
        cum += ps->fsync_us[i];
        put(o, "kvsd_persist_fsync_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", le[i], cum);
    }
    put(o, "kvsd_persist_fsync_seconds_sum %.6f\n", (double)ps->fsync_us_sum / 1e6);
    put(o, "kvsd_persist_fsync_seconds_count %" PRIu64 "\n", cum);
}

static int metrics(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    struct out o = { NULL, 0, 16384 + VIEW_MAX * 400, &req->pool };
    struct proc_stats sums, *sum = &sums; /* cache-line aligned type: not in pool memory */

    o.p = h2o_mem_alloc_pool(&req->pool, o.cap);
    stats_sum(shm->stats, sum);
    head(&o, "kvsd_build_info", "gauge", "Always 1; the version of kvsd serving.");
    put(&o, "kvsd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    SCALAR(&o,
           "process_start_time_seconds",
           "gauge",
           "Start time of the replica (its master process), Unix seconds.",
           "%.3f",
           env->cfg->start_time);
    SCALAR(
      &o, "kvsd_ready", "gauge", "1 once joined and caught up.", "%u", __atomic_load_n(&shm->repl->ready, __ATOMIC_ACQUIRE));
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
           "kvsd_rlog_bytes",
           "gauge",
           "Replication log bytes held for replicas that lack them (a peer that falls further behind than "
           "kvsd_rlog_size_bytes needs a snapshot).",
           "%" PRIu64,
           rlog_bytes(shm->rlog));
    SCALAR(&o, "kvsd_rlog_size_bytes", "gauge", "The replication log ring's size.", "%" PRIu64, shm->rlog->size);
    SCALAR(&o,
           "kvsd_rlog_moved_bytes_total",
           "counter",
           "Log bytes still in flight that early wraps copied to the ring's start.",
           "%" PRIu64,
           __atomic_load_n(&shm->rlog->moved, __ATOMIC_RELAXED));
    if (shm->persist_enabled)
        persist_metrics(&o, shm);
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
    head(&o, "kvsd_joins_total", "counter", "Joins caught up from peers' log tails (log) or a state transfer (snapshot).");
    put(&o, "kvsd_joins_total{how=\"log\"} %" PRIu64 "\n", sum->joins_log);
    put(&o, "kvsd_joins_total{how=\"snapshot\"} %" PRIu64 "\n", sum->joins_snapshot);
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
           "kvsd_snapshot_lock_seconds",
           "gauge",
           "How long the last /internal/snapshot held the writer lock (the cut; it encodes without it).",
           "%.6f",
           (double)store_snapshot_held_us(shm) / 1e6);
    SCALAR(&o,
           "kvsd_store_check_lock_seconds",
           "gauge",
           "How long the last /internal/check held the writer lock (checks are spaced 9 times that apart).",
           "%.6f",
           (double)store_check_held_us(shm) / 1e6);
    SCALAR(&o,
           "kvsd_batches_from_outside_total",
           "counter",
           "Replication batches from a peer that is not in our view (a split view).",
           "%" PRIu64,
           sum->batches_from_outside);
    SCALAR(&o,
           "kvsd_incarnations_folded_total",
           "counter",
           "Retired incarnations folded away.",
           "%" PRIu64,
           sum->incarnations_folded);
    SCALAR(&o,
           "kvsd_tombstones_reaped_total",
           "counter",
           "Tombstones dropped once every replica we know had applied them.",
           "%" PRIu64,
           sum->tombstones_reaped);
    SCALAR(&o,
           "kvsd_incarnations_freed_total",
           "counter",
           "Incarnation rows freed for reuse.",
           "%" PRIu64,
           sum->incarnations_freed);
    SCALAR(&o,
           "kvsd_writes_lost_total",
           "counter",
           "Writes clients saw that were lost: their replica stopped or crashed before any other got them.",
           "%" PRIu64,
           writes_lost(shm) + sum->writes_lost_freed);
    requests(&o, sum);
    causal_wait(&o, sum);
    peers(&o, shm, sum);
    http_send_type(req, 200, "text/plain; version=0.0.4", o.p, o.n);
    return 0;
}

static int is_ops_path(const char *path, size_t len)
{
    return (len == 7 && memcmp(path, "/health", 7) == 0) || (len == 6 && memcmp(path, "/ready", 6) == 0) ||
           (len == 8 && memcmp(path, "/metrics", 8) == 0);
}

int http_health(struct http_env *env, h2o_req_t *req, const char *path, size_t len)
{
    /* read-only routes: like /view and /kvs/, another method is a 405 */
    if (is_ops_path(path, len) && !METHOD(req, "GET") && !METHOD(req, "HEAD")) {
        http_send_lit(req, 405, "{\"error\": \"Method not allowed\"}");
        return 0;
    }
    if (len == 7 && memcmp(path, "/health", 7) == 0) {
        http_send_lit(req, 200, "{\"status\": \"ok\"}");
        return 0;
    }
    if (len == 6 && memcmp(path, "/ready", 6) == 0) {
        if (__atomic_load_n(&env->shm->repl->ready, __ATOMIC_ACQUIRE) &&
            !__atomic_load_n(&env->shm->persist_failed, __ATOMIC_ACQUIRE))
            http_send_lit(req, 200, "{\"status\": \"ready\"}");
        else
            http_send_lit(req, 503, "{\"status\": \"not ready\"}");
        return 0;
    }
    if (len == 8 && memcmp(path, "/metrics", 8) == 0)
        return metrics(env, req);
    return -1;
}
