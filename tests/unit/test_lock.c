/*
 * test_lock.c - unit tests for the store's writer lock (shm/lock.c): mutual
 * exclusion across processes, and owner-dead recovery when the holder
 * _exits or is SIGKILLed with the lock held, both through the next
 * acquire and through the master's lock_reap_sh().
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lock.h"
#include "tap.h"

struct shared {
    struct lock_sh lock;
    uint64_t hook_calls;
    void *hook_arg;
    uint64_t counter;
};

static struct shared *sh;

static void hook(void *arg)
{
    ++sh->hook_calls;
    sh->hook_arg = arg;
}

/* Fork a child that takes the lock and dies holding it. */
static void die_holding(int how)
{
    int fds[2], status;
    char c;
    pid_t pid;

    if (pipe(fds) != 0)
        abort();
    if ((pid = fork()) == 0) {
        lock_acquire_sh(&sh->lock);
        (void)!write(fds[1], "x", 1);
        if (how == SIGKILL)
            raise(SIGKILL);
        _exit(0);
    }
    close(fds[1]);
    (void)!read(fds[0], &c, 1);
    close(fds[0]);
    waitpid(pid, &status, 0);
}

static void hammer(int n)
{
    int i;

    for (i = 0; i < n; ++i) {
        lock_acquire_sh(&sh->lock);
        /* A non-atomic read-modify-write: lost updates if exclusion fails. */
        uint64_t v = sh->counter;
        if (i % 64 == 0)
            sched_yield();
        sh->counter = v + 1;
        lock_release_sh(&sh->lock);
    }
}

int main(void)
{
    pid_t pids[3];
    int i, status, clean = 1;

    plan(14);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        abort();
    ok(lock_size() >= sizeof(struct lock_sh), "lock_size covers the struct");
    lock_init(&sh->lock);
    lock_set_recover(&sh->lock, hook, &sh->counter);

    lock_acquire_sh(&sh->lock);
    lock_release_sh(&sh->lock);
    is_int(sh->lock.recoveries, 0, "plain acquire/release: no recovery");
    is_int(lock_reap_sh(&sh->lock), 0, "reap of a healthy, free lock does nothing");

    /* Mutual exclusion across processes. */
    for (i = 0; i < 3; ++i)
        if ((pids[i] = fork()) == 0) {
            hammer(20000);
            _exit(0);
        }
    for (i = 0; i < 3; ++i)
        clean &= waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    ok(clean, "three processes hammered the lock");
    is_int(sh->counter, 60000, "no update lost: the lock excludes across processes");

    /* The holder _exits: the next acquire recovers. */
    die_holding(0);
    lock_acquire_sh(&sh->lock);
    is_int(sh->lock.recoveries, 1, "owner _exit: recoveries == 1");
    is_int(sh->hook_calls, 1, "recover hook called once");
    ok(sh->hook_arg == &sh->counter, "recover hook got its argument");
    lock_release_sh(&sh->lock);
    lock_acquire_sh(&sh->lock);
    lock_release_sh(&sh->lock);
    is_int(sh->lock.recoveries, 1, "lock consistent again: next acquire is plain");

    /* The holder is SIGKILLed: the master's reap recovers. */
    die_holding(SIGKILL);
    is_int(lock_reap_sh(&sh->lock), 1, "owner SIGKILLed: lock_reap_sh recovers");
    is_int(sh->lock.recoveries, 2, "recoveries == 2");
    is_int(sh->hook_calls, 2, "recover hook called again");
    is_int(lock_reap_sh(&sh->lock), 0, "a second reap finds nothing to do");

    /* SIGKILL again, recovered by a plain acquire with no hook set. */
    lock_set_recover(&sh->lock, NULL, NULL);
    die_holding(SIGKILL);
    lock_acquire_sh(&sh->lock);
    lock_release_sh(&sh->lock);
    is_int(sh->lock.recoveries, 3, "owner SIGKILLed, no hook: acquire still recovers");
    munmap(sh, sizeof(*sh));
    return done_testing();
}
