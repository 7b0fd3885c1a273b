"""The longest-first order make test hands tests out in."""

from __future__ import annotations

from durations import load, longest_first, save


def by_file(nodeid: str) -> str:
    return nodeid.split("::")[0]


def test_scopes_go_longest_first_and_keep_their_tests_together():
    items = ["a.py::x", "b.py::y", "a.py::z", "c.py::w"]
    seconds = {"a.py::x": 1.0, "a.py::z": 1.0, "b.py::y": 30.0, "c.py::w": 5.0}
    assert longest_first(items, str, by_file, seconds) == ["b.py::y", "c.py::w", "a.py::x", "a.py::z"]
    # Each test its own scope: simply longest first.
    assert longest_first(items, str, str, seconds) == ["b.py::y", "c.py::w", "a.py::x", "a.py::z"]


def test_unknown_tests_count_as_the_median_and_ties_keep_the_order():
    items = ["new.py::t", "old.py::fast", "old.py::slow", "old.py::mid"]
    seconds = {"old.py::fast": 1.0, "old.py::mid": 4.0, "old.py::slow": 9.0}
    assert longest_first(items, str, str, seconds) == ["old.py::slow", "new.py::t", "old.py::mid", "old.py::fast"]
    assert longest_first(items, str, str, {}) == items


def test_a_partial_run_updates_the_record_and_keeps_the_rest(tmp_path):
    record = tmp_path / "durations.json"
    save({"a::x": 1.234, "b::y": 2.0}, record)
    save({"a::x": 3.0}, record)
    assert load(record) == {"a::x": 3.0, "b::y": 2.0}
    assert load(tmp_path / "missing.json") == {}
