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


def reason_group(name: str) -> str:
    """Features that say the same thing over different windows ("2 visits in 7 days", "... in 30 days")
    share a group; a lead's reasons show only the strongest of a group, so the list is not repetitive."""
    for w in catalog.WINDOWS:
        if name.endswith(f"_{w}d"):
            return name.removesuffix(f"_{w}d")
    return name


def _pick(order, contrib: np.ndarray, names, sign: int, top_n: int) -> list[int]:
    picked, groups = [], set()
    for j in order:
        if sign * contrib[j] <= MIN_ABS_IMPACT:
            break
        g = reason_group(names[j])
        if g in groups:
            continue
        groups.add(g)
        picked.append(int(j))
        if len(picked) == top_n:
            break
    return picked


def reasons_for_row(contrib: np.ndarray, X_row: np.ndarray, encoder: Encoder, raw_values: dict | None = None,
                    top_n: int = TOP_N) -> list[Reason]:
    """Top `top_n` positive then top `top_n` negative reasons, strongest first, one per reason group."""
    order = np.argsort(-contrib, kind="stable")
    names = encoder.features
    pos = _pick(order, contrib, names, +1, top_n)
    neg = _pick(order[::-1], contrib, names, -1, top_n)
    out = []
    for j in pos + neg:
        name = names[j]
        raw = raw_values.get(name) if raw_values else None
        value = display_value(encoder, name, X_row[j], raw)
        out.append(Reason(name, value, float(contrib[j]), points(float(contrib[j])),
                          catalog.BY_NAME[name].sentence(value) if name in catalog.BY_NAME else f"{name}: {value}"))
    return out
