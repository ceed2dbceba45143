/*
 * http_kvs.c - /kvs/<key>: GET, PUT and DELETE with causal metadata.
 *
 * Order of checks (api.md): method, key length, body/value, metadata
 * validity, causal dependencies, then the operation.  GET takes no lock:
 * it reads the entry under shm-RCU and copies the value straight into the
 * response buffer.  PUT and DELETE go through store_client_write_sh(),
 * which re-checks the dependencies under the writer lock.
 */
#include <string.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "persist.h"
#include "rcu.h"
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
struct parked {
    h2o_req_t *req;
    int status;
    const char *body;
    size_t len;
    uint64_t pos;
    uint64_t deadline_ms;
    struct parked *next;
};

static struct {
    shm_t *shm;
    h2o_loop_t *loop;
    h2o_timeout_t timeout;
    h2o_timeout_entry_t entry;
    struct parked *head;
} park;

static void park_check(h2o_timeout_entry_t *entry)
{
    struct parked **pp = &park.head;
    uint64_t now = now_ms();

    (void)entry;
    while (*pp != NULL) {
        struct parked *pk = *pp;
        if (persist_synced(park.shm, pk->pos)) {
            *pp = pk->next;
            http_send(pk->req, pk->status, pk->body, pk->len);
        } else if (now >= pk->deadline_ms) {
            *pp = pk->next;
            http_send_lit(pk->req, 503, E_NOT_DURABLE);
        } else {
            pp = &pk->next;
        }
    }
    if (park.head != NULL)
        h2o_timeout_link(park.loop, &park.timeout, &park.entry);
}

/* Send now, or park until the write's record is on disk. */
static void send_durable(struct http_env *env, h2o_req_t *req, int status, struct http_body *b)
{
    struct parked *pk;
    uint64_t pos;

    if (!env->shm->persist_enabled || env->cfg->fsync_mode != FSYNC_ALWAYS || b->broken ||
        persist_synced(env->shm, pos = rlog_head(env->shm->rlog))) {
        http_body_send(req, status, b);
        return;
    }
    if (park.loop == NULL) {
        park.shm = env->shm;
        park.loop = req->conn->ctx->loop;
        h2o_timeout_init(park.loop, &park.timeout, 1);
        park.entry.cb = park_check;
    }
    pk = h2o_mem_alloc_pool(&req->pool, sizeof(*pk));
    *pk = (struct parked){ req, status, b->p, b->len, pos, now_ms() + env->cfg->request_timeout_ms, park.head };
    park.head = pk;
    if (!h2o_timeout_is_linked(&park.entry))
        h2o_timeout_link(park.loop, &park.timeout, &park.entry);
}

/* The client's dependencies, resolved to local incarnation ids. */
struct deps {
    struct vc_pair pair[CLOCK_MAX];
    size_t n;
    int unknown; /* names writes of an incarnation never heard of */
};

/* Has every other view member reported its clock since t? */
static int reported_since(const struct view_sh *view, uint64_t t)
{
    uint32_t i, n = __atomic_load_n(&view->n, __ATOMIC_ACQUIRE);

    for (i = 0; i < n && i < VIEW_MAX; ++i) {
        const struct view_member *m = &view->m[i];
        if (!__atomic_load_n(&m->in_view, __ATOMIC_ACQUIRE) || m->state == PEER_SELF)
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
        if ((flags & INC_FOLDED) || reported_since(shm->view, inc->born_ms))
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
        log_warn("a client saw writes %llu..%llu of %s/%llu, which crashed before any replica got them: "
                 "treating them as lost",
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

int http_kvs(struct http_env *env, h2o_req_t *req, const char *rawkey, size_t rawlen)
{
    int is_get = METHOD(req, "GET"), is_put = METHOD(req, "PUT"), is_delete = METHOD(req, "DELETE");
    char key[KEY_MAX];
    size_t klen;
    struct json_body body;
    struct deps d;

    if (!is_get && !is_put && !is_delete) {
        http_send_lit(req, 405, E_METHOD);
        return 0;
    }
    if ((klen = percent_decode(rawkey, rawlen, key, KEY_MAX)) > KEY_MAX) {
        http_send_lit(req, 400, E_TOO_LONG);
        return 0;
    }
    if (req->entity.len > env->cfg->max_body) {
        http_send_lit(req, 413, E_TOO_LARGE);
        return 0;
    }
    json_scan_body(req->entity.base, req->entity.len, &body);
    if (is_put) {
        if (!body.is_object || json_span_is_null(body.value)) {
            http_send_lit(req, 400, E_NO_VALUE);
            return 0;
        }
    } else if (!body.empty && !body.is_object) {
        http_send_lit(req, 400, E_NOT_OBJECT);
        return 0;
    }
    /* From here to the response, the incarnation ids in d and in entries
     * stay valid: a freed row is reused only after every reader that
     * could hold its id has left its read-side section. */
    rcu_read_lock_sh(env->shm->rcu, env->slot);
    if (resolve_deps(env->shm, body.metadata, &d) != 0) {
        rcu_read_unlock_sh(env->shm->rcu, env->slot);
        http_send_lit(req, 400, E_BAD_META);
        return 0;
    }
    if (!__atomic_load_n(&env->shm->ready, __ATOMIC_ACQUIRE) || d.unknown || !store_covers(env->shm, d.pair, d.n)) {
        rcu_read_unlock_sh(env->shm->rcu, env->slot);
        http_send_lit(req, 503, E_UNSATISFIED);
        return 0;
    }
    note_lost(env->shm, &d);
    if (is_get)
        do_get(env, req, key, klen, &d);
    else
        do_write(env, req, key, klen, is_put ? body.value : (struct json_span){ NULL, 0 }, body.value_has_ws, &d);
    rcu_read_unlock_sh(env->shm->rcu, env->slot);
    return 0;
}
