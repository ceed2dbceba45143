/*
 * shm.c - creates the one shared mapping every kvsd process works on and
 * lays out its regions.
 *
 * The master calls shm_create() before it forks anything; children
 * inherit the mapping at the same address, so the region pointers in the
 * header (and every pointer stored inside the regions) are valid in all
 * of them.  The layout comes from a single table, regions[] below
 * (PostgreSQL's ipci.c pattern): each row names a region, its size and
 * its init function; shm_overhead() and shm_create() both walk it, so the
 * size estimate and the layout cannot disagree.  Every region starts on
 * its own cache line, so one process's writes to a region never bounce
 * another region's line.  The arena takes whatever is left at the end.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "lock.h"
#include "rcu.h"
#include "rlog.h"
#include "shm.h"
#include "stats.h"
#include "table.h"
#include "view.h"

#define SHM_MIN_MEMORY (1u << 20)
#define SHM_LINE 64
/* The table starts with room for this many keys before its first
 * rebuild; each rebuild doubles it. */
#define SHM_TABLE_SLOTS 1024
/* The arena must hold at least the initial slot array plus this much. */
#define SHM_MIN_ARENA (64u << 10)

static size_t line_up(size_t n)
{
    return (n + SHM_LINE - 1) & ~(size_t)(SHM_LINE - 1);
}

static size_t rlog_bytes(const struct shm_params *params)
{
    return params->rlog_size != 0 ? params->rlog_size : params->memory / 8;
}

static size_t header_size(const struct shm_params *params)
{
    return sizeof(shm_t);
}
static size_t lock_region(const struct shm_params *params)
{
    return lock_size();
}
static size_t rcu_region(const struct shm_params *params)
{
    return rcu_size();
}
static size_t clock_region(const struct shm_params *params)
{
    return clock_size();
}
static size_t view_region(const struct shm_params *params)
{
    return view_size();
}
static size_t table_region(const struct shm_params *params)
{
    return table_size();
}
static size_t stats_region(const struct shm_params *params)
{
    return stats_size();
}
static size_t rlog_region(const struct shm_params *params)
{
    return rlog_size(rlog_bytes(params));
}

static int header_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    shm->magic = SHM_MAGIC;
    shm->version = SHM_LAYOUT_VERSION;
    shm->master_pid = getpid();
    shm->wake_fd = -1;
    return 0;
}

static int lock_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    lock_init(shm->lock = mem);
    return 0;
}

static int rcu_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    rcu_init(shm->rcu = mem);
    return 0;
}

static int clock_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    clock_init(shm->clock = mem);
    return 0;
}

static int view_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    view_init(shm->view = mem);
    return 0;
}

/* Runs in the second phase: its slot array comes from the arena. */
static int table_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    return table_init(shm->table = mem, shm->arena, SHM_TABLE_SLOTS);
}

static int stats_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    stats_init(shm->stats = mem);
    return 0;
}

static int rlog_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    size_t ring = rlog_bytes(params) & ~(size_t)7;

    /* rlog_size() is the struct followed by the ring. */
    rlog_init(shm->rlog = mem, (char *)mem + len - ring, ring);
    return 0;
}

/* The arena is the small struct plus everything after the last region. */
static size_t arena_region(const struct shm_params *params)
{
    return sizeof(struct arena_sh);
}

static int arena_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    char *rest = (char *)mem + line_up(sizeof(struct arena_sh));

    arena_init(shm->arena = mem, rest, (size_t)((char *)shm + shm->size - rest));
    return 0;
}

struct region {
    const char *name;
    size_t (*size)(const struct shm_params *params);
    int (*init)(shm_t *shm, void *mem, size_t len, const struct shm_params *params);
    int phase; /* 0: needs nothing; 1: allocates from the arena */
};

/* In mapping order; the arena must stay last (it takes the rest). */
static const struct region regions[] = {
    { "header", header_size, header_init, 0 },       { "lock", lock_region, lock_region_init, 0 },
    { "rcu", rcu_region, rcu_region_init, 0 },       { "clock", clock_region, clock_region_init, 0 },
    { "view", view_region, view_region_init, 0 },    { "table", table_region, table_region_init, 1 },
    { "stats", stats_region, stats_region_init, 0 }, { "rlog", rlog_region, rlog_region_init, 0 },
    { "arena", arena_region, arena_region_init, 0 },
};

#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

size_t shm_overhead(const struct shm_params *params)
{
    size_t i, off = 0;

    for (i = 0; i < NREGIONS; ++i)
        off += line_up(regions[i].size(params));
    return off;
}

shm_t *shm_create(const struct shm_params *params)
{
    size_t off[NREGIONS], len[NREGIONS], i, total = 0;
    shm_t *shm;
    void *map;
    int phase, saved;

    if (params->memory < SHM_MIN_MEMORY || rlog_bytes(params) > params->memory) {
        errno = EINVAL;
        return NULL;
    }
    for (i = 0; i < NREGIONS; ++i) {
        off[i] = total;
        len[i] = regions[i].size(params);
        total += line_up(len[i]);
    }
    if (total > params->memory || params->memory - total < SHM_MIN_ARENA + SHM_TABLE_SLOTS * sizeof(void *)) {
        errno = ENOMEM;
        return NULL;
    }
    map = mmap(NULL, params->memory, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    /* The mapping is zero-filled; only non-zero state is written. */
    shm = map;
    shm->size = params->memory;
    for (phase = 0; phase <= 1; ++phase)
        for (i = 0; i < NREGIONS; ++i)
            if (regions[i].phase == phase && regions[i].init(shm, (char *)map + off[i], len[i], params) != 0)
                goto error;
    return shm;

error:
    saved = errno;
    munmap(map, params->memory);
    errno = saved;
    return NULL;
}

void shm_destroy(shm_t *shm)
{
    if (shm != NULL)
        munmap(shm, shm->size);
}

uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int check_fail(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return -1;
}
