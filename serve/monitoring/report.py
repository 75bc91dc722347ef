"""The monitoring report: every check of the champion on the store in one JSON-ready dict
(docs/monitoring.md), the one computation behind `leadscore monitor`, GET /v1/monitoring, the Prometheus
gauges and the sales page's calibration line."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from leadscore.serve import db, store
from leadscore.serve.monitoring.activity import coverage, volume
from leadscore.serve.monitoring.calibration import calibration
from leadscore.serve.monitoring.drift import drift_checks
from leadscore.serve.monitoring.score_rows import score_rows
from leadscore.serve.monitoring.status import ALERT, WARN, worst

from leadscore.settings import Settings

if TYPE_CHECKING:
    from leadscore.model.scoring import ScoringModel


def monitor(
    engine: sa.Engine,
    model: ScoringModel,
    settings: Settings,
    now: datetime | None = None,
    window_days: float | None = None,
) -> dict[str, Any]:
    """The monitoring report of `model` (a `ScoringModel`) on the store, at `now` over `window_days`
    (default: `settings.monitor_window_days`). A JSON-ready dict (docs/monitoring.md)."""
    now = store.aware(now) if now is not None else store.now()
    window_days = settings.monitor_window_days if window_days is None else window_days
    window = timedelta(days=window_days)
    horizon = timedelta(days=model.definition.horizon_days)
    sl = db.score_log.c
    with engine.connect() as conn:
        rows = score_rows(conn, [sl.scored_at > now - window, sl.scored_at <= now], settings.monitor_max_rows)
        calibration_check = calibration(conn, model, settings, now, window)
        features, score, grades = drift_checks(conn, model, settings, rows)
        volume_check = volume(conn, now, window)
        coverage_check = coverage(conn, now, window, horizon, settings)
    checks = {
        "calibration": calibration_check,
        "drift": features,
        "score": score,
        "grades": grades,
        "volume": volume_check,
        "coverage": coverage_check,
    }
    alerts = [f"{name}: {c.get('message', '')}" for name, c in checks.items() if c["status"] == ALERT]
    warnings = [f"{name}: {c.get('message', '')}" for name, c in checks.items() if c["status"] == WARN]
    return {
        "generated_at": store.now().isoformat(timespec="seconds"),
        "now": now.isoformat(timespec="seconds"),
        "window_days": window_days,
        "model": {
            "name": model.name,
            "version": model.version,
            "family": model.family,
            "trained_at": model.info.get("trained_at"),
            "horizon_days": model.definition.horizon_days,
        },
        "status": worst(c["status"] for c in checks.values()),
        "retrain_recommended": bool(alerts),
        "reasons": alerts or warnings,
        "checks": checks,
        "thresholds": {
            k.removeprefix("monitor_"): v
            for k, v in settings.model_dump().items()
            if k.startswith("monitor_")
        },
    }
