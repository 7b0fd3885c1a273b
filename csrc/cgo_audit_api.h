/* Functions the shim exports for readers in the same process: the C stress
 * test and Python's cffi (ffi.dlopen). Python's cdef reads the part between
 * the CDEF markers, so it declares nothing of its own. */
#ifndef CGO_AUDIT_API_H
#define CGO_AUDIT_API_H

#include <stddef.h>
#include "cgo_audit_region.h"

/* CDEF-BEGIN */
/* The region this process writes (file-backed when CGO_AUDIT_DIR is set). */
const struct cgo_audit_region *cgo_audit_region(void);

/* Copies the region's file path into buf; returns its length, or -1 when the
 * region is anonymous (CGO_AUDIT_DIR unset) or buf is too small. */
int cgo_audit_region_path(char *buf, size_t len);

/* Sums every thread slot into *out. */
void cgo_audit_read_totals(struct cgo_audit_counters *out);
/* CDEF-END */

/* export.c, for the Go heap-profile handler (goaudit/cheap): what stacks
 * [0, count) have allocated in all, freed or not. Returns the count copied. */
uint64_t cgo_audit_stack_alloc_totals(uint64_t *bytes, uint64_t *allocs, uint64_t count);

#endif
