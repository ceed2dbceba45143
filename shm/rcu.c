/*
 * rcu.c - grace periods across processes, for the store's lock-free
 * readers (see the protocol in rcu.h).
 *
 * The read side is two inline functions in rcu.h.  This file holds the
 * writer side: the retire FIFO, the scan of the reader table, and the
 * master's cleanup of slots that dead children left behind.  Everything
 * that changes the FIFO runs under the store's writer lock; the reader
 * table is read here without any lock.
 *
 * Why the pairing is safe: a writer unlinks an object (release store),
 * issues a full barrier, bumps the epoch, and later scans the slots after
 * another full barrier.  A reader stores its epoch in its slot, issues a
 * full barrier, then loads pointers.  Either the scan sees the reader's
 * slot (which then holds an epoch <= the retire epoch, or one taken after
 * the bump, which only a reader that can no longer reach the object
 * holds), or the reader's loads see the unlink.
 *
 * Crash consistency: each FIFO change has one commit store (head on
 * reclaim, the predecessor's next or head on retire), and an object is
 * freed only after it is off the list, so a writer killed mid-way leaks at
 * most one object and never frees one twice.  The stores after the commit
 * (tail, pending) are derived state: rcu_recover_sh() recomputes them from
 * head, so no torn pair is ever followed.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "rcu.h"

size_t rcu_size(void)
{
    return sizeof(struct rcu_sh);
}

void rcu_init(struct rcu_sh *rcu)
{
    memset(rcu, 0, sizeof(*rcu));
    rcu->epoch = 1; /* 0 means "idle" in a slot */
}

static struct rcu_slot *slot_of(struct rcu_sh *rcu, int slot)
{
    /* A slot index comes from the master's bookkeeping, never from input;
     * a bad one would let a reader go unseen by the writer. */
    if (slot < 0 || slot >= SHM_MAX_PROCS)
        abort();
    return &rcu->slots[slot];
}

void rcu_register_sh(struct rcu_sh *rcu, int slot, pid_t pid)
{
    struct rcu_slot *s = slot_of(rcu, slot);

    uatomic_set(&s->epoch, 0);
    uatomic_set(&s->pid, pid);
    cmm_smp_mb();
}

void rcu_clear_slot_sh(struct rcu_sh *rcu, int slot)
{
    struct rcu_slot *s = slot_of(rcu, slot);

    /* The epoch first: a slot with a pid but no epoch is merely idle. */
    uatomic_set(&s->epoch, 0);
    cmm_smp_mb();
    uatomic_set(&s->pid, 0);
}

void rcu_retire_sh(struct rcu_sh *rcu, struct rcu_node *node)
{
    /* Order the caller's unlink before the epoch bump that readers use
     * to tell "entered after the unlink". */
    cmm_smp_mb();
    node->epoch = uatomic_read(&rcu->epoch);
    node->next = NULL;
    /* head, not tail, decides emptiness: reclaim clears head first, so a
     * stale tail left by a crash there is never followed.  A crash between
     * the link and the tail store is repaired by rcu_recover_sh(). */
    if (rcu->head == NULL)
        uatomic_set(&rcu->head, node);
    else
        uatomic_set(&rcu->tail->next, node);
    rcu->tail = node;
    uatomic_set(&rcu->pending, rcu->pending + 1);
    uatomic_add(&rcu->epoch, 1);
    cmm_smp_mb();
}

uint64_t rcu_advance_sh(struct rcu_sh *rcu)
{
    uint64_t e;

    cmm_smp_mb();
    e = uatomic_read(&rcu->epoch);
    uatomic_add(&rcu->epoch, 1);
    cmm_smp_mb();
    return e;
}

int rcu_recover_sh(struct rcu_sh *rcu)
{
    struct rcu_node *node = rcu->head, *last = NULL;
    uint64_t n = 0;
    int torn;

    /* the list is acyclic and its nodes live: only head and next links
     * were ever the commit stores */
    for (; node != NULL; node = node->next)
        last = node, ++n;
    torn = rcu->tail != last || rcu->pending != n;
    rcu->tail = last;
    uatomic_set(&rcu->pending, n);
    return torn;
}

uint64_t rcu_min_epoch_sh(struct rcu_sh *rcu)
{
    uint64_t min = UINT64_MAX, e;
    int i;

    cmm_smp_mb();
    for (i = 0; i < SHM_MAX_PROCS; ++i)
        if ((e = uatomic_read(&rcu->slots[i].epoch)) != 0 && e < min)
            min = e;
    return min;
}

size_t rcu_reclaim_sh(struct rcu_sh *rcu, struct arena_sh *arena)
{
    struct rcu_node *node;
    uint64_t min;
    size_t n = 0;

    if (rcu->head == NULL)
        return 0;
    min = rcu_min_epoch_sh(rcu);
    while ((node = rcu->head) != NULL && node->epoch < min) {
        /* The commit point: off the list before it is freed. */
        uatomic_set(&rcu->head, node->next);
        if (node->next == NULL)
            rcu->tail = NULL;
        uatomic_set(&rcu->pending, rcu->pending - 1);
        arena_free_sh(arena, node);
        ++n;
    }
    uatomic_set(&rcu->reclaimed, rcu->reclaimed + n);
    return n;
}
