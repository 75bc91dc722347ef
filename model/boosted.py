"""Gradient-boosted trees (scikit-learn's HistGradientBoosting) with exact per-lead contributions.

The trees are compiled into flat arrays and walked by our own vectorised code, which also scores: serving
needs no sklearn call, no thread pool and no pandas. Contributions are the path-dependent attribution of
Saabas: every split on the path moves the expected value of the tree (weighted by training counts) from
the parent's to the child's, and that change is credited to the split's feature. Summed over the path it
is exactly leaf value - root expectation, so `base + sum(contributions) == raw log-odds` for every row.
Native categorical splits are walked with sklearn's own rule (left bitset, known categories, unknown ->
missing), which is why this module does not use SHAP's TreeExplainer (it ignores those splits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from leadscore.model.encoding import Encoder

CHUNK_ROWS = 8192


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
    max_depth: int

    @classmethod
    def from_estimator(cls, est: HistGradientBoostingClassifier) -> "CompiledTrees":
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
            parts.append(dict(
                feature=to_original[nodes["feature_idx"].astype(np.int64)],
                threshold=nodes["num_threshold"].astype(float),
                missing_left=nodes["missing_go_to_left"].astype(bool),
                left=nodes["left"].astype(np.int64) + offset, right=nodes["right"].astype(np.int64) + offset,
                is_leaf=is_leaf, is_categorical=is_cat, cat_left=cat_left,
                expected=_expected_values(nodes), depth=int(nodes["depth"].max()),
            ))
            offset += n
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "depth"}
        roots = np.asarray(roots, dtype=np.int64)
        base = float(np.ravel(est._baseline_prediction)[0] + cat["expected"][roots].sum())
        # a leaf points to itself so that walking past it is a no-op
        idx = np.arange(offset)
        cat["left"] = np.where(cat["is_leaf"], idx, cat["left"])
        cat["right"] = np.where(cat["is_leaf"], idx, cat["right"])
        return cls(roots=roots, base=base, max_depth=max(p["depth"] for p in parts), **cat)

    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """(base, C): base + C.sum(1) equals the ensemble's raw log-odds for each row of X."""
        n, F = X.shape
        C = np.zeros((n, F), dtype=np.float64)
        for start in range(0, n, CHUNK_ROWS):
            C[start:start + CHUNK_ROWS] = self._contrib_chunk(X[start:start + CHUNK_ROWS])
        return self.base, C

    def _contrib_chunk(self, X: np.ndarray) -> np.ndarray:
        n, F = X.shape
        T = len(self.roots)
        node = np.broadcast_to(self.roots, (n, T)).copy()
        row = np.arange(n)[:, None] * F
        acc = np.zeros(n * F, dtype=np.float64)
        for _ in range(self.max_depth):
            live = ~self.is_leaf[node]
            if not live.any():
                break
            f = self.feature[node]
            x = X.ravel()[row + f]
            nan = np.isnan(x)
            code = np.where(nan | ~self.is_categorical[node], 0, x).astype(np.int64).clip(0, 255)
            go_left = np.where(nan, self.missing_left[node],
                               np.where(self.is_categorical[node], self.cat_left[node, code], x <= self.threshold[node]))
            nxt = np.where(go_left, self.left[node], self.right[node])
            delta = self.expected[nxt] - self.expected[node]
            acc += np.bincount((row + f)[live], weights=delta[live], minlength=n * F)
            node = nxt
        return acc.reshape(n, F)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"trees_{k}": getattr(self, k) for k in (
            "roots", "feature", "threshold", "missing_left", "left", "right", "is_leaf", "is_categorical",
            "cat_left", "expected")} | {"trees_base": np.array([self.base]), "trees_max_depth": np.array([self.max_depth])}

    @classmethod
    def from_arrays(cls, a) -> "CompiledTrees":
        kw = {k.removeprefix("trees_"): a[k] for k in a if k.startswith("trees_")
              and k not in ("trees_base", "trees_max_depth")}
        return cls(base=float(a["trees_base"][0]), max_depth=int(a["trees_max_depth"][0]), **kw)


def _expected_values(nodes: np.ndarray) -> np.ndarray:
    """Count-weighted mean leaf value under each node (children always follow their parent)."""
    n = len(nodes)
    exp = nodes["value"].astype(np.float64).copy()
    count = nodes["count"].astype(np.float64)
    is_leaf = nodes["is_leaf"].astype(bool)
    for i in range(n - 1, -1, -1):
        if not is_leaf[i]:
            l, r = nodes["left"][i], nodes["right"][i]
            total = count[l] + count[r]
            exp[i] = (exp[l] * count[l] + exp[r] * count[r]) / total if total else 0.0
    # children have larger indices than parents in sklearn's layout; verify rather than assume
    internal = np.flatnonzero(~is_leaf)
    if len(internal) and (np.any(nodes["left"][internal] <= internal) or np.any(nodes["right"][internal] <= internal)):
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


def fit_boosted(X: np.ndarray, y: np.ndarray, encoder: Encoder, params: BoostedParams = BoostedParams(),
                seed: int = 0) -> tuple[HistGradientBoostingClassifier, CompiledTrees]:
    est = HistGradientBoostingClassifier(
        categorical_features=encoder.categorical_mask if encoder.categorical else None,
        early_stopping=True, validation_fraction=0.15, n_iter_no_change=20, random_state=seed,
        max_iter=params.max_iter, learning_rate=params.learning_rate, max_leaf_nodes=params.max_leaf_nodes,
        max_depth=params.max_depth, min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
    )
    est.fit(X, y)
    return est, CompiledTrees.from_estimator(est)
