"""Sizes in bytes: read from the user and written for the user, one way.

Decided once for the whole tool (options, pytest marks, reports, and the Go
helpers' messages): sizes are binary. KiB, MiB and GiB are 1024, 1024² and
1024³ bytes, and KB, MB and GB (and k, m, g) read as the same, like
pytest-memray's limit_memory and the way the field guide's monitors count;
nobody writing `--memory-limit 96MB` means 96,000,000 bytes of RSS. Output
always uses the IEC names (KiB, MiB, GiB, TiB), so what is printed reads back
as the same number. goaudit/leakcheck's formatBytes follows format_exact.
"""

from __future__ import annotations

import re
from typing import Iterable

KIB = 1 << 10
UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))

# Accepted suffixes, lower-cased: every one of them binary (see above).
SUFFIX_BYTES = {"": 1, "b": 1,
                "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
                "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
                "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
                "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


class SizeError(ValueError):
    """Text that is not a size (a ValueError, so argparse and pytest marks
    report it as bad input)."""


def parse_size(text: str | int) -> int:
    """Bytes in '256MiB', '1 KB', '64 B', '1.5G' or '500000' (an int is bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise SizeError(f"{text!r} is not a size: it is negative")
        return text
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None or match.group(2).lower() not in SUFFIX_BYTES:
        raise SizeError(f"{text!r} is not a size: write it like '64 B', '1 KiB' or '256MiB'")
    return int(float(match.group(1)) * SUFFIX_BYTES[match.group(2).lower()])


def scale(values: Iterable[float]) -> tuple[float, str]:
    """The binary unit the largest of values reads best in: (bytes per unit, name)."""
    top = max((abs(v) for v in values), default=0.0)
    for unit, size in UNITS:
        if top >= size:
            return float(size), unit
    return 1.0, "B"


def format_bytes(value: float) -> str:
    """A short reading: '512 B', '1.5 KiB', '96.0 MiB'."""
    size, unit = scale([value])
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value / size:.1f} {unit}"


def format_exact(num_bytes: int) -> str:
    """Exact bytes, with the short reading beside them once past 1 KiB:
    '64 B', '2048 B (2.0 KiB)'. A test's failure message needs the exact count."""
    if abs(num_bytes) < KIB:
        return f"{num_bytes} B"
    return f"{num_bytes} B ({format_bytes(num_bytes)})"
