/*
 * view.c - the view's membership rows (see view.h for the contract).
 *
 * Membership changes run under the store's writer lock inside a seqlock
 * write section, so the HTTP workers answering GET /view and the
 * replicator can read the member list without a lock: they copy, and
 * retry if the sequence number was odd or moved while they copied.
 * Rows never move and are never freed, so row indexes stay valid for the
 * replicator's per-peer state (repl.h).
 */
#include <string.h>

#include <urcu/arch.h>

#include "view.h"

/* A reader racing a continuous stream of writers gives up after this
 * many tries and returns what it copied last: a slightly stale view beats
 * a request that never finishes.  A reader that finds the sequence odd
 * waits at most this many spins for the writer, then copies once: a
 * writer that makes no progress (stopped, or killed inside its section
 * until the master recovers the lock) gives it nothing to retry for. */
#define VIEW_READ_TRIES 1000

size_t view_size(void)
{
    return sizeof(struct view_sh);
}

void view_init(struct view_sh *view)
{
    memset(view, 0, sizeof(*view));
}

static void write_begin_sh(struct view_sh *view)
{
    __atomic_store_n(&view->seq, view->seq + 1, __ATOMIC_RELAXED);
    cmm_smp_wmb();
}

static void write_end_sh(struct view_sh *view)
{
    __atomic_store_n(&view->version, view->version + 1, __ATOMIC_RELAXED);
    cmm_smp_wmb();
    __atomic_store_n(&view->seq, view->seq + 1, __ATOMIC_RELAXED);
}

static uint64_t read_begin(const struct view_sh *view)
{
    uint64_t seq;
    int spins = 0;

    while (((seq = __atomic_load_n(&view->seq, __ATOMIC_RELAXED)) & 1) && ++spins < VIEW_READ_TRIES)
        caa_cpu_relax();
    if (seq & 1)
        __atomic_add_fetch((uint64_t *)&view->stalls, 1, __ATOMIC_RELAXED);
    cmm_smp_rmb();
    return seq;
}

/* Retry only if a writer moved the sequence since read_begin(): an odd
 * sequence that stayed put is a writer that is not running, and another
 * copy would see exactly the same rows. */
static int read_retry(const struct view_sh *view, uint64_t seq)
{
    cmm_smp_rmb();
    return __atomic_load_n(&view->seq, __ATOMIC_RELAXED) != seq;
}

int view_recover_sh(struct view_sh *view)
{
    if ((view->seq & 1) == 0)
        return 0;
    /* whatever the dead writer changed is whole (see view.h); bump the
     * version too, in case it died before telling the replicator */
    write_end_sh(view);
    return 1;
}

/* Row of addr among the first n rows, or -1; in_view rows only if asked.
 * Lock-free callers wrap it in the seqlock. */
static int find_row(const struct view_sh *view, const char *addr, int in_view_only)
{
    uint32_t i, n = __atomic_load_n(&view->n, __ATOMIC_ACQUIRE);

    if (n > VIEW_MAX)
        n = VIEW_MAX;
    for (i = 0; i < n; ++i) {
        const struct view_member *m = &view->m[i];
        if (m->used && (!in_view_only || m->in_view) && strncmp(m->addr, addr, ADDR_MAX) == 0)
            return (int)i;
    }
    return -1;
}

int view_row_sh(const struct view_sh *view, const char *addr, int *fresh)
{
    int row;

    *fresh = 0;
    if (strlen(addr) >= ADDR_MAX)
        return -1;
    if ((row = find_row(view, addr, 0)) >= 0)
        return row;
    if (view->n >= VIEW_MAX)
        return -1;
    *fresh = 1;
    return (int)view->n;
}

int view_add_sh(struct view_sh *view, const char *addr)
{
    struct view_member *m;
    int fresh, row = view_row_sh(view, addr, &fresh);

    if (row < 0)
        return -1;
    m = &view->m[row];
    if (!fresh) {
        if (m->in_view)
            return 0;
        /* a returning peer keeps its row, so the replicator's state for
         * it (its acked clock) is still there */
        write_begin_sh(view);
        m->in_view = 1;
        write_end_sh(view);
        return 1;
    }
    write_begin_sh(view);
    memset(m, 0, sizeof(*m));
    strcpy(m->addr, addr);
    m->used = 1;
    m->in_view = 1;
    /* the row is visible from here: release, so a reader that copies
     * while the section is stuck open still sees it whole */
    __atomic_store_n(&view->n, view->n + 1, __ATOMIC_RELEASE);
    write_end_sh(view);
    return 1;
}

int view_remove_sh(struct view_sh *view, const char *addr)
{
    int row = find_row(view, addr, 1);

    if (row < 0)
        return 0;
    write_begin_sh(view);
    view->m[row].in_view = 0;
    write_end_sh(view);
    return 1;
}

size_t view_list(const struct view_sh *view, char (*out)[ADDR_MAX], size_t max)
{
    size_t k = 0;
    uint32_t i, n;
    uint64_t seq;
    int tries = 0;

    do {
        seq = read_begin(view);
        n = __atomic_load_n(&view->n, __ATOMIC_ACQUIRE);
        if (n > VIEW_MAX)
            n = VIEW_MAX;
        for (i = 0, k = 0; i < n && k < max; ++i) {
            const struct view_member *m = &view->m[i];
            if (!m->used || !m->in_view)
                continue;
            memcpy(out[k], m->addr, ADDR_MAX);
            /* A torn copy is retried, but must never lack its NUL. */
            out[k][ADDR_MAX - 1] = '\0';
            ++k;
        }
    } while (read_retry(view, seq) && ++tries < VIEW_READ_TRIES);
    return k;
}

static int find_lockfree(const struct view_sh *view, const char *addr, int in_view_only)
{
    uint64_t seq;
    int row, tries = 0;

    do {
        seq = read_begin(view);
        row = find_row(view, addr, in_view_only);
    } while (read_retry(view, seq) && ++tries < VIEW_READ_TRIES);
    return row;
}

int view_find(const struct view_sh *view, const char *addr)
{
    return find_lockfree(view, addr, 0);
}

int view_contains(const struct view_sh *view, const char *addr)
{
    return find_lockfree(view, addr, 1) >= 0;
}
