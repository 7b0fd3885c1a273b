#ifndef CAUSES_CLIB_H
#define CAUSES_CLIB_H

#include <stddef.h>
#include <stdint.h>

/* A small C library with the ownership rules real ones have: a parser must
 * be destroyed with parser_free, and remember() keeps its own copy. */
typedef struct parser {
    uint64_t fed;
    uint64_t state;
    char *name;        /* owned copy of the name given to parser_new */
    char buf[40];
} parser;               /* 64 bytes on 64-bit targets */

parser *parser_new(const char *name);
void parser_feed(parser *p, const char *data, size_t len);
void parser_free(parser *p);

/* Keeps a copy of s (strdup) in a list the library never empties. */
void remember(const char *s);
size_t remembered(void);

/* Maps and touches bytes of scratch memory that is never unmapped. */
void *map_scratch(size_t bytes);

#endif
