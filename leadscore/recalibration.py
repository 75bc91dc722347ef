"""The recalibration itself, without the store or MLflow: the champion's Platt map and handoff policy refit
on the older part of a labelled window and judged against the champion on its newest part (the gate's
rules: `leadscore.recalibrate`'s docstring). `leadscore.recalibrate` runs it as a job and registers it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from leadscore.model import drift, evaluate
from leadscore.model.calibration import Platt, sigmoid
from leadscore.model.gate import GateDecision
from leadscore.model.policy import choose_policy
from leadscore.model.scoring import ScoringModel
from leadscore.model.train import TrainConfig
from leadscore.model.training_data import check_enough, label_weights

JUDGE_FRACTION = 1 / 3  # the newest third of the window's time span judges; the older two thirds fit
BOOTSTRAP = 400


@dataclass
class Recalibration:
    """A recalibrated model and what the gate saw (no MLflow: `recalibrate` registers it)."""

    model: ScoringModel
    decision: GateDecision
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
            # the calibration rows against the later ones, as training records it
            # (training_data.base_rate_warning)
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
    decision = GateDecision(
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
