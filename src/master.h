/*
 * master.h - the master process: maps shared memory, forks and
 * supervises the workers and the replicator, never serves.
 */
#ifndef KVSD_MASTER_H
#define KVSD_MASTER_H

#include "config.h"

int master_main(const struct config *cfg);

#endif
