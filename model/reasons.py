"""Contributions into reasons a salesperson reads: points and a sentence per feature.

Points: 20 points double the odds of qualifying (the scorecard convention, `POINTS_PER_DOUBLING`). The raw
`impact` in log-odds is kept alongside, because that is what adds up exactly to the model's output.

One implementation serves the API (`ScoringModel.results`: one to a thousand leads) and batch scoring
(`model.batch`: millions): `reason_arrays` picks the top reasons of every row at once (reason groups summed
in feature order, the top ones and the strongest member of each in one compiled pass,
`reason_groups.pick_reasons`) and renders each distinct (feature, value) sentence once
(`sentences.SentenceCache`). `top_reasons` gives them as per-row lists of `Reason`s.

What is a reason, decided here for the API, batch scoring and the sales page alike: a reason group that
moves the score by at least one point (`reason_groups.MIN_ABS_IMPACT`: half a point, below which the
points round to 0), counting only contributions that may be presented (`hidden`: values outside the
training range and values that say nothing, see `model.ranges`). The contributions themselves are
untouched: they still add up exactly to the score (`explain=full`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from leadscore.model.encoding import Encoder
from leadscore.model.reason_groups import POINTS_PER_DOUBLING, TOP_N, pick_reasons
from leadscore.model.sentences import SentenceCache

SMALL = 4096  # up to this many reasons, values and sentences are looked up one by one (no numpy overhead)
DIRECT_ROWS = 8  # up to this many rows, `top_reasons` builds the objects without intermediate arrays
# A `Reason`'s keys in the order the score log stores a reason (an array of their values, docs/api.md)
# and `top_reasons(..., as_fields=True)` gives one (a tuple).
REASON_FIELDS = ("feature", "value", "impact", "points", "text")


class Reason(TypedDict):
    """One reason, as the API answers it, the score log keeps it and the sales page shows it."""

    feature: str  # the feature whose sentence the reason reads (the strongest member of its group)
    value: object  # its display value
    impact: float  # the reason group's summed calibrated contribution in log-odds, rounded to 6 decimals
    points: int  # impact in points (`POINTS_PER_DOUBLING` points double the odds)
    text: str


def notable(reason: Mapping[str, Any]) -> bool:
    """Whether a stored reason (a dict with `points`) is one: it moves the score by at least one point.
    Reasons logged before this rule may hold 0-point ones; the sales page leaves them out with this."""
    return (reason.get("points") or 0) != 0


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
    raw_values: Mapping[str, np.ndarray] | None = None,
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


def _per_row(t: ReasonArrays, names: tuple[str, ...], as_fields: bool = False) -> list[list[Any]]:
    """The reasons of each row, in slot order, their impacts rounded to 6 decimals: `Reason`s, or with
    `as_fields` tuples of their `REASON_FIELDS` values (made by `zip`, no dict a reason)."""
    rows, slots = np.nonzero(t.ok)
    columns = (
        np.array(names, dtype=object)[t.feature[rows, slots]].tolist(),
        t.value[rows, slots].tolist(),
        round_like_python(t.impact[rows, slots], 6).tolist(),
        t.points[rows, slots].tolist(),
        t.text[rows, slots].tolist(),
    )
    items: list[Any] = (
        list(zip(*columns, strict=True))
        if as_fields
        else [
            {"feature": f, "value": value, "impact": impact, "points": pts, "text": text}
            for f, value, impact, pts, text in zip(*columns, strict=True)
        ]
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
    raw_values: Mapping[str, np.ndarray] | None = None,
    top_n: int = TOP_N,
    sentences: SentenceCache | None = None,
    hidden: np.ndarray | None = None,
    as_fields: bool = False,
) -> list[list[Any]]:
    """Per row, the top `top_n` positive then top `top_n` negative reasons, strongest first (see
    `reason_arrays`): `Reason`s, or with `as_fields` each a tuple of its `REASON_FIELDS` values, the form
    the score log stores (a bulk rescore encodes them without a dict a reason)."""
    names = encoder.features
    if C.shape[0] > DIRECT_ROWS:
        return _per_row(reason_arrays(C, X, encoder, raw_values, top_n, sentences, hidden), names, as_fields)
    # a request's few rows: from the picked slots straight to the reasons, without the intermediate arrays
    # of `reason_arrays`, whose set-up dominates for one lead (docs/benchmarks.md, size-based branches); the
    # same picks, sentences and rounding
    sentences = sentences or SentenceCache(encoder)
    _, member, impact, ok = pick_reasons(shown_contributions(C, hidden), names, top_n)
    raw_values = raw_values or {}
    out: list[list[Any]] = []
    for i, (js, impacts, oks, pts) in enumerate(
        zip(member.tolist(), impact.tolist(), ok.tolist(), _points(impact).tolist(), strict=True)
    ):
        row: list[Any] = []
        for j, imp, good, p in zip(js, impacts, oks, pts, strict=True):
            if good and p != 0:
                raw = raw_values.get(names[j])
                value, text = sentences.one(j, float(X[i, j]), raw[i] if raw is not None else None)
                row.append(
                    (names[j], value, round(imp, 6), p, text)
                    if as_fields
                    else {
                        "feature": names[j],
                        "value": value,
                        "impact": round(imp, 6),
                        "points": p,
                        "text": text,
                    }
                )
        out.append(row)
    return out
