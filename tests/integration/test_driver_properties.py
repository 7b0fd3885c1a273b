"""Properties of the seed's get_value leak, through the real driver under the
real shim: exact bytes for any strings, shrinking to a minimal example, and
the signature pprof cannot see (RSS and C heap grow, the Go heap does not)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from cgo_audit.driver import Driver
from cgo_audit.measure.runner import ShimSession

# Hypothesis drives a real Go driver through many examples.
pytestmark = pytest.mark.slow

MIB = 1 << 20
# Any text that survives JSON as UTF-8 (no lone surrogates), NUL included.
ARG_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=64 * 1024).filter(
    lambda s: len(s.encode()) <= 64 * 1024)


@pytest.fixture(scope="module")
def driver(shim_path, cstring_driver, tmp_path_factory):
    # An empty working directory: generated relative paths name no file.
    workdir = tmp_path_factory.mktemp("driver-cwd")
    with ShimSession(shim_path) as session, Driver([str(cstring_driver)], session, cwd=workdir) as d:
        for func in ("GetValueLeaky", "GetValueFixed"):
            d.call(func, {"file": "warm-up", "key": "k"})  # one-time allocations happen here
        yield d


def leaked_by(driver: Driver, func: str, file: str, key: str, settle: bool = True):
    return driver.measure(func, {"file": file, "key": key}, settle=settle)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(file=ARG_TEXT, key=ARG_TEXT)
@example(file="testdata/app.conf", key="timeout")
@example(file="", key="")
@example(file="\u00e9\u4e2d\U0001f600", key="a\0b")
@example(file="f" * 65536, key="k" * 65536)
def test_leaky_call_leaks_exactly_both_cstrings(driver, file, key):
    delta = leaked_by(driver, "GetValueLeaky", file, key)
    assert delta.calls == 1
    assert delta.c_bytes == len(file.encode()) + 1 + len(key.encode()) + 1
    assert delta.c_allocs == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(file=ARG_TEXT, key=ARG_TEXT)
@example(file="testdata/app.conf", key="timeout")
def test_fixed_call_leaks_nothing(driver, file, key):
    delta = leaked_by(driver, "GetValueFixed", file, key)
    assert (delta.c_bytes, delta.c_allocs) == (0, 0)


def test_hypothesis_shrinks_a_leak_to_a_minimal_example(driver):
    # A claim that is false for long enough arguments: "a call leaks under 40
    # bytes". Hypothesis must find a counterexample through the real process
    # and shrink it to the smallest one: 38 bytes of arguments (+2 NULs).
    # Strings of up to a few hundred characters: long enough to break the
    # claim at once, short enough that shrinking takes hundreds of calls, not
    # thousands (the exactness for any length up to 64 KiB is shown above).
    short = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
    file, key = find(
        st.tuples(short, short),
        # C bytes only, and no finalizer frees them: no GC between calls.
        lambda args: leaked_by(driver, "GetValueLeaky", *args, settle=False).c_bytes >= 40,
        settings=settings(max_examples=2000, deadline=None, database=None))
    assert len(file.encode()) + len(key.encode()) == 38
    # 1-minimal: dropping any one character makes the claim hold again.
    for text, rebuild in ((file, lambda t: (t, key)), (key, lambda t: (file, t))):
        for i in range(len(text)):
            assert leaked_by(driver, "GetValueLeaky", *rebuild(text[:i] + text[i + 1:]), settle=False).c_bytes < 40


@settings(max_examples=4, deadline=None)
@given(key_bytes=st.integers(min_value=4 * 1024, max_value=4 * MIB), total_mib=st.integers(64, 96))
def test_large_c_leak_shows_in_rss_but_not_in_the_go_heap(shim_path, cstring_driver, tmp_path_factory,
                                                          key_bytes, total_mib):
    calls = math.ceil(total_mib * MIB / (key_bytes + 2))
    with ShimSession(shim_path) as session, Driver([str(cstring_driver)], session,
                                                   cwd=tmp_path_factory.mktemp("rss")) as fresh:
        # Warm up with the same size: the driver's line buffer grows once to hold it.
        fresh.call("GetValueLeaky", {"file": "", "key": "k" * key_bytes})
        delta = fresh.measure("GetValueLeaky", {"file": "", "key": "k" * key_bytes}, count=calls)
    assert delta.c_bytes == calls * (key_bytes + 2) >= 64 * MIB
    assert delta.rss_bytes >= 0.9 * delta.c_bytes
    assert abs(delta.go_heap_bytes) < 0.05 * delta.c_bytes
