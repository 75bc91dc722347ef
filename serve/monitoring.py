"""Monitoring: is the champion still right? One function, `monitor`, computes everything that `leadscore
monitor`, GET /v1/monitoring, the Prometheus gauges and the sales page's calibration line show
(docs/monitoring.md says what each figure means and what to do about it).

It reads the store's score log (each score's feature values as the model got them) and feedback, and the
model's training histograms (`model.drift`). The champion re-scores the logged feature values, so the
figures are the champion's own even when older versions served the scores.

- **calibration**: the leads whose outcome is now known, labelled by the training rules
  (`features.labels.label_rows`: positive when a positive verdict falls in (as_of, as_of + horizon], a row
  counts only once its horizon has passed; a lead decided before it was scored is left out). The window is
  on the end of the horizon: scores whose as_of + horizon falls in the last `window` days. One row per
  (lead, as_of) as in training, and only leads stored in the service (a lead scored without being stored cannot
  get feedback, so it could only ever count as a negative).
- **drift**: PSI of every feature, of the score and of the grade mix, over the scores of the last `window`
  days, against the training histograms.
- **volume** (scores per day) and **coverage** (share of scored leads with a verdict).

A status per check: ok / warn / alert, "not enough data" below the minimum number of rows, "unknown" when
the model has no training histograms (trained before they were stored). Thresholds are in `Settings`
(`monitor_*`); a check warns or alerts only beyond what sampling alone would give on that many rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.feedback import VERDICTS, with_feedback
from leadscore.features.labels import label_rows
from leadscore.features.loading import Dataset
from leadscore.model import drift
from leadscore.model.evaluate import clustered_covariance
from leadscore.model.evaluate import ece as expected_calibration_error
from leadscore.model.policy import GRADES
from leadscore.model.train import TrainConfig, label_weights
from leadscore.serve import db, store

from leadscore.settings import Settings

OK, WARN, ALERT, NOT_ENOUGH, UNKNOWN = "ok", "warn", "alert", "not enough data", "unknown"
_RANK = {OK: 0, NOT_ENOUGH: 0, UNKNOWN: 0, WARN: 1, ALERT: 2}
CALIBRATION_BINS = 10
log = logging.getLogger("leadscore.serve")


def worst(statuses) -> str:
    statuses = list(statuses)
    graded = [s for s in statuses if s in (OK, WARN, ALERT)]
    if not graded:
        return NOT_ENOUGH if NOT_ENOUGH in statuses else UNKNOWN
    return max(graded, key=_RANK.__getitem__)


# --- reading the store ------------------------------------------------------------------------------------
def _score_rows(conn: sa.Connection, where, limit: int) -> list:
    sl = db.score_log.c
    q = (
        sa.select(
            sl.lead_id,
            sl.scored_at,
            sl.as_of,
            sl.probability,
            sl.grade,
            sl.qualified,
            sl.propensity,
            sl.features,
            sl.feature_set,
        )
        .where(*where)
        .order_by(sl.scored_at.desc(), sl.id.desc())
        .limit(limit)
    )
    return conn.execute(q).all()


def feature_values(
    conn: sa.Connection, rows: list, names: tuple[str, ...], categorical: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The logged feature values of `rows` as model input (name -> array; numerics float with NaN for
    missing, categoricals object), and for each name the mask of the rows whose log holds it (a row of
    another feature set may not). Rows of one feature set are read column-wise: a few numpy calls a feature."""
    n_rows = len(rows)
    sets = store.feature_names(conn, {r.feature_set for r in rows if r.feature_set})
    raw = {n: np.full(n_rows, None, dtype=object) for n in names}
    present = {n: np.zeros(n_rows, dtype=bool) for n in names}
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if isinstance(r.features, list):
            groups.setdefault(r.feature_set, []).append(i)
        else:  # written before migration 0003: a mapping of name to value
            for n in names:
                if n in r.features:
                    raw[n][i], present[n][i] = r.features[n], True
    for fs, idx in groups.items():
        position = {n: j for j, n in enumerate(sets.get(fs, ()))}
        columns = list(zip(*(rows[i].features for i in idx), strict=False))
        at = np.asarray(idx)
        for n in names:
            j = position.get(n)
            if j is not None and j < len(columns):
                column = np.empty(len(idx), dtype=object)
                column[:] = columns[j]
                raw[n][at], present[n][at] = column, True
    values = {}
    for n in names:
        if n in categorical:
            values[n] = np.array([None if v is None else str(v) for v in raw[n]], dtype=object)
        else:
            values[n] = pd.to_numeric(pd.Series(raw[n]), errors="coerce").to_numpy(dtype=float)
    return values, present


def _complete(present: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Rows that hold every feature."""
    return np.logical_and.reduce(list(present.values())) if present else np.ones(n, dtype=bool)


def _outcomes(conn: sa.Connection, lead_ids: set[str], now: datetime) -> Dataset:
    """The stored leads in `lead_ids` (creation times) and their feedback given by `now` folded into
    outcomes with the training rules (`with_feedback`), as a dataset whose snapshot is `now`."""
    ids = sorted(lead_ids)
    created: list[sa.Row[Any]] = []
    for i in range(0, len(ids), store.IN_CHUNK):
        part = ids[i : i + store.IN_CHUNK]
        created += conn.execute(
            sa.select(db.leads.c.lead_id, db.leads.c.created_at).where(db.leads.c.lead_id.in_(part))
        ).all()
    utc = "datetime64[ms, UTC]"
    leads = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([r.lead_id for r in created], dtype=object),
            S.CREATED_AT: pd.to_datetime(
                pd.Series([store.aware(r.created_at) for r in created], dtype=object), utc=True
            ).astype(utc),
        }
    )
    empty_outcomes = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series(dtype=object),
            S.OUTCOME: pd.Series(dtype=object),
            S.OUTCOME_AT: pd.Series(dtype=utc),
            S.REASON: pd.Series(dtype=object),
        }
    )
    dataset = Dataset(
        leads=leads, events=pd.DataFrame(), outcomes=empty_outcomes, snapshot_at=pd.Timestamp(now)
    )
    return with_feedback(dataset, store.feedback_frame(conn, lead_ids=ids, until=now))


# --- the checks ----------------------------------------------------------------------------------------------
def _calibration(conn, model, settings: Settings, now: datetime, window: timedelta) -> dict:
    horizon = timedelta(days=model.definition.horizon_days)
    sl = db.score_log.c
    stored = sa.exists().where(db.leads.c.lead_id == sl.lead_id)
    rows = _score_rows(
        conn,
        [sl.as_of > now - window - horizon, sl.as_of <= now - horizon, stored],
        settings.monitor_max_rows,
    )
    out = {
        "min_rows": settings.monitor_min_labeled,
        "horizon_days": model.definition.horizon_days,
        "as_of_from": (now - window - horizon).isoformat(),
        "as_of_to": (now - horizon).isoformat(),
    }
    values, present = feature_values(conn, rows, model.encoder.features, model.encoder.categorical)
    keep = np.flatnonzero(_complete(present, len(rows)))
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
        dataset = _outcomes(conn, set(labelled[S.LEAD_ID]), now)
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

    def mean(x: np.ndarray, rows=slice(None)) -> float:
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


def _psi_status(value: float, noise: float, settings: Settings) -> str:
    """ok / warn / alert: the thresholds count beyond the PSI sampling alone gives on these rows."""
    return (
        ALERT
        if value >= settings.monitor_psi_alert + noise
        else WARN
        if value >= settings.monitor_psi_warn + noise
        else OK
    )


def _psi_entry(spec: dict, col, n_reference: int, settings: Settings) -> dict:
    entry = drift.compare(spec, col, n_reference)
    return {**entry, "status": _psi_status(entry["psi"], entry["noise"], settings)}


def _drift(conn, model, settings: Settings, rows: list) -> tuple[dict, dict, dict]:
    ref = model.info.get("distributions")
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
    names, categorical = model.encoder.features, model.encoder.categorical
    values, present = feature_values(conn, rows, names, categorical)
    complete = _complete(present, len(rows))
    n_ref = int(ref.get("n") or 0)
    n = len(rows)
    features = {}
    minimum = settings.monitor_min_scores
    for name in names:
        spec = ref["features"].get(name)
        if spec is None:
            continue
        features[name] = _psi_entry(spec, values[name][present[name]], n_ref, settings)
        if features[name]["n"] < minimum:  # logged under feature sets without it: nothing to judge it on
            features[name]["status"] = NOT_ENOUGH
    out_f = {"n": n, "min_rows": minimum, "features": features}
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
    idx = np.flatnonzero(complete)
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


def _missing_note(features: dict, minimum: int) -> str:
    short = [k for k, e in features.items() if e["status"] == NOT_ENOUGH]
    return (
        (
            f"not enough scores holding {', '.join(short[:5])}{' ...' if len(short) > 5 else ''} "
            f"(fewer than {minimum})"
        )
        if short
        else ""
    )


def _volume(conn, now: datetime, window: timedelta) -> dict:
    """Scores per UTC day in the window, counted by the database (every score, not the rows read for drift):
    one pass over the window with a sum per day (chunks of days: SQLite allows 2,000 result columns)."""
    sl = db.score_log.c
    lo = now - window
    first = lo.date()
    days = [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]
    counts: list[int] = []
    for i in range(0, len(days), 200):
        starts = [datetime.combine(d, datetime.min.time(), tzinfo=UTC) for d in days[i : i + 200]]
        columns = [
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        ((sl.scored_at >= start) & (sl.scored_at < start + timedelta(days=1)), 1), else_=0
                    )
                ),
                0,
            )
            for start in starts
        ]
        counts += [
            int(c)
            for c in conn.execute(sa.select(*columns).where(sl.scored_at > lo, sl.scored_at <= now)).one()
        ]
    per_day = [{"day": d.isoformat(), "n": c} for d, c in zip(days, counts, strict=False)]
    n = sum(counts)
    return {
        "status": OK if n else WARN,
        "n": n,
        "per_day": per_day,
        "message": f"{n} scores in the window"
        if n
        else "no scores in the window: is anything calling the API?",
    }


def _coverage(conn, now: datetime, window: timedelta, horizon: timedelta, settings: Settings) -> dict:
    """Feedback coverage, counted by the database: the leads scored in the window, and the leads handed over
    (scored at or above the threshold) whose horizon ended in the window and that are stored (only a stored
    lead can get a verdict, as for calibration), and how many of each have a verdict."""
    sl, fb = db.score_log.c, db.feedback.c
    verdict = sa.exists().where(fb.lead_id == sl.lead_id, fb.outcome.in_(VERDICTS), fb.at <= now)
    stored = sa.exists().where(db.leads.c.lead_id == sl.lead_id)

    def leads(*where) -> tuple[int, int]:
        n = sa.func.count(sa.distinct(sl.lead_id))
        with_verdict = sa.func.count(sa.distinct(sa.case((verdict, sl.lead_id))))
        return tuple(int(x) for x in conn.execute(sa.select(n, with_verdict).where(*where)).one())

    scored, scored_with = leads(sl.scored_at > now - window, sl.scored_at <= now)
    due, due_with = leads(
        sl.qualified.is_(True), sl.as_of > now - window - horizon, sl.as_of <= now - horizon, stored
    )
    share = scored_with / scored if scored else None
    due_share = due_with / due if due else None
    status = (
        (WARN if due_share < settings.monitor_coverage_warn else OK) if due_share is not None else NOT_ENOUGH
    )
    msg = f"{scored_with} of {scored} leads scored in the window have a verdict" + (
        f"; {due_with} of {due} handed-over leads due a verdict have one" if due else ""
    )
    return {
        "status": status,
        "scored_leads": scored,
        "with_verdict": scored_with,
        "share": share,
        "handed_over_due": due,
        "handed_over_due_with_verdict": due_with,
        "handed_over_share": due_share,
        "message": msg,
    }


def monitor(
    engine: sa.Engine,
    model,
    settings: Settings,
    now: datetime | None = None,
    window_days: float | None = None,
) -> dict:
    """The monitoring report of `model` (a `ScoringModel`) on the store, at `now` over `window_days`
    (default: `settings.monitor_window_days`). A JSON-ready dict (docs/monitoring.md)."""
    now = store.aware(now) if now is not None else store.now()
    window_days = settings.monitor_window_days if window_days is None else window_days
    window = timedelta(days=window_days)
    horizon = timedelta(days=model.definition.horizon_days)
    sl = db.score_log.c
    with engine.connect() as conn:
        rows = _score_rows(
            conn, [sl.scored_at > now - window, sl.scored_at <= now], settings.monitor_max_rows
        )
        calibration = _calibration(conn, model, settings, now, window)
        features, score, grades = _drift(conn, model, settings, rows)
        volume = _volume(conn, now, window)
        coverage = _coverage(conn, now, window, horizon, settings)
    checks = {
        "calibration": calibration,
        "drift": features,
        "score": score,
        "grades": grades,
        "volume": volume,
        "coverage": coverage,
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


class MonitorCache:
    """The service's monitoring report, per worker. Computing it is Python work of seconds on a large store
    (docs/monitoring.md, "In the service"), so nothing that a scraper or a person waits on computes it:

    - `peek` (/metrics, the sales page) never waits: it returns the last report of the model being served,
      even when older than `settings.monitor_cache_seconds` (stale-while-revalidate), and when it is stale or
      missing starts a refresh in one background thread (at most one per worker). Before the first report
      exists it returns None ("computing"): the gauges and the page's line are simply absent.
    - `get` (GET /v1/monitoring, called in the threadpool) returns a fresh report, computing it in the
      caller's thread when needed; one computation at a time, a concurrent caller waits and reuses it.

    `settings.monitor_refresh` off: no background refresh (a busy service runs `leadscore monitor` on a
    schedule instead); `peek` then returns what the last GET /v1/monitoring computed, if anything.
    The scoring path never computes anything."""

    def __init__(self, state, compute=monitor):
        self.state = state
        self._compute = compute
        self._running = threading.Lock()  # held while a report is computed: one at a time
        self._lock = threading.Lock()  # guards the fields below; never held while computing
        self._report: dict | None = None
        self._key = None
        self._at = float("-inf")
        self._tried_at = float(
            "-inf"
        )  # the last background attempt: a failing one is retried once per period
        self._refresher: threading.Thread | None = None

    def _fresh(self, model) -> bool:
        return (
            self._report is not None
            and self._key == model.version
            and time.monotonic() - self._at <= self.state.settings.monitor_cache_seconds
        )

    def peek(self) -> dict | None:
        """The last report of the model being served, without waiting; None when no model is loaded or no
        report exists yet. Starts a background refresh when the report is stale or missing."""
        model = self.state.holder.model
        if model is None:
            return None
        settings = self.state.settings
        with self._lock:
            report = self._report if self._key == model.version else None
            if (
                settings.monitor_refresh
                and self._refresher is None
                and not self._fresh(model)
                and time.monotonic() - self._tried_at > settings.monitor_cache_seconds
            ):
                self._tried_at = time.monotonic()
                self._refresher = threading.Thread(
                    target=self._refresh, args=(model,), daemon=True, name="leadscore-monitoring"
                )
                self._refresher.start()
        return report

    def get(self) -> dict | None:
        """A fresh report of the model being served (computed here when stale); None when no model is loaded."""
        model = self.state.holder.model
        if model is None:
            return None
        with self._running:
            with self._lock:
                if self._fresh(model):
                    return self._report
            return self._run(model)

    def wait_refresh(self, timeout: float | None = None) -> None:
        """Wait for a running background refresh (tests, shutdown)."""
        t = self._refresher
        if t is not None:
            t.join(timeout)

    def _run(self, model) -> dict:
        report = self._compute(self.state.engine, model, self.state.settings)
        with self._lock:
            self._report, self._key, self._at = report, model.version, time.monotonic()
        return report

    def _refresh(self, model) -> None:
        try:
            with self._running:
                with self._lock:
                    fresh = self._fresh(model)
                if not fresh:  # a GET /v1/monitoring may have computed it meanwhile
                    self._run(model)
                    with self._lock:
                        self._tried_at = float("-inf")
        except Exception:  # noqa: BLE001 - the service keeps serving; the next period retries
            log.warning("monitoring: the report could not be computed", exc_info=True)
        finally:
            with self._lock:
                self._refresher = None
