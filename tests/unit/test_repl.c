/*
 * test_repl.c - unit tests for the replicator's shared region
 * (shm/repl.c): init, state names, and repl_view_add_sh(): a new row gets
 * the given state and a clean slate, a returning row gets the new state
 * but keeps its acked clock, a member already in the view is left alone,
 * a full table or an over-long address is refused, and (single-stepping
 * a child with ptrace) no reader can ever see the member in the view
 * before its state is set.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repl.h"
#include "tap.h"
#include "view.h"

static struct view_sh *view;
static struct repl_sh *repl;

static void test_init(void)
{
    memset(repl, 0x5a, sizeof(*repl));
    repl_init(repl);
    ok(repl->ready == 0 && repl->sleeping == 0 && repl->snapshot_req == 0 && repl->snapshot_from[0] == '\0' &&
         repl->peer[VIEW_MAX - 1].acked[CLOCK_MAX - 1] == 0 && repl->peer[0].state == PEER_JOINING,
       "repl_init clears flags and every row");
    ok(((uintptr_t)&repl->peer[0] & 63) == 0 && repl_size() % 64 == 0, "the rows start on their own cache line");
}

static void test_add(void)
{
    char addr[ADDR_MAX];
    int i, all = 1;

    view_init(view);
    repl_init(repl);
    /* what a row of another store might have left: a new row starts clean */
    repl->peer[1].acked[3] = 99;
    repl->peer[1].acked_at_ms = 5;
    is_int(repl_view_add_sh(repl, view, "10.0.0.1:8090", PEER_SELF), 1, "add A as self");
    is_int(repl_view_add_sh(repl, view, "10.0.0.2:8090", PEER_JOINING), 1, "add B joining");
    ok(repl->peer[0].state == PEER_SELF && repl->peer[1].state == PEER_JOINING, "each row holds its state");
    ok(repl->peer[1].acked[3] == 0 && repl->peer[1].acked_at_ms == 0, "a new row starts with no acked clock");

    repl->peer[1].state = PEER_ACTIVE;
    is_int(repl_view_add_sh(repl, view, "10.0.0.2:8090", PEER_JOINING), 0, "adding B again: already in the view");
    is_int(repl->peer[1].state, PEER_ACTIVE, "...and its state is left alone");

    is_int(view_remove_sh(view, "10.0.0.2:8090"), 1, "remove B");
    repl->peer[1].state = PEER_EVICTED;
    repl->peer[1].acked[3] = 77;
    repl->peer[1].acked_at_ms = 1234;
    repl->peer[1].since_ms = 42;
    is_int(repl_view_add_sh(repl, view, "10.0.0.2:8090", PEER_ACTIVE), 1, "re-add B");
    ok(view_find(view, "10.0.0.2:8090") == 1 && view->n == 2, "B is back in its old row");
    ok(repl->peer[1].state == PEER_ACTIVE && repl->peer[1].acked[3] == 77 && repl->peer[1].acked_at_ms == 1234 &&
         repl->peer[1].since_ms == 42,
       "with the new state and its acked clock kept");
    is_int(
      repl_view_add_sh(repl, view, "255.255.255.255:65535000", PEER_ACTIVE), -1, "an over-long address is refused");

    for (i = 2; i < VIEW_MAX; ++i) {
        snprintf(addr, sizeof(addr), "10.0.1.%d:8090", i);
        all &= repl_view_add_sh(repl, view, addr, PEER_ACTIVE) == 1 && repl->peer[i].state == PEER_ACTIVE;
    }
    ok(all && view->n == VIEW_MAX, "the table fills to VIEW_MAX, every row in its state");
    is_int(repl_view_add_sh(repl, view, "10.0.2.1:8090", PEER_ACTIVE), -1, "a full table refuses a new address");
    view_remove_sh(view, "10.0.1.5:8090");
    repl->peer[5].state = PEER_EVICTED;
    ok(repl_view_add_sh(repl, view, "10.0.1.5:8090", PEER_JOINING) == 1 && repl->peer[5].state == PEER_JOINING,
       "but a known address comes back, in its new state");
}

static void test_names(void)
{
    ok(strcmp(peer_state_name(PEER_JOINING), "joining") == 0 && strcmp(peer_state_name(PEER_ACTIVE), "active") == 0 &&
         strcmp(peer_state_name(PEER_SUSPECT), "suspect") == 0 &&
         strcmp(peer_state_name(PEER_EVICTED), "evicted") == 0 &&
         strcmp(peer_state_name(PEER_PROBING), "probing") == 0 && strcmp(peer_state_name(PEER_SELF), "self") == 0,
       "every state has its name");
    ok(strcmp(peer_state_name(99), "unknown") == 0 && strcmp(peer_state_name(-1), "unknown") == 0,
       "out of range: unknown");
}

/* A child runs repl_view_add_sh(addr, want) one instruction at a time;
 * after each, the parent looks as a reader would.  Returns how many
 * steps showed row in the view with another state than want, or -1 if
 * the child could not be traced. */
static long stepped_add(const char *addr, int row, int want, long *steps)
{
    long bad = 0;
    int status;
    pid_t pid;

    *steps = 0;
    fflush(stdout);
    if ((pid = fork()) == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
            _exit(2);
        raise(SIGSTOP);
        repl_view_add_sh(repl, view, addr, want);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    if (!WIFSTOPPED(status)) {
        waitpid(pid, &status, 0);
        return -1;
    }
    while (*steps < 10000000 && ptrace(PTRACE_SINGLESTEP, pid, NULL, NULL) == 0 && waitpid(pid, &status, 0) == pid &&
           WIFSTOPPED(status)) {
        ++*steps;
        if (__atomic_load_n(&view->n, __ATOMIC_ACQUIRE) > (uint32_t)row && view->m[row].in_view &&
            repl->peer[row].state != (uint32_t)want)
            ++bad;
    }
    if (WIFSTOPPED(status)) {
        kill(pid, SIGKILL);
        ptrace(PTRACE_CONT, pid, NULL, NULL);
        waitpid(pid, &status, 0);
    }
    return bad;
}

static void test_order(void)
{
    long bad, steps;

    view_init(view);
    repl_init(repl);
    repl_view_add_sh(repl, view, "10.0.0.1:8090", PEER_SELF);
    if ((bad = stepped_add("10.0.0.2:8090", 1, PEER_ACTIVE, &steps)) < 0) {
        ok(0, "cannot ptrace a child here: the publication order is untested");
        ok(0, "cannot ptrace a child here: the publication order is untested");
        return;
    }
    ok(bad == 0 && view->n == 2 && repl->peer[1].state == PEER_ACTIVE,
       "a new row is never seen in the view before its state (%ld steps, %ld bad)",
       steps,
       bad);
    view_remove_sh(view, "10.0.0.2:8090");
    repl->peer[1].state = PEER_EVICTED;
    bad = stepped_add("10.0.0.2:8090", 1, PEER_JOINING, &steps);
    ok(bad == 0 && view_contains(view, "10.0.0.2:8090") && repl->peer[1].state == PEER_JOINING,
       "nor a returning row back in the view in its old state (%ld steps, %ld bad)",
       steps,
       bad);
}

int main(void)
{
    plan(21);
    view = mmap(NULL, sizeof(*view), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    repl = mmap(NULL, sizeof(*repl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (view == MAP_FAILED || repl == MAP_FAILED)
        abort();
    ok(repl_size() >= sizeof(struct repl_sh), "repl_size covers the struct");
    test_init();
    test_add();
    test_names();
    test_order();
    munmap(view, sizeof(*view));
    munmap(repl, sizeof(*repl));
    return done_testing();
}
