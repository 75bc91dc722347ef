"""Gradient-boosted trees (scikit-learn's HistGradientBoosting) with exact per-lead contributions.

The trees are compiled into flat arrays and walked by our own vectorised code, which also scores: serving
needs no sklearn call, no thread pool and no pandas. Contributions are the path-dependent attribution of
Saabas: every split on the path moves the expected value of the tree (weighted by training counts) from
the parent's to the child's, and that change is credited to the split's feature. Summed over the path it
is exactly leaf value - root expectation, so `base + sum(contributions) == raw log-odds` for every row.
Native categorical splits are walked with sklearn's own rule (left bitset, known categories, unknown ->
missing), which is why this module does not use SHAP's TreeExplainer (it ignores those splits).

The walk is one numba kernel (`_contrib_rows`): each row goes down each tree and adds every step's change
of expectation into C[row, feature]. It releases the GIL, so a large batch is split into one contiguous
block of rows per core and run on plain threads (no numba threading layer: it is safe to call from the
API's worker threads); a single row is one direct call of a few microseconds. The kernel is compiled once
per machine (`cache=True`) and warmed up whenever a model is compiled or loaded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from leadscore.model.encoding import Encoder
from numba import njit
from sklearn.ensemble import HistGradientBoostingClassifier

PARALLEL_MIN_ROWS = 4096  # below this a batch is walked on the calling thread
_CORES = os.cpu_count() or 1  # read once: os.cpu_count() reads /sys on every call (~4 us, in each request)
ROW_BLOCK = 32  # rows walked together through one tree: independent paths keep the core busy
_POOL: ThreadPoolExecutor | None = None


# The kernels' node records: 8 words per internal node, 64-byte aligned, so a step of a walk reads one cache
# line (with one array per field it read five; a served request finds them evicted by whatever else ran on
# its core since its last request: one lead with a cold cache 29 -> 27 us, measured). The kernels get the
# buffer flat, twice (as float64 and as int64), and node k's record starts at word k: float64 words
# threshold, change of expectation going right, going left; int64 words feature, right child, left child
# (as record starts), categorical row, missing-goes-left. Leaves are the sink at word 0: it goes to itself
# and changes nothing.
_THRESHOLD, _DELTA = 0, 1  # float64 words; _DELTA + go_left is the step's change of expectation
_FEATURE, _KID, _CAT, _MISSING_LEFT = 3, 4, 6, 7  # int64 words; _KID + go_left is the child


@njit(cache=True, nogil=True)
def _contrib_rows(X, start, stop, roots, depth, fnode, inode, cat_table, C):  # pragma: no cover - compiled
    """Add the Saabas path contributions of rows start:stop of X into the same rows of C (zeros on entry).

    Each tree is walked for a fixed number of levels from its root record (a leaf reached early is the
    sink, which walks on to itself adding 0). The rules are sklearn's: NaN follows missing-goes-left; a
    categorical node sends code c (truncated, clipped to 0..255) left if cat_table[row, c]; a numerical
    node sends x left if x <= threshold.
    """
    node = np.empty(ROW_BLOCK, np.int64)
    for b0 in range(start, stop, ROW_BLOCK):
        m = min(ROW_BLOCK, stop - b0)
        for t in range(roots.shape[0]):
            for r in range(m):
                node[r] = roots[t]
            for _ in range(depth[t]):
                for r in range(m):
                    k = node[r]
                    f = inode[k + _FEATURE]
                    x = X[b0 + r, f]
                    cr = inode[k + _CAT]
                    if np.isnan(x):
                        go_left = inode[k + _MISSING_LEFT]
                    elif cr > 0:
                        go_left = np.int64(
                            cat_table[cr, 0 if x < 1.0 else (255 if x >= 255.0 else np.int64(x))]
                        )
                    else:
                        go_left = np.int64(x <= fnode[k + _THRESHOLD])
                    C[b0 + r, f] += fnode[k + _DELTA + go_left]
                    node[r] = inode[k + _KID + go_left]


@njit(cache=True, nogil=True)
def _contrib_row(X, roots, depth, fnode, inode, cat_table, C):  # pragma: no cover - compiled
    """`_contrib_rows` for a one-row X: the same walk and the same additions in the same order, with the
    node in a register instead of a block of rows (a live request scores one lead). The step is written
    out in both kernels on purpose: moving it into a shared compiled function (called, or inlined with
    inline="always") made this walk 5-6 times slower (10 -> 55-65 us a lead, measured); the exactness test
    compares the two walks bit for bit."""
    for t in range(roots.shape[0]):
        k = roots[t]
        for _ in range(depth[t]):
            f = inode[k + _FEATURE]
            x = X[0, f]
            cr = inode[k + _CAT]
            if np.isnan(x):
                go_left = inode[k + _MISSING_LEFT]
            elif cr > 0:
                go_left = np.int64(cat_table[cr, 0 if x < 1.0 else (255 if x >= 255.0 else np.int64(x))])
            else:
                go_left = np.int64(x <= fnode[k + _THRESHOLD])
            C[0, f] += fnode[k + _DELTA + go_left]
            k = inode[k + _KID + go_left]


def _node_records(n: int) -> np.ndarray:
    """(n, 8) int64 zeros starting on a 64-byte boundary: each row one cache line."""
    raw = np.zeros(n * 8 + 8, np.int64)
    start = (-raw.ctypes.data % 64) // 8
    return raw[start : start + n * 8].reshape(n, 8)


@njit(cache=True)
def _tree_depths(roots, left, right, is_leaf):  # pragma: no cover - compiled
    """Depth of the deepest leaf of each tree (children always follow their parent)."""
    n = left.shape[0]
    depth = np.zeros(n, np.int64)
    out = np.zeros(roots.shape[0], np.int64)
    t = 0
    for k in range(n):
        while t + 1 < roots.shape[0] and k >= roots[t + 1]:
            t += 1
        if is_leaf[k]:
            out[t] = max(out[t], depth[k])
        else:
            depth[left[k]] = depth[k] + 1
            depth[right[k]] = depth[k] + 1
    return out


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="trees")
    return _POOL


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
                    "depth": int(nodes["depth"].max()),
                }
            )
            offset += n
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "depth"}
        roots = np.asarray(roots, dtype=np.int64)
        base = float(np.ravel(est._baseline_prediction)[0] + cat["expected"][roots].sum())
        # a leaf points to itself so that walking past it is a no-op
        idx = np.arange(offset)
        cat["left"] = np.where(cat["is_leaf"], idx, cat["left"])
        cat["right"] = np.where(cat["is_leaf"], idx, cat["right"])
        return cls(roots=roots, base=base, max_depth=max(p["depth"] for p in parts), **cat)

    def __post_init__(self):
        # the kernels' layout (see _THRESHOLD), derived from the stored arrays (so saved models keep their format)
        n = len(self.feature)
        leaf = self.is_leaf.astype(bool)
        right, left = self.right.astype(np.int64), self.left.astype(np.int64)  # read for inner nodes only
        depth = _tree_depths(np.ascontiguousarray(self.roots, dtype=np.int64), left, right, leaf)
        inner = np.flatnonzero(~leaf)
        record = np.zeros(n, np.int64)  # node -> its record; leaves -> 0, the sink
        record[inner] = np.arange(1, len(inner) + 1)
        inode = _node_records(len(inner) + 1)
        fnode = inode.view(np.float64)
        fnode[1:, _THRESHOLD] = self.threshold[inner]
        fnode[1:, _DELTA] = self.expected[right[inner]] - self.expected[inner]
        fnode[1:, _DELTA + 1] = self.expected[left[inner]] - self.expected[inner]
        inode[1:, _FEATURE] = self.feature[inner]
        inode[1:, _KID] = 8 * record[right[inner]]  # where the child's record starts in the flat buffer
        inode[1:, _KID + 1] = 8 * record[left[inner]]
        inode[1:, _MISSING_LEFT] = self.missing_left[inner].astype(bool)  # 0 or 1: an offset in the record
        cat_nodes = np.flatnonzero(self.is_categorical & ~leaf)
        inode[record[cat_nodes], _CAT] = np.arange(1, len(cat_nodes) + 1)
        cat_table = np.zeros((len(cat_nodes) + 1, 256), np.bool_)
        cat_table[1:] = self.cat_left[cat_nodes]
        object.__setattr__(
            self, "_kernel", (8 * record[self.roots], depth, fnode.reshape(-1), inode.reshape(-1), cat_table)
        )
        # warm-up: the first call loads (or, once per machine, compiles) each kernel; serving starts warm (one
        # lead alone takes the one-row walk, a batch of a few the block walk)
        for rows in (1, 2):
            self.contributions(np.full((rows, int(self.feature.max(initial=0)) + 1), np.nan))

    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """(base, C): base + C.sum(1) equals the ensemble's raw log-odds for each row of X."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, F = X.shape
        C = np.zeros((n, F), dtype=np.float64)
        kernel = self._kernel
        workers = min(_CORES, n // PARALLEL_MIN_ROWS)
        if n == 1:
            _contrib_row(X, *kernel, C)
        elif workers <= 1:
            _contrib_rows(X, 0, n, *kernel, C)
        else:  # rows are independent: one contiguous block per core, the kernel runs without the GIL
            bounds = np.linspace(0, n, workers + 1).astype(np.int64)
            list(
                _pool().map(lambda w: _contrib_rows(X, bounds[w], bounds[w + 1], *kernel, C), range(workers))
            )
        return self.base, C

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
        } | {"trees_base": np.array([self.base]), "trees_max_depth": np.array([self.max_depth])}

    @classmethod
    def from_arrays(cls, a, n_features: int | None = None) -> CompiledTrees:
        """Trees from saved arrays, checked first: the compiled walk does no bounds checks, so a node that
        points outside its tree or a feature outside the model's would read or write outside memory."""
        kw = {
            k.removeprefix("trees_"): a[k]
            for k in a
            if k.startswith("trees_") and k not in ("trees_base", "trees_max_depth")
        }
        check_tree_arrays(kw, n_features)
        return cls(base=float(a["trees_base"][0]), max_depth=int(a["trees_max_depth"][0]), **kw)


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


def check_tree_arrays(kw: dict, n_features: int | None) -> None:
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
