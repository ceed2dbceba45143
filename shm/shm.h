/*
 * shm.h - the shared mapping every kvsd process works on.
 *
 * The master creates one anonymous MAP_SHARED mapping before it forks, lays
 * out every region from the table in shm.c (PostgreSQL's ipci.c pattern:
 * each module exports x_size() and x_init()), and never touches store
 * contents afterwards.  Children inherit the mapping at the same address, so
 * raw pointers inside it are valid in every process.  Nothing here knows
 * about HTTP, JSON or sockets.
 */
#ifndef KVSD_SHM_H
#define KVSD_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC 0x6b767364u /* "kvsd" */
#define SHM_LAYOUT_VERSION 4  /* 2: guard pages and poisoned region tails; 3: repl region; 4: rlog acked_pos and moves */
#define SHM_REGIONS_MAX 16

/* Reader slots: one per process that may read the store (workers,
 * replicator, master, tools).  A slot index is assigned by the master when
 * it forks the child and never changes while the child lives. */
#define SHM_MAX_PROCS 128

struct lock_sh;
struct rcu_sh;
struct arena_sh;
struct table_sh;
struct clock_sh;
struct view_sh;
struct repl_sh;
struct rlog_sh;
struct stats_sh;

/* Sizing knobs, fixed at creation time. */
struct shm_params {
    size_t memory;    /* total bytes of the mapping (--memory) */
    size_t rlog_size; /* bytes of the replication log ring; 0: memory / 8 */
};

/*
 * The header at offset 0.  Written once by shm_create() before any fork;
 * read-only afterwards except the fields documented otherwise.
 */
typedef struct shm {
    uint32_t magic;
    uint32_t version;
    size_t size; /* bytes mapped: --memory plus guard pages and page rounding */
    pid_t master_pid;
    uint64_t generation; /* bumped by the master on every child (re)start */

    /* Set by the master before fork, read-only afterwards. */
    int wake_fd; /* eventfd: writers poke the replicator (repl.h says when) */

    /* Durability (--data-dir, src/persist.c).  persist_enabled is set by
     * the master before fork; installs is bumped under the writer lock by
     * store_install_sh(); everything else is written by the persister
     * only (relaxed/release stores) and read by anyone. */
    uint32_t persist_enabled;
    uint32_t persist_failed;  /* the last write or fsync to the data dir failed */
    uint64_t installs;        /* state transfers installed, ever */
    uint64_t persist_written; /* rlog position: records before it are in the log file */
    uint64_t persist_synced;  /* ... and on disk */
    struct persist_stats {
        uint64_t snapshot_wall_ms; /* last snapshot finished (Unix ms) */
        uint64_t snapshot_bytes;
        uint64_t log_bytes;
        uint64_t bytes_written;
        uint64_t fsyncs;
        uint64_t fsync_us_sum;
        uint64_t fsync_us[8]; /* histogram: <=100us, 1ms, 5ms, 10ms, 50ms, 100ms, 1s, more */
        uint64_t snapshots;
        uint64_t errors;
    } persist;

    struct lock_sh *lock;
    struct rcu_sh *rcu;
    struct arena_sh *arena;
    struct table_sh *table;
    struct clock_sh *clock;
    struct view_sh *view;
    struct repl_sh *repl; /* the replicator's flags and per-peer state */
    struct rlog_sh *rlog;
    struct stats_sh *stats;

    /* The bytes between each region's end and its guard page, filled
     * with a poison pattern by shm_create(); read-only afterwards. */
    uint32_t npoison;
    struct {
        size_t off, len;
        const char *region; /* static string: same address in every process */
    } poison[SHM_REGIONS_MAX];
} shm_t;

/* Milliseconds of CLOCK_MONOTONIC: the one clock every module and process
 * uses for timeouts, ages and delays. */
uint64_t now_ms(void);

/* For the x_check() functions: store reason in *why (if why is not NULL)
 * and return -1. */
int check_fail(const char **why, const char *reason);

/* Map and lay out a new store: every region followed by a PROT_NONE
 * guard page (see shm.c).  Returns NULL with errno set on failure. */
shm_t *shm_create(const struct shm_params *params);
void shm_destroy(shm_t *shm);

/* Bytes of params->memory that are not the arena's to allocate: the fixed
 * regions and the arena's own struct.  (The mapping is larger by the
 * guard pages and page rounding; shm->size says by how much.) */
size_t shm_overhead(const struct shm_params *params);

/* Is this a kvsd store this binary can use, intact?  Checks the magic,
 * the layout version, that the regions lie inside the mapping, and that
 * no region's poisoned tail was written.  Returns 0, or -1 with a reason
 * (a static string) in *why.  Lock-free, read-only. */
int shm_verify(const shm_t *shm, const char **why);

#endif
