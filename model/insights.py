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
# above this many rows, combinations are found by their codes: fewer distinct values than rows to look up
# (docs/benchmarks.md, size-based branches)
MANY_ROWS = 4096
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
        if n > MANY_ROWS:  # a batch chunk: each distinct combination found by codes, not by a row loop
            return self._by_codes(values, names)
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

    def _by_codes(self, values: Mapping[str, np.ndarray], names: list[str]) -> list[str | None]:
        """`one` for many rows: each feature's distinct values rated once (`_rated`), then gathered."""
        best = np.zeros(len(values[names[0]]))
        text = np.full(len(best), None, dtype=object)
        for f in self.by_value:
            if f not in names:
                continue
            codes, uniques = pd.factorize(np.asarray(values[f], dtype=object), use_na_sentinel=True)
            rated = [self._rated(f, u) for u in uniques]
            strength = np.array([r[0] if r else 0.0 for r in rated] + [0.0])[codes]
            better = (strength > _THRESHOLD) & (strength > best)  # the first feature wins a tie, as in `one`
            if better.any():
                best = np.where(better, strength, best)
                text[better] = np.array([r[1] if r else None for r in rated] + [None], dtype=object)[
                    codes[better]
                ]
        result: list[str | None] = text.tolist()
        return result

    def _rated(self, feature: str, value: object) -> tuple[float, str] | None:
        """(strength |log(rate / overall)|, sentence) of one feature's value; None if it has no rate."""
        rates, overall = self.by_value.get(feature) or {}, self.overall
        if not overall or not isinstance(value, str) or value not in rates:
            return None
        rate = rates[value]
        # numpy's log, as the rates were always compared (a tie is decided to the last bit)
        strength = abs(float(np.log(rate / overall))) if rate > 0 else math.inf
        sentence = (
            f"Leads with {feature.replace('_', ' ')} {value.replace('_', ' ')} qualify at {rate * 100:.0f} % "
            f"against {overall * 100:.0f} % overall"
        )
        return strength, sentence

    def one(self, raw: Mapping[str, object]) -> str | None:
        """The insight of one lead's categorical values (feature -> value sent)."""
        best: tuple[float, str] | None = None
        for feature in self.by_value:
            rated = self._rated(feature, raw.get(feature))
            if rated is not None and rated[0] > _THRESHOLD and (best is None or rated[0] > best[0]):
                best = rated
        return None if best is None else best[1]
