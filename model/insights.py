"""Insights: one line of context per lead, e.g. "Leads with industry finance qualify at 31 % against 12 %
overall", from qualification rates learned at training (`rates`, stored in `info["insights"]`).

A lead's insight names the categorical value whose rate is furthest from the overall rate, beyond 1.5x
either way (ties: the first feature in training order); none when no value is that far. One reader serves
the API and batch scoring (`Insights.of`): each distinct combination of the values it looks at is decided
once and remembered, so one lead costs a dictionary lookup and a million leads a lookup each.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

MIN_LIFT = 1.5
_THRESHOLD = float(np.log(MIN_LIFT))
CACHE_LIMIT = 100_000  # distinct combinations remembered; past it the memory starts over


def rates(
    values: Mapping[str, np.ndarray],
    y: np.ndarray,
    categorical: tuple[str, ...],
    min_rows: int = 50,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Qualification rates overall and by categorical value (values with `min_rows` rows); with `weight`,
    weighted rates (those of all leads, not of the handed-over ones). No weights is every weight 1 (sums of
    ones and zeros are exact: the plain rates to the bit)."""
    w = np.ones(len(y)) if weight is None else np.asarray(weight, float)
    by_value = {}
    for name in categorical:
        s = pd.DataFrame({"v": pd.Series(values[name], dtype=object), "wy": w * y, "w": w}).dropna()
        g = s.groupby("v").agg(wy=("wy", "sum"), w=("w", "sum"), size=("w", "size"))
        g = g[g["size"] >= min_rows]
        by_value[name] = {str(k): float(r) for k, r in (g["wy"] / g["w"]).items()}
    overall = float(np.average(y, weights=w)) if len(y) else float("nan")
    return {"overall": overall, "by_value": by_value}


class Insights:
    """The insights of one model: its learned rates (`info["insights"]`) and the combinations seen."""

    def __init__(self, learned: Mapping[str, Any] | None, categorical: Collection[str]):
        learned = learned or {}
        self.overall: float | None = learned.get("overall")
        self.by_value: dict[str, dict[str, float]] = dict(learned.get("by_value") or {})
        self.names = [f for f in self.by_value if f in categorical]
        self._seen: dict[tuple[object, ...], str | None] = {}

    def of(self, values: Mapping[str, np.ndarray], n: int) -> list[str | None]:
        """The insight of each of n rows of `values` (feature -> one value per row)."""
        names = [f for f in self.names if f in values]
        if not names:
            return [self.one({})] * n
        seen = self._seen
        if len(seen) > CACHE_LIMIT:
            seen.clear()
        cols = [np.asarray(values[f], dtype=object).tolist() for f in names]
        out: list[str | None] = []
        for key in zip(*cols, strict=True):
            if key in seen:
                out.append(seen[key])
            else:
                text = seen[key] = self.one(dict(zip(names, key, strict=True)))
                out.append(text)
        return out

    def one(self, raw: Mapping[str, object]) -> str | None:
        """The insight of one lead's categorical values (feature -> value sent)."""
        overall = self.overall
        if not overall:
            return None
        best: tuple[float, str, str, float] | None = None
        for feature, by in self.by_value.items():
            value = raw.get(feature)
            if isinstance(value, str) and value in by:
                # numpy's log, as the rates were always compared (a tie is decided to the last bit)
                strength = abs(float(np.log(by[value] / overall))) if by[value] > 0 else math.inf
                if strength > _THRESHOLD and (best is None or strength > best[0]):
                    best = (strength, feature, value, by[value])
        if best is None:
            return None
        _, feature, value, rate = best
        return (
            f"Leads with {feature.replace('_', ' ')} {value.replace('_', ' ')} qualify at {rate * 100:.0f} % "
            f"against {overall * 100:.0f} % overall"
        )
