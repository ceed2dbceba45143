/*
 * rcu.h - epoch-based RCU across processes.
 *
 * liburcu's reader registry is per process, so the grace-period machinery
 * lives here, in shared memory, modelled on LMDB's reader lock table.
 *
 * Reader table.  One cache-line slot per process (index assigned by the
 * master at fork): the slot holds the owner's pid and the global epoch it
 * observed when it entered its read-side section, or 0 while idle.  A
 * reader takes no lock: rcu_read_lock_sh() copies the global epoch into its
 * slot and issues a full barrier before it dereferences anything;
 * rcu_read_unlock_sh() issues a barrier and stores 0.
 *
 * Retirement.  A writer (under the store's writer lock) that unlinks an
 * object calls rcu_retire_sh(): the object is stamped with the current
 * global epoch E and appended to a FIFO retire list, and the global epoch
 * becomes E + 1.  An object retired in epoch E may be freed once no slot
 * holds an epoch <= E (every live reader entered after the unlink, and the
 * store-barrier-load pairing on both sides guarantees such a reader cannot
 * see the object).  rcu_reclaim_sh() frees such objects from the head of
 * the list; writers call it on their way out of the critical section.
 *
 * Dead writers.  The FIFO takes two stores to append to (the link, then
 * tail) and two to pop from (head, then tail when it empties), so a writer
 * killed between them leaves tail stale: NULL, or a node already freed, or
 * the one before the last.  Only head and the next links are trusted:
 * the owner-dead recovery (store_recover_sh()) calls rcu_recover_sh(),
 * which rebuilds tail and pending from head before anything else touches
 * the list.
 *
 * Dead readers.  The master calls rcu_clear_slot_sh() for a reaped child so
 * a process killed inside a read-side section never blocks reclamation.
 * A SIGSTOPped reader does block it; retired objects then accumulate
 * (visible as rcu_pending in /metrics) until it resumes or is killed.
 */
#ifndef KVSD_RCU_H
#define KVSD_RCU_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <urcu/arch.h>
#include <urcu/uatomic.h>

#include "shm.h"

struct arena_sh;

/* Embedded at the start of every object that is retired through RCU. */
struct rcu_node {
    struct rcu_node *next;
    uint64_t epoch;
};

struct rcu_slot {
    pid_t pid;
    uint64_t epoch; /* 0: idle */
} __attribute__((aligned(64)));

struct rcu_sh {
    uint64_t epoch __attribute__((aligned(64))); /* global, starts at 1 */
    /* retire FIFO: written only under the writer lock */
    struct rcu_node *head;
    struct rcu_node *tail;
    uint64_t pending; /* objects on the list */
    uint64_t reclaimed;
    struct rcu_slot slots[SHM_MAX_PROCS];
};

size_t rcu_size(void);
void rcu_init(struct rcu_sh *rcu);

/* Claim slot `slot` for `pid` (called in the child right after fork). */
void rcu_register_sh(struct rcu_sh *rcu, int slot, pid_t pid);
/* Master: forget whatever the dead owner of `slot` held. */
void rcu_clear_slot_sh(struct rcu_sh *rcu, int slot);

static inline void rcu_read_lock_sh(struct rcu_sh *rcu, int slot)
{
    uatomic_set(&rcu->slots[slot].epoch, uatomic_read(&rcu->epoch));
    cmm_smp_mb();
}

static inline void rcu_read_unlock_sh(struct rcu_sh *rcu, int slot)
{
    cmm_smp_mb();
    uatomic_set(&rcu->slots[slot].epoch, 0);
}

/* Writer lock held.  `node` heads an arena allocation. */
void rcu_retire_sh(struct rcu_sh *rcu, struct rcu_node *node);
/* Writer lock held.  Frees every retired object past its grace period into
 * `arena`; returns the number freed. */
size_t rcu_reclaim_sh(struct rcu_sh *rcu, struct arena_sh *arena);
/* Writer lock held, after its previous owner died: make tail and pending
 * agree with the list reachable from head again.  Returns 1 if either
 * was wrong. */
int rcu_recover_sh(struct rcu_sh *rcu);
/* Smallest epoch held by a live reader, or UINT64_MAX when all are idle. */
uint64_t rcu_min_epoch_sh(struct rcu_sh *rcu);
/* Writer lock held.  End the current epoch after an unlink that is not an
 * rcu_node (an incarnation row): returns the epoch E it was unlinked in;
 * it may be reused once rcu_min_epoch_sh() > E. */
uint64_t rcu_advance_sh(struct rcu_sh *rcu);

#endif
