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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from leadscore.features.frames import feature_frame
from leadscore.features.labels import training_rows
from leadscore.model import registry, run_metadata, tracking
from leadscore.model.gate import GateDecision
from leadscore.model.train import TrainConfig, TrainResult
from leadscore.model.training_data import NotEnoughData, label_weights
from leadscore.recalibration import JUDGE_FRACTION, recalibrated, reliability_before_after, window_rows
from leadscore.retrain import (
    RetrainError,
    challenger_config,
    champion,
    check_data,
    load_data,
    locked,
    shown_url,
    store_source,
)
from leadscore.serve import locks

log = logging.getLogger(__name__)
DEFAULT_WINDOW_DAYS = 90
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
    decision: GateDecision | None = None
    run_id: str | None = None
    report: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


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
    fp = run_metadata.fingerprint(dataset)
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
        data_source=str(options.export) if options.export else store_source(options.database_url),
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
