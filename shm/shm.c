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
 * size estimate and the layout cannot disagree.  The arena takes whatever
 * is left at the end.
 *
 * Guard pages.  The mapping is shared memory ASan cannot watch, so an
 * overflow inside it would silently corrupt a neighbour (issue 12: a
 * record's deps overran the store's intent).  Every region therefore
 * gets pages of its own, placed so that it ends as close to the next page
 * boundary as its cache-line alignment allows, and a PROT_NONE page
 * follows it (the last one ends the mapping): a write past a region's end
 * faults.  The few bytes between a region's end and its guard (less than
 * a cache line; the header's rest of its page) are filled with
 * SHM_POISON, and shm_verify() reports any that changed.  Regions never
 * share a page, so one process's writes to a region never bounce another
 * region's cache line.
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
#include "repl.h"
#include "rlog.h"
#include "shm.h"
#include "stats.h"
#include "table.h"
#include "view.h"

#define SHM_MIN_MEMORY (1u << 20)
#define SHM_LINE 64
#define SHM_POISON 0xa5
/* The table starts with room for this many keys before its first
 * rebuild; each rebuild doubles it. */
#define SHM_TABLE_SLOTS 1024
/* The arena must hold at least the initial slot array plus this much. */
#define SHM_MIN_ARENA (64u << 10)

static size_t line_up(size_t n)
{
    return (n + SHM_LINE - 1) & ~(size_t)(SHM_LINE - 1);
}

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t page_up(size_t n)
{
    return (n + page_size() - 1) & ~(page_size() - 1);
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
static size_t repl_region(const struct shm_params *params)
{
    return repl_size();
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

static int repl_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    repl_init(shm->repl = mem);
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

/* len: what params->memory leaves after the fixed regions. */
static int arena_region_init(shm_t *shm, void *mem, size_t len, const struct shm_params *params)
{
    size_t head = line_up(sizeof(struct arena_sh));

    arena_init(shm->arena = mem, (char *)mem + head, len - head);
    return 0;
}

struct region {
    const char *name;
    size_t (*size)(const struct shm_params *params);
    int (*init)(shm_t *shm, void *mem, size_t len, const struct shm_params *params);
    int phase; /* 0: needs nothing; 1: allocates from the arena */
};

/* In mapping order; the header must stay first (at offset 0) and the
 * arena last (it takes the rest).  A name says which region an overrun
 * of its poisoned tail came from (shm_verify()). */
static const struct region regions[] = {
    { "shared memory: header overrun", header_size, header_init, 0 },
    { "shared memory: lock region overrun", lock_region, lock_region_init, 0 },
    { "shared memory: rcu region overrun", rcu_region, rcu_region_init, 0 },
    { "shared memory: clock region overrun", clock_region, clock_region_init, 0 },
    { "shared memory: view region overrun", view_region, view_region_init, 0 },
    { "shared memory: repl region overrun", repl_region, repl_region_init, 0 },
    { "shared memory: table region overrun", table_region, table_region_init, 1 },
    { "shared memory: stats region overrun", stats_region, stats_region_init, 0 },
    { "shared memory: rlog region overrun", rlog_region, rlog_region_init, 0 },
    { "shared memory: arena overrun", arena_region, arena_region_init, 0 },
};

#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

/* Bytes of params->memory the fixed regions take, as if packed on cache
 * lines: the arena gets the rest, so guard pages and page rounding do not
 * shrink it (they cost address space, not memory: a guard page is never
 * touched). */
static size_t fixed_bytes(const struct shm_params *params)
{
    size_t i, n = 0;

    for (i = 0; i + 1 < NREGIONS; ++i)
        n += line_up(regions[i].size(params));
    return n;
}

/* Where each region goes: off[i] its start, len[i] its bytes, guard[i]
 * the offset of the guard page after it.  The header stays at offset 0;
 * every other region, the arena last, ends within a cache line of its
 * guard.  Returns the bytes to map (the last guard is the last page). */
static size_t layout(const struct shm_params *params, size_t *off, size_t *len, size_t *guard)
{
    size_t i, at = 0, page = page_size();

    for (i = 0; i < NREGIONS; ++i) {
        len[i] = i + 1 < NREGIONS ? regions[i].size(params) : params->memory - fixed_bytes(params);
        off[i] = i == 0 ? 0 : (at + page_up(len[i]) - len[i]) & ~(size_t)(SHM_LINE - 1);
        guard[i] = at + page_up(len[i]);
        at = guard[i] + page;
    }
    return at;
}

size_t shm_overhead(const struct shm_params *params)
{
    return fixed_bytes(params) + line_up(sizeof(struct arena_sh));
}

/* Fill what lies between each region and its guard page with SHM_POISON
 * and remember where, for shm_verify(); then make the guards PROT_NONE. */
static int protect(shm_t *shm, const size_t *off, const size_t *len, const size_t *guard)
{
    size_t i;

    shm->npoison = 0;
    for (i = 0; i < NREGIONS; ++i) {
        size_t end = off[i] + len[i];
        memset((char *)shm + end, SHM_POISON, guard[i] - end);
        shm->poison[i].off = end;
        shm->poison[i].len = guard[i] - end;
        shm->poison[i].region = regions[i].name;
        ++shm->npoison;
    }
    for (i = 0; i < NREGIONS; ++i)
        if (mprotect((char *)shm + guard[i], page_size(), PROT_NONE) != 0)
            return -1;
    return 0;
}

shm_t *shm_create(const struct shm_params *params)
{
    size_t off[NREGIONS], len[NREGIONS], guard[NREGIONS], i, map_len;
    shm_t *shm;
    void *map;
    int phase, saved;

    if (params->memory < SHM_MIN_MEMORY || rlog_bytes(params) > params->memory) {
        errno = EINVAL;
        return NULL;
    }
    if (shm_overhead(params) > params->memory ||
        params->memory - shm_overhead(params) < SHM_MIN_ARENA + SHM_TABLE_SLOTS * sizeof(void *)) {
        errno = ENOMEM;
        return NULL;
    }
    map_len = layout(params, off, len, guard);
    map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    /* The mapping is zero-filled; only non-zero state is written. */
    shm = map;
    shm->size = map_len;
    for (phase = 0; phase <= 1; ++phase)
        for (i = 0; i < NREGIONS; ++i)
            if (regions[i].phase == phase && regions[i].init(shm, (char *)map + off[i], len[i], params) != 0)
                goto error;
    if (protect(shm, off, len, guard) != 0)
        goto error;
    return shm;

error:
    saved = errno;
    munmap(map, map_len);
    errno = saved;
    return NULL;
}

static int inside(const shm_t *shm, const void *p)
{
    return (const char *)p > (const char *)shm && (const char *)p < (const char *)shm + shm->size;
}

int shm_verify(const shm_t *shm, const char **why)
{
    size_t i, j;

    if (shm->magic != SHM_MAGIC) {
        *why = "shared memory: bad magic (not a kvsd store)";
        return -1;
    }
    if (shm->version != SHM_LAYOUT_VERSION) {
        *why = "shared memory: layout version differs from this binary's";
        return -1;
    }
    if (!inside(shm, shm->lock) || !inside(shm, shm->rcu) || !inside(shm, shm->arena) || !inside(shm, shm->table) ||
        !inside(shm, shm->clock) || !inside(shm, shm->view) || !inside(shm, shm->repl) || !inside(shm, shm->rlog) ||
        !inside(shm, shm->stats) || shm->npoison > SHM_REGIONS_MAX) {
        *why = "shared memory: header corrupt (a region outside the mapping)";
        return -1;
    }
    for (i = 0; i < shm->npoison; ++i) {
        const unsigned char *p = (const unsigned char *)shm + shm->poison[i].off;
        for (j = 0; j < shm->poison[i].len; ++j)
            if (p[j] != SHM_POISON) {
                *why = shm->poison[i].region; /* names the region overrun */
                return -1;
            }
    }
    return 0;
}

void shm_destroy(shm_t *shm)
{
    /* the guard pages go with the mapping */
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
