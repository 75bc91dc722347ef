"""The service's store as a dataset: the leads applications sent (PUT /v1/leads), their events (POST
/v1/events) and sales' feedback (POST /v1/feedback, the sales page) as outcomes, so a model can be trained
from what went through the API alone, with no CRM export.

Feedback becomes outcomes through `features.feedback.with_feedback`, the same rules a CRM export with the
store's feedback merged follows (the latest verdict wins, dated when the lead was first decided). "As of T"
keeps what is stamped at or before T: leads created, events that happened, feedback given; T is the
dataset's `snapshot_at`, so training censors label horizons that run past it.

The score log becomes the dataset's selection table (docs/data-model.md): one row per score that handed a
lead over (`handed_at` = that score's time, with that score's propensity: the moments training learns the
lead from), and for a lead never handed over one row with its last score's propensity (`handed_at`
empty). Rows logged before the propensity was recorded (migration 0006) say nothing: a lead whose first
hand-over is such a row is left out of the table (its rows weigh 1 in training, as before).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.feedback import with_feedback
from leadscore.features.loading import Dataset
from leadscore.serve import db, store


def _utc(values: Iterable[Any]) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True).astype("datetime64[ms, UTC]")


def selection_table(engine: sa.Engine, cut: datetime) -> pd.DataFrame | None:
    """lead_id, handed_at, propensity of the stored leads (created by `cut`) scored by `cut`: every
    handed-over score-log row with a recorded propensity, one per (lead, millisecond), for a lead whose first
    handed-over row recorded one; for a lead never handed over, its last row (`handed_at` empty) when that
    recorded one. None when there is no such row. The never-handed leads' last rows are chosen in SQL (a
    window function per lead), so the export reads the handed-over rows and one row per other lead, not the
    whole score log."""
    sl = db.score_log.c
    known = sa.and_(sl.scored_at <= cut, db.leads.c.created_at <= cut)
    stored = sa.select(sl.id, sl.lead_id, sl.scored_at, sl.propensity, sl.qualified).join(
        db.leads, db.leads.c.lead_id == sl.lead_id
    )
    handed_q = stored.where(known, sl.qualified.is_(True)).order_by(sl.lead_id, sl.scored_at, sl.id)
    last = (
        stored.add_columns(
            sa.func.row_number()
            .over(partition_by=sl.lead_id, order_by=(sl.scored_at.desc(), sl.id.desc()))
            .label("rn")
        )
        .where(known)
        .subquery()
    )
    with engine.connect() as conn:
        handed = conn.execute(handed_q).all()
        latest = conn.execute(sa.select(last.c.lead_id, last.c.propensity).where(last.c.rn == 1)).all()
    hand = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([r.lead_id for r in handed], dtype=object),
            S.HANDED_AT: _utc([r.scored_at for r in handed]),
            S.PROPENSITY: pd.Series([r.propensity for r in handed], dtype="float64"),
        }
    )
    # a lead whose first hand-over predates recorded propensities says nothing (weight 1, as before); two
    # scores of a lead in one millisecond are one moment (the first one's decision: rows come in id order)
    first = ~hand[S.LEAD_ID].duplicated()
    unknown = hand.loc[first & hand[S.PROPENSITY].isna(), S.LEAD_ID]
    hand = hand[~hand[S.LEAD_ID].isin(unknown) & hand[S.PROPENSITY].notna()]
    hand = hand.drop_duplicates([S.LEAD_ID, S.HANDED_AT])
    handed_ids = {r.lead_id for r in handed}
    never = [r for r in latest if r.lead_id not in handed_ids and r.propensity is not None]
    out = pd.concat(
        [
            hand,
            pd.DataFrame(
                {
                    S.LEAD_ID: pd.Series([r.lead_id for r in never], dtype=object),
                    S.HANDED_AT: pd.Series(pd.NaT, index=range(len(never)), dtype="datetime64[ms, UTC]"),
                    S.PROPENSITY: pd.Series([r.propensity for r in never], dtype="float64"),
                }
            ),
        ],
        ignore_index=True,
    )
    out = out.sort_values([S.LEAD_ID, S.HANDED_AT], kind="stable", ignore_index=True)
    return out if len(out) else None


def store_dataset(engine: sa.Engine, as_of: datetime | None = None) -> Dataset:
    """Everything the store knows as of `as_of` (default: now) as a `Dataset`."""
    snapshot = pd.Timestamp(as_of or store.now())
    snapshot = snapshot.tz_localize("UTC") if snapshot.tzinfo is None else snapshot.tz_convert("UTC")
    cut = snapshot.to_pydatetime()
    with engine.connect() as conn:
        lead_rows = conn.execute(
            sa.select(db.leads.c.lead_id, db.leads.c.created_at, db.leads.c.attributes)
            .where(db.leads.c.created_at <= cut)
            .order_by(db.leads.c.lead_id)
        ).all()
        event_rows = conn.execute(
            sa.select(db.events.c.lead_id, db.events.c.type, db.events.c.timestamp, db.events.c.page)
            .join(db.leads, db.leads.c.lead_id == db.events.c.lead_id)
            .where(db.events.c.timestamp <= cut, db.leads.c.created_at <= cut)
            .order_by(db.events.c.id)
        ).all()
    attrs = [r.attributes or {} for r in lead_rows]
    leads = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([r.lead_id for r in lead_rows], dtype=object),
            S.CREATED_AT: _utc([r.created_at for r in lead_rows]),
            **{a: pd.Series([d.get(a) for d in attrs], dtype=object) for a in S.LEAD_ATTRIBUTES},
        }
    )
    events = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([r.lead_id for r in event_rows], dtype=object),
            S.EVENT_TYPE: pd.Series([r.type for r in event_rows], dtype=object),
            S.TIMESTAMP: _utc([r.timestamp for r in event_rows]),
            S.PAGE: pd.Series([r.page for r in event_rows], dtype=object),
        }
    )
    outcomes = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series(dtype=object),
            S.OUTCOME: pd.Series(dtype=object),
            S.OUTCOME_AT: _utc([]),
            S.REASON: pd.Series(dtype=object),
        }
    )
    dataset = Dataset(
        leads=leads,
        events=events,
        outcomes=outcomes,
        snapshot_at=snapshot,
        selection=selection_table(engine, cut),
    )
    return with_feedback(dataset, store.feedback_frame(engine, until=cut))
