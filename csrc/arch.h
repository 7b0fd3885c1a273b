/* What the stack walk needs from the CPU: the thread pointer (where the Go
 * runtime's g slot is found) and the layout of a frame record. One small
 * header per architecture, so that nothing else in csrc/ has to know. */
#ifndef CGO_AUDIT_ARCH_H
#define CGO_AUDIT_ARCH_H

#if defined(__x86_64__)
#include "arch_x86_64.h"
#elif defined(__aarch64__)
#include "arch_arm64.h"
#else
#error "cgo-audit's shim supports x86-64 and arm64 (aarch64) only"
#endif

#endif
