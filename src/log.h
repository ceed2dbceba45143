/*
 * log.h - one line per event, to stderr or --log-file.
 *
 * Every line names the process role and slot ("master", "worker[2]",
 * "replicator") so interleaved output of all processes stays readable.
 * Formats: logfmt (default), text, json.  The file is reopened on SIGHUP.
 */
#ifndef KVSD_LOG_H
#define KVSD_LOG_H

#include <stdarg.h>

enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum { LOG_FMT_LOGFMT = 0, LOG_FMT_TEXT, LOG_FMT_JSON };

extern const char *const log_level_names[];
extern const char *const log_format_names[];

void log_init(int level, int format, const char *path);
/* Name this process's role for every following line, e.g. ("worker", 2). */
void log_set_role(const char *role, int slot);
int log_reopen(void);
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, __VA_ARGS__) : (void)0)

/* Log and exit(1): impossible states at startup.  fatal() appends errno. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
