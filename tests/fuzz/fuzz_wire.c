/*
 * fuzz_wire.c - the /internal/ message decoder on arbitrary bytes: it must
 * reject or decode, and a decoded message must only point inside the
 * input and only name incarnations it declared.
 */
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct wire_msg msg;
    uint32_t i;
    size_t j;

    if (wire_decode(p, size, &msg) != 0)
        return 0;
    for (i = 0; i < msg.nrec; ++i) {
        const struct store_record *r = &msg.rec[i];
        if (r->origin >= msg.ninc || r->key < p || r->key + r->klen > p + size || r->value < p ||
            r->value + r->vlen > p + size)
            abort();
        for (j = 0; j < r->ndeps; ++j)
            if (r->deps[j].id >= msg.ninc)
                abort();
    }
    for (i = 0; i < msg.ncount; ++i)
        if (msg.count[i].inc >= msg.ninc)
            abort();
    wire_msg_free(&msg);
    return 0;
}
