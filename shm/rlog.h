/*
 * rlog.h - the replication log: a byte ring of write records in shared
 * memory.
 *
 * Every write applied here (client writes and replicated ones alike) is
 * appended, in apply order, which is a causal order.  The replicator reads
 * records by position and ships to each peer those its acked clock lacks.
 *
 * Positions are virtual byte offsets that only grow; the record at
 * position p lives at p % size.  A record never straddles the end of the
 * ring: a pad record fills the gap.  [tail, head) holds valid records.
 *
 * Concurrency contract: appended only under the writer lock.  To make
 * room the writer first advances tail past the records it will overwrite
 * (folding them into tail_clock), issues a barrier, then writes; then it
 * publishes the new head.  A lock-free reader copies a record and then
 * re-checks rlog_tail(): if tail moved past the record's position while
 * it copied, the copy may be torn and rlog_read() reports it lost.
 * tail_clock[] is, per incarnation, the highest seq among records that
 * have fallen off the tail (or that were installed by a state transfer):
 * a peer whose acked clock does not cover it needs a snapshot.
 */
#ifndef KVSD_RLOG_H
#define KVSD_RLOG_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define RLOG_TOMBSTONE 0x01
#define RLOG_COPY 0x20  /* copied by an early wrap (see below) */
#define RLOG_MOVED 0x40 /* its copy, later in the log, stands for it */
#define RLOG_PAD 0x80

struct rlog_rec {
    uint32_t len; /* whole record, header included, 8-byte aligned */
    uint32_t magic;
    uint64_t seq; /* origin's sequence number */
    uint64_t lamport;
    uint32_t origin; /* incarnation id */
    uint16_t ndeps;
    uint8_t flags;
    uint8_t klen;
    uint32_t vlen;
    uint32_t at_ms; /* monotonic ms, truncated, when appended here */
    /* then: struct vc_pair deps[ndeps]; key; value */
};

struct rlog_sh {
    char *ring;
    uint64_t size;
    uint64_t head;    /* next append position */
    uint64_t tail;    /* oldest valid record */
    uint64_t records; /* appended, ever */
    uint64_t tail_clock[CLOCK_MAX];
    /* The oldest position the ring must keep (records not yet in the
     * data directory's log); UINT64_MAX without --data-dir.  Written by
     * the persister (release), read by the writer: the tail never moves
     * past it, and a write whose record would need it to gets 507. */
    uint64_t keep_from;
    /* Bytes at the ring's start that the writer keeps to while the log is
     * short, and that are never released: 0 until the first trim, then
     * sized by rlog_trim_sh() from what a trim finds in the log.  A ring
     * whose pages were released faults each page in again per lap; one
     * that stays in a small resident window does not. */
    uint64_t hot;
    /* Everything before it every replica we know has acknowledged:
     * published by the replicator as answers come (it may lag, it is never
     * ahead), so an early wrap drops that part and moves only the rest. */
    uint64_t acked_pos;
    /* The last early wrap that moved records: the originals were in
     * [mv_src, mv_src_end), the copies end at mv_end.  mv_pending until
     * rlog_finish_move_sh() has marked the originals and moved the
     * incarnations' fold_pos (a writer killed in between leaves it set
     * for the lock's recovery). */
    uint64_t mv_src, mv_src_end, mv_end;
    uint32_t mv_pending;
    uint64_t moved; /* bytes copied by early wraps, ever */
};

size_t rlog_size(size_t ring_bytes);
void rlog_init(struct rlog_sh *rlog, void *ring, size_t ring_bytes);

/* Writer lock held.  Append a record; -1 if it can never fit (larger than
 * the ring).  Returns the record's position through *pos if non-NULL.
 *
 * The early wrap.  While the log is short the writer keeps to the hot
 * window: a record that would leave it goes to the ring's start instead,
 * behind a pad to the ring's end.  What the peers have all acknowledged
 * (acked_pos) is dropped first; the records left, at most RLOG_MOVE_MAX
 * bytes, are copied to the ring's start ahead of the new record, marked
 * RLOG_COPY, and the originals are marked RLOG_MOVED.  Without the copy a
 * peer that stops answering would pin the tail behind the pad, and the
 * writer, coming round to it after a window's worth of writes, would
 * overwrite records that peer still needs; a moved original is dead, and
 * dropping it loses nothing (it is not folded into tail_clock).
 * rlog_read() and rlog_peek() skip moved originals (the replication
 * view); rlog_read_persisted() skips copies instead (the persister wrote
 * every original: the ring keeps what it has not written).  The caller
 * must then call rlog_finish_move_sh(). */
int rlog_append_sh(struct rlog_sh *rlog,
                   const struct rlog_rec *hdr,
                   const struct vc_pair *deps,
                   const char *key,
                   const char *value,
                   uint64_t *pos);

static inline uint64_t rlog_head(const struct rlog_sh *rlog)
{
    return __atomic_load_n(&rlog->head, __ATOMIC_ACQUIRE);
}
static inline uint64_t rlog_tail(const struct rlog_sh *rlog)
{
    return __atomic_load_n(&rlog->tail, __ATOMIC_ACQUIRE);
}

/* Writer lock held: 1 if a record of len bytes can be appended without
 * dropping records before keep_from (counting the worst-case pad). */
static inline int rlog_room_sh(const struct rlog_sh *rlog, uint64_t len)
{
    uint64_t keep = __atomic_load_n(&rlog->keep_from, __ATOMIC_ACQUIRE);

    return keep == UINT64_MAX || rlog->head + 2 * len <= keep + rlog->size;
}

/* Lock-free.  Copy the record at *pos into buf (bufsize bytes) and advance
 * *pos past it, skipping pad records.  Returns the record length, 0 at the
 * head, -1 if *pos fell off the tail (lost), -2 if buf is too small (then
 * *pos is unchanged and the needed size is returned through *need). */
long rlog_read(const struct rlog_sh *rlog, uint64_t *pos, void *buf, size_t bufsize, size_t *need);

/* Lock-free.  rlog_read() for the persister: moved originals are read and
 * copies skipped, so every write is read once, at its first position. */
long rlog_read_persisted(const struct rlog_sh *rlog, uint64_t *pos, void *buf, size_t bufsize, size_t *need);

/* Lock-free.  Like rlog_read(), but copy only the record's header (a scan
 * that decides which records to read in full).  Returns the whole
 * record's length, 0 at the head, -1 if *pos fell off the tail. */
long rlog_peek(const struct rlog_sh *rlog, uint64_t *pos, struct rlog_rec *hdr);

static inline const struct vc_pair *rlog_rec_deps(const struct rlog_rec *r)
{
    return (const struct vc_pair *)(r + 1);
}
static inline const char *rlog_rec_key(const struct rlog_rec *r)
{
    return (const char *)(rlog_rec_deps(r) + r->ndeps);
}
static inline const char *rlog_rec_value(const struct rlog_rec *r)
{
    return rlog_rec_key(r) + r->klen;
}

/* Writer lock held.  Drop every record before pos (folding them into
 * tail_clock, as overwriting would): nobody needs them any more.  The ring
 * pages only they occupied are given back to the kernel (MADV_REMOVE),
 * except those of the hot window, which is sized here: about four times
 * what the log held before this trim (a caller that trims every tick:
 * some ticks' worth of writes), at least RLOG_HOT_MIN, at most a quarter
 * of the ring.  So a log that peers have acknowledged costs only its hot
 * window, and the writer, which wraps to the ring's start while the log
 * is short, does not fault pages in. */
void rlog_trim_sh(struct rlog_sh *rlog, uint64_t pos);

/* Writer lock held, after rlog_append_sh() and in the lock's recovery:
 * finish an early wrap that moved records (idempotent).  Marks the
 * originals RLOG_MOVED and, for each folded incarnation (clock may be
 * NULL: none) whose fold_pos lies after the first original, moves
 * fold_pos past the copies, which may name it: "no record from before its
 * fold is in the log" must stay true of the copies. */
void rlog_finish_move_sh(struct rlog_sh *rlog, struct clock_sh *clock);

/* Writer lock held: fold a state transfer's clock into tail_clock. */
void rlog_mark_installed_sh(struct rlog_sh *rlog, const uint64_t *clock, uint32_t n);

#endif
