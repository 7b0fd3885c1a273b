"""Where the Go runtime keeps what the shim's stack walk needs, read from a
Go binary's DWARF and symbols: g's TLS slot and the offsets of g.m, m.curg,
g.sched.bp, g.stack and g.gopc. They differ between Go versions. A binary
without DWARF (-ldflags='-s -w') gets the offsets of its Go release from a
table (go/layouts.json, made by scripts/go_layout_table.py from each
toolchain's own DWARF), its release read from its build info."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cgo_audit.shim.build import cache_dir
from cgo_audit.toolchain.elfheaders import ElfHeaders, NotElf, open_headers

if TYPE_CHECKING:   # pyelftools is imported where the DWARF is read: start-up does not pay for it
    from elftools.elf.elffile import ELFFile

WANTED = {
    "runtime.g": ("m", "sched", "stack", "gopc"),
    "runtime.m": ("curg",),
    "runtime.gobuf": ("bp",),
    "runtime.stack": ("lo", "hi"),
}


@dataclass(frozen=True)
class GoLayout:
    tls_g: int
    g_m: int
    m_curg: int
    g_sched_bp: int
    g_stack_lo: int
    g_stack_hi: int
    g_gopc: int
    # x_cgo_thread_start's code: the runtime mallocs each new thread's start
    # block there, and the shim tags those blocks as the runtime's.
    thread_start_lo: int = 0
    thread_start_hi: int = 0
    # Where the struct offsets came from: "dwarf", or a Go release's table entry.
    source: str = "dwarf"
    dwarf: bool = True     # the binary has DWARF (with source "dwarf", they came from it)

    def environment_value(self) -> str:
        """The CGO_AUDIT_GO_LAYOUT string the shim parses."""
        return ",".join(f"{name}={getattr(self, name)}" for name in self.__dataclass_fields__
                        if name not in ("source", "dwarf")
                        and (getattr(self, name) or not name.startswith("thread_start")))


STRUCT_FIELDS = ("g_m", "m_curg", "g_sched_bp", "g_stack_lo", "g_stack_hi", "g_gopc")
LAYOUT_TABLE = Path(__file__).parent / "go" / "layouts.json"
BUILDINFO_MAGIC = b"\xff Go buildinf:"


class LayoutUnavailable(Exception):
    """The binary does not say where Go keeps g (stripped, or not Go)."""


def _struct_members(elf: ELFFile) -> dict[str, dict[str, int]]:
    if not elf.has_dwarf_info():
        raise LayoutUnavailable("has no DWARF (built with -ldflags=-w, or stripped)")
    found: dict[str, dict[str, int]] = {}
    for cu in elf.get_dwarf_info().iter_CUs():
        top = cu.get_top_DIE()
        name = top.attributes.get("DW_AT_name")
        if name is None or name.value != b"runtime":
            continue
        for die in top.iter_children():
            if die.tag != "DW_TAG_structure_type":
                continue
            type_name = die.attributes.get("DW_AT_name")
            struct = type_name.value.decode() if type_name else ""
            if struct in WANTED and struct not in found:
                offset = "DW_AT_data_member_location"
                found[struct] = {
                    member.attributes["DW_AT_name"].value.decode(): member.attributes[offset].value
                    for member in die.iter_children()
                    if member.tag == "DW_TAG_member" and offset in member.attributes}
        if len(found) == len(WANTED):
            return found
    raise LayoutUnavailable("has no runtime.g in its DWARF (not a Go binary?)")


# Per architecture: the symbol of g's TLS slot, and where the executable's
# TLS block sits relative to the thread pointer.
TLS_G_SYMBOL = {"EM_X86_64": "runtime.tlsg", "EM_AARCH64": "runtime.tls_g"}
ARCH_NAMES = {"EM_X86_64": "x86-64", "EM_AARCH64": "arm64"}
# GOARCH of each machine, for the table of layouts without DWARF.
GOARCH_OF = {"EM_X86_64": "amd64", "EM_AARCH64": "arm64"}


def _tls_block_offset(elf: ELFFile, value: int, tls_align: int, tls_size: int) -> int:
    """A TLS symbol's offset from the thread pointer in the executable.
    x86-64 (variant II): the block ends at the thread pointer, so it is
    value - block size. arm64 (variant I): the thread pointer is followed by
    a 16-byte TCB, then the block, aligned to its own alignment."""
    align = max(tls_align, 1)
    if elf["e_machine"] == "EM_AARCH64":
        return (16 + align - 1) // align * align + value
    block = (tls_size + align - 1) // align * align
    return value - block


def _tls_g_offset(elf: ELFFile) -> int:
    """g's slot relative to the thread pointer."""
    from elftools.elf.sections import SymbolTableSection

    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise LayoutUnavailable("has no symbol table (stripped)")
    symbols = symtab.get_symbol_by_name(TLS_G_SYMBOL[elf["e_machine"]])
    if not symbols:
        raise LayoutUnavailable(f"has no {TLS_G_SYMBOL[elf['e_machine']]} (not a cgo binary?)")
    tls = next((seg for seg in elf.iter_segments() if seg["p_type"] == "PT_TLS"), None)
    if tls is None:
        raise LayoutUnavailable("has no TLS segment")
    return _tls_block_offset(elf, int(symbols[0]["st_value"]), int(tls["p_align"]), int(tls["p_memsz"]))


def _function_range(elf: ELFFile, name: str) -> tuple[int, int]:
    from elftools.elf.sections import SymbolTableSection

    symtab = elf.get_section_by_name(".symtab")
    if isinstance(symtab, SymbolTableSection):
        for symbol in symtab.get_symbol_by_name(name) or ():
            if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_size"]:
                return int(symbol["st_value"]), int(symbol["st_value"]) + int(symbol["st_size"])
    return 0, 0


def release_of(version: str) -> str:
    """"go1.26" for "go1.26.8", "go1.26rc1" or "go1.26.8 X:boringcrypto"."""
    match = re.match(r"go(\d+)\.(\d+)", version)
    if match is None:
        raise LayoutUnavailable(f"has an unknown Go version {version!r}")
    return f"go{match.group(1)}.{match.group(2)}"


def go_version(elf: ELFFile) -> str | None:
    """The Go version in the build info (kept by -s -w), Go 1.18 and later."""
    section = elf.get_section_by_name(".go.buildinfo")
    return None if section is None else version_in_buildinfo(section.data())


def version_in_buildinfo(data: bytes) -> str | None:
    """The Go version in a .go.buildinfo section's bytes, Go 1.18 and later."""
    if not data.startswith(BUILDINFO_MAGIC) or len(data) < 33 or not data[15] & 2:
        return None   # before Go 1.18 the version sits behind pointers
    length, shift, position = 0, 0, 32
    while position < len(data):
        byte = data[position]
        length |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            break
        shift += 7
    return data[position:position + length].decode(errors="replace")


def load_table() -> dict[str, dict[str, dict[str, int]]]:
    """The table of layouts: GOARCH -> Go release -> struct offsets."""
    return json.loads(LAYOUT_TABLE.read_text())


def _from_table(elf: ELFFile, why: str, tls_g: int | None) -> GoLayout:
    """The layout of a binary without Go DWARF, from its release's table
    entry for its architecture; tls_g from its symbols when it still has them."""
    version = go_version(elf)
    if version is None:
        raise LayoutUnavailable(f"{why}, and no Go version in its build info")
    release = release_of(version)
    goarch = GOARCH_OF[elf["e_machine"]]
    table = load_table().get(goarch, {})
    if release not in table:
        known = ", ".join(table) or "none"
        raise LayoutUnavailable(f"{why}, and {release} is not in the table of known {goarch} layouts ({known})")
    return GoLayout(tls_g=_lone_g_slot(elf, why) if tls_g is None else tls_g, source=release, dwarf=False,
                    **table[release])


# The Go runtime's own TLS block, with no C thread-locals beside it: its size,
# and g's slot from the thread pointer. x86-64: g alone (runtime.tlsg), just
# below the thread pointer. arm64: runtime.tls_g, then runtime.tlsg (the
# linker sorts them by name), after the 16-byte TCB.
LONE_TLS = {"EM_X86_64": (8, -8), "EM_AARCH64": (16, 16)}


def _lone_g_slot(elf: ELFFile, why: str) -> int:
    """g's TLS slot without the runtime's TLS symbol: with the runtime's
    slots alone in the executable's TLS block, it is known; with C
    thread-locals beside them, only the symbol says where."""
    size, slot = LONE_TLS[elf["e_machine"]]
    tls = next((seg for seg in elf.iter_segments() if seg["p_type"] == "PT_TLS"), None)
    if tls is None or int(tls["p_memsz"]) != size:
        raise LayoutUnavailable(f"{why}, and its TLS block holds more than g, so g's slot is unknown")
    return slot


def layout_from_dwarf(binary: Path) -> GoLayout:
    """The layout of binary from its own DWARF first (slow on a large
    binary: every compile unit up to the runtime's is parsed), else from the
    table; LayoutUnavailable saying why not."""
    from elftools.common.exceptions import DWARFError, ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    try:
        with open(binary, "rb") as stream:
            elf = ELFFile(stream)
            if elf["e_machine"] not in TLS_G_SYMBOL:
                raise LayoutUnavailable(f"is for {elf['e_machine']}; the stack walk supports x86-64 and arm64 only")
            has_symbols = isinstance(elf.get_section_by_name(".symtab"), SymbolTableSection)
            tls_g = _tls_g_offset(elf) if has_symbols else None
            thread_start = _function_range(elf, "x_cgo_thread_start")
            try:
                members = _struct_members(elf)
            except LayoutUnavailable as exc:
                why = str(exc) if has_symbols else "has no DWARF or symbols (built with -ldflags='-s -w')"
                return replace(_from_table(elf, why, tls_g), thread_start_lo=thread_start[0],
                               thread_start_hi=thread_start[1])
            if tls_g is None:
                tls_g = _lone_g_slot(elf, "has no symbols (stripped)")
    except (ELFError, DWARFError, OSError, ValueError) as exc:
        raise LayoutUnavailable(f"cannot be read: {exc}") from None
    try:
        g, m, gobuf, stack = (members[name] for name in ("runtime.g", "runtime.m", "runtime.gobuf", "runtime.stack"))
        return GoLayout(tls_g=tls_g, g_m=g["m"], m_curg=m["curg"], g_sched_bp=g["sched"] + gobuf["bp"],
                        g_stack_lo=g["stack"] + stack["lo"], g_stack_hi=g["stack"] + stack["hi"],
                        g_gopc=g["gopc"], thread_start_lo=thread_start[0], thread_start_hi=thread_start[1])
    except KeyError as exc:
        raise LayoutUnavailable(f"has a runtime without the field {exc}") from None


def read_layout(binary: Path) -> GoLayout:
    """The layout of binary, or LayoutUnavailable saying why not, without a
    cost that grows with the binary: from the cache (keyed by build ID), else
    from the table entry of its Go release (the build info says which) with
    g's TLS slot and the runtime's thread-start code from its symbol table,
    read raw; the DWARF only for a release the table does not know."""
    key = _cache_key(binary)
    cached = _cached(key)
    if cached is not None:
        return cached
    layout = _layout_from_table(binary) or layout_from_dwarf(binary)
    _store(key, layout)
    return layout


# ELF e_machine numbers, and their names as pyelftools gives them.
MACHINE_NAMES = {62: "EM_X86_64", 183: "EM_AARCH64"}
PT_TLS = 7


def _layout_from_table(binary: Path) -> GoLayout | None:
    """The table's layout for binary's release and architecture, or None
    when the table (or the build info) cannot say. Reads headers, the build
    info and two symbols, raw: no DWARF, no pyelftools."""
    try:
        stream, elf = open_headers(binary)
    except (NotElf, OSError):
        return None   # the DWARF path says why, in its words
    with stream:
        machine = MACHINE_NAMES.get(elf.machine)
        if machine is None:
            return None
        buildinfo = elf.section(".go.buildinfo")
        version = version_in_buildinfo(elf.data(buildinfo)) if buildinfo else None
        if version is None:
            return None
        try:
            release = release_of(version)
        except LayoutUnavailable:
            return None
        table = load_table().get(GOARCH_OF[machine], {})
        if release not in table:
            return None
        tls = next((seg for seg in elf.segments if seg.type == PT_TLS), None)
        tlsg = _raw_symbol(elf, TLS_G_SYMBOL[machine])
        if tlsg is not None and tls is not None:
            align = max(tls.align, 1)
            if machine == "EM_AARCH64":
                tls_g = (16 + align - 1) // align * align + tlsg[0]
            else:
                tls_g = tlsg[0] - (tls.memsz + align - 1) // align * align
        elif tls is not None and tls.memsz == LONE_TLS[machine][0]:
            tls_g = LONE_TLS[machine][1]
        else:
            return None
        start = _raw_symbol(elf, "x_cgo_thread_start") or (0, 0)
        thread_start = (start[0], start[0] + start[1]) if start[1] else (0, 0)
        has_dwarf = elf.section(".debug_info") is not None or elf.section(".zdebug_info") is not None
    return GoLayout(tls_g=tls_g, source=release, thread_start_lo=thread_start[0], thread_start_hi=thread_start[1],
                    dwarf=has_dwarf, **table[release])


ELF64_SYMBOL = struct.Struct("<IBBHQQ")   # st_name, st_info, st_other, st_shndx, st_value, st_size


def _raw_symbol(elf: ElfHeaders, name: str) -> tuple[int, int] | None:
    """(value, size) of a symbol, found by searching the raw string and
    symbol tables rather than parsing every symbol (pyelftools takes seconds
    on a large binary's hundreds of thousands)."""
    symtab = elf.section(".symtab")
    if symtab is None or symtab.entsize != ELF64_SYMBOL.size or symtab.link >= len(elf.sections):
        return None
    strings = elf.data(elf.sections[symtab.link])
    symbols = elf.data(symtab)
    wanted = name.encode() + b"\0"
    at = strings.find(wanted)
    while at >= 0:
        if at == 0 or strings[at - 1] == 0:   # the whole string, not another name's tail
            packed = struct.pack("<I", at)
            index = symbols.find(packed)
            while index >= 0:
                if index % ELF64_SYMBOL.size == 0:
                    _, _, _, _, value, size = ELF64_SYMBOL.unpack_from(symbols, index)
                    return value, size
                index = symbols.find(packed, index + 1)
        at = strings.find(wanted, at + 1)
    return None


def _cache_key(binary: Path) -> str | None:
    """The binary's build ID (Go's, else the GNU one), else its path, size
    and modification time: what a cached layout is filed under."""
    try:
        stream, elf = open_headers(binary)
        with stream:
            for section in (".note.go.buildid", ".note.gnu.build-id"):
                found = elf.section(section)
                if found is not None:
                    return hashlib.sha256(elf.data(found)).hexdigest()[:32]
        status = binary.stat()
    except (NotElf, OSError, ValueError):
        return None
    identity = f"{binary.resolve()}:{status.st_size}:{status.st_mtime_ns}".encode()
    return hashlib.sha256(identity).hexdigest()[:32]


def _cache_file(key: str) -> Path:
    return cache_dir() / "layouts" / f"{key}.json"


def _cached(key: str | None) -> GoLayout | None:
    if key is None:
        return None
    try:
        return GoLayout(**json.loads(_cache_file(key).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _store(key: str | None, layout: GoLayout) -> None:
    if key is None:
        return
    path = _cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(layout)))
        temporary.replace(path)   # atomic: a concurrent reader sees all of it or nothing
    except OSError:
        pass   # a read-only cache only costs the next run its time
