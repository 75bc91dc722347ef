"""Contributions into reasons a salesperson reads: points and a sentence per feature.

Points: 20 points double the odds of qualifying (the scorecard convention, `POINTS_PER_DOUBLING`). The raw
`impact` in log-odds is kept alongside, because that is what adds up exactly to the model's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leadscore.features import catalog
from leadscore.model.encoding import Encoder

POINTS_PER_DOUBLING = 20.0
TOP_N = 5
MIN_ABS_IMPACT = 1e-3


def points(impact: float) -> int:
    return int(round(impact * POINTS_PER_DOUBLING / math.log(2)))


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: object
    impact: float
    points: int
    text: str

    def to_dict(self) -> dict:
        return {"feature": self.feature, "value": self.value, "impact": round(self.impact, 6),
                "points": self.points, "text": self.text}


def display_value(encoder: Encoder, name: str, x: float, raw: object = None) -> object:
    """The value a person should read: the category label (raw text if it was unseen) or the number."""
    if name in encoder.vocab:
        if raw is not None and isinstance(raw, str):
            return raw
        return encoder.label(name, int(x))
    if x != x:  # NaN
        return None
    return int(x) if float(x).is_integer() else round(float(x), 4)


def reasons_for_row(contrib: np.ndarray, X_row: np.ndarray, encoder: Encoder, raw_values: dict | None = None,
                    top_n: int = TOP_N) -> list[Reason]:
    """Top `top_n` positive then top `top_n` negative reasons, strongest first."""
    order = np.argsort(-contrib, kind="stable")
    pos = [j for j in order[:top_n] if contrib[j] > MIN_ABS_IMPACT]
    neg = [j for j in order[::-1][:top_n] if contrib[j] < -MIN_ABS_IMPACT]
    out = []
    for j in pos + neg:
        name = encoder.features[j]
        raw = raw_values.get(name) if raw_values else None
        value = display_value(encoder, name, X_row[j], raw)
        out.append(Reason(name, value, float(contrib[j]), points(float(contrib[j])),
                          catalog.BY_NAME[name].sentence(value) if name in catalog.BY_NAME else f"{name}: {value}"))
    return out
