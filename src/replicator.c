/*
 * replicator.c - replicator_main(): the process that talks to peers.
 *
 * One libh2o event loop, no threads.  It wakes on a 100 ms tick and
 * whenever a writer pokes the eventfd in shm (a new log record, a view
 * change, a snapshot request).  The tick, like Redis's
 * replicationCron(), is a flat list of guarded checks; per-peer work is
 * in peer.c.  Joining: at startup a replica announces itself (PUT /view
 * to every address in VIEW), pings its peers, pulls a snapshot from the
 * first one that answers ready, installs it, and only then reports ready;
 * if no peer is up it is the first of its cluster and is ready at once.
 * A replica whose store came back from its --data-dir pulls no snapshot:
 * it waits until its peers have shipped, from their log rings, what they
 * had at the join (a snapshot only if a ring no longer holds it).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lock.h"
#include "log.h"
#include "notify.h"
#include "repl.h"
#include "rcu.h"
#include "replicator.h"
#include "rlog.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define TICK_MS 100
#define SNAPSHOT_TIMEOUT_MS 60000
/* After every state transfer of a join failed, pull again after 1 s,
 * doubling up to 8 s: each attempt costs the peer a full snapshot. */
#define JOIN_RETRY_MS 1000
#define JOIN_RETRY_MAX_MS 8000

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

static struct replicator rep;

/* --- snapshots ---------------------------------------------------------------- */

static void set_ready(struct replicator *r, const char *how)
{
    if (!__atomic_load_n(&r->shm->repl->ready, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&r->shm->repl->ready, 1, __ATOMIC_RELEASE);
        log_info("ready: %s", how);
        notify_ready(); /* systemd Type=notify; the unit allows any process of the service */
    }
    r->join_phase = 2;
}

static int install_snapshot(struct replicator *r, const char *body, size_t len, const char *from)
{
    struct wire_msg msg;
    int32_t ids[CLOCK_MAX + 1];
    uint64_t clock[CLOCK_MAX];
    uint32_t i, ninc = 0;
    int rc;

    if (wire_decode(body, len, &msg) != 0 || memcmp(msg.magic, "KVS1", 4) != 0) {
        if (msg.inc != NULL)
            wire_msg_free(&msg);
        log_warn("peer=%s sent a malformed snapshot", from);
        return -1;
    }
    if (wire_localize(r->shm, &msg, ids) != 0) {
        wire_msg_free(&msg);
        return -1;
    }
    memset(clock, 0, sizeof(clock));
    for (i = 0; i < msg.ncount; ++i) {
        if (msg.count[i].inc == WIRE_NO_INC)
            continue;
        clock[msg.count[i].inc] = msg.count[i].n;
        if (msg.count[i].inc + 1 > ninc)
            ninc = msg.count[i].inc + 1;
    }
    rc = store_install_sh(r->shm, msg.rec, msg.nrec, clock, ninc);
    if (rc == 0) {
        /* adopt retirements the peer has already settled */
        lock_acquire_sh(r->shm->lock);
        for (i = 0; i < msg.ncount; ++i) {
            struct incarnation *inc;
            if (msg.count[i].inc == WIRE_NO_INC)
                continue;
            inc = &r->shm->clock->inc[msg.count[i].inc];
            if ((msg.count[i].flags & INC_FINAL) && !(inc->flags & INC_FINAL))
                clock_settle_sh(r->shm->clock, msg.count[i].inc, msg.count[i].final_seq);
        }
        lock_release_sh(r->shm->lock);
        log_info("installed a snapshot of %u entries from peer=%s", msg.nrec, from);
        stats_add(&r->stats->snapshots_installed, 1);
    } else {
        log_error("snapshot from peer=%s does not fit in the store", from);
    }
    wire_msg_free(&msg);
    return rc;
}

static void pull_next(struct replicator *r);

static void on_snapshot(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct replicator *r = arg;
    struct peer *p = &r->peer[r->join_candidate[0]];

    r->snap_busy = 0;
    if (status == 200 && install_snapshot(r, body, len, p->addr) == 0) {
        /* what peers asked for before this install is stale; one still
         * behind asks again with its next batch */
        __atomic_store_n(&r->shm->repl->snapshot_req, 0, __ATOMIC_RELEASE);
        if (r->join_phase == 1)
            stats_add(&r->stats->joins_snapshot, 1);
        set_ready(r, "caught up by state transfer");
        return;
    }
    if (status == 0)
        log_warn("peer=%s: snapshot failed: %s", p->addr, err);
    else if (status != 200)
        log_warn("peer=%s: snapshot failed: answered %d", p->addr, status);
    memmove(&r->join_candidate[0], &r->join_candidate[1], sizeof(int) * (size_t)--r->ncandidates);
    pull_next(r);
}

static void pull_next(struct replicator *r)
{
    struct peer *p;

    if (r->ncandidates == 0) {
        /* A joining replica that a ready peer answered never serves
         * without that state: a failed or truncated transfer is a failed
         * join, tried again.  (A failed catch-up pull of a ready replica
         * is asked for again by the peer's next batch.) */
        if (r->join_phase == 1) {
            r->join_backoff_ms = r->join_backoff_ms == 0 ? JOIN_RETRY_MS : r->join_backoff_ms * 2;
            if (r->join_backoff_ms > JOIN_RETRY_MAX_MS)
                r->join_backoff_ms = JOIN_RETRY_MAX_MS;
            log_warn("no snapshot installed; not ready, pulling again in %u ms", r->join_backoff_ms);
            r->join_retry_at_ms = now_ms() + r->join_backoff_ms;
        }
        return;
    }
    p = &r->peer[r->join_candidate[0]];
    if (r->snap_conn[p->row] == NULL) {
        r->snap_conn[p->row] = httpc_new((h2o_loop_t *)r->loop, r->self_ip, p->addr);
        /* a snapshot is as large as the peer's store: one larger than
         * ours could not be installed anyway */
        httpc_set_max_body(r->snap_conn[p->row], r->cfg->memory);
    }
    log_info("pulling a snapshot from peer=%s", p->addr);
    if (httpc_request(r->snap_conn[p->row],
                      "GET",
                      "/internal/snapshot",
                      r->extra_headers,
                      NULL,
                      0,
                      SNAPSHOT_TIMEOUT_MS,
                      on_snapshot,
                      r) == 0)
        r->snap_busy = 1;
}

/* A replica outside our view replicates to us (its view has us), and its
 * log no longer holds what we lack: pull its snapshot all the same, or
 * we would lack those writes until someone adds it to our view. */
static void on_outside_snapshot(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct replicator *r = arg;

    r->snap_busy = 0;
    if (status == 200 && install_snapshot(r, body, len, r->outside_addr) == 0) {
        __atomic_store_n(&r->shm->repl->snapshot_req, 0, __ATOMIC_RELEASE);
        return;
    }
    log_warn("peer=%s: snapshot failed: %s", r->outside_addr, status == 0 ? err : "bad answer");
}

static void pull_from_outside(struct replicator *r, const char *addr)
{
    if (r->outside_conn != NULL && strncmp(r->outside_addr, addr, ADDR_MAX) != 0) {
        httpc_free(r->outside_conn);
        r->outside_conn = NULL;
    }
    if (r->outside_conn == NULL) {
        memcpy(r->outside_addr, addr, ADDR_MAX);
        r->outside_addr[ADDR_MAX - 1] = '\0';
        r->outside_conn = httpc_new((h2o_loop_t *)r->loop, r->self_ip, r->outside_addr);
        httpc_set_max_body(r->outside_conn, r->cfg->memory);
    }
    log_info("pulling a snapshot from peer=%s, which is not in our view", r->outside_addr);
    if (httpc_request(r->outside_conn,
                      "GET",
                      "/internal/snapshot",
                      r->extra_headers,
                      NULL,
                      0,
                      SNAPSHOT_TIMEOUT_MS,
                      on_outside_snapshot,
                      r) == 0)
        r->snap_busy = 1;
}

/* --- catching up from peers' logs (--data-dir) ----------------------------- */

/* A replica whose store came back from its data directory lacks only
 * what the cluster wrote while it was down.  Its peers ship that from
 * their log rings, as to any peer, from the clock it reports; a peer
 * whose ring no longer holds it flags WIRE_SNAPSHOT_NEEDED, and then (or
 * after CATCHUP_TIMEOUT_MS) the join falls back to a state transfer.
 * Ready once the store holds what every ready peer had at the join. */
#define CATCHUP_TIMEOUT_MS 10000

static struct catchup {
    int active;
    uint64_t started_ms;
    uint64_t target[CLOCK_MAX]; /* per incarnation, the most any ready peer had */
} catchup;

/* Only a store recovered from disk holds writes before the join. */
static int store_recovered(const struct replicator *r)
{
    uint64_t applied[CLOCK_MAX];
    uint32_t id, ninc;

    if (r->cfg->data_dir[0] == '\0')
        return 0;
    ninc = clock_snapshot(r->shm->clock, applied);
    for (id = 0; id < ninc; ++id)
        if (applied[id] != 0)
            return 1;
    return 0;
}

static void catchup_start(struct replicator *r)
{
    uint32_t id, ninc = __atomic_load_n(&r->shm->clock->ninc, __ATOMIC_ACQUIRE);
    int i;

    memset(&catchup, 0, sizeof(catchup));
    for (i = 0; i < r->ncandidates; ++i) {
        const struct repl_peer_sh *m = &r->shm->repl->peer[r->join_candidate[i]];
        for (id = 0; id < ninc; ++id) {
            uint64_t acked = __atomic_load_n(&m->acked[id], __ATOMIC_RELAXED);
            if (acked != ACKED_FOLDED && acked > catchup.target[id])
                catchup.target[id] = acked;
        }
    }
    catchup.active = 1;
    catchup.started_ms = now_ms();
    log_info("store recovered from %s: catching up from the peers' log tails", r->cfg->data_dir);
}

static int caught_up(const struct replicator *r)
{
    const struct clock_sh *clock = r->shm->clock;
    uint32_t id, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);

    for (id = 0; id < ninc; ++id)
        if (catchup.target[id] > clock_applied(clock, id) && !(clock_flags(clock, id) & (INC_FOLDED | INC_FREE)))
            return 0;
    return 1;
}

static void join_retry(struct replicator *r);

/* Tick, while catching up: done, or fall back to a snapshot? */
static void catchup_check(struct replicator *r, uint64_t now)
{
    char msg[96];

    if (__atomic_load_n(&r->shm->repl->snapshot_req, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&r->shm->repl->snapshot_req, 0, __ATOMIC_RELEASE);
        log_info("peer=%s's log no longer holds what we lack: joining by state transfer",
                 r->shm->repl->snapshot_from);
        catchup.active = 0;
        join_retry(r);
    } else if (caught_up(r)) {
        catchup.active = 0;
        stats_add(&r->stats->joins_log, 1);
        snprintf(msg, sizeof(msg), "caught up from the peers' log tails in %llu ms",
                 (unsigned long long)(now - catchup.started_ms));
        set_ready(r, msg);
    } else if (now - catchup.started_ms >= CATCHUP_TIMEOUT_MS) {
        log_warn("not caught up from the peers' logs after %u ms: joining by state transfer", CATCHUP_TIMEOUT_MS);
        catchup.active = 0;
        join_retry(r);
    }
}

/* --- joining ------------------------------------------------------------------ */

static void on_join_ping(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct peer *p = arg;
    struct replicator *r = p->r;
    uint32_t flags = 0;

    p->inflight = 0;
    if (r->join_phase != 0)
        return;
    --r->join_pending;
    if (status == 200 && peer_learn_clock(r, p, body, len, &flags) == 0) {
        p->ever_answered = 1;
        if (flags & WIRE_READY)
            r->join_candidate[r->ncandidates++] = p->row;
    }
    if (r->join_pending == 0) {
        r->join_phase = 1;
        if (r->ncandidates == 0)
            set_ready(r, "no peer is ready to give a snapshot; serving what we have");
        else if (store_recovered(r))
            catchup_start(r);
        else
            pull_next(r);
    }
}

/* A ready peer answered the join, but no transfer succeeded: ask every
 * peer of the view again (one that is not ready answers 503). */
static void join_retry(struct replicator *r)
{
    int i;

    r->join_retry_at_ms = 0;
    r->ncandidates = 0;
    for (i = 0; i < VIEW_MAX; ++i)
        if (r->peer[i].row >= 0 && r->peer[i].state != PEER_SELF)
            r->join_candidate[r->ncandidates++] = r->peer[i].row;
    pull_next(r);
}

static void join_start(struct replicator *r)
{
    int i;

    for (i = 0; i < VIEW_MAX; ++i) {
        struct peer *p = &r->peer[i];
        if (p->row < 0 || p->state == PEER_SELF)
            continue;
        ++r->join_pending;
        peer_ping(r, p, on_join_ping);
    }
    if (r->join_pending == 0) {
        set_ready(r, "alone in the view");
        return;
    }
    broadcast_view(r, 1, r->cfg->address, NULL);
}

/* --- view changes made by workers ------------------------------------------- */

static void sync_view(struct replicator *r)
{
    struct view_sh *view = r->shm->view;
    uint64_t version = __atomic_load_n(&view->version, __ATOMIC_ACQUIRE);
    uint32_t i, n = __atomic_load_n(&view->n, __ATOMIC_ACQUIRE);

    if (version == r->view_version)
        return;
    r->view_version = version;
    for (i = 0; i < n && i < VIEW_MAX; ++i) {
        struct peer *p = &r->peer[i];
        int in_view = __atomic_load_n(&view->m[i].in_view, __ATOMIC_ACQUIRE) != 0;

        if (!view->m[i].used)
            continue;
        if (p->row < 0) {
            peer_init(r, p, (int)i);
            if (p->state != PEER_SELF)
                log_info("peer=%s added to the view", p->addr);
            continue;
        }
        if (p->state == PEER_SELF)
            continue;
        if (in_view && (p->state == PEER_EVICTED || p->state == PEER_PROBING)) {
            log_info("peer=%s re-added to the view", p->addr);
            peer_readmitted(r, p);
        } else if (!in_view && p->state != PEER_EVICTED && p->state != PEER_PROBING) {
            peer_removed(r, p);
        }
    }
}

/* --- what the replicas we know have acknowledged ------------------------------ */

/* The replicas we know, evicted ones too (they may hold writes made while
 * partitioned, and come back for what they lack):
 *     for (i = 0; (m = known_peer(r, &i)) != NULL; ++i)
 * r->peer[i] is the peer, m its shared state. */
static const struct repl_peer_sh *known_peer(const struct replicator *r, int *i)
{
    for (; *i < VIEW_MAX; ++*i)
        if (r->peer[*i].row >= 0 && r->peer[*i].state != PEER_SELF)
            return &r->shm->repl->peer[r->peer[*i].row];
    return NULL;
}

#define PEERS_UNHEARD 1 /* one never reported its clock: it may hold anything */
#define PEERS_AHEAD 2   /* one holds writes we have not applied */

/* floor[id] for each of the *ninc incarnations: the least count of it
 * that we and every replica we know hold (UINT64_MAX for a folded life:
 * everyone has all of it).  Returns PEERS_UNHEARD and PEERS_AHEAD as
 * they apply. */
static int acked_floor(const struct replicator *r, uint64_t *floor, uint32_t *ninc)
{
    const struct clock_sh *clock = r->shm->clock;
    const struct repl_peer_sh *m;
    uint32_t id, n = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);
    int i, flags = 0;

    for (id = 0; id < n; ++id)
        floor[id] = clock_folded(clock, id) ? UINT64_MAX : clock_applied(clock, id);
    for (i = 0; (m = known_peer(r, &i)) != NULL; ++i) {
        if (__atomic_load_n(&m->acked_at_ms, __ATOMIC_ACQUIRE) == 0)
            flags |= PEERS_UNHEARD;
        for (id = 0; id < n; ++id) {
            uint64_t acked = __atomic_load_n(&m->acked[id], __ATOMIC_RELAXED);
            if (floor[id] == UINT64_MAX || acked == ACKED_FOLDED)
                continue; /* folded here or there: everyone has all of it */
            if (acked > clock_applied(clock, id))
                flags |= PEERS_AHEAD;
            if (acked < floor[id])
                floor[id] = acked;
        }
    }
    *ninc = n;
    return flags;
}

/* --- retired incarnations --------------------------------------------------- */

/* A restarted replica's old incarnation is settled once every view
 * member has reported its clock since the restart was seen and we hold
 * at least what any of them holds of it: writes past that are lost. */
static void settle_retired(struct replicator *r)
{
    struct clock_sh *clock = r->shm->clock;
    const struct repl_peer_sh *m;
    uint32_t id, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);
    int i;

    for (id = 0; id < ninc; ++id) {
        struct incarnation *inc = &clock->inc[id];
        int settled = 1;

        if ((inc->flags & (INC_RETIRED | INC_FINAL)) != INC_RETIRED)
            continue;
        for (i = 0; settled && (m = known_peer(r, &i)) != NULL; ++i) {
            if (!r->shm->view->m[r->peer[i].row].in_view)
                continue;
            if (m->acked_at_ms <= inc->retired_at_ms ||
                (m->acked[id] != ACKED_FOLDED && m->acked[id] > clock_applied(clock, id)))
                settled = 0;
        }
        if (!settled)
            continue;
        lock_acquire_sh(r->shm->lock);
        clock_settle_sh(clock, id, clock->applied[id]);
        lock_release_sh(r->shm->lock);
        log_info("incarnation %s/%llu settled at seq %llu: any later write of it died with it",
                 inc->addr,
                 (unsigned long long)inc->stamp,
                 (unsigned long long)inc->final_seq);
    }
}

/* --- incarnation garbage collection ------------------------------------------ */

#define GC_INTERVAL_MS 100 /* every tick: folding and a freeing check are cheap */
#define RELABEL_BUDGET 65536 /* table slots per lock hold */

/* Every replica we know (evicted ones too) has reported its clock since
 * `since`, and reported exactly our count of id (or that it folded id). */
static int peers_agree(struct replicator *r, uint32_t id, uint64_t since)
{
    uint64_t have = clock_applied(r->shm->clock, id);
    const struct repl_peer_sh *m;
    int i;

    for (i = 0; (m = known_peer(r, &i)) != NULL; ++i) {
        uint64_t acked = __atomic_load_n(&m->acked[id], __ATOMIC_RELAXED);
        if (m->acked_at_ms <= since || (acked != ACKED_FOLDED && acked != have))
            return 0;
    }
    return 1;
}

/* We have applied everything every replica had when it last reported. */
static int have_what_peers_had(struct replicator *r)
{
    uint64_t floor[CLOCK_MAX];
    uint32_t ninc;

    return !(acked_floor(r, floor, &ninc) & PEERS_AHEAD);
}

/* Fold every settled retired incarnation that every replica we know
 * holds exactly as much of as we do (doc/design.md, "Incarnation garbage
 * collection"). */
static void fold_settled(struct replicator *r)
{
    struct clock_sh *clock = r->shm->clock;
    uint32_t id, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);
    int checked = 0;

    for (id = 0; id < ninc; ++id) {
        struct incarnation *inc = &clock->inc[id];
        if ((clock_flags(clock, id) & (INC_FINAL | INC_FOLDED | INC_FREE)) != INC_FINAL ||
            clock_applied(clock, id) < inc->final_seq || !peers_agree(r, (uint32_t)id, inc->retired_at_ms))
            continue;
        if (!checked++ && !have_what_peers_had(r))
            return;
        lock_acquire_sh(r->shm->lock);
        clock_fold_sh(clock, id, rlog_head(r->shm->rlog));
        lock_release_sh(r->shm->lock);
        stats_add(&r->stats->incarnations_folded, 1);
        log_info("incarnation %s/%llu folded: every replica has all %llu of its writes",
                 inc->addr,
                 (unsigned long long)inc->stamp,
                 (unsigned long long)clock_applied(clock, id));
    }
}

/* Can the log drop everything before pos?  Only if every replica we know
 * has acknowledged each record there (or it is of a folded life). */
static int log_trimmable(struct replicator *r, uint64_t pos)
{
    uint64_t at = rlog_tail(r->shm->rlog), floor[CLOCK_MAX];
    uint32_t ninc;
    struct rlog_rec hdr;
    long n;

    acked_floor(r, floor, &ninc);
    while (at < pos && (n = rlog_peek(r->shm->rlog, &at, &hdr)) > 0)
        if (hdr.origin >= ninc || hdr.seq > floor[hdr.origin])
            return 0;
    return 1;
}

/* Free a STALE row: nothing refers to it any more. */
static void free_row(struct replicator *r, uint32_t id)
{
    struct clock_sh *clock = r->shm->clock;
    char addr[ADDR_MAX];
    uint64_t stamp = clock->inc[id].stamp;
    uint64_t upto = __atomic_load_n(&clock->inc[id].lost_upto, __ATOMIC_RELAXED);
    int i;

    memcpy(addr, clock->inc[id].addr, ADDR_MAX);
    /* kvsd_writes_lost_total sums the rows: keep what this one counted */
    if (upto > clock->inc[id].final_seq)
        stats_add(&r->stats->writes_lost_freed, upto - clock->inc[id].final_seq);
    lock_acquire_sh(r->shm->lock);
    __atomic_store_n(&r->shm->rlog->tail_clock[id], 0, __ATOMIC_RELAXED);
    clock_free_sh(clock, id, rcu_advance_sh(r->shm->rcu));
    lock_release_sh(r->shm->lock);
    for (i = 0; i < VIEW_MAX; ++i)
        __atomic_store_n(&r->shm->repl->peer[i].acked[id], 0, __ATOMIC_RELAXED);
    stats_add(&r->stats->incarnations_freed, 1);
    log_debug("incarnation %s/%llu freed (row %u)", addr, (unsigned long long)stamp, id);
}

/* STALE rows (folded lives below their address's floor) are freed once
 * no entry, no log record and no reader refers to them: a relabel pass
 * over the table that started after they became STALE moves their
 * entries to the floor row; the log must have dropped every record from
 * before they were folded (it is trimmed when every replica has those);
 * readers are waited for by RCU when the row is reused. */
static void reclaim_stale(struct replicator *r)
{
    struct clock_sh *clock = r->shm->clock;
    uint32_t id, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE), nstale = 0;
    int done;

    if (!r->relabeling) {
        for (id = 0; id < ninc; ++id)
            nstale += r->relabel_rows[id] = (clock_flags(clock, id) & (INC_STALE | INC_FREE)) == INC_STALE;
        if (nstale == 0)
            return;
        r->relabeling = 1;
        r->relabel_cursor = 0;
        r->relabel_slots = 0;
    }
    store_relabel_sh(r->shm, &r->relabel_cursor, &r->relabel_slots, RELABEL_BUDGET, &done);
    if (!done)
        return;
    r->relabeling = 0;
    for (id = 0; id < ninc; ++id) {
        uint64_t fold_pos = clock->inc[id].fold_pos;
        if (!r->relabel_rows[id] || (clock_flags(clock, id) & (INC_STALE | INC_FREE)) != INC_STALE)
            continue;
        if (rlog_tail(r->shm->rlog) < fold_pos) {
            if (!log_trimmable(r, fold_pos))
                continue; /* a peer still needs records that name it */
            lock_acquire_sh(r->shm->lock);
            rlog_trim_sh(r->shm->rlog, fold_pos);
            lock_release_sh(r->shm->lock);
            if (rlog_tail(r->shm->rlog) < fold_pos)
                continue; /* the persister has not written them yet (rlog keep_from) */
        }
        /* an early wrap may have moved it past copies that name the life */
        if (rlog_tail(r->shm->rlog) < __atomic_load_n(&clock->inc[id].fold_pos, __ATOMIC_ACQUIRE))
            continue;
        free_row(r, id);
    }
}

static void gc_incarnations(struct replicator *r, uint64_t now)
{
    if (r->relabeling) {
        reclaim_stale(r); /* a pass under way goes on every tick */
        return;
    }
    if (now - r->gc_ms < GC_INTERVAL_MS)
        return;
    r->gc_ms = now;
    fold_settled(r);
    reclaim_stale(r);
}

/* --- tombstones ---------------------------------------------------------------- */

#define REAP_INTERVAL_MS 2000

/* A tombstone can go once no write it must win or lose against can still
 * arrive.  Every replica we know (evicted ones too: they may hold writes
 * made while partitioned) must have applied it, and we must have applied
 * everything each of them had applied when it said so -- that covers any
 * write concurrent with the delete.  Otherwise a late concurrent write
 * would find no tombstone here and win, while losing to it elsewhere.  A
 * replica outside the view that still lacks the delete gets it from a log
 * or, if the logs no longer hold it, by a snapshot whose install drops the
 * stale key. */
static void reap_tombstones(struct replicator *r, uint64_t now)
{
    uint64_t floor[CLOCK_MAX];
    uint32_t ninc;
    size_t n;

    if (now - r->reaped_ms < REAP_INTERVAL_MS || r->shm->table->ntomb == 0)
        return;
    r->reaped_ms = now;
    if (acked_floor(r, floor, &ninc) != 0)
        return; /* one never heard from may hold anything; one ahead, concurrent writes */
    if ((n = store_reap_sh(r->shm, floor, ninc)) != 0) {
        stats_add(&r->stats->tombstones_reaped, n);
        log_debug("reaped %zu tombstones", n);
    }
}

/* --- the log's tail ------------------------------------------------------------ */

/* Records looked at per tick: bounds the scan and the writer lock hold of
 * the trim (some 0.3 ms), and still trims 650,000 records a second. */
#define TRIM_SCAN_MAX 65536

/* Move rlog->acked_pos over the records every replica we know has
 * acknowledged (with no peer: all of them).  Evicted peers count too, so
 * one that comes back finds what it lacks; one whose clock went back (a
 * restart) is sent to a snapshot by log_covers_peer() if the records it
 * lacks are gone, exactly as when the ring overwrites them.  Called as
 * answers come, so that an early wrap (rlog.h) drops what is acknowledged
 * and copies only what is in flight; it scans on from where it stopped,
 * since acknowledgements only grow (replicator_acked_lowered() else). */
void replicator_advance_acked(struct replicator *r)
{
    struct rlog_sh *rlog = r->shm->rlog;
    uint64_t floor[CLOCK_MAX], pos = __atomic_load_n(&rlog->acked_pos, __ATOMIC_RELAXED), at;
    uint32_t ninc;
    struct rlog_rec hdr;
    long n = 1;
    int scanned;

    if (pos < rlog_tail(rlog))
        pos = rlog_tail(rlog);
    at = pos;
    acked_floor(r, floor, &ninc);
    for (scanned = 0; scanned < TRIM_SCAN_MAX && (n = rlog_peek(rlog, &pos, &hdr)) > 0; ++scanned) {
        if (hdr.origin >= ninc || hdr.seq > floor[hdr.origin]) {
            at = pos - (uint64_t)n; /* some replica lacks it (or it is newer than ninc) */
            break;
        }
        at = pos;
    }
    if (n < 0)
        return; /* overwritten under us: look again from the tail next time */
    __atomic_store_n(&rlog->acked_pos, at, __ATOMIC_RELEASE);
}

/* A peer's acknowledgements went back (a new life) or a peer was added:
 * what acked_pos passed may be what it lacks. */
void replicator_acked_lowered(struct replicator *r)
{
    __atomic_store_n(&r->shm->rlog->acked_pos, rlog_tail(r->shm->rlog), __ATOMIC_RELEASE);
}

/* Drop the log records every replica we know has acknowledged, and with
 * them their ring pages: a log that keeps copies nobody needs doubles
 * what a key costs (issue 13). */
static void trim_acked(struct replicator *r)
{
    replicator_advance_acked(r);
    /* even with nothing to drop: the trim also sizes the ring's hot window */
    lock_acquire_sh(r->shm->lock);
    rlog_trim_sh(r->shm->rlog, __atomic_load_n(&r->shm->rlog->acked_pos, __ATOMIC_ACQUIRE));
    lock_release_sh(r->shm->lock);
}

/* --- the loop ------------------------------------------------------------------ */

static void tick(struct replicator *r)
{
    uint64_t now = now_ms();
    int i;

    /* membership changed through /view? */
    sync_view(r);
    /* a peer said our clock is behind its log: pull a snapshot */
    if (r->join_phase == 2 && !r->snap_busy && __atomic_load_n(&r->shm->repl->snapshot_req, __ATOMIC_ACQUIRE)) {
        int row = view_find(r->shm->view, r->shm->repl->snapshot_from);
        __atomic_store_n(&r->shm->repl->snapshot_req, 0, __ATOMIC_RELEASE);
        if (row >= 0 && r->peer[row].row >= 0) {
            r->join_candidate[0] = row;
            r->ncandidates = 1;
            pull_next(r);
        } else {
            pull_from_outside(r, r->shm->repl->snapshot_from);
        }
    }
    /* a join whose state transfers all failed, due to try again? */
    if (r->join_phase == 1 && !r->snap_busy && r->join_retry_at_ms != 0 && now >= r->join_retry_at_ms)
        join_retry(r);
    /* a join catching up from the peers' logs: done, or stuck? */
    if (r->join_phase == 1 && catchup.active)
        catchup_check(r, now);
    /* every peer's state machine */
    for (i = 0; i < VIEW_MAX; ++i)
        if (r->peer[i].row >= 0)
            peer_tick(r, &r->peer[i], now);
    /* retired incarnations everyone has reported on? */
    settle_retired(r);
    /* tombstones every member has applied? */
    reap_tombstones(r, now);
    /* incarnations every replica has all of? */
    gc_incarnations(r, now);
    /* log records every replica has? */
    trim_acked(r);
}

/* Active, clock known, no batch in flight, not backing off. */
static int idle(const struct peer *p, uint64_t now)
{
    return p->row >= 0 && p->state == PEER_ACTIVE && p->clock_known && !p->inflight && now >= p->retry_at_ms;
}

/* Which new log records would be shipped at once (REPL_WAKE_*)?  A
 * client write if some active peer is idle; a replicated one if such a
 * peer also gets relays at once. */
static uint32_t ships_at_once(const struct replicator *r)
{
    uint64_t now = now_ms();
    uint32_t when = 0;
    int i;

    for (i = 0; i < VIEW_MAX; ++i)
        if (idle(&r->peer[i], now))
            when |= REPL_WAKE_OWN | (now < r->peer[i].relay_until_ms ? REPL_WAKE_RELAY : 0);
    return when;
}

/* When an active peer wants a scan without a new record (UINT64_MAX:
 * never): the retry of a batch whose records waited for dependencies
 * (peer.c, STALL_RETRY_MS; no re-check before it), or a re-check of
 * records getting relay-old.  Waiting for the tick would stall both. */
static uint64_t due_at(const struct peer *p)
{
    if (p->row < 0 || p->state != PEER_ACTIVE || !p->clock_known || p->inflight)
        return UINT64_MAX;
    if (p->retry_at_ms != 0)
        return p->retry_at_ms;
    return p->recheck_at_ms != 0 ? p->recheck_at_ms : UINT64_MAX;
}

/* New log records (due_only 0) or due scans (1): ship to every idle
 * active peer at once. */
static void ship_all(struct replicator *r, int due_only)
{
    uint64_t now = now_ms();
    int i;

    for (i = 0; i < VIEW_MAX; ++i) {
        struct peer *p = &r->peer[i];
        if (due_only ? due_at(p) <= now : idle(p, now))
            peer_ship(r, p, now);
    }
}

/* When the earliest due scan of a peer is (UINT64_MAX: none). */
static uint64_t next_due(const struct replicator *r)
{
    uint64_t at = UINT64_MAX, t;
    int i;

    for (i = 0; i < VIEW_MAX; ++i)
        if ((t = due_at(&r->peer[i])) < at)
            at = t;
    return at;
}

static void on_wake(h2o_socket_t *sock, const char *err)
{
    if (err != NULL)
        return;
    h2o_buffer_consume(&sock->input, sock->input->size);
}

static void setup(struct replicator *r, shm_t *shm, const struct config *cfg, int slot)
{
    const char *colon = strrchr(cfg->address, ':');
    int i, fd;

    memset(r, 0, sizeof(*r));
    r->shm = shm;
    r->stats = &shm->stats->proc[slot];
    r->cfg = cfg;
    r->loop = h2o_evloop_create();
    r->started_ms = now_ms();
    snprintf(r->self_ip, sizeof(r->self_ip), "%.*s", (int)(colon - cfg->address), cfg->address);
    if (cfg->cluster_key[0] != '\0')
        snprintf(r->extra_headers, sizeof(r->extra_headers), "X-Kvsd-Cluster-Key: %s\r\n", cfg->cluster_key);
    r->rcap = 64 * 1024;
    r->rbuf = xmalloc(r->rcap);
    for (i = 0; i < VIEW_MAX; ++i)
        r->peer[i].row = -1;
    if ((fd = dup(shm->wake_fd)) == -1)
        fatal("dup");
    r->wake = h2o_evloop_socket_create(r->loop, fd, 0);
    h2o_socket_read_start(r->wake, on_wake);
    r->view_version = (uint64_t)-1;
    sync_view(r);
    r->log_seen = rlog_head(shm->rlog);
}

void replicator_main(shm_t *shm, const struct config *cfg, int slot)
{
    struct replicator *r = &rep;
    uint64_t next_tick;

    set_proc_name("kvsd-replicator");
    log_set_role("replicator", -1);
    child_signals(on_signal);
    if (getppid() != shm->master_pid)
        exit(0);
    rcu_register_sh(shm->rcu, slot, getpid());

    setup(r, shm, cfg, slot);
    if (__atomic_load_n(&shm->repl->ready, __ATOMIC_ACQUIRE))
        r->join_phase = 2; /* restarted by the master: already joined */
    else
        join_start(r);

    next_tick = now_ms() + TICK_MS;
    while (!got_term) {
        uint64_t now = now_ms(), head, until = next_tick, due = next_due(r);
        int32_t wait;

        if (due < until)
            until = due;
        wait = now >= until ? 0 : (int32_t)(until - now);

        /* Writers poke the eventfd only for the kinds of record that
         * repl->sleeping names, and we name only those a new record of
         * would be shipped at once: with no idle active peer (none at
         * all, or all with a batch in flight, whose answer ships the
         * rest) a client write costs no syscall and no context switch,
         * and a replicated one never does unless some peer is in relay
         * mode.  Then sleep only if nothing arrived meanwhile. */
        __atomic_store_n(&shm->repl->sleeping, ships_at_once(r), __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (rlog_head(shm->rlog) != r->log_seen ||
            __atomic_load_n(&shm->view->version, __ATOMIC_ACQUIRE) != r->view_version)
            wait = 0;
        h2o_evloop_run(r->loop, wait);
        __atomic_store_n(&shm->repl->sleeping, 0, __ATOMIC_RELEASE);

        if ((head = rlog_head(shm->rlog)) != r->log_seen) {
            r->log_seen = head;
            ship_all(r, 0);
        } else if (due != UINT64_MAX && now_ms() >= due) {
            ship_all(r, 1);
        }
        if (__atomic_load_n(&shm->view->version, __ATOMIC_ACQUIRE) != r->view_version)
            sync_view(r);
        if (got_hup) {
            got_hup = 0;
            log_reopen();
        }
        if (now_ms() >= next_tick) {
            if (getppid() != shm->master_pid) /* PDEATHSIG's fallback */
                break;
            tick(r);
            next_tick = now_ms() + TICK_MS;
        }
    }
    log_debug("exiting");
    exit(0);
}
