/*
 * datafile.h - the on-disk format of the data directory (--data-dir).
 *
 * Two kinds of file, same framing: snapshot.N (the store and its clock
 * at one replication-log position) and log.N (every write applied after
 * that position, in apply order).  A file is a 16-byte header -- an
 * 8-byte magic ("KVSDSNP1" or "KVSDLOG1"), a little-endian u32 format
 * version, 4 zero bytes -- then frames:
 *
 *     u32 len | u32 crc32c(len) | u32 crc32c(payload) | payload[len]
 *
 * all integers little-endian.  The checksum of len lets a reader tell a
 * torn tail (a prefix of a frame: every byte present is right) from a
 * corrupted length.  A payload starts with its type byte:
 *
 *   'I' incarnation  u32 fid, u64 stamp, u8 flags (DF_INC_FOLDED),
 *                    u8 alen, addr[alen]        -- defines (or redefines) fid
 *   'W' write        u32 fid, u64 seq, u64 lamport, u8 flags (DF_W_TOMBSTONE),
 *                    u8 klen, u32 vlen, key, value
 *   'C' clock        u64 lamport, u32 n, n x (u32 fid, u64 count)
 *   'E' end          u64 log position (a snapshot is complete only with it)
 *
 * A fid is valid only after an 'I' frame defined it in the same file.
 * Writes carry no dependencies: recovery installs them like a state
 * transfer (last writer wins per key, clock the maximum), which is
 * idempotent and order-free.
 */
#ifndef KVSD_DATAFILE_H
#define KVSD_DATAFILE_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define DF_VERSION 1
#define DF_HEADER_LEN 16
#define DF_FRAME_HEAD 12
#define DF_PAYLOAD_MAX (1u << 31) /* bound before anything is sized from len */

#define DF_INC_FOLDED 0x01
#define DF_W_TOMBSTONE 0x01

enum df_kind { DF_SNAPSHOT = 0, DF_LOG = 1 };

/* A growable output buffer (process heap). */
struct df_buf {
    char *p;
    size_t len, cap;
};

void df_buf_free(struct df_buf *b);
void df_put_header(struct df_buf *b, enum df_kind kind);
void df_put_inc(struct df_buf *b, uint32_t fid, uint64_t stamp, int folded, const char *addr);
void df_put_write(struct df_buf *b,
                  uint32_t fid,
                  uint64_t seq,
                  uint64_t lamport,
                  int tombstone,
                  const char *key,
                  size_t klen,
                  const char *value,
                  size_t vlen);
/* counts[fid] for fid < n; zero counts are left out. */
void df_put_clock(struct df_buf *b, uint64_t lamport, const uint64_t *counts, uint32_t n);
void df_put_end(struct df_buf *b, uint64_t pos);

/* One decoded frame.  Pointers point into the scanned bytes. */
struct df_item {
    char type;
    uint32_t fid;
    uint64_t stamp, seq, lamport, pos;
    int folded, tombstone;
    char addr[ADDR_MAX];
    const char *key, *value;
    size_t klen, vlen;
    uint32_t npairs;        /* 'C' */
    const unsigned char *pairs; /* df_clock_pair() */
    uint64_t offset;        /* of the frame in the file */
};

void df_clock_pair(const struct df_item *it, uint32_t i, uint32_t *fid, uint64_t *count);

enum df_status {
    DF_OK = 0,      /* every byte is a good frame */
    DF_TORN,        /* a good prefix, then a partial last frame (good_len says where) */
    DF_CORRUPT,     /* a bad frame with data after it, or a bad header */
};

struct df_result {
    enum df_status status;
    uint64_t good_len; /* bytes of the file that are header and whole good frames */
    uint64_t frames;
    uint64_t bad_offset; /* DF_TORN/DF_CORRUPT: where the bad frame starts */
    char why[128];
};

/* Scan a whole file's bytes: check the header (kind), then call each()
 * for every good frame in order (a non-zero return stops the scan with
 * DF_CORRUPT and that reason).  Never reads outside data[0..len). */
void df_scan(const char *data,
             size_t len,
             enum df_kind kind,
             int (*each)(const struct df_item *it, void *arg, char *why, size_t whylen),
             void *arg,
             struct df_result *res);

#endif
