/*
 * store.c - the write path: causal checks, last-writer-wins, the
 * replication log, and crash recovery of an interrupted write.
 *
 * Concurrency contract: every function here that changes the store holds
 * shm->lock for its whole duration; readers (GET, /view, snapshots) never
 * take it and see entries only through table_lookup_sh() under RCU.
 *
 * Crash safety.  A worker may be SIGKILLed at any instruction.  Before a
 * write changes anything visible it records an intent (the new entry, its
 * origin/seq/lamport and the log head) and marks it committed; the steps
 * after that (table publish and counters, log append, clock advance) are
 * each idempotent.  If the writer dies, the next locker gets EOWNERDEAD and
 * lock_acquire_sh() calls store_recover_sh(), which replays a committed
 * intent.  A writer that dies before committing leaves only an
 * unreachable arena block behind (a bounded leak, logged as a recovery).
 * The client was never answered in either case, so nothing acknowledged
 * is lost and nothing half-written is visible.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "rlog.h"
#include "lock.h"
#include "rcu.h"
#include "store.h"
#include "view.h"

struct store_intent {
    uint32_t committed;
    struct entry *entry;   /* the new entry; holds key, value, flags */
    struct entry *old;     /* what it replaces, captured before publishing */
    uint64_t nlive, ntomb; /* the table's counters once published */
    uint32_t counted;      /* counters set and old retired */
    uint32_t origin;
    uint64_t seq;
    uint64_t lamport;
    uint64_t log_head; /* rlog head before the append */
    size_t ndeps;
    struct vc_pair deps[CLOCK_MAX];
};

/* A snapshot install in progress (see store_install_sh()). */
enum { INSTALL_IDLE = 0, INSTALL_PREPARING, INSTALL_COMMITTED, INSTALL_CLEANUP };

struct install_intent {
    uint32_t state;         /* INSTALL_* */
    uint32_t ninc;          /* clock[] entries that count */
    size_t n;               /* slots of entries[] (and keys[]) filled */
    struct entry **entries; /* arena: the copies; a slot is cleared once published or freed */
    struct entry **keys;    /* arena: the same, never cleared, sorted by (hash, key); NULL when
                               the store held no entry at the prepare: nothing to drop */
    uint64_t lamport;       /* the largest Lamport stamp among them */
    uint64_t clock[CLOCK_MAX];
};

struct store_state {
    shm_t *shm;
    struct store_intent intent;
    struct install_intent install;
    uint64_t apply_attempts; /* replicated records checked for applying */
    pid_t pass_pid;          /* the process running a full pass (snapshot, check), or 0 */
    uint64_t check_quiet_until_ms; /* no store check before then (CHECK_DUTY) */
    uint64_t check_held_us;        /* how long the last check held the writer lock */
    uint64_t snapshot_held_us;     /* how long the last snapshot's cut held it */
};

static void install_rollback(shm_t *shm, struct install_intent *in);
static void install_finish(shm_t *shm, struct install_intent *in, int replay);

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct store_state *state_of(shm_t *shm)
{
    return shm->lock->recover_arg;
}

int store_setup(shm_t *shm, const char *self_addr, uint64_t stamp)
{
    struct store_state *st;
    int id;

    if ((st = arena_alloc_sh(shm->arena, sizeof(*st))) == NULL)
        return -1;
    memset(st, 0, sizeof(*st));
    st->shm = shm;
    lock_set_recover(shm->lock, store_recover_sh, st);
    if ((id = clock_intern_sh(shm->clock, self_addr, stamp, 0)) < 0)
        return -1;
    shm->clock->self = id;
    return 0;
}

/* (lamport, origin address, origin stamp): the greater write wins. */
static int newer(const struct clock_sh *clock, uint64_t lamport_a, uint32_t a, uint64_t lamport_b, uint32_t b)
{
    int c;

    if (lamport_a != lamport_b)
        return lamport_a > lamport_b;
    if ((c = strcmp(clock->inc[a].addr, clock->inc[b].addr)) != 0)
        return c > 0;
    return clock->inc[a].stamp > clock->inc[b].stamp;
}

static const struct entry *current(shm_t *shm, const char *key, size_t klen)
{
    return table_lookup_sh(shm->table, key, klen, table_hash(key, klen));
}

/* The table's counters once old is replaced by e (either may be NULL). */
static void counters_after(const shm_t *shm,
                           const struct entry *old,
                           const struct entry *e,
                           uint64_t *nlive,
                           uint64_t *ntomb)
{
    *nlive = shm->table->nlive;
    *ntomb = shm->table->ntomb;
    if (old != NULL && old != TABLE_DELETED)
        --*((old->flags & ENTRY_TOMBSTONE) ? ntomb : nlive);
    if (e != NULL)
        ++*((e->flags & ENTRY_TOMBSTONE) ? ntomb : nlive);
}

/* Retire node unless a previous, interrupted attempt already linked it.
 * Nothing is retired after it within one intent, so a linked node is the
 * last one; store_recover_sh() has rebuilt tail from head before a replay
 * gets here. */
static void retire_once(struct rcu_sh *rcu, struct rcu_node *node)
{
    if (rcu->head != NULL && rcu->tail == node)
        return;
    rcu_retire_sh(rcu, node);
}

/* Writer lock held, intent committed: the idempotent second half of a
 * write.  Safe to run again from store_recover_sh().  Returns 1 if the
 * entry was published, 0 if a newer write to the key already holds it. */
static int finish_intent(shm_t *shm, struct store_intent *in)
{
    struct entry *e = in->entry, *old = NULL;
    const struct entry *cur = current(shm, entry_key(e), e->klen);
    struct rlog_rec hdr;
    int published = cur == e;

    /* Publish first: the only step that can fail (the table may need to
     * grow), so a full store leaves no trace of the write anywhere. */
    if (!published && (cur == NULL || newer(shm->clock, e->lamport, e->origin, cur->lamport, cur->origin))) {
        in->old = (struct entry *)cur;
        counters_after(shm, cur, e, &in->nlive, &in->ntomb);
        if (table_put_sh(shm->table, shm->rcu, shm->arena, e, &old) != 0)
            return -1;
        published = 1;
    }
    /* A replay after the publish must still count and retire what was
     * replaced: counters are set to absolute values, and retire_once()
     * notices a half-done retirement, so doing this twice is harmless. */
    if (published && !in->counted) {
        shm->table->nlive = in->nlive;
        shm->table->ntomb = in->ntomb;
        if (in->old != NULL && in->old != TABLE_DELETED)
            retire_once(shm->rcu, &in->old->rcu);
        in->counted = 1;
    }
    if (rlog_head(shm->rlog) == in->log_head) {
        memset(&hdr, 0, sizeof(hdr));
        hdr.seq = in->seq;
        hdr.lamport = in->lamport;
        hdr.origin = in->origin;
        hdr.ndeps = (uint16_t)in->ndeps;
        hdr.flags = (e->flags & ENTRY_TOMBSTONE) ? RLOG_TOMBSTONE : 0;
        hdr.klen = e->klen;
        hdr.vlen = e->vlen;
        hdr.at_ms = (uint32_t)now_ms(); /* the replicator's relay delay and lag */
        /* cannot fail: write_locked() checked the record fits the ring */
        rlog_append_sh(shm->rlog, &hdr, in->deps, entry_key(e), entry_value(e), NULL);
        rlog_finish_move_sh(shm->rlog, shm->clock); /* an early wrap's copies may name folded lives */
    }
    clock_lamport_observe_sh(shm->clock, in->lamport);
    clock_advance_sh(shm->clock, in->origin, in->seq);
    return published;
}

void store_recover_sh(void *arg)
{
    struct store_state *st = arg;

    struct store_intent *in = &st->intent;

    /* first: everything below may retire objects */
    rcu_recover_sh(st->shm->rcu);
    view_recover_sh(st->shm->view);
    rlog_finish_move_sh(st->shm->rlog, st->shm->clock);
    if (st->install.state == INSTALL_PREPARING)
        install_rollback(st->shm, &st->install);
    else if (st->install.state != INSTALL_IDLE)
        install_finish(st->shm, &st->install, 1);
    if (in->committed && finish_intent(st->shm, in) == 0) {
        in->committed = 0;
        arena_free_sh(st->shm->arena, in->entry);
    }
    in->committed = 0;
}

/* Writer lock held: the sparse form of the current clock. */
static size_t sparse_clock(const struct clock_sh *clock, struct vc_pair *out)
{
    uint32_t id, n = 0, ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);

    for (id = 0; id < ninc; ++id)
        if (clock->applied[id] != 0 && !clock_folded(clock, id))
            out[n].id = id, out[n].n = clock->applied[id], ++n;
    return n;
}

/* Writer lock held.  A new, unpublished entry holding rec's key, value
 * (none for a tombstone, whose value may be NULL) and write; NULL if the
 * arena is full. */
static struct entry *entry_from_record(shm_t *shm, const struct store_record *rec)
{
    size_t vlen = rec->tombstone ? 0 : rec->vlen;
    struct entry *e = table_entry_new_sh(shm->arena, rec->key, rec->klen, vlen);

    if (e == NULL)
        return NULL;
    e->lamport = rec->lamport;
    e->seq = rec->seq;
    e->origin = (uint16_t)rec->origin;
    e->flags = rec->tombstone ? ENTRY_TOMBSTONE : 0;
    e->vlen = (uint32_t)vlen;
    if (vlen != 0)
        memcpy((char *)entry_value(e), rec->value, vlen);
    return e;
}

/* Writer lock held: make and commit an intent, then finish it. */
static enum store_result write_locked(shm_t *shm, const struct store_record *rec)
{
    struct store_intent *in = &state_of(shm)->intent;
    struct entry *e;
    size_t vlen = rec->tombstone ? 0 : rec->vlen, loglen;
    int r;

    if (rec->ndeps > CLOCK_MAX) /* in->deps holds CLOCK_MAX; the decoders bound it, this is a last guard */
        return STORE_FULL;
    loglen = sizeof(struct rlog_rec) + rec->ndeps * sizeof(*rec->deps) + rec->klen + vlen;
    if (loglen + 16 > shm->rlog->size / 2)
        return STORE_FULL;
    if (!rlog_room_sh(shm->rlog, loglen + 8))
        return STORE_FULL; /* the ring is full of records the persister has not written yet */
    if ((e = entry_from_record(shm, rec)) == NULL)
        return STORE_FULL;

    in->entry = e;
    in->old = NULL;
    in->counted = 0;
    in->origin = rec->origin;
    in->seq = rec->seq;
    in->lamport = rec->lamport;
    in->log_head = rlog_head(shm->rlog);
    in->ndeps = rec->ndeps;
    if (rec->ndeps != 0)
        memcpy(in->deps, rec->deps, rec->ndeps * sizeof(*rec->deps));
    __atomic_store_n(&in->committed, 1, __ATOMIC_RELEASE); /* the commit point */

    r = finish_intent(shm, in);
    in->committed = 0;
    if (r == 1)
        return STORE_CREATED;
    /* Lost to a newer write (r == 0: logged and counted, not visible), or
     * no room to grow the table (r == -1: nothing changed). */
    arena_free_sh(shm->arena, e);
    return r == 0 ? STORE_CREATED : STORE_FULL;
}

enum store_result store_client_write_sh(shm_t *shm, const struct store_write *w, uint64_t *clock_out)
{
    struct clock_sh *clock = shm->clock;
    struct vc_pair deps[CLOCK_MAX];
    struct store_record rec;
    const struct entry *old;
    enum store_result r;
    uint32_t self = (uint32_t)clock->self;
    int existed;

    lock_acquire_sh(shm->lock);
    rcu_reclaim_sh(shm->rcu, shm->arena);
    if (!clock_covers(clock, w->deps, w->ndeps)) {
        r = STORE_UNSATISFIED;
        goto out;
    }
    old = current(shm, w->key, w->klen);
    existed = old != NULL && !(old->flags & ENTRY_TOMBSTONE);
    if (w->value == NULL && !existed) {
        r = STORE_NOT_FOUND;
        goto out;
    }
    rec = (struct store_record){
        self, clock->applied[self] + 1, clock->lamport + 1, w->value == NULL, w->key, w->klen, w->value, w->vlen,
        deps, sparse_clock(clock, deps)
    };
    r = write_locked(shm, &rec);
    if (r == STORE_CREATED) {
        r = w->value == NULL ? STORE_DELETED : existed ? STORE_REPLACED : STORE_CREATED;
        clock_snapshot(clock, clock_out);
    }
out:
    lock_release_sh(shm->lock);
    return r;
}

static int deps_met(const struct clock_sh *clock, const struct store_record *rec)
{
    size_t i;

    for (i = 0; i < rec->ndeps; ++i) {
        uint32_t id = rec->deps[i].id;
        if (id == rec->origin)
            continue;
        if (clock->applied[id] < rec->deps[i].n && !clock_retired_met(clock, id))
            return 0;
    }
    return 1;
}

static enum store_apply apply_one(shm_t *shm, const struct store_record *rec)
{
    struct clock_sh *clock = shm->clock;
    if (clock->applied[rec->origin] >= rec->seq || clock_folded(clock, rec->origin))
        return APPLY_DUP; /* a folded life's writes are applied everywhere already */
    if (clock->applied[rec->origin] + 1 != rec->seq || !deps_met(clock, rec))
        return APPLY_WAIT;
    if (write_locked(shm, rec) != STORE_CREATED)
        return APPLY_FULL;
    return APPLY_DONE;
}

/* A batch's records in apply order: by origin, then seq, then position. */
struct apply_slot {
    uint32_t origin;
    uint32_t idx;
    uint64_t seq;
};

static int cmp_apply_slot(const void *a, const void *b)
{
    const struct apply_slot *x = a, *y = b;

    if (x->origin != y->origin)
        return x->origin < y->origin ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Writer lock held.  Apply the run of one origin's records from *cursor
 * on, in seq order, until one must wait; returns how many were applied. */
static size_t apply_run(shm_t *shm,
                        const struct store_record *recs,
                        const struct apply_slot *order,
                        size_t *cursor,
                        size_t end,
                        uint8_t *result)
{
    struct store_state *st = state_of(shm);
    size_t applied = 0;

    for (; *cursor < end; ++*cursor) {
        uint32_t i = order[*cursor].idx;
        ++st->apply_attempts;
        result[i] = (uint8_t)apply_one(shm, &recs[i]);
        if (result[i] == APPLY_WAIT)
            break;
        applied += result[i] == APPLY_DONE;
    }
    return applied;
}

/*
 * Records may arrive in any order.  Retrying the whole batch until nothing
 * more applies costs n passes, n^2 checks under the writer lock, for a
 * batch in reverse order.  Instead sort by (origin, seq), n log n before
 * the lock, and walk each origin's run from a cursor: a run stops at a
 * record whose dependencies on another origin are not applied yet, and is
 * retried from there once a round over all runs applied anything.  Each
 * round applies a record or ends the loop, and costs one check per run
 * besides what it applies, so a batch costs at most n + (n + 1) * runs
 * checks, with runs <= CLOCK_MAX origins.
 */
size_t store_apply_records_sh(shm_t *shm, const struct store_record *recs, size_t n, uint8_t *result)
{
    struct apply_slot *order;
    size_t *cursor, *end, nruns = 0, i, r, applied = 0, progress;

    for (i = 0; i < n; ++i)
        result[i] = APPLY_WAIT;
    order = malloc(sizeof(*order) * (n ? n : 1));
    cursor = malloc(sizeof(*cursor) * 2 * (n ? n : 1));
    if (order == NULL || cursor == NULL) {
        free(order);
        free(cursor);
        return 0; /* nothing applied: the peer sends the batch again */
    }
    for (i = 0; i < n; ++i)
        order[i] = (struct apply_slot){ recs[i].origin, (uint32_t)i, recs[i].seq };
    qsort(order, n, sizeof(*order), cmp_apply_slot);
    end = cursor + n;
    for (i = 0; i < n; ++i)
        if (i == 0 || order[i].origin != order[i - 1].origin)
            cursor[nruns++] = i;
    for (r = 0; r < nruns; ++r)
        end[r] = r + 1 < nruns ? cursor[r + 1] : n;

    lock_acquire_sh(shm->lock);
    rcu_reclaim_sh(shm->rcu, shm->arena);
    do {
        progress = 0;
        for (r = 0; r < nruns; ++r)
            progress += apply_run(shm, recs, order, &cursor[r], end[r], result);
        applied += progress;
    } while (progress != 0);
    lock_release_sh(shm->lock);
    free(order);
    free(cursor);
    return applied;
}

uint64_t store_apply_attempts(shm_t *shm)
{
    return __atomic_load_n(&state_of(shm)->apply_attempts, __ATOMIC_RELAXED);
}

int store_covers(shm_t *shm, const struct vc_pair *m, size_t n)
{
    return clock_covers(shm->clock, m, n);
}

int store_intern2_sh(shm_t *shm,
                     const char (*addr)[ADDR_MAX],
                     const uint64_t *stamp,
                     const uint8_t *folded,
                     size_t n,
                     int32_t *ids)
{
    uint64_t now = now_ms(), reuse_before;
    size_t i;
    int r = 0;

    for (i = 0; i < n; ++i)
        if ((ids[i] = clock_find(shm->clock, addr[i], stamp[i])) < 0 || (clock_flags(shm->clock, (uint32_t)ids[i]) & INC_STALE))
            break;
    if (i == n)
        return 0; /* all known (and none below a floor): no lock needed */
    lock_acquire_sh(shm->lock);
    /* a freed row is reused only once every reader that might still
     * hold its id has left its read-side section */
    reuse_before = rcu_min_epoch_sh(shm->rcu);
    for (; i < n; ++i)
        if ((ids[i] = clock_intern2_sh(shm->clock, addr[i], stamp[i], now, reuse_before, folded && folded[i])) < 0)
            r = -1;
    lock_release_sh(shm->lock);
    return r;
}

size_t store_relabel_sh(shm_t *shm, uint64_t *cursor, uintptr_t *slots_seen, size_t budget, int *done)
{
    struct table_slots *s;
    const struct clock_sh *clock = shm->clock;
    size_t n = 0;
    uint64_t i;

    lock_acquire_sh(shm->lock);
    s = shm->table->slots;
    if (*slots_seen != (uintptr_t)s) {
        /* the table grew since the pass started: entries moved, so the
         * slots before the cursor are not all visited any more */
        *slots_seen = (uintptr_t)s;
        *cursor = 0;
    }
    for (i = *cursor; i <= s->mask && budget != 0; ++i, --budget) {
        struct entry *e = s->slot[i];
        int floor;
        if (e == NULL || e == TABLE_DELETED || !(clock_flags(clock, e->origin) & INC_STALE))
            continue;
        if ((floor = clock_floor(clock, clock->inc[e->origin].addr)) < 0)
            continue; /* cannot happen: a STALE row has a newer floor */
        __atomic_store_n(&e->origin, (uint16_t)floor, __ATOMIC_RELEASE);
        ++n;
    }
    *done = i > s->mask;
    *cursor = *done ? 0 : i;
    lock_release_sh(shm->lock);
    return n;
}

/* Remove the entry e (writer lock held) and retire it. */
static void unlink_entry(shm_t *shm, const struct entry *e)
{
    struct entry *gone = table_remove_sh(shm->table, entry_key(e), e->klen, e->hash);

    if (gone == NULL)
        return;
    if (gone->flags & ENTRY_TOMBSTONE)
        --shm->table->ntomb;
    else
        --shm->table->nlive;
    rcu_retire_sh(shm->rcu, &gone->rcu);
}

struct reap_ctx {
    shm_t *shm;
    const uint64_t *floor;
    uint32_t ninc;
    size_t n;
};

static int reap_one(const struct entry *e, void *arg)
{
    struct reap_ctx *ctx = arg;

    if ((e->flags & ENTRY_TOMBSTONE) && e->origin < ctx->ninc && e->seq <= ctx->floor[e->origin]) {
        unlink_entry(ctx->shm, e);
        ++ctx->n;
    }
    return 0;
}

size_t store_reap_sh(shm_t *shm, const uint64_t *floor, uint32_t ninc)
{
    struct reap_ctx ctx = { shm, floor, ninc, 0 };

    lock_acquire_sh(shm->lock);
    if (shm->table->ntomb != 0)
        table_foreach_sh(shm->table, reap_one, &ctx); /* removing the visited slot is safe */
    lock_release_sh(shm->lock);
    return ctx.n;
}

/*
 * Snapshot install.  A transfer is applied under one lock hold, as an
 * intent in shared memory, so that a replicator killed at any instruction
 * never leaves transferred entries visible without the clock that covers
 * them (a write of the transfer would never arrive again: the peer's log
 * no longer has it, which is why it sent a snapshot).
 *
 *   prepare   every transferred entry is copied into the arena (not yet
 *             visible), in (hash, key) order unless the store is empty,
 *             and the table grown so the publishes below cannot fail.
 *             Killed here: recovery frees what was copied; nothing
 *             visible changed.
 *   commit    the target clock is recorded and state becomes COMMITTED.
 *   finish    idempotent steps: drop the local entries the transfer shows
 *             deleted, publish each copy that is newer than the key's
 *             entry (or free it), advance the clock, recount the table.
 *             Killed here: recovery runs finish again.
 *
 * A slot of entries[] is cleared before its entry is freed or after it is
 * published, so a replay neither frees an entry twice nor loses one; a
 * kill between a publish and retiring the entry it replaced leaks that
 * one entry.
 *
 * Installing into an empty store (recovery from --data-dir, a replica
 * that joins or restarts without one) is the case that must be fast: it
 * has nothing to drop, so it needs no search order, no sort and no
 * keys[]; its finish (or a replay of it) sees only the transfer's own
 * entries, which the writer lock kept every other writer from adding.
 * Each copy is still looked up before it is published, so a transfer
 * that names a key twice (a peer's bug) leaves one entry, the newer.
 */

/* A transfer record's place in the (hash, key) order of keys[]: sorted
 * in the heap before the lock is taken; 16 bytes, so the sort moves
 * little and compares the hash without reading the key. */
struct install_ref {
    uint32_t hash;
    const struct store_record *rec;
};

static int cmp_hash_key(uint32_t ha, const char *ka, size_t la, uint32_t hb, const char *kb, size_t lb)
{
    int c;

    if (ha != hb)
        return ha < hb ? -1 : 1;
    c = memcmp(ka, kb, la < lb ? la : lb);
    return c != 0 ? c : (int)la - (int)lb;
}

static int cmp_install_ref(const void *a, const void *b)
{
    const struct install_ref *x = a, *y = b;
    return cmp_hash_key(x->hash, x->rec->key, x->rec->klen, y->hash, y->rec->key, y->rec->klen);
}

/* The transfer in (hash, key) order; NULL if out of memory. */
static struct install_ref *install_order(const struct store_record *entries, size_t n)
{
    struct install_ref *order = malloc(sizeof(*order) * (n ? n : 1));
    size_t k;

    if (order == NULL)
        return NULL;
    for (k = 0; k < n; ++k) {
        order[k].hash = table_hash(entries[k].key, entries[k].klen);
        order[k].rec = &entries[k];
    }
    qsort(order, n, sizeof(*order), cmp_install_ref);
    return order;
}

/* 1 if e's key is among the transfer's entries: a binary search of
 * keys[], which keeps every copy's place after its entries[] slot is
 * cleared. */
static int transfer_has(const struct install_intent *in, const struct entry *e)
{
    size_t lo = 0, hi = in->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct entry *k = in->keys[mid];
        int c = cmp_hash_key(e->hash, entry_key(e), e->klen, k->hash, entry_key(k), k->klen);
        if (c == 0)
            return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

struct stale_ctx {
    shm_t *shm;
    const struct install_intent *in;
};

/* Covered by the transferred clock but absent from the transfer: the key
 * was deleted and its tombstone reaped at the source. */
static int drop_stale(const struct entry *e, void *arg)
{
    struct stale_ctx *ctx = arg;

    /* a folded life's write is applied everywhere, the source included */
    if (e->origin >= ctx->in->ninc || (e->seq > ctx->in->clock[e->origin] && !clock_folded(ctx->shm->clock, e->origin)))
        return 0;
    if (!transfer_has(ctx->in, e))
        unlink_entry(ctx->shm, e);
    return 0;
}

static int census(const struct entry *e, void *arg)
{
    uint64_t *c = arg;
    ++c[(e->flags & ENTRY_TOMBSTONE) ? 1 : 0];
    return 0;
}

/* Writer lock held: free what a prepare copied (also its recovery). */
static void install_rollback(shm_t *shm, struct install_intent *in)
{
    size_t k;

    for (k = 0; k < in->n; ++k) {
        struct entry *e = in->entries[k];
        in->entries[k] = NULL;
        if (e != NULL)
            arena_free_sh(shm->arena, e);
    }
    __atomic_store_n(&in->state, INSTALL_IDLE, __ATOMIC_RELEASE);
    arena_free_sh(shm->arena, in->entries);
    arena_free_sh(shm->arena, in->keys);
}

/* Writer lock held: publish transferred entry k unless the key holds a
 * write at least as new (the copy is then freed in the cleanup, since a
 * replay of drop_stale() still reads its key).  Safe to run again after
 * a kill anywhere in it. */
static void install_one(shm_t *shm, struct install_intent *in, size_t k)
{
    struct entry *e = in->entries[k], *old = NULL;
    const struct entry *cur;

    if (e == NULL)
        return;
    cur = table_lookup_sh(shm->table, entry_key(e), e->klen, e->hash); /* set by table_entry_new_sh() */
    if (cur == e) { /* published before a kill */
        in->entries[k] = NULL;
        return;
    }
    if (cur != NULL && !newer(shm->clock, e->lamport, e->origin, cur->lamport, cur->origin))
        return;
    if (table_put_sh(shm->table, shm->rcu, shm->arena, e, &old) != 0)
        abort(); /* cannot fail: install_prepare() reserved the slots */
    in->entries[k] = NULL;
    /* exact unless killed in between; a replay recounts */
    counters_after(shm, old, e, &shm->table->nlive, &shm->table->ntomb);
    if (old != NULL)
        rcu_retire_sh(shm->rcu, &old->rcu);
}

/* The order in which finish publishes the copies: by home slot, so the
 * slot array is walked front to back and a probe meets entries published
 * a moment ago, instead of a cache miss per copy (a transfer arrives in
 * the order of the sender's table, or of a file, not of ours).  A
 * counting sort on the slot's top bits; NULL (publish in place order)
 * if the heap is short: only slower. */
static size_t *install_slot_order(const shm_t *shm, const struct install_intent *in, size_t *m)
{
    const struct table_slots *s = shm->table->slots;
    unsigned shift = 0;
    size_t *perm, *at, k, b, nb;

    while (((s->mask + 1) >> shift) > 65536)
        ++shift;
    nb = (size_t)((s->mask >> shift) + 1);
    if ((perm = malloc(sizeof(*perm) * (in->n ? in->n : 1))) == NULL)
        return NULL;
    if ((at = calloc(nb + 1, sizeof(*at))) == NULL) {
        free(perm);
        return NULL;
    }
    for (k = 0; k < in->n; ++k)
        if (in->entries[k] != NULL)
            ++at[((in->entries[k]->hash & s->mask) >> shift) + 1];
    for (b = 1; b <= nb; ++b)
        at[b] += at[b - 1];
    for (k = 0; k < in->n; ++k)
        if (in->entries[k] != NULL)
            perm[at[(in->entries[k]->hash & s->mask) >> shift]++] = k;
    *m = at[nb - 1];
    free(at);
    return perm;
}

/* The copies are read in slot order, i.e. all over the arena: fetch
 * entries[]'s pointer, then the copy's header, ahead of need. */
#define INSTALL_AHEAD 8

/* Writer lock held, intent committed: the idempotent second half.  The
 * table's counters are kept exact on the way; a replay after a kill
 * (which may have published without counting) recounts them. */
static void install_finish(shm_t *shm, struct install_intent *in, int replay)
{
    struct stale_ctx stale = { shm, in };
    uint64_t counts[2] = { 0, 0 };
    uint32_t id;
    size_t k, m, *perm;

    if (in->state == INSTALL_CLEANUP)
        goto cleanup;
    if (in->keys != NULL)
        table_foreach_sh(shm->table, drop_stale, &stale);
    if ((perm = install_slot_order(shm, in, &m)) == NULL)
        m = in->n;
    for (k = 0; k < m; ++k) {
        if (perm != NULL && k + 2 * INSTALL_AHEAD < m)
            __builtin_prefetch(&in->entries[perm[k + 2 * INSTALL_AHEAD]]);
        if (perm != NULL && k + INSTALL_AHEAD < m && in->entries[perm[k + INSTALL_AHEAD]] != NULL)
            __builtin_prefetch(in->entries[perm[k + INSTALL_AHEAD]]);
        install_one(shm, in, perm != NULL ? perm[k] : k);
    }
    free(perm);
    /* entries first, clock after: a reader who sees the clock sees every
     * entry it covers */
    clock_lamport_observe_sh(shm->clock, in->lamport);
    for (id = 0; id < in->ninc; ++id)
        clock_advance_sh(shm->clock, id, in->clock[id]);
    rlog_mark_installed_sh(shm->rlog, in->clock, in->ninc);
    __atomic_add_fetch(&shm->installs, 1, __ATOMIC_RELEASE); /* the persister snapshots it */
    if (replay) {
        /* absolute values: right whatever a killed attempt had counted */
        table_foreach_sh(shm->table, census, counts);
        shm->table->nlive = counts[0];
        shm->table->ntomb = counts[1];
    }
    __atomic_store_n(&in->state, INSTALL_CLEANUP, __ATOMIC_RELEASE);
cleanup:
    /* the copies that lost to a newer local write */
    install_rollback(shm, in);
}

/* Writer lock held: copy the transfer into the arena (in `order` when
 * given, and then keep that order in keys[]) and commit.  -1, nothing
 * changed, if it does not fit. */
static int install_prepare(shm_t *shm,
                           struct install_intent *in,
                           const struct store_record *entries,
                           const struct install_ref *order,
                           size_t n,
                           const uint64_t *clock,
                           uint32_t ninc)
{
    size_t k, bytes = sizeof(struct entry *) * (n ? n : 1);

    in->n = 0;
    in->lamport = 0;
    in->keys = NULL;
    if ((in->entries = arena_alloc_sh(shm->arena, bytes)) == NULL)
        return -1;
    if (order != NULL && (in->keys = arena_alloc_sh(shm->arena, bytes)) == NULL) {
        arena_free_sh(shm->arena, in->entries);
        return -1;
    }
    __atomic_store_n(&in->state, INSTALL_PREPARING, __ATOMIC_RELEASE);
    for (k = 0; k < n; ++k) {
        const struct store_record *r = order != NULL ? order[k].rec : &entries[k];
        struct entry *e = entry_from_record(shm, r);

        if (e == NULL)
            goto fail;
        if (r->lamport > in->lamport)
            in->lamport = r->lamport;
        in->entries[k] = e;
        if (in->keys != NULL)
            in->keys[k] = e;
        __atomic_store_n(&in->n, k + 1, __ATOMIC_RELEASE);
    }
    if (table_reserve_sh(shm->table, shm->rcu, shm->arena, n) != 0)
        goto fail;
    memset(in->clock, 0, sizeof(in->clock));
    memcpy(in->clock, clock, sizeof(*clock) * (ninc < CLOCK_MAX ? ninc : CLOCK_MAX));
    in->ninc = ninc < CLOCK_MAX ? ninc : CLOCK_MAX;
    __atomic_store_n(&in->state, INSTALL_COMMITTED, __ATOMIC_RELEASE); /* the commit point */
    return 0;
fail:
    install_rollback(shm, in);
    return -1;
}

/* Writer lock held, or a hint without it. */
static int store_is_empty(const shm_t *shm)
{
    return __atomic_load_n(&shm->table->nlive, __ATOMIC_RELAXED) + __atomic_load_n(&shm->table->ntomb, __ATOMIC_RELAXED) == 0;
}

int store_install_sh(shm_t *shm, const struct store_record *entries, size_t n, const uint64_t *clock, uint32_t ninc)
{
    struct install_intent *in = &state_of(shm)->install;
    struct install_ref *order = NULL;
    int r = -1;

    /* The order is sorted before the lock is taken, unless the store
     * looks empty; if a write slipped in since, it is sorted under it. */
    if (!store_is_empty(shm) && (order = install_order(entries, n)) == NULL)
        return -1;
    lock_acquire_sh(shm->lock);
    rcu_reclaim_sh(shm->rcu, shm->arena);
    if (order != NULL || store_is_empty(shm) || (order = install_order(entries, n)) != NULL) {
        if ((r = install_prepare(shm, in, entries, order, n, clock, ninc)) == 0)
            install_finish(shm, in, 0);
    }
    lock_release_sh(shm->lock);
    free(order);
    return r;
}

int store_pass_begin(shm_t *shm)
{
    pid_t *owner = &state_of(shm)->pass_pid, cur = __atomic_load_n(owner, __ATOMIC_ACQUIRE);

    /* a pass whose process died (kill() says so) is over */
    if (cur != 0 && (cur == getpid() || kill(cur, 0) == 0 || errno != ESRCH))
        return -1;
    return __atomic_compare_exchange_n(owner, &cur, getpid(), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ? 0 : -1;
}

void store_pass_end(shm_t *shm)
{
    __atomic_store_n(&state_of(shm)->pass_pid, 0, __ATOMIC_RELEASE);
}

#define SNAPSHOT_AHEAD 16

int store_snapshot_sh(shm_t *shm,
                      int slot,
                      void (*at_cut)(shm_t *shm, void *arg),
                      int (*each)(const struct entry *e, void *arg),
                      void *arg)
{
    struct table_slots *s;
    struct entry **cut;
    uint64_t i, n, t0, t1;

    lock_acquire_sh(shm->lock);
    t0 = now_us();
    s = shm->table->slots;
    n = s->mask + 1;
    if ((cut = malloc(sizeof(*cut) * n)) == NULL) {
        lock_release_sh(shm->lock);
        return -1;
    }
    /* The cut: the slot pointers and the clock under the lock, a memcpy;
     * the entries are immutable and, with our read side entered before
     * the lock is released, none of them can be freed until we leave. */
    memcpy(cut, s->slot, sizeof(*cut) * n);
    at_cut(shm, arg);
    rcu_read_lock_sh(shm->rcu, slot);
    t1 = now_us();
    __atomic_store_n(&state_of(shm)->snapshot_held_us, t1 - t0, __ATOMIC_RELAXED);
    lock_release_sh(shm->lock);
    for (i = 0; i < n; ++i) {
        /* the entries lie all over the arena: fetch ahead of need (a
         * cache miss per entry was most of encoding 1M keys) */
        if (i + SNAPSHOT_AHEAD < n && cut[i + SNAPSHOT_AHEAD] != NULL && cut[i + SNAPSHOT_AHEAD] != TABLE_DELETED) {
            __builtin_prefetch(cut[i + SNAPSHOT_AHEAD]);
            __builtin_prefetch((const char *)cut[i + SNAPSHOT_AHEAD] + 64);
        }
        if (cut[i] != NULL && cut[i] != TABLE_DELETED && each(cut[i], arg) != 0)
            break;
    }
    rcu_read_unlock_sh(shm->rcu, slot);
    free(cut);
    return 0;
}

struct check_ctx {
    shm_t *shm;
    char *buf;
    size_t buflen;
    int bad;
};

static int check_entry(const struct entry *e, void *arg)
{
    struct check_ctx *ctx = arg;
    const struct clock_sh *clock = ctx->shm->clock;

    if (e->origin < clock->ninc && (clock->inc[e->origin].flags & INC_FREE)) {
        snprintf(ctx->buf,
                 ctx->buflen,
                 "entry %.*s: refers to freed incarnation %u",
                 (int)e->klen,
                 entry_key(e),
                 (unsigned)e->origin);
        ctx->bad = 1;
        return 1;
    }
    if (e->origin >= clock->ninc || e->seq == 0 ||
        (e->seq > clock->applied[e->origin] && !(clock->inc[e->origin].flags & INC_FOLDED))) {
        snprintf(ctx->buf,
                 ctx->buflen,
                 "entry %.*s: write %u/%llu not covered by the clock",
                 (int)e->klen,
                 entry_key(e),
                 (unsigned)e->origin,
                 (unsigned long long)e->seq);
        ctx->bad = 1;
        return 1;
    }
    if (e->hash != table_hash(entry_key(e), e->klen) || e->klen == 0 || e->klen > KEY_MAX) {
        snprintf(ctx->buf, ctx->buflen, "entry %.*s: bad hash or key length", (int)e->klen, entry_key(e));
        ctx->bad = 1;
        return 1;
    }
    return 0;
}

/* A store check holds the writer lock for a whole pass (it checks the
 * table's and arena's structure, which must stand still); after one that
 * held it D ms (D >= CHECK_SHORT_MS), the next waits CHECK_DUTY x D ms,
 * so checks called in a loop block writers at most 1 / (CHECK_DUTY + 1)
 * of the time. */
#define CHECK_DUTY 9
#define CHECK_SHORT_MS 2 /* checks shorter than this (small stores) are not spaced */


uint64_t store_snapshot_held_us(shm_t *shm)
{
    return __atomic_load_n(&state_of(shm)->snapshot_held_us, __ATOMIC_RELAXED);
}

uint64_t store_check_held_us(shm_t *shm)
{
    return __atomic_load_n(&state_of(shm)->check_held_us, __ATOMIC_RELAXED);
}

int store_check_quiet(shm_t *shm)
{
    return now_ms() < __atomic_load_n(&state_of(shm)->check_quiet_until_ms, __ATOMIC_ACQUIRE);
}

int store_check_sh(shm_t *shm, char *buf, size_t buflen, const char **why)
{
    struct check_ctx ctx = { shm, buf, buflen, 0 };
    uint64_t pos, prev_seq[CLOCK_MAX] = { 0 }, t0, t0_us;
    char *rec = NULL;
    size_t cap = 0, need = 0;
    long n;
    int r = 0;

    lock_acquire_sh(shm->lock);
    t0 = now_ms();
    t0_us = now_us();
    if (table_check(shm->table, why) != 0 || arena_check(shm->arena, why) != 0) {
        r = -1;
        goto out;
    }
    table_foreach_sh(shm->table, check_entry, &ctx);
    if (ctx.bad) {
        *why = buf;
        r = -1;
        goto out;
    }
    /* the log: every record readable, each origin's seqs increasing */
    for (pos = rlog_tail(shm->rlog);;) {
        n = rlog_read(shm->rlog, &pos, rec, cap, &need);
        if (n == 0)
            break;
        if (n == -2) {
            char *grown = realloc(rec, need);
            if (grown == NULL)
                break;
            rec = grown;
            cap = need;
            continue;
        }
        if (n < 0) {
            *why = "replication log: a record between tail and head is unreadable";
            r = -1;
            break;
        }
        const struct rlog_rec *h = (const void *)rec;
        if (h->origin >= shm->clock->ninc || (shm->clock->inc[h->origin].flags & INC_FREE) ||
            h->seq <= prev_seq[h->origin] || h->seq > shm->clock->applied[h->origin]) {
            snprintf(buf,
                     buflen,
                     "replication log: record %u/%llu out of order or beyond the clock",
                     (unsigned)h->origin,
                     (unsigned long long)h->seq);
            *why = buf;
            r = -1;
            break;
        }
        prev_seq[h->origin] = h->seq;
    }
out:
    pos = now_ms();
    __atomic_store_n(&state_of(shm)->check_held_us, now_us() - t0_us, __ATOMIC_RELAXED);
    /* a short check (a small store) costs writers nothing worth spacing */
    __atomic_store_n(&state_of(shm)->check_quiet_until_ms,
                     pos - t0 < CHECK_SHORT_MS ? 0 : pos + CHECK_DUTY * (pos - t0),
                     __ATOMIC_RELEASE);
    lock_release_sh(shm->lock);
    free(rec);
    return r;
}
