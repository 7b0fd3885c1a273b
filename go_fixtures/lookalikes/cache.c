#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

static char *slots[CACHE_SLOTS];
static size_t filled;

void cache_put(unsigned long key, const char *value)
{
    char **slot = &slots[key % CACHE_SLOTS];
    if (*slot == NULL) {
        filled++;
    }
    free(*slot);
    *slot = strdup(value);
}

size_t cache_size(void)
{
    return filled;
}

/* Every block passes through here before it is freed: visible outside this
 * file, so the compiler cannot pair a malloc with its free and drop both. */
void *volatile lookalikes_sink;

void churn(size_t seed)
{
    char *p = malloc(16 + seed % 64);
    char *grown = realloc(p, 4096 + seed % 4096);
    if (grown == NULL) {
        free(p);
        return;
    }
    memset(grown, 0, 4096);
    void *aligned = NULL;
    if (posix_memalign(&aligned, 64, 1000) == 0) {
        lookalikes_sink = aligned;
        free(aligned);
    }
    char *array = reallocarray(NULL, 10, 24);
    array = reallocarray(array, 20, 24);
    void *zeroed = calloc(8, 32);
    void *page = memalign(4096, 100);
    lookalikes_sink = zeroed;
    lookalikes_sink = page;
    lookalikes_sink = array;
    free(page);
    free(zeroed);
    free(array);
    free(grown);
}
