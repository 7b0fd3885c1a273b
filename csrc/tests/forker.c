/* Fork test for the shim, run under LD_PRELOAD: holds KEEP bytes, forks a
 * child that allocates CHILD more bytes and exits, then allocates PARENT
 * more. Each process must end with its own region: the child's starts as a
 * copy of the parent's (it inherits the heap) and adds only its own. No
 * stdio, so nothing else allocates.
 *
 * usage: forker KEEP CHILD PARENT
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *hold(size_t n)
{
    void *p = malloc(n);
    if (p != NULL) {
        memset(p, 1, n);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        return 2;
    }
    void *kept = hold((size_t)atol(argv[1]));
    pid_t child = fork();
    if (child == 0) {
        void *mine = hold((size_t)atol(argv[2]));
        _exit(mine != NULL && kept != NULL ? 0 : 3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    void *more = hold((size_t)atol(argv[3]));
    return more != NULL && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
