/* The overhead benchmark's C workload: malloc(19), malloc(8) and two frees
 * per iteration (the sizes of the field guide's two C.CString copies), with
 * no cgo around them. Prints the loop's wall time in nanoseconds.
 * usage: cmalloc -n ITERATIONS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = 20000000;
    if (argc == 3 && strcmp(argv[1], "-n") == 0) {
        n = atol(argv[2]);
    }
    double start = now_ns();
    for (long i = 0; i < n; i++) {
        char *file = malloc(19);
        char *key = malloc(8);
        /* Keep the compiler from pairing and deleting the calls. */
        __asm__ volatile("" : : "r"(file), "r"(key) : "memory");
        free(file);
        free(key);
    }
    printf("%.0f\n", now_ns() - start);
    return 0;
}
