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
        if (clock->inc[i].stamp == stamp && strncmp(clock->inc[i].addr, addr, ADDR_MAX) == 0)
            return (int)i;
    return -1;
}

static void retire_sh(struct incarnation *inc, uint64_t now_ms)
{
    inc->retired_at_ms = now_ms;
    __atomic_store_n(&inc->flags, inc->flags | INC_RETIRED, __ATOMIC_RELEASE);
}

int clock_intern_sh(struct clock_sh *clock, const char *addr, uint64_t stamp, uint64_t now_ms)
{
    struct incarnation *inc;
    uint32_t i, n = clock->ninc;
    int id;

    if ((id = clock_find(clock, addr, stamp)) >= 0)
        return id;
    if (strlen(addr) >= ADDR_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (n >= CLOCK_MAX) {
        errno = ENOSPC;
        return -1;
    }
    inc = &clock->inc[n];
    memset(inc, 0, sizeof(*inc));
    strcpy(inc->addr, addr);
    inc->stamp = stamp;
    __atomic_store_n(&clock->applied[n], 0, __ATOMIC_RELAXED);
    /* Only one incarnation of an address is alive: the newest stamp.  A
     * stamp older than one we know (learned late) is born retired. */
    for (i = 0; i < n; ++i) {
        struct incarnation *o = &clock->inc[i];
        if (strncmp(o->addr, addr, ADDR_MAX) != 0)
            continue;
        if (o->stamp < stamp && !(o->flags & INC_RETIRED))
            retire_sh(o, now_ms);
        else if (o->stamp > stamp && !(inc->flags & INC_RETIRED))
            retire_sh(inc, now_ms);
    }
    __atomic_store_n(&clock->ninc, n + 1, __ATOMIC_RELEASE);
    return (int)n;
}

void clock_settle_sh(struct clock_sh *clock, uint32_t id, uint64_t final_seq)
{
    struct incarnation *inc;

    if (id >= clock->ninc)
        return;
    inc = &clock->inc[id];
    if (!(inc->flags & INC_RETIRED))
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
        out[i] = clock_applied(clock, i);
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
