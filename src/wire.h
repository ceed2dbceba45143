/*
 * wire.h - the binary formats replicas exchange on /internal/.
 *
 * Three messages, all little-endian, each opening with a 4-byte magic and
 * the sender's incarnation, then a table of the incarnations the message
 * names (records and clocks refer to them by index, so an address appears
 * once per message, not once per record):
 *
 *   KVB1 batch     (POST /internal/replicate)  records a peer may lack
 *   KVC1 clock     (answer to batch and ping)  the responder's applied clock
 *   KVS1 snapshot  (GET /internal/snapshot)    every entry plus the clock
 *
 * Decoders check every length against the buffer, every count against
 * its bound and every index against the message's incarnation table, and
 * reject anything malformed with -1 (the rules are listed in wire.c);
 * they never trust a count from the wire.  /internal/ needs no key by
 * default, so a decoded message is the only gate between anyone who can
 * reach the port and the shared store.
 */
#ifndef KVSD_WIRE_H
#define KVSD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "store.h"

#define WIRE_SNAPSHOT_NEEDED 0x01 /* batch flag: your clock is behind my log */
#define WIRE_READY 0x02           /* clock flag: responder is ready */

#define WIRE_REC_TOMBSTONE 0x01 /* record flag: a delete */
/* Count flags a decoder accepts: the INC_* bits of the sender's table
 * (INC_RETIRED, INC_FINAL, and 0x04 for incarnations folded away). */
#define WIRE_COUNT_FLAGS 0x07u
/* Sequence numbers, Lamport times and counts from the wire stay below
 * this, so adding one to any of them never wraps (a peer cannot push our
 * Lamport clock to UINT64_MAX and make every later write lose). */
#define WIRE_NUM_MAX (UINT64_C(1) << 62)

struct buf {
    char *p;
    size_t len, cap;
};
void buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_free(struct buf *b);

struct wire_inc {
    char addr[ADDR_MAX];
    uint64_t stamp;
};

/* Encoder state: maps local incarnation ids to message indexes. */
struct wire_enc {
    struct buf recs;   /* records or entries, encoded as they come */
    struct buf counts; /* clock components */
    uint32_t nrec, ncount;
    int32_t map[CLOCK_MAX];
    struct wire_inc inc[CLOCK_MAX];
    uint32_t ninc;
};
void wire_enc_free(struct wire_enc *e);

void wire_enc_init(struct wire_enc *e);
/* Index of local incarnation id in the message, adding it if new. */
uint32_t wire_enc_inc(struct wire_enc *e, const struct clock_sh *clock, uint32_t id);
/* Append one record (batch) or entry (snapshot); deps may be NULL. */
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
                     size_t ndeps);
/* Append one clock component. */
void wire_enc_count(struct wire_enc *e,
                    const struct clock_sh *clock,
                    uint32_t id,
                    uint64_t n,
                    uint32_t flags,
                    uint64_t final_seq);
/* Bytes wire_enc_finish() will append. */
size_t wire_enc_size(const struct wire_enc *e, const struct wire_inc *from);
/* Assemble the message into out (freed by the caller with buf_free). */
void wire_enc_finish(struct wire_enc *e,
                     const char magic[4],
                     const struct wire_inc *from,
                     uint32_t flags,
                     struct buf *out);

/* A decoded message.  Pointers point into the decoded buffer or into
 * arrays owned by the message (wire_msg_free). */
struct wire_count {
    uint32_t inc; /* index into msg->inc */
    uint64_t n;
    uint32_t flags; /* INC_* of the sender's table (snapshot) */
    uint64_t final_seq;
};

struct wire_msg {
    char magic[4];
    struct wire_inc from;
    uint32_t flags;
    uint32_t ninc;
    struct wire_inc *inc;
    /* KVB1 / KVS1: records, origin and dep ids are indexes into inc[] */
    uint32_t nrec;
    struct store_record *rec;
    struct vc_pair *deps; /* all records' deps, back to back */
    /* KVC1 / KVS1: counts */
    uint32_t ncount;
    struct wire_count *count;
};

int wire_decode(const char *p, size_t len, struct wire_msg *msg);

/* A count naming a life the sender folded that has no row here. */
#define WIRE_NO_INC UINT32_MAX

/* Intern the message's incarnations (and its sender) locally and rewrite
 * every incarnation index in records, deps and counts to a local id (a
 * life folded here maps to its address's floor row).  A clock report's
 * count for a life the sender folded and we do not know becomes
 * WIRE_NO_INC.  ids needs msg->ninc + 1 slots; ids[msg->ninc] is the
 * sender's id.  Returns 0, -1 if the table is full, -2 (nothing done) if
 * the message names a life of our own address newer than ours. */
int wire_localize(shm_t *shm, struct wire_msg *msg, int32_t *ids);
void wire_msg_free(struct wire_msg *msg);

#endif
