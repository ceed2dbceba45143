/*
 * main.c - parse the configuration and hand over to the master.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "config.h"
#include "datadir.h"
#include "log.h"
#include "master.h"

int main(int argc, char **argv)
{
    static struct config cfg;
    char err[512];

    if (config_load(&cfg, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "kvsd: %s\n", err);
        return EX_CONFIG_;
    }
    if (cfg.show_help) {
        config_usage(stdout);
        return 0;
    }
    if (cfg.show_version) {
        printf("kvsd %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (cfg.check_data[0] != '\0')
        return datadir_check(cfg.check_data, stdout);
    if (config_check_system(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "kvsd: %s\n", err);
        return EX_CONFIG_;
    }
    if (cfg.check_only) {
        /* docker/entrypoint.sh takes the listen address from this line */
        printf("kvsd: configuration OK: %s, listen %s, view of %zu, %d workers, %zu MiB\n",
               cfg.address,
               cfg.listen,
               cfg.nview,
               cfg.workers,
               cfg.memory >> 20);
        return 0;
    }
    /* Replication batches and their answers, tens of KB each, are
     * allocated and freed all the time: keep freed heap memory rather than
     * give it back with brk() after nearly every one (glibc's thresholds
     * start at 128 KB).  Snapshots, hundreds of MB, are still mmap()ed and
     * returned.  Inherited by every child. */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    log_init(cfg.log_level, cfg.log_format, cfg.log_file);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        cfg.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    {
        unsigned long long limit;
        if (!config_raise_nofile(&cfg, &limit))
            log_warn("the open-files limit is %llu, below --max-connections %u + %d that each worker needs: a worker "
                     "refuses connections beyond about %llu; raise it (LimitNOFILE=, ulimit -n)",
                     limit,
                     cfg.max_connections,
                     CONFIG_FD_RESERVE,
                     limit > CONFIG_FD_RESERVE ? limit - CONFIG_FD_RESERVE : 0);
    }
    return master_main(&cfg);
}
