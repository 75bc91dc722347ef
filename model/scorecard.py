"""The glass-box scorecard: each feature binned (numerics) or kept as its category code, one-hot, into an
L2-regularised logistic regression.

A feature's contribution is the coefficient of the bin the lead falls in minus the training average of that
feature's coefficients, so contributions are exact by construction and read as points:
`base + sum(points) == log-odds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from leadscore.model.encoding import Encoder
from numba import njit

if TYPE_CHECKING:  # imported where a scorecard is fitted: a process that only scores never pays for them
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

MAX_BINS = 8


@dataclass(frozen=True)
class Scorecard:
    edges: tuple[np.ndarray, ...]  # per feature: bin edges (numerics) or empty (categoricals)
    tables: tuple[np.ndarray, ...]  # per feature: points per bin (last bin = missing for numerics)
    base: float
    estimator: LogisticRegression | None = None  # kept for lineage; scoring uses the tables

    @staticmethod
    def _bins(X: np.ndarray, edges: tuple[np.ndarray, ...], categorical: np.ndarray) -> list[np.ndarray]:
        out = []
        for j, e in enumerate(edges):
            col = X[:, j]
            if categorical[j]:
                out.append(col.astype(np.int64))
            else:
                b = np.searchsorted(e, col, side="right")
                out.append(np.where(np.isnan(col), len(e) + 1, b))
        return out

    @staticmethod
    def _n_bins(edges: np.ndarray, categorical: bool, encoder: Encoder, name: str) -> int:
        return encoder.n_codes(name) if categorical else len(edges) + 2

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        encoder: Encoder,
        C: float = 0.3,
        seed: int = 0,
        sample_weight: np.ndarray | None = None,
    ) -> Scorecard:
        """Fit on (X, y); `sample_weight` (inverse-propensity weights) weights each row's loss and the
        average the points are centred on, so points read against the population's average lead."""
        cat = encoder.categorical_mask
        found: list[np.ndarray] = []
        for j in range(X.shape[1]):
            if cat[j]:
                found.append(np.empty(0))
                continue
            col = X[:, j][~np.isnan(X[:, j])]
            qs = (
                np.unique(np.quantile(col, np.linspace(0, 1, MAX_BINS + 1)[1:-1]))
                if len(col)
                else np.empty(0)
            )
            found.append(qs)
        edges = tuple(found)
        sizes = [cls._n_bins(e, cat[j], encoder, encoder.features[j]) for j, e in enumerate(edges)]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        design = cls._design(cls._bins(X, edges, cat), offsets)
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=C, max_iter=2000, solver="lbfgs", random_state=seed)
        lr.fit(design, y, sample_weight=sample_weight)
        coef = lr.coef_.ravel()
        if sample_weight is None:
            freq = np.asarray(design.mean(axis=0)).ravel()
        else:
            w = np.asarray(sample_weight, float)
            freq = np.asarray(design.T @ w).ravel() / w.sum()
        tables, base = [], float(lr.intercept_[0])
        for j in range(len(edges)):
            c = coef[offsets[j] : offsets[j + 1]]
            mean = float(c @ freq[offsets[j] : offsets[j + 1]])
            tables.append(c - mean)
            base += mean
        return cls(edges=edges, tables=tuple(tables), base=base, estimator=lr)

    @staticmethod
    def _design(bins: list[np.ndarray], offsets: np.ndarray) -> csr_matrix:
        from scipy.sparse import csr_matrix

        n = len(bins[0])
        cols = np.stack([b + offsets[j] for j, b in enumerate(bins)], axis=1).ravel()
        rows = np.repeat(np.arange(n), len(bins))
        return csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(n, int(offsets[-1])))

    @cached_property
    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(edges padded to one matrix, edge counts, table offsets, last bin, all tables in one array):
        the scorecard as the arrays `_points` reads, built once."""
        n_edges = np.array([len(e) for e in self.edges], dtype=np.int64)
        edges = np.zeros((len(self.edges), max(int(n_edges.max(initial=0)), 1)))
        for j, e in enumerate(self.edges):
            edges[j, : len(e)] = e
        sizes = np.array([len(t) for t in self.tables], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        flat = np.concatenate(self.tables).astype(np.float64) if self.tables else np.empty(0)
        return edges, n_edges, offsets, sizes - 1, flat

    def contributions(self, X: np.ndarray, encoder: Encoder) -> tuple[float, np.ndarray]:
        """(base, C) in raw log-odds: base + C.sum(1) is the scorecard's output for each row."""
        edges, n_edges, offsets, last, flat = self._flat
        C = np.empty(X.shape, dtype=np.float64)
        _points(
            np.ascontiguousarray(X, dtype=np.float64),
            encoder.categorical_mask,
            edges,
            n_edges,
            offsets,
            last,
            flat,
            C,
        )
        return self.base, C

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"scorecard_base": np.array([self.base])}
        for j, (e, t) in enumerate(zip(self.edges, self.tables, strict=False)):
            out[f"scorecard_edges_{j}"] = e
            out[f"scorecard_table_{j}"] = t
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], n_features: int) -> Scorecard:
        edges = tuple(arrays[f"scorecard_edges_{j}"] for j in range(n_features))
        tables = tuple(arrays[f"scorecard_table_{j}"] for j in range(n_features))
        # the compiled lookup clips a bin to its table's last entry: an empty table would read before it
        for j, (e, t) in enumerate(zip(edges, tables, strict=False)):
            if t.ndim != 1 or len(t) == 0 or t.dtype.kind != "f" or e.ndim != 1 or e.dtype.kind not in "fiu":
                raise ValueError(
                    f"scorecard arrays of feature {j} are malformed (table {t.shape} {t.dtype}, "
                    f"edges {e.shape} {e.dtype})"
                )
        return cls(edges=edges, tables=tables, base=float(arrays["scorecard_base"][0]))


@njit(cache=True, nogil=True)
def _points(  # pragma: no cover - compiled
    X: np.ndarray,
    is_cat: np.ndarray,
    edges: np.ndarray,
    n_edges: np.ndarray,
    offsets: np.ndarray,
    last: np.ndarray,
    flat: np.ndarray,
    C: np.ndarray,
) -> None:
    """C[i, j] = the points of feature j at X[i, j]: the table entry of a category's code or, for a number,
    of its bin: the count of its edges <= x (== searchsorted(edges, x, "right")), NaN in the bin after the
    last; bins clipped to the table."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            x = X[i, j]
            if is_cat[j]:
                b = int(x)
            elif np.isnan(x):
                b = n_edges[j] + 1
            else:
                b = 0
                for e in range(n_edges[j]):
                    if edges[j, e] <= x:
                        b += 1
            b = min(max(b, 0), last[j])
            C[i, j] = flat[offsets[j] + b]
