"""What the monitoring checks read from the store: score-log rows, their logged feature values as model
input, and the outcomes of the leads they scored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.feedback import with_feedback
from leadscore.features.loading import Dataset
from leadscore.serve import db, store
from leadscore.serve.store.rows import AnyRow


def score_rows(conn: sa.Connection, where: Sequence[sa.ColumnElement[bool]], limit: int) -> list[AnyRow]:
    """The score-log rows matching `where` (newest first, at most `limit`) with what the checks read."""
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
    return list(conn.execute(q).all())


def feature_values(
    conn: sa.Connection, rows: Sequence[AnyRow], names: tuple[str, ...], categorical: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The logged feature values of `rows` as model input (name -> array; numerics float with NaN for
    missing, categoricals object), and for each name the mask of the rows whose log holds it (a row of
    another feature set may not). Rows of one feature set are read column-wise: a few numpy calls a
    feature."""
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
    values: dict[str, np.ndarray] = {}
    for n in names:
        if n in categorical:
            values[n] = np.array([None if v is None else str(v) for v in raw[n]], dtype=object)
        else:
            values[n] = pd.to_numeric(pd.Series(raw[n]), errors="coerce").to_numpy(dtype=float)
    return values, present


def complete(present: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Rows that hold every feature."""
    return np.logical_and.reduce(list(present.values())) if present else np.ones(n, dtype=bool)


def outcomes(conn: sa.Connection, lead_ids: set[str], now: datetime) -> Dataset:
    """The stored leads in `lead_ids` (creation times) and their feedback given by `now` folded into
    outcomes with the training rules (`with_feedback`), as a dataset whose snapshot is `now`."""
    ids = sorted(lead_ids)
    created: list[AnyRow] = []
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
