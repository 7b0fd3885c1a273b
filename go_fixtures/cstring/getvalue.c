#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "getvalue.h"

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

int get_value(const char *file, const char *key, char *out, int outlen, char *err, int errlen)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        /* A fixed message: strerror() may allocate on first use. */
        snprintf(err, (size_t)errlen, "cannot open config file (errno %d)", errno);
        return -1;
    }
    char line[4096];
    int rc = 1;
    while (fgets(line, sizeof line, f) != NULL) {
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            continue;
        }
        *eq = '\0';
        if (strcmp(trim(line), key) == 0) {
            snprintf(out, (size_t)outlen, "%s", trim(eq + 1));
            rc = 0;
            break;
        }
    }
    fclose(f);
    if (rc == 1) {
        snprintf(err, (size_t)errlen, "key not found");
    }
    return rc;
}
