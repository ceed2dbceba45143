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

/* Escape msg into out for a quoted logfmt/JSON string. */
static size_t quote(char *out, size_t cap, const char *msg)
{
    size_t n = 0;
    for (; *msg != '\0' && n + 7 < cap; ++msg) {
        unsigned char c = (unsigned char)*msg;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

static void vlog(int level, const char *fmt, va_list ap)
{
    char msg[1024], q[2100], line[2400], ts[40];
    struct timeval tv;
    struct tm tm;
    int n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));

    switch (logger.format) {
    case LOG_FMT_TEXT:
        n = snprintf(line, sizeof(line), "%s %s %s: %s\n", ts, logger.role, log_level_names[level], msg);
        break;
    case LOG_FMT_JSON:
        quote(q, sizeof(q), msg);
        n = snprintf(line,
                     sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}\n",
                     ts,
                     log_level_names[level],
                     logger.role,
                     (int)getpid(),
                     q);
        break;
    default:
        quote(q, sizeof(q), msg);
        n = snprintf(line,
                     sizeof(line),
                     "ts=%s level=%s role=%s pid=%d msg=\"%s\"\n",
                     ts,
                     log_level_names[level],
                     logger.role,
                     (int)getpid(),
                     q);
        break;
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1, line[n - 1] = '\n';
    while (write(logger.fd, line, (size_t)n) == -1 && errno == EINTR)
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
