"""The order make test hands tests out in: the longest first, by the
durations a run recorded (tests/durations.json, written by `make
test-durations`). A long test handed out last keeps one worker busy after
the others are done; handed out first, the short ones fill in around it
(longest-processing-time-first). Tests the record does not know count as
its median; a stale record only costs time, never a result."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

RECORD = Path(__file__).resolve().parent / "durations.json"

Item = TypeVar("Item")


def load(path: Path = RECORD) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def longest_first(items: Sequence[Item], nodeid: Callable[[Item], str], scope: Callable[[str], str],
                  seconds: Mapping[str, float]) -> list[Item]:
    """items grouped by scope (a scope's tests stay together, in their own
    order: they share a module fixture), the scopes longest first."""
    known = statistics.median(seconds.values()) if seconds else 0.0
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(scope(nodeid(item)), []).append(item)
    cost = {key: sum(seconds.get(nodeid(item), known) for item in group) for key, group in groups.items()}
    ordered = sorted(groups, key=lambda key: -cost[key])   # stable: ties keep the collection's order
    return [item for key in ordered for item in groups[key]]


def save(seconds: Mapping[str, float], path: Path = RECORD) -> None:
    """The record, updated with seconds (a run of some of the tests keeps
    what it did not run)."""
    merged = {**load(path), **seconds}
    path.write_text(json.dumps({k: round(v, 2) for k, v in sorted(merged.items())}, indent=0) + "\n")
