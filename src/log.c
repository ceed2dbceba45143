/*
 * log.c - line-oriented logging shared by every process role.
 *
 * Each line is formatted into a stack buffer and written with a single
 * write(2), so lines from different processes appending to the same file
 * or pipe never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };
const char *const log_format_names[] = { "logfmt", "text", "json", NULL };

static struct {
    int level;
    int format;
    int fd;
    char path[256];
    char role[32];
} logger = { LOG_INFO, LOG_FMT_LOGFMT, 2, "", "kvsd" };

void log_init(int level, int format, const char *path)
{
    logger.level = level;
    logger.format = format;
    if (path != NULL && path[0] != '\0') {
        snprintf(logger.path, sizeof(logger.path), "%s", path);
        if (log_reopen() != 0)
            fatal("cannot open log file %s", path);
    }
}

void log_set_role(const char *role, int slot)
{
    if (slot >= 0)
        snprintf(logger.role, sizeof(logger.role), "%s[%d]", role, slot);
    else
        snprintf(logger.role, sizeof(logger.role), "%s", role);
}

int log_reopen(void)
{
    int fd;

    if (logger.path[0] == '\0')
        return 0;
    if ((fd = open(logger.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) == -1)
        return -1;
    if (logger.fd > 2)
        close(logger.fd);
    logger.fd = fd;
    return 0;
}

int log_enabled(int level)
{
    return level <= logger.level;
}

/* Escape msg into out for a quoted logfmt/JSON string.  Bytes outside
 * printable ASCII are escaped too, so a request path cannot break a line
 * or the JSON (UTF-8 is not validated). */
static size_t quote(char *out, size_t cap, const char *msg)
{
    size_t n = 0;
    for (; *msg != '\0' && n + 7 < cap; ++msg) {
        unsigned char c = (unsigned char)*msg;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

/* The fields an operator filters on.  A message may carry them inline as
 * "peer=IP:PORT evicted: ..." (as most do); logfmt and JSON lift them out
 * into fields of their own.  A field that opens the message is dropped
 * from the text; one inside a sentence leaves its value there ("installed
 * a snapshot from 10.0.0.2:8090").  Text format keeps the message as is. */
static const char *const field_names[] = { "peer", "client", "method", "path", "status", "bytes", "duration_ms", NULL };

#define FIELDS_MAX 8

struct field {
    const char *key;
    char val[520];
};

static int is_field(const char *p, size_t *keylen)
{
    int i;

    for (i = 0; field_names[i] != NULL; ++i) {
        size_t n = strlen(field_names[i]);
        if (strncmp(p, field_names[i], n) == 0 && p[n] == '=' && p[n + 1] != '\0' && p[n + 1] != ' ') {
            *keylen = n;
            return i;
        }
    }
    return -1;
}

/* Split msg into text and fields.  Fields before the second word of the
 * text ("peer=A evicted", "access client=A method=GET ...") are dropped
 * from the text; later ones leave their value in it. */
static int lift_fields(const char *msg, char *text, size_t cap, struct field *f)
{
    const char *p = msg;
    size_t n = 0;
    int nf = 0, words = 0;

    while (*p != '\0' && n + 1 < cap) {
        size_t keylen, len;
        int k;

        if ((p == msg || p[-1] == ' ') && nf < FIELDS_MAX && (k = is_field(p, &keylen)) >= 0) {
            const char *v = p + keylen + 1;
            len = strcspn(v, " ");
            p = v + len;
            /* "peer=A: ..." and "peer=A, ..." end at the punctuation */
            while (len > 0 && (v[len - 1] == ':' || v[len - 1] == ','))
                --len;
            f[nf].key = field_names[k];
            snprintf(f[nf].val, sizeof(f[nf].val), "%.*s", (int)len, v);
            ++nf;
            if (words >= 2) {
                if (n + len < cap)
                    memcpy(text + n, v, len), n += len;
            } else {
                while (*p == ' ' || *p == ':') /* the separator goes with it */
                    ++p;
            }
            continue;
        }
        if (*p != ' ' && (p == msg || p[-1] == ' '))
            ++words;
        text[n++] = *p++;
    }
    while (n > 0 && text[n - 1] == ' ')
        --n;
    text[n] = '\0';
    return nf;
}

static int numeric(const char *v)
{
    size_t i, dots = 0;

    if (*v == '\0' || strlen(v) > 20)
        return 0;
    for (i = 0; v[i] != '\0'; ++i)
        if (v[i] == '.' && i > 0 && v[i + 1] != '\0')
            ++dots;
        else if (v[i] < '0' || v[i] > '9')
            return 0;
    return dots <= 1 && !(v[0] == '0' && v[1] >= '0' && v[1] <= '9');
}

/* A logfmt value: bare if it needs no quotes. */
static int logfmt_value(char *out, size_t cap, const char *v)
{
    char q[sizeof(((struct field *)0)->val) * 6 + 1];
    const char *p;

    for (p = v; *p != '\0'; ++p)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            break;
    if (*p == '\0' && *v != '\0')
        return snprintf(out, cap, "%s", v);
    quote(q, sizeof(q), v);
    return snprintf(out, cap, "\"%s\"", q);
}

static size_t format_line(char *line, size_t cap, int level, const char *ts, const char *msg)
{
    struct field f[FIELDS_MAX];
    char text[1024], q[2100], v[3200];
    size_t n;
    int nf, i, r;

    if (logger.format == LOG_FMT_TEXT) {
        r = snprintf(line, cap, "%s %s %s: %s\n", ts, logger.role, log_level_names[level], msg);
        return r < 0 ? 0 : (size_t)r;
    }
    nf = lift_fields(msg, text, sizeof(text), f);
    quote(q, sizeof(q), text);
    if (logger.format == LOG_FMT_JSON)
        r = snprintf(line,
                     cap,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"%s\",\"pid\":%d,\"msg\":\"%s\"",
                     ts,
                     log_level_names[level],
                     logger.role,
                     (int)getpid(),
                     q);
    else
        r = snprintf(
          line, cap, "ts=%s level=%s role=%s pid=%d msg=\"%s\"", ts, log_level_names[level], logger.role, (int)getpid(), q);
    if (r < 0)
        return 0;
    n = (size_t)r;
    for (i = 0; i < nf && n < cap; ++i) {
        int numeric_json = logger.format == LOG_FMT_JSON && strcmp(f[i].key, "path") != 0 && numeric(f[i].val);
        if (logger.format == LOG_FMT_JSON && !numeric_json)
            quote(q, sizeof(q), f[i].val), snprintf(v, sizeof(v), "\"%s\"", q);
        else if (logger.format == LOG_FMT_JSON)
            snprintf(v, sizeof(v), "%s", f[i].val);
        else
            logfmt_value(v, sizeof(v), f[i].val);
        r = snprintf(line + n, cap - n, logger.format == LOG_FMT_JSON ? ",\"%s\":%s" : " %s=%s", f[i].key, v);
        if (r < 0)
            return 0;
        n += (size_t)r;
    }
    if (n < cap)
        n += (size_t)snprintf(line + n, cap - n, "%s\n", logger.format == LOG_FMT_JSON ? "}" : "");
    return n;
}

static void vlog(int level, const char *fmt, va_list ap)
{
    char msg[1024], line[4096], ts[40];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int t;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    t = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + t, sizeof(ts) - t, ".%03dZ", (int)(tv.tv_usec / 1000));

    n = format_line(line, sizeof(line), level, ts, msg);
    if (n == 0)
        return;
    if (n >= sizeof(line)) /* cut, but still one line */
        n = sizeof(line) - 1, line[n - 1] = '\n';
    while (write(logger.fd, line, n) == -1 && errno == EINTR)
        ;
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    int saved = errno;

    if (level > logger.level)
        return;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
    errno = saved;
}

void fatal(const char *fmt, ...)
{
    char buf[900];
    va_list ap;
    int e = errno;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_msg(LOG_ERROR, "%s: %s", buf, strerror(e));
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(1);
}
