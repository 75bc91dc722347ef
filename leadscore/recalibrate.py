"""`leadscore recalibrate`: when the share of qualified leads moves, refit only the champion's Platt
calibration and handoff policy on the newest labelled window, and promote the result if it is better
calibrated on a later slice beyond noise.

What changes and what does not: the encoder and the explainer (scorecard tables or trees) are the
champion's, so a lead's reasons are the same features with every contribution scaled by the same factor
(Platt is affine in log-odds: base + sum(contributions) == calibrated log-odds still holds exactly). Only
`calibration` (a, b) and `policy` (threshold and grade cut-offs) are new.

The data, the job lock and the registration are `leadscore retrain`'s (`leadscore/retrain.py`): the same
store or export with the store's feedback, the same `retrain` lock (the two jobs both move the champion,
so they never run at once), and `tracking.track` with the decision of this module's gate.

The gate (rule named in the decision):
- `recalibrated`: the recalibrated version's ECE on the judge slice (the newest part of the window, leads
  the calibration did not see) is lower than the champion's, with the 95 % lead-clustered bootstrap
  interval of the difference below 0: promoted;
- `not_better_calibrated`: the interval reaches 0 (the champion is as well calibrated, within noise): kept;
- `inverted`: the fitted slope is not positive (the window contradicts the model's ranking): kept and
  nothing registered (a map that reverses the ranking is no challenger) — that is a retrain's job, not a
  recalibration's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from leadscore.features.frames import feature_frame
from leadscore.features.labels import training_rows
from leadscore.model import drift, evaluate, registry, tracking
from leadscore.model.calibration import Platt, sigmoid
from leadscore.model.policy import choose_policy
from leadscore.model.scoring import ScoringModel
from leadscore.model.train import NotEnoughData, TrainConfig, TrainResult, check_enough, label_weights
from leadscore.retrain import (
    RetrainError,
    _store_source,
    challenger_config,
    champion,
    check_data,
    load_data,
    locked,
    shown_url,
)
from leadscore.serve import locks

log = logging.getLogger(__name__)
DEFAULT_WINDOW_DAYS = 90
JUDGE_FRACTION = 1 / 3  # the newest third of the window's time span judges; the older two thirds fit
BOOTSTRAP = 400
RECALIBRATE = "recalibrate"  # the `model_choice` tag of a recalibrated version
FROM_VERSION, WINDOW_TAG = "recalibrated_from", "recalibration_window_days"
Status = Literal["promoted", "kept", "unchanged"]


@dataclass(frozen=True)
class RecalibrateOptions:
    database_url: str
    export: Path | None = None
    window_days: int = DEFAULT_WINDOW_DAYS
    as_of: datetime | None = None
    seed: int = 0
    stale_lock_seconds: float = locks.STALE_AFTER_SECONDS
    model_name: str = registry.MODEL_NAME


@dataclass
class RecalibrateOutcome:
    status: Status
    version: str | None  # the new version, or the one that already recalibrated this data ("unchanged");
    # None when nothing was registered (rule `inverted`)
    champion_before: str | None
    decision: registry.GateDecision | None = None
    run_id: str | None = None
    report: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class Recalibration:
    """A recalibrated model and what the gate saw (no MLflow: `recalibrate` registers it)."""

    model: ScoringModel
    decision: registry.GateDecision
    rows: pd.DataFrame  # the window's rows with `part` = calibration (fit) / holdout (judge)
    values: dict  # feature -> values of `rows`
    p_old: np.ndarray  # the champion's probabilities on the judge rows
    p_new: np.ndarray  # the recalibrated model's
    report: dict


def window_rows(
    rows: pd.DataFrame, snapshot_at: pd.Timestamp, horizon_days: int, window_days: int
) -> pd.DataFrame:
    """The labelled rows whose as_of is in the `window_days` before the newest uncensored moment
    (snapshot - horizon: a later row's outcome is not known yet)."""
    end = snapshot_at - pd.Timedelta(days=horizon_days)
    return rows[(rows["as_of"] > end - pd.Timedelta(days=window_days)) & (rows["as_of"] <= end)].reset_index(
        drop=True
    )


def newest_rows(rows: pd.DataFrame, fraction: float) -> np.ndarray:
    """True for the rows whose as_of is in the newest `fraction` of the window's time span.

    By time, not by lead: the judge slice then holds every lead age the service scores (split by lead, it
    would hold only the youngest leads, whose mix of rows differs from the fit part's). A lead may have rows
    on both sides; the bootstrap resamples whole leads for that.
    """
    t = rows["as_of"]
    if len(t) == 0:
        return np.zeros(0, dtype=bool)
    return (t > t.max() - fraction * (t.max() - t.min())).to_numpy()


def recalibrated(
    champ: ScoringModel, values: dict, rows: pd.DataFrame, champion_version: str = "champion", seed: int = 0
) -> Recalibration:
    """Refit `champ`'s Platt calibration and policy on the older part of `rows` and judge it on the newest
    part (module docstring). `rows`: lead_id, as_of, label; `values`: the champion's features of `rows`."""
    y = rows["label"].to_numpy().astype(int)
    judge = newest_rows(rows, JUDGE_FRACTION)
    fit = ~judge
    # rows that came through the handoff policy weigh 1 / propensity, as in training (docs/models.md)
    w = label_weights(rows, TrainConfig().max_weight)

    def part(mask):
        return None if w is None else w[mask]

    check_enough(y[fit], "rows to recalibrate on (the older part of the window)")
    check_enough(y[judge], "rows to judge the recalibration on (the newest part of the window)")
    ex = champ.explain(values)
    # the champion's log-odds before its own calibration: the new Platt map replaces the old one
    a0, b0 = champ.calibration.a, champ.calibration.b
    base_raw, C_raw = champ.raw(ex.X)
    raw = base_raw + C_raw.sum(axis=1)
    platt = Platt.fit(raw[fit], y[fit], part(fit))
    p_fit = sigmoid(platt(raw[fit]))
    p_old, p_new = ex.probability[judge], sigmoid(platt(raw[judge]))
    pol = champ.policy
    policy = choose_policy(p_fit, y[fit], rows.loc[fit, "as_of"], pol.kind, pol.target, weight=part(fit))
    cmp = evaluate.paired_bootstrap_ece(
        y[judge],
        p_new,
        p_old,
        rows.loc[judge, "lead_id"].to_numpy(),
        n=BOOTSTRAP,
        seed=seed,
        weight=part(judge),
    )
    ece_txt = (
        f"ECE on the newest {int(judge.sum()):,} rows {cmp['new']:.4f} vs the champion's {cmp['old']:.4f} "
        f"(difference {cmp['diff']:+.4f}, 95 % {cmp['low']:+.4f} .. {cmp['high']:+.4f})"
    )
    if platt.a <= 0:
        promote, rule, reason = (
            False,
            "inverted",
            (
                f"the window's outcomes fit a non-positive slope ({platt.a:.3f}): they contradict the "
                "champion's ranking, which a recalibration cannot fix; retrain instead"
            ),
        )
    elif cmp["high"] < 0:
        promote, rule, reason = True, "recalibrated", f"better calibrated beyond noise: {ece_txt}"
    else:
        promote, rule, reason = (
            False,
            "not_better_calibrated",
            (f"not better calibrated beyond noise: {ece_txt}; the champion's calibration still holds"),
        )
    metrics_new = evaluate.metrics(p_new, y[judge], policy, weight=part(judge))
    report = {
        "window_from": str(rows["as_of"].min()),
        "window_to": str(rows["as_of"].max()),
        "judge_from": str(rows.loc[judge, "as_of"].min()),
        "n_fit": int(fit.sum()),
        "n_judge": int(judge.sum()),
        "positive_rate_fit": float(y[fit].mean()),
        "positive_rate_judge": float(y[judge].mean()),
        "champion_positive_rate": float((champ.info.get("insights") or {}).get("overall", float("nan"))),
        "mean_p_old_judge": float(p_old.mean()),
        "mean_p_new_judge": float(p_new.mean()),
        "ece_old": cmp["old"],
        "ece_new": cmp["new"],
        "ece_diff_low": cmp["low"],
        "ece_diff_high": cmp["high"],
        # the new map composed over the champion's explainer: calibrated = a * raw + b
        "platt_old": {"a": a0, "b": b0},
        "platt_new": {"a": platt.a, "b": platt.b},
        "threshold_old": pol.threshold,
        "threshold_new": policy.threshold,
    }
    info = dict(champ.info)
    info.update(
        {
            "metrics": {"holdout": metrics_new},
            "n_holdout": int(judge.sum()),
            "recalibrated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "recalibration": {**report, "from_version": champion_version},
            # the calibration rows against the later ones, as training records it (train.base_rate_warning)
            "base_rate": evaluate.positive_rate_shift(
                y[fit],
                y[judge],
                rows.loc[fit, "lead_id"].to_numpy(),
                rows.loc[judge, "lead_id"].to_numpy(),
                weight_before=part(fit),
                weight_after=part(judge),
            ),
        }
    )
    if drift.has_reference(info):  # the score and grade mix moved with the calibration; the features did not
        info["distributions"] = {**info["distributions"], **drift.score_reference(p_fit, policy.grade(p_fit))}
    model = replace(champ, calibration=platt, policy=policy, info=info, version=None)
    decision = registry.GateDecision(
        promote,
        reason,
        "new",
        champion_version,
        auc_diff=0.0,
        auc_diff_low=0.0,
        auc_diff_high=0.0,
        ece_challenger=cmp["new"],
        ece_champion=cmp["old"],
        rule=rule,
    )
    rows = rows.assign(part=np.where(judge, "holdout", "calibration"))
    return Recalibration(model, decision, rows, values, p_old, p_new, report)


def reliability_before_after(
    y: np.ndarray, p_old: np.ndarray, p_new: np.ndarray, bins: int = 10, weight: np.ndarray | None = None
):
    """The judge slice's reliability curve of the champion and of the recalibrated model, on one plot;
    `weight`: the judge rows' inverse-propensity weights (curves and ECEs of the population, as the
    gate's)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    top = 0.0
    for p, label in (
        (p_old, f"champion (ECE {evaluate.ece(p_old, y, bins, weight):.3f})"),
        (p_new, f"recalibrated (ECE {evaluate.ece(p_new, y, bins, weight):.3f})"),
    ):
        xs, ys = (a.tolist() for a in evaluate.reliability_points(p, y, bins, weight))
        top = max(top, *xs, *ys)
        ax.plot(xs, ys, "o-", label=label)
    ax.plot([0, top * 1.05], [0, top * 1.05], "--", color="grey", label="perfect")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed qualification rate",
        title="Reliability on the newest slice: before / after",
    )
    ax.legend()
    return fig


def recalibration_sha256(champion_version: str, window_days: int, seed: int) -> str:
    d = {
        RECALIBRATE: {
            "from": champion_version,
            "window_days": window_days,
            "judge_fraction": JUDGE_FRACTION,
            "seed": seed,
        }
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _already_done(
    client: MlflowClient, options: RecalibrateOptions, champ_version: str, fp: dict
) -> str | None:
    """A version that recalibrated this champion on this data and window, or the champion itself when it is
    such a recalibration (running again would only recalibrate a recalibration on the same rows)."""
    tags = client.get_model_version(options.model_name, champ_version).tags
    if (
        tags.get(tracking.MODEL_CHOICE) == RECALIBRATE
        and tags.get(tracking.DATA_SHA256) == fp["sha256"]
        and tags.get(WINDOW_TAG) == str(options.window_days)
    ):
        return champ_version
    sha = recalibration_sha256(champ_version, options.window_days, options.seed)
    found = client.search_model_versions(
        f"name = '{options.model_name}' and tags.{tracking.DATA_SHA256} = "
        f"'{fp['sha256']}' and tags.{tracking.CONFIG_SHA256} = '{sha}'"
    )
    return str(max(int(v.version) for v in found)) if found else None


def recalibrate(
    options: RecalibrateOptions, progress: Callable[[str], None] | None = None
) -> RecalibrateOutcome:
    """One recalibration run. Raises `RetrainError`, `locks.LockHeld`, `NotEnoughData`, `DataError`, or what
    MLflow raises; in each case nothing is registered."""
    step = progress or (lambda msg: log.info(msg))
    if options.window_days < 1:
        raise RetrainError("--window must be at least 1 day")
    if options.export is not None and options.as_of is not None:
        raise RetrainError("--as-of applies to the store: an export is as of its own snapshot_at")
    return locked(
        options.database_url,
        options.stale_lock_seconds,
        step,
        lambda engine: _locked_run(engine, options, step),
    )


def _locked_run(
    engine: sa.Engine, options: RecalibrateOptions, step: Callable[[str], None]
) -> RecalibrateOutcome:
    step("reading the champion")
    champ_version, champ = champion(options.model_name)
    if champ is None:
        raise RetrainError(
            f"no champion of {options.model_name!r} to recalibrate: train one first "
            "(`leadscore retrain` or `leadscore train`)"
        )
    step("reading the export and the store's feedback" if options.export else "reading the store")
    dataset, counts = load_data(engine, options.export, options.as_of)
    check_data(dataset)
    fp = tracking.fingerprint(dataset)
    common = {"champion_before": champ_version, "fingerprint": fp, "feedback": counts, "notes": dataset.notes}
    client = MlflowClient()
    have = _already_done(client, options, champ_version, fp)
    if have is not None:
        return RecalibrateOutcome("unchanged", have, **common)
    step("building the window's rows")
    definition = champ.definition
    rows = window_rows(
        training_rows(dataset, definition), dataset.snapshot_at, definition.horizon_days, options.window_days
    )
    if len(rows) == 0:
        raise NotEnoughData(
            f"no labelled rows in the {options.window_days} days before "
            f"{dataset.snapshot_at - pd.Timedelta(days=definition.horizon_days)} (the snapshot less "
            f"the {definition.horizon_days}-day horizon): widen --window"
        )
    feats = feature_frame(dataset, rows)
    lacking = [f for f in champ.encoder.features if f not in feats.columns]
    if lacking:
        raise RetrainError(
            f"the champion reads columns the data's features do not have ({', '.join(lacking[:5])}): "
            "only models trained on event data can be recalibrated"
        )
    values = {f: feats[f].to_numpy() for f in champ.encoder.features}
    step(f"refitting the calibration on {len(rows):,} rows")
    try:
        rec = recalibrated(champ, values, rows, champ_version, options.seed)
    except NotEnoughData as e:
        raise NotEnoughData(f"{e} (window: {options.window_days} days; widen --window)") from None
    if rec.decision.rule == "inverted":  # a map that reverses the ranking is no candidate: register nothing
        return RecalibrateOutcome("kept", None, decision=rec.decision, report=rec.report, **common)
    step("logging to MLflow and registering")
    judge = rec.rows["part"].to_numpy() == "holdout"
    ex = rec.model.explain({k: v[judge] for k, v in values.items()})
    w = label_weights(rec.rows, TrainConfig().max_weight)  # the weights `recalibrated` judged with
    w_judge = None if w is None else w[judge]
    result = TrainResult(
        model=rec.model,
        estimator=None,
        rows=rec.rows,
        holdout_p=rec.p_new,
        holdout_contributions=ex.contributions,
        metrics=rec.model.info["metrics"]["holdout"],
        holdout_weight=w_judge,
    )
    config = challenger_config(champ, None, options.seed)
    source = "export" if options.export else "store"
    params = {
        "recalibrate.source": source,
        "recalibrate.store": shown_url(options.database_url)[:250],
        "recalibrate.as_of": str(dataset.snapshot_at),
        "recalibrate.from_version": champ_version,
        "recalibrate.window_days": options.window_days,
        "recalibrate.judge_fraction": round(JUDGE_FRACTION, 4),
    }
    version_tags = {
        tracking.DATA_SHA256: fp["sha256"],
        tracking.CONFIG_SHA256: recalibration_sha256(champ_version, options.window_days, options.seed),
        tracking.MODEL_CHOICE: RECALIBRATE,
        tracking.FAMILY: rec.model.family,
        FROM_VERSION: champ_version,
        WINDOW_TAG: str(options.window_days),
    }
    report_metrics = {k: v for k, v in rec.report.items() if isinstance(v, float) and np.isfinite(v)}
    tracked = tracking.track(
        result,
        dataset,
        config,
        holdout_values={k: v[judge] for k, v in values.items()},
        extra_metrics={"feedback": counts, "recalibration": report_metrics},
        params=params,
        tags={"leadscore.recalibrate": source},
        run_name=f"recalibrate · version {champ_version} · {datetime.now(UTC):%Y-%m-%d}",
        data_source=str(options.export) if options.export else _store_source(options.database_url),
        model_name=options.model_name,
        decision=rec.decision,
        version_tags=version_tags,
    )
    y_judge = rec.rows["label"].to_numpy()[judge]
    client.log_figure(
        tracked.run_id,
        reliability_before_after(y_judge, rec.p_old, rec.p_new, weight=w_judge),
        "plots/reliability_before_after.png",
    )
    client.log_dict(tracked.run_id, rec.report, "recalibration.json")
    decision = tracked.decision
    if decision is None:  # track() gates every registered version; None would mean nothing was registered
        raise RetrainError("the recalibrated version was registered without a gate decision")
    return RecalibrateOutcome(
        "promoted" if decision.promote else "kept",
        tracked.version,
        decision=decision,
        run_id=tracked.run_id,
        report=rec.report,
        **common,
    )
