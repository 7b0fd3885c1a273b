#ifndef LOOKALIKES_CACHE_H
#define LOOKALIKES_CACHE_H

#include <stddef.h>

/* A C cache of at most CACHE_SLOTS copies: it fills, then each insert frees
 * the entry it replaces, so the C heap grows to a plateau. */
#define CACHE_SLOTS 512
void cache_put(unsigned long key, const char *value);
size_t cache_size(void);

/* Allocates, resizes and frees through every entry point, leaving nothing. */
void churn(size_t seed);

#endif
