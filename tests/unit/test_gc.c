/*
 * test_gc.c - incarnation garbage collection through the store
 * (doc/design.md, "Incarnation garbage collection"): records of a folded
 * life are acknowledged as duplicates, a relabel pass moves the entries of
 * a STALE life to its address's floor, a row is freed only once nothing
 * refers to it (store_check_sh notices an entry naming a freed row), and
 * a freed row is reused only after every RCU reader that could hold its id
 * has left its section.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lock.h"
#include "rcu.h"
#include "rlog.h"
#include "shm.h"
#include "store.h"
#include "table.h"
#include "tap.h"

#define B "10.0.0.2:8090"

static shm_t *new_store(void)
{
    struct shm_params params = { 16u << 20, 0 };
    shm_t *shm = shm_create(&params);

    if (shm == NULL || store_setup(shm, "10.0.0.1:8090", 1) != 0)
        abort();
    rcu_register_sh(shm->rcu, 0, getpid());
    rcu_register_sh(shm->rcu, 1, getpid()); /* a second "process": a reader */
    return shm;
}

static int32_t intern(shm_t *shm, const char *addr, uint64_t stamp)
{
    char a[1][ADDR_MAX] = { { 0 } };
    int32_t id;

    strcpy(a[0], addr);
    return store_intern_sh(shm, (const char(*)[ADDR_MAX])a, &stamp, 1, &id) == 0 ? id : -1;
}

/* Apply one write of origin id, seq n, to key. */
static int apply(shm_t *shm, int32_t id, uint64_t n, const char *key)
{
    struct store_record rec = { (uint32_t)id, n, 100 + n, 0, key, strlen(key), "1", 1, NULL, 0 };
    uint8_t result;

    store_apply_records_sh(shm, &rec, 1, &result);
    return result;
}

static const struct entry *get(shm_t *shm, const char *key)
{
    return table_lookup_sh(shm->table, key, strlen(key), table_hash(key, strlen(key)));
}

static int check(shm_t *shm, const char **why)
{
    static char buf[256];
    return store_check_sh(shm, buf, sizeof(buf), why);
}

static void fold(shm_t *shm, int32_t id)
{
    lock_acquire_sh(shm->lock);
    clock_settle_sh(shm->clock, (uint32_t)id, shm->clock->applied[id]);
    clock_fold_sh(shm->clock, (uint32_t)id, rlog_head(shm->rlog));
    lock_release_sh(shm->lock);
}

int main(void)
{
    shm_t *shm = new_store();
    const char *why = NULL;
    uint64_t cursor = 0;
    uintptr_t slots = 0;
    int32_t b1, b2, b3, b4, reused;
    int done = 0;
    size_t moved;

    plan(17);
    b1 = intern(shm, B, 10);
    ok(apply(shm, b1, 1, "k1") == APPLY_DONE && apply(shm, b1, 2, "k2") == APPLY_DONE, "two writes of B's first life");
    b2 = intern(shm, B, 20);
    ok(apply(shm, b2, 1, "k3") == APPLY_DONE, "one of its second life");
    b3 = intern(shm, B, 30); /* B's third life: the first two are retired */
    fold(shm, b1);
    is_int(apply(shm, b1, 3, "late"), APPLY_DUP, "a record of a folded life is acknowledged as a duplicate");
    ok(get(shm, "late") == NULL, "and not applied");
    is_int(intern(shm, B, 5), b1, "an older life below the floor maps to the floor row");
    fold(shm, b2);
    ok(shm->clock->inc[b1].flags & INC_STALE, "a newer fold makes the first life STALE");
    is_int(intern(shm, B, 10), b2, "its stamp now maps to the floor (second life)");

    moved = store_relabel_sh(shm, &cursor, &slots, 1u << 20, &done);
    ok(done && moved == 2, "a relabel pass moves the STALE life's 2 entries (moved %zu)", moved);
    ok(get(shm, "k1")->origin == b2 && get(shm, "k2")->origin == b2 && get(shm, "k3")->origin == b2,
       "they name the floor row now");
    ok(check(shm, &why) == 0, "store consistent after relabelling (%s)", why ? why : "ok");

    /* free it: trim the log past its records, then the row */
    lock_acquire_sh(shm->lock);
    rlog_trim_sh(shm->rlog, shm->clock->inc[b1].fold_pos);
    clock_free_sh(shm->clock, (uint32_t)b1, rcu_advance_sh(shm->rcu));
    lock_release_sh(shm->lock);
    ok(check(shm, &why) == 0, "store consistent after freeing the row (%s)", why ? why : "ok");

    /* a reader inside its section while a second row is freed */
    rcu_read_lock_sh(shm->rcu, 1);
    b4 = intern(shm, "10.0.0.3:8090", 1);
    fold(shm, b3);
    ok(shm->clock->inc[b2].flags & INC_STALE, "folding the third life makes the second STALE");
    store_relabel_sh(shm, &cursor, &slots, 1u << 20, &done);
    lock_acquire_sh(shm->lock);
    rlog_trim_sh(shm->rlog, shm->clock->inc[b2].fold_pos);
    clock_free_sh(shm->clock, (uint32_t)b2, rcu_advance_sh(shm->rcu));
    lock_release_sh(shm->lock);
    reused = intern(shm, "10.0.0.4:8090", 1);
    ok(reused != b2, "a row freed while a reader is inside is not reused (got %d, freed %d)", reused, b2);
    rcu_read_unlock_sh(shm->rcu, 1);
    is_int(intern(shm, "10.0.0.5:8090", 1), b2, "once the reader has left, the row is reused");
    ok(check(shm, &why) == 0, "store consistent (%s)", why ? why : "ok");

    /* freeing a row an entry still names is what the check catches */
    ok(apply(shm, b4, 1, "k4") == APPLY_DONE, "a write of another replica");
    lock_acquire_sh(shm->lock);
    clock_free_sh(shm->clock, (uint32_t)b4, rcu_advance_sh(shm->rcu));
    lock_release_sh(shm->lock);
    why = NULL;
    done = check(shm, &why);
    ok(done != 0 && why && strstr(why, "freed incarnation"), "an entry naming a freed row fails store_check_sh");
    printf("# check: %s\n", why ? why : "passed");
    return done_testing();
}
