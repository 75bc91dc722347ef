"""Training histograms and the population stability index (PSI): how far today's inputs and scores are from
the ones a model learned from.

At training time `reference` stores, in the model (`info["distributions"]`), explicit bins and the share of
training rows in each: for every numeric feature interior edges at its deciles (repeated values merged)
plus a bin for missing values; for every categorical feature its most frequent values, one "other" bin and
one "missing" bin (a category under `MIN_SHARE` of the training rows shares "other": with a few rows
each, its bin is often empty in a recent sample, which PSI reads as drift); for the score the deciles of the
calibrated probability; and the grade mix. Monitoring (`serve.monitoring`) bins today's values into the same
bins with `proportions` and compares with `psi`.
Models trained before these bins existed have no `REFERENCE_FORMAT` key: their drift is "unknown".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import chi2

REFERENCE_FORMAT = "bins/1"
MAX_CATEGORIES = 30  # the most frequent values of a categorical get a bin each; the rest share "other"
MIN_SHARE = 0.01  # ... when they hold at least this share of the training rows
NOISE_QUANTILE = 0.95  # the sampling noise a PSI must exceed, as for the ECE (serve.monitoring)
PSI_FLOOR = 1e-4  # an empty bin counts as this share: log(0) would make PSI infinite on one stray row


def _numeric_edges(col: np.ndarray) -> list[float]:
    ok = col[~np.isnan(col)]
    if not len(ok):
        return []
    edges: list[float] = np.unique(np.quantile(ok, np.linspace(0.1, 0.9, 9))).tolist()
    return edges


def numeric_bins(col: ArrayLike, edges: list[float]) -> tuple[np.ndarray, int]:
    """(bin index per value, number of bins): bins (-inf, e0], (e0, e1], ..., (e_last, inf), then missing."""
    col = np.asarray(col, dtype=float)
    idx = np.searchsorted(np.asarray(edges, float), col, side="left")
    idx[np.isnan(col)] = len(edges) + 1
    return idx, len(edges) + 2


def categorical_bins(col: ArrayLike, categories: list[str]) -> tuple[np.ndarray, int]:
    """(bin index per value, number of bins): one per category, then "other", then missing."""
    s = pd.Series(col, dtype=object)
    codes = pd.Categorical(s.where(s.notna(), None), categories=categories).codes.astype(np.int64)
    codes[codes < 0] = len(categories)  # not one of the categories
    codes[s.isna().to_numpy()] = len(categories) + 1
    return codes, len(categories) + 2


def _shares(idx: np.ndarray, n_bins: int) -> list[float]:
    counts = np.bincount(idx, minlength=n_bins).astype(float)
    shares: list[float] = (counts / max(counts.sum(), 1.0)).tolist()
    return shares


def feature_reference(col: ArrayLike, categorical: bool) -> dict[str, Any]:
    if categorical:
        s = pd.Series(col, dtype=object)
        counts = s.dropna().astype(str).value_counts()
        categories = [
            str(v) for v in counts.index[:MAX_CATEGORIES][counts.iloc[:MAX_CATEGORIES] >= MIN_SHARE * len(s)]
        ]
        idx, n = categorical_bins(s.where(s.isna(), s.astype(str)), categories)
        return {"kind": "categorical", "categories": categories, "proportions": _shares(idx, n)}
    col = np.asarray(col, dtype=float)
    edges = _numeric_edges(col)
    idx, n = numeric_bins(col, edges)
    return {"kind": "numeric", "edges": edges, "proportions": _shares(idx, n)}


def merged(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with the categories under `MIN_SHARE` of training folded into "other" (histograms stored
    before that rule); numeric specs as they are."""
    if spec["kind"] != "categorical":
        return spec
    cats, props = spec["categories"], spec["proportions"]
    keep = [i for i, c in enumerate(cats) if props[i] >= MIN_SHARE]
    if len(keep) == len(cats):
        return spec
    other = props[len(cats)] + sum(props[i] for i in range(len(cats)) if i not in keep)
    return {
        **spec,
        "categories": [cats[i] for i in keep],
        "proportions": [props[i] for i in keep] + [other, props[len(cats) + 1]],
    }


def compare(spec: dict[str, Any], col: Sequence[Any] | np.ndarray, n_reference: int) -> dict[str, Any]:
    """How far the values `col` are from training (`spec`, a feature's or the score's entry of `reference`,
    drawn from `n_reference` rows): the PSI, the PSI that sampling alone stays under in 95 % of samples of
    that many rows (`noise`), and the bins' labels and shares."""
    spec = merged(spec)
    n = len(col)
    recent = proportions(spec, col)
    return {
        "psi": psi(spec["proportions"], recent, n_expected=n_reference, n_actual=n),
        "noise": noise(spec["proportions"], recent, n, n_reference),
        "bins": bin_labels(spec),
        "training": spec["proportions"],
        "recent": recent,
        "n": int(n),
    }


def noise(
    expected: Sequence[float],
    actual: Sequence[float],
    n: int,
    n_reference: int,
    quantile: float = NOISE_QUANTILE,
) -> float:
    """The PSI that two samples of one population (n and N rows) exceed only with probability 1 - `quantile`:
    PSI is then about (1/n + 1/N) times a chi-square with (occupied bins - 1) degrees of freedom, whose mean
    (bins - 1)(1/n + 1/N) alone would be crossed by chance in about a third of the checks."""
    occupied = sum(1 for a, b in zip(expected, actual, strict=False) if a > 0 or b > 0)
    if occupied < 2:
        return 0.0
    return float(chi2.ppf(quantile, occupied - 1)) * (1 / max(n, 1) + 1 / max(n_reference, 1))


def proportions(spec: dict[str, Any], col: ArrayLike) -> list[float]:
    """The share of `col`'s values in each bin of `spec` (a feature's entry of `reference`)."""
    if spec["kind"] == "categorical":
        s = pd.Series(col, dtype=object)
        idx, n = categorical_bins(s.where(s.isna(), s.astype(str)), spec["categories"])
    else:
        idx, n = numeric_bins(col, spec["edges"])
    return _shares(idx, n)


def bin_labels(spec: dict[str, Any]) -> list[str]:
    """A short name for each bin of `spec`, for tables and plots."""
    if spec["kind"] == "categorical":
        return [*spec["categories"], "(other)", "(missing)"]
    e = [f"{x:.4g}" for x in spec["edges"]]
    if not e:  # no value at training (all missing): a bin for any value, then the missing bin
        return ["(any)", "(missing)"]
    return [
        f"<= {e[0]}",
        *[f"{lo}-{hi}" for lo, hi in zip(e[:-1], e[1:], strict=False)],
        f"> {e[-1]}",
        "(missing)",
    ]


def psi(
    expected: ArrayLike, actual: ArrayLike, n_expected: int | None = None, n_actual: int | None = None
) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected).

    An empty bin counts as half a row of its sample when the sample's size is given (else `PSI_FLOOR`): a
    fixed tiny floor makes a bin that is empty by chance in a small sample weigh ln(share / 1e-4), several
    times what sampling explains."""
    e = np.maximum(np.asarray(expected, float), 0.5 / n_expected if n_expected else PSI_FLOOR)
    a = np.maximum(np.asarray(actual, float), 0.5 / n_actual if n_actual else PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def score_reference(p: np.ndarray, grades: np.ndarray) -> dict[str, Any]:
    """The "score" and "grades" entries of `reference`: what a recalibrated model (new probabilities, same
    inputs) replaces, keeping the feature histograms."""
    p = np.asarray(p, float)
    score_edges = np.unique(np.quantile(p, np.linspace(0.1, 0.9, 9))).tolist() if len(p) else []
    idx, n = numeric_bins(p, score_edges)
    g = pd.Series(np.asarray(grades).astype(str)).value_counts(normalize=True)
    return {
        "score": {"kind": "numeric", "edges": score_edges, "proportions": _shares(idx, n), "n": int(len(p))},
        "grades": {str(k): float(v) for k, v in g.items()},
    }


def reference(
    values: Mapping[str, np.ndarray], categorical: Collection[str], p: np.ndarray, grades: np.ndarray
) -> dict[str, Any]:
    """The training histograms stored with a model: every feature in `values` (those in `categorical` as
    categories), the calibrated probability `p` and the grade of each row."""
    return {
        "format": REFERENCE_FORMAT,
        "n": int(len(next(iter(values.values()), ()))),  # rows of the feature histograms
        "features": {name: feature_reference(col, name in categorical) for name, col in values.items()},
        **score_reference(p, grades),
    }


def has_reference(info: Mapping[str, Any]) -> bool:
    d = info.get("distributions")
    return isinstance(d, dict) and d.get("format") == REFERENCE_FORMAT
