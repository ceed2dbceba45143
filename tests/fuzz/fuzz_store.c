/*
 * fuzz_store.c - the shared-memory store under a random sequence of
 * client writes, deletes, reads, replicated records and tombstone reaps,
 * checked against a plain model (a small array of keys).  The input is a
 * program: each operation is a few bytes.  A tiny store makes "full" (507)
 * paths common.  After every program the table, arena, log and clock must
 * pass store_check_sh().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcu.h"
#include "shm.h"
#include "store.h"
#include "table.h"

#define NKEYS 16

struct model {
    int present; /* value held */
    size_t vlen;
    char value[300];
};

static shm_t *shm;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_store: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shm_params params = { 2 << 20, 256 << 10 };
    struct model model[NKEYS];
    uint64_t clock[CLOCK_MAX];
    char buf[256];
    const char *why;
    size_t i = 0;

    if (shm == NULL) {
        if ((shm = shm_create(&params)) == NULL || store_setup(shm, "127.0.0.2:8090", 1) != 0)
            fail("setup");
        rcu_register_sh(shm->rcu, 0, 1);
    }
    /* start every input from an empty model: delete what the store holds */
    for (int k = 0; k < NKEYS; ++k) {
        char key[8];
        struct store_write w = { key, (size_t)snprintf(key, sizeof(key), "k%d", k), NULL, 0, NULL, 0 };
        store_client_write_sh(shm, &w, clock);
        model[k].present = 0;
    }
    while (i + 2 <= size) {
        uint8_t op = data[i] % 4, k = data[i + 1] % NKEYS;
        char key[8];
        size_t klen = (size_t)snprintf(key, sizeof(key), "k%d", k);
        i += 2;
        if (op == 0 || op == 1) { /* put a value of data-driven length */
            size_t vlen = 3 + (i < size ? data[i++] : 0);
            char value[300];
            struct store_write w = { key, klen, value, vlen, NULL, 0 };
            if (op == 1)
                vlen = 3 + (size_t)(i < size ? data[i++] : 0) * 16 % 280, w.vlen = vlen;
            memset(value, 'a' + k, vlen);
            value[0] = '"', value[vlen - 1] = '"';
            switch (store_client_write_sh(shm, &w, clock)) {
            case STORE_CREATED:
                if (model[k].present)
                    fail("created an existing key");
                /* fall through */
            case STORE_REPLACED:
                model[k].present = 1;
                model[k].vlen = vlen;
                memcpy(model[k].value, value, vlen);
                break;
            case STORE_FULL:
                break;
            default:
                fail("unexpected put result");
            }
        } else if (op == 2) {
            struct store_write w = { key, klen, NULL, 0, NULL, 0 };
            enum store_result r = store_client_write_sh(shm, &w, clock);
            if (r == STORE_DELETED) {
                if (!model[k].present)
                    fail("deleted a missing key");
                model[k].present = 0;
            } else if (r == STORE_NOT_FOUND) {
                if (model[k].present)
                    fail("missed a present key");
            } else if (r != STORE_FULL) {
                fail("unexpected delete result");
            }
        } else {
            const struct entry *e;
            rcu_read_lock_sh(shm->rcu, 0);
            e = table_lookup_sh(shm->table, key, klen, table_hash(key, klen));
            int present = e != NULL && !(e->flags & ENTRY_TOMBSTONE);
            if (present != model[k].present ||
                (present && (e->vlen != model[k].vlen || memcmp(entry_value(e), model[k].value, e->vlen) != 0)))
                fail("read disagrees with the model");
            rcu_read_unlock_sh(shm->rcu, 0);
            /* everyone has everything: reap what can be reaped */
            uint64_t floor[CLOCK_MAX];
            store_reap_sh(shm, floor, clock_snapshot(shm->clock, floor));
        }
    }
    if (store_check_sh(shm, buf, sizeof(buf), &why) != 0)
        fail(why);
    return 0;
}
