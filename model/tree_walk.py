"""The compiled walk of gradient-boosted trees: exact Saabas path contributions, one numba kernel.

Each row goes down each tree and adds every step's change of expectation into C[row, feature]. The kernel
releases the GIL, so a large batch is split into one contiguous block of rows per core and run on plain
threads (no numba threading layer: it is safe to call from the API's worker threads); a single row is one
direct call of a few microseconds. The kernels are compiled once per machine (`cache=True`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

PARALLEL_MIN_ROWS = 4096  # below this a batch is walked on the calling thread
_CORES = os.cpu_count() or 1  # read once: os.cpu_count() reads /sys on every call, and a request walks trees
ROW_BLOCK = 32  # rows walked together through one tree: independent paths keep the core busy
_POOL: ThreadPoolExecutor | None = None


# The kernels' node records: 8 words per internal node, 64-byte aligned, so a step of a walk reads one cache
# line (with one array per field it read five, and a served request finds them evicted by whatever else ran
# on its core since its last request; docs/benchmarks.md, "How it got here"). The kernels get the
# buffer flat, twice (as float64 and as int64), and node k's record starts at word k: float64 words
# threshold, change of expectation going right, going left; int64 words feature, right child, left child
# (as record starts), categorical row, missing-goes-left. Leaves are the sink at word 0: it goes to itself
# and changes nothing.
_THRESHOLD, _DELTA = 0, 1  # float64 words; _DELTA + go_left is the step's change of expectation
_FEATURE, _KID, _CAT, _MISSING_LEFT = 3, 4, 6, 7  # int64 words; _KID + go_left is the child


@njit(cache=True, nogil=True)
def _contrib_rows(  # pragma: no cover - compiled
    X: np.ndarray,
    start: int,
    stop: int,
    roots: np.ndarray,
    depth: np.ndarray,
    fnode: np.ndarray,
    inode: np.ndarray,
    cat_table: np.ndarray,
    C: np.ndarray,
) -> None:
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
def _contrib_row(  # pragma: no cover - compiled
    X: np.ndarray,
    roots: np.ndarray,
    depth: np.ndarray,
    fnode: np.ndarray,
    inode: np.ndarray,
    cat_table: np.ndarray,
    C: np.ndarray,
) -> None:
    """`_contrib_rows` for a one-row X: the same walk and the same additions in the same order, with the
    node in a register instead of a block of rows (a live request scores one lead). The step is written
    out in both kernels on purpose: moving it into a shared compiled function (called, or inlined with
    inline="always") made this walk several times slower (docs/benchmarks.md, "Tried and dropped"); the
    exactness test compares the two walks bit for bit."""
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
def _tree_depths(  # pragma: no cover - compiled
    roots: np.ndarray, left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray
) -> np.ndarray:
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
class Walk:
    """Trees as the kernels read them: each tree's root record and depth, the node records (as float64 and
    as int64 words of one buffer) and the categorical nodes' left sets."""

    roots: np.ndarray
    depth: np.ndarray
    fnode: np.ndarray
    inode: np.ndarray
    cat_table: np.ndarray

    @classmethod
    def build(
        cls,
        roots: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        missing_left: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        is_leaf: np.ndarray,
        is_categorical: np.ndarray,
        cat_left: np.ndarray,
        expected: np.ndarray,
    ) -> Walk:
        """The kernels' layout (see _THRESHOLD) of trees given as one array per node field."""
        n = len(feature)
        leaf = is_leaf.astype(bool)
        right, left = right.astype(np.int64), left.astype(np.int64)  # read for inner nodes only
        depth = _tree_depths(np.ascontiguousarray(roots, dtype=np.int64), left, right, leaf)
        inner = np.flatnonzero(~leaf)
        record = np.zeros(n, np.int64)  # node -> its record; leaves -> 0, the sink
        record[inner] = np.arange(1, len(inner) + 1)
        inode = _node_records(len(inner) + 1)
        fnode = inode.view(np.float64)
        fnode[1:, _THRESHOLD] = threshold[inner]
        fnode[1:, _DELTA] = expected[right[inner]] - expected[inner]
        fnode[1:, _DELTA + 1] = expected[left[inner]] - expected[inner]
        inode[1:, _FEATURE] = feature[inner]
        inode[1:, _KID] = 8 * record[right[inner]]  # where the child's record starts in the flat buffer
        inode[1:, _KID + 1] = 8 * record[left[inner]]
        inode[1:, _MISSING_LEFT] = missing_left[inner].astype(bool)  # 0 or 1: an offset in the record
        cat_nodes = np.flatnonzero(is_categorical & ~leaf)
        inode[record[cat_nodes], _CAT] = np.arange(1, len(cat_nodes) + 1)
        cat_table = np.zeros((len(cat_nodes) + 1, 256), np.bool_)
        cat_table[1:] = cat_left[cat_nodes]
        return cls(8 * record[roots], depth, fnode.reshape(-1), inode.reshape(-1), cat_table)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """C (rows, features): each row's path contributions, summed over the trees."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, F = X.shape
        C = np.zeros((n, F), dtype=np.float64)
        kernel = (self.roots, self.depth, self.fnode, self.inode, self.cat_table)
        workers = min(_CORES, n // PARALLEL_MIN_ROWS)
        if n == 1:
            _contrib_row(X, *kernel, C)
        elif workers <= 1:
            _contrib_rows(X, 0, n, *kernel, C)
        else:  # rows are independent: one contiguous block per core, the kernel runs without the GIL
            bounds: list[int] = np.linspace(0, n, workers + 1).astype(np.int64).tolist()
            list(
                _pool().map(lambda w: _contrib_rows(X, bounds[w], bounds[w + 1], *kernel, C), range(workers))
            )
        return C
