/* arm64: TPIDR_EL0 is the thread pointer (TLS variant I: a 16-byte TCB,
 * then the executable's TLS block, so g's slot is at a positive offset; the
 * harness computes it). Under cgo the runtime keeps g in R28 and copies it to
 * that slot in runtime.save_g, so a C function (malloc) called from Go finds
 * g0 there. A frame record is [x29] = the caller's x29, [x29+8] = the
 * return address: in C by the AAPCS64, and in Go too, whose prologue stores
 * the caller's x29 just below its frame and the saved LR at the frame's
 * bottom, right above it. */
#ifndef CGO_AUDIT_ARCH_ARM64_H
#define CGO_AUDIT_ARCH_ARM64_H

#include <stdint.h>

static inline uintptr_t thread_pointer(void)
{
    uintptr_t tp;
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
    return tp;
}

/* A spin-wait hint, in the spinlock's inner loop. */
static inline void cpu_relax(void)
{
    __asm__ __volatile__("yield");
}

#endif
