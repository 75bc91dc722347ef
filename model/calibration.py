"""Platt calibration: an affine map of the model's log-odds, fitted on data the model did not train on.

Affine in log-odds on purpose: scaling every contribution by `a` and the base by `a` and `+ b` keeps the
explanation exact (base + sum of contributions == calibrated log-odds). Isotonic calibration would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Platt:
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Platt:
        """Least log loss on (raw, y); with `weight`, each row's loss counts `weight` times
        (inverse-propensity weights: calibrated for all leads, not only the handed-over ones)."""
        raw, y = np.asarray(raw, float), np.asarray(y, float)
        w = None if weight is None else np.asarray(weight, float)

        def loss(p: np.ndarray) -> float:
            z = p[0] * raw + p[1]
            terms = np.logaddexp(0, z) - y * z
            return float(np.sum(terms) if w is None else np.sum(w * terms))

        def grad(p: np.ndarray) -> np.ndarray:
            z = p[0] * raw + p[1]
            r = 1 / (1 + np.exp(-z)) - y
            if w is not None:
                r = w * r
            return np.array([np.sum(r * raw), np.sum(r)])

        from scipy.optimize import minimize  # fitting only: a process that only scores never imports scipy

        res = minimize(loss, x0=np.array([1.0, 0.0]), jac=grad, method="L-BFGS-B")
        return cls(float(res.x[0]), float(res.x[1]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.a * raw + self.b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))
