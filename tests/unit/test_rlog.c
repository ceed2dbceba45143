/*
 * test_rlog.c - unit tests for the replication log ring (shm/rlog.c):
 * append and read back, pad records at the wrap, records lost to
 * overwriting and what tail_clock says about them, records too big for
 * the ring or for the reader's buffer, installed clocks, a lock-free
 * reader in another process racing the writer, trimming, which gives
 * the ring pages back, and the early wrap, which moves the records in
 * flight so that a peer that stops answering loses none of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rlog.h"
#include "tap.h"

#define RING 4096

struct shared {
    struct rlog_sh rlog;
    char ring[RING] __attribute__((aligned(64)));
};

static struct shared *sh;
static struct rlog_sh *rlog;

/* Append record seq from origin with a value that encodes both. */
static int append(uint32_t origin, uint64_t seq, size_t vlen, uint64_t *pos)
{
    struct rlog_rec hdr;
    struct vc_pair deps[2] = { { origin, seq - 1 }, { 7, 3 } };
    char key[16], value[4096];
    size_t i;

    memset(&hdr, 0, sizeof(hdr));
    hdr.seq = seq;
    hdr.lamport = seq * 10;
    hdr.origin = origin;
    hdr.ndeps = 2;
    hdr.klen = (uint8_t)snprintf(key, sizeof(key), "key%llu", (unsigned long long)seq);
    hdr.vlen = (uint32_t)vlen;
    hdr.at_ms = (uint32_t)(1000 + seq);
    for (i = 0; i < vlen; ++i)
        value[i] = (char)('a' + (seq + i) % 26);
    return rlog_append_sh(rlog, &hdr, deps, key, value, pos);
}

/* 1 if r is exactly what append(origin, seq, ...) wrote. */
static int rec_ok(const struct rlog_rec *r, uint32_t origin, uint64_t seq)
{
    char key[16];
    size_t klen = (size_t)snprintf(key, sizeof(key), "key%llu", (unsigned long long)seq), i;
    const char *v = rlog_rec_value(r);

    if (r->seq != seq || r->origin != origin || r->lamport != seq * 10 || r->ndeps != 2 || r->klen != klen ||
        r->at_ms != 1000 + seq)
        return 0;
    if (rlog_rec_deps(r)[0].id != origin || rlog_rec_deps(r)[0].n != seq - 1 || rlog_rec_deps(r)[1].id != 7)
        return 0;
    if (memcmp(rlog_rec_key(r), key, klen) != 0 || r->len % 8 != 0)
        return 0;
    for (i = 0; i < r->vlen; ++i)
        if (v[i] != (char)('a' + (seq + i) % 26))
            return 0;
    return 1;
}

static void reset(void)
{
    memset(sh, 0, sizeof(*sh));
    rlog_init(rlog, sh->ring, RING);
}

static void test_append_read(void)
{
    uint64_t buf[RING / 8], pos = 0, p1, p2;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    size_t need = 0;
    long n;

    reset();
    ok(rlog_size(RING) >= sizeof(struct rlog_sh) + RING, "rlog_size covers struct and ring");
    is_int(rlog_read(rlog, &pos, buf, sizeof(buf), NULL), 0, "empty log: read returns 0");
    ok(append(1, 1, 10, &p1) == 0 && append(1, 2, 100, &p2) == 0, "two records appended");
    ok(p1 == 0 && p2 > p1 && p2 % 8 == 0, "positions grow, 8-byte aligned");
    is_int(rlog->records, 2, "records counts appends");
    n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
    ok(n > 0 && rec_ok(r, 1, 1) && pos == p2, "first record read back whole, pos at the next");
    is_int(r->magic != 0, 1, "record carries a magic");
    n = rlog_read(rlog, &pos, buf, 16, &need);
    ok(n == -2 && pos == p2 && need >= sizeof(struct rlog_rec) + 100, "small buffer: -2, pos kept, need reported");
    n = rlog_read(rlog, &pos, buf, need, NULL);
    ok(n == (long)need && rec_ok(r, 1, 2), "read with the needed size");
    ok(pos == rlog_head(rlog) && rlog_read(rlog, &pos, buf, sizeof(buf), NULL) == 0, "at the head: 0");
    is_int(append(1, 3, RING, NULL), -1, "a record bigger than the ring is refused");
    is_int(rlog->records, 2, "and not counted");
}

static void test_wrap(void)
{
    uint64_t buf[RING / 8], pos, seq, lost_pos, expect;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    int all = 1, saw_pad = 0;
    long n;

    reset();
    /* ~300-byte records: the ring wraps every ~13 of them. */
    for (seq = 1; seq <= 100; ++seq)
        all &= append(2, seq, 200 + (seq % 7) * 8, NULL) == 0;
    ok(all, "100 records appended through several wraps");
    ok(rlog_head(rlog) - rlog_tail(rlog) <= RING, "[tail, head) fits the ring");
    ok(rlog_head(rlog) > 3 * RING, "head is a virtual position past several wraps");

    /* Read everything still there: consecutive seqs up to 100. */
    pos = rlog_tail(rlog);
    expect = 0;
    while ((n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL)) > 0) {
        if (expect != 0 && r->seq != expect)
            all = 0;
        all &= rec_ok(r, 2, r->seq);
        expect = r->seq + 1;
    }
    ok(all && n == 0 && expect == 101, "records from the tail on read back in order, across pads");
    for (pos = rlog_tail(rlog); pos < rlog_head(rlog);) {
        const struct rlog_rec *x = (const struct rlog_rec *)(rlog->ring + pos % rlog->size);
        saw_pad |= x->magic != r->magic;
        pos += x->len;
    }
    ok(saw_pad, "a pad record fills a gap at the end of the ring");

    /* tail_clock: the highest seq that fell off the tail. */
    pos = rlog_tail(rlog);
    rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
    is_int(rlog->tail_clock[2], r->seq - 1, "tail_clock is the last seq overwritten");
    ok(rlog->tail_clock[1] == 0, "other origins untouched");

    /* A reader that fell behind loses its place. */
    lost_pos = rlog_tail(rlog);
    for (seq = 101; seq <= 120; ++seq)
        append(2, seq, 200, NULL);
    pos = lost_pos;
    is_int(rlog_read(rlog, &pos, buf, sizeof(buf), NULL), -1, "reading an overwritten position: lost");
    is_int(pos, lost_pos, "and pos is left alone");

    rlog_mark_installed_sh(rlog, (const uint64_t[]){ 5, 500, 1 }, 3);
    ok(rlog->tail_clock[0] == 5 && rlog->tail_clock[1] == 500 && rlog->tail_clock[2] > 100,
       "installed clock folded in, never lowering");
}

/* rlog_peek: headers only, same positions as rlog_read, across pads. */
static void test_peek(void)
{
    uint64_t buf[RING / 8], pos, rpos, seq, lost_pos;
    struct rlog_rec hdr, *r = (struct rlog_rec *)buf;
    int same = 1, n = 0;
    long a, b;

    reset();
    pos = 0;
    is_int(rlog_peek(rlog, &pos, &hdr), 0, "peek on an empty log: 0");
    for (seq = 1; seq <= 40; ++seq)
        append(5, seq, 200 + (seq % 5) * 8, NULL);
    pos = rpos = rlog_tail(rlog);
    while ((a = rlog_peek(rlog, &pos, &hdr)) > 0) {
        b = rlog_read(rlog, &rpos, buf, sizeof(buf), NULL);
        same &= a == b && pos == rpos && memcmp(&hdr, r, sizeof(hdr)) == 0 && hdr.at_ms == 1000 + hdr.seq;
        ++n;
    }
    ok(same && n > 0 && a == 0 && pos == rlog_head(rlog),
       "peek walks the records rlog_read reads (%d), same headers and lengths, across pads", n);
    lost_pos = rlog_tail(rlog);
    for (seq = 41; seq <= 60; ++seq)
        append(5, seq, 200, NULL);
    pos = lost_pos;
    is_int(rlog_peek(rlog, &pos, &hdr), -1, "peek at an overwritten position: lost");
}

/* A record too big to fit beside the pad empties the ring. */
static void test_big(void)
{
    uint64_t buf[RING / 8], pos;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    long n;

    reset();
    append(3, 1, 1000, NULL);
    append(3, 2, 1000, NULL);
    ok(append(3, 3, RING - 200, &pos) == 0, "a record nearly the ring's size fits after a wrap");
    ok(pos % RING == 0 && rlog_tail(rlog) == pos, "it starts the ring afresh");
    is_int(rlog->tail_clock[3], 2, "the records it pushed out are in tail_clock");
    n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
    ok(n > 0 && rec_ok(r, 3, 3), "and reads back whole");
    ok(append(3, 4, 100, NULL) == 0, "the next record pushes it out in turn");
    pos = rlog_tail(rlog);
    n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
    ok(n > 0 && rec_ok(r, 3, 4) && rlog->tail_clock[3] == 3, "leaving only the new one");
}

/* A reader process follows the log while the writer appends; whatever it
 * reads must be whole, and when it loses its place it restarts at tail. */
static void test_concurrent(void)
{
    uint64_t buf[RING / 8], pos = 0, last = 0;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    int status, good = 1;
    long n, reads = 0, lost = 0;
    pid_t pid;

    reset();
    if ((pid = fork()) == 0) {
        uint64_t seq;
        for (seq = 1; seq <= 300000; ++seq)
            append(4, seq, (seq * 8) % 400, NULL);
        _exit(0);
    }
    while (waitpid(pid, &status, WNOHANG) == 0 || pos < rlog_head(rlog)) {
        n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
        if (n > 0) {
            ++reads;
            good &= rec_ok(r, 4, r->seq) && r->seq > last;
            last = r->seq;
        } else if (n == -1) {
            ++lost;
            pos = rlog_tail(rlog);
        } else if (n != 0) {
            good = 0;
        }
    }
    ok(good && reads > 0, "%ld records read whole while the writer appended (%ld times lost)", reads, lost);
    is_int(last, 300000, "the reader caught up to the last record");
}

/* Resident pages of [p, p + n) (n a multiple of the page size). */
static size_t resident(void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), i, count = 0;
    unsigned char vec[1024];

    if (n / page > sizeof(vec) || mincore(p, n, vec) != 0)
        abort();
    for (i = 0; i < n / page; ++i)
        count += vec[i] & 1;
    return count;
}

/* A ring of ring_len bytes in shared memory (shmem, whose pages a trim
 * releases) for the log in sh. */
static char *big_ring(size_t ring_len)
{
    char *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (ring == MAP_FAILED)
        abort();
    memset(sh, 0, sizeof(*sh));
    rlog_init(&sh->rlog, ring, ring_len);
    rlog = &sh->rlog;
    return ring;
}

/* rlog_trim_sh() frees the ring pages of what it drops, in every process
 * that maps them (the ring is shmem, as in kvsd), and the log works on
 * over the freed pages: across the wrap, read back whole. */
static void test_trim_releases(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = 32, ring_len = pages * page;
    uint64_t buf[RING / 8], pos, seq, expect, max_off = 0;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    char *ring;
    int all = 1, tick, i;
    long n;

    ring = big_ring(ring_len);
    for (seq = 1; rlog_head(rlog) < ring_len * 3 / 4; ++seq)
        all &= append(3, seq, 300, NULL) == 0;
    ok(all && resident(ring, ring_len) >= pages * 3 / 4 - 1, "3/4 of the ring written: %zu of %zu pages resident",
       resident(ring, ring_len), pages);
    rlog_trim_sh(rlog, rlog_head(rlog) - 1000); /* keep the last few records */
    ok(rlog->hot == ring_len / 4, "the hot window: a quarter of this small ring (%llu bytes)", (unsigned long long)rlog->hot);
    ok(resident(ring, ring_len) <= pages / 4 + 2, "trimmed to the last 1000 bytes: %zu pages resident", resident(ring, ring_len));
    pos = rlog_tail(rlog);
    n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL);
    ok(n > 0 && r->seq + 2 >= seq && rlog->tail_clock[3] == r->seq - 1,
       "the last records stay; the dropped ones are folded into tail_clock");

    /* write on through the freed pages and over the wrap, then read back */
    for (expect = seq; rlog_head(rlog) < ring_len * 5 / 2; ++seq)
        all &= append(3, seq, 300, NULL) == 0;
    for (pos = rlog_tail(rlog); (n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL)) > 0; expect = r->seq + 1)
        all &= rec_ok(r, 3, r->seq) && r->seq >= expect;
    ok(all && n == 0 && expect == seq, "records written over released pages and the wrap read back whole");
    rlog_trim_sh(rlog, rlog_head(rlog));
    ok(resident(ring, ring_len) <= pages / 4 + 1, "trimmed to head after the wrap: %zu pages resident", resident(ring, ring_len));

    /* A short log trimmed every "tick": the writer keeps to the hot window
     * (wrapping early, behind a pad), which shrinks to fit, so the ring's
     * other pages are never faulted in again. */
    for (tick = 0; tick < 200; ++tick) {
        for (i = 0; i < 4; ++i)
            all &= append(3, seq++, 300, NULL) == 0;
        pos = rlog_tail(rlog);
        for (expect = seq - 4; (n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL)) > 0; expect = r->seq + 1)
            all &= rec_ok(r, 3, r->seq) && r->seq == expect;
        all &= n == 0 && expect == seq;
        max_off = rlog_head(rlog) % ring_len > max_off ? rlog_head(rlog) % ring_len : max_off;
        rlog_trim_sh(rlog, rlog_head(rlog));
    }
    ok(all, "200 ticks of 4 records: each tick's records read back whole and in order");
    ok(rlog->hot <= ring_len / 4 && max_off <= rlog->hot,
       "the writer kept to the hot window (%llu bytes, head offset at most %llu)", (unsigned long long)rlog->hot,
       (unsigned long long)max_off);
    ok(resident(ring, ring_len) <= rlog->hot / page + 1, "only the window is resident: %zu pages", resident(ring, ring_len));
    munmap(ring, ring_len);
}

/* The hot window grows with a long log and shrinks back when the log is
 * short again, releasing the pages it gives up; nothing live is lost. */
static void test_hot_shrinks(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), ring_len = 1024 * page;
    uint64_t buf[RING / 8], pos, seq = 1, expect, grown;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    int all = 1, tick, i;
    char *ring;
    long n;

    ring = big_ring(ring_len);
    while (rlog_head(rlog) < ring_len / 2)
        all &= append(5, seq++, 3000, NULL) == 0;
    rlog_trim_sh(rlog, rlog_head(rlog));
    grown = rlog->hot;
    ok(grown == ring_len / 4, "a long log grows the hot window to a quarter of the ring");
    rlog_trim_sh(rlog, rlog_head(rlog)); /* an idle tick */
    ok(rlog->hot == (256u << 10) && resident(ring, ring_len) <= rlog->hot / page + 1,
       "an idle log shrinks it at once (%llu bytes) and releases the rest (%zu pages resident)",
       (unsigned long long)rlog->hot, resident(ring, ring_len));
    rlog->hot = grown; /* again from the large window, with writes this time */
    for (tick = 0; tick < 400; ++tick) {
        for (i = 0; i < 4; ++i)
            all &= append(5, seq++, 1000, NULL) == 0;
        pos = rlog_tail(rlog);
        for (expect = seq - 4; (n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL)) > 0; expect = r->seq + 1)
            all &= rec_ok(r, 5, r->seq) && r->seq == expect;
        all &= n == 0 && expect == seq;
        rlog_trim_sh(rlog, rlog_head(rlog));
    }
    ok(all, "400 ticks of short logs read back whole and in order");
    ok(rlog->hot < grown && resident(ring, ring_len) <= rlog->hot / page + 1,
       "the window shrank back (%llu bytes) and released what it gave up (%zu pages resident)",
       (unsigned long long)rlog->hot, resident(ring, ring_len));
    munmap(ring, ring_len);
}

/* A peer stops acknowledging just after an early wrap (the records in
 * flight then are behind the pad) while writes go on for 3/5 of the ring
 * (more than two hot windows; the ring used to lose them within one):
 * nothing it lacks is lost (the wrap moved them), tail_clock says
 * so, the replication view reads each record once and in order, and the
 * persister's view reads each write once, at its first position. */
static void test_wrap_keeps_inflight(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), ring_len = 1024 * page;
    uint64_t buf[RING / 8], pos, seq = 1, expect, stuck = 0, wraps = 0, head0, copies = 0;
    struct rlog_rec *r = (struct rlog_rec *)buf;
    struct clock_sh *clock;
    int all = 1, tick, i, once = 1, pending;
    char *ring;
    long n;

    ring = big_ring(ring_len);
    /* a healthy cluster: every tick, all but the last 3 records acknowledged */
    for (tick = 0; tick < 2000 && wraps < 3; ++tick) {
        for (i = 0; i < 8; ++i) {
            head0 = rlog_head(rlog);
            all &= append(4, seq++, 1000, NULL) == 0;
            wraps += rlog_head(rlog) % ring_len < head0 % ring_len;
        }
        pos = rlog_tail(rlog);
        for (i = 0; (n = rlog_peek(rlog, &pos, r)) > 0; ++i)
            if (r->seq + 3 == seq)
                rlog->acked_pos = pos - (uint64_t)n;
        rlog_trim_sh(rlog, rlog->acked_pos);
    }
    ok(all && wraps >= 3 && rlog->moved > 0, "the writer wrapped early %llu times, moving %llu bytes in flight",
       (unsigned long long)wraps, (unsigned long long)rlog->moved);
    /* the peer stops here: nothing past seq - 3 is acknowledged any more */
    stuck = seq - 3;
    do { /* until the next early wrap, which moves them */
        head0 = rlog_head(rlog);
        all &= append(4, seq++, 1000, NULL) == 0;
    } while (rlog_head(rlog) % ring_len > head0 % ring_len);
    for (i = 0; rlog_head(rlog) - rlog_tail(rlog) < ring_len * 3 / 5; ++i) {
        all &= append(4, seq++, 1000, NULL) == 0;
        if (i % 64 == 0)
            rlog_trim_sh(rlog, rlog->acked_pos);
    }
    ok(all && rlog->tail_clock[4] < stuck, "3/5 of the ring later nothing the peer lacks fell off (tail_clock %llu < %llu)",
       (unsigned long long)rlog->tail_clock[4], (unsigned long long)stuck);
    pos = rlog_tail(rlog);
    for (expect = 0; (n = rlog_read(rlog, &pos, buf, sizeof(buf), NULL)) > 0; expect = r->seq + 1) {
        if (expect != 0 && r->seq != expect)
            once = 0;
        all &= rec_ok(r, 4, r->seq);
        if (expect == 0 && r->seq > stuck)
            once = 0;
    }
    ok(all && once && n == 0 && expect == seq, "the replication view reads every record from %llu on once, in order",
       (unsigned long long)stuck);
    pos = rlog_tail(rlog);
    for (expect = 0, once = 1; (n = rlog_read_persisted(rlog, &pos, buf, sizeof(buf), NULL)) > 0; expect = r->seq + 1) {
        copies += (r->flags & RLOG_COPY) != 0;
        if (expect != 0 && r->seq != expect)
            once = 0;
    }
    ok(once && copies == 0 && n == 0 && expect == seq, "the persister's view reads them once too, no copy among them");
    /* the last move's copies may name lives folded after its first original */
    clock = calloc(1, sizeof(*clock));
    if (clock == NULL)
        abort();
    clock->ninc = 3;
    clock->inc[0].fold_pos = rlog->mv_src + 1;
    clock->inc[1].fold_pos = rlog->mv_src;
    clock->inc[2].fold_pos = rlog->mv_end + 8;
    pending = rlog->mv_pending;
    rlog_finish_move_sh(rlog, clock);
    ok(pending && !rlog->mv_pending && clock->inc[0].fold_pos == rlog->mv_end && clock->inc[1].fold_pos == rlog->mv_src &&
           clock->inc[2].fold_pos == rlog->mv_end + 8,
       "finishing the move puts fold_pos past the copies only for lives folded after its first original");
    free(clock);
    munmap(ring, ring_len);
}

int main(void)
{
    plan(51);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        abort();
    rlog = &sh->rlog;
    test_append_read();
    test_wrap();
    test_peek();
    test_big();
    test_concurrent();
    test_trim_releases();
    test_hot_shrinks();
    test_wrap_keeps_inflight();
    munmap(sh, sizeof(*sh));
    return done_testing();
}
