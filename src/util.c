/*
 * util.c - time, percent-decoding, allocation that cannot fail, process
 * names.  Out of memory in a process heap is fatal; out of shared memory
 * is an ordinary error handled by the store.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "log.h"
#include "util.h"

uint64_t wallclock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t percent_decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t i, n = 0;

    for (i = 0; i < len; ++i) {
        int c = (unsigned char)src[i], hi, lo;
        if (c == '%' && i + 2 < len && (hi = hexval(src[i + 1])) >= 0 && (lo = hexval(src[i + 2])) >= 0) {
            c = hi << 4 | lo;
            i += 2;
        }
        if (n == cap)
            return cap + 1;
        dst[n++] = (char)c;
    }
    return n;
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        fatal("malloc(%zu)", n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    if ((p = realloc(p, n ? n : 1)) == NULL)
        fatal("realloc(%zu)", n);
    return p;
}

void set_proc_name(const char *name)
{
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

void child_signals(void (*handler)(int))
{
    struct sigaction sa;
    sigset_t none;

    /* the master's death ends us too (it also checks getppid()) */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* the master forked us with every signal blocked */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}
