"""Training: both model families fitted, calibrated and compared, the handoff policy and the evaluation.
The rows' split, checks and weights are in `training_data.py`; tracking and registration in `tracking.py`;
this module has no MLflow in it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from leadscore.features import catalog
from leadscore.features import schema as S
from leadscore.features.feature_tables import ROW_COLUMNS, training_table
from leadscore.features.labels import QualifiedDefinition
from leadscore.features.leakage import audit_dataset
from leadscore.features.loading import Dataset
from leadscore.model import drift, evaluate
from leadscore.model.boosted import BoostedParams, CompiledTrees, fit_boosted
from leadscore.model.calibration import Platt, sigmoid
from leadscore.model.encoding import Encoder
from leadscore.model.insights import rates
from leadscore.model.policy import PolicyKind, choose_policy
from leadscore.model.ranges import training_ranges
from leadscore.model.scorecard import Scorecard
from leadscore.model.scoring import Family, ScoringModel, raw_contributions
from leadscore.model.training_data import (
    NotEnoughData,
    base_rate_warning,
    check_enough,
    label_weights,
    split_by_lead_time,
)

log = logging.getLogger(__name__)
ModelChoice = Literal["auto", "scorecard", "boosted"]


@dataclass(frozen=True)
class TrainConfig:
    definition: QualifiedDefinition = QualifiedDefinition()
    model: ModelChoice = "auto"
    policy: PolicyKind = "f1"
    policy_target: float | None = None
    holdout_fraction: float = 0.2
    calibration_fraction: float = 0.1  # Platt has two parameters: a tenth of the rows is plenty
    seed: int = 0
    # Shallow trees and many rounds: on demo data (docs/benchmarks.md) depth 2-3 beat depth 6 by ~0.004 ROC
    # AUC — lead behaviour is close to additive in log-odds — and a shallow walk is cheaper to explain.
    boosted: BoostedParams = BoostedParams(
        max_iter=600,
        learning_rate=0.1,
        max_leaf_nodes=8,
        max_depth=3,
        min_samples_leaf=100,
        l2_regularization=1.0,
    )
    # The boosted family fits on at most this many rows (a seeded sample): beyond it, shallow trees on ~55
    # features gain little and the fit dominates training time (docs/benchmarks.md, "Training").
    boosted_max_rows: int = 500_000
    # Inverse-propensity weights (rows of leads the handoff policy handed over, weight 1 / propensity) are
    # clipped here. An explored lead at a 5 % share weighs 20: unclipped, a 1 % share would make one lead's
    # verdict count as 100 and the fit's variance explode; 20 keeps the correction whole down to a 5 % share
    # and trades a little bias for bounded variance below it (docs/models.md).
    max_weight: float = 20.0
    features: tuple[str, ...] = tuple(f.name for f in catalog.FEATURES)


@dataclass
class TrainResult:
    model: ScoringModel
    estimator: object
    rows: pd.DataFrame  # all labelled rows with a "part" column: fit / calibration / holdout
    holdout_p: np.ndarray
    holdout_contributions: np.ndarray
    metrics: dict[str, Any]
    # feature name -> holdout values, for the gate
    holdout_values: dict[str, Any] = field(default_factory=dict)
    holdout_weight: np.ndarray | None = (
        None  # the holdout rows' inverse-propensity weights (None: unweighted)
    )
    candidates: dict[str, Any] = field(default_factory=dict)  # family -> holdout metrics, when auto compared
    warnings: list[str] = field(default_factory=list)
    leakage: dict[str, Any] = field(default_factory=lambda: {"suspects": [], "excluded": []})


def _fit_family(
    family: str,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    encoder: Encoder,
    config: TrainConfig,
    w_fit: np.ndarray | None = None,
) -> tuple[object, Scorecard | CompiledTrees]:
    if family == "scorecard":
        sc = Scorecard.fit(X_fit, y_fit, encoder, seed=config.seed, sample_weight=w_fit)
        return sc.estimator, sc
    if len(y_fit) > config.boosted_max_rows:
        keep = np.sort(
            np.random.default_rng(config.seed).choice(len(y_fit), config.boosted_max_rows, replace=False)
        )
        X_fit, y_fit = X_fit[keep], y_fit[keep]
        w_fit = None if w_fit is None else w_fit[keep]
    est, trees = fit_boosted(X_fit, y_fit, encoder, config.boosted, seed=config.seed, sample_weight=w_fit)
    return est, trees


def train(
    dataset: Dataset, config: TrainConfig = TrainConfig(), progress: Callable[[str], None] | None = None
) -> TrainResult:
    """Train on event data: point-in-time rows for `config.definition`, catalogue features."""
    step = progress or (lambda msg: log.info(msg))
    step("building training rows and their features")
    if len(dataset.leads) == 0:  # said plainly, before the row builder meets empty columns
        raise NotEnoughData("the dataset has no leads: nothing to learn from")
    table = training_table(dataset, config.definition)
    return fit_table(table, config, step, audit=lambda rows: audit_dataset(dataset, rows))


def fit_table(
    table: pd.DataFrame,
    config: TrainConfig,
    step: Callable[[str], None] | None = None,
    audit: Callable[[pd.DataFrame], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train on a training table (`features.feature_tables.training_table`, built here or read back from
    the Parquet `leadscore features --training` writes, on Spark too), sorted by (as_of, lead_id).

    Rows flagged `unlabelled` never enter the fit; their features still describe the leads the model
    scores (drift histograms, training ranges). `audit`: the leakage audit of the labelled rows (it needs
    the dataset's custom columns, which a table does not hold); without it the report is empty."""
    step = step or (lambda msg: log.info(msg))
    rows_columns = [c for c in ROW_COLUMNS if c in table.columns]
    every = table[rows_columns]
    left_out = every["unlabelled"].to_numpy() if "unlabelled" in every.columns else np.zeros(len(every), bool)
    rows = every[~left_out].drop(columns="unlabelled", errors="ignore").reset_index(drop=True)
    warnings = check_enough(rows["label"].to_numpy(), "training rows")
    leakage: dict[str, Any] = {"suspects": [], "excluded": []}
    if audit is not None:
        step("auditing custom columns and events for leakage")
        leakage = audit(rows)
    # features for the unlabelled rows too: they never enter the fit, but the drift histograms and the
    # training ranges must describe every lead the model scores, not only those the last policy handed over
    values = {name: table[name].to_numpy()[~left_out] for name in config.features}
    unlabelled = (
        (
            {name: table[name].to_numpy()[left_out] for name in config.features},
            every.loc[left_out].reset_index(drop=True),
        )
        if left_out.any()
        else None
    )
    holdout = split_by_lead_time(rows, config.holdout_fraction)
    categorical = tuple(
        n for n in config.features if n in catalog.BY_NAME and catalog.BY_NAME[n].kind == "categorical"
    )
    result = fit_models(values, rows, holdout, categorical, config, step, unlabelled=unlabelled)
    result.warnings[:0] = warnings
    result.leakage = leakage
    return result


def fit_models(
    values: dict[str, np.ndarray],
    rows: pd.DataFrame,
    holdout: np.ndarray,
    categorical: tuple[str, ...],
    config: TrainConfig,
    step: Callable[[str], None] | None = None,
    ordered: bool = True,
    unlabelled: tuple[dict[str, np.ndarray], pd.DataFrame] | None = None,
) -> TrainResult:
    """Fit, calibrate, choose and evaluate on any feature table.

    `values`: feature name -> array (categoricals as str/None, numerics as float); `rows`: one row per
    training row with `label`, `as_of` (used for weekly volumes) and `lead_id` (keeps a lead's rows on one
    side of the calibration split); `holdout`: mask of holdout rows. Used by `train` (event data) and by
    `leadscore table` (flat exports). `ordered`: the holdout comes after the calibration rows in time (not a
    random split), so a different positive rate there is a moved base rate: warned about
    (`base_rate_warning`).
    With a `propensity` column (`features.labels.with_propensity`), rows are weighted by `label_weights` in
    the fit, Platt, the policy and the holdout metrics. `unlabelled`: (values, rows) of the candidate rows
    left out for want of a verdict (scored, never handed over): never fit on, but part of the drift
    histograms and training ranges, which describe all the leads the model will score.
    """
    step = step or (lambda msg: log.info(msg))
    features = tuple(values)
    y = rows["label"].to_numpy().astype(int)
    w = label_weights(rows, config.max_weight)

    def part(mask: np.ndarray) -> np.ndarray | None:
        return None if w is None else w[mask]

    warnings = check_enough(y[holdout], "holdout rows")
    train_idx = np.flatnonzero(~holdout)
    calib = np.zeros(len(rows), dtype=bool)
    calib[train_idx] = split_by_lead_time(rows.iloc[train_idx], config.calibration_fraction)
    fit = ~holdout & ~calib
    if ordered:
        leads = rows[S.LEAD_ID].to_numpy()
        base_rate, shifted = base_rate_warning(
            y[calib], y[holdout], leads[calib], leads[holdout], part(calib), part(holdout)
        )
        warnings += shifted
    rows = rows.assign(part=np.select([holdout, calib], ["holdout", "calibration"], "fit"))

    encoder = Encoder.fit({k: v[fit] for k, v in values.items()}, features, categorical)
    X = encoder.transform(values)

    families = ["scorecard", "boosted"] if config.model == "auto" else [config.model]
    fitted: dict[str, dict[str, Any]] = {}
    for family in families:
        step(f"training the {family}")
        est, explainer = _fit_family(family, X[fit], y[fit], encoder, config, part(fit))
        base_c, C_c = raw_contributions(explainer, X[calib], encoder)
        platt = Platt.fit(base_c + C_c.sum(1), y[calib], part(calib))
        base_h, C_h = raw_contributions(explainer, X[holdout], encoder)
        p_h = sigmoid(platt(base_h + C_h.sum(1)))
        p_c = sigmoid(platt(base_c + C_c.sum(1)))
        fitted[family] = {
            "est": est,
            "explainer": explainer,
            "platt": platt,
            "p_h": p_h,
            "p_c": p_c,
            "C_h": platt.a * C_h,
        }

    candidates = {f: evaluate.metrics(v["p_h"], y[holdout], weight=part(holdout)) for f, v in fitted.items()}
    chosen: Family = "boosted" if families[0] == "boosted" else "scorecard"
    if config.model == "auto":
        cmp = evaluate.paired_bootstrap_auc(
            y[holdout],
            fitted["boosted"]["p_h"],
            fitted["scorecard"]["p_h"],
            seed=config.seed,
            weight=part(holdout),
        )
        candidates["comparison_boosted_minus_scorecard"] = cmp
        chosen = "boosted" if cmp["low"] > 0 else "scorecard"
        step(
            f"auto: boosted - scorecard ROC AUC = {cmp['diff']:+.4f} "
            f"(95 % [{cmp['low']:+.4f}, {cmp['high']:+.4f}]) -> {chosen}"
        )
    f = fitted[chosen]
    policy = choose_policy(
        f["p_c"], y[calib], rows.loc[calib, "as_of"], config.policy, config.policy_target, weight=part(calib)
    )
    metrics = evaluate.metrics(f["p_h"], y[holdout], policy, weight=part(holdout))
    fit_values = {k: v[fit] for k, v in values.items()}
    ref_values, ref_p = fit_values, f["p_c"]
    if unlabelled is not None:  # all candidate rows: the handed-over ones and those nobody judged
        u_values, _ = unlabelled
        base_u, C_u = raw_contributions(f["explainer"], encoder.transform(u_values), encoder)
        ref_values = {k: np.concatenate([v, u_values[k]]) for k, v in fit_values.items()}
        ref_p = np.concatenate([f["p_c"], sigmoid(f["platt"](base_u + C_u.sum(1)))])
    info = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": {"holdout": metrics},
        "insights": rates(fit_values, y[fit], categorical, weight=part(fit)),
        # explicit bins and shares of the training rows and the unlabelled ones, for drift monitoring
        # (model.drift, serve.monitoring)
        "distributions": drift.reference(ref_values, categorical, ref_p, policy.grade(ref_p)),
        # each numeric feature's min and max over the same rows (model.ranges)
        "ranges": training_ranges(ref_values, encoder),
        "n_train": int(fit.sum() + calib.sum()),
        "n_holdout": int(holdout.sum()),
    }
    if ordered:
        info["base_rate"] = base_rate
    if unlabelled is not None:  # left out of the fit for want of a verdict (features.labels.with_propensity)
        info["unlabelled"] = {
            "rows": int(len(unlabelled[1])),
            "leads": int(unlabelled[1][S.LEAD_ID].nunique()),
        }
    if w is not None:  # what the weights did, for the run's record
        info["weights"] = {
            "max_weight": config.max_weight,
            "weighted_rows": int((w != 1).sum()),
            # rows whose 1 / propensity exceeded the clip (5 % share: 20 = max_weight, not clipped)
            "clipped_rows": int(
                (1.0 / rows["propensity"].to_numpy(dtype=np.float64) > config.max_weight).sum()
            ),
            "max": float(w.max()),
        }
    model = ScoringModel(
        family=chosen,
        encoder=encoder,
        explainer=f["explainer"],
        calibration=f["platt"],
        policy=policy,
        definition=config.definition,
        info=info,
    )
    return TrainResult(
        model=model,
        estimator=f["est"],
        rows=rows,
        holdout_p=f["p_h"],
        holdout_contributions=f["C_h"],
        metrics=metrics,
        holdout_values={k: v[holdout] for k, v in values.items()},
        holdout_weight=part(holdout),
        candidates=candidates,
        warnings=warnings,
    )
