/*
 * wire.c - encode and decode the /internal/ messages (see wire.h).
 *
 * Layout:
 *   magic[4] inc(from) u32 flags
 *   u32 ninc  { inc }*ninc            inc = u8 len, addr, u64 stamp
 *   u32 nrec  { record }*nrec
 *   u32 ncount { u32 inc, u64 n, u32 flags, u64 final_seq }*ncount
 *   record = u32 origin, u64 seq, u64 lamport, u8 flags, u8 klen,
 *            u32 vlen, u16 ndeps, { u32 inc, u64 n }*ndeps, key, value
 *
 * What the decoder accepts (anything else is -1, and nothing is kept):
 *   magic      KVB1, KVC1 or KVS1;
 *   inc        a valid IP:PORT; ninc <= CLOCK_MAX rows, no row twice;
 *   record     origin and every dep id < ninc; ndeps <= CLOCK_MAX, no id
 *              twice; flags only WIRE_REC_TOMBSTONE; 1 <= klen <= KEY_MAX;
 *              a tombstone has no value, a live record a stored value
 *              (JSON, not null, compact ends); 1 <= seq, lamport and dep
 *              counts <= WIRE_NUM_MAX;
 *   count      inc < ninc, no inc twice (so ncount <= ninc); flags within
 *              WIRE_COUNT_FLAGS; n and final_seq <= WIRE_NUM_MAX;
 *   KVS1       every entry's seq <= the count of its origin (any seq
 *              for a folded origin);
 *   lengths    every length and count within the bytes left, and no byte
 *              left over.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "json.h"
#include "table.h"
#include "util.h"
#include "wire.h"

void buf_reserve(struct buf *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    b->cap = b->cap ? b->cap : 4096;
    while (b->cap < b->len + n)
        b->cap *= 2;
    b->p = xrealloc(b->p, b->cap);
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void put8(struct buf *b, uint8_t v)
{
    buf_append(b, &v, 1);
}
static void put16(struct buf *b, uint16_t v)
{
    v = htole16(v);
    buf_append(b, &v, 2);
}
static void put32(struct buf *b, uint32_t v)
{
    v = htole32(v);
    buf_append(b, &v, 4);
}
static void put64(struct buf *b, uint64_t v)
{
    v = htole64(v);
    buf_append(b, &v, 8);
}

static void put_inc(struct buf *b, const struct wire_inc *inc)
{
    size_t n = strlen(inc->addr);
    put8(b, (uint8_t)n);
    buf_append(b, inc->addr, n);
    put64(b, inc->stamp);
}

void wire_enc_init(struct wire_enc *e)
{
    memset(e, 0, sizeof(*e));
    memset(e->map, -1, sizeof(e->map));
}

void wire_enc_free(struct wire_enc *e)
{
    buf_free(&e->recs);
    buf_free(&e->counts);
}

uint32_t wire_enc_inc(struct wire_enc *e, const struct clock_sh *clock, uint32_t id)
{
    if (e->map[id] < 0) {
        e->map[id] = (int32_t)e->ninc;
        memcpy(e->inc[e->ninc].addr, clock->inc[id].addr, ADDR_MAX);
        e->inc[e->ninc].stamp = clock->inc[id].stamp;
        ++e->ninc;
    }
    return (uint32_t)e->map[id];
}

void wire_enc_record(struct wire_enc *e,
                     const struct clock_sh *clock,
                     uint32_t origin,
                     uint64_t seq,
                     uint64_t lamport,
                     int tombstone,
                     const char *key,
                     size_t klen,
                     const char *value,
                     size_t vlen,
                     const struct vc_pair *deps,
                     size_t ndeps)
{
    size_t i, live = 0;

    /* a folded life is applied everywhere: a dependency on it is met
     * wherever the record goes, and the life is never named again */
    for (i = 0; i < ndeps; ++i)
        live += !clock_folded(clock, deps[i].id);
    put32(&e->recs, wire_enc_inc(e, clock, origin));
    put64(&e->recs, seq);
    put64(&e->recs, lamport);
    put8(&e->recs, tombstone ? WIRE_REC_TOMBSTONE : 0);
    put8(&e->recs, (uint8_t)klen);
    put32(&e->recs, (uint32_t)vlen);
    put16(&e->recs, (uint16_t)live);
    for (i = 0; i < ndeps; ++i) {
        if (clock_folded(clock, deps[i].id))
            continue;
        put32(&e->recs, wire_enc_inc(e, clock, deps[i].id));
        put64(&e->recs, deps[i].n);
    }
    buf_append(&e->recs, key, klen);
    buf_append(&e->recs, value, vlen);
    ++e->nrec;
}

void wire_enc_count(struct wire_enc *e,
                    const struct clock_sh *clock,
                    uint32_t id,
                    uint64_t n,
                    uint32_t flags,
                    uint64_t final_seq)
{
    put32(&e->counts, wire_enc_inc(e, clock, id));
    put64(&e->counts, n);
    put32(&e->counts, flags);
    put64(&e->counts, final_seq);
    ++e->ncount;
}

size_t wire_enc_size(const struct wire_enc *e, const struct wire_inc *from)
{
    size_t n = 4 + 1 + strlen(from->addr) + 8 + 4 + 4 + 4 + e->recs.len + 4 + e->counts.len;
    uint32_t i;

    for (i = 0; i < e->ninc; ++i)
        n += 1 + strlen(e->inc[i].addr) + 8;
    return n;
}

void wire_enc_finish(struct wire_enc *e,
                     const char magic[4],
                     const struct wire_inc *from,
                     uint32_t flags,
                     struct buf *out)
{
    uint32_t i;

    buf_reserve(out, wire_enc_size(e, from)); /* exact: callers may hand in a fixed buffer */
    buf_append(out, magic, 4);
    put_inc(out, from);
    put32(out, flags);
    put32(out, e->ninc);
    for (i = 0; i < e->ninc; ++i)
        put_inc(out, &e->inc[i]);
    put32(out, e->nrec);
    buf_append(out, e->recs.p, e->recs.len);
    put32(out, e->ncount);
    buf_append(out, e->counts.p, e->counts.len);
}

/* --- decoding ---------------------------------------------------------- */

struct reader {
    const char *p, *end;
    int bad;
};

static const char *take(struct reader *r, size_t n)
{
    const char *p = r->p;
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    r->p += n;
    return p;
}

#define GETTER(bits)                                                                                                   \
    static uint##bits##_t get##bits(struct reader *r)                                                                  \
    {                                                                                                                  \
        uint##bits##_t v = 0;                                                                                          \
        const char *p = take(r, sizeof(v));                                                                            \
        if (p != NULL)                                                                                                 \
            memcpy(&v, p, sizeof(v));                                                                                  \
        return le##bits##toh(v);                                                                                       \
    }
#define le8toh(v) (v)
GETTER(8)
GETTER(16)
GETTER(32)
GETTER(64)

static void get_inc(struct reader *r, struct wire_inc *inc)
{
    uint8_t n = get8(r);
    const char *p = take(r, n);

    inc->stamp = get64(r);
    if (p == NULL || config_parse_addr(p, n, inc->addr) != 0)
        r->bad = 1;
}

/* Decoded counts never exceed what the remaining bytes could hold. */
static int plausible(const struct reader *r, uint32_t n, size_t min_size)
{
    return (uint64_t)n * min_size <= (uint64_t)(r->end - r->p);
}

static int known_magic(const char magic[4])
{
    return memcmp(magic, "KVB1", 4) == 0 || memcmp(magic, "KVC1", 4) == 0 || memcmp(magic, "KVS1", 4) == 0;
}

/* A value a client could have stored: well-formed JSON, not null, without
 * surrounding whitespace (http_kvs.c stores values compacted).  GET
 * splices it into its answer as it is. */
static int stored_value(const char *p, size_t len)
{
    struct json_body body;

    if (len == 0 || p[0] == ' ' || p[0] == '\t' || p[0] == '\n' || p[0] == '\r')
        return 0;
    if (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\n' || p[len - 1] == '\r')
        return 0;
    if (len == 4 && memcmp(p, "null", 4) == 0)
        return 0;
    return json_scan_body(p, len, &body) == 0 && body.valid;
}

/* The incarnation table: at most CLOCK_MAX rows, each valid and named
 * once (two rows for one incarnation would let a record name one
 * dependency twice under two indexes). */
static int decode_incs(struct reader *r, struct wire_msg *msg)
{
    uint32_t i, j;

    msg->ninc = get32(r);
    if (r->bad || msg->ninc > CLOCK_MAX || !plausible(r, msg->ninc, 10))
        return -1;
    msg->inc = xmalloc(sizeof(*msg->inc) * (msg->ninc ? msg->ninc : 1));
    for (i = 0; i < msg->ninc && !r->bad; ++i) {
        get_inc(r, &msg->inc[i]);
        for (j = 0; j < i; ++j)
            if (msg->inc[j].stamp == msg->inc[i].stamp && strcmp(msg->inc[j].addr, msg->inc[i].addr) == 0)
                return -1;
    }
    return r->bad ? -1 : 0;
}

/* First pass over the records: every length against the bytes, and the
 * dependency total, so the deps take one bounded allocation. */
static int count_deps(struct reader r, uint32_t nrec, size_t *ndeps_total)
{
    uint32_t i;

    *ndeps_total = 0;
    for (i = 0; i < nrec && !r.bad; ++i) {
        uint16_t ndeps;
        uint8_t klen;
        uint32_t vlen;
        take(&r, 4 + 8 + 8 + 1);
        klen = get8(&r);
        vlen = get32(&r);
        ndeps = get16(&r);
        if (ndeps > CLOCK_MAX)
            return -1;
        take(&r, (size_t)ndeps * 12);
        take(&r, klen);
        take(&r, vlen);
        *ndeps_total += ndeps;
    }
    return r.bad ? -1 : 0;
}

/* One record's deps: known ids, each named once (seen[] holds the record
 * number + 1 of the last record that named an id), counts in range. */
static int decode_deps(struct reader *r, const struct wire_msg *msg, struct vc_pair *deps, size_t ndeps, uint32_t *seen,
                       uint32_t mark)
{
    size_t j;

    for (j = 0; j < ndeps; ++j) {
        deps[j].id = get32(r);
        deps[j].n = get64(r);
        if (r->bad || deps[j].id >= msg->ninc || seen[deps[j].id] == mark || deps[j].n > WIRE_NUM_MAX)
            return -1;
        seen[deps[j].id] = mark;
    }
    return 0;
}

static int decode_records(struct reader *r, struct wire_msg *msg)
{
    uint32_t seen[CLOCK_MAX] = { 0 }, i;
    size_t d = 0, ndeps_total;

    msg->nrec = get32(r);
    /* the smallest record: 28 bytes of fields and a 1-byte key */
    if (r->bad || !plausible(r, msg->nrec, 29) || count_deps(*r, msg->nrec, &ndeps_total) != 0)
        return -1;
    msg->rec = xmalloc(sizeof(*msg->rec) * (msg->nrec ? msg->nrec : 1));
    msg->deps = xmalloc(sizeof(*msg->deps) * (ndeps_total ? ndeps_total : 1));
    for (i = 0; i < msg->nrec; ++i) {
        struct store_record *rec = &msg->rec[i];
        uint8_t flags;
        rec->origin = get32(r);
        rec->seq = get64(r);
        rec->lamport = get64(r);
        flags = get8(r);
        rec->tombstone = flags & WIRE_REC_TOMBSTONE;
        rec->klen = get8(r);
        rec->vlen = get32(r);
        rec->ndeps = get16(r);
        rec->deps = &msg->deps[d];
        if (decode_deps(r, msg, &msg->deps[d], rec->ndeps, seen, i + 1) != 0)
            return -1;
        rec->key = take(r, rec->klen);
        rec->value = take(r, rec->vlen);
        if (r->bad || rec->origin >= msg->ninc || (flags & ~WIRE_REC_TOMBSTONE) || rec->klen == 0 ||
            rec->klen > KEY_MAX || rec->seq == 0 || rec->seq > WIRE_NUM_MAX || rec->lamport > WIRE_NUM_MAX)
            return -1;
        if (rec->tombstone ? rec->vlen != 0 : !stored_value(rec->value, rec->vlen))
            return -1;
        d += rec->ndeps;
    }
    return 0;
}

/* Clock components: known incarnations, each once, defined flags only. */
static int decode_counts(struct reader *r, struct wire_msg *msg)
{
    uint8_t seen[CLOCK_MAX] = { 0 };
    uint32_t i;

    msg->ncount = get32(r);
    if (r->bad || msg->ncount > msg->ninc || !plausible(r, msg->ncount, 24))
        return -1;
    msg->count = xmalloc(sizeof(*msg->count) * (msg->ncount ? msg->ncount : 1));
    for (i = 0; i < msg->ncount; ++i) {
        struct wire_count *c = &msg->count[i];
        c->inc = get32(r);
        c->n = get64(r);
        c->flags = get32(r);
        c->final_seq = get64(r);
        if (r->bad || c->inc >= msg->ninc || seen[c->inc] || (c->flags & ~WIRE_COUNT_FLAGS) || c->n > WIRE_NUM_MAX ||
            c->final_seq > WIRE_NUM_MAX)
            return -1;
        seen[c->inc] = 1;
    }
    return 0;
}

/* A snapshot's clock covers every entry in it (the invariant
 * store_check_sh() holds the installed store to). */
static int snapshot_covered(const struct wire_msg *msg)
{
    uint64_t have[CLOCK_MAX] = { 0 };
    uint32_t i;

    /* a folded life's entries keep the seqs of whichever life wrote them */
    for (i = 0; i < msg->ncount; ++i)
        have[msg->count[i].inc] = (msg->count[i].flags & INC_FOLDED) ? UINT64_MAX : msg->count[i].n;
    for (i = 0; i < msg->nrec; ++i)
        if (msg->rec[i].seq > have[msg->rec[i].origin])
            return -1;
    return 0;
}

int wire_decode(const char *p, size_t len, struct wire_msg *msg)
{
    struct reader r = { p, p + len, 0 };
    const char *magic;

    memset(msg, 0, sizeof(*msg));
    if ((magic = take(&r, 4)) == NULL || !known_magic(magic))
        return -1;
    memcpy(msg->magic, magic, 4);
    get_inc(&r, &msg->from);
    msg->flags = get32(&r);
    if (r.bad || decode_incs(&r, msg) != 0 || decode_records(&r, msg) != 0 || decode_counts(&r, msg) != 0)
        goto fail;
    if (r.bad || r.p != r.end)
        goto fail;
    if (memcmp(msg->magic, "KVS1", 4) == 0 && snapshot_covered(msg) != 0)
        goto fail;
    return 0;
fail:
    wire_msg_free(msg);
    return -1;
}

void wire_msg_free(struct wire_msg *msg)
{
    free(msg->inc);
    free(msg->rec);
    free(msg->deps);
    free(msg->count);
    msg->inc = NULL;
    msg->rec = NULL;
    msg->deps = NULL;
    msg->count = NULL;
}

/* A life the sender has folded, in a clock report: known here, or below
 * the floor of its address, or not worth a row (-1). */
static int32_t resolve_folded(shm_t *shm, const struct wire_inc *inc)
{
    int id = clock_find(shm->clock, inc->addr, inc->stamp), floor;

    if (id < 0 && (floor = clock_floor(shm->clock, inc->addr)) >= 0 && inc->stamp <= shm->clock->inc[floor].stamp)
        id = floor;
    return id;
}

/* Map the message's incarnation indexes to local ids, in place. */
/* Does the message name a life of our own address newer than ours?  No
 * replica can know one (a forged message would retire us everywhere). */
static int names_future_self(const shm_t *shm, const struct wire_msg *msg)
{
    const struct incarnation *self = &shm->clock->inc[shm->clock->self];
    uint32_t i;

    if (shm->clock->self < 0)
        return 0;
    for (i = 0; i <= msg->ninc; ++i) {
        const struct wire_inc *inc = i < msg->ninc ? &msg->inc[i] : &msg->from;
        if (inc->stamp > self->stamp && strncmp(inc->addr, self->addr, ADDR_MAX) == 0)
            return 1;
    }
    return 0;
}

int wire_localize(shm_t *shm, struct wire_msg *msg, int32_t *ids)
{
    char(*addr)[ADDR_MAX];
    uint64_t *stamp;
    uint8_t *folded, *fl;
    int32_t *sub;
    int report = memcmp(msg->magic, "KVC1", 4) == 0, pass;
    uint32_t i, j, n = 0;
    int r;

    if (names_future_self(shm, msg))
        return -2;
    addr = xmalloc(sizeof(*addr) * (msg->ninc + 1));
    stamp = xmalloc(sizeof(*stamp) * (msg->ninc + 1));
    folded = calloc(msg->ninc + 1, 1);
    fl = calloc(msg->ninc + 1, 1);
    sub = xmalloc(sizeof(*sub) * (msg->ninc + 1));
    if (folded == NULL || fl == NULL)
        abort();
    for (i = 0; i < msg->ncount; ++i)
        if (msg->count[i].flags & INC_FOLDED)
            folded[msg->count[i].inc] = 1;
    /* Lives the sender folded are interned (born folded) only from a
     * snapshot, which a joining replica needs them from; a clock report's
     * never makes a row. */
    for (pass = 1; pass >= 0; --pass) /* folded ones first: they raise floors */
        for (i = 0; i <= msg->ninc; ++i) {
            const struct wire_inc *inc = i < msg->ninc ? &msg->inc[i] : &msg->from;
            int f = i < msg->ninc && folded[i];
            if (f != pass)
                continue;
            if (report && f) {
                ids[i] = resolve_folded(shm, inc);
                continue;
            }
            memcpy(addr[n], inc->addr, ADDR_MAX);
            stamp[n] = inc->stamp;
            fl[n] = (uint8_t)f;
            sub[n++] = (int32_t)i;
        }
    {
        int32_t *got = xmalloc(sizeof(*got) * (n ? n : 1));
        r = store_intern2_sh(shm, (const char(*)[ADDR_MAX])addr, stamp, fl, n, got);
        for (i = 0; i < n; ++i)
            ids[sub[i]] = got[i];
        free(got);
    }
    free(addr);
    free(stamp);
    free(folded);
    free(fl);
    free(sub);
    if (r != 0)
        return -1;
    for (i = 0; i < msg->nrec; ++i) {
        struct vc_pair *deps = (struct vc_pair *)msg->rec[i].deps;
        msg->rec[i].origin = (uint32_t)ids[msg->rec[i].origin];
        for (j = 0; j < msg->rec[i].ndeps; ++j)
            deps[j].id = (uint32_t)ids[deps[j].id];
    }
    for (i = 0; i < msg->ncount; ++i)
        msg->count[i].inc = ids[msg->count[i].inc] < 0 ? WIRE_NO_INC : (uint32_t)ids[msg->count[i].inc];
    return 0;
}
