"""Training histograms and the population stability index (PSI): how far today's inputs and scores are from
the ones a model learned from.

At training time `reference` stores, in the model (`info["distributions"]`), explicit bins and the share of
training rows in each: for every numeric feature interior edges at its deciles (repeated values merged)
plus a bin for missing values; for every categorical feature its most frequent values, one "other" bin and
one "missing" bin; for the score the deciles of the calibrated probability; and the grade mix. Monitoring
(`serve.monitoring`) bins today's values into the same bins with `proportions` and compares with `psi`.
Models trained before these bins existed have no `REFERENCE_FORMAT` key: their drift is "unknown".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REFERENCE_FORMAT = "bins/1"
MAX_CATEGORIES = 30  # the most frequent values of a categorical get a bin each; the rest share "other"
PSI_FLOOR = 1e-4  # an empty bin counts as this share: log(0) would make PSI infinite on one stray row


def _numeric_edges(col: np.ndarray) -> list[float]:
    ok = col[~np.isnan(col)]
    if not len(ok):
        return []
    return np.unique(np.quantile(ok, np.linspace(0.1, 0.9, 9))).tolist()


def numeric_bins(col, edges: list[float]) -> tuple[np.ndarray, int]:
    """(bin index per value, number of bins): bins (-inf, e0], (e0, e1], ..., (e_last, inf), then missing."""
    col = np.asarray(col, dtype=float)
    idx = np.searchsorted(np.asarray(edges, float), col, side="left")
    idx[np.isnan(col)] = len(edges) + 1
    return idx, len(edges) + 2


def categorical_bins(col, categories: list[str]) -> tuple[np.ndarray, int]:
    """(bin index per value, number of bins): one per category, then "other", then missing."""
    s = pd.Series(col, dtype=object)
    codes = pd.Categorical(s.where(s.notna(), None), categories=categories).codes.astype(np.int64)
    codes[codes < 0] = len(categories)  # not one of the categories
    codes[s.isna().to_numpy()] = len(categories) + 1
    return codes, len(categories) + 2


def _shares(idx: np.ndarray, n_bins: int) -> list[float]:
    counts = np.bincount(idx, minlength=n_bins).astype(float)
    return (counts / max(counts.sum(), 1.0)).tolist()


def feature_reference(col, categorical: bool) -> dict:
    if categorical:
        s = pd.Series(col, dtype=object)
        categories = [str(v) for v in s.dropna().astype(str).value_counts().index[:MAX_CATEGORIES]]
        idx, n = categorical_bins(s.where(s.isna(), s.astype(str)), categories)
        return {"kind": "categorical", "categories": categories, "proportions": _shares(idx, n)}
    col = np.asarray(col, dtype=float)
    edges = _numeric_edges(col)
    idx, n = numeric_bins(col, edges)
    return {"kind": "numeric", "edges": edges, "proportions": _shares(idx, n)}


def proportions(spec: dict, col) -> list[float]:
    """The share of `col`'s values in each bin of `spec` (a feature's entry of `reference`)."""
    if spec["kind"] == "categorical":
        s = pd.Series(col, dtype=object)
        idx, n = categorical_bins(s.where(s.isna(), s.astype(str)), spec["categories"])
    else:
        idx, n = numeric_bins(col, spec["edges"])
    return _shares(idx, n)


def bin_labels(spec: dict) -> list[str]:
    """A short name for each bin of `spec`, for tables and plots."""
    if spec["kind"] == "categorical":
        return [*spec["categories"], "(other)", "(missing)"]
    e = [f"{x:.4g}" for x in spec["edges"]]
    if not e:
        return ["(any)", "", "(missing)"][:len(spec["proportions"])]
    return [f"<= {e[0]}", *[f"{lo}-{hi}" for lo, hi in zip(e[:-1], e[1:])], f"> {e[-1]}", "(missing)"]


def psi(expected, actual, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    e = np.maximum(np.asarray(expected, float), floor)
    a = np.maximum(np.asarray(actual, float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def score_reference(p: np.ndarray, grades: np.ndarray) -> dict:
    """The "score" and "grades" entries of `reference`: what a recalibrated model (new probabilities, same
    inputs) replaces, keeping the feature histograms."""
    p = np.asarray(p, float)
    score_edges = np.unique(np.quantile(p, np.linspace(0.1, 0.9, 9))).tolist() if len(p) else []
    idx, n = numeric_bins(p, score_edges)
    g = pd.Series(np.asarray(grades).astype(str)).value_counts(normalize=True)
    return {"score": {"kind": "numeric", "edges": score_edges, "proportions": _shares(idx, n), "n": int(len(p))},
            "grades": {str(k): float(v) for k, v in g.items()}}


def reference(values: dict[str, np.ndarray], categorical, p: np.ndarray, grades: np.ndarray) -> dict:
    """The training histograms stored with a model: every feature in `values` (those in `categorical` as
    categories), the calibrated probability `p` and the grade of each row."""
    return {
        "format": REFERENCE_FORMAT,
        "n": int(len(next(iter(values.values()), ()))),  # rows of the feature histograms
        "features": {name: feature_reference(col, name in categorical) for name, col in values.items()},
        **score_reference(p, grades),
    }


def has_reference(info: dict) -> bool:
    d = info.get("distributions")
    return isinstance(d, dict) and d.get("format") == REFERENCE_FORMAT
