"""The mappings a run keeps for symbolizing its stacks."""

from __future__ import annotations

from cgo_audit.measure.sampler import ExecutableMapping, merge_maps

EXE = ExecutableMapping(0x400000, 0x500000, 0, "/srv/app")
LIBSTDCXX = ExecutableMapping(0x7F0000000000, 0x7F0000100000, 0x9000, "/usr/lib/libstdc++.so.6")
LIBC = ExecutableMapping(0x7F0000200000, 0x7F0000300000, 0x2000, "/usr/lib/libc.so.6")


def test_a_reading_taken_while_the_process_exits_loses_nothing():
    # Seen in a fresh clone: the last reading, as the process unmapped its
    # libraries, lacked libstdc++, and the C++ leak's stacks lost a frame.
    assert merge_maps([EXE, LIBSTDCXX, LIBC], [EXE]) == [EXE, LIBSTDCXX, LIBC]


def test_a_library_loaded_later_is_added_and_a_range_mapped_anew_replaces_the_old():
    plugin = ExecutableMapping(0x7F0000100000, 0x7F0000180000, 0, "/opt/plugin.so")
    assert merge_maps([EXE, LIBC], [EXE, LIBC, plugin]) == [EXE, plugin, LIBC]
    moved = ExecutableMapping(0x7F0000080000, 0x7F0000120000, 0, "/opt/other.so")
    assert merge_maps([EXE, LIBSTDCXX, LIBC], [moved]) == [EXE, moved, LIBC]
