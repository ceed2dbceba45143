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

/* Open a non-blocking listening socket on "IP:PORT", with SO_REUSEPORT
 * (each worker has its own) or without (the master's check that no other
 * process serves the address). */
int listen_socket(const char *addr, int reuseport, char *err, size_t errlen);

#endif
