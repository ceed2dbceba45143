/*
 * view.h - the view: which replicas (by IP:PORT) this replica considers
 * members, and the replicator's per-peer state.
 *
 * Rows are keyed by address and never move once created, so the
 * replicator can keep row indexes.  Concurrency contract: membership
 * (used, in_view, addr) changes only under the writer lock, inside a
 * seqlock write section (seq odd while changing); lock-free readers copy
 * with view_list() which retries on a concurrent change.  A writer killed
 * inside its section leaves seq odd: readers then wait a bounded number
 * of spins, copy once and count a stall (the rows are usable: a new row
 * becomes visible only by the store to n, its last step), and the
 * owner-dead recovery of the writer lock calls view_recover_sh().  state, since_ms,
 * acked[] and acked_at_ms are written only by the replicator (plain
 * atomic stores, no lock) and read by anyone as hints: /metrics, /ready
 * and tombstone reaping.
 */
#ifndef KVSD_VIEW_H
#define KVSD_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define VIEW_MAX 64

enum peer_state {
    PEER_JOINING = 0, /* in the initial VIEW, never answered yet */
    PEER_ACTIVE,
    PEER_SUSPECT, /* a request is late; evicted at --peer-timeout */
    PEER_EVICTED,
    PEER_PROBING, /* evicted, answering pings, waiting --readmit-delay */
    PEER_SELF,
};

struct view_member {
    char addr[ADDR_MAX];
    uint32_t used;
    uint32_t in_view;
    uint32_t state; /* enum peer_state */
    uint32_t pad;
    uint64_t since_ms;         /* entered the current state */
    uint64_t acked_at_ms;      /* last clock report */
    uint64_t acked[CLOCK_MAX]; /* the peer's applied clock, as last reported */
};

struct view_sh {
    uint64_t seq;     /* seqlock */
    uint64_t version; /* bumped on every membership change */
    uint32_t n;       /* rows used (in_view or not) */
    uint64_t stalls;  /* lock-free reads that gave up waiting for a writer */
    struct view_member m[VIEW_MAX];
};

size_t view_size(void);
void view_init(struct view_sh *view);

/* Writer lock held.  Returns 1 if added, 0 if already in the view, -1 if
 * the table is full. */
int view_add_sh(struct view_sh *view, const char *addr, int state);
/* Writer lock held.  Returns 1 if removed, 0 if not in the view. */
int view_remove_sh(struct view_sh *view, const char *addr);

/* Writer lock held, after its previous owner died: close a write section
 * it left open.  Returns 1 if there was one. */
int view_recover_sh(struct view_sh *view);

/* Lock-free.  Copies the addresses in the view, in row order, into
 * out[max][ADDR_MAX]; returns how many. */
size_t view_list(const struct view_sh *view, char (*out)[ADDR_MAX], size_t max);
/* Lock-free.  Row index of addr, or -1. */
int view_find(const struct view_sh *view, const char *addr);
/* Lock-free.  1 if addr is in the view. */
int view_contains(const struct view_sh *view, const char *addr);

const char *peer_state_name(int state);

#endif
