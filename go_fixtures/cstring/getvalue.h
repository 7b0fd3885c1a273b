#ifndef GETVALUE_H
#define GETVALUE_H

/* Looks key up in a file of "key = value" lines and copies its value into
 * out. Returns 0 when found, 1 when the key is absent, -1 on error (with a
 * message in err). Allocates nothing that outlives the call. */
int get_value(const char *file, const char *key, char *out, int outlen, char *err, int errlen);

#endif
