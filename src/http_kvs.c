/*
 * http_kvs.c - /kvs/<key>: GET, PUT and DELETE with causal metadata.
 *
 * Order of checks (api.md): method, key length, body/value, metadata
 * validity, causal dependencies, then the operation.  GET takes no lock:
 * it reads the entry under shm-RCU and copies the value straight into the
 * response buffer.  PUT and DELETE go through store_client_write_sh(),
 * which re-checks the dependencies under the writer lock.  A request whose
 * dependencies are not applied yet gets 503, or with --causal-wait waits
 * for them, parked, without blocking the worker (see "parking" below).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "persist.h"
#include "rcu.h"
#include "repl.h"
#include "stats.h"
#include "store.h"
#include "table.h"
#include "util.h"
#include "view.h"

#define E_TOO_LONG "{\"error\": \"Key is too long\"}"
#define E_NO_VALUE "{\"error\": \"PUT request does not specify a value\"}"
#define E_NOT_OBJECT "{\"error\": \"Request body is not a JSON object\"}"
#define E_BAD_META "{\"error\": \"Invalid causal-metadata\"}"
#define E_UNSATISFIED "{\"error\": \"Causal dependencies not satisfied; try again later\"}"
#define E_NO_KEY "{\"error\": \"Key does not exist\"}"
#define E_FULL "{\"error\": \"Store is full\"}"
#define E_METHOD "{\"error\": \"Method not allowed\"}"
#define E_TOO_LARGE "{\"error\": \"Request body too large\"}"
#define E_DISK "{\"error\": \"Data directory not writable; writes refused\"}"
#define E_NOT_DURABLE "{\"error\": \"Write applied but not yet on disk\"}"

/*
 * --fsync always: a write's response waits, parked, until the persister
 * has fsynced its record (shm->persist_synced reaches the log head we saw
 * after writing, which covers our record).  The worker's loop never
 * blocks: a 1 ms timer, linked only while something is parked, checks the
 * position and sends the responses whose records are on disk.  One fsync
 * in the persister answers every write it covers (group commit).  The
 * write is applied (and may be replicated) before it is durable here,
 * like a Redis write under appendfsync always; a parked request that
 * waits longer than --request-timeout gets 503 instead of its result.
 */
struct durable {
    h2o_linklist_t link; /* in durable_q.list while waiting */
    h2o_req_t *req;
    int status;
    const char *body;
    size_t len;
    uint64_t pos;
    uint64_t deadline_ms;
};

static struct {
    shm_t *shm;
    h2o_loop_t *loop;
    h2o_timeout_t timeout;
    h2o_timeout_entry_t entry;
    h2o_linklist_t list;
} durable_q;

static void durable_check(h2o_timeout_entry_t *entry)
{
    h2o_linklist_t *node, *next;
    uint64_t now = now_ms();

    (void)entry;
    for (node = durable_q.list.next; node != &durable_q.list; node = next) {
        struct durable *dw = H2O_STRUCT_FROM_MEMBER(struct durable, link, node);
        next = node->next;
        if (persist_synced(durable_q.shm, dw->pos)) {
            h2o_linklist_unlink(&dw->link);
            http_send(dw->req, dw->status, dw->body, dw->len);
        } else if (now >= dw->deadline_ms) {
            h2o_linklist_unlink(&dw->link);
            http_send_lit(dw->req, 503, E_NOT_DURABLE);
        }
    }
    if (!h2o_linklist_is_empty(&durable_q.list))
        h2o_timeout_link(durable_q.loop, &durable_q.timeout, &durable_q.entry);
}

/* The request is being disposed of (its client went away) while waiting. */
static void durable_dispose(void *arg)
{
    struct durable *dw = arg;

    if (h2o_linklist_is_linked(&dw->link))
        h2o_linklist_unlink(&dw->link);
}

/* Send now, or park until the write's record is on disk. */
static void send_durable(struct http_env *env, h2o_req_t *req, int status, struct http_body *b)
{
    struct durable *dw;
    uint64_t pos;

    if (!env->shm->persist_enabled || env->cfg->fsync_mode != FSYNC_ALWAYS || b->broken ||
        persist_synced(env->shm, pos = rlog_head(env->shm->rlog))) {
        http_body_send(req, status, b);
        return;
    }
    if (durable_q.loop == NULL) {
        durable_q.shm = env->shm;
        durable_q.loop = req->conn->ctx->loop;
        h2o_timeout_init(durable_q.loop, &durable_q.timeout, 1);
        durable_q.entry.cb = durable_check;
        h2o_linklist_init_anchor(&durable_q.list);
    }
    /* in the request's pool: disposed of with it, unlinking itself first */
    dw = h2o_mem_alloc_shared(&req->pool, sizeof(*dw), durable_dispose);
    *dw = (struct durable){ { NULL, NULL }, req, status, b->p, b->len, pos, now_ms() + env->cfg->request_timeout_ms };
    h2o_linklist_insert(&durable_q.list, &dw->link);
    if (!h2o_timeout_is_linked(&durable_q.entry))
        h2o_timeout_link(durable_q.loop, &durable_q.timeout, &durable_q.entry);
}

/* The client's dependencies, resolved to local incarnation ids. */
struct deps {
    struct vc_pair pair[CLOCK_MAX];
    size_t n;
    int unknown; /* names writes of an incarnation never heard of */
};

/* Has every other view member reported its clock since t? */
static int reported_since(const shm_t *shm, uint64_t t)
{
    uint32_t i, n = __atomic_load_n(&shm->view->n, __ATOMIC_ACQUIRE);

    for (i = 0; i < n && i < VIEW_MAX; ++i) {
        const struct repl_peer_sh *m = &shm->repl->peer[i];
        if (!__atomic_load_n(&shm->view->m[i].in_view, __ATOMIC_ACQUIRE) || m->state == PEER_SELF)
            continue;
        if (__atomic_load_n(&m->acked_at_ms, __ATOMIC_ACQUIRE) <= t)
            return 0;
    }
    return 1;
}

/* An incarnation the client names that has no row here.  It is met,
 * without a row, when the address has a newer life that is folded, or
 * whose appearance every view member has reported its clock since: a
 * member holding any write of the older life would have named it in that
 * report, and we would know it, so its writes are lost (or folded away).
 * Otherwise (a life newer than all we know, or one we may yet hear of)
 * the answer is 503.  Client input never makes a row (doc/design.md,
 * "Settled floor"). */
static int unknown_met(shm_t *shm, const struct clock_ref *ref)
{
    const struct clock_sh *clock = shm->clock;
    uint32_t i, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);

    for (i = 0; i < ninc; ++i) {
        const struct incarnation *inc = &clock->inc[i];
        uint32_t flags = clock_flags(clock, i);
        if ((flags & INC_FREE) || inc->stamp <= ref->stamp || strncmp(inc->addr, ref->addr, ADDR_MAX) != 0)
            continue;
        if ((flags & INC_FOLDED) || reported_since(shm, inc->born_ms))
            return 1;
    }
    return 0;
}

static void note_lost_one(shm_t *shm, uint32_t id, uint64_t n);

static int resolve_deps(shm_t *shm, struct json_span meta, struct deps *d)
{
    struct clock_ref refs[CLOCK_MAX];
    long n, i;

    d->n = 0;
    d->unknown = 0;
    if (json_span_is_null(meta))
        return 0;
    if ((n = json_parse_clock(meta, refs, CLOCK_MAX)) < 0)
        return -1;
    for (i = 0; i < n; ++i) {
        int id;
        if (refs[i].n == 0)
            continue;
        if ((id = clock_find(shm->clock, refs[i].addr, refs[i].stamp)) < 0) {
            if (!unknown_met(shm, &refs[i]))
                d->unknown = 1;
            continue;
        }
        if (clock_folded(shm->clock, (uint32_t)id)) {
            note_lost_one(shm, (uint32_t)id, refs[i].n);
            continue; /* applied everywhere; never named again */
        }
        d->pair[d->n].id = (uint32_t)id;
        d->pair[d->n].n = refs[i].n;
        d->n++;
    }
    return 0;
}

/* Writes a client saw that died with a crashed incarnation: count them
 * (clock.h lost_upto) and say so once per incarnation. */
static void note_lost_one(shm_t *shm, uint32_t id, uint64_t n)
{
    struct incarnation *inc = &shm->clock->inc[id];
    uint64_t seen;

    if (n <= clock_applied(shm->clock, id) || !clock_retired_met(shm->clock, id))
        return;
    seen = __atomic_load_n(&inc->lost_upto, __ATOMIC_RELAXED);
    while (n > seen && !__atomic_compare_exchange_n(&inc->lost_upto, &seen, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    if (seen == 0)
        log_warn("a client saw writes %llu..%llu of %s/%llu, which ended with that replica (stopped or crashed) "
                 "before any other replica got them: treating them as lost",
                 (unsigned long long)inc->final_seq + 1,
                 (unsigned long long)n,
                 inc->addr,
                 (unsigned long long)inc->stamp);
}

static void note_lost(shm_t *shm, const struct deps *d)
{
    size_t i;

    for (i = 0; i < d->n; ++i)
        note_lost_one(shm, d->pair[i].id, d->pair[i].n);
}

/* M' = max(M, C): what the client has now seen. */
static uint32_t merge_clock(shm_t *shm, const struct deps *d, uint64_t *c)
{
    uint32_t ninc = clock_snapshot(shm->clock, c);
    size_t i;

    for (i = 0; i < d->n; ++i)
        if (d->pair[i].id < ninc && d->pair[i].n > c[d->pair[i].id])
            c[d->pair[i].id] = d->pair[i].n;
    return ninc;
}

/* Append causal-metadata c to a response body. */
static void put_clock(struct http_body *b, shm_t *shm, const uint64_t *c, uint32_t ninc)
{
    char *dst = http_body_reserve(b, json_clock_max_len(ninc));

    if (dst != NULL)
        http_body_commit(b, json_format_clock(shm->clock, c, ninc, dst));
}

/* {"result": "<result>", "causal-metadata": M'} */
static void send_result(struct http_env *env,
                        h2o_req_t *req,
                        int status,
                        const char *result,
                        const struct deps *d,
                        uint64_t *c)
{
    static const char head[] = "{\"result\": \"", mid[] = "\", \"causal-metadata\": ";
    uint32_t ninc = merge_clock(env->shm, d, c);
    size_t rlen = strlen(result);
    struct http_body b;

    http_body_init(req, &b, sizeof(head) - 1 + rlen + sizeof(mid) - 1 + json_clock_max_len(ninc) + 1);
    http_body_lit(&b, head);
    http_body_put(&b, result, rlen);
    http_body_lit(&b, mid);
    put_clock(&b, env->shm, c, ninc);
    http_body_lit(&b, "}");
    send_durable(env, req, status, &b);
}

static int do_get(struct http_env *env, h2o_req_t *req, const char *key, size_t klen, const struct deps *d)
{
    static const char head[] = "{\"result\": \"found\", \"value\": ";
    static const char mid[] = ", \"causal-metadata\": ";
    shm_t *shm = env->shm;
    const struct entry *e;
    uint64_t c[CLOCK_MAX];
    uint32_t origin, ninc, ninc_now;
    uint64_t seq;
    struct http_body b;

    /* the caller holds the RCU read lock */
    e = table_lookup_sh(shm->table, key, klen, table_hash(key, klen));
    if (e == NULL || (e->flags & ENTRY_TOMBSTONE)) {
        http_send_lit(req, 404, E_NO_KEY);
        return 0;
    }
    /* the entry's origin was interned before the entry was published */
    ninc = __atomic_load_n(&shm->clock->ninc, __ATOMIC_ACQUIRE);
    http_body_init(req, &b, sizeof(head) - 1 + e->vlen + sizeof(mid) - 1 + json_clock_max_len(ninc) + 1);
    http_body_lit(&b, head);
    http_body_put(&b, entry_value(e), e->vlen);
    origin = __atomic_load_n(&e->origin, __ATOMIC_ACQUIRE);
    seq = e->seq;
    if (clock_folded(shm->clock, origin))
        origin = CLOCK_MAX; /* a folded life is never named */

    /* the clock may not show the entry's write yet (it is published
     * before the clock advances): cover it explicitly */
    if ((ninc_now = merge_clock(shm, d, c)) < ninc)
        ninc = ninc_now;
    if (origin < ninc && c[origin] < seq)
        c[origin] = seq;
    http_body_lit(&b, mid);
    put_clock(&b, shm, c, ninc);
    http_body_lit(&b, "}");
    http_body_send(req, 200, &b);
    return 0;
}

static int do_write(struct http_env *env,
                    h2o_req_t *req,
                    const char *key,
                    size_t klen,
                    struct json_span value,
                    int has_ws,
                    const struct deps *d)
{
    struct store_write w = { key, klen, value.p, value.len, d->pair, d->n };
    uint64_t c[CLOCK_MAX];
    char *compact;

    if (__atomic_load_n(&env->shm->persist_failed, __ATOMIC_ACQUIRE)) {
        http_send_lit(req, 507, E_DISK); /* the persister logged why; reads go on */
        return 0;
    }
    /* the store copies the value; compact it first only if it needs it */
    if (value.p != NULL && has_ws) {
        compact = h2o_mem_alloc_pool(&req->pool, value.len);
        w.value = compact;
        w.vlen = json_compact(value, compact);
    }
    switch (store_client_write_sh(env->shm, &w, c)) {
    case STORE_CREATED:
        http_wake_replicator(env, REPL_WAKE_OWN);
        send_result(env, req, 201, "created", d, c);
        break;
    case STORE_REPLACED:
        http_wake_replicator(env, REPL_WAKE_OWN);
        send_result(env, req, 200, "replaced", d, c);
        break;
    case STORE_DELETED:
        http_wake_replicator(env, REPL_WAKE_OWN);
        send_result(env, req, 200, "deleted", d, c);
        break;
    case STORE_NOT_FOUND:
        http_send_lit(req, 404, E_NO_KEY);
        break;
    case STORE_UNSATISFIED:
        http_send_lit(req, 503, E_UNSATISFIED);
        break;
    case STORE_FULL:
        log_warn("store full: %s of a %zu-byte value refused", w.value ? "PUT" : "DELETE", w.vlen);
        http_send_lit(req, 507, E_FULL);
        break;
    }
    return 0;
}

/* A kvs request, parsed and validated up to its causal dependencies.
 * Its spans point into req->entity, which lives as long as the request. */
struct kvs_req {
    int is_get, is_put;
    char key[KEY_MAX];
    size_t klen;
    struct json_body body;
};

enum serve_result { SERVE_ANSWERED, SERVE_WAIT };

struct parked;
static void park_end(struct parked *p, uint64_t *counter);

/* Resolve the request's dependencies from its body and, if they are
 * applied here, answer it (ending its park p, if any, first).  Returns
 * SERVE_WAIT, having sent nothing, if they are not; *d then holds them.
 * The RCU read side is held only in here: from resolving the ids to the
 * response, since an id is valid only as long as it is held (a parked
 * request therefore resolves again each time it is looked at). */
static enum serve_result try_serve(struct http_env *env, h2o_req_t *req, const struct kvs_req *k, struct deps *d,
                                   struct parked *p)
{
    shm_t *shm = env->shm;

    rcu_read_lock_sh(shm->rcu, env->slot);
    if (resolve_deps(shm, k->body.metadata, d) != 0) {
        rcu_read_unlock_sh(shm->rcu, env->slot);
        if (p != NULL) /* cannot happen: it parsed when it was parked */
            park_end(p, NULL);
        http_send_lit(req, 400, E_BAD_META);
        return SERVE_ANSWERED;
    }
    if (!__atomic_load_n(&shm->repl->ready, __ATOMIC_ACQUIRE) || d->unknown || !store_covers(shm, d->pair, d->n)) {
        rcu_read_unlock_sh(shm->rcu, env->slot);
        return SERVE_WAIT;
    }
    if (p != NULL)
        park_end(p, NULL);
    note_lost(shm, d);
    if (k->is_get)
        do_get(env, req, k->key, k->klen, d);
    else
        do_write(env, req, k->key, k->klen, k->is_put ? k->body.value : (struct json_span){ NULL, 0 },
                 k->body.value_has_ws, d);
    rcu_read_unlock_sh(shm->rcu, env->slot);
    return SERVE_ANSWERED;
}

/* --- parking (--causal-wait) ---------------------------------------------
 *
 * A request whose dependencies are not applied here is parked: it stays
 * in the worker's list, holding no lock and no RCU read side, until they
 * are applied (then it is served as if it had just arrived) or the wait
 * runs out (503).  The clock advances in other processes too (workers
 * applying replicated batches, the replicator installing a snapshot), so
 * while anything is parked a 1 ms tick of the worker's own loop looks at
 * the clock: a parked request is answered within about 1 ms of its
 * dependencies being applied, and a worker with nothing parked has no
 * tick at all (doc/design.md, "Causal wait").
 *
 * The park is allocated with h2o_mem_alloc_shared() in the request's
 * pool, so libh2o disposes of it with the request: when the connection
 * closes under a parked request (an HTTP/2 stream reset, or the worker
 * shutting the connection), park_dispose() unlinks it before anything
 * can fire on it.  libh2o 2.2's HTTP/1 stops reading the socket while a
 * request is handled and so never notices a client that hung up; the tick
 * asks an epoll set of the parked HTTP/1 sockets (EPOLLRDHUP) instead, and
 * ends such a request at once. */

#define PARK_TICK_MS 1     /* how often parked requests look at the clock */
#define PARK_RESOLVE_MS 10 /* ... and those with unknown incarnations or before ready resolve again */

struct parked {
    h2o_linklist_t link;        /* in parking.list while parked */
    h2o_timeout_entry_t expire; /* --causal-wait after parking */
    h2o_req_t *req;
    struct http_acct acct;
    struct kvs_req k;
    int fd;      /* the HTTP/1 socket watched for hang-ups, or -1 */
    int resolve; /* unknown incarnations or not ready: resolve from the body */
    size_t n;    /* the dependencies as last resolved: a hint between ticks */
    struct vc_pair pair[];
};

static struct {
    struct http_env *env;
    h2o_loop_t *loop;
    h2o_timeout_t wait; /* --causal-wait; 0: parking is off */
    h2o_timeout_t tick; /* PARK_TICK_MS */
    h2o_timeout_entry_t tick_entry;
    h2o_linklist_t list;
    size_t n;
    int epfd; /* hang-ups of parked HTTP/1 clients */
    uint64_t next_resolve;
} parking = { .epfd = -1 };

static uint64_t *counter(size_t offset)
{
    return (uint64_t *)((char *)&parking.env->shm->stats->proc[parking.env->slot] + offset);
}
#define COUNT(field) stats_add(counter(offsetof(struct proc_stats, field)), 1)

/* Take p out of the worker's list and timers; count how it ended
 * (ending_counter: NULL for served, which also brings back its request
 * accounting so the answer about to be sent is counted). */
static void park_end(struct parked *p, uint64_t *ending_counter)
{
    h2o_linklist_unlink(&p->link);
    if (h2o_timeout_is_linked(&p->expire))
        h2o_timeout_unlink(&p->expire);
    if (p->fd >= 0) {
        epoll_ctl(parking.epfd, EPOLL_CTL_DEL, p->fd, NULL);
        p->fd = -1;
    }
    if (--parking.n == 0 && h2o_timeout_is_linked(&parking.tick_entry))
        h2o_timeout_unlink(&parking.tick_entry);
    if (ending_counter != NULL) {
        stats_add(ending_counter, 1);
    } else {
        COUNT(causal_served);
        http_resume(&p->acct);
    }
}

/* The request's pool is being cleared: if p is still parked, its client
 * went away. */
static void park_dispose(void *arg)
{
    struct parked *p = arg;

    if (h2o_linklist_is_linked(&p->link))
        park_end(p, counter(offsetof(struct proc_stats, causal_dropped)));
}

/* The dependencies as resolved, kept as a hint for the next ticks. */
static void park_note(struct parked *p, const struct deps *d)
{
    p->resolve = !__atomic_load_n(&parking.env->shm->repl->ready, __ATOMIC_ACQUIRE) || d->unknown;
    p->n = d->n;
    memcpy(p->pair, d->pair, d->n * sizeof(d->pair[0]));
}

/* Look at p again; serve it if its dependencies are applied now. */
static void park_check(struct parked *p)
{
    struct deps d;

    if (try_serve(parking.env, p->req, &p->k, &d, p) == SERVE_WAIT)
        park_note(p, &d);
}

/* Has anything p waits for changed?  Lock-free, without the RCU read
 * side: the ids were resolved under it and may since have been freed and
 * reused, so a yes is only a reason to resolve again (try_serve), and a
 * no at worst leaves the request to time out with the 503 it would have
 * got without parking. */
static int park_hint(const struct parked *p, int resolve_due)
{
    if (p->resolve)
        return resolve_due;
    return store_covers(parking.env->shm, p->pair, p->n);
}

static void park_hangups(void)
{
    struct epoll_event ev[64];
    int i, n;

    if ((n = epoll_wait(parking.epfd, ev, 64, 0)) <= 0)
        return;
    for (i = 0; i < n; ++i) {
        struct parked *p = ev[i].data.ptr;
        h2o_req_t *req = p->req;
        park_end(p, counter(offsetof(struct proc_stats, causal_dropped)));
        /* nobody reads this; answering lets libh2o close the connection
         * and dispose of the request (it is not counted as a response) */
        req->http1_is_persistent = 0;
        http_send_lit(req, 503, E_UNSATISFIED);
    }
}

static void park_tick(h2o_timeout_entry_t *entry)
{
    h2o_linklist_t todo;
    uint64_t now = h2o_now(parking.loop);
    int resolve_due = now >= parking.next_resolve;

    (void)entry;
    if (resolve_due)
        parking.next_resolve = now + PARK_RESOLVE_MS;
    park_hangups();
    /* Move the list aside and put each request back before looking at
     * it: whatever answering one of them disposes of (even another parked
     * request) is simply unlinked from wherever it is. */
    h2o_linklist_init_anchor(&todo);
    h2o_linklist_insert_list(&todo, &parking.list);
    while (!h2o_linklist_is_empty(&todo)) {
        struct parked *p = H2O_STRUCT_FROM_MEMBER(struct parked, link, todo.next);
        h2o_linklist_unlink(&p->link);
        h2o_linklist_insert(&parking.list, &p->link);
        if (park_hint(p, resolve_due))
            park_check(p);
    }
    if (parking.n > 0 && !h2o_timeout_is_linked(&parking.tick_entry))
        h2o_timeout_link(parking.loop, &parking.tick, &parking.tick_entry);
}

/* The wait ran out: one last look, then 503. */
static void park_expire(h2o_timeout_entry_t *entry)
{
    struct parked *p = H2O_STRUCT_FROM_MEMBER(struct parked, expire, entry);
    h2o_req_t *req = p->req;
    struct deps d;

    if (try_serve(parking.env, req, &p->k, &d, p) == SERVE_ANSWERED)
        return;
    park_end(p, counter(offsetof(struct proc_stats, causal_timed_out)));
    http_resume(&p->acct);
    http_send_lit(req, 503, E_UNSATISFIED);
}

/* Park req until its dependencies d are applied or the wait runs out.
 * Returns -1 (nothing parked, nothing sent) at the bound. */
static int park(h2o_req_t *req, const struct kvs_req *k, const struct deps *d)
{
    struct parked *p;
    h2o_socket_t *sock;

    if (parking.n >= parking.env->cfg->causal_wait_max) {
        COUNT(causal_overflow);
        return -1;
    }
    p = h2o_mem_alloc_shared(&req->pool, offsetof(struct parked, pair) + CLOCK_MAX * sizeof(p->pair[0]), park_dispose);
    memset(p, 0, offsetof(struct parked, pair));
    p->req = req;
    p->k = *k;
    p->fd = -1;
    park_note(p, d);
    http_defer(&p->acct);
    h2o_linklist_insert(&parking.list, &p->link);
    p->expire.cb = park_expire;
    h2o_timeout_link(parking.loop, &parking.wait, &p->expire);
    /* an HTTP/1 connection carries one request at a time: watch its
     * socket (an HTTP/2 stream is disposed of by libh2o when reset) */
    sock = req->version < 0x200 && req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn)
                                                                           : NULL;
    if (sock != NULL && parking.epfd >= 0) {
        struct epoll_event ev = { .events = EPOLLRDHUP, .data.ptr = p };
        int fd = h2o_socket_get_fd(sock);
        if (fd >= 0 && epoll_ctl(parking.epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
            p->fd = fd;
    }
    if (parking.n++ == 0)
        h2o_timeout_link(parking.loop, &parking.tick, &parking.tick_entry);
    COUNT(causal_parked);
    return 0;
}

void http_kvs_init(struct http_env *env, h2o_loop_t *loop)
{
    parking.env = env;
    parking.loop = loop;
    h2o_linklist_init_anchor(&parking.list);
    if (env->cfg->causal_wait_ms == 0)
        return;
    h2o_timeout_init(loop, &parking.wait, env->cfg->causal_wait_ms);
    h2o_timeout_init(loop, &parking.tick, PARK_TICK_MS);
    parking.tick_entry.cb = park_tick;
    if ((parking.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        log_warn("epoll_create1: %s: clients that hang up while parked are noticed only when answered",
                 strerror(errno));
}

void http_kvs_shutdown(void)
{
    while (parking.n > 0) {
        struct parked *p = H2O_STRUCT_FROM_MEMBER(struct parked, link, parking.list.next);
        p->req->http1_is_persistent = 0; /* the drain waits for open connections */
        park_expire(&p->expire);
    }
}

int http_kvs(struct http_env *env, h2o_req_t *req, const char *rawkey, size_t rawlen)
{
    struct kvs_req k;
    struct deps d;
    int is_delete;

    k.is_get = METHOD(req, "GET");
    k.is_put = METHOD(req, "PUT");
    is_delete = METHOD(req, "DELETE");
    if (!k.is_get && !k.is_put && !is_delete) {
        http_send_lit(req, 405, E_METHOD);
        return 0;
    }
    if ((k.klen = percent_decode(rawkey, rawlen, k.key, KEY_MAX)) > KEY_MAX) {
        http_send_lit(req, 400, E_TOO_LONG);
        return 0;
    }
    if (req->entity.len > env->cfg->max_body) {
        http_send_lit(req, 413, E_TOO_LARGE);
        return 0;
    }
    json_scan_body(req->entity.base, req->entity.len, &k.body);
    if (k.is_put) {
        if (!k.body.is_object || json_span_is_null(k.body.value)) {
            http_send_lit(req, 400, E_NO_VALUE);
            return 0;
        }
    } else if (!k.body.empty && !k.body.is_object) {
        http_send_lit(req, 400, E_NOT_OBJECT);
        return 0;
    }
    if (try_serve(env, req, &k, &d, NULL) == SERVE_ANSWERED)
        return 0;
    if (env->cfg->causal_wait_ms == 0 || park(req, &k, &d) != 0)
        http_send_lit(req, 503, E_UNSATISFIED);
    return 0;
}
