/*
 * fuzz_wire.c - the /internal/ message decoder on arbitrary bytes: it must
 * reject or decode, and a decoded message must only point inside the
 * input and only name incarnations it declared.  A decoded message is
 * then used as kvsd uses it: localized into a fresh store and applied (a
 * batch) or installed (a snapshot), after which the store must pass
 * store_check_sh() and every value it holds must be JSON.  The store lives in an mmap'ed region ASan cannot
 * watch, so the check is what catches a write that overflows it (issue
 * 12: a record with 3,000 deps passed the decoder and corrupted it).
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "rcu.h"
#include "shm.h"
#include "store.h"
#include "table.h"
#include "wire.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_wire: %s\n", what);
    abort();
}

static void check_pointers(const struct wire_msg *msg, const char *p, size_t size)
{
    uint32_t i;
    size_t j;

    for (i = 0; i < msg->nrec; ++i) {
        const struct store_record *r = &msg->rec[i];
        if (r->origin >= msg->ninc || r->key < p || r->key + r->klen > p + size || r->value < p ||
            r->value + r->vlen > p + size || r->ndeps > CLOCK_MAX)
            fail("a record points outside the input or names an undeclared incarnation");
        for (j = 0; j < r->ndeps; ++j)
            if (r->deps[j].id >= msg->ninc)
                fail("a dep names an undeclared incarnation");
    }
    for (i = 0; i < msg->ncount; ++i)
        if (msg->count[i].inc >= msg->ninc)
            fail("a count names an undeclared incarnation");
}

/* Every value the message left in the store is JSON: GET splices values
 * into its answer as they are (issue 12, item 5). */
static void check_values(shm_t *shm, const struct wire_msg *msg)
{
    struct json_body body;
    uint32_t i;

    rcu_read_lock_sh(shm->rcu, 0);
    for (i = 0; i < msg->nrec; ++i) {
        const struct store_record *r = &msg->rec[i];
        const struct entry *e = table_lookup_sh(shm->table, r->key, r->klen, table_hash(r->key, r->klen));
        if (e != NULL && !(e->flags & ENTRY_TOMBSTONE) &&
            (json_scan_body(entry_value(e), e->vlen, &body) != 0 || !body.valid || body.empty))
            fail("a value in the store is not JSON");
    }
    rcu_read_unlock_sh(shm->rcu, 0);
}

/* Apply the message to a fresh store as http_internal.c (batch) and
 * replicator.c (snapshot) do. */
static void apply(struct wire_msg *msg)
{
    struct shm_params params = { 2u << 20, 256u << 10 };
    int32_t ids[CLOCK_MAX + 1];
    uint64_t clock[CLOCK_MAX];
    uint8_t *result;
    uint32_t i, ninc = 0;
    char buf[256];
    const char *why = NULL;
    shm_t *shm;

    if ((shm = shm_create(&params)) == NULL || store_setup(shm, "127.0.0.2:8090", 1) != 0)
        fail("setup");
    rcu_register_sh(shm->rcu, 0, 1);
    if (wire_localize(shm, msg, ids) == 0) {
        if (memcmp(msg->magic, "KVB1", 4) == 0) {
            result = malloc(msg->nrec + 1);
            store_apply_records_sh(shm, msg->rec, msg->nrec, result);
            free(result);
        } else if (memcmp(msg->magic, "KVS1", 4) == 0) {
            memset(clock, 0, sizeof(clock));
            for (i = 0; i < msg->ncount; ++i) {
                clock[msg->count[i].inc] = msg->count[i].n;
                if (msg->count[i].inc + 1 > ninc)
                    ninc = msg->count[i].inc + 1;
            }
            store_install_sh(shm, msg->rec, msg->nrec, clock, ninc);
        }
    }
    if (store_check_sh(shm, buf, sizeof(buf), &why) != 0)
        fail(why);
    check_values(shm, msg);
    shm_destroy(shm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct wire_msg msg;

    if (wire_decode(p, size, &msg) != 0)
        return 0;
    check_pointers(&msg, p, size);
    apply(&msg);
    wire_msg_free(&msg);
    return 0;
}
