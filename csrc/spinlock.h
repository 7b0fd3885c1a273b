/* The shim's one lock: a test-and-test-and-set spinlock that yields after a
 * short spin. Held only around table probes, never across a call that could
 * re-enter the allocator. */
#ifndef CGO_AUDIT_SPINLOCK_H
#define CGO_AUDIT_SPINLOCK_H

#include <sched.h>

#include "arch.h"

static inline void spin_acquire(int *lock)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
            if (++spins < 128) {
                cpu_relax();
            } else {
                sched_yield();
            }
        }
    }
}

static inline void spin_release(int *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/* Set while this thread holds every shim lock for fork() (from the atfork
 * prepare handler to the parent's or child's): an allocation fork() makes on
 * this thread must not wait for a lock the thread already holds. One flag for
 * all of the shim's locks, defined in shim.c. */
extern __thread int shim_forking __attribute__((tls_model("initial-exec"), visibility("hidden")));

static inline void lock_unless_forking(int *lock)
{
    if (!shim_forking) {
        spin_acquire(lock);
    }
}

static inline void unlock_unless_forking(int *lock)
{
    if (!shim_forking) {
        spin_release(lock);
    }
}

#endif
