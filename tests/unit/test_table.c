/*
 * test_table.c - unit tests for the store's hash table (shm/table.c):
 * insert, replace, remove and re-insert across thousands of keys, growth
 * (and rebuilds forced by TABLE_DELETED markers), a reader that still
 * holds the old slot array while the table grows, foreach, entry
 * allocation limits, and failure without change when the arena is full.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <urcu/pointer.h>

#include "arena.h"
#include "table.h"
#include "tap.h"

#define ARENA_BYTES (8u << 20)
#define NKEYS 5000

static struct rcu_sh *rcu;
static struct arena_sh arena;
static struct table_sh table;

static size_t key_of(int i, char *buf)
{
    return (size_t)sprintf(buf, "key:%d", i);
}

/* Publish a new entry for key i whose value is "v<gen>:<i>". */
static struct entry *put(struct table_sh *t, int i, int gen, struct entry **old)
{
    char k[32], v[64];
    size_t klen = key_of(i, k), vlen = (size_t)sprintf(v, "v%d:%d", gen, i);
    struct entry *e = table_entry_new_sh(&arena, k, klen, vlen);

    if (e == NULL)
        return NULL;
    memcpy((char *)entry_value(e), v, vlen);
    if (table_put_sh(t, rcu, &arena, e, old) != 0) {
        arena_free_sh(&arena, e);
        return NULL;
    }
    return e;
}

static const struct entry *get(struct table_sh *t, int i)
{
    char k[32];
    size_t klen = key_of(i, k);

    return table_lookup_sh(t, k, klen, table_hash(k, klen));
}

static int value_is(const struct entry *e, int gen, int i)
{
    char v[64];
    size_t vlen = (size_t)sprintf(v, "v%d:%d", gen, i);

    return e != NULL && e->vlen == vlen && memcmp(entry_value(e), v, vlen) == 0;
}

static int count_cb(const struct entry *e, void *arg)
{
    ++*(int *)arg;
    return 0;
}

static int stop_cb(const struct entry *e, void *arg)
{
    return ++*(int *)arg == 10 ? 42 : 0;
}

static void test_entries(void)
{
    struct entry *e;
    char longkey[KEY_MAX + 2];

    e = table_entry_new_sh(&arena, "abc", 3, 10);
    ok(e != NULL, "entry allocated");
    ok(e->klen == 3 && memcmp(entry_key(e), "abc", 3) == 0, "key copied");
    ok(e->hash == table_hash("abc", 3), "hash set");
    ok(e->vlen == 10 && e->flags == 0 && e->lamport == 0 && e->seq == 0 && e->rcu.next == NULL,
       "header fields zeroed, vlen set");
    ok(arena_block_size(e) >= sizeof(*e) + 13, "room for key and value");
    arena_free_sh(&arena, e);
    memset(longkey, 'k', sizeof(longkey));
    ok(table_entry_new_sh(&arena, longkey, KEY_MAX, 0) != NULL, "a KEY_MAX-byte key is accepted");
    ok(table_entry_new_sh(&arena, longkey, KEY_MAX + 1, 0) == NULL, "a longer key is refused");
    ok(table_hash("abc", 3) == table_hash("abc", 3) && table_hash("abc", 3) != table_hash("abd", 3),
       "hash is deterministic and tells keys apart");
}

static void test_insert_replace_remove(void)
{
    struct entry *old, *e;
    const char *why = NULL;
    int i, all = 1, n = 0, r;
    uint64_t cap0 = table.slots->mask + 1;

    for (i = 0; i < NKEYS; ++i) {
        all &= put(&table, i, 1, &old) != NULL && old == NULL;
        if (old != NULL)
            rcu_retire_sh(rcu, &old->rcu);
    }
    ok(all, "%d keys inserted, none replaced anything", NKEYS);
    ok(table.slots->mask + 1 > cap0,
       "table grew from %llu to %llu slots",
       (unsigned long long)cap0,
       (unsigned long long)table.slots->mask + 1);
    ok(table.used * 4 <= (table.slots->mask + 1) * 3, "load stays at or under 3/4");
    is_int(table.used, NKEYS, "used counts the keys");
    ok(rcu->pending > 0, "old slot arrays were retired through RCU");
    ok(rcu_reclaim_sh(rcu, &arena) > 0 && rcu->pending == 0, "and reclaimed with no reader");
    for (i = 0, all = 1; i < NKEYS; ++i)
        all &= value_is(get(&table, i), 1, i);
    ok(all, "every key found with its value");
    ok(get(&table, NKEYS + 1) == NULL, "a missing key is not found");
    ok(table_check(&table, &why) == 0, "table consistent after growth");

    /* Replace every third key. */
    for (i = 0, all = 1; i < NKEYS; i += 3) {
        const struct entry *prev = get(&table, i);
        e = put(&table, i, 2, &old);
        all &= e != NULL && old == prev && old != e;
        rcu_retire_sh(rcu, &old->rcu);
    }
    ok(all, "replace returns the previous entry through *old");
    for (i = 0, all = 1; i < NKEYS; ++i)
        all &= value_is(get(&table, i), i % 3 == 0 ? 2 : 1, i);
    ok(all, "replaced keys show the new value, others the old");
    is_int(table.used, NKEYS, "replacing takes no new slot");
    e = (struct entry *)get(&table, 3);
    ok(table_put_sh(&table, rcu, &arena, e, &old) == 0 && old == NULL, "republishing the same entry replaces nothing");

    /* Remove the even keys. */
    for (i = 0, all = 1; i < NKEYS; i += 2) {
        const struct entry *prev = get(&table, i);
        char k[32];
        size_t klen = key_of(i, k);
        e = table_remove_sh(&table, k, klen, table_hash(k, klen));
        all &= e != NULL && e == prev;
        rcu_retire_sh(rcu, &e->rcu);
    }
    ok(all, "remove returns the unlinked entry");
    {
        char k[32];
        size_t klen = key_of(0, k);
        ok(table_remove_sh(&table, k, klen, table_hash(k, klen)) == NULL, "removing a missing key returns NULL");
    }
    for (i = 0, all = 1; i < NKEYS; ++i)
        all &= i % 2 == 0 ? get(&table, i) == NULL : value_is(get(&table, i), i % 3 == 0 ? 2 : 1, i);
    ok(all, "removed keys are gone, the others still found past the DELETED markers");
    is_int(table.used, NKEYS, "DELETED markers still count as used");
    ok(table_check(&table, &why) == 0, "table consistent after removals");
    table_foreach_sh(&table, count_cb, &n);
    is_int(n, NKEYS / 2, "foreach visits every entry once, skipping DELETED");
    n = 0;
    r = table_foreach_sh(&table, stop_cb, &n);
    ok(r == 42 && n == 10, "foreach stops early and returns the callback's value");

    /* Re-insert removed keys: they reuse DELETED slots. */
    for (i = 0, all = 1; i < NKEYS; i += 2)
        all &= put(&table, i, 3, &old) != NULL && old == NULL;
    ok(all, "removed keys re-inserted");
    is_int(table.used, NKEYS, "re-inserts took DELETED slots, not new ones");
    for (i = 0, all = 1; i < NKEYS; ++i)
        all &= value_is(get(&table, i), i % 2 == 0 ? 3 : i % 3 == 0 ? 2 : 1, i);
    ok(all, "all keys found with their latest value");
    ok(table_check(&table, &why) == 0, "table consistent after re-inserts");
    rcu_reclaim_sh(rcu, &arena);
}

/* Insert/remove churn over ever new keys: live count stays small, so the
 * DELETED markers must trigger rebuilds that do not grow the array. */
static void test_churn(void)
{
    struct table_sh t;
    struct entry *old;
    uint64_t cap0;
    int i, all = 1;

    ok(table_init(&t, &arena, 64) == 0, "small table created");
    cap0 = t.slots->mask + 1;
    for (i = 0; i < 5000; ++i) {
        char k[32];
        size_t klen = key_of(100000 + i, k);
        struct entry *e = put(&t, 100000 + i, 1, &old);
        all &= e != NULL;
        if (i >= 10) {
            klen = key_of(100000 + i - 10, k);
            e = table_remove_sh(&t, k, klen, table_hash(k, klen));
            all &= e != NULL;
            rcu_retire_sh(rcu, &e->rcu);
        }
        rcu_reclaim_sh(rcu, &arena);
    }
    ok(all, "5000 inserts and removes of fresh keys");
    is_int(t.slots->mask + 1, cap0, "rebuilds dropped DELETED markers without growing");
    ok(table_check(&t, NULL) == 0, "churned table consistent");
}

static void test_read_during_growth(void)
{
    struct table_sh t, reader_view;
    struct table_slots *seen;
    struct entry *old;
    size_t freed;
    int i, all = 1;

    table_init(&t, &arena, 16);
    for (i = 0; i < 10; ++i)
        put(&t, i, 1, &old);
    /* A reader enters and loads the slot array... */
    rcu_read_lock_sh(rcu, 0);
    seen = rcu_dereference(t.slots);
    /* ...while the writer grows the table under it. */
    for (i = 10; i < 200; ++i)
        all &= put(&t, i, 1, &old) != NULL;
    ok(all && t.slots != seen, "table grew while a reader held the old array");
    freed = rcu_reclaim_sh(rcu, &arena);
    is_int(freed, 0, "the old arrays are not freed under the reader");
    reader_view = t;
    reader_view.slots = seen;
    for (i = 0, all = 1; i < 10; ++i)
        all &= value_is(get(&reader_view, i), 1, i);
    ok(all, "the reader still finds every key it could see in the old array");
    ok(get(&reader_view, 150) == NULL, "and not the ones published after it was replaced");
    for (i = 0, all = 1; i < 200; ++i)
        all &= value_is(get(&t, i), 1, i);
    ok(all, "new readers see every key in the new array");
    rcu_read_unlock_sh(rcu, 0);
    ok(rcu_reclaim_sh(rcu, &arena) >= 1, "old arrays freed after the reader left");
}

static void test_full(void)
{
    static char mem[16384] __attribute__((aligned(64)));
    static void *filler[4096];
    struct arena_sh saved = arena;
    struct table_sh t;
    struct table_slots *slots;
    struct entry *old, *e;
    char k[32];
    size_t klen;
    int i, n = 0, all = 1;

    arena_init(&arena, mem, sizeof(mem));
    ok(table_init(&t, &arena, 1u << 20) == -1, "table_init fails when the slots do not fit");
    ok(table_init(&t, &arena, 16) == 0, "a 16-slot table that fits");
    for (i = 0; i < 12; ++i)
        all &= put(&t, i, 1, &old) != NULL;
    ok(all && t.slots->mask + 1 == 16, "12 keys fill it to its growth threshold");
    /* The entry fits, but then the arena is full: growing cannot. */
    klen = key_of(12, k);
    e = table_entry_new_sh(&arena, k, klen, 0);
    /* Blocks of a class the grown array fits, then small ones: the
     * arena has no coalescing, so freed small blocks would not do. */
    while (n < 4096 && (filler[n] = arena_alloc_sh(&arena, 300)) != NULL)
        ++n;
    while (n < 4096 && (filler[n] = arena_alloc_sh(&arena, 8)) != NULL)
        ++n;
    slots = t.slots;
    ok(e != NULL && table_put_sh(&t, rcu, &arena, e, &old) == -1, "a put that must grow fails when the arena is full");
    ok(t.slots == slots && t.used == 12 && get(&t, 12) == NULL && table_check(&t, NULL) == 0, "and changed nothing");
    for (i = 0; i < n; ++i)
        arena_free_sh(&arena, filler[i]);
    ok(table_put_sh(&t, rcu, &arena, e, &old) == 0 && get(&t, 12) == e && t.slots != slots,
       "with room again the same put grows the table");
    rcu_reclaim_sh(rcu, &arena);
    arena = saved;
}

int main(void)
{
    void *mem;

    plan(50);
    rcu = mmap(NULL, sizeof(*rcu), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    mem = aligned_alloc(64, ARENA_BYTES);
    rcu_init(rcu);
    rcu_register_sh(rcu, 0, 1);
    arena_init(&arena, mem, ARENA_BYTES);
    ok(table_size() >= sizeof(struct table_sh), "table_size covers the struct");
    ok(table_init(&table, &arena, 1000) == 0 && table.slots->mask + 1 == 1024, "capacity rounds up to 1024");
    test_entries();
    test_insert_replace_remove();
    test_churn();
    test_read_during_growth();
    test_full();
    free(mem);
    return done_testing();
}
