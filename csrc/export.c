/* Accessors for readers inside the target process (goaudit/cheap, the Go
 * heap-profile handler): figures the region does not carry.
 *
 * The region holds each stack's live bytes and blocks. A heap profile also
 * wants what a stack has allocated in all (alloc_space, alloc_objects), which
 * no other reader needs, so it is kept here, beside the region rather than
 * in it: the region's layout stays as it is.
 */
#include <stdint.h>

#include "shim_internal.h"

#define EXPORT __attribute__((visibility("default")))

/* Indexed like region->stacks[]; only grows. A forked child inherits the
 * parent's figures along with its copy of the stack table. */
static struct {
    uint64_t bytes;
    uint64_t allocs;
} alloc_totals[CGO_AUDIT_STACK_CAPACITY];

void shim_export_count_alloc(unsigned tag, uint64_t bytes)
{
    unsigned index = tag - CGO_AUDIT_TAG_FIRST_STACK;
    __atomic_fetch_add(&alloc_totals[index].bytes, bytes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&alloc_totals[index].allocs, 1, __ATOMIC_RELAXED);
}

/* A fresh, empty stack table (attach mode's shim_stack_reset) starts its
 * totals again at zero: they are indexed like the table. */
void shim_export_reset(void)
{
    for (unsigned i = 0; i < CGO_AUDIT_STACK_CAPACITY; i++) {
        __atomic_store_n(&alloc_totals[i].bytes, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&alloc_totals[i].allocs, 0, __ATOMIC_RELAXED);
    }
}

/* Copies the allocation totals of stacks [0, count) (count at most the
 * table's capacity): bytes[i] and allocs[i] are what stack i has allocated
 * since the shim started counting, freed or not. Returns how many it copied. */
EXPORT uint64_t cgo_audit_stack_alloc_totals(uint64_t *bytes, uint64_t *allocs, uint64_t count)
{
    if (count > CGO_AUDIT_STACK_CAPACITY) {
        count = CGO_AUDIT_STACK_CAPACITY;
    }
    for (uint64_t i = 0; i < count; i++) {
        bytes[i] = __atomic_load_n(&alloc_totals[i].bytes, __ATOMIC_RELAXED);
        allocs[i] = __atomic_load_n(&alloc_totals[i].allocs, __ATOMIC_RELAXED);
    }
    return count;
}
