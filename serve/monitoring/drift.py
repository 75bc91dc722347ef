"""The drift checks: PSI of every feature, of the score and of the grade mix over the scores of the window,
against the model's training histograms (`model.drift`). The champion re-scores the logged feature values,
so the score and grade figures are its own even when older versions served the scores."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from leadscore.model import drift
from leadscore.model.policy import GRADES
from leadscore.serve.monitoring.score_rows import complete, feature_values
from leadscore.serve.monitoring.status import ALERT, NOT_ENOUGH, OK, UNKNOWN, WARN, worst
from leadscore.serve.store.rows import AnyRow

from leadscore.settings import Settings

if TYPE_CHECKING:
    from leadscore.model.scoring import ScoringModel


def _psi_status(value: float, noise: float, settings: Settings) -> str:
    """ok / warn / alert: the thresholds count beyond the PSI sampling alone gives on these rows."""
    return (
        ALERT
        if value >= settings.monitor_psi_alert + noise
        else WARN
        if value >= settings.monitor_psi_warn + noise
        else OK
    )


def _psi_entry(spec: dict[str, Any], col: Any, n_reference: int, settings: Settings) -> dict[str, Any]:
    entry = drift.compare(spec, col, n_reference)
    return {**entry, "status": _psi_status(entry["psi"], entry["noise"], settings)}


def drift_checks(
    conn: sa.Connection, model: ScoringModel, settings: Settings, rows: Sequence[AnyRow]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The drift of the features, of the score and of the grade mix over `rows` (the window's scores)."""
    if not drift.has_reference(model.info):
        why = (
            "the model has no training histograms (trained before they were stored): retrain it to monitor "
            "drift"
        )
        return (
            {"status": UNKNOWN, "message": why, "features": {}},
            {"status": UNKNOWN, "message": why},
            {"status": UNKNOWN, "message": why},
        )
    ref: dict[str, Any] = model.info["distributions"]
    names, categorical = model.encoder.features, model.encoder.categorical
    values, present = feature_values(conn, rows, names, categorical)
    whole = complete(present, len(rows))
    n_ref = int(ref.get("n") or 0)
    n = len(rows)
    features: dict[str, dict[str, Any]] = {}
    minimum = settings.monitor_min_scores
    for name in names:
        spec = ref["features"].get(name)
        if spec is None:
            continue
        features[name] = _psi_entry(spec, values[name][present[name]], n_ref, settings)
        if features[name]["n"] < minimum:  # logged under feature sets without it: nothing to judge it on
            features[name]["status"] = NOT_ENOUGH
    out_f: dict[str, Any] = {"n": n, "min_rows": minimum, "features": features}
    if n < settings.monitor_min_scores:
        enough = (
            f"only {n} scores in the window; at least {settings.monitor_min_scores} are needed "
            "(LEADSCORE_MONITOR_MIN_SCORES)"
        )
        for e in features.values():
            e["status"] = NOT_ENOUGH
        return (
            {**out_f, "status": NOT_ENOUGH, "message": enough},
            {"status": NOT_ENOUGH, "n": n, "message": enough},
            {"status": NOT_ENOUGH, "n": n, "message": enough},
        )
    ranked = sorted(
        (k for k in features if features[k]["status"] != NOT_ENOUGH), key=lambda k: -features[k]["psi"]
    )
    out_f["status"] = worst(e["status"] for e in features.values())
    out_f["top"] = ranked[:5]
    drifted = [k for k in ranked if features[k]["status"] in (WARN, ALERT)]
    out_f["message"] = (
        f"{len(drifted)} of {len(features)} features drifted: "
        + ", ".join(f"{k} (PSI {features[k]['psi']:.2f})" for k in drifted[:5])
        if drifted
        else f"no feature drifted (largest PSI {features[ranked[0]]['psi']:.3f}, {ranked[0]})"
        if ranked
        else ""
    )
    out_f["message"] = "; ".join(m for m in (out_f["message"], _missing_note(features, minimum)) if m)
    idx = np.flatnonzero(whole)
    if len(idx) < minimum:  # the score needs every feature: rows of other feature sets cannot be re-scored
        short = (
            f"only {len(idx)} of the {n} scores in the window hold every feature the model needs; at least "
            f"{minimum} are needed (LEADSCORE_MONITOR_MIN_SCORES)"
        )
        return (
            out_f,
            {"status": NOT_ENOUGH, "n": int(len(idx)), "message": short},
            {"status": NOT_ENOUGH, "n": int(len(idx)), "message": short},
        )
    p = model.explain({k: v[idx] for k, v in values.items()}).probability
    n_score = int(ref["score"].get("n") or n_ref)
    score = _psi_entry(ref["score"], p, n_score, settings)
    score["edges"] = ref["score"]["edges"]  # probability; the report shows them as score points
    score["message"] = f"score PSI {score['psi']:.3f}"
    counts = Counter(model.policy.grade(p).tolist())
    recent = [counts.get(g, 0) / len(p) for g in GRADES]
    training = [float(ref["grades"].get(g, 0.0)) for g in GRADES]
    value = drift.psi(training, recent, n_expected=n_score, n_actual=len(p))
    noise = drift.noise(training, recent, len(p), n_score)
    g_status = _psi_status(value, noise, settings)
    grade = {
        "status": g_status,
        "psi": value,
        "noise": noise,
        "training": dict(zip(GRADES, training, strict=False)),
        "recent": dict(zip(GRADES, recent, strict=False)),
        "n": int(len(p)),
        "message": "grades now "
        + ", ".join(f"{g} {100 * r:.0f} %" for g, r in zip(GRADES, recent, strict=False))
        + " (training "
        + ", ".join(f"{g} {100 * r:.0f} %" for g, r in zip(GRADES, training, strict=False))
        + ")",
    }
    return out_f, score, grade


def _missing_note(features: dict[str, dict[str, Any]], minimum: int) -> str:
    short = [k for k, e in features.items() if e["status"] == NOT_ENOUGH]
    return (
        (
            f"not enough scores holding {', '.join(short[:5])}{' ...' if len(short) > 5 else ''} "
            f"(fewer than {minimum})"
        )
        if short
        else ""
    )
