"""The service's store as a dataset: the leads applications sent (PUT /v1/leads), their events (POST
/v1/events) and sales' feedback (POST /v1/feedback, the sales page) as outcomes, so a model can be trained
from what went through the API alone, with no CRM export.

Feedback becomes outcomes through `features.feedback.with_feedback`, the same rules a CRM export with the
store's feedback merged follows (the latest verdict wins, dated when the lead was first decided). "As of T"
keeps what is stamped at or before T: leads created, events that happened, feedback given; T is the
dataset's `snapshot_at`, so training censors label horizons that run past it.

The score log becomes the dataset's selection table (docs/data-model.md): one row per score that handed a
lead over (`handed_at` = that score's time, with that score's propensity: the moments training learns the
lead from; a lead's scores in one millisecond are one moment, decided by the first of them), and for a
lead never handed over one row with its last score's propensity (`handed_at` empty).
Rows logged before the propensity was recorded (migration 0006) say nothing: a lead whose first
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


def selection_table(engine: sa.Engine, cut: datetime) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """lead_id, handed_at, propensity of the stored leads (created by `cut`) scored by `cut`: every
    handed-over score-log row with a recorded propensity, one per (lead, millisecond), for a lead whose first
    handed-over row recorded one; for a lead never handed over, its last row (`handed_at` empty) when that
    recorded one. None when there is no such row; and notes on what was left out. A lead's rows in one
    millisecond are one moment, decided by the first of them (by time, then id): a hand-over after a
    score in the same millisecond that did not hand the lead over is not one. The per-lead window (the
    previous row, whether there is a next one) is computed in SQL, so the export reads the handed-over
    rows and each lead's last row, not the whole score log."""
    sl = db.score_log.c
    known = sa.and_(sl.scored_at <= cut, db.leads.c.created_at <= cut)

    # one window, in the order the rows are read (scored_at, id): the previous row of each, and whether a
    # row is its lead's last (no next one); one query returns the handed-over rows and the last ones
    def window(f: sa.FunctionElement[Any]) -> sa.Over[Any]:
        return f.over(partition_by=sl.lead_id, order_by=(sl.scored_at, sl.id))

    ranked = (
        sa.select(
            sl.id,
            sl.lead_id,
            sl.scored_at,
            sl.propensity,
            sl.qualified,
            window(sa.func.lead(sl.id)).label("next_id"),
            window(sa.func.lag(sl.scored_at, type_=sl.scored_at.type)).label("prev_at"),
            window(sa.func.lag(sl.qualified, type_=sl.qualified.type)).label("prev_qualified"),
        )
        .join(db.leads, db.leads.c.lead_id == sl.lead_id)
        .where(known)
        .subquery()
    )
    r = ranked.c
    with engine.connect() as conn:
        read = conn.execute(
            sa.select(
                r.lead_id, r.scored_at, r.propensity, r.qualified, r.next_id, r.prev_at, r.prev_qualified
            )
            .where(sa.or_(r.qualified.is_(True), r.next_id.is_(None)))
            .order_by(r.lead_id, r.scored_at, r.id)
        ).all()
    handed = [x for x in read if x.qualified]
    latest = [x for x in read if x.next_id is None]
    hand = pd.DataFrame(
        {
            S.LEAD_ID: pd.Series([x.lead_id for x in handed], dtype=object),
            S.HANDED_AT: _utc([x.scored_at for x in handed]),
            S.PROPENSITY: pd.Series([x.propensity for x in handed], dtype="float64"),
        }
    )
    # the first handed-over row of a (lead, millisecond) is preceded in it by rows that did not hand the lead
    # over, if by any: then the millisecond's first decision was "not handed over", and none of its rows count
    prev_at = _utc([x.prev_at for x in handed])
    overruled = (prev_at == hand[S.HANDED_AT]) & pd.Series([x.prev_qualified is False for x in handed])
    moment = hand[[S.LEAD_ID, S.HANDED_AT]]
    first_in_ms = ~moment.duplicated()
    bad_ms = moment[(first_in_ms & overruled).to_numpy()]
    not_handed = moment.merge(bad_ms, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    hand = hand[~not_handed]
    handed_ids = set(hand[S.LEAD_ID])
    # a lead whose first hand-over predates recorded propensities says nothing (weight 1, as before)
    first = ~hand[S.LEAD_ID].duplicated()
    unknown = hand.loc[first & hand[S.PROPENSITY].isna(), S.LEAD_ID]
    hand = hand[~hand[S.LEAD_ID].isin(unknown)]
    hand = hand.drop_duplicates([S.LEAD_ID, S.HANDED_AT])
    missing = int(hand[S.PROPENSITY].isna().sum())
    hand = hand[hand[S.PROPENSITY].notna()]
    notes = []
    if missing:
        notes.append(
            f"selection table: {missing} later hand-over(s) with no recorded propensity left out (their "
            "leads' earlier hand-overs had one)"
        )
    never = [x for x in latest if x.lead_id not in handed_ids and x.propensity is not None]
    out = pd.concat(
        [
            hand,
            pd.DataFrame(
                {
                    S.LEAD_ID: pd.Series([x.lead_id for x in never], dtype=object),
                    S.HANDED_AT: pd.Series(pd.NaT, index=range(len(never)), dtype="datetime64[ms, UTC]"),
                    S.PROPENSITY: pd.Series([x.propensity for x in never], dtype="float64"),
                }
            ),
        ],
        ignore_index=True,
    )
    out = out.sort_values([S.LEAD_ID, S.HANDED_AT], kind="stable", ignore_index=True)
    return (out if len(out) else None), tuple(notes)


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
    selection, notes = selection_table(engine, cut)
    dataset = Dataset(
        leads=leads, events=events, outcomes=outcomes, snapshot_at=snapshot, notes=notes, selection=selection
    )
    return with_feedback(dataset, store.feedback_frame(engine, until=cut))
