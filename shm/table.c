/*
 * table.c - the store's hash table: open addressing with linear probing
 * over an RCU-managed array of pointers to immutable entries.
 *
 * Writers hold the store's writer lock and change the table only by
 * single pointer stores with release semantics (rcu_assign_pointer()):
 * a slot goes from NULL or TABLE_DELETED to an entry, from one entry to
 * its replacement, or from an entry to TABLE_DELETED; the array pointer
 * goes from the old array to a complete new one.  Lock-free readers
 * (rcu_dereference()) therefore see every slot either before or after a
 * change, never a half-built entry or array, and RCU keeps whatever they
 * loaded alive until they leave the read side.
 *
 * The counters nlive and ntomb describe entry contents the table does not
 * interpret; the store keeps them.  used (non-NULL slots, TABLE_DELETED
 * included) is the table's own and drives the 3/4 load rebuild.
 */
#include <errno.h>
#include <string.h>

#include <urcu/pointer.h>

#include "arena.h"
#include "shm.h"
#include "table.h"

#define TABLE_MIN 8

size_t table_size(void)
{
    return sizeof(struct table_sh);
}

/* A new, empty, unpublished slot array; capacity a power of two. */
static struct table_slots *slots_new_sh(struct arena_sh *arena, uint64_t capacity)
{
    struct table_slots *s;

    if (capacity > ((uint64_t)1 << 32) ||
        (s = arena_alloc_sh(arena, sizeof(*s) + capacity * sizeof(s->slot[0]))) == NULL)
        return NULL;
    memset(s, 0, sizeof(*s) + capacity * sizeof(s->slot[0]));
    s->mask = capacity - 1;
    return s;
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t c = TABLE_MIN;

    while (c < n)
        c <<= 1;
    return c;
}

int table_init(struct table_sh *table, struct arena_sh *arena, size_t capacity)
{
    struct table_slots *s;

    memset(table, 0, sizeof(*table));
    if ((s = slots_new_sh(arena, pow2_at_least(capacity))) == NULL) {
        errno = ENOMEM;
        return -1;
    }
    rcu_assign_pointer(table->slots, s);
    return 0;
}

/* FNV-1a over the key, then murmur3's finaliser: FNV alone leaves the low
 * bits, which pick the home slot, poorly mixed for short similar keys. */
uint32_t table_hash(const char *key, size_t klen)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < klen; ++i) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int entry_is(const struct entry *e, const char *key, size_t klen, uint32_t hash)
{
    return e->hash == hash && e->klen == klen && memcmp(entry_key(e), key, klen) == 0;
}

const struct entry *table_lookup_sh(struct table_sh *table, const char *key, size_t klen, uint32_t hash)
{
    struct table_slots *s = rcu_dereference(table->slots);
    uint64_t i = hash & s->mask, n;

    /* Bounded by the capacity: the writer keeps NULL slots around, but a
     * reader must terminate whatever it races with. */
    for (n = 0; n <= s->mask; ++n, i = (i + 1) & s->mask) {
        struct entry *e = rcu_dereference(s->slot[i]);
        if (e == NULL)
            return NULL;
        if (e != TABLE_DELETED && entry_is(e, key, klen, hash))
            return e;
    }
    return NULL;
}

struct entry *table_entry_new_sh(struct arena_sh *arena, const char *key, size_t klen, size_t vlen)
{
    struct entry *e;

    if (klen > KEY_MAX || vlen > UINT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    if ((e = arena_alloc_sh(arena, sizeof(*e) + klen + vlen)) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    if (klen != 0)
        memcpy(e->data, key, klen);
    e->klen = (uint8_t)klen;
    e->vlen = (uint32_t)vlen;
    e->hash = table_hash(key, klen);
    return e;
}

/* Writer lock held.  Index of key's slot, or of the slot an insert should
 * take (first TABLE_DELETED on the probe path, else the ending NULL);
 * *found tells which. */
static uint64_t probe(const struct table_slots *s, const char *key, size_t klen, uint32_t hash, int *found)
{
    uint64_t i = hash & s->mask, n, free_at = UINT64_MAX;

    *found = 0;
    for (n = 0; n <= s->mask; ++n, i = (i + 1) & s->mask) {
        const struct entry *e = s->slot[i];
        if (e == NULL)
            return free_at != UINT64_MAX ? free_at : i;
        if (e == TABLE_DELETED) {
            if (free_at == UINT64_MAX)
                free_at = i;
        } else if (entry_is(e, key, klen, hash)) {
            *found = 1;
            return i;
        }
    }
    return free_at; /* unreachable while the load stays under 3/4 */
}

/* Writer lock held.  Copy the live pointers into a fresh array (twice as
 * large unless the old one was mostly TABLE_DELETED), publish it, and
 * retire the old one.  -1, nothing changed, if the arena is full. */
static int rebuild_sh(struct table_sh *table, struct rcu_sh *rcu, struct arena_sh *arena, uint64_t extra)
{
    struct table_slots *old = table->slots, *s;
    uint64_t i, j, live = 0, capacity = old->mask + 1;

    for (i = 0; i <= old->mask; ++i)
        if (old->slot[i] != NULL && old->slot[i] != TABLE_DELETED)
            ++live;
    /* At most half full afterwards, counting `extra` keys to come, so the
     * next rebuild is far away. */
    while ((live + extra + 1) * 2 > capacity)
        capacity *= 2;
    if ((s = slots_new_sh(arena, capacity)) == NULL)
        return -1;
    for (i = 0; i <= old->mask; ++i) {
        struct entry *e = old->slot[i];
        if (e == NULL || e == TABLE_DELETED)
            continue;
        for (j = e->hash & s->mask; s->slot[j] != NULL; j = (j + 1) & s->mask)
            ;
        s->slot[j] = e;
    }
    /* The commit point.  A crash before it leaks the new array, one after
     * it the old; readers on the old array keep a consistent view. */
    rcu_assign_pointer(table->slots, s);
    table->used = live;
    rcu_retire_sh(rcu, &old->rcu);
    return 0;
}

int table_put_sh(struct table_sh *table,
                 struct rcu_sh *rcu,
                 struct arena_sh *arena,
                 struct entry *e,
                 struct entry **old)
{
    struct table_slots *s = table->slots;
    uint64_t i;
    int found;

    *old = NULL;
    i = probe(s, entry_key(e), e->klen, e->hash, &found);
    if (found) {
        if (s->slot[i] != e) {
            *old = s->slot[i];
            rcu_assign_pointer(s->slot[i], e);
        }
        return 0;
    }
    if (i == UINT64_MAX || (s->slot[i] == NULL && (table->used + 1) * 4 > (s->mask + 1) * 3)) {
        if (rebuild_sh(table, rcu, arena, 0) != 0) {
            errno = ENOMEM;
            return -1;
        }
        s = table->slots;
        i = probe(s, entry_key(e), e->klen, e->hash, &found);
    }
    if (s->slot[i] == NULL)
        ++table->used;
    rcu_assign_pointer(s->slot[i], e);
    return 0;
}

int table_reserve_sh(struct table_sh *table, struct rcu_sh *rcu, struct arena_sh *arena, uint64_t n)
{
    struct table_slots *s = table->slots;

    if ((table->used + n + 1) * 4 <= (s->mask + 1) * 3)
        return 0;
    return rebuild_sh(table, rcu, arena, n);
}

struct entry *table_remove_sh(struct table_sh *table, const char *key, size_t klen, uint32_t hash)
{
    struct table_slots *s = table->slots;
    struct entry *e;
    uint64_t i;
    int found;

    i = probe(s, key, klen, hash, &found);
    if (!found)
        return NULL;
    e = s->slot[i];
    /* Not NULL: that would cut the probe chain of keys placed after it. */
    rcu_assign_pointer(s->slot[i], TABLE_DELETED);
    return e;
}

int table_foreach_sh(struct table_sh *table, int (*fn)(const struct entry *e, void *arg), void *arg)
{
    struct table_slots *s = rcu_dereference(table->slots);
    uint64_t i;
    int r;

    for (i = 0; i <= s->mask; ++i) {
        struct entry *e = rcu_dereference(s->slot[i]);
        if (e != NULL && e != TABLE_DELETED && (r = fn(e, arg)) != 0)
            return r;
    }
    return 0;
}

int table_check(struct table_sh *table, const char **why)
{
    struct table_slots *s = table->slots;
    uint64_t i, used = 0;

    if (s == NULL)
        return check_fail(why, "no slot array");
    if (((s->mask + 1) & s->mask) != 0)
        return check_fail(why, "capacity is not a power of two");
    for (i = 0; i <= s->mask; ++i) {
        const struct entry *e = s->slot[i];
        if (e == NULL)
            continue;
        ++used;
        if (e == TABLE_DELETED)
            continue;
        if (e->klen > KEY_MAX)
            return check_fail(why, "entry key too long");
        if (e->hash != table_hash(entry_key(e), e->klen))
            return check_fail(why, "entry hash does not match its key");
        /* Reachable from its home slot, and the only entry for its key. */
        if (table_lookup_sh(table, entry_key(e), e->klen, e->hash) != e)
            return check_fail(why, "entry unreachable or key duplicated");
    }
    if (used != table->used)
        return check_fail(why, "used counter disagrees with the slots");
    if (used > s->mask)
        return check_fail(why, "no NULL slot left");
    return 0;
}
