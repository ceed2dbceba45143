/*
 * util.h - small helpers shared by the process roles.
 */
#ifndef KVSD_UTIL_H
#define KVSD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "shm.h" /* now_ms(): CLOCK_MONOTONIC, milliseconds */

uint64_t wallclock_ms(void); /* CLOCK_REALTIME, milliseconds */

/* Percent-decode src into dst (capacity cap).  Invalid escapes are kept
 * literally.  Returns the decoded length, or cap + 1 if it does not fit. */
size_t percent_decode(const char *src, size_t len, char *dst, size_t cap);

void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);

/* In a child right after fork: TERM/INT/HUP go to handler (which only
 * sets flags), PIPE is ignored, the mask is cleared, and the master's
 * death sends us SIGTERM. */
void child_signals(void (*handler)(int));

/* Name the process (comm) for ps and tests, e.g. "kvsd-worker-2". */
void set_proc_name(const char *name);

#endif
