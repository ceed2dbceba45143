/*
 * persist.h - the persister process (--data-dir): appends every record
 * of the replication log ring, in order, to the data directory's log,
 * fsyncs it as --fsync says, and writes snapshots (compaction).  It is
 * the only process that writes the data directory after startup.
 */
#ifndef KVSD_PERSIST_H
#define KVSD_PERSIST_H

#include "config.h"
#include "shm.h"

void persister_main(shm_t *shm, const struct config *cfg, int slot) __attribute__((noreturn));

/* Lock-free: 1 if every record up to rlog position pos is on disk. */
static inline int persist_synced(const shm_t *shm, uint64_t pos)
{
    return __atomic_load_n(&shm->persist_synced, __ATOMIC_ACQUIRE) >= pos;
}

#endif
