/* Layout of the shared counters region written by the cgo-audit shim.
 *
 * This header is the single definition of the region: the shim includes it,
 * and the Python reader hands the text between the CDEF markers to cffi's
 * cdef(). Keep that part to what cdef accepts: plain structs, fixed-width
 * integers, and #defines of integer literals (no attributes, no expressions).
 */
#ifndef CGO_AUDIT_REGION_H
#define CGO_AUDIT_REGION_H

#include <stdint.h>

/* CDEF-BEGIN */
#define CGO_AUDIT_MAGIC 0x544944554130474f
#define CGO_AUDIT_LAYOUT_VERSION 5

/* Counter slots. Slot 0 is shared (updated with atomic read-modify-write);
 * slots 1.. are each owned by one thread at a time, so the owner updates
 * them with plain stores and no cache line is contended. */
#define CGO_AUDIT_MAX_SLOTS 512

#define CGO_AUDIT_EXE_MAX 512
#define CGO_AUDIT_CMDLINE_MAX 1024

/* Region flags. */
#define CGO_AUDIT_FLAG_FORKED_CHILD 1
#define CGO_AUDIT_FLAG_STACKS 2
#define CGO_AUDIT_FLAG_ATTACHED 4     /* loaded by cgo-audit attach: counts from that moment */

/* Stack capture. Frames are return addresses, innermost first. */
#define CGO_AUDIT_STACK_DEPTH 64
#define CGO_AUDIT_STACK_CAPACITY 16384

/* Origin tags kept per allocation (the top 16 bits of a side-table entry).
 * Tags >= CGO_AUDIT_TAG_FIRST_STACK are an index into stacks[] plus
 * CGO_AUDIT_TAG_FIRST_STACK. */
#define CGO_AUDIT_TAG_NONE 0
#define CGO_AUDIT_TAG_THREAD_START 1
#define CGO_AUDIT_TAG_FIRST_STACK 2

/* Stack modes (CGO_AUDIT_STACKS). */
#define CGO_AUDIT_STACKS_OFF 0
#define CGO_AUDIT_STACKS_ALL 1
#define CGO_AUDIT_STACKS_SAMPLED 2

/* One thread slot: 64 bytes, one cache line. Every field only grows, so a
 * slot's owner can update it with plain stores; readers sum the slots and
 * take differences: live bytes = alloc_bytes - free_bytes, exactly. A
 * realloc counts as one free of the old block and one allocation. */
struct cgo_audit_counters {
    uint64_t allocs;
    uint64_t frees;
    uint64_t alloc_bytes;        /* requested sizes */
    uint64_t free_bytes;
    uint64_t thread_start_allocs;      /* the subset made inside pthread_create: */
    uint64_t thread_start_frees;       /* glibc's per-thread TLS blocks, which live */
    uint64_t thread_start_alloc_bytes; /* as long as their thread (the runtime's, */
    uint64_t thread_start_free_bytes;  /* not the user's) */
};

/* One distinct allocation stack, with the live heap it holds. */
struct cgo_audit_stack {
    uint64_t hash;               /* 0 = empty entry */
    uint32_t depth;
    uint32_t mode_flags;         /* 1: Go frames from the goroutine walk; 2: last frame is the go statement */
    uint64_t frames[CGO_AUDIT_STACK_DEPTH];
    int64_t live_bytes;
    int64_t live_allocs;
};

struct cgo_audit_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;        /* sizeof(struct cgo_audit_header) */
    uint64_t region_size;        /* bytes of the whole mapped file */
    int32_t pid;
    int32_t ppid;
    uint32_t generation;         /* n-th image (exec) of this pid that wrote a region */
    uint32_t flags;              /* CGO_AUDIT_FLAG_* */
    uint64_t start_time_ns;      /* CLOCK_REALTIME when the region was made */
    uint32_t slots_in_use;       /* high-water mark of thread slots handed out */
    uint32_t max_slots;
    uint32_t stack_mode;         /* CGO_AUDIT_STACKS_* */
    uint32_t stack_capacity;
    uint64_t sample_period_bytes; /* sampled mode: mean bytes between samples */
    int64_t peak_live_bytes;     /* high-water mark of the global live byte count */
    int64_t global_live_bytes;   /* the running total the peak is taken from */
    uint64_t ignored_frees;      /* frees/reallocs of pointers the shim never handed out */
    uint64_t bootstrap_allocs;   /* calls served from the static buffer during dlsym */
    uint64_t failed_allocs;      /* calls that returned NULL (or an error) */
    uint64_t untracked_allocs;   /* allocations the side table had no room for */
    uint64_t table_bytes;        /* memory the shim holds in its overflow hash table */
    uint64_t stacks_used;        /* distinct stacks stored */
    uint64_t stacks_dropped;     /* allocations whose stack did not fit in the table */
    uint64_t go_walks;           /* allocations attributed through the goroutine walk */
    uint64_t go_offsets[6];      /* tls_g, g_m, m_curg, g_sched, gobuf_bp, g_stack_hi (+1; 0 = unknown) */
    uint64_t map_start;          /* the shim's pointer-map reservation [start, end): */
    uint64_t map_end;            /* its RSS is the shim's, not the target's */
    uint64_t reserved[5];        /* pads the header to a whole number of cache lines */
    char exe[CGO_AUDIT_EXE_MAX];
    char cmdline[CGO_AUDIT_CMDLINE_MAX];   /* NUL-separated, like /proc/PID/cmdline */
};

struct cgo_audit_region {
    struct cgo_audit_header header;
    struct cgo_audit_counters slots[CGO_AUDIT_MAX_SLOTS];
    struct cgo_audit_stack stacks[CGO_AUDIT_STACK_CAPACITY];
};
/* CDEF-END */

#endif
