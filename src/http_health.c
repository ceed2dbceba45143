/*
 * http_health.c - /health, /ready and /metrics for operators.
 *
 * /health answers 200 while the process serves; /ready only once the
 * replica has joined and installed its snapshot; /metrics exposes the
 * store's gauges in Prometheus text format.  All lock-free.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "http.h"
#include "lock.h"
#include "rcu.h"
#include "rlog.h"
#include "table.h"
#include "view.h"

static int metrics(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    size_t cap = 8192 + VIEW_MAX * 160, n = 0;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    uint32_t i;

#define METRIC(name, type, help, fmt, ...)                                                                             \
    n += (size_t)snprintf(body + n, cap - n, "# HELP " name " " help "\n# TYPE " name " " type "\n" name fmt "\n",       \
                          __VA_ARGS__)
    METRIC("kvsd_keys", "gauge", "Keys holding a value.", " %" PRIu64, shm->table->nlive);
    METRIC("kvsd_tombstones", "gauge", "Deleted keys kept as tombstones.", " %" PRIu64, shm->table->ntomb);
    METRIC("kvsd_shm_used_bytes", "gauge", "Arena bytes in use.", " %" PRIu64, shm->arena->used);
    METRIC("kvsd_shm_free_bytes", "gauge", "Arena bytes still allocatable.", " %" PRIu64,
           arena_free_bytes(shm->arena));
    METRIC("kvsd_rcu_pending", "gauge", "Retired objects waiting for a grace period.", " %" PRIu64, shm->rcu->pending);
    METRIC("kvsd_rlog_records_total", "counter", "Records appended to the replication log.", " %" PRIu64,
           shm->rlog->records);
    METRIC("kvsd_lock_recoveries_total", "counter", "Writer-lock owner deaths recovered.", " %" PRIu64,
           shm->lock->recoveries);
    METRIC("kvsd_ready", "gauge", "1 once joined and caught up.", " %u", shm->ready);
    n += (size_t)snprintf(body + n, cap - n, "# HELP kvsd_peer_state Peer state (1 for the current state).\n"
                                             "# TYPE kvsd_peer_state gauge\n");
    for (i = 0; i < shm->view->n && i < VIEW_MAX; ++i) {
        const struct view_member *m = &shm->view->m[i];
        if (!m->used || !m->in_view)
            continue;
        n += (size_t)snprintf(body + n, cap - n, "kvsd_peer_state{peer=\"%s\",state=\"%s\"} 1\n", m->addr,
                              peer_state_name((int)m->state));
    }
#undef METRIC
    http_send_type(req, 200, "text/plain; version=0.0.4", body, n);
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
