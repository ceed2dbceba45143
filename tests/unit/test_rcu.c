/*
 * test_rcu.c - unit tests for the cross-process epoch RCU (shm/rcu.c):
 * retire and reclaim with no readers, a reader in this process and in a
 * forked one holding back reclamation exactly as long as it is inside its
 * read-side section, FIFO order by epoch, rcu_clear_slot_sh()
 * releasing the slot of a reader killed inside its section, and
 * rcu_recover_sh() repairing the retire list a writer killed between two
 * stores left behind.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "rcu.h"
#include "tap.h"

#define ARENA_BYTES (1u << 20)

struct shared {
    struct rcu_sh rcu;
    struct arena_sh arena;
    char mem[ARENA_BYTES];
};

static struct shared *sh;

static struct rcu_node *node_new(void)
{
    struct rcu_node *n = arena_alloc_sh(&sh->arena, 64);

    if (n == NULL)
        abort();
    memset(n, 0x5a, 64);
    return n;
}

/* A child that registers slot 1, enters its read side, tells us, and then
 * waits for a byte before leaving (or is killed before it can). */
static pid_t reader_child(int *go_fd)
{
    int ready[2], go[2];
    pid_t pid;
    char c;

    if (pipe(ready) != 0 || pipe(go) != 0)
        abort();
    if ((pid = fork()) == 0) {
        close(ready[0]);
        close(go[1]);
        rcu_register_sh(&sh->rcu, 1, getpid());
        rcu_read_lock_sh(&sh->rcu, 1);
        (void)!write(ready[1], "r", 1);
        (void)!read(go[0], &c, 1);
        rcu_read_unlock_sh(&sh->rcu, 1);
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    (void)!read(ready[0], &c, 1);
    close(ready[0]);
    *go_fd = go[1];
    return pid;
}

/* The first half of rcu_retire_sh(): node linked, the process killed
 * before it moved tail (or counted the node). */
static void link_only(struct rcu_node *node)
{
    node->epoch = sh->rcu.epoch;
    node->next = NULL;
    if (sh->rcu.head == NULL)
        sh->rcu.head = node;
    else
        sh->rcu.tail->next = node;
}

/* The first half of rcu_reclaim_sh() on a one-node list: head cleared and
 * the node freed, the process killed before it cleared tail. */
static void pop_only(void)
{
    struct rcu_node *node = sh->rcu.head;

    sh->rcu.head = node->next;
    arena_free_sh(&sh->arena, node);
}

/* What the next writer does after the owner-dead recovery: retire one
 * more object and reclaim everything.  In a child, so a stale tail that
 * is followed shows as a signal, not as the end of this test. */
static int next_writer_ok(size_t want_freed)
{
    pid_t pid;
    int status;

    fflush(stdout);
    if ((pid = fork()) == 0) {
        rcu_recover_sh(&sh->rcu);
        rcu_retire_sh(&sh->rcu, node_new());
        _exit(rcu_reclaim_sh(&sh->rcu, &sh->arena) == want_freed && sh->rcu.pending == 0 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status))
        printf("# next writer killed by signal %d\n", WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_torn_retire_list(uint64_t used0)
{
    struct rcu_node *a, *b;

    /* the case: empty list, killed between head and tail */
    ok(sh->rcu.head == NULL && sh->rcu.tail == NULL, "torn: start from an empty list");
    link_only(node_new());
    ok(sh->rcu.head != NULL && sh->rcu.tail == NULL, "torn: head set, tail still NULL");
    ok(next_writer_ok(2), "after recovery, the next retire and reclaim work (both objects freed)");

    /* a reclaim killed before it cleared tail, then a retire killed
     * before it set it: tail names a freed block while head is set */
    a = node_new();
    b = node_new(); /* before a is freed: not the same block */
    rcu_retire_sh(&sh->rcu, a);
    pop_only();
    link_only(b);
    ok(sh->rcu.tail == a && sh->rcu.head != a, "torn twice: tail is a freed block, head a live one");
    ok(next_writer_ok(2), "after recovery, retire and reclaim never follow the freed tail");

    /* a non-empty list, killed after linking, before moving tail */
    a = node_new();
    b = node_new();
    rcu_retire_sh(&sh->rcu, a);
    rcu_retire_sh(&sh->rcu, b);
    link_only(node_new());
    ok(sh->rcu.tail == b && b->next != NULL, "torn: tail is the node before the last");
    is_int(rcu_recover_sh(&sh->rcu), 1, "rcu_recover_sh reports the repair");
    ok(sh->rcu.tail == b->next && sh->rcu.pending == 3, "tail is the last node, pending counts all three");
    is_int(rcu_recover_sh(&sh->rcu), 0, "a consistent list is left alone");
    ok(next_writer_ok(4), "the next retire is not lost: all four objects freed");
    ok(sh->rcu.head == NULL && sh->arena.used == used0 && arena_check(&sh->arena, NULL) == 0,
       "list empty, arena back to empty and consistent");
}

int main(void)
{
    struct rcu_node *a, *b, *c;
    uint64_t used0, e;
    int go, status;
    pid_t pid;

    plan(38);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        abort();
    ok(rcu_size() >= sizeof(struct rcu_sh), "rcu_size covers the struct");
    rcu_init(&sh->rcu);
    arena_init(&sh->arena, sh->mem, sizeof(sh->mem));
    used0 = sh->arena.used;
    is_int(sh->rcu.epoch, 1, "global epoch starts at 1");
    ok(rcu_min_epoch_sh(&sh->rcu) == UINT64_MAX, "no reader: min epoch is UINT64_MAX");
    rcu_register_sh(&sh->rcu, 0, getpid());

    /* No reader: retired objects go at once. */
    a = node_new();
    rcu_retire_sh(&sh->rcu, a);
    is_int(a->epoch, 1, "retired object stamped with the epoch it was unlinked in");
    is_int(sh->rcu.epoch, 2, "retire bumps the global epoch");
    is_int(sh->rcu.pending, 1, "one object pending");
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 1, "reclaim with no reader frees it");
    is_int(sh->rcu.pending, 0, "nothing pending");
    is_int(sh->arena.used, used0, "its arena block is free again");

    /* A reader in this process. */
    a = node_new();
    rcu_read_lock_sh(&sh->rcu, 0);
    e = sh->rcu.slots[0].epoch;
    ok(e == sh->rcu.epoch, "read lock publishes the global epoch in the slot");
    rcu_retire_sh(&sh->rcu, a);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 0, "reader inside its section holds back reclamation");
    is_int(rcu_min_epoch_sh(&sh->rcu), e, "min epoch is the reader's");
    rcu_read_unlock_sh(&sh->rcu, 0);
    is_int(sh->rcu.slots[0].epoch, 0, "read unlock makes the slot idle");
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 1, "after the reader leaves, reclaim frees it");

    /* A reader that entered after a retirement does not hold that object
     * back, only the ones retired while it was inside. */
    a = node_new();
    b = node_new();
    rcu_retire_sh(&sh->rcu, a);
    rcu_read_lock_sh(&sh->rcu, 0);
    rcu_retire_sh(&sh->rcu, b);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 1, "object retired before the reader entered is freed");
    ok(sh->rcu.head == b && sh->rcu.pending == 1, "the one retired during its section stays");
    rcu_read_unlock_sh(&sh->rcu, 0);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 1, "and goes once it leaves");
    ok(sh->rcu.head == NULL && sh->rcu.tail == NULL, "retire list empty");

    /* A reader in another process. */
    pid = reader_child(&go);
    is_int(sh->rcu.slots[1].pid, pid, "child registered its pid in slot 1");
    a = node_new();
    rcu_retire_sh(&sh->rcu, a);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 0, "reader in another process holds back reclamation");
    (void)!write(go, "g", 1);
    close(go);
    waitpid(pid, &status, 0);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 1, "freed once that reader left its section");

    /* A reader killed inside its section: only the master's clear helps. */
    pid = reader_child(&go);
    b = node_new();
    c = node_new();
    rcu_retire_sh(&sh->rcu, b);
    rcu_retire_sh(&sh->rcu, c);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(go);
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 0, "a dead reader's slot still holds back reclamation");
    rcu_clear_slot_sh(&sh->rcu, 1);
    ok(sh->rcu.slots[1].epoch == 0 && sh->rcu.slots[1].pid == 0, "clear_slot zeroes epoch and pid");
    is_int(rcu_reclaim_sh(&sh->rcu, &sh->arena), 2, "after clear_slot both objects are freed");
    is_int(sh->rcu.pending, 0, "nothing pending at the end");
    is_int(sh->rcu.reclaimed, 7, "reclaimed counts every freed object");
    ok(sh->arena.used == used0 && arena_check(&sh->arena, NULL) == 0, "arena back to empty and consistent");
    test_torn_retire_list(used0);
    munmap(sh, sizeof(*sh));
    return done_testing();
}
