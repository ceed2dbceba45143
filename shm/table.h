/*
 * table.h - the hash table of immutable entries.
 *
 * Concurrency contract: written only under the writer lock; readers call
 * table_lookup_sh() inside rcu_read_lock_sh()/rcu_read_unlock_sh() and may
 * use the returned entry until they unlock.  Entries are immutable once
 * table_put_sh() publishes them: an update publishes a new entry in the
 * same slot and retires the old one through RCU.
 *
 * Layout: open addressing with linear probing over an array of entry
 * pointers, itself an RCU object.  Growing allocates a twice larger array,
 * copies the live pointers, publishes the new array with
 * rcu_assign_pointer() and retires the old one, so readers are never
 * stopped: a reader still on the old array sees a consistent (older) view.
 * Removed slots hold TABLE_DELETED until the next rebuild.  Keys removed
 * from the table are only reaped tombstones; a client DELETE publishes a
 * tombstone entry.
 */
#ifndef KVSD_TABLE_H
#define KVSD_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "rcu.h"

struct arena_sh;

#define KEY_MAX 50 /* bytes, after percent-decoding */

#define ENTRY_TOMBSTONE 0x01

struct entry {
    struct rcu_node rcu; /* retirement link; not part of the value */
    uint64_t lamport;    /* conflict resolution: (lamport, origin addr) */
    uint64_t seq;        /* origin's sequence number of this write */
    uint32_t hash;
    uint16_t origin; /* incarnation id (clock.h) */
    uint8_t flags;
    uint8_t klen;
    uint32_t vlen; /* 0 for a tombstone */
    char data[];   /* key (klen bytes), then value JSON text (vlen bytes) */
};

static inline const char *entry_key(const struct entry *e)
{
    return e->data;
}
static inline const char *entry_value(const struct entry *e)
{
    return e->data + e->klen;
}

struct table_slots {
    struct rcu_node rcu;
    uint64_t mask; /* capacity - 1, capacity a power of two */
    struct entry *slot[];
};

#define TABLE_DELETED ((struct entry *)(uintptr_t)1)

struct table_sh {
    struct table_slots *slots; /* RCU pointer */
    uint64_t used;             /* non-NULL slots, TABLE_DELETED included */
    uint64_t nlive;            /* entries that are not tombstones */
    uint64_t ntomb;            /* tombstone entries */
};

size_t table_size(void);
/* Allocates the initial slot array from `arena`; -1 if it does not fit. */
int table_init(struct table_sh *table, struct arena_sh *arena, size_t capacity);

uint32_t table_hash(const char *key, size_t klen);

/* RCU read side held.  NULL if absent. */
const struct entry *table_lookup_sh(struct table_sh *table, const char *key, size_t klen, uint32_t hash);

/* Writer lock held.  Allocate an entry (not yet visible) with room for the
 * key and value, key copied and hash set; NULL when the arena is full. */
struct entry *table_entry_new_sh(struct arena_sh *arena, const char *key, size_t klen, size_t vlen);

/* Writer lock held.  Publish `e` under its key, replacing (and returning
 * through *old, not yet retired) any previous entry; the caller retires
 * *old with rcu_retire_sh().  Grows the array first when needed; returns
 * -1 (nothing changed) if growing does not fit in the arena. */
int table_put_sh(struct table_sh *table,
                 struct rcu_sh *rcu,
                 struct arena_sh *arena,
                 struct entry *e,
                 struct entry **old);

/* Writer lock held.  Grow the array now, if needed, so that the next n
 * table_put_sh() calls cannot fail; -1 (nothing changed) if growing does
 * not fit in the arena. */
int table_reserve_sh(struct table_sh *table, struct rcu_sh *rcu, struct arena_sh *arena, uint64_t n);

/* Writer lock held.  Unlink the entry for key (the caller retires it). */
struct entry *table_remove_sh(struct table_sh *table, const char *key, size_t klen, uint32_t hash);

/* Visit every entry (tombstones too).  Under the RCU read side, or the
 * writer lock.  Stops early and returns the callback's value if non-zero. */
int table_foreach_sh(struct table_sh *table, int (*fn)(const struct entry *e, void *arg), void *arg);

/* Consistency check (writer lock held): -1 and a reason on corruption. */
int table_check(struct table_sh *table, const char **why);

#endif
