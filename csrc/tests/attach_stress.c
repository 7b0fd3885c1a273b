/* Attach while it allocates: THREADS threads call every allocator entry
 * point without pause, on blocks they share through a mailbox, while the
 * test attaches the shim. Driven through stdin, one letter a line:
 *
 *   p  pause every thread, free every block held, answer "paused"
 *   r  resume
 *   s  pause, answer {"held_bytes":N,"held_blocks":M} (requested sizes)
 *   q  stop the threads and exit 0
 *
 * After "p" the program holds nothing, so whatever it holds at "s" was
 * allocated after the attach: the shim's live figures must have grown by
 * exactly that much between the two. Answers use write(2), never stdio,
 * so the program's own output never allocates.
 *
 * usage: attach_stress THREADS
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64
#define HELD_MAX 256

struct block {
    void *ptr;
    size_t size;
};

struct worker {
    pthread_t thread;
    uint64_t rng;
    struct block held[HELD_MAX];
    int held_count;
};

static struct worker workers[MAX_THREADS];
static int thread_count;
static int pause_requested;
static int paused;
static int quit;

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t pick_size(uint64_t r)
{
    switch (r % 8) {
    case 0: return 1 + r % 16;
    case 1: return 100 + r % 400;      /* past the direct map: the hash table */
    case 2: return 4096 + r % 20000;
    default: return 1 + r % 120;
    }
}

static void op(struct worker *w)
{
    uint64_t r = next(&w->rng);
    if (w->held_count > 0 && (r % 3 == 0 || w->held_count == HELD_MAX)) {
        int i = (int)(next(&w->rng) % (uint64_t)w->held_count);
        struct block b = w->held[i];
        if (r % 6 == 0) { /* realloc: a block from before the attach counts as new only */
            size_t size = pick_size(next(&w->rng));
            void *q = realloc(b.ptr, size);
            if (q != NULL) {
                w->held[i].ptr = q;
                w->held[i].size = size;
            }
            return;
        }
        w->held[i] = w->held[--w->held_count];
        free(b.ptr);
        return;
    }
    size_t size = pick_size(next(&w->rng));
    uint64_t kind = next(&w->rng) % 7;
    void *p;
    if (kind == 2) {
        size = (size + 31) & ~(size_t)31;
        p = aligned_alloc(32, size);
    } else if (kind == 1) {
        if (posix_memalign(&p, 64, size) != 0) p = NULL;
    } else if (kind == 0) {
        p = calloc(1, size);
    } else if (kind == 3) {
        p = memalign(128, size);
    } else if (kind == 4) {
        p = reallocarray(NULL, 1, size);
    } else {
        p = malloc(size);
    }
    if (p != NULL) {
        memset(p, 0xab, size < 64 ? size : 64);
        w->held[w->held_count].ptr = p;
        w->held[w->held_count].size = size;
        w->held_count++;
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    while (!__atomic_load_n(&quit, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&pause_requested, __ATOMIC_ACQUIRE)) {
            __atomic_add_fetch(&paused, 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(&pause_requested, __ATOMIC_ACQUIRE)) {
                usleep(200);
            }
            __atomic_sub_fetch(&paused, 1, __ATOMIC_ACQ_REL);
            continue;
        }
        op(w);
    }
    return NULL;
}

static void say(const char *text)
{
    ssize_t ignored = write(1, text, strlen(text));
    (void)ignored;
}

static void pause_all(void)
{
    __atomic_store_n(&pause_requested, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&paused, __ATOMIC_ACQUIRE) != thread_count) {
        usleep(100);
    }
}

static void resume_all(void)
{
    __atomic_store_n(&pause_requested, 0, __ATOMIC_RELEASE);
    while (__atomic_load_n(&paused, __ATOMIC_ACQUIRE) != 0) {
        usleep(100);
    }
}

int main(int argc, char **argv)
{
    thread_count = argc > 1 ? atoi(argv[1]) : 16;
    if (thread_count < 1 || thread_count > MAX_THREADS) {
        say("usage: attach_stress THREADS (1-64)\n");
        return 2;
    }
    for (int i = 0; i < thread_count; i++) {
        workers[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        pthread_create(&workers[i].thread, NULL, run, &workers[i]);
    }
    say("ready\n");
    char line[64];
    for (;;) {
        ssize_t n = read(0, line, sizeof line);
        if (n <= 0) {
            break;
        }
        char c = line[0];
        if (c == 'p') {
            pause_all();
            for (int i = 0; i < thread_count; i++) {
                for (int j = 0; j < workers[i].held_count; j++) {
                    free(workers[i].held[j].ptr);
                }
                workers[i].held_count = 0;
            }
            say("paused\n");
        } else if (c == 'r') {
            resume_all();
            say("resumed\n");
        } else if (c == 's') {
            pause_all();
            uint64_t bytes = 0, blocks = 0;
            for (int i = 0; i < thread_count; i++) {
                for (int j = 0; j < workers[i].held_count; j++) {
                    bytes += workers[i].held[j].size;
                    blocks++;
                }
            }
            char out[128];
            snprintf(out, sizeof out, "{\"held_bytes\":%llu,\"held_blocks\":%llu}\n",
                     (unsigned long long)bytes, (unsigned long long)blocks);
            say(out);
        } else if (c == 'q') {
            break;
        }
    }
    __atomic_store_n(&pause_requested, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&quit, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < thread_count; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    say("done\n");
    return 0;
}
