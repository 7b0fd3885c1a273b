/* Allocation stacks across the cgo boundary.
 *
 * glibc's backtrace() and libunwind stop at runtime.asmcgocall: Go emits no
 * usable unwind tables. But Go keeps frame pointers, and before it switches
 * to the system stack for a C call it saves the goroutine's BP in
 * g.sched.bp. So inside malloc the shim reads the current g from TLS (g0 of
 * this thread during a cgo call), follows g.m.curg.sched.bp and walks the
 * goroutine's frame-pointer chain within curg.stack. C frames between
 * malloc and asmcgocall are walked by frame pointer within g0.stack, so no
 * read ever leaves a stack the runtime knows the bounds of. Threads with no
 * g (made by C code) keep only malloc's immediate caller.
 *
 * The runtime's struct offsets differ between Go versions: the harness reads
 * them from the target's DWARF and passes them in CGO_AUDIT_GO_LAYOUT. Never
 * calls back into Go, and never calls anything that could allocate.
 *
 * Stacks are deduplicated into the region's stacks[] (dense, appended under a
 * lock) through a private hash index; each holds the live bytes of the
 * allocations tagged with it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

#include "arch.h"
#include "shim_internal.h"
#include "spinlock.h"

#define TLS __thread __attribute__((tls_model("initial-exec")))
#define INDEX_BITS 15
#define INDEX_SIZE (1u << INDEX_BITS)
#define FRAME_GO_WALK 1u          /* stack.mode_flags: Go frames came from the goroutine walk */
#define FRAME_GOPC 2u             /* ... and the last frame is the go statement's PC */
#define MAX_C_FRAME_BYTES (1u << 20)

_Static_assert(CGO_AUDIT_STACK_CAPACITY + CGO_AUDIT_TAG_FIRST_STACK <= 0x7fff,
               "stack tags must fit the side table's 15 tag bits");
_Static_assert(CGO_AUDIT_STACK_CAPACITY < INDEX_SIZE, "the index must be larger than the table");

int shim_stacks_enabled;

static int mode;
static uint64_t sample_period;

/* Offsets into the Go runtime's structures (bytes). */
static struct {
    int enabled;
    int64_t tls_g;          /* g's offset from the thread pointer */
    uint64_t g_m, m_curg, g_sched_bp, g_stack_lo, g_stack_hi, g_gopc;
    uint64_t thread_start_lo, thread_start_hi; /* x_cgo_thread_start, as linked (optional) */
} go;

uintptr_t shim_thread_start_lo, shim_thread_start_span;

/* The shim's own code: frames in it are skipped. */
static uintptr_t shim_text_lo, shim_text_hi;

static uint16_t stack_index[INDEX_SIZE]; /* stacks[] position + 1; 0 = empty */
static int table_lock;

static TLS struct {
    uint64_t rng;
} sampler;

/* The last few stacks this thread recorded: a loop allocates from the same
 * few, and a hit skips the hash and the shared index. Only the innermost and
 * outermost frames and the depth are kept here, and a hit is checked against
 * the frames stored in the region: a copy of every frame would make the
 * thread-local block too big for static TLS. */
#define RECENT 4
static TLS struct {
    uintptr_t first[RECENT], last[RECENT];
    unsigned depth[RECENT];
    int index[RECENT];
    struct cgo_audit_region *region[RECENT]; /* a fork gives the child a new region */
    unsigned next;
} recent;

static uint64_t parse_u64(const char *s, const char **end)
{
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    *end = s;
    return v;
}

/* CGO_AUDIT_GO_LAYOUT="tls_g=-8,g_m=48,m_curg=184,g_sched_bp=96,g_stack_lo=0,g_stack_hi=8,g_gopc=288" */
static void parse_layout(const char *text)
{
    struct {
        const char *name;
        uint64_t *field;
    } keys[] = {
        {"tls_g", (uint64_t *)&go.tls_g}, {"g_m", &go.g_m}, {"m_curg", &go.m_curg},
        {"g_sched_bp", &go.g_sched_bp}, {"g_stack_lo", &go.g_stack_lo}, {"g_stack_hi", &go.g_stack_hi},
        {"g_gopc", &go.g_gopc}, {"thread_start_lo", &go.thread_start_lo},
        {"thread_start_hi", &go.thread_start_hi},
    };
    const unsigned required = 7; /* the walk needs the first seven; the rest are optional */
    const unsigned count = sizeof keys / sizeof keys[0];
    unsigned seen = 0;
    while (text != NULL && *text) {
        const char *eq = strchr(text, '=');
        if (eq == NULL) {
            return;
        }
        int negative = eq[1] == '-';
        const char *end;
        uint64_t v = parse_u64(eq + 1 + negative, &end);
        for (unsigned i = 0; i < count; i++) {
            if (strlen(keys[i].name) == (size_t)(eq - text) && memcmp(text, keys[i].name, (size_t)(eq - text)) == 0) {
                *keys[i].field = negative ? (uint64_t)(-(int64_t)v) : v; /* only tls_g is ever negative */
                seen |= 1u << i;
            }
        }
        text = *end == ',' ? end + 1 : NULL;
    }
    go.enabled = (seen & ((1u << required) - 1)) == (1u << required) - 1;
}

/* The executable's load bias (0 unless it is position-independent). */
static uintptr_t executable_bias(void)
{
    const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long count = getauxval(AT_PHNUM);
    for (unsigned long i = 0; phdr != NULL && i < count; i++) {
        if (phdr[i].p_type == PT_PHDR) {
            return (uintptr_t)phdr - phdr[i].p_vaddr;
        }
    }
    return 0;
}

#ifdef CGO_AUDIT_STATIC
/* Linked into the executable (static_link.h): the shim's code is the
 * section cgo_audit_text, whose bounds the linker provides. */
extern const char __start_cgo_audit_text[] __attribute__((weak));
extern const char __stop_cgo_audit_text[] __attribute__((weak));

static void find_own_text(void)
{
    shim_text_lo = (uintptr_t)__start_cgo_audit_text;
    shim_text_hi = (uintptr_t)__stop_cgo_audit_text;
}
#else
/* The executable segment of the shim itself, from its own program headers. */
static void find_own_text(void)
{
    Dl_info info;
    if (!dladdr((void *)find_own_text, &info) || info.dli_fbase == NULL) {
        return;
    }
    const ElfW(Ehdr) *ehdr = info.dli_fbase;
    const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)((const char *)ehdr + ehdr->e_phoff);
    uintptr_t bias = (uintptr_t)info.dli_fbase;
    for (int i = 0; i < ehdr->e_phnum; i++) {
        if (phdr[i].p_type == PT_LOAD && (phdr[i].p_flags & PF_X)) {
            /* A shared object's lowest PT_LOAD has vaddr 0: base + vaddr. */
            shim_text_lo = bias + phdr[i].p_vaddr;
            shim_text_hi = shim_text_lo + phdr[i].p_memsz;
        }
    }
}
#endif

void shim_stack_init(struct cgo_audit_region *r)
{
    const char *period = getenv("CGO_AUDIT_SAMPLE_BYTES");
    const char *end;
    shim_stack_configure(r, getenv("CGO_AUDIT_STACKS"), period != NULL ? parse_u64(period, &end) : 0,
                         getenv("CGO_AUDIT_GO_LAYOUT"));
}

/* Attach mode: the settings come from the injector, and the table starts
 * again empty in a fresh region (r). The index holds positions in the old
 * region's table: it is emptied first. */
void shim_stack_reset(struct cgo_audit_region *r, const char *setting, uint64_t period, const char *layout)
{
    spin_acquire(&table_lock);
    memset(stack_index, 0, sizeof stack_index);
    spin_release(&table_lock);
    shim_export_reset(); /* the allocation totals start over with the table */
    memset(&go, 0, sizeof go);
    shim_stack_configure(r, setting, period, layout);
}

void shim_stack_configure(struct cgo_audit_region *r, const char *setting, uint64_t period, const char *layout)
{
    mode = CGO_AUDIT_STACKS_OFF;
    if (setting != NULL && strcmp(setting, "all") == 0) {
        mode = CGO_AUDIT_STACKS_ALL;
    } else if (setting != NULL && strcmp(setting, "sampled") == 0) {
        mode = CGO_AUDIT_STACKS_SAMPLED;
    }
    sample_period = period;
    if (sample_period == 0) {
        sample_period = 512 * 1024; /* Go's default MemProfileRate */
    }
    parse_layout(layout);
    if (go.thread_start_hi > go.thread_start_lo) {
        uintptr_t bias = executable_bias();
        shim_thread_start_lo = bias + go.thread_start_lo;
        shim_thread_start_span = go.thread_start_hi - go.thread_start_lo;
    }
    r->header.stack_mode = (uint32_t)mode;
    r->header.sample_period_bytes = mode == CGO_AUDIT_STACKS_SAMPLED ? sample_period : 0;
    r->header.stack_capacity = CGO_AUDIT_STACK_CAPACITY;
    if (go.enabled) {
        r->header.flags |= CGO_AUDIT_FLAG_STACKS;
        r->header.go_offsets[0] = (uint64_t)go.tls_g;
        r->header.go_offsets[1] = go.g_m;
        r->header.go_offsets[2] = go.m_curg;
        r->header.go_offsets[3] = go.g_sched_bp;
        r->header.go_offsets[4] = go.g_stack_hi;
        r->header.go_offsets[5] = go.g_gopc;
    }
    if (mode != CGO_AUDIT_STACKS_OFF) {
        find_own_text();
    }
    shim_stacks_enabled = mode;
}

/* ---- sampling (Go's MemProfileRate scheme) -------------------------------- */

static uint64_t next_random(void)
{
    if (sampler.rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sampler.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&sampler ^ 0x9E3779B97F4A7C15ULL;
    }
    uint64_t x = sampler.rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return sampler.rng = x;
}

/* Exponentially distributed gap with mean sample_period, without libm:
 * -ln(u) from the float's exponent and a short series for the mantissa. */
static int64_t next_gap(void)
{
    double u = (double)((next_random() >> 11) + 1) / 9007199254740993.0; /* (0, 1] */
    int exponent = 0;
    while (u < 0.5) {
        u *= 2;
        exponent++;
    }
    /* ln(u) for u in [0.5, 1): series of ln(1 - t), t = 1 - u <= 0.5. */
    double t = 1 - u, term = t, ln = 0;
    for (int k = 1; k < 40; k++) {
        ln -= term / k;
        term *= t;
    }
    double minus_ln = exponent * 0.6931471805599453 - ln;
    return (int64_t)(minus_ln * (double)sample_period) + 1;
}

int64_t shim_stack_next_gap(void)
{
    return next_gap();
}

/* ---- the walk ------------------------------------------------------------- */

static inline uintptr_t load(uintptr_t address)
{
    return *(const uintptr_t *)address;
}

static int in_shim(uintptr_t pc)
{
    return pc >= shim_text_lo && pc < shim_text_hi;
}

/* Fills frames (return addresses, innermost first); returns their number. */
static __attribute__((noinline)) unsigned walk(uintptr_t *frames, unsigned *flags)
{
    unsigned n = 0;
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    /* Our own frames always have frame pointers: climb out of the shim. */
    uintptr_t pc = load(fp + 8);
    while (in_shim(pc)) {
        uintptr_t next = load(fp);
        if (next <= fp || next - fp > MAX_C_FRAME_BYTES) {
            return 0;
        }
        fp = next;
        pc = load(fp + 8);
    }
    frames[n++] = pc; /* malloc's immediate caller: always known */
    uintptr_t g = go.enabled ? load(thread_pointer() + (uintptr_t)go.tls_g) : 0;
    if (g == 0) {
        return n; /* a thread Go never ran on: no bounds to walk within */
    }
    /* C frames, within this thread's system stack (g0 during a cgo call). */
    uintptr_t lo = load(g + go.g_stack_lo), hi = load(g + go.g_stack_hi);
    uintptr_t next = load(fp);
    while (n < CGO_AUDIT_STACK_DEPTH && next > fp && next >= lo && next + 16 <= hi && (next & 7) == 0) {
        fp = next;
        pc = load(fp + 8);
        if (pc == 0) {
            break;
        }
        frames[n++] = pc;
        next = load(fp);
    }
    /* Go frames, from the goroutine that made the cgo call. */
    uintptr_t m = load(g + go.g_m);
    uintptr_t curg = m ? load(m + go.m_curg) : 0;
    if (curg == 0 || curg == g) {
        return n;
    }
    lo = load(curg + go.g_stack_lo);
    hi = load(curg + go.g_stack_hi);
    uintptr_t bp = load(curg + go.g_sched_bp);
    while (n < CGO_AUDIT_STACK_DEPTH - 1 && bp >= lo && bp + 16 <= hi && (bp & 7) == 0) {
        pc = load(bp + 8);
        if (pc == 0) {
            break;
        }
        frames[n++] = pc;
        uintptr_t up = load(bp);
        if (up <= bp) {
            break;
        }
        bp = up;
    }
    /* The go statement that started this goroutine, as its outermost frame. */
    *flags = FRAME_GO_WALK;
    uintptr_t gopc = load(curg + go.g_gopc);
    if (gopc != 0 && n < CGO_AUDIT_STACK_DEPTH) {
        frames[n++] = gopc;
        *flags |= FRAME_GOPC;
    }
    return n;
}

/* ---- the table ------------------------------------------------------------ */

/* Independent multiplies, one serial add per frame: the loop pipelines. */
static uint64_t hash_frames(const uintptr_t *frames, unsigned n)
{
    uint64_t h = n;
    for (unsigned i = 0; i < n; i++) {
        h += (uint64_t)frames[i] * (0x9E3779B97F4A7C15ULL + 2 * (uint64_t)i);
    }
    h ^= h >> 31;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 29;
    return h | 1; /* 0 marks an empty entry */
}

static inline int same_frames(const uintptr_t *a, const uintptr_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

static int same(const struct cgo_audit_stack *s, uint64_t h, const uintptr_t *frames, unsigned n)
{
    return s->hash == h && s->depth == n && same_frames((const uintptr_t *)s->frames, frames, n);
}

/* The position of this stack in r->stacks, added if new; -1 when full. */
static int find_or_add(struct cgo_audit_region *r, const uintptr_t *frames, unsigned n, unsigned flags,
                       uint64_t h)
{
    uint32_t slot = (uint32_t)h & (INDEX_SIZE - 1);
    for (;;) {
        uint16_t v = __atomic_load_n(&stack_index[slot], __ATOMIC_ACQUIRE);
        if (v == 0) {
            break;
        }
        if (same(&r->stacks[v - 1], h, frames, n)) {
            return v - 1;
        }
        slot = (slot + 1) & (INDEX_SIZE - 1);
    }
    lock_unless_forking(&table_lock);
    int found = -1;
    for (;;) { /* again, under the lock: another thread may have added it */
        uint16_t v = stack_index[slot];
        if (v == 0) {
            break;
        }
        if (same(&r->stacks[v - 1], h, frames, n)) {
            found = v - 1;
            break;
        }
        slot = (slot + 1) & (INDEX_SIZE - 1);
    }
    if (found < 0) {
        uint64_t used = r->header.stacks_used;
        if (used < CGO_AUDIT_STACK_CAPACITY) {
            struct cgo_audit_stack *s = &r->stacks[used];
            memcpy(s->frames, frames, n * sizeof frames[0]);
            s->depth = n;
            s->mode_flags = flags;
            __atomic_store_n(&s->hash, h, __ATOMIC_RELEASE);
            __atomic_store_n(&r->header.stacks_used, used + 1, __ATOMIC_RELEASE);
            __atomic_store_n(&stack_index[slot], (uint16_t)(used + 1), __ATOMIC_RELEASE);
            found = (int)used;
        }
    }
    unlock_unless_forking(&table_lock);
    return found;
}

unsigned shim_stack_capture(struct cgo_audit_region *r)
{
    uintptr_t frames[CGO_AUDIT_STACK_DEPTH];
    unsigned flags = 0;
    unsigned n = walk(frames, &flags);
    if (n == 0) {
        return CGO_AUDIT_TAG_NONE;
    }
    if (flags & FRAME_GO_WALK) {
        __atomic_fetch_add(&r->header.go_walks, 1, __ATOMIC_RELAXED);
    }
    for (unsigned i = 0; i < RECENT; i++) {
        if (recent.first[i] == frames[0] && recent.last[i] == frames[n - 1] && recent.depth[i] == n &&
            recent.region[i] == r && same_frames((const uintptr_t *)r->stacks[recent.index[i]].frames, frames, n)) {
            return (unsigned)recent.index[i] + CGO_AUDIT_TAG_FIRST_STACK;
        }
    }
    int index = find_or_add(r, frames, n, flags, hash_frames(frames, n));
    if (index < 0) {
        __atomic_fetch_add(&r->header.stacks_dropped, 1, __ATOMIC_RELAXED);
        return CGO_AUDIT_TAG_NONE;
    }
    unsigned slot = recent.next++ % RECENT;
    recent.first[slot] = frames[0];
    recent.last[slot] = frames[n - 1];
    recent.depth[slot] = n;
    recent.index[slot] = index;
    recent.region[slot] = r;
    return (unsigned)index + CGO_AUDIT_TAG_FIRST_STACK;
}

void shim_stack_count(struct cgo_audit_region *r, unsigned tag, int64_t bytes, int64_t allocs)
{
    struct cgo_audit_stack *s = &r->stacks[tag - CGO_AUDIT_TAG_FIRST_STACK];
    __atomic_fetch_add(&s->live_bytes, bytes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->live_allocs, allocs, __ATOMIC_RELAXED);
    if (allocs > 0) {
        shim_export_count_alloc(tag, (uint64_t)bytes);
    }
}

void shim_stack_lock_all(void)
{
    spin_acquire(&table_lock);
}

void shim_stack_unlock_all(void)
{
    spin_release(&table_lock);
}

void shim_stack_copy(struct cgo_audit_region *dst, const struct cgo_audit_region *src)
{
    uint64_t used = src->header.stacks_used;
    memcpy(dst->stacks, src->stacks, used * sizeof src->stacks[0]);
}
