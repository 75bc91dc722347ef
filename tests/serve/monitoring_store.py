"""A store with scores and feedback for the monitoring tests, built as the service would have built it: the
demo leads stored, scored live at a few ages by the champion (the score log holds the feature values the
model got) and reviewed by sales with what really happened. `shifted` makes the scored population unlike
the training one (other sources, company sizes and countries, no activity) and sales qualifies far more
of it than the model predicts (a base-rate shift). `partial` (an `Exploration`) hands leads over as the
service does under it, logs each score's handoff propensity, and sales gives a verdict only to the leads
the model handed over."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.labels import as_of_moments
from leadscore.features.live import lead_features, to_ms
from leadscore.model.inputs import feature_snapshots
from leadscore.serve import db, store

SPAN_DAYS = 240  # leads created in the last SPAN_DAYS before the demo snapshot


def populate(engine: sa.Engine, dataset, model, shifted: bool = False, seed: int = 0, partial=None) -> dict:
    rng = np.random.default_rng(seed)
    snapshot = dataset.snapshot_at.to_pydatetime()
    leads = dataset.leads[dataset.leads[S.CREATED_AT] > dataset.snapshot_at - timedelta(days=SPAN_DAYS)]
    ids = set(leads[S.LEAD_ID].astype(str))
    now = store.now()
    lead_dicts = []
    for r in leads.to_dict("records"):
        attrs = {a: r[a] for a in S.LEAD_ATTRIBUTES if isinstance(r.get(a), str)}
        if shifted:
            attrs.update(source="event", company_size="1-10", country=str(rng.choice(["BR", "IN"])))
        lead_dicts.append(
            {
                "lead_id": str(r[S.LEAD_ID]),
                "created_at": r[S.CREATED_AT].to_pydatetime(),
                "attributes": attrs,
                "events": [],
            }
        )
    ev = dataset.events[dataset.events[S.LEAD_ID].astype(str).isin(ids)]
    by_id = {d["lead_id"]: d for d in lead_dicts}
    if not shifted:  # the shifted population does nothing on the site
        for lid, t, ts, p in zip(ev[S.LEAD_ID], ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False):
            by_id[str(lid)]["events"].append(
                {"type": str(t), "timestamp": ts.to_pydatetime(), "page": p if isinstance(p, str) else None}
            )
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.leads),
            [
                {
                    "lead_id": d["lead_id"],
                    "created_at": d["created_at"],
                    "attributes": d["attributes"],
                    "updated_at": now,
                }
                for d in lead_dicts
            ],
        )
    # scored at the moments training takes its rows at (the sampled ages and the hand-over, while the lead
    # is undecided), so an unshifted population looks like the training one
    d = model.definition
    moments_all = as_of_moments(dataset, d)
    out = dataset.outcomes
    decided = out[out[S.OUTCOME].isin(d.positive + d.negative)].groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    open_ = ~(moments_all[S.LEAD_ID].map(decided) <= moments_all["as_of"])
    moments_all = moments_all[
        moments_all[S.LEAD_ID].astype(str).isin(ids) & open_ & (moments_all["as_of"] <= dataset.snapshot_at)
    ]
    scored = []
    for start in range(0, len(moments_all), 4000):
        part = moments_all.iloc[start : start + 4000]
        todo = [by_id[str(lid)] for lid in part[S.LEAD_ID]]
        moments = [t.to_pydatetime() for t in part["as_of"]]
        values = lead_features(todo, [to_ms(t) for t in moments])
        results = model.results(
            values, [d["lead_id"] for d in todo], **({"exploration": partial} if partial is not None else {})
        )
        rows = [
            {
                "lead_id": r["lead_id"],
                "scored_at": t,
                "as_of": t,
                "model_version": model.version,
                "probability": r["probability"],
                "score": r["score"],
                "grade": r["grade"],
                "qualified": r["qualified"],
                "features": f,
                "reasons": r["reasons"],
                **({"propensity": r["propensity"], "explored": r["explored"]} if partial is not None else {}),
            }
            for r, t, f in zip(
                results, moments, feature_snapshots(values, model.encoder.features), strict=False
            )
        ]
        with engine.begin() as conn:
            store.insert_score_log(conn, [store.score_log_row(r) for r in rows])
        scored += rows
    if shifted:  # sales qualifies 70 % of the leads a few days after they came in
        qualified = rng.random(len(lead_dicts)) < 0.7
        feedback = [
            {
                "lead_id": d["lead_id"],
                "outcome": "qualified" if q else "disqualified",
                "reason": None if q else "no_budget",
                "at": d["created_at"] + timedelta(days=12),
            }
            for d, q in zip(lead_dicts, qualified, strict=False)
        ]
    else:
        out = dataset.outcomes[
            dataset.outcomes[S.LEAD_ID].astype(str).isin(ids)
            & dataset.outcomes[S.OUTCOME].isin(("qualified", "disqualified", "won", "lost"))
        ]
        feedback = [
            {
                "lead_id": str(lid),
                "outcome": o,
                "reason": r if o == "disqualified" and isinstance(r, str) else None,
                "at": at.to_pydatetime(),
            }
            for lid, o, at, r in zip(
                out[S.LEAD_ID], out[S.OUTCOME], out[S.OUTCOME_AT], out[S.REASON], strict=False
            )
        ]
    if partial is not None:  # sales see only the leads handed over
        handed = {r["lead_id"] for r in scored if r["qualified"]}
        feedback = [f for f in feedback if f["lead_id"] in handed]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.feedback),
            [
                dict(f, note=None, received_at=now, source="api", idempotency_key=None)
                for f in feedback
                if f["at"] <= snapshot
            ],
        )
    return {"leads": lead_dicts, "scores": scored, "snapshot": snapshot}


def store_leads(conn: sa.Connection, ids, created_at, now) -> None:
    """Store leads `ids`, all created at `created_at`, without attributes."""
    if ids:
        conn.execute(
            sa.insert(db.leads),
            [{"lead_id": i, "created_at": created_at, "attributes": {}, "updated_at": now} for i in ids],
        )


def give_verdicts(conn: sa.Connection, ids, at, now, outcome: str = "qualified") -> None:
    """Sales' verdict `outcome` on leads `ids`, given at `at` and received through the API at `now`."""
    if ids:
        conn.execute(
            sa.insert(db.feedback),
            [{"lead_id": i, "outcome": outcome, "at": at, "received_at": now, "source": "api"} for i in ids],
        )
