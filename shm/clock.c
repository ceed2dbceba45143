/*
 * clock.c - this replica's vector clock and the table of replica
 * incarnations its components refer to (see clock.h for the contract).
 *
 * Writers (under the store's writer lock) append incarnation rows and
 * raise applied[] components; workers answering clients and checking
 * causal metadata read both without a lock.  Every shared field a reader
 * may load is written with a single atomic store, and a row is complete
 * before ninc is raised past it with release semantics, so a reader that
 * loads ninc with acquire sees only whole rows.
 */
#include <errno.h>
#include <string.h>

#include "clock.h"

size_t clock_size(void)
{
    return sizeof(struct clock_sh);
}

void clock_init(struct clock_sh *clock)
{
    memset(clock, 0, sizeof(*clock));
    clock->self = -1;
}

static uint32_t ninc_of(const struct clock_sh *clock)
{
    return __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);
}

int clock_find(const struct clock_sh *clock, const char *addr, uint64_t stamp)
{
    uint32_t i, n = ninc_of(clock);

    for (i = 0; i < n; ++i)
        if (!(clock_flags(clock, i) & INC_FREE) && clock->inc[i].stamp == stamp &&
            strncmp(clock->inc[i].addr, addr, ADDR_MAX) == 0)
            return (int)i;
    return -1;
}

int clock_floor(const struct clock_sh *clock, const char *addr)
{
    uint32_t i, n = ninc_of(clock);
    int best = -1;

    for (i = 0; i < n; ++i) {
        if ((clock_flags(clock, i) & (INC_FOLDED | INC_FREE)) != INC_FOLDED ||
            strncmp(clock->inc[i].addr, addr, ADDR_MAX) != 0)
            continue;
        if (best < 0 || clock->inc[i].stamp > clock->inc[best].stamp)
            best = (int)i;
    }
    return best;
}

static void retire_sh(struct incarnation *inc, uint64_t now_ms)
{
    inc->retired_at_ms = now_ms;
    __atomic_store_n(&inc->flags, inc->flags | INC_RETIRED, __ATOMIC_RELEASE);
}

/* A row to write a new incarnation into: a FREE one past its grace
 * period, else the next unused one.  Returns the id, or -1 (full). */
static int new_row(struct clock_sh *clock, uint64_t reuse_before)
{
    uint32_t i;

    for (i = 0; i < clock->ninc; ++i)
        if ((clock->inc[i].flags & INC_FREE) && clock->inc[i].free_epoch < reuse_before)
            return (int)i;
    return clock->ninc < CLOCK_MAX ? (int)clock->ninc : -1;
}

int clock_intern2_sh(struct clock_sh *clock,
                     const char *addr,
                     uint64_t stamp,
                     uint64_t now_ms,
                     uint64_t reuse_before,
                     int folded)
{
    struct incarnation *inc;
    uint32_t i, n = clock->ninc, flags = INC_FREE;
    int id, floor;

    if ((id = clock_find(clock, addr, stamp)) >= 0 && !(clock->inc[id].flags & INC_STALE))
        return id;
    if (strlen(addr) >= ADDR_MAX) {
        errno = EINVAL;
        return -1;
    }
    if ((floor = clock_floor(clock, addr)) >= 0 && stamp <= clock->inc[floor].stamp)
        return floor; /* a life folded away here, or one nobody kept */
    if ((id = new_row(clock, reuse_before)) < 0) {
        errno = ENOSPC;
        return -1;
    }
    /* Write the row while it is FREE (readers skip it), publish last. */
    inc = &clock->inc[id];
    __atomic_store_n(&inc->flags, INC_FREE, __ATOMIC_RELEASE);
    memset(inc->addr, 0, sizeof(inc->addr));
    strcpy(inc->addr, addr);
    inc->stamp = stamp;
    inc->final_seq = 0;
    inc->retired_at_ms = 0;
    inc->lost_upto = 0;
    inc->born_ms = now_ms;
    inc->fold_pos = 0;
    inc->free_epoch = 0;
    __atomic_store_n(&clock->applied[id], 0, __ATOMIC_RELAXED);
    flags = 0;
    /* Only one incarnation of an address is alive: the newest stamp.  A
     * stamp older than one we know (learned late) is born retired. */
    for (i = 0; i < n; ++i) {
        struct incarnation *o = &clock->inc[i];
        if ((int)i == id || (o->flags & INC_FREE) || strncmp(o->addr, addr, ADDR_MAX) != 0)
            continue;
        if (o->stamp < stamp && !(o->flags & INC_RETIRED))
            retire_sh(o, now_ms);
        else if (o->stamp > stamp && !(flags & INC_RETIRED)) {
            flags |= INC_RETIRED;
            inc->retired_at_ms = now_ms;
        }
    }
    if (folded) {
        flags |= INC_RETIRED | INC_FINAL | INC_FOLDED;
        inc->retired_at_ms = now_ms;
    }
    if ((uint32_t)id == n)
        __atomic_store_n(&clock->ninc, n + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&inc->flags, flags, __ATOMIC_RELEASE);
    if (folded)
        clock_fold_sh(clock, (uint32_t)id, 0);
    return id;
}

void clock_fold_sh(struct clock_sh *clock, uint32_t id, uint64_t pos)
{
    struct incarnation *inc = &clock->inc[id];
    uint32_t i;

    inc->fold_pos = pos;
    __atomic_store_n(&inc->flags, inc->flags | INC_RETIRED | INC_FINAL | INC_FOLDED, __ATOMIC_RELEASE);
    /* one floor per address: the newest folded life */
    for (i = 0; i < clock->ninc; ++i) {
        struct incarnation *o = &clock->inc[i];
        if (i == id || (o->flags & (INC_FOLDED | INC_STALE | INC_FREE)) != INC_FOLDED ||
            strncmp(o->addr, inc->addr, ADDR_MAX) != 0)
            continue;
        if (o->stamp < inc->stamp) {
            __atomic_store_n(&o->flags, o->flags | INC_STALE, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(&inc->flags, inc->flags | INC_STALE, __ATOMIC_RELEASE);
            break;
        }
    }
}

void clock_free_sh(struct clock_sh *clock, uint32_t id, uint64_t epoch)
{
    struct incarnation *inc = &clock->inc[id];

    inc->free_epoch = epoch;
    __atomic_store_n(&inc->flags, INC_FREE, __ATOMIC_RELEASE);
    __atomic_store_n(&clock->applied[id], 0, __ATOMIC_RELAXED);
}

uint32_t clock_count(const struct clock_sh *clock, uint32_t *folded)
{
    uint32_t i, n = ninc_of(clock), used = 0, f = 0;

    for (i = 0; i < n; ++i) {
        uint32_t flags = clock_flags(clock, i);
        if (flags & INC_FREE)
            continue;
        ++used;
        if (flags & INC_FOLDED)
            ++f;
    }
    if (folded != NULL)
        *folded = f;
    return used;
}

void clock_settle_sh(struct clock_sh *clock, uint32_t id, uint64_t final_seq)
{
    struct incarnation *inc;

    if (id >= clock->ninc)
        return;
    inc = &clock->inc[id];
    if ((inc->flags & (INC_RETIRED | INC_FOLDED | INC_FREE)) != INC_RETIRED)
        return; /* a live (maybe partitioned) replica is never settled */
    /* final_seq before the flag: readers test the flag with acquire. */
    __atomic_store_n(&inc->final_seq, final_seq, __ATOMIC_RELAXED);
    __atomic_store_n(&inc->flags, inc->flags | INC_FINAL, __ATOMIC_RELEASE);
}

int clock_covers(const struct clock_sh *clock, const struct vc_pair *m, size_t n)
{
    uint32_t ninc = ninc_of(clock);
    size_t i;

    for (i = 0; i < n; ++i) {
        uint32_t id = m[i].id;
        if (id >= ninc)
            return 0;
        if (clock_applied(clock, id) >= m[i].n)
            continue;
        if (clock_retired_met(clock, id))
            continue;
        return 0;
    }
    return 1;
}

uint32_t clock_snapshot(const struct clock_sh *clock, uint64_t *out)
{
    uint32_t i, n = ninc_of(clock);

    for (i = 0; i < n; ++i)
        out[i] = (clock_flags(clock, i) & (INC_FOLDED | INC_FREE)) ? 0 : clock_applied(clock, i);
    return n;
}

void clock_advance_sh(struct clock_sh *clock, uint32_t id, uint64_t n)
{
    if (id < CLOCK_MAX && n > clock->applied[id])
        __atomic_store_n(&clock->applied[id], n, __ATOMIC_RELEASE);
}

uint64_t clock_lamport_observe_sh(struct clock_sh *clock, uint64_t seen)
{
    if (seen > clock->lamport)
        __atomic_store_n(&clock->lamport, seen, __ATOMIC_RELEASE);
    return clock->lamport;
}
