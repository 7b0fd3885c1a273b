/* The shim linked into a statically linked executable (cgo-audit bench
 * builds such test binaries itself: LD_PRELOAD cannot reach them). The
 * harness compiles the shim with -DCGO_AUDIT_STATIC, renames its code
 * section to cgo_audit_text (so that the stack walk can tell its frames
 * apart, without dladdr), and links it in with ld --wrap=NAME for every
 * NAME below: each call to NAME, from Go's C code or from libc itself,
 * reaches the shim's __wrap_NAME, and __real_NAME is libc's allocator.
 * No dlsym: the real allocator is known at link time. Included by shim.c
 * only, in place of its dlsym resolver. */
#ifndef CGO_AUDIT_STATIC_LINK_H
#define CGO_AUDIT_STATIC_LINK_H

#include <pthread.h>
#include <stddef.h>

extern void *__real_malloc(size_t);
extern void *__real_calloc(size_t, size_t);
extern void *__real_realloc(void *, size_t);
extern void __real_free(void *);
extern int __real_posix_memalign(void **, size_t, size_t);
extern void *__real_aligned_alloc(size_t, size_t);
extern void *__real_memalign(size_t, size_t);
extern void *__real_valloc(size_t);
extern void *__real_pvalloc(size_t) __attribute__((weak)); /* musl has none */
extern size_t __real_malloc_usable_size(void *);
extern int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static int resolve_all(void)
{
    real_malloc = __real_malloc;
    real_calloc = __real_calloc;
    real_realloc = __real_realloc;
    real_free = __real_free;
    real_posix_memalign = __real_posix_memalign;
    real_aligned_alloc = __real_aligned_alloc;
    real_memalign = __real_memalign;
    real_valloc = __real_valloc;
    real_pvalloc = __real_pvalloc != NULL ? __real_pvalloc : pvalloc_from_memalign;
    real_malloc_usable_size = __real_malloc_usable_size;
    real_pthread_create = __real_pthread_create;
    return 1;
}

#endif
