"""The calibration check: on the leads whose outcome is now known, labelled by the training rules
(`features.labels.label_rows`: positive when a positive verdict falls in (as_of, as_of + horizon], a row
counts only once its horizon has passed; a lead decided before it was scored is left out), do the scores say
what happened? The window is on the end of the horizon: scores whose as_of + horizon falls in the last
`window` days. One row per (lead, as_of) as in training, and only leads stored in the service (a lead scored
without being stored cannot get feedback, so it could only ever count as a negative)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.labels import label_rows
from leadscore.model.evaluate import clustered_covariance
from leadscore.model.evaluate import ece as expected_calibration_error
from leadscore.model.train import TrainConfig
from leadscore.model.training_data import label_weights
from leadscore.serve import db, store
from leadscore.serve.monitoring.score_rows import complete, feature_values, outcomes, score_rows
from leadscore.serve.monitoring.status import ALERT, NOT_ENOUGH, OK, WARN, worst

from leadscore.settings import Settings

if TYPE_CHECKING:
    from leadscore.model.scoring import ScoringModel

CALIBRATION_BINS = 10


def calibration(
    conn: sa.Connection, model: ScoringModel, settings: Settings, now: datetime, window: timedelta
) -> dict[str, Any]:
    """The calibration check (the module's docstring says what it counts)."""
    horizon = timedelta(days=model.definition.horizon_days)
    sl = db.score_log.c
    stored = sa.exists().where(db.leads.c.lead_id == sl.lead_id)
    rows = score_rows(
        conn,
        [sl.as_of > now - window - horizon, sl.as_of <= now - horizon, stored],
        settings.monitor_max_rows,
    )
    out: dict[str, Any] = {
        "min_rows": settings.monitor_min_labeled,
        "horizon_days": model.definition.horizon_days,
        "as_of_from": (now - window - horizon).isoformat(),
        "as_of_to": (now - horizon).isoformat(),
    }
    values, present = feature_values(conn, rows, model.encoder.features, model.encoder.categorical)
    keep = np.flatnonzero(complete(present, len(rows)))
    out["rows_without_features"] = int(len(rows) - len(keep))
    labelled = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([rows[i].lead_id for i in keep], dtype=object),
            "as_of": pd.to_datetime(
                pd.Series([store.aware(rows[i].as_of) for i in keep], dtype=object), utc=True
            ),
            "row": keep,
        }
    )
    weight = None
    if len(labelled):
        dataset = outcomes(conn, set(labelled[S.LEAD_ID]), now)
        labelled = label_rows(dataset, labelled, model.definition)
        # one row per (lead, as_of), as in training: scoring the same moment again does not count twice
        labelled = labelled.drop_duplicates([S.LEAD_ID, "as_of"], ignore_index=True)
        # Sales give a verdict only to the leads handed over, so a score whose lead was not handed over at
        # that moment says nothing about the model. Each score-log row records the policy's decision and its
        # propensity (1 at or above the threshold, the exploration share below it for an explored lead), so
        # a row counts exactly when the policy handed its lead over at that score, weighted by the inverse
        # propensity (clipped as in training): an unbiased sample of every score, whatever the policy let
        # sales see. A row of a lead handed over only later is left out: that it reached sales was decided
        # by what happened after the score. Rows logged before propensities were recorded count as before.
        propensity = np.array(
            [np.nan if rows[i].propensity is None else rows[i].propensity for i in labelled["row"]],
            dtype=np.float64,
        )
        handed = np.array([bool(rows[i].qualified) for i in labelled["row"]], dtype=bool)
        logged = ~np.isnan(propensity)
        if logged.any():
            keep_rows = ~logged | handed
            out["unlabelled_rows"] = int((~keep_rows).sum())
            labelled = labelled[keep_rows].reset_index(drop=True).assign(propensity=propensity[keep_rows])
            max_weight = (model.info.get("weights") or {}).get("max_weight", TrainConfig.max_weight)
            weight = label_weights(labelled, max_weight)
    n = len(labelled)
    out["n"] = n
    out["weighted"] = weight is not None
    if n == 0:
        out.update(
            status=NOT_ENOUGH,
            positives=0,
            message=f"no lead whose {out['horizon_days']}-day horizon ended "
            "in the window has a known outcome yet",
        )
        return out
    idx = labelled["row"].to_numpy()
    p = model.explain({k: v[idx] for k, v in values.items()}).probability
    y = labelled["label"].to_numpy().astype(float)
    w = np.ones(n) if weight is None else weight

    def mean(x: np.ndarray, rows: slice | np.ndarray = slice(None)) -> float:
        return float(x[rows].mean() if weight is None else np.average(x[rows], weights=w[rows]))

    predicted, observed = mean(p), mean(y)
    out.update(positives=int(y.sum()), predicted_rate=predicted, observed_rate=observed)
    order = np.argsort(p, kind="stable")
    out["deciles"] = [
        {"n": int(len(c)), "predicted": mean(p, c), "observed": mean(y, c)}
        for c in np.array_split(order, CALIBRATION_BINS)
        if len(c)
    ]
    out["ece"] = expected_calibration_error(p, y, CALIBRATION_BINS, weight=weight)
    # The rows of one lead (scored at several moments) share its outcome, so they are not independent draws:
    # both noise figures are clustered by lead (model.evaluate.clustered_covariance, as training's
    # positive_rate_shift). The ECE a perfectly calibrated model shows on these rows through sampling alone
    # (95th percentile): each bin's count of positives minus sum p ~ Normal, a lead's rows moving together
    # (its deviations add up, in every bin its rows fall in), hence the covariance across bins. Weighted rows
    # count by their weight.
    leads = labelled[S.LEAD_ID].to_numpy()
    bin_of = np.empty(n, dtype=np.int64)
    for b, c in enumerate(np.array_split(order, CALIBRATION_BINS)):
        bin_of[c] = b
    sd_rows = np.zeros((n, CALIBRATION_BINS))
    sd_rows[np.arange(n), bin_of] = w * np.sqrt(p * (1 - p))
    cov = clustered_covariance(sd_rows, leads)
    draws = (
        np.abs(
            np.random.default_rng(0).multivariate_normal(np.zeros(CALIBRATION_BINS), cov, 2000, method="eigh")
        ).sum(1)
        / w.sum()
    )
    out["ece_noise"] = float(np.quantile(draws, 0.95))
    # observed minus predicted positives over its cluster-robust standard error
    sd = float(np.sqrt(clustered_covariance(w * (y - p), leads)))
    out["rate_z"] = float((w * (y - p)).sum() / sd) if sd > 0 else 0.0
    out["rate_ratio"] = observed / predicted if predicted > 0 else float("inf")
    if n < settings.monitor_min_labeled:
        out.update(
            status=NOT_ENOUGH,
            message=f"only {n} leads with a known outcome; at least "
            f"{settings.monitor_min_labeled} are needed (LEADSCORE_MONITOR_MIN_LABELED)",
        )
        return out
    rel = abs(observed - predicted) / max(predicted, 1e-9)
    ece_status = (
        (
            ALERT
            if out["ece"] >= settings.monitor_ece_alert
            else WARN
            if out["ece"] >= settings.monitor_ece_warn
            else OK
        )
        if out["ece"] > out["ece_noise"]
        else OK
    )
    significant = abs(out["rate_z"]) >= 3
    rate_status = (
        (ALERT if rel >= settings.monitor_rate_alert else WARN if rel >= settings.monitor_rate_warn else OK)
        if significant
        else OK
    )
    out.update(ece_status=ece_status, rate_status=rate_status, status=worst([ece_status, rate_status]))
    out["message"] = (
        f"scores said {100 * predicted:.0f} %, {100 * observed:.0f} % qualified "
        f"({n} leads, ECE {out['ece']:.3f})"
    )
    return out
