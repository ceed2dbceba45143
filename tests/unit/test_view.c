/*
 * test_view.c - unit tests for the view table (shm/view.c): add, remove,
 * re-add into the same row, the row an address gets, list, find,
 * contains, a full table, lock-free view_list() readers in another process racing a
 * writer that keeps changing membership, and a writer killed inside its
 * seqlock write section: readers stall a bounded time once per read, and
 * view_recover_sh() closes the section.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "view.h"

static struct view_sh *view;

static void test_basic(void)
{
    char out[VIEW_MAX][ADDR_MAX];
    uint64_t v0;
    int fresh;

    view_init(view);
    is_int(view_add_sh(view, "10.0.0.1:8090"), 1, "add A");
    is_int(view_add_sh(view, "10.0.0.1:8090"), 0, "adding A again: already in the view");
    is_int(view_add_sh(view, "10.0.0.2:8090"), 1, "add B");
    ok(view_contains(view, "10.0.0.1:8090") && view_contains(view, "10.0.0.2:8090"), "both contained");
    ok(!view_contains(view, "10.0.0.3:8090"), "C is not");
    ok(view_find(view, "10.0.0.1:8090") == 0 && view_find(view, "10.0.0.2:8090") == 1, "find gives row indexes");
    is_int(view_list(view, out, VIEW_MAX), 2, "list has two members");
    ok(strcmp(out[0], "10.0.0.1:8090") == 0 && strcmp(out[1], "10.0.0.2:8090") == 0, "in row order");
    is_int(view_list(view, out, 1), 1, "list stops at max");

    v0 = view->version;
    is_int(view_remove_sh(view, "10.0.0.1:8090"), 1, "remove A");
    is_int(view_remove_sh(view, "10.0.0.1:8090"), 0, "removing A again: not in the view");
    ok(view->version == v0 + 1 && view->seq % 2 == 0, "version bumped once, seqlock even");
    ok(!view_contains(view, "10.0.0.1:8090"), "A no longer contained");
    is_int(view_find(view, "10.0.0.1:8090"), 0, "but keeps its row");
    is_int(view_list(view, out, VIEW_MAX), 1, "list has one member");
    ok(strcmp(out[0], "10.0.0.2:8090") == 0, "B");

    ok(view_row_sh(view, "10.0.0.1:8090", &fresh) == 0 && !fresh, "A would come back to its row 0");
    ok(view_row_sh(view, "10.0.0.2:8090", &fresh) == 1 && !fresh, "B, in the view, has row 1");
    ok(view_row_sh(view, "10.0.0.3:8090", &fresh) == 2 && fresh, "C would get the next unused row");
    ok(view_row_sh(view, "255.255.255.255:65535000", &fresh) == -1 && !fresh, "an over-long address gets none");
    is_int(view_add_sh(view, "10.0.0.1:8090"), 1, "re-add A");
    ok(view_find(view, "10.0.0.1:8090") == 0 && view->n == 2, "A is back in its old row, no new row taken");
    ok(view_add_sh(view, "255.255.255.255:65535000") == -1, "an over-long address is refused");
}

static void test_full(void)
{
    char addr[ADDR_MAX];
    int i, fresh, all = 1;

    view_init(view);
    for (i = 0; i < VIEW_MAX; ++i) {
        snprintf(addr, sizeof(addr), "10.0.1.%d:8090", i);
        all &= view_add_sh(view, addr) == 1;
    }
    ok(all && view->n == VIEW_MAX, "the table fills to VIEW_MAX");
    is_int(view_add_sh(view, "10.0.2.1:8090"), -1, "a full table refuses a new address");
    ok(view_row_sh(view, "10.0.2.1:8090", &fresh) == -1 && view_row_sh(view, "10.0.1.5:8090", &fresh) == 5 && !fresh,
       "and has no row for it, but one for a known address");
    is_int(view_remove_sh(view, "10.0.1.5:8090"), 1, "removing frees no row...");
    is_int(view_add_sh(view, "10.0.2.1:8090"), -1, "...so a new address still does not fit");
    is_int(view_add_sh(view, "10.0.1.5:8090"), 1, "but a known address comes back");
}

/* A writer flips membership while a reader in another process lists:
 * every listing must be a set of whole, known addresses, A always in it. */
static void test_concurrent(void)
{
    char out[VIEW_MAX][ADDR_MAX], addr[ADDR_MAX];
    int i, k, status, lists = 0, good = 1;
    size_t n, j;
    pid_t pid;

    view_init(view);
    view_add_sh(view, "10.0.0.1:8090");
    if ((pid = fork()) == 0) {
        for (k = 0; k < 200000; ++k) {
            i = k % 16;
            snprintf(addr, sizeof(addr), "10.0.3.%d:%d", i, 8000 + i);
            if (k % 32 < 16)
                view_add_sh(view, addr);
            else
                view_remove_sh(view, addr);
        }
        _exit(0);
    }
    do {
        n = view_list(view, out, VIEW_MAX);
        ++lists;
        good &= n >= 1 && n <= 17 && strcmp(out[0], "10.0.0.1:8090") == 0;
        for (j = 1; j < n; ++j) {
            int a, b;
            good &= sscanf(out[j], "10.0.3.%d:%d", &a, &b) == 2 && b == 8000 + a;
        }
        good &= view_contains(view, "10.0.0.1:8090");
    } while (waitpid(pid, &status, WNOHANG) == 0);
    ok(good, "%d lock-free listings during membership churn were all whole", lists);
    ok(view->seq % 2 == 0 && view->n == 17, "writer done: seqlock even, 17 rows");
}

/* A child adds ADDR_NEW and is SIGKILLed at the first instruction where
 * the new row is visible (n moved) and the section still open (seq odd),
 * found by single-stepping it.  Without ptrace, the same state is built
 * by hand.  Returns 1 if a real process was killed there. */
#define ADDR_NEW "10.0.5.5:8090"

static int kill_inside_write_section(uint32_t n0)
{
    uint64_t steps = 0;
    int status, hit = 0;
    pid_t pid;

    fflush(stdout);
    if ((pid = fork()) == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
            _exit(2);
        raise(SIGSTOP);
        view_add_sh(view, ADDR_NEW);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    if (WIFSTOPPED(status)) {
        while (steps++ < 10000000 && ptrace(PTRACE_SINGLESTEP, pid, NULL, NULL) == 0 && waitpid(pid, &status, 0) == pid &&
               WIFSTOPPED(status))
            if ((hit = view->n == n0 + 1 && (view->seq & 1)))
                break;
        kill(pid, SIGKILL);
        ptrace(PTRACE_CONT, pid, NULL, NULL);
    }
    waitpid(pid, &status, 0);
    if (hit)
        return 1;
    printf("# no ptrace: building the torn state by hand\n");
    view_init(view);
    view_add_sh(view, "10.0.0.1:8090");
    view->seq++;
    strcpy(view->m[n0].addr, ADDR_NEW);
    view->m[n0].used = view->m[n0].in_view = 1;
    view->n = n0 + 1;
    return 0;
}

static void test_dead_writer(void)
{
    char out[VIEW_MAX][ADDR_MAX];
    uint64_t version0, stalls0;
    int i, reads = 0, good = 1;

    view_init(view);
    view_add_sh(view, "10.0.0.1:8090");
    version0 = view->version;
    stalls0 = view->stalls;
    if (kill_inside_write_section(1))
        printf("# a writer was SIGKILLed inside its write section\n");
    ok((view->seq & 1) && view->n == 2 && view->version == version0, "it left seq odd, the new row counted, no version bump");
    for (i = 0; i < 100; ++i) {
        good &= view_list(view, out, VIEW_MAX) == 2 && strcmp(out[1], ADDR_NEW) == 0;
        good &= view_contains(view, ADDR_NEW) && view_find(view, "10.0.0.1:8090") == 0;
        reads += 3;
    }
    ok(good, "lock-free reads still answer, the dead writer's row whole");
    is_int(view->stalls - stalls0, (uint64_t)reads, "each read stalled once (bounded spins, one copy), not once per retry");
    is_int(view_recover_sh(view), 1, "view_recover_sh closes the open section");
    ok(view->seq % 2 == 0 && view->version == version0 + 1, "seq even, version bumped for the replicator");
    stalls0 = view->stalls;
    good = view_list(view, out, VIEW_MAX) == 2 && view_contains(view, ADDR_NEW);
    ok(good && view->stalls == stalls0, "readers no longer stall");
    is_int(view_recover_sh(view), 0, "a closed section is left alone");
    ok(view_add_sh(view, "10.0.5.6:8090") == 1 && view->seq % 2 == 0 && view->n == 3, "the next writer works");
}

int main(void)
{
    plan(40);
    view = mmap(NULL, sizeof(*view), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (view == MAP_FAILED)
        abort();
    ok(view_size() >= sizeof(struct view_sh), "view_size covers the struct");
    test_basic();
    test_full();
    test_concurrent();
    test_dead_writer();
    munmap(view, sizeof(*view));
    return done_testing();
}
