/*
 * worker.c - worker_main(): the serving process.
 *
 * Everything of libh2o (globalconf, context, event loop, listener) is
 * created here, after fork.  Each worker has its own SO_REUSEPORT
 * listening socket on the replica's address, so the kernel spreads
 * connections evenly across workers.  Signal handlers only set flags; the
 * loop wakes at least every 100 ms to act on them.  On SIGTERM the worker
 * closes its listener, lets in-flight requests finish (bounded), and
 * exits 0.  It exits too when the master goes away.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "http.h"
#include "log.h"
#include "rcu.h"
#include "util.h"
#include "worker.h"

#define DRAIN_MS 2000

static volatile sig_atomic_t got_term, got_hup;

static struct worker {
    h2o_globalconf_t gconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    struct http_env env;
    unsigned nconns;    /* open client connections */
    unsigned max_conns; /* --max-connections */
    int paused;         /* listener stopped at the limit */
} w;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

static void on_accept(h2o_socket_t *listener, const char *err);

/* h2o's HTTP/1 keeps a request object per connection and zeroes it when a
 * response is done; request_begin_at is set when the next request's first
 * bytes arrive.  So a connection whose request has not begun is idle. */
static int request_begun(h2o_req_t *req, void *cbdata)
{
    (void)cbdata;
    return req->timestamps.request_begin_at.tv_sec != 0;
}

/* A request still being received, handled, parked or answered? */
static int requests_in_flight(void)
{
    h2o_protocol_callbacks_t *cb = &w.ctx.globalconf->http1.callbacks;

    if (cb->foreach_request == NULL)
        return !h2o_linklist_is_empty(&w.ctx.http1._conns);
    return cb->foreach_request(&w.ctx, request_begun, NULL) != 0;
}

/* At --max-connections the worker stops accepting; further connections
 * wait in the kernel's queue (or go to another worker) until one closes. */
static void on_conn_close(void *data)
{
    --w.nconns;
    if (w.paused && w.nconns < w.max_conns) {
        w.paused = 0;
        h2o_socket_read_start(w.listener, on_accept);
    }
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    h2o_socket_t *sock;
    int i;

    if (err != NULL)
        return;
    /* accept a few at a time so one busy listener cannot starve the loop */
    for (i = 0; i < 16 && w.nconns < w.max_conns && (sock = h2o_evloop_socket_accept(listener)) != NULL; ++i) {
        ++w.nconns;
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = NULL;
        h2o_accept(&w.accept_ctx, sock);
    }
    if (w.nconns >= w.max_conns && !w.paused) {
        w.paused = 1;
        h2o_socket_read_stop(listener);
        log_warn("%u connections open: not accepting more until one closes", w.nconns);
    }
}

int listen_socket(const char *addr, int reuseport, char *err, size_t errlen)
{
    struct sockaddr_in sin;
    char host[ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    int fd, on = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    inet_pton(AF_INET, host, &sin.sin_addr);
    sin.sin_port = htons((uint16_t)atoi(colon + 1));
    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, SOMAXCONN) != 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
    if (fd != -1)
        close(fd);
    return -1;
}

void worker_main(shm_t *shm, const struct config *cfg, int index, int slot)
{
    char name[16], err[256];
    h2o_hostconf_t *hostconf;
    uint64_t deadline, next_check = 0;
    int fd;

    snprintf(name, sizeof(name), "kvsd-worker-%d", index);
    set_proc_name(name);
    log_set_role("worker", index);
    child_signals(on_signal);
    if (getppid() != shm->master_pid)
        exit(0);
    rcu_register_sh(shm->rcu, slot, getpid());

    w.env.shm = shm;
    w.env.cfg = cfg;
    w.env.slot = slot;
    w.max_conns = cfg->max_connections;
    h2o_config_init(&w.gconf);
    /* client bodies are limited to --max-body in the handler; the larger
     * transport limit leaves room for peers' replication batches */
    w.gconf.max_request_entity_size = peer_body_max(cfg);
    w.gconf.http1.req_timeout = cfg->request_timeout_ms;
    w.gconf.server_name = h2o_iovec_init(H2O_STRLIT("kvsd"));
    hostconf = h2o_config_register_host(&w.gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    http_register(&w.gconf, hostconf, &w.env);
    h2o_context_init(&w.ctx, h2o_evloop_create(), &w.gconf);
    http_kvs_init(&w.env, w.ctx.loop);
    w.accept_ctx.ctx = &w.ctx;
    w.accept_ctx.hosts = w.gconf.hosts;

    if ((fd = listen_socket(cfg->listen, 1, err, sizeof(err))) == -1)
        fatalx("%s", err);
    w.listener = h2o_evloop_socket_create(w.ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(w.listener, on_accept);
    log_debug("serving on %s", cfg->listen);

    while (!got_term) {
        h2o_evloop_run(w.ctx.loop, 100);
        if (got_hup) {
            got_hup = 0;
            log_reopen();
        }
        /* PDEATHSIG ends us when the master dies; this is the fallback,
         * at most every 100 ms (h2o_now() is the loop's cached time) */
        if (h2o_now(w.ctx.loop) >= next_check) {
            next_check = h2o_now(w.ctx.loop) + 100;
            if (getppid() != shm->master_pid)
                break;
        }
    }

    /* drain: stop accepting, let in-flight requests and their responses
     * finish, then exit, which closes the idle keep-alive connections
     * (peers hold some open all the time: waiting for them to close would
     * make every stop last DRAIN_MS) */
    if (!w.paused)
        h2o_socket_read_stop(w.listener);
    h2o_socket_close(w.listener);
    h2o_context_request_shutdown(&w.ctx);
    http_kvs_shutdown();
    deadline = now_ms() + DRAIN_MS;
    while (now_ms() < deadline && w.nconns > 0 && requests_in_flight())
        h2o_evloop_run(w.ctx.loop, 10);
    log_debug("exiting");
    exit(0);
}
