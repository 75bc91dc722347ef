"""Contributions into reasons a salesperson reads: points and a sentence per feature.

Points: 20 points double the odds of qualifying (the scorecard convention, `POINTS_PER_DOUBLING`). The raw
`impact` in log-odds is kept alongside, because that is what adds up exactly to the model's output.

One implementation serves the API (`ScoringModel.results`: one to a thousand leads) and batch scoring
(`model.batch`: millions): `reason_arrays` picks the top reasons of every row at once (reason groups summed
in feature order, the top ones and the strongest member of each in one compiled pass, `_pick`) and
renders each distinct (feature, value) sentence once (`SentenceCache`). `top_reasons` turns that into
per-row lists.

What is a reason, decided here for the API, batch scoring and the sales page alike: a reason group that
moves the score by at least one point (`MIN_ABS_IMPACT`: half a point, below which the points round to
0), counting only contributions that may be presented (`hidden`: values outside the training range and
values that say nothing, see `model.ranges`). The contributions themselves are untouched: they still add
up exactly to the score (`explain=full`).
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
from numba import njit

POINTS_PER_DOUBLING = 20.0
TOP_N = 5
# A reason moves the score by at least one point: below half a point its points round to 0 ("0 Industry:
# manufacturing" is not a reason). In log-odds: 0.5 / POINTS_PER_DOUBLING * ln 2.
MIN_ABS_IMPACT = 0.5 * math.log(2) / POINTS_PER_DOUBLING
SMALL = 4096  # up to this many reasons, values and sentences are looked up one by one (no numpy overhead)
DIRECT_ROWS = 8  # up to this many rows, `top_reason_dicts` builds the objects without intermediate arrays


def points(impact: float) -> int:
    return int(round(impact * POINTS_PER_DOUBLING / math.log(2)))


def notable(reason: Mapping) -> bool:
    """Whether a stored reason (a dict with `points`) is one: it moves the score by at least one point.
    Reasons logged before this rule may hold 0-point ones; the sales page leaves them out with this."""
    return (reason.get("points") or 0) != 0


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: object
    impact: float
    points: int
    text: str

    def to_dict(self) -> dict:
        return {
            "feature": self.feature,
            "value": self.value,
            "impact": round(self.impact, 6),
            "points": self.points,
            "text": self.text,
        }


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
def _csr(features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(members, starts): each reason group's member features in feature order, group after group;
    group g is members[starts[g]:starts[g + 1]]."""
    names, index = groups(features)
    members = np.argsort(index, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(names)))])
    return members, starts.astype(np.int64)


@njit(cache=True, nogil=True)
def _pick(C, members, starts, top_n, min_abs, group, member, impact, ok):  # pragma: no cover - compiled
    """Top reasons of each row of C (rows, features), written into (rows, 2 * top_n) outputs.

    A group's impact is the sum of its members' contributions, added in feature order. Slots 0..top_n-1:
    the top_n largest impacts (ties: the lower group first), as a stable sort of -impact orders them;
    slots top_n..: the top_n smallest (ties: the higher group first), i.e. that order reversed. A slot is ok
    when its impact is beyond +min_abs (positives) or -min_abs (negatives); a slot without a group (fewer
    groups than top_n) reads group 0 and is not ok. `member`: the group's member pushing hardest in the
    slot's direction (the first in feature order on ties)."""
    n = C.shape[0]
    n_groups = starts.shape[0] - 1
    G = np.empty(n_groups)
    taken = np.empty(n_groups, dtype=np.bool_)
    for i in range(n):
        for g in range(n_groups):
            s = 0.0
            for k in range(starts[g], starts[g + 1]):
                s += C[i, members[k]]
            G[g] = s
        for side in range(2):
            sign = 1.0 if side == 0 else -1.0
            taken[:] = False
            for slot in range(top_n):
                out = side * top_n + slot
                best = -1
                if slot < n_groups:
                    for g in range(n_groups):
                        if taken[g]:
                            continue
                        if best < 0 or (side == 0 and G[g] > G[best]) or (side == 1 and G[g] <= G[best]):
                            best = g
                    taken[best] = True
                g = best if best >= 0 else 0
                group[i, out] = g
                good = best >= 0 and (G[g] > min_abs if side == 0 else G[g] < -min_abs)
                ok[i, out] = good
                impact[i, out] = G[g] if good else 0.0
                strongest = members[starts[g]]
                for k in range(starts[g] + 1, starts[g + 1]):
                    if sign * C[i, members[k]] > sign * C[i, strongest]:
                        strongest = members[k]
                member[i, out] = strongest


def pick_reasons(
    C: np.ndarray, features: tuple[str, ...], top_n: int = TOP_N
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group, member, impact, ok), each (rows, 2 * top_n): the top `top_n` positive reason groups of each
    row (strongest first), then the top `top_n` negative ones (most negative first); see `_pick`."""
    members, starts = _csr(features)
    n = C.shape[0]
    group = np.empty((n, 2 * top_n), dtype=np.int64)
    member = np.empty((n, 2 * top_n), dtype=np.int64)
    impact = np.empty((n, 2 * top_n), dtype=np.float64)
    ok = np.empty((n, 2 * top_n), dtype=np.bool_)
    if len(starts) > 1:
        _pick(
            np.ascontiguousarray(C, dtype=np.float64),
            members,
            starts,
            top_n,
            MIN_ABS_IMPACT,
            group,
            member,
            impact,
            ok,
        )
    else:  # a model without features
        group[:], member[:], impact[:], ok[:] = 0, 0, 0.0, False
    return group, member, impact, ok


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


def shown_contributions(C: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
    """C with the contributions that may not be presented as reasons set to 0 (`hidden`: see
    `model.ranges.Checks.hidden`); C itself when there are none."""
    return C if hidden is None else np.where(hidden, 0.0, C)


def reason_arrays(
    C: np.ndarray,
    X: np.ndarray,
    encoder: Encoder,
    raw_values: Mapping | None = None,
    top_n: int = TOP_N,
    sentences: SentenceCache | None = None,
    hidden: np.ndarray | None = None,
) -> ReasonArrays:
    """The top reasons of every row of contributions C (rows, features) at encoded values X.

    A reason is a group of features (a channel over its windows, or one feature): its impact is the sum of
    the group's contributions, and its sentence is that of the member that pushes hardest in the same
    direction — so a lead never reads "2 pricing visits in 90 days lowers the score" next to "2 pricing
    visits in 7 days raises it" when together they raise it. Ties: the lower group first among positives,
    the higher among negatives, the first member within a group. `raw_values` maps categorical features to
    the values sent (shown as is, also when unseen in training). `hidden`: contributions never presented.
    """
    names = encoder.features
    sentences = sentences or SentenceCache(encoder)
    _, member, impact, ok = pick_reasons(shown_contributions(C, hidden), names, top_n)
    pts = _points(impact)
    ok &= pts != 0  # beyond half a point by a rounding error only
    value = np.full(ok.shape, None, dtype=object)
    text = np.full(ok.shape, None, dtype=object)
    rows, slots = np.nonzero(ok)
    js = member[rows, slots]
    xs = X[rows, js]
    raw_values = raw_values or {}
    if len(rows) <= SMALL:
        one = sentences.one
        for r, s, j, x in zip(rows.tolist(), slots.tolist(), js.tolist(), xs.tolist(), strict=False):
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
                j, xs[sel], np.asarray(raw, dtype=object)[rows[sel]] if raw is not None else None
            )
    return ReasonArrays(member, ok, impact, pts, value, text)


def _points(impact: np.ndarray) -> np.ndarray:
    """`points` of every impact."""
    return np.round(impact * POINTS_PER_DOUBLING / math.log(2)).astype(np.int64)


def round_like_python(x: np.ndarray, digits: int = 6) -> np.ndarray:
    """`round(v, digits)` of every element, bit for bit, without a Python call per element.

    np.round (rint(x * 10**d) / 10**d) is correctly rounded whenever x * 10**d is not within rounding error
    of a half; those few elements are rounded by Python.
    """
    if len(x) <= 64:  # a request's few reasons: Python's round is cheaper than the array operations
        return np.array([round(v, digits) for v in x.tolist()], dtype=np.float64)
    scale = 10.0**digits
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * scale
        out = np.rint(y) / scale
        near_half = ~(np.abs(np.abs(y - np.floor(y)) - 0.5) > 1e-6) | ~(np.abs(y) < 2.0**52)
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
    items = list(
        map(
            make,
            [names[j] for j in t.feature[rows, slots].tolist()],
            t.value[rows, slots].tolist(),
            impact.tolist(),
            t.points[rows, slots].tolist(),
            t.text[rows, slots].tolist(),
        )
    )
    out, start = [], 0
    for count in np.bincount(rows, minlength=t.ok.shape[0]).tolist():
        out.append(items[start : start + count])
        start += count
    return out


def top_reasons(
    C: np.ndarray,
    X: np.ndarray,
    encoder: Encoder,
    raw_values: Mapping | None = None,
    top_n: int = TOP_N,
    sentences: SentenceCache | None = None,
    hidden: np.ndarray | None = None,
) -> list[list[Reason]]:
    """Per row, the top `top_n` positive then top `top_n` negative reasons, strongest first (see
    `reason_arrays`)."""
    return _per_row(
        reason_arrays(C, X, encoder, raw_values, top_n, sentences, hidden), encoder.features, Reason
    )


def top_reason_dicts(
    C: np.ndarray,
    X: np.ndarray,
    encoder: Encoder,
    raw_values: Mapping | None = None,
    top_n: int = TOP_N,
    sentences: SentenceCache | None = None,
    hidden: np.ndarray | None = None,
) -> list[list[dict]]:
    """`top_reasons` as the API's JSON objects (`Reason.to_dict`), without building `Reason`s first."""

    def make(feature, value, impact, pts, text):
        return {"feature": feature, "value": value, "impact": impact, "points": pts, "text": text}

    names = encoder.features
    if C.shape[0] > DIRECT_ROWS:
        return _per_row(
            reason_arrays(C, X, encoder, raw_values, top_n, sentences, hidden), names, make, rounded=True
        )
    # a request's few rows: from the picked slots straight to the objects (the same picks, sentences and
    # rounding as `reason_arrays` + `_per_row`, without their intermediate arrays)
    sentences = sentences or SentenceCache(encoder)
    _, member, impact, ok = pick_reasons(shown_contributions(C, hidden), names, top_n)
    raw_values = raw_values or {}
    out = []
    for i, (js, impacts, oks, pts) in enumerate(
        zip(member.tolist(), impact.tolist(), ok.tolist(), _points(impact).tolist(), strict=False)
    ):
        row = []
        for j, imp, good, p in zip(js, impacts, oks, pts, strict=False):
            if good and p != 0:
                raw = raw_values.get(names[j])
                value, text = sentences.one(j, float(X[i, j]), raw[i] if raw is not None else None)
                row.append(make(names[j], value, round(imp, 6), p, text))
        out.append(row)
    return out
