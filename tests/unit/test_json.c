/*
 * test_json.c - unit tests for the client-body JSON scanner and the
 * causal-metadata codec (src/json.c): every literal, number and string
 * form RFC 8259 allows and the ones it forbids, UTF-8 validation, the
 * nesting bound, top-level member detection, whitespace compaction,
 * string decoding, clock parsing and formatting, and a seeded fuzz loop
 * of random and mutated bodies (run it under --enable-sanitizers: every
 * input sits in a heap block of exactly its length, so an over-read is
 * an ASan report).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "src/config.h"
#include "json.h"
#include "tap.h"

/* The scanned input lives in a heap block of exactly its length, so the
 * sanitizer build catches a read past the end.  Spans stay valid until
 * the next call. */
static char *held;

static char *hold(const char *s, size_t len)
{
    free(held);
    held = malloc(len ? len : 1);
    memcpy(held, s, len);
    return held;
}

static int scan_n(const char *s, size_t len, struct json_body *b)
{
    return json_scan_body(hold(s, len), len, b);
}

static int scan(const char *s, struct json_body *b)
{
    return scan_n(s, strlen(s), b);
}

static int is_valid(const char *s)
{
    struct json_body b;
    return scan(s, &b) == 0 && b.valid && !b.empty;
}

static int is_invalid_n(const char *s, size_t len)
{
    struct json_body b;
    return scan_n(s, len, &b) == -1 && !b.valid && !b.empty && !b.is_object && b.value.p == NULL;
}

static int is_invalid(const char *s)
{
    return is_invalid_n(s, strlen(s));
}

static int span_is(struct json_span s, const char *want)
{
    return s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static struct json_span span_of(const char *s)
{
    struct json_span sp = { hold(s, strlen(s)), strlen(s) };
    return sp;
}

static void test_empty(void)
{
    struct json_body b;

    ok(scan("", &b) == 0 && b.empty && !b.valid && !b.is_object && b.value.p == NULL, "empty body: empty, not invalid");
    ok(scan(" \t\r\n  \n", &b) == 0 && b.empty && !b.valid, "whitespace-only body counts as empty");
    ok(is_invalid(" \f{}") && is_invalid("\v{}"), "form feed and vertical tab are not JSON whitespace");
    ok(is_invalid_n("{}\0", 3), "a NUL byte after the document is trailing garbage");
}

static void test_documents(void)
{
    static const char *const good[] = {
        "{}",
        "[]",
        "{ }",
        "[ ]",
        " {} ",
        "\t\n\r{}\r\n\t",
        "{\"a\":1}",
        "{\"a\" : 1 , \"b\" : [ ] }",
        "[1,2,3]",
        "[[[]],[{}],{\"x\":[]}]",
        "{\"a\":{\"b\":[1,{\"c\":null}],\"d\":{}}}",
        "true",
        "false",
        "null",
        " null ",
        "[true,false,null]",
        "\"\"",
        "\"str\"",
        "{\"\":\"\"}",
        "{\"a\":1,\"a\":2}",
    };
    static const char *const bad[] = {
        "{",
        "[",
        "}",
        "]",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":1,}",
        "[1,]",
        "[,]",
        "{,}",
        "[1 2]",
        "{\"a\":1 \"b\":2}",
        "{\"a\":[}",
        "[{]}",
        "{1:2}",
        "{null:1}",
        "tru",
        "nul",
        "fals",
        "True",
        "NULL",
        "nan",
        "Infinity",
        "undefined",
        ",",
        ":",
        "[1],",
        "{}}",
        "[]]",
        "{}{}",
        "{} x",
        "1 2",
        "\"a\"\"b\"",
        "nullx",
        "truefalse",
        "[1]x",
        "{\"a\":1}/",
        "{\"a\":1}//c",
    };
    size_t i;
    int all;

    for (i = 0, all = 1; i < sizeof(good) / sizeof(good[0]); ++i)
        if (!is_valid(good[i]))
            all = 0, printf("# rejected: %s\n", good[i]);
    ok(all, "%zu well-formed documents accepted (objects, arrays, nesting, literals)", i);
    for (i = 0, all = 1; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (!is_invalid(bad[i]))
            all = 0, printf("# accepted: %s\n", bad[i]);
    ok(all, "%zu malformed documents and trailing garbage rejected", i);
}

static void test_numbers(void)
{
    static const char *const good[] = {
        "0",
        "-0",
        "1",
        "-1",
        "123456789012345678901234567890",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1.5E-3",
        "-0.0",
        "0.5",
        "-1.25e+10",
        "0e0",
        "[0,-0,1.0,2e2]",
        "{\"n\":-0.000001}",
    };
    static const char *const bad[] = {
        "01",  "-01",  "00",  "1.",  "-1.",   ".5",    "-.5",  "+1",   "-",          "--1",        "1e",  "1e+",
        "1E-", "1.e5", "0x1", "1_0", "1.5.5", "1e5e5", "[01]", "[1.]", "{\"a\":.5}", "{\"a\":+1}", "- 1", "1 .5",
    };
    size_t i;
    int all;

    for (i = 0, all = 1; i < sizeof(good) / sizeof(good[0]); ++i)
        if (!is_valid(good[i]))
            all = 0, printf("# rejected: %s\n", good[i]);
    ok(all, "numbers: -0, 1e5, 1.5E-3 and the other RFC 8259 forms accepted");
    for (i = 0, all = 1; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (!is_invalid(bad[i]))
            all = 0, printf("# accepted: %s\n", bad[i]);
    ok(all, "numbers: 01, 1., .5, +1 and the other malformed forms rejected");
}

static void test_strings(void)
{
    static const char *const good[] = {
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        "\"\\u0000\\u00e9\\u00E9\\uFFFF\\uabcd\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"", /* a lone surrogate escape is still a well-formed string */
        "\"caf\xc3\xa9\"",
        "\"\xe2\x82\xac\"",
        "\"\xf0\x9f\x98\x80\"",
        "\"\xef\xbf\xbf\"",
        "\"\xf4\x8f\xbf\xbf\"",
        "\"\x7f\"",
        "\"a b\"",
        "\"/\"",
        "\"'\"",
    };
    static const char *const bad[] = {
        "\"abc",
        "\"",
        "\"\\\"",
        "\"\\x\"",
        "\"\\'\"",
        "\"\\a\"",
        "\"\\0\"",
        "\"\\U00e9\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\u\"",
        "\"\\u00e\"",
        "\"\\",
        "\"a\x01"
        "b\"",
        "\"a\nb\"",
        "\"tab\there\"",
        "\"\x1f\"",
        "\"\r\"",
        /* invalid UTF-8 */
        "\"\xc0\xaf\"",             /* overlong '/' */
        "\"\xc1\xbf\"",             /* overlong */
        "\"\xe0\x80\xaf\"",         /* overlong, 3 bytes */
        "\"\xf0\x80\x80\xaf\"",     /* overlong, 4 bytes */
        "\"\xed\xa0\x80\"",         /* UTF-16 surrogate D800 */
        "\"\xed\xbf\xbf\"",         /* surrogate DFFF */
        "\"\xf4\x90\x80\x80\"",     /* above U+10FFFF */
        "\"\xf8\x88\x80\x80\x80\"", /* 5-byte form */
        "\"\xc3\"",                 /* truncated 2-byte */
        "\"\xe2\x82\"",             /* truncated 3-byte */
        "\"\xf0\x9f\x98\"",         /* truncated 4-byte */
        "\"\x80\"",                 /* lone continuation byte */
        "\"\xc3\x28\"",             /* bad continuation */
        "\"\xff\"",
        "\"\xfe\"",
    };
    size_t i;
    int all;

    for (i = 0, all = 1; i < sizeof(good) / sizeof(good[0]); ++i)
        if (!is_valid(good[i]))
            all = 0, printf("# rejected: %s\n", good[i]);
    ok(all, "strings: every escape, \\u escapes and 2/3/4-byte UTF-8 accepted");
    for (i = 0, all = 1; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (!is_invalid(bad[i]))
            all = 0, printf("# accepted: %s\n", bad[i]);
    ok(all, "strings: bad escapes, raw control chars, overlong/surrogate/truncated UTF-8 rejected");
    /* Truncated input inside a multibyte sequence, buffer ending right there. */
    ok(is_invalid_n("\"\xe2\x82\xac", 3) && is_invalid_n("\"\\u00", 5) && is_invalid_n("\"\\", 2),
       "a string cut off inside a sequence or an escape is rejected without reading past the end");
}

/* n nested arrays, or objects {"k": ... }, around 1 */
static char *nest(int n, int objects, size_t *len)
{
    char *s = malloc((size_t)n * 8 + 8), *p = s;
    int i;

    for (i = 0; i < n; ++i)
        p += sprintf(p, objects ? "{\"k\":" : "[");
    *p++ = '1';
    for (i = 0; i < n; ++i)
        *p++ = objects ? '}' : ']';
    *len = (size_t)(p - s);
    return s;
}

static void test_depth(void)
{
    struct json_body b;
    size_t len;
    char *s;

    s = nest(JSON_MAX_DEPTH, 0, &len);
    ok(scan_n(s, len, &b) == 0 && b.valid, "%d nested arrays (the limit) accepted", JSON_MAX_DEPTH);
    free(s);
    s = nest(JSON_MAX_DEPTH + 1, 0, &len);
    ok(scan_n(s, len, &b) == -1 && !b.valid, "%d nested arrays rejected", JSON_MAX_DEPTH + 1);
    free(s);
    s = nest(JSON_MAX_DEPTH, 1, &len);
    ok(scan_n(s, len, &b) == 0 && b.valid && b.is_object, "%d nested objects accepted", JSON_MAX_DEPTH);
    free(s);
    s = nest(JSON_MAX_DEPTH + 1, 1, &len);
    ok(scan_n(s, len, &b) == -1, "%d nested objects rejected", JSON_MAX_DEPTH + 1);
    free(s);
    /* Far past the limit: must fail fast, not overflow the stack. */
    len = 1000000;
    s = malloc(len);
    memset(s, '[', len);
    ok(scan_n(s, len, &b) == -1, "a million opening brackets rejected without exhausting the stack");
    free(s);
}

static void test_members(void)
{
    struct json_body b;

    ok(scan("{\"value\": 1, \"causal-metadata\": {\"x\": 1}, \"socket-address\": \"1.2.3.4:5\"}", &b) == 0 && b.valid &&
         b.is_object && span_is(b.value, "1") && span_is(b.metadata, "{\"x\": 1}") &&
         span_is(b.socket_address, "\"1.2.3.4:5\""),
       "top-level value, causal-metadata and socket-address located");
    ok(scan("{ \"value\"\t:\n [1, {\"a\": \"b\"}]  , \"x\": 2 }", &b) == 0 && span_is(b.value, "[1, {\"a\": \"b\"}]"),
       "value span is the member's text, whitespace around it excluded");
    ok(scan("{\"a\": {\"value\": 5, \"causal-metadata\": {}, \"socket-address\": \"1.1.1.1:1\"}}", &b) == 0 &&
         b.valid && b.is_object && b.value.p == NULL && b.metadata.p == NULL && b.socket_address.p == NULL,
       "members of a nested object are not top-level members");
    ok(scan("{\"a\": [{\"value\": 5}], \"b\": \"\\\"value\\\": 1\"}", &b) == 0 && b.value.p == NULL,
       "\"value\" inside an array or a string is not the value");
    ok(scan("[{\"value\": 1}]", &b) == 0 && b.valid && !b.is_object && b.value.p == NULL,
       "a top-level array is valid but not an object and has no value");
    ok(scan("\"value\"", &b) == 0 && b.valid && !b.is_object && b.value.p == NULL, "a top-level string is no object");
    ok(scan("{\"value\": 1, \"value\": [2, 3]}", &b) == 0 && span_is(b.value, "[2, 3]"),
       "duplicate members: last wins");
    ok(scan("{\"causal-metadata\": null, \"causal-metadata\": {\"a\": 1}}", &b) == 0 &&
         span_is(b.metadata, "{\"a\": 1}"),
       "duplicate causal-metadata: last wins");
    ok(scan("{\"Value\": 1, \"value \": 2, \"valu\": 3, \"causal_metadata\": 4}", &b) == 0 && b.value.p == NULL &&
         b.metadata.p == NULL,
       "member names match exactly (case, spaces, spelling)");
    ok(scan("{\"value\": null}", &b) == 0 && span_is(b.value, "null") && json_span_is_null(b.value),
       "value null is present and null");
    ok(scan("{}", &b) == 0 && b.is_object && json_span_is_null(b.value) && json_span_is_null(b.metadata),
       "an absent member counts as null");
    ok(scan("{\"value\": \"null\"}", &b) == 0 && !json_span_is_null(b.value), "the string \"null\" is not null");
    ok(scan("{\"value\": 1, \"x\": }", &b) == -1 && !b.valid && !b.is_object && b.value.p == NULL &&
         b.metadata.p == NULL,
       "an invalid document reports no members");
}

static int compacts_to(const char *in, const char *want)
{
    char out[512];
    size_t n = json_compact(span_of(in), out);
    if (n != strlen(want) || memcmp(out, want, n) != 0) {
        printf("# compact(%s) = %.*s\n", in, (int)n, out);
        return 0;
    }
    return 1;
}

static void test_compact(void)
{
    ok(compacts_to("{ \"a\" : [ 1 , 2 ] ,\n\t\"b c\" : \"x  y\\\"  z\" }", "{\"a\":[1,2],\"b c\":\"x  y\\\"  z\"}"),
       "whitespace outside strings removed, string content (spaces, escaped quotes) kept");
    ok(compacts_to("[ \"a\\\\\" , \" b \" ]", "[\"a\\\\\",\" b \"]"), "an escaped backslash before a closing quote");
    ok(compacts_to("\"  \\\\\\\"  \"", "\"  \\\\\\\"  \""), "a lone string is unchanged");
    ok(compacts_to("{\"a\":[1,2]}", "{\"a\":[1,2]}"), "compact text is a fixed point");
    ok(compacts_to(" 12345678901234567890.50e-7 ", "12345678901234567890.50e-7"), "number digits kept exactly");
    ok(compacts_to("{\"k\" : \"\xc3\xa9 \\u00e9\"}", "{\"k\":\"\xc3\xa9 \\u00e9\"}"),
       "UTF-8 and \\u escapes kept as sent");
}

static int decodes_to(const char *in, const char *want, size_t wantlen, size_t cap)
{
    char out[256];
    long n = json_string_decode(span_of(in), out, cap);
    if (n != (long)wantlen || memcmp(out, want, wantlen) != 0) {
        printf("# decode(%s) = %ld\n", in, n);
        return 0;
    }
    return 1;
}

static void test_string_decode(void)
{
    char out[8];
    struct json_span none = { NULL, 0 };

    ok(decodes_to("\"abc\"", "abc", 3, 64) && decodes_to("\"\"", "", 0, 64), "plain and empty strings");
    ok(decodes_to("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"", "a\"b\\c/d\be\ff\ng\rh\ti", 17, 64),
       "every two-character escape");
    ok(decodes_to("\"\\u00e9\"", "\xc3\xa9", 2, 64) && decodes_to("\"\\u00E9\"", "\xc3\xa9", 2, 64),
       "\\u00e9 becomes UTF-8 c3 a9");
    ok(decodes_to("\"\\u0041\\u20ac\\uffff\"", "A\xe2\x82\xac\xef\xbf\xbf", 7, 64), "1- and 3-byte \\u escapes");
    /* the result is used as a C string (an address): "127.0.0.1:8090\u0000"
     * must not decode to something that reads as 127.0.0.1:8090 */
    ok(json_string_decode(span_of("\"\\u0000\""), out, sizeof(out)) == -1 &&
         json_string_decode(span_of("\"1:80\\u0000x\""), out, sizeof(out)) == -1,
       "a \\u0000 escape gives -1");
    ok(json_string_decode(span_of("\"\\ud800\""), out, sizeof(out)) == -1 &&
         json_string_decode(span_of("\"\\udc00\""), out, sizeof(out)) == -1 &&
         json_string_decode(span_of("\"\\ud83d\\u0041\""), out, sizeof(out)) == -1,
       "a lone surrogate gives -1");
    ok(json_string_decode(span_of("\"a\tb\""), out, sizeof(out)) == -1 &&
         json_string_decode(span_of("\"\\x\""), out, sizeof(out)) == -1 &&
         json_string_decode(span_of("\"ab\\\""), out, sizeof(out)) == -1,
       "a raw control byte, an unknown escape, or an escaped closing quote gives -1");
    ok(decodes_to("\"caf\xc3\xa9\"", "caf\xc3\xa9", 5, 64), "raw UTF-8 passes through");
    /* RFC 8259 7: a character outside the BMP is escaped as a surrogate
     * pair; decoding must give its 4-byte UTF-8 form (not CESU-8). */
    ok(decodes_to("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4, 64), "a surrogate pair decodes to one 4-byte character");
    ok(json_string_decode(span_of("\"abcd\""), out, 3) == -1 && decodes_to("\"abcd\"", "abcd", 4, 4),
       "too small a buffer gives -1; exactly enough is fine");
    ok(json_string_decode(span_of("\"\\u00e9\""), out, 1) == -1, "a multibyte escape that does not fit gives -1");
    ok(json_string_decode(span_of("abc"), out, 8) == -1 && json_string_decode(span_of("12"), out, 8) == -1 &&
         json_string_decode(span_of("\"abc"), out, 8) == -1 && json_string_decode(span_of("\""), out, 8) == -1 &&
         json_string_decode(none, out, 8) == -1,
       "not a string token gives -1");
    /* Tokens that did not come from the scanner: "-1 if s is not a string". */
    {
        long r1 = json_string_decode(span_of("\"\\u12\""), out, sizeof(out));
        long r2 = json_string_decode(span_of("\"\\uZZZZ\""), out, sizeof(out));
        if (!ok(r1 == -1 && r2 == -1, "an invalid \\u escape gives -1"))
            printf("#   got %ld and %ld\n", r1, r2);
    }
}

static int clock1(const char *in, const char *addr, uint64_t stamp, uint64_t n)
{
    struct clock_ref ref[4];
    long r = json_parse_clock(span_of(in), ref, 4);
    if (r != 1 || strcmp(ref[0].addr, addr) != 0 || ref[0].stamp != stamp || ref[0].n != n) {
        printf("# parse_clock(%s) = %ld\n", in, r);
        return 0;
    }
    return 1;
}

static int clock_bad(const char *in)
{
    struct clock_ref ref[4];
    long r = json_parse_clock(span_of(in), ref, 4);
    if (r != -1)
        printf("# parse_clock(%s) = %ld, want -1\n", in, r);
    return r == -1;
}

static void test_parse_clock(void)
{
    static const char *const bad_keys[] = {
        "{\"127.0.0.1:8090\": 1}",
        "{\"127.0.0.256:8090/1\": 1}",
        "{\"localhost:8090/1\": 1}",
        "{\"127.0.0.1:0/1\": 1}",
        "{\"127.0.0.1:65536/1\": 1}",
        "{\"127.0.0.1/1\": 1}",
        "{\"127.0.0.1:8090/12a\": 1}",
        "{\"127.0.0.1:8090/\": 1}",
        "{\"/1\": 1}",
        "{\"\": 1}",
        "{\"127.0.0.1:8090/-1\": 1}",
        "{\"127.0.0.1:8090/+1\": 1}",
        "{\"127.0.0.1:8090/ 1\": 1}",
        "{\"127.0.0.1:8090\\/1\": 1}",
        "{\"127.0.0.1:8090/1\\u0030\": 1}",
        "{\"127.0.0.1:8090/99999999999999999999999\": 1}",
        "{\"[::1]:8090/1\": 1}",
        "{\"127.0.0.1:8090/1/2\": 1}",
        "{127.0.0.1:8090/1: 1}",
    };
    static const char *const bad_values[] = {
        "{\"127.0.0.1:8090/1\": -1}",
        "{\"127.0.0.1:8090/1\": 1.5}",
        "{\"127.0.0.1:8090/1\": 1e3}",
        "{\"127.0.0.1:8090/1\": \"4\"}",
        "{\"127.0.0.1:8090/1\": null}",
        "{\"127.0.0.1:8090/1\": true}",
        "{\"127.0.0.1:8090/1\": {}}",
        "{\"127.0.0.1:8090/1\": [1]}",
        "{\"127.0.0.1:8090/1\": }",
        "{\"127.0.0.1:8090/1\": 18446744073709551616}",
        "{\"127.0.0.1:8090/1\": 99999999999999999999999}",
        "{\"127.0.0.1:8090/1\": 0x10}",
    };
    static const char *const bad_shape[] = {
        "",
        "[]",
        "null",
        "\"x\"",
        "1",
        "{",
        "{\"127.0.0.1:8090/1\": 1",
        "{\"127.0.0.1:8090/1\": 1,}",
        "{\"127.0.0.1:8090/1\" 1}",
        "{\"127.0.0.1:8090/1\": 1 \"127.0.0.2:8090/1\": 1}",
        "{\"127.0.0.1:8090/1\": 1} x",
        "{\"127.0.0.1:8090/1\": 1}}",
        " {}",
    };
    struct clock_ref ref[4];
    struct json_span none = { NULL, 0 };
    size_t i;
    int all;

    ok(clock1("{\"127.0.0.1:8090/123\": 4}", "127.0.0.1:8090", 123, 4), "one component parsed");
    ok(clock1("{ \"10.0.0.1:1/0\" :\t1844674407370955161 }", "10.0.0.1:1", 0, 1844674407370955161ull),
       "whitespace, stamp 0, a 19-digit count");
    ok(clock1("{\"127.0.0.1:08090/7\": 0}", "127.0.0.1:8090", 7, 0), "the address comes back canonical");
    ok(json_parse_clock(span_of("{}"), ref, 4) == 0 && json_parse_clock(span_of("{ \n }"), ref, 0) == 0,
       "an empty clock has no components");
    ok(json_parse_clock(span_of("{\"127.0.0.1:8090/1\": 2, \"127.0.0.2:8090/3\": 0, \"127.0.0.3:9/4\": 5}"), ref, 4) ==
           3 &&
         strcmp(ref[1].addr, "127.0.0.2:8090") == 0 && ref[1].stamp == 3 && ref[1].n == 0 && ref[2].n == 5,
       "three components in order");
    for (i = 0, all = 1; i < sizeof(bad_keys) / sizeof(bad_keys[0]); ++i)
        all &= clock_bad(bad_keys[i]);
    ok(all, "bad keys rejected (no slash, bad IP, port 0, stamp not digits, escapes, IPv6)");
    for (i = 0, all = 1; i < sizeof(bad_values) / sizeof(bad_values[0]); ++i)
        all &= clock_bad(bad_values[i]);
    ok(all, "bad counts rejected (negative, float, string, literals, containers, too big for uint64)");
    for (i = 0, all = 1; i < sizeof(bad_shape) / sizeof(bad_shape[0]); ++i)
        all &= clock_bad(bad_shape[i]);
    ok(all && json_parse_clock(none, ref, 4) == -1, "not an object, or trailing text, rejected");
    ok(clock_bad("{} x") & clock_bad("{}}"), "trailing text after an empty clock rejected");
    ok(clock1("{\"127.0.0.1:8090/1\": 18446744073709551615}", "127.0.0.1:8090", 1, UINT64_MAX) &&
         clock1("{\"127.0.0.1:8090/18446744073709551615\": 1}", "127.0.0.1:8090", UINT64_MAX, 1),
       "UINT64_MAX is a valid count and stamp");
    ok(json_parse_clock(span_of("{\"1.1.1.1:1/1\": 1, \"1.1.1.2:1/1\": 1, \"1.1.1.3:1/1\": 1}"), ref, 2) == -1 &&
         json_parse_clock(span_of("{\"1.1.1.1:1/1\": 1, \"1.1.1.2:1/1\": 1}"), ref, 2) == 2,
       "more components than max gives -1; exactly max is fine");
}

static void test_format_clock(void)
{
    static struct clock_sh clock;
    uint64_t c[CLOCK_MAX] = { 0 };
    struct clock_ref ref[CLOCK_MAX];
    char *buf;
    size_t n;
    long r;
    int i, all;

    clock_init(&clock);
    clock_intern_sh(&clock, "127.0.0.1:8090", 100, 0);
    clock_intern_sh(&clock, "127.0.0.2:8090", 200, 0);
    clock_intern_sh(&clock, "255.255.255.255:65535", 18446744073709551ull, 0);
    buf = malloc(json_clock_max_len(CLOCK_MAX));
    n = json_format_clock(&clock, c, 3, buf);
    ok(n == 2 && memcmp(buf, "{}", 2) == 0, "an all-zero clock formats as {}");
    c[0] = 5, c[2] = 1844674407370955161ull;
    n = json_format_clock(&clock, c, 3, buf);
    buf[n] = '\0';
    ok(strcmp(buf, "{\"127.0.0.1:8090/100\": 5, \"255.255.255.255:65535/18446744073709551\": 1844674407370955161}") ==
         0,
       "zero components skipped, one space after : and ,");
    ok(n <= json_clock_max_len(3), "within json_clock_max_len");
    r = json_parse_clock((struct json_span){ buf, n }, ref, CLOCK_MAX);
    ok(r == 2 && strcmp(ref[0].addr, "127.0.0.1:8090") == 0 && ref[0].stamp == 100 && ref[0].n == 5 &&
         strcmp(ref[1].addr, "255.255.255.255:65535") == 0 && ref[1].stamp == 18446744073709551ull && ref[1].n == c[2],
       "the formatted clock parses back to the same components");
    /* A full table of incarnations, every component set. */
    for (i = 3; i < CLOCK_MAX; ++i) {
        char addr[ADDR_MAX];
        snprintf(addr, sizeof(addr), "10.0.%d.%d:%d", i / 256, i % 256, 1000 + i);
        clock_intern_sh(&clock, addr, (uint64_t)i * 1000003u, 0);
    }
    for (i = 0; i < CLOCK_MAX; ++i)
        c[i] = (uint64_t)i * 7 + 1;
    n = json_format_clock(&clock, c, CLOCK_MAX, buf);
    ok(n <= json_clock_max_len(CLOCK_MAX), "%d components fit json_clock_max_len", CLOCK_MAX);
    r = json_parse_clock((struct json_span){ buf, n }, ref, CLOCK_MAX);
    for (i = 0, all = r == CLOCK_MAX; all && i < CLOCK_MAX; ++i)
        all = clock_find(&clock, ref[i].addr, ref[i].stamp) == i && ref[i].n == c[i];
    ok(all, "and round-trip through json_parse_clock");
    ok(json_parse_clock((struct json_span){ buf, n }, ref, CLOCK_MAX - 1) == -1, "one over max is refused");
    free(buf);
}

/* --- fuzz ---------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char alphabet[] =
  "{}[]\":,  \t\n\\/-+.0123456789eEtrufalsn\"value\"causal-metadata\"uU\xc3\xa9\xed\xf0\x80";

/* Everything the fuzz loop checks of one input; 0 on a violated property. */
static int fuzz_one(const char *in, size_t len)
{
    struct json_body b;
    struct clock_ref ref[8];
    char *p = hold(in, len), out[1024], dec[1024];
    long n;
    int r = json_scan_body(p, len, &b);

    if (r != 0 && r != -1)
        return 0;
    if (r == 0 && !b.valid && !b.empty)
        return 0;
    if (b.valid && b.value.p != NULL) {
        struct json_body b2;
        size_t m;
        if (b.value.p < p || b.value.p + b.value.len > p + len)
            return 0;
        m = json_compact(b.value, out);
        /* compact text of a valid value is valid and a fixed point */
        if (m > b.value.len || json_scan_body(out, m, &b2) != 0 || !b2.valid ||
            json_compact((struct json_span){ out, m }, dec) != m || memcmp(out, dec, m) != 0)
            return 0;
        if (b.value.p[0] == '"')
            json_string_decode(b.value, dec, sizeof(dec));
    }
    if (b.valid && b.metadata.p != NULL) {
        if ((n = json_parse_clock(b.metadata, ref, 8)) < -1 || n > 8)
            return 0;
    }
    n = json_parse_clock((struct json_span){ p, len }, ref, 8);
    if (n < -1 || n > 8)
        return 0;
    while (n-- > 0) {
        char canon[ADDR_MAX];
        if (config_parse_addr(ref[n].addr, strlen(ref[n].addr), canon) != 0 || strcmp(canon, ref[n].addr) != 0)
            return 0;
    }
    return 1;
}

static void test_fuzz(void)
{
    static const char *const seeds[] = {
        "{\"value\": {\"a\": [1, 2.5e-3, \"x\\u00e9y\", true, null]}, \"causal-metadata\": "
        "{\"127.0.0.1:8090/123\": 4, \"127.0.0.2:8090/9\": 0}}",
        "{\"socket-address\": \"127.0.0.3:8090\"}",
        "{\"127.0.0.1:8090/1700000000000\": 18, \"10.1.2.3:1/2\": 3}",
        "[\"caf\xc3\xa9\", -0, {\"\": \"\\\"\\\\\"}, [[[]]]]",
        "{\"value\": \"\xf0\x9f\x98\x80 \\ud83d\\ude00\", \"causal-metadata\": null}",
    };
    char buf[512];
    size_t len, nseeds = sizeof(seeds) / sizeof(seeds[0]);
    int i, j, bad = 0, valid_seen = 0, clocks_seen = 0;

    /* random strings over bytes JSON cares about, and over all bytes */
    for (i = 0; i < 150000; ++i) {
        len = rnd() % 48;
        for (j = 0; j < (int)len; ++j)
            buf[j] = (i & 1) ? (char)rnd() : alphabet[rnd() % (sizeof(alphabet) - 1)];
        bad += !fuzz_one(buf, len);
    }
    /* mutations of valid bodies */
    for (i = 0; i < 150000; ++i) {
        const char *s = seeds[rnd() % nseeds];
        struct json_body b;
        int k, nmut = 1 + (int)(rnd() % 4);
        len = strlen(s);
        memcpy(buf, s, len);
        for (k = 0; k < nmut; ++k) {
            size_t at = len ? rnd() % len : 0;
            switch (rnd() % 5) {
            case 0: /* replace a byte */
                if (len)
                    buf[at] = (rnd() & 1) ? (char)rnd() : alphabet[rnd() % (sizeof(alphabet) - 1)];
                break;
            case 1: /* insert a byte */
                if (len < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
                    ++len;
                }
                break;
            case 2: /* delete a byte */
                if (len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    --len;
                }
                break;
            case 3: /* truncate */
                len = at;
                break;
            default: /* flip one bit */
                if (len)
                    buf[at] ^= (char)(1 << (rnd() % 8));
            }
        }
        bad += !fuzz_one(buf, len);
        if (json_scan_body(buf, len, &b) == 0 && b.valid)
            ++valid_seen;
        {
            struct clock_ref ref[8];
            if (json_parse_clock((struct json_span){ buf, len }, ref, 8) > 0)
                ++clocks_seen;
        }
    }
    ok(bad == 0, "300000 random and mutated bodies: no crash, results in range (%d violations)", bad);
    ok(valid_seen > 1000 && clocks_seen > 100,
       "the mutations still reach valid bodies (%d) and clocks (%d)",
       valid_seen,
       clocks_seen);
}

int main(void)
{
    plan(68);
    test_empty();
    test_documents();
    test_numbers();
    test_strings();
    test_depth();
    test_members();
    test_compact();
    test_string_decode();
    test_parse_clock();
    test_format_clock();
    test_fuzz();
    free(held);
    return done_testing();
}
