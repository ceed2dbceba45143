/*
 * test_config.c - unit tests for the option table and its parser
 * (src/config.c): built-in defaults, the environment, flags (which win),
 * every flag spelling, size and duration suffixes, a one-line error naming
 * the option for every bad value, unknown options and missing values, the
 * VIEW rules, config_parse_addr(), and that --help lists every row of the
 * table.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "src/config.h"
#include "log.h"
#include "tap.h"

/* This replica's address and a view of just itself. */
#define SELF "--address", "127.0.0.1:8090", "--view", "127.0.0.1:8090"

static struct config cfg;
static char err[512];

static void clear_env(void)
{
    size_t i;

    for (i = 0; i < config_noptions; ++i)
        if (config_options[i].env != NULL)
            unsetenv(config_options[i].env);
}

/* config_load() with argv = {"kvsd", args..., NULL}. */
static int load(const char *first, ...)
{
    char *argv[64];
    int argc = 0;
    const char *a;
    va_list ap;

    argv[argc++] = "kvsd";
    va_start(ap, first);
    for (a = first; a != NULL && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return config_load(&cfg, argc, argv, err, sizeof(err));
}

static int one_line_naming(const char *what)
{
    return err[0] != '\0' && strchr(err, '\n') == NULL && strstr(err, what) != NULL;
}

static const struct config_option *option(const char *flag)
{
    size_t i;

    for (i = 0; i < config_noptions; ++i)
        if (strcmp(config_options[i].flag, flag) == 0)
            return &config_options[i];
    return NULL;
}

static void test_defaults(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    clear_env();
    ok(load(SELF, NULL) == 0, "only --address and --view given: loads (%s)", err);
    is_int(cfg.workers, cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : cpus, "workers default to the CPU count");
    is_int(cfg.memory, 256u << 20, "memory defaults to 256 MiB");
    is_int(cfg.max_body, 1u << 20, "max-body defaults to 1 MiB");
    is_int(cfg.peer_timeout_ms, 500, "peer-timeout defaults to 500 ms");
    is_int(cfg.heartbeat_ms, 200, "heartbeat defaults to 200 ms");
    is_int(cfg.readmit_delay_ms, 3000, "readmit-delay defaults to 3000 ms");
    is_int(cfg.join_grace_ms, 10000, "join-grace defaults to 10000 ms");
    ok(cfg.probe_interval_ms == 500 && cfg.causal_wait_ms == 0 && cfg.request_timeout_ms == 10000,
       "probe-interval 500, causal-wait 0, request-timeout 10000");
    ok(strcmp(cfg.address, "127.0.0.1:8090") == 0 && strcmp(cfg.listen, cfg.address) == 0,
       "listen defaults to the address");
    ok(cfg.nview == 1 && strcmp(cfg.view[0], cfg.address) == 0, "view is [address]");
    ok(cfg.log_level == LOG_INFO && cfg.log_format == LOG_FMT_LOGFMT && cfg.log_file[0] == '\0' &&
         cfg.cluster_key[0] == '\0' && !cfg.access_log && !cfg.check_only && !cfg.show_help && !cfg.show_version,
       "log info/logfmt to stderr, no cluster key, switches off");
    is_int(cfg.rlog_size, (256u << 20) / 8, "log-size defaults to an eighth of memory");
    ok(load(NULL) == -1 && one_line_naming("SOCKET_ADDRESS"),
       "no address at all: error naming SOCKET_ADDRESS (%s)",
       err);
    /* api.md: a missing SOCKET_ADDRESS or VIEW is a startup error */
    ok(load("--address", "127.0.0.1:8090", NULL) == -1 && one_line_naming("VIEW"),
       "no view at all: error naming VIEW (%s)",
       err);
}

static void test_env(void)
{
    clear_env();
    setenv("SOCKET_ADDRESS", "127.0.0.2:8090", 1);
    setenv("VIEW", "127.0.0.1:8090,127.0.0.2:8090,127.0.0.3:8090", 1);
    setenv("KVSD_LISTEN", "0.0.0.0:8090", 1);
    setenv("KVSD_WORKERS", "3", 1);
    setenv("KVSD_MEMORY", "64M", 1);
    setenv("KVSD_MAX_BODY", "64K", 1);
    setenv("KVSD_PEER_TIMEOUT", "1s", 1);
    setenv("KVSD_HEARTBEAT", "150ms", 1);
    setenv("KVSD_READMIT_DELAY", "0", 1);
    setenv("KVSD_JOIN_GRACE", "20s", 1);
    setenv("KVSD_LOG_LEVEL", "debug", 1);
    setenv("KVSD_LOG_FORMAT", "json", 1);
    setenv("KVSD_CLUSTER_KEY", "s3cret", 1);
    setenv("KVSD_ACCESS_LOG", "1", 1);
    ok(load(NULL) == 0, "configuration from the environment alone loads (%s)", err);
    ok(strcmp(cfg.address, "127.0.0.2:8090") == 0 && cfg.nview == 3 && strcmp(cfg.view[2], "127.0.0.3:8090") == 0 &&
         strcmp(cfg.listen, "0.0.0.0:8090") == 0,
       "SOCKET_ADDRESS, VIEW and KVSD_LISTEN applied");
    ok(cfg.workers == 3 && cfg.memory == 64u << 20 && cfg.max_body == 64u << 10, "KVSD_WORKERS, _MEMORY, _MAX_BODY");
    ok(cfg.peer_timeout_ms == 1000 && cfg.heartbeat_ms == 150 && cfg.readmit_delay_ms == 0 &&
         cfg.join_grace_ms == 20000,
       "durations from the environment (1s, 150ms, 0, 20s)");
    ok(cfg.log_level == LOG_DEBUG && cfg.log_format == LOG_FMT_JSON && strcmp(cfg.cluster_key, "s3cret") == 0 &&
         cfg.access_log,
       "log level/format, cluster key and the access-log switch");

    /* Flags beat the environment, in every spelling. */
    ok(load("--address",
            "127.0.0.3:8090",
            "-w",
            "5",
            "--memory=32M",
            "--peer-timeout",
            "700",
            "--view=127.0.0.3:8090",
            "-l",
            "127.0.0.3:9000",
            "--log-level=warn",
            NULL) == 0,
       "flags over the environment load (%s)",
       err);
    ok(strcmp(cfg.address, "127.0.0.3:8090") == 0 && cfg.nview == 1 && strcmp(cfg.view[0], "127.0.0.3:8090") == 0 &&
         strcmp(cfg.listen, "127.0.0.3:9000") == 0,
       "--address, --view=, -l beat SOCKET_ADDRESS, VIEW, KVSD_LISTEN");
    ok(cfg.workers == 5 && cfg.memory == 32u << 20 && cfg.peer_timeout_ms == 700 && cfg.log_level == LOG_WARN,
       "-w 5, --memory=32M, --peer-timeout 700, --log-level=warn beat the environment");
    ok(cfg.heartbeat_ms == 150 && cfg.max_body == 64u << 10, "options without a flag keep the environment's value");
    ok(load("--view", "127.0.0.2:8090", NULL) == 0 && cfg.nview == 1, "--view replaces VIEW, it does not append");
    setenv("SOCKET_ADDRESS", "not-an-address", 1);
    ok(load(SELF, "--view", "127.0.0.1:8090", NULL) == -1 && one_line_naming("SOCKET_ADDRESS"),
       "a bad environment value is an error even if a flag would override it (%s)",
       err);
    clear_env();
}

static void test_spellings(void)
{
    clear_env();
    ok(load("-a", "127.0.0.1:8090", "-n", "-w", "3", "-m", "16M", "-v", "127.0.0.1:8090", NULL) == 0 &&
         cfg.check_only && cfg.workers == 3 && cfg.memory == 16u << 20,
       "short flags: -a ADDR -n -w 3 -m 16M -v VIEW");
    ok(load("--address=127.0.0.1:8090", "--view=127.0.0.1:8090", "--check", "--workers=7", "--access-log", NULL) == 0 &&
         cfg.check_only && cfg.workers == 7 && cfg.access_log,
       "--flag=value and long switches");
    ok(load(SELF, "--workers=", NULL) == 0 && cfg.workers >= 1, "--workers= (empty) means the CPU count");
    ok(load("--help", NULL) == 0 && cfg.show_help, "--help needs no address");
    ok(load("-V", NULL) == 0 && cfg.show_version, "-V needs no address");
    ok(load("-h", NULL) == 0 && cfg.show_help, "-h is --help");
}

struct size_case {
    const char *flag, *val;
    unsigned long long want;
};

static void test_sizes_durations(void)
{
    static const struct size_case cases[] = {
        { "--memory", "1G", 1ull << 30 },      { "--memory", "64m", 64ull << 20 },
        { "--memory", "65536K", 64ull << 20 }, { "--memory", "16MB", 16ull << 20 },
        { "--memory", "16MiB", 16ull << 20 },  { "--memory", "16777216", 16ull << 20 },
        { "--max-body", "512", 512 },          { "--max-body", "2k", 2048 },
        { "--max-body", "1KiB", 1024 },        { "--peer-timeout", "250", 250 },
        { "--peer-timeout", "250ms", 250 },    { "--peer-timeout", "2s", 2000 },
        { "--heartbeat", "10", 10 },           { "--readmit-delay", "3600s", 3600000 },
        { "--join-grace", "0ms", 0 },          { "--causal-wait", "10s", 10000 },
        { "--request-timeout", "100", 100 },   { "--probe-interval", "600000", 600000 },
        { "--workers", "126", 126 },
    };
    size_t i;
    int all = 1;

    clear_env();
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        const struct config_option *o = option(cases[i].flag + 2);
        unsigned long long got;
        if (load(SELF, cases[i].flag, cases[i].val, NULL) != 0) {
            printf("# %s %s: %s\n", cases[i].flag, cases[i].val, err);
            all = 0;
            continue;
        }
        if (o->offset == offsetof(struct config, workers))
            got = (unsigned long long)cfg.workers;
        else if (o->parse == option("peer-timeout")->parse)
            got = *(unsigned *)((char *)&cfg + o->offset);
        else
            got = *(size_t *)((char *)&cfg + o->offset);
        if (got != cases[i].want) {
            printf("# %s %s = %llu, want %llu\n", cases[i].flag, cases[i].val, got, cases[i].want);
            all = 0;
        }
    }
    ok(all, "K/M/G size suffixes (any case, B/iB) and ms/s durations");
    ok(load(SELF, "--memory", "8M", "--max-body", "1M", NULL) == 0 && cfg.rlog_size >= 2 * cfg.max_body &&
         cfg.rlog_size <= cfg.memory / 2,
       "a small memory still gets a log of at least twice max-body");
}

struct bad_case {
    const char *flag, *val, *names;
};

static void test_invalid(void)
{
    static const struct bad_case cases[] = {
        { "--workers", "0", "workers" },
        { "--workers", "128", "workers" },
        { "--workers", "abc", "workers" },
        { "--workers", "-1", "workers" },
        { "--workers", "3.5", "workers" },
        { "--workers", "1K", "workers" },
        { "--memory", "1M", "memory" },
        { "--memory", "0", "memory" },
        { "--memory", "2T", "memory" },
        { "--memory", "1.5G", "memory" },
        { "--memory", "-1", "memory" },
        { "--memory", "M", "memory" },
        { "--memory", "", "memory" },
        { "--memory", " 64M", "memory" },
        { "--memory", "64M ", "memory" },
        { "--memory", "64MX", "memory" },
        { "--memory", "64MiBs", "memory" },
        { "--memory", "0x100000", "memory" },
        { "--memory", "99999999999999999999", "memory" },
        { "--memory", "17179869184G", "memory" },
        { "--memory", "2000G", "memory" },
        { "--max-body", "255", "max-body" },
        { "--max-body", "2G", "max-body" },
        { "--log-size", "1T", "log-size" },
        { "--peer-timeout", "9", "peer-timeout" },
        { "--peer-timeout", "600001", "peer-timeout" },
        { "--peer-timeout", "1m", "peer-timeout" },
        { "--peer-timeout", "1min", "peer-timeout" },
        { "--peer-timeout", "5 s", "peer-timeout" },
        { "--peer-timeout", "1.5s", "peer-timeout" },
        { "--peer-timeout", "-5", "peer-timeout" },
        { "--peer-timeout", "", "peer-timeout" },
        { "--peer-timeout", "1S", "peer-timeout" },
        { "--heartbeat", "0", "heartbeat" },
        { "--heartbeat", "abc", "heartbeat" },
        { "--readmit-delay", "3600001", "readmit-delay" },
        { "--readmit-delay", "1h", "readmit-delay" },
        { "--join-grace", "x", "join-grace" },
        { "--probe-interval", "5", "probe-interval" },
        { "--causal-wait", "10001", "causal-wait" },
        { "--request-timeout", "99", "request-timeout" },
        { "--log-level", "verbose", "log-level" },
        { "--log-level", "", "log-level" },
        { "--log-format", "xml", "log-format" },
        { "--address", "127.0.0.1", "--address" },
        { "--address", "127.0.0.1:0", "--address" },
        { "--address", "localhost:8090", "--address" },
        { "--listen", "nope", "--listen" },
        { "--listen", "1.2.3.4:65536", "--listen" },
        { "--view", "127.0.0.1:8090,,127.0.0.2:8090", "--view" },
        { "--view", "127.0.0.1:8090,bad", "--view" },
        { "--view", "127.0.0.1:8090,", "--view" },
    };
    char longval[300];
    size_t i;
    int all = 1;

    clear_env();
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        int r = load(SELF, cases[i].flag, cases[i].val, NULL);
        if (r != -1 || !one_line_naming(cases[i].names)) {
            printf("# %s '%s': r=%d err=%s\n", cases[i].flag, cases[i].val, r, err);
            all = 0;
        }
    }
    ok(all, "%zu invalid values: -1 with a one-line message naming the option", i);
    memset(longval, 'k', sizeof(longval) - 1);
    longval[sizeof(longval) - 1] = '\0';
    ok(load(SELF, "--cluster-key", longval, NULL) == -1 && one_line_naming("cluster-key"),
       "an over-long cluster key is refused (%s)",
       err);
    ok(load(SELF, "--log-file", longval, NULL) == -1 && one_line_naming("log-file"),
       "an over-long log file path is refused (%s)",
       err);
    ok(load(SELF, "--log-size", "4K", NULL) == -1 && one_line_naming("log-size"),
       "a log smaller than twice max-body is refused (%s)",
       err);
    ok(load(SELF, "--memory", "16M", "--log-size", "9M", NULL) == -1 && one_line_naming("log-size"),
       "a log larger than half the memory is refused (%s)",
       err);
    /* 18446744073709552 * 1000 wraps around 2^64 to 384, inside the range. */
    {
        int r = load(SELF, "--peer-timeout", "18446744073709552s", NULL);
        ok(r == -1 && one_line_naming("peer-timeout"),
           "a duration in seconds that overflows is refused, not wrapped (r=%d, peer-timeout %u ms)",
           r,
           cfg.peer_timeout_ms);
    }
    setenv("KVSD_MEMORY", "lots", 1);
    ok(load(SELF, NULL) == -1 && one_line_naming("KVSD_MEMORY") && strstr(err, "--memory") == NULL,
       "a bad environment value names the variable, not the flag (%s)",
       err);
    clear_env();
}

/* Every worker and the replicator take one process slot: the master's
 * child table, the RCU reader table and the stats table all have
 * SHM_MAX_PROCS rows, so more than WORKERS_MAX workers would write past
 * them. */
static void test_workers_bound(void)
{
    char want[64];

    clear_env();
    snprintf(want, sizeof(want), "from 1 to %d", WORKERS_MAX);
    is_int(WORKERS_MAX, SHM_MAX_PROCS - 2, "WORKERS_MAX leaves process slots for the replicator and the persister");
    ok(load(SELF, "--workers", "126", NULL) == 0 && cfg.workers == 126, "--workers 126 (the maximum) loads (%s)", err);
    ok(load(SELF, "--workers", "127", NULL) == -1 && one_line_naming("--workers") && one_line_naming(want),
       "--workers 127 is refused, naming the flag and the range (%s)",
       err);
    setenv("KVSD_WORKERS", "128", 1);
    ok(load(SELF, NULL) == -1 && one_line_naming("KVSD_WORKERS") && one_line_naming(want),
       "KVSD_WORKERS=128 is refused, naming the variable and the range (%s)",
       err);
    clear_env();
    ok(config_default_workers(128) == WORKERS_MAX && config_default_workers(1024) == WORKERS_MAX &&
         config_default_workers(126) == 126 && config_default_workers(2) == 2,
       "the CPU-count default is clamped to WORKERS_MAX (128 CPUs -> %d workers)",
       config_default_workers(128));
    ok(config_default_workers(0) == 1 && config_default_workers(-1) == 1, "an unknown CPU count gives one worker");
}

static void test_argv_errors(void)
{
    clear_env();
    ok(load(SELF, "--bogus", NULL) == -1 && one_line_naming("--bogus"), "unknown long option (%s)", err);
    ok(load(SELF, "-x", NULL) == -1 && one_line_naming("-x"), "unknown short option (%s)", err);
    ok(load(SELF, "stray", NULL) == -1 && one_line_naming("stray"), "a positional argument is refused (%s)", err);
    ok(load("--addres", "127.0.0.1:8090", NULL) == -1 && load("---address", "127.0.0.1:8090", NULL) == -1 &&
         load("-wx", NULL) == -1,
       "no prefix matching, no ---flag, -wx is -w x");
    ok(load(SELF, "--memory", NULL) == -1 && one_line_naming("memory"), "a missing value (%s)", err);
    ok(load(SELF, "-w", NULL) == -1 && one_line_naming("workers"), "a missing value after a short flag (%s)", err);
    ok(load("--address", NULL) == -1 && one_line_naming("address"), "--address without a value (%s)", err);
    ok(load(SELF, "--check=yes", NULL) == -1 && one_line_naming("check"), "a switch given a value (%s)", err);
}

static void test_view(void)
{
    char many[VIEW_MAX * 24 + 64], *p = many;
    int i;

    clear_env();
    ok(load(SELF, "--view", "127.0.0.2:8090,127.0.0.3:8090", NULL) == -1 && one_line_naming("VIEW") &&
         strstr(err, "127.0.0.1:8090") != NULL,
       "a VIEW without the address is an error naming both (%s)",
       err);
    setenv("VIEW", "127.0.0.2:8090", 1);
    setenv("SOCKET_ADDRESS", "127.0.0.1:8090", 1);
    ok(load(NULL) == -1 && one_line_naming("VIEW"), "the same from the environment (%s)", err);
    clear_env();
    ok(load(SELF, "--view", "127.0.0.1:8090, 127.0.0.2:8090,127.0.0.1:8090,127.0.0.1:08090 ,127.0.0.2:8090", NULL) ==
           0 &&
         cfg.nview == 2 && strcmp(cfg.view[0], "127.0.0.1:8090") == 0 && strcmp(cfg.view[1], "127.0.0.2:8090") == 0,
       "duplicate VIEW entries (also non-canonical ones) collapse, in order, spaces trimmed");
    ok(load("--address", "127.0.0.1:08090", "--view", "127.0.0.1:8090", NULL) == 0 &&
         strcmp(cfg.address, "127.0.0.1:8090") == 0,
       "the address is canonicalised before it is looked up in the view");
    for (i = 0; i < VIEW_MAX; ++i)
        p += sprintf(p, "%s10.0.0.%d:8090", i ? "," : "", i + 1);
    ok(load("--address", "10.0.0.1:8090", "--view", many, NULL) == 0 && cfg.nview == VIEW_MAX,
       "%d replicas fit",
       VIEW_MAX);
    sprintf(p, ",10.0.1.1:8090");
    ok(load("--address", "10.0.0.1:8090", "--view", many, NULL) == -1 && one_line_naming("--view"),
       "one more is an error (%s)",
       err);
}

static int addr_is(const char *in, const char *want)
{
    char out[ADDR_MAX];
    int r;

    memset(out, 'x', sizeof(out));
    r = config_parse_addr(in, strlen(in), out);
    if (r != 0 || strcmp(out, want) != 0) {
        printf("# parse_addr(%s) = %d '%.*s'\n", in, r, ADDR_MAX, out);
        return 0;
    }
    return 1;
}

static void test_parse_addr(void)
{
    static const char *const bad[] = {
        "",
        ":8090",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:99999999999999999999",
        "127.0.0.1",
        "localhost:8090",
        "example.com:80",
        "::1:8090",
        "[::1]:8090",
        "::ffff:127.0.0.1:8090",
        "127.0.0.1:80a",
        "127.0.0.1:+80",
        "127.0.0.1:-80",
        "127.0.0.1: 80",
        " 127.0.0.1:80",
        "127.0.0.1:80 ",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "256.1.1.1:80",
        "127.1:80",
        "0x7f.0.0.1:80",
        "127.0.0.1:8090:1",
        "127.0.0.1:8090/1",
        "111.111.111.111:11111111111111111111111111",
    };
    char out[ADDR_MAX];
    size_t i;
    int all = 1;

    ok(addr_is("127.0.0.1:8090", "127.0.0.1:8090") && addr_is("10.0.0.1:1", "10.0.0.1:1") &&
         addr_is("255.255.255.255:65535", "255.255.255.255:65535") && addr_is("0.0.0.0:80", "0.0.0.0:80"),
       "valid addresses, port 1 and 65535");
    ok(addr_is("127.0.0.1:08090", "127.0.0.1:8090") && addr_is("127.0.0.1:000001", "127.0.0.1:1"),
       "the port is canonicalised");
    ok(config_parse_addr("127.0.0.1:8090xyz", 14, out) == 0 && strcmp(out, "127.0.0.1:8090") == 0,
       "only len bytes are read");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (config_parse_addr(bad[i], strlen(bad[i]), out) != -1)
            printf("# accepted: '%s' as %s\n", bad[i], out), all = 0;
    ok(all, "port 0/65536, missing port, hostnames, IPv6, junk rejected");
}

static void test_usage(void)
{
    FILE *fp = tmpfile();
    char *text;
    long len;
    size_t i;
    int all = 1;

    config_usage(fp);
    len = ftell(fp);
    text = calloc(1, (size_t)len + 1);
    rewind(fp);
    ok(fread(text, 1, (size_t)len, fp) == (size_t)len && len > 0, "config_usage() writes the help");
    fclose(fp);
    for (i = 0; i < config_noptions; ++i) {
        const struct config_option *o = &config_options[i];
        char want[128];
        snprintf(want, sizeof(want), "--%s%s%s", o->flag, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        if (strstr(text, want) == NULL)
            printf("# --help lacks '%s'\n", want), all = 0;
        if (o->short_flag) {
            snprintf(want, sizeof(want), "-%c, --%s", o->short_flag, o->flag);
            if (strstr(text, want) == NULL)
                printf("# --help lacks '%s'\n", want), all = 0;
        }
        if (o->env != NULL) {
            snprintf(want, sizeof(want), "(env %s)", o->env);
            if (strstr(text, want) == NULL)
                printf("# --help lacks '%s'\n", want), all = 0;
        }
        if (strstr(text, o->help) == NULL)
            printf("# --help lacks the help of --%s\n", o->flag), all = 0;
        if (o->def != NULL && o->def[0] != '\0') {
            snprintf(want, sizeof(want), "[%s]", o->def);
            if (strstr(text, want) == NULL)
                printf("# --help lacks the default of --%s\n", o->flag), all = 0;
        }
    }
    ok(all, "every row of config_options[] (flag, short flag, metavar, env, help, default) is in --help");
    {
        int lines = 0;
        char *p;
        for (p = text; *p; ++p)
            lines += *p == '\n';
        ok(lines >= (int)config_noptions, "at least one line per option");
    }
    free(text);
}

/* The startup warning's decision (issue 12): /internal/ reachable from
 * another host without a key.  Tests may only listen on 127.0.0.0/8, so
 * the warning itself is decided here; tests/t/repl_hostile.py checks a
 * loopback start does not log it. */
static void test_internal_exposed(void)
{
    static const char *V = "127.0.0.1:8090";

    clear_env();
    ok(load("--address", V, "--view", V, NULL) == 0 && !config_internal_exposed(&cfg),
       "listening on the loopback --address, no key: not exposed");
    ok(load("--address", V, "--view", V, "--listen", "0.0.0.0:8090", NULL) == 0 && config_internal_exposed(&cfg),
       "--listen 0.0.0.0:8090 without --cluster-key: exposed");
    ok(load("--address", "10.1.2.3:8090", "--view", "10.1.2.3:8090", NULL) == 0 && config_internal_exposed(&cfg),
       "a non-loopback --address (listened on by default) without a key: exposed");
    ok(load("--address", V, "--view", V, "--listen", "0.0.0.0:8090", "--cluster-key", "s3cret", NULL) == 0 &&
         !config_internal_exposed(&cfg),
       "--listen 0.0.0.0:8090 with --cluster-key: not exposed");
    ok(load("--address", V, "--view", V, "--listen", "127.255.0.9:8090", NULL) == 0 && !config_internal_exposed(&cfg),
       "any 127.0.0.0/8 listen address counts as loopback");
    ok(load("--address", V, "--view", V, "--listen", "12.7.0.1:8090", NULL) == 0 && config_internal_exposed(&cfg),
       "12.7.0.1 is not loopback (the first octet is compared whole)");
    setenv("KVSD_CLUSTER_KEY", "k", 1);
    ok(load("--address", V, "--view", V, "--listen", "0.0.0.0:8090", NULL) == 0 && !config_internal_exposed(&cfg),
       "a key from KVSD_CLUSTER_KEY counts too");
    clear_env();
}

/* Issue 14: a message names the source the user set (flag or variable),
 * and shows a range the way the user writes it. */
static void test_sources_ranges(void)
{
    clear_env();
    setenv("KVSD_LISTEN", "127.0.0.5:8090", 1);
    ok(load(SELF, "--listen", "127.0.0.201", NULL) == -1 && one_line_naming("--listen") &&
         strstr(err, "KVSD_LISTEN") == NULL,
       "a bad --listen names --listen, not KVSD_LISTEN (%s)",
       err);
    clear_env();
    setenv("KVSD_MEMORY", "5Q", 1);
    ok(load(SELF, NULL) == -1 && one_line_naming("KVSD_MEMORY") && strstr(err, "--memory") == NULL,
       "KVSD_MEMORY=5Q names KVSD_MEMORY, not --memory (%s)",
       err);
    setenv("KVSD_ACCESS_LOG", "maybe", 1);
    unsetenv("KVSD_MEMORY");
    ok(load(SELF, NULL) == -1 && one_line_naming("KVSD_ACCESS_LOG"), "a bad switch variable is named (%s)", err);
    clear_env();
    setenv("VIEW", "127.0.0.1:8090,nope", 1);
    ok(load("--address", "127.0.0.1:8090", NULL) == -1 && one_line_naming("VIEW entry 'nope'") &&
         strstr(err, "--view") == NULL,
       "a bad VIEW entry names VIEW (%s)",
       err);
    clear_env();
    ok(load(SELF, "--memory", "1", NULL) == -1 && one_line_naming("from 8M to 1T"),
       "the --memory range reads 8M to 1T (%s)",
       err);
    ok(load(SELF, "--max-body", "1", NULL) == -1 && one_line_naming("from 256 to 1G"),
       "the --max-body range reads 256 to 1G (%s)",
       err);
    ok(load(SELF, "--peer-timeout", "1", NULL) == -1 && one_line_naming("from 10ms to 600s"),
       "a duration range reads 10ms to 600s (%s)",
       err);
    ok(load(SELF, "--max-connections", "0", NULL) == -1 && one_line_naming("from 1 to 1000000"),
       "a count range is plain (%s)",
       err);
    ok(load(SELF, "--memory", "1T", NULL) == 0 && cfg.memory == 1ULL << 40, "the T suffix: --memory 1T loads (%s)", err);
}

static void test_wildcard_address(void)
{
    clear_env();
    ok(load("--address", "0.0.0.0:8090", "--view", "0.0.0.0:8090", NULL) == -1 && one_line_naming("--address") &&
         one_line_naming("0.0.0.0"),
       "-a 0.0.0.0:8090 is refused: no peer can reach it (%s)",
       err);
    setenv("SOCKET_ADDRESS", "0.0.0.0:8090", 1);
    ok(load("--view", "0.0.0.0:8090", NULL) == -1 && one_line_naming("SOCKET_ADDRESS"),
       "SOCKET_ADDRESS=0.0.0.0:8090 too, named (%s)",
       err);
    clear_env();
    ok(load(SELF, "--view", "127.0.0.1:8090,0.0.0.0:8090", NULL) == -1 && one_line_naming("--view"),
       "a 0.0.0.0 view entry is refused (%s)",
       err);
    ok(load(SELF, "--listen", "0.0.0.0:8090", NULL) == 0, "--listen 0.0.0.0:8090 is fine (%s)", err);
}

static void test_bundled(void)
{
    clear_env();
    ok(load(SELF, "-nV", NULL) == 0 && cfg.check_only && cfg.show_version, "-nV is -n -V (%s)", err);
    ok(load(SELF, "-nw4", NULL) == 0 && cfg.check_only && cfg.workers == 4, "-nw4: a value attached (%s)", err);
    ok(load(SELF, "-nw", "5", NULL) == 0 && cfg.check_only && cfg.workers == 5, "-nw 5: the value next (%s)", err);
    ok(load("-a127.0.0.1:8090", "-v127.0.0.1:8090", NULL) == 0 && strcmp(cfg.address, "127.0.0.1:8090") == 0,
       "-aADDR (%s)",
       err);
    ok(load(SELF, "-nx", NULL) == -1 && one_line_naming("-x"), "-nx names the unknown -x (%s)", err);
    ok(load(SELF, "-nw", NULL) == -1 && one_line_naming("--workers"), "-nw without a value (%s)", err);
}

static void test_system(void)
{
    char path[64];
    struct sysinfo si;

    clear_env();
    ok(load(SELF, "--memory", "16M", "--log-file", "/nonexistent/dir/x.log", NULL) == 0 &&
         config_check_system(&cfg, err, sizeof(err)) == -1 && one_line_naming("/nonexistent/dir/x.log"),
       "a log file that cannot be opened fails the check (%s)",
       err);
    snprintf(path, sizeof(path), "/tmp/test_config.%d.log", (int)getpid());
    ok(load(SELF, "--memory", "16M", "--log-file", path, NULL) == 0 && config_check_system(&cfg, err, sizeof(err)) == 0,
       "a writable log file and 16M pass (%s)",
       err);
    unlink(path);
    if (sysinfo(&si) == 0 && ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit < (1ULL << 40))
        ok(load(SELF, "--memory", "1T", NULL) == 0 && config_check_system(&cfg, err, sizeof(err)) == -1 &&
             one_line_naming("--memory 1T"),
           "--memory 1T on a host with less memory and swap fails the check (%s)",
           err);
    else
        ok(1, "# SKIP this host has 1T of memory and swap");
}

static void test_nofile(void)
{
    struct rlimit saved, rl;
    unsigned long long limit = 0;

    clear_env();
    getrlimit(RLIMIT_NOFILE, &saved);
    if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 1200) {
        ok(1, "# SKIP hard open-files limit %llu is too low", (unsigned long long)saved.rlim_max);
        ok(1, "# SKIP");
        return;
    }
    rl.rlim_cur = 100, rl.rlim_max = 1200;
    ok(setrlimit(RLIMIT_NOFILE, &rl) == 0 && load(SELF, "--max-connections", "1000", NULL) == 0 &&
         config_raise_nofile(&cfg, &limit) == 1 && limit == 1000 + CONFIG_FD_RESERVE &&
         getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == limit,
       "the soft limit 100 is raised to --max-connections + reserve (%llu)",
       limit);
    ok(load(SELF, "--max-connections", "4096", NULL) == 0 && config_raise_nofile(&cfg, &limit) == 0 && limit == 1200,
       "--max-connections 4096 under a hard limit of 1200: raised to 1200, reported as not fitting (%llu)",
       limit);
}

static void test_access_log(void)
{
    clear_env();
    ok(load(SELF, "--access-log", NULL) == 0 && cfg.access_log == ACCESS_LOG_ON, "--access-log: on, /internal/ left out");
    ok(load(SELF, "--access-log=all", NULL) == 0 && cfg.access_log == ACCESS_LOG_ALL, "--access-log=all");
    ok(load(SELF, "--access-log", "all", NULL) == 0 && cfg.access_log == ACCESS_LOG_ALL, "--access-log all");
    ok(load(SELF, "--access-log=yes", NULL) == -1 && one_line_naming("--access-log"), "--access-log=yes (%s)", err);
    setenv("KVSD_ACCESS_LOG", "all", 1);
    ok(load(SELF, NULL) == 0 && cfg.access_log == ACCESS_LOG_ALL, "KVSD_ACCESS_LOG=all");
    clear_env();
}

int main(void)
{
    plan(75 + 29);
    test_defaults();
    test_env();
    test_spellings();
    test_sizes_durations();
    test_invalid();
    test_workers_bound();
    test_argv_errors();
    test_view();
    test_parse_addr();
    test_usage();
    test_internal_exposed();
    test_sources_ranges();
    test_wildcard_address();
    test_bundled();
    test_system();
    test_nofile();
    test_access_log();
    return done_testing();
}
