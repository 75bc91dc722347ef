"""Reason sentences: what a salesperson reads for a feature at a value ("2 pricing visits in 7 days").

Each distinct (feature, value) pair is rendered once by its catalogue entry and remembered
(`SentenceCache`), so a million leads cost one rendering per distinct pair, and one lead a lookup.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from leadscore.features import catalog
from leadscore.model.encoding import Encoder


def display_value(encoder: Encoder, name: str, x: float, raw: object = None) -> object:
    """The value a person should read: the category label (raw text if it was unseen) or the number."""
    if name in encoder.vocab:
        if raw is not None and isinstance(raw, str):
            return raw
        return encoder.label(name, int(x))
    if x != x:  # NaN
        return None
    return int(x) if float(x).is_integer() else round(float(x), 4)


class SentenceCache:
    """Display value and sentence of (feature, value), rendered once per distinct pair.

    Keys: a categorical feature's raw text (what the lead sent, shown as is) or, without one, its code (shown
    as the vocabulary label); a numeric feature's value (NaN: missing). One cache per encoder; it forgets
    everything past `limit` entries so a long-running service stays bounded.
    """

    def __init__(self, encoder: Encoder, limit: int = 200_000):
        self.encoder = encoder
        self.limit = limit
        self.cache: dict[tuple[int, object], tuple[object, str]] = {}
        self.categorical = frozenset(j for j, f in enumerate(encoder.features) if f in encoder.vocab)

    def _render(self, j: int, value: object) -> tuple[object, str]:
        name = self.encoder.features[j]
        spec = catalog.BY_NAME.get(name)
        text = spec.sentence(value) if spec is not None else f"{name}: {value}"
        if len(self.cache) >= self.limit:
            self.cache.clear()
        return value, text

    def one(self, j: int, x: float, raw: object = None) -> tuple[object, str]:
        """(display value, sentence) of feature j at encoded value x (raw: the categorical value sent)."""
        key: tuple[int, object]
        if j in self.categorical:
            key = (j, ("s", raw)) if isinstance(raw, str) else (j, ("c", float(x)))
        else:
            key = (j, ("nan",)) if math.isnan(x) else (j, float(x))
        hit = self.cache.get(key)
        if hit is None:
            value = (
                raw
                if isinstance(raw, str) and j in self.categorical
                else display_value(self.encoder, self.encoder.features[j], x)
            )
            hit = self.cache[key] = self._render(j, value)
        return hit

    def many(self, j: int, x: np.ndarray, raw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`one` for many values of feature j: (display values, sentences) as object arrays."""
        values, texts = np.empty(len(x), dtype=object), np.empty(len(x), dtype=object)
        if j in self.categorical and raw is not None:
            codes, uniques = pd.factorize(pd.Series(raw, dtype=object), use_na_sentinel=True)
            rest = codes < 0  # rows whose raw value is not a string show the code's label
            for u, r in enumerate(uniques):
                sel = codes == u
                if isinstance(r, str):
                    values[sel], texts[sel] = self.one(j, np.nan, r)
                else:
                    rest |= sel
            x = np.where(rest, x, np.nan)
        else:
            rest = np.ones(len(x), dtype=bool)
        if rest.any():
            ux, inv = np.unique(x[rest], return_inverse=True)  # NaNs collapse into one
            uv, ut = np.empty(len(ux), dtype=object), np.empty(len(ux), dtype=object)
            for u, v in enumerate(ux.tolist()):
                uv[u], ut[u] = self.one(j, v)
            values[rest], texts[rest] = uv[inv.ravel()], ut[inv.ravel()]
        return values, texts
