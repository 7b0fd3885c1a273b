/* Interfaces between the shim's parts: the allocator front (shim.c) and the
 * allocation-stack table (stacks.c). */
#ifndef CGO_AUDIT_SHIM_INTERNAL_H
#define CGO_AUDIT_SHIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "cgo_audit_region.h"

/* Internal to the shim: reached without the GOT, never exported. */
#pragma GCC visibility push(hidden)

/* Non-zero when allocation stacks are recorded (CGO_AUDIT_STACKS). */
extern int shim_stacks_enabled;

/* Reads CGO_AUDIT_STACKS and friends; records the mode in the header. */
void shim_stack_init(struct cgo_audit_region *r);

/* The tag for an allocation of size bytes about to be made by the caller:
 * a stack tag (>= CGO_AUDIT_TAG_FIRST_STACK) when this one is recorded. */
unsigned shim_stack_capture(struct cgo_audit_region *r, size_t size);

/* Adds delta bytes (and one allocation, +-) to the live figures of a stack. */
void shim_stack_count(struct cgo_audit_region *r, unsigned tag, int64_t delta);

/* fork(): hold the stack table still, and give the child a copy. */
void shim_stack_lock_all(void);
void shim_stack_unlock_all(void);
void shim_stack_copy(struct cgo_audit_region *dst, const struct cgo_audit_region *src);

#pragma GCC visibility pop

#endif
