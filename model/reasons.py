"""Contributions into reasons a salesperson reads: points and a sentence per feature.

Points: 20 points double the odds of qualifying (the scorecard convention, `POINTS_PER_DOUBLING`). The raw
`impact` in log-odds is kept alongside, because that is what adds up exactly to the model's output.

One implementation serves the API (`ScoringModel.results`: one to a thousand leads) and batch scoring
(`model.batch`: millions): `reason_arrays` picks the top reasons of every row at once (reason groups summed
in feature order, the top ones found with `np.argpartition`, the strongest member of each group) and
renders each distinct (feature, value) sentence once (`SentenceCache`). `top_reasons` turns that into
per-row lists; `reasons_for_row` is the same for one row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from leadscore.features import catalog
from leadscore.model.encoding import Encoder

POINTS_PER_DOUBLING = 20.0
TOP_N = 5
MIN_ABS_IMPACT = 1e-3
SMALL = 4096  # up to this many reasons, values and sentences are looked up one by one (no numpy overhead)
SMALL_ROWS = 2048  # up to this many rows, reason groups are ranked with one stable sort (else argpartition)


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


@lru_cache(maxsize=32)
def _ranks(features: tuple[str, ...]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """For r = 0, 1, ...: (groups with an r-th member, those members), in feature order."""
    M, valid = _members(features)
    return tuple((np.flatnonzero(valid[:, r]), M[valid[:, r], r]) for r in range(M.shape[1]))


@lru_cache(maxsize=32)
def _members(features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(M, valid), each (groups, largest group size): M[g, r] is the r-th member of group g in feature
    order; padding (valid False) repeats the group's first member."""
    names, index = groups(features)
    members = [np.flatnonzero(index == g) for g in range(len(names))]
    width = max([len(m) for m in members] + [1])
    M = np.zeros((len(names), width), dtype=np.int64)
    valid = np.zeros((len(names), width), dtype=bool)
    for g, m in enumerate(members):
        M[g] = m[0] if len(m) else 0
        M[g, :len(m)] = m
        valid[g, :len(m)] = True
    return M, valid


def group_contributions(C: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """(rows, groups): the sum of each group's contributions. Still exact: they add up to the logit - base."""
    names, index = groups(features)
    onehot = np.zeros((len(features), len(names)))
    onehot[np.arange(len(features)), index] = 1.0
    return C @ onehot


def group_sums(C: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """(rows, groups): each reason group's contribution, summed member by member in feature order (the
    order `np.add.at` over the features would use), so every row's sums, ties and thresholds are the same
    however many rows are scored together."""
    M, valid = _members(features)
    G = np.zeros((C.shape[0], M.shape[0]), dtype=np.float64)
    if C.shape[0] > SMALL_ROWS:  # many rows: one column at a time (no gathered copies)
        _, index = groups(features)
        for j, g in enumerate(index.tolist()):
            G[:, g] += C[:, j]
        return G
    for gs, js in _ranks(features):  # few rows: the r-th member of every group at once
        G[:, gs] += C[:, js]
    return G


def smallest_k(K: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k smallest values ordered by (value, index).

    Equal to `np.argsort(K, axis=1, kind="stable")[:, :k]`, at the cost of an argpartition: rows where a
    tie straddles the k-th place (argpartition may pick either) are redone with the stable sort.
    """
    n, F = K.shape
    k = min(k, F)
    if k == 0:
        return np.empty((n, 0), dtype=np.int64)
    if k >= F:
        return np.argsort(K, axis=1, kind="stable")
    idx = np.argpartition(K, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(K, idx, axis=1)
    kth = vals.max(axis=1)
    tied = (K <= kth[:, None]).sum(axis=1) > k
    order = np.lexsort((idx, vals))
    idx = np.take_along_axis(idx, order, axis=1)
    if tied.any():
        idx[tied] = np.argsort(K[tied], axis=1, kind="stable")[:, :k]
    return idx


def select_groups(G: np.ndarray, top_n: int = TOP_N) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pos_idx, pos_ok, neg_idx, neg_ok): column indices of G (reason groups) of the top positive and
    negative reasons per row (at most `top_n` columns each; fewer when there are fewer groups).

    Positives in the order of a stable argsort of -G (strongest first, ties: lower group first), negatives
    in the reverse of it (most negative first, ties: higher group first); only |impact| > MIN_ABS_IMPACT
    counts.
    """
    F = G.shape[1]
    if G.shape[0] <= SMALL_ROWS:  # one stable sort is cheapest for a request's rows
        order = np.argsort(-G, axis=1, kind="stable")
        pos, neg = order[:, :top_n], order[:, ::-1][:, :top_n]
    else:
        pos = smallest_k(-G, top_n)
        neg = (F - 1) - smallest_k(G[:, ::-1], top_n)
    pos_ok = np.take_along_axis(G, pos, axis=1) > MIN_ABS_IMPACT
    neg_ok = np.take_along_axis(G, neg, axis=1) < -MIN_ABS_IMPACT
    return pos, pos_ok, neg, neg_ok


def strongest_members(C: np.ndarray, features: tuple[str, ...], chosen: np.ndarray, sign: int) -> np.ndarray:
    """(rows, k): for each row's chosen groups (rows, k), the member feature that pushes hardest up
    (sign +1: largest contribution) or down (sign -1: smallest); the first in feature order on ties.
    Only the chosen groups are looked at: a lead's top reasons, not every group."""
    M, valid = _members(features)
    cand = M[chosen]  # (rows, k, members)
    sub = np.take_along_axis(C[:, None, :], cand, axis=2) if C.shape[0] else np.zeros(cand.shape)
    best = np.argmax(np.where(valid[chosen], sign * sub, -np.inf), axis=2)
    return np.take_along_axis(cand, best[:, :, None], axis=2)[:, :, 0]


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
        if j in self.categorical:
            key = (j, ("s", raw)) if isinstance(raw, str) else (j, ("c", float(x)))
        else:
            key = (j, ("nan",)) if math.isnan(x) else (j, float(x))
        hit = self.cache.get(key)
        if hit is None:
            value = raw if isinstance(raw, str) and j in self.categorical else display_value(
                self.encoder, self.encoder.features[j], x)
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


@dataclass(frozen=True)
class ReasonArrays:
    """The top reasons of n rows over 2 * top_n slots: top_n positive (strongest first), then top_n
    negative (most negative first). Slots without a reason have ok False and None value and text."""

    feature: np.ndarray  # (n, slots) int: the encoder feature whose sentence the reason reads
    ok: np.ndarray  # (n, slots) bool
    impact: np.ndarray  # (n, slots) float: the reason group's summed contribution (log-odds)
    points: np.ndarray  # (n, slots) int
    value: np.ndarray  # (n, slots) object: the display value
    text: np.ndarray  # (n, slots) object




def reason_arrays(C: np.ndarray, X: np.ndarray, encoder: Encoder, raw_values: Mapping | None = None,
                  top_n: int = TOP_N, sentences: SentenceCache | None = None) -> ReasonArrays:
    """The top reasons of every row of contributions C (rows, features) at encoded values X.

    A reason is a group of features (a channel over its windows, or one feature): its impact is the sum of
    the group's contributions, and its sentence is that of the member that pushes hardest in the same
    direction — so a lead never reads "2 pricing visits in 90 days lowers the score" next to "2 pricing
    visits in 7 days raises it" when together they raise it. Ties: the lower group first among positives,
    the higher among negatives, the first member within a group. `raw_values` maps categorical features to
    the values sent (shown as is, also when unseen in training).
    """
    names = encoder.features
    n = C.shape[0]
    sentences = sentences or SentenceCache(encoder)
    G = group_sums(C, names)
    pos, pos_ok, neg, neg_ok = select_groups(G, top_n)

    def pad(a: np.ndarray, fill) -> np.ndarray:
        if a.shape[1] >= top_n:
            return a
        return np.concatenate([a, np.full((n, top_n - a.shape[1]), fill, dtype=a.dtype)], axis=1)

    group = np.concatenate([pad(pos, 0), pad(neg, 0)], axis=1)
    ok = np.concatenate([pad(pos_ok, False), pad(neg_ok, False)], axis=1)
    member = np.concatenate([strongest_members(C, names, pad(pos, 0), +1),
                             strongest_members(C, names, pad(neg, 0), -1)], axis=1) if G.shape[1] else (
        np.zeros((n, 2 * top_n), dtype=np.int64))
    impact = np.take_along_axis(G, group, axis=1) if G.shape[1] else np.zeros((n, 2 * top_n))
    impact = np.where(ok, impact, 0.0)
    pts = np.round(impact * POINTS_PER_DOUBLING / math.log(2)).astype(np.int64)
    value = np.full(ok.shape, None, dtype=object)
    text = np.full(ok.shape, None, dtype=object)
    rows, slots = np.nonzero(ok)
    js = member[rows, slots]
    xs = X[rows, js]
    raw_values = raw_values or {}
    if len(rows) <= SMALL:
        one = sentences.one
        for r, s, j, x in zip(rows.tolist(), slots.tolist(), js.tolist(), xs.tolist()):
            raw = raw_values.get(names[j])
            value[r, s], text[r, s] = one(j, x, raw[r] if raw is not None else None)
    else:  # one pass per feature over its reasons
        flat = rows * ok.shape[1] + slots
        value_flat, text_flat = value.reshape(-1), text.reshape(-1)
        order = np.argsort(js, kind="stable")
        for sel in np.split(order, np.flatnonzero(np.diff(js[order])) + 1):
            j = int(js[sel[0]])
            raw = raw_values.get(names[j])
            value_flat[flat[sel]], text_flat[flat[sel]] = sentences.many(
                j, xs[sel], np.asarray(raw, dtype=object)[rows[sel]] if raw is not None else None)
    return ReasonArrays(member, ok, impact, pts, value, text)


def round_like_python(x: np.ndarray, digits: int = 6) -> np.ndarray:
    """`round(v, digits)` of every element, bit for bit, without a Python call per element.

    np.round (rint(x * 10**d) / 10**d) is correctly rounded whenever x * 10**d is not within rounding error
    of a half; those few elements are rounded by Python.
    """
    if len(x) <= 64:  # a request's few reasons: Python's round is cheaper than the array operations
        return np.array([round(v, digits) for v in x.tolist()], dtype=np.float64)
    scale = 10.0 ** digits
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * scale
        out = np.rint(y) / scale
        near_half = ~(np.abs(np.abs(y - np.floor(y)) - 0.5) > 1e-6) | ~(np.abs(y) < 2.0 ** 52)
    for i in np.flatnonzero(near_half).tolist():
        out[i] = round(float(x[i]), digits)
    return out


def _per_row(t: ReasonArrays, names: tuple[str, ...], make, rounded: bool = False) -> list[list]:
    """make(feature, value, impact, points, text) for each reason, as one list per row in slot order
    (impact rounded to 6 decimals if `rounded`)."""
    rows, slots = np.nonzero(t.ok)
    impact = t.impact[rows, slots]
    if rounded:
        impact = round_like_python(impact, 6)
    items = list(map(make, [names[j] for j in t.feature[rows, slots].tolist()], t.value[rows, slots].tolist(),
                     impact.tolist(), t.points[rows, slots].tolist(), t.text[rows, slots].tolist()))
    out, start = [], 0
    for count in np.bincount(rows, minlength=t.ok.shape[0]).tolist():
        out.append(items[start:start + count])
        start += count
    return out


def top_reasons(C: np.ndarray, X: np.ndarray, encoder: Encoder, raw_values: Mapping | None = None,
                top_n: int = TOP_N, sentences: SentenceCache | None = None) -> list[list[Reason]]:
    """Per row, the top `top_n` positive then top `top_n` negative reasons, strongest first (see
    `reason_arrays`)."""
    return _per_row(reason_arrays(C, X, encoder, raw_values, top_n, sentences), encoder.features, Reason)


def top_reason_dicts(C: np.ndarray, X: np.ndarray, encoder: Encoder, raw_values: Mapping | None = None,
                     top_n: int = TOP_N, sentences: SentenceCache | None = None) -> list[list[dict]]:
    """`top_reasons` as the API's JSON objects (`Reason.to_dict`), without building `Reason`s first."""
    def make(feature, value, impact, pts, text):
        return {"feature": feature, "value": value, "impact": impact, "points": pts, "text": text}

    return _per_row(reason_arrays(C, X, encoder, raw_values, top_n, sentences), encoder.features, make, rounded=True)


def reasons_for_row(contrib: np.ndarray, X_row: np.ndarray, encoder: Encoder, raw_values: dict | None = None,
                    top_n: int = TOP_N) -> list[Reason]:
    """`top_reasons` of one row (raw_values: feature -> the one value sent)."""
    raw = {k: np.array([v], dtype=object) for k, v in (raw_values or {}).items()}
    return top_reasons(np.asarray(contrib, dtype=np.float64)[None, :], np.asarray(X_row, dtype=np.float64)[None, :],
                       encoder, raw, top_n)[0]
