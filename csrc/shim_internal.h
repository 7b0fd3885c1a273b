/* Interfaces between the shim's parts: the allocator front (shim.c) and the
 * allocation-stack table (stacks.c). */
#ifndef CGO_AUDIT_SHIM_INTERNAL_H
#define CGO_AUDIT_SHIM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "cgo_audit_region.h"

/* Internal to the shim: reached without the GOT, never exported. */
#pragma GCC visibility push(hidden)

/* x_cgo_thread_start's code, where known: the Go runtime mallocs a small
 * block there for each new thread, which the thread frees when it starts. */
extern uintptr_t shim_thread_start_lo, shim_thread_start_span;

/* CGO_AUDIT_STACKS_* in force (0: no stacks). */
extern int shim_stacks_enabled;

/* Sampled mode: the gap, in bytes, to the next sampled allocation (drawn
 * from an exponential distribution with the configured mean). */
int64_t shim_stack_next_gap(void);

/* Reads CGO_AUDIT_STACKS and friends; records the mode in the header. */
void shim_stack_init(struct cgo_audit_region *r);

/* The same from explicit settings (attach mode: the injector passes them). */
void shim_stack_configure(struct cgo_audit_region *r, const char *setting, uint64_t period, const char *layout);
void shim_stack_reset(struct cgo_audit_region *r, const char *setting, uint64_t period, const char *layout);

/* The stack tag (>= CGO_AUDIT_TAG_FIRST_STACK) of the allocation the caller
 * is about to make, or NONE when the stack could not be recorded. */
unsigned shim_stack_capture(struct cgo_audit_region *r);

/* Adds bytes and allocs (each +-) to the live figures of a stack. */
void shim_stack_count(struct cgo_audit_region *r, unsigned tag, int64_t bytes, int64_t allocs);

/* fork(): hold the stack table still, and give the child a copy. */
void shim_stack_lock_all(void);
void shim_stack_unlock_all(void);
void shim_stack_copy(struct cgo_audit_region *dst, const struct cgo_audit_region *src);

/* Attach mode (attach.c). Gives the running process a fresh file region in
 * dir, at the old region's address (every thread's cached slot pointer stays
 * valid), and takes the real allocator from the global scope: the functions
 * the program's GOT slots point to. Returns 0, or -1 (errno set). */
int shim_attach_region(const char *dir, uint32_t flags);
/* Readers may use the region from now on. */
void shim_attach_publish(void);

/* The shim's own entry points, under names that bind inside the shim (a
 * plain reference to malloc from here binds to the global one). */
void *shim_hook_malloc(size_t);
void shim_hook_free(void *);
void *shim_hook_calloc(size_t, size_t);
void *shim_hook_realloc(void *, size_t);
void *shim_hook_reallocarray(void *, size_t, size_t);
int shim_hook_posix_memalign(void **, size_t, size_t);
void *shim_hook_aligned_alloc(size_t, size_t);
void *shim_hook_memalign(size_t, size_t);
void *shim_hook_valloc(size_t);
void *shim_hook_pvalloc(size_t);
int shim_hook_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

/* export.c: adds one allocation of bytes to the totals of stack tag;
 * zeroes every total when the stack table starts again empty. */
void shim_export_count_alloc(unsigned tag, uint64_t bytes);
void shim_export_reset(void);

#pragma GCC visibility pop

#endif
