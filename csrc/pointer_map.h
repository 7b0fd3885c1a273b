/* The shim's side table: live pointer -> (requested size, tag).
 *
 * Fast path, for blocks under PMAP_DIRECT_BELOW bytes: a two-level direct
 * map keyed by ptr >> 4. Every allocator the shim sits in front of returns
 * 16-byte aligned blocks for all but the smallest sizes, and two live
 * 16-aligned blocks never share a key, so a slot has one writer at a time
 * and needs no lock and no atomic RMW (a free is ordered after its malloc by
 * the program itself). A slot costs 8 bytes per 16 of address space, so the
 * map suits small, dense blocks; larger blocks (where a 32-byte hash entry
 * is a small share), 8-aligned blocks, addresses above 2^47 and a map that
 * could not grow go to a sharded hash table, under spinlocks held only for
 * the probe. Looking a large block up in the map first is free: an untouched
 * page of it reads as the kernel's zero page.
 *
 * All memory comes from one reserved mapping, fenced by PROT_NONE pages so
 * the kernel never merges it with the program's own memory: the harness
 * subtracts that mapping's RSS from the target's.
 */
#ifndef CGO_AUDIT_POINTER_MAP_H
#define CGO_AUDIT_POINTER_MAP_H

#include <stdint.h>

/* Internal to the shim: reached without the GOT, never exported. */
#pragma GCC visibility push(hidden)

#define PMAP_KEY_SHIFT 4
#define PMAP_ADDRESS_BITS 47
#define PMAP_LEAF_BITS 20
#define PMAP_TOP_BITS (PMAP_ADDRESS_BITS - PMAP_KEY_SHIFT - PMAP_LEAF_BITS)
#define PMAP_VALID (UINT64_C(1) << 63)
#define PMAP_SIZE_BITS 48
#define PMAP_SIZE_MASK ((UINT64_C(1) << PMAP_SIZE_BITS) - 1)
#define PMAP_TAG_MASK UINT64_C(0x7fff)
#define PMAP_DIRECT_BELOW 128

/* Set up once by pmap_init(); read-only afterwards. */
extern uint64_t **pmap_top;

/* Slow paths, in pointer_map.c. */
int pmap_init(void);
int pmap_insert_slow(uintptr_t ptr, uint64_t meta);
int pmap_remove_slow(uintptr_t ptr, uint64_t *meta);
void pmap_lock_all(void);
void pmap_unlock_all(void);
void pmap_span(uint64_t *start, uint64_t *end);
/* Forgets every pointer (a new attach: blocks recorded by the last one are
 * not the new region's). Only while no thread can be inside the shim. */
void pmap_clear(void);
extern int pmap_overflow_used;
/* Where the overflow table's memory is counted (the region's table_bytes). */
extern uint64_t *pmap_bytes_counter;

static inline uint64_t pmap_meta(uint64_t size, unsigned tag)
{
    return PMAP_VALID | ((uint64_t)(tag & PMAP_TAG_MASK) << PMAP_SIZE_BITS) | size;
}

static inline uint64_t pmap_meta_size(uint64_t meta)
{
    return meta & PMAP_SIZE_MASK;
}

static inline unsigned pmap_meta_tag(uint64_t meta)
{
    return (unsigned)((meta >> PMAP_SIZE_BITS) & PMAP_TAG_MASK);
}

static inline int pmap_direct(uintptr_t ptr)
{
    return (ptr & 15) == 0 && (ptr >> PMAP_ADDRESS_BITS) == 0;
}

/* The slot of a direct-mapped pointer, or NULL when its leaf is absent. */
static inline uint64_t *pmap_slot(uintptr_t ptr)
{
    uint64_t key = (uint64_t)ptr >> PMAP_KEY_SHIFT;
    uint64_t *leaf = __atomic_load_n(&pmap_top[key >> PMAP_LEAF_BITS], __ATOMIC_ACQUIRE);
    if (__builtin_expect(leaf == 0, 0)) {
        return 0;
    }
    return &leaf[key & ((UINT64_C(1) << PMAP_LEAF_BITS) - 1)];
}

/* Records ptr; returns 0 when there was no memory to record it in. */
static inline int pmap_insert(uintptr_t ptr, uint64_t meta)
{
    if (__builtin_expect(pmap_direct(ptr) && pmap_meta_size(meta) < PMAP_DIRECT_BELOW && pmap_top != 0, 1)) {
        uint64_t *slot = pmap_slot(ptr);
        if (__builtin_expect(slot != 0, 1)) {
            __atomic_store_n(slot, meta, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return pmap_insert_slow(ptr, meta);
}

/* Forgets ptr; returns 1 and its meta when it was recorded. */
static inline int pmap_remove(uintptr_t ptr, uint64_t *meta)
{
    if (__builtin_expect(pmap_direct(ptr) && pmap_top != 0, 1)) {
        uint64_t *slot = pmap_slot(ptr);
        if (__builtin_expect(slot != 0, 1)) {
            uint64_t value = __atomic_load_n(slot, __ATOMIC_RELAXED);
            if (__builtin_expect((value & PMAP_VALID) != 0, 1)) {
                __atomic_store_n(slot, 0, __ATOMIC_RELAXED);
                *meta = value;
                return 1;
            }
        }
    }
    if (!__atomic_load_n(&pmap_overflow_used, __ATOMIC_RELAXED)) {
        return 0;
    }
    return pmap_remove_slow(ptr, meta);
}

#pragma GCC visibility pop

#endif
