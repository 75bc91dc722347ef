"""What a model learned from: each numeric feature's training range, and the values that say nothing.

Training records the smallest and largest value of every numeric feature over the rows the model was fit
on (`training_ranges`, stored in `ScoringModel.info["ranges"]`). A value outside that range is one the model
never saw: its contribution is an extrapolation (a scorecard's last bin, a tree's last split), so it is
flagged (`out_of_range` in the API, the batch output and the sales page) and never presented as a reason.
The score is unchanged: contributions still add up exactly, only the reasons lists leave them out.

Min/max rather than quantiles: a quantile range would flag leads the model did learn from, and the values
it would flag first are the long tails of counts ("25 website visits in 30 days"), which are a hot lead's
strongest, truest reasons. Min/max flags only true extrapolation. The lower bound of a feature that is
never negative reaches down to 0: a brand-new lead (training samples leads from day 1 on) or one with no
activity yet is not flagged.

`Checks` holds a model's ranges and quiet values (`catalog.FeatureSpec.quiet_at_zero`) as arrays over its
features, so a request pays a few vectorised comparisons, not a Python loop over features. Models trained
before ranges were recorded have none: nothing is flagged, quiet values are still not reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from leadscore.features import catalog
from leadscore.model.encoding import Encoder

Display = Callable[[int, float], object]  # (feature j, encoded value) -> the value as reasons show it


def training_ranges(values: Mapping[str, np.ndarray], encoder: Encoder) -> dict[str, dict[str, float]]:
    """{feature: {"min", "max"}} of each numeric feature over `values` (missing values ignored; a feature
    that is always missing has no range)."""
    out = {}
    for name in encoder.features:
        if name in encoder.vocab:
            continue
        col = np.asarray(values[name], dtype=np.float64)
        col = col[~np.isnan(col)]
        if len(col):
            out[name] = {"min": float(col.min()), "max": float(col.max())}
    return out


class Checks:
    """A model's training ranges and quiet values as arrays over its encoder's features."""

    def __init__(self, encoder: Encoder, info: Mapping[str, Any]):
        names = encoder.features
        ranges = info.get("ranges") or {}
        self.names = names
        self.low = np.full(len(names), -np.inf)
        self.high = np.full(len(names), np.inf)
        self.trained_low = np.full(len(names), -np.inf)  # what training saw (self.low may reach down to 0)
        for j, name in enumerate(names):
            r = ranges.get(name)
            if r is not None and name not in encoder.vocab:
                # Zero is in range for a feature that is never negative: a lead scored the day it arrives
                # (training samples leads from day 1 on) or with no activity yet is the first bin's case,
                # not an extrapolation worth a warning on every new lead.
                self.trained_low[j], self.high[j] = r["min"], r["max"]
                self.low[j] = min(r["min"], 0.0) if r["min"] >= 0 else r["min"]
        self.has_ranges = bool(np.isfinite(self.low).any() or np.isfinite(self.high).any())
        quiet = [
            j
            for j, name in enumerate(names)
            if name not in encoder.vocab and (s := catalog.BY_NAME.get(name)) is not None and s.quiet_at_zero
        ]
        self.quiet = np.array(quiet, dtype=np.int64)

    def outside(self, X: np.ndarray) -> np.ndarray | None:
        """(rows, features) True where a value lies outside the training range (missing never does); None
        when nothing does."""
        if not self.has_ranges:
            return None
        m = (self.low > X) | (self.high < X)
        return m if m.any() else None

    def hidden(self, X: np.ndarray, outside: np.ndarray | None) -> np.ndarray | None:
        """(rows, features) True where a contribution must not be presented as a reason: outside the
        training range, or a quiet value; None when there is none."""
        if len(self.quiet):
            q = X[:, self.quiet] == 0.0
            if q.any():
                m = outside.copy() if outside is not None else np.zeros(X.shape, dtype=bool)
                m[:, self.quiet] |= q
                return m
        return outside

    def flags(
        self, X: np.ndarray, outside: np.ndarray | None, display: Display
    ) -> list[list[dict[str, Any]]]:
        """Per row, the out-of-range objects of the API: feature, label, value, trained_min, trained_max,
        message (`display(j, x)`: the value as reasons show it)."""
        out: list[list[dict[str, Any]]] = [[] for _ in range(X.shape[0])]
        if outside is None:
            return out
        for i, j in zip(*np.nonzero(outside), strict=False):
            out[int(i)].append(self.flag(int(j), float(X[i, j]), display))
        return out

    def flag(self, j: int, x: float, display: Display) -> dict[str, Any]:
        name = self.names[j]
        spec = catalog.BY_NAME.get(name)
        value = display(j, x)
        low, high = float(self.trained_low[j]), float(self.high[j])
        if spec is None:
            spec = catalog.FeatureSpec(name, "numeric", "", f"{name}: {{value}}")
        return {
            "feature": name,
            "label": spec.title,
            "value": value,
            "trained_min": low,
            "trained_max": high,
            "message": spec.beyond_range(value, low, high),
        }

    def messages(
        self, X: np.ndarray, outside: np.ndarray | None, display: Display
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features, messages) of each row as object arrays of text, several joined by ", " and "; ", None
        where nothing is out of range: the batch output's columns, one pass per flagged feature (each
        distinct value's message rendered once)."""
        n = X.shape[0]
        features, texts = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
        if outside is None:
            return features, texts
        seen = np.zeros(n, dtype=bool)
        for j in np.flatnonzero(outside.any(axis=0)).tolist():
            rows = np.flatnonzero(outside[:, j])
            ux, inv = np.unique(X[rows, j], return_inverse=True)
            per_value = np.empty(len(ux), dtype=object)
            per_value[:] = [self.flag(j, v, display)["message"] for v in ux.tolist()]
            msg = per_value[inv.ravel()]
            name = self.names[j]
            first = ~seen[rows]
            more = rows[~first]  # rows with an earlier flagged feature: append
            features[rows[first]], texts[rows[first]] = name, msg[first]
            features[more] = features[more] + (", " + name)
            texts[more] = texts[more] + "; " + msg[~first]
            seen[rows] = True
        return features, texts
