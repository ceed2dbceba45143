/*
 * test_rcu_stress.c - multi-process stress test of the store's read path:
 * lock-free readers under shm RCU racing one writer.
 *
 * Three forked reader processes look up random keys inside
 * rcu_read_lock_sh() and check that every entry they reach is intact: the
 * value text names its key and ends in a checksum of itself, and it does
 * not change while the reader is still inside its section.  A premature
 * free would show up as a wrong key or checksum, because the writer
 * reuses freed blocks at once.  A forked writer, holding the writer lock,
 * replaces and removes entries (growing and rebuilding the table as it
 * goes) for about 2.5 s or a bounded number of operations.  At the end
 * every retired object has been reclaimed and the arena holds exactly the
 * current slot array again.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "lock.h"
#include "rcu.h"
#include "shm.h"
#include "table.h"
#include "tap.h"

#define NREADERS 3
#define NKEYS 3000
#define RUN_MS 2500
#define MAX_OPS 4000000
#define READER_LIMIT_MS 30000 /* readers give up if nobody stops them */

struct control {
    int stop;
    uint64_t lookups[NREADERS], hits[NREADERS], bad[NREADERS], scans[NREADERS];
    uint64_t ops, puts, removes, retired, rebuilds;
    char why[NREADERS][160];
};

static shm_t *shm;
static struct control *ctl;


static size_t key_of(int i, char *buf)
{
    return (size_t)sprintf(buf, "k%d", i);
}

/* "<key>|<gen>|<padding>|<checksum of what precedes it, 8 hex digits>" */
static size_t value_of(const char *key, uint64_t gen, char *buf)
{
    size_t n = (size_t)sprintf(buf, "%s|%llu|", key, (unsigned long long)gen), pad = (gen * 37) % 300, i;

    for (i = 0; i < pad; ++i)
        buf[n++] = (char)('a' + (gen + i) % 26);
    n += (size_t)sprintf(buf + n, "|%08x", table_hash(buf, n));
    return n;
}

/* 1 if e is an intact entry for key; otherwise a reason in why. */
static int intact(const struct entry *e, const char *key, size_t klen, char *why)
{
    const char *v = entry_value(e);
    char sum[9];
    size_t n = e->vlen;

    if (e->klen != klen || memcmp(entry_key(e), key, klen) != 0 || e->hash != table_hash(key, klen)) {
        snprintf(why, 160, "entry for %.*s holds key %.*s", (int)klen, key, (int)(e->klen & 63), entry_key(e));
        return 0;
    }
    if (n < klen + 11 || memcmp(v, key, klen) != 0 || v[klen] != '|' || v[n - 9] != '|') {
        snprintf(why, 160, "value of %.*s malformed (vlen %zu)", (int)klen, key, n);
        return 0;
    }
    snprintf(sum, sizeof(sum), "%08x", table_hash(v, n - 9));
    if (memcmp(v + n - 8, sum, 8) != 0) {
        snprintf(why, 160, "value of %.*s fails its checksum", (int)klen, key);
        return 0;
    }
    return 1;
}

static int scan_cb(const struct entry *e, void *arg)
{
    return intact(e, entry_key(e), e->klen, arg) ? 0 : 1;
}

static void reader(int r)
{
    int slot = 1 + r;
    unsigned seed = 12345u + (unsigned)r;
    uint64_t start = now_ms(), n = 0;
    char copy[512], key[32];

    rcu_register_sh(shm->rcu, slot, getpid());
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) && now_ms() - start < READER_LIMIT_MS) {
        size_t klen = key_of(rand_r(&seed) % NKEYS, key);
        const struct entry *e;

        rcu_read_lock_sh(shm->rcu, slot);
        if (++n % 2048 == 0) {
            /* A long section: holds back reclamation for a whole scan. */
            ++ctl->scans[r];
            if (table_foreach_sh(shm->table, scan_cb, ctl->why[r]) != 0)
                ++ctl->bad[r];
        }
        e = table_lookup_sh(shm->table, key, klen, table_hash(key, klen));
        if (e != NULL) {
            ++ctl->hits[r];
            if (!intact(e, key, klen, ctl->why[r])) {
                ++ctl->bad[r];
            } else if (n % 8 == 0 && e->vlen <= sizeof(copy)) {
                /* Still inside the section: the entry must not change. */
                memcpy(copy, entry_value(e), e->vlen);
                sched_yield();
                if (memcmp(copy, entry_value(e), e->vlen) != 0 || !intact(e, key, klen, ctl->why[r])) {
                    snprintf(ctl->why[r], 160, "entry of %s changed under a reader", key);
                    ++ctl->bad[r];
                }
            }
        }
        rcu_read_unlock_sh(shm->rcu, slot);
        ++ctl->lookups[r];
    }
    _exit(0);
}

/* Writer lock held.  Publish a fresh entry for key i. */
static int publish(int i, uint64_t gen)
{
    char key[32], value[512];
    size_t klen = key_of(i, key), vlen = value_of(key, gen, value);
    struct entry *e = table_entry_new_sh(shm->arena, key, klen, vlen), *old;
    struct table_slots *slots = shm->table->slots;

    if (e == NULL)
        return -1;
    memcpy((char *)entry_value(e), value, vlen);
    e->seq = gen;
    if (table_put_sh(shm->table, shm->rcu, shm->arena, e, &old) != 0) {
        arena_free_sh(shm->arena, e);
        return -1;
    }
    if (shm->table->slots != slots)
        ++ctl->rebuilds, ++ctl->retired;
    if (old != NULL) {
        rcu_retire_sh(shm->rcu, &old->rcu);
        ++ctl->retired;
    }
    ++ctl->puts;
    return 0;
}

static void writer(void)
{
    unsigned seed = 777;
    uint64_t start = now_ms(), gen = 0;
    int failed = 0;

    while (ctl->ops < MAX_OPS && (ctl->ops % 256 != 0 || now_ms() - start < RUN_MS)) {
        int i = rand_r(&seed) % NKEYS;
        char key[32];
        size_t klen = key_of(i, key);

        lock_acquire_sh(shm->lock);
        if (rand_r(&seed) % 10 < 7) {
            failed |= publish(i, ++gen) != 0;
        } else {
            struct entry *e = table_remove_sh(shm->table, key, klen, table_hash(key, klen));
            if (e != NULL) {
                rcu_retire_sh(shm->rcu, &e->rcu);
                ++ctl->retired, ++ctl->removes;
            }
        }
        rcu_reclaim_sh(shm->rcu, shm->arena);
        lock_release_sh(shm->lock);
        ++ctl->ops;
    }
    _exit(failed);
}

static int remove_all_cb(const struct entry *e, void *arg)
{
    struct entry *x = table_remove_sh(shm->table, entry_key(e), e->klen, e->hash);

    rcu_retire_sh(shm->rcu, &x->rcu);
    ++*(uint64_t *)arg;
    return 0;
}

int main(void)
{
    struct shm_params params = { 64u << 20, 0 };
    pid_t readers[NREADERS], w;
    uint64_t lookups = 0, hits = 0, bad = 0, scans = 0, removed = 0, reclaimed0, expect;
    int i, status, clean = 1, wstatus;
    const char *why = NULL;

    plan(15);
    shm = shm_create(&params);
    ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ok(shm != NULL && ctl != MAP_FAILED, "shared mapping and control block");
    reclaimed0 = shm->rcu->reclaimed;

    for (i = 0; i < NREADERS; ++i)
        if ((readers[i] = fork()) == 0)
            reader(i);
    if ((w = fork()) == 0)
        writer();
    waitpid(w, &wstatus, 0);
    __atomic_store_n(&ctl->stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < NREADERS; ++i)
        clean &= waitpid(readers[i], &status, 0) == readers[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    ok(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
       "writer ran %llu ops (%llu puts, %llu removes, %llu rebuilds)",
       (unsigned long long)ctl->ops,
       (unsigned long long)ctl->puts,
       (unsigned long long)ctl->removes,
       (unsigned long long)ctl->rebuilds);
    ok(clean, "%d readers exited cleanly", NREADERS);
    for (i = 0; i < NREADERS; ++i) {
        lookups += ctl->lookups[i], hits += ctl->hits[i], bad += ctl->bad[i], scans += ctl->scans[i];
        if (ctl->bad[i] != 0)
            printf("# reader %d: %s\n", i, ctl->why[i]);
    }
    ok(ctl->ops > 1000 && ctl->removes > 0 && ctl->rebuilds > 0, "writer replaced, removed and rebuilt the table");
    ok(lookups > 1000 && hits > 0 && scans > 0,
       "readers did %llu lookups (%llu hits, %llu full scans)",
       (unsigned long long)lookups,
       (unsigned long long)hits,
       (unsigned long long)scans);
    is_int(bad, 0, "no reader ever saw a torn, reused or changing entry");

    /* Every reader has left: one reclaim frees all that is still pending. */
    lock_acquire_sh(shm->lock);
    rcu_reclaim_sh(shm->rcu, shm->arena);
    is_int(shm->rcu->pending, 0, "after the readers exit, nothing is pending");
    is_int(shm->rcu->reclaimed - reclaimed0, ctl->retired, "every retired object was reclaimed");
    ok(rcu_min_epoch_sh(shm->rcu) == UINT64_MAX, "every reader slot is idle");
    /* Checked before ok(): its arguments are evaluated in no set order. */
    status = table_check(shm->table, &why);
    ok(status == 0, "table consistent%s%s", why ? ": " : "", why ? why : "");
    status = arena_check(shm->arena, &why);
    ok(status == 0, "arena consistent%s%s", why ? ": " : "", why ? why : "");

    /* Drop every entry: the arena must hold just the slot array again. */
    table_foreach_sh(shm->table, remove_all_cb, &removed);
    rcu_reclaim_sh(shm->rcu, shm->arena);
    lock_release_sh(shm->lock);
    ok(removed > 0 && shm->rcu->pending == 0,
       "removed and reclaimed the %llu remaining entries",
       (unsigned long long)removed);
    expect = arena_block_size(shm->table->slots) + 8;
    is_int(shm->arena->used, expect, "arena used bytes back to the slot array alone");
    is_int(shm->arena->nalloc, 1, "one live allocation: the slot array");
    ok(arena_check(shm->arena, NULL) == 0, "arena consistent at the end");
    shm_destroy(shm);
    return done_testing();
}
