"""One reading of sizes for the whole tool (cgo_audit.units): binary units,
KB and KiB alike, in options, pytest marks and reports."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cgo_audit import units
from cgo_audit.commands.common import byte_size
from cgo_audit.pytest_plugin import format_size, parse_size

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, num_bytes", [
    ("0 B", 0), ("64 B", 64), ("64B", 64), ("64", 64), ("1 KiB", 1024), ("1 KB", 1024), ("1k", 1024),
    ("1.5 kib", 1536), ("1 MB", 1 << 20), ("2 MiB", 2 << 20), ("96MB", 96 << 20), ("1 GB", 1 << 30),
    ("1G", 1 << 30), ("1 TB", 1 << 40), (7, 7)])
def test_sizes_are_binary_everywhere_like_pytest_memray(text, num_bytes):
    assert units.parse_size(text) == num_bytes
    assert parse_size(text) == num_bytes            # limit_c_leaks
    if isinstance(text, str):
        assert byte_size(text) == num_bytes         # --memory-limit


@pytest.mark.parametrize("text", ["", "ten bytes", "-1 B", "1 PB", "1e3", -1, True, None])
def test_what_is_not_a_size_is_refused(text):
    with pytest.raises(ValueError, match="is not a size"):
        units.parse_size(text)


def test_the_command_line_refuses_a_size_in_one_line():
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a size: 'lots' \(try 256MiB\)"):
        byte_size("lots")


@pytest.mark.parametrize("num_bytes, text", [
    (0, "0 B"), (26, "26 B"), (1023, "1023 B"), (1024, "1024 B (1.0 KiB)"), (1040, "1040 B (1.0 KiB)"),
    (3 << 20, "3145728 B (3.0 MiB)"), (-2048, "-2048 B (-2.0 KiB)"), (5 << 40, "5497558138880 B (5.0 TiB)")])
def test_sizes_are_shown_exactly(num_bytes, text):
    assert units.format_exact(num_bytes) == text
    assert format_size(num_bytes) == text


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (96 << 20, "96.0 MiB"), (-3 << 30, "-3.0 GiB")])
def test_short_readings_name_the_binary_unit(value, text):
    assert units.format_bytes(value) == text
    # What is printed reads back as (about) the same number.
    assert abs(units.parse_size(text.lstrip("-")) - abs(value)) <= abs(value) * 0.05


def test_charts_scale_to_the_largest_value():
    assert units.scale([10, 2000]) == (1024.0, "KiB")
    assert units.scale([]) == (1.0, "B")
    assert units.scale([-5 << 20]) == (float(1 << 20), "MiB")


def test_go_helpers_format_bytes_the_same_way():
    """goaudit/leakcheck's formatBytes mirrors units.format_exact: same
    threshold, same IEC units, one decimal (checked on its source, as the Go
    test of it runs in the integration tests)."""
    source = (REPO / "goaudit" / "leakcheck" / "leakcheck.go").read_text()
    body = source[source.index("func formatBytes"):]
    body = body[:body.index("\n}\n")]
    assert "n < 1024 && n > -1024" in body and '"%d B"' in body
    assert re.search(r'"KiB", "MiB", "GiB", "TiB"', body) and '"%d B (%.1f %s)"' in body
