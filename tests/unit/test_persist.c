/*
 * test_persist.c - CRC-32C against published vectors (RFC 3720 B.4 and
 * the usual check value), and the data directory's file format: a round
 * trip of every frame type, a torn tail at every offset of the last
 * frame, and a flipped byte anywhere before it.
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "datafile.h"
#include "tap.h"

static void test_crc(void)
{
    unsigned char buf[48];
    int i;

    is_int(crc32c(0, "123456789", 9), 0xe3069283u, "crc32c check value");
    memset(buf, 0, 32);
    is_int(crc32c(0, buf, 32), 0x8a9136aau, "32 zero bytes (RFC 3720)");
    memset(buf, 0xff, 32);
    is_int(crc32c(0, buf, 32), 0x62a8ab43u, "32 0xff bytes (RFC 3720)");
    for (i = 0; i < 32; ++i)
        buf[i] = (unsigned char)i;
    is_int(crc32c(0, buf, 32), 0x46dd794eu, "32 ascending bytes (RFC 3720)");
    for (i = 0; i < 32; ++i)
        buf[i] = (unsigned char)(31 - i);
    is_int(crc32c(0, buf, 32), 0x113fdb5cu, "32 descending bytes (RFC 3720)");
    is_int(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283u, "continued over two calls");
    for (i = 0; i < 48; ++i)
        buf[i] = (unsigned char)(i * 7);
    /* unaligned starts and tails through the slicing loop */
    ok(crc32c(crc32c(0, buf, 13), buf + 13, 35) == crc32c(0, buf, 48), "split at an unaligned offset");
}

struct seen {
    int inc, write, clock, end;
    char addr[ADDR_MAX];
    uint64_t stamp, seq, lamport, pos, count;
    char key[64], value[64];
    int tombstone;
};

static int collect(const struct df_item *it, void *arg, char *why, size_t whylen)
{
    struct seen *s = arg;
    uint32_t fid;

    (void)why, (void)whylen;
    switch (it->type) {
    case 'I':
        s->inc++;
        strcpy(s->addr, it->addr);
        s->stamp = it->stamp;
        break;
    case 'W':
        s->write++;
        s->seq = it->seq;
        s->tombstone = it->tombstone;
        memcpy(s->key, it->key, it->klen);
        s->key[it->klen] = 0;
        memcpy(s->value, it->value, it->vlen);
        s->value[it->vlen] = 0;
        break;
    case 'C':
        s->clock++;
        s->lamport = it->lamport;
        if (it->npairs == 1)
            df_clock_pair(it, 0, &fid, &s->count);
        break;
    case 'E':
        s->end++;
        s->pos = it->pos;
        break;
    }
    return 0;
}

static void build(struct df_buf *b, size_t *last_start)
{
    uint64_t counts[3] = { 0, 0, 42 };

    memset(b, 0, sizeof(*b));
    df_put_header(b, DF_SNAPSHOT);
    df_put_inc(b, 2, 1700000000123ull, 0, "127.0.0.1:8090");
    df_put_write(b, 2, 41, 99, 0, "k1", 2, "\"v1\"", 4);
    df_put_write(b, 2, 42, 100, 1, "k2", 2, NULL, 0);
    df_put_clock(b, 100, counts, 3);
    *last_start = b->len;
    df_put_end(b, 123456);
}

static void test_format(void)
{
    struct df_buf b;
    struct df_result res;
    struct seen s;
    size_t last, cut, i;
    int torn_ok = 1, corrupt_ok = 1;

    build(&b, &last);
    memset(&s, 0, sizeof(s));
    df_scan(b.p, b.len, DF_SNAPSHOT, collect, &s, &res);
    ok(res.status == DF_OK && res.good_len == b.len && res.frames == 5, "a whole file scans OK, 5 frames");
    ok(s.inc == 1 && strcmp(s.addr, "127.0.0.1:8090") == 0 && s.stamp == 1700000000123ull, "incarnation round trip");
    ok(s.write == 2 && s.seq == 42 && s.tombstone == 1 && strcmp(s.key, "k2") == 0, "writes and a tombstone round trip");
    ok(s.clock == 1 && s.lamport == 100 && s.count == 42, "clock round trip (zero counts left out)");
    ok(s.end == 1 && s.pos == 123456, "end frame round trip");

    df_scan(b.p, b.len, DF_LOG, NULL, NULL, &res);
    ok(res.status == DF_CORRUPT, "a snapshot is not read as a log");

    /* a cut anywhere inside the last frame is a torn tail at its start */
    for (cut = last + 1; cut < b.len; ++cut) {
        df_scan(b.p, cut, DF_SNAPSHOT, NULL, NULL, &res);
        if (res.status != DF_TORN || res.good_len != last)
            torn_ok = 0;
    }
    ok(torn_ok, "every truncation inside the last frame is torn, good up to it");
    df_scan(b.p, last, DF_SNAPSHOT, NULL, NULL, &res);
    ok(res.status == DF_OK && res.good_len == last, "a cut between frames is a whole file");

    /* zeros after the last frame (a file extended before its data) */
    {
        char *z = calloc(1, last + 100);
        memcpy(z, b.p, last);
        df_scan(z, last + 100, DF_SNAPSHOT, NULL, NULL, &res);
        ok(res.status == DF_TORN && res.good_len == last, "a zero-filled tail is torn");
        free(z);
    }

    /* a flipped byte in any frame but the last is corruption */
    for (i = DF_HEADER_LEN; i < last; ++i) {
        b.p[i] ^= 0x20;
        df_scan(b.p, b.len, DF_SNAPSHOT, NULL, NULL, &res);
        if (res.status != DF_CORRUPT || res.bad_offset > i)
            corrupt_ok = 0;
        b.p[i] ^= 0x20;
    }
    ok(corrupt_ok, "a flipped byte before the last frame is corruption, found at or before it");
    b.p[3] ^= 1;
    df_scan(b.p, b.len, DF_SNAPSHOT, NULL, NULL, &res);
    ok(res.status == DF_CORRUPT, "a bad magic is corruption");
    b.p[3] ^= 1;
    b.p[8] = 9;
    df_scan(b.p, b.len, DF_SNAPSHOT, NULL, NULL, &res);
    ok(res.status == DF_CORRUPT && strstr(res.why, "version") != NULL, "an unknown version is refused, by name");
    df_buf_free(&b);
}

/* Random bytes after a good header never make the scanner read outside
 * the buffer (the sanitizer build checks that) nor report OK falsely. */
static void test_garbage(void)
{
    struct df_buf b;
    struct df_result res;
    int i, j, sane = 1;

    memset(&b, 0, sizeof(b));
    srand(15);
    for (i = 0; i < 2000; ++i) {
        size_t n = (size_t)(rand() % 200);
        char *p;
        b.len = 0;
        df_put_header(&b, DF_LOG);
        p = malloc(DF_HEADER_LEN + n + 1);
        memcpy(p, b.p, DF_HEADER_LEN);
        for (j = 0; j < (int)n; ++j)
            p[DF_HEADER_LEN + j] = (char)(rand() | 1);
        df_scan(p, DF_HEADER_LEN + n, DF_LOG, NULL, NULL, &res);
        if (n > 0 && res.status == DF_OK)
            sane = 0;
        free(p);
    }
    ok(sane, "2000 random tails: never OK, never out of bounds");
    df_buf_free(&b);
}

int main(void)
{
    test_crc();
    test_format();
    test_garbage();
    return done_testing();
}
