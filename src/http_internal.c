/*
 * http_internal.c - /internal/: the peer-ingest API, served by workers.
 *
 *   GET  /internal/ping       -> KVC1 clock (probes)
 *   POST /internal/replicate  KVB1 batch -> KVC1 clock (shipping, heartbeats)
 *   GET  /internal/snapshot   -> KVS1 every entry and the clock (joins)
 *   GET  /internal/check      -> consistency check of the mapping and store (tests)
 *
 * With --cluster-key set, a request without the key in X-Kvsd-Cluster-Key
 * gets 401 and changes nothing.  A malformed batch gets 400 and changes
 * nothing: it is fully decoded and validated (wire_decode(): every count
 * bounded, every index known, every value JSON) before anything, even an
 * incarnation, is interned or applied.
 */
#include <string.h>

#include "http.h"
#include "lock.h"
#include "log.h"
#include "rcu.h"
#include "repl.h"
#include "stats.h"
#include "store.h"
#include "table.h"
#include "util.h"
#include "wire.h"

#define OCTETS "application/octet-stream"

static void self_inc(shm_t *shm, struct wire_inc *from)
{
    const struct incarnation *inc = &shm->clock->inc[shm->clock->self];
    memcpy(from->addr, inc->addr, ADDR_MAX);
    from->stamp = inc->stamp;
}

/* Constant-time comparison, so the key cannot be guessed byte by byte. */
static int key_matches(const char *want, const char *got, size_t gotlen)
{
    size_t i, n = strlen(want);
    unsigned char diff = gotlen != n;

    for (i = 0; i < n; ++i)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gotlen ? got[i] : 0);
    return diff == 0;
}

static int authorized(struct http_env *env, h2o_req_t *req)
{
    static const h2o_iovec_t name = { H2O_STRLIT("x-kvsd-cluster-key") };
    ssize_t i;

    if (env->cfg->cluster_key[0] == '\0')
        return 1;
    i = h2o_find_header_by_str(&req->headers, name.base, name.len, -1);
    return i >= 0 &&
           key_matches(env->cfg->cluster_key, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

static void send_buf(h2o_req_t *req, int status, struct buf *b)
{
    char *body = h2o_mem_alloc_pool(&req->pool, b->len ? b->len : 1);
    memcpy(body, b->p, b->len);
    http_send_type(req, status, OCTETS, body, b->len);
    buf_free(b);
}

/* Our applied clock, as a KVC1 message. */
static void send_clock(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    uint64_t c[CLOCK_MAX];
    uint32_t ninc = clock_snapshot(shm->clock, c), id;
    struct wire_enc e;
    struct wire_inc from;
    struct buf out = { 0 };

    wire_enc_init(&e);
    for (id = 0; id < ninc; ++id) {
        uint32_t flags = clock_flags(shm->clock, id);
        if (c[id] != 0)
            wire_enc_count(&e, shm->clock, id, c[id], 0, 0);
        else if ((flags & (INC_FOLDED | INC_STALE | INC_FREE)) == INC_FOLDED)
            wire_enc_count(&e, shm->clock, id, 0, INC_FOLDED, 0); /* a floor: lives up to it are folded */
    }
    self_inc(shm, &from);
    wire_enc_finish(&e, "KVC1", &from, __atomic_load_n(&shm->repl->ready, __ATOMIC_ACQUIRE) ? WIRE_READY : 0, &out);
    wire_enc_free(&e);
    send_buf(req, 200, &out);
}

/* A peer replicates to us but is not in our view: its view has us, ours
 * lacks it, so our writes never reach it (a split view, e.g. a replica
 * started with VIEW naming only itself).  We do not add it -- views change
 * through PUT /view only (doc/design.md) -- but say so, once per address
 * per worker, and count every such batch. */
static void note_outsider(struct http_env *env, const char *from)
{
    static char warned[VIEW_MAX][ADDR_MAX];
    static int nwarned;
    int i;

    stats_add(&env->shm->stats->proc[env->slot].batches_from_outside, 1);
    for (i = 0; i < nwarned; ++i)
        if (strncmp(warned[i], from, ADDR_MAX) == 0)
            return;
    if (nwarned < VIEW_MAX)
        memcpy(warned[nwarned++], from, ADDR_MAX);
    log_warn("peer=%s replicates to us but is not in our view: its view has %s, ours lacks it, so our writes do "
             "not reach it (PUT /view here to add it)",
             from,
             env->cfg->address);
}

static int replicate(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    struct wire_msg msg;
    int32_t ids[CLOCK_MAX + 1];
    uint8_t *result;
    int r;

    if (wire_decode(req->entity.base, req->entity.len, &msg) != 0 || memcmp(msg.magic, "KVB1", 4) != 0) {
        if (msg.inc != NULL)
            wire_msg_free(&msg);
        log_warn("rejected a malformed replication batch (%zu bytes)", req->entity.len);
        http_send_lit(req, 400, "{\"error\": \"Malformed batch\"}");
        return 0;
    }
    if (!view_contains(shm->view, msg.from.addr))
        note_outsider(env, msg.from.addr);
    /* the ids wire_localize() hands out stay valid until we leave the
     * read-side section: a freed incarnation row is reused only after */
    rcu_read_lock_sh(shm->rcu, env->slot);
    if ((r = wire_localize(shm, &msg, ids)) == -2) {
        rcu_read_unlock_sh(shm->rcu, env->slot);
        log_warn("peer=%s names a life of our own address newer than ours: batch refused", msg.from.addr);
        wire_msg_free(&msg);
        http_send_lit(req, 400, "{\"error\": \"Malformed batch\"}");
        return 0;
    }
    if (r != 0) {
        rcu_read_unlock_sh(shm->rcu, env->slot);
        wire_msg_free(&msg);
        log_warn("peer=%s: incarnation table full (%u rows), batch refused", msg.from.addr, CLOCK_MAX);
        http_send_lit(req, 507, "{\"error\": \"Too many incarnations\"}");
        return 0;
    }
    result = xmalloc(msg.nrec + 1);
    /* the replicator relays them at once only to a peer seen missing
     * others' writes (see peer.c); else it finds them on its tick */
    if (store_apply_records_sh(shm, msg.rec, msg.nrec, result) != 0)
        http_wake_replicator(env, REPL_WAKE_RELAY);
    rcu_read_unlock_sh(shm->rcu, env->slot);
    if (msg.flags & WIRE_SNAPSHOT_NEEDED) {
        lock_acquire_sh(shm->lock);
        memcpy(shm->repl->snapshot_from, msg.from.addr, ADDR_MAX);
        __atomic_store_n(&shm->repl->snapshot_req, 1, __ATOMIC_RELEASE);
        lock_release_sh(shm->lock);
        log_info("peer=%s says our clock is behind its log; requesting a snapshot", msg.from.addr);
        http_wake_replicator(env, 0);
    }
    free(result);
    wire_msg_free(&msg);
    send_clock(env, req);
    return 0;
}

struct snap_ctx {
    shm_t *shm;
    struct wire_enc *enc;
};

/* Writer lock held: the clock of the cut. */
static void snap_clock(shm_t *shm, void *arg)
{
    struct snap_ctx *ctx = arg;
    uint32_t id, ninc = shm->clock->ninc;

    for (id = 0; id < ninc; ++id) {
        const struct incarnation *inc = &shm->clock->inc[id];
        if (inc->flags & (INC_STALE | INC_FREE))
            continue; /* below a floor, or empty */
        if (shm->clock->applied[id] != 0 || (inc->flags & INC_FINAL))
            wire_enc_count(ctx->enc, shm->clock, id, shm->clock->applied[id], inc->flags, inc->final_seq);
    }
}

static int snap_entry(const struct entry *e, void *arg)
{
    struct snap_ctx *ctx = arg;
    const struct clock_sh *clock = ctx->shm->clock;
    uint32_t origin = e->origin;
    int floor;

    /* a STALE life not relabelled yet: its floor row is what the
     * snapshot names (its count says it is folded) */
    if ((clock_flags(clock, origin) & INC_STALE) && (floor = clock_floor(clock, clock->inc[origin].addr)) >= 0)
        origin = (uint32_t)floor;
    wire_enc_record(ctx->enc,
                    ctx->shm->clock,
                    origin,
                    e->seq,
                    e->lamport,
                    (e->flags & ENTRY_TOMBSTONE) != 0,
                    entry_key(e),
                    e->klen,
                    entry_value(e),
                    e->vlen,
                    NULL,
                    0);
    return 0;
}

static void send_busy(h2o_req_t *req)
{
    http_send_lit(req, 503, "{\"error\": \"Busy: another snapshot or check is running\"}");
}

/* A consistent cut (store_snapshot_sh()): the writer lock is held only
 * to copy the table's slot pointers, not while entries are encoded. */
static int snapshot(struct http_env *env, h2o_req_t *req)
{
    shm_t *shm = env->shm;
    struct wire_enc e;
    struct snap_ctx ctx = { shm, &e };
    struct wire_inc from;
    struct buf out = { 0 };
    int r;

    if (!__atomic_load_n(&shm->repl->ready, __ATOMIC_ACQUIRE)) {
        http_send_lit(req, 503, "{\"error\": \"Not ready\"}");
        return 0;
    }
    if (store_pass_begin(shm) != 0) {
        send_busy(req);
        return 0;
    }
    wire_enc_init(&e);
    r = store_snapshot_sh(shm, env->slot, snap_clock, snap_entry, &ctx);
    store_pass_end(shm);
    if (r != 0) {
        wire_enc_free(&e);
        http_send_lit(req, 503, "{\"error\": \"Out of memory\"}");
        return 0;
    }
    self_inc(shm, &from);
    /* encode straight into the response's memory: a snapshot can be
     * hundreds of megabytes, so no extra copy */
    out.cap = wire_enc_size(&e, &from);
    out.p = h2o_mem_alloc_pool(&req->pool, out.cap);
    wire_enc_finish(&e, "KVS1", &from, 0, &out);
    log_info("serving a snapshot of %u entries (%zu bytes)", e.nrec, out.len);
    wire_enc_free(&e);
    http_send_type(req, 200, OCTETS, out.p, out.len);
    return 0;
}

static int check(struct http_env *env, h2o_req_t *req)
{
    static const char head[] = "{\"check\": \"failed\", \"why\": \"";
    char buf[256], clean[256];
    const char *why = NULL;
    struct http_body b;
    size_t i;
    int r;

    if (store_check_quiet(env->shm) || store_pass_begin(env->shm) != 0) {
        send_busy(req);
        return 0;
    }
    /* the mapping's header and poisoned region tails, then the store */
    r = shm_verify(env->shm, &why) != 0 ? -1 : store_check_sh(env->shm, buf, sizeof(buf), &why);
    store_pass_end(env->shm);
    if (r == 0) {
        http_send_lit(req, 200, "{\"check\": \"ok\"}");
        return 0;
    }
    log_error("store check failed: %s", why);
    snprintf(clean, sizeof(clean), "%s", why); /* keep the body valid JSON whatever the key bytes */
    for (i = 0; clean[i] != '\0'; ++i)
        if (clean[i] == '"' || clean[i] == '\\' || (unsigned char)clean[i] < 0x20)
            clean[i] = '?';
    http_body_init(req, &b, sizeof(head) - 1 + i + 2);
    http_body_lit(&b, head);
    http_body_put(&b, clean, i);
    http_body_lit(&b, "\"}");
    http_body_send(req, 500, &b);
    return 0;
}

int http_internal(struct http_env *env, h2o_req_t *req, const char *path, size_t len)
{
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(path, lit, len) == 0)
    if (!authorized(env, req)) {
        http_send_lit(req, 401, "{\"error\": \"Unauthorized\"}");
        return 0;
    }
    if (IS("/internal/ping") && METHOD(req, "GET")) {
        send_clock(env, req);
        return 0;
    }
    if (IS("/internal/replicate") && METHOD(req, "POST"))
        return replicate(env, req);
    if (IS("/internal/snapshot") && METHOD(req, "GET"))
        return snapshot(env, req);
    if (IS("/internal/check") && METHOD(req, "GET"))
        return check(env, req);
#undef IS
    http_send_lit(req, 404, "{\"error\": \"Not found\"}");
    return 0;
}
