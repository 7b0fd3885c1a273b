#ifndef SESSIONCACHE_H
#define SESSIONCACHE_H

/* Remembers key's last value in a bounded cache (SESSIONCACHE_SLOTS
 * entries, the oldest evicted and freed) and returns its length. Every
 * 100th call also leaves a 32-byte audit record behind, never freed. */
int session_touch(const char *key, const char *value);

#define SESSIONCACHE_SLOTS 256
#define SESSIONCACHE_RECORD_BYTES 32
#define SESSIONCACHE_RECORD_EVERY 100

#endif
