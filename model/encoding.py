"""Features (dict name -> array, as `features.build` returns them) into the numeric matrix models read.

Categoricals become small integer codes from a vocabulary learned on training data: 0 = missing,
1 = other (rare in training, or unseen at scoring time), 2.. = known values. Numerics pass through as
float64 with NaN for missing. The encoder is plain data (lists and dicts), stored as JSON with the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

MISSING, OTHER = 0, 1
MIN_CATEGORY_COUNT = 20
MAX_CATEGORIES = 60


@dataclass(frozen=True)
class Encoder:
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    vocab: dict[str, tuple[str, ...]] = field(default_factory=dict)  # feature -> known values, code = i + 2

    @classmethod
    def fit(
        cls,
        values: Mapping[str, np.ndarray],
        features: tuple[str, ...],
        categorical: tuple[str, ...],
        min_count: int = MIN_CATEGORY_COUNT,
    ) -> Encoder:
        vocab = {}
        for name in categorical:
            # count each distinct value once (factorize), keep the strings, in sorted order as np.unique gives
            codes, uniques = pd.factorize(np.asarray(values[name], dtype=object), use_na_sentinel=True)
            counts_all = np.bincount(codes[codes >= 0], minlength=len(uniques))
            is_str = np.array([isinstance(v, str) for v in uniques], dtype=bool)
            uniq = np.asarray([str(v) for v in uniques[is_str]], dtype=object)
            by_value = np.argsort(uniq.astype(str), kind="stable")
            uniq, counts = uniq[by_value], counts_all[is_str][by_value]
            order = np.argsort(-counts, kind="stable")
            kept = [str(uniq[i]) for i in order if counts[i] >= min_count][:MAX_CATEGORIES]
            vocab[name] = tuple(sorted(kept))
        return cls(features=tuple(features), categorical=tuple(categorical), vocab=vocab)

    @cached_property
    def categorical_mask(self) -> np.ndarray:
        return np.array([f in self.categorical for f in self.features], dtype=bool)

    @cached_property
    def _plan(self) -> tuple[tuple[str, dict[str, int] | None], ...]:
        """(feature, its value -> code lookup; None for a number), built once per encoder."""
        return tuple(
            (name, {v: i + 2 for i, v in enumerate(self.vocab[name])} if name in self.vocab else None)
            for name in self.features
        )

    def n_codes(self, name: str) -> int:
        return len(self.vocab[name]) + 2

    def label(self, name: str, code: int) -> str | None:
        if code == MISSING:
            return None
        return "other" if code == OTHER else self.vocab[name][code - 2]

    def transform(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The (rows, features) float64 matrix of `values`: codes for categories, numbers as they are.

        One lead (a live request) is converted as one Python row in one call; more rows column by column,
        categories through the lookups built once (`_plan`)."""
        plan = self._plan
        n = len(values[self.features[0]]) if self.features else 0
        if n == 1:
            row = [
                values[name][0]
                if lookup is None
                else (lookup.get(v, OTHER) if isinstance(v := values[name][0], str) else MISSING)
                for name, lookup in plan
            ]
            return np.array([row], dtype=np.float64)
        X = np.empty((n, len(plan)), dtype=np.float64)
        for j, (name, lookup) in enumerate(plan):
            if lookup is None:
                X[:, j] = values[name]
            else:
                X[:, j] = [lookup.get(v, OTHER) if isinstance(v, str) else MISSING for v in values[name]]
        return X

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "categorical": list(self.categorical),
            "vocab": {k: list(v) for k, v in self.vocab.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Encoder:
        return cls(
            tuple(d["features"]), tuple(d["categorical"]), {k: tuple(v) for k, v in d["vocab"].items()}
        )
