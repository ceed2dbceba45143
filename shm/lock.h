/*
 * lock.h - the store's single writer lock.
 *
 * A process-shared robust mutex.  Every write to the store (client PUT and
 * DELETE, replicated records, view changes, snapshot installs) runs under
 * it; readers never take it.  If the holder dies, the next locker gets
 * EOWNERDEAD: lock_acquire_sh() then runs the registered recovery hook
 * (store_recover_sh(), which rolls the interrupted write forward or back)
 * and marks the mutex consistent, so a SIGKILLed worker never wedges the
 * store.  The master calls lock_reap_sh() for a dead pid so recovery also
 * happens when no writer comes along.
 */
#ifndef KVSD_LOCK_H
#define KVSD_LOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct lock_sh {
    pthread_mutex_t mutex;
    uint64_t recoveries;        /* times the owner-dead path ran */
    void (*recover)(void *arg); /* called with the lock held after owner death */
    void *recover_arg;
};

size_t lock_size(void);
void lock_init(struct lock_sh *lock);

/* Set the owner-dead recovery hook (before fork; pointers are shared). */
void lock_set_recover(struct lock_sh *lock, void (*fn)(void *), void *arg);

void lock_acquire_sh(struct lock_sh *lock);
void lock_release_sh(struct lock_sh *lock);

/* Master, after reaping a child: if the lock's owner died, recover now
 * rather than on the next write.  Never blocks.  Returns 1 if it ran the
 * owner-dead recovery, 0 otherwise. */
int lock_reap_sh(struct lock_sh *lock);

#endif
