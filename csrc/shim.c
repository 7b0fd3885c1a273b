/* cgo-audit shim: an LD_PRELOAD library that counts the live C heap exactly.
 *
 * Every allocation entry point is interposed; the requested size of each
 * live block is kept in a side table (pointer_map.h), so frees are exact and
 * frees of pointers never seen are ignored. Counters live in a MAP_SHARED
 * file (cgo_audit_region.h) because Go exits through a raw exit_group: no
 * destructor would ever get to write them out.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cgo_audit_api.h"
#include "pointer_map.h"
#include "shim_internal.h"
#include "spinlock.h"

_Static_assert(offsetof(struct cgo_audit_region, slots) % 64 == 0,
               "thread slots must start on a cache line");
_Static_assert(sizeof(struct cgo_audit_counters) == 64, "one thread slot is one cache line");

#define EXPORT __attribute__((visibility("default")))
#ifdef CGO_AUDIT_STATIC
/* Linked into a static executable with ld --wrap=NAME for each entry point
 * (static_link.h): the program's calls to NAME reach __wrap_NAME, and
 * __real_NAME is libc's own. */
#define ENTRY(name) __wrap_##name
#else
#define ENTRY(name) name
#endif
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- the real allocator ------------------------------------------------ */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static size_t (*real_malloc_usable_size)(void *);
static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

/* ---- bootstrap: dlsym() allocates before the real allocator is known ---- */

/* Served bump-style; each block carries its size in a 16-byte prefix so a
 * later realloc can copy it. Never given back: frees of these are ignored. */
static unsigned char bootstrap_buf[64 * 1024] __attribute__((aligned(16)));
static size_t bootstrap_used;
static uint64_t bootstrap_calls; /* the region's header.bootstrap_allocs */

static inline int is_bootstrap(const void *p)
{
    return (const unsigned char *)p >= bootstrap_buf &&
           (const unsigned char *)p < bootstrap_buf + sizeof bootstrap_buf;
}

static void *bootstrap_alloc(size_t size)
{
    size_t need = 16 + ((size + 15) & ~(size_t)15);
    size_t off = __atomic_fetch_add(&bootstrap_used, need, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bootstrap_calls, 1, __ATOMIC_RELAXED);
    if (need < size || off + need > sizeof bootstrap_buf) {
        errno = ENOMEM;
        return NULL;
    }
    unsigned char *block = bootstrap_buf + off;
    memcpy(block, &size, sizeof size);
    return block + 16;
}

static size_t bootstrap_size(const void *p)
{
    size_t size;
    memcpy(&size, (const unsigned char *)p - 16, sizeof size);
    return size;
}

/* ---- per-thread state --------------------------------------------------- */

struct thread_state {
    struct cgo_audit_counters *counters; /* NULL until this thread's first call */
    int64_t unflushed_bytes;             /* live-byte delta not yet in the global (peak) */
    int64_t sample_countdown;            /* sampled stacks: bytes until the next sample */
    int sampling;                        /* sample_countdown has been drawn */
    int slot;                            /* >0 owned; 0 the shared slot */
    int reentry;                         /* >0 inside the shim: nested calls pass through */
    int in_thread_create;
    int in_init;
};

static TLS struct thread_state tls;

/* ---- the region --------------------------------------------------------- */

static struct cgo_audit_region *region;
static char region_path[4096];
static int region_is_file;

enum { INIT_NONE = 0, INIT_RUNNING = 1, INIT_DONE = 2 };
static int init_state;

/* ---- thread slots ------------------------------------------------------- */

/* Released slots go on a free list so thread pools that churn threads do not
 * run out; the totals a slot holds stay in it, so the sums remain exact. */
static int slot_free_list[CGO_AUDIT_MAX_SLOTS];
static int slot_free_count;
static int slot_lock;
static pthread_key_t slot_key;
static int slot_key_ready;

TLS int shim_forking; /* see spinlock.h: the one "this thread is forking" flag */

static void spin_lock(int *lock)
{
    lock_unless_forking(lock);
}

static void spin_unlock(int *lock)
{
    unlock_unless_forking(lock);
}

static void flush_peak_delta(void);

static void release_slot(void *unused)
{
    (void)unused;
    if (region == NULL || tls.counters == NULL) {
        return;
    }
    flush_peak_delta();
    int slot = tls.slot;
    tls.counters = NULL;
    tls.slot = 0;
    if (slot > 0) {
        spin_lock(&slot_lock);
        slot_free_list[slot_free_count++] = slot;
        spin_unlock(&slot_lock);
    }
}

static struct cgo_audit_counters *acquire_slot(void)
{
    int slot = 0;
    spin_lock(&slot_lock);
    if (slot_free_count > 0) {
        slot = slot_free_list[--slot_free_count];
    } else if (region->header.slots_in_use + 1 < CGO_AUDIT_MAX_SLOTS) {
        slot = (int)__atomic_add_fetch(&region->header.slots_in_use, 1, __ATOMIC_RELEASE);
    }
    spin_unlock(&slot_lock);
    tls.slot = slot;
    tls.counters = &region->slots[slot];
    if (slot_key_ready) {
        /* The key's destructor hands the slot back when the thread exits;
         * glibc may allocate for it, which must pass through uncounted. */
        tls.reentry++;
        pthread_setspecific(slot_key, (void *)1);
        tls.reentry--;
    }
    return tls.counters;
}

/* Slot 0 is shared by the threads that found no free slot: only there do
 * the counters need atomic read-modify-write. owned is tls.slot > 0, read
 * once by the caller: the compiler cannot tell a counter store from a store
 * to tls, and would read tls.slot again after each. */
static inline void bump(uint64_t *field, uint64_t delta, int owned)
{
    if (LIKELY(owned)) {
        __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(field, delta, __ATOMIC_RELAXED);
    }
}

/* ---- peak --------------------------------------------------------------- */

/* The peak needs a global sum, but an atomic add on every call would cost
 * more than the rest of the shim. Each thread keeps its own unflushed delta
 * and adds it to the global only when its view could make a new peak, or
 * when the delta passes PEAK_FLUSH_BYTES. One thread's peak is therefore
 * exact; with several, it can be low by at most (threads - 1) flush sizes. */
#define PEAK_FLUSH_BYTES (1 << 20)

static void flush_peak_delta(void)
{
    int64_t delta = tls.unflushed_bytes;
    tls.unflushed_bytes = 0;
    int64_t now = __atomic_add_fetch(&region->header.global_live_bytes, delta, __ATOMIC_RELAXED);
    int64_t peak = __atomic_load_n(&region->header.peak_live_bytes, __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&region->header.peak_live_bytes, &peak, now, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static inline void track_peak(int64_t delta)
{
    int64_t pending = tls.unflushed_bytes + delta;
    tls.unflushed_bytes = pending;
    if (delta > 0) {
        int64_t global = __atomic_load_n(&region->header.global_live_bytes, __ATOMIC_RELAXED);
        int64_t peak = __atomic_load_n(&region->header.peak_live_bytes, __ATOMIC_RELAXED);
        if (UNLIKELY(global + pending > peak || pending > PEAK_FLUSH_BYTES)) {
            flush_peak_delta();
        }
    } else if (UNLIKELY(pending < -PEAK_FLUSH_BYTES)) {
        flush_peak_delta();
    }
}

/* ---- accounting --------------------------------------------------------- */

__attribute__((always_inline)) static inline void count_alloc(uint64_t size, unsigned tag)
{
    struct cgo_audit_counters *c = LIKELY(tls.counters != NULL) ? tls.counters : acquire_slot();
    int owned = tls.slot > 0;
    bump(&c->allocs, 1, owned);
    bump(&c->alloc_bytes, size, owned);
    if (UNLIKELY(tag != CGO_AUDIT_TAG_NONE)) {
        if (tag == CGO_AUDIT_TAG_THREAD_START) {
            bump(&c->thread_start_allocs, 1, owned);
            bump(&c->thread_start_alloc_bytes, size, owned);
        } else {
            shim_stack_count(region, tag, (int64_t)size, 1);
        }
    }
    track_peak((int64_t)size);
}

__attribute__((always_inline)) static inline void count_free(uint64_t meta)
{
    struct cgo_audit_counters *c = LIKELY(tls.counters != NULL) ? tls.counters : acquire_slot();
    uint64_t size = pmap_meta_size(meta);
    unsigned tag = pmap_meta_tag(meta);
    int owned = tls.slot > 0;
    bump(&c->frees, 1, owned);
    bump(&c->free_bytes, size, owned);
    if (UNLIKELY(tag != CGO_AUDIT_TAG_NONE)) {
        if (tag == CGO_AUDIT_TAG_THREAD_START) {
            bump(&c->thread_start_frees, 1, owned);
            bump(&c->thread_start_free_bytes, size, owned);
        } else {
            shim_stack_count(region, tag, -(int64_t)size, -1);
        }
    }
    track_peak(-(int64_t)size);
}

/* Sampled mode decides here, inline: most allocations are not sampled and
 * must not pay for a call into stacks.c. As with Go's MemProfileRate, an
 * allocation is sampled when the bytes allocated cross the next threshold. */
static int sample_slow(size_t size)
{
    if (!tls.sampling) { /* this thread's first allocation: draw its first gap */
        tls.sampling = 1;
        tls.sample_countdown = shim_stack_next_gap();
        if (tls.sample_countdown > (int64_t)size) {
            tls.sample_countdown -= (int64_t)size;
            return 0;
        }
    }
    tls.sample_countdown = shim_stack_next_gap();
    return 1;
}

static inline int take_sample(size_t size)
{
    if (LIKELY(tls.sample_countdown > (int64_t)size)) {
        tls.sample_countdown -= (int64_t)size;
        return 0;
    }
    return sample_slow(size);
}

/* Decided before the real call, so that a stack is taken from the caller.
 * Blocks made inside pthread_create, or by the Go runtime's thread-start
 * code, belong to the thread, not to the user's code. */
static inline unsigned origin_tag(size_t size, uintptr_t caller)
{
    if (UNLIKELY(tls.in_thread_create) || UNLIKELY(caller - shim_thread_start_lo < shim_thread_start_span)) {
        return CGO_AUDIT_TAG_THREAD_START;
    }
    if (UNLIKELY(shim_stacks_enabled)) {
        if (shim_stacks_enabled == CGO_AUDIT_STACKS_SAMPLED && !take_sample(size)) {
            return CGO_AUDIT_TAG_NONE;
        }
        return shim_stack_capture(region);
    }
    return CGO_AUDIT_TAG_NONE;
}

__attribute__((always_inline)) static inline void record_alloc(void *p, size_t size, unsigned tag)
{
    if (UNLIKELY(size > PMAP_SIZE_MASK) || UNLIKELY(!pmap_insert((uintptr_t)p, pmap_meta(size, tag)))) {
        __atomic_fetch_add(&region->header.untracked_allocs, 1, __ATOMIC_RELAXED);
        return;
    }
    count_alloc(size, tag);
}

static void record_failure(void)
{
    __atomic_fetch_add(&region->header.failed_allocs, 1, __ATOMIC_RELAXED);
}

/* Forgets p before the real free, so a racing malloc handed the same address
 * never meets a stale entry. Returns 1 with its meta when p was recorded. */
static inline int forget(void *p, uint64_t *meta)
{
    if (LIKELY(pmap_remove((uintptr_t)p, meta))) {
        return 1;
    }
    __atomic_fetch_add(&region->header.ignored_frees, 1, __ATOMIC_RELAXED);
    return 0;
}

/* ---- initialisation ----------------------------------------------------- */

static void append(char *dst, size_t cap, size_t *len, const char *src)
{
    while (*src && *len + 1 < cap) {
        dst[(*len)++] = *src++;
    }
    dst[*len] = '\0';
}

static void append_uint(char *dst, size_t cap, size_t *len, uint64_t v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0 && *len + 1 < cap) {
        dst[(*len)++] = digits[--n];
    }
    dst[*len] = '\0';
}

static void read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    if (fd >= 0) {
        while (got + 1 < cap) {
            ssize_t n = read(fd, buf + got, cap - 1 - got);
            if (n <= 0) {
                break;
            }
            got += (size_t)n;
        }
        close(fd);
    }
    buf[got] = '\0';
}

/* Opens a fresh region file for this pid: generation g is the g-th program
 * image (exec) of the pid, so an exec never overwrites the image before it. */
static struct cgo_audit_region *create_region_file(const char *dir, uint32_t *generation)
{
    size_t size = sizeof(struct cgo_audit_region);
    for (uint32_t gen = 0; gen < 1000; gen++) {
        size_t len = 0;
        region_path[0] = '\0';
        append(region_path, sizeof region_path, &len, dir);
        append(region_path, sizeof region_path, &len, "/cgo-audit.");
        append_uint(region_path, sizeof region_path, &len, (uint64_t)getpid());
        append(region_path, sizeof region_path, &len, ".");
        append_uint(region_path, sizeof region_path, &len, gen);
        append(region_path, sizeof region_path, &len, ".region");
        int fd = open(region_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            if (errno == EEXIST) {
                continue;
            }
            return NULL;
        }
        if (ftruncate(fd, (off_t)size) != 0) {
            close(fd);
            unlink(region_path);
            return NULL;
        }
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (mem == MAP_FAILED) {
            unlink(region_path);
            return NULL;
        }
        *generation = gen;
        return (struct cgo_audit_region *)mem;
    }
    return NULL;
}

static struct cgo_audit_region *create_anonymous_region(void)
{
    void *mem = mmap(NULL, sizeof(struct cgo_audit_region), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return mem == MAP_FAILED ? NULL : (struct cgo_audit_region *)mem;
}

static void fill_header(struct cgo_audit_region *r, uint32_t generation, uint32_t flags)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->header.layout_version = CGO_AUDIT_LAYOUT_VERSION;
    r->header.header_size = sizeof(struct cgo_audit_header);
    r->header.region_size = sizeof(struct cgo_audit_region);
    r->header.pid = (int32_t)getpid();
    r->header.ppid = (int32_t)getppid();
    r->header.generation = generation;
    r->header.flags = flags;
    r->header.start_time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    r->header.max_slots = CGO_AUDIT_MAX_SLOTS;
    r->header.stack_capacity = CGO_AUDIT_STACK_CAPACITY;
    r->header.bootstrap_allocs = __atomic_load_n(&bootstrap_calls, __ATOMIC_RELAXED);
    pmap_span(&r->header.map_start, &r->header.map_end);
    ssize_t n = readlink("/proc/self/exe", r->header.exe, sizeof r->header.exe - 1);
    r->header.exe[n > 0 ? n : 0] = '\0';
    read_small_file("/proc/self/cmdline", r->header.cmdline, sizeof r->header.cmdline);
}

static void publish(struct cgo_audit_region *r)
{
    /* Readers check the magic: a region without it is still being made. */
    __atomic_store_n(&r->header.magic, (uint64_t)CGO_AUDIT_MAGIC, __ATOMIC_RELEASE);
}

static struct cgo_audit_region *open_region(const char *dir, uint32_t flags)
{
    uint32_t generation = 0;
    struct cgo_audit_region *r = NULL;
    region_is_file = 0;
    if (dir != NULL && dir[0] != '\0') {
        r = create_region_file(dir, &generation);
        region_is_file = r != NULL;
    }
    if (r == NULL) {
        r = create_anonymous_region();
    }
    if (r != NULL) {
        fill_header(r, generation, flags);
    }
    return r;
}

/* musl has no pvalloc: the shim's own (exported, so a program that calls it
 * links) is glibc's: whole pages, page-aligned, from memalign. */
static void *pvalloc_from_memalign(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = size == 0 ? page : (size + page - 1) & ~(page - 1);
    if (pages < size || real_memalign == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    return real_memalign(page, pages);
}

#ifdef CGO_AUDIT_STATIC
#include "static_link.h"
#else
static int resolve_all_in(void *scope)
{
    real_malloc = dlsym(scope, "malloc");
    real_calloc = dlsym(scope, "calloc");
    real_realloc = dlsym(scope, "realloc");
    real_free = dlsym(scope, "free");
    real_posix_memalign = dlsym(scope, "posix_memalign");
    real_aligned_alloc = dlsym(scope, "aligned_alloc");
    real_memalign = dlsym(scope, "memalign");
    real_valloc = dlsym(scope, "valloc");
    real_pvalloc = dlsym(scope, "pvalloc");
    if (real_pvalloc == NULL) {
        real_pvalloc = pvalloc_from_memalign;
    }
    real_malloc_usable_size = dlsym(scope, "malloc_usable_size");
    real_pthread_create = dlsym(scope, "pthread_create");
    /* memalign, valloc and pvalloc are optional (as heaptrack's
     * HOOK(..., Optional)): obsolete, and missing from some C libraries.
     * Without one, its wrapper fails with ENOMEM (pvalloc falls back above). */
    return real_malloc && real_calloc && real_realloc && real_free && real_posix_memalign &&
           real_aligned_alloc &&
           real_malloc_usable_size && real_pthread_create;
}

static int resolve_all(void)
{
    return resolve_all_in(RTLD_NEXT);
}
#endif

static void die(const char *msg, size_t len)
{
    ssize_t ignored = write(2, msg, len);
    (void)ignored;
    _exit(127);
}

static void init_slow(void)
{
    int expected = INIT_NONE;
    if (__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        tls.in_init = 1;
        if (!resolve_all()) {
            static const char msg[] = "cgo-audit shim: cannot resolve the real allocator\n";
            die(msg, sizeof msg - 1);
        }
        pmap_init(); /* without it every pointer takes the (correct, slower) hash path */
        region = open_region(getenv("CGO_AUDIT_DIR"), 0);
        if (region == NULL) {
            static const char msg[] = "cgo-audit shim: cannot map its counters region\n";
            die(msg, sizeof msg - 1);
        }
        pmap_bytes_counter = &region->header.table_bytes;
        shim_stack_init(region);
        publish(region);
        tls.in_init = 0;
        __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE) {
        sched_yield();
    }
}

/* Returns 1 when the call must bypass accounting: while dlsym runs, or when
 * the shim itself is the caller. The real allocator never calls back into
 * malloc, so only the shim's own calls into libc set tls.reentry. */
static inline int enter(void)
{
    if (UNLIKELY(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)) {
        if (tls.in_init) {
            return 1;
        }
        init_slow();
    }
    return UNLIKELY(tls.reentry != 0);
}

/* ---- fork: the child gets a region of its own --------------------------- */

static void fork_prepare(void)
{
    spin_lock(&slot_lock);
    pmap_lock_all();
    shim_stack_lock_all();
    shim_forking = 1;
}

static void fork_unlock_all(void)
{
    shim_forking = 0;
    shim_stack_unlock_all();
    pmap_unlock_all();
    spin_unlock(&slot_lock);
}

static void fork_parent(void)
{
    fork_unlock_all();
}

/* The child inherits the parent's heap, so its region starts as a copy of
 * the parent's: its own frees of inherited blocks then balance. */
static void fork_child(void)
{
    struct cgo_audit_region *parent = region;
    struct cgo_audit_region *child = open_region(region_is_file ? getenv("CGO_AUDIT_DIR") : NULL,
                                                 parent->header.flags | CGO_AUDIT_FLAG_FORKED_CHILD);
    if (child != NULL) {
        uint32_t generation = child->header.generation;
        memcpy(&child->header, &parent->header, sizeof parent->header);
        memcpy(child->slots, parent->slots, sizeof parent->slots);
        shim_stack_copy(child, parent);
        child->header.magic = 0;
        fill_header(child, generation, parent->header.flags | CGO_AUDIT_FLAG_FORKED_CHILD);
        region = child;
        pmap_bytes_counter = &child->header.table_bytes;
        tls.counters = tls.counters ? &child->slots[tls.slot] : NULL;
        publish(child);
        munmap(parent, sizeof *parent);
    }
    fork_unlock_all();
}

__attribute__((constructor)) static void shim_constructor(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE) {
        init_slow();
    }
    /* Registering may allocate: keep those calls out of the user's figures. */
    tls.reentry++;
    if (pthread_key_create(&slot_key, release_slot) == 0) {
        slot_key_ready = 1;
    }
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    tls.reentry--;
}

/* ---- interposed entry points -------------------------------------------- */

/* A real allocator call that may call back into an interposed entry point:
 * musl's calloc calls malloc, and its memalign, posix_memalign and valloc
 * call aligned_alloc, all through the PLT, so through the shim. The inner
 * call passes through uncounted; the outer one counts the block once. */
#define NESTED(call) (tls.reentry++, nested_result = (call), tls.reentry--, nested_result)

/* The shim's own calls between entry points go to these static versions,
 * never through the PLT: loaded by dlopen (in-process tests), the global
 * malloc would be glibc's. shim_malloc is inlined, as the accounting is:
 * not inlined, the accounting cost 4.0 ns a call instead of 3.2 (cmalloc). */
__attribute__((always_inline)) static inline void *shim_malloc(size_t size, uintptr_t caller)
{
    if (UNLIKELY(enter())) {
        return real_malloc ? real_malloc(size) : bootstrap_alloc(size);
    }
    unsigned tag = origin_tag(size, caller);
    void *p = real_malloc(size);
    if (LIKELY(p != NULL)) {
        record_alloc(p, size, tag);
    } else {
        record_failure();
    }
    return p;
}

EXPORT void *ENTRY(malloc)(size_t size)
{
    return shim_malloc(size, (uintptr_t)__builtin_return_address(0));
}

EXPORT void ENTRY(free)(void *p)
{
    if (p == NULL) {
        return;
    }
    if (UNLIKELY(enter())) {
        /* real_free is NULL only while dlsym runs: leaking one block is the safe choice */
        if (real_free != NULL && !is_bootstrap(p)) {
            real_free(p);
        }
        return;
    }
    /* A bootstrap block is never in the table: it is looked for only when
     * p is not found, off the common path. */
    uint64_t meta;
    if (LIKELY(pmap_remove((uintptr_t)p, &meta))) {
        count_free(meta);
    } else if (UNLIKELY(is_bootstrap(p))) {
        return;
    } else {
        __atomic_fetch_add(&region->header.ignored_frees, 1, __ATOMIC_RELAXED);
    }
    real_free(p);
}

EXPORT void *ENTRY(calloc)(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    if (UNLIKELY(enter())) {
        /* Static memory is already zero. */
        return real_calloc ? real_calloc(n, size) : bootstrap_alloc(bytes);
    }
    unsigned tag = origin_tag(bytes, 0);
    void *nested_result;
    void *p = NESTED(real_calloc(n, size));
    if (LIKELY(p != NULL)) {
        record_alloc(p, bytes, tag);
    } else {
        record_failure();
    }
    return p;
}

static void *shim_realloc(void *p, size_t size)
{
    if (p == NULL) {
        return shim_malloc(size, 0);
    }
    if (UNLIKELY(is_bootstrap(p))) {
        size_t old = bootstrap_size(p);
        void *q = shim_malloc(size, 0);
        if (q != NULL) {
            memcpy(q, p, old < size ? old : size);
        }
        return q;
    }
    if (UNLIKELY(enter())) {
        if (real_realloc == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        return real_realloc(p, size);
    }
    uint64_t old_meta = 0;
    int known = forget(p, &old_meta);
    /* A thread's TLS block keeps its origin when glibc resizes it later. */
    unsigned old_tag = known ? pmap_meta_tag(old_meta) : CGO_AUDIT_TAG_NONE;
    unsigned tag = old_tag == CGO_AUDIT_TAG_THREAD_START ? old_tag : origin_tag(size, 0);
    void *q = real_realloc(p, size);
    if (q == NULL && size != 0) {
        /* The block is untouched: put it back as it was. */
        if (known) {
            pmap_insert((uintptr_t)p, old_meta);
        }
        record_failure();
        return NULL;
    }
    /* Success, or realloc(p, 0), which glibc answers by freeing p. */
    if (known) {
        count_free(old_meta);
    }
    if (q != NULL) {
        record_alloc(q, size, tag);
    }
    return q;
}

EXPORT void *ENTRY(realloc)(void *p, size_t size)
{
    return shim_realloc(p, size);
}

EXPORT void *ENTRY(reallocarray)(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return shim_realloc(p, bytes);
}

/* The aligned family: glibc validates the alignment (EINVAL); the shim
 * records the requested size on success. real is NULL only while dlsym runs. */
#define ALIGNED_ENTRY(real, args, bytes) \
    if (UNLIKELY(enter() || real == NULL)) { \
        if (real == NULL) {              \
            errno = ENOMEM;              \
            return NULL;                 \
        }                                \
        return real args;                \
    }                                    \
    unsigned tag = origin_tag(bytes, 0); \
    void *nested_result;                 \
    void *p = NESTED(real args);         \
    if (p != NULL) {                     \
        record_alloc(p, bytes, tag);     \
    } else {                             \
        record_failure();                \
    }                                    \
    return p;

EXPORT void *ENTRY(aligned_alloc)(size_t alignment, size_t size)
{
    ALIGNED_ENTRY(real_aligned_alloc, (alignment, size), size)
}

EXPORT void *ENTRY(memalign)(size_t alignment, size_t size)
{
    ALIGNED_ENTRY(real_memalign, (alignment, size), size)
}

EXPORT void *ENTRY(valloc)(size_t size)
{
    ALIGNED_ENTRY(real_valloc, (size), size)
}

EXPORT void *ENTRY(pvalloc)(size_t size)
{
    ALIGNED_ENTRY(real_pvalloc, (size), size)
}

EXPORT int ENTRY(posix_memalign)(void **out, size_t alignment, size_t size)
{
    if (UNLIKELY(enter())) {
        return real_posix_memalign ? real_posix_memalign(out, alignment, size) : ENOMEM;
    }
    unsigned tag = origin_tag(size, 0);
    int nested_result;
    int rc = NESTED(real_posix_memalign(out, alignment, size));
    if (rc == 0) {
        record_alloc(*out, size, tag);
    } else {
        record_failure();
    }
    return rc;
}

/* No header is added to blocks, so glibc's answer stays the true one. */
EXPORT size_t ENTRY(malloc_usable_size)(void *p)
{
    if (p != NULL && is_bootstrap(p)) {
        return bootstrap_size(p);
    }
    if (real_malloc_usable_size == NULL) {
        init_slow();
    }
    return real_malloc_usable_size(p);
}

/* Blocks glibc allocates inside pthread_create (the new thread's TLS and
 * DTV) live as long as the thread: the runtime's, not the caller's leak. */
EXPORT int ENTRY(pthread_create)(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
                          void *arg)
{
    if (real_pthread_create == NULL) {
        init_slow();
    }
    tls.in_thread_create++;
    int rc = real_pthread_create(thread, attr, start, arg);
    tls.in_thread_create--;
    return rc;
}

/* ---- exported readers --------------------------------------------------- */

EXPORT const struct cgo_audit_region *cgo_audit_region(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE) {
        init_slow();
    }
    return region;
}

EXPORT int cgo_audit_region_path(char *buf, size_t len)
{
    cgo_audit_region();
    size_t n = strlen(region_path);
    if (!region_is_file || n + 1 > len) {
        return -1;
    }
    memcpy(buf, region_path, n + 1);
    return (int)n;
}

EXPORT void cgo_audit_read_totals(struct cgo_audit_counters *out)
{
    const struct cgo_audit_region *r = cgo_audit_region();
    memset(out, 0, sizeof *out);
    uint32_t used = __atomic_load_n(&r->header.slots_in_use, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i <= used && i < CGO_AUDIT_MAX_SLOTS; i++) {
        const struct cgo_audit_counters *c = &r->slots[i];
        out->allocs += __atomic_load_n(&c->allocs, __ATOMIC_RELAXED);
        out->frees += __atomic_load_n(&c->frees, __ATOMIC_RELAXED);
        out->alloc_bytes += __atomic_load_n(&c->alloc_bytes, __ATOMIC_RELAXED);
        out->free_bytes += __atomic_load_n(&c->free_bytes, __ATOMIC_RELAXED);
        out->thread_start_allocs += __atomic_load_n(&c->thread_start_allocs, __ATOMIC_RELAXED);
        out->thread_start_frees += __atomic_load_n(&c->thread_start_frees, __ATOMIC_RELAXED);
        out->thread_start_alloc_bytes += __atomic_load_n(&c->thread_start_alloc_bytes, __ATOMIC_RELAXED);
        out->thread_start_free_bytes += __atomic_load_n(&c->thread_start_free_bytes, __ATOMIC_RELAXED);
    }
}

/* ---- attach mode (attach.c) --------------------------------------------- */

/* A static executable is built with the shim inside: nothing to attach. */
#ifndef CGO_AUDIT_STATIC

#define HOOK_ALIAS(name) extern __typeof(name) shim_hook_##name __attribute__((alias(#name), copy(name)));
HOOK_ALIAS(malloc)
HOOK_ALIAS(free)
HOOK_ALIAS(calloc)
HOOK_ALIAS(realloc)
HOOK_ALIAS(reallocarray)
HOOK_ALIAS(posix_memalign)
HOOK_ALIAS(aligned_alloc)
HOOK_ALIAS(memalign)
HOOK_ALIAS(valloc)
HOOK_ALIAS(pvalloc)
HOOK_ALIAS(pthread_create)

int shim_attach_region(const char *dir, uint32_t flags)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE) {
        init_slow();
    }
    /* Loaded by dlopen, RTLD_NEXT names the allocator after the shim in its
     * own scope (libc's), but the program's slots point at the global one,
     * which may be another allocator linked into the executable. Its blocks
     * must go back to it. */
    tls.reentry++;
    int resolved = resolve_all_in(RTLD_DEFAULT);
    tls.reentry--;
    if (!resolved) {
        errno = ENOENT;
        return -1;
    }
    uint32_t generation = 0;
    struct cgo_audit_region *old = region;
    struct cgo_audit_region *fresh = create_region_file(dir, &generation);
    if (fresh == NULL) {
        return -1;
    }
    uint32_t slots = __atomic_load_n(&old->header.slots_in_use, __ATOMIC_ACQUIRE);
    /* The new file takes the old region's place in one step: a thread that
     * counts meanwhile writes to one or the other, never to unmapped memory. */
    void *moved = mremap(fresh, sizeof *fresh, sizeof *fresh, MREMAP_MAYMOVE | MREMAP_FIXED, old);
    if (moved == MAP_FAILED) {
        int saved = errno;
        munmap(fresh, sizeof *fresh);
        unlink(region_path);
        errno = saved;
        return -1;
    }
    region_is_file = 1;
    fill_header(region, generation, flags);
    region->header.slots_in_use = slots; /* threads keep the slots they hold */
    return 0;
}

void shim_attach_publish(void)
{
    publish(region);
}
#endif /* CGO_AUDIT_STATIC */
