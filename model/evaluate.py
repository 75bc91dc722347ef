"""Holdout metrics (ROC AUC, ECE, lift, per-grade rates; weighted with inverse-propensity weights when
given) and the tests of a difference beyond noise: paired bootstraps of two predictions, the positive-rate
shift between two slices. The plots drawn from them are in `plots.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from leadscore.model.policy import GRADES, HandoffPolicy
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

if TYPE_CHECKING:
    pass


def _cumulative(order: np.ndarray, w: np.ndarray, v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The sum of `v` over the first `at` units of weight of the rows in `order`, a row counting `w` units
    (a row of weight 3 is three rows): a fraction of a row's `v` where `at` falls inside it."""
    wo, vo = w[order], v[order]
    end = np.cumsum(wo)
    before = np.concatenate([[0.0], np.cumsum(wo * vo)])
    i = np.clip(np.searchsorted(end, at, side="left"), 0, max(len(order) - 1, 0))
    start = end[i] - wo[i] if len(order) else np.zeros_like(at)
    inside = np.clip(at - start, 0.0, wo[i] if len(order) else 0.0)
    out: np.ndarray = before[i] + inside * (vo[i] if len(order) else 0.0)
    return out


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10, weight: np.ndarray | None = None) -> float:
    """Expected calibration error over equal-count bins of predicted probability. With `weight`
    (inverse-propensity weights) a row counts `weight` rows: the bins hold equal weight and a row may be
    split between two, so integer weights give the ECE of the rows repeated (it measures the population).
    No weights is every weight 1: the bins of `np.array_split` (the first `n % bins` one row larger)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, float)
    total = float(w.sum())
    if total <= 0:
        return 0.0
    gap = np.diff(_cumulative(np.argsort(p, kind="stable"), w, p - y, _edges(total, bins)))
    return float(np.abs(gap).sum() / total)


def _edges(total: float, bins: int) -> np.ndarray:
    """Bin boundaries in units of weight: `np.array_split`'s for `total` rows (the first `total % bins` bins
    one larger), the same formula for a total weight that is not whole."""
    q, r = divmod(total, bins)
    return np.array([j * q + min(j, r) for j in range(bins + 1)])


def reliability_points(
    p: np.ndarray, y: np.ndarray, bins: int = 10, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) of each of `ece`'s bins, for reliability plots: with `weight`, the
    population's (the same bins and weights as the ECE printed beside the curve)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, float)
    total = float(w.sum())
    if total <= 0:
        return np.empty(0), np.empty(0)
    order, edges = np.argsort(p, kind="stable"), _edges(total, bins)
    mass = np.diff(edges)
    keep = mass > 0
    xs = np.diff(_cumulative(order, w, p, edges))[keep] / mass[keep]
    ys = np.diff(_cumulative(order, w, y, edges))[keep] / mass[keep]
    return xs, ys


def _mean(x: np.ndarray, w: np.ndarray | None) -> float:
    return float(x.mean() if w is None else np.average(x, weights=w))


def lift_top_decile(p: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Qualification rate of the top 10 % (rounded up to whole rows; with `weight`, of weight: a row counts
    `weight` rows) over the overall rate."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, float)
    if not len(p) or w.sum() <= 0:
        return 0.0
    k = max(float(np.ceil(0.1 * w.sum())), min(1.0, float(w.sum())))
    top = float(_cumulative(np.argsort(-p, kind="stable"), w, y, np.array([k]))[0]) / k
    return float(top / max(_mean(y, w), 1e-12))


def metrics(
    p: np.ndarray, y: np.ndarray, policy: HandoffPolicy | None = None, weight: np.ndarray | None = None
) -> dict[str, Any]:
    """Holdout metrics. `weight` (inverse-propensity weights of the rows) makes every figure an estimate
    for all leads rather than for the handed-over ones the labels came from; `n` stays the row count."""
    p, y = np.asarray(p, float), np.asarray(y, int)
    w = None if weight is None else np.asarray(weight, float)
    out = {
        "roc_auc": float(roc_auc_score(y, p, sample_weight=w)),
        "pr_auc": float(average_precision_score(y, p, sample_weight=w)),
        "brier": float(brier_score_loss(y, p, sample_weight=w)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=w)),
        "ece": ece(p, y, weight=w),
        "lift_top_decile": lift_top_decile(p, y, w),
        "positive_rate": _mean(y, w),
        "n": int(len(y)),
    }
    if policy is not None:
        ww = np.ones(len(y)) if w is None else w
        sel = policy.qualified(p)
        out["precision_at_threshold"] = _mean(y[sel], None if w is None else w[sel]) if sel.any() else 0.0
        out["recall_at_threshold"] = (
            float(y[sel].sum() / max(y.sum(), 1))
            if w is None
            else float((ww * y)[sel].sum() / max((ww * y).sum(), 1e-12))
        )
        grades = policy.grade(p)
        for g in GRADES:
            m = grades == g
            out[f"rate_grade_{g}"] = _mean(y[m], None if w is None else w[m]) if m.any() else float("nan")
            out[f"share_grade_{g}"] = _mean(m, w)
    return out


def paired_bootstrap_auc(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    n: int = 300,
    seed: int = 0,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Difference in ROC AUC (new - old) on the same rows, with a bootstrap 95 % interval; with `weight`
    (inverse-propensity weights), weighted AUCs, resampling rows with their weights."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    w = None if weight is None else np.asarray(weight, float)
    diffs: list[float] = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        wi = None if w is None else w[idx]
        diffs.append(
            roc_auc_score(y[idx], p_new[idx], sample_weight=wi)
            - roc_auc_score(y[idx], p_old[idx], sample_weight=wi)
        )
    return {
        "diff": float(roc_auc_score(y, p_new, sample_weight=w) - roc_auc_score(y, p_old, sample_weight=w)),
        "low": float(np.quantile(diffs, 0.025)),
        "high": float(np.quantile(diffs, 0.975)),
    }


def _ece_shares(p: np.ndarray, w: np.ndarray, bins: int) -> np.ndarray:
    """(rows, bins): the share of each row's weight in each of `ece`'s bins (0 or 1 without weights; a
    weighted row may straddle two)."""
    order = np.argsort(p, kind="stable")
    end = np.empty(len(p))
    end[order] = np.cumsum(w[order])
    start, edges = end - w, _edges(float(w.sum()), bins)
    overlap = np.clip(
        np.minimum(end[:, None], edges[None, 1:]) - np.maximum(start[:, None], edges[None, :-1]), 0.0, None
    )
    share: np.ndarray = overlap / np.where(w > 0, w, 1.0)[:, None]
    return share


def paired_bootstrap_ece(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    groups: np.ndarray | None = None,
    n: int = 400,
    seed: int = 0,
    bins: int = 10,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """ECE of two predictions of the same rows (new - old) with a bootstrap 95 % interval; `weight`: the
    rows' inverse-propensity weights (`ece`'s), kept in every replicate.

    Resamples `groups` (e.g. leads: a lead's rows at several ages are correlated) with replacement, rows
    otherwise. The bins are those of the full sample (`ece`'s equal-weight bins of each prediction, a row's
    weight shared between two where a boundary falls in it), so a replicate re-weights rows rather than
    re-sorting them: `ece` exactly for the original sample.
    """
    y, p_new, p_old = np.asarray(y, float), np.asarray(p_new, float), np.asarray(p_old, float)
    codes = pd.factorize(pd.Series(groups))[0] if groups is not None else np.arange(len(y))
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    base = np.ones(len(y)) if weight is None else np.asarray(weight, float)
    shares_new, shares_old = _ece_shares(p_new, base, bins), _ece_shares(p_old, base, bins)
    rng = np.random.default_rng(seed)

    def weighted(w: np.ndarray, shares: np.ndarray, p: np.ndarray) -> float:
        gap = (w * (p - y)) @ shares
        return float(np.abs(gap).sum() / max(w.sum(), 1e-12))

    diffs = np.empty(n)
    for i in range(n):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[codes] * base
        diffs[i] = weighted(w, shares_new, p_new) - weighted(w, shares_old, p_old)
    ece_new, ece_old = ece(p_new, y, bins, weight=weight), ece(p_old, y, bins, weight=weight)
    return {
        "diff": ece_new - ece_old,
        "low": float(np.quantile(diffs, 0.025)),
        "high": float(np.quantile(diffs, 0.975)),
        "new": ece_new,
        "old": ece_old,
    }


def clustered_covariance(x: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray | float:
    """The covariance of the column sums of `x` (rows, or rows x columns) when the rows of one group are
    dependent and groups independent: C'C with C the per-group sums of `x` (every row its own group without
    `groups`). With residuals as `x`, the cluster-robust (sandwich) variance of their sum; a scalar for a
    vector."""
    x = np.asarray(x, float)
    if groups is not None:
        frame = pd.Series(x) if x.ndim == 1 else pd.DataFrame(x)
        x = frame.groupby(pd.factorize(pd.Series(groups))[0]).sum().to_numpy()
    cov: np.ndarray | float = x.T @ x
    return cov


def positive_rate_shift(
    y_before: np.ndarray,
    y_after: np.ndarray,
    groups_before: np.ndarray | None = None,
    groups_after: np.ndarray | None = None,
    z: float = 3.0,
    weight_before: np.ndarray | None = None,
    weight_after: np.ndarray | None = None,
) -> dict[str, Any]:
    """Do two slices have different positive rates beyond noise? A two-proportion z-test under the pooled
    rate, with standard errors clustered by `groups` (a lead's rows at several ages are correlated, so rows
    are not independent draws; without groups every row is its own cluster). `shifted` when |z| > `z`
    (3: about 1 false alarm in 370 when nothing moved). With weights (inverse-propensity), the rates are
    the population's (weighted means) and the variances those of weighted means; none is every weight 1."""
    a, b = np.asarray(y_before, float), np.asarray(y_after, float)
    n1, n2 = len(a), len(b)
    wa = np.ones(n1) if weight_before is None else np.asarray(weight_before, float)
    wb = np.ones(n2) if weight_after is None else np.asarray(weight_after, float)
    ra = float((wa * a).sum() / wa.sum()) if n1 else None
    rb = float((wb * b).sum() / wb.sum()) if n2 else None
    out: dict[str, Any] = {
        "rate_before": ra,
        "rate_after": rb,
        "n_before": n1,
        "n_after": n2,
        "z": 0.0,
        "shifted": False,
    }
    if ra is None or rb is None:
        return out
    pooled = ((wa * a).sum() + (wb * b).sum()) / (wa.sum() + wb.sum())

    def variance(y: np.ndarray, w: np.ndarray, groups: np.ndarray | None) -> float:
        return float(clustered_covariance(w * (y - pooled), groups) / w.sum() ** 2)

    se = np.sqrt(variance(a, wa, groups_before) + variance(b, wb, groups_after))
    stat = float((rb - ra) / se) if se > 0 else 0.0
    out.update(z=stat, shifted=bool(abs(stat) > z))
    return out
