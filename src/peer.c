/*
 * peer.c - one peer's state machine, driven by the replicator's tick and
 * by the answers to its requests:
 *
 *   JOINING --answer--> ACTIVE --late--> SUSPECT --timeout/error--> EVICTED
 *      |                  ^                                            |
 *      +--join grace------+-------------- re-admit <-- PROBING <-answer+
 *
 * While ACTIVE (or JOINING) the peer is shipped every log record its acked
 * clock lacks, in batches, over one keep-alive connection, and gets an
 * empty batch (a heartbeat) when nothing was exchanged for --heartbeat.
 * Any request unanswered after --peer-timeout, or failing, evicts it:
 * the connection is reset (so a queued retransmission can never deliver
 * stale data after a partition heals), the peer leaves the view, and every
 * other member is told.  An evicted peer is pinged every
 * --probe-interval; after --readmit-delay of unbroken answers it is
 * re-added and told to everyone, and shipping resumes from its clock.
 */
#include <string.h>

#include "lock.h"
#include "log.h"
#include "replicator.h"
#include "rlog.h"
#include "stats.h"
#include "util.h"

#define BATCH_BYTES (256 * 1024)
#define BATCH_RECORDS 4096
#define RELAY_DELAY_MS 50   /* others' writes a peer lacks this long after they came here */
#define RELAY_EAGER_MS 1000 /* then relay to it at once for this long */
/* Records of a batch that waited for dependencies the peer lacks are sent
 * again at once, with those dependencies relayed (worth_sending()); if
 * none of a batch's records is taken even so, again after STALL_RETRY_MS,
 * doubling after STALL_STEADY_TRIES, up to --heartbeat.  (Waiting a whole
 * heartbeat made every such wait a heartbeat long, and with writers on
 * every replica they are frequent: a record depends on everything its
 * origin had applied, often writes still on their way to the peer.) */
#define STALL_RETRY_MS 1
#define STALL_STEADY_TRIES 4 /* at STALL_RETRY_MS before doubling */

void peer_set_state(struct replicator *r, struct peer *p, int state)
{
    struct repl_peer_sh *m = &r->shm->repl->peer[p->row];

    if (p->state != state) {
        p->state = state;
        p->since_ms = now_ms();
        __atomic_store_n(&m->since_ms, wallclock_ms(), __ATOMIC_RELAXED);
    }
    __atomic_store_n(&m->state, (uint32_t)state, __ATOMIC_RELEASE);
}

void peer_init(struct replicator *r, struct peer *p, int row)
{
    const struct view_member *m = &r->shm->view->m[row];

    memset(p, 0, sizeof(*p));
    p->r = r;
    p->row = row;
    memcpy(p->addr, m->addr, ADDR_MAX);
    p->conn = httpc_new((h2o_loop_t *)r->loop, r->self_ip, p->addr);
    p->ctl = httpc_new((h2o_loop_t *)r->loop, r->self_ip, p->addr);
    p->state = -1;
    /* rows of the initial VIEW get their grace from startup, rows added
     * later from when they were added */
    p->grace_until_ms = (r->view_version == (uint64_t)-1 ? r->started_ms : now_ms()) + r->cfg->join_grace_ms;
    if (strcmp(p->addr, r->cfg->address) == 0)
        peer_set_state(r, p, PEER_SELF);
    else if (!m->in_view)
        peer_set_state(r, p, PEER_EVICTED);
    else
        peer_set_state(r, p, PEER_JOINING);
    if (p->state != PEER_SELF)
        replicator_acked_lowered(r); /* it may lack what acked_pos passed */
}

/* --- view broadcasts ------------------------------------------------------ */

static void ctl_next(struct replicator *r, struct peer *p);

static void on_ctl_done(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct peer *p = arg;

    if (status == 0)
        log_debug("peer=%s view message failed: %s", p->addr, err);
    p->ctl_busy = 0;
    ctl_next(p->r, p);
}

static void ctl_next(struct replicator *r, struct peer *p)
{
    char body[96];
    struct ctl_msg msg;
    int n;

    if (p->ctl_busy || p->nctlq == 0)
        return;
    msg = p->ctlq[0];
    memmove(&p->ctlq[0], &p->ctlq[1], sizeof(p->ctlq[0]) * (size_t)--p->nctlq);
    n = snprintf(body, sizeof(body), "{\"socket-address\": \"%s\"}", msg.addr);
    if (httpc_request(p->ctl,
                      msg.put ? "PUT" : "DELETE",
                      "/view",
                      r->extra_headers,
                      body,
                      (size_t)n,
                      r->cfg->peer_timeout_ms,
                      on_ctl_done,
                      p) == 0)
        p->ctl_busy = 1;
}

void broadcast_view(struct replicator *r, int put, const char *addr, const struct peer *except)
{
    int i;

    for (i = 0; i < VIEW_MAX; ++i) {
        struct peer *p = &r->peer[i];
        if (p->row < 0 || p == except || p->state == PEER_SELF || !r->shm->view->m[p->row].in_view)
            continue;
        if (strcmp(p->addr, addr) == 0)
            continue;
        if (p->nctlq == CTL_QUEUE)
            memmove(&p->ctlq[0], &p->ctlq[1], sizeof(p->ctlq[0]) * (CTL_QUEUE - 1)), --p->nctlq;
        p->ctlq[p->nctlq].put = put;
        memcpy(p->ctlq[p->nctlq].addr, addr, ADDR_MAX);
        ++p->nctlq;
        ctl_next(r, p);
    }
}

/* --- eviction and re-admission -------------------------------------------- */

/* Drop the view messages queued for p and reset the one in flight: told
 * late, after a partition heals, a view change would be stale (it would
 * evict healthy replicas from a healthy one's view for --readmit-delay). */
static void forget_ctl(struct peer *p)
{
    p->nctlq = 0;
    httpc_close(p->ctl);
}

static void reset_shipping(struct peer *p)
{
    p->inflight = 0;
    p->clock_known = 0;
    p->nscan = 0;
    p->retry_at_ms = 0;
    p->stalls = 0;
    p->deps_wait = 0;
}

void peer_evict(struct replicator *r, struct peer *p, const char *why)
{
    int removed;

    peer_set_state(r, p, PEER_EVICTED);
    httpc_close(p->conn);
    forget_ctl(p);
    reset_shipping(p);
    p->answering_since = 0;
    lock_acquire_sh(r->shm->lock);
    removed = view_remove_sh(r->shm->view, p->addr);
    lock_release_sh(r->shm->lock);
    r->view_version = __atomic_load_n(&r->shm->view->version, __ATOMIC_ACQUIRE);
    log_warn("peer=%s evicted: %s", p->addr, why);
    stats_add(&r->stats->evictions, 1);
    if (removed)
        broadcast_view(r, 0, p->addr, p);
}

static void readmit(struct replicator *r, struct peer *p)
{
    lock_acquire_sh(r->shm->lock);
    repl_view_add_sh(r->shm->repl, r->shm->view, p->addr, PEER_ACTIVE);
    lock_release_sh(r->shm->lock);
    r->view_version = __atomic_load_n(&r->shm->view->version, __ATOMIC_ACQUIRE);
    log_info(
      "peer=%s re-admitted after %llu ms of answers", p->addr, (unsigned long long)(now_ms() - p->answering_since));
    stats_add(&r->stats->readmissions, 1);
    peer_readmitted(r, p);
    p->ever_answered = 1;
    p->grace_until_ms = 0;
    broadcast_view(r, 1, p->addr, p);
}

void peer_readmitted(struct replicator *r, struct peer *p)
{
    peer_set_state(r, p, PEER_JOINING);
    httpc_close(p->conn);
    reset_shipping(p);
    p->ever_answered = 0;
    p->grace_until_ms = now_ms() + r->cfg->join_grace_ms;
    p->answering_since = 0;
    p->last_exchange_ms = 0;
}

void peer_removed(struct replicator *r, struct peer *p)
{
    peer_set_state(r, p, PEER_EVICTED);
    httpc_close(p->conn);
    forget_ctl(p);
    reset_shipping(p);
    p->answering_since = 0;
    log_info("peer=%s removed from the view by a view change", p->addr);
}

/* --- clocks ----------------------------------------------------------------- */

/* The peer has folded every life of inc's address up to inc's stamp: it
 * has all of each of them (ACKED_FOLDED). */
static void ack_folded(const struct clock_sh *clock, uint32_t id, uint64_t *acked)
{
    const struct incarnation *floor = &clock->inc[id];
    uint32_t i, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);

    for (i = 0; i < ninc; ++i)
        if (!(clock_flags(clock, i) & INC_FREE) && clock->inc[i].stamp <= floor->stamp &&
            strncmp(clock->inc[i].addr, floor->addr, ADDR_MAX) == 0)
            acked[i] = ACKED_FOLDED;
}

int peer_learn_clock(struct replicator *r, struct peer *p, const char *body, size_t len, uint32_t *flags)
{
    struct repl_peer_sh *m = &r->shm->repl->peer[p->row];
    struct wire_msg msg;
    int32_t ids[CLOCK_MAX + 1];
    uint64_t acked[CLOCK_MAX];
    uint32_t i;
    int same_life;

    if (wire_decode(body, len, &msg) != 0)
        return -1;
    if (memcmp(msg.magic, "KVC1", 4) != 0 || strcmp(msg.from.addr, p->addr) != 0 ||
        wire_localize(r->shm, &msg, ids) != 0) {
        wire_msg_free(&msg);
        return -1;
    }
    same_life = p->stamp == msg.from.stamp;
    if (!same_life) {
        if (p->stamp != 0)
            log_info("peer=%s restarted (incarnation %llu -> %llu)",
                     p->addr,
                     (unsigned long long)p->stamp,
                     (unsigned long long)msg.from.stamp);
        p->stamp = msg.from.stamp;
        p->clock_known = 0; /* ship from the start of the log again */
    }
    memset(acked, 0, sizeof(acked));
    for (i = 0; i < msg.ncount; ++i)
        if (msg.count[i].inc != WIRE_NO_INC && !(msg.count[i].flags & INC_FOLDED))
            acked[msg.count[i].inc] = msg.count[i].n;
    for (i = 0; i < msg.ncount; ++i)
        if (msg.count[i].inc != WIRE_NO_INC && (msg.count[i].flags & INC_FOLDED))
            ack_folded(r->shm->clock, msg.count[i].inc, acked);
    /* Within one life a peer's clock only grows (applies and installs
     * advance it), but its reports can overtake each other: a clock ask
     * answered on the control connection before a batch was applied may
     * arrive after that batch's answer.  Taking it as is would move
     * acked back below records trim_acked() already dropped for it, and
     * log_covers_peer() would send a peer that lacks nothing to a
     * snapshot.  A new life starts from what it reports. */
    for (i = 0; i < CLOCK_MAX; ++i)
        if (m->acked[i] != acked[i] && !(same_life && acked[i] < m->acked[i]))
            __atomic_store_n(&m->acked[i], acked[i], __ATOMIC_RELAXED);
    __atomic_store_n(&m->acked_at_ms, now_ms(), __ATOMIC_RELEASE);
    if (!same_life)
        replicator_acked_lowered(r);
    replicator_advance_acked(r);
    *flags = msg.flags;
    wire_msg_free(&msg);
    return 0;
}

/* --- shipping ----------------------------------------------------------------- */

/* Should this record, which p's last clock report lacks, go to p now?
 * The origin's own replicator ships it directly.  Another origin's
 * record is relayed at once if that origin is gone or retired, while
 * records of our last batch to p wait there (p->deps_wait: the answer
 * proved p lacks writes they depend on -- a record's dependencies are all
 * that came before it here -- so the next batch carries them), or while
 * p is in relay mode.  p enters relay mode (for RELAY_EAGER_MS, renewed
 * while it lasts) when a clock report taken RELAY_DELAY_MS or more after
 * the record arrived here still lacks it: the origin is not reaching p
 * (one-way and bridge partitions).  A record that old with no report that
 * recent makes us ask for one first (ASK); a younger one is looked at
 * again when it is RELAY_DELAY_MS old (WAIT).  So while every origin
 * reaches every peer nothing is relayed, and when one does not, its
 * writes take the detour within about RELAY_DELAY_MS plus a round trip. */
enum relay { SHIP, WAIT, ASK };

static enum relay worth_sending(struct replicator *r, struct peer *p, const struct rlog_rec *rec, uint64_t now)
{
    const struct repl_peer_sh *m = &r->shm->repl->peer[p->row];
    const struct clock_sh *clock = r->shm->clock;
    const struct incarnation *inc = &clock->inc[rec->origin];
    uint32_t age;
    int row;

    if ((int32_t)rec->origin == clock->self)
        return SHIP;
    if ((inc->flags & INC_RETIRED) || p->deps_wait)
        return SHIP;
    row = view_find(r->shm->view, inc->addr);
    if (row < 0 || r->peer[row].state != PEER_ACTIVE)
        return SHIP;
    age = (uint32_t)now - rec->at_ms;
    if (age >= RELAY_DELAY_MS && (int32_t)((uint32_t)m->acked_at_ms - rec->at_ms) >= RELAY_DELAY_MS) {
        if (now >= p->relay_until_ms)
            log_info("peer=%s lacks writes of %s %u ms after they came here: relaying them", p->addr, inc->addr, age);
        p->relay_until_ms = now + RELAY_EAGER_MS;
        return SHIP;
    }
    if (now < p->relay_until_ms)
        return SHIP;
    return age >= RELAY_DELAY_MS ? ASK : WAIT;
}

static void scan_push(struct peer *p, uint64_t pos, uint32_t origin, uint64_t seq)
{
    if (p->nscan == p->scancap) {
        p->scancap = p->scancap ? p->scancap * 2 : 256;
        p->scan = xrealloc(p->scan, p->scancap * sizeof(*p->scan));
    }
    p->scan[p->nscan].pos = pos;
    p->scan[p->nscan].origin = origin;
    p->scan[p->nscan].seq = seq;
    p->scan[p->nscan].sent = 0;
    ++p->nscan;
}

/* Does the peer's acked clock cover everything that fell off our log?
 * A settled life's writes past final_seq are dead, but those up to it
 * are real: a peer lacking them that our log cannot give them to (they
 * came from our data directory, or fell off) needs a snapshot too. */
static int log_covers_peer(struct replicator *r, struct peer *p)
{
    const struct repl_peer_sh *m = &r->shm->repl->peer[p->row];
    const struct clock_sh *clock = r->shm->clock;
    uint32_t i, ninc = clock->ninc;

    for (i = 0; i < ninc; ++i) {
        uint64_t need = r->shm->rlog->tail_clock[i];
        if (clock->inc[i].flags & INC_FOLDED)
            continue;
        if ((clock->inc[i].flags & INC_FINAL) && clock->inc[i].final_seq < need)
            need = clock->inc[i].final_seq;
        if (need > m->acked[i])
            return 0;
    }
    return 1;
}

/*
 * The most log bytes one batch may carry: what a peer's libh2o accepts
 * (peer_body_max(), 2 x --max-body + 64 KiB) less room for the message
 * head and its incarnation table (at most CLOCK_MAX entries).  A record
 * is never longer on the wire than in the log, and the largest one (a
 * --max-body value with CLOCK_MAX deps) is under --max-body + 5 KiB, so
 * a record always fits a batch of its own; larger backlogs are split.
 */
#define BATCH_HEAD_ROOM (16 * 1024)
_Static_assert(sizeof(struct rlog_rec) >= 28 && sizeof(struct vc_pair) >= 12, "a record is no longer on the wire");
#define BATCH_INC_BYTES (1 + ADDR_MAX + 8) /* one incarnation on the wire */
_Static_assert(CLOCK_MAX <= (BATCH_HEAD_ROOM - 64) / BATCH_INC_BYTES, "the incarnation table fits the room");

static size_t batch_budget(const struct replicator *r)
{
    return peer_body_max(r->cfg) - BATCH_HEAD_ROOM;
}

static void on_shipped(void *arg, int status, const char *body, size_t len, const char *err);
/* What the answer says became of the records of the batch. */
enum taken { TAKEN_ALL, TAKEN_SOME, TAKEN_NONE };
static enum taken advance_cursor(struct replicator *r, struct peer *p);

/* One batch being assembled for a peer. */
struct batch {
    struct wire_enc enc;
    uint32_t flags;   /* WIRE_* */
    uint64_t oldest;  /* append time of the oldest record the peer lacks, or 0 */
    int need_clock;   /* a record waits on a fresher clock report (ASK) */
    size_t bytes;
};

/* The scan's decision for one record, from its header alone. */
enum take { TAKE_ACKED, TAKE_LATER, TAKE_SHIP };

static enum take decide(struct replicator *r, struct peer *p, struct batch *b, uint64_t at, const struct rlog_rec *hdr, uint64_t now)
{
    enum relay rel;

    if (clock_folded(r->shm->clock, hdr->origin)) {
        scan_push(p, at, hdr->origin, 0); /* everyone has it */
        return TAKE_ACKED;
    }
    scan_push(p, at, hdr->origin, hdr->seq);
    if (hdr->seq <= r->shm->repl->peer[p->row].acked[hdr->origin])
        return TAKE_ACKED;
    if (b->oldest == 0)
        b->oldest = hdr->at_ms ? hdr->at_ms : 1;
    if ((rel = worth_sending(r, p, hdr, now)) == SHIP)
        return TAKE_SHIP;
    b->need_clock |= rel == ASK;
    if (rel == WAIT && p->recheck_at_ms == 0) /* the oldest such comes first */
        p->recheck_at_ms = now + RELAY_DELAY_MS - ((uint32_t)now - hdr->at_ms);
    return TAKE_LATER;
}

static void batch_reset(struct batch *b)
{
    wire_enc_free(&b->enc);
    wire_enc_init(&b->enc);
    b->bytes = 0;
    b->oldest = 0;
}

/* Scan the log from the peer's cursor and put what it should get now
 * into the batch, up to BATCH_BYTES / BATCH_RECORDS. */
static void fill_batch(struct replicator *r, struct peer *p, struct batch *b, uint64_t now)
{
    struct rlog_sh *rlog = r->shm->rlog;
    uint64_t pos;

    if (!log_covers_peer(r, p)) {
        b->flags |= WIRE_SNAPSHOT_NEEDED;
        p->cursor = rlog_tail(rlog);
    }
    pos = p->cursor;
    while (b->bytes < BATCH_BYTES && b->enc.nrec < BATCH_RECORDS) {
        const struct rlog_rec *rec;
        struct rlog_rec hdr;
        size_t need = 0;
        uint64_t at;
        long n = rlog_peek(rlog, &pos, &hdr);

        if (n == 0)
            break;
        if (n > 0) {
            at = pos - (uint64_t)n; /* past any pad */
            if (decide(r, p, b, at, &hdr, now) != TAKE_SHIP)
                continue;
            if (b->enc.nrec != 0 && b->bytes + (size_t)n > batch_budget(r)) {
                --p->nscan; /* the next batch starts with it */
                pos = at;
                break;
            }
            /* read it in full: the header said what the ring held */
            pos = at;
            while ((n = rlog_read(rlog, &pos, r->rbuf, r->rcap, &need)) == -2)
                r->rbuf = xrealloc(r->rbuf, r->rcap = need);
        }
        rec = (const void *)r->rbuf; /* after any xrealloc() above */
        if (n <= 0) { /* overwritten under us: start again at the tail */
            p->nscan = 0;
            batch_reset(b);
            pos = p->cursor = rlog_tail(rlog);
            if (!log_covers_peer(r, p))
                b->flags |= WIRE_SNAPSHOT_NEEDED;
            continue;
        }
        wire_enc_record(&b->enc,
                        r->shm->clock,
                        rec->origin,
                        rec->seq,
                        rec->lamport,
                        (rec->flags & RLOG_TOMBSTONE) != 0,
                        rlog_rec_key(rec),
                        rec->klen,
                        rlog_rec_value(rec),
                        rec->vlen,
                        rlog_rec_deps(rec),
                        rec->ndeps);
        p->scan[p->nscan - 1].sent = 1; /* decide() pushed it last */
        b->bytes += (size_t)n;
    }
    p->scan_end = pos;
}

/* Hand the batch to the peer's connection (httpc owns the bytes). */
static void send_batch(struct replicator *r, struct peer *p, struct batch *b, uint64_t now)
{
    struct wire_inc from;
    struct buf out = { 0 };

    memcpy(from.addr, r->cfg->address, ADDR_MAX);
    from.stamp = r->shm->clock->inc[r->shm->clock->self].stamp;
    wire_enc_finish(&b->enc, "KVB1", &from, b->flags, &out);
    stats_add(&r->stats->batches, 1);
    stats_add(&r->stats->records_shipped, b->enc.nrec);
    p->nsent = b->enc.nrec;
    stats_add(&r->stats->bytes_shipped, out.len);
    if (httpc_request_owned(p->conn,
                            "POST",
                            "/internal/replicate",
                            r->extra_headers,
                            out.p,
                            out.len,
                            r->cfg->peer_timeout_ms,
                            on_shipped,
                            p) == 0) {
        p->inflight = 1;
        p->sent_ms = now;
        p->last_exchange_ms = now;
    }
}

/* Assemble and send one batch (possibly empty: a heartbeat). */
void peer_ship(struct replicator *r, struct peer *p, uint64_t now)
{
    struct batch b = { .flags = 0 };

    if (p->inflight)
        return;
    wire_enc_init(&b.enc);
    p->nscan = 0;
    p->recheck_at_ms = 0;
    p->retry_at_ms = 0; /* due (callers check), so the loop stops waiting for it */
    if (p->clock_known) {
        fill_batch(r, p, &b, now);
    } else {
        /* an empty batch first: learn what the peer has */
        p->cursor = rlog_tail(r->shm->rlog);
        p->scan_end = p->cursor;
    }
    /* queued and lag describe the same thing: what the peer lacks.  Log
     * the peer has acknowledged (or that is of folded lives) but the
     * cursor has not passed yet is not queued. */
    stats_set(&r->stats->peer_queued_bytes[p->row],
              !p->clock_known ? 0 : rlog_head(r->shm->rlog) - (b.oldest ? p->cursor : p->scan_end));
    stats_set(&r->stats->peer_lag_ms[p->row], b.oldest ? (uint32_t)now - (uint32_t)b.oldest : 0);
    if (p->clock_known && b.enc.nrec == 0 && b.flags == 0 && !b.need_clock &&
        now - p->last_exchange_ms < r->cfg->heartbeat_ms) {
        /* Nothing to send yet (others' writes wait RELAY_DELAY_MS for their
         * origin to deliver them) and no heartbeat due: no round trip.
         * Skip what the peer has acked so the next scan starts later. */
        advance_cursor(r, p);
    } else {
        send_batch(r, p, &b, now);
    }
    wire_enc_free(&b.enc);
}

/* Everything before the first scanned record the peer still lacks is
 * acked: move the cursor there.  Returns whether the peer took all the
 * records of the batch (or it had none), some, or none (they wait for
 * dependencies).  A batch some of whose records were taken made progress
 * even when the cursor stays (pinned by an older record of another origin
 * the peer still lacks). */
static enum taken advance_cursor(struct replicator *r, struct peer *p)
{
    const struct repl_peer_sh *m = &r->shm->repl->peer[p->row];
    size_t i, n = p->nscan, taken = 0;

    for (i = 0; i < n; ++i)
        if (p->scan[i].sent && p->scan[i].seq <= m->acked[p->scan[i].origin])
            ++taken;
    for (i = 0; i < n; ++i)
        if (p->scan[i].seq > m->acked[p->scan[i].origin])
            break;
    p->cursor = i < n ? p->scan[i].pos : p->scan_end;
    p->nscan = 0;
    return taken == p->nsent ? TAKEN_ALL : taken == 0 ? TAKEN_NONE : TAKEN_SOME;
}

/* How long to wait before sending again a batch that waited `tries`
 * times in a row (1 or more). */
static uint64_t stall_delay(const struct replicator *r, uint32_t tries)
{
    uint64_t ms = STALL_RETRY_MS;

    if (tries == 1)
        return 0;
    if (tries > STALL_STEADY_TRIES)
        ms <<= tries - STALL_STEADY_TRIES < 16 ? tries - STALL_STEADY_TRIES : 16;
    return ms < r->cfg->heartbeat_ms ? ms : r->cfg->heartbeat_ms;
}

static void on_shipped(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct peer *p = arg;
    struct replicator *r = p->r;
    uint64_t now = now_ms();
    uint32_t flags;
    int had_clock = p->clock_known;
    enum taken taken = TAKEN_ALL;

    p->inflight = 0;
    if (status == 0 && err != NULL && strcmp(err, "canceled") == 0)
        return; /* we closed the connection ourselves */
    if (status != 200 || peer_learn_clock(r, p, body, len, &flags) != 0) {
        char why[96];
        if (status == 0)
            snprintf(why, sizeof(why), "%s", err ? err : "no answer");
        else
            snprintf(why, sizeof(why), "answered %d to a replication batch", status);
        if (status == 401)
            log_error("peer=%s rejects our cluster key", p->addr);
        if (p->state == PEER_JOINING && !p->ever_answered && now < p->grace_until_ms) {
            p->retry_at_ms = now + r->cfg->heartbeat_ms;
            return;
        }
        if (p->state == PEER_ACTIVE || p->state == PEER_SUSPECT || p->state == PEER_JOINING)
            peer_evict(r, p, why);
        return;
    }
    p->ever_answered = 1;
    p->last_exchange_ms = now;
    if (p->state == PEER_JOINING || p->state == PEER_SUSPECT) {
        if (p->state == PEER_JOINING)
            log_info("peer=%s joined", p->addr);
        peer_set_state(r, p, PEER_ACTIVE);
    }
    if (!had_clock || !p->clock_known) {
        p->clock_known = 1;
        p->cursor = rlog_tail(r->shm->rlog);
        p->nscan = 0;
    } else {
        taken = advance_cursor(r, p);
    }
    /* more to send?  go on at once (records appended while the batch was
     * in flight, the rest of a backlog, or records that waited, now with
     * what they wait for: deps_wait), unless the peer still needs a
     * snapshot (it may be joining, or pulling one: look again in a
     * heartbeat) or even such a batch made no progress (again soon, see
     * STALL_RETRY_MS) */
    p->deps_wait = taken != TAKEN_ALL;
    p->stalls = taken == TAKEN_NONE ? p->stalls + 1 : 0;
    if (p->clock_known && !log_covers_peer(r, p))
        p->retry_at_ms = now + r->cfg->heartbeat_ms;
    else if (p->stalls != 0 && stall_delay(r, p->stalls) != 0)
        p->retry_at_ms = now + stall_delay(r, p->stalls);
    else
        p->retry_at_ms = 0;
    if (p->state == PEER_ACTIVE && p->cursor != rlog_head(r->shm->rlog) && p->retry_at_ms == 0) {
        peer_ship(r, p, now);
        if (taken == TAKEN_ALL && p->inflight && p->nsent != 0)
            stats_add(&r->stats->ship_after_answer, 1);
    }
}

/* --- probing ------------------------------------------------------------------ */

void peer_ping(struct replicator *r, struct peer *p, httpc_cb cb)
{
    if (p->inflight)
        return;
    if (httpc_request(p->conn, "GET", "/internal/ping", r->extra_headers, NULL, 0, r->cfg->peer_timeout_ms, cb, p) ==
        0) {
        p->inflight = 1;
        p->sent_ms = now_ms();
        p->last_probe_ms = p->sent_ms;
    }
}

static void on_probed(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct peer *p = arg;
    struct replicator *r = p->r;
    uint64_t now = now_ms();
    uint32_t flags;

    p->inflight = 0;
    if (p->state != PEER_EVICTED && p->state != PEER_PROBING)
        return; /* re-added from outside meanwhile, or canceled */
    if (status != 200 || peer_learn_clock(r, p, body, len, &flags) != 0) {
        if (p->answering_since != 0)
            log_info("peer=%s stopped answering probes", p->addr);
        p->answering_since = 0;
        peer_set_state(r, p, PEER_EVICTED);
        httpc_close(p->conn);
        return;
    }
    if (p->answering_since == 0) {
        p->answering_since = now;
        peer_set_state(r, p, PEER_PROBING);
        log_info("peer=%s answers probes again", p->addr);
    }
    if (now - p->answering_since >= r->cfg->readmit_delay_ms)
        readmit(r, p);
}

/* --- the tick ----------------------------------------------------------------- */

void peer_tick(struct replicator *r, struct peer *p, uint64_t now)
{
    if (p->row < 0 || p->state == PEER_SELF)
        return;
    ctl_next(r, p);

    switch (p->state) {
    case PEER_JOINING:
        /* never answered within the join grace? */
        if (!p->ever_answered && now >= p->grace_until_ms && !p->inflight) {
            peer_evict(r, p, "never answered within the join grace");
            return;
        }
        /* fall through */
    case PEER_ACTIVE:
    case PEER_SUSPECT:
        /* request in flight past the heartbeat interval? */
        if (p->inflight && p->state == PEER_ACTIVE && now - p->sent_ms >= r->cfg->heartbeat_ms)
            peer_set_state(r, p, PEER_SUSPECT);
        if (p->inflight || now < p->retry_at_ms)
            return;
        /* records the peer has not acked, or idle long enough for a heartbeat? */
        if ((p->clock_known && p->cursor != rlog_head(r->shm->rlog)) ||
            now - p->last_exchange_ms >= r->cfg->heartbeat_ms)
            peer_ship(r, p, now);
        return;
    case PEER_EVICTED:
    case PEER_PROBING:
        /* probe due? */
        if (!p->inflight && now - p->last_probe_ms >= r->cfg->probe_interval_ms)
            peer_ping(r, p, on_probed);
        return;
    }
}
