/*
 * clock.h - vector clock and incarnation table.
 *
 * A clock component names one incarnation of a replica: its IP:PORT plus a
 * start stamp chosen at startup, so a replica restarted with empty memory
 * never reuses a sequence number of its previous life.  In shared memory an
 * incarnation is a small integer id, an index into inc[]; on the wire it is
 * "IP:PORT/stamp".
 *
 * Concurrency contract: inc[] rows are appended under the writer lock and
 * published by storing ninc with release semantics; a published row's addr
 * and stamp never change while the row is in use.  Garbage collection
 * (doc/design.md, "Incarnation garbage collection"): a retired, settled
 * incarnation that every replica has applied up to the same count is
 * FOLDED (met everywhere, never named again); the newest folded life of
 * an address is its floor, and an older folded row becomes STALE, then,
 * once nothing refers to it any more, FREE.  A FREE row is rewritten only
 * after an RCU grace period (no reader can still hold its id) and is
 * published again by clearing INC_FREE with release semantics; lock-free
 * readers load flags with acquire first and skip FREE rows.  applied[] components only grow, each updated
 * with a single atomic store under the writer lock; readers load them
 * without a lock (a reader may see a slightly older clock, never a torn
 * component).  lamport is the replica's Lamport clock, same rules.
 */
#ifndef KVSD_CLOCK_H
#define KVSD_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_MAX 256 /* incarnations one store can know */
#define ADDR_MAX 24   /* "255.255.255.255:65535" plus NUL, padded */

#define INC_RETIRED 0x01 /* a newer incarnation of the same address exists */
#define INC_FINAL 0x02   /* retired and final_seq is settled */
#define INC_FOLDED 0x04  /* folded away: applied everywhere, counts as met, never named */
#define INC_STALE 0x08   /* folded, and a newer folded life of its address exists */
#define INC_FREE 0x10    /* an empty row, reusable once no reader can hold its id */

/* A peer's acked count for a life it has folded: it has all of it. */
#define ACKED_FOLDED UINT64_MAX

struct incarnation {
    char addr[ADDR_MAX];
    uint64_t stamp;
    uint32_t flags;         /* INC_* ; updated under the writer lock */
    uint64_t final_seq;     /* valid with INC_FINAL */
    uint64_t retired_at_ms; /* when INC_RETIRED was set */
    uint64_t lost_upto;     /* highest seq past final_seq a client named (atomic max, any process) */
    uint64_t born_ms;       /* when this row was interned here */
    uint64_t fold_pos;      /* rlog head when it was folded: no later record names it */
    uint64_t free_epoch;    /* RCU epoch when the row was freed */
};

struct clock_sh {
    uint32_t ninc; /* published rows */
    int32_t self;  /* our incarnation id, -1 before startup */
    uint64_t lamport;
    uint64_t applied[CLOCK_MAX];
    struct incarnation inc[CLOCK_MAX];
};

/* A sparse clock: what clients send and log records carry. */
struct vc_pair {
    uint32_t id;
    uint64_t n;
};

size_t clock_size(void);
void clock_init(struct clock_sh *clock);

static inline uint32_t clock_flags(const struct clock_sh *clock, uint32_t id)
{
    return __atomic_load_n(&clock->inc[id].flags, __ATOMIC_ACQUIRE);
}
/* Folded (or free): counts as met, is never named in metadata or on the wire. */
static inline int clock_folded(const struct clock_sh *clock, uint32_t id)
{
    return (clock_flags(clock, id) & (INC_FOLDED | INC_FREE)) != 0;
}

/* Lock-free.  The id of (addr, stamp), or -1 if unknown. */
int clock_find(const struct clock_sh *clock, const char *addr, uint64_t stamp);
/* Lock-free.  The floor of addr: the id of its newest folded life (every
 * life of addr with a stamp up to that row's is folded), or -1. */
int clock_floor(const struct clock_sh *clock, const char *addr);
/* Writer lock held.  Find or add (addr, stamp); -1 if the table is full.
 * A stamp at or below the address's floor resolves to the floor row.
 * Adding a newer stamp for a known address marks the older incarnations
 * INC_RETIRED.  A FREE row whose free_epoch < reuse_before is reused
 * before the table grows.  folded: the row comes from a peer that has
 * folded it (a snapshot); if new here, it is born folded. */
int clock_intern2_sh(struct clock_sh *clock,
                     const char *addr,
                     uint64_t stamp,
                     uint64_t now_ms,
                     uint64_t reuse_before,
                     int folded);
static inline int clock_intern_sh(struct clock_sh *clock, const char *addr, uint64_t stamp, uint64_t now_ms)
{
    return clock_intern2_sh(clock, addr, stamp, now_ms, 0, 0);
}
/* Writer lock held.  Fold a settled retired incarnation at log position
 * pos; an older floor of its address becomes STALE (or this row does, if
 * the address has a newer floor). */
void clock_fold_sh(struct clock_sh *clock, uint32_t id, uint64_t pos);
/* Writer lock held.  Free a STALE row (nothing refers to it any more);
 * it may be reused once no reader holds an epoch <= epoch. */
void clock_free_sh(struct clock_sh *clock, uint32_t id, uint64_t epoch);
/* Lock-free.  Rows in use (not FREE), and how many of them are folded. */
uint32_t clock_count(const struct clock_sh *clock, uint32_t *folded);

/* Writer lock held.  Settle a retired incarnation: final_seq is the
 * highest seq of it that any view member holds; sets INC_FINAL (after
 * final_seq, with release).  No effect on an incarnation not retired. */
void clock_settle_sh(struct clock_sh *clock, uint32_t id, uint64_t final_seq);

/* Lock-free.  1 if every component of m is applied here, counting
 * components of settled retired incarnations as applied. */
int clock_covers(const struct clock_sh *clock, const struct vc_pair *m, size_t n);

/* Lock-free.  Copy applied[0..ninc) into out (CLOCK_MAX entries; those
 * past ninc are left as they are: it runs on every GET), with 0 for
 * folded and free rows (never named); returns ninc. */
uint32_t clock_snapshot(const struct clock_sh *clock, uint64_t *out);

static inline uint64_t clock_applied(const struct clock_sh *clock, uint32_t id)
{
    return __atomic_load_n(&clock->applied[id], __ATOMIC_ACQUIRE);
}

/* Lock-free.  A settled retired incarnation's writes past final_seq died
 * with it: once everything up to final_seq is applied here, any larger
 * count of it is met (waiting could block for ever; late arrivals are
 * still applied). */
static inline int clock_retired_met(const struct clock_sh *clock, uint32_t id)
{
    uint32_t flags = clock_flags(clock, id);

    if (flags & (INC_FOLDED | INC_FREE))
        return 1; /* applied everywhere; what survives of it is here */
    if (!(flags & INC_FINAL))
        return 0;
    return clock_applied(clock, id) >= __atomic_load_n(&clock->inc[id].final_seq, __ATOMIC_RELAXED);
}

/* Writer lock held.  applied[id] = max(applied[id], n). */
void clock_advance_sh(struct clock_sh *clock, uint32_t id, uint64_t n);
/* Writer lock held.  lamport = max(lamport, seen); returns it. */
uint64_t clock_lamport_observe_sh(struct clock_sh *clock, uint64_t seen);

#endif
