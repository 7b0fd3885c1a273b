package cheap

// Names for frames in shared libraries, from the dynamic linker's view of
// their exported symbols: pprof fetching from a URL can only complete the
// symbols of a mapping through a /symbolz endpoint beside the profile's, which
// a handler mounted on one path cannot serve, so every mapping is named here.

/*
#cgo linux LDFLAGS: -ldl
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>

// The exported function containing pc, or NULL: dladdr alone answers with
// the nearest symbol below pc, which for a static function is another one,
// so only glibc's dladdr1, which gives the symbol's size, is trusted.
static const char *cheap_symbol_at(uintptr_t pc)
{
#ifdef __GLIBC__
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	if (!dladdr1((void *)pc, &info, (void **)&sym, RTLD_DL_SYMENT) || info.dli_sname == NULL || sym == NULL) {
		return NULL;
	}
	uintptr_t start = (uintptr_t)info.dli_saddr;
	if (pc < start || pc >= start + (sym->st_size ? sym->st_size : 1)) {
		return NULL;
	}
	return info.dli_sname;
#else
	(void)pc;
	return NULL;
#endif
}
*/
import "C"

// librarySymbol names the exported function at pc (an address in the call).
func librarySymbol(pc uintptr) string {
	name := C.cheap_symbol_at(C.uintptr_t(pc))
	if name == nil {
		return ""
	}
	return C.GoString(name)
}
