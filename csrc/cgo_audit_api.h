/* Functions the shim exports for readers in the same process: the C stress
 * test and Python's cffi (ffi.dlopen). Python's cdef reads the part between
 * the CDEF markers, so it declares nothing of its own. */
#ifndef CGO_AUDIT_API_H
#define CGO_AUDIT_API_H

#include <stddef.h>
#include <stdint.h>
#include "cgo_audit_region.h"

/* CDEF-BEGIN */
/* The region this process writes (file-backed when CGO_AUDIT_DIR is set). */
const struct cgo_audit_region *cgo_audit_region(void);

/* Copies the region's file path into buf; returns its length, or -1 when the
 * region is anonymous (CGO_AUDIT_DIR unset) or buf is too small. */
int cgo_audit_region_path(char *buf, size_t len);

/* Sums every thread slot into *out. */
void cgo_audit_read_totals(struct cgo_audit_counters *out);

/* Attach mode (attach.c): the shim loaded into a running process by
 * `cgo-audit attach`. The injector calls cgo_audit_attach, then, with every
 * thread stopped, points each slot of the table at its hook; detaching puts
 * the originals back. */
#define CGO_AUDIT_PATCH_MAX 8192
struct cgo_audit_patch {
    uint64_t slot;               /* address of a GOT entry (JUMP_SLOT or GLOB_DAT) */
    uint64_t hook;               /* the shim's entry point for it */
    uint64_t original;           /* what it pointed to without the shim */
};
struct cgo_audit_patches {
    uint64_t count;
    uint64_t dropped;            /* slots beyond CGO_AUDIT_PATCH_MAX */
    uint64_t objects;            /* loaded objects searched */
    struct cgo_audit_patch entries[8192];
};

/* Fresh file region in dir, stack settings as CGO_AUDIT_STACKS,
 * CGO_AUDIT_SAMPLE_BYTES and CGO_AUDIT_GO_LAYOUT would give, and a new patch
 * table. Returns 0, or an errno value. */
int cgo_audit_attach(const char *dir, const char *stacks, uint64_t sample_bytes, const char *layout);

/* The table the last cgo_audit_attach made. */
const struct cgo_audit_patches *cgo_audit_patches(void);
/* CDEF-END */

/* export.c, for the Go heap-profile handler (goaudit/cheap): what stacks
 * [0, count) have allocated in all, freed or not. Returns the count copied. */
uint64_t cgo_audit_stack_alloc_totals(uint64_t *bytes, uint64_t *allocs, uint64_t count);

#endif
