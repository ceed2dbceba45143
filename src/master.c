/*
 * master.c - master_main(): create the store, fork, supervise.
 *
 * Modelled on nginx's master cycle.  The shared mapping is created before
 * any fork so every pointer in it is valid in every child.  Signals are
 * blocked and taken synchronously with sigtimedwait(), so the loop is a
 * flat list of checks: a child died (clear its RCU slot, run owner-dead
 * recovery of the writer lock, respawn it, with a back-off if it keeps
 * dying), SIGHUP (reopen the log, tell the children), SIGTERM/SIGINT
 * (tell the children to drain, wait for them, exit 0).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datadir.h"
#include "lock.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "persist.h"
#include "rcu.h"
#include "repl.h"
#include "replicator.h"
#include "shm.h"
#include "stats.h"
#include "store.h"
#include "util.h"
#include "view.h"
#include "worker.h"

#define STOP_TIMEOUT_MS 10000
#define CRASH_WINDOW_MS 1000 /* a child dying sooner than this is backed off */
#define RESPAWN_BACKOFF_MS 500

enum role { ROLE_WORKER, ROLE_REPLICATOR, ROLE_PERSISTER };

struct child {
    pid_t pid;
    enum role role;
    int index; /* worker number */
    int slot;  /* RCU reader slot */
    uint64_t started_ms;
    uint64_t respawn_at_ms; /* 0: running or not due */
};

static struct master {
    const struct config *cfg;
    shm_t *shm;
    struct child child[SHM_MAX_PROCS];
    int nchild;
} m;

static void spawn(struct child *c)
{
    pid_t pid = fork();

    if (pid == -1) {
        log_error("fork: %s; retrying", strerror(errno));
        c->respawn_at_ms = now_ms() + RESPAWN_BACKOFF_MS;
        return;
    }
    if (pid == 0) {
        const char *why;
        if (shm_verify(m.shm, &why) != 0) /* never run on a store we cannot read */
            fatalx("%s", why);
        if (c->role == ROLE_WORKER)
            worker_main(m.shm, m.cfg, c->index, c->slot);
        if (c->role == ROLE_PERSISTER)
            persister_main(m.shm, m.cfg, c->slot);
        replicator_main(m.shm, m.cfg, c->slot);
    }
    c->pid = pid;
    c->started_ms = now_ms();
    c->respawn_at_ms = 0;
    __atomic_add_fetch(&m.shm->generation, 1, __ATOMIC_RELAXED);
}

static const char *child_name(const struct child *c, char *buf, size_t len)
{
    if (c->role == ROLE_REPLICATOR)
        return "replicator";
    if (c->role == ROLE_PERSISTER)
        return "persister";
    snprintf(buf, len, "worker[%d]", c->index);
    return buf;
}

/* A child is gone: release what it held, schedule its replacement. */
static void reap(pid_t pid, int status)
{
    char name[32];
    int i;

    for (i = 0; i < m.nchild; ++i) {
        struct child *c = &m.child[i];
        uint64_t now = now_ms();

        if (c->pid != pid)
            continue;
        c->pid = 0;
        rcu_clear_slot_sh(m.shm->rcu, c->slot);
        /* if it died holding the writer lock, recover the store now
         * rather than on the next write */
        if (lock_reap_sh(m.shm->lock))
            log_warn("recovered the store after a writer died holding the lock");
        if (WIFSIGNALED(status))
            log_warn("%s (pid %d) killed by signal %d; restarting",
                     child_name(c, name, sizeof(name)),
                     (int)pid,
                     WTERMSIG(status));
        else
            log_warn("%s (pid %d) exited with status %d; restarting",
                     child_name(c, name, sizeof(name)),
                     (int)pid,
                     WEXITSTATUS(status));
        stats_add(&m.shm->stats->child_restarts, 1);
        c->respawn_at_ms = now - c->started_ms < CRASH_WINDOW_MS ? now + RESPAWN_BACKOFF_MS : now;
        return;
    }
}

static void signal_children(int sig)
{
    int i;
    for (i = 0; i < m.nchild; ++i)
        if (m.child[i].pid > 0)
            kill(m.child[i].pid, sig);
}

/* Children other than the persister; or the persister alone. */
static void signal_role(int sig, int persister)
{
    int i;
    for (i = 0; i < m.nchild; ++i)
        if (m.child[i].pid > 0 && (m.child[i].role == ROLE_PERSISTER) == persister)
            kill(m.child[i].pid, sig);
}

static int live_children(void)
{
    int i, n = 0;
    for (i = 0; i < m.nchild; ++i)
        n += m.child[i].pid > 0;
    return n;
}

static int live_writers(void)
{
    int i, n = 0;
    for (i = 0; i < m.nchild; ++i)
        n += m.child[i].pid > 0 && m.child[i].role != ROLE_PERSISTER;
    return n;
}

/* Workers and the replicator first (they drain: in-flight writes still
 * apply, and each acknowledged write is in the log ring); the persister
 * last, once nothing can append, so a clean stop leaves on disk every
 * write this replica applied -- peers trim their logs by what it said it
 * had, and it must come back with at least that. */
static void shutdown_children(void)
{
    uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    int status, persister_told = 0;
    pid_t pid;

    signal_role(SIGTERM, 0);
    while (live_children() > 0) {
        if (!persister_told && live_writers() == 0) {
            signal_role(SIGTERM, 1);
            persister_told = 1;
        }
        if (now_ms() > deadline) {
            log_warn("children did not stop in %d ms; killing them", STOP_TIMEOUT_MS);
            signal_children(SIGKILL);
            deadline = UINT64_MAX;
        }
        if ((pid = waitpid(-1, &status, 0)) > 0) {
            int i;
            for (i = 0; i < m.nchild; ++i)
                if (m.child[i].pid == pid)
                    m.child[i].pid = 0;
        } else if (errno == ECHILD) {
            break;
        }
    }
}

static shm_t *create_store(const struct config *cfg)
{
    struct shm_params params = { cfg->memory, cfg->rlog_size };
    shm_t *shm;
    size_t i;

    if ((shm = shm_create(&params)) == NULL)
        fatal("cannot create a %zu-byte shared-memory store", cfg->memory);
    shm->master_pid = getpid();
    if ((shm->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
        fatal("eventfd");
    if (store_setup(shm, cfg->address, wallclock_ms()) != 0)
        fatalx("cannot set up the store");
    lock_acquire_sh(shm->lock);
    for (i = 0; i < cfg->nview; ++i)
        repl_view_add_sh(
          shm->repl, shm->view, cfg->view[i], strcmp(cfg->view[i], cfg->address) == 0 ? PEER_SELF : PEER_JOINING);
    lock_release_sh(shm->lock);
    return shm;
}

/* --data-dir: lock it, load what it holds, and make the ring keep every
 * record until the persister has written it. */
static void open_data_dir(const struct config *cfg, shm_t *shm)
{
    char err[512];

    if (datadir_lock(cfg->data_dir, err, sizeof(err)) == -1 || datadir_recover(shm, cfg->data_dir, err, sizeof(err)) != 0) {
        log_error("%s", err);
        exit(EX_CONFIG_);
    }
    shm->persist_enabled = 1;
    __atomic_store_n(&shm->rlog->keep_from, rlog_head(shm->rlog), __ATOMIC_RELEASE);
}

int master_main(const struct config *cfg)
{
    sigset_t set;
    siginfo_t info;
    struct timespec tick = { 0, 100 * 1000 * 1000 };
    char err[256];
    int i, fd, status, sig;
    pid_t pid;

    log_set_role("master", -1);
    /* fail fast, before forking, if the address cannot be served; without
     * SO_REUSEPORT this also fails if another kvsd already serves it, which
     * would otherwise silently share its connections with us */
    if ((fd = listen_socket(cfg->listen, 0, err, sizeof(err))) == -1)
        fatalx("%s", err);
    close(fd);

    /* config_load() bounds --workers; this is the table that would
     * overflow if it did not (and the RCU and stats slots after it) */
    if (cfg->workers < 1 || cfg->workers + 2 > (int)(sizeof(m.child) / sizeof(m.child[0])))
        fatalx("%d workers, the replicator and the persister do not fit in %d process slots", cfg->workers,
               SHM_MAX_PROCS);
    m.cfg = cfg;
    m.shm = create_store(cfg);
    if (cfg->data_dir[0] != '\0')
        open_data_dir(cfg, m.shm);
    if (config_internal_exposed(cfg))
        log_warn("listening on %s, not a loopback address, without --cluster-key: anyone who can reach it can "
                 "write to /internal/ (set --cluster-key on every replica)",
                 cfg->listen);

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (i = 0; i < cfg->workers; ++i)
        m.child[m.nchild++] = (struct child){ 0, ROLE_WORKER, i, i, 0, 0 };
    m.child[m.nchild++] = (struct child){ 0, ROLE_REPLICATOR, 0, cfg->workers, 0, 0 };
    if (m.shm->persist_enabled) /* the last process slot: WORKERS_MAX leaves it */
        m.child[m.nchild++] = (struct child){ 0, ROLE_PERSISTER, 0, cfg->workers + 1, 0, 0 };
    for (i = 0; i < m.nchild; ++i)
        spawn(&m.child[i]);
    log_info("kvsd %s serving %s (listening on %s) with %d workers, %zu MiB store, view of %zu",
             PACKAGE_VERSION,
             cfg->address,
             cfg->listen,
             cfg->workers,
             cfg->memory >> 20,
             cfg->nview);

    for (;;) {
        sig = sigtimedwait(&set, &info, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("received %s; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            notify_stopping();
            shutdown_children();
            log_info("stopped");
            return 0;
        }
        if (sig == SIGHUP) {
            log_reopen();
            signal_children(SIGHUP);
            log_info("SIGHUP: log reopened");
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            reap(pid, status);
        for (i = 0; i < m.nchild; ++i)
            if (m.child[i].pid == 0 && m.child[i].respawn_at_ms != 0 && now_ms() >= m.child[i].respawn_at_ms)
                spawn(&m.child[i]);
    }
}
