/*
 * datafile.c - encode and scan the data directory's framed files (the
 * format is described in datafile.h).  Used by the persister (writing),
 * by recovery at startup and by `kvsd --check-data` (scanning).  The
 * scanner bounds every length against the bytes it has before it looks
 * at them: a file is input like any other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "datafile.h"
#include "util.h"

static const char magic[2][8] = { { 'K', 'V', 'S', 'D', 'S', 'N', 'P', '1' }, { 'K', 'V', 'S', 'D', 'L', 'O', 'G', '1' } };

void df_buf_free(struct df_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static char *reserve(struct df_buf *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    return b->p + b->len;
}

static void put_le(char *p, uint64_t v, int bytes)
{
    int i;
    for (i = 0; i < bytes; ++i)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    int i;
    for (i = bytes - 1; i >= 0; --i)
        v = v << 8 | p[i];
    return v;
}

void df_put_header(struct df_buf *b, enum df_kind kind)
{
    char *p = reserve(b, DF_HEADER_LEN);

    memcpy(p, magic[kind], 8);
    put_le(p + 8, DF_VERSION, 4);
    put_le(p + 12, 0, 4);
    b->len += DF_HEADER_LEN;
}

/* A frame: reserve its head, let the caller write the payload, close it. */
static char *frame_open(struct df_buf *b, size_t payload)
{
    return reserve(b, DF_FRAME_HEAD + payload) + DF_FRAME_HEAD;
}

static void frame_close(struct df_buf *b, size_t payload)
{
    char *f = b->p + b->len;

    put_le(f, payload, 4);
    put_le(f + 4, crc32c(0, f, 4), 4);
    put_le(f + 8, crc32c(0, f + DF_FRAME_HEAD, payload), 4);
    b->len += DF_FRAME_HEAD + payload;
}

void df_put_inc(struct df_buf *b, uint32_t fid, uint64_t stamp, int folded, const char *addr)
{
    size_t alen = strnlen(addr, ADDR_MAX - 1), n = 1 + 4 + 8 + 1 + 1 + alen;
    char *p = frame_open(b, n);

    p[0] = 'I';
    put_le(p + 1, fid, 4);
    put_le(p + 5, stamp, 8);
    p[13] = folded ? DF_INC_FOLDED : 0;
    p[14] = (char)alen;
    memcpy(p + 15, addr, alen);
    frame_close(b, n);
}

void df_put_write(struct df_buf *b,
                  uint32_t fid,
                  uint64_t seq,
                  uint64_t lamport,
                  int tombstone,
                  const char *key,
                  size_t klen,
                  const char *value,
                  size_t vlen)
{
    size_t n = 1 + 4 + 8 + 8 + 1 + 1 + 4 + klen + vlen;
    char *p = frame_open(b, n);

    p[0] = 'W';
    put_le(p + 1, fid, 4);
    put_le(p + 5, seq, 8);
    put_le(p + 13, lamport, 8);
    p[21] = tombstone ? DF_W_TOMBSTONE : 0;
    p[22] = (char)klen;
    put_le(p + 23, vlen, 4);
    if (klen != 0)
        memcpy(p + 27, key, klen);
    if (vlen != 0)
        memcpy(p + 27 + klen, value, vlen);
    frame_close(b, n);
}

void df_put_clock(struct df_buf *b, uint64_t lamport, const uint64_t *counts, uint32_t n)
{
    uint32_t i, k = 0;
    char *p;

    for (i = 0; i < n; ++i)
        k += counts[i] != 0;
    p = frame_open(b, 13 + (size_t)k * 12);
    p[0] = 'C';
    put_le(p + 1, lamport, 8);
    put_le(p + 9, k, 4);
    p += 13;
    for (i = 0; i < n; ++i)
        if (counts[i] != 0) {
            put_le(p, i, 4);
            put_le(p + 4, counts[i], 8);
            p += 12;
        }
    frame_close(b, 13 + (size_t)k * 12);
}

void df_put_end(struct df_buf *b, uint64_t pos)
{
    char *p = frame_open(b, 9);

    p[0] = 'E';
    put_le(p + 1, pos, 8);
    frame_close(b, 9);
}

void df_clock_pair(const struct df_item *it, uint32_t i, uint32_t *fid, uint64_t *count)
{
    *fid = (uint32_t)get_le(it->pairs + (size_t)i * 12, 4);
    *count = get_le(it->pairs + (size_t)i * 12 + 4, 8);
}

/* Decode one payload (its checksum already verified).  0, or -1 with why. */
static int decode(const unsigned char *p, size_t n, struct df_item *it, char *why, size_t whylen)
{
    memset(it, 0, sizeof(*it));
    if (n < 1)
        goto bad;
    it->type = (char)p[0];
    switch (p[0]) {
    case 'I': {
        size_t alen;
        if (n < 15 || (alen = p[14]) >= ADDR_MAX || n != 15 + alen || memchr(p + 15, 0, alen) != NULL)
            goto bad;
        it->fid = (uint32_t)get_le(p + 1, 4);
        it->stamp = get_le(p + 5, 8);
        it->folded = (p[13] & DF_INC_FOLDED) != 0;
        memcpy(it->addr, p + 15, alen);
        it->addr[alen] = '\0';
        break;
    }
    case 'W':
        if (n < 27)
            goto bad;
        it->fid = (uint32_t)get_le(p + 1, 4);
        it->seq = get_le(p + 5, 8);
        it->lamport = get_le(p + 13, 8);
        it->tombstone = (p[21] & DF_W_TOMBSTONE) != 0;
        it->klen = p[22];
        it->vlen = (size_t)get_le(p + 23, 4);
        if (n != 27 + it->klen + it->vlen || it->klen == 0 || (it->tombstone && it->vlen != 0))
            goto bad;
        it->key = (const char *)p + 27;
        it->value = it->key + it->klen;
        break;
    case 'C':
        if (n < 13)
            goto bad;
        it->lamport = get_le(p + 1, 8);
        it->npairs = (uint32_t)get_le(p + 9, 4);
        if (it->npairs > CLOCK_MAX || n != 13 + (size_t)it->npairs * 12)
            goto bad;
        it->pairs = p + 13;
        break;
    case 'E':
        if (n != 9)
            goto bad;
        it->pos = get_le(p + 1, 8);
        break;
    default:
        goto bad;
    }
    if ((it->type == 'I' || it->type == 'W') && it->fid >= CLOCK_MAX)
        goto bad;
    return 0;
bad:
    snprintf(why, whylen, "malformed '%c' record", n ? (p[0] >= 32 && p[0] < 127 ? p[0] : '?') : '?');
    return -1;
}

static int all_zero(const char *p, size_t n)
{
    while (n-- > 0)
        if (*p++ != 0)
            return 0;
    return 1;
}

void df_scan(const char *data,
             size_t len,
             enum df_kind kind,
             int (*each)(const struct df_item *it, void *arg, char *why, size_t whylen),
             void *arg,
             struct df_result *res)
{
    const unsigned char *u = (const unsigned char *)data;
    uint64_t off = DF_HEADER_LEN;
    struct df_item it;

    memset(res, 0, sizeof(*res));
    if (len < DF_HEADER_LEN || memcmp(data, magic[kind], 8) != 0) {
        res->status = len < DF_HEADER_LEN && memcmp(data, magic[kind], len) == 0 ? DF_TORN : DF_CORRUPT;
        snprintf(res->why, sizeof(res->why), len < DF_HEADER_LEN ? "file shorter than its header" : "not a kvsd %s file",
                 kind == DF_LOG ? "log" : "snapshot");
        return;
    }
    if (get_le(u + 8, 4) != DF_VERSION) {
        res->status = DF_CORRUPT;
        snprintf(res->why, sizeof(res->why), "format version %u, this kvsd reads %u", (unsigned)get_le(u + 8, 4),
                 DF_VERSION);
        return;
    }
    res->good_len = off;
    while (off < len) {
        uint64_t n;
        res->bad_offset = off;
        /* a tail shorter than a frame head, or zeros (a file extended by a
         * crash before its data reached the disk), is a torn write */
        if (len - off < DF_FRAME_HEAD || all_zero(data + off, len - off)) {
            res->status = DF_TORN;
            snprintf(res->why, sizeof(res->why), "incomplete record at the end");
            return;
        }
        n = get_le(u + off, 4);
        if ((uint32_t)get_le(u + off + 4, 4) != crc32c(0, u + off, 4) || n > DF_PAYLOAD_MAX) {
            res->status = DF_CORRUPT;
            snprintf(res->why, sizeof(res->why), "bad record length");
            return;
        }
        if (n > len - off - DF_FRAME_HEAD) {
            res->status = DF_TORN;
            snprintf(res->why, sizeof(res->why), "incomplete record at the end");
            return;
        }
        if ((uint32_t)get_le(u + off + 8, 4) != crc32c(0, u + off + DF_FRAME_HEAD, n)) {
            /* the last frame, whole in length but not in content: torn */
            res->status = off + DF_FRAME_HEAD + n == len ? DF_TORN : DF_CORRUPT;
            snprintf(res->why, sizeof(res->why), "checksum mismatch");
            return;
        }
        if (decode(u + off + DF_FRAME_HEAD, n, &it, res->why, sizeof(res->why)) != 0) {
            res->status = DF_CORRUPT;
            return;
        }
        it.offset = off;
        if (each != NULL && each(&it, arg, res->why, sizeof(res->why)) != 0) {
            res->status = DF_CORRUPT;
            return;
        }
        off += DF_FRAME_HEAD + n;
        res->good_len = off;
        res->frames++;
    }
    res->bad_offset = 0;
    res->status = DF_OK;
}
