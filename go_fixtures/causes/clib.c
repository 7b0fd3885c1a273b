#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clib.h"

parser *parser_new(const char *name)
{
    parser *p = calloc(1, sizeof *p);
    if (p != NULL) {
        p->name = strdup(name);
    }
    return p;
}

void parser_feed(parser *p, const char *data, size_t len)
{
    p->fed += len;
    p->state ^= len > 0 ? (unsigned char)data[0] : 0;
}

void parser_free(parser *p)
{
    if (p != NULL) {
        free(p->name);
        free(p);
    }
}

static char **memory;
static size_t memory_len, memory_cap;

void remember(const char *s)
{
    if (memory_len == memory_cap) {
        /* The list's own growth is amortised; the copies are the leak. */
        size_t cap = memory_cap ? memory_cap * 2 : 1024;
        char **grown = realloc(memory, cap * sizeof *grown);
        if (grown == NULL) {
            return;
        }
        memory = grown;
        memory_cap = cap;
    }
    memory[memory_len++] = strdup(s);
}

size_t remembered(void)
{
    return memory_len;
}

void *map_scratch(size_t bytes)
{
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    memset(p, 1, bytes);
    return p;
}
