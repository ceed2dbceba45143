/*
 * main.c - parse the configuration and hand over to the master.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

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
    if (cfg.check_only) {
        printf("kvsd: configuration OK: %s, view of %zu, %d workers, %zu MiB\n",
               cfg.address,
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
    return master_main(&cfg);
}
