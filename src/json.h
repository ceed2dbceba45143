/*
 * json.h - the JSON kvsd reads and writes on the client path.
 *
 * Client bodies are small and their shape is fixed, so instead of
 * building a jansson tree per request, a validating scanner walks the
 * body once, checks it is well-formed JSON (RFC 8259, UTF-8), and records
 * where the top-level members kvsd cares about are.  A stored value is
 * the member's JSON text with insignificant whitespace removed, so every
 * JSON value (big integers and exact decimal digits included) comes back
 * exactly as it was sent.
 */
#ifndef KVSD_JSON_H
#define KVSD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

struct json_span {
    const char *p; /* NULL: absent */
    size_t len;
};

struct json_body {
    int empty;     /* no body, or only whitespace */
    int valid;     /* well-formed JSON */
    int is_object; /* ... and the top level is an object */
    struct json_span value;
    int value_has_ws; /* value holds insignificant whitespace (compact it) */
    struct json_span metadata;       /* "causal-metadata" */
    struct json_span socket_address; /* "socket-address" */
};

#define JSON_MAX_DEPTH 256

/* Scan a request body.  Always fills *out; returns 0 if the body is empty
 * or a valid JSON document, -1 otherwise. */
int json_scan_body(const char *buf, size_t len, struct json_body *out);

int json_span_is_null(struct json_span s);

/* Copy span without insignificant whitespace into dst (capacity >= len);
 * returns the new length. */
size_t json_compact(struct json_span s, char *dst);

/* Decode a JSON string token (quotes included) into dst; returns the
 * length, or -1 if s is not a string, does not fit, or would decode to a
 * NUL or a lone surrogate (the result is used as a C string). */
long json_string_decode(struct json_span s, char *dst, size_t cap);

/* One component of client causal metadata: "IP:PORT/stamp": n. */
struct clock_ref {
    char addr[ADDR_MAX];
    uint64_t stamp;
    uint64_t n;
};

/* Parse causal-metadata (an object as issued by format_clock).  Returns
 * the number of components, or -1 if it is not such an object or has
 * more than max components. */
long json_parse_clock(struct json_span s, struct clock_ref *out, size_t max);

/* Append the JSON object {"IP:PORT/stamp": n, ...} for every component of
 * clock[] (indexed by incarnation id, ninc of them) that is non-zero.
 * dst needs json_clock_max_len(ninc) bytes; returns the length written. */
size_t json_format_clock(const struct clock_sh *clock, const uint64_t *c, uint32_t ninc, char *dst);
size_t json_clock_max_len(uint32_t ninc);

#endif
