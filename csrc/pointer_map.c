/* The side table's slow paths: leaf creation for the direct map and the
 * locked overflow hash table (see pointer_map.h). */
#define _GNU_SOURCE
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pointer_map.h"
#include "spinlock.h"

#define PAGE 4096
#define LEAF_BYTES ((size_t)8 << PMAP_LEAF_BITS)
#define TOP_BYTES ((size_t)8 << PMAP_TOP_BITS)
#define MAX_LEAVES 256
#define MIN_LEAVES 8

uint64_t **pmap_top;
int pmap_overflow_used;

static unsigned char *reservation;   /* guard | top | leaves | guard */
static size_t reservation_bytes;
static size_t leaves_reserved;
static size_t leaves_used;
static int leaf_lock;

static void *raw_mmap(size_t bytes, int prot, int flags)
{
    void *mem = (void *)syscall(SYS_mmap, NULL, bytes, prot, flags, -1, 0);
    return mem == MAP_FAILED ? NULL : mem;
}

static void lock(int *l)
{
    lock_unless_forking(l);
}

static void unlock(int *l)
{
    unlock_unless_forking(l);
}

int pmap_init(void)
{
    /* Virtual space only (MAP_NORESERVE): pages are paid for when touched.
     * Where the kernel refuses (a strict overcommit policy, RLIMIT_AS), ask
     * for fewer leaves; with none at all, everything takes the slow path. */
    for (size_t leaves = MAX_LEAVES; leaves >= MIN_LEAVES; leaves /= 2) {
        size_t bytes = 2 * PAGE + TOP_BYTES + leaves * LEAF_BYTES;
        unsigned char *mem = raw_mmap(bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
        if (mem == NULL) {
            continue;
        }
        if (syscall(SYS_mprotect, mem + PAGE, bytes - 2 * PAGE, PROT_READ | PROT_WRITE) != 0) {
            syscall(SYS_munmap, mem, bytes);
            continue;
        }
        reservation = mem;
        reservation_bytes = bytes;
        leaves_reserved = leaves;
        __atomic_store_n(&pmap_top, (uint64_t **)(mem + PAGE), __ATOMIC_RELEASE);
        return 1;
    }
    return 0;
}

void pmap_span(uint64_t *start, uint64_t *end)
{
    *start = (uint64_t)(uintptr_t)reservation;
    *end = (uint64_t)(uintptr_t)(reservation + reservation_bytes);
}

/* Returns the leaf for key, creating it; NULL when the reservation is spent. */
static uint64_t *leaf_for(uint64_t key)
{
    uint64_t top_index = key >> PMAP_LEAF_BITS;
    uint64_t *leaf = __atomic_load_n(&pmap_top[top_index], __ATOMIC_ACQUIRE);
    if (leaf != NULL) {
        return leaf;
    }
    lock(&leaf_lock);
    leaf = __atomic_load_n(&pmap_top[top_index], __ATOMIC_ACQUIRE);
    if (leaf == NULL && leaves_used < leaves_reserved) {
        leaf = (uint64_t *)(reservation + PAGE + TOP_BYTES + leaves_used * LEAF_BYTES);
        leaves_used++;
        __atomic_store_n(&pmap_top[top_index], leaf, __ATOMIC_RELEASE);
    }
    unlock(&leaf_lock);
    return leaf;
}

/* ---- overflow: sharded open addressing, backward-shift deletion ---------- */

uint64_t *pmap_bytes_counter;

static void count_bytes(int64_t delta)
{
    if (pmap_bytes_counter != NULL) {
        __atomic_fetch_add(pmap_bytes_counter, (uint64_t)delta, __ATOMIC_RELAXED);
    }
}

struct overflow_entry {
    uintptr_t ptr; /* 0 = empty */
    uint64_t meta;
};

struct overflow_shard {
    int lock;
    uint32_t shift; /* capacity = 1 << shift */
    uint64_t count;
    struct overflow_entry *entries;
    char pad[64 - sizeof(int) - sizeof(uint32_t) - sizeof(uint64_t) - sizeof(void *)];
};

#define SHARD_BITS 4
#define SHARD_COUNT (1 << SHARD_BITS)
#define INITIAL_SHIFT 8

static struct overflow_shard shards[SHARD_COUNT] __attribute__((aligned(64)));

static inline uint64_t hash_ptr(uintptr_t p)
{
    uint64_t h = (uint64_t)p >> 3;
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

static void put(struct overflow_entry *entries, uint64_t mask, uintptr_t ptr, uint64_t meta)
{
    uint64_t i = hash_ptr(ptr) & mask;
    while (entries[i].ptr != 0) {
        i = (i + 1) & mask;
    }
    entries[i].ptr = ptr;
    entries[i].meta = meta;
}

static int grow(struct overflow_shard *s)
{
    uint32_t shift = s->entries ? s->shift + 1 : INITIAL_SHIFT;
    struct overflow_entry *fresh = raw_mmap(sizeof(struct overflow_entry) << shift,
                                            PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (fresh == NULL) {
        return 0;
    }
    uint64_t mask = ((uint64_t)1 << shift) - 1;
    if (s->entries != NULL) {
        uint64_t old_capacity = (uint64_t)1 << s->shift;
        for (uint64_t i = 0; i < old_capacity; i++) {
            if (s->entries[i].ptr) {
                put(fresh, mask, s->entries[i].ptr, s->entries[i].meta);
            }
        }
        syscall(SYS_munmap, s->entries, sizeof(struct overflow_entry) * old_capacity);
        count_bytes(-(int64_t)(sizeof(struct overflow_entry) * old_capacity));
    }
    count_bytes((int64_t)(sizeof(struct overflow_entry) << shift));
    s->entries = fresh;
    s->shift = shift;
    return 1;
}

static int overflow_insert(uintptr_t ptr, uint64_t meta)
{
    struct overflow_shard *s = &shards[hash_ptr(ptr) >> (64 - SHARD_BITS)];
    int ok = 1;
    lock(&s->lock);
    if (s->entries == NULL || (s->count + 1) * 2 > ((uint64_t)1 << s->shift)) {
        ok = grow(s) || (s->entries != NULL && s->count + 1 < ((uint64_t)1 << s->shift));
    }
    if (ok) {
        put(s->entries, ((uint64_t)1 << s->shift) - 1, ptr, meta);
        s->count++;
        __atomic_store_n(&pmap_overflow_used, 1, __ATOMIC_RELAXED);
    }
    unlock(&s->lock);
    return ok;
}

static int overflow_remove(uintptr_t ptr, uint64_t *meta)
{
    uint64_t h = hash_ptr(ptr);
    struct overflow_shard *s = &shards[h >> (64 - SHARD_BITS)];
    int found = 0;
    lock(&s->lock);
    if (s->entries != NULL) {
        struct overflow_entry *e = s->entries;
        uint64_t mask = ((uint64_t)1 << s->shift) - 1;
        uint64_t i = h & mask;
        for (; e[i].ptr != 0; i = (i + 1) & mask) {
            if (e[i].ptr == ptr) {
                found = 1;
                *meta = e[i].meta;
                break;
            }
        }
        if (found) {
            /* Backward shift: later members of the chain move into the hole. */
            uint64_t hole = i;
            for (uint64_t j = (i + 1) & mask; e[j].ptr != 0; j = (j + 1) & mask) {
                uint64_t home = hash_ptr(e[j].ptr) & mask;
                int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
                if (movable) {
                    e[hole] = e[j];
                    hole = j;
                }
            }
            e[hole].ptr = 0;
            e[hole].meta = 0;
            s->count--;
        }
    }
    unlock(&s->lock);
    return found;
}

int pmap_insert_slow(uintptr_t ptr, uint64_t meta)
{
    if (pmap_direct(ptr) && pmap_meta_size(meta) < PMAP_DIRECT_BELOW && pmap_top != NULL) {
        uint64_t *leaf = leaf_for((uint64_t)ptr >> PMAP_KEY_SHIFT);
        if (leaf != NULL) {
            uint64_t key = (uint64_t)ptr >> PMAP_KEY_SHIFT;
            __atomic_store_n(&leaf[key & ((UINT64_C(1) << PMAP_LEAF_BITS) - 1)], meta, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return overflow_insert(ptr, meta);
}

int pmap_remove_slow(uintptr_t ptr, uint64_t *meta)
{
    return overflow_remove(ptr, meta);
}

/* fork(): the child must not inherit a shard locked mid-probe. */
void pmap_lock_all(void)
{
    lock(&leaf_lock);
    for (int i = 0; i < SHARD_COUNT; i++) {
        lock(&shards[i].lock);
    }
}

void pmap_unlock_all(void)
{
    for (int i = SHARD_COUNT - 1; i >= 0; i--) {
        unlock(&shards[i].lock);
    }
    unlock(&leaf_lock);
}

void pmap_clear(void)
{
    lock(&leaf_lock);
    if (leaves_used > 0) {
        /* Private anonymous pages read as zeros again: every entry is empty. */
        madvise(reservation + PAGE + TOP_BYTES, leaves_used * LEAF_BYTES, MADV_DONTNEED);
    }
    unlock(&leaf_lock);
    for (int i = 0; i < SHARD_COUNT; i++) {
        struct overflow_shard *s = &shards[i];
        lock(&s->lock);
        if (s->entries != NULL) {
            uint64_t bytes = sizeof(struct overflow_entry) << s->shift;
            syscall(SYS_munmap, s->entries, bytes);
            count_bytes(-(int64_t)bytes);
            s->entries = NULL;
            s->count = 0;
            s->shift = 0;
        }
        unlock(&s->lock);
    }
}
