/*
 * worker.h - a worker process: one libh2o event loop serving the client
 * API and the peer-ingest API from shared memory.
 */
#ifndef KVSD_WORKER_H
#define KVSD_WORKER_H

#include "config.h"
#include "shm.h"

/* Never returns.  index: worker number; slot: RCU reader slot. */
void worker_main(shm_t *shm, const struct config *cfg, int index, int slot) __attribute__((noreturn));

/* Open a non-blocking SO_REUSEPORT listening socket on "IP:PORT". */
int listen_socket(const char *addr, char *err, size_t errlen);

#endif
