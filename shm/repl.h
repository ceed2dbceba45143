/*
 * repl.h - what the replicator publishes in shared memory: whether this
 * replica is ready, when it sleeps, a snapshot request from the workers,
 * and its per-peer state (state machine position, the peer's acked
 * clock), one row for each row of the view.
 *
 * The view (view.h) says who the members are; this region says how the
 * replicator stands with each of them.  peer[i] belongs to view row i,
 * and like view rows, it is never moved or handed to another address.
 *
 * Concurrency contract:
 *   - ready: written by the replicator only (release), once it has joined
 *     and installed its snapshot; read by anyone (acquire): /ready, /kvs,
 *     /internal/clock.
 *   - sleeping: the REPL_WAKE_* mask of new log records the replicator
 *     would ship at once, stored (release) before it waits on wake_fd and
 *     cleared when it wakes.  A writer issues a full fence after its log
 *     append, then loads it (acquire), and pokes wake_fd only for a bit it
 *     names; the replicator fences between the store and its last look at
 *     the log head, so one of the two sees the other.
 *   - snapshot_req, snapshot_from: a worker told that our clock is behind
 *     a peer's log writes the peer's address, then sets snapshot_req
 *     (release), both under the writer lock; the replicator reads them
 *     (acquire) without the lock and clears snapshot_req (release).
 *   - peer[]: written by the replicator only (relaxed atomic stores, no
 *     lock; state and acked_at_ms with release), read by anyone as hints:
 *     /metrics, tombstone reaping, the causal-metadata check of /kvs.  One
 *     exception: repl_view_add_sh() sets a row's state, under the writer
 *     lock, just before the row enters the view, so that readers who see
 *     the member see it in that state; the replicator takes the row over
 *     when it next syncs with the view.
 */
#ifndef KVSD_REPL_H
#define KVSD_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "view.h"

#define REPL_WAKE_OWN 0x1   /* a client write: some active peer is idle */
#define REPL_WAKE_RELAY 0x2 /* a replicated write: some peer gets relays at once */

enum peer_state {
    PEER_JOINING = 0, /* in the initial VIEW, never answered yet */
    PEER_ACTIVE,
    PEER_SUSPECT, /* a request is late; evicted at --peer-timeout */
    PEER_EVICTED,
    PEER_PROBING, /* evicted, answering pings, waiting --readmit-delay */
    PEER_SELF,
};

/* The replicator's state for one view row. */
struct repl_peer_sh {
    uint32_t state; /* enum peer_state */
    uint32_t pad;
    uint64_t since_ms;         /* entered the current state (wall clock) */
    uint64_t acked_at_ms;      /* last clock report (monotonic) */
    uint64_t acked[CLOCK_MAX]; /* the peer's applied clock, as last reported */
};

struct repl_sh {
    uint32_t ready;    /* 1 once joined and the snapshot installed */
    uint32_t sleeping; /* REPL_WAKE_*: wake the replicator for these */
    uint32_t snapshot_req;
    char snapshot_from[ADDR_MAX]; /* the peer to pull the snapshot from */
    /* its own lines: written by the replicator, read by every worker */
    struct repl_peer_sh peer[VIEW_MAX] __attribute__((aligned(64)));
};

size_t repl_size(void);
void repl_init(struct repl_sh *repl);

/* Writer lock held.  view_add_sh(), with the replicator state of addr's
 * row set to state first (see the contract above).  A new row starts
 * with its replicator state cleared; a returning one keeps the rest of
 * it, its acked clock above all, so shipping resumes from what the peer
 * already has.  A member already in the view is left alone.  Returns as
 * view_add_sh(). */
int repl_view_add_sh(struct repl_sh *repl, struct view_sh *view, const char *addr, int state);

const char *peer_state_name(int state);

#endif
