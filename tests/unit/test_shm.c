/*
 * test_shm.c - unit tests for the shared mapping's creation and layout
 * (shm/shm.c): header fields, every region inside the mapping, cache-line
 * aligned, in table order and not overlapping, the arena taking the rest,
 * the rlog ring sized from the parameters, the mapping shared with a
 * forked child, the errors for memory that is too small, the guard pages
 * (a write just past a region faults, in a forked child), the poisoned
 * region tails and the header's magic and version (shm_verify()).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "lock.h"
#include "rcu.h"
#include "repl.h"
#include "rlog.h"
#include "stats.h"
#include "shm.h"
#include "table.h"
#include "tap.h"
#include "view.h"

static int inside(const shm_t *shm, const void *p, size_t len)
{
    const char *b = (const char *)shm, *q = p;

    return q >= b && q + len <= b + shm->size;
}

static int aligned(const void *p)
{
    return ((uintptr_t)p & 63) == 0;
}

static void test_layout(void)
{
    struct shm_params params = { 8u << 20, 0 };
    shm_t *shm = shm_create(&params);
    const char *order[8];
    size_t len[8], i;
    int ordered = 1;
    pid_t pid;
    int status;

    ok(shm != NULL, "8 MiB store created");
    ok(shm->magic == SHM_MAGIC && shm->version == SHM_LAYOUT_VERSION, "header magic and layout version");
    ok(shm->size > params.memory && shm->size <= params.memory + 20 * (size_t)sysconf(_SC_PAGESIZE) &&
         shm->master_pid == getpid() && shm->generation == 0,
       "header size (--memory plus at most 20 pages of guards and rounding: %zu), master pid, generation",
       shm->size - params.memory);
    ok(shm->wake_fd == -1 && shm->repl->ready == 0 && shm->repl->sleeping == 0 && shm->repl->snapshot_req == 0,
       "no wake fd yet, not ready, not sleeping, no snapshot asked for");

    order[0] = (char *)shm->lock, len[0] = lock_size();
    order[1] = (char *)shm->rcu, len[1] = rcu_size();
    order[2] = (char *)shm->clock, len[2] = clock_size();
    order[3] = (char *)shm->view, len[3] = view_size();
    order[4] = (char *)shm->repl, len[4] = repl_size();
    order[5] = (char *)shm->table, len[5] = table_size();
    order[6] = (char *)shm->rlog, len[6] = rlog_size(params.memory / 8);
    order[7] = (char *)shm->arena, len[7] = sizeof(struct arena_sh);
    ok(order[0] >= (char *)(shm + 1), "regions start after the header");
    for (i = 0; i < 8; ++i) {
        ordered &= inside(shm, order[i], len[i]) && aligned(order[i]);
        if (i > 0)
            ordered &= order[i] >= order[i - 1] + len[i - 1];
    }
    ok(ordered, "lock, rcu, clock, view, repl, table, rlog, arena: in order, inside, aligned, disjoint");
    ok(inside(shm, shm->rlog->ring, shm->rlog->size) && shm->rlog->ring >= order[6] + sizeof(struct rlog_sh),
       "rlog ring inside the rlog region");
    is_int(shm->rlog->size, params.memory / 8, "rlog ring defaults to memory / 8");
    is_int(shm->arena->end - shm->arena->base, params.memory - shm_overhead(&params),
           "the arena holds what --memory leaves after the fixed regions (guards take none of it)");
    ok(shm->arena->end == (char *)shm + shm->size - sysconf(_SC_PAGESIZE),
       "arena runs to the last page of the mapping, its guard");
    ok(shm_overhead(&params) > params.memory / 8 && shm_overhead(&params) < params.memory / 4,
       "overhead is the fixed regions plus the ring");
    ok(shm->table->slots != NULL && shm->table->slots->mask + 1 == 1024 && shm->arena->nalloc == 1,
       "table has its initial 1024-slot array from the arena");
    ok(shm->rcu->epoch == 1 && shm->clock->self == -1 && shm->clock->ninc == 0 && shm->view->n == 0,
       "rcu, clock, view initialised");
    ok(table_check(shm->table, NULL) == 0 && arena_check(shm->arena, NULL) == 0, "table and arena consistent");

    /* The mapping is shared: what a child writes, the parent sees. */
    if ((pid = fork()) == 0) {
        lock_acquire_sh(shm->lock);
        clock_advance_sh(shm->clock, 0, 42);
        lock_release_sh(shm->lock);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    is_int(clock_applied(shm->clock, 0), 42, "a child's write is visible to the parent");
    shm_destroy(shm);

    params.rlog_size = 100000;
    shm = shm_create(&params);
    ok(shm != NULL && shm->rlog->size == 100000, "explicit rlog size honoured");
    ok(shm_overhead(&params) < (1u << 20), "and the overhead shrinks with it");
    shm_destroy(shm);
}

static void test_errors(void)
{
    struct shm_params params = { 512u << 10, 0 };
    shm_t *shm;

    errno = 0;
    ok(shm_create(&params) == NULL && errno == EINVAL, "less than 1 MiB: EINVAL");
    params.memory = 4u << 20;
    params.rlog_size = 8u << 20;
    errno = 0;
    ok(shm_create(&params) == NULL && errno == EINVAL, "rlog larger than the memory: EINVAL");
    params.rlog_size = (4u << 20) - (32u << 10);
    errno = 0;
    ok(shm_create(&params) == NULL && errno == ENOMEM, "no room left for the arena: ENOMEM");
    params.memory = 1u << 20;
    params.rlog_size = 0;
    shm = shm_create(&params);
    ok(shm != NULL && shm->arena->end > shm->arena->base, "1 MiB with the default ring works");
    shm_destroy(shm);
}

/* 1 if writing one byte at p kills a forked child with SIGSEGV. */
static int write_faults(void *p)
{
    pid_t pid;
    int status;

    fflush(stdout);
    if ((pid = fork()) == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL; /* a sanitizer's handler would turn the fault into an abort */
        sigaction(SIGSEGV, &sa, NULL);
        *(volatile char *)p = 1;
        _exit(0);
    }
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

/* Where a region's guard page is: the page boundary at or after its end. */
static char *guard_after(const void *region, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    return (char *)(((uintptr_t)region + len + page - 1) & ~(page - 1));
}

static void test_guards(void)
{
    struct shm_params params = { 8u << 20, 0 };
    shm_t *shm = shm_create(&params);
    const char *why = NULL;
    char *past;
    size_t clock_gap;

    int r = shm == NULL ? -1 : shm_verify(shm, &why);

    ok(r == 0, "a fresh store verifies (%s)", why ? why : "no complaint");
    if (shm == NULL)
        return;
    /* regions whose size is a whole number of cache lines end at their guard */
    ok(write_faults((char *)shm->stats + stats_size()), "a write just past the stats region faults (SIGSEGV)");
    ok(write_faults((char *)shm->rlog + rlog_size(params.memory / 8)), "a write just past the rlog ring faults");
    ok(write_faults((char *)shm->rcu + rcu_size()), "a write just past the rcu region faults");
    ok(write_faults((char *)shm->repl + repl_size()), "a write just past the repl region faults");
    ok(write_faults(shm->arena->end), "a write just past the arena (the end of the mapping) faults");
    ok(write_faults(guard_after(shm->clock, clock_size())) && write_faults(guard_after(shm->view, view_size())) &&
         write_faults(guard_after(shm->repl, repl_size())) && write_faults(guard_after(shm, sizeof(*shm))),
       "the page after the clock, view, repl and header regions is a guard");
    clock_gap = (size_t)(guard_after(shm->clock, clock_size()) - ((char *)shm->clock + clock_size()));
    ok(clock_gap < 64, "the clock region ends within a cache line of its guard (%zu bytes)", clock_gap);
    ok(!write_faults((char *)shm->clock + clock_size() - 1) && !write_faults(shm->arena->end - 1),
       "the last byte of a region is writable");

    /* a write into the poisoned tail short of the guard is reported (the
     * clock's or the view's: a size that is no whole number of lines) */
    {
        const char *name = clock_gap > 0 ? "clock" : "view";
        past = clock_gap > 0 ? (char *)shm->clock + clock_size() : (char *)shm->view + view_size();
        if (past != guard_after(past, 0)) {
            char was = *past;
            *past = 0;
            int r = shm_verify(shm, &why);
            ok(r == -1 && strstr(why, name) != NULL, "a write past the %s region: %s", name, why);
            *past = was;
        } else {
            ok(0, "the clock and view regions both end at their guard: no poisoned tail left to test");
        }
    }
    past = (char *)shm + sizeof(*shm);
    *past ^= 1;
    r = shm_verify(shm, &why);
    ok(r == -1 && strstr(why, "header") != NULL, "a write past the header: %s", why);
    *past ^= 1;
    ok(shm_verify(shm, &why) == 0, "restored: verifies again");

    /* the header's magic and version */
    shm->magic ^= 1;
    r = shm_verify(shm, &why);
    ok(r == -1 && strstr(why, "magic") != NULL, "a wrong magic is refused: %s", why);
    shm->magic ^= 1;
    shm->version = SHM_LAYOUT_VERSION + 1;
    r = shm_verify(shm, &why);
    ok(r == -1 && strstr(why, "version") != NULL, "another layout version is refused: %s", why);
    shm->version = SHM_LAYOUT_VERSION;
    {
        struct clock_sh *saved = shm->clock;
        shm->clock = (struct clock_sh *)((char *)shm + shm->size + 4096);
        r = shm_verify(shm, &why);
        ok(r == -1 && strstr(why, "outside") != NULL, "a region pointer outside the mapping is refused: %s", why);
        shm->clock = saved;
    }
    ok(shm_verify(shm, &why) == 0, "and the store verifies once they are restored");
    shm_destroy(shm);
}

int main(void)
{
    plan(37);
    test_layout();
    test_errors();
    test_guards();
    return done_testing();
}
