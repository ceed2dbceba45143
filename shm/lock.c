/*
 * lock.c - the store's single writer lock: a process-shared robust mutex
 * in shared memory.
 *
 * Every process that writes to the store (workers, the replicator, the
 * master on reaping) serialises on it.  Robustness is the point: a writer
 * SIGKILLed while holding the lock must not wedge the store, so the next
 * locker sees EOWNERDEAD, repairs whatever the dead writer left half done
 * through the recovery hook (store_recover_sh()), and marks the mutex
 * consistent again.  Any other error means the mutex itself is corrupt;
 * continuing would risk two writers at once, so we abort.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

size_t lock_size(void)
{
    return sizeof(struct lock_sh);
}

void lock_init(struct lock_sh *lock)
{
    pthread_mutexattr_t attr;

    memset(lock, 0, sizeof(*lock));
    if (pthread_mutexattr_init(&attr) != 0 || pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0 ||
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) != 0 || pthread_mutex_init(&lock->mutex, &attr) != 0)
        abort();
    pthread_mutexattr_destroy(&attr);
}

void lock_set_recover(struct lock_sh *lock, void (*fn)(void *), void *arg)
{
    lock->recover = fn;
    lock->recover_arg = arg;
}

/* Lock held after EOWNERDEAD: repair, then let others in again.  Until
 * pthread_mutex_consistent() runs, an unlock would make the mutex
 * permanently unusable (ENOTRECOVERABLE), so the hook must not unlock. */
static void recover_sh(struct lock_sh *lock)
{
    ++lock->recoveries;
    if (lock->recover != NULL)
        lock->recover(lock->recover_arg);
    if (pthread_mutex_consistent(&lock->mutex) != 0)
        abort();
}

void lock_acquire_sh(struct lock_sh *lock)
{
    int r = pthread_mutex_lock(&lock->mutex);

    if (r == EOWNERDEAD)
        recover_sh(lock);
    else if (r != 0)
        abort();
}

void lock_release_sh(struct lock_sh *lock)
{
    if (pthread_mutex_unlock(&lock->mutex) != 0)
        abort();
}

int lock_reap_sh(struct lock_sh *lock)
{
    int r = pthread_mutex_trylock(&lock->mutex);

    /* EBUSY: a live process holds it, so the dead pid did not. */
    if (r == EBUSY)
        return 0;
    if (r == EOWNERDEAD)
        recover_sh(lock);
    else if (r != 0)
        abort();
    lock_release_sh(lock);
    return r == EOWNERDEAD;
}
