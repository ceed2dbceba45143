/*
 * config.c - the option table and its parser.
 *
 * Every option kvsd understands is one row of config_options[]: the same
 * row drives parsing (defaults, then the environment, then flags, so a
 * flag always wins), `kvsd --help`, and the OPTIONS section of kvsd(8),
 * which a test compares against --help.  A bad value is a one-line error
 * and exit status 78 (EX_CONFIG), never a crash.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define FIELD(f) offsetof(struct config, f)

/* Where the value being parsed came from, as the user wrote it: "--memory"
 * for a flag, "KVSD_MEMORY" for the environment.  Error messages name it,
 * so an operator who set an environment variable is not told about a flag
 * they never typed (and the reverse).  config_load() sets it. */
static char source[48];

static void set_source(const struct config_option *opt, int from_env)
{
    if (from_env)
        snprintf(source, sizeof(source), "%s", opt->env);
    else
        snprintf(source, sizeof(source), "--%s", opt->flag);
}

int config_parse_addr(const char *s, size_t len, char out[ADDR_MAX])
{
    char buf[ADDR_MAX + 8], *colon, *end;
    struct in_addr ia;
    unsigned long port;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if ((colon = strrchr(buf, ':')) == NULL)
        return -1;
    *colon = '\0';
    if (inet_pton(AF_INET, buf, &ia) != 1)
        return -1;
    if (!isdigit((unsigned char)colon[1]))
        return -1;
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
        return -1;
    snprintf(out, ADDR_MAX, "%s:%lu", inet_ntoa(ia), port);
    return 0;
}

static int parse_addr(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    char *dst = (char *)cfg + opt->offset;

    if (*val == '\0') {
        dst[0] = '\0'; /* unset; --listen then defaults to --address */
        return 0;
    }
    if (config_parse_addr(val, strlen(val), dst) != 0) {
        snprintf(err, errlen, "invalid %s '%s': expected IP:PORT", source, val);
        return -1;
    }
    /* --listen may be the wildcard; the address is what peers and
     * clients connect to, and nobody can connect to 0.0.0.0 */
    if (opt->offset == FIELD(address) && strncmp(dst, "0.0.0.0:", 8) == 0) {
        snprintf(err,
                 errlen,
                 "invalid %s '%s': peers cannot reach 0.0.0.0; give this host's IP (--listen 0.0.0.0:PORT binds "
                 "every interface)",
                 source,
                 val);
        return -1;
    }
    return 0;
}

static int parse_view(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    const char *p = val;

    cfg->nview = 0;
    if (*val == '\0')
        return 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char addr[ADDR_MAX];
        size_t i;

        while (len > 0 && isspace((unsigned char)*p))
            ++p, --len;
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            --len;
        if (config_parse_addr(p, len, addr) != 0) {
            snprintf(err, errlen, "invalid %s entry '%.*s': expected IP:PORT", source, (int)len, p);
            return -1;
        }
        if (strncmp(addr, "0.0.0.0:", 8) == 0) {
            snprintf(err, errlen, "invalid %s entry '%.*s': peers cannot reach 0.0.0.0", source, (int)len, p);
            return -1;
        }
        for (i = 0; i != cfg->nview; ++i)
            if (strcmp(cfg->view[i], addr) == 0)
                break;
        if (i == cfg->nview) {
            if (cfg->nview == VIEW_MAX) {
                snprintf(err, errlen, "%s names more than %d replicas", source, VIEW_MAX);
                return -1;
            }
            strcpy(cfg->view[cfg->nview++], addr);
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

/* Parses an unsigned number with an optional K/M/G/T suffix (powers of two)
 * or, for durations, "ms"/"s". */
static int parse_number(const char *val, int duration, unsigned long long *out)
{
    char *end;
    unsigned long long n;

    if (!isdigit((unsigned char)*val))
        return -1;
    errno = 0;
    n = strtoull(val, &end, 10);
    if (errno != 0)
        return -1;
    if (duration) {
        if (*end == '\0' || strcmp(end, "ms") == 0)
            ;
        else if (strcmp(end, "s") == 0 && n <= ULLONG_MAX / 1000)
            n *= 1000;
        else
            return -1;
    } else {
        unsigned shift = 0;
        switch (toupper((unsigned char)*end)) {
        case '\0':
            break;
        case 'K':
            shift = 10;
            break;
        case 'M':
            shift = 20;
            break;
        case 'G':
            shift = 30;
            break;
        case 'T':
            shift = 40;
            break;
        default:
            return -1;
        }
        if (*end != '\0' && end[1] != '\0' && !(toupper((unsigned char)end[1]) == 'B' && end[2] == '\0') &&
            !(toupper((unsigned char)end[1]) == 'I' && toupper((unsigned char)end[2]) == 'B' && end[3] == '\0'))
            return -1;
        if (shift && n > (ULLONG_MAX >> shift))
            return -1;
        n <<= shift;
    }
    *out = n;
    return 0;
}

struct range {
    const char *flag;
    unsigned long long min, max;
};

static const struct range ranges[] = {
    { "workers", 1, WORKERS_MAX },           { "memory", 8 << 20, 1ULL << 40 },   { "log-size", 0, 1ULL << 38 },
    { "max-body", 256, 1ULL << 30 }, { "peer-timeout", 10, 600000 },      { "heartbeat", 10, 600000 },
    { "readmit-delay", 0, 3600000 }, { "join-grace", 0, 3600000 },        { "probe-interval", 10, 600000 },
    { "causal-wait", 0, 10000 },     { "request-timeout", 100, 3600000 }, { "max-connections", 1, 1000000 },
    { "causal-wait-max", 1, 65536 }, { "compact-ratio", 2, 1000 },
};

/* n the way a user writes it: sizes with the largest K/M/G/T suffix that
 * divides them (8M, 1T), durations in s or ms (10ms, 600s), counts plain. */
static const char *human(unsigned long long n, int kind, char *buf, size_t cap)
{
    static const char suffix[] = "KMGT";
    int i;

    if (kind == 1) {
        if (n != 0 && n % 1000 == 0)
            snprintf(buf, cap, "%llus", n / 1000);
        else
            snprintf(buf, cap, "%llums", n);
        return buf;
    }
    for (i = 3; kind == 2 && i >= 0 && n != 0; --i)
        if (n % (1ULL << (10 * (i + 1))) == 0) {
            snprintf(buf, cap, "%llu%c", n >> (10 * (i + 1)), suffix[i]);
            return buf;
        }
    snprintf(buf, cap, "%llu", n);
    return buf;
}

static int parse_unsigned(struct config *cfg,
                          const struct config_option *opt,
                          const char *val,
                          char *err,
                          size_t errlen,
                          int duration)
{
    unsigned long long n, min = 0, max = ULLONG_MAX;
    size_t i;
    void *dst = (char *)cfg + opt->offset;
    int count = opt->offset == FIELD(workers) || opt->offset == FIELD(max_connections);
    int kind = duration ? 1 : count ? 0 : 2;
    char lo[32], hi[32];

    for (i = 0; i != sizeof(ranges) / sizeof(ranges[0]); ++i)
        if (strcmp(ranges[i].flag, opt->flag) == 0)
            min = ranges[i].min, max = ranges[i].max;
    if (parse_number(val, duration, &n) != 0 || n < min || n > max) {
        snprintf(err,
                 errlen,
                 "invalid %s '%s': expected %s from %s to %s",
                 source,
                 val,
                 duration ? "a duration (ms, or Ns)"
                 : count  ? "a number"
                          : "a size (K/M/G/T suffix allowed)",
                 human(min, kind, lo, sizeof(lo)),
                 human(max, kind, hi, sizeof(hi)));
        return -1;
    }
    if (opt->offset == FIELD(workers))
        *(int *)dst = (int)n;
    else if (duration || opt->offset == FIELD(max_connections) || opt->offset == FIELD(causal_wait_max) ||
             opt->offset == FIELD(compact_ratio))
        *(unsigned *)dst = (unsigned)n;
    else
        *(size_t *)dst = (size_t)n;
    return 0;
}

int config_default_workers(long cpus)
{
    /* a bigger host gets the most workers the process slots allow */
    return cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (int)cpus;
}

static int parse_size(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    if (opt->offset == FIELD(workers) && *val == '\0') {
        cfg->workers = config_default_workers(sysconf(_SC_NPROCESSORS_ONLN));
        return 0;
    }
    return parse_unsigned(cfg, opt, val, err, errlen, 0);
}

static int parse_ms(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    return parse_unsigned(cfg, opt, val, err, errlen, 1);
}

static int parse_enum(const char *val, const char *const *names, int *out)
{
    int i;
    for (i = 0; names[i] != NULL; ++i)
        if (strcmp(val, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

static int parse_log_level(struct config *cfg,
                           const struct config_option *opt,
                           const char *val,
                           char *err,
                           size_t errlen)
{
    if (parse_enum(val, log_level_names, &cfg->log_level) != 0) {
        snprintf(err, errlen, "invalid %s '%s': expected error, warn, info or debug", source, val);
        return -1;
    }
    return 0;
}

static int parse_log_format(struct config *cfg,
                            const struct config_option *opt,
                            const char *val,
                            char *err,
                            size_t errlen)
{
    if (parse_enum(val, log_format_names, &cfg->log_format) != 0) {
        snprintf(err, errlen, "invalid %s '%s': expected logfmt, text or json", source, val);
        return -1;
    }
    return 0;
}

static int parse_string(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    char *dst = (char *)cfg + opt->offset;
    size_t cap = opt->offset == FIELD(log_file)     ? sizeof(cfg->log_file)
                 : opt->offset == FIELD(data_dir)   ? sizeof(cfg->data_dir)
                 : opt->offset == FIELD(check_data) ? sizeof(cfg->check_data)
                                                    : sizeof(cfg->cluster_key);

    if (strlen(val) >= cap) {
        snprintf(err, errlen, "%s is longer than %zu bytes", source, cap - 1);
        return -1;
    }
    strcpy(dst, val);
    return 0;
}

const char *const config_fsync_names[] = { "always", "everysec", "no", NULL };

static int parse_fsync(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    if (parse_enum(val, config_fsync_names, &cfg->fsync_mode) != 0) {
        snprintf(err, errlen, "invalid --fsync '%s': expected always, everysec or no", val);
        return -1;
    }
    return 0;
}

/* A switch: on as a flag; from the environment, 1/yes/true/on or
 * 0/no/false/off (config_load passes NULL for the flag form). */
static int parse_switch(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    static const char *const on[] = { "1", "yes", "true", "on", NULL }, *const off[] = { "0",   "no", "false",
                                                                                         "off", "",   NULL };
    int *dst = (int *)((char *)cfg + opt->offset), i;

    if (val == NULL) {
        *dst = 1;
        return 0;
    }
    if (opt->offset == FIELD(access_log) && strcmp(val, "all") == 0)
        *dst = ACCESS_LOG_ALL;
    else if (parse_enum(val, on, &i) == 0)
        *dst = 1;
    else if (parse_enum(val, off, &i) == 0)
        *dst = 0;
    else {
        snprintf(err, errlen, "invalid %s '%s': expected 1 or 0 (or yes/no, true/false, on/off)", source, val);
        return -1;
    }
    return 0;
}

const struct config_option config_options[] = {
    { "address",
      'a',
      "SOCKET_ADDRESS",
      "IP:PORT",
      "",
      "this replica's address; peers and clients reach it there",
      parse_addr,
      FIELD(address) },
    { "view",
      'v',
      "VIEW",
      "IP:PORT,...",
      "",
      "every replica of the cluster, this one included",
      parse_view,
      FIELD(view) },
    { "listen",
      'l',
      "KVSD_LISTEN",
      "IP:PORT",
      "",
      "where to listen (default: --address; 0.0.0.0:PORT in containers)",
      parse_addr,
      FIELD(listen) },
    { "workers",
      'w',
      "KVSD_WORKERS",
      "N",
      "",
      "worker processes (default: number of CPUs)",
      parse_size,
      FIELD(workers) },
    { "memory", 'm', "KVSD_MEMORY", "BYTES", "256M", "size of the shared-memory store", parse_size, FIELD(memory) },
    { "log-size",
      0,
      "KVSD_LOG_SIZE",
      "BYTES",
      "0",
      "replication log ring (0: an eighth of --memory)",
      parse_size,
      FIELD(rlog_size) },
    { "max-body", 0, "KVSD_MAX_BODY", "BYTES", "1M", "largest request body accepted", parse_size, FIELD(max_body) },
    { "max-connections",
      0,
      "KVSD_MAX_CONNECTIONS",
      "N",
      "4096",
      "open client connections per worker",
      parse_size,
      FIELD(max_connections) },
    { "request-timeout",
      0,
      "KVSD_REQUEST_TIMEOUT",
      "MS",
      "10000",
      "time a client has to send a whole request",
      parse_ms,
      FIELD(request_timeout_ms) },
    { "peer-timeout",
      0,
      "KVSD_PEER_TIMEOUT",
      "MS",
      "500",
      "a peer request unanswered this long evicts the peer",
      parse_ms,
      FIELD(peer_timeout_ms) },
    { "heartbeat",
      0,
      "KVSD_HEARTBEAT",
      "MS",
      "200",
      "idle time after which a peer gets a heartbeat",
      parse_ms,
      FIELD(heartbeat_ms) },
    { "probe-interval",
      0,
      "KVSD_PROBE_INTERVAL",
      "MS",
      "500",
      "how often an evicted peer is probed",
      parse_ms,
      FIELD(probe_interval_ms) },
    { "readmit-delay",
      0,
      "KVSD_READMIT_DELAY",
      "MS",
      "3000",
      "an evicted peer must answer probes this long before it is re-admitted",
      parse_ms,
      FIELD(readmit_delay_ms) },
    { "join-grace",
      0,
      "KVSD_JOIN_GRACE",
      "MS",
      "10000",
      "a peer that never answered is not evicted before this",
      parse_ms,
      FIELD(join_grace_ms) },
    { "causal-wait",
      0,
      "KVSD_CAUSAL_WAIT",
      "MS",
      "0",
      "wait this long for a request's causal dependencies before 503 (0: at once)",
      parse_ms,
      FIELD(causal_wait_ms) },
    { "causal-wait-max",
      0,
      "KVSD_CAUSAL_WAIT_MAX",
      "N",
      "1024",
      "requests waiting (--causal-wait) per worker; more get 503 at once",
      parse_size,
      FIELD(causal_wait_max) },
    { "cluster-key",
      0,
      "KVSD_CLUSTER_KEY",
      "KEY",
      "",
      "shared secret required on /internal/ requests",
      parse_string,
      FIELD(cluster_key) },
    /* durability (issue 15): see persist.c and doc/design.md */
    { "data-dir",
      0,
      "KVSD_DATA_DIR",
      "DIR",
      "",
      "keep a log and snapshots of the store in DIR (default: memory only)",
      parse_string,
      FIELD(data_dir) },
    { "fsync",
      0,
      "KVSD_FSYNC",
      "MODE",
      "everysec",
      "with --data-dir: always (ack after fsync), everysec or no",
      parse_fsync,
      FIELD(fsync_mode) },
    { "compact-ratio",
      0,
      "KVSD_COMPACT_RATIO",
      "N",
      "2",
      "with --data-dir: snapshot when the log is N times the last snapshot",
      parse_size,
      FIELD(compact_ratio) },
    { "check-data",
      0,
      NULL,
      "DIR",
      "",
      "verify the data directory DIR offline, print what it holds and exit",
      parse_string,
      FIELD(check_data) },
    { "log-level",
      0,
      "KVSD_LOG_LEVEL",
      "LEVEL",
      "info",
      "error, warn, info or debug",
      parse_log_level,
      FIELD(log_level) },
    { "log-format",
      0,
      "KVSD_LOG_FORMAT",
      "FORMAT",
      "logfmt",
      "logfmt, text or json",
      parse_log_format,
      FIELD(log_format) },
    { "log-file",
      0,
      "KVSD_LOG_FILE",
      "PATH",
      "",
      "log to PATH instead of stderr (reopened on SIGHUP)",
      parse_string,
      FIELD(log_file) },
    { "access-log",
      0,
      "KVSD_ACCESS_LOG",
      NULL,
      NULL,
      "log every request but /internal/ ones (=all: those too)",
      parse_switch,
      FIELD(access_log) },
    { "check", 'n', NULL, NULL, NULL, "check the configuration and exit", parse_switch, FIELD(check_only) },
    { "version", 'V', NULL, NULL, NULL, "print the version and exit", parse_switch, FIELD(show_version) },
    { "help", 'h', NULL, NULL, NULL, "print this help and exit", parse_switch, FIELD(show_help) },
};
const size_t config_noptions = sizeof(config_options) / sizeof(config_options[0]);

static const struct config_option *find_short(char c)
{
    size_t i;

    for (i = 0; i != config_noptions; ++i)
        if (config_options[i].short_flag == c)
            return &config_options[i];
    return NULL;
}

static const struct config_option *find_long(const char *arg, const char **inline_val)
{
    size_t i, len = strcspn(arg, "=");

    *inline_val = arg[len] == '=' ? arg + len + 1 : NULL;
    for (i = 0; i != config_noptions; ++i)
        if (strlen(config_options[i].flag) == len && strncmp(config_options[i].flag, arg, len) == 0)
            return &config_options[i];
    return NULL;
}

static int apply(struct config *cfg, const struct config_option *opt, const char *val, char *err, size_t errlen)
{
    set_source(opt, 0);
    return opt->parse(cfg, opt, opt->metavar == NULL ? NULL : val, err, errlen);
}

/* Short options as getopt(3) takes them: bundled switches (-nV), and a
 * value either attached (-w4, -nw4) or in the next argument (-nw 4).
 * Returns the index of the last argument used, or -1. */
static int short_options(struct config *cfg, int argc, char **argv, int a, char *err, size_t errlen)
{
    const char *p;

    for (p = argv[a] + 1; *p != '\0'; ++p) {
        const struct config_option *opt = find_short(*p);
        const char *val = NULL;

        if (opt == NULL) {
            snprintf(err, errlen, "unknown option '-%c' in '%s' (see kvsd --help)", *p, argv[a]);
            return -1;
        }
        if (opt->metavar != NULL) {
            if (p[1] != '\0')
                val = p + 1;
            else if (a + 1 < argc)
                val = argv[++a];
            else {
                snprintf(err, errlen, "option -%c (--%s) needs a value", *p, opt->flag);
                return -1;
            }
        }
        if (apply(cfg, opt, val, err, errlen) != 0)
            return -1;
        if (val != NULL)
            break;
    }
    return a;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const struct config_option *opt;
    size_t i;
    int a;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i != config_noptions; ++i) {
        opt = &config_options[i];
        set_source(opt, 0);
        if (opt->metavar != NULL && opt->parse(cfg, opt, opt->def, err, errlen) != 0)
            return -1;
    }
    for (i = 0; i != config_noptions; ++i) {
        const char *val;
        opt = &config_options[i];
        if (opt->env == NULL || (val = getenv(opt->env)) == NULL)
            continue;
        set_source(opt, 1);
        if (opt->parse(cfg, opt, val, err, errlen) != 0)
            return -1;
    }
    for (a = 1; a < argc; ++a) {
        const char *val;
        if (argv[a][0] == '-' && argv[a][1] != '-' && argv[a][1] != '\0') {
            if ((a = short_options(cfg, argc, argv, a, err, errlen)) < 0)
                return -1;
            continue;
        }
        if (strncmp(argv[a], "--", 2) != 0 || (opt = find_long(argv[a] + 2, &val)) == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see kvsd --help)", argv[a]);
            return -1;
        }
        if (opt->metavar != NULL && val == NULL) {
            if (a + 1 == argc) {
                snprintf(err, errlen, "option --%s needs a value", opt->flag);
                return -1;
            }
            val = argv[++a];
        } else if (opt->offset == FIELD(access_log)) {
            /* the one switch with a value: --access-log=all, --access-log all */
            if (val == NULL && a + 1 < argc && strcmp(argv[a + 1], "all") == 0)
                val = argv[++a];
            if (val != NULL && strcmp(val, "all") != 0) {
                snprintf(err, errlen, "invalid --access-log=%s: expected --access-log or --access-log=all", val);
                return -1;
            }
            cfg->access_log = val != NULL ? ACCESS_LOG_ALL : ACCESS_LOG_ON;
            continue;
        } else if (opt->metavar == NULL && val != NULL) {
            snprintf(err, errlen, "option --%s takes no value", opt->flag);
            return -1;
        }
        if (apply(cfg, opt, val, err, errlen) != 0)
            return -1;
    }
    if (cfg->show_help || cfg->show_version || cfg->check_data[0] != '\0')
        return 0;

    if (cfg->address[0] == '\0') {
        snprintf(err, errlen, "no replica address: set SOCKET_ADDRESS or --address IP:PORT");
        return -1;
    }
    if (cfg->nview == 0) {
        snprintf(err, errlen, "no view: set VIEW or --view IP:PORT,... (this replica's address included)");
        return -1;
    }
    for (i = 0; i != cfg->nview; ++i)
        if (strcmp(cfg->view[i], cfg->address) == 0)
            break;
    if (i == cfg->nview) {
        snprintf(err, errlen, "VIEW does not include this replica's address %s", cfg->address);
        return -1;
    }
    if (cfg->listen[0] == '\0')
        strcpy(cfg->listen, cfg->address);
    if (cfg->rlog_size == 0) {
        cfg->rlog_size = cfg->memory / 8;
        if (cfg->rlog_size < cfg->max_body * 2 + 4096)
            cfg->rlog_size = cfg->max_body * 2 + 4096;
    }
    if (cfg->rlog_size < (size_t)cfg->max_body * 2 + 4096 || cfg->rlog_size > cfg->memory / 2) {
        snprintf(err, errlen, "--log-size must be between twice --max-body and half of --memory");
        return -1;
    }
    return 0;
}

/* The store is one MAP_SHARED anonymous mapping (shm.c): try it, so that
 * a size the kernel refuses is a configuration error, found by -n too.
 * Under overcommit the mapping may succeed for any size, so also compare
 * with RAM + swap: a store larger than that dies of SIGBUS once it fills. */
static int check_memory(const struct config *cfg, char *err, size_t errlen)
{
    struct sysinfo si;
    unsigned long long total;
    char want[32];
    void *map;

    if (sysinfo(&si) == 0) {
        total = ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit;
        if (cfg->memory > total) {
            snprintf(err,
                     errlen,
                     "--memory %s is more than this system's memory and swap (%lluM)",
                     human(cfg->memory, 2, want, sizeof(want)),
                     total >> 20);
            return -1;
        }
    }
    map = mmap(NULL, cfg->memory, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        snprintf(err,
                 errlen,
                 "--memory %s cannot be mapped: %s",
                 human(cfg->memory, 2, want, sizeof(want)),
                 strerror(errno));
        return -1;
    }
    munmap(map, cfg->memory);
    return 0;
}

static int check_log_file(const struct config *cfg, char *err, size_t errlen)
{
    int fd;

    if (cfg->log_file[0] == '\0')
        return 0;
    if ((fd = open(cfg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) == -1) {
        snprintf(err, errlen, "cannot open log file '%s': %s", cfg->log_file, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

int config_check_system(const struct config *cfg, char *err, size_t errlen)
{
    if (check_log_file(cfg, err, errlen) != 0 || check_memory(cfg, err, errlen) != 0)
        return -1;
    return 0;
}

int config_raise_nofile(const struct config *cfg, unsigned long long *limit)
{
    unsigned long long need = (unsigned long long)cfg->max_connections + CONFIG_FD_RESERVE;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    *limit = rl.rlim_cur;
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need;
}

int config_internal_exposed(const struct config *cfg)
{
    /* listen is canonical dotted IPv4 (config_parse_addr) */
    return cfg->cluster_key[0] == '\0' && strncmp(cfg->listen, "127.", 4) != 0;
}

void config_usage(FILE *fp)
{
    size_t i;

    fprintf(fp,
            "usage: kvsd [options]\n\n"
            "One replica of a replicated, causally consistent key-value store.\n"
            "Every option can also be set in the environment variable shown;\n"
            "flags override the environment, which overrides the defaults.\n\n");
    for (i = 0; i != config_noptions; ++i) {
        const struct config_option *o = &config_options[i];
        char left[64];
        int n = 0;

        if (o->short_flag)
            n = snprintf(left, sizeof(left), "-%c, ", o->short_flag);
        snprintf(left + n, sizeof(left) - n, "--%s%s%s", o->flag, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        fprintf(fp, "  %-28s %s", left, o->help);
        if (o->def != NULL && o->def[0] != '\0')
            fprintf(fp, " [%s]", o->def);
        if (o->env != NULL)
            fprintf(fp, " (env %s)", o->env);
        fputc('\n', fp);
    }
}
