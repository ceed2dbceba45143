/*
 * test_clock.c - unit tests for the vector clock and incarnation table
 * (shm/clock.c): interning and finding incarnations, retiring older
 * incarnations of an address, covers() with applied components and with
 * settled (INC_FINAL) retired ones, max-only advances, snapshots, the
 * Lamport clock, the table's limits, and garbage collection: folding,
 * floors, STALE rows, freeing and reuse after a grace epoch, and a table
 * that never fills across 10,000 lives of one address.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "tap.h"

static struct clock_sh clock_;
static struct clock_sh gc_;

/* Fold, free and reuse: lives of one address come and go forever. */
static void test_gc(void)
{
    struct clock_sh *c = &gc_;
    uint64_t snap[CLOCK_MAX];
    struct vc_pair m[1];
    int a, b1, b2, b3, floor, again, life, prev, cur, bad = 0;
    uint32_t folded;

    clock_init(c);
    a = clock_intern_sh(c, "10.0.0.1:8090", 1, 0);
    b1 = clock_intern_sh(c, "10.0.0.2:8090", 10, 0);
    clock_advance_sh(c, (uint32_t)b1, 3);
    b2 = clock_intern2_sh(c, "10.0.0.2:8090", 20, 100, 0, 0);
    ok(c->inc[b2].born_ms == 100 && (c->inc[b1].flags & INC_RETIRED), "a new life: born_ms set, the old one retired");
    clock_settle_sh(c, (uint32_t)b1, 3);
    clock_fold_sh(c, (uint32_t)b1, 4096);
    ok((c->inc[b1].flags & INC_FOLDED) && c->inc[b1].fold_pos == 4096, "fold: INC_FOLDED, fold_pos kept");
    is_int(clock_floor(c, "10.0.0.2:8090"), b1, "the folded life is the address's floor");
    is_int(clock_floor(c, "10.0.0.1:8090"), -1, "an address with nothing folded has no floor");
    m[0].id = (uint32_t)b1, m[0].n = 1000;
    ok(clock_covers(c, m, 1), "any count of a folded life is met");
    memset(snap, 0x5a, sizeof(snap));
    clock_snapshot(c, snap);
    ok(snap[b1] == 0 && snap[a] == 0 && snap[b2] == 0, "a folded life is never named (snapshot 0)");
    is_int(clock_intern_sh(c, "10.0.0.2:8090", 5, 0), b1, "an older stamp below the floor maps to the floor row");
    is_int(clock_intern_sh(c, "10.0.0.2:8090", 10, 0), b1, "so does the floor's own stamp");
    is_int(c->ninc, 3, "and no row was made");
    b3 = clock_intern_sh(c, "10.0.0.2:8090", 30, 0);
    clock_settle_sh(c, (uint32_t)b2, 0);
    clock_fold_sh(c, (uint32_t)b2, 8192);
    ok((c->inc[b1].flags & INC_STALE) && !(c->inc[b2].flags & INC_STALE), "a newer fold makes the old floor STALE");
    is_int(clock_floor(c, "10.0.0.2:8090"), b2, "the newer folded life is the floor");
    is_int(clock_intern_sh(c, "10.0.0.2:8090", 10, 0), b2, "a STALE life's stamp maps to the floor row");
    clock_count(c, &folded);
    is_int(folded, 2, "two folded rows until the STALE one is freed");
    clock_free_sh(c, (uint32_t)b1, 7);
    ok(c->inc[b1].flags == INC_FREE && c->applied[b1] == 0, "free: only INC_FREE, applied 0");
    is_int(clock_find(c, "10.0.0.2:8090", 10), -1, "a FREE row is never found");
    is_int(clock_count(c, NULL), 3, "three rows in use");
    is_int(clock_intern2_sh(c, "10.0.0.3:8090", 1, 0, 7, 0), 4, "not reused while a reader may hold epoch 7");
    is_int(clock_intern2_sh(c, "10.0.0.4:8090", 1, 0, 8, 0), b1, "reused once every reader is past it");
    ok(c->inc[b1].flags == 0 && c->inc[b1].stamp == 1 && strcmp(c->inc[b1].addr, "10.0.0.4:8090") == 0,
       "the reused row is a new live incarnation");
    (void)b3;

    /* A snapshot names a folded life we never knew: born folded, a floor. */
    floor = clock_intern2_sh(c, "10.0.0.5:8090", 50, 0, 0, 1);
    ok((c->inc[floor].flags & INC_FOLDED) && clock_floor(c, "10.0.0.5:8090") == floor, "born folded: a floor");
    again = clock_intern_sh(c, "10.0.0.5:8090", 40, 0);
    is_int(again, floor, "an older life of it maps to that floor");

    /* 10,000 lives of one address, folded and freed as the replicator
     * does: the table never fills. */
    clock_init(c);
    clock_intern_sh(c, "10.0.0.1:8090", 1, 0);
    prev = clock_intern_sh(c, "10.0.0.2:8090", 1000, 0);
    for (life = 2; life <= 10000; ++life) {
        uint32_t i;
        cur = clock_intern2_sh(c, "10.0.0.2:8090", 1000 + (uint64_t)life, 0, (uint64_t)life, 0);
        if (cur < 0) {
            bad = life;
            break;
        }
        clock_advance_sh(c, (uint32_t)cur, 1);
        clock_settle_sh(c, (uint32_t)prev, c->applied[prev]);
        clock_fold_sh(c, (uint32_t)prev, 0);
        for (i = 0; i < c->ninc; ++i)
            if ((c->inc[i].flags & (INC_STALE | INC_FREE)) == INC_STALE)
                clock_free_sh(c, i, (uint64_t)life);
        prev = cur;
    }
    ok(bad == 0 && c->ninc <= 5 && clock_count(c, NULL) == 3, "10,000 lives: at most 5 rows ever, 3 in use");
}

int main(void)
{
    struct clock_sh *c = &clock_;
    uint64_t snap[CLOCK_MAX];
    struct vc_pair m[3];
    char addr[32];
    int i, a1, b1, a2, a0, full = 1;

    plan(34 + 22);
    test_gc();
    ok(clock_size() >= sizeof(struct clock_sh), "clock_size covers the struct");
    memset(c, 0xff, sizeof(*c));
    clock_init(c);
    ok(c->ninc == 0 && c->self == -1 && c->lamport == 0 && c->applied[7] == 0, "init: empty, no self");

    a1 = clock_intern_sh(c, "10.0.0.1:8090", 100, 1000);
    b1 = clock_intern_sh(c, "10.0.0.2:8090", 100, 1000);
    is_int(a1, 0, "first incarnation gets id 0");
    is_int(b1, 1, "second gets id 1");
    is_int(clock_intern_sh(c, "10.0.0.1:8090", 100, 2000), a1, "interning again returns the same id");
    is_int(c->ninc, 2, "two rows published");
    is_int(clock_find(c, "10.0.0.2:8090", 100), b1, "find by address and stamp");
    is_int(clock_find(c, "10.0.0.2:8090", 101), -1, "another stamp is another incarnation");
    is_int(clock_find(c, "10.0.0.3:8090", 100), -1, "unknown address");
    ok(c->inc[a1].flags == 0 && c->inc[b1].flags == 0, "nobody retired yet");

    /* A restart: same address, newer stamp. */
    a2 = clock_intern_sh(c, "10.0.0.1:8090", 200, 5000);
    is_int(a2, 2, "the new incarnation gets a new id");
    ok(c->inc[a1].flags & INC_RETIRED, "the old incarnation of the address is retired");
    is_int(c->inc[a1].retired_at_ms, 5000, "retired_at_ms is the intern time");
    ok(!(c->inc[a2].flags & INC_RETIRED) && !(c->inc[b1].flags & INC_RETIRED), "the others are not");
    /* An even older incarnation learned late is born retired. */
    a0 = clock_intern_sh(c, "10.0.0.1:8090", 50, 6000);
    ok(a0 == 3 && (c->inc[a0].flags & INC_RETIRED) && !(c->inc[a2].flags & INC_RETIRED),
       "an older stamp learned late is born retired, the newest stays live");

    /* covers() */
    clock_advance_sh(c, b1, 5);
    clock_advance_sh(c, b1, 3);
    is_int(clock_applied(c, b1), 5, "advance keeps the maximum");
    ok(clock_covers(c, NULL, 0), "the empty clock is covered");
    m[0].id = (uint32_t)b1, m[0].n = 5;
    ok(clock_covers(c, m, 1), "{b:5} covered by applied 5");
    m[0].n = 6;
    ok(!clock_covers(c, m, 1), "{b:6} not covered");
    m[0].id = 9, m[0].n = 0;
    ok(!clock_covers(c, m, 1), "an unknown id is never covered");

    clock_advance_sh(c, a1, 4);
    m[0].id = (uint32_t)b1, m[0].n = 5;
    m[1].id = (uint32_t)a1, m[1].n = 10;
    ok(!clock_covers(c, m, 2), "a retired but unsettled incarnation still has to be applied");
    clock_settle_sh(c, (uint32_t)a1, 7);
    ok((c->inc[a1].flags & INC_FINAL) && c->inc[a1].final_seq == 7, "settle sets final_seq and INC_FINAL");
    ok(!clock_covers(c, m, 2), "settled at 7 with only 4 applied: seqs 5..7 survive somewhere, still wait");
    clock_advance_sh(c, a1, 7);
    ok(clock_covers(c, m, 2), "everything up to final_seq applied: seqs past it (lost) count as met");
    m[2].id = (uint32_t)b1, m[2].n = 99;
    ok(!clock_covers(c, m, 3), "but not a live component beside it");
    clock_settle_sh(c, (uint32_t)b1, 1);
    ok(!(c->inc[b1].flags & INC_FINAL), "a live incarnation is never settled");

    memset(snap, 0x5a, sizeof(snap));
    is_int(clock_snapshot(c, snap), 4, "snapshot returns ninc");
    ok(snap[a1] == 7 && snap[b1] == 5 && snap[a2] == 0 && snap[4] == 0x5a5a5a5a5a5a5a5a &&
           snap[CLOCK_MAX - 1] == 0x5a5a5a5a5a5a5a5a,
       "snapshot copies applied[0..ninc) and leaves the rest alone");

    is_int(clock_lamport_observe_sh(c, 10), 10, "lamport rises to what it sees");
    is_int(clock_lamport_observe_sh(c, 3), 10, "and never falls");

    /* Limits. */
    ok(clock_intern_sh(c, "255.255.255.255:65535", 1, 0) >= 0, "the longest address fits");
    is_int(clock_intern_sh(c, "255.255.255.255:65535000", 1, 0), -1, "a longer one is refused");
    for (i = (int)c->ninc; i < CLOCK_MAX; ++i) {
        snprintf(addr, sizeof(addr), "10.1.%d.%d:1", i / 256, i % 256);
        full &= clock_intern_sh(c, addr, 1, 0) == i;
    }
    ok(full && c->ninc == CLOCK_MAX, "the table fills to CLOCK_MAX");
    is_int(clock_intern_sh(c, "10.9.9.9:1", 1, 0), -1, "a full table refuses a new incarnation");
    return done_testing();
}
