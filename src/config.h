/*
 * config.h - kvsd's configuration: one table of options (config.c) drives
 * parsing from defaults, environment and flags (in that order of
 * precedence, lowest first), `--help`, and the man page's option list.
 */
#ifndef KVSD_CONFIG_H
#define KVSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clock.h"
#include "shm.h"
#include "view.h"

#define EX_CONFIG_ 78 /* sysexits.h EX_CONFIG */

/* --access-log: off, every request but /internal/ ones, or all */
enum { ACCESS_LOG_OFF = 0, ACCESS_LOG_ON, ACCESS_LOG_ALL };

/* Every worker, the replicator and the persister own one of the
 * SHM_MAX_PROCS process slots (RCU reader slot, stats slot, the master's
 * child table): workers 0..N-1, the replicator N, the persister N+1. */
#define WORKERS_MAX (SHM_MAX_PROCS - 2)

/* --fsync: Redis's appendfsync meanings. */
enum fsync_mode { FSYNC_ALWAYS = 0, FSYNC_EVERYSEC, FSYNC_NO };

struct config {
    char address[ADDR_MAX]; /* this replica, IP:PORT */
    char view[VIEW_MAX][ADDR_MAX];
    size_t nview;
    char listen[ADDR_MAX]; /* where to bind; default: address */
    int workers;
    size_t memory;
    size_t rlog_size;
    size_t max_body;
    int log_level;
    int log_format;
    char log_file[256];
    int access_log;
    unsigned peer_timeout_ms;
    unsigned heartbeat_ms;
    unsigned readmit_delay_ms;
    unsigned join_grace_ms;
    unsigned probe_interval_ms;
    unsigned causal_wait_ms;
    unsigned causal_wait_max; /* parked requests per worker */
    unsigned request_timeout_ms;
    unsigned max_connections;
    char cluster_key[128];
    double start_time; /* when the master started, Unix seconds (main.c) */
    char data_dir[256]; /* "" : memory only */
    int fsync_mode;     /* enum fsync_mode */
    unsigned compact_ratio; /* compact when the log exceeds this many times the snapshot */
    char check_data[256]; /* --check-data DIR: verify offline and exit */
    int check_only;    /* -n */
    int show_help;    /* --help */
    int show_version; /* --version */
};

/* One option: a long flag, its environment variable (or NULL), a metavar
 * (NULL for a switch), the default as text, and a one-line description. */
struct config_option {
    const char *flag;
    char short_flag;
    const char *env;
    const char *metavar;
    const char *def;
    const char *help;
    int (*parse)(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen);
    size_t offset;
};

extern const struct config_option config_options[];
extern const char *const config_fsync_names[];
extern const size_t config_noptions;

/* Fill cfg from defaults, then environ, then argv.  Returns 0, or -1 with a
 * one-line message in err. */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen);
void config_usage(FILE *fp);

/* What the configuration needs from this system, checked by -n as well as
 * at startup: the log file opens, and the store's mapping fits.  Returns 0,
 * or -1 with a one-line message (a configuration error, exit 78). */
int config_check_system(const struct config *cfg, char *err, size_t errlen);

/* File descriptors a worker needs besides its client connections:
 * listening socket, log, eventfd, libh2o's internals, peer connections. */
#define CONFIG_FD_RESERVE 64

/* Raise the soft RLIMIT_NOFILE toward the hard limit, up to what one
 * worker needs (--max-connections + CONFIG_FD_RESERVE; the limit is per
 * process, so every worker has its own).  Children inherit it.  Returns 1
 * if it fits, 0 if not; *limit is the soft limit now in force. */
int config_raise_nofile(const struct config *cfg, unsigned long long *limit);

/* 1 if /internal/ can be reached from outside this host without a key:
 * the listen address is not in 127.0.0.0/8 and no --cluster-key is set
 * (the master then logs a warning at startup). */
int config_internal_exposed(const struct config *cfg);

/* --workers when unset: one per CPU (cpus from sysconf, -1 if unknown),
 * within 1..WORKERS_MAX. */
int config_default_workers(long cpus);

/* The largest request body a worker accepts (libh2o's limit): room for a
 * peer's replication batch, which the sender sizes to fit (peer.c). */
static inline size_t peer_body_max(const struct config *cfg)
{
    return cfg->max_body * 2 + 65536;
}

/* Parse "IP:PORT" (dotted IPv4, port 1-65535) into a canonical string. */
int config_parse_addr(const char *s, size_t len, char out[ADDR_MAX]);

#endif
