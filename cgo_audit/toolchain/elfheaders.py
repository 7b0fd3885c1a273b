"""The few things `run` reads from a binary before it starts it (segments,
section headers, one section's bytes, DT_NEEDED), straight from the ELF
headers with struct. pyelftools takes a noticeable part of a second just to
import; this reads what start-up needs in milliseconds, whatever the size of
the binary, and leaves DWARF to pyelftools, later and only when needed."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PT_DYNAMIC, PT_INTERP, PT_TLS = 2, 3, 7
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5
EM_X86_64 = 62


class NotElf(ValueError):
    """Not a 64-bit little-endian ELF file (or a truncated one)."""


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class ElfHeaders:
    """An open ELF file's headers; sections' bytes read on demand."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        head = stream.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise NotElf("not a 64-bit little-endian ELF file")
        (self.machine,) = struct.unpack_from("<H", head, 18)
        phoff, shoff = struct.unpack_from("<QQ", head, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", head, 54)
        self.segments = []
        stream.seek(phoff)
        table = stream.read(phentsize * phnum)
        for i in range(phnum):
            p_type, _, offset, vaddr, _, filesz, memsz, align = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            self.segments.append(Segment(p_type, offset, vaddr, filesz, memsz, align))
        raw = []
        if shoff and shnum:
            stream.seek(shoff)
            table = stream.read(shentsize * shnum)
            for i in range(shnum):
                name, s_type, _, addr, offset, size, link, _, _, entsize = struct.unpack_from(
                    "<IIQQQQIIQQ", table, i * shentsize)
                raw.append((name, s_type, addr, offset, size, link, entsize))
        names = b""
        if raw and shstrndx < len(raw):
            stream.seek(raw[shstrndx][3])
            names = stream.read(raw[shstrndx][4])
        self.sections = [Section(names[n:names.index(b"\0", n)].decode(errors="replace") if n < len(names) else "",
                                 *rest) for n, *rest in raw]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def data(self, section: Section) -> bytes:
        self.stream.seek(section.offset)
        return self.stream.read(section.size)

    def segment(self, kind: int) -> Segment | None:
        return next((s for s in self.segments if s.type == kind), None)

    def needed(self) -> list[str]:
        """The libraries of DT_NEEDED, through .dynamic and .dynstr."""
        dynamic, dynstr = self.section(".dynamic"), self.section(".dynstr")
        if dynamic is None or dynstr is None:
            return []
        entries, strings = self.data(dynamic), self.data(dynstr)
        found = []
        for offset in range(0, len(entries) - 15, 16):
            tag, value = struct.unpack_from("<qQ", entries, offset)
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED and value < len(strings):
                found.append(strings[value:strings.index(b"\0", value)].decode(errors="replace"))
        return found


def open_headers(path: Path) -> tuple[BinaryIO, ElfHeaders]:
    """The file, open, and its headers (close the file when done)."""
    stream = open(path, "rb")
    try:
        return stream, ElfHeaders(stream)
    except (NotElf, struct.error, ValueError):
        stream.close()
        raise NotElf(f"{path} is not a 64-bit ELF file") from None
