/*
 * replicator.h - the replicator process: the only one that talks to
 * peers as a client.  Ships the replication log, sends heartbeats,
 * detects failed peers, evicts, probes and re-admits them, broadcasts
 * view changes, and joins the cluster at startup (state transfer).
 */
#ifndef KVSD_REPLICATOR_H
#define KVSD_REPLICATOR_H

#include <h2o.h>

#include "config.h"
#include "httpc.h"
#include "repl.h"
#include "shm.h"
#include "view.h"
#include "wire.h"

#define CTL_QUEUE 16

/* One peer: everything the replicator knows about a view row. */
struct peer {
    struct replicator *r;
    int row; /* index into shm->view->m[], -1 if unused */
    char addr[ADDR_MAX];
    int state; /* enum peer_state; mirrored into shm->repl->peer[row] */
    uint64_t since_ms;
    httpc_conn_t *conn; /* shipping, heartbeats and probes: one at a time */
    httpc_conn_t *ctl;  /* view broadcasts */

    /* shipping */
    int inflight;
    uint64_t sent_ms;
    uint64_t last_exchange_ms;
    uint64_t last_probe_ms;
    uint64_t retry_at_ms; /* no shipping before this (no progress last time) */
    uint32_t stalls;      /* answers in a row whose records all waited */
    int deps_wait;        /* some records of the last answered batch waited */
    int clock_known;      /* acked clock learnt since (re)admission */
    uint64_t cursor;      /* log position: every earlier record is acked */
    struct scan_rec {
        uint64_t pos;
        uint32_t origin;
        uint32_t sent; /* in the batch (else acked, or left for later) */
        uint64_t seq;
    } * scan;
    size_t nscan, scancap;
    uint32_t nsent;          /* records in the batch in flight */
    uint64_t relay_until_ms; /* relay others' writes at once until then */
    uint64_t recheck_at_ms;  /* scan again then (a record gets relay-old), or 0 */
    uint64_t scan_end;

    /* liveness */
    int ever_answered;
    uint64_t grace_until_ms;  /* a JOINING peer is not evicted before */
    uint64_t answering_since; /* first of an unbroken run of probe answers */
    uint64_t stamp;           /* the peer's incarnation, as it last said */

    /* view messages waiting for ctl */
    struct ctl_msg {
        int put;
        char addr[ADDR_MAX];
    } ctlq[CTL_QUEUE];
    int nctlq;
    int ctl_busy;
};

struct replicator {
    shm_t *shm;
    struct proc_stats *stats; /* our slot's counters */
    const struct config *cfg;
    h2o_evloop_t *loop;
    h2o_socket_t *wake;
    char self_ip[ADDR_MAX];
    char extra_headers[192];
    struct peer peer[VIEW_MAX];
    uint64_t view_version;
    uint64_t started_ms;
    uint64_t log_seen;
    uint64_t reaped_ms;

    /* incarnation garbage collection (replicator.c gc_incarnations) */
    uint64_t gc_ms;
    uint64_t relabel_cursor;
    uintptr_t relabel_slots;        /* the table's slot array the pass walks */
    int relabeling;                 /* a relabel pass is under way */
    uint8_t relabel_rows[CLOCK_MAX]; /* STALE when the pass started */

    /* joining: 0 pinging peers, 1 pulling a snapshot, 2 done */
    int join_phase;
    int join_pending;
    int join_candidate[VIEW_MAX];
    int ncandidates;
    httpc_conn_t *snap_conn[VIEW_MAX]; /* state transfers, per peer */
    int snap_busy;
    /* a state transfer asked for by a replica outside our view (it has us
     * in its view and its log no longer holds what we lack) */
    httpc_conn_t *outside_conn;
    char outside_addr[ADDR_MAX];
    uint64_t join_retry_at_ms; /* every transfer failed: pull again then */
    uint32_t join_backoff_ms;  /* and the wait before that, doubling */

    char *rbuf; /* one log record */
    size_t rcap;
};

void replicator_main(shm_t *shm, const struct config *cfg, int slot) __attribute__((noreturn));

/* peer.c: the per-peer state machine */
void peer_init(struct replicator *r, struct peer *p, int row);
void peer_tick(struct replicator *r, struct peer *p, uint64_t now);
void peer_ship(struct replicator *r, struct peer *p, uint64_t now);
void peer_evict(struct replicator *r, struct peer *p, const char *why);
void peer_set_state(struct replicator *r, struct peer *p, int state);
/* Re-added from outside (PUT /view): JOINING until it answers. */
void peer_readmitted(struct replicator *r, struct peer *p);
void peer_removed(struct replicator *r, struct peer *p); /* deleted from outside */
void peer_ping(struct replicator *r, struct peer *p, httpc_cb cb);
/* Queue PUT (put=1) or DELETE /view {addr} to every in-view peer but
 * `except` (may be NULL). */
void broadcast_view(struct replicator *r, int put, const char *addr, const struct peer *except);
/* Learn a peer's clock from a KVC1 body; -1 if malformed. */
int peer_learn_clock(struct replicator *r, struct peer *p, const char *body, size_t len, uint32_t *flags);

/* rlog->acked_pos (replicator.c) */
void replicator_advance_acked(struct replicator *r);
void replicator_acked_lowered(struct replicator *r);

#endif
