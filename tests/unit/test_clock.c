/*
 * test_clock.c - unit tests for the vector clock and incarnation table
 * (shm/clock.c): interning and finding incarnations, retiring older
 * incarnations of an address, covers() with applied components and with
 * settled (INC_FINAL) retired ones, max-only advances, snapshots, the
 * Lamport clock, and the table's limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "tap.h"

static struct clock_sh clock_;

int main(void)
{
    struct clock_sh *c = &clock_;
    uint64_t snap[CLOCK_MAX];
    struct vc_pair m[3];
    char addr[32];
    int i, a1, b1, a2, a0, full = 1;

    plan(34);
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
