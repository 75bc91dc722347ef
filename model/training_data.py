"""The labelled rows before a fit: the time-ordered split that keeps a lead's rows on one side, the check
that each class has enough rows, the rows' inverse-propensity weights, and the check that the positive rate
did not move between the calibration slice and the later holdout. Used by training, recalibration and
monitoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.model import evaluate

MIN_PER_CLASS = 40
WARN_PER_CLASS = 200


class NotEnoughData(ValueError):
    """Too few rows of a class to fit or judge a model; the message says how many are missing."""


def split_by_lead_time(rows: pd.DataFrame, fraction: float) -> np.ndarray:
    """True for holdout rows: the leads that came last (by first as_of) whose rows make up `fraction`.

    A lead's rows are all on one side, so no lead is seen in training and judged in the holdout.
    """
    first = rows.groupby(S.LEAD_ID, sort=False)["as_of"].transform("min")
    order = np.lexsort((rows[S.LEAD_ID].to_numpy(), first.to_numpy()))
    n_hold = int(round(fraction * len(rows)))
    if n_hold == 0:
        return np.zeros(len(rows), dtype=bool)
    cutoff_lead = rows[S.LEAD_ID].to_numpy()[order[len(rows) - n_hold]]
    cutoff = first.to_numpy()[order[len(rows) - n_hold]]
    f = first.to_numpy()
    ids = rows[S.LEAD_ID].to_numpy()
    later: np.ndarray = (f > cutoff) | ((f == cutoff) & (ids >= cutoff_lead))
    return later


def check_enough(y: np.ndarray, what: str) -> list[str]:
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos < MIN_PER_CLASS or neg < MIN_PER_CLASS:
        raise NotEnoughData(
            f"not enough {what} to train: {pos} positive and {neg} negative rows; at least "
            f"{MIN_PER_CLASS} of each are needed (missing: {max(MIN_PER_CLASS - pos, 0)} positive, "
            f"{max(MIN_PER_CLASS - neg, 0)} negative). Add data, or widen the horizon / positive outcomes of "
            "the qualified-lead definition."
        )
    if pos < WARN_PER_CLASS or neg < WARN_PER_CLASS:
        return [
            f"only {pos} positive and {neg} negative {what}: metrics will be noisy below {WARN_PER_CLASS}"
        ]
    return []


def label_weights(rows: pd.DataFrame, max_weight: float) -> np.ndarray | None:
    """Each row's weight in the fit, the calibration and the holdout metrics: 1 / propensity for the rows of
    leads the handoff policy handed over, clipped at `max_weight`; 1 for the others (`propensity` NaN: leads
    not in the selection table, or that got a verdict without the policy). None when there is no
    `propensity` column or every weight is 1: exactly the unweighted training."""
    if "propensity" not in rows.columns:
        return None
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be at least 1, not {max_weight!r}")
    prop = rows["propensity"].to_numpy(dtype=np.float64)
    w = np.ones(len(prop))
    known = ~np.isnan(prop)
    w[known] = np.minimum(1.0 / np.maximum(prop[known], 1.0 / max_weight), max_weight)
    return None if np.all(w == 1.0) else w


def base_rate_warning(
    y_calibration: np.ndarray,
    y_holdout: np.ndarray,
    leads_calibration: np.ndarray | None = None,
    leads_holdout: np.ndarray | None = None,
    weight_calibration: np.ndarray | None = None,
    weight_holdout: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Compare the positive rates of the calibration slice and the later holdout
    (`evaluate.positive_rate_shift`: two-proportion z-test clustered by lead, |z| > 3; weighted with
    inverse-propensity weights, the population's rates); a warning saying what to do when they differ beyond
    noise."""
    shift = evaluate.positive_rate_shift(
        y_calibration,
        y_holdout,
        leads_calibration,
        leads_holdout,
        weight_before=weight_calibration,
        weight_after=weight_holdout,
    )
    if not shift["shifted"]:
        return shift, []
    return shift, [
        f"the holdout's positive rate ({shift['rate_after']:.1%} of {shift['n_after']:,} rows) differs "
        f"from the calibration slice's ({shift['rate_before']:.1%} of {shift['n_before']:,} rows) beyond "
        "noise "
        f"(two-proportion z = {shift['z']:+.1f}, |z| > 3): the base rate moved over time, so probabilities "
        "calibrated on the older rows are off on the newest ones (see the holdout ECE). Recalibrate on "
        "recent data: `leadscore recalibrate` once this model is champion (event data; docs/retraining.md), "
        "or train a flat export on its recent rows"
    ]
