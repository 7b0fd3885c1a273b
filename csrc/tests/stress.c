/* Multi-threaded exactness check for the shim, run under LD_PRELOAD.
 *
 * THREADS threads each perform OPS random operations over every interposed
 * entry point, handing some blocks to other threads to free (Go's cgo calls
 * hop between OS threads the same way). At the end the program knows exactly
 * which blocks it still holds; it prints those figures beside the shim's own
 * (via dlsym, so it does not link against the shim) as one JSON line.
 *
 * usage: stress THREADS OPS SEED
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h> /* memalign, valloc */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgo_audit_api.h"

#define HELD_MAX 512
#define MAILBOX 4096

struct block {
    void *ptr;
    size_t size;
};

struct worker {
    pthread_t thread;
    uint64_t rng;
    long ops;
    struct block held[HELD_MAX];
    int held_count;
    long failures;
};

/* Blocks in transit between threads: freed by whichever thread takes them. */
static struct block mailbox[MAILBOX];
static int mailbox_count;
static pthread_mutex_t mailbox_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static size_t random_size(uint64_t *rng)
{
    switch (next_random(rng) % 8) {
    case 0:
        return 0;
    case 1:
        return 1 + next_random(rng) % 16;
    case 2:
        return 1 + next_random(rng) % 4096;
    case 3:
        return 1 + next_random(rng) % (256 * 1024); /* crosses glibc's mmap threshold */
    default:
        return 1 + next_random(rng) % 256;
    }
}

static void keep(struct worker *w, void *ptr, size_t size)
{
    if (ptr == NULL) {
        w->failures++;
        return;
    }
    if (size > 0) {
        memset(ptr, 0xab, size < 64 ? size : 64); /* touch it, as a program would */
    }
    w->held[w->held_count].ptr = ptr;
    w->held[w->held_count].size = size;
    w->held_count++;
}

static struct block take(struct worker *w, int index)
{
    struct block b = w->held[index];
    w->held[index] = w->held[--w->held_count];
    return b;
}

static void allocate(struct worker *w)
{
    size_t size = random_size(&w->rng);
    void *ptr = NULL;
    size_t align = (size_t)16 << (next_random(&w->rng) % 8);
    switch (next_random(&w->rng) % 8) {
    case 1:
        if (posix_memalign(&ptr, align, size) != 0) {
            ptr = NULL;
        }
        break;
    case 2:
        ptr = aligned_alloc(align, (size + align - 1) / align * align);
        size = (size + align - 1) / align * align;
        break;
    case 3:
        ptr = memalign(align, size);
        break;
    case 4:
        ptr = valloc(size);
        break;
    default:
        ptr = malloc(size);
        break;
    }
    keep(w, ptr, size);
}

/* calloc needs its own path: the held size must be nmemb * size exactly. */
static void allocate_calloc(struct worker *w)
{
    size_t nmemb = 1 + next_random(&w->rng) % 8;
    size_t each = next_random(&w->rng) % 512;
    keep(w, calloc(nmemb, each), nmemb * each);
}

static void resize(struct worker *w)
{
    if (w->held_count == 0) {
        return;
    }
    int index = (int)(next_random(&w->rng) % (uint64_t)w->held_count);
    size_t size = 1 + random_size(&w->rng);
    void *moved;
    if (next_random(&w->rng) % 2) {
        moved = realloc(w->held[index].ptr, size);
    } else {
        moved = reallocarray(w->held[index].ptr, 1, size);
    }
    if (moved == NULL) {
        w->failures++; /* the old block is still held */
        return;
    }
    w->held[index].ptr = moved;
    w->held[index].size = size;
}

static void release(struct worker *w)
{
    if (w->held_count == 0) {
        return;
    }
    struct block b = take(w, (int)(next_random(&w->rng) % (uint64_t)w->held_count));
    if (next_random(&w->rng) % 4 == 0) {
        pthread_mutex_lock(&mailbox_lock);
        if (mailbox_count < MAILBOX) {
            mailbox[mailbox_count++] = b;
            b.ptr = NULL;
        }
        pthread_mutex_unlock(&mailbox_lock);
    }
    free(b.ptr);
}

static void free_from_mailbox(void)
{
    struct block b = {NULL, 0};
    pthread_mutex_lock(&mailbox_lock);
    if (mailbox_count > 0) {
        b = mailbox[--mailbox_count];
    }
    pthread_mutex_unlock(&mailbox_lock);
    free(b.ptr);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < w->ops; i++) {
        uint64_t choice = next_random(&w->rng) % 16;
        if (choice < 5 && w->held_count < HELD_MAX) {
            allocate(w);
        } else if (choice < 7 && w->held_count < HELD_MAX) {
            allocate_calloc(w);
        } else if (choice < 9) {
            resize(w);
        } else if (choice < 10) {
            free_from_mailbox();
        } else if (choice < 11) {
            free(NULL);
        } else {
            release(w);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 16;
    long ops = argc > 2 ? atol(argv[2]) : 100000;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    void (*read_totals)(struct cgo_audit_counters *) =
        (void (*)(struct cgo_audit_counters *))dlsym(RTLD_DEFAULT, "cgo_audit_read_totals");
    if (read_totals == NULL || threads < 1 || threads > 256) {
        fprintf(stderr, "stress: run under LD_PRELOAD=libcgoaudit.so with 1..256 threads\n");
        return 2;
    }
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    struct cgo_audit_counters before, after;
    read_totals(&before);
    for (int t = 0; t < threads; t++) {
        workers[t].rng = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)t + 1;
        workers[t].ops = ops;
        pthread_create(&workers[t].thread, NULL, run, &workers[t]);
    }
    uint64_t held_bytes = 0, held_allocs = 0;
    long failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        for (int i = 0; i < workers[t].held_count; i++) {
            held_bytes += workers[t].held[i].size;
            held_allocs++;
        }
        failures += workers[t].failures;
    }
    for (int i = 0; i < mailbox_count; i++) {
        held_bytes += mailbox[i].size;
        held_allocs++;
    }
    read_totals(&after);
    int64_t user_before = (int64_t)(before.alloc_bytes - before.free_bytes) -
                          (int64_t)(before.thread_start_alloc_bytes - before.thread_start_free_bytes);
    int64_t user_after = (int64_t)(after.alloc_bytes - after.free_bytes) -
                         (int64_t)(after.thread_start_alloc_bytes - after.thread_start_free_bytes);
    int64_t allocs_before = (int64_t)(before.allocs - before.frees) -
                            (int64_t)(before.thread_start_allocs - before.thread_start_frees);
    int64_t allocs_after = (int64_t)(after.allocs - after.frees) -
                           (int64_t)(after.thread_start_allocs - after.thread_start_frees);
    printf("{\"threads\": %d, \"ops\": %ld, \"held_bytes\": %llu, \"held_allocs\": %llu, "
           "\"shim_live_bytes\": %lld, \"shim_live_allocs\": %lld, \"failures\": %ld, "
           "\"total_allocs\": %llu, \"total_frees\": %llu}\n",
           threads, ops, (unsigned long long)held_bytes, (unsigned long long)held_allocs,
           (long long)(user_after - user_before), (long long)(allocs_after - allocs_before), failures,
           (unsigned long long)(after.allocs - before.allocs),
           (unsigned long long)(after.frees - before.frees));
    return (uint64_t)(user_after - user_before) == held_bytes &&
                   (uint64_t)(allocs_after - allocs_before) == held_allocs
               ? 0
               : 1;
}
