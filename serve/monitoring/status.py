"""The statuses of a monitoring check and how they combine: the worst graded one wins."""

from __future__ import annotations

from collections.abc import Iterable

OK, WARN, ALERT, NOT_ENOUGH, UNKNOWN = "ok", "warn", "alert", "not enough data", "unknown"
_RANK = {OK: 0, NOT_ENOUGH: 0, UNKNOWN: 0, WARN: 1, ALERT: 2}


def worst(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    graded = [s for s in statuses if s in (OK, WARN, ALERT)]
    if not graded:
        return NOT_ENOUGH if NOT_ENOUGH in statuses else UNKNOWN
    return max(graded, key=_RANK.__getitem__)
