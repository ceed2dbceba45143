/*
 * stats.h - counters for /metrics, in shared memory.
 *
 * Concurrency contract: each process slot's proc_stats is written only by
 * the process that owns the slot (plain relaxed atomic increments, no
 * lock, no shared cache line with another writer); /metrics sums all
 * slots.  Counters of a slot survive its process being restarted, so
 * they stay monotonic.  The master alone writes the globals.
 */
#ifndef KVSD_STATS_H
#define KVSD_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "shm.h"
#include "view.h"

enum stat_route {
    ROUTE_KVS_GET,
    ROUTE_KVS_PUT,
    ROUTE_KVS_DELETE,
    ROUTE_VIEW,
    ROUTE_INTERNAL,
    ROUTE_OPS,
    ROUTE_OTHER,
    ROUTE_N
};
enum stat_status { ST_200, ST_201, ST_400, ST_401, ST_404, ST_405, ST_413, ST_503, ST_507, ST_OTHER, ST_N };

#define STATS_LAT_BUCKETS 12

extern const char *const stat_route_names[ROUTE_N];
extern const int stat_status_codes[ST_N];                   /* 0 for ST_OTHER */
extern const double stat_latency_bounds[STATS_LAT_BUCKETS]; /* seconds; last is +Inf */

struct proc_stats {
    uint64_t requests[ROUTE_N][ST_N];
    uint64_t latency[ROUTE_N][STATS_LAT_BUCKETS]; /* non-cumulative bucket counts, by route */
    uint64_t latency_sum_us[ROUTE_N];
    /* replicator */
    uint64_t evictions;
    uint64_t readmissions;
    uint64_t batches;
    uint64_t records_shipped;
    uint64_t bytes_shipped;
    uint64_t snapshots_installed;
    uint64_t incarnations_folded;
    uint64_t incarnations_freed;
    uint64_t tombstones_reaped;
    uint64_t writes_lost_freed; /* lost writes counted on rows since freed */
    uint64_t batches_from_outside;  /* replication batches from a sender not in our view */
    uint64_t ship_after_answer; /* batches sent as soon as the previous one was answered */
    uint64_t peer_queued_bytes[VIEW_MAX];
    uint64_t peer_lag_ms[VIEW_MAX];
    /* workers: kvs requests parked by --causal-wait, and how they ended */
    uint64_t causal_parked;
    uint64_t causal_served;    /* dependencies applied in time: answered normally */
    uint64_t causal_timed_out; /* still unmet when the wait ran out: 503 */
    uint64_t causal_dropped;   /* the client went away while parked */
    uint64_t causal_overflow;  /* not parked, the worker's bound was reached: 503 */
    /* replicator: how a join caught up (--data-dir: from peers' logs) */
    uint64_t joins_log;
    uint64_t joins_snapshot;
    /* persister (its own slot, kept across its restarts) */
    uint64_t persist_lives;    /* persisters started in this life of the replica */
    uint64_t persist_installs; /* shm->installs the data directory's files cover */
} __attribute__((aligned(64)));

struct stats_sh {
    struct proc_stats proc[SHM_MAX_PROCS];
    uint64_t child_restarts; /* master */
};

size_t stats_size(void);
void stats_init(struct stats_sh *stats);

static inline void stats_add(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}
static inline void stats_set(uint64_t *counter, uint64_t v)
{
    __atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

/* Count one request of a worker (slot), with its latency. */
void stats_request(struct stats_sh *stats, int slot, int route, int status, uint64_t latency_us);

/* Sum every slot into out. */
void stats_sum(const struct stats_sh *stats, struct proc_stats *out);

#endif
