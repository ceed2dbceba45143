/*
 * rlog.c - the replication log ring (see rlog.h for the layout and the
 * contract).
 *
 * Writers append under the store's writer lock; the replicator reads
 * records by position without any lock while writers keep appending.  The
 * ring never blocks a writer: the oldest records are overwritten, and
 * what they carried is summarised in tail_clock so the replicator can tell
 * a peer that needs them to take a snapshot instead.  The writer publishes
 * the new tail before it overwrites anything; a reader copies a record and
 * then re-checks the tail, so a copy that may have been torn is reported
 * lost rather than shipped.
 *
 * Crash consistency: a writer killed mid-append has published at most a
 * tail past records it was about to overwrite; head moves last, so the
 * half-written record is never inside [tail, head).
 */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <urcu/arch.h>

#include "rlog.h"

#define RLOG_MAGIC 0x726c6f67u     /* "rlog" */
#define RLOG_PAD_MAGIC 0x70616421u /* "pad!" */
#define RLOG_ALIGN 8
#define RLOG_HOT_MIN (256u << 10)
/* The most an early wrap copies: the records in flight to the peers.
 * Under a saturating load that is tens of ms of writes (1.5 MB measured at
 * 28,000 1 KB PUT/s on a 2-core 3-replica cluster), and copying it (a
 * memcpy, under 1 ms for 4 MiB) is far cheaper than the page faults of a
 * writer going round the whole ring (0.2-0.3 faults per PUT when this was
 * 256 KiB).  A longer log means a lagging peer: the writer goes round. */
#define RLOG_MOVE_MAX (4u << 20)

/* Header of a pad record: only len and magic are guaranteed to fit. */
struct rlog_pad {
    uint32_t len;
    uint32_t magic;
};

static uint64_t align_up(uint64_t n, uint64_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* The struct, cache-line padded, then the ring. */
size_t rlog_size(size_t ring_bytes)
{
    return (size_t)align_up(sizeof(struct rlog_sh), 64) + (ring_bytes & ~(size_t)(RLOG_ALIGN - 1));
}

void rlog_init(struct rlog_sh *rlog, void *ring, size_t ring_bytes)
{
    memset(rlog, 0, sizeof(*rlog));
    rlog->ring = ring;
    rlog->size = ring_bytes & ~(size_t)(RLOG_ALIGN - 1);
    rlog->keep_from = UINT64_MAX;
}

static uint64_t rec_len(const struct rlog_rec *hdr)
{
    return align_up(sizeof(*hdr) + (uint64_t)hdr->ndeps * sizeof(struct vc_pair) + hdr->klen + hdr->vlen, RLOG_ALIGN);
}

static void fold_tail_clock_sh(struct rlog_sh *rlog, const struct rlog_rec *r)
{
    if (r->origin < CLOCK_MAX && r->seq > rlog->tail_clock[r->origin])
        __atomic_store_n(&rlog->tail_clock[r->origin], r->seq, __ATOMIC_RELAXED);
}

/* Writer lock held, r in [tail, head): does its header hold together (a
 * record or a pad, of an aligned length)?  Walks of the log under the
 * lock stop at the first that does not. */
static int whole_sh(const struct rlog_rec *r)
{
    return r->len >= sizeof(struct rlog_pad) && r->len % RLOG_ALIGN == 0 &&
           (r->magic == RLOG_MAGIC || r->magic == RLOG_PAD_MAGIC);
}

/* Writer lock held.  Advance tail to the first record at or past until. */
static void drop_before_sh(struct rlog_sh *rlog, uint64_t until)
{
    uint64_t tail = rlog->tail, keep = __atomic_load_n(&rlog->keep_from, __ATOMIC_ACQUIRE);

    if (until > keep)
        until = keep; /* not yet persisted: rlog_room_sh() refused writes that would need it */
    while (tail < until && tail < rlog->head) {
        const struct rlog_rec *r = (const struct rlog_rec *)(rlog->ring + tail % rlog->size);
        if (!whole_sh(r)) {
            /* Corrupt: nothing after it can be trusted either.  Dropping
             * it all at worst sends peers to a snapshot. */
            tail = rlog->head;
            break;
        }
        if (r->magic == RLOG_MAGIC && !(r->flags & RLOG_MOVED))
            fold_tail_clock_sh(rlog, r); /* a moved one's copy is still here */
        tail += r->len;
    }
    if (tail != rlog->tail) {
        __atomic_store_n(&rlog->tail, tail, __ATOMIC_RELEASE);
        /* The new tail must be visible before any byte it gave up is
         * overwritten: that is what a reader's re-check relies on. */
        cmm_smp_mb();
    }
}

/* Writer lock held.  Advance tail until [tail, new_head) fits the ring. */
static void make_room_sh(struct rlog_sh *rlog, uint64_t new_head)
{
    if (new_head > rlog->size)
        drop_before_sh(rlog, new_head - rlog->size);
}

/* Give the whole pages inside [p, p + n) of the ring back to the kernel.
 * The ring lives in the shared anonymous mapping (shmem): MADV_DONTNEED
 * would only unmap the pages from this process and leave them charged to
 * the others, MADV_REMOVE frees them for all.  The next write there
 * faults in a zeroed page.  On memory that is not shmem (a unit test's
 * malloc) it fails and changes nothing, which is fine: it only saves. */
static void release_bytes(char *p, uint64_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1), to = ((uintptr_t)p + n) & ~(page - 1);

    if (from < to)
        (void)madvise((void *)from, to - from, MADV_REMOVE);
}

/* Writer lock held, tail just moved from old_tail: release the ring pages
 * that only records before the tail occupied.  The range starts a page
 * early, so that the page holding old_tail goes too once nothing live is
 * left on it, but never before head - size: the ring bytes of those
 * positions hold the newest records (they are one lap behind head).
 * Everything in [lo, tail) is free, and tail - lo <= size. */
static void release_dropped_sh(struct rlog_sh *rlog, uint64_t old_tail)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), lo, off, len, first, from;

    lo = old_tail > page ? old_tail - page : 0;
    if (rlog->head > rlog->size && lo < rlog->head - rlog->size)
        lo = rlog->head - rlog->size;
    if (lo >= rlog->tail)
        return;
    off = lo % rlog->size;
    len = rlog->tail - lo;
    first = len < rlog->size - off ? len : rlog->size - off;
    /* the hot window [0, hot) stays */
    from = off > rlog->hot ? off : rlog->hot;
    if (off + first > from)
        release_bytes(rlog->ring + from, off + first - from);
    if (len - first > rlog->hot) /* the range wraps: its rest is at the ring's start */
        release_bytes(rlog->ring + rlog->hot, len - first - rlog->hot);
}

/* The hot window for a log that held `live` bytes before a trim: 4x
 * that (a trim every tick leaves room for some ticks of writes), at least
 * RLOG_HOT_MIN, at most a quarter of the ring, whole pages. */
static uint64_t hot_wanted(const struct rlog_sh *rlog, uint64_t live)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), want = live * 4;

    if (want < RLOG_HOT_MIN)
        want = RLOG_HOT_MIN;
    if (want > rlog->size / 4)
        want = rlog->size / 4;
    return (want + page - 1) & ~(page - 1);
}

/* Does any byte of [tail, head) lie at ring offsets [a, b)? */
static int live_within(const struct rlog_sh *rlog, uint64_t a, uint64_t b)
{
    uint64_t live = rlog->head > rlog->tail ? rlog->head - rlog->tail : 0, from, to;

    if (live == 0)
        return 0;
    if (live >= rlog->size)
        return 1;
    from = rlog->tail % rlog->size;
    to = from + live;
    if (to <= rlog->size)
        return from < b && to > a;
    return (from < b && rlog->size > a) || (to - rlog->size > a && b > 0);
}

void rlog_trim_sh(struct rlog_sh *rlog, uint64_t pos)
{
    uint64_t old_tail = rlog->tail, want = hot_wanted(rlog, rlog->head - old_tail);

    if (want > rlog->hot)
        rlog->hot = want; /* grows at once: its pages are not released below */
    drop_before_sh(rlog, pos);
    if (rlog->tail != old_tail)
        release_dropped_sh(rlog, old_tail);
    /* Shrinks to a half or less once nothing live is in what it gives up
     * (an idle log: at once); the writer, past the smaller window, wraps
     * back into it with its next record. */
    if (want <= rlog->hot / 2 && !live_within(rlog, want, rlog->hot)) {
        release_bytes(rlog->ring + want, rlog->hot - want);
        rlog->hot = want;
    }
}

/* Fill a record of len bytes at p, which nothing in [tail, head) covers. */
static void write_record(char *p,
                         uint64_t len,
                         const struct rlog_rec *hdr,
                         const struct vc_pair *deps,
                         const char *key,
                         const char *value)
{
    struct rlog_rec *r = (struct rlog_rec *)p;

    memcpy(r, hdr, sizeof(*r));
    r->len = (uint32_t)len;
    r->magic = RLOG_MAGIC;
    p += sizeof(*r);
    /* Empty parts may come as NULL, which memcpy() must not see. */
    if (hdr->ndeps != 0)
        memcpy(p, deps, (size_t)hdr->ndeps * sizeof(*deps));
    p += (size_t)hdr->ndeps * sizeof(*deps);
    if (hdr->klen != 0)
        memcpy(p, key, hdr->klen);
    p += hdr->klen;
    if (hdr->vlen != 0)
        memcpy(p, value, hdr->vlen);
    p += hdr->vlen;
    memset(p, 0, (size_t)(len - (uint64_t)(p - (char *)r)));
}

/* Writer lock held.  Copy the records of [tail, head) to position dst
 * on (the ring's start), marked RLOG_COPY: the bytes copied, or -1 if the
 * log is corrupt (then nothing is published).  Pads and moved originals
 * are dead and stay behind. */
static int64_t copy_live_sh(struct rlog_sh *rlog, uint64_t head, uint64_t dst)
{
    uint64_t p = rlog->tail, from = dst;

    while (p < head) {
        const struct rlog_rec *r = (const struct rlog_rec *)(rlog->ring + p % rlog->size);
        if (!whole_sh(r) || r->len > head - p)
            return -1;
        if (r->magic == RLOG_MAGIC && !(r->flags & RLOG_MOVED)) {
            struct rlog_rec *c = (struct rlog_rec *)(rlog->ring + dst % rlog->size);
            memcpy(c, r, r->len);
            c->flags |= RLOG_COPY;
            dst += r->len;
        }
        p += r->len;
    }
    if (dst != from) {
        rlog->mv_src = rlog->tail;
        rlog->mv_src_end = head;
        rlog->mv_end = dst;
        rlog->mv_pending = 1;
    }
    return (int64_t)(dst - from);
}

/* Writer lock held, an early wrap's copies published: mark the originals
 * still in the log moved (idempotent). */
static void mark_moved_sh(struct rlog_sh *rlog)
{
    uint64_t p = rlog->tail > rlog->mv_src ? rlog->tail : rlog->mv_src;

    while (p < rlog->mv_src_end) {
        struct rlog_rec *r = (struct rlog_rec *)(rlog->ring + p % rlog->size);
        if (!whole_sh(r))
            break; /* cannot be: it was read whole a moment ago */
        if (r->magic == RLOG_MAGIC)
            __atomic_store_n(&r->flags, (uint8_t)(r->flags | RLOG_MOVED), __ATOMIC_RELEASE);
        p += r->len;
    }
}

void rlog_finish_move_sh(struct rlog_sh *rlog, struct clock_sh *clock)
{
    uint32_t id, ninc;

    if (!rlog->mv_pending)
        return;
    if (rlog->head <= rlog->mv_src_end) { /* its writer died before publishing: no copies */
        rlog->mv_pending = 0;
        return;
    }
    mark_moved_sh(rlog);
    if (clock == NULL)
        return; /* a unit test's bare ring */
    ninc = __atomic_load_n(&clock->ninc, __ATOMIC_ACQUIRE);
    for (id = 0; id < ninc && id < CLOCK_MAX; ++id) {
        uint64_t fp = __atomic_load_n(&clock->inc[id].fold_pos, __ATOMIC_ACQUIRE);
        if (fp > rlog->mv_src && fp < rlog->mv_end)
            __atomic_store_n(&clock->inc[id].fold_pos, rlog->mv_end, __ATOMIC_RELEASE);
    }
    rlog->mv_pending = 0;
}

/* Writer lock held.  The record of len bytes at head (ring offset off)
 * would leave the hot window: wrap early?  First drop what every peer
 * acknowledged; then yes if what is left (the records still in flight)
 * is at most RLOG_MOVE_MAX and, with the record, fills at most half the
 * window: they lie in [off - live, off), past the window's first half,
 * and their copies and the record at [0, live + len) overwrite none of
 * them (off > hot - len >= 2 * live + len).  So [tail, new head) spans at
 * most size - (off - 2 * live - len) bytes: nothing is overwritten.  The
 * pad is one header; its length fits its field.  Returns 1 and the bytes
 * copied (through *moved) if it wraps. */
static int wrap_early_sh(struct rlog_sh *rlog, uint64_t head, uint64_t off, uint64_t len, uint64_t *moved)
{
    uint64_t acked = __atomic_load_n(&rlog->acked_pos, __ATOMIC_ACQUIRE), live;
    int64_t copied;

    if (rlog->hot == 0 || off + len <= rlog->hot || rlog->size - off > UINT32_MAX || head < rlog->tail)
        return 0;
    if (acked > rlog->tail)
        drop_before_sh(rlog, acked < head ? acked : head);
    live = head - rlog->tail;
    if (live > RLOG_MOVE_MAX || live + len > rlog->hot / 2)
        return 0;
    if ((copied = copy_live_sh(rlog, head, head + (rlog->size - off))) < 0)
        return 0;
    *moved = (uint64_t)copied;
    return 1;
}

int rlog_append_sh(struct rlog_sh *rlog,
                   const struct rlog_rec *hdr,
                   const struct vc_pair *deps,
                   const char *key,
                   const char *value,
                   uint64_t *pos)
{
    uint64_t len = rec_len(hdr), head = rlog->head, off, start, pad = 0, moved = 0;

    if (len > rlog->size || len > UINT32_MAX)
        return -1;
    if (rlog->tail > head) {
        /* A writer died between the two stores that empty the ring below;
         * finish its work. */
        head = rlog->tail;
        __atomic_store_n(&rlog->head, head, __ATOMIC_RELEASE);
    }
    off = head % rlog->size;
    if (off + len > rlog->size)
        pad = rlog->size - off; /* a record never straddles the end */
    else if (wrap_early_sh(rlog, head, off, len, &moved))
        pad = rlog->size - off;
    start = head + pad + moved;
    if (pad + len > rlog->size) {
        /* Even an empty ring cannot hold the pad and the record, and the
         * record would overwrite the pad: drop everything and restart the
         * log at the ring's beginning, with no pad.  tail moves before
         * head so [tail, head) never covers the bytes in between. */
        make_room_sh(rlog, head + rlog->size + 1);
        __atomic_store_n(&rlog->tail, start, __ATOMIC_RELEASE);
        __atomic_store_n(&rlog->head, start, __ATOMIC_RELEASE);
        cmm_smp_mb();
        pad = 0;
    } else {
        make_room_sh(rlog, start + len);
    }
    if (pad != 0) {
        struct rlog_pad *pr = (struct rlog_pad *)(rlog->ring + off);
        pr->len = (uint32_t)pad;
        pr->magic = RLOG_PAD_MAGIC;
        if (pad >= sizeof(struct rlog_rec))
            ((struct rlog_rec *)pr)->flags = RLOG_PAD;
    }
    write_record(rlog->ring + start % rlog->size, len, hdr, deps, key, value);
    /* The commit point: the record (and any copies) become part of
     * [tail, head).  Originals are marked moved only now: a writer killed
     * before leaves them as they were, the copies unpublished. */
    __atomic_store_n(&rlog->head, start + len, __ATOMIC_RELEASE);
    __atomic_store_n(&rlog->records, rlog->records + 1, __ATOMIC_RELAXED);
    if (moved != 0) {
        __atomic_store_n(&rlog->moved, rlog->moved + moved, __ATOMIC_RELAXED); /* kvsd_rlog_moved_bytes_total */
        mark_moved_sh(rlog);
    }
    if (pos != NULL)
        *pos = start;
    return 0;
}

/* Lock-free.  1 if a record at p may have been overwritten. */
static int fell_off(const struct rlog_sh *rlog, uint64_t p)
{
    cmm_smp_rmb();
    return rlog_tail(rlog) > p;
}

/* Lock-free.  Find the first record at or after *p, skipping pads, and
 * copy its first sizeof(*h) bytes: 1 found, 0 at the head, -1 lost. */
static int locate(const struct rlog_sh *rlog, uint64_t *pos, struct rlog_pad *h, uint8_t skip)
{
    uint64_t p = *pos, off;
    uint8_t flags;

    for (;;) {
        if (rlog_tail(rlog) > p)
            return -1;
        if (p >= rlog_head(rlog))
            return 0;
        off = p % rlog->size;
        memcpy(h, rlog->ring + off, sizeof(*h));
        flags = h->magic == RLOG_MAGIC && h->len >= sizeof(struct rlog_rec) && off + h->len <= rlog->size
                    ? __atomic_load_n((const uint8_t *)rlog->ring + off + offsetof(struct rlog_rec, flags), __ATOMIC_ACQUIRE)
                    : 0;
        if (fell_off(rlog, p))
            return -1;
        /* Between tail and head, so it was written before head was
         * published and nobody overwrote it: a bad header is corruption,
         * reported like a loss so the peer gets a snapshot. */
        if (h->len < sizeof(*h) || h->len % RLOG_ALIGN != 0 || off + h->len > rlog->size ||
            (h->magic != RLOG_MAGIC && h->magic != RLOG_PAD_MAGIC) ||
            (h->magic == RLOG_MAGIC && h->len < sizeof(struct rlog_rec)))
            return -1;
        if (h->magic == RLOG_MAGIC && !(flags & skip))
            return 1;
        p += h->len; /* a pad, or a record this reader skips */
        *pos = p;
    }
}

static long read_skipping(const struct rlog_sh *rlog, uint64_t *pos, void *buf, size_t bufsize, size_t *need, uint8_t skip)
{
    struct rlog_pad h;
    int rc = locate(rlog, pos, &h, skip);

    if (rc <= 0)
        return rc;
    if (h.len > bufsize) {
        if (need != NULL)
            *need = h.len;
        return -2;
    }
    memcpy(buf, rlog->ring + *pos % rlog->size, h.len);
    if (fell_off(rlog, *pos))
        return -1;
    *pos += h.len;
    return (long)h.len;
}

long rlog_read(const struct rlog_sh *rlog, uint64_t *pos, void *buf, size_t bufsize, size_t *need)
{
    return read_skipping(rlog, pos, buf, bufsize, need, RLOG_MOVED);
}

long rlog_read_persisted(const struct rlog_sh *rlog, uint64_t *pos, void *buf, size_t bufsize, size_t *need)
{
    return read_skipping(rlog, pos, buf, bufsize, need, RLOG_COPY);
}

long rlog_peek(const struct rlog_sh *rlog, uint64_t *pos, struct rlog_rec *hdr)
{
    struct rlog_pad h;
    int rc = locate(rlog, pos, &h, RLOG_MOVED);

    if (rc <= 0)
        return rc;
    memcpy(hdr, rlog->ring + *pos % rlog->size, sizeof(*hdr));
    if (fell_off(rlog, *pos))
        return -1;
    *pos += h.len;
    return (long)h.len;
}

void rlog_mark_installed_sh(struct rlog_sh *rlog, const uint64_t *clock, uint32_t n)
{
    uint32_t i;

    for (i = 0; i < n && i < CLOCK_MAX; ++i)
        if (clock[i] > rlog->tail_clock[i])
            __atomic_store_n(&rlog->tail_clock[i], clock[i], __ATOMIC_RELAXED);
}
