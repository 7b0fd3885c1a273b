#include <stdlib.h>
#include <string.h>

#include "sessioncache.h"

/* The bounded cache: one entry per slot, replaced in turn. Its live heap
 * stops growing once every slot is filled; it churns on every call. */
static char *slots[SESSIONCACHE_SLOTS];
static unsigned long calls;
/* Where the last audit record went: overwritten, so the ones before leak. */
static char *volatile last_record;

static void audit_record(const char *key)
{
    char *record = malloc(SESSIONCACHE_RECORD_BYTES);
    if (record != NULL) {
        strncpy(record, key, SESSIONCACHE_RECORD_BYTES - 1);
        record[SESSIONCACHE_RECORD_BYTES - 1] = '\0';
    }
    last_record = record;
}

int session_touch(const char *key, const char *value)
{
    unsigned long n = __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED) + 1;
    size_t length = strlen(value);
    char *entry = malloc(length + 1);
    if (entry == NULL) {
        return -1;
    }
    memcpy(entry, value, length + 1);
    char *old = __atomic_exchange_n(&slots[n % SESSIONCACHE_SLOTS], entry, __ATOMIC_ACQ_REL);
    free(old);
    if (n % SESSIONCACHE_RECORD_EVERY == 0) {
        audit_record(key);
    }
    return (int)length;
}
