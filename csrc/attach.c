/* Attach mode: the shim loaded by dlopen into a process that is already
 * running (cgo-audit attach). LD_PRELOAD is not there to put the shim first
 * in the symbol search, so the allocator calls are redirected where every
 * module makes them: its GOT, the slots its PLT jumps through (JUMP_SLOT)
 * and the ones that hold the function's address (GLOB_DAT), as heaptrack's
 * libheaptrack_inject does. The counting is the preload shim's own.
 *
 * This file only finds the slots: the injector writes them while every
 * thread of the process is stopped, so no thread ever sees a half-patched
 * program, and it writes the originals back to detach. Nothing here runs
 * on the allocation path.
 */
#define _GNU_SOURCE
/* A static executable links the shim in: nothing to attach, nothing built. */
#ifndef CGO_AUDIT_STATIC

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#include "cgo_audit_api.h"
#include "pointer_map.h"
#include "shim_internal.h"

#define EXPORT __attribute__((visibility("default")))

/* The attach mode flag the reader shows ("freed N blocks allocated before attach"). */
#define FLAG_ATTACHED 4u
_Static_assert(FLAG_ATTACHED == CGO_AUDIT_FLAG_ATTACHED, "the region header names the attach flag");

static struct cgo_audit_patches patches;

static const struct {
    const char *name;
    void *hook;
} hooks[] = {
    {"malloc", (void *)shim_hook_malloc},
    {"free", (void *)shim_hook_free},
    {"calloc", (void *)shim_hook_calloc},
    {"realloc", (void *)shim_hook_realloc},
    {"reallocarray", (void *)shim_hook_reallocarray},
    {"posix_memalign", (void *)shim_hook_posix_memalign},
    {"aligned_alloc", (void *)shim_hook_aligned_alloc},
    {"memalign", (void *)shim_hook_memalign},
    {"valloc", (void *)shim_hook_valloc},
    {"pvalloc", (void *)shim_hook_pvalloc},
    /* glibc's blocks for a new thread (its TLS) are the runtime's: tagged so. */
    {"pthread_create", (void *)shim_hook_pthread_create},
};
#define HOOK_COUNT (sizeof hooks / sizeof hooks[0])

static int hook_index(const char *name)
{
    for (unsigned i = 0; i < HOOK_COUNT; i++) {
        if (strcmp(name, hooks[i].name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int is_hook(uintptr_t value)
{
    for (unsigned i = 0; i < HOOK_COUNT; i++) {
        if (value == (uintptr_t)hooks[i].hook) {
            return 1;
        }
    }
    return 0;
}

/* glibc rewrites a writable dynamic section's addresses to absolute ones;
 * a read-only one (the vDSO) keeps link-time values. */
static uintptr_t absolute(uintptr_t value, uintptr_t base)
{
    return value < base ? value + base : value;
}

struct tables {
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
};

static void scan_relocations(const ElfW(Rela) *rela, size_t bytes, uintptr_t base, const struct tables *t)
{
    for (size_t i = 0; i < bytes / sizeof *rela; i++) {
        unsigned type = (unsigned)ELF64_R_TYPE(rela[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) {
            continue;
        }
        const ElfW(Sym) *sym = &t->symtab[ELF64_R_SYM(rela[i].r_info)];
        if (sym->st_name >= t->strsz) {
            continue;
        }
        int h = hook_index(t->strtab + sym->st_name);
        if (h < 0) {
            continue;
        }
        if (patches.count >= CGO_AUDIT_PATCH_MAX) {
            patches.dropped++;
            continue;
        }
        uintptr_t slot = base + rela[i].r_offset;
        uintptr_t now = *(const uintptr_t *)slot;
        /* Still ours (a cgo-audit that died without detaching): the
         * original is the global definition, which the lazy stub would
         * also resolve to. */
        uintptr_t original = is_hook(now) ? (uintptr_t)dlsym(RTLD_DEFAULT, hooks[h].name) : now;
        struct cgo_audit_patch *p = &patches.entries[patches.count++];
        p->slot = slot;
        p->hook = (uintptr_t)hooks[h].hook;
        p->original = original;
    }
}

static int scan_object(struct dl_phdr_info *info, size_t size, void *own_base)
{
    (void)size;
    uintptr_t base = info->dlpi_addr;
    if ((void *)base == own_base || (info->dlpi_name && strstr(info->dlpi_name, "linux-vdso"))) {
        return 0;
    }
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(base + info->dlpi_phdr[i].p_vaddr);
        }
    }
    if (dyn == NULL) {
        return 0;
    }
    patches.objects++;
    struct tables t = {0};
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprel_bytes = 0, rela_bytes = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: t.symtab = (const ElfW(Sym) *)absolute(dyn->d_un.d_ptr, base); break;
        case DT_STRTAB: t.strtab = (const char *)absolute(dyn->d_un.d_ptr, base); break;
        case DT_STRSZ: t.strsz = dyn->d_un.d_val; break;
        case DT_JMPREL: jmprel = (const ElfW(Rela) *)absolute(dyn->d_un.d_ptr, base); break;
        case DT_PLTRELSZ: jmprel_bytes = dyn->d_un.d_val; break;
        case DT_RELA: rela = (const ElfW(Rela) *)absolute(dyn->d_un.d_ptr, base); break;
        case DT_RELASZ: rela_bytes = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (t.symtab == NULL || t.strtab == NULL) {
        return 0;
    }
    if (jmprel != NULL) {
        scan_relocations(jmprel, jmprel_bytes, base, &t);
    }
    if (rela != NULL) {
        scan_relocations(rela, rela_bytes, base, &t);
    }
    return 0;
}

static int scan_callback(struct dl_phdr_info *info, size_t size, void *data)
{
    return scan_object(info, size, data);
}

EXPORT int cgo_audit_attach(const char *dir, const char *stacks, uint64_t sample_bytes, const char *layout)
{
    Dl_info self;
    if (!dladdr((void *)cgo_audit_attach, &self)) {
        return ENOENT;
    }
    /* A new attach after a detach: the blocks the last one recorded may
     * have been freed behind the shim's back since. */
    pmap_clear();
    if (shim_attach_region(dir, FLAG_ATTACHED) != 0) {
        return errno ? errno : EIO;
    }
    shim_stack_reset((struct cgo_audit_region *)cgo_audit_region(), stacks, sample_bytes, layout);
    memset(&patches, 0, sizeof patches);
    dl_iterate_phdr(scan_callback, self.dli_fbase);
    shim_attach_publish();
    return 0;
}

EXPORT const struct cgo_audit_patches *cgo_audit_patches(void)
{
    return &patches;
}

#endif /* CGO_AUDIT_STATIC */
