/* x86-64: %fs:0 holds the thread pointer itself (TLS variant II: the
 * executable's TLS block ends at it, so g's slot is at a negative offset).
 * A frame record is [rbp] = the caller's rbp, [rbp+8] = the return address,
 * in C (-fno-omit-frame-pointer) and in Go alike. */
#ifndef CGO_AUDIT_ARCH_X86_64_H
#define CGO_AUDIT_ARCH_X86_64_H

#include <stdint.h>

static inline uintptr_t thread_pointer(void)
{
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

/* A spin-wait hint, in the spinlock's inner loop. */
static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

#endif
