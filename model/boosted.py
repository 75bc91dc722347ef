"""Gradient-boosted trees (scikit-learn's HistGradientBoosting) with exact per-lead contributions.

The trees are compiled into flat arrays and walked by our own vectorised code, which also scores: serving
needs no sklearn call, no thread pool and no pandas. Contributions are the path-dependent attribution of
Saabas: every split on the path moves the expected value of the tree (weighted by training counts) from
the parent's to the child's, and that change is credited to the split's feature. Summed over the path it
is exactly leaf value - root expectation, so `base + sum(contributions) == raw log-odds` for every row.
Native categorical splits are walked with sklearn's own rule (left bitset, known categories, unknown ->
missing), which is why this module does not use SHAP's TreeExplainer (it ignores those splits).

The walk is compiled (`model.tree_walk`): one numba kernel adds every step's change of expectation into
C[row, feature], on plain threads for a large batch, as one direct call for a single row. The kernels are
compiled once per machine and warmed up whenever a model is compiled or loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from leadscore.model.encoding import Encoder
from leadscore.model.tree_walk import Walk

if TYPE_CHECKING:  # imported where a model is fitted: a process that only scores never pays for sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier


@dataclass(frozen=True)
class CompiledTrees:
    roots: np.ndarray  # (T,) global node index of each tree's root
    feature: np.ndarray  # (N,) int64
    threshold: np.ndarray  # (N,) float64
    missing_left: np.ndarray  # (N,) bool
    left: np.ndarray  # (N,) int64 global index
    right: np.ndarray
    is_leaf: np.ndarray  # (N,) bool
    is_categorical: np.ndarray  # (N,) bool
    cat_left: np.ndarray  # (N, 256) bool: categorical code -> goes left
    expected: np.ndarray  # (N,) count-weighted expected raw value below the node
    base: float  # baseline prediction + sum of root expectations

    @classmethod
    def from_estimator(cls, est: HistGradientBoostingClassifier) -> CompiledTrees:
        """Compile `est`, folding in what sklearn does to X before its trees see it.

        With categorical features sklearn reorders columns (categoricals first) and re-encodes each
        categorical's values by their rank among the values seen in training (unseen -> missing). The
        compiled trees index the original columns and original codes, so no preprocessing is needed.
        """
        n_in = est.n_features_in_
        if est.is_categorical_ is not None and est.is_categorical_.any():
            cat_cols = np.flatnonzero(est.is_categorical_)
            to_original = np.concatenate([cat_cols, np.flatnonzero(~est.is_categorical_)])
            categories = est._preprocessor.named_transformers_["encoder"].categories_
        else:
            to_original, categories, cat_cols = np.arange(n_in), [], np.empty(0, dtype=int)
        parts, offset, roots = [], 0, []
        codes = np.arange(256)
        for (predictor,) in est._predictors:
            nodes = predictor.nodes
            n = len(nodes)
            roots.append(offset)
            is_leaf = nodes["is_leaf"].astype(bool)
            is_cat = nodes["is_categorical"].astype(bool) & ~is_leaf
            cat_left = np.zeros((n, 256), dtype=bool)
            for i in np.flatnonzero(is_cat):
                pre_idx = int(nodes["feature_idx"][i])  # categoricals come first: pre_idx = k-th categorical
                seen = np.asarray(categories[pre_idx], dtype=float)
                seen = seen[~np.isnan(seen)]
                raw = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][i]]
                mgl = bool(nodes["missing_go_to_left"][i])
                rank = np.searchsorted(seen, codes)
                known = (rank < len(seen)) & (seen[np.minimum(rank, len(seen) - 1)] == codes)
                in_left = ((raw[np.minimum(rank, 255) // 32] >> (np.minimum(rank, 255) % 32)) & 1) == 1
                # known categories: left if in the left bitset, else right; unknown ones follow missing values
                cat_left[i] = np.where(known, in_left, mgl)
            parts.append(
                {
                    "feature": to_original[nodes["feature_idx"].astype(np.int64)],
                    "threshold": nodes["num_threshold"].astype(float),
                    "missing_left": nodes["missing_go_to_left"].astype(bool),
                    "left": nodes["left"].astype(np.int64) + offset,
                    "right": nodes["right"].astype(np.int64) + offset,
                    "is_leaf": is_leaf,
                    "is_categorical": is_cat,
                    "cat_left": cat_left,
                    "expected": _expected_values(nodes),
                }
            )
            offset += n
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        root_nodes = np.asarray(roots, dtype=np.int64)
        base = float(np.ravel(est._baseline_prediction)[0] + cat["expected"][root_nodes].sum())
        # a leaf points to itself so that walking past it is a no-op
        idx = np.arange(offset)
        cat["left"] = np.where(cat["is_leaf"], idx, cat["left"])
        cat["right"] = np.where(cat["is_leaf"], idx, cat["right"])
        return cls(roots=root_nodes, base=base, **cat)

    @cached_property
    def _walk(self) -> Walk:
        """These trees as the compiled walk reads them, derived from the stored arrays (so saved models keep
        their format), built once."""
        return Walk.build(
            self.roots,
            self.feature,
            self.threshold,
            self.missing_left,
            self.left,
            self.right,
            self.is_leaf,
            self.is_categorical,
            self.cat_left,
            self.expected,
        )

    def __post_init__(self) -> None:
        # warm-up: the first call loads (or, once per machine, compiles) each kernel; serving starts warm (one
        # lead alone takes the one-row walk, a batch of a few the block walk)
        for rows in (1, 2):
            self.contributions(np.full((rows, int(self.feature.max(initial=0)) + 1), np.nan))

    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """(base, C): base + C.sum(1) equals the ensemble's raw log-odds for each row of X."""
        return self.base, self._walk.contributions(X)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            f"trees_{k}": getattr(self, k)
            for k in (
                "roots",
                "feature",
                "threshold",
                "missing_left",
                "left",
                "right",
                "is_leaf",
                "is_categorical",
                "cat_left",
                "expected",
            )
        } | {"trees_base": np.array([self.base])}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray], n_features: int | None = None) -> CompiledTrees:
        """Trees from saved arrays, checked first: the compiled walk does no bounds checks, so a node that
        points outside its tree or a feature outside the model's would read or write outside memory."""
        # `trees_max_depth`, in bundles saved before it was dropped, was never read
        kw = {
            k.removeprefix("trees_"): a[k]
            for k in a
            if k.startswith("trees_") and k not in ("trees_base", "trees_max_depth")
        }
        check_tree_arrays(kw, n_features)
        return cls(base=float(a["trees_base"][0]), **kw)


_TREE_ARRAYS = {
    "roots": "iu",
    "feature": "iu",
    "left": "iu",
    "right": "iu",
    "threshold": "f",
    "expected": "f",
    "missing_left": "biu",
    "is_leaf": "biu",
    "is_categorical": "biu",
    "cat_left": "biu",
}


def check_tree_arrays(kw: Mapping[str, np.ndarray], n_features: int | None) -> None:
    """Raise ValueError unless the arrays describe trees the compiled walk can only walk inside of."""
    missing = sorted(set(_TREE_ARRAYS) - set(kw))
    if missing:
        raise ValueError(f"tree arrays missing: {missing}")
    for name, kinds in _TREE_ARRAYS.items():
        if kw[name].dtype.kind not in kinds:
            raise ValueError(f"tree array {name!r} has dtype {kw[name].dtype}, expected kind {kinds!r}")
    n = len(kw["feature"])
    for name in _TREE_ARRAYS:
        if name != "roots" and (kw[name].shape[0] != n or (kw[name].ndim != 1) != (name == "cat_left")):
            raise ValueError(f"tree array {name!r} has shape {kw[name].shape}, expected {n} nodes")
    if kw["cat_left"].shape != (n, 256):
        raise ValueError(f"tree array 'cat_left' has shape {kw['cat_left'].shape}, expected ({n}, 256)")
    roots = kw["roots"].astype(np.int64)
    if (
        roots.ndim != 1
        or n == 0
        or len(roots) == 0
        or roots[0] != 0
        or np.any(np.diff(roots) <= 0)
        or roots[-1] >= n
    ):
        raise ValueError("tree roots must start at node 0 and increase, each inside the node arrays")
    inner = np.flatnonzero(~kw["is_leaf"].astype(bool))
    end = np.append(roots[1:], n)[
        np.searchsorted(roots, inner, side="right") - 1
    ]  # each inner node's tree end
    for side in ("left", "right"):
        kid = kw[side].astype(np.int64)[inner]
        if np.any(kid <= inner) or np.any(kid >= end):
            raise ValueError(f"a tree node's {side} child is not a later node of the same tree")
    feature = kw["feature"].astype(np.int64)[inner]
    limit = n_features if n_features is not None else np.iinfo(np.int64).max
    if np.any(feature < 0) or np.any(feature >= limit):
        raise ValueError(f"a tree node splits on a feature outside the model's {n_features} features")


def _expected_values(nodes: np.ndarray) -> np.ndarray:
    """Count-weighted mean leaf value under each node (children always follow their parent)."""
    n = len(nodes)
    exp = nodes["value"].astype(np.float64).copy()
    count = nodes["count"].astype(np.float64)
    is_leaf = nodes["is_leaf"].astype(bool)
    for i in range(n - 1, -1, -1):
        if not is_leaf[i]:
            lo, hi = nodes["left"][i], nodes["right"][i]
            total = count[lo] + count[hi]
            exp[i] = (exp[lo] * count[lo] + exp[hi] * count[hi]) / total if total else 0.0
    # children have larger indices than parents in sklearn's layout; verify rather than assume
    internal = np.flatnonzero(~is_leaf)
    if len(internal) and (
        np.any(nodes["left"][internal] <= internal) or np.any(nodes["right"][internal] <= internal)
    ):
        raise ValueError("unexpected tree layout: a child precedes its parent")
    return exp


@dataclass(frozen=True)
class BoostedParams:
    max_iter: int = 400
    learning_rate: float = 0.06
    max_leaf_nodes: int = 31
    max_depth: int = 6
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0


def fit_boosted(
    X: np.ndarray,
    y: np.ndarray,
    encoder: Encoder,
    params: BoostedParams = BoostedParams(),
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> tuple[HistGradientBoostingClassifier, CompiledTrees]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    est = HistGradientBoostingClassifier(
        categorical_features=encoder.categorical_mask if encoder.categorical else None,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
    )
    est.fit(X, y, sample_weight=sample_weight)
    return est, CompiledTrees.from_estimator(est)
