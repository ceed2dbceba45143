/*
 * repl.c - the replicator's shared flags and per-peer state (see repl.h
 * for who writes what).
 *
 * Almost everything here is written by the replicator and only read by
 * others, so the module is mostly a layout.  The one shared step is
 * adding a member to the view: whoever adds it (the master for the
 * initial VIEW, a worker for PUT /view, the replicator on re-admission)
 * sets the row's state here before the view makes the row visible.
 */
#include <string.h>

#include "repl.h"

size_t repl_size(void)
{
    return sizeof(struct repl_sh);
}

void repl_init(struct repl_sh *repl)
{
    memset(repl, 0, sizeof(*repl));
}

int repl_view_add_sh(struct repl_sh *repl, struct view_sh *view, const char *addr, int state)
{
    int fresh, row = view_row_sh(view, addr, &fresh);

    if (row < 0)
        return -1;
    if (view_contains(view, addr))
        return 0;
    /* Before view_add_sh() publishes the row (or its return): a reader
     * that sees the member sees this state, never the row's last one,
     * and the replicator, which reacts to the membership change, always
     * stores its own state after this one. */
    if (fresh)
        memset(&repl->peer[row], 0, sizeof(repl->peer[row]));
    __atomic_store_n(&repl->peer[row].state, (uint32_t)state, __ATOMIC_RELAXED);
    return view_add_sh(view, addr);
}

const char *peer_state_name(int state)
{
    static const char *const names[] = {
        [PEER_JOINING] = "joining", [PEER_ACTIVE] = "active",   [PEER_SUSPECT] = "suspect",
        [PEER_EVICTED] = "evicted", [PEER_PROBING] = "probing", [PEER_SELF] = "self",
    };

    if (state < 0 || (size_t)state >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[state];
}
