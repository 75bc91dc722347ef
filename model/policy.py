"""The handoff policy: which probability hands a lead to sales, and the A–D grades around it.

One frozen object, chosen on calibration data and stored with the model, so the service, the batch scorer
and the sales page all grade the same way. Grades: A = at or above the handoff threshold (call now);
B = above the average qualification rate; C = above a third of it (nurture); D = below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

PolicyKind = Literal["capacity", "precision", "f1"]
Grade = Literal["A", "B", "C", "D"]  # the grade letters, defined here only
GRADES: tuple[Grade, ...] = get_args(Grade)
_GRADES = np.array(GRADES)


@dataclass(frozen=True, slots=True)
class HandoffPolicy:
    kind: PolicyKind
    threshold: float
    grade_cutoffs: tuple[float, float, float]  # probability at or above which a lead is A, B, C
    target: float | None = None  # leads per week (capacity) or precision (precision)
    expected_per_week: float = 0.0  # leads over the threshold per week on the data it was chosen on
    expected_precision: float = 0.0
    expected_recall: float = 0.0

    def grade(self, p: np.ndarray) -> np.ndarray:
        a, b, c = self.grade_cutoffs
        p = np.asarray(p)
        # a request's few leads: plain comparisons, cheaper than numpy's set-up (docs/benchmarks.md)
        if p.ndim == 1 and len(p) <= 16:
            g_a, g_b, g_c, g_d = GRADES
            return np.array(
                [g_a if x >= a else g_b if x >= b else g_c if x >= c else g_d for x in p.tolist()],
                dtype=_GRADES.dtype,
            )
        return _GRADES[np.where(p >= a, 0, np.where(p >= b, 1, np.where(p >= c, 2, 3)))]

    def qualified(self, p: np.ndarray) -> np.ndarray:
        """At or above the handoff threshold (before exploration: model.exploration.handoff)."""
        return np.asarray(p) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grade_cutoffs"] = list(self.grade_cutoffs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HandoffPolicy:
        return cls(**{**d, "grade_cutoffs": tuple(d["grade_cutoffs"])})


def choose_policy(
    p: np.ndarray,
    y: np.ndarray,
    as_of: pd.Series,
    kind: PolicyKind = "f1",
    target: float | None = None,
    weight: np.ndarray | None = None,
) -> HandoffPolicy:
    """Pick the threshold on (p, y) by `kind`; volumes per week are measured over the span of `as_of`.
    `weight` (inverse-propensity weights): each row counts that many leads, so precision, recall and
    volumes are those of all leads."""
    p, y = np.asarray(p, float), np.asarray(y, int)
    # one path: no weights is every weight 1 (sums of ones and zeros are exact, so the unweighted policy is
    # the same to the bit as before weights existed)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, float)
    order = np.argsort(-p, kind="stable")
    ps, ys, ws = p[order], y[order], w[order]
    tp, k = np.cumsum(ws * ys), np.cumsum(ws)  # (weighted) qualified and leads at or above each row
    precision, recall = tp / k, tp / max(tp[-1] if len(tp) else 0.0, 1e-12)
    weeks = max((as_of.max() - as_of.min()).total_seconds() / (7 * 86400), 1.0) if len(as_of) else 1.0
    if kind == "capacity":
        if not target or target <= 0:
            raise ValueError("a capacity policy needs a positive target: leads per week sales can take")
        # the first row at which the leads over the threshold reach the target, rounded to whole leads:
        # unweighted, the round(target * weeks)-th lead; weighted, as if each row were `weight` leads
        i = int(np.clip(np.searchsorted(k, round(target * weeks), side="left"), 0, len(ps) - 1))
    elif kind == "precision":
        if target is None or not 0 < target < 1:
            raise ValueError("a precision policy needs a target precision between 0 and 1")
        ok = np.flatnonzero(precision >= target)
        i = int(ok.max()) if len(ok) else 0
    else:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        i = int(np.argmax(f1))
    threshold = float(ps[i])
    rate = float(np.average(y, weights=w)) if len(y) else 0.0
    b = min(rate, threshold)
    cutoffs = (threshold, b, min(rate / 3, b))
    sel = p >= threshold
    return HandoffPolicy(
        kind=kind,
        threshold=threshold,
        grade_cutoffs=cutoffs,
        target=target,
        expected_per_week=float(w[sel].sum() / weeks),
        expected_precision=float(np.average(y[sel], weights=w[sel])) if sel.any() else 0.0,
        expected_recall=float((w * y)[sel].sum() / max((w * y).sum(), 1e-12)),
    )
