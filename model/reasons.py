"""Contributions into reasons a salesperson reads: points and a sentence per feature.

Points: 20 points double the odds of qualifying (the scorecard convention, `POINTS_PER_DOUBLING`). The raw
`impact` in log-odds is kept alongside, because that is what adds up exactly to the model's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

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
    form one reason group."""
    for w in catalog.WINDOWS:
        if name.endswith(f"_{w}d"):
            return name.removesuffix(f"_{w}d")
    return name


@lru_cache(maxsize=32)
def groups(features: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """(group names, group index of each feature) for a model's feature list."""
    names: list[str] = []
    index = np.empty(len(features), dtype=np.int64)
    for j, f in enumerate(features):
        g = reason_group(f)
        if g not in names:
            names.append(g)
        index[j] = names.index(g)
    return tuple(names), index


def group_contributions(C: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """(rows, groups): the sum of each group's contributions. Still exact: they add up to the logit - base."""
    names, index = groups(features)
    onehot = np.zeros((len(features), len(names)))
    onehot[np.arange(len(features)), index] = 1.0
    return C @ onehot


def reasons_for_row(contrib: np.ndarray, X_row: np.ndarray, encoder: Encoder, raw_values: dict | None = None,
                    top_n: int = TOP_N) -> list[Reason]:
    """The top `top_n` positive then top `top_n` negative reasons, strongest first.

    A reason is a group of features (a channel over its windows, or one feature): its impact is the sum of
    the group's contributions, and its sentence is that of the member that pushes hardest in the same
    direction — so a lead never reads "2 pricing visits in 90 days lowers the score" next to "2 pricing
    visits in 7 days raises it" when together they raise it.
    """
    names = encoder.features
    _, index = groups(names)
    G = np.zeros(int(index.max()) + 1, dtype=np.float64)
    np.add.at(G, index, contrib)
    order = np.argsort(-G, kind="stable")
    pos = [g for g in order[:top_n] if G[g] > MIN_ABS_IMPACT]
    neg = [g for g in order[::-1][:top_n] if G[g] < -MIN_ABS_IMPACT]
    out = []
    for g in pos + neg:
        members = np.flatnonzero(index == g)
        j = int(members[np.argmax(np.sign(G[g]) * contrib[members])])
        name = names[j]
        raw = raw_values.get(name) if raw_values else None
        value = display_value(encoder, name, X_row[j], raw)
        impact = float(G[g])
        out.append(Reason(name, value, impact, points(impact),
                          catalog.BY_NAME[name].sentence(value) if name in catalog.BY_NAME else f"{name}: {value}"))
    return out
