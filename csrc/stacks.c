/* Allocation stacks for the cgo-audit shim (filled in by the attribution work). */
#include "shim_internal.h"

int shim_stacks_enabled;

void shim_stack_init(struct cgo_audit_region *r)
{
    r->header.stack_mode = CGO_AUDIT_STACKS_OFF;
}

unsigned shim_stack_capture(struct cgo_audit_region *r, size_t size)
{
    (void)r;
    (void)size;
    return CGO_AUDIT_TAG_NONE;
}

void shim_stack_count(struct cgo_audit_region *r, unsigned tag, int64_t delta)
{
    (void)r;
    (void)tag;
    (void)delta;
}

void shim_stack_lock_all(void) {}
void shim_stack_unlock_all(void) {}

void shim_stack_copy(struct cgo_audit_region *dst, const struct cgo_audit_region *src)
{
    (void)dst;
    (void)src;
}
