/*
 * test_log.c - unit tests for src/log.c (issue 14): the fields an operator
 * filters on (peer, client, method, path, status, bytes, duration_ms) are
 * fields of their own in logfmt and JSON, not words inside msg; text
 * format keeps the sentence; a hostile path cannot break a line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static char path[64];

/* Log one line in a format and return it without "ts=... pid=N " (or the
 * JSON equivalent) so it can be compared. */
static const char *one(int format, const char *fmt, const char *arg)
{
    static char buf[8192];
    char *p;
    FILE *fp;
    size_t n;

    unlink(path);
    log_init(LOG_INFO, format, path);
    log_msg(LOG_INFO, fmt, arg);
    fp = fopen(path, "r");
    n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    if (format == LOG_FMT_JSON && (p = strstr(buf, "\"msg\"")) != NULL)
        return p;
    if (format == LOG_FMT_LOGFMT && (p = strstr(buf, "msg=")) != NULL)
        return p;
    if (format == LOG_FMT_TEXT && (p = strstr(buf, "info: ")) != NULL)
        return p;
    return buf;
}

static void expect(int format, const char *fmt, const char *arg, const char *want)
{
    const char *got = one(format, fmt, arg);
    ok(strcmp(got, want) == 0, "%s: %.*s", log_format_names[format], (int)strlen(want) - 1, want);
    if (strcmp(got, want) != 0)
        printf("#   got:  %s", got);
}

int main(void)
{
    plan(11);
    snprintf(path, sizeof(path), "/tmp/test_log.%d", (int)getpid());
    log_set_role("test", -1);

    expect(LOG_FMT_LOGFMT,
           "peer=%s added to the view",
           "127.0.0.2:8090",
           "msg=\"added to the view\" peer=127.0.0.2:8090\n");
    expect(LOG_FMT_JSON,
           "peer=%s added to the view",
           "127.0.0.2:8090",
           "\"msg\":\"added to the view\",\"peer\":\"127.0.0.2:8090\"}\n");
    expect(LOG_FMT_TEXT, "peer=%s added to the view", "127.0.0.2:8090", "info: peer=127.0.0.2:8090 added to the view\n");
    expect(LOG_FMT_LOGFMT,
           "peer=%s: snapshot failed: timeout",
           "10.0.0.3:8090",
           "msg=\"snapshot failed: timeout\" peer=10.0.0.3:8090\n");
    expect(LOG_FMT_LOGFMT,
           "installed a snapshot of 3 entries from peer=%s",
           "10.0.0.3:8090",
           "msg=\"installed a snapshot of 3 entries from 10.0.0.3:8090\" peer=10.0.0.3:8090\n");
    expect(LOG_FMT_LOGFMT,
           "access client=127.0.0.100 method=GET path=%s status=200 bytes=57 duration_ms=0.125",
           "/kvs/a",
           "msg=\"access\" client=127.0.0.100 method=GET path=/kvs/a status=200 bytes=57 duration_ms=0.125\n");
    expect(LOG_FMT_JSON,
           "access client=127.0.0.100 method=GET path=%s status=200 bytes=57 duration_ms=0.125",
           "/kvs/007",
           "\"msg\":\"access\",\"client\":\"127.0.0.100\",\"method\":\"GET\",\"path\":\"/kvs/007\",\"status\":200,"
           "\"bytes\":57,\"duration_ms\":0.125}\n");
    /* a path with quotes, '=' and bytes outside ASCII stays one line, and
     * valid logfmt/JSON */
    expect(LOG_FMT_LOGFMT,
           "access client=127.0.0.100 method=GET path=%s status=404",
           "/a\"b=c\x01\xff",
           "msg=\"access\" client=127.0.0.100 method=GET path=\"/a\\\"b=c\\u0001\\u00ff\" status=404\n");
    expect(LOG_FMT_JSON,
           "access client=1.2.3.4 method=GET path=%s status=404",
           "/a\"b\\",
           "\"msg\":\"access\",\"client\":\"1.2.3.4\",\"method\":\"GET\",\"path\":\"/a\\\"b\\\\\",\"status\":404}\n");
    expect(LOG_FMT_LOGFMT, "no fields here: %s", "x=1", "msg=\"no fields here: x=1\"\n");
    expect(LOG_FMT_JSON, "status=%s", "0123", "\"msg\":\"\",\"status\":\"0123\"}\n");
    unlink(path);
    return done_testing();
}
