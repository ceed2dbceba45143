/*
 * view.h - the view: which replicas (by IP:PORT) this replica considers
 * members.  The replicator's state for each member lives in repl.h, in
 * the row of the same index.
 *
 * Rows are keyed by address and never move once created, so the
 * replicator can keep row indexes.  Concurrency contract: membership
 * (used, in_view, addr) changes only under the writer lock, inside a
 * seqlock write section (seq odd while changing); lock-free readers copy
 * with view_list() which retries on a concurrent change.  A writer killed
 * inside its section leaves seq odd: readers then wait a bounded number
 * of spins, copy once and count a stall (the rows are usable: a new row
 * becomes visible only by the store to n, its last step), and the
 * owner-dead recovery of the writer lock calls view_recover_sh().
 */
#ifndef KVSD_VIEW_H
#define KVSD_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define VIEW_MAX 64

struct view_member {
    char addr[ADDR_MAX];
    uint32_t used;
    uint32_t in_view;
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
 * the table is full.  A returning address gets its old row back.  (Most
 * callers want repl_view_add_sh(), which also sets the replicator's
 * state for the row.) */
int view_add_sh(struct view_sh *view, const char *addr);
/* Writer lock held.  The row view_add_sh() puts addr in: its own if it
 * has one (in the view or not), else the next unused one, with *fresh
 * set.  -1 if it has none and can get none (address too long, table
 * full). */
int view_row_sh(const struct view_sh *view, const char *addr, int *fresh);
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

#endif
