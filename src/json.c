/*
 * json.c - a validating single-pass JSON scanner for client bodies, the
 * causal-metadata codec, and whitespace compaction of stored values.
 *
 * The scanner never allocates and bounds nesting at JSON_MAX_DEPTH, so no
 * body, however hostile, can exhaust a worker's stack or heap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "json.h"

struct scanner {
    const char *p, *end;
    int depth;
    size_t ws; /* insignificant whitespace bytes skipped so far */
};

static void skip_ws(struct scanner *s)
{
    const char *start = s->p;

    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        ++s->p;
    s->ws += (size_t)(s->p - start);
}

static int hex4(const char *p)
{
    int i, v = 0;
    for (i = 0; i < 4; ++i) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Length of a valid UTF-8 sequence at p (<= end), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n, i;
    uint32_t cp;

    if (*p < 0x80)
        return 1;
    if ((*p & 0xe0) == 0xc0)
        n = 2, cp = *p & 0x1f;
    else if ((*p & 0xf0) == 0xe0)
        n = 3, cp = *p & 0x0f;
    else if ((*p & 0xf8) == 0xf0)
        n = 4, cp = *p & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (i = 1; i < n; ++i) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int scan_string(struct scanner *s)
{
    ++s->p; /* opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            ++s->p;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (s->end - s->p < 2)
                return -1;
            switch (s->p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                s->p += 2;
                break;
            case 'u':
                if (s->end - s->p < 6 || hex4(s->p + 2) < 0)
                    return -1;
                s->p += 6;
                break;
            default:
                return -1;
            }
            continue;
        }
        size_t n = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end);
        if (n == 0)
            return -1;
        s->p += n;
    }
    return -1;
}

static int scan_digits(struct scanner *s)
{
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        ++s->p;
    return s->p > start ? 0 : -1;
}

static int scan_number(struct scanner *s)
{
    if (*s->p == '-')
        ++s->p;
    if (s->p < s->end && *s->p == '0')
        ++s->p;
    else if (scan_digits(s) != 0)
        return -1;
    if (s->p < s->end && *s->p == '.') {
        ++s->p;
        if (scan_digits(s) != 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        ++s->p;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            ++s->p;
        if (scan_digits(s) != 0)
            return -1;
    }
    return 0;
}

static int scan_literal(struct scanner *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int scan_value(struct scanner *s, struct json_body *top);

/* Scan an object; at depth 1 (top level) record the members kvsd reads. */
static int scan_object(struct scanner *s, struct json_body *top)
{
    int record = top != NULL && s->depth == 1;

    ++s->p;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        ++s->p;
        return 0;
    }
    for (;;) {
        const char *name;
        size_t namelen;
        struct json_span *slot = NULL;

        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return -1;
        name = s->p;
        if (scan_string(s) != 0)
            return -1;
        namelen = (size_t)(s->p - name);
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        ++s->p;
        skip_ws(s);
        if (record) {
            if (namelen == 7 && memcmp(name, "\"value\"", 7) == 0)
                slot = &top->value;
            else if (namelen == 17 && memcmp(name, "\"causal-metadata\"", 17) == 0)
                slot = &top->metadata;
            else if (namelen == 16 && memcmp(name, "\"socket-address\"", 16) == 0)
                slot = &top->socket_address;
        }
        const char *vstart = s->p;
        size_t ws = s->ws;
        if (scan_value(s, NULL) != 0)
            return -1;
        if (slot != NULL) {
            slot->p = vstart;
            slot->len = (size_t)(s->p - vstart);
            if (slot == &top->value)
                top->value_has_ws = s->ws != ws;
        }
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            ++s->p;
            continue;
        }
        if (*s->p == '}') {
            ++s->p;
            return 0;
        }
        return -1;
    }
}

static int scan_array(struct scanner *s)
{
    ++s->p;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        ++s->p;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, NULL) != 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            ++s->p;
            continue;
        }
        if (*s->p == ']') {
            ++s->p;
            return 0;
        }
        return -1;
    }
}

static int scan_value(struct scanner *s, struct json_body *top)
{
    int r;

    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '{':
    case '[':
        if (++s->depth > JSON_MAX_DEPTH)
            return -1;
        r = *s->p == '{' ? scan_object(s, top) : scan_array(s);
        --s->depth;
        return r;
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return -1;
    }
}

int json_scan_body(const char *buf, size_t len, struct json_body *out)
{
    struct scanner s = { buf, buf + len, 0, 0 };

    memset(out, 0, sizeof(*out));
    skip_ws(&s);
    if (s.p == s.end) {
        out->empty = 1;
        return 0;
    }
    out->is_object = *s.p == '{';
    if (scan_value(&s, out) != 0)
        goto invalid;
    skip_ws(&s);
    if (s.p != s.end)
        goto invalid;
    out->valid = 1;
    return 0;
invalid:
    out->is_object = 0;
    memset(&out->value, 0, sizeof(out->value));
    memset(&out->metadata, 0, sizeof(out->metadata));
    memset(&out->socket_address, 0, sizeof(out->socket_address));
    return -1;
}

int json_span_is_null(struct json_span s)
{
    return s.p == NULL || (s.len == 4 && memcmp(s.p, "null", 4) == 0);
}

size_t json_compact(struct json_span s, char *dst)
{
    size_t i, n = 0;
    int in_string = 0;

    for (i = 0; i < s.len; ++i) {
        char c = s.p[i];
        if (in_string) {
            if (c == '\\') {
                dst[n++] = c;
                c = s.p[++i];
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else if (c == '"') {
            in_string = 1;
        }
        dst[n++] = c;
    }
    return n;
}

static size_t put_utf8(char *dst, uint32_t cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | cp >> 6);
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | cp >> 12);
        dst[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | cp >> 18);
    dst[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    dst[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* json_string_decode()'s output is used as a C string (an address), so a
 * character that would end it early or is not a character at all must
 * not decode: NUL, raw control bytes, and lone surrogates. */
long json_string_decode(struct json_span s, char *dst, size_t cap)
{
    size_t i, n = 0;

    if (s.p == NULL || s.len < 2 || s.p[0] != '"' || s.p[s.len - 1] != '"')
        return -1;
    for (i = 1; i + 1 < s.len; ++i) {
        char c = s.p[i], tmp[4];
        size_t k = 1;
        if ((unsigned char)c < 0x20)
            return -1;
        if (c == '\\') {
            if (++i + 1 >= s.len) /* the escape would eat the closing quote */
                return -1;
            c = s.p[i];
            switch (c) {
            case '"':
            case '\\':
            case '/':
                tmp[0] = c;
                break;
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'u': {
                int cp = i + 5 < s.len ? hex4(s.p + i + 1) : -1, lo;
                if (cp < 0)
                    return -1;
                i += 4;
                /* a surrogate pair is one character */
                if (cp >= 0xd800 && cp <= 0xdbff && i + 7 < s.len && s.p[i + 1] == '\\' && s.p[i + 2] == 'u' &&
                    (lo = hex4(s.p + i + 3)) >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
                if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
                    return -1;
                k = put_utf8(tmp, (uint32_t)cp);
                break;
            }
            default:
                return -1;
            }
        } else {
            tmp[0] = c;
        }
        if (n + k > cap)
            return -1;
        memcpy(dst + n, tmp, k);
        n += k;
    }
    return (long)n;
}

long json_parse_clock(struct json_span span, struct clock_ref *out, size_t max)
{
    struct scanner s = { span.p, span.p + span.len, 0, 0 };
    size_t count = 0;

    if (span.p == NULL || span.len == 0 || *s.p != '{')
        return -1;
    ++s.p;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        ++s.p;
        skip_ws(&s);
        return s.p == s.end ? 0 : -1;
    }
    for (;;) {
        const char *name, *slash, *q;
        struct clock_ref ref;
        uint64_t v;

        skip_ws(&s);
        if (s.p >= s.end || *s.p != '"')
            return -1;
        name = ++s.p;
        while (s.p < s.end && *s.p != '"' && *s.p != '\\')
            ++s.p;
        if (s.p >= s.end || *s.p != '"')
            return -1;
        for (slash = s.p; slash > name && slash[-1] != '/'; --slash)
            ;
        if (slash == name || slash == s.p || config_parse_addr(name, (size_t)(slash - 1 - name), ref.addr) != 0)
            return -1;
        for (ref.stamp = 0, q = slash; q < s.p; ++q) {
            if (*q < '0' || *q > '9' || ref.stamp > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
                return -1;
            ref.stamp = ref.stamp * 10 + (uint64_t)(*q - '0');
        }
        ++s.p;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        ++s.p;
        skip_ws(&s);
        if (s.p >= s.end || *s.p < '0' || *s.p > '9')
            return -1;
        for (v = 0; s.p < s.end && *s.p >= '0' && *s.p <= '9'; ++s.p) {
            if (v > (UINT64_MAX - (uint64_t)(*s.p - '0')) / 10)
                return -1;
            v = v * 10 + (uint64_t)(*s.p - '0');
        }
        if (s.p < s.end && (*s.p == '.' || *s.p == 'e' || *s.p == 'E'))
            return -1;
        ref.n = v;
        if (count == max)
            return -1;
        out[count++] = ref;
        skip_ws(&s);
        if (s.p >= s.end)
            return -1;
        if (*s.p == ',') {
            ++s.p;
            continue;
        }
        if (*s.p == '}') {
            ++s.p;
            skip_ws(&s);
            return s.p == s.end ? (long)count : -1;
        }
        return -1;
    }
}

size_t json_clock_max_len(uint32_t ninc)
{
    /* per component: quotes, addr, '/', stamp (20), ": ", count (20), ", " */
    return 2 + (size_t)ninc * (ADDR_MAX + 48);
}

/* Decimal digits of v at dst; returns how many. */
static size_t put_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (i = 0; i < n; ++i)
        dst[i] = tmp[n - 1 - i];
    return n;
}

size_t json_format_clock(const struct clock_sh *clock, const uint64_t *c, uint32_t ninc, char *dst)
{
    size_t n = 0, alen;
    uint32_t id;
    int first = 1;

    dst[n++] = '{';
    for (id = 0; id < ninc; ++id) {
        if (c[id] == 0)
            continue;
        if (!first)
            dst[n++] = ',', dst[n++] = ' ';
        first = 0;
        dst[n++] = '"';
        alen = strlen(clock->inc[id].addr);
        memcpy(dst + n, clock->inc[id].addr, alen);
        n += alen;
        dst[n++] = '/';
        n += put_u64(dst + n, clock->inc[id].stamp);
        dst[n++] = '"', dst[n++] = ':', dst[n++] = ' ';
        n += put_u64(dst + n, c[id]);
    }
    dst[n++] = '}';
    return n;
}
