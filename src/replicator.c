/*
 * replicator.c - replicator_main() (in progress: single-replica duties).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "rcu.h"
#include "replicator.h"
#include "util.h"

static volatile sig_atomic_t got_term;

static void on_signal(int sig) { got_term = 1; }

void replicator_main(shm_t *shm, const struct config *cfg, int slot)
{
    struct sigaction sa;
    sigset_t none;

    set_proc_name("kvsd-replicator");
    log_set_role("replicator", -1);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (getppid() != shm->master_pid)
        exit(0);
    rcu_register_sh(shm->rcu, slot, getpid());
    __atomic_store_n(&shm->ready, 1, __ATOMIC_RELEASE);
    while (!got_term && getppid() == shm->master_pid)
        usleep(100 * 1000);
    exit(0);
}
