/*
 * datadir.h - the data directory (--data-dir): its lock, its files, and
 * what the master does with them at startup (recovery) and `kvsd
 * --check-data` does offline.  The persister child (persist.c) writes
 * the files; the format is datafile.h's.
 *
 * Files: LOCK (flock()ed by the master for its life, holds its pid),
 * snapshot.N and log.N for the current generation N (the log holds every
 * write applied after the snapshot's cut), and transiently snapshot.N.tmp
 * and the previous generation, removed once the next one is durable.
 */
#ifndef KVSD_DATADIR_H
#define KVSD_DATADIR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shm.h"

#define DATADIR_NAME_MAX 320

/* Create (one level) and lock dir: returns the lock's fd, kept open for
 * the process's life (children inherit it), or -1 with a message naming
 * the holder's pid when another kvsd has it. */
int datadir_lock(const char *dir, char *err, size_t errlen);

/* The newest generation with a snapshot, or 0 if there is none. */
uint64_t datadir_generation(const char *dir);
void datadir_path(char *out, size_t len, const char *dir, const char *kind, uint64_t gen);

/* Master, after store_setup(), before fork: load the newest snapshot and
 * replay its log into the store (a torn last record is truncated, with
 * one log line).  Returns 0, or -1 with a message in err (corruption:
 * the caller exits 78). */
int datadir_recover(shm_t *shm, const char *dir, char *err, size_t errlen);

/* `kvsd --check-data DIR`: verify every file, print what was found.
 * Returns 0 (all good), 1 (a torn tail startup would truncate) or 2
 * (corruption, or nothing to read). */
int datadir_check(const char *dir, FILE *out);

#endif
