/*
 * replicator.h - the replicator process: the only one that talks to
 * peers as a client.  Ships the replication log, sends heartbeats,
 * detects failed peers, evicts, probes and re-admits them, broadcasts
 * view changes, and joins the cluster at startup (state transfer).
 */
#ifndef KVSD_REPLICATOR_H
#define KVSD_REPLICATOR_H

#include "config.h"
#include "shm.h"

void replicator_main(shm_t *shm, const struct config *cfg, int slot) __attribute__((noreturn));

#endif
