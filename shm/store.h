/*
 * store.h - the store's write path and causality checks, on top of the
 * table, clock, view and replication log.
 *
 * Every function named _sh that writes takes the writer lock itself; the
 * read helpers are lock-free.  A write is: lock, check causal dependencies,
 * allocate the new immutable entry, record an intent (so a writer killed
 * at any instruction is rolled forward or back by store_recover_sh() under
 * the robust mutex's owner-dead path), append the log record, advance the
 * clock, publish the entry, clear the intent, reclaim, unlock.
 */
#ifndef KVSD_STORE_H
#define KVSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "rlog.h"
#include "shm.h"
#include "table.h"

enum store_result {
    STORE_CREATED = 0,
    STORE_REPLACED,
    STORE_DELETED,
    STORE_NOT_FOUND,
    STORE_UNSATISFIED, /* causal dependencies not applied here */
    STORE_FULL,        /* arena or log cannot take it */
};

/* A client write.  value == NULL means delete. */
struct store_write {
    const char *key;
    size_t klen;
    const char *value;
    size_t vlen;
    const struct vc_pair *deps; /* the client's metadata, ids resolved */
    size_t ndeps;
};

/* A replicated write, ids already interned locally. */
struct store_record {
    uint32_t origin;
    uint64_t seq;
    uint64_t lamport;
    int tombstone;
    const char *key;
    size_t klen;
    const char *value;
    size_t vlen;
    const struct vc_pair *deps;
    size_t ndeps;
};

enum store_apply {
    APPLY_DONE = 0, /* applied now */
    APPLY_DUP,      /* already applied: acknowledged and dropped */
    APPLY_WAIT,     /* dependencies not met yet: not applied */
    APPLY_FULL,     /* store full */
};

/* Master, before fork: intern this replica's incarnation and install the
 * owner-dead recovery hook. */
int store_setup(shm_t *shm, const char *self_addr, uint64_t stamp);

/* Apply a client PUT/DELETE.  On success (CREATED/REPLACED/DELETED) the
 * clock right after the write is copied into clock_out[CLOCK_MAX]. */
enum store_result store_client_write_sh(shm_t *shm, const struct store_write *w, uint64_t *clock_out);

/* Apply replicated records, under one lock hold; result[i] gets enum
 * store_apply per record.  Each origin's records are applied in seq order
 * whatever their order in recs, as soon as their dependencies are met,
 * records of the batch included.  Returns how many were applied. */
size_t store_apply_records_sh(shm_t *shm, const struct store_record *recs, size_t n, uint8_t *result);

/* How many times a replicated record was checked for applying, ever: a
 * batch of n records costs at most n + (n + 1) * (origins in it). */
uint64_t store_apply_attempts(shm_t *shm);

/* Owner-dead recovery hook (lock held). */
void store_recover_sh(void *shm);

/* Lock-free: 1 if the client's dependencies are applied here. */
int store_covers(shm_t *shm, const struct vc_pair *m, size_t n);

/* Intern incarnations (writer lock taken inside): ids[i] gets the local
 * id of (addr[i], stamp[i]) -- the floor row for a life folded here --
 * or -1 if the table is full.  folded (NULL: none) marks lives the sender
 * has folded; new here, they are born folded.  Returns 0, or -1 if any
 * could not be interned. */
int store_intern2_sh(shm_t *shm,
                     const char (*addr)[ADDR_MAX],
                     const uint64_t *stamp,
                     const uint8_t *folded,
                     size_t n,
                     int32_t *ids);
static inline int store_intern_sh(shm_t *shm, const char (*addr)[ADDR_MAX], const uint64_t *stamp, size_t n, int32_t *ids)
{
    return store_intern2_sh(shm, addr, stamp, NULL, n, ids);
}

/* Relabel up to budget table slots from *cursor: an entry whose origin is
 * a STALE incarnation gets its address's floor row instead, so the STALE
 * row can be freed.  *done is set when the pass reached the end (the
 * cursor then starts over).  Writer lock taken inside.  Returns how many
 * entries were relabelled. */
size_t store_relabel_sh(shm_t *shm, uint64_t *cursor, uintptr_t *slots_seen, size_t budget, int *done);


/* Install a state transfer (entries are records whose deps are ignored,
 * ids already local): entries merge by last-writer-wins, the clock
 * becomes the component-wise max, and the log's tail clock records that
 * these writes cannot be shipped from our log.  A local entry whose write
 * the transferred clock covers but whose key the transfer lacks was
 * deleted and reaped at the source: it is removed here too.  clock[] is indexed by
 * local id (ninc entries).  Returns 0, or -1 if the store filled up. */
int store_install_sh(shm_t *shm, const struct store_record *entries, size_t n, const uint64_t *clock, uint32_t ninc);

/* Remove tombstones whose write every replica has applied: floor[id] is
 * the smallest applied count of incarnation id among all view members
 * (ourselves included).  Writer lock taken inside.  Returns how many. */
size_t store_reap_sh(shm_t *shm, const uint64_t *floor, uint32_t ninc);

/* A consistent cut for a state transfer, without holding the writer lock
 * while it is encoded: under the lock, copy the table's slot pointers and
 * call at_cut() (to copy the clock); then, outside the lock but inside an
 * RCU read-side section on reader slot `slot`, call each() for every
 * entry of the cut.  Every write the clock copied in at_cut() covers is
 * in the cut, and every entry of the cut is covered by that clock: both
 * are read in one lock hold, and a write publishes its entry and advances
 * the clock in one lock hold.  Returns 0, or -1 if out of memory. */
int store_snapshot_sh(shm_t *shm,
                      int slot,
                      void (*at_cut)(shm_t *shm, void *arg),
                      int (*each)(const struct entry *e, void *arg),
                      void *arg);

/* One full pass over the store (a snapshot or a check) at a time per
 * replica: 0 if this process may start one, -1 if another runs.  A pass
 * whose process died no longer counts. */
int store_pass_begin(shm_t *shm);
/* 1 while a store check may not run yet: the last one held the writer
 * lock D ms, and checks are spaced 9 x D ms apart (store.c CHECK_DUTY). */
int store_check_quiet(shm_t *shm);
/* How long the last store check held the writer lock, in microseconds. */
uint64_t store_check_held_us(shm_t *shm);
/* How long the last snapshot held it (the cut), in microseconds. */
uint64_t store_snapshot_held_us(shm_t *shm);
void store_pass_end(shm_t *shm);

/* Consistency check of the whole store under the writer lock: table,
 * arena, replication log, and every entry against the clock.  Returns 0,
 * or -1 with a reason in why (a static string or buf). */
int store_check_sh(shm_t *shm, char *buf, size_t buflen, const char **why);

#endif
